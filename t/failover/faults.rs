//! The sixteen faults, each through a route and through a routing alias.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};

use super::{assert_cut_after, assert_whole, gaps, mocks, read_stream, Knobs, Surface, Tester};
use crate::harness::faulty::{answer_text, TOKENS};

on_both_surfaces!(
    a_429_whose_retry_after_fits_the_wait_budget_is_waited_out_on_the_same_instance,
    a_429_whose_retry_after_is_too_long_cools_the_instance_and_falls_back,
    a_429_without_retry_after_falls_back_at_once_and_spares_the_instance,
    a_5xx_is_retried_on_the_same_instance_after_a_short_jittered_pause,
    a_503_forever_falls_back_and_the_instance_sees_a_bounded_number_of_attempts,
    a_reset_before_the_head_is_retried_then_falls_back,
    a_provider_that_never_answers_is_left_at_the_head_timeout,
    a_first_token_later_than_first_token_timeout_moves_to_the_fallback,
    a_stream_cut_mid_answer_is_taken_up_by_the_fallback,
    a_stream_that_stalls_past_stream_idle_timeout_is_taken_up,
    a_malformed_event_is_relayed_and_the_instance_stays_healthy,
    a_complete_stream_without_done_ends_when_the_upstream_does,
    a_context_length_error_falls_back_only_when_its_code_is_listed,
    a_safety_refusal_is_returned_after_exactly_one_attempt,
    a_fallback_that_refuses_the_prefill_restarts_and_only_the_rest_is_relayed,
    a_recovered_primary_serves_again_within_the_back_off_cap,
    the_answer_names_the_fallbacks_model_and_carries_its_usage,
);

// 1. 429 with Retry-After.
async fn a_429_whose_retry_after_fits_the_wait_budget_is_waited_out_on_the_same_instance(surface: Surface) {
    let t = Tester::start(surface).await;
    let (primary, fallback) = mocks().await;
    let knobs = Knobs { retry_after_max_wait_ms: Some(1500), ..Knobs::default() };
    t.setup("wait", (&primary, "429-once-after-1"), (&fallback, "ok"), knobs).await;
    let answer = t.ask("wait", false).await;
    assert_eq!((answer.status, answer.instance.as_str(), answer.attempts.as_str()), (StatusCode::OK, "primary", "2"));
    let hits = primary.hits();
    assert_eq!(hits.len(), 2);
    assert!(gaps(&hits)[0] >= Duration::from_secs(1), "never twice within the window asked for: {:?}", gaps(&hits));
    assert!(fallback.hits().is_empty());
}

async fn a_429_whose_retry_after_is_too_long_cools_the_instance_and_falls_back(surface: Surface) {
    let t = Tester::start(surface).await;
    let (primary, fallback) = mocks().await;
    let knobs = Knobs { retry_after_max_wait_ms: Some(1000), ..Knobs::default() };
    t.setup("cool", (&primary, "429-after-2"), (&fallback, "ok"), knobs).await;
    for _ in 0..3 {
        let answer = t.ask("cool", false).await;
        assert_eq!((answer.status, answer.instance.as_str()), (StatusCode::OK, "fallback"));
        assert!(answer.took < Duration::from_millis(900), "no waiting: {:?}", answer.took);
    }
    assert_eq!(primary.hits().len(), 1, "resting for the 2 s it asked for");
    assert_eq!(fallback.hits().len(), 3);

    if surface == Surface::Route {
        // A wait that would outlast the request's deadline is not waited either.
        let (primary, fallback) = mocks().await;
        let route_only = json!({"max_stream_duration_ms": 800});
        let knobs = Knobs { retry_after_max_wait_ms: Some(1500), route_only, ..Knobs::default() };
        t.setup("deadline", (&primary, "429-once-after-1"), (&fallback, "ok"), knobs).await;
        assert_eq!(t.ask("deadline", false).await.instance, "fallback");
        assert_eq!(primary.hits().len(), 1);
    }
}

