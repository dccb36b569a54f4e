//! Failover users can trust blind: each provider fault of the issue, through `ai-proxy-multi`
//! with a healthy second instance, asserting what the client saw (the whole answer once, one
//! well-formed stream, or a clean error) and what the faulty provider saw (attempts and gaps).

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::harness::faulty::{answer_text, FaultyUpstream, TOKENS};
use crate::harness::TestGateway;

/// An instance on `mock` whose model names the fault it plays.
fn instance(name: &str, mock: &FaultyUpstream, fault: &str, priority: i64) -> Value {
    json!({"name": name, "provider": "openai-compatible", "weight": 1, "priority": priority,
        "auth": {"header": {"Authorization": "Bearer key"}}, "options": {"model": fault},
        "override": {"endpoint": mock.endpoint()}})
}

/// A primary playing `fault` and a healthy fallback, each on its own mock.
async fn pair(fault: &str) -> (FaultyUpstream, FaultyUpstream, Value) {
    let (primary, fallback) = (FaultyUpstream::start("primary").await, FaultyUpstream::start("fallback").await);
    let instances = json!([instance("primary", &primary, fault, 2), instance("fallback", &fallback, "ok", 1)]);
    (primary, fallback, instances)
}

/// A route `/id` with `ai-proxy-multi` falling back on 429, 5xx and transport failures, plus
/// `extra` fields.
async fn route(gw: &TestGateway, id: &str, instances: &Value, extra: Value) {
    let mut plugin = json!({"fallback_strategy": ["http_429", "http_5xx"], "instances": instances});
    plugin.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    gw.put_route(json!({"id": id, "paths": [format!("/{id}")], "plugins": {"ai-proxy-multi": plugin}})).await;
}

/// What a client got from one request.
struct Answer {
    status: StatusCode,
    instance: String,
    attempts: String,
    body: String,
    took: Duration,
}

async fn ask(gw: &TestGateway, id: &str, stream: bool) -> Answer {
    let started = Instant::now();
    let body = json!({"stream": stream, "messages": [{"role": "user", "content": "count to sixty"}]});
    let response = gw.http.post(gw.url(&format!("/{id}"))).body(body.to_string()).send().await.unwrap();
    let header = |name: &str| response.headers().get(name).map_or(String::new(), |v| v.to_str().unwrap().to_string());
    let (status, instance, attempts) =
        (response.status(), header("x-switchyard-instance"), header("x-switchyard-attempts"));
    let body = response.text().await.unwrap();
    Answer { status, instance, attempts, body, took: started.elapsed() }
}

/// An event stream as the client read it.
#[derive(Debug)]
struct Stream {
    text: String,
    done: bool,
    errors: usize,
    role_chunks: usize,
    ids: Vec<String>,
    models: Vec<String>,
    usage: Option<Value>,
    /// Events after `[DONE]` or after an error event (none in a well-formed stream).
    after_end: usize,
}

fn read_stream(body: &str) -> Stream {
    assert!(body.ends_with("\n\n"), "the stream ends with a whole event: {body:?}");
    let mut stream = Stream {
        text: String::new(),
        done: false,
        errors: 0,
        role_chunks: 0,
        ids: Vec::new(),
        models: Vec::new(),
        usage: None,
        after_end: 0,
    };
    for event in body.split("\n\n").filter(|e| !e.is_empty()) {
        if stream.done || stream.errors > 0 {
            stream.after_end += 1;
        }
        if event.starts_with("event: error") {
            stream.errors += 1;
            continue;
        }
        let data = event.strip_prefix("data: ").unwrap_or_else(|| panic!("not a data event: {event:?}"));
        if data == "[DONE]" {
            stream.done = true;
            continue;
        }
        let Ok(chunk) = serde_json::from_str::<Value>(data) else { continue };
        stream.ids.push(chunk["id"].as_str().unwrap_or("").to_string());
        stream.models.push(chunk["model"].as_str().unwrap_or("").to_string());
        if chunk["choices"][0]["delta"]["role"] == "assistant" {
            stream.role_chunks += 1;
        }
        if let Some(text) = chunk["choices"][0]["delta"]["content"].as_str() {
            stream.text.push_str(text);
        }
        if chunk["usage"].is_object() {
            stream.usage = Some(chunk["usage"].clone());
        }
    }
    stream
}

/// The whole answer, once, in one well-formed stream that ends with `[DONE]`.
fn assert_whole(stream: &Stream) {
    assert_eq!(stream.text, answer_text(0), "the whole answer, once");
    assert!(stream.done && stream.errors == 0 && stream.after_end == 0, "{stream:?}");
    assert_eq!(stream.role_chunks, 1, "one opening chunk");
    assert!(stream.ids.windows(2).all(|w| w[0] == w[1]), "one id: {:?}", stream.ids);
}

