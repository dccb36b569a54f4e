//! Errors of the plugin SDK: invalid configs (with a dotted path) and broken plugins.

use serde::de::DeserializeOwned;

/// A config that failed validation. `path` is dotted from the resource root, for example
/// `plugins.ai-proxy-multi.instances[1].weight`, so the admin API can say exactly what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct ConfigError {
    pub path: String,
    pub message: String,
}

impl ConfigError {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self { path: path.into(), message: message.into() }
    }

    /// Places this error under `parent`: `("plugins.ai-proxy", "auth")` gives `plugins.ai-proxy.auth`.
    #[must_use]
    pub fn within(mut self, parent: &str) -> Self {
        self.path = join_path(parent, &self.path);
        self
    }
}

/// Joins two dotted path segments, leaving out empty ones and the dot before an index (`a` + `[1]`).
pub fn join_path(parent: &str, child: &str) -> String {
    match (parent.is_empty(), child.is_empty()) {
        (true, _) => child.to_string(),
        (false, true) => parent.to_string(),
        (false, false) if child.starts_with('[') => format!("{parent}{child}"),
        (false, false) => format!("{parent}.{child}"),
    }
}

/// Deserialises a plugin config, turning a serde failure into a [`ConfigError`] whose path names
/// the offending field (`instances[1].weight`), relative to the plugin's config object.
pub fn parse_config<T: DeserializeOwned>(value: &serde_json::Value) -> Result<T, ConfigError> {
    serde_path_to_error::deserialize(value).map_err(|err| {
        let path = err.path().to_string();
        let mut path = if path == "." { String::new() } else { path };
        let message = without_value(&err.into_inner().to_string());
        // serde reports a missing field at its parent: name the field itself.
        if let Some(field) = message.strip_prefix("missing field `").and_then(|m| m.split('`').next()) {
            path = join_path(&path, field);
        }
        ConfigError::new(path, message)
    })
}

/// [`parse_config`] for a struct that shares its object with others (an AI plugin's own fields
/// beside the shared transport fields): unknown keys are not an error here, they are returned,
/// as serde reported them, so the caller can refuse the keys that no struct took.
pub fn parse_config_part<T: DeserializeOwned>(value: &serde_json::Value) -> Result<(T, Vec<String>), ConfigError> {
    let mut ignored = Vec::new();
    let parsed = serde_ignored::deserialize(value, |path| {
        if let serde_ignored::Path::Map { parent: serde_ignored::Path::Root, key } = path {
            ignored.push(key.clone());
        }
    });
    match parsed {
        Ok(parsed) => Ok((parsed, ignored)),
        // Parse again for the error's exact path.
        Err(_) => parse_config(value).map(|parsed| (parsed, ignored)),
    }
}

/// serde's message without the value it refused: `invalid type: string "sk-…", expected u64`
/// becomes `invalid type: string, expected u64`. Whatever field it was, the value may be a secret
/// pasted into the wrong place, and the message reaches the client, `status.rejected` and the log.
fn without_value(message: &str) -> String {
    for prefix in ["invalid type: ", "invalid value: ", "unknown variant "] {
        let Some(rest) = message.strip_prefix(prefix) else { continue };
        // The expectation comes from the type, never from the input: the last one is the real one.
        let (refused, expected) = match rest.rfind(", expected ") {
            Some(at) => (&rest[..at], Some(&rest[at + ", expected ".len()..])),
            None => (rest, None),
        };
        // `string "…"`, `integer `5``, `floating point `1.5``, `map`: keep the kind only.
        let kind = refused.split(['"', '`']).next().unwrap_or_default().trim();
        let mut out = prefix.trim_end().to_string();
        if !kind.is_empty() {
            out = format!("{prefix}{kind}");
        }
        if let Some(expected) = expected {
            let expected = if expected.starts_with("struct ") { "an object" } else { expected };
            out.push_str(", expected ");
            out.push_str(expected);
        }
        return out;
    }
    message.to_string()
}

/// A plugin failed at run time in a way that is the gateway's fault (answered with 500).
/// Rejections of a client (401, 429, 400) are not errors: they are `Flow::Respond`.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct PluginError(pub String);

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Inner {
        #[allow(dead_code)]
        weight: u32,
    }
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Outer {
        #[allow(dead_code)]
        instances: Vec<Inner>,
    }

    #[test]
    fn parse_errors_name_the_field_path() {
        let value = serde_json::json!({"instances": [{"weight": 1}, {"weight": -1}]});
        let err = parse_config::<Outer>(&value).unwrap_err().within("plugins.ai-proxy-multi");
        assert_eq!(err.path, "plugins.ai-proxy-multi.instances[1].weight");
    }

    #[test]
    fn missing_fields_are_named_in_the_path() {
        let value = serde_json::json!({"instances": [{}]});
        let err = parse_config::<Outer>(&value).unwrap_err();
        assert_eq!(err.path, "instances[0].weight");
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Slots {
        auth: Option<Inner>,
        timeout: Option<u64>,
        mode: Option<Mode>,
        ratio: Option<u8>,
    }
    #[derive(Debug, Deserialize)]
    #[serde(rename_all = "lowercase")]
    enum Mode {
        Fast,
    }

    #[test]
    fn refused_values_are_never_quoted_back() {
        let secret = "sk-secret-xyz";
        let cases = [
            (serde_json::json!({"auth": secret}), "auth", "invalid type: string, expected an object"),
            (serde_json::json!({"timeout": secret}), "timeout", "invalid type: string, expected u64"),
            (serde_json::json!({"timeout": -7}), "timeout", "invalid value: integer, expected u64"),
            (serde_json::json!({"mode": secret}), "mode", "unknown variant, expected `fast`"),
            (serde_json::json!({"ratio": 1.5}), "ratio", "invalid type: floating point, expected u8"),
            (serde_json::json!({"auth": true}), "auth", "invalid type: boolean, expected an object"),
        ];
        for (value, path, message) in cases {
            let err = parse_config::<Slots>(&value).unwrap_err();
            assert_eq!((err.path.as_str(), err.message.as_str()), (path, message), "{value}");
        }
        let tricky = serde_json::json!({"timeout": "a\", expected u64, b"});
        let err = parse_config::<Slots>(&tricky).unwrap_err();
        assert_eq!(err.message, "invalid type: string, expected u64");
    }

    #[test]
    fn parts_report_the_top_level_keys_they_did_not_take() {
        #[derive(Debug, Deserialize)]
        struct Part {
            #[allow(dead_code)]
            weight: u32,
        }
        let value = serde_json::json!({"weight": 1, "colour": "red"});
        let (_, ignored) = parse_config_part::<Part>(&value).unwrap();
        assert_eq!(ignored, ["colour"]);
        let err = parse_config_part::<Part>(&serde_json::json!({"weight": "x"})).unwrap_err();
        assert_eq!(err.path, "weight");
    }

    #[test]
    fn join_path_handles_empty_and_index_segments() {
        assert_eq!(join_path("", "a"), "a");
        assert_eq!(join_path("a", ""), "a");
        assert_eq!(join_path("a", "[0]"), "a[0]");
        assert_eq!(join_path("a", "b"), "a.b");
    }
}
