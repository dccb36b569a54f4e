//! `ai-proxy-multi` across the two natively authenticated providers: a Bedrock instance (SigV4)
//! and a Vertex AI instance (service-account token) on one route, each falling back to the other.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::bedrock::bedrock_instance;
use crate::harness::bedrock_mock::{BedrockMock, CREDENTIALS};
use crate::harness::gcp_mock::{service_account_json, test_key, GcpMock, PROJECT, REGION};
use crate::harness::logs;
use crate::vertex::{gateway, hello, json_of, last_bearer};

fn vertex_instance(mock: &GcpMock, service_account: String, priority: i64) -> Value {
    json!({"name": "vertex", "provider": "vertex-ai", "weight": 1, "priority": priority,
        "auth": {"gcp": {"service_account_json": service_account}},
        "provider_conf": {"project_id": PROJECT, "region": REGION},
        "options": {"model": "google/gemini-2.0-flash"}, "override": {"endpoint": mock.base_url()}})
}

async fn ask(gw: &crate::harness::TestGateway, path: &str) -> reqwest::Response {
    gw.http.post(gw.url(path)).body(hello().to_string()).send().await.unwrap()
}

#[tokio::test]
async fn bedrock_and_vertex_fall_back_to_each_other() {
    let (bedrock, vertex) = (BedrockMock::start(CREDENTIALS).await, GcpMock::start().await);
    let gw = gateway().await;
    let multi = |first: Value, second: Value| json!({"fallback_strategy": ["http_429", "http_5xx"], "logging": {"summaries": true}, "instances": [first, second]});

    // Bedrock first: while it answers 503, the Vertex instance (signed in with its own token) does.
    gw.put_route(json!({"id": "bedrock-then-vertex", "paths": ["/bedrock-then-vertex"], "plugins": {"ai-proxy-multi":
        multi(bedrock_instance(&bedrock, 2), vertex_instance(&vertex, vertex.service_account(), 1))}}))
        .await;
    let response = ask(&gw, "/bedrock-then-vertex").await;
    assert_eq!(response.headers()["x-switchyard-instance"], "bedrock");
    bedrock.fail_with(503);
    let response = ask(&gw, "/bedrock-then-vertex").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["x-switchyard-instance"], "vertex");
    assert_eq!(response.headers()["x-switchyard-attempts"], "2");
    assert!(json_of(response).await["choices"][0]["message"]["content"].is_string());
    assert_eq!(last_bearer(&vertex), "Bearer ya29.mock-1");
    let fell_back = logs::all()
        .lines()
        .any(|line| line.contains("route=bedrock-then-vertex") && line.contains("upstream=vertex attempts=2"));
    assert!(fell_back, "no access line of the fallback to vertex");

    // Vertex first, its token endpoint down: the Bedrock instance answers, signed.
    let bedrock = BedrockMock::start(CREDENTIALS).await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_token_uri = format!("http://{}/token", closed.local_addr().unwrap());
    drop(closed);
    let unreachable_account = service_account_json(test_key(), &dead_token_uri);
    gw.put_route(json!({"id": "vertex-then-bedrock", "paths": ["/vertex-then-bedrock"], "plugins": {"ai-proxy-multi":
        multi(vertex_instance(&vertex, unreachable_account, 2), bedrock_instance(&bedrock, 1))}}))
        .await;
    let response = ask(&gw, "/vertex-then-bedrock").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["x-switchyard-instance"], "bedrock");
    assert_eq!(response.headers()["x-switchyard-attempts"], "2");
    assert!(json_of(response).await["choices"][0]["message"]["content"].is_string());
    assert_eq!(bedrock.last().verdict, Ok(()), "the Bedrock call is signed");
}
