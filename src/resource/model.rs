//! The model (AISIX model API): a caller-facing alias for an upstream model behind a provider key.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use switchyard_sdk::{parse_config, ConfigError};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    /// The alias callers send as `model`.
    pub display_name: String,
    pub provider: String,
    /// The model id the upstream expects.
    pub model_name: String,
    pub provider_key_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<CostSpec>,
}

/// USD per 1,000 tokens. Stored for accounting; not enforced at request time.
#[derive(Debug, Clone, Copy, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CostSpec {
    pub input_per_1k: f64,
    pub output_per_1k: f64,
}

impl ModelSpec {
    pub fn parse(value: &Value) -> Result<Self, ConfigError> {
        let spec: ModelSpec = parse_config(value)?;
        for (field, text) in [
            ("display_name", &spec.display_name),
            ("provider", &spec.provider),
            ("model_name", &spec.model_name),
            ("provider_key_id", &spec.provider_key_id),
        ] {
            if text.trim().is_empty() {
                return Err(ConfigError::new(field, "must not be empty"));
            }
        }
        if let Some(cost) = spec.cost {
            for (field, value) in [("cost.input_per_1k", cost.input_per_1k), ("cost.output_per_1k", cost.output_per_1k)]
            {
                if !(value >= 0.0 && value.is_finite()) {
                    return Err(ConfigError::new(field, "must be a number >= 0"));
                }
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
    fn cost_needs_both_rates() {
        let base = json!({"display_name": "a", "provider": "p", "model_name": "m", "provider_key_id": "k"});
        assert!(ModelSpec::parse(&base).is_ok());
        let mut with_cost = base.clone();
        with_cost["cost"] = json!({"input_per_1k": 0.1});
        assert_eq!(ModelSpec::parse(&with_cost).unwrap_err().path, "cost.output_per_1k");
    }
}
