//! `log.access_log_format: json`: one JSON object per access log line.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};
use switchyard::observe::config::AccessLogFormat;

use super::metrics::chat;
use crate::harness::{logs, MockUpstream, TestGateway};

/// The JSON access log line of route `route`, from the captured log output.
async fn json_line(route: &str) -> Value {
    let needle = format!("\"route\":\"{route}\"");
    for _ in 0..200 {
        let all = logs::all();
        if let Some(line) = all.lines().find(|l| l.contains(" access: {") && l.contains(&needle)) {
            let json = &line[line.find(" access: ").unwrap() + " access: ".len()..];
            return serde_json::from_str(json).unwrap_or_else(|e| panic!("not JSON ({e}): {json}"));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("no JSON access log line for route {route}");
}

fn route(id: &str, mock: &MockUpstream, logging: Value) -> Value {
    json!({"id": id, "paths": [format!("/{id}")], "plugins": {"ai-proxy": {
        "provider": "openai-compatible", "auth": {"header": {"Authorization": "Bearer sk-never-logged"}},
        "options": {"model": "deepseek-chat"}, "logging": logging,
        "override": {"endpoint": format!("{}/v1/chat/completions", mock.base_url())}}}})
}

#[tokio::test]
async fn json_lines_carry_ids_durations_tokens_and_payloads_only_when_asked() {
    logs::capture();
    let mock = MockUpstream::llm("llm").await;
    let gw = TestGateway::start_in(tempfile::tempdir().unwrap(), |c| {
        c.log.access_log = true;
        c.log.access_log_format = AccessLogFormat::Json;
    })
    .await;
    gw.put_route(route("jsonlog", &mock, json!({}))).await;
    gw.put_route(route("jsonpayloads", &mock, json!({"payloads": true}))).await;
    let ask = json!({"messages": [{"role": "user", "content": "the secret question"}]});
    let response = gw.http.post(gw.url("/jsonlog")).header("x-request-id", "json-req-1").body(ask.to_string());
    assert_eq!(response.send().await.unwrap().status(), StatusCode::OK);

    let line = json_line("jsonlog").await;
    assert_eq!(line["request_id"], "json-req-1");
    assert_eq!(line["status"], 200);
    assert_eq!(line["method"], "POST");
    assert_eq!(line["path"], "/jsonlog");
    assert_eq!(line["instance"], "openai-compatible");
    assert_eq!(line["attempts"], 1);
    assert_eq!((line["prompt_tokens"].as_u64(), line["completion_tokens"].as_u64()), (Some(10), Some(48)));
    assert_eq!(line["total_tokens"], 58);
    assert!(line["duration_ms"].as_f64().unwrap() >= line["upstream_ms"].as_f64().unwrap());
    assert!(line["ttft_ms"].is_f64(), "{line}");
    assert!(line.as_object().unwrap().contains_key("consumer"));
    assert!(line["time"].as_str().unwrap().ends_with('Z'));
    assert!(line.get("request_payload").is_none() && line.get("response_text").is_none(), "{line}");
    assert!(!line.to_string().contains("the secret question"));

    assert_eq!(chat(&gw, "/jsonpayloads", ask).await, StatusCode::OK);
    let line = json_line("jsonpayloads").await;
    assert!(line["request_payload"].as_str().unwrap().contains("the secret question"));
    assert!(line["response_text"].as_str().unwrap().contains("Fibonacci"));
    assert!(!logs::all().contains("sk-never-logged"));
}

/// The binary prints JSON access lines bare on stdout: each is a whole JSON object.
#[tokio::test]
async fn the_binary_writes_each_json_access_line_alone() {
    let mock = MockUpstream::start("plain").await;
    let free = || TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let (proxy, admin) = (free(), free());
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yaml");
    std::fs::write(
        &config,
        format!(
            "proxy:\n  listen: [\"127.0.0.1:{proxy}\"]\nadmin:\n  listen: [\"127.0.0.1:{admin}\"]\n  keys: [k]\n\
             metrics:\n  listen: \"127.0.0.1:0\"\nstatus:\n  listen: \"127.0.0.1:0\"\n\
             store:\n  path: \"{}\"\nlog:\n  access_log_format: json\n",
            dir.path().join("data").display()
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["-c", config.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let route = json!({"paths": ["/plain"], "upstream": {"nodes": {mock.node(): 1}}}).to_string();
    let mut answer = None;
    for _ in 0..400 {
        let put = http.put(format!("http://127.0.0.1:{admin}/apisix/admin/routes/plain")).header("x-api-key", "k");
        if let Ok(response) = put.body(route.clone()).send().await {
            answer = Some((response.status(), response.text().await.unwrap_or_default()));
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let (status, body) = answer.expect("the admin listener never answered");
    assert!(status.is_success(), "the route write answered {status}: {body}");
    let mut served = false;
    for _ in 0..100 {
        let response = http.get(format!("http://127.0.0.1:{proxy}/plain")).send().await.unwrap();
        if response.status() == StatusCode::OK {
            served = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(served);
    // SIGTERM: the node stops in order and flushes its log writer.
    let stopped = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(stopped.success());
    let stdout = child.stdout.take().unwrap();
    child.wait().unwrap();
    let lines: Vec<String> = BufReader::new(stdout).lines().map_while(Result::ok).collect();
    let access: Vec<Value> = lines
        .iter()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let line = access.iter().find(|l| l["route"] == "plain" && l["status"] == 200);
    assert!(line.is_some(), "no JSON access line in {lines:?}");
    assert!(lines.iter().any(|l| l.contains("switchyard started") && !l.starts_with('{')), "{lines:?}");
}
