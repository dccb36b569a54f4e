//! `ai-proxy-multi`: selection, fallback, outcomes, health, and the seeds' routes.

use std::time::Duration;

use futures_util::StreamExt;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::harness::{Behaviour, MockUpstream, TestGateway};

fn instance(name: &str, mock: &MockUpstream, weight: u32, priority: i64) -> Value {
    json!({"name": name, "provider": "openai-compatible", "weight": weight, "priority": priority,
        "auth": {"header": {"Authorization": format!("Bearer key-{name}")}},
        "options": {"model": format!("model-{name}")},
        "override": {"endpoint": format!("{}/v1/chat/completions", mock.base_url())}})
}

async fn route(gw: &TestGateway, id: &str, plugin: Value) {
    gw.put_route(json!({"id": id, "paths": [format!("/{id}")], "plugins": {"ai-proxy-multi": plugin}})).await;
}

async fn chat(gw: &TestGateway, id: &str) -> reqwest::Response {
    gw.http
        .post(gw.url(&format!("/{id}")))
        .body(r#"{"messages":[{"role":"user","content":"hi"}]}"#)
        .send()
        .await
        .unwrap()
}

fn answered_by(response: &reqwest::Response) -> (u16, String, String) {
    let header = |name: &str| response.headers().get(name).map_or(String::new(), |v| v.to_str().unwrap().to_string());
    (response.status().as_u16(), header("x-switchyard-instance"), header("x-switchyard-attempts"))
}

#[tokio::test]
async fn weights_four_to_one_give_eight_to_two_and_each_attempt_uses_its_instance_options() {
    let (a, b) = (MockUpstream::llm("a").await, MockUpstream::llm("b").await);
    let gw = TestGateway::start().await;
    route(&gw, "wrr", json!({"instances": [instance("a", &a, 4, 0), instance("b", &b, 1, 0)]})).await;
    for _ in 0..10 {
        assert_eq!(chat(&gw, "wrr").await.status(), StatusCode::OK);
    }
    assert_eq!((a.hits(), b.hits()), (8, 2));
    let sent: Value = serde_json::from_slice(&b.last().body).unwrap();
    assert_eq!(sent["model"], "model-b");
    assert_eq!(b.last().headers["authorization"], "Bearer key-b");
}

#[tokio::test]
async fn falls_back_to_lower_priority_on_429_and_5xx() {
    let (primary, fallback) = (MockUpstream::llm("primary").await, MockUpstream::llm("fallback").await);
    let gw = TestGateway::start().await;
    route(
        &gw,
        "fb",
        json!({"fallback_strategy": ["http_429", "http_5xx"],
        "instances": [instance("fallback", &fallback, 1, 1), instance("primary", &primary, 1, 2)]}),
    )
    .await;
    assert_eq!(answered_by(&chat(&gw, "fb").await), (200, "primary".into(), "1".into()));

    primary.fail_with(503);
    assert_eq!(answered_by(&chat(&gw, "fb").await), (200, "fallback".into(), "2".into()));

    primary.fail_with(429);
    let response = chat(&gw, "fb").await;
    assert_eq!(answered_by(&response), (200, "fallback".into(), "2".into()));
    let body: Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
    assert_eq!(body["model"], "model-fallback", "the retry rebuilt the body with the fallback's options");
    // A 429 without Retry-After cools the primary down at once: the next request skips it.
    assert_eq!(answered_by(&chat(&gw, "fb").await), (200, "fallback".into(), "1".into()));
    assert_eq!(primary.hits(), 3);
}

#[tokio::test]
async fn falls_back_on_connection_refused_and_on_a_silent_upstream() {
    let (slow, fallback) = (MockUpstream::llm("slow").await, MockUpstream::llm("fallback").await);
    let gw = TestGateway::start().await;
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let mut refused = instance("refused", &fallback, 1, 3);
    refused["override"]["endpoint"] = json!(format!("http://{dead}/v1/chat/completions"));
    route(
        &gw,
        "transport",
        json!({"fallback_strategy": "http_5xx", "timeout": 300,
        "instances": [refused, instance("slow", &slow, 1, 2), instance("fallback", &fallback, 1, 1)]}),
    )
    .await;
    slow.behave(Behaviour { delay_ms: Some(2000), ..Behaviour::default() });
    assert_eq!(answered_by(&chat(&gw, "transport").await), (200, "fallback".into(), "3".into()));
    assert_eq!(slow.hits(), 1);
}

#[tokio::test]
async fn without_a_strategy_failures_are_returned_as_they_are() {
    let (primary, fallback) = (MockUpstream::llm("primary").await, MockUpstream::llm("fallback").await);
    let gw = TestGateway::start().await;
    route(
        &gw,
        "nostrategy",
        json!({"instances": [instance("primary", &primary, 1, 2), instance("fallback", &fallback, 1, 1)]}),
    )
    .await;
    primary.fail_with(429);
    assert_eq!(answered_by(&chat(&gw, "nostrategy").await), (429, "primary".into(), "1".into()));
    assert_eq!(fallback.hits(), 0);
}

#[tokio::test]
async fn client_errors_are_not_retried_unless_listed() {
    let (primary, fallback) = (MockUpstream::llm("primary").await, MockUpstream::llm("fallback").await);
    let gw = TestGateway::start().await;
    let instances = json!([instance("primary", &primary, 1, 2), instance("fallback", &fallback, 1, 1)]);
    route(&gw, "c4xx", json!({"fallback_strategy": ["http_429", "http_5xx"], "instances": instances})).await;
    for status in [400, 401, 404] {
        primary.fail_with(status);
        assert_eq!(chat(&gw, "c4xx").await.status().as_u16(), status);
    }
    assert_eq!(fallback.hits(), 0);

    route(&gw, "listed", json!({"fallback_http_statuses": [401], "instances": instances})).await;
    primary.fail_with(401);
    assert_eq!(answered_by(&chat(&gw, "listed").await), (200, "fallback".into(), "2".into()));
}

#[tokio::test]
async fn outcomes_502_when_all_fail_last_status_at_max_retries_503_when_nothing_is_pickable() {
    let mocks = [MockUpstream::llm("x").await, MockUpstream::llm("y").await, MockUpstream::llm("z").await];
    let gw = TestGateway::start().await;
    let instances =
        json!([instance("x", &mocks[0], 1, 3), instance("y", &mocks[1], 1, 2), instance("z", &mocks[2], 1, 1)]);
    for mock in &mocks {
        mock.fail_with(500);
    }
    route(&gw, "allfail", json!({"fallback_strategy": "http_5xx", "instances": instances})).await;
    let response = chat(&gw, "allfail").await;
    assert_eq!(answered_by(&response), (502, "z".into(), "3".into()));
    assert!(response.text().await.unwrap().contains("mock z says 500"), "the last upstream body");

    route(&gw, "capped", json!({"fallback_strategy": "http_5xx", "max_retries": 1, "instances": instances})).await;
    let response = chat(&gw, "capped").await;
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(response.headers()["x-switchyard-attempts"], "2");

    // Everyone asks us to wait: 503 with the earliest return, and no provider is called.
    for mock in &mocks {
        mock.behave(Behaviour { status: Some(429), retry_after: Some("30".into()), ..Behaviour::default() });
    }
    route(&gw, "waiting", json!({"fallback_strategy": "http_429", "instances": instances})).await;
    assert_eq!(chat(&gw, "waiting").await.status(), StatusCode::BAD_GATEWAY);
    let before: usize = mocks.iter().map(MockUpstream::hits).sum();
    let response = chat(&gw, "waiting").await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let wait: u64 = response.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=30).contains(&wait), "{wait}");
    assert!(serde_json::from_str::<Value>(&response.text().await.unwrap()).unwrap()["error"]["message"].is_string());
    assert_eq!(mocks.iter().map(MockUpstream::hits).sum::<usize>(), before);
}

