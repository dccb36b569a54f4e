//! Route `vars` through the real proxy: every variable kind, body fields (`post_arg.model`),
//! logical forms, refusal of bad conditions, and hot reload.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::harness::{MockUpstream, TestGateway};

/// The mock that answered, or the status when none did.
async fn answered_by(request: reqwest::RequestBuilder) -> String {
    let response = request.send().await.unwrap();
    match response.headers().get("x-mock-name") {
        Some(name) => name.to_str().unwrap().to_string(),
        None => response.status().as_u16().to_string(),
    }
}

#[tokio::test]
async fn post_arg_model_sends_two_models_on_one_path_to_two_routes() {
    let gw = TestGateway::start().await;
    let (gpt, claude) = (MockUpstream::llm("gpt").await, MockUpstream::llm("claude").await);
    let ai_route = |id: &str, model: &str, mock: &MockUpstream| {
        json!({"id": id, "uri": "/llm/chat", "methods": ["POST"],
            "vars": [["post_arg.model", "==", model]],
            "plugins": {"ai-proxy": {"provider": "openai-compatible", "auth": {"header": {"Authorization": "Bearer k"}},
                "override": {"endpoint": format!("{}/v1/chat/completions", mock.base_url())}}}})
    };
    gw.put_route(ai_route("to-gpt", "gpt-4o", &gpt)).await;
    gw.put_route(ai_route("to-claude", "claude-3", &claude)).await;
    let chat = |model: &str| {
        gw.http
            .post(gw.url("/llm/chat"))
            .body(json!({"model": model, "messages": [{"role": "user", "content": "hi"}]}).to_string())
    };
    for (model, mock, other) in [("gpt-4o", &gpt, &claude), ("claude-3", &claude, &gpt)] {
        let (before, other_before) = (mock.hits(), other.hits());
        let response = chat(model).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{model}");
        let body: serde_json::Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
        assert_eq!(body["model"], model);
        assert_eq!((mock.hits(), other.hits()), (before + 1, other_before), "{model} went to its own route");
    }
    assert_eq!(chat("mistral").send().await.unwrap().status(), StatusCode::NOT_FOUND);
    let not_json = gw.http.post(gw.url("/llm/chat")).body("not json");
    assert_eq!(answered_by(not_json).await, "404");
}

