//! A mock upstream on 127.0.0.1:0. It answers every request with a JSON echo of what it saw
//! (its name, method, path, headers, body), and records each request. Headers steer it:
//! - `x-mock-status: N`: answer with status N;
//! - `x-mock-chunks: N` + `x-mock-gap-ms: D`: a chunked body of N lines, D ms apart;
//! - `x-mock-sse: N` + `x-mock-gap-ms: D`: a `text/event-stream` of N events, D ms apart;
//! - `x-mock-gate: 1`: send the first chunk, then wait for [`MockUpstream::release`].
//!
//! A mock made with [`MockUpstream::llm`] answers as an LLM instead, in the protocol of the path:
//! `.../chat/completions` the `t/fixtures/chat.json` completion (its `model` set to the
//! request's; `chat_tool.json` when the request offers tools and its last message is not a tool
//! result), `.../v1/messages` Anthropic's `messages.json`, `.../responses` OpenAI's
//! `responses.json`, `.../embeddings` an embedding, `.../v1/messages/count_tokens` a count;
//! with `"stream": true` the `.sse` fixture of the same name. Any other path gets the JSON echo. Every LLM request body is checked against
//! its path's protocol first ([`super::wire`]): a body a real provider would refuse gets a 400
//! naming the problem. More headers steer it:
//! - `x-mock-delay-ms: D`: wait D ms before the response head;
//! - `x-mock-break-after: N`: cut the connection after N events;
//! - `x-mock-retry-after: V`: add `Retry-After: V` (with `x-mock-status`);
//! - `x-mock-big-bytes: N`: a completion of about N bytes (see [`big_completion`]), made as it is
//!   sent, with `Content-Length` when `x-mock-length: 1` is also sent (chunked otherwise), and
//!   the `Content-Type` of `x-mock-content-type` when sent (JSON otherwise).
//!
//! Every answer carries `x-request-id` and `x-ratelimit-remaining-requests` headers.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::Notify;

use super::wire;

/// A request as the mock received it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub path: String,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

#[derive(Clone)]
pub struct MockUpstream {
    pub addr: SocketAddr,
    pub name: &'static str,
    hits: Arc<AtomicUsize>,
    seen: Arc<Mutex<Vec<Seen>>>,
    gate: Arc<Notify>,
    llm: bool,
    tls: bool,
    /// Defaults for the steering headers, set by the test: lets one mock of several misbehave.
    behaviour: Arc<Mutex<Behaviour>>,
    /// Bodies whose client went away before the end (the gateway cancelled the upstream call).
    cancelled: Arc<AtomicUsize>,
    /// Connections served (for HTTPS: whose handshake succeeded).
    connections: Arc<AtomicUsize>,
}

/// What a mock does when the request does not say otherwise.
#[derive(Debug, Default, Clone)]
pub struct Behaviour {
    pub status: Option<u16>,
    pub retry_after: Option<String>,
    pub delay_ms: Option<u64>,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type MockBody = http_body_util::combinators::BoxBody<Bytes, BoxError>;

const CHAT_JSON: &str = include_str!("../fixtures/chat.json");
const CHAT_SSE: &str = include_str!("../fixtures/chat.sse");
const MESSAGES_JSON: &str = include_str!("../fixtures/messages.json");
const MESSAGES_SSE: &str = include_str!("../fixtures/messages.sse");
const CHAT_TOOL_JSON: &str = include_str!("../fixtures/chat_tool.json");
const CHAT_TOOL_SSE: &str = include_str!("../fixtures/chat_tool.sse");
const RESPONSES_JSON: &str = include_str!("../fixtures/responses.json");
const RESPONSES_SSE: &str = include_str!("../fixtures/responses.sse");

/// The protocol a mock LLM path speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wire {
    Chat,
    Messages,
    Responses,
    Embeddings,
    /// Anthropic's `/v1/messages/count_tokens`.
    CountTokens,
}

