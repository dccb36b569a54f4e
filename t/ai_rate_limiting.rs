//! `ai-rate-limiting`: limits, quota headers and `Retry-After`, per-consumer counters, strategies,
//! the reservation bound under fifty concurrent requests (one node, two nodes on one Redis),
//! `ai-proxy-multi` moving past a spent instance, streams charged at their end, Redis down.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::consumers::{ai_route, gateway_for, json_of, put_consumer};
use crate::harness::redis::Redis;
use crate::harness::{MockUpstream, TestGateway};

/// The mock's usage for one chat completion (t/fixtures/chat.json).
pub const TOTAL: u64 = 58;

pub fn limiting(config: Value) -> Value {
    json!({"ai-rate-limiting": config})
}

pub async fn post(gw: &TestGateway, path: &str, body: &str) -> reqwest::Response {
    gw.http.post(gw.url(path)).header("apikey", "jack-key").body(body.to_string()).send().await.unwrap()
}

pub async fn with_jack(mock: &MockUpstream) -> TestGateway {
    let gw = gateway_for(mock).await;
    put_consumer(&gw, json!({"username": "jack", "plugins": {"key-auth": {"key": "jack-key"}}})).await;
    put_consumer(&gw, json!({"username": "jill", "plugins": {"key-auth": {"key": "jill-key"}}})).await;
    gw
}

/// `{"messages":...,"max_tokens":48}`: 64 bytes → 16 prompt tokens estimated, 48 completion.
pub const BODY: &str = r#"{"messages":[{"role":"user","content":"hi there"}],"max_tokens":48}"#;

#[tokio::test]
async fn a_spent_limit_rejects_with_headers_retry_after_and_the_configured_answer() {
    let mock = MockUpstream::llm("openai").await;
    let gw = with_jack(&mock).await;
    let config = json!({"limit": 100, "time_window": 86400, "rejected_code": 429, "rejected_msg": "slow down"});
    gw.put_route(ai_route("rl", "/rl", json!({}), limiting(config))).await;

    let first = post(&gw, "/rl", BODY).await;
    assert_eq!(first.status(), StatusCode::OK);
    assert_eq!(first.headers()["x-ai-ratelimit-limit-openai"], "100");
    let remaining: u64 = first.headers()["x-ai-ratelimit-remaining-openai"].to_str().unwrap().parse().unwrap();
    assert_eq!(remaining, 100 - (BODY.len() as u64).div_ceil(4) - 48, "the estimate is reserved at admission");
    let reset: u64 = first.headers()["x-ai-ratelimit-reset-openai"].to_str().unwrap().parse().unwrap();
    assert!((1..=86400).contains(&reset));
    first.text().await.unwrap();
    // Settled to 58 real tokens: 42 left, so one more is admitted, then the limit is spent.
    assert_eq!(post(&gw, "/rl", BODY).await.status(), StatusCode::OK);
    let refused = post(&gw, "/rl", BODY).await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(refused.headers()["x-ai-ratelimit-remaining-openai"], "0");
    let retry: u64 = refused.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=86400).contains(&retry));
    assert_eq!(json_of(refused).await, json!({"error_msg": "slow down"}));
    assert_eq!(mock.hits(), 2);

    // Another consumer has its own counter.
    let jill = gw.http.post(gw.url("/rl")).header("apikey", "jill-key").body(BODY).send().await.unwrap();
    assert_eq!(jill.status(), StatusCode::OK);
}

