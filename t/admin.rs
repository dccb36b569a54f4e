//! The APISIX-compatible admin API: envelopes, status codes, auth, groups.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::harness::{MockUpstream, TestGateway};

#[tokio::test]
async fn route_crud_uses_apisix_envelopes_and_status_codes() {
    let gw = TestGateway::start().await;
    let mock = MockUpstream::start("a").await;
    let route = json!({"id": "r1", "name": "echo", "paths": ["/echo"], "upstream": {"nodes": {mock.node(): 1}}});

    let (status, created) =
        gw.admin(Method::PUT, "/apisix/admin/routes?gateway_group_id=default", Some(route.clone())).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["key"], "/apisix/routes/r1");
    assert_eq!(created["value"]["id"], "r1");
    assert!(created["value"]["create_time"].is_u64() && created["value"]["update_time"].is_u64());
    assert!(created["modifiedIndex"].as_u64().unwrap() >= created["createdIndex"].as_u64().unwrap());

    let (status, replaced) = gw.admin(Method::PUT, "/apisix/admin/routes/r1", Some(route)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(replaced["createdIndex"], created["createdIndex"]);
    assert!(replaced["modifiedIndex"].as_u64() > created["modifiedIndex"].as_u64());

    let (status, one) = gw.admin(Method::GET, "/apisix/admin/routes/r1", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(one["value"]["name"], "echo");

    let (status, patched) =
        gw.admin(Method::PATCH, "/apisix/admin/routes/r1", Some(json!({"name": "renamed", "desc": "d"}))).await;
    assert_eq!(status, StatusCode::OK, "{patched}");
    assert_eq!(patched["value"]["name"], "renamed");
    assert_eq!(patched["value"]["paths"], json!(["/echo"]));
    let (status, patched) = gw.admin(Method::PATCH, "/apisix/admin/routes/r1", Some(json!({"desc": null}))).await;
    assert_eq!(status, StatusCode::OK, "{patched}");
    assert!(patched["value"].get("desc").is_none(), "null removes a field (RFC 7396): {patched}");
    assert_eq!(patched["value"]["name"], "renamed");

    let (status, posted) = gw
        .admin(
            Method::POST,
            "/apisix/admin/routes",
            Some(json!({"uri": "/posted", "upstream": {"nodes": {mock.node(): 1}}})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let posted_id = posted["value"]["id"].as_str().unwrap().to_string();

    let (status, list) = gw.admin(Method::GET, "/apisix/admin/routes", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["total"], 2);
    let (_, page) = gw.admin(Method::GET, "/apisix/admin/routes?page=2&page_size=1", None).await;
    assert_eq!(page["total"], 2);
    assert_eq!(page["list"].as_array().unwrap().len(), 1);

    assert_eq!(gw.get("/echo").await.0, StatusCode::OK);
    let (status, deleted) = gw.admin(Method::DELETE, "/apisix/admin/routes/r1", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(deleted["key"], "/apisix/routes/r1");
    assert_eq!(gw.get("/echo").await.0, StatusCode::NOT_FOUND);
    assert_eq!(gw.admin(Method::GET, "/apisix/admin/routes/r1", None).await.0, StatusCode::NOT_FOUND);
    assert_eq!(gw.admin(Method::DELETE, "/apisix/admin/routes/r1", None).await.0, StatusCode::NOT_FOUND);
    assert_eq!(gw.admin(Method::DELETE, &format!("/apisix/admin/routes/{posted_id}"), None).await.0, StatusCode::OK);
}

#[tokio::test]
async fn bad_input_is_rejected_with_a_clear_message() {
    let gw = TestGateway::start().await;
    let upstream = json!({"nodes": {"127.0.0.1:1": 1}});
    let cases = [
        (json!({"paths": ["/a"], "upstream": upstream}), "missing id"),
        (json!({"id": "x", "paths": ["/a"], "plugins": {"nope": {}}, "upstream": upstream}), "plugins.nope"),
        (
            json!({"id": "x", "paths": ["/a"], "plugins": {"proxy-buffering": {"disable_proxy_buffering": 1}}}),
            "plugins.proxy-buffering.disable_proxy_buffering",
        ),
        (json!({"id": "x", "paths": ["/a"], "upstream": {"nodes": {}}}), "upstream.nodes"),
        (json!({"id": "x", "paths": ["a"]}), "paths"),
        (json!({"id": "x", "paths": ["/a"], "service_id": "$SERVICE_ID"}), "service id [$SERVICE_ID]"),
        (json!({"id": "bad/id", "paths": ["/a"]}), "invalid id"),
    ];
    for (body, expected) in cases {
        let (status, reply) = gw.admin(Method::PUT, "/apisix/admin/routes", Some(body.clone())).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body} → {reply}");
        let message = reply["error_msg"].as_str().unwrap();
        assert!(message.contains(expected), "{message:?} should mention {expected:?}");
    }
    let (status, reply) =
        gw.admin(Method::PUT, "/apisix/admin/routes/a", Some(json!({"id": "b", "paths": ["/a"]}))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{reply}");

    let raw = |body: &'static str| {
        gw.http
            .put(format!("http://{}/apisix/admin/routes/x", gw.admin))
            .header("x-api-key", "test-admin-key")
            .body(body)
            .send()
    };
    let response = raw("{not json").await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(response.text().await.unwrap().contains("invalid JSON"));
    assert_eq!(raw("").await.unwrap().status(), StatusCode::BAD_REQUEST);
    let huge = format!("{{\"id\":\"x\",\"paths\":[\"/a\"],\"desc\":\"{}\"}}", "x".repeat(1600 * 1024));
    let response = gw
        .http
        .put(format!("http://{}/apisix/admin/routes/x", gw.admin))
        .header("x-api-key", "test-admin-key")
        .body(huge)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn admin_requires_a_valid_key() {
    let gw = TestGateway::start().await;
    let url = format!("http://{}/apisix/admin/routes", gw.admin);
    for request in [
        gw.http.get(&url),
        gw.http.get(&url).header("X-API-KEY", "wrong"),
        gw.http.get(&url).header("Authorization", "Bearer wrong"),
    ] {
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&response.text().await.unwrap()).unwrap(),
            json!({"error_msg": "failed to check token"})
        );
    }
    let response = gw.http.get(&url).header("Authorization", "Bearer test-admin-key").send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn services_merge_into_routes_and_guard_their_deletion() {
    let gw = TestGateway::start().await;
    let mock = MockUpstream::start("svc").await;
    gw.put_service(json!({"id": "s1", "path_prefix": "/team", "upstream": {"nodes": {mock.node(): 1}},
        "plugins": {"proxy-buffering": {"disable_proxy_buffering": false}}}))
        .await;
    gw.put_route(json!({"id": "r1", "paths": ["/echo"], "service_id": "s1"})).await;

    let (status, body) = gw.get("/team/echo").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.contains("\"upstream\":\"svc\""));
    assert_eq!(gw.get("/echo").await.0, StatusCode::NOT_FOUND);

    let (status, reply) = gw.admin(Method::DELETE, "/apisix/admin/services/s1", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(reply["error_msg"].as_str().unwrap().contains("r1"));
    let (status, _) = gw.admin(Method::DELETE, "/apisix/admin/services/s1?force=true", None).await;
    assert_eq!(status, StatusCode::OK);
    // The route now names a missing service: reload skips it and reports it.
    let rejected = gw.status().await["rejected"].clone();
    assert_eq!(rejected[0]["id"], "r1", "{rejected}");
    assert_eq!(gw.get("/team/echo").await.0, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn gateway_groups_are_isolated() {
    let gw = TestGateway::start().await;
    let mock = MockUpstream::start("a").await;
    let route = json!({"id": "g", "paths": ["/grouped"], "upstream": {"nodes": {mock.node(): 1}}});
    let (status, _) = gw.admin(Method::PUT, "/apisix/admin/routes?gateway_group_id=other", Some(route)).await;
    assert_eq!(status, StatusCode::CREATED);
    // A later write to this node's own group proves the node has caught up past the other write.
    gw.put_route(json!({"id": "mine", "paths": ["/mine"], "upstream": {"nodes": {mock.node(): 1}}})).await;
    assert_eq!(gw.get("/grouped").await.0, StatusCode::NOT_FOUND);
    assert_eq!(gw.get("/mine").await.0, StatusCode::OK);
    assert_eq!(gw.admin(Method::GET, "/apisix/admin/routes/g", None).await.0, StatusCode::NOT_FOUND);
    let (status, other) = gw.admin(Method::GET, "/apisix/admin/routes/g?gateway_group_id=other", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(other["value"]["paths"], json!(["/grouped"]));
}

#[tokio::test]
async fn status_reports_revision_store_rejected_resources_and_tasks() {
    let gw = TestGateway::start().await;
    let status = gw.status().await;
    assert_eq!(status["store"], "embedded");
    assert_eq!(status["rejected"], json!([]));
    // At least the listeners' accept loops and the connection answering this request.
    assert!(status["tasks"].as_u64().unwrap() >= 2, "{status}");
    let body = gw.put_route(json!({"id": "r", "paths": ["/r"], "upstream": {"nodes": {"127.0.0.1:1": 1}}})).await;
    assert!(gw.status().await["revision"].as_u64().unwrap() >= body["modifiedIndex"].as_u64().unwrap());
}
