//! Upstream connections as the core's client keeps them: reused while kept alive, replaced
//! without an error when the upstream closed one while it sat idle, closed after the keep-alive
//! timeout or after `keepalive_pool.requests` requests, and kept after a response without a
//! body, and per proxy worker; and HTTP/1.1 framing as the client reads it (a close announced or
//! implied, informational answers, chunks). The upstream is a raw HTTP/1.1 server whose every connection and
//! close the test sees.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::harness::TestGateway;

/// How the raw upstream answers each request.
#[derive(Clone, Copy)]
enum Answer {
    /// `200` with a small JSON body, keep-alive.
    Json,
    /// `204`, no body, keep-alive.
    NoContent,
    /// `200`, then, a moment later, the upstream closes the connection without having said so
    /// in the head: the next request finds a pooled connection that looks kept alive but is not.
    JsonThenSilentClose,
    /// `200` with `Connection: close`, though the upstream then keeps the connection open: the
    /// gateway must close it, not reuse it.
    JsonSayingClose,
    /// An HTTP/1.0 `200` with no length: the body ends when the upstream closes.
    BodyUntilClose,
    /// `100 Continue`, then a chunked `200` split mid-field, keep-alive.
    ContinueThenChunked,
    /// A chunked `200` that also carries a `Content-Length`: framed by the chunks, and the
    /// connection not trusted with another request.
    ChunkedWithLength,
    /// `200` with every hop-by-hop field a proxy must not pass on, fields its `Connection` names
    /// among them, keep-alive.
    JsonWithHopByHopFields,
    /// `413` with `Connection: close` as soon as the request head is in, then the upstream closes
    /// without reading the body (so the gateway's write of it fails).
    RefusesTheBody,
    /// The same `413`, but the upstream then neither reads nor closes (so the gateway's write
    /// of the body waits for ever).
    RefusesTheBodyAndStalls,
}

