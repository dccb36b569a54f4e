//! `rate_limit` on API keys and on models (AISIX): `tpm`, `tpd`, `rps`, `rpm`, `rph`, `rpd`,
//! `concurrency`, AND-combined across the caller's key and the model it asks for. Counted by the
//! build's one limiter ([`crate::limits`]): at admission every counter of both layers is
//! reserved at once (requests count 1, tokens an [`Estimate`], a place in flight 1); when the
//! request ends, tokens settle to the real usage and the place in flight is given back.
//!
//! Windows are fixed and aligned to the Unix epoch (1 s, 60 s, 3600 s, 86400 s), as AISIX's. A
//! rejection is a 429 `rate_limit_exceeded` with `Retry-After` (none for `concurrency`: a place
//! frees when a request ends); a served answer carries `x-ratelimit-*` headers for the limits
//! that are configured.

use std::sync::Arc;
use std::time::Duration;

use http::header::{HeaderName, RETRY_AFTER};
use http::{HeaderMap, HeaderValue, StatusCode};
use serde::{Deserialize, Serialize};
use switchyard_sdk::respond::{error_response, json_response};
use switchyard_sdk::{ConfigError, Counter, CounterPolicy, CounterState, CounterStore, ErrorStyle, Response};

use crate::limits::{admit, seconds, Admit, Charge, Degraded, Estimate, Hold};

/// The AISIX `rate_limit` object (a closed schema): every field optional; none set is no limit.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// Tokens per minute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tpm: Option<u64>,
    /// Tokens per day.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tpd: Option<u64>,
    /// Requests per second, minute, hour, day.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rps: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpm: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rph: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpd: Option<u64>,
    /// Requests in flight at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<u32>,
}

/// Which `x-ratelimit-*` headers a limit reports in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    Requests,
    Tokens,
    Concurrent,
}

const MINUTE: Duration = Duration::from_secs(60);
const DAY: Duration = Duration::from_secs(86_400);

impl RateLimit {
    /// The limits that are set, in the order they are checked: the place in flight first (it
    /// never holds a window's count), then tokens, then requests.
    fn fields(&self) -> Vec<(&'static str, u64, Option<Duration>, Family)> {
        let windowed = |name, value: Option<u64>, window, family| value.map(|v| (name, v, Some(window), family));
        [
            self.concurrency.map(|v| ("concurrency", u64::from(v), None, Family::Concurrent)),
            windowed("tpm", self.tpm, MINUTE, Family::Tokens),
            windowed("tpd", self.tpd, DAY, Family::Tokens),
            windowed("rps", self.rps, Duration::from_secs(1), Family::Requests),
            windowed("rpm", self.rpm, MINUTE, Family::Requests),
            windowed("rph", self.rph, Duration::from_secs(3600), Family::Requests),
            windowed("rpd", self.rpd, DAY, Family::Requests),
        ]
        .into_iter()
        .flatten()
        .collect()
    }

    /// Checks the values; errors are relative to the `rate_limit` object.
    pub fn check(&self) -> Result<(), ConfigError> {
        match self.fields().into_iter().find(|(_, value, _, _)| *value == 0) {
            Some((name, ..)) => Err(ConfigError::new(name, "must be at least 1 (leave it out for no limit)")),
            None => Ok(()),
        }
    }
}

/// One limit of a layer, its counter key made once.
struct Limit {
    name: &'static str,
    key: String,
    limit: u64,
    window: Option<Duration>,
    family: Family,
}

/// One layer's limits (an API key's, or a model's), compiled.
pub struct Quota {
    /// Says whose limit it is in a rejection: "this API key", "model `x`".
    owner: String,
    limits: Vec<Limit>,
}

impl Quota {
    /// Compiles a layer: counters are named `<prefix>:<field>`. `None` when nothing is limited.
    pub fn compile(rate_limit: &RateLimit, prefix: &str, owner: String) -> Option<Arc<Quota>> {
        let limits: Vec<Limit> = rate_limit
            .fields()
            .into_iter()
            .map(|(name, limit, window, family)| Limit { name, key: format!("{prefix}:{name}"), limit, window, family })
            .collect();
        (!limits.is_empty()).then(|| Arc::new(Quota { owner, limits }))
    }

    /// Whether it limits tokens (so requests need an estimate).
    pub fn counts_tokens(&self) -> bool {
        self.limits.iter().any(|l| l.family == Family::Tokens)
    }
}

/// Where the model API's counters live and how a request's tokens are estimated: the node
/// config's `rate_limit` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimiterSettings {
    pub policy: CounterPolicy,
    /// Completion tokens reserved for a request that sets no bound.
    pub default_completion_tokens: u64,
}

