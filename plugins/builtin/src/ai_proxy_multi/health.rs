//! Health of one instance across requests: passive checks on every answer, `Retry-After`
//! cooldowns, and the verdict of active probes. Times are `tokio::time::Instant`, so tests can
//! pause the clock.

use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use http::HeaderMap;
use switchyard_sdk::InstanceState;
use tokio::time::Instant;

use super::config::PassiveConfig;

/// The first cooldown after passive checks trip; each trip in a row doubles it, up to the cap.
const BASE_COOLDOWN: Duration = Duration::from_secs(1);
const MAX_COOLDOWN: Duration = Duration::from_secs(60);

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
    /// The active checker's verdict.
    active_down: bool,
    active_successes: u32,
    active_failures: u32,
}

pub struct Health {
    passive: PassiveConfig,
    state: Mutex<State>,
}

impl Health {
    pub fn new(passive: PassiveConfig) -> Self {
        Self { passive, state: Mutex::default() }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Whether the instance may be picked at `now`.
    pub fn available(&self, now: Instant) -> bool {
        let state = self.state();
        !state.active_down && state.cooldown_until.is_none_or(|until| now >= until)
    }

    /// When a cooling instance comes back (`None` when it is not cooling, or is down by probe).
    pub fn back_at(&self) -> Option<Instant> {
        let state = self.state();
        if state.active_down {
            return None;
        }
        state.cooldown_until
    }

    /// Where the instance stands at `now`, for metrics: probed down, cooling (and for how long
    /// yet), or in rotation.
    pub fn standing(&self, now: Instant) -> InstanceState {
        let state = self.state();
        if state.active_down {
            return InstanceState::Down;
        }
        match state.cooldown_until {
            Some(until) if until > now => InstanceState::Cooling { back_in: until - now },
            _ => InstanceState::Healthy,
        }
    }

    /// Records an upstream answer. A 429 with `Retry-After` takes the instance out until then.
    pub fn record_status(&self, status: u16, headers: &HeaderMap, now: Instant) {
        let mut state = self.state();
        if status == 429 {
            if let Some(wait) = retry_after(headers) {
                let until = now + wait;
                state.cooldown_until = Some(state.cooldown_until.map_or(until, |u| u.max(until)));
            }
        }
        if self.passive.unhealthy.http_statuses.contains(&status) {
            state.http_failures += 1;
            state.successes = 0;
            if state.level > 0 || state.http_failures >= self.passive.unhealthy.http_failures {
                trip(&mut state, now);
            }
        } else if self.passive.healthy.http_statuses.contains(&status) {
            self.record_success(&mut state);
        }
    }

    pub fn record_transport(&self, failure: TransportFailure, now: Instant) {
        let mut state = self.state();
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
            trip(&mut state, now);
        }
    }

    fn record_success(&self, state: &mut State) {
        state.http_failures = 0;
        state.tcp_failures = 0;
        state.timeouts = 0;
        state.successes += 1;
        if state.successes >= self.passive.healthy.successes {
            state.level = 0;
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
}

/// Out of rotation for a cooldown that doubles with each trip in a row.
fn trip(state: &mut State, now: Instant) {
    let cooldown = BASE_COOLDOWN.saturating_mul(1 << state.level.min(16)).min(MAX_COOLDOWN);
    let until = now + cooldown;
    state.cooldown_until = Some(state.cooldown_until.map_or(until, |u| u.max(until)));
    state.level += 1;
    state.http_failures = 0;
    state.tcp_failures = 0;
    state.timeouts = 0;
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
    fn state_tells_cooling_from_down_from_healthy() {
        let health = Health::new(PassiveConfig::default());
        let now = Instant::now();
        assert_eq!(health.standing(now), InstanceState::Healthy);
        health.record_status(429, &headers("30"), now);
        assert_eq!(health.standing(now), InstanceState::Cooling { back_in: Duration::from_secs(30) });
        assert_eq!(health.standing(now + Duration::from_secs(30)), InstanceState::Healthy);
        health.record_probe(false, 1, 1);
        assert_eq!(health.standing(now), InstanceState::Down);
    }
}
