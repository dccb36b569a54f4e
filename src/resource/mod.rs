//! What the store holds, as serde specs, and the key layout.

pub mod api_key;
pub mod model;
pub mod provider_key;
pub mod route;
pub mod service;
pub mod upstream;

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;
use switchyard_sdk::{parse_config, ConfigError};

/// The kinds of resource kept under `<prefix>/<gateway_group_id>/<kind>/<id>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Routes,
    Services,
    ProviderKeys,
    Models,
    ApiKeys,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Routes => "routes",
            Kind::Services => "services",
            Kind::ProviderKeys => "provider_keys",
            Kind::Models => "models",
            Kind::ApiKeys => "api_keys",
        }
    }

    /// Whether this kind belongs to the model API (`/admin/v1`), rather than to the APISIX API.
    pub fn is_model_api(self) -> bool {
        matches!(self, Kind::ProviderKeys | Kind::Models | Kind::ApiKeys)
    }

    pub fn parse(s: &str) -> Option<Kind> {
        match s {
            "routes" => Some(Kind::Routes),
            "services" => Some(Kind::Services),
            "provider_keys" => Some(Kind::ProviderKeys),
            "models" => Some(Kind::Models),
            "api_keys" => Some(Kind::ApiKeys),
            _ => None,
        }
    }
}

/// A stored resource's JSON, read from its store value. Model API entries written before they
/// were stored as plain resources sit in an `{"id","value","revision"}` envelope: the resource is
/// its `value` (the id is the key's, the count the key's own write count).
pub fn stored_json(kind: Kind, bytes: &[u8]) -> Result<Value, ConfigError> {
    let value: Value = serde_json::from_slice(bytes).map_err(|e| ConfigError::new("", format!("invalid JSON: {e}")))?;
    if kind.is_model_api() && is_legacy_envelope(&value) {
        #[derive(serde::Deserialize)]
        struct Envelope {
            value: Value,
        }
        return parse_config::<Envelope>(&value).map(|envelope| envelope.value);
    }
    Ok(value)
}

/// The model API's old storage envelope: exactly `id`, `value` (an object) and `revision`. No
/// model API resource has a `value` field, so a resource is never taken for one.
fn is_legacy_envelope(value: &Value) -> bool {
    value.as_object().is_some_and(|object| {
        object.len() == 3
            && object.contains_key("id")
            && object.contains_key("revision")
            && object.get("value").is_some_and(Value::is_object)
    })
}

/// The store key prefix every resource of `group` lives under: `<root>/<group>/`.
pub fn group_prefix(root: &str, group: &str) -> String {
    format!("{}/{group}/", root.trim_end_matches('/'))
}

/// The store key of one resource.
pub fn resource_key(root: &str, group: &str, kind: Kind, id: &str) -> String {
    format!("{}{}/{id}", group_prefix(root, group), kind.as_str())
}

/// Splits a store key below `group_prefix` into its kind and id.
pub fn parse_key<'k>(group_prefix: &str, key: &'k str) -> Option<(&'k str, &'k str)> {
    key.strip_prefix(group_prefix)?.split_once('/')
}

/// Seconds since the Unix epoch, for `create_time` / `update_time`.
pub fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// A resource id as APISIX allows it: 1 to 64 of `[a-zA-Z0-9-_.]`.
pub fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip() {
        let key = resource_key("/switchyard", "default", Kind::Routes, "r1");
        assert_eq!(key, "/switchyard/default/routes/r1");
        assert_eq!(parse_key(&group_prefix("/switchyard", "default"), &key), Some(("routes", "r1")));
    }

    #[test]
    fn model_api_entries_load_from_the_old_envelope_and_as_plain_resources() {
        let plain = br#"{"display_name": "a", "provider": "p"}"#;
        let envelope = br#"{"id": "x", "value": {"display_name": "a", "provider": "p"}, "revision": 4}"#;
        let expected = serde_json::json!({"display_name": "a", "provider": "p"});
        assert_eq!(stored_json(Kind::Models, plain).unwrap(), expected);
        assert_eq!(stored_json(Kind::Models, envelope).unwrap(), expected);
        assert_ne!(stored_json(Kind::Routes, envelope).unwrap(), expected, "routes never had an envelope");
        assert_eq!(stored_json(Kind::Models, b"{nope").unwrap_err().path, "");
    }

    #[test]
    fn ids_follow_apisix_rules() {
        assert!(valid_id("deepseek-route_1.a"));
        assert!(!valid_id(""));
        assert!(!valid_id("a/b"));
        assert!(!valid_id(&"x".repeat(65)));
    }
}
