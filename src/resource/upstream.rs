//! The APISIX upstream object (the subset switchyard serves).

use std::collections::BTreeMap;

use serde::Deserialize;
use switchyard_sdk::{parse_config, ConfigError};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamSpec {
    #[serde(default)]
    pub id: Option<serde_json::Value>,
    pub name: Option<String>,
    pub desc: Option<String>,
    #[serde(default)]
    pub labels: Option<BTreeMap<String, String>>,
    pub nodes: NodesSpec,
    /// `roundrobin` (smooth weighted, the default), `chash` (consistent hashing on `key`) or
    /// `least_conn` (fewest requests in flight per weight).
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    /// What `chash` hashes: `vars` (default: `key` is a variable such as `host`, `remote_addr`,
    /// `arg_user`), `header` or `cookie` (`key` is its name), or `consumer` (the identified
    /// consumer's name; no `key`).
    #[serde(default)]
    pub hash_on: Option<String>,
    #[serde(default)]
    pub key: Option<String>,
    #[serde(default)]
    pub scheme: Option<String>,
    /// `pass` (client's Host), `node` (the node's host) or `rewrite` (`upstream_host`).
    #[serde(default)]
    pub pass_host: Option<String>,
    #[serde(default)]
    pub upstream_host: Option<String>,
    #[serde(default)]
    pub timeout: Option<TimeoutSpec>,
    /// How many other nodes to try after a connection failure (default: all of them).
    #[serde(default)]
    pub retries: Option<u32>,
    /// Seconds after the first attempt past which no retry starts (0 or absent: no limit).
    #[serde(default)]
    pub retry_timeout: Option<f64>,
    #[serde(default)]
    pub keepalive_pool: Option<KeepalivePoolSpec>,
    /// Active probes and passive observation of the nodes, as on APISIX upstreams.
    #[serde(default)]
    pub checks: Option<switchyard_builtin::health::checks::ChecksConfig>,
    pub create_time: Option<u64>,
    pub update_time: Option<u64>,
}

/// APISIX's per-upstream keep-alive pool.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeepalivePoolSpec {
    /// Idle connections kept per node (APISIX default 320).
    #[serde(default = "default_pool_size")]
    pub size: u32,
    /// Seconds an idle connection is kept (APISIX default 60).
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout: f64,
    /// Requests one connection carries before it is closed (APISIX default 1000). An upstream
    /// without `keepalive_pool` sets no such limit.
    #[serde(default = "default_requests_per_connection")]
    pub requests: u32,
}

fn default_pool_size() -> u32 {
    320
}

fn default_idle_timeout() -> f64 {
    60.0
}

fn default_requests_per_connection() -> u32 {
    1000
}

/// `{"host:port": weight}` or `[{"host", "port", "weight"}]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum NodesSpec {
    Map(BTreeMap<String, u32>),
    List(Vec<NodeSpec>),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSpec {
    pub host: String,
    #[serde(default)]
    pub port: Option<u16>,
    pub weight: u32,
    #[serde(default)]
    pub priority: Option<i64>,
}

/// Seconds, as APISIX has them.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimeoutSpec {
    pub connect: f64,
    pub send: f64,
    pub read: f64,
}

/// A node flattened: `host:port` and its weight.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub authority: String,
    pub host: String,
    pub weight: u32,
}

impl UpstreamSpec {
    /// Parses and checks an upstream object found at `path` (for error messages).
    pub fn parse(value: &serde_json::Value, path: &str) -> Result<Self, ConfigError> {
        let spec: UpstreamSpec = parse_config(value).map_err(|e| e.within(path))?;
        spec.check().map_err(|e| e.within(path))?;
        Ok(spec)
    }

