//! Several nodes on one real etcd: shared config, group isolation, writes around the admin API,
//! outages, the local snapshot cache, and compaction.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use switchyard::mirror::Mirror;
use switchyard::reload::follow;
use switchyard::snapshot::Snapshot;
use switchyard::state::{LiveSnapshot, NodeStatus, ReloadState};
use switchyard::store::etcd::EtcdStore;
use switchyard::store::{ConfigStore, WatchMessage};
use switchyard::Config;

use crate::harness::{Etcd, MockUpstream, TestGateway};

async fn node(etcd: &Etcd, group: &str) -> TestGateway {
    TestGateway::start_in(tempfile::tempdir().unwrap(), |c| etcd.configure(c, group)).await
}

fn route(id: &str, path: &str, mock: &MockUpstream) -> Value {
    json!({"id": id, "paths": [path], "upstream": {"nodes": {mock.node(): 1}}})
}

fn revision_of(body: &Value) -> u64 {
    body["modifiedIndex"].as_u64().unwrap_or_else(|| panic!("no modifiedIndex in {body}"))
}

/// Polls `check` every 20 ms for up to 15 s.
async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_write_through_one_node_is_served_by_every_node_of_the_group() {
    let etcd = Etcd::start().await;
    let (a, b) = (node(&etcd, "default").await, node(&etcd, "default").await);
    let mock = MockUpstream::start("up").await;

    let (status, created) = a.admin(Method::PUT, "/apisix/admin/routes", Some(route("shared", "/shared", &mock))).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    b.wait_for_revision(revision_of(&created)).await;
    assert_eq!(b.get("/shared").await.0, StatusCode::OK);
    let (status, replaced) =
        a.admin(Method::PUT, "/apisix/admin/routes", Some(route("shared", "/shared", &mock))).await;
    assert_eq!(status, StatusCode::OK, "a replace is told from a create: {replaced}");

    let (status, listed) = b.admin(Method::GET, "/apisix/admin/routes", None).await;
    assert_eq!((status, listed["total"].as_u64()), (StatusCode::OK, Some(1)));

    let (status, deleted) = b.admin(Method::DELETE, "/apisix/admin/routes/shared", None).await;
    assert_eq!(status, StatusCode::OK, "{deleted}");
    let revision = b.status().await["revision"].as_u64().unwrap();
    a.wait_for_revision(revision).await;
    assert_eq!(a.get("/shared").await.0, StatusCode::NOT_FOUND);

    let status = a.status().await;
    assert_eq!((status["store"].as_str(), status["connected"].as_bool()), (Some("etcd"), Some(true)), "{status}");
    assert_eq!(status["cached"], false);
    assert!(status["revision"].as_u64().unwrap() >= revision);
}

#[tokio::test]
async fn two_groups_on_one_etcd_never_see_each_others_routes() {
    let etcd = Etcd::start().await;
    let (blue, green) = (node(&etcd, "blue").await, node(&etcd, "green").await);
    let mock = MockUpstream::start("up").await;

    let (status, body) =
        blue.admin(Method::PUT, "/apisix/admin/routes?gateway_group_id=blue", Some(route("r", "/blue", &mock))).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = green
        .admin(Method::PUT, "/apisix/admin/routes?gateway_group_id=green", Some(route("r", "/green", &mock)))
        .await;
    assert_eq!(status, StatusCode::CREATED, "same id, other group: a create, not a replace: {body}");
    // etcd delivers in revision order: once blue has applied a later write of its own, any of
    // green's changes that leaked into its watch would already be live.
    let (_, body) =
        blue.admin(Method::PUT, "/apisix/admin/routes?gateway_group_id=blue", Some(route("r2", "/blue2", &mock))).await;
    blue.wait_for_revision(revision_of(&body)).await;

    assert_eq!(blue.get("/blue").await.0, StatusCode::OK);
    assert_eq!(blue.get("/green").await.0, StatusCode::NOT_FOUND);
    assert_eq!(green.get("/green").await.0, StatusCode::OK);
    assert_eq!(green.get("/blue").await.0, StatusCode::NOT_FOUND);
    let (_, listed) = blue.admin(Method::GET, "/apisix/admin/routes?gateway_group_id=blue", None).await;
    assert_eq!(listed["total"], 2);
    assert_eq!(listed["list"][0]["value"]["paths"], json!(["/blue"]));

    let mut client = etcd.client().await;
    let keys = client.get("/switchyard/", Some(etcd_client::GetOptions::new().with_prefix().with_keys_only())).await;
    let keys: Vec<String> = keys.unwrap().kvs().iter().map(|kv| kv.key_str().unwrap().to_string()).collect();
    assert_eq!(
        keys,
        ["/switchyard/blue/routes/r", "/switchyard/blue/routes/r2", "/switchyard/green/routes/r"],
        "the documented key layout"
    );
}

