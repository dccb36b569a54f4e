//! Health of one instance across requests: passive checks on every answer, `Retry-After`
//! cooldowns, and the verdict of active probes. Times are `tokio::time::Instant`, so tests can
//! pause the clock.
//!
//! Tripped checks take the instance out for a cooldown (`checks.passive.cooldown_ms`, doubling
//! with each trip in a row up to `max_cooldown_ms`). When it ends, one request is let through as
//! a trial: until its answer is recorded no other request picks the instance, so a dead provider
//! sees one request per cooldown, and a recovered one is back within `max_cooldown_ms` of the
//! first request after it recovered.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use http::HeaderMap;
use tokio::time::Instant;

use super::config::PassiveConfig;

/// How a failed attempt failed at the transport level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportFailure {
    Connect,
    Timeout,
    Other,
}

#[derive(Debug, Default)]
struct State {
    http_failures: u32,
    tcp_failures: u32,
    timeouts: u32,
    successes: u32,
    /// Out of rotation until then (passive trip or `Retry-After`).
    cooldown_until: Option<Instant>,
    /// Trips in a row without a full recovery: the cooldown grows with it, and while it is above
    /// zero a single failure (the probe after a cooldown) trips again.
    level: u32,
    /// A trial request after a cooldown holds the instance until its answer is recorded, or
    /// until then at the latest (it may never be: the client can go away).
    trial_until: Option<Instant>,
    /// The active checker's verdict.
    active_down: bool,
    active_successes: u32,
    active_failures: u32,
}

pub struct Health {
    passive: PassiveConfig,
    base_cooldown: Duration,
    max_cooldown: Duration,
    state: Mutex<State>,
    /// `state.level > 0`, readable without the lock: a healthy instance's pick costs nothing more.
    backing_off: AtomicBool,
    /// A 429's `Retry-After` sets the cooldown (else it counts as any failure).
    honor_retry_after: bool,
}

impl Health {
    pub fn new(passive: PassiveConfig) -> Self {
        let base_cooldown = Duration::from_millis(passive.cooldown_ms);
        let max_cooldown = Duration::from_millis(passive.max_cooldown_ms);
        Self {
            passive,
            base_cooldown,
            max_cooldown,
            state: Mutex::default(),
            backing_off: AtomicBool::new(false),
            honor_retry_after: true,
        }
    }

