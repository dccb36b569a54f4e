//! The Prometheus exporter: values scraped after real traffic through the gateway.

use futures_util::StreamExt;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::harness::prom::{sample, total};
use crate::harness::{Behaviour, MockUpstream, TestGateway};

fn ai_proxy_route(id: &str, mock: &MockUpstream) -> Value {
    json!({"id": id, "paths": [format!("/{id}")], "plugins": {"ai-proxy": {
        "provider": "openai-compatible", "auth": {"header": {"Authorization": "Bearer sk-test"}},
        "options": {"model": "deepseek-chat"},
        "override": {"endpoint": format!("{}/v1/chat/completions", mock.base_url())}}}})
}

pub fn instance(name: &str, mock: &MockUpstream, priority: i64) -> Value {
    json!({"name": name, "provider": "openai-compatible", "weight": 1, "priority": priority,
        "auth": {"header": {"Authorization": format!("Bearer key-{name}")}},
        "options": {"model": format!("model-{name}")},
        "override": {"endpoint": format!("{}/v1/chat/completions", mock.base_url())}})
}

/// Sends a chat request and reads the whole answer (streams included); the status.
pub async fn chat(gw: &TestGateway, path: &str, body: Value) -> StatusCode {
    let response = gw.http.post(gw.url(path)).body(body.to_string()).send().await.unwrap();
    let status = response.status();
    let mut stream = response.bytes_stream();
    while let Some(chunk) = stream.next().await {
        chunk.unwrap();
    }
    status
}

