//! `ai-proxy-multi`: several provider instances per route, picked by priority and weight (or a
//! consistent hash), with fallback on the failures the strategy covers, and health that outlives
//! requests: `Retry-After` cooldowns, passive checks, active probes.
//!
//! Per request the core asks [`MultiTarget::next`] for an attempt and [`MultiTarget::judge`]
//! about its answer; a covered failure excludes the instance for the rest of the request and the
//! next pick is made, moving to a lower priority when a group is used up. Fallback happens only
//! on the response head, so never after a byte reached the client.

mod active;
pub mod config;
mod health;
mod select;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, RETRY_AFTER};
use tokio::time::Instant;

use self::active::Probe;
use self::config::{FallbackStrategyConfig, MultiConfig};
use self::health::{Health, TransportFailure};
use self::select::Selector;
use http::StatusCode;
use switchyard_llm::body::parse_route_request;
use switchyard_llm::instance::{CallSettings, Instance};
use switchyard_llm::protocol::attempt::Prepared;
use switchyard_llm::protocol::{rewrite, Plan};
use switchyard_llm::providers::{AuthConfig, BaseUrls};
use switchyard_sdk::respond::error_response;
use switchyard_sdk::{
    derive_phases, AttemptResult, BackgroundTask, BuildContext, ConfigError, Ctx, ErrorStyle, Flow, GiveUp, Next,
    Plugin, PluginError, PluginFactory, Request, Target, UpstreamIo, Verdict,
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
            let instance = Instance::compile(
                &spec.name,
                &spec.provider,
                &spec.auth,
                &spec.options,
                &spec.overrides,
                &self.base_urls,
            )
            .map_err(|e| e.within(&here))?;
            let checks = spec.checks.clone().unwrap_or_default();
            let health = Arc::new(Health::new(checks.passive.unwrap_or_default()));
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
            members.push(Member { instance, health, probe });
        }
        let weights: Vec<(&str, i64, u32)> =
            config.instances.iter().map(|i| (i.name.as_str(), i.priority, i.weight)).collect();
        let selector = Selector::new(&weights, &config.balancer)?;
        let strategy = Strategy::parse(config.fallback_strategy.as_ref())?;
        for (i, status) in config.fallback_http_statuses.iter().enumerate() {
            if !(400..=599).contains(status) {
                return Err(ConfigError::new(format!("fallback_http_statuses[{i}]"), "must be a 4xx or 5xx status"));
            }
        }
        Ok(Arc::new(AiProxyMulti {
            shared: Arc::new(Shared {
                members,
                selector,
                strategy,
                fallback_statuses: config.fallback_http_statuses,
                max_retries: config.max_retries,
                retry_window: config.retry_on_failure_within_ms.map(Duration::from_millis),
                settings,
            }),
        }))
    }
}

/// Which failures move a request to the next instance.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Strategy {
    on_429: bool,
    on_5xx: bool,
    /// Connection refused, timeouts, broken connections.
    on_transport: bool,
}

impl Strategy {
    fn parse(config: Option<&FallbackStrategyConfig>) -> Result<Strategy, ConfigError> {
        let mut strategy = Strategy::default();
        let names: Vec<(String, &str)> = match config {
            None => return Ok(strategy),
            Some(FallbackStrategyConfig::One(name)) => vec![("fallback_strategy".into(), name.as_str())],
            Some(FallbackStrategyConfig::Many(names)) => {
                names.iter().enumerate().map(|(i, n)| (format!("fallback_strategy[{i}]"), n.as_str())).collect()
            }
        };
        let single = matches!(config, Some(FallbackStrategyConfig::One(_)));
        for (path, name) in names {
            match name {
                "http_429" | "rate_limiting" => strategy.on_429 = true,
                "http_5xx" => {
                    strategy.on_5xx = true;
                    strategy.on_transport = true;
                }
                "instance_health_and_rate_limiting" if single => {
                    strategy = Strategy { on_429: true, on_5xx: true, on_transport: true };
                }
                _ => {
                    return Err(ConfigError::new(
                        path,
                        "unknown fallback strategy: use http_429, http_5xx, rate_limiting or \
                         instance_health_and_rate_limiting (alone)",
                    ))
                }
            }
        }
        Ok(strategy)
    }
}

