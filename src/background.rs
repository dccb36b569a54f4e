//! Background work that compiled plugins declare (`Plugin::background`): started for the plugins
//! of each published snapshot, stopped when a compiled plugin leaves it. Owned by the reload task,
//! the only writer of the snapshot, so building or validating a config never starts anything.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use switchyard_sdk::{Plugin, UpstreamIo};
use tokio::task::AbortHandle;

use crate::snapshot::Snapshot;

/// The tasks of one live compiled plugin. Holding the plugin keeps its address (the map key)
/// from being reused by another plugin while the entry exists.
struct Running {
    _plugin: Arc<dyn Plugin>,
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

    /// Runs after every publish: starts the work of plugins new to `snapshot`, keeps that of
    /// plugins reused from the previous snapshot, and stops the rest.
    pub fn sync(&mut self, snapshot: &Snapshot) {
        let mut live = HashMap::with_capacity(self.running.len());
        for route in snapshot.enabled_routes() {
            for plugin in route.chain.plugins() {
                let key = Arc::as_ptr(plugin).cast::<()>() as usize;
                if live.contains_key(&key) {
                    continue;
                }
                let running = match self.running.remove(&key) {
                    Some(running) => running,
                    None => {
                        let tasks = plugin.background(&self.io);
                        if tasks.is_empty() {
                            continue;
                        }
                        self.stats.started.fetch_add(tasks.len() as u64, Ordering::Relaxed);
                        let tasks = tasks.into_iter().map(|task| tokio::spawn(task).abort_handle()).collect();
                        Running { _plugin: Arc::clone(plugin), tasks }
                    }
                };
                live.insert(key, running);
            }
        }
        // What is left in `running` belongs to plugins that left the snapshot: dropping aborts it.
        self.running = live;
        let running = self.running.values().map(|r| r.tasks.len() as u64).sum();
        self.stats.running.store(running, Ordering::Relaxed);
    }
}

impl Drop for BackgroundWork {
    fn drop(&mut self) {
        self.stats.running.store(0, Ordering::Relaxed);
    }
}
