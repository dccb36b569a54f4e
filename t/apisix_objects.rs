//! Upstream objects, plugin configs and global rules: CRUD, in-use rules, precedence, merge order
//! and hot reload, through the admin API and the proxy.

use std::sync::Arc;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use switchyard_sdk::{
    derive_phases, BuildContext, ConfigError, Ctx, Flow, Plugin, PluginError, PluginFactory, Request,
};

use crate::harness::{MockUpstream, TestGateway};

/// Appends `x-tags: <plugin>=<value>` to the request in `access`: which plugins ran, with which
/// config, in which order.
struct Tag {
    label: String,
}

#[derive_phases]
#[async_trait::async_trait]
impl Plugin for Tag {
    async fn access(&self, _ctx: &mut Ctx, req: &mut Request) -> Result<Flow, PluginError> {
        req.head.headers.append("x-tags", self.label.parse().map_err(|_| PluginError("bad tag".into()))?);
        Ok(Flow::Continue)
    }
}

struct TagFactory {
    name: &'static str,
    priority: i32,
}

impl PluginFactory for TagFactory {
    fn name(&self) -> &'static str {
        self.name
    }
    fn priority(&self) -> i32 {
        self.priority
    }
    fn build(&self, config: &Value, _ctx: &dyn BuildContext) -> Result<Arc<dyn Plugin>, ConfigError> {
        let value = config.get("value").and_then(Value::as_str).ok_or_else(|| ConfigError::new("value", "required"))?;
        Ok(Arc::new(Tag { label: format!("{}={value}", self.name) }))
    }
}

/// A gateway with `tag-low` (priority 1) and `tag-high` / `tag-mid` (100 / 50) test plugins.
async fn tagging_gateway() -> TestGateway {
    TestGateway::start_custom(
        tempfile::tempdir().unwrap(),
        |_| {},
        |registry| {
            registry.register(Arc::new(TagFactory { name: "tag-low", priority: 1 }));
            registry.register(Arc::new(TagFactory { name: "tag-mid", priority: 50 }));
            registry.register(Arc::new(TagFactory { name: "tag-high", priority: 100 }));
        },
    )
    .await
}

/// The `x-tags` the mock saw on its last request, in order.
fn tags(mock: &MockUpstream) -> Vec<String> {
    mock.last().headers.get_all("x-tags").iter().map(|v| v.to_str().unwrap().to_string()).collect()
}

async fn put(gw: &TestGateway, kind: &str, id: &str, body: Value) -> (StatusCode, Value) {
    gw.admin(Method::PUT, &format!("/apisix/admin/{kind}/{id}"), Some(body)).await
}

async fn served_by(gw: &TestGateway, path: &str) -> String {
    let response = gw.http.get(gw.url(path)).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK, "{path}");
    response.headers().get("x-mock-name").unwrap().to_str().unwrap().to_string()
}

