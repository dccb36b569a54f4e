//! The whole exposition, after traffic that fills every family, through `promtool check metrics`
//! (Debian's `prometheus` package; `make test` installs it).

use std::io::Write;
use std::process::{Command, Stdio};

use reqwest::StatusCode;
use serde_json::json;
use switchyard::resource::api_key::sha256_hex;

use super::metrics::{chat, instance};
use crate::harness::otlp::OtlpReceiver;
use crate::harness::{Behaviour, MockUpstream, TestGateway};

/// APISIX's own names break two of promtool's naming rules; they are kept as APISIX has them so
/// its dashboards and alert rules work unchanged. These are the only lint findings allowed.
const APISIX_NAMING: [&str; 5] = [
    "apisix_bandwidth counter metrics should have \"_total\" suffix",
    "apisix_http_status counter metrics should have \"_total\" suffix",
    "apisix_llm_completion_tokens counter metrics should have \"_total\" suffix",
    "apisix_llm_prompt_tokens counter metrics should have \"_total\" suffix",
    "apisix_http_requests_total non-counter metrics should not have \"_total\" suffix",
];

/// A node that has served every kind of traffic, so that every family has series: plain and AI
/// routes, streams, a fallback with an instance cooling down, traces exported.
pub struct Busy {
    pub gw: TestGateway,
    _mocks: Vec<MockUpstream>,
    _collector: OtlpReceiver,
}

pub async fn busy_gateway() -> Busy {
    let collector = OtlpReceiver::start().await;
    let endpoint = collector.endpoint();
    let gw = TestGateway::start_in(tempfile::tempdir().unwrap(), move |c| {
        c.tracing.otlp.endpoint = Some(endpoint);
        c.tracing.batch.scheduled_delay_ms = 10;
    })
    .await;
    let (primary, fallback, plain) =
        (MockUpstream::llm("primary").await, MockUpstream::llm("fallback").await, MockUpstream::start("plain").await);
    gw.put_route(json!({"id": "multi", "paths": ["/multi"], "plugins": {"ai-proxy-multi": {
        "fallback_strategy": ["http_429", "http_5xx"],
        "instances": [instance("primary", &primary, 2), instance("fallback", &fallback, 1)]}}}))
        .await;
    gw.put_route(json!({"id": "plain", "paths": ["/plain"], "upstream": {"nodes": {plain.node(): 1}}})).await;
    assert_eq!(chat(&gw, "/multi", json!({"messages": []})).await, StatusCode::OK);
    assert_eq!(chat(&gw, "/multi", json!({"stream": true, "messages": []})).await, StatusCode::OK);
    primary.behave(Behaviour { status: Some(429), retry_after: Some("60".into()), ..Behaviour::default() });
    assert_eq!(chat(&gw, "/multi", json!({"messages": []})).await, StatusCode::OK);
    assert_eq!(gw.get("/plain").await.0, StatusCode::OK);
    let vendor = json!({"display_name": "vendor", "provider": "p", "adapter": "openai", "secret": "sk-v",
        "api_base": fallback.base_url()});
    let key = gw.create_v1("/admin/v1/provider_keys", vendor).await;
    let model = json!({"display_name": "alias", "provider": "p", "model_name": "m", "provider_key_id": key["id"]});
    gw.create_v1("/admin/v1/models", model).await;
    let caller = json!({"key_hash": sha256_hex("sk-caller"), "allowed_models": "*"});
    gw.create_v1("/admin/v1/apikeys", caller).await;
    let response = gw
        .http
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth("sk-caller")
        .body(json!({"model": "alias", "messages": []}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    response.bytes().await.unwrap();
    collector.wait_for(8).await;
    Busy { gw, _mocks: vec![primary, fallback, plain], _collector: collector }
}

/// Runs `promtool check metrics` on `text`: its exit code and findings.
fn promtool(text: &str) -> (Option<i32>, String) {
    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = child.expect("promtool is installed (make test installs Debian's prometheus package)");
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    let findings = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output.status.code(), findings)
}

#[tokio::test]
async fn the_whole_exposition_passes_promtool() {
    let busy = busy_gateway().await;
    let text = busy.gw.scrape().await;
    let (code, findings) = promtool(&text);
    // 0: clean; 3: lint findings only (1 would be an exposition promtool cannot parse).
    assert!(matches!(code, Some(0 | 3)), "promtool failed ({code:?}): {findings}");
    let unexpected: Vec<&str> =
        findings.lines().map(str::trim).filter(|l| !l.is_empty() && !APISIX_NAMING.contains(l)).collect();
    assert!(unexpected.is_empty(), "promtool findings beyond APISIX's own names: {unexpected:#?}");

    // The check itself can fail: a broken exposition and a badly named metric are reported.
    let (code, _) = promtool("apisix_http_status{code=\"200\" 1\n");
    assert_eq!(code, Some(1));
    let (_, findings) = promtool("# HELP switchyard_x x\n# TYPE switchyard_x counter\nswitchyard_x 1\n");
    assert!(findings.contains("switchyard_x counter metrics should have"), "{findings}");
}
