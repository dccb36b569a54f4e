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
    /// A 429 whose `Retry-After` is at most this long (ms) is waited out and the same instance
    /// asked again; 0: never wait.
    #[serde(default)]
    pub retry_after_max_wait_ms: u64,
    /// Retries of a 5xx or a failed connection on the same instance before falling back.
    #[serde(default)]
    pub same_instance_retries: u32,
    /// Event streams: the first event must come within this long (ms) of the attempt, else the
    /// attempt is abandoned for the next instance; 0: off. Instances may set their own.
    #[serde(default)]
    pub first_token_timeout_ms: u64,
    /// Event streams: the longest silence (ms) between two events once streaming; unset: `timeout`.
    pub stream_idle_timeout_ms: Option<u64>,
    /// Provider error codes (OpenAI `error.code` or `error.type`, Anthropic `error.type`) that
    /// move a request to the next instance, whatever their status.
    #[serde(default)]
    pub fallback_error_codes: Vec<String>,
    /// A stream that breaks after bytes reached the client is taken up by the next instance.
    #[serde(default)]
    pub stream_resume: bool,
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
    /// Overrides the plugin's `first_token_timeout_ms` for this instance.
    pub first_token_timeout_ms: Option<u64>,
    /// Whether this instance continues a final assistant message (a prefill) when it takes up a
    /// broken stream; unset: by provider (see `takes_prefill_by_default`).
    pub accepts_prefill: Option<bool>,
}

/// Whether a provider continues a final assistant message rather than answering it with a new
/// turn. OpenAI's Chat Completions API (and Azure's) and DeepSeek's (outside its beta prefix
/// API) answer anew, so they take a broken stream up by a restart instead.
pub fn takes_prefill_by_default(provider: &str) -> bool {
    !matches!(provider, "openai" | "azure-openai" | "deepseek" | "gemini" | "aimlapi")
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
