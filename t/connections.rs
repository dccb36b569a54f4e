//! Client connections: head, body and keep-alive timeouts on both listeners, header size limits,
//! and a body over the limit refused before it is read.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};
use switchyard::Config;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

use crate::harness::gateway::ADMIN_KEY;
use crate::harness::raw::{self, RawClient};
use crate::harness::{logs, MockUpstream, TestGateway};

const HEAD_TIMEOUT: Duration = Duration::from_millis(600);
const BODY_TIMEOUT: Duration = Duration::from_millis(600);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_millis(1500);

/// A node with short timeouts, a plain route `/echo` (id `<mock>-echo`) to `mock` and an
/// `ai-proxy` route `/ai` (id `<mock>-ai`): ids unique across tests, which share one log.
async fn gateway(mock: &MockUpstream, tweak: impl FnOnce(&mut Config)) -> TestGateway {
    logs::capture();
    let gw = TestGateway::start_in(tempfile::tempdir().unwrap(), |config| {
        config.proxy.client_header_timeout = HEAD_TIMEOUT;
        config.proxy.client_body_timeout = BODY_TIMEOUT;
        config.proxy.keepalive_timeout = KEEPALIVE_TIMEOUT;
        config.log.access_log = true;
        tweak(config);
    })
    .await;
    let (echo, ai) = (format!("{}-echo", mock.name), format!("{}-ai", mock.name));
    gw.put_route(json!({"id": echo, "paths": ["/echo"], "upstream": {"nodes": {mock.node(): 1}}})).await;
    let endpoint = format!("{}/v1/chat/completions", mock.base_url());
    gw.put_route(json!({"id": ai, "paths": ["/ai"], "plugins": {"ai-proxy": {"provider": "openai-compatible",
        "auth": {"header": {"Authorization": "Bearer k"}}, "override": {"endpoint": endpoint}}}}))
        .await;
    gw
}

fn admin_get() -> Vec<u8> {
    format!("GET /apisix/admin/status HTTP/1.1\r\nHost: admin\r\nX-API-KEY: {ADMIN_KEY}\r\n\r\n").into_bytes()
}

#[tokio::test]
async fn a_half_sent_request_head_is_closed_after_client_header_timeout_on_both_listeners() {
    let mock = MockUpstream::start("head").await;
    let gw = gateway(&mock, |_| {}).await;
    for addr in [gw.proxy, gw.admin] {
        let mut client = RawClient::connect(addr).await;
        client.send(b"GET /echo HTTP/1.1\r\nHost: gateway\r\nX-Slow: ").await;
        let waited = client.closed_after(Duration::from_secs(5)).await;
        assert!(waited >= HEAD_TIMEOUT - Duration::from_millis(100), "closed after {waited:?}");
        assert!(waited < HEAD_TIMEOUT * 3, "closed after {waited:?}");
        // A connection that never sends a byte is closed the same way.
        let mut silent = RawClient::connect(addr).await;
        let waited = silent.closed_after(Duration::from_secs(5)).await;
        assert!(waited >= HEAD_TIMEOUT - Duration::from_millis(100) && waited < HEAD_TIMEOUT * 3, "{waited:?}");
    }
    assert_eq!(mock.hits(), 0);
}

#[tokio::test]
async fn an_idle_kept_alive_connection_waits_keepalive_timeout_not_the_head_timeout() {
    let mock = MockUpstream::start("idle").await;
    let gw = gateway(&mock, |_| {}).await;
    for (addr, request) in [(gw.proxy, raw::get("/echo")), (gw.admin, admin_get())] {
        let mut client = RawClient::connect(addr).await;
        client.send(&request).await;
        assert_eq!(client.response(Duration::from_secs(5)).await.status, 200);
        // Idle longer than the head timeout, shorter than keep-alive: still open.
        tokio::time::sleep(HEAD_TIMEOUT + Duration::from_millis(300)).await;
        client.send(&request).await;
        assert_eq!(client.response(Duration::from_secs(5)).await.status, 200);
        let waited = client.closed_after(Duration::from_secs(5)).await;
        assert!(waited >= KEEPALIVE_TIMEOUT - Duration::from_millis(100), "closed after {waited:?}");
        assert!(waited < KEEPALIVE_TIMEOUT * 2, "closed after {waited:?}");
    }
}

