//! `ai-rate-limiting` (APISIX 3.18, priority 1030): token budgets per route, per consumer, per
//! `ai-proxy-multi` instance or per rule key, counted by the build's one limiter
//! ([`crate::limits`]) in the core's counter store (in process, or Redis shared by every node).
//!
//! Beyond APISIX, it reserves at admission: an estimate of the request's cost is reserved
//! atomically before the request goes upstream ([`Estimate`]), and settled to the real usage when
//! the response ends (a refund, or a further charge); an attempt that fails upstream refunds its
//! reservation. So concurrent requests cannot all pass a nearly spent limit: a counter never holds
//! more than its limit plus one request's estimate.

mod config;
mod cost_expr;
mod rule_key;

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use http::header::{HeaderName, RETRY_AFTER};
use http::{HeaderValue, StatusCode};
use switchyard_sdk::respond::{error_response, json_response};
use switchyard_sdk::{
    derive_phases, parse_config, BuildContext, ConfigError, Counter, CounterState, CounterStore, Ctx, Flow, Outcome,
    Plugin, PluginError, PluginFactory, Request, Response, ResponseHeaders, UpstreamRequest, Usage,
};

use self::config::{positive, Quota, RawConfig, Strategy};
use self::rule_key::RuleKey;
use crate::ai_proxy_multi::RateLimitFallback;
use crate::limits::{admit, seconds, settled_cost, Admit, Charge, Degraded, Estimate, Hold};

pub struct AiRateLimitingFactory;

impl PluginFactory for AiRateLimitingFactory {
    fn name(&self) -> &'static str {
        "ai-rate-limiting"
    }

    fn priority(&self) -> i32 {
        1030
    }

    fn secret_fields(&self) -> Vec<String> {
        vec!["redis_password".into()]
    }

    fn build(&self, config: &serde_json::Value, ctx: &dyn BuildContext) -> Result<Arc<dyn Plugin>, ConfigError> {
        let raw: RawConfig = parse_config(config)?;
        let quota = raw.quota()?;
        let mut instances = Vec::with_capacity(raw.instances.len());
        for (i, instance) in raw.instances.iter().enumerate() {
            let here = format!("instances[{i}]");
            let limit = positive(&instance.limit, &format!("{here}.limit"))?;
            let window = positive(&instance.time_window, &format!("{here}.time_window"))?;
            instances.push((instance.name.clone(), Quota { limit, window: Duration::from_secs(window) }));
        }
        let mut rules = Vec::with_capacity(raw.rules.len());
        for (i, rule) in raw.rules.iter().enumerate() {
            let here = format!("rules[{i}]");
            let limit = positive(&rule.count, &format!("{here}.count"))?;
            let window = positive(&rule.time_window, &format!("{here}.time_window"))?;
            if rule.key.is_empty() {
                return Err(ConfigError::new(format!("{here}.key"), "must not be empty"));
            }
            let suffix = rule.header_prefix.as_deref().map_or_else(String::new, |p| format!("-{p}"));
            rules.push(Rule {
                label: format!("rule{i}:"),
                key: RuleKey::parse(&rule.key).map_err(|e| ConfigError::new(format!("{here}.key"), e))?,
                quota: Quota { limit, window: Duration::from_secs(window) },
                headers: QuotaHeaders::new(&suffix, limit)
                    .map_err(|e| ConfigError::new(format!("{here}.header_prefix"), e))?,
            });
        }
        if !rules.is_empty() && (quota.is_some() || !instances.is_empty()) {
            return Err(ConfigError::new("rules", "cannot be combined with limit or instances"));
        }
        if rules.is_empty() && quota.is_none() && instances.is_empty() {
            return Err(ConfigError::new("limit", "is required (or instances, or rules)"));
        }
        if !(200..=599).contains(&raw.rejected_code) {
            return Err(ConfigError::new("rejected_code", "must be a status from 200 to 599"));
        }
        let strategy = raw.strategy()?;
        let store = ctx.counters(&raw.policy()?).map_err(|e| ConfigError::new("policy", e))?;
        Ok(Arc::new(AiRateLimiting {
            quota,
            instances,
            rules,
            strategy,
            store,
            show_headers: raw.show_limit_quota_header,
            rejected_code: StatusCode::from_u16(raw.rejected_code).unwrap_or(StatusCode::SERVICE_UNAVAILABLE),
            rejected_msg: raw.rejected_msg,
            allow_degradation: raw.allow_degradation,
            default_completion_tokens: raw.default_completion_tokens,
            degraded: Degraded::default(),
            instance_headers: RwLock::default(),
        }))
    }
}

