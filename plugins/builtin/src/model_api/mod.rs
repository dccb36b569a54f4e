//! The model API (AISIX compatible), for callers with hashed API keys: `POST /v1/chat/completions`,
//! `/v1/responses`, `/v1/messages` (and `/v1/messages/count_tokens` for the `anthropic`
//! adapter), `/v1/embeddings`, and `GET /v1/models`. The core serves them as built-in routes
//! ([`builtin_routes`]) whose one plugin is `model-api`, compiled through the registry like any
//! other; it runs on the same pipeline, provider and conversion code as `ai-proxy` routes: it
//! authenticates the caller, resolves the alias, and hands the core a one-attempt target (a
//! direct model) or a run of `ai-proxy-multi`'s failover engine (a routing alias, [`routing`]).
//! Each protocol reaches each adapter natively or converted, and the alias is reported as `model`
//! in every answer and stream event (a routing alias's answer: the alias of the target that
//! wrote it).

pub mod adapter;
pub mod catalog;
pub mod cooldown;
pub mod quota;
pub mod routing;

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use http::header::AUTHORIZATION;
use http::StatusCode;
use serde_json::{json, Value};

use self::catalog::{Catalog, Model};
use self::quota::{quota_headers, Limiter, LimiterSettings, Quota, Reserved};
use crate::ai_proxy_multi::engine::Engine;
use crate::ai_proxy_multi::target::MultiTarget;
use crate::ai_proxy_multi::{ATTEMPTS_HEADER, INSTANCE_HEADER};
use crate::limits::{settled_cost, Estimate};
use http::HeaderValue;
use serde::Deserialize;
use switchyard_llm::body::{parse_body, record_payload};
use switchyard_llm::instance::{CallSettings, Instance};
use switchyard_llm::protocol::attempt::{prepare_response, Prepared};
use switchyard_llm::protocol::rewrite::{self, Stage};
use switchyard_llm::protocol::{Plan, Protocol};
use switchyard_sdk::raw_body::RawBody;
use switchyard_sdk::respond::{error_response, json_response};
use switchyard_sdk::{
    derive_phases, AttemptResult, BuildContext, ConfigError, CounterPolicy, Ctx, ErrorStyle, Flow, GiveUp, Next,
    Outcome, Plugin, PluginError, PluginFactory, Request, Response, Target, UpstreamRequest, Verdict,
};

/// Which endpoint of the model API a built-in route serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Surface {
    ChatCompletions,
    Responses,
    Messages,
    /// Anthropic's token count for a Messages request (the `anthropic` adapter only).
    CountTokens,
    Embeddings,
    Models,
}

impl Surface {
    /// The protocol callers speak on this endpoint (`None`: the model list).
    fn protocol(self) -> Option<Protocol> {
        match self {
            Surface::ChatCompletions => Some(Protocol::OpenAiChat),
            Surface::Responses => Some(Protocol::OpenAiResponses),
            Surface::Messages | Surface::CountTokens => Some(Protocol::AnthropicMessages),
            Surface::Embeddings => Some(Protocol::OpenAiEmbeddings),
            Surface::Models => None,
        }
    }

    /// Whether routing aliases are served here: the chat, Responses and Messages endpoints
    /// (a token count, an embedding and the model list name direct models only).
    fn routes(self) -> bool {
        matches!(self, Surface::ChatCompletions | Surface::Responses | Surface::Messages)
    }
}

/// The model API's routes as the core stores none of them but compiles them like any route
/// (its own ids, paths and methods; the plugin's config names the surface). The core gives them
/// the snapshot's [`Catalog`] and consults them only when no user route matches.
pub fn builtin_routes() -> Vec<Value> {
    [
        ("chat_completions", "/v1/chat/completions", "POST"),
        ("responses", "/v1/responses", "POST"),
        ("messages", "/v1/messages", "POST"),
        ("count_tokens", "/v1/messages/count_tokens", "POST"),
        ("embeddings", "/v1/embeddings", "POST"),
        ("models", "/v1/models", "GET"),
    ]
    .into_iter()
    .map(|(surface, path, method)| {
        json!({"id": format!("model-api:{path}"), "paths": [path], "methods": [method],
                "plugins": {NAME: {"surface": surface}}})
    })
    .collect()
}

