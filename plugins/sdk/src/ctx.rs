//! Per-request context shared by all phases of all plugins of one request.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{HeaderMap, HeaderValue};

use crate::Target;

/// How the gateway renders the errors it makes for this request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ErrorStyle {
    /// `{"error_msg": "..."}`, as APISIX does for plain routes.
    #[default]
    Apisix,
    /// `{"error":{"message","type","code"}}`, what OpenAI SDKs understand: used on AI routes.
    OpenAi,
    /// `{"type":"error","error":{"type","message"}}`, what Anthropic SDKs understand: used on AI
    /// routes for requests in the Anthropic Messages protocol.
    Anthropic,
}

/// Token counts of one LLM call, read from the upstream response.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub total_tokens: u64,
    /// Prompt tokens read from the provider's cache (included in `prompt_tokens`).
    pub cached_tokens: u64,
    /// Prompt tokens written to the provider's cache (Anthropic; included in `prompt_tokens`).
    pub cache_creation_tokens: u64,
    pub reasoning_tokens: u64,
}

/// What plugins record about a request for the access log (and, later, metrics and traces).
#[derive(Debug, Clone, Default)]
pub struct LogRecord {
    pub provider: Option<&'static str>,
    pub model: Option<String>,
    pub usage: Option<Usage>,
    /// Time from the start of the request to the first response byte from the provider.
    pub time_to_first_token: Option<Duration>,
    /// The instance that answered (ai-proxy-multi) or the provider name.
    pub instance: Option<Arc<str>>,
    pub attempts: u32,
    /// Request messages and response text, when `logging.payloads` is on.
    pub request_payload: Option<String>,
    pub response_text: Option<String>,
    /// Whether `logging.summaries` asked for these fields to reach the access log.
    pub log_summaries: bool,
}

/// The per-request state: created by the core when a route matches, dropped after `log`.
pub struct Ctx {
    pub route_id: Arc<str>,
    /// The request's id: the client's `X-Request-Id` when sane, else one the gateway made. The
    /// core sends it upstream, logs it and returns it.
    pub request_id: HeaderValue,
    pub client_addr: SocketAddr,
    pub started: Instant,
    pub error_style: ErrorStyle,
    /// Read a non-streaming upstream response whole before sending it (`proxy-buffering`).
    /// `text/event-stream` responses are always relayed event by event, whatever this says.
    pub buffer_response: bool,
    /// Where the request goes; set by an AI plugin in `access`, else the route's upstream is used.
    pub target: Option<Box<dyn Target>>,
    /// Headers added to the response sent to the client.
    pub response_headers: HeaderMap,
    /// What the access log line says beyond the request and response heads.
    pub log: LogRecord,
    /// Each plugin's private per-request state, one slot per type.
    pub extensions: http::Extensions,
}

impl Ctx {
    pub fn new(route_id: Arc<str>, client_addr: SocketAddr, request_id: HeaderValue) -> Self {
        Self {
            route_id,
            request_id,
            client_addr,
            started: Instant::now(),
            error_style: ErrorStyle::Apisix,
            buffer_response: true,
            target: None,
            response_headers: HeaderMap::new(),
            log: LogRecord::default(),
            extensions: http::Extensions::new(),
        }
    }
}
