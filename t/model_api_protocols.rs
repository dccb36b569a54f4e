//! The model API in every protocol: `/v1/messages` (and `count_tokens`), `/v1/responses` and
//! `/v1/embeddings` beside `/v1/chat/completions`, with the same caller keys, aliases,
//! `allowed_models` and `strip_headers`; each adapter reached natively or converted, the alias
//! reported as `model` everywhere; and the official SDKs against it.

use reqwest::StatusCode;
use serde_json::{json, Value};
use switchyard::resource::api_key::sha256_hex;

use crate::harness::python::run_sdk;
use crate::harness::{MockUpstream, TestGateway};
use crate::protocols::events as sse_events;

/// Aliases `chat-ds` (openai adapter, provider deepseek), `gpt` (openai adapter, provider
/// openai), `claude` (anthropic adapter) and `azure` (azure-openai adapter), all on `mock`;
/// caller key `sk-all` may use them all, `sk-chat-only` only `chat-ds`.
async fn setup(gw: &TestGateway, mock: &MockUpstream) {
    let base = mock.base_url();
    let keys = [
        ("ds-key", "deepseek", "openai", base.clone(), json!(["authorization", "x-api-key", "x-internal"])),
        ("oa-key", "openai", "openai", format!("{base}/v1"), json!(["authorization", "x-api-key"])),
        ("cl-key", "anthropic", "anthropic", base.clone(), json!(["authorization", "x-api-key", "x-internal"])),
        ("az-key", "azure", "azure-openai", base.clone(), json!(["authorization", "x-api-key"])),
    ];
    let mut ids = Vec::new();
    for (name, provider, adapter, api_base, strip) in keys {
        let key = gw
            .create_v1(
                "/admin/v1/provider_keys",
                json!({"display_name": name, "provider": provider,
            "adapter": adapter, "secret": format!("secret-{name}"), "api_base": api_base, "strip_headers": strip}),
            )
            .await;
        ids.push(key["id"].clone());
    }
    let models = [
        ("chat-ds", "deepseek", "deepseek-chat"),
        ("gpt", "openai", "gpt-4o"),
        ("claude", "anthropic", "claude-sonnet-4"),
        ("azure", "azure", "gpt4o-deploy"),
    ];
    for ((alias, provider, upstream), key) in models.into_iter().zip(&ids) {
        gw.create_v1(
            "/admin/v1/models",
            json!({"display_name": alias, "provider": provider,
            "model_name": upstream, "provider_key_id": key}),
        )
        .await;
    }
    gw.create_v1("/admin/v1/apikeys", json!({"key_hash": sha256_hex("sk-all"), "allowed_models": ["*"]})).await;
    gw.create_v1("/admin/v1/apikeys", json!({"key_hash": sha256_hex("sk-chat-only"), "allowed_models": ["chat-ds"]}))
        .await;
}

async fn call(gw: &TestGateway, path: &str, key: &str, body: Value) -> reqwest::Response {
    gw.http
        .post(gw.url(path))
        .header("x-api-key", key)
        .header("x-internal", "private")
        .body(body.to_string())
        .send()
        .await
        .unwrap()
}

async fn json_of(response: reqwest::Response) -> Value {
    serde_json::from_str(&response.text().await.unwrap()).unwrap()
}

fn sent(mock: &MockUpstream) -> Value {
    serde_json::from_slice(&mock.last().body).unwrap()
}

#[tokio::test]
async fn messages_reach_every_adapter_and_report_the_alias() {
    let mock = MockUpstream::llm("model-messages").await;
    let gw = TestGateway::start().await;
    setup(&gw, &mock).await;
    let hello = json!({"max_tokens": 40, "messages": [{"role": "user", "content": "Hi"}]});
    let with_model = |alias: &str| {
        let mut body = hello.clone();
        body["model"] = json!(alias);
        body
    };

    // Natively to the anthropic adapter: its key, never the caller's; strip_headers applied.
    let response = call(&gw, "/v1/messages", "sk-all", with_model("claude")).await;
    assert_eq!(response.status(), StatusCode::OK);
    let message = json_of(response).await;
    assert_eq!(message["model"], "claude");
    assert_eq!(message["content"][0]["text"], "Hello from Claude.");
    let seen = mock.last();
    assert_eq!(seen.path, "/v1/messages");
    assert_eq!(seen.headers["x-api-key"], "secret-cl-key");
    assert!(!seen.headers.contains_key("x-internal"));
    assert_eq!(sent(&mock)["model"], "claude-sonnet-4");

    let mut stream = with_model("claude");
    stream["stream"] = json!(true);
    let events = sse_events(call(&gw, "/v1/messages", "sk-all", stream.clone()).await).await;
    assert_eq!(events[0].1["message"]["model"], "claude");
    assert_eq!(events.last().unwrap().0, "message_stop");

    // Converted for the openai adapter.
    let response = call(&gw, "/v1/messages", "sk-all", with_model("chat-ds")).await;
    assert_eq!(response.status(), StatusCode::OK);
    let message = json_of(response).await;
    assert_eq!((message["type"].as_str(), message["model"].as_str()), (Some("message"), Some("chat-ds")));
    assert_eq!(mock.last().path, "/chat/completions");
    assert_eq!(mock.last().headers["authorization"], "Bearer secret-ds-key");
    assert_eq!(
        sent(&mock),
        json!({"model": "deepseek-chat", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 40})
    );
    stream["model"] = json!("chat-ds");
    let events = sse_events(call(&gw, "/v1/messages", "sk-all", stream).await).await;
    assert_eq!(events[0].1["message"]["model"], "chat-ds");
    assert_eq!(events.last().unwrap().0, "message_stop");

    // count_tokens: the anthropic adapter only.
    let response = call(&gw, "/v1/messages/count_tokens", "sk-all", json!({"model": "claude", "messages": []})).await;
    assert_eq!(json_of(response).await, json!({"input_tokens": 42}));
    assert_eq!(mock.last().path, "/v1/messages/count_tokens");
    assert_eq!(sent(&mock)["model"], "claude-sonnet-4");
    let response = call(&gw, "/v1/messages/count_tokens", "sk-all", json!({"model": "chat-ds", "messages": []})).await;
    assert_eq!(response.status(), StatusCode::NOT_IMPLEMENTED);
    assert_eq!(json_of(response).await["type"], "error");
}