/// The plugin's name in a route's `plugins`.
pub const NAME: &str = "model-api";

/// `model-api`'s config: the surface, and the transport fields shared by the AI plugins.
#[derive(Deserialize)]
struct ModelApiConfig {
    surface: Surface,
}

/// Compiles the model API's built-in routes; `limits` is the node config's `rate_limit`.
#[derive(Default)]
pub struct ModelApiFactory {
    pub limits: LimiterSettings,
}

impl PluginFactory for ModelApiFactory {
    fn name(&self) -> &'static str {
        NAME
    }

    fn priority(&self) -> i32 {
        1040
    }

    /// Compiles a built-in route's plugin over the catalog the core provides. A user's route or
    /// service gets no catalog, so `model-api` there is refused.
    fn build(&self, config: &Value, ctx: &dyn BuildContext) -> Result<Arc<dyn Plugin>, ConfigError> {
        let catalog = switchyard_sdk::provided::<Catalog>(ctx).ok_or_else(|| {
            ConfigError::new("", "serves the built-in /v1 routes of the model API only and cannot be configured")
        })?;
        let (config, settings) = CallSettings::parse_plugin::<ModelApiConfig>(config, ctx)?;
        let style = config.surface.protocol().map_or(ErrorStyle::OpenAi, Protocol::error_style);
        let settings = Arc::new(settings);
        let mut engines = HashMap::default();
        if config.surface.routes() {
            for (alias, routed) in catalog.routing_aliases() {
                match routed.engine(Arc::clone(&settings)) {
                    Ok(engine) => {
                        let targets_limited = routed.targets.iter().any(|t| t.quota.is_some());
                        let quota = routed.routing.quota.clone();
                        engines.insert(
                            alias.to_string(),
                            RoutedAlias { engine: Arc::new(engine), quota, targets_limited },
                        );
                    }
                    Err(err) => {
                        tracing::error!(model = alias, %err, "a routing model failed to compile; it is not served")
                    }
                }
            }
        }
        let store = ctx.counters(&self.limits.policy).map_err(|e| ConfigError::new("", e))?;
        let fallback = match self.limits.policy {
            CounterPolicy::Local => None,
            _ => Some(ctx.counters(&CounterPolicy::Local).map_err(|e| ConfigError::new("", e))?),
        };
        let limiter = Limiter::new(store, fallback, self.limits.default_completion_tokens);
        Ok(Arc::new(ModelApi { catalog, surface: config.surface, settings, style, engines, limiter }))
    }
}

/// A routing alias as this endpoint serves it.
struct RoutedAlias {
    /// Compiled to the engine `ai-proxy-multi` runs.
    engine: Arc<Engine>,
    /// The routing model's own `rate_limit`.
    quota: Option<Arc<Quota>>,
    /// Some target has a `rate_limit`, reserved on each attempt to it.
    targets_limited: bool,
}

pub struct ModelApi {
    catalog: Arc<Catalog>,
    surface: Surface,
    settings: Arc<CallSettings>,
    /// Errors in the shape of this endpoint's protocol (Anthropic's on `/v1/messages`).
    style: ErrorStyle,
    /// Routing aliases, each compiled to the engine `ai-proxy-multi` runs (chat, Responses and
    /// Messages surfaces).
    engines: HashMap<String, RoutedAlias, catalog::Fold>,
    /// Counts the `rate_limit`s of API keys and models.
    limiter: Limiter,
}

/// Marks a request to a routing alias: its answer names the target and the attempts.
#[derive(Clone, Copy)]
struct Routed;