    /// The same health, deaf to `Retry-After` (the model API's `cooldown.honor_retry_after: false`).
    pub fn ignoring_retry_after(mut self) -> Self {
        self.honor_retry_after = false;
        self
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Whether the instance may be picked at `now`.
    pub fn available(&self, now: Instant) -> bool {
        let state = self.state();
        !state.active_down
            && state.cooldown_until.is_none_or(|until| now >= until)
            && state.trial_until.is_none_or(|until| now >= until)
    }

    /// Called when a request picks the instance. After a cooldown the pick is a trial and holds
    /// the instance for up to `hold`; `false`: another request's trial got there first.
    pub fn claim(&self, now: Instant, hold: Duration) -> bool {
        if !self.backing_off.load(Ordering::Relaxed) {
            return true;
        }
        let mut state = self.state();
        if state.level == 0 {
            return true;
        }
        if state.trial_until.is_some_and(|until| now < until) {
            return false;
        }
        state.trial_until = Some(now + hold);
        true
    }

    /// When a cooling instance comes back (`None` when it is not cooling, or is down by probe).
    pub fn back_at(&self) -> Option<Instant> {
        let state = self.state();
        if state.active_down {
            return None;
        }
        state.cooldown_until
    }

    /// Records an upstream answer. A 429 with `Retry-After` takes the instance out until then;
    /// one without trips the passive checks at once (a rate limit is no fluke).
    pub fn record_status(&self, status: u16, headers: &HeaderMap, now: Instant) {
        let mut state = self.state();
        state.trial_until = None;
        let mut waited = false;
        if status == 429 && self.honor_retry_after {
            if let Some(wait) = retry_after(headers) {
                let until = now + wait;
                state.cooldown_until = Some(state.cooldown_until.map_or(until, |u| u.max(until)));
                waited = true;
            }
        }
        if self.passive.unhealthy.http_statuses.contains(&status) {
            state.http_failures += 1;
            state.successes = 0;
            let rate_limited = status == 429 && !waited;
            if rate_limited || state.level > 0 || state.http_failures >= self.passive.unhealthy.http_failures {
                self.trip(&mut state, now);
            }
        } else if self.passive.healthy.http_statuses.contains(&status) {
            self.record_success(&mut state);
        }
    }

    pub fn record_transport(&self, failure: TransportFailure, now: Instant) {
        let mut state = self.state();
        state.trial_until = None;
        state.successes = 0;
        let tripped = match failure {
            TransportFailure::Timeout => {
                state.timeouts += 1;
                state.timeouts >= self.passive.unhealthy.timeouts
            }
            TransportFailure::Connect | TransportFailure::Other => {
                state.tcp_failures += 1;
                state.tcp_failures >= self.passive.unhealthy.tcp_failures
            }
        };
        if tripped || state.level > 0 {
            self.trip(&mut state, now);
        }
    }

    fn record_success(&self, state: &mut State) {
        state.http_failures = 0;
        state.tcp_failures = 0;
        state.timeouts = 0;
        state.successes += 1;
        if state.successes >= self.passive.healthy.successes {
            state.level = 0;
            self.backing_off.store(false, Ordering::Relaxed);
        }
    }

    /// Records an active probe: `healthy_after` successes in a row bring the instance up,
    /// `unhealthy_after` failures in a row take it down.
    pub fn record_probe(&self, ok: bool, healthy_after: u32, unhealthy_after: u32) {
        let mut state = self.state();
        if ok {
            state.active_failures = 0;
            state.active_successes += 1;
            if state.active_successes >= healthy_after {
                state.active_down = false;
            }
        } else {
            state.active_successes = 0;
            state.active_failures += 1;
            if state.active_failures >= unhealthy_after {
                state.active_down = true;
            }
        }
    }

    pub fn probed_down(&self) -> bool {
        self.state().active_down
    }

    /// Out of rotation for a cooldown that doubles with each trip in a row, up to the cap.
    fn trip(&self, state: &mut State, now: Instant) {
        let cooldown = self.base_cooldown.saturating_mul(1 << state.level.min(16)).min(self.max_cooldown);
        let until = now + cooldown;
        state.cooldown_until = Some(state.cooldown_until.map_or(until, |u| u.max(until)));
        state.level += 1;
        self.backing_off.store(true, Ordering::Relaxed);
        state.http_failures = 0;
        state.tcp_failures = 0;
        state.timeouts = 0;
    }
}

/// `Retry-After` as delta seconds or an HTTP date; `None` when absent or unreadable.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(http::header::RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let date = httpdate::parse_http_date(value).ok()?;
    Some(date.duration_since(SystemTime::now()).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    const BASE_COOLDOWN: Duration = Duration::from_secs(1);
    const MAX_COOLDOWN: Duration = Duration::from_secs(15);

    fn headers(retry_after: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(http::header::RETRY_AFTER, HeaderValue::from_str(retry_after).unwrap());
        headers
    }

    #[test]
    fn retry_after_takes_the_instance_out_until_then() {
        let health = Health::new(PassiveConfig::default());
        let now = Instant::now();
        health.record_status(429, &headers("5"), now);
        assert!(!health.available(now + Duration::from_secs(4)));
        assert!(health.available(now + Duration::from_secs(5)));
        assert_eq!(health.back_at(), Some(now + Duration::from_secs(5)));
    }

    #[test]
    fn retry_after_reads_http_dates() {
        let later = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(120));
        let wait = retry_after(&headers(&later)).unwrap();
        assert!(wait > Duration::from_secs(100) && wait <= Duration::from_secs(120), "{wait:?}");
        assert_eq!(retry_after(&headers("soon")), None);
    }

