//! Every request has an id: sent upstream, logged, and returned to the client.

use reqwest::StatusCode;
use serde_json::json;

use crate::harness::{logs, MockUpstream, TestGateway};

fn header(response: &reqwest::Response, name: &str) -> String {
    response.headers().get(name).map_or(String::new(), |v| v.to_str().unwrap().to_string())
}

#[tokio::test]
async fn a_sane_client_id_travels_upstream_into_the_log_and_back() {
    logs::capture();
    let gw = TestGateway::start_in(tempfile::tempdir().unwrap(), |config| config.log.access_log = true).await;
    let mock = MockUpstream::start("plain").await;
    gw.put_route(json!({"id": "rid", "paths": ["/rid"], "upstream": {"nodes": {mock.node(): 1}}})).await;
    let response = gw.http.get(gw.url("/rid")).header("x-request-id", "client-id-42").send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(&response, "x-switchyard-request-id"), "client-id-42");
    assert_eq!(header(&response, "x-request-id"), "client-id-42");
    assert_eq!(mock.last().headers["x-request-id"], "client-id-42");
    assert!(logs::access_line("rid").await.contains("request_id=client-id-42"));
}

#[tokio::test]
async fn a_missing_or_insane_client_id_is_replaced_by_a_fresh_one() {
    let gw = TestGateway::start().await;
    let mock = MockUpstream::start("plain").await;
    gw.put_route(json!({"id": "fresh", "paths": ["/fresh"], "upstream": {"nodes": {mock.node(): 1}}})).await;
    let mut ids = Vec::new();
    for sent in [None, Some("x".repeat(200)), Some("two words".to_string())] {
        let mut request = gw.http.get(gw.url("/fresh"));
        if let Some(sent) = sent {
            request = request.header("x-request-id", sent);
        }
        let response = request.send().await.unwrap();
        let id = header(&response, "x-switchyard-request-id");
        assert_eq!(id.len(), 32, "{id}");
        assert_eq!(header(&response, "x-request-id"), id);
        assert_eq!(mock.last().headers["x-request-id"], id.as_str(), "the upstream sees the same id");
        ids.push(id);
    }
    ids.dedup();
    assert_eq!(ids.len(), 3, "each request gets its own id");
    // The gateway's own answers carry it too.
    let response = gw.http.get(gw.url("/no-such-route")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(header(&response, "x-switchyard-request-id").len(), 32);
}

#[tokio::test]
async fn a_provider_request_id_is_relayed_unchanged() {
    let mock = MockUpstream::llm("provider").await;
    let gw = TestGateway::start().await;
    gw.put_route(json!({"id": "llm", "paths": ["/llm"], "plugins": {"ai-proxy": {"provider": "openai-compatible",
        "auth": {"header": {"Authorization": "Bearer k"}},
        "override": {"endpoint": format!("{}/v1/chat/completions", mock.base_url())}}}}))
        .await;
    let response =
        gw.http.post(gw.url("/llm")).header("x-request-id", "mine").body(r#"{"messages":[]}"#).send().await.unwrap();
    assert_eq!(header(&response, "x-request-id"), "req-mock-1", "the provider's id, for its support desk");
    assert_eq!(header(&response, "x-switchyard-request-id"), "mine");
    assert_eq!(mock.last().headers["x-request-id"], "mine");
}
