//! The `switchyard` binary as users run it: CLI, exit codes, crash safety of the store, and its
//! memory when relaying a huge answer.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use futures_util::StreamExt;
use reqwest::StatusCode;
use serde_json::json;

use crate::harness::mock::BIG_USAGE;
use crate::harness::MockUpstream;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn spawn(config: &std::path::Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["-c", config.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

async fn wait_until_up(http: &reqwest::Client, admin: &str) {
    for _ in 0..200 {
        if http.get(format!("{admin}/apisix/admin/status")).header("x-api-key", "k").send().await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("switchyard did not start");
}

#[tokio::test]
async fn acknowledged_writes_survive_kill_dash_nine() {
    let dir = tempfile::tempdir().unwrap();
    let (proxy, admin) = (free_port(), free_port());
    let config = dir.path().join("config.yaml");
    std::fs::write(
        &config,
        format!(
            "proxy:\n  listen: [\"127.0.0.1:{proxy}\"]\nadmin:\n  listen: [\"127.0.0.1:{admin}\"]\n  keys: [k]\n\
             metrics:\n  listen: \"127.0.0.1:0\"\nstatus:\n  listen: \"127.0.0.1:0\"\n\
             store:\n  path: \"{}\"\nlog:\n  access_log: false\n",
            dir.path().join("data").display()
        ),
    )
    .unwrap();
    let mock = MockUpstream::start("a").await;
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let admin_url = format!("http://127.0.0.1:{admin}");

    let mut child = spawn(&config);
    wait_until_up(&http, &admin_url).await;
    let response = http
        .put(format!("{admin_url}/apisix/admin/routes/crash"))
        .header("x-api-key", "k")
        .body(json!({"paths": ["/crash"], "upstream": {"nodes": {mock.node(): 1}}}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    child.kill().unwrap(); // SIGKILL: no shutdown path runs.
    child.wait().unwrap();

    let mut child = spawn(&config);
    wait_until_up(&http, &admin_url).await;
    let response = http.get(format!("http://127.0.0.1:{proxy}/crash")).send().await.unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

#[test]
fn default_admin_key_on_a_public_address_refuses_to_start_with_exit_code_2() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yaml");
    std::fs::write(&config, format!("admin:\n  listen: [\"0.0.0.0:{}\"]\n", free_port())).unwrap();
    let output =
        Command::new(env!("CARGO_BIN_EXE_switchyard")).args(["--config", config.to_str().unwrap()]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("default key"));
}

#[test]
fn an_unknown_config_key_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yaml");
    std::fs::write(&config, "proxy:\n  lisen: []\n").unwrap();
    let output =
        Command::new(env!("CARGO_BIN_EXE_switchyard")).args(["-c", config.to_str().unwrap()]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("lisen"));
}

/// The peak resident memory of process `pid` (`VmHWM` of `/proc/PID/status`), in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_gib_unbuffered_answer_is_relayed_in_bounded_memory_with_its_usage_logged() {
    const GIB: u64 = 1 << 30;
    let dir = tempfile::tempdir().unwrap();
    let (proxy, admin) = (free_port(), free_port());
    let config = dir.path().join("config.yaml");
    std::fs::write(
        &config,
        format!(
            "proxy:\n  listen: [\"127.0.0.1:{proxy}\"]\nadmin:\n  listen: [\"127.0.0.1:{admin}\"]\n  keys: [k]\n\
             metrics:\n  listen: \"127.0.0.1:0\"\nstatus:\n  listen: \"127.0.0.1:0\"\n\
             store:\n  path: \"{}\"\nlog:\n  access_log: true\n",
            dir.path().join("data").display()
        ),
    )
    .unwrap();
    let log = dir.path().join("stdout.log");
    let mock = MockUpstream::llm("huge").await;
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let admin_url = format!("http://127.0.0.1:{admin}");
    let mut child = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["-c", config.to_str().unwrap()])
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_until_up(&http, &admin_url).await;
    let route = json!({"paths": ["/huge"], "plugins": {
        "proxy-buffering": {"disable_proxy_buffering": true},
        "ai-proxy": {"provider": "openai-compatible", "auth": {"header": {"Authorization": "Bearer k"}},
            "options": {"model": "huge-model"}, "logging": {"summaries": true},
            "override": {"endpoint": format!("{}/v1/chat/completions", mock.base_url())}}}});
    let response = http
        .put(format!("{admin_url}/apisix/admin/routes/huge"))
        .header("x-api-key", "k")
        .body(route.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    tokio::time::sleep(Duration::from_millis(200)).await;

    let response = http
        .post(format!("http://127.0.0.1:{proxy}/huge"))
        .header("x-mock-big-bytes", GIB.to_string())
        .body(r#"{"messages":[]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let mut received = 0u64;
    let mut body = response.bytes_stream();
    while let Some(piece) = body.next().await {
        received += piece.unwrap().len() as u64;
    }
    assert_eq!(received, GIB);
    let peak = peak_rss_kib(child.id());
    let mut line = String::new();
    for _ in 0..200 {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if let Some(found) = text.lines().find(|l| l.contains("route=huge")) {
            line = found.to_string();
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(peak < 64 * 1024, "the gateway peaked at {peak} KiB relaying 1 GiB");
    for field in BIG_USAGE.iter().chain(&["model=huge-model", "status=200"]) {
        assert!(line.contains(field), "{field} missing in access line {line:?}");
    }
}
