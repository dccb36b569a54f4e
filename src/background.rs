//! Background work that compiled plugins declare (`Plugin::background`) and that plain upstreams
//! with `checks.active` need (their probes): started for the plugins and upstreams of each
//! published snapshot, stopped when a compiled one leaves it. Owned by the reload task, the only
//! writer of the snapshot, so building or validating a config never starts anything.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use switchyard_sdk::{BackgroundTask, Plugin, UpstreamIo};
use tokio::task::AbortHandle;

use crate::snapshot::Snapshot;
use crate::upstream::Upstream;

/// What declared some background work.
enum Owner {
    Plugin(#[expect(dead_code, reason = "held to keep the address")] Arc<dyn Plugin>),
    Upstream(#[expect(dead_code, reason = "held to keep the address")] Arc<Upstream>),
}

/// The tasks of one live compiled plugin or upstream. Holding the owner keeps its address (the
/// map key) from being reused by another while the entry exists.
struct Running {
    _owner: Owner,
    tasks: Vec<AbortHandle>,
}

impl Drop for Running {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Counts shown in the admin status: how many tasks run, and how many were ever started (a
/// reload that reuses a plugin must not start its work again).
#[derive(Debug, Default)]
pub struct BackgroundStats {
    pub running: AtomicU64,
    pub started: AtomicU64,
}

/// Every running background task, by the compiled plugin that declared it.
pub struct BackgroundWork {
    io: Arc<dyn UpstreamIo>,
    running: HashMap<usize, Running>,
    stats: Arc<BackgroundStats>,
}

impl BackgroundWork {
    pub fn new(io: Arc<dyn UpstreamIo>, stats: Arc<BackgroundStats>) -> Self {
        Self { io, running: HashMap::new(), stats }
    }

    /// Runs after every publish: starts the work of plugins and upstreams new to `snapshot`,
    /// keeps that of those reused from the previous snapshot, and stops the rest.
    pub fn sync(&mut self, snapshot: &Snapshot) {
        let mut live = HashMap::with_capacity(self.running.len());
        let route_plugins = snapshot.enabled_routes().flat_map(|route| route.chain.plugins());
        for plugin in snapshot.global_chain.plugins().chain(route_plugins) {
            let key = Arc::as_ptr(plugin).cast::<()>() as usize;
            self.keep_or_start(&mut live, key, |io| (plugin.background(io), Owner::Plugin(Arc::clone(plugin))));
        }
        for upstream in live_upstreams(snapshot) {
            let key = Arc::as_ptr(upstream) as usize;
            self.keep_or_start(&mut live, key, |io| (upstream.background(io), Owner::Upstream(Arc::clone(upstream))));
        }
        // What is left in `running` belongs to plugins that left the snapshot: dropping aborts it.
        self.running = live;
        let running = self.running.values().map(|r| r.tasks.len() as u64).sum();
        self.stats.running.store(running, Ordering::Relaxed);
    }
}

impl BackgroundWork {
    /// Moves the work of `key` into `live`: what already runs is kept, else `start` says what
    /// to run (nothing, for most plugins and upstreams).
    fn keep_or_start(
        &mut self,
        live: &mut HashMap<usize, Running>,
        key: usize,
        start: impl FnOnce(&Arc<dyn UpstreamIo>) -> (Vec<BackgroundTask>, Owner),
    ) {
        if live.contains_key(&key) {
            return;
        }
        let running = match self.running.remove(&key) {
            Some(running) => running,
            None => {
                let (tasks, owner) = start(&self.io);
                if tasks.is_empty() {
                    return;
                }
                self.stats.started.fetch_add(tasks.len() as u64, Ordering::Relaxed);
                let tasks = tasks.into_iter().map(|task| tokio::spawn(task).abort_handle()).collect();
                Running { _owner: owner, tasks }
            }
        };
        live.insert(key, running);
    }
}

/// Every compiled plain upstream of `snapshot` (an object shared by several routes once).
fn live_upstreams(snapshot: &Snapshot) -> impl Iterator<Item = &Arc<Upstream>> + '_ {
    let objects = snapshot.upstreams.values().map(|entry| &entry.compiled.upstream);
    let services = snapshot.services.values().filter_map(|entry| entry.compiled.upstream.as_ref());
    let routes = snapshot.enabled_routes().filter_map(|route| route.upstream.as_ref());
    objects.chain(services).chain(routes)
}

impl Drop for BackgroundWork {
    fn drop(&mut self) {
        self.stats.running.store(0, Ordering::Relaxed);
    }
}
