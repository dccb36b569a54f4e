//! The model API's built-in chain (AISIX compatible): `POST /v1/chat/completions`,
//! `POST /v1/embeddings` and `GET /v1/models` for callers with hashed API keys. It runs on the
//! same pipeline and provider code as `ai-proxy` routes: this plugin authenticates the caller,
//! resolves the alias, and hands the core a one-attempt target.

pub mod catalog;

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use http::header::AUTHORIZATION;
use http::StatusCode;
use serde_json::{json, Value};

use self::catalog::{Adapter, Catalog};
use switchyard_llm::body::{parse_body, record_payload};
use switchyard_llm::config::CommonConfig;
use switchyard_llm::instance::CallSettings;
use switchyard_llm::protocol::attempt::{prepare_response, Prepared};
use switchyard_llm::protocol::rewrite::{self, Stage};
use switchyard_llm::protocol::{Conversion, Protocol};
use switchyard_sdk::respond::{error_response, json_response};
use switchyard_sdk::{
    derive_phases, AttemptResult, BuildContext, ConfigError, Ctx, ErrorStyle, Flow, GiveUp, Next, Plugin, PluginError,
    Request, Response, Target, UpstreamRequest, Verdict,
};

/// Which endpoint of the model API a built-in route serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Surface {
    ChatCompletions,
    Embeddings,
    Models,
}

impl Surface {
    pub const ALL: [(Surface, &'static str); 3] = [
        (Surface::ChatCompletions, "/v1/chat/completions"),
        (Surface::Embeddings, "/v1/embeddings"),
        (Surface::Models, "/v1/models"),
    ];
}

pub struct ModelApi {
    catalog: Arc<Catalog>,
    surface: Surface,
    settings: Arc<CallSettings>,
}

impl ModelApi {
    /// The plugin of one built-in route over `catalog`.
    pub fn new(catalog: Arc<Catalog>, surface: Surface, settings: Arc<CallSettings>) -> Self {
        Self { catalog, surface, settings }
    }

    /// The call settings of every model API call: `ai-proxy`'s defaults.
    pub fn default_settings(ctx: &dyn BuildContext) -> Result<CallSettings, ConfigError> {
        let common: CommonConfig = switchyard_sdk::parse_config(&json!({}))?;
        CallSettings::compile(&common, ctx)
    }
}

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
        if self.surface == Surface::Models {
            return Ok(Flow::Respond(model_list(&self.catalog, caller)));
        }
        let protocol = match self.surface {
            Surface::ChatCompletions => Protocol::OpenAiChat,
            Surface::Embeddings => Protocol::OpenAiEmbeddings,
            Surface::Models => return Ok(Flow::Continue),
        };
        let body = match parse_body(ctx, req, &self.settings, ctx.error_style) {
            Ok(body) => body,
            Err(response) => return Ok(Flow::Respond(*response)),
        };
        record_payload(ctx, &body, protocol);
        let Some(alias) = body.str_field("model") else {
            return Ok(error(StatusCode::BAD_REQUEST, "`model` is required: send a model alias", "model_required"));
        };
        let Some(model) = self.catalog.model(&alias) else {
            return Ok(error(StatusCode::NOT_FOUND, &format!("model `{alias}` does not exist"), "model_not_found"));
        };
        if !caller.may_use(&alias) {
            return Ok(error(
                StatusCode::FORBIDDEN,
                &format!("this API key may not use model `{alias}`"),
                "permission_denied",
            ));
        }
        let instance = match (&model.adapter, &model.instance) {
            (_, Some(instance)) => instance,
            (adapter, None) => {
                let name = match adapter {
                    Adapter::Unavailable(name) => name.as_str(),
                    _ => "this",
                };
                return Ok(error(
                    StatusCode::NOT_IMPLEMENTED,
                    &format!("the `{name}` adapter is not available yet"),
                    "adapter_not_available",
                ));
            }
        };
        let Some(plan) = instance.plan(protocol) else {
            return Ok(error(
                StatusCode::NOT_IMPLEMENTED,
                &format!("{} is not available for the adapter of model `{alias}`", protocol.name()),
                "adapter_not_available",
            ));
        };
        ctx.log.provider = Some(instance.endpoint.provider.name);
        ctx.log.model = Some(alias.clone());
        let include_usage = plan.conversion == Conversion::ChatOverMessages
            && body.get::<Value>("stream_options").is_some_and(|o| o.get("include_usage") == Some(&Value::Bool(true)));
        let prepared = match Prepared::new(protocol, body, [plan]) {
            Ok(prepared) => prepared,
            Err(err) => return Ok(error(StatusCode::BAD_REQUEST, &err.0, "invalid_request")),
        };
        let before = model.reasoning_field.iter().map(|field| Stage::ReasoningField(field.clone())).collect();
        prepare_response(ctx, &plan, include_usage, before, vec![Stage::Alias(alias)]);
        let body = instance.body_for(prepared.body_for(&plan), plan.target);
        let Some(upstream) = instance.request_with(req, &plan, body, &self.settings, &model.strip) else {
            return Ok(error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the model's upstream URL is invalid",
                "internal_error",
            ));
        };
        ctx.target = Some(Box::new(Once { upstream: Some(upstream) }));
        Ok(Flow::Continue)
    }

    fn header_filter(&self, ctx: &mut Ctx, head: &mut http::response::Parts) {
        rewrite::on_head(ctx, head);
    }

    fn body_filter(&self, ctx: &mut Ctx, chunk: &mut Bytes, end_of_stream: bool) {
        rewrite::on_body(ctx, chunk, end_of_stream);
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