impl Answer {
    fn bytes(self) -> &'static [u8] {
        match self {
            Answer::Json | Answer::JsonThenSilentClose => {
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 11\r\n\r\n{\"ok\":true}"
            }
            Answer::NoContent => b"HTTP/1.1 204 No Content\r\n\r\n",
            Answer::JsonSayingClose => {
                b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 11\r\n\r\n{\"ok\":true}"
            }
            Answer::BodyUntilClose => b"HTTP/1.0 200 OK\r\ncontent-type: application/json\r\n\r\n{\"ok\":true}",
            Answer::ContinueThenChunked => {
                b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\n{\"ok\"\r\n6;x=y\r\n:true}\r\n0\r\n\r\n"
            }
            Answer::RefusesTheBody | Answer::RefusesTheBodyAndStalls => {
                b"HTTP/1.1 413 Payload Too Large\r\nconnection: close\r\ncontent-length: 9\r\n\r\ntoo large"
            }
            Answer::JsonWithHopByHopFields => {
                b"HTTP/1.1 200 OK\r\nconnection: keep-alive, X-Upstream-Hop\r\nconnection: x-second-hop\r\nkeep-alive: timeout=5\r\nproxy-connection: keep-alive\r\nte: trailers\r\ntrailer: x-sum\r\nupgrade: h2c\r\nx-upstream-hop: secret\r\nx-second-hop: 2\r\nx-kept: yes\r\ncontent-length: 11\r\n\r\n{\"ok\":true}"
            }
            Answer::ChunkedWithLength => {
                b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-length: 99\r\n\r\nb\r\n{\"ok\":true}\r\n0\r\n\r\n"
            }
        }
    }

    /// Whether the upstream closes the connection right after answering.
    fn closes(self) -> bool {
        matches!(self, Answer::BodyUntilClose)
    }
}

struct RawUpstream {
    addr: std::net::SocketAddr,
    accepted: Arc<AtomicUsize>,
    /// Connections the gateway closed (the upstream read the end of them).
    closed_by_peer: Arc<AtomicUsize>,
}

impl RawUpstream {
    async fn start(answer: Answer) -> RawUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (accepted, closed_by_peer) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let (counting, closing) = (Arc::clone(&accepted), Arc::clone(&closed_by_peer));
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                counting.fetch_add(1, Ordering::SeqCst);
                let closing = Arc::clone(&closing);
                tokio::spawn(async move {
                    if serve(socket, answer).await {
                        closing.fetch_add(1, Ordering::SeqCst);
                    }
                });
            }
        });
        RawUpstream { addr, accepted, closed_by_peer }
    }

    fn node(&self) -> String {
        self.addr.to_string()
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

/// Serves requests on one connection; `true` when the gateway closed it.
async fn serve(mut socket: TcpStream, answer: Answer) -> bool {
    let mut buffer = Vec::new();
    if matches!(answer, Answer::RefusesTheBody | Answer::RefusesTheBodyAndStalls) {
        while !buffer.windows(4).any(|w| w == b"\r\n\r\n") {
            let mut chunk = [0u8; 4096];
            match socket.read(&mut chunk).await {
                Ok(0) | Err(_) => return true,
                Ok(read) => buffer.extend_from_slice(&chunk[..read]),
            }
        }
        let _ = socket.write_all(answer.bytes()).await;
        if matches!(answer, Answer::RefusesTheBodyAndStalls) {
            tokio::time::sleep(Duration::from_secs(30)).await;
        }
        return false;
    }
    loop {
        let Some(end) = read_request(&mut socket, &mut buffer).await else { return true };
        buffer.drain(..end);
        if socket.write_all(answer.bytes()).await.is_err() {
            return false;
        }
        if answer.closes() {
            return false;
        }
        if matches!(answer, Answer::JsonThenSilentClose) {
            // After the gateway has taken the response and pooled the connection.
            tokio::time::sleep(Duration::from_millis(50)).await;
            return false;
        }
    }
}

/// Reads one request (head and `content-length` body) into `buffer`; returns its length, or
/// `None` when the connection ended first.
async fn read_request(socket: &mut TcpStream, buffer: &mut Vec<u8>) -> Option<usize> {
    loop {
        if let Some(head_end) = buffer.windows(4).position(|w| w == b"\r\n\r\n").map(|at| at + 4) {
            let head = String::from_utf8_lossy(&buffer[..head_end]).to_ascii_lowercase();
            let length = head
                .lines()
                .find_map(|line| line.strip_prefix("content-length:"))
                .and_then(|value| value.trim().parse::<usize>().ok())
                .unwrap_or(0);
            if buffer.len() >= head_end + length {
                return Some(head_end + length);
            }
        }
        let mut chunk = [0u8; 4096];
        match socket.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(read) => buffer.extend_from_slice(&chunk[..read]),
        }
    }
}

async fn gateway_to(upstream: &RawUpstream, route: &str, keepalive_pool: Option<serde_json::Value>) -> TestGateway {
    let gw = TestGateway::start().await;
    let mut spec = json!({"nodes": {upstream.node(): 1}});
    if let Some(pool) = keepalive_pool {
        spec["keepalive_pool"] = pool;
    }
    gw.put_route(json!({"id": route, "paths": ["/up"], "upstream": spec})).await;
    gw
}

#[tokio::test]
async fn sequential_requests_reuse_one_upstream_connection() {
    let upstream = RawUpstream::start(Answer::Json).await;
    let gw = gateway_to(&upstream, "reuse", None).await;
    for _ in 0..20 {
        let (status, body) = gw.get("/up").await;
        assert_eq!((status.as_u16(), body.as_str()), (200, "{\"ok\":true}"));
    }
    assert_eq!(upstream.accepted(), 1, "every request after the first should reuse the kept-alive connection");
}