impl ModelApi {
    fn error(&self, status: StatusCode, message: &str, code: &str) -> Result<Flow, PluginError> {
        Ok(Flow::Respond(error_response(status, self.style, message, code)))
    }

    /// The provider call behind `model` for this endpoint, or the 501 saying why there is none.
    fn instance_of<'m>(&self, model: &'m Model) -> Result<&'m Instance, String> {
        let instance = match self.surface {
            Surface::CountTokens => model.count_tokens.as_deref(),
            _ => model.instance.as_deref(),
        };
        instance.ok_or_else(|| match self.surface {
            Surface::CountTokens => "count_tokens is available for the `anthropic` adapter only".to_string(),
            _ => "this adapter is not available".to_string(),
        })
    }

    /// Runs at admission, once the caller may use the model: reserves the caller key's and the
    /// model's limits at once. `Err` is the 429 to answer. `limited_targets`: a routing alias
    /// whose targets reserve on their own limits per attempt, with the same estimate.
    async fn reserve(
        &self,
        ctx: &mut Ctx,
        layers: [Option<&Arc<Quota>>; 2],
        body: &RawBody,
        limited_targets: bool,
    ) -> Result<(), Response> {
        let layers: Vec<&Arc<Quota>> = layers.into_iter().flatten().collect();
        if layers.is_empty() && !limited_targets {
            return Ok(());
        }
        let estimate = if limited_targets || layers.iter().any(|q| q.counts_tokens()) {
            self.limiter.estimate(body, self.surface != Surface::Embeddings)
        } else {
            Estimate::default()
        };
        let mut reserved = Reserved { hold: None, headers: http::HeaderMap::new(), estimate, target: None };
        if !layers.is_empty() {
            if let Some((hold, states)) = self.limiter.admit(&layers, estimate, self.style).await? {
                reserved.headers = quota_headers(&layers, &states);
                reserved.hold = Some(hold);
            }
        }
        ctx.extensions.insert(reserved);
        Ok(())
    }

    /// A request to the routing alias `alias`, run on its engine: its targets are picked, tried
    /// and taken up per attempt, each answer converted back and named after its target.
    fn route(
        &self,
        ctx: &mut Ctx,
        engine: &Arc<Engine>,
        alias: String,
        protocol: Protocol,
        body: RawBody,
    ) -> Result<Flow, PluginError> {
        let plans: Vec<Plan> = engine.members.iter().filter_map(|m| m.instance.plan(protocol)).collect();
        if plans.is_empty() {
            let message = format!("{} is not available for the targets of model `{alias}`", protocol.name());
            return self.error(StatusCode::NOT_IMPLEMENTED, &message, "adapter_not_available");
        }
        let prepared = match Prepared::new(protocol, body, plans) {
            Ok(prepared) => prepared,
            Err(err) => return self.error(StatusCode::BAD_REQUEST, &err.0, "invalid_request"),
        };
        ctx.log.model = Some(alias);
        ctx.extensions.insert(Routed);
        ctx.target = Some(Box::new(MultiTarget::new(Arc::clone(engine), prepared, None)));
        Ok(Flow::Continue)
    }
}

/// The caller's key: `Authorization: Bearer <key>`, else `x-api-key`.
fn presented_key(req: &Request) -> Option<&str> {
    let headers = &req.head.headers;
    headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .or_else(|| headers.get("x-api-key").and_then(|v| v.to_str().ok()))
        .map(str::trim)
        .filter(|k| !k.is_empty())
}

/// Whether a chat client asked for a usage chunk (it gets one only then, as from OpenAI).
fn asks_for_usage(body: &RawBody) -> bool {
    body.get::<Value>("stream_options").is_some_and(|o| o.get("include_usage") == Some(&Value::Bool(true)))
}

#[derive_phases]
#[async_trait]
impl Plugin for ModelApi {
    fn error_style(&self) -> Option<ErrorStyle> {
        Some(self.style)
    }

