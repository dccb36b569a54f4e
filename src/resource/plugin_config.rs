//! The plugin config object (`/apisix/admin/plugin_configs`): a named set of plugins that routes
//! take in with `plugin_config_id`.

use std::collections::BTreeMap;

use serde::Deserialize;
use switchyard_sdk::{parse_config, ConfigError};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginConfigSpec {
    pub id: Option<serde_json::Value>,
    pub name: Option<String>,
    pub desc: Option<String>,
    pub labels: Option<BTreeMap<String, String>>,
    /// Required, as in APISIX (an empty object is allowed).
    pub plugins: serde_json::Map<String, serde_json::Value>,
    pub create_time: Option<u64>,
    pub update_time: Option<u64>,
}

impl PluginConfigSpec {
    /// Parses a stored or submitted plugin config. Its plugins are checked by the registry.
    pub fn parse(value: &serde_json::Value) -> Result<Self, ConfigError> {
        parse_config(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn plugins_are_required_and_fields_closed() {
        assert!(PluginConfigSpec::parse(&json!({"plugins": {}})).is_ok());
        assert_eq!(PluginConfigSpec::parse(&json!({"name": "x"})).unwrap_err().path, "plugins");
        assert_eq!(PluginConfigSpec::parse(&json!({"plugins": {}, "uri": "/a"})).unwrap_err().path, "uri");
    }
}