// 2. 429 forever, no Retry-After.
async fn a_429_without_retry_after_falls_back_at_once_and_spares_the_instance(surface: Surface) {
    let t = Tester::start(surface).await;
    let (primary, fallback) = mocks().await;
    t.setup("limited", (&primary, "429"), (&fallback, "ok"), Knobs::default()).await;
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(3) {
        let answer = t.ask("limited", false).await;
        assert_eq!((answer.status, answer.instance.as_str()), (StatusCode::OK, "fallback"));
        let body: Value = serde_json::from_str(&answer.body).unwrap();
        assert_eq!(body["choices"][0]["message"]["content"], answer_text(0));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let hits = primary.hits();
    assert!((1..=4).contains(&hits.len()), "{} attempts on a rate-limited instance in 3 s", hits.len());
}

// 3. 500 once, then 200.
async fn a_5xx_is_retried_on_the_same_instance_after_a_short_jittered_pause(surface: Surface) {
    let t = Tester::start(surface).await;
    let (primary, fallback) = mocks().await;
    let knobs = Knobs { same_instance_retries: Some(1), ..Knobs::default() };
    t.setup("again", (&primary, "500-once"), (&fallback, "ok"), knobs).await;
    let answer = t.ask("again", true).await;
    assert_eq!((answer.instance.as_str(), answer.attempts.as_str()), ("primary", "2"));
    assert_whole(&read_stream(&answer.body));
    let gap = gaps(&primary.hits())[0];
    assert!(gap >= Duration::from_millis(50) && gap < Duration::from_millis(600), "{gap:?}");
    assert!(fallback.hits().is_empty());

    // Without same-instance retries the fallback answers.
    let (primary, fallback) = mocks().await;
    t.setup("moveon", (&primary, "500-once"), (&fallback, "ok"), Knobs::default()).await;
    assert_eq!(t.ask("moveon", false).await.instance, "fallback");
    assert_eq!((primary.hits().len(), fallback.hits().len()), (1, 1));
}

// 4. 503 forever.
async fn a_503_forever_falls_back_and_the_instance_sees_a_bounded_number_of_attempts(surface: Surface) {
    let t = Tester::start(surface).await;
    let (primary, fallback) = mocks().await;
    t.setup("down", (&primary, "503"), (&fallback, "ok"), Knobs::default()).await;
    for _ in 0..10 {
        let answer = t.ask("down", false).await;
        assert_eq!((answer.status, answer.instance.as_str()), (StatusCode::OK, "fallback"));
    }
    // The route's passive check trips after three failures; a model's cooldown at the first.
    let expected = if surface == Surface::Route { 3 } else { 1 };
    assert_eq!(primary.hits().len(), expected);
}

// 5. Connection reset before any response head.
async fn a_reset_before_the_head_is_retried_then_falls_back(surface: Surface) {
    let t = Tester::start(surface).await;
    let (primary, fallback) = mocks().await;
    t.setup("reset", (&primary, "reset"), (&fallback, "ok"), Knobs::default()).await;
    let answer = t.ask("reset", true).await;
    assert_eq!(answer.instance, "fallback");
    assert_whole(&read_stream(&answer.body));
    assert_eq!(primary.hits().len(), 1);

    let knobs = Knobs { same_instance_retries: Some(2), ..Knobs::default() };
    t.setup("reset-again", (&primary, "reset"), (&fallback, "ok"), knobs).await;
    let before = primary.hits().len();
    assert_eq!(t.ask("reset-again", false).await.instance, "fallback");
    assert_eq!(primary.hits().len() - before, 3, "two retries on the same instance, then the fallback");
    assert_eq!(fallback.hits().len(), 2);
}

// 6. Accepts the connection and never answers.
async fn a_provider_that_never_answers_is_left_at_the_head_timeout(surface: Surface) {
    let t = Tester::start(surface).await;
    let (primary, fallback) = mocks().await;
    t.setup("hang", (&primary, "hang"), (&fallback, "ok"), Knobs { timeout: Some(300), ..Knobs::default() }).await;
    let answer = t.ask("hang", true).await;
    assert_eq!(answer.instance, "fallback");
    assert_whole(&read_stream(&answer.body));
    assert!(answer.took >= Duration::from_millis(300) && answer.took < Duration::from_secs(2), "{:?}", answer.took);
    assert_eq!(primary.hits().len(), 1);
}

// 7. 200 and headers at once, the first token much later.
async fn a_first_token_later_than_first_token_timeout_moves_to_the_fallback(surface: Surface) {
    let t = Tester::start(surface).await;
    let (primary, fallback) = mocks().await;
    let knobs = Knobs { first_token_timeout_ms: Some(300), ..Knobs::default() };
    t.setup("ttft", (&primary, "slow-first-token-3000"), (&fallback, "ok"), knobs).await;
    let answer = t.ask("ttft", true).await;
    assert_eq!((answer.instance.as_str(), answer.attempts.as_str()), ("fallback", "2"), "the head waited");
    assert_whole(&read_stream(&answer.body));
    assert!(answer.took < Duration::from_secs(2), "{:?}", answer.took);
    assert_eq!((primary.hits().len(), fallback.hits().len()), (1, 1));

    // The instance's own setting wins over the plugin's: 0 turns it off for that instance.
    let knobs = Knobs { first_token_timeout_ms: Some(300), primary_first_token_ms: Some(0), ..Knobs::default() };
    t.setup("patient", (&primary, "slow-first-token-500"), (&fallback, "ok"), knobs).await;
    let answer = t.ask("patient", true).await;
    assert_eq!(answer.instance, "primary");
    assert_whole(&read_stream(&answer.body));
}

// 8. The stream is cut after 40 of 60 tokens.
async fn a_stream_cut_mid_answer_is_taken_up_by_the_fallback(surface: Surface) {
    let t = Tester::start(surface).await;
    let (primary, fallback) = mocks().await;
    t.setup("resume", (&primary, "cut-40"), (&fallback, "ok"), Knobs { stream_resume: true, ..Knobs::default() }).await;
    let answer = t.ask("resume", true).await;
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
    let (primary, fallback) = mocks().await;
    t.setup("noresume", (&primary, "cut-40"), (&fallback, "ok"), Knobs::default()).await;
    assert_cut_after(&read_stream(&t.ask("noresume", true).await.body), 40);
}

// 9. The stream stalls after 20 tokens.
async fn a_stream_that_stalls_past_stream_idle_timeout_is_taken_up(surface: Surface) {
    let t = Tester::start(surface).await;
    let (primary, fallback) = mocks().await;
    let knobs = Knobs { stream_idle_timeout_ms: Some(300), stream_resume: true, ..Knobs::default() };
    t.setup("stall", (&primary, "stall-20"), (&fallback, "ok"), knobs).await;
    let answer = t.ask("stall", true).await;
    assert_whole(&read_stream(&answer.body));
    assert!(answer.took < Duration::from_secs(3), "{:?}", answer.took);
    assert_eq!(fallback.hits()[0].prefill().map(|p| p.split_whitespace().count()), Some(20));

    let (primary, fallback) = mocks().await;
    let knobs = Knobs { stream_idle_timeout_ms: Some(300), ..Knobs::default() };
    t.setup("stall-noresume", (&primary, "stall-20"), (&fallback, "ok"), knobs).await;
    let answer = t.ask("stall-noresume", true).await;
    assert_cut_after(&read_stream(&answer.body), 20);
    assert!(answer.took < Duration::from_secs(3), "{:?}", answer.took);
}

// 10. One event in the middle is not valid JSON.
async fn a_malformed_event_is_relayed_and_the_instance_stays_healthy(surface: Surface) {
    let t = Tester::start(surface).await;
    let (primary, fallback) = mocks().await;
    t.setup("badjson", (&primary, "bad-json"), (&fallback, "ok"), Knobs { stream_resume: true, ..Knobs::default() })
        .await;
    for _ in 0..4 {
        let answer = t.ask("badjson", true).await;
        assert_eq!((answer.instance.as_str(), answer.attempts.as_str()), ("primary", "1"));
        assert!(answer.body.contains("data: {\"id\": \"oops\""), "relayed as it came");
        assert_whole(&read_stream(&answer.body));
    }
    assert_eq!(primary.hits().len(), 4);
    assert!(fallback.hits().is_empty());
}

// 11. A complete stream with usage but no `data: [DONE]`.
async fn a_complete_stream_without_done_ends_when_the_upstream_does(surface: Surface) {
    let t = Tester::start(surface).await;
    let (primary, fallback) = mocks().await;
    let knobs = Knobs { stream_resume: true, timeout: Some(5000), ..Knobs::default() };
    t.setup("nodone", (&primary, "no-done"), (&fallback, "ok"), knobs).await;
    let answer = t.ask("nodone", true).await;
    let stream = read_stream(&answer.body);
    assert_eq!(stream.text, answer_text(0));
    assert_eq!(stream.usage.as_ref().unwrap()["total_tokens"], 70);
    assert!(!stream.done && stream.errors == 0, "relayed as it is: {stream:?}");
    assert!(answer.took < Duration::from_secs(2), "finished with the upstream, not a timeout: {:?}", answer.took);
    assert!(fallback.hits().is_empty(), "a complete answer is not taken up");
}

// 12. 400 context_length_exceeded.
async fn a_context_length_error_falls_back_only_when_its_code_is_listed(surface: Surface) {
    let t = Tester::start(surface).await;
    let (primary, fallback) = mocks().await;
    let knobs = Knobs { same_instance_retries: Some(2), ..Knobs::default() };
    t.setup("ctx", (&primary, "context-length"), (&fallback, "ok"), knobs).await;
    let answer = t.ask("ctx", false).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    let body: Value = serde_json::from_str(&answer.body).unwrap();
    assert_eq!(body["error"]["code"], "context_length_exceeded", "returned unchanged");
    assert_eq!((primary.hits().len(), fallback.hits().len()), (1, 0));

    let knobs = Knobs {
        same_instance_retries: Some(2),
        fallback_error_codes: vec!["context_length_exceeded"],
        ..Knobs::default()
    };
    t.setup("ctx-listed", (&primary, "context-length"), (&fallback, "ok"), knobs).await;
    let answer = t.ask("ctx-listed", true).await;
    assert_eq!(answer.instance, "fallback");
    assert_whole(&read_stream(&answer.body));
    assert_eq!(primary.hits().len(), 2, "the same body never went to the same instance twice");
}

// 13. 400 content_policy_violation.
async fn a_safety_refusal_is_returned_after_exactly_one_attempt(surface: Surface) {
    let t = Tester::start(surface).await;
    let (primary, fallback) = mocks().await;
    let knobs = Knobs {
        same_instance_retries: Some(2),
        fallback_error_codes: vec!["invalid_request_error"],
        route_only: json!({"fallback_http_statuses": [400]}),
        ..Knobs::default()
    };
    t.setup("policy", (&primary, "content-policy"), (&fallback, "ok"), knobs).await;
    let answer = t.ask("policy", true).await;
    assert_eq!((answer.status, answer.attempts.as_str()), (StatusCode::BAD_REQUEST, "1"));
    let body: Value = serde_json::from_str(&answer.body).unwrap();
    assert_eq!(body["error"]["code"], "content_policy_violation");
    assert_eq!((primary.hits().len(), fallback.hits().len()), (1, 0));

    let knobs = Knobs { fallback_error_codes: vec!["content_policy_violation"], ..Knobs::default() };
    let refused = t.try_setup("refused", (&primary, "ok"), (&fallback, "ok"), &knobs).await.unwrap_err();
    assert!(refused.contains("fallback_error_codes[0]"), "{refused}");
}

// 14. Cut mid-stream, and the fallback refuses an assistant prefill.
async fn a_fallback_that_refuses_the_prefill_restarts_and_only_the_rest_is_relayed(surface: Surface) {
    let t = Tester::start(surface).await;
    let (primary, fallback) = mocks().await;
    let resume = || Knobs { stream_resume: true, ..Knobs::default() };
    t.setup("prefill", (&primary, "cut-40"), (&fallback, "no-prefill"), resume()).await;
    assert_whole(&read_stream(&t.ask("prefill", true).await.body));
    let hits = fallback.hits();
    assert_eq!(hits.len(), 2);
    assert!(hits[0].prefill().is_some() && hits[1].prefill().is_none(), "refused, then restarted without one");

    // A restarted answer that does not begin with the delivered text cannot be joined on.
    t.setup("prefill-alt", (&primary, "cut-40"), (&fallback, "no-prefill-alt"), resume()).await;
    assert_cut_after(&read_stream(&t.ask("prefill-alt", true).await.body), 40);

    // Instances known not to continue a prefill restart at once.
    let knobs = Knobs { fallback_restarts: true, ..resume() };
    t.setup("restart", (&primary, "cut-40"), (&fallback, "ok"), knobs).await;
    let before = fallback.hits().len();
    assert_whole(&read_stream(&t.ask("restart", true).await.body));
    assert_eq!(fallback.hits()[before..].iter().filter(|h| h.prefill().is_some()).count(), 0);
}

// 15. Down for a while, then back, with a request every few seconds (time scaled 1:62.5: a
// 40 ms first cooldown capped at 240 ms stands for the defaults, 1 s capped at 15 s).
async fn a_recovered_primary_serves_again_within_the_back_off_cap(surface: Surface) {
    let t = Tester::start(surface).await;
    let (primary, fallback) = mocks().await;
    let knobs = Knobs { primary_cooldown_ms: Some((40, 240)), ..Knobs::default() };
    t.setup("outage", (&primary, "down"), (&fallback, "ok"), knobs).await;
    primary.set_down(true);
    let every = Duration::from_millis(64);
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(960) {
        let answer = t.ask("outage", false).await;
        assert_eq!((answer.status, answer.instance.as_str()), (StatusCode::OK, "fallback"));
        tokio::time::sleep(every).await;
    }
    // The failures that trip the check; then one trial per window (40, 80, 160, 240, 240 ms):
    // about seven attempts where a request every 64 ms would have made fifteen.
    let attempts = primary.hits().len();
    let during = gaps(&primary.hits());
    assert!(attempts <= 9, "{attempts} attempts during the outage: {during:?}");
    assert!(during.last().is_some_and(|gap| *gap >= Duration::from_millis(200)), "backed off: {during:?}");
    primary.set_down(false);
    let recovered = Instant::now();
    loop {
        if t.ask("outage", false).await.instance == "primary" {
            break;
        }
        assert!(recovered.elapsed() < Duration::from_millis(240 + 2 * 64 + 200), "not back within the cap");
        tokio::time::sleep(every).await;
    }
}

// 16. 503 forever: the answer is the fallback's, model and usage included.
async fn the_answer_names_the_fallbacks_model_and_carries_its_usage(surface: Surface) {
    let t = Tester::start(surface).await;
    let (primary, fallback) = mocks().await;
    t.setup("names", (&primary, "503"), (&fallback, "ok"), Knobs::default()).await;
    let body: Value = serde_json::from_str(&t.ask("names", false).await.body).unwrap();
    assert_eq!(body["model"], t.fallback_model("names"));
    assert_eq!(body["usage"]["total_tokens"], 70);
    let stream = read_stream(&t.ask("names", true).await.body);
    assert_whole(&stream);
    assert!(stream.models.iter().all(|m| *m == t.fallback_model("names")), "{:?}", stream.models);
    assert_eq!(stream.usage.unwrap()["completion_tokens"], TOKENS);
}
