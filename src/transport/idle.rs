//! Idle upstream connections of one client, by origin, ready for the next request.
//!
//! A connection here is not driven by any task: the request that takes it reads and writes it
//! (see [`super::client`]). So a connection the upstream closed while it sat idle is found out
//! when it is taken (a read without waiting reports the end), and a sweeper closes those idle
//! longer than the keep-alive timeout.
//!
//! The pool is sharded by proxy worker (`crate::server::current_worker`): a connection goes back
//! to the shard of the worker that used it, and each worker takes from its own shard, so a
//! connection is driven by the reactor it was registered with and no lock is shared between
//! workers. Threads that are no worker (health checks, the main runtime) share shard 0.

use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasherDefault;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use http::uri::{Authority, Scheme};

use super::conn::Conn;

/// Where a connection goes: requests to one origin share connections.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct Origin {
    pub scheme: Scheme,
    pub authority: Authority,
}

struct Idle {
    conn: Box<Conn>,
    since: Instant,
}

/// Idle connections by origin. FNV rather than the default SipHash: an origin is a short key
/// hashed twice per request (take and put), and nothing an attacker sends chooses it.
type ByOrigin = HashMap<Origin, VecDeque<Idle>, BuildHasherDefault<fnv::FnvHasher>>;

/// The idle connections of one client.
pub struct IdlePool {
    /// One per worker, and shard 0 for other threads.
    shards: Box<[Mutex<ByOrigin>]>,
    /// Kept per origin in each shard; the oldest goes when one more comes back.
    max_per_origin: usize,
    timeout: Duration,
    /// A connection that has carried this many requests is closed instead of kept (0: never).
    max_requests: u32,
    sweeper_started: std::sync::Once,
}

impl IdlePool {
    /// A pool with `shards` shards (the most workers it is shared by, plus one; fewer only makes
    /// workers share a shard) keeping `max_per_origin` connections per origin in each.
    pub fn new(shards: usize, max_per_origin: usize, timeout: Duration, max_requests: u32) -> Arc<IdlePool> {
        Arc::new(IdlePool {
            shards: (0..shards.max(1)).map(|_| Mutex::new(ByOrigin::default())).collect(),
            max_per_origin,
            timeout,
            max_requests,
            sweeper_started: std::sync::Once::new(),
        })
    }

    /// The calling worker's shard.
    fn lock(&self) -> MutexGuard<'_, ByOrigin> {
        lock(&self.shards[crate::server::current_worker() % self.shards.len()])
    }

    /// The most recently used idle connection to `origin` that is still open and not past the
    /// timeout, if any; closed and expired ones met on the way are dropped.
    pub fn take(&self, origin: &Origin) -> Option<Box<Conn>> {
        let mut by_origin = self.lock();
        let idle = by_origin.get_mut(origin)?;
        while let Some(mut entry) = idle.pop_back() {
            if entry.since.elapsed() < self.timeout && entry.conn.still_open() {
                return Some(entry.conn);
            }
        }
        None
    }

    /// Called when a response has been read to its end: keeps the connection for the next
    /// request to `origin`, unless keep-alive is off or the connection cannot take another.
    pub fn put(self: &Arc<Self>, origin: Origin, mut conn: Box<Conn>) {
        conn.served = conn.served.saturating_add(1);
        let worn_out = self.max_requests > 0 && conn.served >= self.max_requests;
        if self.max_per_origin == 0 || worn_out || !conn.still_open() {
            return;
        }
        self.start_sweeper();
        let mut by_origin = self.lock();
        let idle = by_origin.entry(origin).or_default();
        if idle.len() >= self.max_per_origin {
            idle.pop_front();
        }
        idle.push_back(Idle { conn, since: Instant::now() });
    }

    /// Closes connections idle past the timeout or closed by the upstream, in every shard;
    /// returns how many remain.
    fn sweep(&self) -> usize {
        let mut remaining = 0;
        for shard in self.shards.iter() {
            let mut by_origin = lock(shard);
            by_origin.retain(|_, idle| {
                idle.retain_mut(|entry| entry.since.elapsed() < self.timeout && entry.conn.still_open());
                !idle.is_empty()
            });
            remaining += by_origin.values().map(VecDeque::len).sum::<usize>();
        }
        remaining
    }

    /// One sweeper task per pool, started with its first idle connection (inside the runtime)
    /// and ended when the pool is dropped.
    fn start_sweeper(self: &Arc<Self>) {
        self.sweeper_started.call_once(|| {
            let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
            let pool: Weak<IdlePool> = Arc::downgrade(self);
            let every = (self.timeout / 2).clamp(Duration::from_millis(100), Duration::from_secs(5));
            runtime.spawn(async move {
                let mut ticks = tokio::time::interval(every);
                ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    ticks.tick().await;
                    let Some(pool) = pool.upgrade() else { return };
                    pool.sweep();
                }
            });
        });
    }
}

/// Locks `shard`, recovering from a panic elsewhere (the map stays consistent: no entry is left
/// half-made).
fn lock(shard: &Mutex<ByOrigin>) -> MutexGuard<'_, ByOrigin> {
    shard.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
impl IdlePool {
    /// How many idle connections the pool holds after a sweep.
    pub fn swept_len(&self) -> usize {
        self.sweep()
    }
}
