//! The serde side of `ai-proxy-multi` (Apache APISIX 3.18 field names and defaults).

use serde::Deserialize;
use serde_json::{Map, Value};

use switchyard_llm::config::OverrideConfig;
use switchyard_llm::providers::AuthConfig;
use switchyard_sdk::ConfigError;

#[derive(Debug, Deserialize)]
pub struct MultiConfig {
    pub instances: Vec<InstanceConfig>,
    #[serde(default)]
    pub fallback_strategy: Option<FallbackStrategyConfig>,
    #[serde(default)]
    pub fallback_http_statuses: Vec<u16>,
    pub max_retries: Option<u32>,
    pub retry_on_failure_within_ms: Option<u64>,
    #[serde(default)]
    pub balancer: BalancerConfig,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstanceConfig {
    pub name: String,
    pub provider: String,
    pub auth: AuthConfig,
    pub weight: u32,
    #[serde(default)]
    pub priority: i64,
    #[serde(default)]
    pub options: Map<String, Value>,
    #[serde(default, rename = "override")]
    pub overrides: OverrideConfig,
    #[serde(default)]
    pub provider_conf: Option<Value>,
    #[serde(default)]
    pub checks: Option<ChecksConfig>,
}

/// `"http_429"`, or `["http_429", "http_5xx"]`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum FallbackStrategyConfig {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BalancerConfig {
    #[serde(default = "roundrobin")]
    pub algorithm: String,
    #[serde(default = "vars")]
    pub hash_on: String,
    pub key: Option<String>,
}

impl Default for BalancerConfig {
    fn default() -> Self {
        Self { algorithm: roundrobin(), hash_on: vars(), key: None }
    }
}

fn roundrobin() -> String {
    "roundrobin".into()
}

fn vars() -> String {
    "vars".into()
}

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

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PassiveConfig {
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    #[serde(default)]
    pub healthy: PassiveHealthy,
    #[serde(default)]
    pub unhealthy: PassiveUnhealthy,
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
