//! The mock LLM upstream, run as its own process (`<bench exe> mock ...`) so its CPU time and
//! memory are its own. It listens on two ports:
//! - `ok`: any POST answers a ~600-byte chat completion at once; a body with `"stream":true`
//!   answers an event stream of `--sse-events` events `--sse-gap-ms` apart, each stamped with the
//!   wall-clock time it was handed to the socket (`id: <unix ns>`), the last one `data: [DONE]`;
//! - `limited`: every request answers 429, as a rate-limited provider does.
//!
//! `GET /stats` on either port tells how many connections and requests it has seen, which shows
//! whether the gateway reuses its upstream connections. The process prints
//! `ok=<port> limited=<port>` once it listens, and exits when its standard input closes (the
//! bench ended, however it ended).

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE};
use http::{Method, Response, StatusCode};
use http_body_util::{BodyExt, Either, Full};
use hyper::body::{Body, Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use crate::process::{port_field, until_stdin_closes};
use crate::Result;

/// How the streamed answers look; set on the command line.
#[derive(Debug, Clone, Copy)]
pub struct MockSettings {
    pub sse_events: usize,
    pub sse_gap: Duration,
}

impl MockSettings {
    /// The arguments that make a mock process behave like this.
    pub fn args(&self) -> Vec<String> {
        vec![
            "mock".into(),
            "--sse-events".into(),
            self.sse_events.to_string(),
            "--sse-gap-ms".into(),
            self.sse_gap.as_millis().to_string(),
        ]
    }

    fn parse(args: &[String]) -> Result<Self> {
        let mut settings = MockSettings { sse_events: 20, sse_gap: Duration::from_millis(10) };
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            let value = args.next().ok_or_else(|| format!("{arg} needs a value"))?;
            match arg.as_str() {
                "--sse-events" => settings.sse_events = value.parse()?,
                "--sse-gap-ms" => settings.sse_gap = Duration::from_millis(value.parse()?),
                other => return Err(format!("unknown mock argument {other}").into()),
            }
        }
        if settings.sse_events < 2 {
            return Err("--sse-events must be at least 2 (the last is [DONE])".into());
        }
        Ok(settings)
    }
}

/// The completion every non-streaming request gets: a realistic OpenAI answer of about 600 bytes.
pub const COMPLETION: &str = concat!(
    r#"{"id":"chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG","object":"chat.completion","created":1741570283,"#,
    r#""model":"gpt-4o-mini-2024-07-18","choices":[{"index":0,"message":{"role":"assistant","#,
    r#""content":"The Fibonacci sequence is a series of numbers in which each number is the sum of the "#,
    r#"two preceding ones, usually starting with 0 and 1: 0, 1, 1, 2, 3, 5, 8, 13, 21, 34, and so on.","#,
    r#""refusal":null},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":24,"#,
    r#""completion_tokens":52,"total_tokens":76,"prompt_tokens_details":{"cached_tokens":0},"#,
    r#""completion_tokens_details":{"reasoning_tokens":0}},"system_fingerprint":"fp_06737a9306"}"#
);

const RATE_LIMITED: &str =
    r#"{"error":{"message":"Rate limit reached for requests","type":"requests","code":"rate_limit_exceeded"}}"#;

#[derive(Default)]
struct Stats {
    connections: AtomicU64,
    requests: AtomicU64,
}

/// The mock's entry point, in the child process. Returns when standard input closes.
pub fn main(args: &[String]) -> Result<()> {
    let settings = MockSettings::parse(args)?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        let ok = TcpListener::bind("127.0.0.1:0").await?;
        let limited = TcpListener::bind("127.0.0.1:0").await?;
        println!("ok={} limited={}", ok.local_addr()?.port(), limited.local_addr()?.port());
        let stats = Arc::new(Stats::default());
        tokio::spawn(accept(ok, false, settings, Arc::clone(&stats)));
        tokio::spawn(accept(limited, true, settings, stats));
        until_stdin_closes().await
    })
}

async fn accept(listener: TcpListener, limited: bool, settings: MockSettings, stats: Arc<Stats>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else { continue };
        let _ = stream.set_nodelay(true);
        stats.connections.fetch_add(1, Ordering::Relaxed);
        let stats = Arc::clone(&stats);
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let stats = Arc::clone(&stats);
                async move { Ok::<_, Infallible>(answer(req, limited, settings, &stats).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
        });
    }
}

type MockBody = Either<Full<Bytes>, Events>;

