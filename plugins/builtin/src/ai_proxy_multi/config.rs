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