#[tokio::test]
async fn slow_failures_outside_the_retry_window_are_not_retried() {
    let (primary, fallback) = (MockUpstream::llm("primary").await, MockUpstream::llm("fallback").await);
    let gw = TestGateway::start().await;
    route(
        &gw,
        "window",
        json!({"fallback_strategy": "http_5xx", "retry_on_failure_within_ms": 100,
        "instances": [instance("primary", &primary, 1, 2), instance("fallback", &fallback, 1, 1)]}),
    )
    .await;
    primary.behave(Behaviour { status: Some(500), delay_ms: Some(250), ..Behaviour::default() });
    assert_eq!(chat(&gw, "window").await.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(fallback.hits(), 0);
    primary.fail_with(500);
    assert_eq!(chat(&gw, "window").await.status(), StatusCode::OK, "a fast failure is retried");
}

#[tokio::test]
async fn chash_keeps_a_key_on_one_instance() {
    let mocks = [MockUpstream::llm("a").await, MockUpstream::llm("b").await, MockUpstream::llm("c").await];
    let gw = TestGateway::start().await;
    route(
        &gw,
        "sticky",
        json!({"balancer": {"algorithm": "chash", "hash_on": "header", "key": "x-user"},
        "instances": [instance("a", &mocks[0], 1, 0), instance("b", &mocks[1], 1, 0), instance("c", &mocks[2], 1, 0)]}),
    )
    .await;
    let mut owners = std::collections::HashSet::new();
    for user in ["alice", "bob", "carol", "dave", "erin", "frank"] {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..4 {
            let response =
                gw.http.post(gw.url("/sticky")).header("x-user", user).body(r#"{"messages":[]}"#).send().await.unwrap();
            seen.insert(answered_by(&response).1);
        }
        assert_eq!(seen.len(), 1, "{user} moved between instances: {seen:?}");
        owners.extend(seen);
    }
    assert!(owners.len() >= 2, "keys spread: {owners:?}");
}

#[tokio::test]
async fn retry_after_cools_an_instance_down_and_it_comes_back() {
    let (primary, fallback) = (MockUpstream::llm("primary").await, MockUpstream::llm("fallback").await);
    let gw = TestGateway::start().await;
    route(
        &gw,
        "cool",
        json!({"fallback_strategy": "http_429",
        "instances": [instance("primary", &primary, 1, 2), instance("fallback", &fallback, 1, 1)]}),
    )
    .await;
    primary.behave(Behaviour { status: Some(429), retry_after: Some("1".into()), ..Behaviour::default() });
    assert_eq!(answered_by(&chat(&gw, "cool").await).1, "fallback");
    primary.behave(Behaviour::default());
    assert_eq!(answered_by(&chat(&gw, "cool").await), (200, "fallback".into(), "1".into()), "primary is cooling");
    assert_eq!(primary.hits(), 1);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(answered_by(&chat(&gw, "cool").await).1, "primary");
}

#[tokio::test]
async fn passive_checks_take_a_failing_instance_out_of_rotation() {
    let (flaky, steady) = (MockUpstream::llm("flaky").await, MockUpstream::llm("steady").await);
    let gw = TestGateway::start().await;
    route(
        &gw,
        "passive",
        json!({"fallback_strategy": "http_5xx",
        "instances": [instance("flaky", &flaky, 1, 2), instance("steady", &steady, 1, 1)]}),
    )
    .await;
    flaky.fail_with(502);
    for _ in 0..6 {
        assert_eq!(chat(&gw, "passive").await.status(), StatusCode::OK);
    }
    // Three failures trip the default passive check; later requests skip the instance.
    assert_eq!(flaky.hits(), 3);
}

#[tokio::test]
async fn active_checks_start_with_the_config_and_steer_traffic() {
    let (checked, other) = (MockUpstream::llm("checked").await, MockUpstream::llm("other").await);
    let gw = TestGateway::start().await;
    let mut probed = instance("checked", &checked, 1, 2);
    probed["checks"] = json!({"active": {"type": "http", "http_path": "/health", "timeout": 0.5,
        "healthy": {"interval": 0.05, "successes": 1}, "unhealthy": {"interval": 0.05, "http_failures": 1}}});
    checked.fail_with(500);
    route(&gw, "active", json!({"instances": [probed, instance("other", &other, 1, 1)]})).await;
    for _ in 0..100 {
        if checked.hits_on("/health") >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(checked.hits_on("/health") >= 2, "probes run before any request");
    assert_eq!(answered_by(&chat(&gw, "active").await).1, "other");
    assert_eq!(checked.hits_on("/v1"), 0);
    checked.behave(Behaviour::default());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(answered_by(&chat(&gw, "active").await).1, "checked");

    // Removing the route stops its probes.
    gw.admin(Method::DELETE, "/apisix/admin/routes/active", None).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let after_delete = checked.hits_on("/health");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(checked.hits_on("/health"), after_delete);
}

fn probed_instance(name: &str, mock: &MockUpstream) -> Value {
    let mut probed = instance(name, mock, 1, 1);
    probed["checks"] = json!({"active": {"type": "http", "http_path": "/health", "timeout": 0.5,
        "healthy": {"interval": 0.05, "successes": 1}, "unhealthy": {"interval": 0.05, "http_failures": 1}}});
    probed
}

fn background_tasks(status: &Value) -> (u64, u64) {
    let tasks = &status["background_tasks"];
    (tasks["running"].as_u64().unwrap(), tasks["started"].as_u64().unwrap())
}

#[tokio::test]
async fn validating_or_refusing_a_route_with_active_checks_sends_no_probe() {
    let checked = MockUpstream::llm("checked").await;
    let gw = TestGateway::start().await;
    // Disabled: validated by the admin API, never compiled into the live snapshot.
    gw.put_route(json!({"id": "off", "paths": ["/off"], "status": 0,
        "plugins": {"ai-proxy-multi": {"instances": [probed_instance("checked", &checked)]}}}))
        .await;
    // Refused: the first instance compiles (with its probe), the second does not.
    let mut broken = instance("broken", &checked, 1, 1);
    broken["provider"] = json!("no-such-provider");
    let (status, _) = gw
        .admin(
            Method::PUT,
            "/apisix/admin/routes/refused",
            Some(json!({"paths": ["/refused"],
                "plugins": {"ai-proxy-multi": {"instances": [probed_instance("checked", &checked), broken]}}})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(checked.hits_on("/health"), 0, "no probe for a config that is not live");
    assert_eq!(background_tasks(&gw.status().await), (0, 0));
}

#[tokio::test]
async fn an_unchanged_route_keeps_its_probe_task_across_reloads() {
    let checked = MockUpstream::llm("checked").await;
    let gw = TestGateway::start().await;
    route(&gw, "probed", json!({"instances": [probed_instance("checked", &checked)]})).await;
    assert_eq!(background_tasks(&gw.status().await), (1, 1));
    // Other writes rebuild the snapshot; the probed route is reused, and so is its task.
    for i in 0..3 {
        route(&gw, &format!("other-{i}"), json!({"instances": [instance("x", &checked, 1, 1)]})).await;
    }
    assert_eq!(background_tasks(&gw.status().await), (1, 1));
    // A changed route is a new compiled plugin: the old task stops, a new one starts.
    let mut changed = probed_instance("checked", &checked);
    changed["weight"] = json!(2);
    route(&gw, "probed", json!({"instances": [changed]})).await;
    assert_eq!(background_tasks(&gw.status().await), (1, 2));
    gw.admin(Method::DELETE, "/apisix/admin/routes/probed", None).await;
    let revision = gw.status().await["revision"].as_u64().unwrap();
    gw.wait_for_revision(revision).await;
    assert_eq!(background_tasks(&gw.status().await), (0, 2));
}

#[tokio::test]
async fn health_and_round_robin_survive_a_reload_of_an_unchanged_route() {
    let (primary, fallback) = (MockUpstream::llm("primary").await, MockUpstream::llm("fallback").await);
    let gw = TestGateway::start().await;
    route(
        &gw,
        "kept",
        json!({"fallback_strategy": "http_429",
        "instances": [instance("primary", &primary, 1, 2), instance("fallback", &fallback, 1, 1)]}),
    )
    .await;
    primary.behave(Behaviour { status: Some(429), retry_after: Some("30".into()), ..Behaviour::default() });
    chat(&gw, "kept").await;
    primary.behave(Behaviour::default());
    gw.put_route(json!({"id": "unrelated", "paths": ["/unrelated"], "upstream": {"nodes": {"127.0.0.1:1": 1}}})).await;
    assert_eq!(answered_by(&chat(&gw, "kept").await).1, "fallback", "the cooldown survived the reload");
    assert_eq!(primary.hits(), 1);
}

#[tokio::test]
async fn a_stream_that_breaks_after_the_first_byte_ends_with_an_error_not_a_fallback() {
    let (primary, fallback) = (MockUpstream::llm("primary").await, MockUpstream::llm("fallback").await);
    let gw = TestGateway::start().await;
    route(
        &gw,
        "midstream",
        json!({"fallback_strategy": ["http_429", "http_5xx"],
        "instances": [instance("primary", &primary, 1, 2), instance("fallback", &fallback, 1, 1)]}),
    )
    .await;
    let response = gw
        .http
        .post(gw.url("/midstream"))
        .header("x-mock-break-after", "2")
        .body(r#"{"stream":true,"messages":[]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(answered_by(&response).1, "primary");
    let mut text = String::new();
    let mut body = response.bytes_stream();
    while let Some(Ok(frame)) = body.next().await {
        text.push_str(&String::from_utf8_lossy(&frame));
    }
    assert!(text.contains("event: error") && !text.contains("[DONE]"), "{text}");
    assert_eq!(fallback.hits(), 0);
}

#[tokio::test]
async fn invalid_configs_name_the_field() {
    let gw = TestGateway::start().await;
    let mock = MockUpstream::llm("m").await;
    let cases = [
        (json!({"instances": []}), "plugins.ai-proxy-multi.instances"),
        (
            json!({"instances": [instance("a", &mock, 1, 0), instance("a", &mock, 1, 0)]}),
            "instances[0] and instances[1]",
        ),
        (
            json!({"instances": [{"name": "a", "provider": "openai", "auth": {}, "weight": -1}]}),
            "plugins.ai-proxy-multi.instances[0].weight",
        ),
        (
            json!({"instances": [{"name": "a", "provider": "openai", "auth": {}}]}),
            "plugins.ai-proxy-multi.instances[0].weight",
        ),
        (
            json!({"fallback_strategy": "sometimes", "instances": [instance("a", &mock, 1, 0)]}),
            "plugins.ai-proxy-multi.fallback_strategy",
        ),
        (
            json!({"balancer": {"algorithm": "random"}, "instances": [instance("a", &mock, 1, 0)]}),
            "plugins.ai-proxy-multi.balancer.algorithm",
        ),
    ];
    for (plugin, expected) in cases {
        let route = json!({"id": "x", "paths": ["/x"], "plugins": {"ai-proxy-multi": plugin}});
        let (status, reply) = gw.admin(Method::PUT, "/apisix/admin/routes", Some(route)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{plugin}");
        let message = reply["error_msg"].as_str().unwrap();
        assert!(message.contains(expected), "{message:?} should mention {expected:?}");
    }
}

#[tokio::test]
async fn seed_routes_work_as_written_and_the_higher_priority_number_is_tried_first() {
    let (deepseek, openai) = (MockUpstream::llm("deepseek").await, MockUpstream::llm("openai").await);
    let (d, o) = (deepseek.base_url(), openai.base_url());
    let gw = TestGateway::start_in(tempfile::tempdir().unwrap(), move |config| {
        use switchyard::config::ProviderConfig;
        config.providers.insert("deepseek".into(), ProviderConfig { base_url: Some(d) });
        config.providers.insert("openai".into(), ProviderConfig { base_url: Some(o) });
    })
    .await;
    // 004, as written.
    gw.put_route(json!({"id": "deepseek-multi-route", "paths": ["/deepseek"], "plugins": {"ai-proxy-multi": {
        "fallback_strategy": ["http_429", "http_5xx"],
        "instances": [
            {"name": "deepseek-primary", "provider": "deepseek", "auth": {"header": {"Authorization": "Bearer sk-d"}},
             "options": {"model": "deepseek-chat"}, "weight": 1, "priority": 1},
            {"name": "openai-fallback", "provider": "openai", "auth": {"header": {"Authorization": "Bearer sk-o"}},
             "options": {"model": "gpt-4o-mini"}, "weight": 1, "priority": 2}]}}}))
        .await;
    let response = gw
        .http
        .post(gw.url("/deepseek"))
        .body(r#"{"messages": [{ "role": "user", "content": "What is the Fibonacci sequence?" }]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(answered_by(&response).1, "openai-fallback", "priority 2 beats priority 1");
    assert_eq!(openai.last().path, "/v1/chat/completions");
    openai.fail_with(429);
    let response = gw.http.post(gw.url("/deepseek")).body(r#"{"messages":[]}"#).send().await.unwrap();
    assert_eq!(answered_by(&response), (200, "deepseek-primary".into(), "2".into()));
    assert_eq!(deepseek.last().path, "/chat/completions");

    // 003's hybrid route, as written (self-hosted endpoint pointed at the mock).
    gw.put_route(json!({"id": "hybrid-route", "paths": ["/hybrid"], "plugins": {"ai-proxy-multi": {
        "fallback_strategy": ["http_429", "http_5xx"],
        "instances": [
            {"name": "self-hosted", "provider": "openai-compatible", "auth": {"header": {"Authorization": "Bearer placeholder"}},
             "options": {"model": "meta-llama/Llama-3.1-8B-Instruct"},
             "override": {"endpoint": format!("{}/v1/chat/completions", deepseek.base_url())}, "weight": 1, "priority": 1},
            {"name": "cloud-fallback", "provider": "openai", "auth": {"header": {"Authorization": "Bearer sk-o"}},
             "options": {"model": "gpt-4o-mini"}, "weight": 1, "priority": 2}]}}}))
    .await;
    let response = gw.http.post(gw.url("/hybrid")).body(r#"{"messages":[]}"#).send().await.unwrap();
    assert_eq!(answered_by(&response), (200, "self-hosted".into(), "2".into()), "the cloud instance is rate limited");
}