struct Member {
    instance: Instance,
    health: Arc<Health>,
    /// `checks.active`: run by the core as background work while this plugin is live.
    probe: Option<Arc<Probe>>,
}

struct Shared {
    members: Vec<Member>,
    selector: Selector,
    strategy: Strategy,
    fallback_statuses: Vec<u16>,
    max_retries: Option<u32>,
    retry_window: Option<Duration>,
    settings: CallSettings,
}

struct AiProxyMulti {
    shared: Arc<Shared>,
}

const INSTANCE_HEADER: HeaderName = HeaderName::from_static("x-switchyard-instance");
const ATTEMPTS_HEADER: HeaderName = HeaderName::from_static("x-switchyard-attempts");

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
        let key = self.shared.selector.key(req, &ctx.client_addr.ip().to_string());
        ctx.target = Some(Box::new(MultiTarget {
            shared: Arc::clone(&self.shared),
            prepared,
            key,
            tried: Vec::new(),
            current: None,
            started: Instant::now(),
        }));
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

/// The per-request side: which instances this request already tried.
struct MultiTarget {
    shared: Arc<Shared>,
    prepared: Prepared,
    key: Option<String>,
    tried: Vec<usize>,
    current: Option<usize>,
    started: Instant,
}

impl Target for MultiTarget {
    fn next(&mut self, ctx: &mut Ctx, req: &Request, attempt: u32) -> Next {
        let shared = &self.shared;
        if attempt > 1 {
            let retries_used = attempt - 1;
            if shared.max_retries.is_some_and(|max| retries_used > max)
                || shared.retry_window.is_some_and(|window| self.started.elapsed() > window)
            {
                return Next::Exhausted(GiveUp::LastAsIs);
            }
        }
        let now = Instant::now();
        let client = self.prepared.client;
        // An instance whose provider no conversion reaches is never picked for this request.
        let usable = |i: usize| {
            let member = &shared.members[i];
            !self.tried.contains(&i) && member.health.available(now) && member.instance.plan(client).is_some()
        };
        let Some(index) = shared.selector.pick(usable, self.key.as_deref()) else {
            if attempt == 1 {
                self.advise_retry_after(ctx, now);
            }
            return Next::Exhausted(GiveUp::LastAsBadGateway);
        };
        self.tried.push(index);
        self.current = Some(index);
        let instance = &shared.members[index].instance;
        ctx.log.provider = Some(instance.endpoint.provider.name);
        ctx.log.model = instance.model().map(str::to_string).or_else(|| self.prepared.original().str_field("model"));
        match self.prepared.attempt(ctx, req, instance, &shared.settings) {
            Some(upstream) => Next::Attempt(upstream),
            None => Next::Exhausted(GiveUp::LastAsBadGateway),
        }
    }

    fn judge(&mut self, _ctx: &mut Ctx, result: &AttemptResult<'_>) -> Verdict {
        let Some(index) = self.current else { return Verdict::Accept };
        let shared = &self.shared;
        let health = &shared.members[index].health;
        let now = Instant::now();
        let strategy = shared.strategy;
        let covered = match result {
            AttemptResult::Response { status, headers } => {
                health.record_status(status.as_u16(), headers, now);
                let code = status.as_u16();
                shared.fallback_statuses.contains(&code)
                    || (code == 429 && strategy.on_429)
                    || (status.is_server_error() && strategy.on_5xx)
            }
            AttemptResult::ConnectFailed => {
                health.record_transport(TransportFailure::Connect, now);
                strategy.on_transport
            }
            AttemptResult::TimedOut => {
                health.record_transport(TransportFailure::Timeout, now);
                strategy.on_transport
            }
            AttemptResult::Failed => {
                health.record_transport(TransportFailure::Other, now);
                strategy.on_transport
            }
        };
        if covered {
            Verdict::Retry
        } else {
            Verdict::Accept
        }
    }
}

impl MultiTarget {
    /// Nothing is pickable: tell the client when the first cooling instance comes back.
    fn advise_retry_after(&self, ctx: &mut Ctx, now: Instant) {
        let back = self.shared.members.iter().filter_map(|m| m.health.back_at()).filter(|at| *at > now).min();
        if let Some(back) = back {
            let seconds = (back - now).as_secs_f64().ceil().max(1.0) as u64;
            ctx.response_headers.insert(RETRY_AFTER, seconds.into());
        }
    }
}
