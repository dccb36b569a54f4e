//! `ai-rate-limiting`'s Redis settings honoured against real servers: a password and an ACL user,
//! TLS (with and without checking the certificate), `policy: redis-cluster` on a real three-master
//! cluster, and the "counters unavailable" warning written a few times, not per request.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::ai_rate_limiting::{fifty_at_once, limiting, post, with_jack, BODY, ESTIMATE, LIMIT, TOTAL};
use crate::consumers::ai_route;
use crate::harness::redis::{Redis, RedisCluster, ACL_USER, PASSWORD};
use crate::harness::{logs, MockUpstream, TestGateway};

/// A limit of 100 tokens on Redis at `port`, with `extra` Redis fields: the first two requests
/// (settled to 58 tokens each) pass, then the limit is spent.
fn on_redis(port: u16, extra: Value) -> Value {
    let mut config = json!({"limit": 100, "time_window": 86400, "rejected_code": 429, "policy": "redis",
        "redis_host": "127.0.0.1", "redis_port": port, "redis_timeout": 500});
    config.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    limiting(config)
}

/// Three requests: counted in Redis they answer 200, 200, 429; a Redis the gateway cannot use
/// answers 503 (counters unavailable) and the provider is never called.
async fn counts(gw: &TestGateway, mock: &MockUpstream, path: &str) -> Vec<StatusCode> {
    let hits = mock.hits();
    let mut statuses = Vec::new();
    for _ in 0..3 {
        let response = post(gw, path, BODY).await;
        statuses.push(response.status());
        response.text().await.unwrap();
    }
    let served = statuses.iter().filter(|s| **s == StatusCode::OK).count();
    assert_eq!(mock.hits() - hits, served, "{path}: only served requests reach the provider");
    statuses
}

const COUNTED: [StatusCode; 3] = [StatusCode::OK, StatusCode::OK, StatusCode::TOO_MANY_REQUESTS];
const UNAVAILABLE: [StatusCode; 3] = [StatusCode::SERVICE_UNAVAILABLE; 3];

#[tokio::test]
async fn redis_password_and_acl_user_are_used_and_a_wrong_one_is_refused() {
    let redis = Redis::start_with_auth().await;
    let mock = MockUpstream::llm("openai").await;
    let gw = with_jack(&mock).await;
    let cases = [
        ("/default-user", json!({"redis_password": PASSWORD}), COUNTED),
        ("/acl-user", json!({"redis_username": ACL_USER.0, "redis_password": ACL_USER.1}), COUNTED),
        ("/wrong", json!({"redis_username": ACL_USER.0, "redis_password": "nope"}), UNAVAILABLE),
        ("/none", json!({}), UNAVAILABLE),
    ];
    for (path, extra, _) in &cases {
        gw.put_route(ai_route(&path[1..], path, json!({}), on_redis(redis.port, extra.clone()))).await;
    }
    for (path, _, expected) in cases {
        assert_eq!(counts(&gw, &mock, path).await, expected, "{path}");
    }
    let (_, route) = gw.admin(Method::GET, "/apisix/admin/routes/acl-user", None).await;
    assert_eq!(route["value"]["plugins"]["ai-rate-limiting"]["redis_password"], "***", "masked");
}

#[tokio::test]
async fn redis_ssl_reaches_a_tls_server_and_redis_ssl_verify_checks_its_certificate() {
    let redis = Redis::start_tls().await;
    let mock = MockUpstream::llm("openai").await;
    let gw = with_jack(&mock).await;
    let unchecked = json!({"redis_ssl": true, "redis_ssl_verify": false});
    gw.put_route(ai_route("tls", "/tls", json!({}), on_redis(redis.port, unchecked))).await;
    // The server's certificate is self-signed: checking it fails the connection.
    let checked = json!({"redis_ssl": true, "redis_ssl_verify": true});
    gw.put_route(ai_route("verified", "/verified", json!({}), on_redis(redis.port, checked))).await;
    assert_eq!(counts(&gw, &mock, "/tls").await, COUNTED);
    assert_eq!(counts(&gw, &mock, "/verified").await, UNAVAILABLE);
}

