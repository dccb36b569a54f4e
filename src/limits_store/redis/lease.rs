//! Token leases: along with a request's reservation, a node draws a share of a windowed
//! counter's headroom from Redis, then admits its next requests on that counter in process until
//! the share runs out. Under steady traffic most admissions then make no Redis call at all, while
//! the bound every store keeps still holds across nodes: a grant never takes a counter past its
//! limit, so what all nodes admit stays within the limit plus one request's reservation.
//!
//! What a lease gives up is only near a spent limit, and only across nodes: tokens one node holds
//! cannot admit another node's request. Three rules keep that small.
//! - A draw asks for nothing the first time a node sees a counter in a window, then for 1, 3,
//!   7, ... of the drawing request's reservations, at most [`MOST_REQUESTS_PER_DRAW`].
//! - The script grants at most a sixteenth of what is left of the limit, so the last requests
//!   before a limit go to Redis one by one, exactly as without leases.
//! - Refunds that pile up beyond twice the largest grant asked go back to Redis, and a charge
//!   beyond what the lease holds goes to Redis at once, so the shared counter stays close to what
//!   was really spent.
//!
//! Gauges (requests in flight) are never leased: each admission and each end reaches Redis.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use switchyard_sdk::{Counter, CounterState};

use super::super::state;

/// A draw asks for at most this many of the drawing request's reservations beyond its own.
pub const MOST_REQUESTS_PER_DRAW: u64 = 256;

/// Sweep expired leases once per this many admissions.
const SWEEP_EVERY: u64 = 4096;

/// A node's share of one counter in one window.
struct Lease {
    /// Drawn from Redis and not yet reserved by a request of this node.
    available: u64,
    /// The counter's value in Redis after this node's last draw; other nodes' spending since
    /// then is unknown here.
    seen: u64,
    /// Draws so far in this window: the next one asks for `2^draws - 1` reservations.
    draws: u32,
    /// The largest grant asked in this window: refunds beyond twice this go back to Redis.
    asked: u64,
    /// The limit the lease was drawn under. A config that changes it leaves the lease unused:
    /// a lower limit must not be overrun by tokens drawn under a higher one.
    limit: u64,
    expires: Instant,
}

impl Lease {
    fn fresh(expires: Instant) -> Lease {
        Lease { available: 0, seen: 0, draws: 0, asked: 0, limit: 0, expires }
    }

    /// Where the counter stands as this node knows it: its limit, less what Redis held at the
    /// last draw, plus what this node holds unspent.
    fn state(&self, limit: u64, left: Duration) -> CounterState {
        state(limit, self.seen.saturating_sub(self.available), left, false)
    }
}

/// One counter of an admission: what it took from its lease and what it asks of Redis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Part {
    /// Taken from the lease toward the request's cost: kept when the request is admitted, given
    /// back otherwise.
    pub taken: u64,
    /// The rest of the cost, to reserve in Redis.
    pub charge: u64,
    /// Asked of Redis beyond `charge`, for the lease.
    pub ask: u64,
    /// The counter goes to Redis: its lease did not cover the cost.
    pub sent: bool,
}

/// What [`Leases::take`] found.
pub enum Taken {
    /// Every counter's lease covered its cost: admitted without Redis, with these states.
    Admitted(Vec<CounterState>),
    /// Some counters need Redis: one part per counter, in order.
    Draw(Vec<Part>),
}

#[derive(Default)]
pub struct Leases {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// foldhash, seeded per process: a rule's key can carry a value the client chose.
    leases: HashMap<String, Lease, foldhash::fast::RandomState>,
    admissions: u64,
}

impl Leases {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs at admission, before Redis: admits the request from its leases when they cover every
    /// counter; otherwise takes what they hold toward its cost and says what to ask of Redis.
    /// `keyed` is each counter's stored key and time left in its window.
    pub fn take(&self, counters: &[Counter], keyed: &[(String, Duration)]) -> Taken {
        let now = Instant::now();
        let mut inner = self.lock();
        inner.admissions += 1;
        if inner.admissions.is_multiple_of(SWEEP_EVERY) {
            inner.leases.retain(|_, lease| lease.expires > now);
        }
        let covers = |lease: &Lease, counter: &Counter| {
            lease.expires > now && lease.limit == counter.limit && lease.available >= counter.cost.max(1)
        };
        let covered = counters.iter().zip(keyed).all(|(counter, (key, _))| {
            counter.window.is_some() && inner.leases.get(key.as_str()).is_some_and(|lease| covers(lease, counter))
        });
        if covered {
            let states = counters
                .iter()
                .zip(keyed)
                .map(|(counter, (key, left))| match inner.leases.get_mut(key.as_str()) {
                    Some(lease) => {
                        lease.available -= counter.cost;
                        lease.state(counter.limit, *left)
                    }
                    None => state(counter.limit, 0, *left, false),
                })
                .collect();
            return Taken::Admitted(states);
        }
        let parts = counters
            .iter()
            .zip(keyed)
            .map(|(counter, (key, _))| {
                let lease = match inner.leases.get_mut(key.as_str()) {
                    Some(lease) if counter.window.is_some() && lease.expires > now => lease,
                    _ => return Part { taken: 0, charge: counter.cost, ask: 0, sent: true },
                };
                if covers(lease, counter) {
                    lease.available -= counter.cost;
                    return Part { taken: counter.cost, charge: 0, ask: 0, sent: false };
                }
                if lease.limit != counter.limit {
                    // Drawn under another limit: what it holds stays spent until the window
                    // ends (fewer admissions, never more), and drawing starts over.
                    *lease = Lease { limit: counter.limit, ..Lease::fresh(lease.expires) };
                }
                let taken = lease.available.min(counter.cost);
                lease.available -= taken;
                let requests = (1u64 << lease.draws.min(9)) - 1;
                let ask = counter.cost.saturating_mul(requests.min(MOST_REQUESTS_PER_DRAW));
                Part { taken, charge: counter.cost - taken, ask, sent: true }
            })
            .collect();
        Taken::Draw(parts)
    }