#[tokio::test]
async fn resources_written_straight_to_etcd_are_served_and_invalid_ones_reported() {
    let etcd = Etcd::start().await;
    let gw = TestGateway::start_in(tempfile::tempdir().unwrap(), |c| {
        etcd.configure(c, "default");
        c.store.etcd.prefix = "/custom/root/".into();
    })
    .await;
    let mock = MockUpstream::start("up").await;
    let mut client = etcd.client().await;

    let put = client.put("/custom/root/default/routes/direct", route("direct", "/direct", &mock).to_string(), None);
    gw.wait_for_revision(put.await.unwrap().header().unwrap().revision() as u64).await;
    assert_eq!(gw.get("/direct").await.0, StatusCode::OK);
    let (status, body) = gw.admin(Method::GET, "/apisix/admin/routes/direct", None).await;
    assert_eq!(status, StatusCode::OK, "the admin API reads under the configured prefix: {body}");

    let put = client.put("/custom/root/default/routes/broken", "{\"paths\": 5}", None).await.unwrap();
    gw.wait_for_revision(put.header().unwrap().revision() as u64).await;
    let status = gw.status().await;
    assert_eq!(status["rejected"].as_array().unwrap().len(), 1, "{status}");
    assert_eq!(status["rejected"][0]["id"], "broken");
    assert_eq!(status["rejected"][0]["key"], "/custom/root/default/routes/broken");
    assert!(status["rejected"][0]["error"].as_str().unwrap().contains("paths"), "{status}");
    assert_eq!(gw.get("/direct").await.0, StatusCode::OK, "one bad resource never takes the others down");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_etcd_outage_fails_no_request_and_nodes_converge_after_it() {
    let mut etcd = Etcd::start().await;
    let (a, b) = (Arc::new(node(&etcd, "default").await), node(&etcd, "default").await);
    let mock = MockUpstream::start("up").await;
    let (_, body) = a.admin(Method::PUT, "/apisix/admin/routes", Some(route("before", "/before", &mock))).await;
    b.wait_for_revision(revision_of(&body)).await;

    let stop = Arc::new(AtomicBool::new(false));
    let served = Arc::new(AtomicUsize::new(0));
    let traffic = {
        let (a, stop, served) = (Arc::clone(&a), Arc::clone(&stop), Arc::clone(&served));
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let (status, body) = a.get("/before").await;
                assert_eq!(status, StatusCode::OK, "a route that existed failed during the outage: {body}");
                served.fetch_add(1, Ordering::Relaxed);
            }
        })
    };

    etcd.stop();
    eventually("node A notices the outage", async || a.status().await["connected"] == false).await;
    let (status, body) = a.admin(Method::PUT, "/apisix/admin/routes", Some(route("during", "/during", &mock))).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(body["error_msg"].as_str().unwrap().contains("unavailable"), "{body}");
    assert_eq!(b.get("/before").await.0, StatusCode::OK);
    let during_outage = served.load(Ordering::Relaxed);

    etcd.restart().await;
    let mut written = None;
    eventually("admin writes succeed again", async || {
        let (status, body) = a.admin(Method::PUT, "/apisix/admin/routes", Some(route("after", "/after", &mock))).await;
        written = status.is_success().then(|| revision_of(&body));
        written.is_some()
    })
    .await;
    b.wait_for_revision(written.unwrap()).await;
    assert_eq!(b.get("/after").await.0, StatusCode::OK, "B's watch came back after the outage");
    assert_eq!(a.get("/after").await.0, StatusCode::OK);
    eventually("both nodes report etcd connected", async || {
        a.status().await["connected"] == true && b.status().await["connected"] == true
    })
    .await;

    stop.store(true, Ordering::Relaxed);
    traffic.await.unwrap();
    assert!(during_outage > 0 && served.load(Ordering::Relaxed) > during_outage, "traffic flowed throughout");
}

