//! The model API (AISIX compatible): `POST /v1/chat/completions`, `POST /v1/embeddings` and
//! `GET /v1/models` for callers with hashed API keys. The core serves them as built-in routes
//! ([`builtin_routes`]) whose one plugin is `model-api`, compiled through the registry like any
//! other; it runs on the same pipeline and provider code as `ai-proxy` routes: it authenticates
//! the caller, resolves the alias, and hands the core a one-attempt target.

pub mod adapter;
pub mod catalog;
pub mod cooldown;
mod rewrite;
pub mod routing;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE};
use http::StatusCode;
use serde_json::{json, Value};

use self::catalog::Catalog;
use self::rewrite::Rewrite;
use crate::ai_proxy_multi::engine::Engine;
use crate::ai_proxy_multi::target::MultiTarget;
use crate::ai_proxy_multi::{ATTEMPTS_HEADER, INSTANCE_HEADER};
use http::HeaderValue;
use serde::Deserialize;
use switchyard_llm::body::parse_chat_body;
use switchyard_llm::instance::CallSettings;
use switchyard_llm::observe;
use switchyard_sdk::respond::{error_response, json_response};
use switchyard_sdk::{
    derive_phases, AttemptResult, BuildContext, ConfigError, Ctx, ErrorStyle, Flow, GiveUp, Next, Plugin, PluginError,
    PluginFactory, Request, Response, Target, UpstreamRequest, Verdict,
};

/// Which endpoint of the model API a built-in route serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Surface {
    ChatCompletions,
    Embeddings,
    Models,
}

/// The model API's routes as the core stores none of them but compiles them like any route
/// (its own ids, paths and methods; the plugin's config names the surface). The core gives them
/// the snapshot's [`Catalog`] and consults them only when no user route matches.
pub fn builtin_routes() -> Vec<Value> {
    [
        ("chat_completions", "/v1/chat/completions", "POST"),
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

pub struct ModelApiFactory;

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
        let settings = Arc::new(settings);
        let mut engines = HashMap::new();
        if config.surface == Surface::ChatCompletions {
            for (alias, routed) in catalog.routing_aliases() {
                match routed.engine(Arc::clone(&settings)) {
                    Ok(engine) => {
                        engines.insert(alias.to_string(), Arc::new(engine));
                    }
                    Err(err) => {
                        tracing::error!(model = alias, %err, "a routing model failed to compile; it is not served")
                    }
                }
            }
        }
        Ok(Arc::new(ModelApi { catalog, surface: config.surface, settings, engines }))
    }
}

pub struct ModelApi {
    catalog: Arc<Catalog>,
    surface: Surface,
    settings: Arc<CallSettings>,
    /// Routing aliases, each compiled to the engine `ai-proxy-multi` runs (chat only).
    engines: HashMap<String, Arc<Engine>>,
}

/// Marks a request to a routing alias: its answer names the target and the attempts.
#[derive(Clone, Copy)]
struct Routed;

fn error(status: StatusCode, message: &str, code: &str) -> Flow {
    Flow::Respond(error_response(status, ErrorStyle::OpenAi, message, code))
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

#[derive_phases]
#[async_trait]
impl Plugin for ModelApi {
    fn error_style(&self) -> Option<ErrorStyle> {
        Some(ErrorStyle::OpenAi)
    }

    async fn access(&self, ctx: &mut Ctx, req: &mut Request) -> Result<Flow, PluginError> {
        let Some(caller) = presented_key(req).and_then(|key| self.catalog.authenticate(key)) else {
            return Ok(error(StatusCode::UNAUTHORIZED, "invalid API key", "invalid_api_key"));
        };
        ctx.log.caller = Some(Arc::clone(&caller.id));
        if self.surface == Surface::Models {
            return Ok(Flow::Respond(model_list(&self.catalog, caller)));
        }
        let body = match parse_chat_body(ctx, req, &self.settings) {
            Ok(body) => body,
            Err(response) => return Ok(Flow::Respond(*response)),
        };
        let Some(alias) = body.str_field("model") else {
            return Ok(error(StatusCode::BAD_REQUEST, "`model` is required: send a model alias", "model_required"));
        };
        let model = self.catalog.model(&alias);
        let engine = self.engines.get(&alias);
        if model.is_none() && engine.is_none() {
            return Ok(error(StatusCode::NOT_FOUND, &format!("model `{alias}` does not exist"), "model_not_found"));
        }
        ctx.log.operation = Some(if self.surface == Surface::Embeddings { "embeddings" } else { "chat" });
        ctx.log.model_labels = match (model, engine) {
            (Some(model), _) => model.labels.clone(),
            (None, Some(engine)) => engine.models.labels(&body, None),
            (None, None) => Default::default(),
        };
        if !caller.may_use(&alias) {
            return Ok(error(
                StatusCode::FORBIDDEN,
                &format!("this API key may not use model `{alias}`"),
                "permission_denied",
            ));
        }
        let Some(model) = model else {
            // A routing alias: its targets are picked, tried and taken up per attempt.
            ctx.log.model = Some(alias);
            ctx.extensions.insert(Routed);
            ctx.target = engine.map(|engine| Box::new(MultiTarget::new(Arc::clone(engine), body, None)) as _);
            return Ok(Flow::Continue);
        };
        if !model.adapter.served() {
            return Ok(error(
                StatusCode::NOT_IMPLEMENTED,
                &format!("the `{}` adapter is not available yet", model.adapter.name()),
                "adapter_not_available",
            ));
        }
        let instance = match self.surface {
            Surface::Embeddings => model.embeddings.as_ref(),
            _ => model.chat.as_ref(),
        };
        let Some(instance) = instance else {
            return Ok(error(
                StatusCode::NOT_IMPLEMENTED,
                "embeddings are available for the `openai` adapter only",
                "adapter_not_available",
            ));
        };
        ctx.log.provider = Some(instance.endpoint.provider.name);
        ctx.log.model = Some(alias.clone());
        ctx.extensions.insert(Rewrite::new(&alias, model.adapter, model.reasoning_field.clone(), &body));
        let mut upstream = instance.request_with(req, instance.body_for(&body), &self.settings, &model.strip);
        if let Some(timeout) = model.timeout {
            upstream.timeout = timeout;
        }
        upstream.timing.first_event = model.stream_timeout;
        upstream.timing.stream_idle = model.stream_timeout;
        ctx.target = Some(Box::new(Once { upstream: Some(upstream) }));
        Ok(Flow::Continue)
    }

    fn header_filter(&self, ctx: &mut Ctx, head: &mut http::response::Parts) {
        if ctx.extensions.get::<Routed>().is_some() {
            if let Some(target) = ctx.log.instance.as_deref().and_then(|i| HeaderValue::from_str(i).ok()) {
                head.headers.insert(INSTANCE_HEADER, target);
            }
            head.headers.insert(ATTEMPTS_HEADER, ctx.log.attempts.into());
        }
        let event_stream = head
            .headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim_start().starts_with("text/event-stream"));
        if let Some(rewrite) = ctx.extensions.get_mut::<Rewrite>() {
            rewrite.event_stream = event_stream;
            rewrite.status = head.status.as_u16();
        }
        observe::on_head(ctx, head);
    }

    fn body_filter(&self, ctx: &mut Ctx, chunk: &mut Bytes, end_of_stream: bool) {
        if let Some(rewrite) = ctx.extensions.get_mut::<Rewrite>() {
            rewrite.apply(chunk, end_of_stream);
        }
        observe::on_body(ctx, chunk, end_of_stream);
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

pub(crate) fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}
