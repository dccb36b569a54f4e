//! The service object: hosts, a path prefix, plugins and an upstream shared by its routes.

use std::collections::BTreeMap;

use serde::Deserialize;
use switchyard_sdk::{parse_config, ConfigError};

use super::upstream::UpstreamSpec;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceSpec {
    pub id: Option<String>,
    pub name: Option<String>,
    pub desc: Option<String>,
    pub labels: Option<BTreeMap<String, String>>,
    pub hosts: Option<Vec<String>>,
    /// Prepended to the paths of the service's routes.
    pub path_prefix: Option<String>,
    #[serde(default)]
    pub plugins: serde_json::Map<String, serde_json::Value>,
    pub upstream: Option<serde_json::Value>,
    /// An upstream object, used when the service has no inline `upstream`.
    #[serde(default, deserialize_with = "super::id_ref")]
    pub upstream_id: Option<String>,
    pub create_time: Option<u64>,
    pub update_time: Option<u64>,
}

impl ServiceSpec {
    /// Parses and checks a stored or submitted service. Plugins are checked by the registry.
    pub fn parse(value: &serde_json::Value) -> Result<(Self, Option<UpstreamSpec>), ConfigError> {
        let spec: ServiceSpec = parse_config(value)?;
        let upstream = spec.upstream.as_ref().map(|u| UpstreamSpec::parse(u, "upstream")).transpose()?;
        if let Some(prefix) = &spec.path_prefix {
            if !prefix.starts_with('/') || prefix.contains('*') {
                return Err(ConfigError::new("path_prefix", "must start with `/` and hold no `*`"));
            }
        }
        Ok((spec, upstream))
    }

    /// A route path with this service's prefix in front.
    pub fn prefixed(&self, path: &str) -> String {
        match &self.path_prefix {
            Some(prefix) => format!("{}{path}", prefix.trim_end_matches('/')),
            None => path.to_string(),
        }
    }
}
