//! What the listeners and the reload task share.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use switchyard_plugins::Registry;

use crate::config::Config;
use crate::resource::group_prefix;
use crate::snapshot::Snapshot;
use crate::store::ConfigStore;

/// The store keys' root: `<root>/<gateway_group_id>/<kind>/<id>`.
pub const STORE_ROOT: &str = "/switchyard";

pub struct Shared {
    pub config: Config,
    /// The live config. Handlers `load_full()` it once per request; only the reload task stores.
    pub snapshot: ArcSwap<Snapshot>,
    pub store: Arc<dyn ConfigStore>,
    pub registry: Registry,
    /// `<root>/<gateway_group_id>/`: the keys this node serves.
    pub group_prefix: String,
    /// The store revision this node has caught up with: every change up to it is live.
    pub applied_revision: AtomicU64,
}

impl Shared {
    pub fn applied_revision(&self) -> u64 {
        self.applied_revision.load(Ordering::Acquire)
    }

    pub fn new(config: Config, store: Arc<dyn ConfigStore>, registry: Registry, snapshot: Snapshot) -> Self {
        let group_prefix = group_prefix(STORE_ROOT, &config.gateway_group_id);
        let applied_revision = AtomicU64::new(snapshot.revision);
        Self { config, snapshot: ArcSwap::from_pointee(snapshot), store, registry, group_prefix, applied_revision }
    }
}
