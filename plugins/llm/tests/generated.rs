//! Generated-input tests of the LLM layer: the request body rewriter (`Instance::body_for`), the
//! conversion between OpenAI chat and Anthropic Messages (`protocol::chat_over_messages`, run as
//! a response rewrite), and the bounded reading of usage from a body's ends. No input may panic;
//! a rewrite that changes nothing must send the client's bytes, and a response rewrite that
//! only renames (a model API alias, a reasoning field) must send an answer needing no change as
//! the provider's bytes.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly by design")]

use bytes::Bytes;
use proptest::prelude::*;
use serde_json::{json, Map, Value};

use switchyard_llm::body_window::BodyWindow;
use switchyard_llm::config::OverrideConfig;
use switchyard_llm::instance::Instance;
use switchyard_llm::json_scan::{first_member, first_member_plain_str, last_member};
use switchyard_llm::protocol::chat_over_messages::{self, MessagesToChat};
use switchyard_llm::protocol::rewrite::{ResponseRewrite, Stage};
use switchyard_llm::protocol::{convert_request, Conversion, Protocol};
use switchyard_llm::providers::openai::UsageWire;
use switchyard_llm::providers::{self, AuthConfig, BaseUrls};
use switchyard_sdk::raw_body::RawBody;
use switchyard_sdk::testing::{cut, cut_points, json_object, json_value, spell, spelled_object};

fn openai_instance(options: &Map<String, Value>, max_tokens: Option<u64>) -> Instance {
    let overrides: OverrideConfig = serde_json::from_value(json!({"llm_options": {"max_tokens": max_tokens}})).unwrap();
    Instance::compile("fuzz", "openai", &AuthConfig::default(), None, options, &overrides, &BaseUrls::new()).unwrap()
}

/// What `body_for` must send for an OpenAI instance: the client's object with the options and
/// `max_tokens` over it (as `max_completion_tokens`, which OpenAI's newer models require), and
/// usage asked for when the final body streams.
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
        body.insert("max_completion_tokens".into(), max_tokens.into());
        body.remove("max_tokens");
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

