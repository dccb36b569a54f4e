//! Generated-input tests of the LLM layer: the request body rewriter (`Instance::body_for`), the
//! Anthropic translator, and the bounded reading of usage from a body's ends. No input may panic;
//! a rewrite that changes nothing must send the client's bytes.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly by design")]

use bytes::Bytes;
use proptest::prelude::*;
use serde_json::{json, Map, Value};

use switchyard_llm::body_window::BodyWindow;
use switchyard_llm::config::OverrideConfig;
use switchyard_llm::instance::Instance;
use switchyard_llm::json_scan::{first_member, last_member};
use switchyard_llm::providers::anthropic::{self, StreamTranslator};
use switchyard_llm::providers::{self, AuthConfig, BaseUrls};
use switchyard_sdk::raw_body::RawBody;
use switchyard_sdk::testing::{cut, cut_points, json_object, json_value, spelled_object};

fn openai_instance(options: &Map<String, Value>, max_tokens: Option<u64>) -> Instance {
    let overrides: OverrideConfig = serde_json::from_value(json!({"llm_options": {"max_tokens": max_tokens}})).unwrap();
    Instance::compile("fuzz", "openai", &AuthConfig::default(), options, &overrides, &BaseUrls::new()).unwrap()
}

/// What `body_for` must send for an OpenAI-family instance: the client's object with the options
/// and `max_tokens` over it, and usage asked for when the final body streams.
fn expected_body(
    client: &Map<String, Value>,
    options: &Map<String, Value>,
    max_tokens: Option<u64>,
) -> Map<String, Value> {
    let mut body = client.clone();
    for (key, value) in options {
        body.insert(key.clone(), value.clone());
    }
    if let Some(max_tokens) = max_tokens {
        body.insert("max_tokens".into(), max_tokens.into());
    }
    if body.get("stream") == Some(&Value::Bool(true)) {
        let mut stream_options = match body.get("stream_options") {
            Some(Value::Object(options)) => options.clone(),
            _ => Map::new(),
        };
        stream_options.insert("include_usage".into(), Value::Bool(true));
        body.insert("stream_options".into(), Value::Object(stream_options));
    }
    body
}

/// Options: some of the client's own fields with their own values, plus new ones.
fn options_for(client: &Map<String, Value>, keep: &[bool], extra: Map<String, Value>) -> Map<String, Value> {
    let mut options: Map<String, Value> = client
        .iter()
        .zip(keep.iter().cycle())
        .filter(|(_, keep)| **keep)
        .map(|((k, v), _)| (k.clone(), v.clone()))
        .collect();
    options.extend(extra);
    options
}