#[tokio::test]
async fn upstream_objects_have_crud_with_apisix_envelopes() {
    let gw = TestGateway::start().await;
    let body = json!({"name": "llm", "desc": "pool", "labels": {"team": "a"}, "type": "roundrobin",
        "nodes": {"127.0.0.1:1980": 1}, "retries": 1, "retry_timeout": 5, "timeout": {"connect": 1, "send": 1, "read": 3},
        "keepalive_pool": {"size": 8, "idle_timeout": 30, "requests": 100}, "scheme": "http", "pass_host": "node"});
    let (status, created) = put(&gw, "upstreams", "u1", body).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["key"], "/apisix/upstreams/u1");
    assert_eq!(created["value"]["name"], "llm");
    let (status, _) = put(&gw, "upstreams", "u1", json!({"nodes": {"127.0.0.1:1981": 1}})).await;
    assert_eq!(status, StatusCode::OK);
    let (status, got) = gw.admin(Method::GET, "/apisix/admin/upstreams/u1", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(got["value"]["nodes"], json!({"127.0.0.1:1981": 1}));
    let (status, patched) =
        gw.admin(Method::PATCH, "/apisix/admin/upstreams/u1", Some(json!({"type": "least_conn"}))).await;
    assert_eq!(status, StatusCode::OK, "{patched}");
    let (_, list) = gw.admin(Method::GET, "/apisix/admin/upstreams", None).await;
    assert_eq!(list["total"], 1);
    for (bad, field) in [
        (json!({"nodes": {}}), "nodes"),
        (json!({"nodes": {"a:1": 1}, "type": "ewma"}), "type"),
        (json!({"nodes": {"a:1": 1}, "type": "chash"}), "key"),
        (json!({"nodes": {"a:1": 1}, "type": "chash", "key": "nope"}), "key"),
        (json!({"nodes": {"a:1": 1}, "bogus": 1}), "bogus"),
    ] {
        let (status, error) = put(&gw, "upstreams", "bad", bad).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{error}");
        let message = error["error_msg"].as_str().unwrap();
        assert!(message.starts_with(&format!("invalid configuration: {field}")), "{message}");
    }
    let (status, deleted) = gw.admin(Method::DELETE, "/apisix/admin/upstreams/u1", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(deleted["key"], "/apisix/upstreams/u1");
    assert_eq!(gw.admin(Method::GET, "/apisix/admin/upstreams/u1", None).await.0, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn inline_upstream_beats_upstream_id_which_beats_the_services() {
    let gw = TestGateway::start().await;
    let (inline, object, service) = (
        MockUpstream::start("inline").await,
        MockUpstream::start("object").await,
        MockUpstream::start("service").await,
    );
    put(&gw, "upstreams", "obj", json!({"nodes": {object.node(): 1}})).await;
    put(&gw, "upstreams", "svc-up", json!({"nodes": {service.node(): 1}})).await;
    gw.put_service(json!({"id": "s1", "upstream_id": "svc-up"})).await;
    gw.put_route(json!({"id": "all", "uri": "/all", "service_id": "s1", "upstream_id": "obj",
        "upstream": {"nodes": {inline.node(): 1}}}))
        .await;
    gw.put_route(json!({"id": "by-id", "uri": "/by-id", "service_id": "s1", "upstream_id": "obj"})).await;
    gw.put_route(json!({"id": "by-service", "uri": "/by-service", "service_id": "s1"})).await;
    assert_eq!(served_by(&gw, "/all").await, "inline");
    assert_eq!(served_by(&gw, "/by-id").await, "object");
    assert_eq!(served_by(&gw, "/by-service").await, "service");

    // A route naming a missing upstream is refused; so is a service.
    let (status, error) =
        gw.admin(Method::PUT, "/apisix/admin/routes/x", Some(json!({"uri": "/x", "upstream_id": "missing"}))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(error["error_msg"].as_str().unwrap().contains("upstream_id: upstream `missing` does not exist"), "{error}");
    let (status, _) = put(&gw, "services", "s2", json!({"upstream_id": "missing"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn an_upstream_in_use_is_deleted_only_by_force() {
    let gw = TestGateway::start().await;
    let mock = MockUpstream::start("m").await;
    put(&gw, "upstreams", "u", json!({"nodes": {mock.node(): 1}})).await;
    gw.put_route(json!({"id": "r", "uri": "/r", "upstream_id": "u"})).await;
    gw.put_service(json!({"id": "s", "upstream_id": "u"})).await;
    let (status, error) = gw.admin(Method::DELETE, "/apisix/admin/upstreams/u", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error["error_msg"], "can not delete this upstream, route [r] is still using it now (use ?force=true)");
    gw.admin(Method::DELETE, "/apisix/admin/routes/r", None).await;
    let (status, error) = gw.admin(Method::DELETE, "/apisix/admin/upstreams/u", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(error["error_msg"].as_str().unwrap().contains("service [s]"), "{error}");
    let (status, _) = gw.admin(Method::DELETE, "/apisix/admin/upstreams/u?force=true", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        gw.status().await["rejected"].as_array().unwrap().iter().any(|r| r["id"] == "s"),
        "the orphaned service is rejected at reload"
    );
}

#[tokio::test]
async fn editing_an_upstream_object_goes_live_on_its_routes_and_reuses_the_rest() {
    let gw = TestGateway::start().await;
    let (first, second) = (MockUpstream::start("first").await, MockUpstream::start("second").await);
    put(&gw, "upstreams", "u", json!({"nodes": {first.node(): 1}})).await;
    gw.put_route(json!({"id": "uses", "uri": "/uses", "upstream_id": "u"})).await;
    gw.put_route(json!({"id": "other", "uri": "/other", "upstream": {"nodes": {first.node(): 1}}})).await;
    assert_eq!(served_by(&gw, "/uses").await, "first");
    let before = gw.snapshot();
    put(&gw, "upstreams", "u", json!({"nodes": {second.node(): 1}})).await;
    assert_eq!(served_by(&gw, "/uses").await, "second");
    let after = gw.snapshot();
    assert!(Arc::ptr_eq(&before.routes["other"].compiled, &after.routes["other"].compiled), "untouched route reused");
    assert!(!Arc::ptr_eq(&before.routes["uses"].compiled, &after.routes["uses"].compiled));
}

#[tokio::test]
async fn chash_keeps_a_key_on_one_node_and_least_conn_spreads_idle_picks() {
    let gw = TestGateway::start().await;
    let (a, b) = (MockUpstream::start("a").await, MockUpstream::start("b").await);
    put(
        &gw,
        "upstreams",
        "hash",
        json!({"type": "chash", "hash_on": "header", "key": "x-user",
        "nodes": {a.node(): 1, b.node(): 1}}),
    )
    .await;
    put(&gw, "upstreams", "least", json!({"type": "least_conn", "nodes": {a.node(): 1, b.node(): 1}})).await;
    gw.put_route(json!({"id": "hash", "uri": "/hash", "upstream_id": "hash"})).await;
    gw.put_route(json!({"id": "least", "uri": "/least", "upstream_id": "least"})).await;
    let mut owners = std::collections::HashSet::new();
    for user in 0..20 {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..3 {
            let response = gw.http.get(gw.url("/hash")).header("x-user", format!("u{user}")).send().await.unwrap();
            seen.insert(response.headers()["x-mock-name"].to_str().unwrap().to_string());
        }
        assert_eq!(seen.len(), 1, "user {user} always goes to one node");
        owners.extend(seen);
    }
    assert_eq!(owners.len(), 2, "users spread over both nodes");
    let mut names = std::collections::HashSet::new();
    for _ in 0..4 {
        names.insert(served_by(&gw, "/least").await);
    }
    assert_eq!(names.len(), 2, "idle nodes tie and take turns");
}

#[tokio::test]
async fn plugin_configs_merge_between_service_and_route_and_are_deleted_only_by_force() {
    let gw = tagging_gateway().await;
    let mock = MockUpstream::start("m").await;
    gw.put_service(json!({"id": "s", "upstream": {"nodes": {mock.node(): 1}}, "plugins": {
        "tag-high": {"value": "service"}, "tag-mid": {"value": "service"}, "tag-low": {"value": "service"}}}))
        .await;
    let (status, created) = put(
        &gw,
        "plugin_configs",
        "pc",
        json!({"desc": "shared", "plugins": {
        "tag-mid": {"value": "config"}, "tag-low": {"value": "config"}}}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["key"], "/apisix/plugin_configs/pc");
    gw.put_route(json!({"id": "r", "uri": "/r", "service_id": "s", "plugin_config_id": "pc",
        "plugins": {"tag-low": {"value": "route"}}}))
        .await;
    served_by(&gw, "/r").await;
    assert_eq!(tags(&mock), ["tag-high=service", "tag-mid=config", "tag-low=route"]);

    // An edit goes live on the route.
    put(&gw, "plugin_configs", "pc", json!({"plugins": {"tag-mid": {"value": "edited"}}})).await;
    served_by(&gw, "/r").await;
    assert_eq!(tags(&mock), ["tag-high=service", "tag-mid=edited", "tag-low=route"]);

    let (status, error) = put(&gw, "plugin_configs", "bad", json!({"plugins": {"tag-low": {}}})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(error["error_msg"].as_str().unwrap().contains("plugins.tag-low.value"), "{error}");
    let (status, error) =
        gw.admin(Method::PUT, "/apisix/admin/routes/y", Some(json!({"uri": "/y", "plugin_config_id": "nope"}))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{error}");
    let (status, error) = gw.admin(Method::DELETE, "/apisix/admin/plugin_configs/pc", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(error["error_msg"].as_str().unwrap().contains("route [r]"), "{error}");
    assert_eq!(gw.admin(Method::DELETE, "/apisix/admin/plugin_configs/pc?force=true", None).await.0, StatusCode::OK);
}

#[tokio::test]
async fn global_rules_run_before_route_plugins_on_every_route_and_reload_live() {
    let gw = tagging_gateway().await;
    let mock = MockUpstream::start("m").await;
    gw.put_route(json!({"id": "a", "uri": "/a", "plugins": {"tag-high": {"value": "route"}},
        "upstream": {"nodes": {mock.node(): 1}}}))
        .await;
    gw.put_route(json!({"id": "b", "uri": "/b", "upstream": {"nodes": {mock.node(): 1}}})).await;
    let (status, created) = put(&gw, "global_rules", "g1", json!({"plugins": {"tag-low": {"value": "global"}}})).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["key"], "/apisix/global_rules/g1");
    served_by(&gw, "/a").await;
    assert_eq!(tags(&mock), ["tag-low=global", "tag-high=route"], "global first despite its lower priority");
    served_by(&gw, "/b").await;
    assert_eq!(tags(&mock), ["tag-low=global"]);

    let before = gw.snapshot();
    put(&gw, "global_rules", "g1", json!({"plugins": {"tag-low": {"value": "edited"}}})).await;
    served_by(&gw, "/a").await;
    assert_eq!(tags(&mock), ["tag-low=edited", "tag-high=route"]);
    let after = gw.snapshot();
    assert!(Arc::ptr_eq(&before.routes["a"].compiled, &after.routes["a"].compiled), "routes are not recompiled");

    let (status, _) = put(&gw, "global_rules", "bad", json!({"plugins": {"no-such": {}}})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, list) = gw.admin(Method::GET, "/apisix/admin/global_rules", None).await;
    assert_eq!((status, list["total"].clone()), (StatusCode::OK, json!(1)));
    gw.admin(Method::DELETE, "/apisix/admin/global_rules/g1", None).await;
    served_by(&gw, "/a").await;
    assert_eq!(tags(&mock), ["tag-high=route"]);
}

#[tokio::test]
async fn passive_checks_skip_an_unhealthy_node_and_all_unhealthy_still_tries() {
    let gw = TestGateway::start().await;
    let (good, bad) = (MockUpstream::start("good").await, MockUpstream::start("bad").await);
    bad.fail_with(500);
    put(
        &gw,
        "upstreams",
        "u",
        json!({"nodes": {good.node(): 1, bad.node(): 1}, "checks": {"passive": {
        "healthy": {"http_statuses": [200], "successes": 1},
        "unhealthy": {"http_statuses": [500], "http_failures": 2}}}}),
    )
    .await;
    gw.put_route(json!({"id": "r", "uri": "/r", "upstream_id": "u"})).await;
    for _ in 0..6 {
        gw.get("/r").await;
    }
    let bad_hits = bad.hits();
    assert_eq!(bad_hits, 2, "the bad node is out after its second failure");
    for _ in 0..6 {
        assert_eq!(gw.get("/r").await.0, StatusCode::OK);
    }
    assert_eq!(bad.hits(), bad_hits);

    // Every node unhealthy: APISIX tries one anyway rather than refusing.
    good.fail_with(500);
    for _ in 0..4 {
        gw.get("/r").await;
    }
    let (status, _) = gw.get("/r").await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "the upstream's answer, not a gateway 503");
}

#[tokio::test]
async fn active_checks_take_a_node_out_and_run_only_while_the_upstream_is_live() {
    let gw = TestGateway::start().await;
    let (good, bad) = (MockUpstream::start("good").await, MockUpstream::start("bad").await);
    bad.fail_with(503);
    put(
        &gw,
        "upstreams",
        "u",
        json!({"nodes": {good.node(): 1, bad.node(): 1}, "checks": {"active": {
        "http_path": "/healthz", "timeout": 1,
        "healthy": {"interval": 0.05, "successes": 1},
        "unhealthy": {"interval": 0.05, "http_failures": 1}}}}),
    )
    .await;
    gw.put_route(json!({"id": "r", "uri": "/r", "upstream_id": "u"})).await;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    while bad.hits_on("/healthz") < 2 || good.hits_on("/healthz") < 1 {
        assert!(tokio::time::Instant::now() < deadline, "probes did not run");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(gw.status().await["background_tasks"]["running"], 2, "one probe loop per node");
    for _ in 0..6 {
        assert_eq!(gw.get("/r").await.0, StatusCode::OK);
    }
    assert_eq!(bad.hits_on("/r"), 0, "the probed-down node gets no traffic");

    gw.admin(Method::DELETE, "/apisix/admin/routes/r", None).await;
    gw.admin(Method::DELETE, "/apisix/admin/upstreams/u", None).await;
    assert_eq!(gw.status().await["background_tasks"]["running"], 0, "probes stop with the upstream");
}
