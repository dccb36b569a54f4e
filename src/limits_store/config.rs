//! The node config's `rate_limit` section: where the model API counts the `rate_limit`s of API
//! keys and models (in this process, or a Redis every node shares), and its token estimate.

use std::time::Duration;

use serde::Deserialize;
use switchyard_builtin::model_api::quota::LimiterSettings;
use switchyard_sdk::{CounterPolicy, RedisSettings};

use crate::config::ConfigFileError;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitConfig {
    /// A Redis shared by every node; unset: each node counts in its own memory.
    pub redis: Option<RedisConfig>,
    /// Completion tokens reserved at admission for a request that sets no `max_tokens`.
    pub default_completion_tokens: u64,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self { redis: None, default_completion_tokens: LimiterSettings::default().default_completion_tokens }
    }
}

/// `rate_limit.redis`.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisConfig {
    pub host: String,
    #[serde(default = "redis_port")]
    pub port: u16,
    /// Redis ACL user (with `password`); only `password`: the `default` user.
    pub username: Option<String>,
    pub password: Option<String>,
    #[serde(default)]
    pub database: u32,
    /// The longest wait for a connection or an answer, in milliseconds.
    #[serde(default = "timeout_ms")]
    pub timeout_ms: u64,
    /// TLS (`rediss://`).
    #[serde(default)]
    pub ssl: bool,
    /// With `ssl`: check the server's certificate against the system's roots.
    #[serde(default = "yes")]
    pub ssl_verify: bool,
}

fn redis_port() -> u16 {
    6379
}
fn timeout_ms() -> u64 {
    1000
}
fn yes() -> bool {
    true
}

/// Written by hand so the password never reaches a log line.
impl std::fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("database", &self.database)
            .field("timeout_ms", &self.timeout_ms)
            .field("ssl", &self.ssl)
            .field("ssl_verify", &self.ssl_verify)
            .finish()
    }
}

impl RateLimitConfig {
    /// Checks what serde cannot; runs at config load.
    pub fn validate(&self) -> Result<(), ConfigFileError> {
        let invalid = |msg: &str| Err(ConfigFileError::Invalid(format!("rate_limit.{msg}")));
        if let Some(redis) = &self.redis {
            if redis.host.trim().is_empty() {
                return invalid("redis.host must name the Redis server");
            }
            if redis.timeout_ms == 0 {
                return invalid("redis.timeout_ms must be at least 1");
            }
            if redis.username.is_some() && redis.password.is_none() {
                return invalid("redis.username needs a password");
            }
        }
        Ok(())
    }

    /// What the model API's limiter is built with.
    pub fn settings(&self) -> LimiterSettings {
        let policy = match &self.redis {
            None => CounterPolicy::Local,
            Some(redis) => CounterPolicy::Redis(RedisSettings {
                host: redis.host.clone(),
                port: redis.port,
                username: redis.username.clone(),
                password: redis.password.clone(),
                database: redis.database,
                timeout: Duration::from_millis(redis.timeout_ms),
                ssl: redis.ssl,
                ssl_verify: redis.ssl_verify,
            }),
        };
        LimiterSettings { policy, default_completion_tokens: self.default_completion_tokens }
    }
}
