//! Hot reload and persistence.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use reqwest::StatusCode;
use serde_json::json;

use crate::harness::{MockUpstream, TestGateway};

#[tokio::test]
async fn routes_survive_a_restart() {
    let gw = TestGateway::start().await;
    let mock = MockUpstream::start("a").await;
    gw.put_route(json!({"id": "keep", "paths": ["/keep"], "upstream": {"nodes": {mock.node(): 1}}})).await;
    let revision = gw.status().await["revision"].as_u64().unwrap();
    let dir = gw.stop().await;

    let gw = TestGateway::start_in(dir, |_| {}).await;
    assert_eq!(gw.status().await["revision"].as_u64().unwrap(), revision);
    assert_eq!(gw.get("/keep").await.0, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_under_load_drops_no_request() {
    let gw = Arc::new(TestGateway::start().await);
    let a = MockUpstream::start("a").await;
    let b = MockUpstream::start("b").await;
    gw.put_route(json!({"id": "hot", "paths": ["/hot"], "upstream": {"nodes": {a.node(): 1}}})).await;

    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for _ in 0..4 {
        let (gw, stop) = (Arc::clone(&gw), Arc::clone(&stop));
        clients.push(tokio::spawn(async move {
            let mut served = 0;
            while !stop.load(Ordering::Relaxed) {
                let (status, body) = gw.get("/hot").await;
                assert_eq!(status, StatusCode::OK, "{body}");
                served += 1;
            }
            served
        }));
    }
    for i in 0..30 {
        let node = if i % 2 == 0 { b.node() } else { a.node() };
        gw.put_route(json!({"id": "hot", "paths": ["/hot"], "upstream": {"nodes": {node.clone(): 1}}})).await;
        gw.put_route(
            json!({"id": format!("other-{i}"), "paths": [format!("/other/{i}")], "upstream": {"nodes": {node: 1}}}),
        )
        .await;
    }
    stop.store(true, Ordering::Relaxed);
    let mut total = 0;
    for client in clients {
        total += client.await.unwrap();
    }
    assert!(total > 0);
    assert!(a.hits() > 0 && b.hits() > 0, "both upstreams served during the reloads");
}

#[tokio::test]
async fn a_resource_written_around_the_admin_api_is_skipped_and_reported() {
    let gw = TestGateway::start().await;
    let mock = MockUpstream::start("a").await;
    gw.put_route(json!({"id": "good", "paths": ["/good"], "upstream": {"nodes": {mock.node(): 1}}})).await;
    let store = gw.store();
    let put = store
        .put("/switchyard/default/routes/broken", bytes::Bytes::from_static(b"{\"paths\": 5}"), None)
        .await
        .unwrap();
    gw.wait_for_revision(put.revision).await;
    let status = gw.status().await;
    assert_eq!(status["rejected"][0]["id"], "broken", "{status}");
    assert!(status["rejected"][0]["error"].as_str().unwrap().contains("paths"));
    assert_eq!(gw.get("/good").await.0, StatusCode::OK);
}
