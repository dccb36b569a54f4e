//! Vertex AI (`vertex-ai` routes, the model API's `vertex` adapter) against the GCP mock
//! (`harness::gcp_mock`): access tokens minted from a service account whose signature the mock
//! checks, cached and renewed; chat, streaming and `:predict` embeddings; fallback; config errors
//! and secret masking.

mod routes;
mod surfaces;
mod tokens;

use serde_json::{json, Value};

use crate::harness::gcp_mock::{GcpMock, PROJECT, REGION};
use crate::harness::{logs, TestGateway};

/// The path of the mock's chat endpoint.
pub fn chat_path() -> String {
    format!("/v1beta1/projects/{PROJECT}/locations/{REGION}/endpoints/openapi/chat/completions")
}

/// The path of the mock's `:predict` for `model`.
pub fn predict_path(model: &str) -> String {
    format!("/v1/projects/{PROJECT}/locations/{REGION}/publishers/google/models/{model}:predict")
}

/// A gateway with the access log on.
pub async fn gateway() -> TestGateway {
    logs::capture();
    TestGateway::start_in(tempfile::tempdir().unwrap(), |config| config.log.access_log = true).await
}

/// An `ai-proxy` config for `vertex-ai` at the mock, its service account trading at `token_uri`,
/// with `gcp` (beyond the key) and `extra` (plugin fields) merged in.
pub fn vertex_plugin(mock: &GcpMock, service_account: String, gcp: Value, extra: Value) -> Value {
    let mut auth_gcp = json!({"service_account_json": service_account});
    merge(&mut auth_gcp, gcp);
    let mut plugin = json!({
        "provider": "vertex-ai",
        "auth": {"gcp": auth_gcp},
        "provider_conf": {"project_id": PROJECT, "region": REGION},
        "options": {"model": "google/gemini-2.0-flash"},
        "override": {"endpoint": mock.base_url()},
        "logging": {"summaries": true},
    });
    merge(&mut plugin, extra);
    plugin
}

fn merge(into: &mut Value, extra: Value) {
    if let (Value::Object(into), Value::Object(extra)) = (into, extra) {
        into.extend(extra);
    }
}

/// Puts an `ai-proxy` route `id` at `/<id>`.
pub async fn put_vertex_route(gw: &TestGateway, id: &str, plugin: Value) {
    gw.put_route(json!({"id": id, "paths": [format!("/{id}")], "plugins": {"ai-proxy": plugin}})).await;
}

/// POSTs `body` to `/<id>`.
pub async fn post(gw: &TestGateway, id: &str, body: Value) -> reqwest::Response {
    gw.http
        .post(gw.url(&format!("/{id}")))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap()
}

pub fn hello() -> Value {
    json!({"messages": [{"role": "user", "content": "Say hello from Vertex."}]})
}

pub async fn json_of(response: reqwest::Response) -> Value {
    let text = response.text().await.unwrap();
    serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"))
}

/// The bearer of the mock's last Vertex request.
pub fn last_bearer(mock: &GcpMock) -> String {
    mock.last().headers["authorization"].to_str().unwrap().to_string()
}