    /// Runs when Redis admitted the request: `values` and `grants` are the sent counters'
    /// (in order) new values and grants. Each grant joins its lease; returns every counter's state.
    pub fn admitted(
        &self,
        counters: &[Counter],
        keyed: &[(String, Duration)],
        parts: &[Part],
        values: &[u64],
        grants: &[u64],
    ) -> Vec<CounterState> {
        let now = Instant::now();
        let mut inner = self.lock();
        let mut sent = 0;
        let mut states = Vec::with_capacity(counters.len());
        for ((counter, (key, left)), part) in counters.iter().zip(keyed).zip(parts) {
            let gauge = counter.window.is_none();
            let reply = part.sent.then(|| {
                sent += 1;
                (values.get(sent - 1).copied().unwrap_or(0), grants.get(sent - 1).copied().unwrap_or(0))
            });
            if gauge {
                states.push(state(counter.limit, reply.map_or(0, |(value, _)| value), *left, true));
                continue;
            }
            // Only a draw gets here, so the key's copy is rare.
            let lease = inner.leases.entry(key.clone()).or_insert_with(|| Lease::fresh(now + *left));
            if lease.expires <= now {
                *lease = Lease::fresh(now + *left);
            }
            lease.limit = counter.limit;
            if let Some((value, grant)) = reply {
                lease.available += grant;
                lease.seen = value;
                lease.draws = lease.draws.saturating_add(1);
                lease.asked = lease.asked.max(part.ask);
            }
            states.push(lease.state(counter.limit, *left));
        }
        states
    }

    /// Runs when the request was not admitted (refused, Redis failed, or the request is gone):
    /// what each counter took from its lease goes back to it.
    pub fn give_back(&self, keyed: &[(String, Duration)], parts: &[Part]) {
        let now = Instant::now();
        let mut inner = self.lock();
        for ((key, _), part) in keyed.iter().zip(parts).filter(|(_, part)| part.taken > 0) {
            if let Some(lease) = inner.leases.get_mut(key.as_str()).filter(|lease| lease.expires > now) {
                lease.available += part.taken;
            }
        }
    }

