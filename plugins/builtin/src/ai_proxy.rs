//! `ai-proxy`: sends a route's requests to one LLM provider, OpenAI chat-completions wire.
//!
//! Access phase: limit and parse the body (400/413 in the OpenAI error shape), then hand the core a
//! one-attempt target. Response phases: read usage from a copy for the access log.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use switchyard_llm::body::parse_chat_body;
use switchyard_llm::config::AiProxyConfig;
use switchyard_llm::instance::{CallSettings, Instance};
use switchyard_llm::labels::KnownModels;
use switchyard_llm::observe;
use switchyard_llm::providers::{AuthConfig, BaseUrls};
use switchyard_sdk::raw_body::RawBody;
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
        let body = match parse_chat_body(ctx, req, &self.shared.settings) {
            Ok(body) => body,
            Err(response) => return Ok(Flow::Respond(*response)),
        };
        let instance = &self.shared.instance;
        ctx.log.provider = Some(instance.endpoint.provider.name);
        ctx.log.model = instance.model().map(str::to_string).or_else(|| body.str_field("model"));
        ctx.log.operation = Some("chat");
        ctx.log.model_labels = self.shared.models.labels(&body, instance.model_label());
        ctx.target = Some(Box::new(SingleTarget { shared: Arc::clone(&self.shared), body, sent: false }));
        Ok(Flow::Continue)
    }

    fn header_filter(&self, ctx: &mut Ctx, head: &mut http::response::Parts) {
        observe::on_head(ctx, head);
    }

    fn body_filter(&self, ctx: &mut Ctx, chunk: &mut Bytes, end_of_stream: bool) {
        observe::on_body(ctx, chunk, end_of_stream);
    }
}

/// One attempt at the route's provider; its answer, whatever it is, is relayed.
struct SingleTarget {
    shared: Arc<Shared>,
    body: RawBody,
    sent: bool,
}

impl Target for SingleTarget {
    fn next(&mut self, _ctx: &mut Ctx, req: &Request, _attempt: u32) -> Next {
        if std::mem::replace(&mut self.sent, true) {
            return Next::Exhausted(GiveUp::LastAsIs);
        }
        Next::Attempt(self.shared.instance.upstream_request(req, &self.body, &self.shared.settings))
    }

    fn judge(&mut self, _ctx: &mut Ctx, _result: &AttemptResult<'_>) -> Verdict {
        Verdict::Accept
    }
}
