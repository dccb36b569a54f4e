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
        let message = err.into_inner().to_string();
        // serde reports a missing field at its parent: name the field itself.
        if let Some(field) = message.strip_prefix("missing field `").and_then(|m| m.split('`').next()) {
            path = join_path(&path, field);
        }
        ConfigError::new(path, message)
    })
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

    #[test]
    fn join_path_handles_empty_and_index_segments() {
        assert_eq!(join_path("", "a"), "a");
        assert_eq!(join_path("a", ""), "a");
        assert_eq!(join_path("a", "[0]"), "a[0]");
        assert_eq!(join_path("a", "b"), "a.b");
    }
}
