//! `ai-proxy`: sends a route's requests to one LLM provider, in whatever protocol the client
//! speaks (OpenAI chat, Responses, embeddings, Anthropic Messages, or passthrough), converted
//! when the provider does not speak it.
//!
//! Access phase: limit and parse the body, detect the protocol, convert it when needed (400/413
//! in the client protocol's error shape), then hand the core a one-attempt target. Response
//! phases: read usage from a copy for the access log, and convert the answer back.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use http::StatusCode;
use switchyard_llm::body::parse_route_request;
use switchyard_llm::config::AiProxyConfig;
use switchyard_llm::instance::{CallSettings, Instance};
use switchyard_llm::labels::KnownModels;
use switchyard_llm::protocol::attempt::Prepared;
use switchyard_llm::protocol::{rewrite, Plan};
use switchyard_llm::providers::{AuthConfig, BaseUrls};
use switchyard_sdk::respond::error_response;
use switchyard_sdk::{
    derive_phases, AttemptResult, BuildContext, ConfigError, Ctx, ErrorStyle, Flow, GiveUp, Next, Plugin, PluginError,
    PluginFactory, Request, Target, Verdict,
};

pub struct AiProxyFactory {
    base_urls: BaseUrls,
}

impl AiProxyFactory {
    /// `base_urls`: the node config's `providers.<name>.base_url` replacements.
    pub fn new(base_urls: BaseUrls) -> Self {
        Self { base_urls }
    }
}

impl PluginFactory for AiProxyFactory {
    fn name(&self) -> &'static str {
        "ai-proxy"
    }

    fn priority(&self) -> i32 {
        1040
    }

    fn secret_fields(&self) -> Vec<String> {
        AuthConfig::secret_fields_at("auth")
    }

    fn build(&self, config: &serde_json::Value, ctx: &dyn BuildContext) -> Result<Arc<dyn Plugin>, ConfigError> {
        let (config, settings) = CallSettings::parse_plugin::<AiProxyConfig>(config, ctx)?;
        let instance = Instance::compile(
            &config.provider,
            &config.provider,
            &config.auth,
            config.provider_conf.as_ref(),
            &config.options,
            &config.overrides,
            &self.base_urls,
        )?;
        let models = KnownModels::new(instance.model());
        Ok(Arc::new(AiProxy { shared: Arc::new(Shared { instance, settings, models }) }))
    }
}

struct Shared {
    instance: Instance,
    settings: CallSettings,
    models: KnownModels,
}

struct AiProxy {
    shared: Arc<Shared>,
}

#[derive_phases]
#[async_trait]
impl Plugin for AiProxy {
    fn error_style(&self) -> Option<ErrorStyle> {
        Some(ErrorStyle::OpenAi)
    }

    async fn access(&self, ctx: &mut Ctx, req: &mut Request) -> Result<Flow, PluginError> {
        let (body, protocol) = match parse_route_request(ctx, req, &self.shared.settings) {
            Ok(parsed) => parsed,
            Err(response) => return Ok(Flow::Respond(*response)),
        };
        let instance = &self.shared.instance;
        let provider = instance.endpoint.provider.name;
        let Some(plan) = instance.plan(protocol) else {
            let message = Plan::unsupported(provider, protocol);
            return Ok(Flow::Respond(error_response(
                StatusCode::BAD_REQUEST,
                ctx.error_style,
                &message,
                "unsupported_protocol",
            )));
        };
        if let Some(message) = instance.unreachable(&plan, &body, req.head.uri.path()) {
            return Ok(Flow::Respond(error_response(
                StatusCode::BAD_REQUEST,
                ctx.error_style,
                message,
                "model_required",
            )));
        }
        ctx.log.provider = Some(provider);
        ctx.log.model = instance.model().map(str::to_string).or_else(|| body.str_field("model"));
        ctx.log.operation = Some("chat");
        ctx.log.model_labels = self.shared.models.labels(&body, instance.model_label());
        let prepared = match Prepared::new(protocol, body, [plan]) {
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
        ctx.target = Some(Box::new(SingleTarget { shared: Arc::clone(&self.shared), prepared, sent: false }));
        Ok(Flow::Continue)
    }

    fn header_filter(&self, ctx: &mut Ctx, head: &mut http::response::Parts) {
        rewrite::on_head(ctx, head);
    }

    fn body_filter(&self, ctx: &mut Ctx, chunk: &mut Bytes, end_of_stream: bool) {
        rewrite::on_body(ctx, chunk, end_of_stream);
    }
}

/// One attempt at the route's provider; its answer, whatever it is, is relayed.
struct SingleTarget {
    shared: Arc<Shared>,
    prepared: Prepared,
    sent: bool,
}

impl Target for SingleTarget {
    fn next(&mut self, ctx: &mut Ctx, req: &Request, _attempt: u32) -> Next {
        if std::mem::replace(&mut self.sent, true) {
            return Next::Exhausted(GiveUp::LastAsIs);
        }
        match self.prepared.attempt(ctx, req, &self.shared.instance, &self.shared.settings) {
            Some(upstream) => Next::Attempt(upstream),
            // Only a passthrough path that makes no valid URL gets here: nothing to call.
            None => Next::Exhausted(GiveUp::LastAsIs),
        }
    }

    fn judge(&mut self, _ctx: &mut Ctx, _result: &AttemptResult<'_>) -> Verdict {
        Verdict::Accept
    }
}