#[tokio::test]
async fn policy_redis_cluster_shares_the_reservation_bound_across_two_nodes() {
    let cluster = RedisCluster::start().await;
    let mock = MockUpstream::llm("openai").await;
    let (a, b) = (with_jack(&mock).await, with_jack(&mock).await);
    let config = json!({"limit": LIMIT, "time_window": 3600, "policy": "redis-cluster",
        "redis_cluster_nodes": cluster.addresses(), "redis_cluster_name": "limits", "redis_timeout": 1000});
    for gw in [&a, &b] {
        gw.put_route(ai_route("clustered", "/clustered", json!({}), limiting(config.clone()))).await;
    }
    let admitted = fifty_at_once(&[&a, &b], "/clustered").await;
    assert!(admitted >= 1);
    assert!(admitted * TOTAL <= LIMIT + ESTIMATE, "{admitted} requests admitted: {} tokens", admitted * TOTAL);
    assert!(cluster.key_counts().iter().sum::<u64>() >= 1, "the counters live in the cluster");

    // Rules reserve several counters per admission: their hash tag keeps them in one slot.
    let rules = json!({"rules": [{"count": 100, "time_window": 86400, "key": "$http_x_team"},
            {"count": 1000, "time_window": 86400, "key": "$remote_addr"}], "rejected_code": 429,
        "policy": "redis-cluster", "redis_cluster_nodes": cluster.addresses(), "redis_cluster_name": "limits"});
    a.put_route(ai_route("rules", "/rules", json!({}), limiting(rules))).await;
    let team = |name: &'static str| {
        a.http.post(a.url("/rules")).header("apikey", "jack-key").header("x-team", name).body(BODY).send()
    };
    for expected in [StatusCode::OK, StatusCode::OK, StatusCode::TOO_MANY_REQUESTS] {
        assert_eq!(team("a").await.unwrap().status(), expected);
    }
    assert_eq!(team("b").await.unwrap().status(), StatusCode::OK);
}

#[tokio::test]
async fn redis_cluster_fields_are_checked() {
    let gw = TestGateway::start().await;
    let cases = [
        (json!({"redis_cluster_name": "c"}), "redis_cluster_nodes"),
        (json!({"redis_cluster_nodes": ["127.0.0.1"], "redis_cluster_name": "c"}), "redis_cluster_nodes[0]"),
        (json!({"redis_cluster_nodes": ["127.0.0.1:7000"]}), "redis_cluster_name"),
    ];
    for (fields, named) in cases {
        let mut config = json!({"limit": 10, "time_window": 86400, "policy": "redis-cluster"});
        config.as_object_mut().unwrap().extend(fields.as_object().unwrap().clone());
        let route = json!({"id": "c", "paths": ["/c"], "plugins": limiting(config)});
        let (status, reply) = gw.admin(Method::PUT, "/apisix/admin/routes", Some(route)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{reply}");
        assert!(reply["error_msg"].as_str().unwrap().contains(named), "{reply}");
    }
}

#[tokio::test]
async fn an_unreachable_redis_is_reported_a_few_times_not_per_request() {
    logs::capture();
    let mut redis = Redis::start().await;
    let port = redis.port;
    redis.stop();
    let mock = MockUpstream::llm("openai").await;
    let gw = with_jack(&mock).await;
    for (id, degrade) in [("warn-degraded", true), ("warn-strict", false)] {
        let config = on_redis(port, json!({"allow_degradation": degrade, "redis_timeout": 200}));
        gw.put_route(ai_route(id, &format!("/{id}"), json!({}), config)).await;
    }
    for _ in 0..30 {
        assert_eq!(post(&gw, "/warn-degraded", BODY).await.status(), StatusCode::OK);
        assert_eq!(post(&gw, "/warn-strict", BODY).await.status(), StatusCode::SERVICE_UNAVAILABLE);
    }
    let lines = logs::all();
    for id in ["warn-degraded", "warn-strict"] {
        let warnings =
            lines.lines().filter(|l| l.contains("rate limit counters unavailable") && l.contains(id)).count();
        assert!((1..=2).contains(&warnings), "{id}: {warnings} warnings for 30 requests");
    }
}
