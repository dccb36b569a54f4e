//! `ai-proxy`: the seeds' routes, provider URLs and auth, body rules, streaming, errors, logging.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use switchyard::config::ProviderConfig;

use crate::harness::{logs, MockUpstream, TestGateway};

/// A gateway whose built-in providers all point at `mock`, with the access log on.
async fn gateway_for(mock: &MockUpstream) -> TestGateway {
    logs::capture();
    let base = mock.base_url();
    TestGateway::start_in(tempfile::tempdir().unwrap(), move |config| {
        for name in ["openai", "deepseek", "openrouter", "gemini", "aimlapi", "anthropic"] {
            config.providers.insert(name.into(), ProviderConfig { base_url: Some(base.clone()) });
        }
        config.log.access_log = true;
    })
    .await
}

fn deepseek_route(id: &str, path: &str, extra: Value) -> Value {
    let mut plugin = json!({"provider": "deepseek", "auth": {"header": {"Authorization": "Bearer sk-deepseek-secret"}},
        "options": {"model": "deepseek-chat"}});
    if let (Value::Object(plugin), Value::Object(extra)) = (&mut plugin, extra) {
        plugin.extend(extra);
    }
    json!({"id": id, "paths": [path], "plugins": {"ai-proxy": plugin}})
}

/// POSTs like the seeds' `curl -d` (form content type, JSON body).
async fn chat(gw: &TestGateway, path: &str, body: &str) -> reqwest::Response {
    gw.http
        .post(gw.url(path))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body.to_string())
        .send()
        .await
        .unwrap()
}

async fn error_of(response: reqwest::Response) -> Value {
    let body: Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
    assert!(body["error"]["message"].is_string() && body["error"]["type"].is_string(), "OpenAI error shape: {body}");
    body
}

#[tokio::test]
async fn seed_deepseek_route_works_as_written() {
    let mock = MockUpstream::llm("deepseek").await;
    let gw = gateway_for(&mock).await;
    let service = gw.put_service(json!({"id": "svc1", "name": "llm"})).await;
    let service_id = service["value"]["id"].as_str().unwrap();
    // 004: the route exactly as written, with the service id filled in.
    let route = json!({
        "id": "deepseek-route",
        "service_id": service_id,
        "paths": ["/deepseek"],
        "plugins": {"ai-proxy": {"provider": "deepseek",
            "auth": {"header": {"Authorization": "Bearer sk-xxxxxxxxxxxxxxxxxxxxxxxx"}},
            "options": {"model": "deepseek-chat"}}}
    });
    let (status, reply) = gw.admin(Method::PUT, "/apisix/admin/routes?gateway_group_id=default", Some(route)).await;
    assert_eq!(status, StatusCode::CREATED, "{reply}");

    let response =
        chat(&gw, "/deepseek", r#"{"messages": [{ "role": "user", "content": "What is the Fibonacci sequence?" }]}"#)
            .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["x-request-id"], "req-mock-1");
    assert_eq!(response.headers()["x-ratelimit-remaining-requests"], "99");
    let completion: Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
    assert_eq!(completion["object"], "chat.completion");
    assert_eq!(completion["model"], "deepseek-chat");
    assert_eq!(completion["usage"]["total_tokens"], 58);

    let seen = mock.last();
    assert_eq!(seen.path, "/chat/completions");
    assert_eq!(seen.headers["authorization"], "Bearer sk-xxxxxxxxxxxxxxxxxxxxxxxx");
    assert_eq!(seen.headers["content-type"], "application/json");
    let sent: Value = serde_json::from_slice(&seen.body).unwrap();
    assert_eq!(sent["model"], "deepseek-chat");
}

