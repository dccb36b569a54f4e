//! Route matching through the real proxy listener.

use reqwest::StatusCode;
use serde_json::json;

use crate::harness::{MockUpstream, TestGateway};

async fn upstream_of(gw: &TestGateway, request: reqwest::RequestBuilder) -> (StatusCode, String) {
    let _ = gw;
    let response = request.send().await.unwrap();
    let status = response.status();
    let name = response.headers().get("x-mock-name").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
    (status, name)
}

#[tokio::test]
async fn exact_prefix_host_method_priority_and_status_decide_the_route() {
    let gw = TestGateway::start().await;
    let mocks = [
        MockUpstream::start("exact").await,
        MockUpstream::start("prefix").await,
        MockUpstream::start("host").await,
        MockUpstream::start("post").await,
        MockUpstream::start("high").await,
        MockUpstream::start("low").await,
    ];
    let up = |i: usize| json!({"nodes": {mocks[i].node(): 1}});
    gw.put_route(json!({"id": "exact", "uri": "/v1/chat", "upstream": up(0)})).await;
    gw.put_route(json!({"id": "prefix", "uris": ["/v1/*"], "upstream": up(1)})).await;
    gw.put_route(json!({"id": "host", "paths": ["/v1/*"], "hosts": ["*.example.com"], "upstream": up(2)})).await;
    gw.put_route(json!({"id": "post", "paths": ["/submit"], "methods": ["POST"], "upstream": up(3)})).await;
    gw.put_route(json!({"id": "high", "paths": ["/tie"], "priority": 10, "upstream": up(4)})).await;
    gw.put_route(json!({"id": "low", "paths": ["/tie"], "priority": 1, "upstream": up(5)})).await;
    gw.put_route(json!({"id": "off", "paths": ["/off"], "status": 0, "upstream": up(0)})).await;

    let get = |path: &str| gw.http.get(gw.url(path));
    assert_eq!(upstream_of(&gw, get("/v1/chat")).await, (StatusCode::OK, "exact".into()));
    assert_eq!(upstream_of(&gw, get("/v1/models")).await, (StatusCode::OK, "prefix".into()));
    assert_eq!(
        upstream_of(&gw, get("/v1/models").header("host", "api.example.com")).await,
        (StatusCode::OK, "host".into())
    );
    assert_eq!(upstream_of(&gw, gw.http.post(gw.url("/submit"))).await, (StatusCode::OK, "post".into()));
    assert_eq!(upstream_of(&gw, get("/submit")).await.0, StatusCode::NOT_FOUND);
    assert_eq!(upstream_of(&gw, get("/tie")).await, (StatusCode::OK, "high".into()));
    assert_eq!(upstream_of(&gw, get("/off")).await.0, StatusCode::NOT_FOUND);

    let response = get("/nowhere").send().await.unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&response.text().await.unwrap()).unwrap(),
        json!({"error_msg": "404 Route Not Found"})
    );
}

#[tokio::test]
async fn the_most_recently_updated_route_wins_a_tie() {
    // The seeds PUT a second route on /deepseek and expect it to serve.
    let gw = TestGateway::start().await;
    let first = MockUpstream::start("first").await;
    let second = MockUpstream::start("second").await;
    gw.put_route(json!({"id": "deepseek-route", "paths": ["/deepseek"], "upstream": {"nodes": {first.node(): 1}}}))
        .await;
    gw.put_route(
        json!({"id": "deepseek-multi-route", "paths": ["/deepseek"], "upstream": {"nodes": {second.node(): 1}}}),
    )
    .await;
    assert_eq!(upstream_of(&gw, gw.http.post(gw.url("/deepseek"))).await, (StatusCode::OK, "second".into()));
    gw.put_route(json!({"id": "deepseek-route", "paths": ["/deepseek"], "upstream": {"nodes": {first.node(): 1}}}))
        .await;
    assert_eq!(upstream_of(&gw, gw.http.post(gw.url("/deepseek"))).await, (StatusCode::OK, "first".into()));
}
