//! What the listeners and the reload task share.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::background::BackgroundStats;
use crate::cache::MirrorCache;
use crate::compiler::Compiler;
use crate::config::Config;
use crate::observe::Observe;
use crate::resource::group_prefix;
use crate::snapshot::Snapshot;
use crate::store::ConfigStore;

pub struct Shared {
    pub config: Config,
    /// The live config. Handlers `load_full()` it once per request; only the reload task stores.
    pub snapshot: ArcSwap<Snapshot>,
    pub store: Arc<dyn ConfigStore>,
    pub compiler: Compiler,
    /// The store keys' root, `<root>/<gateway_group_id>/<kind>/<id>`: `store.etcd.prefix` on etcd,
    /// `/switchyard` embedded. Never ends with `/`.
    pub store_root: String,
    /// `<root>/<gateway_group_id>/`: the keys this node serves.
    pub group_prefix: String,
    /// The store revision this node has caught up with: every change up to it is live.
    pub applied_revision: AtomicU64,
    /// Where the reload task keeps a copy of the applied config (etcd only).
    pub cache: Option<MirrorCache>,
    /// The plugins' background work, as the reload task last left it.
    pub background: Arc<BackgroundStats>,
    /// True while the live config came from `cache` rather than from the store: the node started
    /// while etcd was down and has not synced since.
    pub cached: AtomicBool,
    /// Metrics, traces, access log and readiness (`src/observe`).
    pub observe: Arc<Observe>,
}

impl Shared {
    pub fn applied_revision(&self) -> u64 {
        self.applied_revision.load(Ordering::Acquire)
    }

    pub fn is_cached(&self) -> bool {
        self.cached.load(Ordering::Acquire)
    }

    pub fn new(config: Config, store: Arc<dyn ConfigStore>, compiler: Compiler, snapshot: Snapshot) -> Self {
        let store_root = config.store.root();
        let group_prefix = group_prefix(&store_root, &config.gateway_group_id);
        let applied_revision = AtomicU64::new(snapshot.revision);
        Self {
            config,
            snapshot: ArcSwap::from_pointee(snapshot),
            store,
            compiler,
            store_root,
            group_prefix,
            applied_revision,
            cache: None,
            background: Arc::default(),
            cached: AtomicBool::new(false),
            observe: Arc::new(Observe::off()),
        }
    }

    /// Adds the node's observability (the default records nothing).
    pub fn with_observe(mut self, observe: Arc<Observe>) -> Self {
        self.observe = observe;
        self
    }

    /// Adds the local snapshot cache; `cached` tells whether the first snapshot came from it.
    pub fn with_cache(mut self, cache: Option<MirrorCache>, cached: bool) -> Self {
        self.cache = cache;
        self.cached = AtomicBool::new(cached);
        self
    }
}