/// The response side of an OpenAI chat client's call to an Anthropic Messages provider, as a
/// model API alias answers: converted, then named `alias`.
fn rewrite(include_usage: bool, status: u16, content_type: &str) -> ResponseRewrite {
    let mut rewrite = ResponseRewrite::new(vec![
        Stage::MessagesToChat(Box::new(MessagesToChat::new(1, include_usage))),
        Stage::Alias("alias".into()),
    ]);
    let head = http::Response::builder().status(status).header("content-type", content_type).body(()).unwrap();
    rewrite.on_head(&head.into_parts().0);
    rewrite
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
        let out = instance.body_for(&body, Protocol::OpenAiChat);
        let expected = expected_body(&client, &options, max_tokens);
        let got: Map<String, Value> = serde_json::from_slice(&out).unwrap();
        prop_assert_eq!(&got, &expected);
        if expected == client {
            prop_assert_eq!(out, Bytes::from(text));
        }
    }

    /// Any object becomes a Messages request, and any client body converted for a Messages-family
    /// instance is one.
    #[test]
    fn any_openai_request_translates_to_messages(request in json_value(), (_, text) in spelled_object()) {
        let messages = Value::Object(chat_over_messages::request_to_messages(&request));
        prop_assert!(messages["messages"].is_array() && messages["max_tokens"].is_u64(), "{}", messages);
        if let Ok(body) = RawBody::parse(Bytes::from(request.to_string())) {
            let converted = convert_request(Conversion::ChatOverMessages, &body).unwrap();
            prop_assert!(converted.get::<Vec<Value>>("messages").is_some());
        }
        let overrides: OverrideConfig =
            serde_json::from_value(json!({"endpoint": "http://127.0.0.1:9/v1/messages"})).unwrap();
        let instance = Instance::for_provider(
            "fuzz", &providers::ANTHROPIC_MESSAGES, &AuthConfig::default(), None, &Map::new(), &overrides, &BaseUrls::new(),
        ).unwrap();
        let converted = convert_request(Conversion::ChatOverMessages, &RawBody::parse(Bytes::from(text)).unwrap());
        let out = instance.body_for(&converted.unwrap(), Protocol::AnthropicMessages);
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
        let _ = chat_over_messages::error_to_chat(&response);
        for status in [200, 400, 529] {
            let mut whole = rewrite(include_usage, status, "application/json");
            let mut body = Bytes::from(response.to_string());
            whole.apply(&mut body, true);
            let chat: Value = serde_json::from_slice(&body).unwrap();
            if status == 200 {
                prop_assert_eq!(&chat["model"], "alias");
            }
        }
        let mut stream = rewrite(include_usage, 200, "text/event-stream");
        for (i, event) in events.iter().enumerate() {
            let name = event.get("type").and_then(Value::as_str).unwrap_or("x").replace('\n', " ");
            let mut chunk = Bytes::from(format!("event: {name}\ndata: {event}\n\n"));
            stream.apply(&mut chunk, i + 1 == events.len());
            let out = std::str::from_utf8(&chunk).unwrap();
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
        let usage = &chat_over_messages::response_to_chat(&message, 1)["usage"];
        let prompt = input.saturating_add(cache_read).saturating_add(cache_write);
        prop_assert_eq!(&usage["prompt_tokens"], &json!(prompt));
        prop_assert_eq!(&usage["total_tokens"], &json!(prompt.saturating_add(output)));
        let mut stream = rewrite(true, 200, "text/event-stream");
        let mut stop = String::new();
        for event in [
            json!({"type": "message_start", "message": message}),
            json!({"type": "message_delta", "usage": {"output_tokens": output}}),
            json!({"type": "message_stop"}),
        ] {
            let mut chunk = Bytes::from(format!("event: {}\ndata: {event}\n\n", event["type"].as_str().unwrap()));
            stream.apply(&mut chunk, false);
            stop = String::from_utf8(chunk.to_vec()).unwrap();
        }
        prop_assert!(stop.contains(&format!("\"total_tokens\":{}", prompt.saturating_add(output))), "{}", stop);
        let completion = json!({"usage": {"prompt_tokens": input, "completion_tokens": output}}).to_string();
        let usage = last_member::<Option<UsageWire>>(completion.as_bytes(), "usage");
        prop_assert_eq!(usage.flatten().unwrap().usage().total_tokens, input.saturating_add(output));
    }

    /// From any end of a body that holds the member whole, the scanners read what a parser of the
    /// whole body reads (garbage and cut bodies give `None`, never a panic).
    #[test]
    fn scanners_agree_with_a_parser((object, text) in spelled_object(), key in "usage|model|id|[a-z]{1,3}", cut_at in any::<usize>()) {
        let bytes = text.as_bytes();
        let whole = object.get(&key);
        prop_assert_eq!(first_member::<Value>(bytes, &key), whole.cloned());
        prop_assert_eq!(last_member::<Value>(bytes, &key), whole.cloned());
        // The borrowed string, else the decoded one (as the access log reads the model), is the
        // parser's string.
        let read = first_member_plain_str(bytes, &key).map(str::to_owned).or_else(|| first_member::<String>(bytes, &key));
        prop_assert_eq!(read.as_deref(), whole.and_then(Value::as_str));
        let at = cut_at % (bytes.len() + 1);
        let (head, tail) = bytes.split_at(at);
        if let Some(found) = first_member::<Value>(head, &key) {
            prop_assert_eq!(Some(&found), whole);
        }
        if let Some(found) = first_member_plain_str(head, &key) {
            prop_assert_eq!(whole.and_then(Value::as_str), Some(found));
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

/// The alias answers of the model API are named with, in the generated rewrite tests.
const ALIAS: &str = "my-alias";

/// The response rewrite of a model API alias: the reasoning field renamed, maybe a conversion
/// from Anthropic Messages, and the alias as `model`.
fn alias_rewrite(reasoning_field: Option<&str>, converts: bool, status: u16, event_stream: bool) -> ResponseRewrite {
    let mut stages: Vec<Stage> = reasoning_field.map(|field| Stage::ReasoningField(field.into())).into_iter().collect();
    if converts {
        stages.push(Stage::MessagesToChat(Box::new(MessagesToChat::new(1, true))));
    }
    stages.push(Stage::Alias(ALIAS.into()));
    let mut rewrite = ResponseRewrite::new(stages);
    let content_type = if event_stream { "text/event-stream" } else { "application/json" };
    let head = http::Response::builder().status(status).header("content-type", content_type).body(()).unwrap();
    rewrite.on_head(&head.into_parts().0);
    rewrite
}

/// What the caller must get: the alias as `model` (top level, and in a `message` or `response`
/// object that has one) and the reasoning field renamed in every choice.
fn expected_answer(object: &Map<String, Value>, reasoning_field: Option<&str>) -> Map<String, Value> {
    let mut expected = object.clone();
    if let Some(model) = expected.get_mut("model") {
        *model = Value::String(ALIAS.into());
    }
    for outer in ["message", "response"] {
        if let Some(model) = expected.get_mut(outer).and_then(|o| o.get_mut("model")) {
            *model = Value::String(ALIAS.into());
        }
    }
    let choices = expected.get_mut("choices").and_then(Value::as_array_mut);
    for choice in reasoning_field.and(choices).into_iter().flatten() {
        for part in ["message", "delta"] {
            if let Some(Value::Object(part)) = choice.get_mut(part) {
                if let Some(reasoning) = part.remove(reasoning_field.unwrap()) {
                    part.insert("reasoning_content".into(), reasoning);
                }
            }
        }
    }
    expected
}

/// An answer that sometimes already says the alias, sometimes carries reasoning in a choice or
/// a model in its `message` (as Anthropic's `message_start` does).
fn answer() -> impl Strategy<Value = (Map<String, Value>, String)> {
    (spelled_object(), 0..3u8, any::<bool>(), any::<bool>(), json_value(), any::<u64>()).prop_map(
        |((mut object, text), model, reasoning, nested, value, style)| {
            let plain = model == 0 && !reasoning && !nested;
            match model {
                1 => {
                    object.insert("model".into(), Value::String(ALIAS.into()));
                }
                2 => {
                    object.insert("model".into(), Value::String("upstream-model".into()));
                }
                _ => {}
            }
            if reasoning {
                let choice = json!({"index": 0, "message": {"content": "a", "reasoning": value}});
                object.insert("choices".into(), Value::Array(vec![choice]));
            }
            if nested {
                let model = if style % 2 == 0 { ALIAS } else { "upstream-model" };
                object.insert("message".into(), json!({"id": "m", "model": model}));
            }
            let text = if plain { text } else { spell(&Value::Object(object.clone()), style) };
            (object, text)
        },
    )
}

proptest! {
    /// Whole answers and stream events get the alias and `reasoning_content`; when that changes
    /// nothing they go out byte for byte as they came, and otherwise the members left alone keep
    /// their bytes (an event keeps its `event:` name).
    #[test]
    fn alias_answers_change_only_what_they_must(
        (object, text) in answer(),
        reasoning_field in proptest::option::of(Just("reasoning")),
        named in any::<bool>(),
        points in cut_points(),
    ) {
        let expected = expected_answer(&object, reasoning_field);
        let mut whole = alias_rewrite(reasoning_field, false, 200, false);
        let pieces = cut(text.as_bytes(), &points);
        let mut out = Vec::new();
        for (i, piece) in pieces.iter().enumerate() {
            let mut chunk = Bytes::copy_from_slice(piece);
            whole.apply(&mut chunk, i + 1 == pieces.len());
            out.extend_from_slice(&chunk);
        }
        let mut stream = alias_rewrite(reasoning_field, false, 200, true);
        let name = if named { "event: message_start\n" } else { "" };
        let event = Bytes::from(format!("{name}data: {}\n\n", Value::Object(object.clone())));
        let mut chunk = event.clone();
        stream.apply(&mut chunk, false);
        if expected == object {
            prop_assert_eq!(&out, text.as_bytes());
            prop_assert_eq!(chunk, event);
        } else {
            let got: Map<String, Value> = serde_json::from_slice(&out).unwrap();
            prop_assert_eq!(&got, &expected);
            let data = chunk.strip_prefix(name.as_bytes()).unwrap();
            let data = data.strip_prefix(b"data: ").unwrap().strip_suffix(b"\n\n").unwrap();
            prop_assert_eq!(&serde_json::from_slice::<Map<String, Value>>(data).unwrap(), &expected);
            let (before, after) = (RawBody::parse(Bytes::from(text)).unwrap(), RawBody::parse(Bytes::from(out)).unwrap());
            let renamed = ["model", "choices", "message", "response"];
            for key in object.keys().filter(|k| !renamed.contains(&k.as_str())) {
                prop_assert_eq!(before.raw(key), after.raw(key));
            }
        }
    }

    /// Anything else (not JSON, not an object, Anthropic answers and events of any shape, any
    /// status) is rewritten or passed on without a panic; what is not a JSON object passes a
    /// renaming rewrite untouched.
    #[test]
    fn any_answer_or_event_is_survived(
        bytes in prop::collection::vec(any::<u8>(), 0..200),
        value in json_value(),
        converts in any::<bool>(),
        status in prop_oneof![Just(200u16), Just(429u16), 100..600u16],
    ) {
        let spelled = value.to_string();
        for body in [&bytes[..], spelled.as_bytes()] {
            let mut chunk = Bytes::copy_from_slice(body);
            alias_rewrite(Some("reasoning"), converts, status, false).apply(&mut chunk, true);
            let mut event = Bytes::from([&b"data: "[..], body, b"\n\n"].concat());
            alias_rewrite(Some("reasoning"), converts, status, true).apply(&mut event, false);
            if !converts && serde_json::from_slice::<Map<String, Value>>(body).is_err() {
                prop_assert_eq!(&chunk[..], body, "what is not an object passes untouched");
            }
        }
    }
}