struct Rule {
    /// `rule<index>:`, the start of its counter keys' scope.
    label: String,
    key: RuleKey,
    quota: Quota,
    headers: QuotaHeaders,
}

/// `X-AI-RateLimit-{Limit,Remaining,Reset}<suffix>`, made once per config, with the value of
/// the limit they report (the quota's, fixed by the config): only the other two are formatted
/// per request.
struct QuotaHeaders {
    limit: HeaderName,
    remaining: HeaderName,
    reset: HeaderName,
    limit_value: (u64, HeaderValue),
}

impl QuotaHeaders {
    fn new(suffix: &str, limit: u64) -> Result<Self, String> {
        let name = |what: &str| {
            HeaderName::from_bytes(format!("x-ai-ratelimit-{what}{suffix}").to_ascii_lowercase().as_bytes())
                .map_err(|_| "must make a valid header name".to_string())
        };
        // Shared once here, so that each request's copy only counts a reference.
        let limit_value = HeaderValue::from_maybe_shared(Bytes::from(limit.to_string()))
            .map_err(|_| "must make a valid header value".to_string())?;
        Ok(Self {
            limit: name("limit")?,
            remaining: name("remaining")?,
            reset: name("reset")?,
            limit_value: (limit, limit_value),
        })
    }

    fn write(&self, headers: &mut ResponseHeaders, state: &CounterState) {
        let limit = match &self.limit_value {
            (limit, value) if *limit == state.limit => value.clone(),
            _ => state.limit.into(),
        };
        headers.reserve(3);
        headers.insert(self.limit.clone(), limit);
        headers.insert(self.remaining.clone(), state.remaining.into());
        headers.insert(self.reset.clone(), seconds(state.reset).into());
    }
}

struct AiRateLimiting {
    quota: Option<Quota>,
    instances: Vec<(String, Quota)>,
    rules: Vec<Rule>,
    strategy: Strategy,
    store: Arc<dyn CounterStore>,
    show_headers: bool,
    rejected_code: StatusCode,
    rejected_msg: Option<String>,
    allow_degradation: bool,
    default_completion_tokens: u64,
    /// Warns that the counter store is unreachable, at most once per 10 s.
    degraded: Degraded,
    /// The quota headers of each instance label seen (`None`: the label makes no valid header
    /// name), made on its first request rather than on every one.
    /// foldhash: looked up on every request; labels come from the config, not from callers.
    instance_headers: RwLock<HashMap<String, Option<Arc<QuotaHeaders>>, foldhash::fast::RandomState>>,
}

/// At most this many instance labels keep their headers made (a route has a handful of
/// instances; the bound only guards against an unbounded set of labels).
const MOST_INSTANCE_HEADERS: usize = 256;

/// The start of every counter key; the route and consumer that follow are its Redis hash tag.
const KEY_PREFIX: &str = "ai-rate-limiting:{";

/// What this request reserved, in its slot of `ctx.extensions`.
#[derive(Clone, Default)]
struct Reserved {
    estimate: Estimate,
    /// The reservation on the instance being tried.
    instance: Option<Arc<Hold>>,
    /// The rules' reservations.
    rules: Option<Arc<Hold>>,
}

