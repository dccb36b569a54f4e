//! Vertex AI on the other surfaces: an `ai-proxy-multi` member that fails over, and the model
//! API's `vertex` adapter (chat streamed and not, embeddings, the masked secret).

use futures_util::StreamExt;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use switchyard::resource::api_key::sha256_hex;

use super::{chat_path, gateway, hello, json_of, last_bearer, predict_path};
use crate::harness::gcp_mock::{service_account_json, test_key, GcpMock, PROJECT, REGION};
use crate::harness::{logs, MockUpstream, TestGateway};

#[tokio::test]
async fn multi_falls_back_from_a_vertex_instance_whose_token_endpoint_is_down() {
    let (vertex, openai) = (GcpMock::start().await, MockUpstream::llm("vertex-fallback-openai").await);
    let gw = gateway().await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_uri = format!("http://{}/token", closed.local_addr().unwrap());
    drop(closed);
    let instances = json!([
        {"name": "vertex", "provider": "vertex-ai", "weight": 1, "priority": 1,
            "auth": {"gcp": {"service_account_json": service_account_json(test_key(), &dead_uri)}},
            "provider_conf": {"project_id": PROJECT, "region": REGION},
            "options": {"model": "google/gemini-2.0-flash"}, "override": {"endpoint": vertex.base_url()}},
        {"name": "openai", "provider": "openai", "weight": 1, "priority": 0,
            "auth": {"header": {"Authorization": "Bearer sk-openai"}}, "options": {"model": "gpt-4o"},
            "override": {"endpoint": openai.base_url()}}
    ]);
    let plugin = json!({"instances": instances, "fallback_strategy": ["http_5xx"], "logging": {"summaries": true}});
    gw.put_route(json!({"id": "vertex-multi", "paths": ["/vertex-multi"], "plugins": {"ai-proxy-multi": plugin}}))
        .await;
    let response = gw.http.post(gw.url("/vertex-multi")).body(hello().to_string()).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["x-switchyard-instance"], "openai");
    assert_eq!(response.headers()["x-switchyard-attempts"], "2");
    assert_eq!(json_of(response).await["model"], "gpt-4o");
    assert!(vertex.seen().is_empty());
    assert_eq!(openai.last().headers["authorization"], "Bearer sk-openai");
    let line = logs::access_line("vertex-multi").await;
    assert!(line.contains("attempts=2") && line.contains("upstream=openai"), "{line}");

    // With its token endpoint up, the Vertex instance (higher priority) answers.
    let healthy = json!({"instances": [
        {"name": "vertex", "provider": "vertex-ai", "weight": 1, "priority": 1,
            "auth": {"gcp": {"service_account_json": vertex.service_account()}},
            "provider_conf": {"project_id": PROJECT, "region": REGION},
            "options": {"model": "google/gemini-2.0-flash"}, "override": {"endpoint": vertex.base_url()}},
        instances[1].clone()
    ], "fallback_strategy": ["http_5xx"]});
    gw.put_route(
        json!({"id": "vertex-multi-up", "paths": ["/vertex-multi-up"], "plugins": {"ai-proxy-multi": healthy}}),
    )
    .await;
    let response = gw.http.post(gw.url("/vertex-multi-up")).body(hello().to_string()).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["x-switchyard-instance"], "vertex");
    assert_eq!(last_bearer(&vertex), "Bearer ya29.mock-1");
}

/// A `vertex` provider key at the mock (its secret as AISIX documents it), models for chat and
/// embeddings, and a caller key.
async fn model_api_setup(gw: &TestGateway, mock: &GcpMock, caller: &str) -> Value {
    let service_account: Value = serde_json::from_str(&mock.service_account()).unwrap();
    let secret = json!({"project": PROJECT, "region": REGION, "service_account_json": service_account});
    let key = gw
        .create_v1(
            "/admin/v1/provider_keys",
            json!({"display_name": "vertex-prod", "provider": "google-vertex", "adapter": "vertex",
                "secret": secret.to_string(), "api_base": mock.base_url()}),
        )
        .await;
    for (alias, model_name) in [("gemini-prod", "google/gemini-2.0-flash"), ("embed-prod", "text-embedding-005")] {
        gw.create_v1(
            "/admin/v1/models",
            json!({"display_name": alias, "provider": "google-vertex", "model_name": model_name,
                "provider_key_id": key["id"]}),
        )
        .await;
    }
    gw.create_v1("/admin/v1/apikeys", json!({"key_hash": sha256_hex(caller), "allowed_models": "*"})).await;
    key
}

