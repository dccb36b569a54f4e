//! What each part of a running node may reach. The proxy gets the live snapshot and its listener
//! settings ([`ProxyState`]); the admin API gets the store, the compiler and the node's status
//! ([`AdminState`]); the reload task, the one writer of the live snapshot, gets both sides
//! ([`ReloadState`]). Nothing else holds a path from one side to the other.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::sync::watch;

use crate::background::BackgroundStats;
use crate::cache::MirrorCache;
use crate::compiler::Compiler;
use crate::config::Config;
use crate::observe::Observe;
use crate::snapshot::{Rejected, Snapshot};
use crate::store::ConfigStore;

/// The live config. Only the reload task publishes; a request handler loads it once and passes
/// `&Snapshot` down (clippy's `disallowed-methods` keeps `load` at the entry points).
pub struct LiveSnapshot {
    #[expect(clippy::disallowed_types, reason = "the one ArcSwap: every other module goes through LiveSnapshot")]
    current: arc_swap::ArcSwap<Snapshot>,
}

impl LiveSnapshot {
    #[expect(clippy::disallowed_types, reason = "the one ArcSwap: every other module goes through LiveSnapshot")]
    pub fn new(snapshot: Arc<Snapshot>) -> Self {
        Self { current: arc_swap::ArcSwap::new(snapshot) }
    }

    /// The snapshot to serve one request (or one admin read) with. Call it once, where the work
    /// starts, and hand the result down.
    pub fn load(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// Makes `snapshot` live: requests that start after this see it. The reload task's alone.
    pub(crate) fn publish(&self, snapshot: Arc<Snapshot>) {
        self.current.store(snapshot);
    }
}

/// What the reload task tells the rest of the node about where it stands.
pub struct NodeStatus {
    /// The store revision this node has caught up with: every change up to it is live.
    applied: watch::Sender<u64>,
    /// True while the live config came from the local cache rather than from the store: the node
    /// started while etcd was down and has not synced since.
    cached: AtomicBool,
    /// Stored resources the last reload refused.
    rejected: RwLock<Arc<[Rejected]>>,
    /// The plugins' background work, as the reload task last left it.
    pub background: Arc<BackgroundStats>,
}

impl NodeStatus {
    pub fn new(first: &Snapshot, cached: bool) -> Self {
        Self {
            applied: watch::Sender::new(first.revision),
            cached: AtomicBool::new(cached),
            rejected: RwLock::new(first.rejected.clone().into()),
            background: Arc::default(),
        }
    }

    pub fn applied_revision(&self) -> u64 {
        *self.applied.borrow()
    }

    /// Waits until every change up to `revision` is live, at most `limit`; `false` on time-out.
    pub async fn wait_for_revision(&self, revision: u64, limit: Duration) -> bool {
        let mut applied = self.applied.subscribe();
        let reached = tokio::time::timeout(limit, applied.wait_for(|r| *r >= revision)).await;
        matches!(reached, Ok(Ok(_)))
    }

    /// Records that everything up to `revision` is live (never goes back).
    pub(crate) fn advance(&self, revision: u64) {
        self.applied.send_if_modified(|applied| {
            let moved = revision > *applied;
            *applied = (*applied).max(revision);
            moved
        });
    }

    pub fn is_cached(&self) -> bool {
        self.cached.load(Ordering::Acquire)
    }

    /// Marks the node as caught up with the store; `true` when it was serving the cache until now.
    pub(crate) fn caught_up(&self) -> bool {
        self.cached.swap(false, Ordering::AcqRel)
    }

    pub fn rejected(&self) -> Arc<[Rejected]> {
        Arc::clone(&self.rejected.read().unwrap_or_else(|poisoned| poisoned.into_inner()))
    }

    pub(crate) fn set_rejected(&self, rejected: &[Rejected]) {
        *self.rejected.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = rejected.into();
    }
}

/// What a proxy listener's handler reads.
pub struct ProxyState {
    pub live: Arc<LiveSnapshot>,
    /// Metrics, traces and the access log (`src/observe`).
    pub observe: Arc<Observe>,
    /// The longest wait for the next piece of a request body.
    pub client_body_timeout: Duration,
}

/// What the admin API reads and writes.
pub struct AdminState {
    pub config: Arc<Config>,
    pub store: Arc<dyn ConfigStore>,
    pub compiler: Arc<Compiler>,
    /// The store keys' root, `<root>/<gateway_group_id>/<kind>/<id>`: `store.etcd.prefix` on etcd,
    /// `/switchyard` embedded. Never ends with `/`.
    pub store_root: String,
    pub status: Arc<NodeStatus>,
    /// The proxy workers, for the connections and tasks each holds.
    pub workers: Arc<crate::server::Workers>,
}

/// What the reload task needs: the store to follow, the compiler, and both outputs.
pub struct ReloadState {
    pub store: Arc<dyn ConfigStore>,
    pub compiler: Arc<Compiler>,
    /// `<root>/<gateway_group_id>/`: the keys this node serves.
    pub group_prefix: String,
    /// Where the applied config is copied to (etcd only).
    pub cache: Option<MirrorCache>,
    pub live: Arc<LiveSnapshot>,
    pub status: Arc<NodeStatus>,
    /// Told about every config applied (metrics).
    pub observe: Arc<Observe>,
}