#[tokio::test]
async fn a_node_restarting_while_etcd_is_down_serves_its_cached_snapshot_then_catches_up() {
    let mut etcd = Etcd::start().await;
    let mock = MockUpstream::start("up").await;
    let gw = node(&etcd, "default").await;
    gw.put_route(route("cached", "/cached", &mock)).await;
    let dir = gw.stop().await;
    assert!(dir.path().join("store/etcd-cache.json").exists());

    // Changed while the node was away: it cannot know until etcd is back.
    let mut client = etcd.client().await;
    client.put("/switchyard/default/routes/missed", route("missed", "/missed", &mock).to_string(), None).await.unwrap();
    etcd.stop();

    let gw = TestGateway::start_in(dir, |c| etcd.configure(c, "default")).await;
    let status = gw.status().await;
    assert_eq!((status["cached"].as_bool(), status["connected"].as_bool()), (Some(true), Some(false)), "{status}");
    assert_eq!(gw.get("/cached").await.0, StatusCode::OK);
    assert_eq!(gw.get("/missed").await.0, StatusCode::NOT_FOUND);
    let (status, _) = gw.admin(Method::PUT, "/apisix/admin/routes", Some(route("no", "/no", &mock))).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);

    etcd.restart().await;
    eventually("the node catches up", async || gw.status().await["cached"] == false).await;
    assert_eq!(gw.get("/missed").await.0, StatusCode::OK);
    assert_eq!(gw.get("/cached").await.0, StatusCode::OK);
    assert_eq!(gw.status().await["connected"], true);
}

#[tokio::test]
async fn a_node_without_cache_refuses_to_start_while_etcd_is_down() {
    let mut etcd = Etcd::start().await;
    etcd.stop();
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::default();
    etcd.configure(&mut config, "default");
    config.proxy.listen = vec!["127.0.0.1:0".into()];
    config.admin.listen = vec!["127.0.0.1:0".into()];
    config.store.path = dir.path().join("store");
    let Err(err) = switchyard::Gateway::start(config).await else { panic!("started without etcd or cache") };
    let message = err.to_string();
    assert!(message.contains("unavailable") && message.contains("etcd-cache.json"), "{message}");
}

#[tokio::test]
async fn compaction_past_the_watch_revision_resyncs_and_later_changes_still_apply() {
    let etcd = Etcd::start().await;
    let mock = MockUpstream::start("up").await;
    let mut config = Config::default();
    etcd.configure(&mut config, "default");
    let store: Arc<dyn ConfigStore> = Arc::new(EtcdStore::new(&config.store.etcd).unwrap());
    let mut client = etcd.client().await;
    let put = |id: &str| (format!("/switchyard/default/routes/{id}"), route(id, &format!("/{id}"), &mock).to_string());

    // The mirror is taken, then the store moves on and compacts what the watch would need.
    let (key, value) = put("early");
    client.put(key, value, None).await.unwrap();
    let stale = Mirror::load(store.as_ref(), "/switchyard/default/").await.unwrap();
    for id in ["one", "two", "three"] {
        let (key, value) = put(id);
        client.put(key, value, None).await.unwrap();
    }
    client.delete("/switchyard/default/routes/early", None).await.unwrap();
    let current = client.get("/", None).await.unwrap().header().unwrap().revision();
    client.compact(current, None).await.unwrap();

    let mut rx = store.watch("/switchyard/default/", stale.revision + 1).await.unwrap();
    let first = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await.unwrap();
    assert!(matches!(first, Some(WatchMessage::Resync)), "compacted history means resync, got {first:?}");

    let compiler = Arc::new(switchyard::compiler::Compiler::new(
        switchyard::plugins::builtin(&config),
        switchyard::transport::Transport::new(),
    ));
    let snapshot = Arc::new(Snapshot::build(&stale.resources, "/switchyard/default/", stale.revision, &compiler, None));
    let status = Arc::new(NodeStatus::new(&snapshot, false));
    let live = Arc::new(LiveSnapshot::new(Arc::clone(&snapshot)));
    let reload = ReloadState {
        store,
        compiler,
        group_prefix: "/switchyard/default/".into(),
        cache: None,
        live: Arc::clone(&live),
        status: Arc::clone(&status),
    };
    let (shutdown, shutdown_rx) = tokio::sync::watch::channel(false);
    let follower = tokio::spawn(follow(reload, snapshot, stale, shutdown_rx));

    let current = current as u64;
    assert!(status.wait_for_revision(current, Duration::from_secs(10)).await, "the resync lands");
    let routes = || {
        #[expect(clippy::disallowed_methods, reason = "the test reads what the reload task published")]
        let snapshot = live.load();
        let mut ids: Vec<String> = snapshot.routes.keys().map(|id| id.to_string()).collect();
        ids.sort();
        ids
    };
    assert_eq!(routes(), ["one", "three", "two"]);
    let (key, value) = put("later");
    let later = client.put(key, value, None).await.unwrap().header().unwrap().revision() as u64;
    assert!(status.wait_for_revision(later, Duration::from_secs(10)).await, "a change after the resync applies");
    assert_eq!(routes(), ["later", "one", "three", "two"]);

    shutdown.send(true).unwrap();
    follower.await.unwrap();
}