impl Default for LimiterSettings {
    fn default() -> Self {
        LimiterSettings { policy: CounterPolicy::Local, default_completion_tokens: 256 }
    }
}

/// The model API's limiter: the node's counter store, and the process's own to fall back on
/// while a shared one is unreachable (AISIX's fail-open to memory).
pub struct Limiter {
    store: Arc<dyn CounterStore>,
    fallback: Option<Arc<dyn CounterStore>>,
    default_completion_tokens: u64,
    degraded: Degraded,
}

/// What a request reserved, in its context: settled when it ends.
#[derive(Clone)]
pub struct Reserved {
    /// The key's and the model's reservations (`None`: neither limits anything).
    pub hold: Option<Arc<Hold>>,
    /// The `x-ratelimit-*` headers a served answer carries.
    pub headers: HeaderMap,
    /// The tokens reserved, for a routing alias's targets to reserve too.
    pub estimate: Estimate,
    /// The reservation on the target being tried (a routing alias's target with limits).
    pub target: Option<Arc<Hold>>,
}

impl Limiter {
    /// Runs when the model API's routes compile: `fallback` is the in-process store when `store`
    /// is a shared one.
    pub fn new(
        store: Arc<dyn CounterStore>,
        fallback: Option<Arc<dyn CounterStore>>,
        default_completion_tokens: u64,
    ) -> Limiter {
        Limiter { store, fallback, default_completion_tokens, degraded: Degraded::default() }
    }

    /// The estimate a request reserves on token limits. `completes`: the endpoint produces
    /// completion tokens (embeddings do not).
    pub fn estimate(&self, body: &switchyard_sdk::raw_body::RawBody, completes: bool) -> Estimate {
        Estimate::of_parsed(body, if completes { self.default_completion_tokens } else { 0 })
    }

    /// Runs at admission: reserves every limit of `layers` at once (all or none), with the
    /// states in the order reserved. `Ok(None)`: no store answered, the request is served
    /// without limits. `Err` is the 429 to answer, in `style`.
    pub async fn admit(
        &self,
        layers: &[&Arc<Quota>],
        estimate: Estimate,
        style: ErrorStyle,
    ) -> Result<Option<(Arc<Hold>, Vec<CounterState>)>, Response> {
        let mut counters = Vec::new();
        let mut charges = Vec::new();
        for limit in layers.iter().flat_map(|q| &q.limits) {
            let (cost, charge) = match limit.family {
                Family::Tokens => (estimate.usage().total_tokens, Charge::Usage),
                Family::Requests => (1, Charge::Request),
                Family::Concurrent => (1, Charge::InFlight),
            };
            counters.push(Counter { key: limit.key.clone(), limit: limit.limit, window: limit.window, cost });
            charges.push(charge);
        }
        let mut store = &self.store;
        loop {
            match admit(store, &counters, &charges).await {
                Admit::Admitted { hold, states } => return Ok(Some((hold, states))),
                Admit::Rejected { index, retry_after, .. } => {
                    let (owner, limit) = layers
                        .iter()
                        .flat_map(|q| q.limits.iter().map(move |l| (&q.owner, l)))
                        .nth(index)
                        .ok_or_else(|| rejection(style, "rate limit exceeded", None))?;
                    let what = match limit.family {
                        Family::Requests => "request limit exceeded",
                        Family::Tokens => "token limit exceeded",
                        Family::Concurrent => "concurrency limit exceeded",
                    };
                    let message = format!("{what}: {} of {owner}", limit.name);
                    let retry = (limit.family != Family::Concurrent).then(|| seconds(retry_after).max(1));
                    return Err(rejection(style, &message, retry));
                }
                Admit::Unavailable(err) => match &self.fallback {
                    Some(local) if !Arc::ptr_eq(store, local) => {
                        self.degraded.warn("model-api", "rate_limit", &err, "counted in this process only");
                        store = local;
                    }
                    _ => {
                        self.degraded.warn("model-api", "rate_limit", &err, "served without limits");
                        return Ok(None);
                    }
                },
            }
        }
    }
}

