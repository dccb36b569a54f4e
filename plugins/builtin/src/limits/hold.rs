//! What one request holds on a counter store between its admission and its end.

use std::sync::{Arc, Mutex};

use switchyard_sdk::{Counter, CounterStore};

/// How a reservation settles when its request ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Charge {
    /// Tokens: settled to what the request really cost (a refund, or a further charge).
    Usage,
    /// One request in a window: it counts for good, whatever became of it.
    Request,
    /// One request in flight (a gauge): given back when the request ends.
    InFlight,
}

struct Entry {
    /// The stored key (window included), as the admission returned it.
    key: String,
    reserved: u64,
    charge: Charge,
}

/// The reservations one admission made, settled exactly once: by [`Hold::settle`] when the
/// request ends, else when the hold is dropped (a request abandoned before its response, whose
/// log phase never ran: its tokens are refunded and its place in flight freed).
pub struct Hold {
    store: Arc<dyn CounterStore>,
    entries: Mutex<Vec<Entry>>,
}

impl Hold {
    /// Runs after an admission: `keys` are the stored keys it returned, in the order of
    /// `counters`; each counter settles as its charge (same order) says.
    pub fn new(
        store: &Arc<dyn CounterStore>,
        keys: Vec<String>,
        counters: &[Counter],
        charges: &[Charge],
    ) -> Arc<Hold> {
        let entries = keys
            .into_iter()
            .zip(counters.iter().zip(charges))
            .map(|(key, (counter, charge))| Entry { key, reserved: counter.cost, charge: *charge })
            .collect();
        Arc::new(Hold { store: Arc::clone(store), entries: Mutex::new(entries) })
    }

    /// Runs when the request ends, or when an attempt is given up for another: `cost` is what
    /// the request really cost in tokens (`None`: it is not known, and the estimate stands).
    /// Later calls do nothing.
    pub fn settle(&self, cost: Option<u64>) {
        let entries = std::mem::take(&mut *self.entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
        let adjustments: Vec<(String, i64)> = entries
            .into_iter()
            .filter_map(|entry| {
                let delta = match entry.charge {
                    Charge::Usage => cost? as i64 - entry.reserved as i64,
                    Charge::Request => 0,
                    Charge::InFlight => -(entry.reserved as i64),
                };
                (delta != 0).then_some((entry.key, delta))
            })
            .collect();
        if !adjustments.is_empty() {
            self.store.settle(adjustments);
        }
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        self.settle(Some(0));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use switchyard_sdk::{Admission, CounterError};

    /// Records what it is asked to settle.
    #[derive(Default)]
    struct Recorder(Mutex<Vec<(String, i64)>>);

    #[async_trait::async_trait]
    impl CounterStore for Recorder {
        async fn reserve(&self, _: &[Counter]) -> Result<Admission, CounterError> {
            Err(CounterError("unused".into()))
        }
        fn settle(&self, adjustments: Vec<(String, i64)>) {
            self.0.lock().unwrap().extend(adjustments);
        }
    }

    fn counter(cost: u64) -> Counter {
        Counter { key: "k".into(), limit: 100, window: Some(Duration::from_secs(60)), cost }
    }

    #[test]
    fn settles_once_tokens_to_the_cost_requests_never_and_in_flight_back() {
        let recorder = Arc::new(Recorder::default());
        let store: Arc<dyn CounterStore> = recorder.clone();
        let counters = [counter(50), counter(1), counter(1)];
        let charges = [Charge::Usage, Charge::Request, Charge::InFlight];
        let hold = Hold::new(&store, vec!["t".into(), "r".into(), "c".into()], &counters, &charges);
        hold.settle(Some(58));
        hold.settle(Some(0));
        drop(hold);
        assert_eq!(*recorder.0.lock().unwrap(), [("t".to_string(), 8), ("c".to_string(), -1)]);
    }

    #[test]
    fn an_unknown_cost_keeps_the_estimate_and_a_dropped_hold_refunds() {
        let recorder = Arc::new(Recorder::default());
        let store: Arc<dyn CounterStore> = recorder.clone();
        let (counters, charges) = ([counter(50), counter(1)], [Charge::Usage, Charge::InFlight]);
        Hold::new(&store, vec!["t".into(), "c".into()], &counters, &charges).settle(None);
        assert_eq!(*recorder.0.lock().unwrap(), [("c".to_string(), -1)]);
        recorder.0.lock().unwrap().clear();
        drop(Hold::new(&store, vec!["t".into(), "c".into()], &counters, &charges));
        assert_eq!(*recorder.0.lock().unwrap(), [("t".to_string(), -50), ("c".to_string(), -1)]);
    }
}
