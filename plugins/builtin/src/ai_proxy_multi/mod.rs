//! `ai-proxy-multi`: several provider instances per route, picked by priority and weight (or a
//! consistent hash), with fallback on the failures the strategy covers, and health that outlives
//! requests: `Retry-After` cooldowns, passive checks, active probes.
//!
//! Per request the core asks [`MultiTarget::next`](target::MultiTarget) for an attempt and
//! `judge` about its answer; a covered failure excludes the instance for the rest of the request
//! and the next pick is made, moving to a lower priority when a group is used up. Before that,
//! a `Retry-After` the route is willing to wait out, or a `same_instance_retries` budget, sends
//! the same instance the request again. Fallback happens on the response head (held until the
//! first event under `first_token_timeout_ms`); after bytes reached the client, `stream_resume`
//! lets the next instance take a broken stream up (an OpenAI chat stream only).
//!
//! Any client protocol is served: only instances whose provider takes it (natively or through
//! a conversion) are picked, the body is converted once per protocol in `access`, and each
//! attempt sets up the conversion of its own answer.

pub mod config;
pub(crate) mod engine;
mod errors;
pub(crate) mod select;
pub(crate) mod target;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};

use self::config::{takes_prefill_by_default, MultiConfig};
use self::engine::{check_fallback_codes, Engine, Member, Strategy};
use self::select::Selector;
use self::target::MultiTarget;
use crate::health::active::{self, Probe};
use crate::health::checks::PassiveConfig;
use crate::health::Health;
use http::StatusCode;
use switchyard_llm::body::parse_route_request;
use switchyard_llm::instance::{CallSettings, Instance};
use switchyard_llm::labels::KnownModels;
use switchyard_llm::protocol::attempt::Prepared;
use switchyard_llm::protocol::{rewrite, Plan};
use switchyard_llm::providers::{AuthConfig, BaseUrls};
use switchyard_sdk::respond::error_response;
use switchyard_sdk::{
    derive_phases, BackgroundTask, BuildContext, ConfigError, Ctx, ErrorStyle, Flow, InstanceHealth, Plugin,
    PluginError, PluginFactory, Request, UpstreamIo,
};

pub struct AiProxyMultiFactory {
    base_urls: BaseUrls,
}

impl AiProxyMultiFactory {
    /// `base_urls`: the node config's `providers.<name>.base_url` replacements.
    pub fn new(base_urls: BaseUrls) -> Self {
        Self { base_urls }
    }
}

impl PluginFactory for AiProxyMultiFactory {
    fn name(&self) -> &'static str {
        "ai-proxy-multi"
    }

    fn priority(&self) -> i32 {
        1041
    }

    fn secret_fields(&self) -> Vec<String> {
        AuthConfig::secret_fields_at("instances[].auth")
    }

    fn build(&self, config: &serde_json::Value, ctx: &dyn BuildContext) -> Result<Arc<dyn Plugin>, ConfigError> {
        let (config, settings) = CallSettings::parse_plugin::<MultiConfig>(config, ctx)?;
        if config.instances.is_empty() {
            return Err(ConfigError::new("instances", "must hold at least one instance"));
        }
        let mut members = Vec::with_capacity(config.instances.len());
        for (i, spec) in config.instances.iter().enumerate() {
            let here = format!("instances[{i}]");
            if let Some(first) = config.instances[..i].iter().position(|other| other.name == spec.name) {
                return Err(ConfigError::new(
                    format!("{here}.name"),
                    format!("duplicate instance name `{}`: instances[{first}] and instances[{i}]", spec.name),
                ));
            }
            let instance = Arc::new(
                Instance::compile(
                    &spec.name,
                    &spec.provider,
                    &spec.auth,
                    spec.provider_conf.as_ref(),
                    &spec.options,
                    &spec.overrides,
                    &self.base_urls,
                )
                .map_err(|e| e.within(&here))?,
            );
            let checks = spec.checks.clone().unwrap_or_default();
            let passive = checks.passive.unwrap_or_default();
            check_cooldowns(&passive).map_err(|e| e.within(&format!("{here}.checks.passive")))?;
            let health = Arc::new(Health::new(passive));
            let probe = match &checks.active {
                Some(active) => {
                    active.check().map_err(|e| e.within(&format!("{here}.checks.active")))?;
                    Some(Arc::new(
                        Probe::new(active, &instance.endpoint.uri, settings.client.clone())
                            .map_err(|e| e.within(&here))?,
                    ))
                }
                None => None,
            };
            let first_token = spec.first_token_timeout_ms.unwrap_or(config.first_token_timeout_ms);
            let mut member = Member::new(instance, health);
            member.probe = probe;
            member.first_token = (first_token > 0).then(|| Duration::from_millis(first_token));
            member.stream_idle = config.stream_idle_timeout_ms.map(Duration::from_millis);
            member.accepts_prefill = spec.accepts_prefill.unwrap_or_else(|| takes_prefill_by_default(&spec.provider));
            members.push(member);
        }
        let weights: Vec<(&str, i64, u32)> =
            config.instances.iter().map(|i| (i.name.as_str(), i.priority, i.weight)).collect();
        let selector = Selector::new(&weights, &config.balancer)?;
        let strategy = Strategy::parse(config.fallback_strategy.as_ref())?;
        check_fallback_codes(&config.fallback_error_codes, "fallback_error_codes")?;
        for (i, status) in config.fallback_http_statuses.iter().enumerate() {
            if !(400..=599).contains(status) {
                return Err(ConfigError::new(format!("fallback_http_statuses[{i}]"), "must be a 4xx or 5xx status"));
            }
        }
        if config.stream_idle_timeout_ms == Some(0) {
            return Err(ConfigError::new("stream_idle_timeout_ms", "must be at least 1 (milliseconds)"));
        }
        let models = KnownModels::new(members.iter().filter_map(|m| m.instance.model()));
        Ok(Arc::new(AiProxyMulti {
            shared: Arc::new(Engine {
                models,
                members,
                selector,
                strategy,
                fallback_statuses: config.fallback_http_statuses,
                fallback_codes: config.fallback_error_codes,
                max_retries: config.max_retries,
                retry_window: config.retry_on_failure_within_ms.map(Duration::from_millis),
                retry_after_max_wait: Duration::from_millis(config.retry_after_max_wait_ms),
                same_instance_retries: config.same_instance_retries,
                stream_resume: config.stream_resume,
                in_order_when_all_down: false,
                settings: Arc::new(settings),
            }),
        }))
    }
}