    async fn access(&self, ctx: &mut Ctx, req: &mut Request) -> Result<Flow, PluginError> {
        let Some(caller) = presented_key(req).and_then(|key| self.catalog.authenticate(key)) else {
            return self.error(StatusCode::UNAUTHORIZED, "invalid API key", "invalid_api_key");
        };
        ctx.log.caller = Some(Arc::clone(&caller.id));
        let Some(protocol) = self.surface.protocol() else {
            return Ok(Flow::Respond(model_list(&self.catalog, caller)));
        };
        let body = match parse_body(ctx, req, &self.settings, self.style) {
            Ok(body) => body,
            Err(response) => return Ok(Flow::Respond(*response)),
        };
        record_payload(ctx, &body, protocol);
        let Some(alias) = body.str_field("model") else {
            return self.error(StatusCode::BAD_REQUEST, "`model` is required: send a model alias", "model_required");
        };
        // A direct model, else a routing alias served on this surface.
        let model = match (self.catalog.model(&alias), self.engines.get(&alias)) {
            (Some(model), _) => Ok(model),
            (None, Some(routed)) => Err(routed),
            (None, None) => {
                let message = format!("model `{alias}` does not exist");
                return self.error(StatusCode::NOT_FOUND, &message, "model_not_found");
            }
        };
        ctx.log.operation = Some(if self.surface == Surface::Embeddings { "embeddings" } else { "chat" });
        // Model API calls are metered per caller: their lines always carry model and tokens
        // (on routes, `logging.summaries` asks for them).
        ctx.log.log_summaries = true;
        ctx.log.model_labels = match &model {
            Ok(model) => model.labels.clone(),
            Err(routed) => routed.engine.models.labels(&body, None),
        };
        if !caller.may_use(&alias) {
            let message = format!("this API key may not use model `{alias}`");
            return self.error(StatusCode::FORBIDDEN, &message, "permission_denied");
        }
        // A token count generates nothing: it is not limited.
        if self.surface != Surface::CountTokens {
            let (model_quota, limited_targets) = match &model {
                Ok(model) => (model.quota.as_ref(), false),
                Err(routed) => (routed.quota.as_ref(), routed.targets_limited),
            };
            if let Err(response) = self.reserve(ctx, [caller.quota.as_ref(), model_quota], &body, limited_targets).await
            {
                return Ok(Flow::Respond(response));
            }
        }
        let model = match model {
            Ok(model) => model,
            Err(routed) => return self.route(ctx, &routed.engine, alias, protocol, body),
        };
        let instance = match self.instance_of(model) {
            Ok(instance) => instance,
            Err(message) => return self.error(StatusCode::NOT_IMPLEMENTED, &message, "adapter_not_available"),
        };
        let Some(plan) = instance.plan(protocol) else {
            let message = format!("{} is not available for the adapter of model `{alias}`", protocol.name());
            return self.error(StatusCode::NOT_IMPLEMENTED, &message, "adapter_not_available");
        };
        ctx.log.provider = Some(instance.endpoint.provider.name);
        ctx.log.model = Some(alias.clone());
        let include_usage = plan.conversion.makes_chat_answer() && asks_for_usage(&body);
        let prepared = match Prepared::new(protocol, body, [plan]) {
            Ok(prepared) => prepared,
            Err(err) => return self.error(StatusCode::BAD_REQUEST, &err.0, "invalid_request"),
        };
        // A token count has no `model` to report; every other answer reports the alias.
        let after = if self.surface == Surface::CountTokens { Vec::new() } else { vec![Stage::Alias(alias)] };
        let before = model.reasoning_field.iter().map(|field| Stage::ReasoningField(field.clone())).collect();
        prepare_response(ctx, &plan, include_usage, before, after);
        let body = instance.body_for(prepared.body_for(&plan), plan.target);
        let Some(mut upstream) = instance.request_with(req, &plan, body, &self.settings, &model.strip) else {
            return self.error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the model's upstream URL is invalid",
                "internal_error",
            );
        };
        if let Some(timeout) = model.timeout {
            upstream.timeout = timeout;
        }
        upstream.timing.first_event = model.stream_timeout;
        upstream.timing.stream_idle = model.stream_timeout;
        ctx.target = Some(Box::new(Once { upstream: Some(upstream) }));
        Ok(Flow::Continue)
    }

    /// Reserves on the limits of the routing target this attempt goes to (giving back what an
    /// earlier attempt reserved); a target whose limit is spent is skipped for the next one.
    async fn before_proxy(&self, ctx: &mut Ctx, upstream: &mut UpstreamRequest) -> Result<Flow, PluginError> {
        if ctx.extensions.get::<Routed>().is_none() {
            return Ok(Flow::Continue);
        }
        let Some(reserved) = ctx.extensions.get_mut::<Reserved>() else { return Ok(Flow::Continue) };
        if let Some(earlier) = reserved.target.take() {
            earlier.settle(Some(0));
        }
        let estimate = reserved.estimate;
        let Some(quota) = self.catalog.model(&upstream.label).and_then(|m| m.quota.as_ref()) else {
            return Ok(Flow::Continue);
        };
        match self.limiter.admit(&[quota], estimate, self.style).await {
            Ok(hold) => {
                if let Some(reserved) = ctx.extensions.get_mut::<Reserved>() {
                    reserved.target = hold.map(|(hold, _)| hold);
                }
                Ok(Flow::Continue)
            }
            Err(response) => Ok(Flow::Skip(response)),
        }
    }

    fn header_filter(&self, ctx: &mut Ctx, head: &mut http::response::Parts) {
        if head.status.is_success() {
            if let Some(reserved) = ctx.extensions.get::<Reserved>() {
                head.headers.extend(reserved.headers.clone());
            }
        }
        if ctx.extensions.get::<Routed>().is_some() {
            if let Some(target) = ctx.log.instance.as_deref().and_then(|i| HeaderValue::from_str(i).ok()) {
                head.headers.insert(INSTANCE_HEADER, target);
            }
            head.headers.insert(ATTEMPTS_HEADER, ctx.log.attempts.into());
        }
        rewrite::on_head(ctx, head);
    }

    fn body_filter(&self, ctx: &mut Ctx, chunk: &mut Bytes, end_of_stream: bool) {
        rewrite::on_body(ctx, chunk, end_of_stream);
    }

    /// Settles the request's reservations: tokens to the usage it reported (refunded when it
    /// failed), its place in flight given back.
    fn log(&self, ctx: &Ctx, outcome: &Outcome) {
        let Some(reserved) = ctx.extensions.get::<Reserved>() else { return };
        let cost = settled_cost(ctx, outcome, |usage| usage.total_tokens);
        for hold in reserved.hold.iter().chain(reserved.target.iter()) {
            hold.settle(cost);
        }
    }
}

/// One attempt, built in `access`.
struct Once {
    upstream: Option<UpstreamRequest>,
}

impl Target for Once {
    fn next(&mut self, _ctx: &mut Ctx, _req: &Request, _attempt: u32) -> Next {
        match self.upstream.take() {
            Some(upstream) => Next::Attempt(upstream),
            None => Next::Exhausted(GiveUp::LastAsIs),
        }
    }

    fn judge(&mut self, _ctx: &mut Ctx, _result: &AttemptResult<'_>) -> Verdict {
        Verdict::Accept
    }
}

/// `GET /v1/models`: the aliases this caller may use, in OpenAI's list shape.
fn model_list(catalog: &Catalog, caller: &catalog::CallerKey) -> Response {
    let data: Vec<Value> = catalog
        .models_for(caller)
        .into_iter()
        .map(|(alias, provider)| json!({"id": alias, "object": "model", "created": 0, "owned_by": provider}))
        .collect();
    json_response(StatusCode::OK, &json!({"object": "list", "data": data}))
}