enum Checked {
    /// `None`: served without limits (the store is down and `allow_degradation` is on).
    Admitted(Option<Arc<Hold>>),
    Rejected(Response),
    Unavailable(Response),
}

impl AiRateLimiting {
    /// The cost a request reserves: its estimated usage, as the strategy counts it.
    fn estimated_cost(&self, estimate: &Estimate) -> u64 {
        self.cost(&estimate.usage())
    }

    fn cost(&self, usage: &Usage) -> u64 {
        match &self.strategy {
            Strategy::Total => usage.total_tokens,
            Strategy::Prompt => usage.prompt_tokens,
            Strategy::Completion => usage.completion_tokens,
            Strategy::Expression(expr) => expr.cost(usage),
        }
    }

    /// The counter key of `scope` for this request: per route, per consumer when one is known.
    /// Route and consumer are the key's Redis hash tag (`{...}`): the counters one admission
    /// reserves together share them, so a Redis cluster keeps them in one slot.
    /// `scope` is the key's last parts, joined as they are. Built by appending rather than with
    /// `format!`, which cost more than the local counter lookup itself.
    fn key(ctx: &Ctx, scope: &[&str]) -> String {
        let consumer = ctx.consumer.as_ref().map_or("", |c| &c.username);
        let parts = [KEY_PREFIX, &ctx.route_id, ":", consumer, "}:"];
        let mut key = String::with_capacity(parts.iter().chain(scope).map(|p| p.len()).sum());
        for part in parts.iter().chain(scope) {
            key.push_str(part);
        }
        key
    }

    /// Reserves `cost` on `counters` (one quota each), writing the quota headers.
    async fn check(&self, ctx: &mut Ctx, counters: Vec<Counter>, headers: &[&QuotaHeaders]) -> Checked {
        let charges = vec![Charge::Usage; counters.len()];
        match admit(&self.store, &counters, &charges).await {
            Admit::Admitted { hold, states } => {
                if self.show_headers {
                    for (headers, state) in headers.iter().zip(&states) {
                        headers.write(&mut ctx.response_headers, state);
                    }
                }
                Checked::Admitted(Some(hold))
            }
            Admit::Rejected { index, state, retry_after } => {
                let mut response = self.rejection();
                if self.show_headers {
                    if let Some(headers) = headers.get(index) {
                        let mut fields = ResponseHeaders::default();
                        headers.write(&mut fields, &state);
                        fields.apply_to(response.headers_mut());
                    }
                }
                response.headers_mut().insert(RETRY_AFTER, seconds(retry_after).max(1).into());
                Checked::Rejected(response)
            }
            Admit::Unavailable(err) => {
                if self.allow_degradation {
                    self.degraded.warn("ai-rate-limiting", &ctx.route_id, &err, "served without limits");
                    return Checked::Admitted(None);
                }
                self.degraded.warn("ai-rate-limiting", &ctx.route_id, &err, "rejected with 503");
                Checked::Unavailable(error_response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    ctx.error_style,
                    "rate limit counters are unavailable",
                    "rate_limit_unavailable",
                ))
            }
        }
    }

    /// The quota headers of instance `name` (whose quota is `quota`), made once per label.
    fn instance_headers(&self, name: &str, quota: &Quota) -> Option<Arc<QuotaHeaders>> {
        let known = self.instance_headers.read().unwrap_or_else(PoisonError::into_inner).get(name).cloned();
        if let Some(headers) = known {
            return headers;
        }
        let headers = QuotaHeaders::new(&format!("-{name}"), quota.limit).ok().map(Arc::new);
        let mut known = self.instance_headers.write().unwrap_or_else(PoisonError::into_inner);
        if known.len() < MOST_INSTANCE_HEADERS {
            known.insert(name.to_string(), headers.clone());
        }
        headers
    }

    /// Puts `reserved` back in the slot `before_proxy` took it from (left in place, so no new
    /// extension is allocated).
    fn put_back(ctx: &mut Ctx, reserved: Reserved) {
        if let Some(slot) = ctx.extensions.get_mut::<Reserved>() {
            *slot = reserved;
        }
    }

    fn rejection(&self) -> Response {
        match &self.rejected_msg {
            Some(message) => json_response(self.rejected_code, &serde_json::json!({ "error_msg": message })),
            None => error_response(
                self.rejected_code,
                switchyard_sdk::ErrorStyle::OpenAi,
                "AI rate limit exceeded",
                "rate_limit_exceeded",
            ),
        }
    }
}

