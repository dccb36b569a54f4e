//! A direct model's `cooldown` (AISIX field names): when a failure takes the model out of its
//! routing aliases' rotation, and for how long. It compiles to the same health `ai-proxy-multi`
//! instances keep, so both surfaces rest and try a provider alike.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use switchyard_sdk::ConfigError;

use crate::ai_proxy_multi::config::{PassiveConfig, PassiveHealthy, PassiveUnhealthy};
use crate::ai_proxy_multi::health::Health;

/// The AISIX `cooldown` object. The durations differ from AISIX's (30 s, 600 s): with these a
/// provider back from an outage serves again within 20 s, as `ai-proxy-multi`'s does.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Cooldown {
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Seconds out after the first failure; each failure in a row doubles it.
    #[serde(default = "one")]
    pub default_seconds: f64,
    /// The longest time out, in seconds.
    #[serde(default = "fifteen")]
    pub max_seconds: f64,
    /// A 429's `Retry-After` sets the time out instead.
    #[serde(default = "yes")]
    pub honor_retry_after: bool,
    #[serde(default = "trigger_statuses")]
    pub trigger_statuses: Vec<u16>,
    #[serde(default = "yes")]
    pub trigger_on_timeout: bool,
    #[serde(default = "yes")]
    pub trigger_on_transport: bool,
}

impl Default for Cooldown {
    fn default() -> Self {
        Cooldown {
            enabled: true,
            default_seconds: one(),
            max_seconds: fifteen(),
            honor_retry_after: true,
            trigger_statuses: trigger_statuses(),
            trigger_on_timeout: true,
            trigger_on_transport: true,
        }
    }
}

fn yes() -> bool {
    true
}
fn one() -> f64 {
    1.0
}
fn fifteen() -> f64 {
    15.0
}
fn trigger_statuses() -> Vec<u16> {
    vec![401, 408, 429, 500, 502, 503, 504]
}

impl Cooldown {
    /// Checks the fields; errors are relative to the `cooldown` object.
    pub fn check(&self) -> Result<(), ConfigError> {
        if !(self.default_seconds > 0.0 && self.default_seconds.is_finite()) {
            return Err(ConfigError::new("default_seconds", "must be a positive number of seconds"));
        }
        if !(self.max_seconds >= self.default_seconds && self.max_seconds.is_finite()) {
            return Err(ConfigError::new("max_seconds", "must be a number of seconds at least default_seconds"));
        }
        if let Some(i) = self.trigger_statuses.iter().position(|s| !(100..=599).contains(s)) {
            return Err(ConfigError::new(format!("trigger_statuses[{i}]"), "must be an HTTP status"));
        }
        Ok(())
    }

    /// The health this cooldown keeps: a trigger takes the model out at once.
    pub fn health(&self) -> Health {
        let never = u32::MAX;
        let trips = |on: bool| if on && self.enabled { 1 } else { never };
        let passive = PassiveConfig {
            kind: None,
            healthy: PassiveHealthy::default(),
            unhealthy: PassiveUnhealthy {
                http_statuses: if self.enabled { self.trigger_statuses.clone() } else { Vec::new() },
                http_failures: 1,
                tcp_failures: trips(self.trigger_on_transport),
                timeouts: trips(self.trigger_on_timeout),
            },
            cooldown_ms: Duration::from_secs_f64(self.default_seconds).as_millis().max(1) as u64,
            max_cooldown_ms: Duration::from_secs_f64(self.max_seconds).as_millis().max(1) as u64,
        };
        let health = Health::new(passive);
        if self.honor_retry_after && self.enabled {
            health
        } else {
            health.ignoring_retry_after()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderMap;
    use tokio::time::Instant;

    #[test]
    fn a_trigger_takes_the_model_out_at_once_and_disabled_never_does() {
        let now = Instant::now();
        let health = Cooldown::default().health();
        health.record_status(503, &HeaderMap::new(), now);
        assert!(!health.available(now));
        assert!(health.available(now + Duration::from_secs(1)));
        let health = Cooldown { enabled: false, ..Cooldown::default() }.health();
        for _ in 0..10 {
            health.record_status(503, &HeaderMap::new(), now);
        }
        assert!(health.available(now));
        let quiet = Cooldown { trigger_statuses: vec![503], ..Cooldown::default() }.health();
        quiet.record_status(401, &HeaderMap::new(), now);
        assert!(quiet.available(now), "401 is not a trigger here");
    }

    #[test]
    fn bad_durations_are_named() {
        let zero = Cooldown { default_seconds: 0.0, ..Cooldown::default() };
        assert_eq!(zero.check().unwrap_err().path, "default_seconds");
        let short = Cooldown { max_seconds: 0.5, ..Cooldown::default() };
        assert_eq!(short.check().unwrap_err().path, "max_seconds");
    }
}
