//! The provider key (AISIX model API): an upstream credential and where to use it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use switchyard_sdk::{parse_config, ConfigError};

pub const ADAPTERS: [&str; 5] = ["openai", "anthropic", "bedrock", "vertex", "azure-openai"];
pub const DEFAULT_STRIP_HEADERS: [&str; 4] = ["authorization", "cookie", "set-cookie", "x-api-key"];
/// What every response shows instead of the secret.
pub const MASK: &str = "***";

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderKeySpec {
    pub display_name: String,
    /// An open label: the vendor or endpoint name.
    pub provider: String,
    /// The wire format: one of [`ADAPTERS`].
    pub adapter: String,
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
        if !ADAPTERS.contains(&spec.adapter.as_str()) {
            return Err(ConfigError::new("adapter", format!("must be one of {}", ADAPTERS.join(", "))));
        }
        spec.api_base = match spec.api_base.take() {
            Some(base) => {
                let (base, version) = normalise_api_base(&base, &spec.adapter)?;
                if spec.api_version.is_none() {
                    spec.api_version = version;
                }
                Some(base)
            }
            None if spec.adapter == "bedrock" => None,
            None => return Err(ConfigError::new("api_base", format!("is required for adapter `{}`", spec.adapter))),
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

    /// The entry's `value` as responses show it: everything but the secret.
    pub fn masked(&self) -> Value {
        let mut value = serde_json::to_value(self).unwrap_or(Value::Null);
        value["secret"] = Value::String(MASK.into());
        value
    }
}

/// Endpoint paths people paste at the end of a base URL, per adapter.
fn pasted_suffixes(adapter: &str) -> &'static [&'static str] {
    match adapter {
        "openai" => &["/chat/completions", "/embeddings", "/completions", "/models"],
        "anthropic" => &["/v1/messages", "/messages"],
        _ => &[],
    }
}

/// Trims spaces and trailing slashes and drops a pasted endpoint path (for Azure, the whole
/// `/openai/deployments/...` part, keeping its `api-version`). Never guesses a vendor URL.
/// Returns the base and, when the pasted URL had one, its `api-version`.
pub fn normalise_api_base(raw: &str, adapter: &str) -> Result<(String, Option<String>), ConfigError> {
    let invalid = || ConfigError::new("api_base", "must be an http(s) URL");
    let trimmed = raw.trim();
    let (without_query, query) = match trimmed.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (trimmed, None),
    };
    let rest =
        without_query.strip_prefix("https://").or_else(|| without_query.strip_prefix("http://")).ok_or_else(invalid)?;
    if rest.is_empty() || rest.starts_with('/') || rest.contains(char::is_whitespace) {
        return Err(invalid());
    }
    let mut base = without_query.trim_end_matches('/').to_string();
    for suffix in pasted_suffixes(adapter) {
        if let Some(stripped) = base.strip_suffix(suffix) {
            base = stripped.trim_end_matches('/').to_string();
            break;
        }
    }
    if adapter == "azure-openai" {
        if let Some(at) = base.find("/openai/deployments") {
            base.truncate(at);
        } else if let Some(stripped) = base.strip_suffix("/openai") {
            base = stripped.to_string();
        }
    }
    let version =
        query.and_then(|q| q.split('&').find_map(|pair| pair.strip_prefix("api-version="))).map(str::to_string);
    Ok((base, version))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn api_base_is_normalised_without_guessing() {
        let cases = [
            ("openai", " https://api.openai.com/v1/ ", "https://api.openai.com/v1"),
            ("openai", "https://api.openai.com/v1/chat/completions", "https://api.openai.com/v1"),
            ("openai", "https://api.deepseek.com", "https://api.deepseek.com"),
            ("openai", "http://10.0.0.5:8000/v1//", "http://10.0.0.5:8000/v1"),
            ("anthropic", "https://api.anthropic.com/v1/messages", "https://api.anthropic.com"),
            (
                "azure-openai",
                "https://r.openai.azure.com/openai/deployments/gpt4/chat/completions?api-version=2024-02-01",
                "https://r.openai.azure.com",
            ),
        ];
        for (adapter, raw, expected) in cases {
            assert_eq!(normalise_api_base(raw, adapter).unwrap().0, expected, "{raw}");
        }
        assert_eq!(
            normalise_api_base(
                "https://r.openai.azure.com/openai/deployments/x/chat/completions?api-version=2024-02-01",
                "azure-openai"
            )
            .unwrap()
            .1
            .as_deref(),
            Some("2024-02-01")
        );
        assert!(normalise_api_base("api.openai.com", "openai").is_err());
        assert!(normalise_api_base("https://", "openai").is_err());
    }

    #[test]
    fn defaults_masking_and_field_errors() {
        let spec = ProviderKeySpec::parse(&json!({"display_name": "d", "provider": "openai", "adapter": "openai",
            "secret": "sk-1", "api_base": "https://api.openai.com/v1", "strip_headers": ["X-Trace"]}))
        .unwrap();
        assert_eq!(spec.telemetry_tags["featured"], false);
        assert_eq!(spec.strip_headers, ["x-trace"]);
        let masked = spec.masked();
        assert_eq!(masked["secret"], "***");
        assert!(!masked.to_string().contains("sk-1"));
        let err =
            ProviderKeySpec::parse(&json!({"display_name": "d", "provider": "p", "adapter": "soap", "secret": "s"}))
                .unwrap_err();
        assert_eq!(err.path, "adapter");
        let err =
            ProviderKeySpec::parse(&json!({"display_name": "d", "provider": "p", "adapter": "openai"})).unwrap_err();
        assert_eq!(err.path, "secret");
    }
}