/// The `x-ratelimit-*` headers of an admission (`layers` and `states` in the order reserved):
/// per family, the limit with the least left, so a client sees the one that binds first.
pub fn quota_headers(layers: &[&Arc<Quota>], states: &[CounterState]) -> HeaderMap {
    let mut headers = HeaderMap::new();
    let limits = layers.iter().flat_map(|q| &q.limits);
    for family in [Family::Requests, Family::Tokens, Family::Concurrent] {
        let tightest = limits
            .clone()
            .zip(states)
            .filter(|(limit, _)| limit.family == family)
            .min_by_key(|(_, state)| state.remaining)
            .map(|(_, state)| state);
        let Some(state) = tightest else { continue };
        let (limit, remaining, reset) = match family {
            Family::Requests => (LIMIT_REQUESTS, REMAINING_REQUESTS, Some(RESET_REQUESTS)),
            Family::Tokens => (LIMIT_TOKENS, REMAINING_TOKENS, Some(RESET_TOKENS)),
            Family::Concurrent => (LIMIT_CONCURRENT, REMAINING_CONCURRENT, None),
        };
        headers.insert(limit, state.limit.into());
        headers.insert(remaining, state.remaining.into());
        if let Some(reset) = reset {
            if let Ok(value) = HeaderValue::from_str(&format!("{}s", seconds(state.reset))) {
                headers.insert(reset, value);
            }
        }
    }
    headers
}

const LIMIT_REQUESTS: HeaderName = HeaderName::from_static("x-ratelimit-limit-requests");
const REMAINING_REQUESTS: HeaderName = HeaderName::from_static("x-ratelimit-remaining-requests");
const RESET_REQUESTS: HeaderName = HeaderName::from_static("x-ratelimit-reset-requests");
const LIMIT_TOKENS: HeaderName = HeaderName::from_static("x-ratelimit-limit-tokens");
const REMAINING_TOKENS: HeaderName = HeaderName::from_static("x-ratelimit-remaining-tokens");
const RESET_TOKENS: HeaderName = HeaderName::from_static("x-ratelimit-reset-tokens");
const LIMIT_CONCURRENT: HeaderName = HeaderName::from_static("x-ratelimit-limit-concurrent");
const REMAINING_CONCURRENT: HeaderName = HeaderName::from_static("x-ratelimit-remaining-concurrent");

/// A 429 in the endpoint's error shape: OpenAI's with type and code `rate_limit_exceeded`
/// (AISIX's), Anthropic's `rate_limit_error` on `/v1/messages`; `Retry-After` when given.
fn rejection(style: ErrorStyle, message: &str, retry_after: Option<u64>) -> Response {
    let status = StatusCode::TOO_MANY_REQUESTS;
    let mut response = match style {
        ErrorStyle::Anthropic => error_response(status, style, message, "rate_limit_exceeded"),
        ErrorStyle::OpenAi | ErrorStyle::Apisix => json_response(
            status,
            &serde_json::json!({"error": {"message": message, "type": "rate_limit_exceeded",
                "code": "rate_limit_exceeded"}}),
        ),
    };
    if let Some(seconds) = retry_after {
        response.headers_mut().insert(RETRY_AFTER, seconds.into());
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_is_refused_naming_the_field_and_empty_limits_nothing() {
        let zero: RateLimit = serde_json::from_value(serde_json::json!({"rpm": 5, "tpd": 0})).unwrap();
        assert_eq!(zero.check().unwrap_err().path, "tpd");
        assert!(serde_json::from_value::<RateLimit>(serde_json::json!({"rpx": 1})).is_err(), "closed");
        assert!(Quota::compile(&RateLimit::default(), "p", "o".into()).is_none());
        let all = RateLimit {
            tpm: Some(1),
            tpd: Some(2),
            rps: Some(3),
            rpm: Some(4),
            rph: Some(5),
            rpd: Some(6),
            concurrency: Some(7),
        };
        let names: Vec<&str> = all.fields().iter().map(|f| f.0).collect();
        assert_eq!(names, ["concurrency", "tpm", "tpd", "rps", "rpm", "rph", "rpd"]);
    }

    #[test]
    fn headers_report_the_tightest_limit_of_each_family() {
        let key = Quota::compile(&RateLimit { rpm: Some(10), ..RateLimit::default() }, "k", "key".into()).unwrap();
        let model =
            Quota::compile(&RateLimit { rpd: Some(100), tpm: Some(1000), ..RateLimit::default() }, "m", "model".into())
                .unwrap();
        let state = |limit, remaining, reset| CounterState { limit, remaining, reset: Duration::from_secs(reset) };
        // Order reserved: key rpm; model tpm, rpd.
        let states = [state(10, 9, 47), state(1000, 900, 47), state(100, 5, 80_000)];
        let headers = quota_headers(&[&key, &model], &states);
        assert_eq!(headers["x-ratelimit-limit-requests"], "100");
        assert_eq!(headers["x-ratelimit-remaining-requests"], "5");
        assert_eq!(headers["x-ratelimit-reset-requests"], "80000s");
        assert_eq!(headers["x-ratelimit-reset-tokens"], "47s");
        assert!(!headers.contains_key("x-ratelimit-limit-concurrent"));
    }
}
