//! The caller API key (AISIX model API): only the sha256 of the key is stored.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use switchyard_builtin::model_api::quota::RateLimit;
use switchyard_sdk::{parse_config, ConfigError};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeySpec {
    /// Lower-case hex sha256 of the caller's key.
    pub key_hash: String,
    /// Aliases this key may use, or `"*"` (also `["*"]`) for all.
    pub allowed_models: AllowedModels,
    /// Limits on everything this key calls, with every model's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(untagged)]
pub enum AllowedModels {
    All(String),
    Some(Vec<String>),
}

impl ApiKeySpec {
    pub fn parse(value: &Value) -> Result<Self, ConfigError> {
        let mut spec: ApiKeySpec = parse_config(value)?;
        spec.key_hash = spec.key_hash.trim().to_ascii_lowercase();
        if spec.key_hash.len() != 64 || !spec.key_hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ConfigError::new("key_hash", "must be the sha256 of the key: 64 hex characters"));
        }
        if let AllowedModels::All(all) = &spec.allowed_models {
            if all != "*" {
                return Err(ConfigError::new("allowed_models", "must be a list of model aliases or \"*\""));
            }
        }
        if let Some(rate_limit) = &spec.rate_limit {
            rate_limit.check().map_err(|e| e.within("rate_limit"))?;
        }
        Ok(spec)
    }

    /// The hash as bytes.
    pub fn hash_bytes(&self) -> [u8; 32] {
        let mut out = [0u8; 32];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&self.key_hash[2 * i..2 * i + 2], 16).unwrap_or(0);
        }
        out
    }

    /// `None`: every alias; otherwise the allowed aliases.
    pub fn allowed(&self) -> Option<Vec<String>> {
        match &self.allowed_models {
            AllowedModels::All(_) => None,
            AllowedModels::Some(list) if list.iter().any(|m| m == "*") => None,
            AllowedModels::Some(list) => Some(list.clone()),
        }
    }
}

/// Lower-case hex sha256 of `key`.
pub fn sha256_hex(key: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(key.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn hashes_are_checked_and_normalised() {
        let hash = sha256_hex("sk-deepseek-caller");
        let spec = ApiKeySpec::parse(&json!({"key_hash": hash.to_uppercase(), "allowed_models": ["a"]})).unwrap();
        assert_eq!(spec.key_hash, hash);
        assert_eq!(spec.allowed(), Some(vec!["a".to_string()]));
        assert!(ApiKeySpec::parse(&json!({"key_hash": "abc", "allowed_models": "*"})).is_err());
        let all = ApiKeySpec::parse(&json!({"key_hash": hash, "allowed_models": "*"})).unwrap();
        assert_eq!(all.allowed(), None);
    }
}
