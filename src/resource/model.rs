//! The model (AISIX model API): a caller-facing alias, either *direct* (an upstream model behind a
//! provider key) or *routing* (other aliases, tried with failover).

use serde::{Deserialize, Serialize};
use serde_json::Value;
use switchyard_builtin::model_api::cooldown::Cooldown;
use switchyard_builtin::model_api::quota::RateLimit;
use switchyard_builtin::model_api::routing::{OnAllFiltered, RoutingStrategy};
use switchyard_sdk::{parse_config, ConfigError};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    /// The alias callers send as `model`.
    pub display_name: String,
    /// Direct: the vendor label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// Direct: the model id the upstream expects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_name: Option<String>,
    /// Direct: the provider key to call with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_key_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<CostSpec>,
    /// Direct: milliseconds to the response head (0 or absent: the model API's 30 s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<u64>,
    /// Direct, streams: milliseconds to the first event and between two events (0 or absent:
    /// no first-event limit, `timeout` between events).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_timeout: Option<u64>,
    /// Direct: when a failure rests the model in the routing aliases that target it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cooldown: Option<Cooldown>,
    /// Routing: the aliases requests go to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routing: Option<RoutingSpec>,
    /// Limits on this model, whoever calls it (a routing model: on requests to it; its targets'
    /// own limits apply to each attempt on them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,
}

/// USD per 1,000 tokens. Stored for accounting; not enforced at request time.
#[derive(Debug, Clone, Copy, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CostSpec {
    pub input_per_1k: f64,
    pub output_per_1k: f64,
}

/// AISIX `routing`, plus switchyard's failover fields (those of `ai-proxy-multi`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RoutingSpec {
    #[serde(default)]
    pub strategy: RoutingStrategy,
    pub targets: Vec<TargetSpec>,
    /// Same-target retries of a 5xx or a failed connection.
    #[serde(default)]
    pub retries: u32,
    /// Caps the moves to a later target; absent: all of them may be tried.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_fallbacks: Option<u32>,
    /// A 429 moves to the next target.
    #[serde(default)]
    pub retry_on_429: bool,
    #[serde(default)]
    pub on_all_filtered: OnAllFiltered,
    /// A stream that breaks after bytes reached the caller is taken up by the next target.
    #[serde(default)]
    pub stream_resume: bool,
    /// A 429 whose `Retry-After` is at most this long (ms) is waited out on the same target.
    #[serde(default)]
    pub retry_after_max_wait_ms: u64,
    /// Provider error codes that move a request to the next target.
    #[serde(default)]
    pub fallback_error_codes: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TargetSpec {
    /// A direct model's alias.
    pub model: String,
    #[serde(default = "one")]
    pub weight: u32,
}

fn one() -> u32 {
    1
}

/// Fields only a direct model has.
const DIRECT_ONLY: [&str; 6] = ["provider", "model_name", "provider_key_id", "timeout", "stream_timeout", "cooldown"];

impl ModelSpec {
    pub fn parse(value: &Value) -> Result<Self, ConfigError> {
        let spec: ModelSpec = parse_config(value)?;
        if spec.display_name.trim().is_empty() {
            return Err(ConfigError::new("display_name", "must not be empty"));
        }
        match &spec.routing {
            Some(_) => {
                if let Some(field) = DIRECT_ONLY.iter().find(|f| value.get(**f).is_some()) {
                    return Err(ConfigError::new(*field, "is for direct models: a routing model names none"));
                }
            }
            None => {
                for (field, text) in [
                    ("provider", &spec.provider),
                    ("model_name", &spec.model_name),
                    ("provider_key_id", &spec.provider_key_id),
                ] {
                    if text.as_deref().is_none_or(|t| t.trim().is_empty()) {
                        return Err(ConfigError::new(field, "is required (or `routing`), and must not be empty"));
                    }
                }
            }
        }
        if let Some(cooldown) = &spec.cooldown {
            cooldown.check().map_err(|e| e.within("cooldown"))?;
        }
        if let Some(rate_limit) = &spec.rate_limit {
            rate_limit.check().map_err(|e| e.within("rate_limit"))?;
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

    #[test]
    fn a_model_is_direct_or_routing() {
        let routing =
            json!({"display_name": "r", "routing": {"targets": [{"model": "a"}, {"model": "b", "weight": 3}]}});
        let spec = ModelSpec::parse(&routing).unwrap();
        let parsed = spec.routing.unwrap();
        assert_eq!((parsed.strategy, parsed.targets[0].weight, parsed.retries), (RoutingStrategy::Failover, 1, 0));
        let mut both = routing.clone();
        both["provider_key_id"] = json!("k");
        assert_eq!(ModelSpec::parse(&both).unwrap_err().path, "provider_key_id");
        assert_eq!(ModelSpec::parse(&json!({"display_name": "d", "provider": "p"})).unwrap_err().path, "model_name");
        let cooled = json!({"display_name": "a", "provider": "p", "model_name": "m", "provider_key_id": "k",
            "cooldown": {"default_seconds": 0}});
        assert_eq!(ModelSpec::parse(&cooled).unwrap_err().path, "cooldown.default_seconds");
    }
}
