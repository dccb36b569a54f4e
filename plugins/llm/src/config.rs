//! The serde side of `ai-proxy` (and of what `ai-proxy-multi` shares with it): APISIX 3.18 field
//! names, types and defaults.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::providers::AuthConfig;
use switchyard_sdk::ConfigError;

#[derive(Debug, Deserialize)]
pub struct AiProxyConfig {
    pub provider: String,
    pub auth: AuthConfig,
    #[serde(default)]
    pub options: Map<String, Value>,
    #[serde(default, rename = "override")]
    pub overrides: OverrideConfig,
    #[serde(default)]
    pub provider_conf: Option<Value>,
}

/// Transport and limits, at plugin level in both AI plugins; parsed from the plugin's object.
#[derive(Debug, Deserialize)]
pub struct CommonConfig {
    /// Milliseconds: to connect, to the response head, and between two body reads.
    #[serde(default = "default_timeout")]
    pub timeout: u64,
    #[serde(default = "yes")]
    pub keepalive: bool,
    /// Milliseconds an idle connection is kept.
    #[serde(default = "default_keepalive_timeout")]
    pub keepalive_timeout: u64,
    /// Idle connections kept per host.
    #[serde(default = "default_keepalive_pool")]
    pub keepalive_pool: u32,
    #[serde(default = "yes")]
    pub ssl_verify: bool,
    pub max_req_body_size: Option<u64>,
    pub max_stream_duration_ms: Option<u64>,
    pub max_response_bytes: Option<u64>,
    /// Milliseconds: SSE events arriving within this window go to the client as one write.
    /// 0 (the default here): every event is flushed the moment it is complete.
    #[serde(default)]
    pub streaming_flush_interval_ms: u64,
    #[serde(default)]
    pub logging: LoggingConfig,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OverrideConfig {
    pub endpoint: Option<String>,
    pub llm_options: Option<LlmOptions>,
    /// Per protocol family (`{"openai": {...}}`): deep-merged into the body; the client's values
    /// win unless `request_body_force_override`.
    pub request_body: Option<BTreeMap<String, Value>>,
    #[serde(default)]
    pub request_body_force_override: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LlmOptions {
    /// Replaces the request's `max_tokens`.
    pub max_tokens: Option<u64>,
}

#[derive(Debug, Default, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoggingConfig {
    /// Model, duration, time to first token and token counts in the access log.
    #[serde(default)]
    pub summaries: bool,
    /// Also the request messages and the response text.
    #[serde(default)]
    pub payloads: bool,
}

fn default_timeout() -> u64 {
    30_000
}

fn default_keepalive_timeout() -> u64 {
    60_000
}

fn default_keepalive_pool() -> u32 {
    30
}

fn yes() -> bool {
    true
}

impl CommonConfig {
    pub fn check(&self) -> Result<(), ConfigError> {
        if self.timeout == 0 {
            return Err(ConfigError::new("timeout", "must be at least 1 (milliseconds)"));
        }
        if self.keepalive_timeout < 1000 {
            return Err(ConfigError::new("keepalive_timeout", "must be at least 1000 (milliseconds)"));
        }
        if self.keepalive_pool == 0 {
            return Err(ConfigError::new("keepalive_pool", "must be at least 1"));
        }
        for (name, value) in [
            ("max_req_body_size", self.max_req_body_size),
            ("max_stream_duration_ms", self.max_stream_duration_ms),
            ("max_response_bytes", self.max_response_bytes),
        ] {
            if value == Some(0) {
                return Err(ConfigError::new(name, "must be at least 1"));
            }
        }
        Ok(())
    }
}