impl Wire {
    fn of(path: &str) -> Option<Wire> {
        if path.ends_with("/v1/messages/count_tokens") {
            Some(Wire::CountTokens)
        } else if path.ends_with("/v1/messages") {
            Some(Wire::Messages)
        } else if path.ends_with("/chat/completions") {
            Some(Wire::Chat)
        } else if path.ends_with("/responses") {
            Some(Wire::Responses)
        } else if path.ends_with("/embeddings") {
            Some(Wire::Embeddings)
        } else {
            None
        }
    }
}

impl MockUpstream {
    /// A mock LLM provider (OpenAI wire).
    pub async fn llm(name: &'static str) -> MockUpstream {
        Self::serve(name, true).await
    }

    pub async fn start(name: &'static str) -> MockUpstream {
        Self::serve(name, false).await
    }

    /// A mock LLM provider behind HTTPS, with a self-signed certificate for 127.0.0.1 and
    /// localhost (trusted by nobody: `ssl_verify: false` is needed to reach it).
    pub async fn llm_tls(name: &'static str) -> MockUpstream {
        let certified =
            rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
        let key = tokio_rustls::rustls::pki_types::PrivatePkcs8KeyDer::from(certified.signing_key.serialize_der());
        let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
        let config = tokio_rustls::rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![certified.cert.der().clone()], key.into())
            .unwrap();
        let mut mock = Self::listen(name, true, Some(tokio_rustls::TlsAcceptor::from(Arc::new(config)))).await;
        mock.tls = true;
        mock
    }

    async fn serve(name: &'static str, llm: bool) -> MockUpstream {
        Self::listen(name, llm, None).await
    }

    async fn listen(name: &'static str, llm: bool, tls: Option<tokio_rustls::TlsAcceptor>) -> MockUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mock = MockUpstream {
            addr: listener.local_addr().unwrap(),
            name,
            hits: Arc::default(),
            seen: Arc::default(),
            gate: Arc::new(Notify::new()),
            llm,
            tls: false,
            behaviour: Arc::default(),
            cancelled: Arc::default(),
            connections: Arc::default(),
        };
        let server = mock.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { return };
                let mock = server.clone();
                let tls = tls.clone();
                let server_connections = Arc::clone(&server.connections);
                tokio::spawn(async move {
                    let service = service_fn(move |req| {
                        let mock = mock.clone();
                        async move { Ok::<_, Infallible>(mock.answer(req).await) }
                    });
                    let http = hyper::server::conn::http1::Builder::new();
                    match tls {
                        None => {
                            server_connections.fetch_add(1, Ordering::SeqCst);
                            let _ = http.serve_connection(TokioIo::new(stream), service).await;
                        }
                        Some(acceptor) => {
                            // A client that refuses the certificate ends the handshake: nothing to serve.
                            if let Ok(stream) = acceptor.accept(stream).await {
                                server_connections.fetch_add(1, Ordering::SeqCst);
                                let _ = http.serve_connection(TokioIo::new(stream), service).await;
                            }
                        }
                    }
                });
            }
        });
        mock
    }

    /// Connections served so far (for HTTPS: whose handshake succeeded).
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// `host:port`, as an upstream node key.
    pub fn node(&self) -> String {
        self.addr.to_string()
    }

    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    pub fn last(&self) -> Seen {
        self.seen().pop().expect("the mock saw a request")
    }

    /// Changes what the mock does by default from now on.
    pub fn behave(&self, behaviour: Behaviour) {
        *self.behaviour.lock().unwrap() = behaviour;
    }

    /// Answers every request with `status` from now on.
    pub fn fail_with(&self, status: u16) {
        self.behave(Behaviour { status: Some(status), ..Behaviour::default() });
    }

    /// Requests whose path starts with `prefix`.
    pub fn hits_on(&self, prefix: &str) -> usize {
        self.seen().iter().filter(|s| s.path.starts_with(prefix)).count()
    }

    pub fn cancelled(&self) -> usize {
        self.cancelled.load(Ordering::SeqCst)
    }

    /// `http://host:port` (`https://` for [`MockUpstream::llm_tls`]).
    pub fn base_url(&self) -> String {
        format!("{}://{}", if self.tls { "https" } else { "http" }, self.addr)
    }

    /// Lets a gated response (`x-mock-gate`) go on.
    pub fn release(&self) {
        self.gate.notify_one();
    }

    async fn answer(&self, req: hyper::Request<hyper::body::Incoming>) -> hyper::Response<MockBody> {
        let (head, body) = req.into_parts();
        let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
        self.hits.fetch_add(1, Ordering::SeqCst);
        self.seen.lock().unwrap().push(Seen {
            path: head.uri.path_and_query().map_or("/".into(), |p| p.to_string()),
            headers: head.headers.clone(),
            body: body.clone(),
        });
        let number =
            |name: &str| head.headers.get(name).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
        let behaviour = self.behaviour.lock().unwrap().clone();
        let status = number("x-mock-status").or(behaviour.status.map(u64::from)).unwrap_or(200) as u16;
        let gap = Duration::from_millis(number("x-mock-gap-ms").unwrap_or(0));
        let gated = head.headers.contains_key("x-mock-gate");
        let mut builder = hyper::Response::builder().status(status).header("x-mock-name", self.name);
        if let Some(delay) = number("x-mock-delay-ms").or(behaviour.delay_ms) {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        let wire = if self.llm { Wire::of(head.uri.path()) } else { None };
        if let Some(wire) = wire {
            builder = builder.header("x-request-id", "req-mock-1").header("x-ratelimit-remaining-requests", "99");
            let retry_after = head.headers.get("x-mock-retry-after").and_then(|v| v.to_str().ok()).map(str::to_string);
            if let Some(retry_after) = retry_after.or(behaviour.retry_after) {
                builder = builder.header("retry-after", retry_after);
            }
            let reasoning =
                head.headers.get("x-mock-reasoning-field").and_then(|v| v.to_str().ok()).map(str::to_string);
            if let Some(size) = number("x-mock-big-bytes").filter(|_| status == 200) {
                return big_answer(builder, &head.headers, &body, size);
            }
            return self.answer_llm(builder, wire, status, &body, gap, number("x-mock-break-after"), reasoning);
        }
        if let Some(size) = number("x-mock-big-bytes").filter(|_| self.llm && status == 200) {
            // On any path: a plain route's answer may be big too.
            return big_answer(builder, &head.headers, &body, size);
        }
        if let Some(events) = number("x-mock-sse") {
            let pieces = (0..events).map(|i| Bytes::from(format!("data: {{\"n\":{i}}}\n\n"))).collect();
            return builder.header("content-type", "text/event-stream").body(self.paced(pieces, gap, gated)).unwrap();
        }
        if let Some(chunks) = number("x-mock-chunks") {
            let pieces = (0..chunks).map(|i| Bytes::from(format!("chunk-{i}\n"))).collect();
            return builder.header("content-type", "text/plain").body(self.paced(pieces, gap, gated)).unwrap();
        }
        let headers: serde_json::Map<String, serde_json::Value> =
            head.headers.iter().map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").into())).collect();
        let echo = serde_json::json!({
            "upstream": self.name,
            "method": head.method.as_str(),
            "path": head.uri.path_and_query().map_or("/", |p| p.as_str()),
            "headers": headers,
            "body": String::from_utf8_lossy(&body),
        });
        builder.header("content-type", "application/json").body(full(echo.to_string())).unwrap()
    }

    #[expect(clippy::too_many_arguments, reason = "a test mock steered by many knobs")]
    fn answer_llm(
        &self,
        builder: http::response::Builder,
        wire: Wire,
        status: u16,
        body: &[u8],
        gap: Duration,
        break_after: Option<u64>,
        reasoning_field: Option<String>,
    ) -> hyper::Response<MockBody> {
        let anthropic = matches!(wire, Wire::Messages | Wire::CountTokens);
        let error = |builder: http::response::Builder, status: u16, message: String| {
            let error = if anthropic {
                serde_json::json!({"type": "error", "error": {"type": "overloaded_error", "message": message}})
            } else {
                serde_json::json!({"error": {"message": message, "type": "mock", "code": status}})
            };
            builder.status(status).header("content-type", "application/json").body(full(error.to_string())).unwrap()
        };
        if status != 200 {
            return error(builder, status, format!("mock {} says {status}", self.name));
        }
        let request: serde_json::Value = match serde_json::from_slice(body) {
            Ok(request) => request,
            Err(err) => return error(builder, 400, format!("mock {}: body is not JSON: {err}", self.name)),
        };
        let checked = match wire {
            Wire::Chat => wire::check_chat(&request),
            Wire::Messages => wire::check_messages(&request),
            Wire::Responses => wire::check_responses(&request),
            Wire::Embeddings => wire::check_embeddings(&request),
            Wire::CountTokens => wire::check_count_tokens(&request),
        };
        if let Err(problem) = checked {
            return error(builder, 400, format!("mock {} refuses the {wire:?} request: {problem}", self.name));
        }
        if wire == Wire::CountTokens {
            let count = serde_json::json!({"input_tokens": 42});
            return builder.header("content-type", "application/json").body(full(count.to_string())).unwrap();
        }
        if wire == Wire::Embeddings {
            let embedding = serde_json::json!({"object": "list", "model": request["model"],
                "data": [{"object": "embedding", "index": 0, "embedding": [0.25, -0.5]}], "usage": {"prompt_tokens": 3, "total_tokens": 3}});
            return builder.header("content-type", "application/json").body(full(embedding.to_string())).unwrap();
        }
        // Offered tools and not answering a tool result: the model calls a tool.
        let last_role = request["messages"].as_array().and_then(|m| m.last()).map(|m| m["role"].clone());
        let calls_tool = wire == Wire::Chat && request.get("tools").is_some() && last_role != Some("tool".into());
        if request["stream"] == true {
            let fixture = match wire {
                Wire::Messages => MESSAGES_SSE,
                Wire::Responses => RESPONSES_SSE,
                _ if calls_tool => CHAT_TOOL_SSE,
                _ => CHAT_SSE,
            };
            let mut pieces: Vec<Bytes> = fixture.split_inclusive("\n\n").map(|e| Bytes::from(e.to_string())).collect();
            let cut = break_after.map(|n| n as usize);
            if let Some(n) = cut {
                pieces.truncate(n);
            }
            return builder
                .header("content-type", "text/event-stream")
                .body(self.paced_then(pieces, gap, false, cut.is_some()))
                .unwrap();
        }
        let fixture = match wire {
            Wire::Messages => MESSAGES_JSON,
            Wire::Responses => RESPONSES_JSON,
            _ if calls_tool => CHAT_TOOL_JSON,
            _ => CHAT_JSON,
        };
        let mut completion: serde_json::Value = serde_json::from_str(fixture).unwrap();
        if let Some(model) = request.get("model") {
            completion["model"] = model.clone();
        }
        if let Some(field) = reasoning_field {
            completion["choices"][0]["message"][field] = serde_json::json!("thinking it over");
        }
        builder.header("content-type", "application/json").body(full(completion.to_string())).unwrap()
    }

    /// A body that sends `pieces` with `gap` between them (after the first, waiting for the gate
    /// when `gated`).
    fn paced(&self, pieces: Vec<Bytes>, gap: Duration, gated: bool) -> MockBody {
        self.paced_then(pieces, gap, gated, false)
    }

    /// Like `paced`; with `then_break`, the body ends with an error (the connection is cut).
    fn paced_then(&self, pieces: Vec<Bytes>, gap: Duration, gated: bool, then_break: bool) -> MockBody {
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, BoxError>>(1);
        let gate = Arc::clone(&self.gate);
        let cancelled = Arc::clone(&self.cancelled);
        tokio::spawn(async move {
            for (i, piece) in pieces.into_iter().enumerate() {
                if i > 0 {
                    if gated && i == 1 {
                        gate.notified().await;
                    }
                    tokio::time::sleep(gap).await;
                }
                if tx.send(Ok(Frame::data(piece))).await.is_err() {
                    cancelled.fetch_add(1, Ordering::SeqCst);
                    return;
                }
            }
            if then_break {
                let _ = tx.send(Err("mock cut the stream".into())).await;
            }
        });
        StreamBody::new(tokio_stream_from(rx)).boxed()
    }
}

