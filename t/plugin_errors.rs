//! A plugin that breaks is named in the log; the client sees a plain 500. Upstream failures keep
//! their cause in the access log.

use std::sync::Arc;

use reqwest::StatusCode;
use serde_json::json;
use switchyard_sdk::{
    derive_phases, BuildContext, ConfigError, Ctx, Flow, Plugin, PluginError, PluginFactory, Request,
};

use crate::harness::{logs, TestGateway};

struct Broken;

#[derive_phases]
#[async_trait::async_trait]
impl Plugin for Broken {
    async fn access(&self, _ctx: &mut Ctx, _req: &mut Request) -> Result<Flow, PluginError> {
        Err(PluginError("the quota backend is on fire".into()))
    }
}

struct BrokenFactory;

impl PluginFactory for BrokenFactory {
    fn name(&self) -> &'static str {
        "always-broken"
    }
    fn priority(&self) -> i32 {
        2000
    }
    fn build(&self, _config: &serde_json::Value, _ctx: &dyn BuildContext) -> Result<Arc<dyn Plugin>, ConfigError> {
        Ok(Arc::new(Broken))
    }
}

async fn logging_gateway(extra: bool) -> TestGateway {
    logs::capture();
    TestGateway::start_custom(
        tempfile::tempdir().unwrap(),
        |config| config.log.access_log = true,
        |registry| {
            if extra {
                registry.register(Arc::new(BrokenFactory));
            }
        },
    )
    .await
}

#[tokio::test]
async fn a_failing_plugin_is_named_in_the_log_and_hidden_from_the_client() {
    let gw = logging_gateway(true).await;
    gw.put_route(json!({"id": "broken-plugin", "paths": ["/broken"], "plugins": {"always-broken": {}},
        "upstream": {"nodes": {"127.0.0.1:9": 1}}}))
        .await;
    let response = gw.http.get(gw.url("/broken")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let body = response.text().await.unwrap();
    assert!(!body.contains("on fire"), "internal details stay in the log: {body}");
    let line = logs::access_line("broken-plugin").await;
    assert!(line.contains("plugin `always-broken` failed: the quota backend is on fire"), "{line}");
}

#[tokio::test]
async fn an_upstream_failure_keeps_its_cause_in_the_access_log() {
    let gw = logging_gateway(false).await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    gw.put_route(json!({"id": "refused-upstream", "paths": ["/refused"],
        "upstream": {"nodes": {closed.to_string(): 1}}}))
        .await;
    let response = gw.http.get(gw.url("/refused")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
    let line = logs::access_line("refused-upstream").await;
    assert!(line.contains("failed to connect to the upstream: "), "{line}");
    assert!(line.to_lowercase().contains("refused"), "the OS's reason is kept: {line}");
}

#[tokio::test]
async fn no_log_line_shows_an_auth_query_secret() {
    let gw = logging_gateway(false).await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    gw.put_route(json!({"id": "query-secret", "paths": ["/qs"], "plugins": {"ai-proxy": {
        "provider": "openai-compatible", "auth": {"query": {"api-key": "qs-secret-4711"}},
        "override": {"endpoint": format!("http://{closed}/v1/chat/completions")}}}}))
        .await;
    let response = gw.http.post(gw.url("/qs")).body(r#"{"messages":[]}"#).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
    let line = logs::access_line("query-secret").await;
    assert!(line.contains("failed to connect"), "{line}");
    assert!(!logs::all().contains("qs-secret-4711"), "a query secret reached the log");
}