#[tokio::test]
async fn keepalive_timeout_zero_closes_after_each_response() {
    let mock = MockUpstream::start("nokeep").await;
    let gw = gateway(&mock, |config| config.proxy.keepalive_timeout = Duration::ZERO).await;
    let mut client = RawClient::connect(gw.proxy).await;
    client.send(&raw::get("/echo")).await;
    let response = client.response(Duration::from_secs(5)).await;
    assert_eq!(response.status, 200);
    assert!(response.head.contains("connection: close"), "{}", response.head);
    assert!(client.closed_after(Duration::from_secs(2)).await < Duration::from_millis(500));
}

#[tokio::test]
async fn a_stalled_request_body_is_answered_408_after_client_body_timeout_on_both_listeners() {
    let mock = MockUpstream::start("body").await;
    let gw = gateway(&mock, |_| {}).await;
    let admin_put = format!(
        "PUT /apisix/admin/routes/slow HTTP/1.1\r\nHost: admin\r\nX-API-KEY: {ADMIN_KEY}\r\nContent-Length: 100\r\n\r\n{{\"paths\""
    );
    let proxy_post = "POST /echo HTTP/1.1\r\nHost: gateway\r\nContent-Length: 100\r\n\r\n0123456789".to_string();
    for (addr, request) in [(gw.proxy, proxy_post), (gw.admin, admin_put)] {
        let mut client = RawClient::connect(addr).await;
        let start = tokio::time::Instant::now();
        client.send(request.as_bytes()).await;
        let response = client.response(Duration::from_secs(5)).await;
        let waited = start.elapsed();
        assert_eq!(response.status, 408, "{response:?}");
        assert!(waited >= BODY_TIMEOUT - Duration::from_millis(100) && waited < BODY_TIMEOUT * 3, "{waited:?}");
        client.closed_after(Duration::from_secs(2)).await;
    }
    assert_eq!(mock.hits(), 0, "a half-sent body never reaches the upstream");
    let line = logs::access_line("body-echo").await;
    assert!(line.contains("status=408") && line.contains("request_timeout"), "{line}");
}

#[tokio::test]
async fn oversized_request_headers_are_refused_with_431_and_never_forwarded() {
    let mock = MockUpstream::start("big").await;
    let gw = gateway(&mock, |_| {}).await;
    let send = |headers: Vec<(&'static str, String)>| {
        let mut request = gw.http.get(gw.url("/echo"));
        for (name, value) in headers {
            request = request.header(name, value);
        }
        request.send()
    };
    // One field over 32 KiB.
    let response = send(vec![("x-big", "a".repeat(40 * 1024))]).await.unwrap();
    assert_eq!(response.status(), StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    assert!(response.text().await.unwrap().contains("x-big"));
    // Fields under 32 KiB each, over 64 KiB in all.
    let fields = ["x-a", "x-b", "x-c"].map(|name| (name, "b".repeat(25 * 1024))).to_vec();
    assert_eq!(send(fields).await.unwrap().status(), StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    // A 300 KB value (which used to reach the upstream), over a raw socket.
    let mut client = RawClient::connect(gw.proxy).await;
    let head = format!("GET /echo HTTP/1.1\r\nHost: gateway\r\nX-Huge: {}\r\n\r\n", "c".repeat(300 * 1024));
    client.send(head.as_bytes()).await;
    assert_eq!(client.response(Duration::from_secs(5)).await.status, 431);
    client.closed_after(Duration::from_secs(5)).await;
    assert_eq!(mock.hits(), 0);
    // Under both limits: forwarded.
    let response = send(vec![("x-fine", "d".repeat(30 * 1024))]).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(mock.hits(), 1);
    let logged = logs::all();
    assert!(logged.contains("status=431") && logged.contains("x-big"), "431s are logged");
    assert!(logged.contains("request head larger than 65536 bytes"), "a whole head too large is logged too");
    // The admin listener has the same limits.
    let response = gw
        .http
        .get(format!("http://{}/apisix/admin/status", gw.admin))
        .header("x-api-key", ADMIN_KEY)
        .header("x-big", "e".repeat(40 * 1024))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
}

#[tokio::test]
async fn expect_100_continue_over_the_body_limit_gets_413_at_once_not_100_continue() {
    let mock = MockUpstream::llm("expect413").await;
    let gw = gateway(&mock, |_| {}).await;
    for (path, style) in [("/ai", "openai"), ("/echo", "apisix")] {
        let mut client = RawClient::connect(gw.proxy).await;
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\n\
             Content-Length: 100000000\r\nExpect: 100-continue\r\n\r\n"
        );
        client.send(head.as_bytes()).await;
        let response = client.response(Duration::from_secs(1)).await;
        assert_eq!(response.status, 413, "{response:?}");
        let body: Value = serde_json::from_str(&response.body).unwrap();
        match style {
            "openai" => assert_eq!(body["error"]["code"], "request_too_large", "{body}"),
            _ => assert!(body["error_msg"].as_str().unwrap().contains("larger than"), "{body}"),
        }
        client.closed_after(Duration::from_secs(2)).await;
    }
    assert_eq!(mock.hits(), 0);
    for route in ["expect413-ai", "expect413-echo"] {
        let line = logs::access_line(route).await;
        assert!(line.contains("status=413") && line.contains("request_too_large"), "{line}");
    }
}

/// A gateway and a connection to it that has sent the head of a POST declaring a 100 MB body,
/// over the proxy's limit: the answer is a 413 that does not wait for the body.
async fn over_the_limit_head(mock: &'static str) -> (MockUpstream, TestGateway, OwnedReadHalf, OwnedWriteHalf) {
    let mock = MockUpstream::start(mock).await;
    let gw = gateway(&mock, |_| {}).await;
    let stream = tokio::net::TcpStream::connect(gw.proxy).await.unwrap();
    let (reader, mut writer) = stream.into_split();
    let head = "POST /echo HTTP/1.1\r\nHost: gateway\r\nContent-Length: 100000000\r\n\r\n";
    writer.write_all(head.as_bytes()).await.unwrap();
    (mock, gw, reader, writer)
}

/// Reads what the gateway sends until it closes; a reset or a 10 s stall fails the test.
async fn read_until_closed(reader: &mut OwnedReadHalf, answer: &mut Vec<u8>) {
    let mut buf = [0u8; 4096];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(10), reader.read(&mut buf))
            .await
            .expect("no end of response")
            .expect("the response was reset");
        if n == 0 {
            return;
        }
        answer.extend_from_slice(&buf[..n]);
    }
}