/// A cut answer that says so: the delivered tokens, then the error event, never `[DONE]`.
fn assert_cut_after(stream: &Stream, tokens: usize) {
    assert_eq!(stream.text, answer_text(0)[..answer_text(0).len() - answer_text(tokens).len()]);
    assert!(!stream.done && stream.errors == 1 && stream.after_end == 0, "{stream:?}");
}

fn gaps(hits: &[crate::harness::faulty::Hit]) -> Vec<Duration> {
    hits.windows(2).map(|w| w[1].at - w[0].at).collect()
}

// 1. 429 with Retry-After.
#[tokio::test]
async fn a_429_whose_retry_after_fits_the_wait_budget_is_waited_out_on_the_same_instance() {
    let gw = TestGateway::start().await;
    let (primary, fallback, instances) = pair("429-once-after-1").await;
    route(&gw, "wait", &instances, json!({"retry_after_max_wait_ms": 1500})).await;
    let answer = ask(&gw, "wait", false).await;
    assert_eq!((answer.status, answer.instance.as_str(), answer.attempts.as_str()), (StatusCode::OK, "primary", "2"));
    let hits = primary.hits();
    assert_eq!(hits.len(), 2);
    assert!(gaps(&hits)[0] >= Duration::from_secs(1), "never twice within the window asked for: {:?}", gaps(&hits));
    assert!(fallback.hits().is_empty());
}

#[tokio::test]
async fn a_429_whose_retry_after_is_too_long_cools_the_instance_and_falls_back() {
    let gw = TestGateway::start().await;
    let (primary, fallback, instances) = pair("429-after-2").await;
    route(&gw, "cool", &instances, json!({"retry_after_max_wait_ms": 1000})).await;
    for _ in 0..3 {
        let answer = ask(&gw, "cool", false).await;
        assert_eq!((answer.status, answer.instance.as_str()), (StatusCode::OK, "fallback"));
        assert!(answer.took < Duration::from_millis(900), "no waiting: {:?}", answer.took);
    }
    assert_eq!(primary.hits().len(), 1, "cooling for the 2 s it asked for");
    assert_eq!(fallback.hits().len(), 3);

    // A wait that would outlast the request's deadline is not waited either.
    let (primary, _, instances) = pair("429-once-after-1").await;
    route(&gw, "deadline", &instances, json!({"retry_after_max_wait_ms": 1500, "max_stream_duration_ms": 800})).await;
    assert_eq!(ask(&gw, "deadline", false).await.instance, "fallback");
    assert_eq!(primary.hits().len(), 1);
}

