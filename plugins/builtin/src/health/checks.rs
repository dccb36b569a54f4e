//! APISIX's upstream `checks` (active probes and passive observation), shared by plain
//! upstreams and `ai-proxy-multi` instances.

use serde::Deserialize;
use switchyard_sdk::ConfigError;

/// APISIX's upstream `checks`: `active` and `passive`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChecksConfig {
    pub active: Option<ActiveConfig>,
    pub passive: Option<PassiveConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActiveConfig {
    /// `http`, `https` or `tcp`.
    #[serde(default = "http", rename = "type")]
    pub kind: String,
    /// Seconds.
    #[serde(default = "one_second")]
    pub timeout: f64,
    #[serde(default)]
    pub concurrency: Option<u32>,
    #[serde(default = "slash")]
    pub http_path: String,
    pub host: Option<String>,
    pub port: Option<u16>,
    #[serde(default)]
    pub https_verify_certificate: Option<bool>,
    /// `"Name: value"` lines.
    #[serde(default)]
    pub req_headers: Vec<String>,
    #[serde(default)]
    pub healthy: ActiveHealthy,
    #[serde(default)]
    pub unhealthy: ActiveUnhealthy,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActiveHealthy {
    /// Seconds between probes of a healthy instance.
    #[serde(default = "one_second")]
    pub interval: f64,
    #[serde(default = "ok_statuses")]
    pub http_statuses: Vec<u16>,
    #[serde(default = "two")]
    pub successes: u32,
}

impl Default for ActiveHealthy {
    fn default() -> Self {
        Self { interval: one_second(), http_statuses: ok_statuses(), successes: two() }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActiveUnhealthy {
    /// Seconds between probes of an unhealthy instance.
    #[serde(default = "one_second")]
    pub interval: f64,
    #[serde(default = "bad_statuses")]
    pub http_statuses: Vec<u16>,
    #[serde(default = "five")]
    pub http_failures: u32,
    #[serde(default = "two")]
    pub tcp_failures: u32,
    #[serde(default = "three")]
    pub timeouts: u32,
}

impl Default for ActiveUnhealthy {
    fn default() -> Self {
        Self {
            interval: one_second(),
            http_statuses: bad_statuses(),
            http_failures: five(),
            tcp_failures: two(),
            timeouts: three(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PassiveConfig {
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    #[serde(default)]
    pub healthy: PassiveHealthy,
    #[serde(default)]
    pub unhealthy: PassiveUnhealthy,
    /// The first cooldown (ms) after the checks trip; each trip in a row doubles it.
    #[serde(default = "one_second_ms")]
    pub cooldown_ms: u64,
    /// The longest cooldown (ms): how long a recovered instance waits at most for its trial.
    #[serde(default = "fifteen_seconds_ms")]
    pub max_cooldown_ms: u64,
}

impl Default for PassiveConfig {
    fn default() -> Self {
        Self {
            kind: None,
            healthy: PassiveHealthy::default(),
            unhealthy: PassiveUnhealthy::default(),
            cooldown_ms: one_second_ms(),
            max_cooldown_ms: fifteen_seconds_ms(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PassiveHealthy {
    #[serde(default = "ok_statuses_passive")]
    pub http_statuses: Vec<u16>,
    /// Successes in a row that bring a cooled-down instance fully back.
    #[serde(default = "one")]
    pub successes: u32,
}

impl Default for PassiveHealthy {
    fn default() -> Self {
        Self { http_statuses: ok_statuses_passive(), successes: one() }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PassiveUnhealthy {
    #[serde(default = "passive_bad_statuses")]
    pub http_statuses: Vec<u16>,
    #[serde(default = "three")]
    pub http_failures: u32,
    #[serde(default = "two")]
    pub tcp_failures: u32,
    #[serde(default = "three")]
    pub timeouts: u32,
}

impl Default for PassiveUnhealthy {
    fn default() -> Self {
        Self { http_statuses: passive_bad_statuses(), http_failures: three(), tcp_failures: two(), timeouts: three() }
    }
}

fn http() -> String {
    "http".into()
}
fn slash() -> String {
    "/".into()
}
fn one_second() -> f64 {
    1.0
}
fn one_second_ms() -> u64 {
    1000
}
fn fifteen_seconds_ms() -> u64 {
    15_000
}
fn one() -> u32 {
    1
}
fn two() -> u32 {
    2
}
fn three() -> u32 {
    3
}
fn five() -> u32 {
    5
}
fn ok_statuses() -> Vec<u16> {
    vec![200, 302]
}
fn ok_statuses_passive() -> Vec<u16> {
    (200..400).collect()
}
fn bad_statuses() -> Vec<u16> {
    vec![429, 404, 500, 501, 502, 503, 504, 505]
}
fn passive_bad_statuses() -> Vec<u16> {
    vec![429, 500, 502, 503, 504]
}

impl ActiveConfig {
    pub fn check(&self) -> Result<(), ConfigError> {
        if !matches!(self.kind.as_str(), "http" | "https" | "tcp") {
            return Err(ConfigError::new("type", "must be http, https or tcp"));
        }
        for (name, value) in [
            ("timeout", self.timeout),
            ("healthy.interval", self.healthy.interval),
            ("unhealthy.interval", self.unhealthy.interval),
        ] {
            if !(value > 0.0 && value.is_finite()) {
                return Err(ConfigError::new(name, "must be a positive number of seconds"));
            }
        }
        for (i, line) in self.req_headers.iter().enumerate() {
            if !line.contains(':') {
                return Err(ConfigError::new(format!("req_headers[{i}]"), "must look like `Name: value`"));
            }
        }
        Ok(())
    }
}