/// Scrapes until `check` holds: the log phase of a streamed answer may end just after the client
/// read its last byte.
async fn scrape_until(gw: &TestGateway, check: impl Fn(&str) -> bool) -> String {
    for _ in 0..100 {
        let text = gw.scrape().await;
        if check(&text) {
            return text;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    gw.scrape().await
}

#[tokio::test]
async fn tokens_equal_the_mocks_usage_and_ttft_is_recorded_for_streams_only() {
    let mock = MockUpstream::llm("llm").await;
    let gw = TestGateway::start().await;
    gw.put_route(ai_proxy_route("metered", &mock)).await;
    let ask = json!({"messages": [{"role": "user", "content": "hi"}]});
    for _ in 0..3 {
        assert_eq!(chat(&gw, "/metered", ask.clone()).await, StatusCode::OK);
    }
    let chat_labels = [("route_id", "metered"), ("request_type", "ai_chat"), ("llm_model", "deepseek-chat")];
    let text = gw.scrape().await;
    // t/fixtures/chat.json: 10 prompt and 48 completion tokens per answer.
    assert_eq!(sample(&text, "apisix_llm_prompt_tokens", &chat_labels), Some(30.0));
    assert_eq!(sample(&text, "apisix_llm_completion_tokens", &chat_labels), Some(144.0));
    assert_eq!(sample(&text, "apisix_llm_prompt_tokens_dist_count", &chat_labels), Some(3.0));
    assert_eq!(sample(&text, "apisix_llm_completion_tokens_dist_sum", &chat_labels), Some(144.0));
    let total_latency = [("type", "total"), ("route_id", "metered"), ("request_type", "ai_chat")];
    assert_eq!(sample(&text, "apisix_llm_latency_count", &total_latency), Some(3.0));
    let chat_ttft = [("type", "ttft"), ("route_id", "metered"), ("request_type", "ai_chat")];
    assert_eq!(sample(&text, "apisix_llm_latency_count", &chat_ttft), Some(0.0), "no TTFT without a stream");
    assert_eq!(sample(&text, "apisix_http_status", &[("code", "200"), ("route", "metered")]), Some(3.0));
    let upstream = [("type", "upstream"), ("route", "metered"), ("node", "deepseek-chat")];
    assert_eq!(sample(&text, "apisix_http_latency_count", &upstream), None, "node is the instance label");
    let upstream = [("type", "upstream"), ("route", "metered"), ("node", "openai-compatible")];
    assert_eq!(sample(&text, "apisix_http_latency_count", &upstream), Some(3.0));

    let stream = json!({"stream": true, "messages": [{"role": "user", "content": "hi"}]});
    for _ in 0..2 {
        assert_eq!(chat(&gw, "/metered", stream.clone()).await, StatusCode::OK);
    }
    let stream_labels = [("route_id", "metered"), ("request_type", "ai_stream")];
    let stream_ttft = [("type", "ttft"), ("route_id", "metered"), ("request_type", "ai_stream")];
    let text = scrape_until(&gw, |t| sample(t, "apisix_llm_latency_count", &stream_ttft) == Some(2.0)).await;
    // t/fixtures/chat.sse: 12 prompt and 5 completion tokens per stream.
    assert_eq!(sample(&text, "apisix_llm_prompt_tokens", &stream_labels), Some(24.0));
    assert_eq!(sample(&text, "apisix_llm_completion_tokens", &stream_labels), Some(10.0));
    assert_eq!(sample(&text, "apisix_llm_latency_count", &stream_ttft), Some(2.0));
    assert_eq!(total(&text, "apisix_llm_active_connections", &[("route_id", "metered")]), 0.0);
    assert_eq!(sample(&text, "apisix_http_status", &[("code", "200"), ("route", "metered")]), Some(5.0));
    assert!(sample(&text, "apisix_http_requests_total", &[]).unwrap() >= 5.0);
    assert!(sample(&text, "switchyard_gateway_overhead_seconds_count", &[]).unwrap() >= 5.0);
    assert!(total(&text, "apisix_bandwidth", &[("type", "egress"), ("route", "metered")]) > 0.0);
    assert!(total(&text, "apisix_bandwidth", &[("type", "ingress"), ("route", "metered")]) > 0.0);
}

#[tokio::test]
async fn the_requested_model_label_is_bounded_by_config() {
    let mock = MockUpstream::llm("llm").await;
    let gw = TestGateway::start().await;
    gw.put_route(ai_proxy_route("bounded", &mock)).await;
    for model in ["deepseek-chat", "made-up-1", "made-up-2", "made-up-3"] {
        assert_eq!(chat(&gw, "/bounded", json!({"model": model, "messages": []})).await, StatusCode::OK);
    }
    let text = gw.scrape().await;
    let requested = |model| [("route_id", "bounded"), ("request_llm_model", model)];
    assert_eq!(sample(&text, "apisix_llm_prompt_tokens", &requested("deepseek-chat")), Some(10.0));
    assert_eq!(sample(&text, "apisix_llm_prompt_tokens", &requested("other")), Some(30.0));
    assert!(!text.contains("made-up"), "a client-chosen model name became a label");
}

#[tokio::test]
async fn a_fallback_counts_the_attempts_and_a_cooling_instance_shows_in_the_health_gauge() {
    let (primary, fallback) = (MockUpstream::llm("primary").await, MockUpstream::llm("fallback").await);
    let gw = TestGateway::start().await;
    gw.put_route(json!({"id": "fb", "paths": ["/fb"], "plugins": {"ai-proxy-multi": {
        "fallback_strategy": ["http_429", "http_5xx"],
        "instances": [instance("primary", &primary, 2), instance("fallback", &fallback, 1)]}}}))
        .await;
    let text = gw.scrape().await;
    let health = |instance, state| [("route", "fb"), ("instance", instance), ("state", state)];
    assert_eq!(sample(&text, "switchyard_instance_health", &health("primary", "healthy")), Some(1.0));

    primary.behave(Behaviour { status: Some(429), retry_after: Some("30".into()), ..Behaviour::default() });
    assert_eq!(chat(&gw, "/fb", json!({"messages": []})).await, StatusCode::OK);
    let text = gw.scrape().await;
    let attempts = |instance, result| [("route", "fb"), ("instance", instance), ("result", result)];
    assert_eq!(sample(&text, "switchyard_upstream_attempts_total", &attempts("primary", "429")), Some(1.0));
    assert_eq!(sample(&text, "switchyard_upstream_attempts_total", &attempts("fallback", "2xx")), Some(1.0));
    let fallbacks = [("route", "fb"), ("instance", "primary"), ("reason", "429")];
    assert_eq!(sample(&text, "switchyard_upstream_fallbacks_total", &fallbacks), Some(1.0));
    assert_eq!(total(&text, "switchyard_upstream_fallbacks_total", &[("instance", "fallback")]), 0.0);
    assert_eq!(sample(&text, "switchyard_instance_health", &health("primary", "cooling")), Some(1.0));
    assert_eq!(sample(&text, "switchyard_instance_health", &health("primary", "healthy")), Some(0.0));
    assert_eq!(sample(&text, "switchyard_instance_health", &health("fallback", "healthy")), Some(1.0));
    let back_in = sample(&text, "switchyard_instance_cooldown_seconds", &[("route", "fb"), ("instance", "primary")]);
    assert!(back_in.is_some_and(|s| s > 25.0 && s <= 30.0), "{back_in:?}");
    // The answer came from the fallback: its labels name it.
    let llm = [("route_id", "fb"), ("node", "fallback"), ("llm_model", "model-fallback")];
    assert_eq!(sample(&text, "apisix_llm_prompt_tokens", &llm), Some(10.0));
    assert_eq!(sample(&text, "apisix_http_status", &[("route", "fb"), ("node", "fallback")]), Some(1.0));
}

#[tokio::test]
async fn config_and_store_state_are_exported() {
    let mock = MockUpstream::llm("llm").await;
    let gw = TestGateway::start().await;
    gw.put_route(ai_proxy_route("one", &mock)).await;
    let status = gw.status().await;
    let revision = status["revision"].as_f64().unwrap();
    let text = gw.scrape().await;
    assert_eq!(sample(&text, "switchyard_config_revision", &[]), Some(revision));
    assert_eq!(sample(&text, "apisix_etcd_modify_indexes", &[("key", "routes")]), Some(revision));
    assert_eq!(sample(&text, "apisix_etcd_modify_indexes", &[("key", "x_etcd_index")]), Some(revision));
    assert_eq!(sample(&text, "apisix_etcd_reachable", &[]), Some(1.0));
    assert_eq!(sample(&text, "switchyard_store_connected", &[]), Some(1.0));
    assert_eq!(sample(&text, "switchyard_config_rejected_resources", &[]), Some(0.0));
    assert!(sample(&text, "switchyard_config_reload_duration_seconds_count", &[]).unwrap() >= 1.0);
    assert_eq!(sample(&text, "apisix_node_info", &[("version", env!("CARGO_PKG_VERSION"))]), Some(1.0));
    assert!(sample(&text, "apisix_nginx_http_current_connections", &[("state", "accepted")]).is_some());

    // A resource written around the admin API that does not validate is counted.
    let store = gw.store();
    let put = store.put("/switchyard/default/routes/broken", bytes::Bytes::from_static(b"{\"paths\": 7}"), None).await;
    gw.wait_for_revision(put.unwrap().revision).await;
    let text = gw.scrape().await;
    assert_eq!(sample(&text, "switchyard_config_rejected_resources", &[]), Some(1.0));
}

#[tokio::test]
async fn the_exporter_serves_its_path_only_and_can_be_turned_off() {
    let gw = TestGateway::start().await;
    let addr = gw.metrics.unwrap();
    let response = gw.http.get(format!("http://{addr}/metrics")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let response = gw.http.get(format!("http://{addr}/apisix/prometheus/metrics")).send().await.unwrap();
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/plain; version=0.0.4"));

    let off = TestGateway::start_in(tempfile::tempdir().unwrap(), |c| c.metrics.enabled = false).await;
    assert_eq!(off.metrics, None);
}

#[tokio::test]
async fn plain_routes_count_status_latency_and_bandwidth_per_node() {
    let mock = MockUpstream::start("plain").await;
    let gw = TestGateway::start().await;
    gw.put_route(json!({"id": "plain", "paths": ["/plain/*", "/other"], "hosts": ["*.example.com"],
        "upstream": {"nodes": {mock.node(): 1}}}))
        .await;
    let response = gw.http.get(gw.url("/plain/x")).header("host", "api.example.com").send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let response = gw.http.get(gw.url("/plain/x?x-mock")).header("host", "eu.example.com").send().await.unwrap();
    response.bytes().await.unwrap();
    let text = gw.scrape().await;
    let labels = [
        ("code", "200"),
        ("route", "plain"),
        ("matched_uri", "/plain/*"),
        ("matched_host", "*.example.com"),
        ("node", mock.node().leak()),
    ];
    assert_eq!(sample(&text, "apisix_http_status", &labels), Some(2.0));
    let request = [("type", "request"), ("route", "plain")];
    assert_eq!(sample(&text, "apisix_http_latency_count", &request), Some(2.0));
    assert_eq!(total(&text, "switchyard_upstream_attempts_total", &[("route", "plain"), ("result", "2xx")]), 2.0);
    assert_eq!(
        total(&text, "apisix_llm_prompt_tokens", &[("route_id", "plain")]),
        0.0,
        "no LLM series on plain routes"
    );
}

#[tokio::test]
async fn an_llm_answer_counts_as_active_until_its_client_leaves() {
    let mock = MockUpstream::llm("llm").await;
    let gw = TestGateway::start().await;
    gw.put_route(ai_proxy_route("leaving", &mock)).await;
    let active = |text: &str| total(text, "apisix_llm_active_connections", &[("route_id", "leaving")]);
    let response = gw
        .http
        .post(gw.url("/leaving"))
        .header("x-mock-gap-ms", "300")
        .body(json!({"stream": true, "messages": []}).to_string())
        .send()
        .await
        .unwrap();
    let mut stream = response.bytes_stream();
    stream.next().await.unwrap().unwrap();
    assert_eq!(active(&gw.scrape().await), 1.0, "a stream being relayed is active");
    drop(stream);
    let text = scrape_until(&gw, |t| active(t) == 0.0).await;
    assert_eq!(active(&text), 0.0, "the gauge came down when the client left");
    assert_eq!(total(&text, "apisix_http_status", &[("route", "leaving"), ("code", "200")]), 1.0);
}