#[tokio::test]
async fn messages_callers_get_anthropic_errors_for_keys_aliases_and_permissions() {
    let mock = MockUpstream::llm("model-errors").await;
    let gw = TestGateway::start().await;
    setup(&gw, &mock).await;
    let body = json!({"model": "claude", "max_tokens": 5, "messages": []});
    let cases = [
        ("sk-nobody", body.clone(), StatusCode::UNAUTHORIZED, "authentication_error"),
        ("sk-all", json!({"model": "nope", "max_tokens": 5, "messages": []}), StatusCode::NOT_FOUND, "not_found_error"),
        ("sk-chat-only", body.clone(), StatusCode::FORBIDDEN, "permission_error"),
        ("sk-all", json!({"max_tokens": 5}), StatusCode::BAD_REQUEST, "invalid_request_error"),
    ];
    for (key, body, status, kind) in cases {
        let response = call(&gw, "/v1/messages", key, body).await;
        assert_eq!(response.status(), status, "{key}");
        let error = json_of(response).await;
        assert_eq!(error["type"], "error", "{error}");
        assert_eq!(error["error"]["type"], kind, "{error}");
    }
    // Bearer works as well as x-api-key.
    let response =
        gw.http.post(gw.url("/v1/messages")).bearer_auth("sk-all").body(body.to_string()).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(mock.hits(), 1);
}

#[tokio::test]
async fn responses_reach_every_adapter_and_embeddings_every_adapter_that_has_them() {
    let mock = MockUpstream::llm("model-responses").await;
    let gw = TestGateway::start().await;
    setup(&gw, &mock).await;
    let ask = |alias: &str, stream: bool| json!({"model": alias, "input": "Hi", "stream": stream});

    let response = json_of(call(&gw, "/v1/responses", "sk-all", ask("gpt", false)).await).await;
    assert_eq!((response["model"].as_str(), response["object"].as_str()), (Some("gpt"), Some("response")));
    assert_eq!(mock.last().path, "/v1/responses", "OpenAI itself speaks Responses");
    assert_eq!(sent(&mock), json!({"model": "gpt-4o", "input": "Hi", "stream": false}));
    let events = sse_events(call(&gw, "/v1/responses", "sk-all", ask("gpt", true)).await).await;
    assert!(events.iter().filter(|(_, d)| d.get("response").is_some()).all(|(_, d)| d["response"]["model"] == "gpt"));

    let response = json_of(call(&gw, "/v1/responses", "sk-all", ask("chat-ds", false)).await).await;
    assert_eq!(response["model"], "chat-ds");
    assert!(response["output"][0]["content"][0]["text"].as_str().unwrap().starts_with("The Fibonacci"));
    assert_eq!(mock.last().path, "/chat/completions");

    let response = json_of(call(&gw, "/v1/responses", "sk-all", ask("claude", false)).await).await;
    assert_eq!(response["model"], "claude");
    assert_eq!(response["output"][0]["content"][0]["text"], "Hello from Claude.");
    assert_eq!(response["usage"]["input_tokens"], 32);
    assert_eq!(mock.last().path, "/v1/messages");
    assert_eq!(sent(&mock)["messages"], json!([{"role": "user", "content": [{"type": "text", "text": "Hi"}]}]));
    let events = sse_events(call(&gw, "/v1/responses", "sk-all", ask("claude", true)).await).await;
    let completed = &events.last().unwrap().1;
    assert_eq!(completed["type"], "response.completed");
    assert_eq!(completed["response"]["model"], "claude");
    assert_eq!(completed["response"]["output"][0]["content"][0]["text"], "Hello there");

    let embed = |alias: &str| json!({"model": alias, "input": "hello"});
    let response = json_of(call(&gw, "/v1/embeddings", "sk-all", embed("azure")).await).await;
    assert_eq!(response["model"], "azure");
    assert_eq!(mock.last().path, "/openai/deployments/gpt4o-deploy/embeddings?api-version=2024-10-21");
    assert_eq!(mock.last().headers["api-key"], "secret-az-key");
    let response = call(&gw, "/v1/embeddings", "sk-all", embed("claude")).await;
    assert_eq!(response.status(), StatusCode::NOT_IMPLEMENTED);
}

