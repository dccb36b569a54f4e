//! Global rules as APISIX runs them: their rewrite and access phases before the route's rewrite,
//! their plugins first in every later phase and never merged with a consumer's, and on the model
//! API's built-in `/v1` routes too (all but authentication plugins: those routes have their own
//! keys), and on requests no route matches, which they may refuse before the 404.

use std::sync::{Arc, Mutex};

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use switchyard::resource::api_key::sha256_hex;
use switchyard_sdk::{
    derive_phases, BuildContext, ConfigError, Ctx, Flow, Outcome, Plugin, PluginError, PluginFactory, Request,
    UpstreamRequest,
};

use crate::consumers::put_consumer;
use crate::harness::{MockUpstream, TestGateway};

/// Every phase each plugin ran, as `phase:label`, in the order they ran.
type PhaseLog = Arc<Mutex<Vec<String>>>;

/// Records each of its phases in the shared log; `{"label": ..., "refuse_in": "access"}` answers
/// 403 in that phase.
struct Recorder {
    label: String,
    refuse_in: Option<String>,
    log: PhaseLog,
}

impl Recorder {
    fn note(&self, phase: &str) -> Flow {
        self.log.lock().unwrap().push(format!("{phase}:{}", self.label));
        if self.refuse_in.as_deref() == Some(phase) {
            let response = http::Response::builder().status(403).body(bytes::Bytes::from("refused")).unwrap();
            return Flow::Respond(response);
        }
        Flow::Continue
    }
}

#[derive_phases]
#[async_trait::async_trait]
impl Plugin for Recorder {
    async fn rewrite(&self, _ctx: &mut Ctx, _req: &mut Request) -> Result<Flow, PluginError> {
        Ok(self.note("rewrite"))
    }
    async fn access(&self, _ctx: &mut Ctx, _req: &mut Request) -> Result<Flow, PluginError> {
        Ok(self.note("access"))
    }
    async fn before_proxy(&self, _ctx: &mut Ctx, _upstream: &mut UpstreamRequest) -> Result<Flow, PluginError> {
        Ok(self.note("before_proxy"))
    }
    fn header_filter(&self, _ctx: &mut Ctx, _head: &mut http::response::Parts) {
        self.note("header_filter");
    }
    fn body_filter(&self, _ctx: &mut Ctx, _chunk: &mut bytes::Bytes, end_of_stream: bool) {
        if end_of_stream {
            self.note("body_filter");
        }
    }
    fn log(&self, _ctx: &Ctx, _outcome: &Outcome) {
        self.note("log");
    }
}

struct RecorderFactory {
    name: &'static str,
    priority: i32,
    log: PhaseLog,
}

impl PluginFactory for RecorderFactory {
    fn name(&self) -> &'static str {
        self.name
    }
    fn priority(&self) -> i32 {
        self.priority
    }
    fn build(&self, config: &Value, _ctx: &dyn BuildContext) -> Result<Arc<dyn Plugin>, ConfigError> {
        let label = config.get("label").and_then(Value::as_str).ok_or_else(|| ConfigError::new("label", "required"))?;
        let refuse_in = config.get("refuse_in").and_then(Value::as_str).map(str::to_string);
        Ok(Arc::new(Recorder { label: label.into(), refuse_in, log: Arc::clone(&self.log) }))
    }
}

/// A gateway with `record-low` (priority 1), `record-mid` (50) and `record-high` (100), all
/// writing to the returned log.
async fn recording_gateway() -> (TestGateway, PhaseLog) {
    let log = PhaseLog::default();
    let shared = Arc::clone(&log);
    let gw = TestGateway::start_custom(
        tempfile::tempdir().unwrap(),
        |_| {},
        move |registry| {
            for (name, priority) in [("record-low", 1), ("record-mid", 50), ("record-high", 100)] {
                registry.register(Arc::new(RecorderFactory { name, priority, log: Arc::clone(&shared) }));
            }
        },
    )
    .await;
    (gw, log)
}