#[tokio::test]
async fn hop_by_hop_fields_of_an_answer_stay_with_the_upstream_connection() {
    let upstream = RawUpstream::start(Answer::JsonWithHopByHopFields).await;
    let gw = gateway_to(&upstream, "hops", None).await;
    for _ in 0..2 {
        let response = gw.http.get(gw.url("/up")).send().await.unwrap();
        assert_eq!(response.status(), 200);
        let headers = response.headers().clone();
        assert_eq!(headers["x-kept"], "yes");
        for hop in ["keep-alive", "proxy-connection", "te", "trailer", "upgrade", "x-upstream-hop", "x-second-hop"] {
            assert!(!headers.contains_key(hop), "{hop} was relayed: {headers:?}");
        }
        assert_eq!(response.text().await.unwrap(), "{\"ok\":true}");
    }
    assert_eq!(upstream.accepted(), 1);
}

#[tokio::test]
async fn a_connection_the_upstream_closed_while_idle_is_replaced_without_an_error() {
    let upstream = RawUpstream::start(Answer::JsonThenSilentClose).await;
    let gw = gateway_to(&upstream, "stale", None).await;
    for round in 0..5 {
        let (status, body) = gw.get("/up").await;
        assert_eq!((status.as_u16(), body.as_str()), (200, "{\"ok\":true}"), "round {round}");
        // Long enough for the close to arrive before the next request takes the connection.
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    assert_eq!(upstream.accepted(), 5);
}

#[tokio::test]
async fn a_response_without_a_body_keeps_its_connection() {
    let upstream = RawUpstream::start(Answer::NoContent).await;
    let gw = gateway_to(&upstream, "nobody", None).await;
    for _ in 0..5 {
        let (status, _) = gw.get("/up").await;
        assert_eq!(status.as_u16(), 204);
    }
    assert_eq!(upstream.accepted(), 1);
}

/// Five requests to an upstream answering `answer`: every one must relay `{"ok":true}`; returns
/// the connections the upstream accepted.
async fn connections_for_five(answer: Answer, route: &str) -> usize {
    let upstream = RawUpstream::start(answer).await;
    let gw = gateway_to(&upstream, route, None).await;
    for round in 0..5 {
        let (status, body) = gw.get("/up").await;
        assert_eq!((status.as_u16(), body.as_str()), (200, "{\"ok\":true}"), "round {round}");
    }
    upstream.accepted()
}

#[tokio::test]
async fn a_connection_the_upstream_says_it_closes_is_not_reused() {
    assert_eq!(connections_for_five(Answer::JsonSayingClose, "says-close").await, 5);
}

#[tokio::test]
async fn a_body_that_ends_at_the_close_is_relayed_whole() {
    assert_eq!(connections_for_five(Answer::BodyUntilClose, "until-close").await, 5);
}

#[tokio::test]
async fn a_chunked_answer_after_an_informational_one_keeps_its_connection() {
    assert_eq!(connections_for_five(Answer::ContinueThenChunked, "continue-chunked").await, 1);
}

#[tokio::test]
async fn a_chunked_answer_with_a_length_too_is_framed_by_its_chunks_on_a_connection_used_once() {
    assert_eq!(connections_for_five(Answer::ChunkedWithLength, "chunked-length").await, 5);
}

#[tokio::test]
async fn an_answer_sent_before_the_upstream_read_the_body_reaches_the_client() {
    for (answer, route) in
        [(Answer::RefusesTheBody, "refuses-body"), (Answer::RefusesTheBodyAndStalls, "refuses-stalls")]
    {
        let upstream = RawUpstream::start(answer).await;
        let gw = gateway_to(&upstream, route, None).await;
        // Far more than the socket buffers hold: the upstream's close cuts the write short, or
        // its stall leaves it waiting.
        let body = vec![b'x'; 32 << 20];
        let started = Instant::now();
        let response = reqwest::Client::new().post(gw.url("/up")).body(body).send().await.unwrap();
        assert_eq!(response.status().as_u16(), 413, "{route}");
        assert_eq!(response.text().await.unwrap(), "too large", "{route}");
        assert!(started.elapsed() < Duration::from_secs(10), "{route}: answered only after {:?}", started.elapsed());
    }
}

#[tokio::test]
async fn idle_connections_are_closed_after_the_keepalive_timeout() {
    let upstream = RawUpstream::start(Answer::Json).await;
    let pool = json!({"size": 8, "idle_timeout": 1, "requests": 1000});
    let gw = gateway_to(&upstream, "idle-timeout", Some(pool)).await;
    let (status, _) = gw.get("/up").await;
    assert_eq!(status.as_u16(), 200);
    let started = Instant::now();
    while upstream.closed_by_peer.load(Ordering::SeqCst) == 0 {
        assert!(started.elapsed() < Duration::from_secs(5), "the idle connection was never closed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(800), "closed after {waited:?}, before the idle timeout");
    // The next request opens a new connection and is served.
    let (status, _) = gw.get("/up").await;
    assert_eq!(status.as_u16(), 200);
    assert_eq!(upstream.accepted(), 2);
}

#[tokio::test]
async fn a_connection_is_closed_after_keepalive_pool_requests() {
    let upstream = RawUpstream::start(Answer::Json).await;
    let pool = json!({"size": 8, "idle_timeout": 60, "requests": 3});
    let gw = gateway_to(&upstream, "worn-out", Some(pool)).await;
    for _ in 0..7 {
        let (status, _) = gw.get("/up").await;
        assert_eq!(status.as_u16(), 200);
    }
    assert_eq!(upstream.accepted(), 3, "seven requests, three per connection");
    let started = Instant::now();
    while upstream.closed_by_peer.load(Ordering::SeqCst) < 2 {
        assert!(started.elapsed() < Duration::from_secs(5), "a worn-out connection was kept open");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Two clients, each on a connection of its own, take turns. With two proxy workers each client
/// connection goes to a worker of its own, and each worker keeps its own upstream connection
/// (driven by the reactor it was opened on); with one worker both share one.
#[tokio::test]
async fn each_proxy_worker_keeps_its_own_upstream_connections() {
    for (workers, upstream_connections, per_worker) in [(2, 2, json!([1, 1])), (1, 1, json!([2]))] {
        let upstream = RawUpstream::start(Answer::Json).await;
        let gw = TestGateway::start_in(tempfile::tempdir().unwrap(), |config| config.proxy.workers = workers).await;
        gw.put_route(json!({"id": "workers", "paths": ["/up"], "upstream": {"nodes": {upstream.node(): 1}}})).await;
        let clients: Vec<_> = (0..2).map(|_| reqwest::Client::builder().no_proxy().build().unwrap()).collect();
        for round in 0..6 {
            for client in &clients {
                let response = client.get(gw.url("/up")).send().await.unwrap();
                assert_eq!(response.status().as_u16(), 200, "round {round}, {workers} workers");
                assert_eq!(response.text().await.unwrap(), "{\"ok\":true}");
            }
        }
        assert_eq!(upstream.accepted(), upstream_connections, "{workers} workers");
        let status = gw.status().await;
        assert_eq!(status["proxy_workers"], per_worker, "client connections per worker: {status}");
        assert!(status["tasks"].as_u64().unwrap() >= 2, "the two connections' tasks are counted: {status}");
    }
}

#[tokio::test]
async fn keepalive_pool_requests_must_be_at_least_one() {
    let gw = TestGateway::start().await;
    let route = json!({"paths": ["/up"], "upstream": {"nodes": {"127.0.0.1:9": 1},
        "keepalive_pool": {"size": 8, "idle_timeout": 60, "requests": 0}}});
    let (status, body) = gw.admin(reqwest::Method::PUT, "/apisix/admin/routes/zero", Some(route)).await;
    assert_eq!(status.as_u16(), 400, "{body}");
    assert!(body.to_string().contains("keepalive_pool.requests"), "{body}");
}
