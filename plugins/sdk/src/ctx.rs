//! Per-request context shared by all phases of all plugins of one request.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::HeaderValue;

use crate::{Consumer, Consumers, ResponseHeaders, Target};

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

/// Model names fit to be metric label values: taken from config, so no client can add series.
/// Set by AI plugins when they pick a target.
#[derive(Debug, Clone, Default)]
pub struct ModelLabels {
    /// The client's requested model when the route's config names it, else `other`.
    pub requested: Option<Arc<str>>,
    /// The model the attempt asks the provider for: the one the instance pins, else `requested`.
    pub upstream: Option<Arc<str>>,
}

/// What plugins (and the core) record about a request for the access log, metrics and traces.
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
    /// The GenAI operation (`chat`, `embeddings`), set by AI plugins; `None` on plain routes.
    pub operation: Option<&'static str>,
    /// Bounded model names for metric labels.
    pub model_labels: ModelLabels,
    /// The model API caller: the id of its API key resource (never the key itself).
    pub caller: Option<Arc<str>>,
    /// Set by the core: time spent waiting for upstreams (response heads of every attempt, and
    /// reading bodies), so the gateway's own share of the request is the rest.
    pub upstream_time: Duration,
    /// Set by the core when it relays an accepted upstream answer: `Some(true)` for an event
    /// stream. `None`: no upstream answer was relayed (a local response, or every attempt failed).
    pub streamed: Option<bool>,
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
    /// Header fields added to the response sent to the client, whoever makes it.
    pub response_headers: ResponseHeaders,
    /// What the access log line says beyond the request and response heads.
    pub log: LogRecord,
    /// Each plugin's private per-request state, one slot per type.
    pub extensions: http::Extensions,
    /// The live config's consumers, for authentication plugins to look callers up in.
    pub consumers: Option<Arc<dyn Consumers>>,
    /// The caller an authentication plugin identified: later plugins, the balancer (`hash_on:
    /// consumer`) and the access log see it, and its plugins replace the route's.
    pub consumer: Option<Arc<Consumer>>,
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
            response_headers: ResponseHeaders::default(),
            log: LogRecord::default(),
            extensions: http::Extensions::new(),
            consumers: None,
            consumer: None,
        }
    }
}
