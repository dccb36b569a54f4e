//! Real clients: the official `anthropic` and `openai` Python SDKs against routes whose provider
//! speaks another protocol, with the mock checking every converted upstream body.

use serde_json::{json, Value};

use crate::harness::python::run_sdk;
use crate::harness::MockUpstream;
use crate::protocols::{gateway_for, route};

#[tokio::test]
async fn anthropic_sdk_through_a_route_to_a_chat_provider() {
    let mock = MockUpstream::llm("sdk-chat").await;
    let gw = gateway_for(&mock).await;
    gw.put_route(route("sdk-claude", "deepseek", json!({}))).await;
    let out = run_sdk(
        "anthropic_messages.py",
        &[("BASE_URL", gw.url("/sdk-claude")), ("API_KEY", "caller-key".into()), ("MODEL", "claude-sonnet-4".into())],
    )
    .await;

    let create = &out["create"];
    assert_eq!(create["type"], "message");
    assert_eq!(create["model"], "deepseek-model");
    assert!(create["text"].as_str().unwrap().starts_with("The Fibonacci sequence"), "{create}");
    assert_eq!(create["stop_reason"], "end_turn");
    assert_eq!((create["input_tokens"].as_u64(), create["output_tokens"].as_u64()), (Some(6), Some(48)));
    assert_eq!(create["cache_read_input_tokens"], 4);

    let stream = &out["stream"];
    assert_eq!(stream["text"], "Hello, there!");
    assert_eq!(stream["stop_reason"], "end_turn");
    assert_eq!((stream["input_tokens"].as_u64(), stream["output_tokens"].as_u64()), (Some(12), Some(5)));

    let tools = &out["tools"];
    assert_eq!(tools["first_stop_reason"], "tool_use");
    assert_eq!(tools["tool_name"], "get_weather");
    assert_eq!(tools["tool_input"], json!({"city": "Paris"}));
    assert_eq!(tools["second_stop_reason"], "end_turn");

    // What the chat provider saw: every request checked by the mock, these in detail.
    let seen = mock.seen();
    assert_eq!(seen.len(), 4);
    let bodies: Vec<Value> = seen.iter().map(|s| serde_json::from_slice(&s.body).unwrap()).collect();
    assert!(seen.iter().all(|s| s.path == "/chat/completions" && !s.headers.contains_key("x-api-key")));
    assert_eq!(bodies[0]["messages"][0], json!({"role": "system", "content": "Be brief."}));
    assert_eq!(bodies[0]["stop"], json!(["END"]));
    assert_eq!(bodies[0]["user"], "user-42");
    assert_eq!(bodies[1]["stream_options"], json!({"include_usage": true}));
    assert_eq!(
        bodies[2]["tools"][0]["function"]["parameters"]["required"],
        json!(["city"]),
        "tools become functions: {}",
        bodies[2]
    );
    let round_trip = bodies[3]["messages"].as_array().unwrap();
    assert_eq!(round_trip[1]["tool_calls"][0]["id"], tools["tool_use_id"]);
    assert_eq!(round_trip[1]["tool_calls"][0]["function"]["arguments"], "{\"city\":\"Paris\"}");
    assert_eq!(round_trip[2], json!({"role": "tool", "tool_call_id": tools["tool_use_id"], "content": "sunny, 24C"}));
}

#[tokio::test]
async fn openai_sdk_responses_through_a_route_to_a_chat_provider() {
    let mock = MockUpstream::llm("sdk-responses").await;
    let gw = gateway_for(&mock).await;
    gw.put_route(route("sdk-gpt", "openrouter", json!({}))).await;
    let out = run_sdk(
        "openai_responses.py",
        &[("BASE_URL", gw.url("/sdk-gpt/v1")), ("API_KEY", "caller-key".into()), ("MODEL", "gpt-4o".into())],
    )
    .await;

    let create = &out["create"];
    assert_eq!(create["object"], "response");
    assert_eq!(create["status"], "completed");
    assert_eq!(create["model"], "openrouter-model");
    assert!(create["text"].as_str().unwrap().starts_with("The Fibonacci sequence"), "{create}");
    assert_eq!((create["input_tokens"].as_u64(), create["output_tokens"].as_u64()), (Some(10), Some(48)));

    let stream = &out["stream"];
    assert_eq!(stream["text"], "Hello, there!");
    assert_eq!(stream["completed_text"], "Hello, there!");
    assert_eq!(stream["total_tokens"], 17);
    let events: Vec<&str> = stream["events"].as_array().unwrap().iter().map(|e| e.as_str().unwrap()).collect();
    assert_eq!(events.first(), Some(&"response.created"));
    assert_eq!(events.last(), Some(&"response.completed"));

    let seen = mock.seen();
    assert!(
        seen.iter().all(|s| s.path == "/api/v1/chat/completions"),
        "{:?}",
        seen.iter().map(|s| &s.path).collect::<Vec<_>>()
    );
    let first: Value = serde_json::from_slice(&seen[0].body).unwrap();
    assert_eq!(
        first["messages"],
        json!([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hello."}])
    );
    assert_eq!(first["max_tokens"], 100);
    let second: Value = serde_json::from_slice(&seen[1].body).unwrap();
    assert_eq!(second["stream_options"], json!({"include_usage": true}));
}