#[tokio::test]
async fn every_variable_kind_selects_a_route() {
    let gw = TestGateway::start().await;
    let hit = MockUpstream::start("hit").await;
    let miss = MockUpstream::start("miss").await;
    gw.put_route(json!({"id": "fallback", "uri": "/v/*", "upstream": {"nodes": {miss.node(): 1}}})).await;
    let cases = [
        ("uri", json!([["uri", "==", "/v/uri"]])),
        ("host", json!([["host", "==", "api.example.com"]])),
        ("remote", json!([["remote_addr", "==", "127.0.0.1"]])),
        ("method", json!([["request_method", "==", "PUT"]])),
        ("arg", json!([["arg_tier", "==", "gold"]])),
        ("header", json!([["http_x_team", "~~", "^blue-[0-9]+$"]])),
        ("cookie", json!([["cookie_session", "==", "s1"]])),
        ("nested", json!([["post_arg.meta.region", "in", ["eu", "us"]]])),
        ("request-uri", json!([["request_uri", "==", "/v/request-uri?a=1&b=2"]])),
        ("query", json!([["query_string", "~~", "^tier=[a-z]+$"]])),
        ("port", json!([["remote_port", ">", 0], ["server_name", "==", "_"]])),
    ];
    for (name, vars) in &cases {
        gw.put_route(json!({"id": name, "uri": format!("/v/{name}"), "vars": vars,
            "upstream": {"nodes": {hit.node(): 1}}}))
            .await;
    }
    let url = |name: &str| gw.url(&format!("/v/{name}"));
    let http = &gw.http;
    assert_eq!(answered_by(http.get(url("uri"))).await, "hit");
    assert_eq!(answered_by(http.get(url("host")).header("host", "api.example.com:9080")).await, "hit");
    assert_eq!(answered_by(http.get(url("host"))).await, "miss");
    assert_eq!(answered_by(http.get(url("remote"))).await, "hit");
    assert_eq!(answered_by(http.put(url("method"))).await, "hit");
    assert_eq!(answered_by(http.get(url("method"))).await, "miss");
    assert_eq!(answered_by(http.get(format!("{}?a=1&tier=gold", url("arg")))).await, "hit");
    assert_eq!(answered_by(http.get(format!("{}?tier=silver", url("arg")))).await, "miss");
    assert_eq!(answered_by(http.get(url("header")).header("x-team", "blue-7")).await, "hit");
    assert_eq!(answered_by(http.get(url("header")).header("x-team", "blue-x")).await, "miss");
    assert_eq!(answered_by(http.get(url("cookie")).header("cookie", "a=b; session=s1")).await, "hit");
    assert_eq!(answered_by(http.get(url("cookie"))).await, "miss");
    assert_eq!(answered_by(http.post(url("nested")).body(r#"{"meta":{"region":"eu"}}"#)).await, "hit");
    assert_eq!(answered_by(http.post(url("nested")).body(r#"{"meta":{"region":"apac"}}"#)).await, "miss");
    // The body reached the upstream whole after being read for matching.
    assert_eq!(hit.last().body, r#"{"meta":{"region":"eu"}}"#.as_bytes());
    assert_eq!(answered_by(http.get(format!("{}?a=1&b=2", url("request-uri")))).await, "hit");
    assert_eq!(answered_by(http.get(format!("{}?a=1", url("request-uri")))).await, "miss");
    assert_eq!(answered_by(http.get(format!("{}?tier=gold", url("query")))).await, "hit");
    assert_eq!(answered_by(http.get(url("query"))).await, "miss", "no query string: absent");
    assert_eq!(answered_by(http.get(url("port"))).await, "hit");
}

#[tokio::test]
async fn or_and_negation_and_priority_decide_among_matching_routes() {
    let gw = TestGateway::start().await;
    let (vip, beta, rest) =
        (MockUpstream::start("vip").await, MockUpstream::start("beta").await, MockUpstream::start("rest").await);
    gw.put_route(json!({"id": "vip", "uri": "/chat", "priority": 10, "upstream": {"nodes": {vip.node(): 1}},
        "vars": [["OR", ["arg_user", "==", "alice"], ["AND", ["http_x_plan", "~*", "^enterprise$"], ["arg_n", ">=", 5]]]]}))
        .await;
    gw.put_route(json!({"id": "beta", "uri": "/chat", "priority": 5, "upstream": {"nodes": {beta.node(): 1}},
        "vars": [["arg_user", "!", "~~", "^bot-"], ["http_x_beta", "==", "1"]]}))
        .await;
    gw.put_route(json!({"id": "rest", "uri": "/chat", "upstream": {"nodes": {rest.node(): 1}}})).await;
    let chat = |query: &str| gw.http.get(gw.url(&format!("/chat?{query}")));
    assert_eq!(answered_by(chat("user=alice").header("x-beta", "1")).await, "vip", "priority among matches");
    assert_eq!(answered_by(chat("user=bob&n=7").header("x-plan", "Enterprise")).await, "vip");
    assert_eq!(answered_by(chat("user=bob&n=2").header("x-plan", "Enterprise")).await, "rest");
    assert_eq!(answered_by(chat("user=bob").header("x-beta", "1")).await, "beta");
    assert_eq!(answered_by(chat("user=bot-9").header("x-beta", "1")).await, "rest", "negated regex");
}

#[tokio::test]
async fn bad_vars_are_refused_and_edits_go_live() {
    let gw = TestGateway::start().await;
    let (a, b) = (MockUpstream::start("a").await, MockUpstream::start("b").await);
    let (status, error) = gw
        .admin(
            Method::PUT,
            "/apisix/admin/routes/r",
            Some(json!({"uri": "/r", "vars": [["uri", "~~", "/v1/(chat"]], "upstream": {"nodes": {a.node(): 1}}})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let message = error["error_msg"].as_str().unwrap();
    assert!(message.starts_with("invalid configuration: vars[0][2]: invalid regex at position 4"), "{message}");
    let (status, error) = gw
        .admin(Method::PUT, "/apisix/admin/routes/r", Some(json!({"uri": "/r", "vars": [["arg_a", "=", "1"]]})))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(error["error_msg"].as_str().unwrap().contains("vars[0][1]"), "{error}");

    gw.put_route(
        json!({"id": "r", "uri": "/r", "vars": [["arg_to", "==", "a"]], "upstream": {"nodes": {a.node(): 1}}}),
    )
    .await;
    gw.put_route(
        json!({"id": "r2", "uri": "/r", "vars": [["arg_to", "==", "b"]], "upstream": {"nodes": {b.node(): 1}}}),
    )
    .await;
    assert_eq!(answered_by(gw.http.get(gw.url("/r?to=a"))).await, "a");
    gw.put_route(json!({"id": "r", "uri": "/r", "vars": [["arg_to", "==", "b"]], "priority": 1,
        "upstream": {"nodes": {a.node(): 1}}}))
        .await;
    assert_eq!(answered_by(gw.http.get(gw.url("/r?to=a"))).await, "404");
    assert_eq!(answered_by(gw.http.get(gw.url("/r?to=b"))).await, "a");
}
