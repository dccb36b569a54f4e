//! The model API's `rate_limit` on API keys and models (AISIX): every field, the AND of the
//! key's and the model's limits, the 429 (`Retry-After`, AISIX's body, Anthropic's on
//! `/v1/messages`), the `x-ratelimit-*` headers, tokens settled when a stream ends, places in flight
//! given back (also when the client leaves), a routing alias's targets, and counters shared by two
//! nodes through one real Redis.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use switchyard::limits_store::config::RedisConfig;
use switchyard::resource::api_key::sha256_hex;

use crate::harness::redis::Redis;
use crate::harness::{logs, Etcd, MockUpstream, TestGateway};

/// `{"model":"a","messages":[...],"max_tokens":48}`: its estimate is its length / 4 + 48.
fn body(model: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": "hi there"}], "max_tokens": 48})
}

/// A provider key to `mock`, direct models `a` (with `a_limit`) and `b` (unlimited), and caller
/// keys `sk-1` (with `key_limit`) and `sk-2` (unlimited), both allowed every model.
async fn setup(gw: &TestGateway, mock: &MockUpstream, key_limit: Value, a_limit: Value) {
    let key = gw
        .create_v1(
            "/admin/v1/provider_keys",
            json!({"display_name": "p", "provider": "deepseek", "adapter": "openai", "secret": "sk-up",
                "api_base": mock.base_url()}),
        )
        .await;
    for (alias, limit) in [("a", a_limit), ("b", Value::Null)] {
        let mut model = json!({"display_name": alias, "provider": "deepseek", "model_name": format!("up-{alias}"),
            "provider_key_id": key["id"]});
        if !limit.is_null() {
            model["rate_limit"] = limit;
        }
        gw.create_v1("/admin/v1/models", model).await;
    }
    let mut limited = json!({"key_hash": sha256_hex("sk-1"), "allowed_models": "*"});
    if !key_limit.is_null() {
        limited["rate_limit"] = key_limit;
    }
    gw.create_v1("/admin/v1/apikeys", limited).await;
    gw.create_v1("/admin/v1/apikeys", json!({"key_hash": sha256_hex("sk-2"), "allowed_models": "*"})).await;
}

async fn chat(gw: &TestGateway, key: &str, body: &Value) -> reqwest::Response {
    gw.http
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(key)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap()
}

/// Sends and reads the whole answer; its status and body.
async fn status_of(gw: &TestGateway, key: &str, body: &Value) -> (StatusCode, Value) {
    let response = chat(gw, key, body).await;
    let status = response.status();
    let text = response.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

/// Waits until the current `window` has at least `room` left, so a test's requests all fall in
/// one window (windows are aligned to the Unix epoch).
async fn within_one_window(window: Duration, room: Duration) {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64;
    let left = window.as_millis() as u64 - now % window.as_millis() as u64;
    if left < room.as_millis() as u64 {
        tokio::time::sleep(Duration::from_millis(left + 20)).await;
    }
}

async fn json_of(response: reqwest::Response) -> Value {
    serde_json::from_str(&response.text().await.unwrap()).unwrap()
}

fn retry_after(response: &reqwest::Response) -> Option<u64> {
    response.headers().get("retry-after").map(|v| v.to_str().unwrap().parse().unwrap())
}

#[tokio::test]
async fn each_request_limit_admits_its_count_then_answers_429_with_retry_after() {
    let mock = MockUpstream::llm("deepseek").await;
    let gw = TestGateway::start().await;
    setup(&gw, &mock, Value::Null, Value::Null).await;
    for (field, window) in [("rps", 1), ("rpm", 60), ("rph", 3600), ("rpd", 86_400)] {
        let hash = sha256_hex(&format!("sk-{field}"));
        let limit = json!({"key_hash": hash, "allowed_models": "*", "rate_limit": {field: 2}});
        gw.create_v1("/admin/v1/apikeys", limit).await;
        within_one_window(Duration::from_secs(window), Duration::from_millis(500)).await;
        let key = format!("sk-{field}");
        for _ in 0..2 {
            let ok = chat(&gw, &key, &body("b")).await;
            assert_eq!(ok.status(), StatusCode::OK, "{field}");
            assert_eq!(ok.headers()["x-ratelimit-limit-requests"], "2", "{field}");
            ok.text().await.unwrap();
        }
        let refused = chat(&gw, &key, &body("b")).await;
        assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS, "{field}");
        let retry = retry_after(&refused).expect("Retry-After");
        assert!((1..=window).contains(&retry), "{field}: Retry-After {retry}");
        assert!(refused.headers().get("x-ratelimit-limit-requests").is_none(), "only served answers carry them");
        let refused = json_of(refused).await;
        assert_eq!(
            refused,
            json!({"error": {"message": format!("request limit exceeded: {field} of this API key"),
                "type": "rate_limit_exceeded", "code": "rate_limit_exceeded"}})
        );
    }
    assert_eq!(status_of(&gw, "sk-2", &body("b")).await.0, StatusCode::OK, "other keys are not limited");
}