// 2. 429 forever, no Retry-After.
#[tokio::test]
async fn a_429_without_retry_after_falls_back_at_once_and_spares_the_instance() {
    let gw = TestGateway::start().await;
    let (primary, _, instances) = pair("429").await;
    route(&gw, "limited", &instances, json!({})).await;
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(3) {
        let answer = ask(&gw, "limited", false).await;
        assert_eq!((answer.status, answer.instance.as_str()), (StatusCode::OK, "fallback"));
        let body: Value = serde_json::from_str(&answer.body).unwrap();
        assert_eq!(body["choices"][0]["message"]["content"], answer_text(0));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let hits = primary.hits();
    assert!((1..=4).contains(&hits.len()), "{} attempts on a rate-limited instance in 3 s", hits.len());
}

// 3. 500 once, then 200.
#[tokio::test]
async fn a_5xx_is_retried_on_the_same_instance_after_a_short_jittered_pause() {
    let gw = TestGateway::start().await;
    let (primary, fallback, instances) = pair("500-once").await;
    route(&gw, "again", &instances, json!({"same_instance_retries": 1})).await;
    let answer = ask(&gw, "again", true).await;
    assert_eq!((answer.instance.as_str(), answer.attempts.as_str()), ("primary", "2"));
    assert_whole(&read_stream(&answer.body));
    let gap = gaps(&primary.hits())[0];
    assert!(gap >= Duration::from_millis(50) && gap < Duration::from_millis(600), "{gap:?}");
    assert!(fallback.hits().is_empty());

    // Without same-instance retries the fallback answers.
    let (primary, fallback, instances) = pair("500-once").await;
    route(&gw, "moveon", &instances, json!({})).await;
    assert_eq!(ask(&gw, "moveon", false).await.instance, "fallback");
    assert_eq!((primary.hits().len(), fallback.hits().len()), (1, 1));
}

// 4. 503 forever.
#[tokio::test]
async fn a_503_forever_falls_back_and_the_instance_sees_a_bounded_number_of_attempts() {
    let gw = TestGateway::start().await;
    let (primary, _, instances) = pair("503").await;
    route(&gw, "down", &instances, json!({})).await;
    for _ in 0..10 {
        let answer = ask(&gw, "down", false).await;
        assert_eq!((answer.status, answer.instance.as_str()), (StatusCode::OK, "fallback"));
    }
    assert_eq!(primary.hits().len(), 3, "the passive check trips after three");
}

// 5. Connection reset before any response head.
#[tokio::test]
async fn a_reset_before_the_head_is_retried_then_falls_back() {
    let gw = TestGateway::start().await;
    let (primary, fallback, instances) = pair("reset").await;
    route(&gw, "reset", &instances, json!({})).await;
    let answer = ask(&gw, "reset", true).await;
    assert_eq!(answer.instance, "fallback");
    assert_whole(&read_stream(&answer.body));
    assert_eq!(primary.hits().len(), 1);

    route(&gw, "reset-again", &instances, json!({"same_instance_retries": 2})).await;
    let before = primary.hits().len();
    assert_eq!(ask(&gw, "reset-again", false).await.instance, "fallback");
    assert_eq!(primary.hits().len() - before, 3, "two retries on the same instance, then the fallback");
    assert_eq!(fallback.hits().len(), 2);
}

// 6. Accepts the connection and never answers.
#[tokio::test]
async fn a_provider_that_never_answers_is_left_at_the_head_timeout() {
    let gw = TestGateway::start().await;
    let (primary, _, instances) = pair("hang").await;
    route(&gw, "hang", &instances, json!({"timeout": 300})).await;
    let answer = ask(&gw, "hang", true).await;
    assert_eq!(answer.instance, "fallback");
    assert_whole(&read_stream(&answer.body));
    assert!(answer.took >= Duration::from_millis(300) && answer.took < Duration::from_secs(2), "{:?}", answer.took);
    assert_eq!(primary.hits().len(), 1);
}

// 7. 200 and headers at once, the first token much later.
#[tokio::test]
async fn a_first_token_later_than_first_token_timeout_moves_to_the_fallback() {
    let gw = TestGateway::start().await;
    let (primary, fallback, instances) = pair("slow-first-token-3000").await;
    route(&gw, "ttft", &instances, json!({"first_token_timeout_ms": 300})).await;
    let answer = ask(&gw, "ttft", true).await;
    assert_eq!((answer.instance.as_str(), answer.attempts.as_str()), ("fallback", "2"), "the head waited");
    assert_whole(&read_stream(&answer.body));
    assert!(answer.took < Duration::from_secs(2), "{:?}", answer.took);
    assert_eq!((primary.hits().len(), fallback.hits().len()), (1, 1));

    // The instance's own setting wins over the plugin's: 0 turns it off for that instance.
    let (_, _, mut instances) = pair("slow-first-token-500").await;
    instances[0]["first_token_timeout_ms"] = json!(0);
    route(&gw, "patient", &instances, json!({"first_token_timeout_ms": 300})).await;
    let answer = ask(&gw, "patient", true).await;
    assert_eq!(answer.instance, "primary");
    assert_whole(&read_stream(&answer.body));
}

// 8. The stream is cut after 40 of 60 tokens.
#[tokio::test]
async fn a_stream_cut_mid_answer_is_taken_up_by_the_fallback() {
    let gw = TestGateway::start().await;
    let (primary, fallback, instances) = pair("cut-40").await;
    route(&gw, "resume", &instances, json!({"stream_resume": true})).await;
    let answer = ask(&gw, "resume", true).await;
    assert_eq!(answer.instance, "primary", "the head came from the primary");
    let stream = read_stream(&answer.body);
    assert_whole(&stream);
    let continued = &fallback.hits()[0];
    assert_eq!(continued.prefill().as_deref(), Some(&answer_text(0)[..answer_text(0).len() - answer_text(40).len()]));
    // The whole exchange: 10 + 50 prompt tokens, 40 + 20 completion tokens.
    let usage = stream.usage.expect("a usage chunk");
    assert_eq!((usage["prompt_tokens"].as_u64(), usage["completion_tokens"].as_u64()), (Some(60), Some(60)));
    assert_eq!(usage["total_tokens"], 120);
    assert_eq!(primary.hits().len(), 1);

    // Without stream_resume the cut is reported, as before.
    route(&gw, "noresume", &instances, json!({})).await;
    assert_cut_after(&read_stream(&ask(&gw, "noresume", true).await.body), 40);
}

// 9. The stream stalls after 20 tokens.
#[tokio::test]
async fn a_stream_that_stalls_past_stream_idle_timeout_is_taken_up() {
    let gw = TestGateway::start().await;
    let (_, fallback, instances) = pair("stall-20").await;
    route(&gw, "stall", &instances, json!({"stream_idle_timeout_ms": 300, "stream_resume": true})).await;
    let answer = ask(&gw, "stall", true).await;
    assert_whole(&read_stream(&answer.body));
    assert!(answer.took < Duration::from_secs(3), "{:?}", answer.took);
    assert_eq!(fallback.hits()[0].prefill().map(|p| p.split_whitespace().count()), Some(20));

    route(&gw, "stall-noresume", &instances, json!({"stream_idle_timeout_ms": 300})).await;
    let answer = ask(&gw, "stall-noresume", true).await;
    assert_cut_after(&read_stream(&answer.body), 20);
    assert!(answer.took < Duration::from_secs(3), "{:?}", answer.took);
}

// 10. One event in the middle is not valid JSON.
#[tokio::test]
async fn a_malformed_event_is_relayed_and_the_instance_stays_healthy() {
    let gw = TestGateway::start().await;
    let (primary, fallback, instances) = pair("bad-json").await;
    route(&gw, "badjson", &instances, json!({"stream_resume": true})).await;
    for _ in 0..4 {
        let answer = ask(&gw, "badjson", true).await;
        assert_eq!((answer.instance.as_str(), answer.attempts.as_str()), ("primary", "1"));
        assert!(answer.body.contains("data: {\"id\": \"oops\""), "relayed as it came");
        assert_whole(&read_stream(&answer.body));
    }
    assert_eq!(primary.hits().len(), 4);
    assert!(fallback.hits().is_empty());
}

// 11. A complete stream with usage but no `data: [DONE]`.
#[tokio::test]
async fn a_complete_stream_without_done_ends_when_the_upstream_does() {
    let gw = TestGateway::start().await;
    let (_, fallback, instances) = pair("no-done").await;
    route(&gw, "nodone", &instances, json!({"stream_resume": true, "timeout": 5000})).await;
    let answer = ask(&gw, "nodone", true).await;
    let stream = read_stream(&answer.body);
    assert_eq!(stream.text, answer_text(0));
    assert_eq!(stream.usage.as_ref().unwrap()["total_tokens"], 70);
    assert!(!stream.done && stream.errors == 0, "relayed as it is: {stream:?}");
    assert!(answer.took < Duration::from_secs(2), "finished with the upstream, not a timeout: {:?}", answer.took);
    assert!(fallback.hits().is_empty(), "a complete answer is not taken up");
}

// 12. 400 context_length_exceeded.
#[tokio::test]
async fn a_context_length_error_falls_back_only_when_its_code_is_listed() {
    let gw = TestGateway::start().await;
    let (primary, fallback, instances) = pair("context-length").await;
    route(&gw, "ctx", &instances, json!({"same_instance_retries": 2})).await;
    let answer = ask(&gw, "ctx", false).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    let body: Value = serde_json::from_str(&answer.body).unwrap();
    assert_eq!(body["error"]["code"], "context_length_exceeded", "returned unchanged");
    assert_eq!((primary.hits().len(), fallback.hits().len()), (1, 0));

    route(
        &gw,
        "ctx-listed",
        &instances,
        json!({"same_instance_retries": 2, "fallback_error_codes": ["context_length_exceeded"]}),
    )
    .await;
    let answer = ask(&gw, "ctx-listed", true).await;
    assert_eq!(answer.instance, "fallback");
    assert_whole(&read_stream(&answer.body));
    assert_eq!(primary.hits().len(), 2, "the same body never went to the same instance twice");
}

// 13. 400 content_policy_violation.
#[tokio::test]
async fn a_safety_refusal_is_returned_after_exactly_one_attempt() {
    let gw = TestGateway::start().await;
    let (primary, fallback, instances) = pair("content-policy").await;
    route(
        &gw,
        "policy",
        &instances,
        json!({"fallback_http_statuses": [400], "same_instance_retries": 2, "fallback_error_codes": ["invalid_request_error"]}),
    )
    .await;
    let answer = ask(&gw, "policy", true).await;
    assert_eq!((answer.status, answer.attempts.as_str()), (StatusCode::BAD_REQUEST, "1"));
    let body: Value = serde_json::from_str(&answer.body).unwrap();
    assert_eq!(body["error"]["code"], "content_policy_violation");
    assert_eq!((primary.hits().len(), fallback.hits().len()), (1, 0));

    let refused = json!({"id": "x", "paths": ["/x"], "plugins": {"ai-proxy-multi": {
        "fallback_error_codes": ["content_policy_violation"], "instances": instances}}});
    let (status, reply) = gw.admin(Method::PUT, "/apisix/admin/routes", Some(refused)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(reply["error_msg"].as_str().unwrap().contains("fallback_error_codes[0]"), "{reply}");
}

// 14. Cut mid-stream, and the fallback refuses an assistant prefill.
#[tokio::test]
async fn a_fallback_that_refuses_the_prefill_restarts_and_only_the_rest_is_relayed() {
    let gw = TestGateway::start().await;
    let (primary, fallback) = (FaultyUpstream::start("primary").await, FaultyUpstream::start("fallback").await);
    let instances =
        json!([instance("primary", &primary, "cut-40", 2), instance("fallback", &fallback, "no-prefill", 1)]);
    route(&gw, "prefill", &instances, json!({"stream_resume": true})).await;
    let stream = read_stream(&ask(&gw, "prefill", true).await.body);
    assert_whole(&stream);
    let hits = fallback.hits();
    assert_eq!(hits.len(), 2);
    assert!(hits[0].prefill().is_some() && hits[1].prefill().is_none(), "refused, then restarted without one");

    // A restarted answer that does not begin with the delivered text cannot be joined on.
    let instances =
        json!([instance("primary", &primary, "cut-40", 2), instance("fallback", &fallback, "no-prefill-alt", 1)]);
    route(&gw, "prefill-alt", &instances, json!({"stream_resume": true})).await;
    assert_cut_after(&read_stream(&ask(&gw, "prefill-alt", true).await.body), 40);

    // Instances known not to continue a prefill restart at once.
    let mut instances = json!([instance("primary", &primary, "cut-40", 2), instance("fallback", &fallback, "ok", 1)]);
    instances[1]["accepts_prefill"] = json!(false);
    route(&gw, "restart", &instances, json!({"stream_resume": true})).await;
    let before = fallback.hits().len();
    assert_whole(&read_stream(&ask(&gw, "restart", true).await.body));
    assert_eq!(fallback.hits()[before..].iter().filter(|h| h.prefill().is_some()).count(), 0);
}

// 15. Down for a while, then back, with a request every few seconds (time scaled 1:62.5: a
// 40 ms first cooldown capped at 240 ms stands for the defaults, 1 s capped at 15 s).
#[tokio::test]
async fn a_recovered_primary_serves_again_within_the_back_off_cap() {
    let gw = TestGateway::start().await;
    let (primary, _, mut instances) = pair("down").await;
    instances[0]["checks"] = json!({"passive": {"cooldown_ms": 40, "max_cooldown_ms": 240}});
    route(&gw, "outage", &instances, json!({})).await;
    primary.set_down(true);
    let every = Duration::from_millis(64);
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(960) {
        let answer = ask(&gw, "outage", false).await;
        assert_eq!((answer.status, answer.instance.as_str()), (StatusCode::OK, "fallback"));
        tokio::time::sleep(every).await;
    }
    // Three failures trip the check; then one trial per window (40, 80, 160, 240, 240 ms):
    // about seven attempts where a request every 64 ms would have made fifteen.
    let attempts = primary.hits().len();
    let during = gaps(&primary.hits());
    assert!(attempts <= 9, "{attempts} attempts during the outage: {during:?}");
    assert!(during.last().is_some_and(|gap| *gap >= Duration::from_millis(200)), "backed off: {during:?}");
    primary.set_down(false);
    let recovered = Instant::now();
    loop {
        if ask(&gw, "outage", false).await.instance == "primary" {
            break;
        }
        assert!(recovered.elapsed() < Duration::from_millis(240 + 2 * 64 + 200), "not back within the cap");
        tokio::time::sleep(every).await;
    }
}

// 16. 503 forever: the answer is the fallback's, model and usage included.
#[tokio::test]
async fn the_answer_names_the_fallbacks_model_and_carries_its_usage() {
    let gw = TestGateway::start().await;
    let (_, _, instances) = pair("503").await;
    route(&gw, "names", &instances, json!({})).await;
    let body: Value = serde_json::from_str(&ask(&gw, "names", false).await.body).unwrap();
    assert_eq!(body["model"], "ok");
    assert_eq!(body["usage"]["total_tokens"], 70);
    let stream = read_stream(&ask(&gw, "names", true).await.body);
    assert_whole(&stream);
    assert!(stream.models.iter().all(|m| m == "ok"), "{:?}", stream.models);
    assert_eq!(stream.usage.unwrap()["completion_tokens"], TOKENS);
}
