//! The route object: APISIX (`uri`, `uris`) and API7 (`paths`) field names alike.

use std::collections::BTreeMap;

use serde::Deserialize;
use switchyard_sdk::{parse_config, ConfigError};

use super::upstream::UpstreamSpec;

pub const METHODS: [&str; 9] = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "CONNECT", "TRACE"];

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteSpec {
    pub id: Option<String>,
    pub name: Option<String>,
    pub desc: Option<String>,
    pub labels: Option<BTreeMap<String, String>>,
    pub paths: Option<Vec<String>>,
    pub uri: Option<String>,
    pub uris: Option<Vec<String>>,
    pub hosts: Option<Vec<String>>,
    pub host: Option<String>,
    pub methods: Option<Vec<String>>,
    /// Higher wins among routes matching the same path.
    #[serde(default)]
    pub priority: i64,
    pub service_id: Option<String>,
    #[serde(default)]
    pub plugins: serde_json::Map<String, serde_json::Value>,
    /// Checked separately by [`UpstreamSpec::parse`], so errors carry the `upstream.` path.
    pub upstream: Option<serde_json::Value>,
    /// 0 disables the route; 1 (default) enables it.
    pub status: Option<u8>,
    pub create_time: Option<u64>,
    pub update_time: Option<u64>,
}

impl RouteSpec {
    /// Parses and checks a stored or submitted route. Plugins are checked by the registry.
    pub fn parse(value: &serde_json::Value) -> Result<(Self, Option<UpstreamSpec>), ConfigError> {
        let spec: RouteSpec = parse_config(value)?;
        let upstream = spec.upstream.as_ref().map(|u| UpstreamSpec::parse(u, "upstream")).transpose()?;
        spec.check()?;
        Ok((spec, upstream))
    }

    fn check(&self) -> Result<(), ConfigError> {
        if self.all_paths().is_empty() {
            return Err(ConfigError::new("paths", "a route needs `paths`, `uri` or `uris`"));
        }
        let paths = named(&[("paths", &self.paths), ("uris", &self.uris)], ("uri", &self.uri));
        for (field, path) in paths {
            if !path.starts_with('/') {
                return Err(ConfigError::new(field, "must start with `/`"));
            }
            if path[..path.len() - 1].contains('*') {
                return Err(ConfigError::new(field, "`*` is allowed only at the end"));
            }
        }
        for (i, method) in self.methods.iter().flatten().enumerate() {
            if !METHODS.contains(&method.as_str()) {
                return Err(ConfigError::new(
                    format!("methods[{i}]"),
                    format!("must be one of {}", METHODS.join(", ")),
                ));
            }
        }
        if let Some(status) = self.status {
            if status > 1 {
                return Err(ConfigError::new("status", "must be 0 (disabled) or 1 (enabled)"));
            }
        }
        for (field, host) in named(&[("hosts", &self.hosts)], ("host", &self.host)) {
            if host.is_empty() || host.contains('/') {
                return Err(ConfigError::new(field, "is not a host name"));
            }
        }
        Ok(())
    }

    /// `paths`, `uris` and `uri` together.
    pub fn all_paths(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        out.extend(self.paths.iter().flatten().map(String::as_str));
        out.extend(self.uris.iter().flatten().map(String::as_str));
        out.extend(self.uri.as_deref());
        out
    }

    /// `hosts` and `host` together.
    pub fn all_hosts(&self) -> Vec<&str> {
        let mut out: Vec<&str> = self.hosts.iter().flatten().map(String::as_str).collect();
        out.extend(self.host.as_deref());
        out
    }

    pub fn enabled(&self) -> bool {
        self.status != Some(0)
    }
}

/// Every value of some list fields and one single field, each with its field path (`paths[1]`).
fn named<'a>(lists: &[(&str, &'a Option<Vec<String>>)], single: (&str, &'a Option<String>)) -> Vec<(String, &'a str)> {
    let mut out = Vec::new();
    for (field, list) in lists {
        out.extend(list.iter().flatten().enumerate().map(|(i, v)| (format!("{field}[{i}]"), v.as_str())));
    }
    out.extend(single.1.as_deref().map(|v| (single.0.to_string(), v)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn accepts_paths_uri_and_uris() {
        let (spec, _) = RouteSpec::parse(&json!({"paths": ["/a"], "uri": "/b", "uris": ["/c"]})).unwrap();
        assert_eq!(spec.all_paths(), ["/a", "/c", "/b"]);
    }

    #[test]
    fn rejects_bad_input_with_the_field_named() {
        assert_eq!(RouteSpec::parse(&json!({})).unwrap_err().path, "paths");
        assert_eq!(RouteSpec::parse(&json!({"uri": "/a", "methods": ["FETCH"]})).unwrap_err().path, "methods[0]");
        assert_eq!(RouteSpec::parse(&json!({"uri": "/a", "bogus": 1})).unwrap_err().path, "bogus");
        assert_eq!(
            RouteSpec::parse(&json!({"uri": "/a", "upstream": {"nodes": {"x:1": -1}}})).unwrap_err().path,
            "upstream.nodes"
        );
    }
}
