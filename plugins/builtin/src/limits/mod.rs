//! The one limiter of this build, behind `ai-rate-limiting` and the model API's `rate_limit`:
//! counters in the core's [`CounterStore`] (in process, or Redis shared by every node), reserved
//! at admission with an [`Estimate`] of the request's tokens, all or none in one round trip, and
//! settled when the request ends ([`Hold`]): tokens to the real usage, requests counted for good,
//! requests in flight given back.

pub mod estimate;
mod hold;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use switchyard_sdk::{Admission, Counter, CounterError, CounterState, CounterStore, Ctx, Outcome, Usage};

pub use estimate::Estimate;
pub use hold::{Charge, Hold};

/// What an admission came to.
pub enum Admit {
    /// Every counter took its cost: the hold settles them, `states` are in the order asked.
    Admitted { hold: Arc<Hold>, states: Vec<CounterState> },
    /// Counter `index` was spent, so none was charged.
    Rejected { index: usize, state: CounterState, retry_after: Duration },
    /// The store did not answer in time.
    Unavailable(CounterError),
}

/// Runs at admission: reserves every counter's cost on `store`, all or none; each counter
/// settles as its charge (same order) says.
pub async fn admit(store: &Arc<dyn CounterStore>, counters: &[Counter], charges: &[Charge]) -> Admit {
    match store.reserve(counters).await {
        Ok(Admission::Admitted { keys, states }) => {
            Admit::Admitted { hold: Hold::new(store, keys, counters, charges), states }
        }
        Ok(Admission::Rejected { index, state, retry_after }) => Admit::Rejected { index, state, retry_after },
        Err(err) => Admit::Unavailable(err),
    }
}

/// What a request that ended really cost in tokens, as `cost` counts its usage: the usage the
/// provider reported; nothing when it failed without reporting any (a refund); `None` when it
/// was served but reported none (the estimate stands). Runs in the log phase.
pub fn settled_cost(ctx: &Ctx, outcome: &Outcome, cost: impl Fn(&Usage) -> u64) -> Option<u64> {
    let served = outcome.status < 400 && outcome.reason.is_none();
    match (ctx.log.usage.as_ref(), served) {
        (Some(usage), _) => Some(cost(usage)),
        (None, false) => Some(0),
        (None, true) => None,
    }
}

/// Whole seconds, rounded up (a reset 0.2 s away is 1 s).
pub fn seconds(duration: Duration) -> u64 {
    duration.as_millis().div_ceil(1000) as u64
}

/// How often a limiter may log that its counter store is unreachable: an outage under load
/// would otherwise write a line per request.
const WARN_EVERY_SECS: u64 = 10;

/// The "counter store unavailable" warning of one limiter, rate-limited.
#[derive(Default)]
pub struct Degraded {
    /// When the last warning was logged (Unix seconds).
    last: AtomicU64,
}

impl Degraded {
    /// Runs when the store did not answer an admission: logs it, at most once per 10 s for this
    /// limiter. `limiter` and `scope` say whose counters (a plugin and its route); `then` what
    /// became of the request.
    pub fn warn(&self, limiter: &str, scope: &str, error: &CounterError, then: &str) {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let last = self.last.load(Ordering::Relaxed);
        let due = last == 0 || now >= last + WARN_EVERY_SECS;
        if due && self.last.compare_exchange(last, now.max(1), Ordering::Relaxed, Ordering::Relaxed).is_ok() {
            tracing::warn!(limiter, scope, %error, then, "rate limit counters unavailable");
        }
    }
}
