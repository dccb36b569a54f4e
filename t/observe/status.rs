//! The status listener: `/status` while the process runs, `/status/ready` once config is live.

use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::Duration;

use reqwest::StatusCode;

use crate::harness::TestGateway;

#[tokio::test]
async fn a_started_node_is_up_and_ready() {
    let gw = TestGateway::start().await;
    let addr = gw.status_addr.unwrap();
    let get = |path: &str| gw.http.get(format!("http://{addr}{path}")).send();
    let response = get("/status").await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.text().await.unwrap(), r#"{"status":"ok"}"#);
    assert_eq!(get("/status/ready").await.unwrap().status(), StatusCode::OK);
    assert_eq!(get("/apisix/admin/routes").await.unwrap().status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_probe_listener_can_be_turned_off() {
    let gw = TestGateway::start_in(tempfile::tempdir().unwrap(), |c| c.status.enabled = false).await;
    assert_eq!(gw.status_addr, None);
}

/// A node whose store does not answer yet: the process is up, but not ready.
#[tokio::test]
async fn a_node_still_loading_its_config_is_up_but_not_ready() {
    // An "etcd" that accepts connections and never answers: the first listing waits.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let free = || TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let (status, proxy, admin) = (free(), free(), free());
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yaml");
    std::fs::write(
        &config,
        format!(
            "proxy:\n  listen: [\"127.0.0.1:{proxy}\"]\nadmin:\n  listen: [\"127.0.0.1:{admin}\"]\n\
             metrics:\n  listen: \"127.0.0.1:0\"\nstatus:\n  listen: \"127.0.0.1:{status}\"\n\
             store:\n  backend: etcd\n  path: \"{}\"\n  etcd:\n    endpoints: [\"http://{}\"]\n    timeout_ms: 20000\n",
            dir.path().join("data").display(),
            silent.local_addr().unwrap()
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["-c", config.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let mut up = false;
    for _ in 0..400 {
        if let Ok(response) = http.get(format!("http://127.0.0.1:{status}/status")).send().await {
            up = response.status() == StatusCode::OK;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let ready = http.get(format!("http://127.0.0.1:{status}/status/ready")).send().await.map(|r| r.status());
    let _ = child.kill();
    child.wait().unwrap();
    assert!(up, "/status answered 200 while the config was loading");
    assert_eq!(ready.unwrap(), StatusCode::SERVICE_UNAVAILABLE);
}
