//! `ai-proxy`: sends a route's requests to one LLM provider, OpenAI chat-completions wire.
//!
//! Access phase: limit and parse the body (400/413 in the OpenAI error shape), then hand the core a
//! one-attempt target. Response phases: read usage from a copy for the access log.

pub mod config;
pub mod instance;
pub mod observe;

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use http::StatusCode;

use self::config::{AiProxyConfig, AI_PROXY_KEYS};
use self::instance::{Instance, Transport};
use crate::providers::BaseUrls;
use crate::raw_body::{BodyError, RawBody};
use crate::respond::error_response;
use crate::{
    AttemptResult, ConfigError, Ctx, ErrorStyle, Flow, GiveUp, Next, Phases, Plugin, PluginError, PluginFactory,
    Request, Target, Verdict,
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

    fn build(&self, config: &serde_json::Value) -> Result<Arc<dyn Plugin>, ConfigError> {
        let (config, transport) = Transport::parse_plugin::<AiProxyConfig>(config, AI_PROXY_KEYS)?;
        let instance = Instance::compile(
            &config.provider,
            &config.provider,
            &config.auth,
            &config.options,
            &config.overrides,
            &self.base_urls,
        )?;
        Ok(Arc::new(AiProxy { shared: Arc::new(Shared { instance, transport }) }))
    }
}

struct Shared {
    instance: Instance,
    transport: Transport,
}

struct AiProxy {
    shared: Arc<Shared>,
}

#[async_trait]
impl Plugin for AiProxy {
    fn phases(&self) -> Phases {
        Phases::ACCESS.with(Phases::HEADER_FILTER).with(Phases::BODY_FILTER)
    }

    fn error_style(&self) -> Option<ErrorStyle> {
        Some(ErrorStyle::OpenAi)
    }

    async fn access(&self, ctx: &mut Ctx, req: &mut Request) -> Result<Flow, PluginError> {
        let body = match parse_chat_body(ctx, req, &self.shared.transport) {
            Ok(body) => body,
            Err(response) => return Ok(Flow::Respond(*response)),
        };
        let instance = &self.shared.instance;
        ctx.ai.provider = Some(instance.endpoint.provider.name);
        ctx.ai.model = instance.model().map(str::to_string).or_else(|| body.str_field("model"));
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

/// Checks the size limit and parses the chat body, recording what logging asked for. `Err` is the
/// client's error response (413 or 400, OpenAI shape).
pub fn parse_chat_body(ctx: &mut Ctx, req: &Request, transport: &Transport) -> Result<RawBody, Box<crate::Response>> {
    if transport.max_request_bytes.is_some_and(|max| req.body.len() as u64 > max) {
        return Err(Box::new(error_response(
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorStyle::OpenAi,
            "request body exceeds max_req_body_size",
            "request_too_large",
        )));
    }
    let body = RawBody::parse(req.body.clone()).map_err(|err| {
        let code = match err {
            BodyError::Empty => "empty_body",
            BodyError::Invalid(_) => "invalid_json",
        };
        Box::new(error_response(StatusCode::BAD_REQUEST, ErrorStyle::OpenAi, &err.to_string(), code))
    })?;
    let logging = transport.logging;
    ctx.ai.log_summaries = logging.summaries || logging.payloads;
    if logging.payloads {
        ctx.ai.request_payload = body.raw("messages").map(|m| m.get().to_string());
        ctx.ai.response_text = Some(String::new());
    }
    Ok(body)
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
        Next::Attempt(self.shared.instance.upstream_request(req, &self.body, &self.shared.transport))
    }

    fn judge(&mut self, _ctx: &mut Ctx, _result: &AttemptResult<'_>) -> Verdict {
        Verdict::Accept
    }
}
