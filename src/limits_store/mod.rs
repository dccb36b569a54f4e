//! The counter stores the core lends limiting plugins (`switchyard_sdk::CounterStore`): one in
//! process, and one per distinct Redis server or Redis Cluster, made on first use and kept for
//! the life of the node so counters survive reloads.

pub mod config;
mod local;
mod redis;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use switchyard_sdk::{CounterPolicy, CounterState, CounterStore};

pub use local::LocalCounters;
pub use redis::RedisCounters;

/// Every counter store of the node, by policy.
#[derive(Default)]
pub struct CounterStores {
    local: Arc<LocalCounters>,
    redis: Mutex<HashMap<CounterPolicy, Arc<RedisCounters>>>,
}

impl CounterStores {
    /// The store for `policy`: runs while a config compiles, so it opens no connection.
    pub fn get(&self, policy: &CounterPolicy) -> Arc<dyn CounterStore> {
        let mut stores = self.redis.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(store) = stores.get(policy) {
            return Arc::clone(store) as Arc<dyn CounterStore>;
        }
        let store = Arc::new(match policy {
            CounterPolicy::Local => return Arc::clone(&self.local) as Arc<dyn CounterStore>,
            CounterPolicy::Redis(settings) => RedisCounters::new(settings),
            CounterPolicy::RedisCluster(settings) => RedisCounters::cluster(settings),
        });
        stores.insert(policy.clone(), Arc::clone(&store));
        store
    }
}

/// How long a gauge (requests in flight) outlives its last change: a node that dies with
/// requests in flight cannot hold the gauge up for longer.
pub const GAUGE_TTL: Duration = Duration::from_secs(300);

/// Milliseconds since the Unix epoch: windows are aligned to it, so every node agrees on them.
fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// The stored key of a counter at `now_ms` (its window's start in it), and how long until that
/// window ends (the gauge's time to live for a gauge).
fn windowed(key: &str, window: Option<Duration>, now_ms: u64) -> (String, Duration) {
    match window {
        Some(window) => {
            let length = (window.as_millis() as u64).max(1);
            let start = now_ms - now_ms % length;
            let mut digits = itoa::Buffer::new();
            let start_text = digits.format(start);
            let mut windowed = String::with_capacity(key.len() + 1 + start_text.len());
            windowed.push_str(key);
            windowed.push(':');
            windowed.push_str(start_text);
            (windowed, Duration::from_millis(start + length - now_ms))
        }
        None => (key.to_string(), GAUGE_TTL),
    }
}

/// A counter's state once it holds `value`.
fn state(limit: u64, value: u64, reset: Duration, gauge: bool) -> CounterState {
    CounterState { limit, remaining: limit.saturating_sub(value), reset: if gauge { Duration::ZERO } else { reset } }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_are_aligned_to_the_epoch() {
        let (key, left) = windowed("k", Some(Duration::from_secs(60)), 125_000);
        assert_eq!(key, "k:120000");
        assert_eq!(left, Duration::from_secs(55));
        assert_eq!(windowed("g", None, 5).0, "g");
    }
}
