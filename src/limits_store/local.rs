//! Counters in this process: exact for one node, gone with it.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use switchyard_sdk::{Admission, Counter, CounterError, CounterStore};

use super::{now_ms, state, windowed};

/// Sweep expired counters once per this many reservations.
const SWEEP_EVERY: u64 = 4096;

#[derive(Default)]
pub struct LocalCounters {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// foldhash rather than SipHash: faster on these short keys, and still seeded per process,
    /// since a rule's key can carry a value the client chose (`$http_x_user`).
    counters: HashMap<String, Slot, foldhash::fast::RandomState>,
    reservations: u64,
}

struct Slot {
    value: u64,
    expires: Instant,
}

impl LocalCounters {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[async_trait]
impl CounterStore for LocalCounters {
    async fn reserve(&self, counters: &[Counter]) -> Result<Admission, CounterError> {
        let now = Instant::now();
        let now_ms = now_ms();
        let mut inner = self.lock();
        inner.reservations += 1;
        if inner.reservations.is_multiple_of(SWEEP_EVERY) {
            inner.counters.retain(|_, slot| slot.expires > now);
        }
        let keyed: Vec<(String, Duration)> = counters.iter().map(|c| windowed(&c.key, c.window, now_ms)).collect();
        let value_of =
            |inner: &Inner, key: &str| inner.counters.get(key).filter(|s| s.expires > now).map_or(0, |s| s.value);
        for (index, (counter, (key, left))) in counters.iter().zip(&keyed).enumerate() {
            let value = value_of(&inner, key);
            if value >= counter.limit {
                let gauge = counter.window.is_none();
                let state = state(counter.limit, value, *left, gauge);
                let retry_after = if gauge { Duration::ZERO } else { *left };
                return Ok(Admission::Rejected { index, state, retry_after });
            }
        }
        let mut states = Vec::with_capacity(counters.len());
        for (counter, (key, left)) in counters.iter().zip(&keyed) {
            let slot = match inner.counters.get_mut(key.as_str()) {
                Some(slot) => slot,
                None => inner.counters.entry(key.clone()).or_insert(Slot { value: 0, expires: now + *left }),
            };
            if slot.expires <= now {
                *slot = Slot { value: 0, expires: now + *left };
            }
            slot.value += counter.cost;
            if counter.window.is_none() {
                slot.expires = now + *left;
            }
            states.push(state(counter.limit, slot.value, *left, counter.window.is_none()));
        }
        Ok(Admission::Admitted { keys: keyed.into_iter().map(|(key, _)| key).collect(), states })
    }

    fn settle(&self, adjustments: Vec<(String, i64)>) {
        let now = Instant::now();
        let mut inner = self.lock();
        for (key, delta) in adjustments {
            if let Some(slot) = inner.counters.get_mut(&key).filter(|s| s.expires > now) {
                slot.value = slot.value.saturating_add_signed(delta);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counter(limit: u64, cost: u64) -> Counter {
        Counter { key: "k".into(), limit, window: Some(Duration::from_secs(60)), cost }
    }

    #[tokio::test]
    async fn admits_below_the_limit_then_settles_to_the_real_cost() {
        let store = LocalCounters::default();
        let Admission::Admitted { keys, states } = store.reserve(&[counter(100, 60)]).await.unwrap() else {
            panic!("first reservation refused")
        };
        assert_eq!(states[0].remaining, 40);
        assert!(matches!(store.reserve(&[counter(100, 60)]).await.unwrap(), Admission::Admitted { .. }));
        let refused = store.reserve(&[counter(100, 1)]).await.unwrap();
        assert!(matches!(refused, Admission::Rejected { index: 0, retry_after, .. } if retry_after > Duration::ZERO));
        store.settle(vec![(keys[0].clone(), -100)]);
        assert!(matches!(store.reserve(&[counter(100, 1)]).await.unwrap(), Admission::Admitted { .. }));
    }

    #[tokio::test]
    async fn all_counters_or_none() {
        let store = LocalCounters::default();
        let gauge = Counter { key: "g".into(), limit: 1, window: None, cost: 1 };
        let other = Counter { key: "o".into(), limit: 10, window: Some(Duration::from_secs(60)), cost: 5 };
        assert!(matches!(store.reserve(&[other.clone(), gauge.clone()]).await.unwrap(), Admission::Admitted { .. }));
        let refused = store.reserve(&[other.clone(), gauge.clone()]).await.unwrap();
        assert!(matches!(refused, Admission::Rejected { index: 1, retry_after: Duration::ZERO, .. }));
        let Admission::Admitted { states, .. } = store.reserve(&[other]).await.unwrap() else { panic!() };
        assert_eq!(states[0].remaining, 0, "the refused reservation charged nothing");
    }
}