    #[test]
    fn repeated_failures_cool_down_with_growing_capped_backoff() {
        let health = Health::new(PassiveConfig::default());
        let t0 = Instant::now();
        for _ in 0..3 {
            health.record_status(503, &HeaderMap::new(), t0);
        }
        assert!(!health.available(t0));
        assert!(health.available(t0 + BASE_COOLDOWN));
        // The probe after the cooldown fails: out again, for twice as long.
        let t1 = t0 + BASE_COOLDOWN;
        health.record_status(503, &HeaderMap::new(), t1);
        assert!(!health.available(t1 + BASE_COOLDOWN));
        assert!(health.available(t1 + BASE_COOLDOWN * 2));
        // A successful probe brings it fully back: one failure no longer trips it.
        let t2 = t1 + BASE_COOLDOWN * 2;
        health.record_status(200, &HeaderMap::new(), t2);
        health.record_status(503, &HeaderMap::new(), t2);
        assert!(health.available(t2));
        // The cap holds however often it trips.
        let mut t = t2;
        for _ in 0..20 {
            for _ in 0..3 {
                health.record_status(503, &HeaderMap::new(), t);
            }
            t += MAX_COOLDOWN;
        }
        assert!(health.available(t));
    }

    #[test]
    fn transport_failures_count_separately() {
        let health = Health::new(PassiveConfig::default());
        let now = Instant::now();
        health.record_transport(TransportFailure::Connect, now);
        assert!(health.available(now));
        health.record_transport(TransportFailure::Connect, now);
        assert!(!health.available(now));
    }

    #[test]
    fn probes_take_down_and_bring_back() {
        let health = Health::new(PassiveConfig::default());
        let now = Instant::now();
        health.record_probe(false, 2, 2);
        assert!(health.available(now));
        health.record_probe(false, 2, 2);
        assert!(!health.available(now));
        health.record_probe(true, 2, 2);
        assert!(!health.available(now));
        health.record_probe(true, 2, 2);
        assert!(health.available(now));
    }

    #[test]
    fn a_429_without_retry_after_trips_at_once() {
        let health = Health::new(PassiveConfig::default());
        let now = Instant::now();
        health.record_status(429, &HeaderMap::new(), now);
        assert!(!health.available(now));
        assert!(health.available(now + BASE_COOLDOWN));
    }

    #[test]
    fn after_a_cooldown_one_trial_goes_and_the_rest_wait_for_its_answer() {
        let health = Health::new(PassiveConfig::default());
        let t0 = Instant::now();
        health.record_status(429, &HeaderMap::new(), t0);
        let t1 = t0 + BASE_COOLDOWN;
        assert!(health.available(t1) && health.claim(t1, Duration::from_secs(5)));
        assert!(!health.available(t1) && !health.claim(t1, Duration::from_secs(5)), "a second trial");
        health.record_status(200, &HeaderMap::new(), t1);
        assert!(health.available(t1) && health.claim(t1, Duration::from_secs(5)), "back: no trial needed");
        assert!(health.claim(t1, Duration::from_secs(5)));
        // A trial whose answer never comes frees the instance once its hold is over.
        health.record_status(429, &HeaderMap::new(), t1);
        let t2 = t1 + BASE_COOLDOWN;
        assert!(health.claim(t2, Duration::from_secs(5)));
        assert!(!health.available(t2 + Duration::from_secs(4)));
        assert!(health.available(t2 + Duration::from_secs(5)));
    }

    /// A provider down for 60 s, a request every 4 s, default settings: a handful of trials
    /// during the outage, and the instance serves again within 20 s of recovering, wherever in
    /// a back-off window the recovery falls.
    #[test]
    fn a_minute_long_outage_costs_few_trials_and_recovery_is_noticed_within_twenty_seconds() {
        for recovery_ms in (60_000..76_000).step_by(250) {
            let health = Health::new(PassiveConfig::default());
            let start = Instant::now();
            let recovered = start + Duration::from_millis(recovery_ms);
            let mut trials_during_outage = 0;
            let mut back_at = None;
            for request in 0..40u64 {
                let now = start + Duration::from_secs(4 * request);
                if !(health.available(now) && health.claim(now, Duration::from_secs(30))) {
                    continue;
                }
                if now < recovered {
                    trials_during_outage += 1;
                    health.record_status(503, &HeaderMap::new(), now);
                } else {
                    health.record_status(200, &HeaderMap::new(), now);
                    back_at.get_or_insert(now);
                }
            }
            let back_after = back_at.expect("served again") - recovered;
            assert!(back_after <= Duration::from_secs(20), "recovered at {recovery_ms} ms, back {back_after:?} later");
            assert!(trials_during_outage <= 9, "{trials_during_outage} attempts in a {recovery_ms} ms outage");
        }
    }
}