async fn call(gw: &TestGateway, path: &str, caller: &str, body: Value) -> reqwest::Response {
    gw.http.post(gw.url(path)).bearer_auth(caller).body(body.to_string()).send().await.unwrap()
}

#[tokio::test]
async fn model_api_serves_a_vertex_provider_key_streamed_and_not() {
    let mock = GcpMock::start().await;
    let gw = TestGateway::start().await;
    let key = model_api_setup(&gw, &mock, "sk-vertex-caller").await;
    let ask = |stream: bool| {
        json!({"model": "gemini-prod", "stream": stream,
        "messages": [{"role": "user", "content": "Say hello from Vertex."}]})
    };

    let response = call(&gw, "/v1/chat/completions", "sk-vertex-caller", ask(false)).await;
    assert_eq!(response.status(), StatusCode::OK);
    let completion = json_of(response).await;
    assert_eq!(completion["model"], "gemini-prod", "the alias, not the Vertex model");
    assert!(completion["choices"][0]["message"]["content"].as_str().unwrap().starts_with("The Fibonacci"));
    assert_eq!(mock.last().path, chat_path());
    assert_eq!(last_bearer(&mock), "Bearer ya29.mock-1");
    let sent: Value = serde_json::from_slice(&mock.last().body).unwrap();
    assert_eq!(sent["model"], "google/gemini-2.0-flash");
    assert!(mock.last().headers.get("x-api-key").is_none());

    let response = call(&gw, "/v1/chat/completions", "sk-vertex-caller", ask(true)).await;
    assert_eq!(response.status(), StatusCode::OK);
    let mut text = String::new();
    let mut body = response.bytes_stream();
    while let Some(chunk) = body.next().await {
        text.push_str(std::str::from_utf8(&chunk.unwrap()).unwrap());
    }
    let chunks: Vec<Value> = text
        .split("\n\n")
        .filter_map(|e| e.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    assert_eq!(chunks.len(), 6, "{text}");
    assert_eq!(chunks[5]["usage"]["total_tokens"], 17);
    assert!(chunks.iter().all(|c| c["model"] == "gemini-prod"), "{text}");
    assert!(text.ends_with("data: [DONE]\n\n"));

    let response =
        call(&gw, "/v1/embeddings", "sk-vertex-caller", json!({"model": "embed-prod", "input": "a b"})).await;
    assert_eq!(response.status(), StatusCode::OK);
    let list = json_of(response).await;
    assert_eq!(list["model"], "embed-prod");
    assert_eq!(list["data"][0]["embedding"], json!([0.5, -0.25, 2.0]));
    assert_eq!(mock.last().path, predict_path("text-embedding-005"));
    assert_eq!(mock.token_requests(), 1, "the key's models share its token");

    // The secret is masked on every read, and a PUT of what was read keeps it.
    let id = key["id"].as_str().unwrap();
    let (status, read) = gw.admin_v1(Method::GET, &format!("/admin/v1/provider_keys/{id}"), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(read["value"]["secret"], "***");
    assert_eq!(key["value"]["secret"], "***");
    let (status, reply) =
        gw.admin_v1(Method::PUT, &format!("/admin/v1/provider_keys/{id}"), Some(read["value"].clone())).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    let response = call(&gw, "/v1/chat/completions", "sk-vertex-caller", ask(false)).await;
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn vertex_provider_keys_are_checked_naming_the_field() {
    let mock = GcpMock::start().await;
    let gw = TestGateway::start().await;
    let key = |secret: Value| {
        json!({"display_name": "v", "provider": "google-vertex", "adapter": "vertex",
        "secret": secret.to_string()})
    };
    let service_account: Value = serde_json::from_str(&mock.service_account()).unwrap();
    let cases = [
        (json!("not json"), "secret: must be JSON"),
        (json!({"project": PROJECT, "region": REGION}), "secret: must hold exactly one"),
        (json!({"project": PROJECT, "region": "Nowhere 1", "access_token": "t"}), "secret.region"),
        (
            json!({"project": PROJECT, "region": REGION, "service_account_json": {"client_email": "a@b"}}),
            "secret.service_account_json: has no private_key",
        ),
    ];
    for (secret, expected) in cases {
        let (status, reply) = gw.admin_v1(Method::POST, "/admin/v1/provider_keys", Some(key(secret))).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{expected}: {reply}");
        let message = reply["error_msg"].as_str().unwrap();
        assert!(message.contains(expected), "{message:?} should say {expected:?}");
    }
    let good = json!({"project": PROJECT, "region": REGION, "service_account_json": service_account});
    let (status, reply) = gw.admin_v1(Method::POST, "/admin/v1/provider_keys", Some(key(good))).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert!(!reply.to_string().contains("PRIVATE KEY"));
}