/// The log of one request: cleared, the request sent and its body read, the log taken.
async fn phases_of(log: &PhaseLog, request: reqwest::RequestBuilder) -> (StatusCode, Vec<String>) {
    log.lock().unwrap().clear();
    let response = request.send().await.unwrap();
    let status = response.status();
    response.bytes().await.unwrap();
    // `log` runs as the response ends, just after the last byte is handed over.
    for _ in 0..100 {
        if log.lock().unwrap().last().is_some_and(|last| last.starts_with("log:")) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let phases = log.lock().unwrap().clone();
    (status, phases)
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

#[tokio::test]
async fn global_rewrite_and_access_run_before_the_routes_rewrite_and_globals_lead_every_later_phase() {
    let (gw, log) = recording_gateway().await;
    let mock = MockUpstream::start("m").await;
    put_consumer(
        &gw,
        json!({"username": "jack", "plugins": {"key-auth": {"key": "jack-key"}, "record-mid": {"label": "consumer"}}}),
    )
    .await;
    // The global rule's plugin has the lowest priority: it still runs first, and a consumer's
    // plugins merged into the route's chain do not move it among them.
    let (status, _) = gw
        .admin(
            Method::PUT,
            "/apisix/admin/global_rules/g",
            Some(json!({"plugins": {"key-auth": {}, "record-low": {"label": "global"}}})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    gw.put_route(json!({"id": "r", "uri": "/r", "plugins": {"record-high": {"label": "route"}},
        "upstream": {"nodes": {mock.node(): 1}}}))
        .await;

    let (status, phases) = phases_of(&log, gw.http.get(gw.url("/r")).header("apikey", "jack-key")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        phases,
        strings(&[
            "rewrite:global",
            "access:global",
            "rewrite:route",
            "rewrite:consumer",
            "access:route",
            "access:consumer",
            "before_proxy:global",
            "before_proxy:route",
            "before_proxy:consumer",
            "header_filter:global",
            "header_filter:route",
            "header_filter:consumer",
            "body_filter:global",
            "body_filter:route",
            "body_filter:consumer",
            "log:global",
            "log:route",
            "log:consumer",
        ])
    );

    // The global key-auth refuses in its rewrite: nothing of the route's runs but `log`.
    let (status, phases) = phases_of(&log, gw.http.get(gw.url("/r"))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(phases, strings(&["log:global", "log:route"]));
}

#[tokio::test]
async fn a_global_access_refusal_comes_before_the_routes_rewrite() {
    let (gw, log) = recording_gateway().await;
    let mock = MockUpstream::start("m").await;
    gw.admin(
        Method::PUT,
        "/apisix/admin/global_rules/g",
        Some(json!({"plugins": {"record-low": {"label": "global", "refuse_in": "access"}}})),
    )
    .await;
    gw.put_route(json!({"id": "r", "uri": "/r", "plugins": {"record-high": {"label": "route"}},
        "upstream": {"nodes": {mock.node(): 1}}}))
        .await;
    let (status, phases) = phases_of(&log, gw.http.get(gw.url("/r"))).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(phases, strings(&["rewrite:global", "access:global", "log:global", "log:route"]));
    assert_eq!(mock.hits(), 0);
}

#[tokio::test]
async fn global_rules_run_on_a_request_no_route_matches_then_it_is_answered_404() {
    let (gw, log) = recording_gateway().await;
    put_consumer(&gw, json!({"username": "jack", "plugins": {"key-auth": {"key": "jack-key"}}})).await;
    // Without global rules a stray request is answered 404 at once.
    let (status, phases) = phases_of(&log, gw.http.get(gw.url("/nowhere"))).await;
    assert_eq!((status, phases), (StatusCode::NOT_FOUND, Vec::new()));

    gw.admin(
        Method::PUT,
        "/apisix/admin/global_rules/g",
        Some(json!({"plugins": {"key-auth": {}, "record-low": {"label": "global"}}})),
    )
    .await;
    // A route elsewhere: `put_route` returns once the snapshot holding both is live.
    let mock = MockUpstream::start("m").await;
    gw.put_route(json!({"id": "r", "uri": "/r", "upstream": {"nodes": {mock.node(): 1}}})).await;
    // The global key-auth runs first: no key is a 401, not a 404.
    let (status, phases) = phases_of(&log, gw.http.get(gw.url("/nowhere"))).await;
    assert_eq!((status, phases), (StatusCode::UNAUTHORIZED, strings(&["log:global"])));
    // With the key they let it through, and it gets the same 404 as without global rules.
    let response = gw.http.get(gw.url("/nowhere")).header("apikey", "jack-key").send().await.unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let body: Value = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
    assert_eq!(body, json!({"error_msg": "404 Route Not Found"}));
    let (_, phases) = phases_of(&log, gw.http.get(gw.url("/nowhere")).header("apikey", "jack-key")).await;
    assert_eq!(phases, strings(&["rewrite:global", "access:global", "log:global"]));
    assert_eq!(mock.hits(), 0);
}

/// A provider key, a model alias `chat-model` served by `mock`, and a caller key.
async fn model_api_setup(gw: &TestGateway, mock: &MockUpstream, caller_key: &str) {
    let key = gw
        .create_v1(
            "/admin/v1/provider_keys",
            json!({"display_name": "pk", "provider": "openai", "adapter": "openai", "secret": "sk-provider",
            "api_base": mock.base_url()}),
        )
        .await;
    gw.create_v1(
        "/admin/v1/models",
        json!({"display_name": "chat-model", "provider": "openai", "model_name": "gpt-4o-mini",
        "provider_key_id": key["id"]}),
    )
    .await;
    gw.create_v1("/admin/v1/apikeys", json!({"key_hash": sha256_hex(caller_key), "allowed_models": "*"})).await;
}

fn model_api_chat(gw: &TestGateway, caller_key: Option<&str>) -> reqwest::RequestBuilder {
    let mut request = gw
        .http
        .post(gw.url("/v1/chat/completions"))
        .header("content-type", "application/json")
        .body(r#"{"model":"chat-model","messages":[{"role":"user","content":"hi there"}],"max_tokens":48}"#);
    if let Some(key) = caller_key {
        request = request.header("authorization", format!("Bearer {key}"));
    }
    request
}

#[tokio::test]
async fn the_model_apis_routes_run_global_rules_but_keep_their_own_authentication() {
    let (gw, log) = recording_gateway().await;
    let llm = MockUpstream::llm("llm").await;
    let plain = MockUpstream::start("plain").await;
    model_api_setup(&gw, &llm, "sk-caller").await;
    put_consumer(&gw, json!({"username": "jack", "plugins": {"key-auth": {"key": "jack-key"}}})).await;
    gw.put_route(json!({"id": "r", "uri": "/r", "upstream": {"nodes": {plain.node(): 1}}})).await;
    gw.admin(
        Method::PUT,
        "/apisix/admin/global_rules/g",
        Some(json!({"plugins": {"key-auth": {}, "record-low": {"label": "global"}}})),
    )
    .await;

    // Every phase of the global plugin ran on the built-in route; the global key-auth did not ask
    // the model API's caller for an `apikey`.
    let (status, phases) = phases_of(&log, model_api_chat(&gw, Some("sk-caller"))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        phases,
        strings(&[
            "rewrite:global",
            "access:global",
            "before_proxy:global",
            "header_filter:global",
            "body_filter:global",
            "log:global"
        ])
    );
    // The model API's own key is still required, and refused in its own error shape.
    let refused = model_api_chat(&gw, None).send().await.unwrap();
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    let body: Value = serde_json::from_str(&refused.text().await.unwrap()).unwrap();
    assert_eq!(body["error"]["code"], "invalid_api_key", "{body}");
    // User routes still get the global key-auth.
    assert_eq!(gw.http.get(gw.url("/r")).send().await.unwrap().status(), StatusCode::UNAUTHORIZED);
    assert_eq!(gw.http.get(gw.url("/r")).header("apikey", "jack-key").send().await.unwrap().status(), StatusCode::OK);

    // A global access-phase refusal stops a model API request before it reaches the provider.
    gw.admin(
        Method::PUT,
        "/apisix/admin/global_rules/g",
        Some(json!({"plugins": {"record-low": {"label": "global", "refuse_in": "access"}}})),
    )
    .await;
    let hits = llm.hits();
    let (status, _) = phases_of(&log, model_api_chat(&gw, Some("sk-caller"))).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(llm.hits(), hits);

    // Deleting the rule takes it off the built-in routes too.
    gw.admin(Method::DELETE, "/apisix/admin/global_rules/g", None).await;
    let (status, phases) = phases_of(&log, model_api_chat(&gw, Some("sk-caller"))).await;
    assert_eq!((status, phases), (StatusCode::OK, Vec::new()));
}

#[tokio::test]
async fn a_global_rate_limit_counts_the_model_apis_requests() {
    let gw = TestGateway::start().await;
    let llm = MockUpstream::llm("llm").await;
    model_api_setup(&gw, &llm, "sk-caller").await;
    let (status, reply) = gw
        .admin(
            Method::PUT,
            "/apisix/admin/global_rules/limits",
            Some(json!({"plugins": {"ai-rate-limiting": {"limit": 100, "time_window": 86400, "rejected_code": 429}}})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{reply}");
    let mut statuses = Vec::new();
    for _ in 0..4 {
        let response = model_api_chat(&gw, Some("sk-caller")).send().await.unwrap();
        statuses.push(response.status().as_u16());
        let quota_headers = response.headers().keys().any(|k| k.as_str().starts_with("x-ai-ratelimit-remaining"));
        assert!(quota_headers, "the quota headers: {:?}", response.headers());
        response.bytes().await.unwrap();
    }
    // 100 tokens: a request is admitted while the counter is under its limit, and counts 58 real
    // tokens (or its estimate of 70): the third finds it spent.
    assert_eq!(statuses, [200, 200, 429, 429]);
    assert_eq!(llm.hits(), 2, "refused requests never reach the provider");
}