#[tokio::test]
async fn strategies_count_what_they_say() {
    let mock = MockUpstream::llm("openai").await;
    let gw = with_jack(&mock).await;
    // completion_tokens: 48 per request (estimate 48): limit 100 admits 3 (0, 48, 96 < 100).
    let cases = [
        (json!({"limit_strategy": "completion_tokens"}), 100, 3),
        // prompt_tokens: 10 real per request, estimate 16: limit 30 admits 0, 10, 20 → 3.
        (json!({"limit_strategy": "prompt_tokens"}), 30, 3),
        // expression: 10 + 2 * 48 = 106 per request: limit 200 admits 0, 106 → 2.
        (json!({"limit_strategy": "expression", "cost_expr": "input_tokens + 2 * output_tokens"}), 200, 2),
    ];
    for (i, (strategy, limit, admitted)) in cases.into_iter().enumerate() {
        let mut config = json!({"limit": limit, "time_window": 86400});
        config.as_object_mut().unwrap().extend(strategy.as_object().unwrap().clone());
        let path = format!("/s{i}");
        gw.put_route(ai_route(&format!("s{i}"), &path, json!({}), limiting(config))).await;
        let mut ok = 0;
        for _ in 0..5 {
            let response = post(&gw, &path, BODY).await;
            if response.status() == StatusCode::OK {
                ok += 1;
            }
            response.text().await.unwrap();
        }
        assert_eq!(ok, admitted, "case {i}");
    }
    let bad = json!({"id": "bad", "paths": ["/bad"], "plugins": limiting(json!({"limit": 1, "time_window": 1,
        "limit_strategy": "expression", "cost_expr": "os.exit()"}))});
    let (status, reply) = gw.admin(reqwest::Method::PUT, "/apisix/admin/routes", Some(bad)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{reply}");
    assert!(reply["error_msg"].as_str().unwrap().contains("cost_expr"));
}

#[tokio::test]
async fn rules_key_counters_by_variable() {
    let mock = MockUpstream::llm("openai").await;
    let gw = with_jack(&mock).await;
    let config =
        json!({"rules": [{"count": 60, "time_window": 86400, "key": "$http_x_team", "header_prefix": "team"}]});
    gw.put_route(ai_route("rules", "/rules", json!({}), limiting(config))).await;
    let team = |name: &'static str| {
        gw.http.post(gw.url("/rules")).header("apikey", "jack-key").header("x-team", name).body(BODY).send()
    };
    let first = team("a").await.unwrap();
    assert_eq!(first.status(), StatusCode::OK);
    assert_eq!(first.headers()["x-ai-ratelimit-limit-team"], "60");
    first.text().await.unwrap();
    assert_eq!(team("a").await.unwrap().status(), StatusCode::OK, "58 < 60 after settling");
    assert_eq!(team("a").await.unwrap().status(), StatusCode::SERVICE_UNAVAILABLE, "the default rejected_code");
    assert_eq!(team("b").await.unwrap().status(), StatusCode::OK, "team b has its own counter");
}

/// Fifty requests at once against a limit that admits about ten: the tokens admitted never exceed
/// the limit plus one request's estimate.
pub async fn fifty_at_once(gateways: &[&TestGateway], path: &str) -> u64 {
    let mut tasks = Vec::new();
    for i in 0..50 {
        let gw = gateways[i % gateways.len()];
        let (http, url) = (gw.http.clone(), gw.url(path));
        tasks.push(tokio::spawn(async move {
            let response = http.post(url).header("apikey", "jack-key").body(BODY).send().await.unwrap();
            let status = response.status();
            response.text().await.unwrap();
            status
        }));
    }
    let mut admitted = 0;
    for task in tasks {
        if task.await.unwrap() == StatusCode::OK {
            admitted += 1;
        }
    }
    admitted
}

pub const LIMIT: u64 = 600;
pub const ESTIMATE: u64 = 16 + 48;

#[tokio::test]
async fn fifty_concurrent_requests_admit_at_most_the_limit_plus_one_estimate() {
    let mock = MockUpstream::llm("openai").await;
    let gw = with_jack(&mock).await;
    gw.put_route(ai_route("burst", "/burst", json!({}), limiting(json!({"limit": LIMIT, "time_window": 3600})))).await;
    let admitted = fifty_at_once(&[&gw], "/burst").await;
    assert!(admitted >= 1);
    assert!(admitted * TOTAL <= LIMIT + ESTIMATE, "{admitted} requests admitted: {} tokens", admitted * TOTAL);
}

