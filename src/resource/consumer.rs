//! The consumer object (APISIX 3.x): a caller, named by `username`, with its own plugins (its
//! credentials among them, e.g. `key-auth`'s `key`).

use std::collections::BTreeMap;

use serde::Deserialize;
use switchyard_sdk::{parse_config, ConfigError};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsumerSpec {
    pub username: String,
    pub desc: Option<String>,
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub plugins: serde_json::Map<String, serde_json::Value>,
    pub create_time: Option<u64>,
    pub update_time: Option<u64>,
}

impl ConsumerSpec {
    /// Parses and checks a stored or submitted consumer. Plugins are checked by the registry.
    pub fn parse(value: &serde_json::Value) -> Result<Self, ConfigError> {
        let spec: ConsumerSpec = parse_config(value)?;
        if !valid_username(&spec.username) {
            return Err(ConfigError::new("username", "must be 1 to 100 of [a-zA-Z0-9_-]"));
        }
        Ok(spec)
    }
}

/// A username as APISIX allows it: `^[a-zA-Z0-9_\-]+$`, at most 100 characters.
pub fn valid_username(name: &str) -> bool {
    !name.is_empty() && name.len() <= 100 && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_follow_apisix_rules() {
        assert!(valid_username("team_a-1"));
        assert!(!valid_username(""));
        assert!(!valid_username("a.b"));
        assert!(!valid_username(&"x".repeat(101)));
    }

    #[test]
    fn unknown_fields_are_refused() {
        let err = ConsumerSpec::parse(&serde_json::json!({"username": "a", "nope": 1})).unwrap_err();
        assert!(err.to_string().contains("nope"), "{err}");
        assert_eq!(ConsumerSpec::parse(&serde_json::json!({"username": "a/b"})).unwrap_err().path, "username");
    }
}