#[derive_phases]
#[async_trait]
impl Plugin for AiRateLimiting {
    /// Estimates the request's cost, and reserves it on the rules' counters.
    async fn access(&self, ctx: &mut Ctx, req: &mut Request) -> Result<Flow, PluginError> {
        let estimate = Estimate::of(&req.body, self.default_completion_tokens);
        let cost = self.estimated_cost(&estimate);
        let mut reserved = Reserved { estimate, ..Reserved::default() };
        if !self.rules.is_empty() {
            let counters: Vec<Counter> = self
                .rules
                .iter()
                .map(|rule| Counter {
                    key: Self::key(ctx, &[&rule.label, &rule.key.value(ctx, req)]),
                    limit: rule.quota.limit,
                    window: Some(rule.quota.window),
                    cost,
                })
                .collect();
            let headers: Vec<&QuotaHeaders> = self.rules.iter().map(|r| &r.headers).collect();
            match self.check(ctx, counters, &headers).await {
                Checked::Admitted(hold) => reserved.rules = hold,
                Checked::Rejected(response) | Checked::Unavailable(response) => return Ok(Flow::Respond(response)),
            }
        }
        ctx.extensions.insert(reserved);
        Ok(Flow::Continue)
    }

    /// Reserves on the counter of the instance this attempt goes to (refunding the one a failed
    /// earlier attempt reserved); a spent instance is skipped when `ai-proxy-multi`'s fallback
    /// strategy allows it, else the request is rejected.
    async fn before_proxy(&self, ctx: &mut Ctx, upstream: &mut UpstreamRequest) -> Result<Flow, PluginError> {
        let Some(mut reserved) = ctx.extensions.get_mut::<Reserved>().map(std::mem::take) else {
            return Ok(Flow::Continue);
        };
        if let Some(earlier) = reserved.instance.take() {
            earlier.settle(Some(0));
        }
        let name: &str = &upstream.label;
        let quota = self.instances.iter().find(|(n, _)| n == name).map(|(_, q)| *q).or(self.quota);
        let Some(quota) = quota else {
            Self::put_back(ctx, reserved);
            return Ok(Flow::Continue);
        };
        let cost = self.estimated_cost(&reserved.estimate);
        let counter =
            Counter { key: Self::key(ctx, &["instance:", name]), limit: quota.limit, window: Some(quota.window), cost };
        let headers = self.instance_headers(name, &quota);
        let headers: Vec<&QuotaHeaders> = headers.as_deref().into_iter().collect();
        let flow = match self.check(ctx, vec![counter], &headers).await {
            Checked::Admitted(hold) => {
                reserved.instance = hold;
                Flow::Continue
            }
            Checked::Rejected(response) if ctx.extensions.get::<RateLimitFallback>().is_some() => Flow::Skip(response),
            Checked::Rejected(response) | Checked::Unavailable(response) => Flow::Respond(response),
        };
        Self::put_back(ctx, reserved);
        Ok(flow)
    }

    /// Settles every reservation to the real usage, or refunds it when the request failed.
    fn log(&self, ctx: &Ctx, outcome: &Outcome) {
        let Some(reserved) = ctx.extensions.get::<Reserved>() else { return };
        let cost = settled_cost(ctx, outcome, |usage| self.cost(usage));
        for hold in reserved.rules.iter().chain(reserved.instance.iter()) {
            hold.settle(cost);
        }
    }
}