#[tokio::test]
async fn tpm_and_tpd_reserve_an_estimate_then_settle_to_the_usage() {
    let mock = MockUpstream::llm("deepseek").await;
    let gw = TestGateway::start().await;
    setup(&gw, &mock, Value::Null, Value::Null).await;
    let estimate = (body("b").to_string().len() as u64).div_ceil(4) + 48;
    for field in ["tpm", "tpd"] {
        let key = format!("sk-{field}");
        let limit = json!({"key_hash": sha256_hex(&key), "allowed_models": "*", "rate_limit": {field: 100}});
        gw.create_v1("/admin/v1/apikeys", limit).await;
        within_one_window(Duration::from_secs(60), Duration::from_secs(2)).await;
        let first = chat(&gw, &key, &body("b")).await;
        assert_eq!(first.status(), StatusCode::OK);
        assert_eq!(first.headers()["x-ratelimit-limit-tokens"], "100");
        let remaining: u64 = first.headers()["x-ratelimit-remaining-tokens"].to_str().unwrap().parse().unwrap();
        assert_eq!(remaining, 100 - estimate, "{field}: the estimate is reserved at admission");
        let reset = first.headers()["x-ratelimit-reset-tokens"].to_str().unwrap().to_string();
        assert!(reset.ends_with('s') && reset.trim_end_matches('s').parse::<u64>().unwrap() >= 1, "{reset}");
        first.text().await.unwrap();
        // Settled to the mock's 58 tokens (t/fixtures/chat.json): 58 < 100 admits one more; then
        // 116 tokens are spent.
        assert_eq!(status_of(&gw, &key, &body("b")).await.0, StatusCode::OK, "{field}");
        let refused = chat(&gw, &key, &body("b")).await;
        assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS, "{field}");
        assert!(retry_after(&refused).is_some());
        let message = json_of(refused).await["error"]["message"].clone();
        assert_eq!(message, format!("token limit exceeded: {field} of this API key"));
    }
    assert_eq!(mock.hits(), 4);
}

