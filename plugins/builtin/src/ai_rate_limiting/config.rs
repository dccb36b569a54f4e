//! `ai-rate-limiting`'s config (APISIX 3.18 schema), parsed and checked.

use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;
use switchyard_sdk::{ConfigError, CounterPolicy, RedisClusterSettings, RedisSettings};

use super::cost_expr::Expr;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub limit: Option<Value>,
    pub time_window: Option<Value>,
    #[serde(default = "yes")]
    pub show_limit_quota_header: bool,
    #[serde(default = "total_tokens")]
    pub limit_strategy: String,
    pub cost_expr: Option<String>,
    #[serde(default)]
    pub instances: Vec<RawInstance>,
    #[serde(default)]
    pub rules: Vec<RawRule>,
    #[serde(default = "service_unavailable")]
    pub rejected_code: u16,
    pub rejected_msg: Option<String>,
    #[serde(default)]
    pub allow_degradation: bool,
    #[serde(default = "local")]
    pub policy: String,
    pub redis_host: Option<String>,
    #[serde(default = "redis_port")]
    pub redis_port: u16,
    pub redis_username: Option<String>,
    pub redis_password: Option<String>,
    #[serde(default)]
    pub redis_database: u32,
    #[serde(default = "redis_timeout")]
    pub redis_timeout: u64,
    #[serde(default)]
    pub redis_ssl: bool,
    #[serde(default)]
    pub redis_ssl_verify: bool,
    /// Accepted for compatibility: one multiplexed connection serves every request.
    #[serde(default)]
    #[expect(dead_code, reason = "accepted for APISIX compatibility")]
    pub redis_keepalive_timeout: Option<u64>,
    #[serde(default)]
    #[expect(dead_code, reason = "accepted for APISIX compatibility")]
    pub redis_keepalive_pool: Option<u64>,
    /// `policy: redis-cluster`: `host:port` of one or more of the cluster's nodes.
    #[serde(default)]
    pub redis_cluster_nodes: Vec<String>,
    pub redis_cluster_name: Option<String>,
    #[serde(default)]
    pub redis_cluster_ssl: bool,
    #[serde(default)]
    pub redis_cluster_ssl_verify: bool,
    /// Beyond APISIX: the completion tokens reserved for a request that sets no `max_tokens`.
    #[serde(default = "default_completion_tokens")]
    pub default_completion_tokens: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawInstance {
    pub name: String,
    pub limit: Value,
    pub time_window: Value,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRule {
    pub count: Value,
    pub time_window: Value,
    pub key: String,
    pub header_prefix: Option<String>,
}

fn yes() -> bool {
    true
}
fn total_tokens() -> String {
    "total_tokens".into()
}
fn service_unavailable() -> u16 {
    503
}
fn local() -> String {
    "local".into()
}
fn redis_port() -> u16 {
    6379
}
fn redis_timeout() -> u64 {
    1000
}
fn default_completion_tokens() -> u64 {
    256
}

/// Which usage a request is charged.
#[derive(Debug, Clone, PartialEq)]
pub enum Strategy {
    Total,
    Prompt,
    Completion,
    Expression(Expr),
}

/// A limit: so much per window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    pub limit: u64,
    pub window: Duration,
}

/// A positive integer given as a number or a string (APISIX accepts both).
pub fn positive(value: &Value, path: &str) -> Result<u64, ConfigError> {
    let n = match value {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    };
    n.filter(|n| *n > 0).ok_or_else(|| ConfigError::new(path, "must be a positive integer (a number or a string)"))
}

impl RawConfig {
    pub fn quota(&self) -> Result<Option<Quota>, ConfigError> {
        match (&self.limit, &self.time_window) {
            (None, None) => Ok(None),
            (Some(limit), Some(window)) => Ok(Some(Quota {
                limit: positive(limit, "limit")?,
                window: Duration::from_secs(positive(window, "time_window")?),
            })),
            (Some(_), None) => Err(ConfigError::new("time_window", "is required with limit")),
            (None, Some(_)) => Err(ConfigError::new("limit", "is required with time_window")),
        }
    }

    pub fn strategy(&self) -> Result<Strategy, ConfigError> {
        Ok(match self.limit_strategy.as_str() {
            "total_tokens" => Strategy::Total,
            "prompt_tokens" => Strategy::Prompt,
            "completion_tokens" => Strategy::Completion,
            "expression" => {
                let source = self
                    .cost_expr
                    .as_deref()
                    .ok_or_else(|| ConfigError::new("cost_expr", "is required for expression"))?;
                Strategy::Expression(Expr::parse(source).map_err(|e| ConfigError::new("cost_expr", e))?)
            }
            _ => {
                return Err(ConfigError::new(
                    "limit_strategy",
                    "must be one of total_tokens, prompt_tokens, completion_tokens, expression",
                ))
            }
        })
    }

    fn timeout(&self) -> Result<Duration, ConfigError> {
        if self.redis_timeout == 0 {
            return Err(ConfigError::new("redis_timeout", "must be a positive number of milliseconds"));
        }
        Ok(Duration::from_millis(self.redis_timeout))
    }

    pub fn policy(&self) -> Result<CounterPolicy, ConfigError> {
        match self.policy.as_str() {
            "local" => Ok(CounterPolicy::Local),
            "redis" => {
                let host = self.redis_host.clone().filter(|h| !h.is_empty());
                let host = host.ok_or_else(|| ConfigError::new("redis_host", "is required for policy redis"))?;
                Ok(CounterPolicy::Redis(RedisSettings {
                    host,
                    port: self.redis_port,
                    username: self.redis_username.clone(),
                    password: self.redis_password.clone(),
                    database: self.redis_database,
                    timeout: self.timeout()?,
                    ssl: self.redis_ssl,
                    ssl_verify: self.redis_ssl_verify,
                }))
            }
            "redis-cluster" => {
                if self.redis_cluster_nodes.is_empty() {
                    return Err(ConfigError::new("redis_cluster_nodes", "is required for policy redis-cluster"));
                }
                for (i, node) in self.redis_cluster_nodes.iter().enumerate() {
                    let port = node.rsplit_once(':').filter(|(host, _)| !host.is_empty()).map(|(_, port)| port);
                    if port.and_then(|p| p.parse::<u16>().ok()).is_none_or(|p| p == 0) {
                        return Err(ConfigError::new(format!("redis_cluster_nodes[{i}]"), "must be host:port"));
                    }
                }
                let name = self.redis_cluster_name.clone().filter(|n| !n.is_empty());
                let name =
                    name.ok_or_else(|| ConfigError::new("redis_cluster_name", "is required for policy redis-cluster"))?;
                Ok(CounterPolicy::RedisCluster(RedisClusterSettings {
                    nodes: self.redis_cluster_nodes.clone(),
                    name,
                    username: self.redis_username.clone(),
                    password: self.redis_password.clone(),
                    timeout: self.timeout()?,
                    ssl: self.redis_cluster_ssl,
                    ssl_verify: self.redis_cluster_ssl_verify,
                }))
            }
            "redis-sentinel" => Err(ConfigError::new(
                "policy",
                "redis-sentinel is not supported by this build: use local, redis or redis-cluster",
            )),
            _ => Err(ConfigError::new("policy", "must be one of local, redis, redis-cluster")),
        }
    }
}
