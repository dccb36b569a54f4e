//! The connections of one kind of listener (proxy or admin): their cap, and the way to signal
//! all of them at shutdown or the idle ones when the cap is reached.

use std::sync::{Arc, Mutex, PoisonError, Weak};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::state::{ConnState, Signal, IDLE};

/// The most idle connections closed each time the cap is reached (nginx's
/// `ngx_drain_connections` closes up to 32 as well).
const RECLAIM_BATCH: usize = 32;

pub struct ConnGroup {
    /// `proxy` or `admin`, for logs.
    pub kind: &'static str,
    pub cap: usize,
    permits: Arc<Semaphore>,
    /// Every connection, oldest first. Locked once per accepted connection and per signal
    /// round, never per request.
    live: Mutex<Registry>,
}

struct Registry {
    conns: Vec<Weak<ConnState>>,
    /// Ended connections are swept out when the list reaches this length.
    sweep_at: usize,
}

impl ConnGroup {
    pub fn new(kind: &'static str, cap: usize) -> ConnGroup {
        let cap = cap.clamp(1, Semaphore::MAX_PERMITS);
        ConnGroup {
            kind,
            cap,
            permits: Arc::new(Semaphore::new(cap)),
            live: Mutex::new(Registry { conns: Vec::new(), sweep_at: 64 }),
        }
    }

    /// A place under the cap, if one is free now.
    pub fn try_permit(&self) -> Option<OwnedSemaphorePermit> {
        Arc::clone(&self.permits).try_acquire_owned().ok()
    }

    /// Waits for a place under the cap.
    pub async fn permit(&self) -> Option<OwnedSemaphorePermit> {
        Arc::clone(&self.permits).acquire_owned().await.ok()
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.cap - self.permits.available_permits()
    }

    /// Registers a connection just accepted under `permit`.
    pub fn admit(&self, permit: OwnedSemaphorePermit) -> Arc<ConnState> {
        let conn = Arc::new(ConnState::new(permit));
        let mut registry = self.live.lock().unwrap_or_else(PoisonError::into_inner);
        if registry.conns.len() >= registry.sweep_at {
            registry.conns.retain(|c| c.strong_count() > 0);
            registry.sweep_at = (registry.conns.len() * 2).max(64);
        }
        registry.conns.push(Arc::downgrade(&conn));
        conn
    }

    /// Raises `signal` on every open connection.
    pub fn signal_all(&self, signal: u8) {
        let registry = self.live.lock().unwrap_or_else(PoisonError::into_inner);
        for conn in registry.conns.iter().filter_map(Weak::upgrade) {
            conn.raise(signal);
        }
    }

    /// Asks up to [`RECLAIM_BATCH`] idle connections, oldest first, to close; returns how many.
    /// Runs when the cap is reached, as nginx reuses idle keep-alive connections when it runs
    /// out of connections.
    pub fn reclaim_idle(&self) -> usize {
        let registry = self.live.lock().unwrap_or_else(PoisonError::into_inner);
        let idle = registry.conns.iter().filter_map(Weak::upgrade).filter(|c| c.phase() == IDLE);
        idle.take(RECLAIM_BATCH).map(|conn| conn.raise(Signal::RECLAIM)).count()
    }
}