#[tokio::test]
async fn official_sdks_through_the_model_api() {
    let mock = MockUpstream::llm("model-sdks").await;
    let gw = TestGateway::start().await;
    setup(&gw, &mock).await;
    let anthropic = [("BASE_URL", gw.url("")), ("API_KEY", "sk-all".to_string()), ("MODEL", "chat-ds".to_string())];
    let out = run_sdk("anthropic_messages.py", &anthropic).await;
    assert_eq!(out["create"]["model"], "chat-ds");
    assert_eq!(out["stream"]["model"], "chat-ds");
    assert_eq!(out["stream"]["text"], "Hello, there!");
    assert_eq!(out["tools"]["tool_input"], json!({"city": "Paris"}));
    assert_eq!(out["tools"]["second_stop_reason"], "end_turn");
    let chat_calls = mock.seen();
    assert_eq!(chat_calls.len(), 4);
    assert!(chat_calls.iter().all(|s| s.path == "/chat/completions"));
    let round_trip: Value = serde_json::from_slice(&chat_calls[3].body).unwrap();
    assert_eq!(round_trip["model"], "deepseek-chat");
    assert_eq!(round_trip["messages"][2]["role"], "tool");

    let openai = [("BASE_URL", gw.url("/v1")), ("API_KEY", "sk-all".to_string()), ("MODEL", "claude".to_string())];
    let out = run_sdk("openai_responses.py", &openai).await;
    assert_eq!(out["create"]["model"], "claude");
    assert_eq!(out["create"]["text"], "Hello from Claude.");
    assert_eq!(out["create"]["input_tokens"], 32);
    assert_eq!(out["stream"]["text"], "Hello there");
    assert_eq!(out["stream"]["model"], "claude");
    assert_eq!(out["stream"]["total_tokens"], 27);
    let messages_calls = &mock.seen()[4..];
    assert!(messages_calls.iter().all(|s| s.path == "/v1/messages"));
    let first: Value = serde_json::from_slice(&messages_calls[0].body).unwrap();
    assert_eq!(first["system"], "Be brief.");
    assert_eq!(first["max_tokens"], 100);
    assert_eq!(first["model"], "claude-sonnet-4");
}

/// A routing alias serves the Messages and Responses endpoints too: a target that cannot be
/// reached is failed over to one that can, each attempt converting for its own target's
/// protocol, and every answer is named after the target that wrote it.
#[tokio::test]
async fn routing_aliases_fail_over_in_every_protocol() {
    let mock = MockUpstream::llm("model-routing").await;
    let gw = TestGateway::start().await;
    setup(&gw, &mock).await;
    let dead = gw
        .create_v1(
            "/admin/v1/provider_keys",
            json!({"display_name": "dead-key", "provider": "vllm", "adapter": "openai",
            "secret": "s", "api_base": "http://127.0.0.1:1/v1"}),
        )
        .await;
    gw.create_v1(
        "/admin/v1/models",
        json!({"display_name": "dead", "provider": "vllm", "model_name": "m", "provider_key_id": dead["id"]}),
    )
    .await;
    gw.create_v1(
        "/admin/v1/models",
        json!({"display_name": "any", "routing": {"targets": [{"model": "dead"}, {"model": "claude"}]}}),
    )
    .await;
    let hello = json!({"model": "any", "max_tokens": 40, "messages": [{"role": "user", "content": "Hi"}]});
    let response = call(&gw, "/v1/messages", "sk-all", hello.clone()).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["x-switchyard-instance"], "claude");
    assert_eq!(response.headers()["x-switchyard-attempts"], "2", "the dead target first, then claude");
    let message = json_of(response).await;
    assert_eq!((message["type"].as_str(), message["model"].as_str()), (Some("message"), Some("claude")));
    assert!(mock.last().path.ends_with("/v1/messages"));
    let chat = json_of(call(&gw, "/v1/chat/completions", "sk-all", hello).await).await;
    assert_eq!((chat["object"].as_str(), chat["model"].as_str()), (Some("chat.completion"), Some("claude")));
    assert_eq!(sent(&mock)["model"], "claude-sonnet-4", "chat converted to Messages for the target");
    let input = json!({"model": "any", "input": "Hi", "max_output_tokens": 40});
    let response = json_of(call(&gw, "/v1/responses", "sk-all", input).await).await;
    assert_eq!((response["object"].as_str(), response["model"].as_str()), (Some("response"), Some("claude")));
    let embeddings = call(&gw, "/v1/embeddings", "sk-all", json!({"model": "any", "input": "Hi"})).await;
    assert_eq!(embeddings.status(), StatusCode::NOT_FOUND, "routing aliases serve chat, Responses and Messages");
}