#[tokio::test]
async fn two_nodes_on_one_redis_share_the_bound() {
    let redis = Redis::start().await;
    let mock = MockUpstream::llm("openai").await;
    let (a, b) = (with_jack(&mock).await, with_jack(&mock).await);
    let config = json!({"limit": LIMIT, "time_window": 3600, "policy": "redis", "redis_host": "127.0.0.1",
        "redis_port": redis.port});
    for gw in [&a, &b] {
        gw.put_route(ai_route("shared", "/shared", json!({}), limiting(config.clone()))).await;
    }
    let admitted = fifty_at_once(&[&a, &b], "/shared").await;
    assert!(admitted >= 1);
    assert!(admitted * TOTAL <= LIMIT + ESTIMATE, "{admitted} requests admitted: {} tokens", admitted * TOTAL);
}

#[tokio::test]
async fn redis_down_serves_with_degradation_and_rejects_promptly_without() {
    let mut redis = Redis::start().await;
    let port = redis.port;
    redis.stop();
    let mock = MockUpstream::llm("openai").await;
    let gw = with_jack(&mock).await;
    let config = |degrade: bool| {
        json!({"limit": 1000, "time_window": 86400, "policy": "redis", "redis_host": "127.0.0.1", "redis_port": port,
            "redis_timeout": 300, "allow_degradation": degrade})
    };
    gw.put_route(ai_route("degrade", "/degrade", json!({}), limiting(config(true)))).await;
    gw.put_route(ai_route("strict", "/strict", json!({}), limiting(config(false)))).await;
    assert_eq!(post(&gw, "/degrade", BODY).await.status(), StatusCode::OK);
    let started = Instant::now();
    let refused = post(&gw, "/strict", BODY).await;
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(started.elapsed() < Duration::from_secs(2), "took {:?}", started.elapsed());
    assert_eq!(mock.hits(), 1);
}

#[tokio::test]
async fn a_stream_is_charged_with_the_usage_it_reports_at_its_end() {
    let mock = MockUpstream::llm("openai").await;
    let gw = with_jack(&mock).await;
    // The stream reports 17 tokens; the estimate is 16 + 10. Limit 40: 17 and 34 stay under it.
    gw.put_route(ai_route("stream", "/stream", json!({}), limiting(json!({"limit": 40, "time_window": 86400})))).await;
    let body = r#"{"messages":[{"role":"user","content":"hi"}],"stream":true,"max_tokens":10}"#;
    for expected in [StatusCode::OK, StatusCode::OK, StatusCode::OK, StatusCode::SERVICE_UNAVAILABLE] {
        let response = post(&gw, "/stream", body).await;
        assert_eq!(response.status(), expected);
        let text = response.text().await.unwrap();
        if expected == StatusCode::OK {
            assert!(text.contains("[DONE]"));
        }
        // The settlement runs when the stream ends.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn ai_proxy_multi_moves_past_a_spent_instance_only_when_its_strategy_says_so() {
    let mock = MockUpstream::llm("openai").await;
    let gw = with_jack(&mock).await;
    let instance = |name: &str, priority: i64| {
        json!({"name": name, "provider": "openai", "priority": priority, "weight": 1,
            "auth": {"header": {"Authorization": "Bearer sk"}}, "options": {"model": name}})
    };
    let route = |id: &str, strategy: Option<&str>| {
        let mut multi = json!({"instances": [instance("high", 10), instance("low", 0)]});
        if let Some(strategy) = strategy {
            multi["fallback_strategy"] = json!(strategy);
        }
        json!({"id": id, "paths": [format!("/{id}")], "plugins": {"key-auth": {}, "ai-proxy-multi": multi,
            "ai-rate-limiting": {"instances": [{"name": "high", "limit": 50, "time_window": 86400}],
                "limit": 100000, "time_window": 86400}}})
    };
    gw.put_route(route("spill", Some("rate_limiting"))).await;
    gw.put_route(route("stay", None)).await;
    for id in ["spill", "stay"] {
        let first = post(&gw, &format!("/{id}"), BODY).await;
        assert_eq!(first.headers()["x-switchyard-instance"], "high");
        first.text().await.unwrap();
    }
    let spilled = post(&gw, "/spill", BODY).await;
    assert_eq!(spilled.status(), StatusCode::OK);
    assert_eq!(spilled.headers()["x-switchyard-instance"], "low");
    let stayed = post(&gw, "/stay", BODY).await;
    assert_eq!(stayed.status(), StatusCode::SERVICE_UNAVAILABLE);
}