    /// Runs when a request ends: applies each adjustment (a refund when negative) whose counter
    /// has a live lease to the lease, and returns what still has to reach Redis: adjustments of
    /// counters without one, a charge beyond what a lease holds, and refunds a lease has no room
    /// to keep.
    pub fn settle(&self, adjustments: Vec<(String, i64)>) -> Vec<(String, i64)> {
        let now = Instant::now();
        let mut inner = self.lock();
        let mut for_redis = Vec::new();
        for (key, delta) in adjustments {
            let Some(lease) = inner.leases.get_mut(key.as_str()).filter(|lease| lease.expires > now) else {
                for_redis.push((key, delta));
                continue;
            };
            let held = lease.available as i128 - i128::from(delta);
            let room = lease.asked.saturating_mul(2);
            if held < 0 {
                lease.available = 0;
                for_redis.push((key, i64::try_from(-held).unwrap_or(i64::MAX)));
            } else if held > i128::from(room) {
                lease.available = room;
                for_redis.push((key, -i64::try_from(held - i128::from(room)).unwrap_or(i64::MAX)));
            } else {
                lease.available = held as u64;
            }
        }
        for_redis
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(limit: u64, cost: u64) -> Counter {
        Counter { key: "k".into(), limit, window: Some(Duration::from_secs(60)), cost }
    }

    fn keyed() -> Vec<(String, Duration)> {
        vec![("k:0".into(), Duration::from_secs(60))]
    }

    /// Plays Redis for one sent counter: charges it, grants what was asked (all of it).
    fn draw(leases: &Leases, counter: &Counter, value: &mut u64) -> Option<Vec<CounterState>> {
        match leases.take(std::slice::from_ref(counter), &keyed()) {
            Taken::Admitted(_) => None,
            Taken::Draw(parts) => {
                *value += parts[0].charge + parts[0].ask;
                Some(leases.admitted(std::slice::from_ref(counter), &keyed(), &parts, &[*value], &[parts[0].ask]))
            }
        }
    }

    #[test]
    fn draws_ask_for_more_each_time_then_requests_are_admitted_in_process() {
        let (leases, counter, mut value) = (Leases::default(), tokens(1_000_000, 10), 0);
        assert!(draw(&leases, &counter, &mut value).is_some(), "the first request draws");
        assert_eq!(value, 10, "and asks for nothing beyond itself");
        assert!(draw(&leases, &counter, &mut value).is_some());
        assert_eq!(value, 30, "the second asks for one more reservation");
        assert!(draw(&leases, &counter, &mut value).is_none(), "the third is admitted from the lease");
        let states = draw(&leases, &counter, &mut value).expect("the lease is spent: a third draw");
        assert_eq!(value, 70, "asking for three more");
        assert_eq!(states[0].remaining, 1_000_000 - 40, "what this node spent: four requests");
    }

    #[test]
    fn a_draw_asks_for_at_most_the_most_requests() {
        let (leases, counter, mut value) = (Leases::default(), tokens(u64::MAX / 4, 1), 0);
        for _ in 0..500 {
            draw(&leases, &counter, &mut value);
        }
        let Taken::Draw(parts) = ({
            leases.lock().leases.get_mut("k:0").unwrap().available = 0;
            leases.take(&[counter], &keyed())
        }) else {
            panic!("an empty lease draws")
        };
        assert_eq!(parts[0].ask, MOST_REQUESTS_PER_DRAW);
    }

    #[test]
    fn refunds_stay_in_the_lease_up_to_twice_the_largest_ask_and_charges_past_it_go_to_redis() {
        let (leases, counter, mut value) = (Leases::default(), tokens(1_000_000, 10), 0);
        draw(&leases, &counter, &mut value);
        assert_eq!(leases.settle(vec![("k:0".into(), -4)]), vec![("k:0".into(), -4)], "nothing asked yet: no room");
        draw(&leases, &counter, &mut value); // asked 10, holds 10
        assert_eq!(leases.settle(vec![("k:0".into(), -5)]), vec![], "15 held, room for 20");
        assert_eq!(leases.settle(vec![("k:0".into(), -8)]), vec![("k:0".into(), -3)]);
        assert_eq!(leases.settle(vec![("k:0".into(), 25)]), vec![("k:0".into(), 5)], "a debt goes at once");
        assert_eq!(leases.settle(vec![("other".into(), -7)]), vec![("other".into(), -7)], "no lease: Redis");
    }

    #[test]
    fn a_request_not_admitted_gives_back_what_it_took() {
        let (leases, counter, mut value) = (Leases::default(), tokens(1_000_000, 10), 0);
        draw(&leases, &counter, &mut value);
        draw(&leases, &counter, &mut value); // holds 10
        let bigger = tokens(1_000_000, 15);
        let Taken::Draw(parts) = leases.take(std::slice::from_ref(&bigger), &keyed()) else { panic!() };
        assert_eq!((parts[0].taken, parts[0].charge), (10, 5));
        leases.give_back(&keyed(), &parts);
        assert!(matches!(leases.take(&[counter], &keyed()), Taken::Admitted(_)), "the 10 are back");
    }

    #[test]
    fn a_changed_limit_leaves_the_lease_unused_and_draws_again() {
        let (leases, counter, mut value) = (Leases::default(), tokens(1_000_000, 10), 0);
        draw(&leases, &counter, &mut value);
        draw(&leases, &counter, &mut value); // holds one more reservation
        let lowered = tokens(100, 10);
        let Taken::Draw(parts) = leases.take(std::slice::from_ref(&lowered), &keyed()) else {
            panic!("a lease drawn under another limit admitted")
        };
        assert_eq!(parts[0], Part { taken: 0, charge: 10, ask: 0, sent: true }, "drawing starts over");
    }

    #[test]
    fn gauges_always_go_to_redis() {
        let leases = Leases::default();
        let gauge = Counter { key: "g".into(), limit: 100, window: None, cost: 1 };
        let keyed = vec![("g".to_string(), Duration::from_secs(300))];
        for _ in 0..3 {
            let Taken::Draw(parts) = leases.take(std::slice::from_ref(&gauge), &keyed) else { panic!() };
            assert_eq!(parts[0], Part { taken: 0, charge: 1, ask: 0, sent: true });
            leases.admitted(std::slice::from_ref(&gauge), &keyed, &parts, &[1], &[0]);
        }
    }
}