/// The client sends its head, waits for the 413, and only then sends its body: the gateway
/// must not have closed for good in between (a close with nothing unread yet was immediate, and
/// the client's writes then met a reset).
#[tokio::test]
async fn a_client_sending_its_body_only_after_the_413_is_not_reset() {
    let (mock, _gw, mut reader, mut writer) = over_the_limit_head("linger-late").await;
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(10), reader.read(&mut buf)).await.unwrap().unwrap();
        assert!(n > 0, "closed before the answer: {}", String::from_utf8_lossy(&answer));
        answer.extend_from_slice(&buf[..n]);
    }
    assert!(answer.starts_with(b"HTTP/1.1 413"), "{}", String::from_utf8_lossy(&answer));
    // Give the gateway time to close its side before the body starts.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let chunk = vec![b'z'; 64 * 1024];
    for i in 0..32 {
        tokio::time::timeout(Duration::from_secs(5), writer.write_all(&chunk))
            .await
            .expect("the gateway stopped reading")
            .unwrap_or_else(|err| panic!("chunk {i}: the connection was reset: {err}"));
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    writer.shutdown().await.unwrap();
    read_until_closed(&mut reader, &mut answer).await;
    assert_eq!(mock.hits(), 0);
}

#[tokio::test]
async fn a_client_still_sending_a_body_over_the_limit_reads_the_413_without_a_reset() {
    let (mock, _gw, mut reader, mut writer) = over_the_limit_head("linger").await;
    let chunk = vec![b'z'; 64 * 1024];
    // The client goes on sending while the answer comes back: every write must succeed (a
    // server that closes with unread data resets the connection, and the writes fail).
    let sending = tokio::spawn(async move {
        for _ in 0..64 {
            tokio::time::timeout(Duration::from_secs(5), writer.write_all(&chunk))
                .await
                .expect("the gateway stopped reading")
                .expect("the connection was reset while the client was sending");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        writer.shutdown().await.unwrap();
    });
    let mut answer = Vec::new();
    read_until_closed(&mut reader, &mut answer).await;
    sending.await.unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert_eq!(mock.hits(), 0);
}
