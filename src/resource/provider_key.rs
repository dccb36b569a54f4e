//! The provider key (AISIX model API): an upstream credential and where to use it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use switchyard_builtin::model_api::adapter::Adapter;
use switchyard_sdk::{parse_config, ConfigError};

pub const DEFAULT_STRIP_HEADERS: [&str; 4] = ["authorization", "cookie", "set-cookie", "x-api-key"];

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderKeySpec {
    pub display_name: String,
    /// An open label: the vendor or endpoint name.
    pub provider: String,
    /// The wire format (one of [`Adapter::ALL`]).
    pub adapter: Adapter,
    pub secret: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_base: Option<String>,
    /// `azure-openai` only: the `api-version` query parameter (default `2024-10-21`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    #[serde(default = "default_tags")]
    pub telemetry_tags: BTreeMap<String, Value>,
    #[serde(default = "default_strip")]
    pub strip_headers: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<ResponseSpec>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ResponseSpec {
    /// A vendor's custom reasoning field, renamed `reasoning_content` in responses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_field: Option<String>,
}

fn default_tags() -> BTreeMap<String, Value> {
    BTreeMap::from([("featured".to_string(), Value::Bool(false))])
}

fn default_strip() -> Vec<String> {
    DEFAULT_STRIP_HEADERS.iter().map(|h| h.to_string()).collect()
}

impl ProviderKeySpec {
    /// Parses, checks and normalises a submitted or stored provider key.
    pub fn parse(value: &Value) -> Result<Self, ConfigError> {
        let mut spec: ProviderKeySpec = parse_config(value)?;
        for (field, text) in
            [("display_name", &spec.display_name), ("provider", &spec.provider), ("secret", &spec.secret)]
        {
            if text.trim().is_empty() {
                return Err(ConfigError::new(field, "must not be empty"));
            }
        }
        spec.api_base = match spec.api_base.take() {
            Some(base) => {
                let (base, version) = spec.adapter.normalise_api_base(&base)?;
                if spec.api_version.is_none() {
                    spec.api_version = version;
                }
                Some(base)
            }
            None => match spec.adapter.default_api_base(&spec.provider) {
                Some(default) => Some(default.to_string()),
                None if !spec.adapter.needs_api_base() => None,
                None => return Err(ConfigError::new("api_base", spec.adapter.api_base_required())),
            },
        };
        for (i, header) in spec.strip_headers.iter_mut().enumerate() {
            *header = header.trim().to_ascii_lowercase();
            if http::HeaderName::from_bytes(header.as_bytes()).is_err() {
                return Err(ConfigError::new(format!("strip_headers[{i}]"), "is not a header name"));
            }
        }
        if let Some(field) = spec.response.as_ref().and_then(|r| r.reasoning_field.as_deref()) {
            if field.is_empty() {
                return Err(ConfigError::new("response.reasoning_field", "must not be empty"));
            }
        }
        Ok(spec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn defaults_normalising_and_field_errors() {
        let spec = ProviderKeySpec::parse(&json!({"display_name": "d", "provider": "openai", "adapter": "openai",
            "secret": "sk-1", "api_base": "https://api.openai.com/v1/chat/completions", "strip_headers": ["X-Trace"]}))
        .unwrap();
        assert_eq!(spec.telemetry_tags["featured"], false);
        assert_eq!(spec.strip_headers, ["x-trace"]);
        assert_eq!(spec.api_base.as_deref(), Some("https://api.openai.com/v1"));
        assert_eq!(serde_json::to_value(&spec).unwrap()["adapter"], "openai");
        let err =
            ProviderKeySpec::parse(&json!({"display_name": "d", "provider": "p", "adapter": "soap", "secret": "s"}))
                .unwrap_err();
        assert_eq!(err.path, "adapter");
        assert!(err.message.starts_with("must be one of openai"), "{err}");
        let err =
            ProviderKeySpec::parse(&json!({"display_name": "d", "provider": "p", "adapter": "openai"})).unwrap_err();
        assert_eq!(err.path, "secret");
    }
}