async fn answer(
    req: hyper::Request<Incoming>,
    limited: bool,
    settings: MockSettings,
    stats: &Stats,
) -> Response<MockBody> {
    let (head, body) = req.into_parts();
    let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    if head.method == Method::GET && head.uri.path() == "/stats" {
        let text = format!(
            r#"{{"connections":{},"requests":{}}}"#,
            stats.connections.load(Ordering::Relaxed),
            stats.requests.load(Ordering::Relaxed)
        );
        return json(StatusCode::OK, Bytes::from(text));
    }
    stats.requests.fetch_add(1, Ordering::Relaxed);
    if limited {
        return json(StatusCode::TOO_MANY_REQUESTS, Bytes::from_static(RATE_LIMITED.as_bytes()));
    }
    if contains(&body, b"\"stream\":true") || contains(&body, b"\"stream\": true") {
        return stream(settings);
    }
    json(StatusCode::OK, Bytes::from_static(COMPLETION.as_bytes()))
}

fn json(status: StatusCode, body: Bytes) -> Response<MockBody> {
    let mut response = Response::new(Either::Left(Full::new(body)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
    headers.insert("x-request-id", http::HeaderValue::from_static("req_bench_0001"));
    response
}

fn stream(settings: MockSettings) -> Response<MockBody> {
    let (tx, rx) = mpsc::channel(1);
    tokio::spawn(async move {
        for i in 0..settings.sse_events {
            if i > 0 {
                tokio::time::sleep(settings.sse_gap).await;
            }
            if tx.send(event(i, settings.sse_events, crate::unix_nanos())).await.is_err() {
                return;
            }
        }
    });
    let mut response = Response::new(Either::Right(Events(rx)));
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, http::HeaderValue::from_static("text/event-stream"));
    headers.insert(CACHE_CONTROL, http::HeaderValue::from_static("no-cache"));
    response
}

/// Event `i` of `n`: a chat chunk (the last but one finishing with usage), or `[DONE]` last.
fn event(i: usize, n: usize, sent_ns: u64) -> Bytes {
    let data = if i + 1 == n {
        "[DONE]".to_string()
    } else if i + 2 == n {
        r#"{"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1741570283,"model":"gpt-4o-mini","choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"usage":{"prompt_tokens":24,"completion_tokens":18,"total_tokens":42}}"#.to_string()
    } else {
        format!(
            r#"{{"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1741570283,"model":"gpt-4o-mini","choices":[{{"index":0,"delta":{{"content":"token {i} "}},"finish_reason":null}}]}}"#
        )
    };
    Bytes::from(format!("id: {sent_ns}\ndata: {data}\n\n"))
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// A body fed event by event by the pacing task: each event is its own frame.
pub struct Events(mpsc::Receiver<Bytes>);

impl Body for Events {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx).map(|event| event.map(|bytes| Ok(Frame::data(bytes))))
    }
}

/// The mock process, seen from the bench. Dropping it stops the process.
pub struct MockProcess {
    child: std::process::Child,
    /// Answers like a healthy provider.
    pub ok: std::net::SocketAddr,
    /// Answers 429 to everything.
    pub limited: std::net::SocketAddr,
    pub settings: MockSettings,
}

impl MockProcess {
    /// Starts the bench executable again as a mock and waits until it listens.
    pub fn spawn(settings: MockSettings) -> Result<MockProcess> {
        let (child, line) = crate::process::spawn_self(&settings.args())?;
        let (ok, limited) = (port_field(&line, "ok=")?, port_field(&line, "limited=")?);
        Ok(MockProcess { child, ok, limited, settings })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Connections accepted and requests answered so far, over both ports.
    pub async fn stats(&self) -> Result<(u64, u64)> {
        let mut sender = crate::load::connect(self.ok).await?;
        let request = hyper::Request::get("/stats")
            .header(http::header::HOST, self.ok.to_string())
            .body(Full::new(Bytes::new()))?;
        let body = sender.send_request(request).await?.into_body().collect().await?.to_bytes();
        let stats: serde_json::Value = serde_json::from_slice(&body)?;
        let field = |k: &str| stats.get(k).and_then(serde_json::Value::as_u64).unwrap_or(0);
        Ok((field("connections"), field("requests")))
    }
}

impl Drop for MockProcess {
    fn drop(&mut self) {
        crate::process::stop(&mut self.child, Duration::from_secs(2));
    }
}
