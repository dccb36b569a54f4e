//! Plain upstream proxying: weights, headers, failures, and proxy-buffering.

use std::time::Duration;

use futures_util::StreamExt;
use reqwest::StatusCode;
use serde_json::json;

use crate::harness::{MockUpstream, TestGateway};

#[tokio::test]
async fn weighted_nodes_share_traffic_smoothly() {
    let gw = TestGateway::start().await;
    let heavy = MockUpstream::start("heavy").await;
    let light = MockUpstream::start("light").await;
    gw.put_route(json!({"id": "w", "paths": ["/w"], "upstream": {"type": "roundrobin",
        "nodes": [{"host": "127.0.0.1", "port": heavy.addr.port(), "weight": 3}, {"host": "127.0.0.1", "port": light.addr.port(), "weight": 1}]}}))
    .await;
    for _ in 0..8 {
        assert_eq!(gw.get("/w").await.0, StatusCode::OK);
    }
    assert_eq!((heavy.hits(), light.hits()), (6, 2));
}

#[tokio::test]
async fn request_is_forwarded_with_path_query_body_and_host_rules() {
    let gw = TestGateway::start().await;
    let mock = MockUpstream::start("echo").await;
    gw.put_route(json!({"id": "pass", "paths": ["/api/*"], "upstream": {"nodes": {mock.node(): 1}}})).await;
    let response = gw
        .http
        .post(gw.url("/api/items?x=1"))
        .header("host", "client.example")
        .header("x-custom", "kept")
        .header("connection", "keep-alive, x-hop")
        .header("x-hop", "dropped")
        .body("payload")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let seen = mock.last();
    assert_eq!(seen.path, "/api/items?x=1");
    assert_eq!(seen.body, "payload");
    assert_eq!(seen.headers["host"], "client.example");
    assert_eq!(seen.headers["x-custom"], "kept");
    assert!(!seen.headers.contains_key("x-hop"));
    assert_eq!(seen.headers["x-real-ip"], "127.0.0.1");

    gw.put_route(json!({"id": "rw", "paths": ["/rw"], "upstream": {"pass_host": "rewrite", "upstream_host": "internal.svc", "nodes": {mock.node(): 1}}})).await;
    gw.get("/rw").await;
    assert_eq!(mock.last().headers["host"], "internal.svc");
    gw.put_route(
        json!({"id": "node", "paths": ["/node"], "upstream": {"pass_host": "node", "nodes": {mock.node(): 1}}}),
    )
    .await;
    gw.get("/node").await;
    assert_eq!(mock.last().headers["host"], mock.node().as_str());
}

#[tokio::test]
async fn upstream_status_is_relayed_and_failures_map_to_502_and_504() {
    let gw = TestGateway::start().await;
    let mock = MockUpstream::start("m").await;
    gw.put_route(json!({"id": "m", "paths": ["/m"], "upstream": {"nodes": {mock.node(): 1}, "timeout": {"connect": 1, "send": 1, "read": 0.3}}})).await;
    let response = gw.http.get(gw.url("/m")).header("x-mock-status", "503").send().await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()["x-mock-name"], "m");

    // A dead node next to a live one: the connection failure moves on to the live node.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    gw.put_route(
        json!({"id": "retry", "paths": ["/retry"], "upstream": {"nodes": {dead.to_string(): 100, mock.node(): 1}}}),
    )
    .await;
    assert_eq!(gw.get("/retry").await.0, StatusCode::OK);
    gw.put_route(json!({"id": "dead", "paths": ["/dead"], "upstream": {"nodes": {dead.to_string(): 1}}})).await;
    let (status, body) = gw.get("/dead").await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert!(body.contains("error_msg"), "{body}");

    // A gated body that never finishes within the read timeout.
    let response =
        gw.http.get(gw.url("/m")).header("x-mock-chunks", "2").header("x-mock-gate", "1").send().await.unwrap();
    assert_eq!(response.status(), StatusCode::GATEWAY_TIMEOUT);
    mock.release();
}

#[tokio::test]
async fn buffering_holds_a_slow_body_until_it_is_complete() {
    let gw = TestGateway::start().await;
    let mock = MockUpstream::start("slow").await;
    gw.put_route(json!({"id": "b", "paths": ["/b"], "upstream": {"nodes": {mock.node(): 1}}})).await;
    let request = gw.http.get(gw.url("/b")).header("x-mock-chunks", "3").header("x-mock-gate", "1").send();
    tokio::pin!(request);
    // The first chunk is sent upstream, but nothing reaches the client while the rest is held.
    assert!(tokio::time::timeout(Duration::from_millis(300), &mut request).await.is_err());
    mock.release();
    let response = request.await.unwrap();
    assert_eq!(response.headers()["content-length"], "24");
    assert_eq!(response.text().await.unwrap(), "chunk-0\nchunk-1\nchunk-2\n");
}