/// The usage [`big_completion`] reports, as the access log prints it.
pub const BIG_USAGE: [&str; 5] =
    ["prompt_tokens=11", "completion_tokens=22", "total_tokens=33", "cached_tokens=3", "reasoning_tokens=5"];

/// The answer to `x-mock-big-bytes: size`: a completion of about `size` bytes naming the
/// request's model, with `Content-Length` when `x-mock-length` is sent and the content type of
/// `x-mock-content-type` (JSON by default).
fn big_answer(
    mut builder: http::response::Builder,
    headers: &http::HeaderMap,
    request: &[u8],
    size: u64,
) -> hyper::Response<MockBody> {
    let model = serde_json::from_slice::<serde_json::Value>(request).unwrap_or_default()["model"].clone();
    let (length, body) = big_completion(size, model.as_str().unwrap_or("big-model"));
    if headers.contains_key("x-mock-length") {
        builder = builder.header("content-length", length);
    }
    let content_type = headers.get("x-mock-content-type").cloned();
    let content_type = content_type.unwrap_or(http::HeaderValue::from_static("application/json"));
    builder.header("content-type", content_type).body(body).unwrap()
}

/// A chat completion of about `size` bytes whose one message is filler text, generated lazily
/// (one shared 64 KiB piece sent again and again): its length and its body. The filler holds
/// escaped look-alikes of the fields (`\"usage\":{...}`) that a careless reader would take for the
/// real ones; `usage` ([`BIG_USAGE`]) comes last, as OpenAI sends it.
pub fn big_completion(size: u64, model: &str) -> (u64, MockBody) {
    let head = format!(
        r#"{{"id":"chatcmpl-big","object":"chat.completion","created":1700000000,"model":{},"choices":[{{"index":0,"message":{{"role":"assistant","content":""#,
        serde_json::Value::from(model)
    );
    let tail = r#""},"finish_reason":"stop"}],"usage":{"prompt_tokens":11,"completion_tokens":22,"total_tokens":33,"prompt_tokens_details":{"cached_tokens":3},"completion_tokens_details":{"reasoning_tokens":5}}}"#;
    const PATTERN: &str = r#"filler \"usage\":{\"prompt_tokens\":999}, \"model\":\"fake\" "#;
    let piece = Bytes::from(PATTERN.repeat(64 * 1024 / PATTERN.len()));
    let filler = size.saturating_sub((head.len() + tail.len()) as u64);
    let (whole, rest) = (filler / piece.len() as u64, (filler % piece.len() as u64) as usize);
    // The last piece: whole patterns, then plain letters, so no escape is cut in two.
    let last = piece.slice(..rest - rest % PATTERN.len());
    let padding = Bytes::from("a".repeat(rest % PATTERN.len()));
    let length = (head.len() + tail.len()) as u64 + filler;
    let frames = std::iter::once(Bytes::from(head))
        .chain(std::iter::repeat_n(piece, whole as usize))
        .chain([last, padding, Bytes::from_static(tail.as_bytes())])
        .filter(|b| !b.is_empty())
        .map(|b| Ok::<_, BoxError>(Frame::data(b)));
    (length, StreamBody::new(futures_util::stream::iter(frames)).boxed())
}

fn full(text: String) -> MockBody {
    http_body_util::Full::new(Bytes::from(text)).map_err(|never| match never {}).boxed()
}

fn tokio_stream_from<T: Send + 'static>(
    mut rx: tokio::sync::mpsc::Receiver<T>,
) -> impl futures_util::Stream<Item = T> + Send + 'static {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}