#[tokio::test]
async fn concurrency_frees_a_place_when_a_request_ends_or_its_client_leaves() {
    let mock = MockUpstream::llm("deepseek").await;
    let gw = TestGateway::start().await;
    setup(&gw, &mock, json!({"concurrency": 1}), Value::Null).await;
    let slow = |gw: &TestGateway| {
        gw.http
            .post(gw.url("/v1/chat/completions"))
            .bearer_auth("sk-1")
            .header("x-mock-delay-ms", "400")
            .body(body("b").to_string())
            .send()
    };
    let in_flight = tokio::spawn(slow(&gw));
    tokio::time::sleep(Duration::from_millis(150)).await;
    let refused = chat(&gw, "sk-1", &body("b")).await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(retry_after(&refused).is_none(), "no Retry-After for concurrency");
    assert_eq!(json_of(refused).await["error"]["message"], "concurrency limit exceeded: concurrency of this API key");
    let done = in_flight.await.unwrap().unwrap();
    assert_eq!(done.headers()["x-ratelimit-limit-concurrent"], "1");
    assert_eq!(done.headers()["x-ratelimit-remaining-concurrent"], "0");
    done.text().await.unwrap();
    assert_eq!(status_of(&gw, "sk-1", &body("b")).await.0, StatusCode::OK, "the place was given back");

    // A client that leaves before the answer gives its place back too.
    let abandoned = tokio::time::timeout(Duration::from_millis(100), slow(&gw)).await;
    assert!(abandoned.is_err(), "the client gave up");
    let mut freed = false;
    for _ in 0..50 {
        let (status, _) = status_of(&gw, "sk-1", &body("b")).await;
        if status == StatusCode::OK {
            freed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(freed, "the abandoned request still holds the key's place");
}

#[tokio::test]
async fn a_streams_tokens_are_charged_when_it_ends_and_its_place_given_back() {
    let mock = MockUpstream::llm("deepseek").await;
    let gw = TestGateway::start().await;
    setup(&gw, &mock, json!({"tpm": 40, "concurrency": 1}), Value::Null).await;
    within_one_window(Duration::from_secs(60), Duration::from_secs(3)).await;
    let stream =
        json!({"model": "b", "stream": true, "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]});
    // Each stream reports 17 tokens: 0, 17 and 34 are under 40; then 51 is spent.
    for (i, expected) in
        [StatusCode::OK, StatusCode::OK, StatusCode::OK, StatusCode::TOO_MANY_REQUESTS].iter().enumerate()
    {
        let response = chat(&gw, "sk-1", &stream).await;
        assert_eq!(response.status(), *expected, "stream {i}");
        if *expected == StatusCode::OK {
            assert_eq!(response.headers()["x-ratelimit-limit-tokens"], "40");
        }
        let text = response.text().await.unwrap();
        if *expected == StatusCode::OK {
            assert!(text.contains("[DONE]"));
        } else {
            assert!(text.contains("token limit exceeded"), "{text}");
        }
        // The settlement runs when the stream ends.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn key_and_model_limits_both_apply_and_a_models_counter_is_shared_by_every_key() {
    let mock = MockUpstream::llm("deepseek").await;
    let gw = TestGateway::start().await;
    setup(&gw, &mock, json!({"rpm": 3}), json!({"rpm": 2})).await;
    within_one_window(Duration::from_secs(60), Duration::from_secs(3)).await;
    assert_eq!(status_of(&gw, "sk-1", &body("a")).await.0, StatusCode::OK);
    let ok = chat(&gw, "sk-1", &body("a")).await;
    assert_eq!(ok.headers()["x-ratelimit-remaining-requests"], "0", "the tightest limit: model a's");
    ok.text().await.unwrap();
    let (status, refused) = status_of(&gw, "sk-1", &body("a")).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(refused["error"]["message"], "request limit exceeded: rpm of model `a`");
    let (status, _) = status_of(&gw, "sk-2", &body("a")).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "model a's counter is every caller's");
    // The key's third request, to an unlimited model: admitted; its fourth is refused by the key.
    assert_eq!(status_of(&gw, "sk-1", &body("b")).await.0, StatusCode::OK);
    let (status, refused) = status_of(&gw, "sk-1", &body("b")).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(refused["error"]["message"], "request limit exceeded: rpm of this API key");
    assert_eq!(mock.hits(), 3, "refused requests never reach the provider");
    let plain = chat(&gw, "sk-2", &body("b")).await;
    assert!(plain.headers().get("x-ratelimit-limit-requests").is_none(), "no limit, no header");
}

#[tokio::test]
async fn messages_refusals_use_the_anthropic_envelope() {
    let mock = MockUpstream::llm("deepseek").await;
    let gw = TestGateway::start().await;
    setup(&gw, &mock, json!({"rpm": 1}), Value::Null).await;
    within_one_window(Duration::from_secs(60), Duration::from_secs(2)).await;
    let messages = json!({"model": "b", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]});
    let send = || {
        gw.http
            .post(gw.url("/v1/messages"))
            .header("x-api-key", "sk-1")
            .header("anthropic-version", "2023-06-01")
            .body(messages.to_string())
            .send()
    };
    let first = send().await.unwrap();
    assert_eq!(first.status(), StatusCode::OK, "{:?}", first.text().await);
    let refused = send().await.unwrap();
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(retry_after(&refused).is_some());
    assert_eq!(
        json_of(refused).await,
        json!({"type": "error", "error": {"type": "rate_limit_error",
            "message": "request limit exceeded: rpm of this API key"}})
    );
}

#[tokio::test]
async fn rate_limit_is_a_closed_object_of_positive_numbers() {
    let gw = TestGateway::start().await;
    let hash = sha256_hex("sk-x");
    let cases = [
        (json!({"rpx": 1}), "rpx"),
        (json!({"rpm": 0}), "rate_limit.rpm"),
        (json!({"concurrency": -1}), "concurrency"),
        (json!({"tpm": "many"}), "tpm"),
    ];
    for (limit, named) in cases {
        let key = json!({"key_hash": hash, "allowed_models": "*", "rate_limit": limit});
        let (status, reply) = gw.admin_v1(Method::POST, "/admin/v1/apikeys", Some(key)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{reply}");
        assert!(reply["error_msg"].as_str().unwrap().contains(named), "{reply}");
    }
    let model = json!({"display_name": "m", "provider": "p", "model_name": "m", "provider_key_id": "k",
        "rate_limit": {"tpd": 0}});
    let (status, reply) = gw.admin_v1(Method::POST, "/admin/v1/models", Some(model)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(reply["error_msg"].as_str().unwrap().contains("rate_limit.tpd"), "{reply}");
    let every = json!({"tpm": 1, "tpd": 2, "rps": 3, "rpm": 4, "rph": 5, "rpd": 6, "concurrency": 7});
    let key =
        gw.create_v1("/admin/v1/apikeys", json!({"key_hash": hash, "allowed_models": "*", "rate_limit": every})).await;
    assert_eq!(key["value"]["rate_limit"], every, "stored as given");
}

#[tokio::test]
async fn a_routing_aliases_target_with_a_spent_limit_is_skipped_for_the_next() {
    let mock = MockUpstream::llm("deepseek").await;
    let gw = TestGateway::start().await;
    setup(&gw, &mock, Value::Null, json!({"rpm": 1})).await;
    within_one_window(Duration::from_secs(60), Duration::from_secs(2)).await;
    gw.create_v1(
        "/admin/v1/models",
        json!({"display_name": "r", "routing": {"targets": [{"model": "a"}, {"model": "b"}]}}),
    )
    .await;
    let first = chat(&gw, "sk-1", &body("r")).await;
    assert_eq!(first.headers()["x-switchyard-instance"], "a");
    first.text().await.unwrap();
    let second = chat(&gw, "sk-1", &body("r")).await;
    assert_eq!(second.status(), StatusCode::OK);
    assert_eq!(second.headers()["x-switchyard-instance"], "b", "a's rpm is spent: the next target serves");
    second.text().await.unwrap();
    // A routing model's own limit applies to requests to it.
    let limited = json!({"display_name": "r1", "rate_limit": {"rpm": 1}, "routing": {"targets": [{"model": "b"}]}});
    gw.create_v1("/admin/v1/models", limited).await;
    assert_eq!(status_of(&gw, "sk-1", &body("r1")).await.0, StatusCode::OK);
    let (status, refused) = status_of(&gw, "sk-1", &body("r1")).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(refused["error"]["message"], "request limit exceeded: rpm of model `r1`");
}

/// A node whose `rate_limit.redis` is `port` on loopback; its config store is `etcd`'s when
/// given (nodes sharing config share the API keys' ids, which name their counters).
async fn node_on_redis(port: u16, timeout_ms: u64, etcd: Option<&Etcd>) -> TestGateway {
    TestGateway::start_in(tempfile::tempdir().unwrap(), move |config| {
        if let Some(etcd) = etcd {
            etcd.configure(config, "default");
        }
        config.rate_limit.redis = Some(RedisConfig {
            host: "127.0.0.1".into(),
            port,
            username: None,
            password: None,
            database: 0,
            timeout_ms,
            ssl: false,
            ssl_verify: true,
        });
    })
    .await
}

#[tokio::test]
async fn two_nodes_on_one_redis_share_a_keys_rpm() {
    let (redis, etcd) = (Redis::start().await, Etcd::start().await);
    let mock = MockUpstream::llm("deepseek").await;
    let a = node_on_redis(redis.port, 1000, Some(&etcd)).await;
    let b = node_on_redis(redis.port, 1000, Some(&etcd)).await;
    setup(&a, &mock, json!({"rpm": 3, "concurrency": 5}), Value::Null).await;
    // Node b serves the config once its watch delivered it.
    for _ in 0..500 {
        if status_of(&b, "sk-2", &body("b")).await.0 == StatusCode::OK {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    within_one_window(Duration::from_secs(60), Duration::from_secs(3)).await;
    let mut statuses = Vec::new();
    for gw in [&a, &b, &a, &b] {
        statuses.push(status_of(gw, "sk-1", &body("b")).await.0);
    }
    assert_eq!(statuses, [StatusCode::OK, StatusCode::OK, StatusCode::OK, StatusCode::TOO_MANY_REQUESTS]);
}

#[tokio::test]
async fn an_unreachable_redis_falls_back_to_counting_in_process_with_a_rate_limited_warning() {
    logs::capture();
    let mut redis = Redis::start().await;
    let port = redis.port;
    redis.stop();
    let mock = MockUpstream::llm("deepseek").await;
    let gw = node_on_redis(port, 200, None).await;
    setup(&gw, &mock, json!({"rpm": 2}), Value::Null).await;
    within_one_window(Duration::from_secs(60), Duration::from_secs(5)).await;
    let before = logs::all().matches("counted in this process only").count();
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(status_of(&gw, "sk-1", &body("b")).await.0);
    }
    assert_eq!(statuses[..2], [StatusCode::OK, StatusCode::OK]);
    assert_eq!(statuses[2..], [StatusCode::TOO_MANY_REQUESTS, StatusCode::TOO_MANY_REQUESTS]);
    let warnings = logs::all().matches("counted in this process only").count() - before;
    assert!((1..=2).contains(&warnings), "{warnings} warnings for 4 requests");
}