#[tokio::test]
async fn disabled_buffering_relays_bytes_as_they_arrive() {
    let gw = TestGateway::start().await;
    let mock = MockUpstream::start("slow").await;
    gw.put_route(json!({"id": "s", "paths": ["/s"], "plugins": {"proxy-buffering": {"disable_proxy_buffering": true}},
        "upstream": {"nodes": {mock.node(): 1}}}))
        .await;
    let response =
        gw.http.get(gw.url("/s")).header("x-mock-chunks", "3").header("x-mock-gate", "1").send().await.unwrap();
    let mut body = response.bytes_stream();
    let first = tokio::time::timeout(Duration::from_secs(5), body.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(first, "chunk-0\n");
    mock.release();
    let mut rest = Vec::new();
    while let Some(chunk) = body.next().await {
        rest.extend_from_slice(&chunk.unwrap());
    }
    assert_eq!(rest, b"chunk-1\nchunk-2\n");
}

#[tokio::test]
async fn event_streams_are_relayed_event_by_event_even_when_buffering() {
    let gw = TestGateway::start().await;
    let mock = MockUpstream::start("sse").await;
    gw.put_route(json!({"id": "e", "paths": ["/e"], "upstream": {"nodes": {mock.node(): 1}}})).await;
    let response =
        gw.http.get(gw.url("/e")).header("x-mock-sse", "6").header("x-mock-gap-ms", "60").send().await.unwrap();
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut frames = Vec::new();
    let mut body = response.bytes_stream();
    let mut last = std::time::Instant::now();
    let mut gaps = Vec::new();
    while let Some(chunk) = body.next().await {
        frames.push(String::from_utf8(chunk.unwrap().to_vec()).unwrap());
        gaps.push(last.elapsed());
        last = std::time::Instant::now();
    }
    let expected: Vec<String> = (0..6).map(|i| format!("data: {{\"n\":{i}}}\n\n")).collect();
    assert_eq!(frames, expected, "one client frame per upstream event");
    assert!(gaps[1..].iter().all(|g| *g >= Duration::from_millis(30)), "delays preserved: {gaps:?}");
}

#[tokio::test]
async fn a_client_expecting_100_continue_gets_it_and_the_upstream_is_not_asked_to_wait() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let gw = TestGateway::start().await;
    let mock = MockUpstream::start("expect").await;
    gw.put_route(json!({"id": "x", "paths": ["/x"], "upstream": {"nodes": {mock.node(): 1}}})).await;
    let body = "y".repeat(4096);
    let mut socket = tokio::net::TcpStream::connect(gw.proxy).await.unwrap();
    let head =
        format!("POST /x HTTP/1.1\r\nHost: gw\r\nContent-Length: {}\r\nExpect: 100-continue\r\n\r\n", body.len());
    socket.write_all(head.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 64 * 1024];
    let n = tokio::time::timeout(Duration::from_secs(5), socket.read(&mut buf)).await.unwrap().unwrap();
    assert!(
        String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 100 Continue"),
        "{}",
        String::from_utf8_lossy(&buf[..n])
    );
    socket.write_all(body.as_bytes()).await.unwrap();
    let mut response = String::new();
    while !response.contains("\"upstream\":\"expect\"") {
        let n = tokio::time::timeout(Duration::from_secs(5), socket.read(&mut buf)).await.unwrap().unwrap();
        assert!(n > 0, "connection closed early: {response}");
        response.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let seen = mock.last();
    assert_eq!(seen.body.len(), 4096);
    assert!(!seen.headers.contains_key("expect"));
}

/// 64 MiB: the most a buffered answer may hold when the route sets no `max_response_bytes`.
const DEFAULT_MAX_BUFFERED: u64 = 64 << 20;

#[tokio::test]
async fn a_buffered_answer_over_the_default_limit_is_a_502_saying_it_is_too_large() {
    let gw = TestGateway::start().await;
    let mock = MockUpstream::llm("big").await;
    gw.put_route(json!({"id": "big", "paths": ["/big"], "upstream": {"nodes": {mock.node(): 1}}})).await;
    let big = |announced: bool| {
        let request = gw.http.post(gw.url("/big")).header("x-mock-big-bytes", (DEFAULT_MAX_BUFFERED + 1).to_string());
        if announced {
            request.header("x-mock-length", "1")
        } else {
            request
        }
    };
    // Announced by Content-Length: refused before a byte of the body is read; sent chunked: once
    // the limit is passed.
    for announced in [true, false] {
        let response = big(announced).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
        let body: serde_json::Value = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
        let message = body["error_msg"].as_str().unwrap();
        assert!(message.contains("too large") && message.contains("67108864"), "{message}");
    }
    // A smaller answer is served whole.
    let response = gw.http.post(gw.url("/big")).header("x-mock-big-bytes", "1000").send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.bytes().await.unwrap().len(), 1000);
}
