//! The global rule object (`/apisix/admin/global_rules`): plugins that run on every request of
//! the group, before the matched route's.

use serde::Deserialize;
use switchyard_sdk::{parse_config, ConfigError};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GlobalRuleSpec {
    pub id: Option<serde_json::Value>,
    pub plugins: serde_json::Map<String, serde_json::Value>,
    pub create_time: Option<u64>,
    pub update_time: Option<u64>,
}

impl GlobalRuleSpec {
    /// Parses a stored or submitted global rule. Its plugins are checked by the registry.
    pub fn parse(value: &serde_json::Value) -> Result<Self, ConfigError> {
        parse_config(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn plugins_are_required() {
        assert!(GlobalRuleSpec::parse(&json!({"plugins": {}})).is_ok());
        assert_eq!(GlobalRuleSpec::parse(&json!({})).unwrap_err().path, "plugins");
    }
}
