//! OpenTelemetry traces, received by an in-test OTLP/HTTP collector and decoded.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;

use super::metrics::{chat, instance};
use crate::harness::otlp::{attr, hex, OtlpReceiver};
use crate::harness::prom::sample;
use crate::harness::{MockUpstream, TestGateway};

const CLIENT_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN: &str = "00f067aa0ba902b7";

async fn traced_gateway(endpoint: String, ratio: f64) -> TestGateway {
    TestGateway::start_in(tempfile::tempdir().unwrap(), move |c| {
        c.tracing.otlp.endpoint = Some(endpoint);
        c.tracing.otlp.headers.insert("x-collector-key".into(), "collector-secret".into());
        c.tracing.sampler_ratio = ratio;
        c.tracing.service_name = "gateway-under-test".into();
        c.tracing.batch.scheduled_delay_ms = 20;
    })
    .await
}

#[tokio::test]
async fn spans_continue_the_clients_trace_with_a_child_per_attempt_and_genai_attributes() {
    let collector = OtlpReceiver::start().await;
    let (primary, fallback) = (MockUpstream::llm("primary").await, MockUpstream::llm("fallback").await);
    let gw = traced_gateway(collector.endpoint(), 1.0).await;
    gw.put_route(json!({"id": "traced", "paths": ["/traced"], "plugins": {"ai-proxy-multi": {
        "fallback_strategy": ["http_429"],
        "instances": [instance("primary", &primary, 2), instance("fallback", &fallback, 1)]}}}))
        .await;
    primary.fail_with(429);
    let response = gw
        .http
        .post(gw.url("/traced"))
        .header("traceparent", format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"))
        .header("tracestate", "vendor=opaque")
        .body(r#"{"messages":[{"role":"user","content":"hi"}]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    response.text().await.unwrap();

    let spans = collector.wait_for(3).await;
    assert_eq!(spans.len(), 3, "{:?}", spans.iter().map(|s| &s.name).collect::<Vec<_>>());
    assert!(spans.iter().all(|s| hex(&s.trace_id) == CLIENT_TRACE), "the client's trace is continued");
    let server = spans.iter().find(|s| s.kind == 2).expect("a server span");
    assert_eq!(hex(&server.parent_span_id), CLIENT_SPAN);
    assert_eq!(server.trace_state, "vendor=opaque");
    let a = &server.attributes;
    assert_eq!(attr(a, "http.request.method").as_deref(), Some("POST"));
    assert_eq!(attr(a, "http.response.status_code").as_deref(), Some("200"));
    assert_eq!(attr(a, "http.route").as_deref(), Some("/traced"));
    assert_eq!(attr(a, "gen_ai.operation.name").as_deref(), Some("chat"));
    assert_eq!(attr(a, "gen_ai.provider.name").as_deref(), Some("openai-compatible"));
    assert_eq!(attr(a, "gen_ai.request.model").as_deref(), Some("model-fallback"));
    assert_eq!(attr(a, "gen_ai.response.model").as_deref(), Some("model-fallback"));
    assert_eq!(attr(a, "gen_ai.usage.input_tokens").as_deref(), Some("10"));
    assert_eq!(attr(a, "gen_ai.usage.output_tokens").as_deref(), Some("48"));
    assert_eq!(attr(a, "gen_ai.usage.cache_read.input_tokens").as_deref(), Some("4"));
    assert_eq!(attr(a, "switchyard.attempts").as_deref(), Some("2"));

    let mut attempts: Vec<_> = spans.iter().filter(|s| s.kind == 3).collect();
    attempts.sort_by_key(|s| s.start_time_unix_nano);
    assert_eq!(attempts.len(), 2);
    for attempt in &attempts {
        assert_eq!(attempt.parent_span_id, server.span_id, "attempts are children of the request span");
        assert!(attempt.start_time_unix_nano >= server.start_time_unix_nano);
        assert!(attempt.end_time_unix_nano <= server.end_time_unix_nano);
    }
    let (first, second) = (&attempts[0].attributes, &attempts[1].attributes);
    assert_eq!(attempts[0].name, "chat model-primary");
    assert_eq!(attr(first, "switchyard.instance").as_deref(), Some("primary"));
    assert_eq!(attr(first, "http.response.status_code").as_deref(), Some("429"));
    assert_eq!(attr(first, "switchyard.retry_reason").as_deref(), Some("429"));
    assert_eq!(attempts[0].status.as_ref().map(|s| s.code), Some(2), "a retried attempt is an error");
    assert_eq!(attr(first, "gen_ai.usage.input_tokens"), None, "usage belongs to the relayed answer");
    assert_eq!(attr(second, "switchyard.instance").as_deref(), Some("fallback"));
    assert_eq!(attr(second, "gen_ai.request.model").as_deref(), Some("model-fallback"));
    assert_eq!(attr(second, "gen_ai.usage.output_tokens").as_deref(), Some("48"));
    assert_eq!(attr(second, "switchyard.retry_reason"), None);

    // Each upstream saw the trace, with its own attempt's span as parent.
    let sent = |mock: &MockUpstream| mock.last().headers["traceparent"].to_str().unwrap().to_string();
    assert_eq!(sent(&primary), format!("00-{CLIENT_TRACE}-{}-01", hex(&attempts[0].span_id)));
    assert_eq!(sent(&fallback), format!("00-{CLIENT_TRACE}-{}-01", hex(&attempts[1].span_id)));
    assert_eq!(fallback.last().headers["tracestate"], "vendor=opaque");

    let resource = &collector.resources()[0];
    assert_eq!(attr(resource, "service.name").as_deref(), Some("gateway-under-test"));
    assert_eq!(collector.requests.lock().unwrap()[0]["x-collector-key"], "collector-secret");
    assert_eq!(collector.requests.lock().unwrap()[0]["content-type"], "application/x-protobuf");
}

#[tokio::test]
async fn a_trace_without_client_context_starts_here_and_the_sampler_ratio_applies() {
    let collector = OtlpReceiver::start().await;
    let mock = MockUpstream::start("plain").await;
    let gw = traced_gateway(collector.endpoint(), 1.0).await;
    gw.put_route(json!({"id": "fresh", "paths": ["/fresh"], "upstream": {"nodes": {mock.node(): 1}}})).await;
    assert_eq!(gw.get("/fresh").await.0, StatusCode::OK);
    let spans = collector.wait_for(2).await;
    let server = spans.iter().find(|s| s.kind == 2).unwrap();
    assert!(server.parent_span_id.is_empty(), "a root span");
    assert_eq!(server.name, "GET /fresh");
    let attempt = spans.iter().find(|s| s.kind == 3).unwrap();
    assert_eq!(attr(&attempt.attributes, "gen_ai.operation.name"), None, "no GenAI attributes on a plain route");
    let sent = mock.last().headers["traceparent"].to_str().unwrap().to_string();
    assert_eq!(sent, format!("00-{}-{}-01", hex(&server.trace_id), hex(&attempt.span_id)));

    // Ratio 0: nothing recorded, but the context still goes upstream, marked unsampled.
    let quiet = OtlpReceiver::start().await;
    let gw = traced_gateway(quiet.endpoint(), 0.0).await;
    gw.put_route(json!({"id": "quiet", "paths": ["/quiet"], "upstream": {"nodes": {mock.node(): 1}}})).await;
    assert_eq!(gw.get("/quiet").await.0, StatusCode::OK);
    assert!(mock.last().headers["traceparent"].to_str().unwrap().ends_with("-00"));
    // A client's sampled trace is recorded whatever the ratio.
    let response = gw
        .http
        .get(gw.url("/quiet"))
        .header("traceparent", format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let spans = quiet.wait_for(2).await;
    assert!(spans.iter().all(|s| hex(&s.trace_id) == CLIENT_TRACE), "only the client's sampled trace was exported");
}

#[tokio::test]
async fn a_collector_that_never_answers_costs_requests_nothing_and_dropped_spans_are_counted() {
    // Accepts connections and never answers: every export hangs until its timeout.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", silent.local_addr().unwrap());
    let mock = MockUpstream::llm("llm").await;
    let gw = TestGateway::start_in(tempfile::tempdir().unwrap(), move |c| {
        c.tracing.otlp.endpoint = Some(endpoint);
        c.tracing.otlp.timeout_ms = 30_000;
        c.tracing.batch.max_queue_size = 2;
        c.tracing.batch.max_export_batch_size = 1;
        c.tracing.batch.scheduled_delay_ms = 1;
    })
    .await;
    gw.put_route(json!({"id": "busy", "paths": ["/busy"], "plugins": {"ai-proxy": {
        "provider": "openai-compatible", "auth": {"header": {"Authorization": "Bearer k"}},
        "override": {"endpoint": format!("{}/v1/chat/completions", mock.base_url())}}}}))
        .await;
    let started = Instant::now();
    for _ in 0..10 {
        assert_eq!(chat(&gw, "/busy", json!({"messages": []})).await, StatusCode::OK);
    }
    assert!(started.elapsed() < Duration::from_secs(10), "requests waited for the collector");
    let text = gw.scrape().await;
    // 20 spans: one export hangs, the queue holds two, the rest are dropped.
    let dropped = sample(&text, "switchyard_trace_spans_dropped_total", &[]).unwrap();
    assert!(dropped >= 15.0, "{dropped}");
    assert_eq!(sample(&text, "switchyard_trace_spans_exported_total", &[]), Some(0.0));
    drop(silent);
}
