//! Client protocols on `ai-proxy` and `ai-proxy-multi` routes: detection, native calls,
//! conversions both ways (whole and streamed), errors in the client's shape, credentials, usage
//! in the log, `override.request_body` by protocol, and fallback across providers.

use futures_util::StreamExt;
use reqwest::StatusCode;
use serde_json::{json, Value};
use switchyard::config::ProviderConfig;

use crate::harness::{logs, MockUpstream, TestGateway};

/// A gateway whose built-in providers all point at `mock`, with the access log on.
pub async fn gateway_for(mock: &MockUpstream) -> TestGateway {
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

/// An `ai-proxy` route on `path` (a prefix: `/x/*`) to `provider`, with `extra` plugin fields.
pub fn route(id: &str, provider: &str, extra: Value) -> Value {
    let auth = if provider == "anthropic" {
        json!({"header": {"x-api-key": "sk-route-anthropic"}})
    } else {
        json!({"header": {"Authorization": "Bearer sk-route-secret"}})
    };
    let mut plugin = json!({"provider": provider, "auth": auth, "options": {"model": format!("{provider}-model")},
        "logging": {"summaries": true}});
    if let (Value::Object(plugin), Value::Object(extra)) = (&mut plugin, extra) {
        plugin.extend(extra);
    }
    json!({"id": id, "paths": [format!("/{id}/*")], "plugins": {"ai-proxy": plugin}})
}

async fn post(gw: &TestGateway, path: &str, body: Value) -> reqwest::Response {
    gw.http.post(gw.url(path)).body(body.to_string()).send().await.unwrap()
}

async fn json_of(response: reqwest::Response) -> Value {
    let text = response.text().await.unwrap();
    serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"))
}

/// The SSE events of a streamed answer as (name, data) pairs.
pub async fn events(response: reqwest::Response) -> Vec<(String, Value)> {
    let mut text = String::new();
    let mut body = response.bytes_stream();
    while let Some(frame) = body.next().await {
        text.push_str(&String::from_utf8_lossy(&frame.unwrap()));
    }
    let mut out = Vec::new();
    for event in text.split("\n\n").filter(|e| !e.trim().is_empty()) {
        let name = event.lines().find_map(|l| l.strip_prefix("event: ")).unwrap_or("").to_string();
        let data = event.lines().find_map(|l| l.strip_prefix("data: ")).unwrap_or("");
        out.push((name, serde_json::from_str(data).unwrap_or(Value::String(data.to_string()))));
    }
    out
}

fn sent(mock: &MockUpstream) -> Value {
    serde_json::from_slice(&mock.last().body).unwrap()
}

#[tokio::test]
async fn anthropic_messages_reach_a_chat_provider_converted_and_come_back_as_messages() {
    let mock = MockUpstream::llm("conv").await;
    let gw = gateway_for(&mock).await;
    gw.put_route(route("claude-via-deepseek", "deepseek", json!({}))).await;
    let response = gw
        .http
        .post(gw.url("/claude-via-deepseek/v1/messages"))
        .header("x-api-key", "caller-key")
        .header("anthropic-version", "2023-06-01")
        .header("anthropic-beta", "tools-2024")
        .header("x-trace", "t-1")
        .body(
            json!({"model": "claude-x", "max_tokens": 64, "system": [{"type": "text", "text": "Be brief.",
            "cache_control": {"type": "ephemeral"}}], "stop_sequences": ["END"],
            "messages": [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}]})
            .to_string(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let message = json_of(response).await;
    assert_eq!(message["type"], "message");
    assert_eq!(message["role"], "assistant");
    assert_eq!(message["model"], "deepseek-model");
    assert_eq!(message["stop_reason"], "end_turn");
    assert!(message["content"][0]["text"].as_str().unwrap().starts_with("The Fibonacci sequence"));
    assert_eq!(
        message["usage"],
        json!({"input_tokens": 6, "output_tokens": 48, "cache_read_input_tokens": 4, "cache_creation_input_tokens": 0})
    );

    let seen = mock.last();
    assert_eq!(seen.path, "/chat/completions");
    assert_eq!(seen.headers["authorization"], "Bearer sk-route-secret");
    assert_eq!(seen.headers["x-trace"], "t-1");
    for header in ["x-api-key", "anthropic-version", "anthropic-beta"] {
        assert!(!seen.headers.contains_key(header), "{header} reached a converted call");
    }
    assert_eq!(
        sent(&mock),
        json!({"model": "deepseek-model", "messages": [{"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hi"}], "max_tokens": 64, "stop": ["END"]})
    );
    let line = logs::access_line("claude-via-deepseek").await;
    for field in ["prompt_tokens=10", "completion_tokens=48", "cached_tokens=4", "reasoning_tokens=7"] {
        assert!(line.contains(field), "{field} missing in {line}");
    }
}

#[tokio::test]
async fn a_converted_messages_stream_is_the_full_anthropic_event_sequence() {
    let mock = MockUpstream::llm("conv-stream").await;
    let gw = gateway_for(&mock).await;
    gw.put_route(route("claude-stream", "openai-compatible", json!({"override": {"endpoint": mock.base_url()}}))).await;
    let body = json!({"model": "m", "max_tokens": 64, "stream": true, "messages": [{"role": "user", "content": "Hi"}]});
    let response = post(&gw, "/claude-stream/v1/messages", body).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
    let events = events(response).await;
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    for (name, data) in &events {
        assert_eq!(data["type"], name.as_str(), "each event's data names its type");
    }
    let text: String = events.iter().filter_map(|(_, d)| d["delta"]["text"].as_str()).collect();
    assert_eq!(text, "Hello, there!");
    assert_eq!(events[7].1["delta"]["stop_reason"], "end_turn");
    assert_eq!(events[7].1["usage"]["input_tokens"], 12);
    assert_eq!(events[7].1["usage"]["output_tokens"], 5);
    let upstream = sent(&mock);
    assert_eq!(mock.last().path, "/v1/chat/completions");
    assert_eq!(upstream["stream"], true);
    assert_eq!(upstream["stream_options"], json!({"include_usage": true}));
    let line = logs::access_line("claude-stream").await;
    assert!(line.contains("prompt_tokens=12") && line.contains("completion_tokens=5"), "{line}");
}

#[tokio::test]
async fn messages_to_anthropic_go_native_byte_for_byte_with_usage_logged() {
    let mock = MockUpstream::llm("native-claude").await;
    let gw = gateway_for(&mock).await;
    gw.put_route(route("native-claude", "anthropic", json!({"options": {}}))).await;
    let raw = "{ \"model\" : \"claude-sonnet-4\", \"max_tokens\": 50,\n \"messages\": [ {\"role\":\"user\",\"content\":\"Hi\"} ] }";
    let response = gw
        .http
        .post(gw.url("/native-claude/v1/messages"))
        .header("x-api-key", "caller-key")
        .header("anthropic-version", "2023-06-01")
        .body(raw)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let expected: Value = serde_json::from_str(include_str!("fixtures/messages.json")).unwrap();
    assert_eq!(json_of(response).await, expected, "the provider's answer, unchanged");
    let seen = mock.last();
    assert_eq!(seen.path, "/v1/messages");
    assert_eq!(seen.body, raw.as_bytes(), "the client's bytes");
    assert_eq!(seen.headers["x-api-key"], "sk-route-anthropic", "the route's key, never the caller's");
    assert_eq!(seen.headers["anthropic-version"], "2023-06-01");
    let line = logs::access_line("native-claude").await;
    for field in
        ["prompt_tokens=32", "completion_tokens=6", "total_tokens=38", "cached_tokens=8", "cache_creation_tokens=3"]
    {
        assert!(line.contains(field), "{field} missing in {line}");
    }

    let stream = json!({"model": "claude-sonnet-4", "max_tokens": 50, "stream": true, "messages": []});
    let response = post(&gw, "/native-claude/v1/messages", stream).await;
    let names: Vec<String> = events(response).await.into_iter().map(|(n, _)| n).collect();
    assert_eq!(names.first().map(String::as_str), Some("message_start"));
    assert_eq!(names.last().map(String::as_str), Some("message_stop"));
    assert!(names.contains(&"ping".to_string()), "native streams pass untouched");
}

#[tokio::test]
async fn responses_go_native_to_openai_and_converted_to_chat_providers() {
    let mock = MockUpstream::llm("responses").await;
    let gw = gateway_for(&mock).await;
    gw.put_route(route("resp-gpt", "openai", json!({"override": {"llm_options": {"max_tokens": 77}}}))).await;
    gw.put_route(route("resp-ds", "deepseek", json!({}))).await;

    let response = post(&gw, "/resp-gpt/v1/responses", json!({"model": "x", "input": "Hi", "stream": false})).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(json_of(response).await["output"][0]["content"][0]["text"], "Hello from Responses.");
    assert_eq!(mock.last().path, "/v1/responses");
    assert_eq!(sent(&mock), json!({"model": "openai-model", "input": "Hi", "stream": false, "max_output_tokens": 77}));
    let line = logs::access_line("resp-gpt").await;
    for field in ["prompt_tokens=14", "completion_tokens=9", "cached_tokens=6", "reasoning_tokens=3"] {
        assert!(line.contains(field), "{field} missing in {line}");
    }

    let body = json!({"model": "x", "instructions": "Be brief.", "max_output_tokens": 20,
        "input": [{"role": "user", "content": [{"type": "input_text", "text": "Hi"}]}]});
    let response = post(&gw, "/resp-ds/v1/responses", body).await;
    assert_eq!(response.status(), StatusCode::OK);
    let answer = json_of(response).await;
    assert_eq!(answer["object"], "response");
    assert_eq!(answer["status"], "completed");
    assert_eq!(answer["model"], "deepseek-model");
    assert!(answer["output"][0]["content"][0]["text"].as_str().unwrap().starts_with("The Fibonacci"));
    assert_eq!(answer["usage"]["input_tokens"], 10);
    assert_eq!(answer["usage"]["output_tokens_details"]["reasoning_tokens"], 7);
    assert_eq!(mock.last().path, "/chat/completions");
    assert_eq!(
        sent(&mock),
        json!({"model": "deepseek-model", "messages": [{"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hi"}], "max_tokens": 20})
    );

    let response = post(&gw, "/resp-ds/v1/responses", json!({"input": "Hi", "stream": true})).await;
    let events = events(response).await;
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names.first(), Some(&"response.created"));
    assert_eq!(names.last(), Some(&"response.completed"));
    assert_eq!(names.iter().filter(|n| **n == "response.output_text.delta").count(), 4);
    let completed = &events.last().unwrap().1["response"];
    assert_eq!(completed["output"][0]["content"][0]["text"], "Hello, there!");
    assert_eq!(completed["usage"]["total_tokens"], 17);
    let numbers: Vec<u64> = events.iter().map(|(_, d)| d["sequence_number"].as_u64().unwrap()).collect();
    assert_eq!(numbers, (0..events.len() as u64).collect::<Vec<_>>());
}

#[tokio::test]
async fn embeddings_and_passthrough_go_where_apisix_sends_them() {
    let mock = MockUpstream::llm("other").await;
    let gw = gateway_for(&mock).await;
    gw.put_route(route("emb", "openai", json!({"options": {"model": "text-embedding-3-small"}}))).await;
    gw.put_route(route("emb-claude", "anthropic", json!({}))).await;
    let response = post(&gw, "/emb/anything", json!({"input": ["hello"]})).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(json_of(response).await["data"][0]["embedding"], json!([0.25, -0.5]));
    assert_eq!(mock.last().path, "/v1/embeddings");
    assert_eq!(sent(&mock)["model"], "text-embedding-3-small");

    let response = post(&gw, "/emb-claude/x", json!({"input": "hello"})).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        json_of(response).await["error"]["message"],
        "provider anthropic does not support openai-embeddings protocol"
    );

    let response = gw
        .http
        .put(gw.url("/emb/v1/images/generations?size=small"))
        .body(json!({"model": "dall-e-3", "prompt": "A cute baby sea otter"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let echo = json_of(response).await;
    assert_eq!(echo["method"], "PUT");
    assert_eq!(echo["path"], "/emb/v1/images/generations?size=small");
    assert!(echo["body"].as_str().unwrap().contains("baby sea otter"));
    assert_eq!(echo["headers"]["authorization"], "Bearer sk-route-secret");

    let response = post(&gw, "/emb/x", json!({})).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(json_of(response).await["error"]["message"], "no matching AI protocol for the request");
    let converse = post(&gw, "/emb/model/m/converse", json!({"messages": []})).await;
    assert_eq!(
        json_of(converse).await["error"]["message"],
        "provider openai does not support bedrock-converse protocol"
    );
}

#[tokio::test]
async fn anthropic_clients_get_errors_in_the_anthropic_shape() {
    let mock = MockUpstream::llm("errs").await;
    let gw = gateway_for(&mock).await;
    gw.put_route(route("errs", "deepseek", json!({"timeout": 400}))).await;
    let anthropic_error = |body: &Value, kind: &str| {
        assert_eq!(body["type"], "error", "{body}");
        assert_eq!(body["error"]["type"], kind, "{body}");
        assert!(body["error"]["message"].is_string(), "{body}");
    };
    let response = gw.http.post(gw.url("/errs/v1/messages")).body("{not json").send().await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    anthropic_error(&json_of(response).await, "invalid_request_error");

    let response = post(&gw, "/errs/v1/messages", json!({"max_tokens": 5})).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    anthropic_error(&json_of(response).await, "invalid_request_error");

    let body = json!({"max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}).to_string();
    let response = gw
        .http
        .post(gw.url("/errs/v1/messages"))
        .header("x-mock-status", "429")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    let error = json_of(response).await;
    anthropic_error(&error, "rate_limit_error");
    assert_eq!(error["error"]["message"], "mock errs says 429");

    let response =
        gw.http.post(gw.url("/errs/v1/messages")).header("x-mock-delay-ms", "1000").body(body).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::GATEWAY_TIMEOUT);
    anthropic_error(&json_of(response).await, "api_error");

    let stream = json!({"max_tokens": 5, "stream": true, "messages": [{"role": "user", "content": "hi"}]}).to_string();
    let response =
        gw.http.post(gw.url("/errs/v1/messages")).header("x-mock-break-after", "3").body(stream).send().await.unwrap();
    let events = events(response).await;
    let (name, data) = events.last().unwrap();
    assert_eq!(name, "error");
    anthropic_error(data, "api_error");
    assert!(!events.iter().any(|(n, _)| n == "message_stop"), "a cut stream never looks complete");
}

#[tokio::test]
async fn request_body_overrides_apply_to_the_protocol_the_provider_is_sent() {
    let mock = MockUpstream::llm("patch").await;
    let gw = gateway_for(&mock).await;
    let overrides = json!({"override": {"request_body": {"openai-chat": {"max_tokens": 77}, "anthropic-messages": {"max_tokens": 999},
        "openai-responses": {"metadata": {"via": "responses"}}}, "request_body_force_override": true}});
    gw.put_route(route("patch-openai", "openai", overrides.clone())).await;
    gw.put_route(route("patch-deepseek", "deepseek", overrides)).await;
    post(&gw, "/patch-deepseek/v1/messages", json!({"max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}))
        .await;
    assert_eq!(sent(&mock)["max_tokens"], 77, "a Messages client sent as chat takes the openai-chat patch");
    post(&gw, "/patch-openai/v1/responses", json!({"input": "hi"})).await;
    assert_eq!(sent(&mock)["metadata"], json!({"via": "responses"}));
    assert!(sent(&mock).get("max_tokens").is_none());
}

#[tokio::test]
async fn multi_falls_back_across_providers_converting_for_each_attempt() {
    let (claude, deepseek) = (MockUpstream::llm("claude").await, MockUpstream::llm("deepseek").await);
    claude.fail_with(429);
    let gw = gateway_for(&claude).await;
    gw.put_route(json!({"id": "proto-multi", "paths": ["/proto-multi/*"], "plugins": {"ai-proxy-multi": {
        "fallback_strategy": ["http_429"], "logging": {"summaries": true},
        "instances": [
            {"name": "claude-native", "provider": "anthropic", "weight": 1, "priority": 2,
             "auth": {"header": {"x-api-key": "sk-a"}}, "options": {"model": "claude-sonnet-4"},
             "override": {"endpoint": claude.base_url()}},
            {"name": "deepseek-converted", "provider": "deepseek", "weight": 1, "priority": 1,
             "auth": {"header": {"Authorization": "Bearer sk-d"}}, "options": {"model": "deepseek-chat"},
             "override": {"endpoint": deepseek.base_url()}}]}}}))
        .await;
    let raw = r#"{"model":"any","max_tokens":30,"messages":[{"role":"user","content":"Hi"}]}"#;
    let response = gw.http.post(gw.url("/proto-multi/v1/messages")).body(raw).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["x-switchyard-instance"], "deepseek-converted");
    assert_eq!(response.headers()["x-switchyard-attempts"], "2");
    let message = json_of(response).await;
    assert_eq!(message["type"], "message");
    assert_eq!(message["model"], "deepseek-chat");

    assert_eq!(claude.last().path, "/v1/messages");
    let first: Value = serde_json::from_slice(&claude.last().body).unwrap();
    assert_eq!(
        first,
        json!({"model": "claude-sonnet-4", "max_tokens": 30, "messages": [{"role": "user", "content": "Hi"}]})
    );
    assert_eq!(deepseek.last().path, "/chat/completions");
    assert_eq!(
        sent(&deepseek),
        json!({"model": "deepseek-chat", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 30})
    );
    let line = logs::access_line("proto-multi").await;
    assert!(line.contains("prompt_tokens=10") && line.contains("upstream=deepseek-converted"), "{line}");

    // Every instance failing: the last one's error, in the client's shape.
    deepseek.fail_with(429);
    let response = gw.http.post(gw.url("/proto-multi/v1/messages")).body(raw).send().await.unwrap();
    let error = json_of(response).await;
    assert_eq!(error["type"], "error", "{error}");
    assert_eq!(error["error"]["message"], "mock deepseek says 429");
}
