//! The serde side of `ai-proxy-multi` (Apache APISIX 3.18 field names and defaults).

use serde::Deserialize;
use serde_json::{Map, Value};

use switchyard_llm::config::OverrideConfig;
use switchyard_llm::providers::AuthConfig;

pub use crate::health::checks::ChecksConfig;

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