#[tokio::test]
async fn seed_openai_compatible_route_uses_the_endpoint_path() {
    let mock = MockUpstream::llm("vllm").await;
    let gw = gateway_for(&mock).await;
    gw.put_route(json!({"id": "custom-llm-route", "paths": ["/custom-llm"], "plugins": {"ai-proxy": {
        "provider": "openai-compatible",
        "auth": {"header": {"Authorization": "Bearer your-api-key"}},
        "options": {"model": "your-model-name"},
        "override": {"endpoint": format!("{}/v1/chat/completions", mock.base_url())}}}}))
        .await;
    let response =
        chat(&gw, "/custom-llm", r#"{"messages": [{ "role": "user", "content": "Hello, how are you?" }]}"#).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(mock.last().path, "/v1/chat/completions");
    assert_eq!(mock.last().headers["authorization"], "Bearer your-api-key");
}

#[tokio::test]
async fn every_provider_gets_its_path_and_auth() {
    let mock = MockUpstream::llm("p").await;
    let gw = gateway_for(&mock).await;
    let cases = [
        ("openai", "/v1/chat/completions"),
        ("deepseek", "/chat/completions"),
        ("openrouter", "/api/v1/chat/completions"),
        ("gemini", "/v1beta/openai/chat/completions"),
        ("aimlapi", "/chat/completions"),
        ("anthropic", "/v1/chat/completions"),
    ];
    for (provider, path) in cases {
        let route_path = format!("/p/{provider}");
        gw.put_route(json!({"id": provider, "paths": [route_path], "plugins": {"ai-proxy": {"provider": provider,
            "auth": {"header": {"x-key": format!("key-{provider}")}, "query": {"tenant": "a b"}}, "options": {"model": "m"}}}}))
        .await;
        assert_eq!(chat(&gw, &route_path, r#"{"messages":[]}"#).await.status(), StatusCode::OK, "{provider}");
        let seen = mock.last();
        assert_eq!(seen.path, format!("{path}?tenant=a%20b"), "{provider}");
        assert_eq!(seen.headers["x-key"], format!("key-{provider}").as_str());
    }
    // Azure: the deployment URL names the model, so `model` leaves the body; auth by its header.
    gw.put_route(json!({"id": "azure", "paths": ["/azure"], "plugins": {"ai-proxy": {"provider": "azure-openai",
        "auth": {"header": {"api-key": "azure-secret"}}, "options": {"model": "gpt-4o"},
        "override": {"endpoint": format!("{}/openai/deployments/gpt4o/chat/completions?api-version=2024-02-01", mock.base_url())}}}}))
    .await;
    assert_eq!(chat(&gw, "/azure", r#"{"model":"x","messages":[]}"#).await.status(), StatusCode::OK);
    let seen = mock.last();
    assert_eq!(seen.path, "/openai/deployments/gpt4o/chat/completions?api-version=2024-02-01");
    assert_eq!(seen.headers["api-key"], "azure-secret");
    let sent: Value = serde_json::from_slice(&seen.body).unwrap();
    assert!(sent.get("model").is_none(), "{sent}");
}

#[tokio::test]
async fn unchanged_body_goes_upstream_byte_for_byte_and_nested_fields_are_not_reserialised() {
    let mock = MockUpstream::llm("bytes").await;
    let gw = gateway_for(&mock).await;
    gw.put_route(json!({"id": "raw", "paths": ["/raw"], "plugins": {"ai-proxy": {"provider": "openai",
        "auth": {"header": {"Authorization": "Bearer k"}}}}}))
        .await;
    let odd = "{ \"model\" : \"gpt-4o\",\n  \"messages\": [ {\"role\":\"user\",   \"content\":\"hi \\u00e9\"} ] }";
    assert_eq!(chat(&gw, "/raw", odd).await.status(), StatusCode::OK);
    assert_eq!(mock.last().body, odd.as_bytes());

    gw.put_route(deepseek_route("opt", "/opt", json!({}))).await;
    assert_eq!(chat(&gw, "/opt", odd).await.status(), StatusCode::OK);
    let sent = String::from_utf8(mock.last().body.to_vec()).unwrap();
    assert!(sent.contains("[ {\"role\":\"user\",   \"content\":\"hi \\u00e9\"} ]"), "{sent}");
    assert!(sent.contains("\"model\":\"deepseek-chat\""), "{sent}");
}

#[tokio::test]
async fn options_overrides_and_request_body_merge_follow_their_rules() {
    let mock = MockUpstream::llm("rules").await;
    let gw = gateway_for(&mock).await;
    gw.put_route(deepseek_route(
        "merge",
        "/merge",
        json!({
        "options": {"model": "deepseek-chat", "temperature": 0.1},
        "override": {"llm_options": {"max_tokens": 64},
            "request_body": {"openai": {"user": "gateway", "metadata": {"team": "a", "tier": "gold"}}}}}),
    ))
    .await;
    chat(&gw, "/merge", r#"{"model":"mine","temperature":0.9,"max_tokens":999,"user":"client","metadata":{"tier":"free"},"messages":[]}"#).await;
    let sent: Value = serde_json::from_slice(&mock.last().body).unwrap();
    assert_eq!(sent["model"], "deepseek-chat", "options always win");
    assert_eq!(sent["temperature"], 0.1);
    assert_eq!(sent["max_tokens"], 64);
    assert_eq!(sent["user"], "client", "the client wins a request_body merge");
    assert_eq!(sent["metadata"], json!({"team": "a", "tier": "free"}));

    gw.put_route(deepseek_route(
        "force",
        "/force",
        json!({
        "override": {"request_body": {"openai": {"user": "gateway"}}, "request_body_force_override": true}}),
    ))
    .await;
    chat(&gw, "/force", r#"{"user":"client","messages":[]}"#).await;
    let sent: Value = serde_json::from_slice(&mock.last().body).unwrap();
    assert_eq!(sent["user"], "gateway");
}

#[tokio::test]
async fn request_body_overrides_take_apisix_protocol_names_and_apply_to_the_protocol_sent() {
    let mock = MockUpstream::llm("protocols").await;
    let gw = gateway_for(&mock).await;
    gw.put_route(deepseek_route(
        "named",
        "/named",
        json!({"override": {"request_body": {
            "openai-chat": {"user": "chat-patch"},
            "anthropic-messages": {"metadata": {"user_id": "messages-patch"}},
            "openai-responses": {}, "openai-embeddings": {}, "bedrock-converse": {}, "passthrough": {}}}}),
    ))
    .await;
    chat(&gw, "/named", r#"{"messages":[]}"#).await;
    let sent: Value = serde_json::from_slice(&mock.last().body).unwrap();
    assert_eq!(sent["user"], "chat-patch", "the openai-chat patch applies to an OpenAI chat provider");
    assert!(sent.get("metadata").is_none(), "a patch for another protocol is ignored: {sent}");
}

#[tokio::test]
async fn caller_credentials_never_reach_the_provider() {
    let mock = MockUpstream::llm("headers").await;
    let gw = gateway_for(&mock).await;
    gw.put_route(deepseek_route("h", "/h", json!({}))).await;
    let response = gw
        .http
        .post(gw.url("/h"))
        .header("authorization", "Bearer caller-key")
        .header("x-api-key", "caller-key-2")
        .header("cookie", "session=1")
        .header("proxy-authorization", "Basic eA==")
        .header("accept-encoding", "gzip")
        .header("x-trace", "t-1")
        .body(r#"{"messages":[]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let seen = mock.last();
    assert_eq!(seen.headers["authorization"], "Bearer sk-deepseek-secret");
    for stripped in ["x-api-key", "cookie", "proxy-authorization", "accept-encoding"] {
        assert!(!seen.headers.contains_key(stripped), "{stripped} was forwarded");
    }
    assert_eq!(seen.headers["x-trace"], "t-1");
}

#[tokio::test]
async fn streams_are_relayed_event_by_event_with_usage_requested_and_read() {
    let mock = MockUpstream::llm("sse").await;
    let gw = gateway_for(&mock).await;
    gw.put_route(deepseek_route("stream-route", "/stream", json!({"logging": {"summaries": true}}))).await;
    let response = gw
        .http
        .post(gw.url("/stream"))
        .header("x-mock-gap-ms", "60")
        .body(r#"{"stream": true, "messages": [{"role":"user","content":"hi"}]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
    let mut frames = Vec::new();
    let mut gaps = Vec::new();
    let mut last = Instant::now();
    let mut body = response.bytes_stream();
    while let Some(frame) = body.next().await {
        frames.push(String::from_utf8(frame.unwrap().to_vec()).unwrap());
        gaps.push(last.elapsed());
        last = Instant::now();
    }
    let expected: Vec<&str> = include_str!("fixtures/chat.sse").split_inclusive("\n\n").collect();
    assert_eq!(frames, expected, "one client frame per upstream event, unchanged");
    assert!(gaps[1..].iter().all(|g| *g >= Duration::from_millis(30)), "delays preserved: {gaps:?}");

    let sent: Value = serde_json::from_slice(&mock.last().body).unwrap();
    assert_eq!(sent["stream_options"]["include_usage"], true);
    let line = logs::access_line("stream-route").await;
    for field in ["prompt_tokens=12", "completion_tokens=5", "total_tokens=17", "model=deepseek-chat", "status=200"] {
        assert!(line.contains(field), "{field} missing in {line}");
    }
    assert!(line.contains("ttft_ms="), "{line}");
}

#[tokio::test]
async fn a_flush_interval_coalesces_events_without_losing_or_reordering_any() {
    let mock = MockUpstream::llm("batched").await;
    let gw = gateway_for(&mock).await;
    gw.put_route(deepseek_route("batched", "/batched", json!({"streaming_flush_interval_ms": 250}))).await;
    let response = gw
        .http
        .post(gw.url("/batched"))
        .header("x-mock-gap-ms", "60")
        .body(r#"{"stream": true, "messages": []}"#)
        .send()
        .await
        .unwrap();
    let mut frames = Vec::new();
    let mut body = response.bytes_stream();
    while let Some(frame) = body.next().await {
        frames.push(String::from_utf8(frame.unwrap().to_vec()).unwrap());
    }
    let events = include_str!("fixtures/chat.sse");
    assert_eq!(frames.concat(), events, "every event, in order");
    // Seven events 60 ms apart, in 250 ms windows: two or three writes instead of seven.
    assert!((2..=3).contains(&frames.len()), "{} frames: {frames:?}", frames.len());
    assert!(frames.iter().all(|f| f.ends_with("\n\n")), "frames hold whole events");
}

#[tokio::test]
async fn usage_and_payloads_are_logged_for_json_responses_without_secrets() {
    let mock = MockUpstream::llm("log").await;
    let gw = gateway_for(&mock).await;
    gw.put_route(deepseek_route("logged-route", "/logged", json!({"logging": {"summaries": true, "payloads": true}})))
        .await;
    let response = chat(&gw, "/logged", r#"{"messages":[{"role":"user","content":"What is Fibonacci?"}]}"#).await;
    assert_eq!(response.status(), StatusCode::OK);
    let line = logs::access_line("logged-route").await;
    for field in [
        "prompt_tokens=10",
        "completion_tokens=48",
        "total_tokens=58",
        "cached_tokens=4",
        "reasoning_tokens=7",
        "What is Fibonacci?",
        "The Fibonacci sequence is",
    ] {
        assert!(line.contains(field), "{field} missing in {line}");
    }
    assert!(!logs::all().contains("sk-deepseek-secret"), "a provider key reached the log");
}

#[tokio::test]
async fn bad_requests_are_rejected_in_the_openai_error_shape() {
    let mock = MockUpstream::llm("bad").await;
    let gw = gateway_for(&mock).await;
    gw.put_route(deepseek_route("bad", "/bad", json!({"max_req_body_size": 64}))).await;
    for (body, status) in
        [("", StatusCode::BAD_REQUEST), ("{not json", StatusCode::BAD_REQUEST), ("[1,2]", StatusCode::BAD_REQUEST)]
    {
        let response = chat(&gw, "/bad", body).await;
        assert_eq!(response.status(), status, "{body:?}");
        error_of(response).await;
    }
    let large = format!(r#"{{"messages":[{{"role":"user","content":"{}"}}]}}"#, "x".repeat(100));
    let response = chat(&gw, "/bad", &large).await;
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    error_of(response).await;
    assert_eq!(mock.hits(), 0);
}

#[tokio::test]
async fn upstream_errors_are_relayed_and_transport_failures_mapped() {
    let mock = MockUpstream::llm("errors").await;
    let gw = gateway_for(&mock).await;
    gw.put_route(deepseek_route("e", "/e", json!({"timeout": 300}))).await;
    let response =
        gw.http.post(gw.url("/e")).header("x-mock-status", "429").body(r#"{"messages":[]}"#).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(response.headers()["x-ratelimit-remaining-requests"], "99");
    assert!(response.text().await.unwrap().contains("mock errors says 429"));

    let response =
        gw.http.post(gw.url("/e")).header("x-mock-delay-ms", "1000").body(r#"{"messages":[]}"#).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(error_of(response).await["error"]["code"], "upstream_timeout");

    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    gw.put_route(json!({"id": "dead", "paths": ["/dead"], "plugins": {"ai-proxy": {"provider": "openai-compatible",
        "auth": {"header": {"Authorization": "Bearer k"}}, "override": {"endpoint": format!("http://{dead}/v1/chat/completions")}}}}))
    .await;
    let response = chat(&gw, "/dead", r#"{"messages":[]}"#).await;
    assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
    assert_eq!(error_of(response).await["error"]["code"], "upstream_connect_failed");
}

/// Reads a streamed body to its end; the frames, and whether it ended cleanly.
async fn read_stream(response: reqwest::Response) -> (String, bool) {
    let mut text = String::new();
    let mut body = response.bytes_stream();
    while let Some(frame) = body.next().await {
        match frame {
            Ok(frame) => text.push_str(&String::from_utf8_lossy(&frame)),
            Err(_) => return (text, false),
        }
    }
    (text, true)
}

#[tokio::test]
async fn a_broken_or_stalled_or_oversized_stream_ends_with_an_error_event_never_done() {
    let mock = MockUpstream::llm("cut").await;
    let gw = gateway_for(&mock).await;
    gw.put_route(deepseek_route("cut", "/cut", json!({"timeout": 400}))).await;
    let stream = r#"{"stream":true,"messages":[]}"#;

    let response = gw.http.post(gw.url("/cut")).header("x-mock-break-after", "3").body(stream).send().await.unwrap();
    let (text, _) = read_stream(response).await;
    assert!(text.contains("event: error"), "{text}");
    assert!(!text.contains("[DONE]"));

    let response = gw.http.post(gw.url("/cut")).header("x-mock-gap-ms", "1000").body(stream).send().await.unwrap();
    let (text, _) = read_stream(response).await;
    assert!(text.contains("event: error") && text.contains("stopped sending"), "{text}");
    assert!(!text.contains("[DONE]"));
    // The limit is on each gap, not on the whole: seven events 150 ms apart outlast it.
    let response = gw.http.post(gw.url("/cut")).header("x-mock-gap-ms", "150").body(stream).send().await.unwrap();
    let (text, complete) = read_stream(response).await;
    assert!(complete && text.contains("[DONE]") && !text.contains("event: error"), "{text}");

    gw.put_route(deepseek_route("small", "/small", json!({"max_response_bytes": 300}))).await;
    let (text, _) = read_stream(gw.http.post(gw.url("/small")).body(stream).send().await.unwrap()).await;
    assert!(text.contains("maximum response size") && !text.contains("[DONE]"), "{text}");

    gw.put_route(deepseek_route("short", "/short", json!({"max_stream_duration_ms": 150}))).await;
    let response = gw.http.post(gw.url("/short")).header("x-mock-gap-ms", "100").body(stream).send().await.unwrap();
    let (text, _) = read_stream(response).await;
    assert!(text.contains("maximum stream duration") && !text.contains("[DONE]"), "{text}");
}

#[tokio::test]
async fn a_buffered_answer_over_max_response_bytes_is_a_502_saying_it_is_too_large() {
    let mock = MockUpstream::llm("small").await;
    let gw = gateway_for(&mock).await;
    gw.put_route(deepseek_route("small-json", "/small-json", json!({"max_response_bytes": 300}))).await;
    // The fixture (454 bytes, with Content-Length), then a chunked answer of 5000 bytes.
    for big in [None, Some("5000")] {
        let mut request = gw.http.post(gw.url("/small-json")).body(r#"{"messages":[]}"#);
        if let Some(size) = big {
            request = request.header("x-mock-big-bytes", size);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
        let error = error_of(response).await;
        assert_eq!(error["error"]["code"], "response_too_large");
        let message = error["error"]["message"].as_str().unwrap();
        assert!(message.contains("too large: over 300 bytes"), "{message}");
    }
}

#[tokio::test]
async fn usage_is_logged_for_a_big_unbuffered_answer() {
    let mock = MockUpstream::llm("bigjson").await;
    let gw = gateway_for(&mock).await;
    let mut route = deepseek_route("big-unbuffered", "/big-unbuffered", json!({"logging": {"summaries": true}}));
    route["plugins"]["proxy-buffering"] = json!({"disable_proxy_buffering": true});
    gw.put_route(route).await;
    let size = 4 << 20;
    let response = gw
        .http
        .post(gw.url("/big-unbuffered"))
        .header("x-mock-big-bytes", size.to_string())
        .body(r#"{"messages":[]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.bytes().await.unwrap().len(), size);
    let line = logs::access_line("big-unbuffered").await;
    for field in crate::harness::mock::BIG_USAGE.iter().chain(&["model=deepseek-chat", "status=200"]) {
        assert!(line.contains(field), "{field} missing in {line}");
    }
}

#[tokio::test]
async fn an_event_that_never_ends_is_cut_at_the_maximum_event_size() {
    let mock = MockUpstream::llm("endless").await;
    let gw = gateway_for(&mock).await;
    gw.put_route(deepseek_route("endless", "/endless", json!({}))).await;
    // 17 MiB of JSON sent as an event stream: one event whose blank line never comes.
    let response = gw
        .http
        .post(gw.url("/endless"))
        .header("x-mock-big-bytes", (17 << 20).to_string())
        .header("x-mock-content-type", "text/event-stream")
        .body(r#"{"stream":true,"messages":[]}"#)
        .send()
        .await
        .unwrap();
    let (text, _) = read_stream(response).await;
    assert!(text.starts_with("event: error") && text.contains("maximum event size"), "{text}");
}

#[tokio::test]
async fn a_client_that_disconnects_cancels_the_upstream_stream() {
    let mock = MockUpstream::llm("gone").await;
    let gw = gateway_for(&mock).await;
    gw.put_route(deepseek_route("gone", "/gone", json!({}))).await;
    let response = gw
        .http
        .post(gw.url("/gone"))
        .header("x-mock-gap-ms", "150")
        .body(r#"{"stream":true,"messages":[]}"#)
        .send()
        .await
        .unwrap();
    let mut body = response.bytes_stream();
    body.next().await.unwrap().unwrap();
    drop(body);
    for _ in 0..100 {
        if mock.cancelled() == 1 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the upstream stream was not cancelled");
}

#[tokio::test]
async fn invalid_ai_proxy_configs_are_refused_naming_the_field() {
    let gw = TestGateway::start().await;
    let cases = [
        (json!({"provider": "deepseek"}), "plugins.ai-proxy.auth"),
        (json!({"provider": "bedrock", "auth": {}}), "plugins.ai-proxy.auth.aws"),
        (json!({"provider": "vertex-ai", "auth": {}}), "plugins.ai-proxy.provider_conf"),
        (json!({"provider": "nope", "auth": {}}), "plugins.ai-proxy.provider"),
        (json!({"provider": "openai-compatible", "auth": {}}), "plugins.ai-proxy.override.endpoint"),
        (json!({"provider": "openai", "auth": {}, "timeout": "fast"}), "plugins.ai-proxy.timeout"),
        (json!({"provider": "openai", "auth": {"headers": {}}}), "plugins.ai-proxy.auth.headers"),
        (json!({"provider": "openai", "auth": {}, "colour": 1}), "plugins.ai-proxy.colour"),
        (
            json!({"provider": "openai", "auth": {}, "override": {"request_body": {"soap": {}}}}),
            "plugins.ai-proxy.override.request_body.soap",
        ),
    ];
    for (plugin, expected) in cases {
        let route = json!({"id": "x", "paths": ["/x"], "plugins": {"ai-proxy": plugin}});
        let (status, reply) = gw.admin(Method::PUT, "/apisix/admin/routes", Some(route)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{plugin}");
        let message = reply["error_msg"].as_str().unwrap();
        assert!(message.contains(expected), "{message:?} should mention {expected:?}");
    }
}

#[tokio::test]
async fn provider_keys_in_routes_are_masked_in_admin_responses_and_survive_a_round_trip() {
    let mock = MockUpstream::llm("masked").await;
    let gw = gateway_for(&mock).await;
    let created = gw.put_route(deepseek_route("masked", "/masked", json!({}))).await;
    assert!(!created.to_string().contains("sk-deepseek-secret"), "{created}");
    assert_eq!(created["value"]["plugins"]["ai-proxy"]["auth"]["header"]["Authorization"], "***");
    let (_, listed) = gw.admin(Method::GET, "/apisix/admin/routes", None).await;
    assert!(!listed.to_string().contains("sk-deepseek-secret"));

    // GET → edit → PUT with the masked value keeps the real key; so does a PATCH.
    let (_, fetched) = gw.admin(Method::GET, "/apisix/admin/routes/masked", None).await;
    let mut edited = fetched["value"].clone();
    edited["desc"] = json!("edited");
    let (status, _) = gw.admin(Method::PUT, "/apisix/admin/routes/masked", Some(edited)).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = gw.admin(Method::PATCH, "/apisix/admin/routes/masked", Some(json!({"name": "n"}))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(chat(&gw, "/masked", r#"{"messages":[]}"#).await.status(), StatusCode::OK);
    assert_eq!(mock.last().headers["authorization"], "Bearer sk-deepseek-secret");

    let (status, reply) = gw
        .admin(
            Method::PUT,
            "/apisix/admin/routes",
            Some(deepseek_route("fresh", "/fresh", json!({"auth": {"header": {"Authorization": "***"}}}))),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(reply["error_msg"].as_str().unwrap().contains("plugins.ai-proxy.auth.header.Authorization"), "{reply}");
}

#[tokio::test]
async fn a_client_gone_before_the_response_head_is_logged_as_499() {
    let mock = MockUpstream::llm("slowhead").await;
    let gw = gateway_for(&mock).await;
    gw.put_route(deepseek_route("slowhead", "/slowhead", json!({}))).await;
    let impatient = reqwest::Client::builder().no_proxy().timeout(Duration::from_millis(200)).build().unwrap();
    let sent =
        impatient.post(gw.url("/slowhead")).header("x-mock-delay-ms", "1500").body(r#"{"messages":[]}"#).send().await;
    assert!(sent.is_err());
    let line = logs::access_line("slowhead").await;
    assert!(line.contains("status=499") && line.contains("aborted=true"), "{line}");
}

#[tokio::test]
async fn https_providers_are_verified_unless_ssl_verify_is_off() {
    let mock = MockUpstream::llm_tls("tls").await;
    let gw = gateway_for(&mock).await;
    let endpoint = format!("{}/v1/chat/completions", mock.base_url());
    let route = |id: &str, verify: bool| {
        json!({"id": id, "paths": [format!("/{id}")], "plugins": {"ai-proxy": {"provider": "openai-compatible",
            "auth": {"header": {"Authorization": "Bearer k"}}, "ssl_verify": verify, "override": {"endpoint": endpoint}}}})
    };
    gw.put_route(route("verified", true)).await;
    gw.put_route(route("unverified", false)).await;
    let refused = chat(&gw, "/verified", r#"{"messages":[]}"#).await;
    assert_eq!(refused.status(), StatusCode::BAD_GATEWAY, "a self-signed certificate is not trusted");
    error_of(refused).await;
    assert_eq!(mock.hits(), 0);
    let response = chat(&gw, "/unverified", r#"{"messages":[]}"#).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(mock.last().headers["authorization"], "Bearer k");
    // The TLS connection is kept and reused (the session tickets a TLS 1.3 server sends after
    // the handshake are no reason to drop it).
    for _ in 0..4 {
        let response = chat(&gw, "/unverified", r#"{"messages":[]}"#).await;
        assert_eq!(response.status(), StatusCode::OK);
        response.bytes().await.unwrap();
    }
    assert_eq!(mock.connections(), 1);
}