/// Put in the request's context by `ai-proxy-multi` when its `fallback_strategy` lets an instance
/// whose rate limit is spent leave rotation for the request (`rate_limiting`,
/// `instance_health_and_rate_limiting`): `ai-rate-limiting` then skips to the next instance
/// instead of rejecting.
#[derive(Debug, Clone, Copy)]
pub struct RateLimitFallback;

/// A passive check's cooldowns must make sense.
fn check_cooldowns(passive: &PassiveConfig) -> Result<(), ConfigError> {
    if passive.cooldown_ms == 0 {
        return Err(ConfigError::new("cooldown_ms", "must be at least 1 (milliseconds)"));
    }
    if passive.max_cooldown_ms < passive.cooldown_ms {
        return Err(ConfigError::new("max_cooldown_ms", "must be at least cooldown_ms"));
    }
    Ok(())
}

struct AiProxyMulti {
    shared: Arc<Engine>,
}

/// Names the instance (or routing target) that answered.
pub(crate) const INSTANCE_HEADER: HeaderName = HeaderName::from_static("x-switchyard-instance");
/// How many attempts the answer took.
pub(crate) const ATTEMPTS_HEADER: HeaderName = HeaderName::from_static("x-switchyard-attempts");

#[derive_phases]
#[async_trait]
impl Plugin for AiProxyMulti {
    fn error_style(&self) -> Option<ErrorStyle> {
        Some(ErrorStyle::OpenAi)
    }

    fn background(&self, io: &Arc<dyn UpstreamIo>) -> Vec<BackgroundTask> {
        let members = self.shared.members.iter();
        let probed = members.filter_map(|m| Some((Arc::clone(m.probe.as_ref()?), Arc::clone(&m.health))));
        probed.map(|(probe, health)| Box::pin(active::run(probe, health, Arc::clone(io))) as BackgroundTask).collect()
    }

    fn instance_health(&self) -> Vec<InstanceHealth> {
        let now = tokio::time::Instant::now();
        let members = self.shared.members.iter();
        members
            .map(|m| InstanceHealth { instance: Arc::clone(&m.instance.name), state: m.health.standing(now) })
            .collect()
    }

    async fn access(&self, ctx: &mut Ctx, req: &mut Request) -> Result<Flow, PluginError> {
        let (body, protocol) = match parse_route_request(ctx, req, &self.shared.settings) {
            Ok(parsed) => parsed,
            Err(response) => return Ok(Flow::Respond(*response)),
        };
        let members = &self.shared.members;
        let plans: Vec<Plan> = members.iter().filter_map(|m| m.instance.plan(protocol)).collect();
        if plans.is_empty() {
            let message = Plan::unsupported(members[0].instance.endpoint.provider.name, protocol);
            return Ok(Flow::Respond(error_response(
                StatusCode::BAD_REQUEST,
                ctx.error_style,
                &message,
                "unsupported_protocol",
            )));
        }
        // No instance can be called (each needs a model in its URL that nothing names): the
        // client's request is at fault, as with `ai-proxy`, not the providers.
        let path = req.head.uri.path();
        let why_not =
            |m: &Member| m.instance.plan(protocol).and_then(|plan| m.instance.unreachable(&plan, &body, path));
        if members.iter().all(|m| m.instance.plan(protocol).is_none() || why_not(m).is_some()) {
            if let Some(message) = members.iter().find_map(why_not) {
                return Ok(Flow::Respond(error_response(
                    StatusCode::BAD_REQUEST,
                    ctx.error_style,
                    message,
                    "model_required",
                )));
            }
        }
        let prepared = match Prepared::new(protocol, body, plans) {
            Ok(prepared) => prepared,
            Err(err) => {
                return Ok(Flow::Respond(error_response(
                    StatusCode::BAD_REQUEST,
                    ctx.error_style,
                    &err.0,
                    "invalid_request",
                )))
            }
        };
        ctx.log.operation = Some("chat");
        let key = self.shared.selector.key(req, ctx);
        if self.shared.strategy.on_rate_limit {
            ctx.extensions.insert(RateLimitFallback);
        }
        ctx.target = Some(Box::new(MultiTarget::new(Arc::clone(&self.shared), prepared, key)));
        Ok(Flow::Continue)
    }

    fn header_filter(&self, ctx: &mut Ctx, head: &mut http::response::Parts) {
        if let Some(instance) = ctx.log.instance.as_deref().and_then(|i| HeaderValue::from_str(i).ok()) {
            head.headers.insert(INSTANCE_HEADER, instance);
        }
        head.headers.insert(ATTEMPTS_HEADER, ctx.log.attempts.into());
        rewrite::on_head(ctx, head);
    }

    fn body_filter(&self, ctx: &mut Ctx, chunk: &mut Bytes, end_of_stream: bool) {
        rewrite::on_body(ctx, chunk, end_of_stream);
    }
}