#[tokio::test]
async fn a_node_signs_in_with_user_and_password_and_a_wrong_password_is_a_clear_start_error() {
    let etcd = Etcd::start().await;
    let mut client = etcd.client().await;
    client.user_add("root", "right-horse-battery", None).await.unwrap();
    client.user_grant_role("root", "root").await.unwrap();
    client.auth_enable().await.unwrap();
    let mock = MockUpstream::start("up").await;

    let gw = TestGateway::start_in(tempfile::tempdir().unwrap(), |c| {
        etcd.configure(c, "default");
        c.store.etcd.user = Some("root".into());
        c.store.etcd.password = Some("right-horse-battery".into());
    })
    .await;
    gw.put_route(route("auth", "/auth", &mock)).await;
    assert_eq!(gw.get("/auth").await.0, StatusCode::OK);

    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::default();
    etcd.configure(&mut config, "default");
    config.proxy.listen = vec!["127.0.0.1:0".into()];
    config.admin.listen = vec!["127.0.0.1:0".into()];
    config.store.path = dir.path().join("store");
    config.store.etcd.user = Some("root".into());
    config.store.etcd.password = Some("wrong-horse".into());
    let Err(err) = switchyard::Gateway::start(config).await else { panic!("started with a wrong password") };
    let message = err.to_string();
    assert!(message.contains("authentication failed") && !message.contains("wrong-horse"), "{message}");
}

#[tokio::test]
async fn a_node_reaches_etcd_over_tls_with_a_client_certificate() {
    let etcd = Etcd::start_tls().await;
    let mock = MockUpstream::start("up").await;
    let (a, b) = (node(&etcd, "default").await, node(&etcd, "default").await);
    let (status, body) = a.admin(Method::PUT, "/apisix/admin/routes", Some(route("tls", "/tls", &mock))).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    b.wait_for_revision(revision_of(&body)).await;
    assert_eq!(b.get("/tls").await.0, StatusCode::OK);
}

#[tokio::test]
async fn model_api_resources_written_on_one_node_serve_callers_on_another() {
    let etcd = Etcd::start().await;
    let (a, b) = (node(&etcd, "default").await, node(&etcd, "default").await);
    let mock = MockUpstream::llm("vendor").await;
    let post = async |path: &str, body: Value| -> (Value, u64) {
        let response = a
            .http
            .post(format!("http://{}{path}", a.admin))
            .header("Authorization", format!("Bearer {}", crate::harness::gateway::ADMIN_KEY))
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let revision = response.headers()["x-switchyard-revision"].to_str().unwrap().parse().unwrap();
        (serde_json::from_str(&response.text().await.unwrap()).unwrap(), revision)
    };
    let secret = json!({"display_name": "k", "provider": "v", "adapter": "openai", "secret": "vendor-secret",
        "api_base": mock.base_url()});
    let (key, _) = post("/admin/v1/provider_keys", secret).await;
    post(
        "/admin/v1/models",
        json!({"display_name": "alias", "provider": "v", "model_name": "m", "provider_key_id": key["id"]}),
    )
    .await;
    let hash = switchyard::resource::api_key::sha256_hex("caller");
    let (_, revision) = post("/admin/v1/apikeys", json!({"key_hash": hash, "allowed_models": "*"})).await;
    b.wait_for_revision(revision).await;
    let answer = b
        .http
        .post(b.url("/v1/chat/completions"))
        .header("Authorization", "Bearer caller")
        .body(json!({"model": "alias", "messages": []}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
    assert_eq!(mock.last().headers["authorization"], "Bearer vendor-secret");
}