proptest! {
    /// The rewritten body is the client's with the rules applied; when the rules change nothing,
    /// it is the client's bytes, spelling and all.
    #[test]
    fn body_for_applies_its_rules_and_sends_unchanged_bodies_as_they_came(
        (client, text) in spelled_object(),
        keep in prop::collection::vec(any::<bool>(), 1..4),
        extra in prop_oneof![Just(Map::new()), json_object()],
        max_tokens in proptest::option::of(0u64..100_000),
    ) {
        let options = options_for(&client, &keep, extra);
        let instance = openai_instance(&options, max_tokens);
        let body = RawBody::parse(Bytes::from(text.clone())).unwrap();
        let out = instance.body_for(&body);
        let expected = expected_body(&client, &options, max_tokens);
        let got: Map<String, Value> = serde_json::from_slice(&out).unwrap();
        prop_assert_eq!(&got, &expected);
        if expected == client {
            prop_assert_eq!(out, Bytes::from(text));
        }
    }

    /// Any object becomes a Messages request (and any body a Messages-family instance gets).
    #[test]
    fn any_openai_request_translates_to_messages(request in json_value(), (_, text) in spelled_object()) {
        let messages = anthropic::request_from_openai(&request);
        prop_assert!(messages["messages"].is_array() && messages["max_tokens"].is_u64(), "{}", messages);
        let overrides: OverrideConfig =
            serde_json::from_value(json!({"endpoint": "http://127.0.0.1:9/v1/messages"})).unwrap();
        let instance = Instance::for_provider(
            "fuzz", &providers::ANTHROPIC_MESSAGES, &AuthConfig::default(), &Map::new(), &overrides, &BaseUrls::new(),
        ).unwrap();
        let out = instance.body_for(&RawBody::parse(Bytes::from(text)).unwrap());
        prop_assert!(serde_json::from_slice::<Value>(&out).unwrap()["messages"].is_array());
    }

    /// Whole responses, errors and streams of any shape translate without a panic; a stream's
    /// output is whole SSE events whose data is JSON (or `[DONE]`).
    #[test]
    fn any_messages_response_or_stream_translates(
        response in json_value(),
        events in prop::collection::vec(json_value(), 0..12),
        include_usage in any::<bool>(),
    ) {
        let chat = anthropic::response_to_openai(&response, "alias", 1);
        prop_assert_eq!(&chat["model"], "alias");
        let _ = anthropic::error_to_openai(&response);
        let mut translator = StreamTranslator::new("alias", 1, include_usage);
        for event in &events {
            let out = translator.translate(event);
            for sse in out.split_inclusive("\n\n") {
                prop_assert!(sse.ends_with("\n\n"), "{:?}", out);
                let data = sse.lines().find_map(|l| l.strip_prefix("data: ")).unwrap();
                prop_assert!(data == "[DONE]" || serde_json::from_str::<Value>(data).is_ok(), "{:?}", out);
            }
        }
    }

    /// Token counts at their extremes (a broken or hostile provider) add up without overflow.
    #[test]
    fn usage_counts_of_any_size_add_up_without_overflow(counts in prop::array::uniform4(any::<u64>())) {
        let [input, cache_read, cache_write, output] = counts;
        let message = json!({"usage": {"input_tokens": input, "cache_read_input_tokens": cache_read,
            "cache_creation_input_tokens": cache_write, "output_tokens": output}});
        let usage = &anthropic::response_to_openai(&message, "alias", 1)["usage"];
        let prompt = input.saturating_add(cache_read).saturating_add(cache_write);
        prop_assert_eq!(&usage["prompt_tokens"], &json!(prompt));
        prop_assert_eq!(&usage["total_tokens"], &json!(prompt.saturating_add(output)));
        let mut translator = StreamTranslator::new("alias", 1, true);
        translator.translate(&json!({"type": "message_start", "message": message}));
        translator.translate(&json!({"type": "message_delta", "usage": {"output_tokens": output}}));
        let stop = translator.translate(&json!({"type": "message_stop"}));
        prop_assert!(stop.contains("total_tokens"), "{}", stop);
        let completion = json!({"usage": {"prompt_tokens": input, "completion_tokens": output}}).to_string();
        let summary = switchyard_llm::providers::openai::Summary::parse(completion.as_bytes()).unwrap();
        prop_assert_eq!(summary.usage().unwrap().total_tokens, input.saturating_add(output));
    }

    /// From any end of a body that holds the member whole, the scanners read what a parser of the
    /// whole body reads (garbage and cut bodies give `None`, never a panic).
    #[test]
    fn scanners_agree_with_a_parser((object, text) in spelled_object(), key in "usage|model|id|[a-z]{1,3}", cut_at in any::<usize>()) {
        let bytes = text.as_bytes();
        let whole = object.get(&key);
        prop_assert_eq!(first_member::<Value>(bytes, &key), whole.cloned());
        prop_assert_eq!(last_member::<Value>(bytes, &key), whole.cloned());
        let at = cut_at % (bytes.len() + 1);
        let (head, tail) = bytes.split_at(at);
        if let Some(found) = first_member::<Value>(head, &key) {
            prop_assert_eq!(Some(&found), whole);
        }
        if let Some(found) = last_member::<Value>(tail, &key) {
            prop_assert_eq!(Some(&found), whole);
        }
    }

    /// Bodies larger than the window, in any pieces, keep exactly their ends.
    #[test]
    fn a_body_window_keeps_exact_ends(len in 0usize..300_000, points in cut_points(), seed in any::<u8>()) {
        let bytes: Vec<u8> = (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect();
        let mut window = BodyWindow::default();
        for piece in cut(&bytes, &points) {
            window.push(piece);
        }
        prop_assert_eq!(window.total(), len as u64);
        prop_assert!(window.held() <= 3 * switchyard_llm::body_window::WINDOW);
        match window.whole() {
            Some(whole) => prop_assert_eq!(&whole[..], &bytes[..]),
            None => {
                prop_assert_eq!(window.head(), &bytes[..window.head().len()]);
                prop_assert_eq!(window.tail(), &bytes[len - window.tail().len()..]);
                prop_assert!(window.head().len() + window.tail().len() >= 2 * switchyard_llm::body_window::WINDOW);
            }
        }
    }
}