    pub fn check(&self) -> Result<(), ConfigError> {
        match self.kind.as_deref() {
            None | Some("roundrobin") | Some("least_conn") => {}
            Some("chash") => self.check_hash()?,
            Some(_) => return Err(ConfigError::new("type", "must be one of roundrobin, chash, least_conn")),
        }
        if let Some(t) = self.retry_timeout {
            if !(t >= 0.0 && t.is_finite()) {
                return Err(ConfigError::new("retry_timeout", "must be a non-negative number of seconds"));
            }
        }
        if let Some(pool) = self.keepalive_pool {
            if pool.size == 0 {
                return Err(ConfigError::new("keepalive_pool.size", "must be at least 1"));
            }
            if pool.requests == 0 {
                return Err(ConfigError::new("keepalive_pool.requests", "must be at least 1"));
            }
            if !(pool.idle_timeout >= 0.0 && pool.idle_timeout.is_finite()) {
                return Err(ConfigError::new(
                    "keepalive_pool.idle_timeout",
                    "must be a non-negative number of seconds",
                ));
            }
        }
        if let Some(scheme) = &self.scheme {
            if scheme != "http" && scheme != "https" {
                return Err(ConfigError::new("scheme", "must be `http` or `https`"));
            }
        }
        match self.pass_host.as_deref() {
            None | Some("pass") | Some("node") => {}
            Some("rewrite") if self.upstream_host.as_deref().is_some_and(|h| !h.is_empty()) => {}
            Some("rewrite") => {
                return Err(ConfigError::new("upstream_host", "is required when pass_host is `rewrite`"))
            }
            Some(_) => return Err(ConfigError::new("pass_host", "must be one of pass, node, rewrite")),
        }
        if let Some(t) = self.timeout {
            for (name, v) in [("connect", t.connect), ("send", t.send), ("read", t.read)] {
                if !(v > 0.0 && v.is_finite()) {
                    return Err(ConfigError::new(format!("timeout.{name}"), "must be a positive number of seconds"));
                }
            }
        }
        let nodes = self.nodes()?;
        if nodes.is_empty() {
            return Err(ConfigError::new("nodes", "must hold at least one node"));
        }
        Ok(())
    }

    /// `chash` hashes what `hash_on` says; every source but `consumer` needs a `key`.
    fn check_hash(&self) -> Result<(), ConfigError> {
        let key = self.key.as_deref().filter(|k| !k.is_empty());
        if key.is_none() && self.hash_on.as_deref() != Some("consumer") {
            return Err(ConfigError::new("key", "is required when type is `chash`"));
        }
        switchyard_sdk::chash::HashOn::parse(self.hash_on.as_deref(), key).map(|_| ())
    }

    /// The nodes in a stable order, each with a port (80/443 by scheme when unset).
    pub fn nodes(&self) -> Result<Vec<Node>, ConfigError> {
        let default_port = if self.scheme.as_deref() == Some("https") { 443 } else { 80 };
        let mut out = Vec::new();
        match &self.nodes {
            NodesSpec::Map(map) => {
                for (address, weight) in map {
                    let (host, port) = split_host_port(address)
                        .ok_or_else(|| ConfigError::new(format!("nodes.{address}"), "is not host:port"))?;
                    let port = port.unwrap_or(default_port);
                    out.push(Node { authority: format!("{host}:{port}"), host: host.to_string(), weight: *weight });
                }
            }
            NodesSpec::List(list) => {
                for (i, node) in list.iter().enumerate() {
                    if node.host.is_empty() || node.host.contains('/') {
                        return Err(ConfigError::new(format!("nodes[{i}].host"), "must be a host name or address"));
                    }
                    let port = node.port.unwrap_or(default_port);
                    out.push(Node {
                        authority: format!("{}:{port}", node.host),
                        host: node.host.clone(),
                        weight: node.weight,
                    });
                }
            }
        }
        Ok(out)
    }
}

/// `host`, `host:port`, `[v6]:port`. `None` when the port is not a number.
fn split_host_port(address: &str) -> Option<(&str, Option<u16>)> {
    if address.is_empty() || address.contains('/') {
        return None;
    }
    if let Some(rest) = address.strip_prefix('[') {
        let (host, tail) = rest.split_once(']')?;
        return match tail.strip_prefix(':') {
            Some(port) => Some((host, Some(port.parse().ok()?))),
            None if tail.is_empty() => Some((host, None)),
            None => None,
        };
    }
    match address.rsplit_once(':') {
        Some((host, port)) => Some((host, Some(port.parse().ok()?))),
        None => Some((address, None)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn accepts_both_node_shapes() {
        let map = UpstreamSpec::parse(&json!({"nodes": {"127.0.0.1:8080": 3}}), "upstream").unwrap();
        assert_eq!(map.nodes().unwrap()[0].authority, "127.0.0.1:8080");
        let list = UpstreamSpec::parse(
            &json!({"scheme": "https", "nodes": [{"host": "example.com", "weight": 1}]}),
            "upstream",
        )
        .unwrap();
        assert_eq!(list.nodes().unwrap()[0].authority, "example.com:443");
    }

    #[test]
    fn errors_name_the_field() {
        let err = UpstreamSpec::parse(&json!({"nodes": {"a:1": 1}, "pass_host": "rewrite"}), "upstream").unwrap_err();
        assert_eq!(err.path, "upstream.upstream_host");
        let err = UpstreamSpec::parse(&json!({"nodes": {}}), "upstream").unwrap_err();
        assert_eq!(err.path, "upstream.nodes");
        let err = UpstreamSpec::parse(&json!({"nodes": {"a:x": 1}}), "upstream").unwrap_err();
        assert_eq!(err.path, "upstream.nodes.a:x");
    }
}
