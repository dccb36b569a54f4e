//! SIGTERM and SIGINT on the real binary: listeners close at once, in-flight requests and streams
//! finish within `shutdown_timeout`, what remains is cut (streams with their SSE error event) and
//! logged as cut by shutdown, and the process exits 0; a second signal cuts at once.

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::json;
use tokio::time::Instant;

use crate::harness::node::Node;
use crate::harness::MockUpstream;

const GRACE: Duration = Duration::from_secs(2);

/// A node with `shutdown` as its `shutdown_timeout` line (or none), an `ai-proxy` route `/ai` and
/// a plain route `/plain`, both to mocks.
async fn node(shutdown: &str, llm: &MockUpstream, plain: &MockUpstream) -> Node {
    let node = Node::start(shutdown, None).await;
    let endpoint = format!("{}/v1/chat/completions", llm.base_url());
    node.put_route(json!({"id": "ai", "paths": ["/ai"], "plugins": {"ai-proxy": {"provider": "openai-compatible",
        "auth": {"header": {"Authorization": "Bearer k"}}, "override": {"endpoint": endpoint}}}}))
        .await;
    node.put_route(json!({"id": "plain", "paths": ["/plain"], "upstream": {"nodes": {plain.node(): 1}}})).await;
    node
}

/// A streamed chat whose events come `gap_ms` apart; the text received, up to its end or error.
async fn stream(http: reqwest::Client, url: String, gap_ms: u64) -> String {
    let response = http
        .post(url)
        .header("x-mock-gap-ms", gap_ms.to_string())
        .body(r#"{"stream": true, "messages": [{"role": "user", "content": "hi"}]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut body = response.bytes_stream();
    let mut text = String::new();
    while let Some(Ok(chunk)) = body.next().await {
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    text
}

/// Waits until connecting to `port` is refused: the listener is closed.
async fn refused_within(port: u16, wait: Duration) -> bool {
    let deadline = Instant::now() + wait;
    while Instant::now() < deadline {
        if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

#[tokio::test]
async fn sigterm_drains_in_flight_requests_then_cuts_what_remains_and_exits_0() {
    let (llm, plain) = (MockUpstream::llm("llm").await, MockUpstream::start("plain").await);
    let mut node = node(&format!("shutdown_timeout: {}", GRACE.as_secs_f64()), &llm, &plain).await;
    let http = node.http.clone();
    // Finish within the grace period: short streams (7 events 200 ms apart) and slow answers.
    let short: Vec<_> = (0..3).map(|_| tokio::spawn(stream(http.clone(), node.proxy_url("/ai"), 200))).collect();
    let slow: Vec<_> = (0..5)
        .map(|_| {
            let request = http.get(node.proxy_url("/plain")).header("x-mock-delay-ms", "1000");
            tokio::spawn(async move {
                let response = request.send().await.unwrap();
                (response.status(), response.text().await.unwrap())
            })
        })
        .collect();
    // Outlast it: long streams (events 1 s apart), and an answer whose head would come after 10 s.
    let long: Vec<_> = (0..2).map(|_| tokio::spawn(stream(http.clone(), node.proxy_url("/ai"), 1000))).collect();
    let doomed = {
        let request = http.post(node.proxy_url("/ai")).header("x-mock-delay-ms", "10000").body(r#"{"messages":[]}"#);
        tokio::spawn(async move { request.send().await })
    };
    tokio::time::sleep(Duration::from_millis(400)).await;

    let signalled = Instant::now();
    node.signal("TERM");
    assert!(refused_within(node.proxy, Duration::from_millis(500)).await, "the proxy listener stays open");
    assert!(refused_within(node.admin, Duration::from_millis(500)).await, "the admin listener stays open");

    for finished in short {
        let text = finished.await.unwrap();
        assert!(text.contains("data: [DONE]") && !text.contains("event: error"), "{text}");
    }
    for finished in slow {
        let (status, body) = finished.await.unwrap();
        assert_eq!(status, 200);
        assert!(body.contains("\"upstream\":\"plain\""), "{body}");
    }
    for cut in long {
        let text = cut.await.unwrap();
        assert!(text.contains("event: error") && text.contains("gateway_shutdown"), "{text}");
        assert!(!text.contains("[DONE]"), "{text}");
    }
    assert!(doomed.await.unwrap().is_err(), "a request without a response by the deadline is closed");

    let status = node.exited(GRACE + Duration::from_secs(3)).await;
    let took = signalled.elapsed();
    assert_eq!(status.code(), Some(0), "{}", node.log());
    assert!(took >= GRACE - Duration::from_millis(200), "exited after {took:?}, before the grace period ended");
    let log = node.log();
    let access: Vec<&str> = log.lines().filter(|l| l.contains(" access: ")).collect();
    let cut_streams = access.iter().filter(|l| l.contains("route=ai") && l.contains("cut by shutdown")).count();
    assert_eq!(cut_streams, 3, "two streams and the request before its head: {log}");
    assert!(access.iter().any(|l| l.contains("status=444") && l.contains("cut by shutdown")), "{log}");
    assert!(access.iter().filter(|l| l.contains("route=plain") && l.contains("status=200")).count() == 5, "{log}");
    assert!(!log.contains("status=499"), "nothing is blamed on the clients: {log}");
}

#[tokio::test]
async fn a_second_signal_cuts_at_once() {
    let (llm, plain) = (MockUpstream::llm("llm2").await, MockUpstream::start("plain2").await);
    let mut node = node("", &llm, &plain).await;
    let long = tokio::spawn(stream(node.http.clone(), node.proxy_url("/ai"), 1000));
    tokio::time::sleep(Duration::from_millis(300)).await;

    node.signal("INT");
    assert!(refused_within(node.proxy, Duration::from_millis(500)).await, "SIGINT closes the listeners too");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(node.is_running(), "the default grace period is 30 s: {}", node.log());
    let second = Instant::now();
    node.signal("INT");
    let status = node.exited(Duration::from_secs(3)).await;
    assert!(second.elapsed() < Duration::from_secs(1), "took {:?} after the second signal", second.elapsed());
    assert_eq!(status.code(), Some(0));
    let text = long.await.unwrap();
    assert!(!text.contains("[DONE]"), "{text}");
    assert!(node.log().contains("second signal"), "{}", node.log());
}
