//! AWS Bedrock (`provider: "bedrock"`, the model API's `bedrock` adapter) against a mock that
//! verifies every request's SigV4 signature: OpenAI chat (and Anthropic Messages) clients
//! converted to Converse and back, whole and streamed; `bedrock-converse` clients passed
//! through; tools, stop reasons, usage in the access log, fallback with `ai-proxy-multi`,
//! config errors, ARN model ids and masked secrets.

use std::time::Duration;

use aws_smithy_eventstream::frame::{DecodedFrame, MessageFrameDecoder};
use aws_smithy_types::event_stream::HeaderValue;
use futures_util::StreamExt;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use switchyard::resource::api_key::sha256_hex;

use crate::harness::bedrock_mock::{AwsCredentials, BedrockMock, CREDENTIALS, TEXT};
use crate::harness::prom::sample;
use crate::harness::{logs, MockUpstream, TestGateway};

const MODEL: &str = "anthropic.claude-3-haiku-20240307-v1:0";

async fn gateway() -> TestGateway {
    logs::capture();
    TestGateway::start_in(tempfile::tempdir().unwrap(), |config| config.log.access_log = true).await
}

/// `auth.aws` of `credentials`.
fn aws(credentials: &AwsCredentials) -> Value {
    let mut aws =
        json!({"access_key_id": credentials.access_key_id, "secret_access_key": credentials.secret_access_key});
    if let Some(token) = credentials.session_token {
        aws["session_token"] = json!(token);
    }
    aws
}

/// An `ai-proxy` config calling `mock` with `credentials`, its model pinned when `model` is.
fn plugin(mock: &BedrockMock, credentials: &AwsCredentials, model: Option<&str>) -> Value {
    let mut plugin = json!({"provider": "bedrock", "auth": {"aws": aws(credentials)},
        "provider_conf": {"region": credentials.region}, "override": {"endpoint": mock.base_url()},
        "logging": {"summaries": true}});
    if let Some(model) = model {
        plugin["options"] = json!({"model": model});
    }
    plugin
}

async fn route(gw: &TestGateway, id: &str, path: &str, plugin: Value) {
    gw.put_route(json!({"id": id, "paths": [path], "plugins": {"ai-proxy": plugin}})).await;
}

async fn post(gw: &TestGateway, path: &str, body: Value, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut request = gw.http.post(gw.url(path)).header("content-type", "application/json");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.body(body.to_string()).send().await.unwrap()
}

async fn json_of(response: reqwest::Response) -> Value {
    let text = response.text().await.unwrap();
    serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"))
}

/// A whole SSE body's `data:` payloads (`[DONE]` kept as a string).
async fn sse_data(response: reqwest::Response) -> Vec<Value> {
    let text = response.text().await.unwrap();
    text.split("\n\n")
        .filter_map(|event| event.lines().find_map(|l| l.strip_prefix("data: ")))
        .map(|data| serde_json::from_str(data).unwrap_or_else(|_| Value::String(data.to_string())))
        .collect()
}

fn sent(mock: &BedrockMock) -> Value {
    serde_json::from_slice(&mock.last().body).unwrap()
}

async fn assert_logged(route: &str, fields: &[&str]) {
    let line = logs::access_line(route).await;
    for field in fields {
        assert!(line.contains(field), "{field} missing in {line}");
    }
}

#[tokio::test]
async fn an_openai_chat_client_gets_a_signed_converse_call_converted_back() {
    let mock = BedrockMock::start(CREDENTIALS).await;
    let gw = gateway().await;
    route(&gw, "bedrock-chat", "/bedrock", plugin(&mock, &CREDENTIALS, Some(MODEL))).await;
    let body = json!({"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
        "max_tokens": 64, "temperature": 0.5, "top_p": 0.9, "stop": ["END"]});
    let response = post(&gw, "/bedrock", body, &[("authorization", "Bearer the-callers-own-key")]).await;
    assert_eq!(response.status(), StatusCode::OK);
    let completion = json_of(response).await;
    assert_eq!(completion["object"], "chat.completion");
    assert_eq!(completion["id"], "chatcmpl-mock-req-1");
    assert_eq!(completion["model"], MODEL);
    assert_eq!(completion["choices"][0]["message"], json!({"role": "assistant", "content": TEXT}));
    assert_eq!(completion["choices"][0]["finish_reason"], "stop");
    assert_eq!(completion["usage"]["prompt_tokens"], 12);
    assert_eq!(completion["usage"]["total_tokens"], 19);

    let seen = mock.last();
    assert_eq!(seen.verdict, Ok(()), "the signature verified");
    assert_eq!(seen.path, "/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse");
    assert_eq!(seen.headers["x-amz-security-token"], CREDENTIALS.session_token.unwrap());
    let authorization = seen.headers["authorization"].to_str().unwrap();
    assert!(authorization.starts_with("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/"), "the caller's key is replaced");
    let converse = sent(&mock);
    assert_eq!(converse["system"], json!([{"text": "Be brief."}]));
    assert_eq!(converse["messages"], json!([{"role": "user", "content": [{"text": "Hi"}]}]));
    assert_eq!(
        converse["inferenceConfig"],
        json!({"maxTokens": 64, "temperature": 0.5, "topP": 0.9, "stopSequences": ["END"]})
    );
    assert_logged("bedrock-chat", &["prompt_tokens=12", "completion_tokens=7", "total_tokens=19", "upstream=bedrock"])
        .await;
    assert!(!logs::all().contains(CREDENTIALS.secret_access_key), "the secret key reached the log");
    assert!(!logs::all().contains(CREDENTIALS.session_token.unwrap()), "the session token reached the log");
}

#[tokio::test]
async fn event_stream_frames_become_sse_chunks_as_they_arrive() {
    let mock = BedrockMock::start(CREDENTIALS).await;
    let gw = gateway().await;
    route(&gw, "bedrock-stream", "/bedrock-stream", plugin(&mock, &CREDENTIALS, Some(MODEL))).await;
    let body = json!({"stream": true, "stream_options": {"include_usage": true},
        "messages": [{"role": "user", "content": "Hi"}]});
    let response = post(&gw, "/bedrock-stream", body, &[("x-mock-gate", "1")]).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
    let mut stream = response.bytes_stream();
    // The mock holds every frame but the first until released: its chunk must be here already.
    let first = tokio::time::timeout(Duration::from_secs(5), stream.next()).await.expect("the first frame's chunk");
    let first = String::from_utf8(first.unwrap().unwrap().to_vec()).unwrap();
    assert!(first.starts_with("data: ") && first.contains("\"role\":\"assistant\""), "{first}");
    assert!(!first.contains("[DONE]"));
    mock.release();
    let mut text = first;
    while let Some(chunk) = stream.next().await {
        text.push_str(std::str::from_utf8(&chunk.unwrap()).unwrap());
    }
    let events: Vec<Value> = text
        .split("\n\n")
        .filter_map(|e| e.strip_prefix("data: "))
        .map(|d| serde_json::from_str(d).unwrap_or(Value::String(d.into())))
        .collect();
    let content: String =
        events.iter().filter_map(|e| e.pointer("/choices/0/delta/content").and_then(Value::as_str)).collect();
    assert_eq!(content, TEXT);
    let finish: Vec<&Value> =
        events.iter().filter_map(|e| e.pointer("/choices/0/finish_reason")).filter(|f| !f.is_null()).collect();
    assert_eq!(finish, [&json!("stop")]);
    let usage = events.iter().find_map(|e| e.get("usage")).expect("a usage chunk, as asked");
    assert_eq!(usage["total_tokens"], 24);
    assert_eq!(events.last().unwrap(), &json!("[DONE]"));
    assert!(events.iter().all(|e| e == "[DONE]" || e["model"] == MODEL), "{events:?}");
    assert_eq!(mock.last().path, "/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse-stream");
    assert_eq!(mock.last().verdict, Ok(()));
    assert!(sent(&mock).get("stream").is_none(), "`stream` is not Bedrock's to see");
    assert_logged("bedrock-stream", &["prompt_tokens=15", "completion_tokens=9", "total_tokens=24"]).await;
}

#[tokio::test]
async fn a_converted_stream_that_breaks_or_throws_ends_with_an_error_event() {
    let mock = BedrockMock::start(CREDENTIALS).await;
    let gw = gateway().await;
    route(&gw, "broken", "/broken", plugin(&mock, &CREDENTIALS, Some(MODEL))).await;
    let ask = json!({"stream": true, "messages": [{"role": "user", "content": "Hi"}]});
    // Cut after two frames: what came is relayed, then an SSE error event, never `[DONE]`.
    let response = post(&gw, "/broken", ask.clone(), &[("x-mock-break-after", "2")]).await;
    assert_eq!(response.status(), StatusCode::OK);
    let text = response.text().await.unwrap();
    assert!(text.contains("\"content\":\"Hello\""), "{text}");
    assert!(text.contains("event: error\n") && !text.contains("[DONE]"), "{text}");
    // An exception frame mid-stream: an error event in OpenAI's shape, naming its type.
    let response = post(&gw, "/broken", ask, &[("x-mock-exception", "throttlingException")]).await;
    let text = response.text().await.unwrap();
    let error = text.split("\n\n").find(|e| e.starts_with("event: error")).unwrap_or_else(|| panic!("{text}"));
    let data: Value = serde_json::from_str(error.lines().find_map(|l| l.strip_prefix("data: ")).unwrap()).unwrap();
    assert_eq!(data["error"]["type"], "throttlingException");
    assert_eq!(data["error"]["message"], "the Bedrock mock stops the stream");
    assert!(!text.contains("[DONE]"), "{text}");
}

/// Decodes a binary event stream into `(event type, payload)` pairs.
fn frames_of(mut bytes: &[u8]) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    let mut decoder = MessageFrameDecoder::new();
    while let Ok(DecodedFrame::Complete(message)) = decoder.decode_frame(&mut bytes) {
        let kind = message.headers().iter().find(|h| h.name().as_str() == ":event-type").map(|h| match h.value() {
            HeaderValue::String(s) => s.as_str().to_string(),
            _ => String::new(),
        });
        out.push((kind.unwrap_or_default(), serde_json::from_slice(message.payload()).unwrap()));
    }
    out
}

#[tokio::test]
async fn bedrock_converse_clients_pass_through_whole_and_streamed() {
    let mock = BedrockMock::start(CREDENTIALS).await;
    let gw = gateway().await;
    // No model pinned: it comes from the client's path, as AWS SDKs send it.
    route(&gw, "converse", "/aws/*", plugin(&mock, &CREDENTIALS, None)).await;
    let converse = json!({"messages": [{"role": "user", "content": [{"text": "Hi"}]}],
        "inferenceConfig": {"maxTokens": 20}});
    let response = post(&gw, "/aws/model/amazon.nova-lite-v1%3A0/converse", converse.clone(), &[]).await;
    assert_eq!(response.status(), StatusCode::OK);
    let answer = json_of(response).await;
    assert_eq!(answer["output"]["message"]["content"][0]["text"], TEXT, "the Converse answer as Bedrock sent it");
    assert_eq!(answer["stopReason"], "end_turn");
    assert_eq!(mock.last().path, "/model/amazon.nova-lite-v1%3A0/converse");
    assert_eq!(sent(&mock), converse, "the client's body, untouched");
    assert_logged("converse", &["prompt_tokens=12", "completion_tokens=7", "total_tokens=19"]).await;

    // `stream: true` picks `/converse-stream`; the frames come back as AWS framed them.
    let mut streamed = converse.clone();
    streamed["stream"] = json!(true);
    streamed["model"] = json!("meta.llama3-8b-instruct-v1:0");
    let response = post(&gw, "/aws/converse", streamed, &[]).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "application/vnd.amazon.eventstream");
    let bytes = response.bytes().await.unwrap();
    let frames = frames_of(&bytes);
    let kinds: Vec<&str> = frames.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "messageStart",
            "contentBlockDelta",
            "contentBlockDelta",
            "contentBlockDelta",
            "contentBlockStop",
            "messageStop",
            "metadata"
        ]
    );
    assert_eq!(frames[6].1["usage"]["totalTokens"], 24);
    assert_eq!(mock.last().path, "/model/meta.llama3-8b-instruct-v1%3A0/converse-stream");
    assert_eq!(sent(&mock), converse, "`model` and `stream` steer the call and are taken out");
    assert_eq!(mock.last().verdict, Ok(()));

    // An AWS SDK's ConverseStream names the stream in its path, not in the body.
    let response = post(&gw, "/aws/model/amazon.nova-lite-v1%3A0/converse-stream", converse.clone(), &[]).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "application/vnd.amazon.eventstream");
    let frames = frames_of(&response.bytes().await.unwrap());
    assert_eq!(frames.last().map(|(kind, _)| kind.as_str()), Some("metadata"));
    assert_eq!(mock.last().path, "/model/amazon.nova-lite-v1%3A0/converse-stream");
    assert_eq!(sent(&mock), converse, "the client's body, untouched");

    // No model anywhere: the gateway says so, as APISIX does.
    let response = post(&gw, "/aws/converse", converse, &[]).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(json_of(response).await["error"]["message"].as_str().unwrap().contains("could not resolve upstream path"));
}

#[tokio::test]
async fn tool_use_goes_both_ways_whole_and_streamed() {
    let mock = BedrockMock::start(CREDENTIALS).await;
    let gw = gateway().await;
    route(&gw, "tools", "/tools", plugin(&mock, &CREDENTIALS, Some(MODEL))).await;
    let tools = json!([{"type": "function", "function": {"name": "weather", "description": "The weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]);
    let ask = json!({"role": "user", "content": "Weather in Paris?"});
    let response = post(&gw, "/tools", json!({"messages": [ask], "tools": tools, "tool_choice": "auto"}), &[]).await;
    assert_eq!(response.status(), StatusCode::OK);
    let completion = json_of(response).await;
    assert_eq!(completion["choices"][0]["finish_reason"], "tool_calls");
    let call = &completion["choices"][0]["message"]["tool_calls"][0];
    assert_eq!(call["id"], "tooluse_1");
    assert_eq!(call["function"]["name"], "weather");
    assert_eq!(
        serde_json::from_str::<Value>(call["function"]["arguments"].as_str().unwrap()).unwrap(),
        json!({"city": "Paris"})
    );
    let config = &sent(&mock)["toolConfig"];
    assert_eq!(config["tools"][0]["toolSpec"]["name"], "weather");
    assert_eq!(config["tools"][0]["toolSpec"]["inputSchema"]["json"]["type"], "object");
    assert_eq!(config["toolChoice"], json!({"auto": {}}));

    // The call and its result go back as toolUse and toolResult blocks.
    let reply = completion["choices"][0]["message"].clone();
    let result = json!({"role": "tool", "tool_call_id": "tooluse_1", "content": "sunny, 24 C"});
    let response = post(&gw, "/tools", json!({"messages": [ask, reply, result], "tools": tools}), &[]).await;
    assert_eq!(response.status(), StatusCode::OK);
    let completion = json_of(response).await;
    assert_eq!(completion["choices"][0]["message"]["content"], TEXT);
    assert_eq!(completion["choices"][0]["finish_reason"], "stop");
    let turns = sent(&mock)["messages"].clone();
    assert_eq!(turns[1]["role"], "assistant");
    assert_eq!(
        turns[1]["content"][1],
        json!({"toolUse": {"toolUseId": "tooluse_1", "name": "weather", "input": {"city": "Paris"}}})
    );
    assert_eq!(
        turns[2],
        json!({"role": "user", "content": [{"toolResult": {"toolUseId": "tooluse_1", "content": [{"text": "sunny, 24 C"}]}}]})
    );

    // Streamed: the call's id and name first, then its arguments piece by piece.
    let response = post(&gw, "/tools", json!({"stream": true, "messages": [ask], "tools": tools}), &[]).await;
    let events = sse_data(response).await;
    let calls: Vec<&Value> = events.iter().filter_map(|e| e.pointer("/choices/0/delta/tool_calls/0")).collect();
    assert_eq!(calls[0]["id"], "tooluse_1");
    assert_eq!(calls[0]["function"]["name"], "weather");
    let arguments: String =
        calls.iter().filter_map(|c| c.pointer("/function/arguments").and_then(Value::as_str)).collect();
    assert_eq!(arguments, "{\"city\":\"Paris\"}");
    assert!(events.iter().any(|e| e.pointer("/choices/0/finish_reason") == Some(&json!("tool_calls"))));
    assert_eq!(events.last().unwrap(), &json!("[DONE]"));
}

#[tokio::test]
async fn stop_reasons_are_mapped_whole_and_streamed() {
    let mock = BedrockMock::start(CREDENTIALS).await;
    let gw = gateway().await;
    route(&gw, "stops", "/stops", plugin(&mock, &CREDENTIALS, Some(MODEL))).await;
    let ask = json!([{"role": "user", "content": "Hi"}]);
    for (stop, finish) in [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("guardrail_intervened", "content_filter"),
        ("content_filtered", "content_filter"),
    ] {
        let response = post(&gw, "/stops", json!({"messages": ask}), &[("x-mock-stop-reason", stop)]).await;
        assert_eq!(json_of(response).await["choices"][0]["finish_reason"], finish, "{stop}");
        let response =
            post(&gw, "/stops", json!({"messages": ask, "stream": true}), &[("x-mock-stop-reason", stop)]).await;
        let events = sse_data(response).await;
        let finishes: Vec<&Value> =
            events.iter().filter_map(|e| e.pointer("/choices/0/finish_reason")).filter(|f| !f.is_null()).collect();
        assert_eq!(finishes, [&json!(finish)], "{stop} streamed");
    }
}

#[tokio::test]
async fn messages_and_responses_clients_reach_bedrock_through_the_conversions() {
    let mock = BedrockMock::start(CREDENTIALS).await;
    let gw = gateway().await;
    route(&gw, "claude", "/claude/*", plugin(&mock, &CREDENTIALS, Some(MODEL))).await;
    let request = json!({"model": "claude", "max_tokens": 100, "system": "Be brief.",
        "messages": [{"role": "user", "content": "Hi"}]});
    let response = post(&gw, "/claude/v1/messages", request.clone(), &[]).await;
    assert_eq!(response.status(), StatusCode::OK);
    let message = json_of(response).await;
    assert_eq!(message["type"], "message");
    assert_eq!(message["content"][0], json!({"type": "text", "text": TEXT}));
    assert_eq!(message["stop_reason"], "end_turn");
    assert_eq!(sent(&mock)["system"], json!([{"text": "Be brief."}]));
    let mut streamed = request;
    streamed["stream"] = json!(true);
    let response = post(&gw, "/claude/v1/messages", streamed, &[]).await;
    let text = response.text().await.unwrap();
    assert!(text.starts_with("event: message_start"), "{text}");
    assert!(
        text.contains("\"text\":\" Bedrock.\"") && text.trim_end().ends_with("{\"type\":\"message_stop\"}"),
        "{text}"
    );
    // An OpenAI Responses client, likewise.
    let ask = json!({"model": "m", "input": "Hi", "instructions": "Be brief."});
    let response = post(&gw, "/claude/v1/responses", ask, &[]).await;
    assert_eq!(response.status(), StatusCode::OK);
    let answer = json_of(response).await;
    assert_eq!(answer["object"], "response");
    assert_eq!(answer["output"][0]["content"][0]["text"], TEXT);
    assert_eq!(answer["usage"]["total_tokens"], 19);
    assert_eq!(sent(&mock)["system"], json!([{"text": "Be brief."}]));
}

#[tokio::test]
async fn a_wrong_secret_or_missing_session_token_gets_the_providers_403() {
    let mock = BedrockMock::start(CREDENTIALS).await;
    let gw = gateway().await;
    let wrong = AwsCredentials { secret_access_key: "not-the-secret-key", ..CREDENTIALS };
    route(&gw, "wrong-secret", "/wrong", plugin(&mock, &wrong, Some(MODEL))).await;
    let response = post(&gw, "/wrong", json!({"messages": [{"role": "user", "content": "Hi"}]}), &[]).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let error = json_of(response).await;
    assert!(error["error"]["message"].as_str().unwrap().contains("signature we calculated does not match"), "{error}");
    assert_eq!(error["error"]["type"], "InvalidSignatureException");
    assert!(mock.last().verdict.is_err());

    let tokenless = AwsCredentials { session_token: None, ..CREDENTIALS };
    route(&gw, "no-token", "/no-token", plugin(&mock, &tokenless, Some(MODEL))).await;
    let response = post(&gw, "/no-token", json!({"messages": [{"role": "user", "content": "Hi"}]}), &[]).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert!(mock.last().headers.get("x-amz-security-token").is_none());
    assert_eq!(json_of(response).await["error"]["type"], "UnrecognizedClientException");

    // A mock whose key has no session token takes a signature without one.
    let plain = BedrockMock::start(tokenless.clone()).await;
    route(&gw, "plain", "/plain", plugin(&plain, &tokenless, Some(MODEL))).await;
    let response = post(&gw, "/plain", json!({"messages": [{"role": "user", "content": "Hi"}]}), &[]).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(plain.last().verdict, Ok(()));
}

#[tokio::test]
async fn arn_model_ids_are_escaped_into_one_path_segment() {
    let mock = BedrockMock::start(CREDENTIALS).await;
    let gw = gateway().await;
    let arn = "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-3-5-sonnet-20240620-v1:0";
    route(&gw, "arn", "/arn", plugin(&mock, &CREDENTIALS, Some(arn))).await;
    let response = post(&gw, "/arn", json!({"messages": [{"role": "user", "content": "Hi"}]}), &[]).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["x-mock-model"], arn, "the mock read the ARN back whole");
    let seen = mock.last();
    assert_eq!(
        seen.path,
        "/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A123456789012%3Ainference-profile%2Fus.anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse"
    );
    assert_eq!(seen.verdict, Ok(()), "signed over the escaped path, escaped again as SigV4 wants");
}

#[tokio::test]
async fn config_errors_name_the_field() {
    let gw = gateway().await;
    let mock = BedrockMock::start(CREDENTIALS).await;
    let cases = [
        (
            json!({"provider": "bedrock", "auth": {"aws": aws(&CREDENTIALS)}}),
            "plugins.ai-proxy.provider_conf.region: is required",
        ),
        (
            json!({"provider": "bedrock", "auth": {"header": {}}, "provider_conf": {"region": "us-east-1"}}),
            "plugins.ai-proxy.auth.aws: is required",
        ),
        (
            json!({"provider": "bedrock", "auth": {"aws": {"access_key_id": "AK"}}, "provider_conf": {"region": "us-east-1"}}),
            "plugins.ai-proxy.auth.aws.secret_access_key: missing field `secret_access_key`",
        ),
        (
            json!({"provider": "bedrock", "auth": {"aws": aws(&CREDENTIALS)}, "provider_conf": {"region": "us east 1"}}),
            "plugins.ai-proxy.provider_conf.region: must be an AWS region",
        ),
    ];
    for (plugin, expected) in cases {
        let route = json!({"id": "bad", "paths": ["/bad"], "plugins": {"ai-proxy": plugin}});
        let (status, reply) = gw.admin(Method::PUT, "/apisix/admin/routes", Some(route)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{reply}");
        let message = reply["error_msg"].as_str().unwrap();
        assert!(message.contains(expected), "{message:?} should contain {expected:?}");
        assert!(!message.contains(CREDENTIALS.secret_access_key));
    }
    let mut instance = plugin(&mock, &CREDENTIALS, Some(MODEL));
    instance.as_object_mut().unwrap().remove("logging");
    instance["provider_conf"] = json!({});
    instance["name"] = json!("b");
    instance["weight"] = json!(1);
    let route = json!({"id": "bad", "paths": ["/bad"], "plugins": {"ai-proxy-multi": {"instances": [instance]}}});
    let (status, reply) = gw.admin(Method::PUT, "/apisix/admin/routes", Some(route)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        reply["error_msg"]
            .as_str()
            .unwrap()
            .contains("plugins.ai-proxy-multi.instances[0].provider_conf.region: is required"),
        "{reply}"
    );
}

#[tokio::test]
async fn secrets_are_masked_in_admin_responses_and_restored_on_a_round_trip() {
    let mock = BedrockMock::start(CREDENTIALS).await;
    let gw = gateway().await;
    route(&gw, "masked", "/masked", plugin(&mock, &CREDENTIALS, Some(MODEL))).await;
    let (status, got) = gw.admin(Method::GET, "/apisix/admin/routes/masked", None).await;
    assert_eq!(status, StatusCode::OK);
    let shown = &got["value"]["plugins"]["ai-proxy"]["auth"]["aws"];
    assert_eq!(shown, &json!({"access_key_id": "AKIDEXAMPLE", "secret_access_key": "***", "session_token": "***"}));
    assert!(!got.to_string().contains(CREDENTIALS.secret_access_key));
    // What GET showed, sent back: the stored secrets are kept, and calls still verify.
    let mut value = got["value"].clone();
    value["plugins"]["ai-proxy"]["timeout"] = json!(20000);
    value.as_object_mut().unwrap().retain(|k, _| !matches!(k.as_str(), "create_time" | "update_time"));
    let (status, reply) = gw.admin(Method::PUT, "/apisix/admin/routes/masked", Some(value)).await;
    assert!(status.is_success(), "{reply}");
    assert!(!reply.to_string().contains(CREDENTIALS.secret_access_key));
    let response = post(&gw, "/masked", json!({"messages": [{"role": "user", "content": "Hi"}]}), &[]).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(mock.last().verdict, Ok(()));

    let multi = json!({"id": "masked-multi", "paths": ["/masked-multi"], "plugins": {"ai-proxy-multi": {"instances": [
        {"name": "b", "provider": "bedrock", "weight": 1, "auth": {"aws": aws(&CREDENTIALS)},
         "provider_conf": {"region": "us-east-1"}, "override": {"endpoint": mock.base_url()}}]}}});
    gw.put_route(multi).await;
    let (_, got) = gw.admin(Method::GET, "/apisix/admin/routes/masked-multi", None).await;
    let shown = &got["value"]["plugins"]["ai-proxy-multi"]["instances"][0]["auth"]["aws"];
    assert_eq!((&shown["secret_access_key"], &shown["session_token"]), (&json!("***"), &json!("***")));
}

/// An `ai-proxy-multi` instance of the OpenAI mock.
fn openai_instance(mock: &MockUpstream, priority: i64) -> Value {
    json!({"name": "openai", "provider": "openai", "weight": 1, "priority": priority,
        "auth": {"header": {"Authorization": "Bearer sk-openai"}}, "options": {"model": "gpt-4o-mini"},
        "override": {"endpoint": mock.base_url()}})
}

pub fn bedrock_instance(mock: &BedrockMock, priority: i64) -> Value {
    json!({"name": "bedrock", "provider": "bedrock", "weight": 1, "priority": priority,
        "auth": {"aws": aws(&CREDENTIALS)}, "provider_conf": {"region": "us-east-1"},
        "options": {"model": MODEL}, "override": {"endpoint": mock.base_url()}})
}

#[tokio::test]
async fn ai_proxy_multi_falls_back_from_bedrock_to_openai_and_back() {
    let bedrock = BedrockMock::start(CREDENTIALS).await;
    let openai = MockUpstream::llm("openai").await;
    let gw = gateway().await;
    let multi = |first: Value, second: Value| json!({"fallback_strategy": ["http_429", "http_5xx"], "logging": {"summaries": true}, "instances": [first, second]});
    gw.put_route(json!({"id": "bedrock-first", "paths": ["/bedrock-first"],
        "plugins": {"ai-proxy-multi": multi(bedrock_instance(&bedrock, 2), openai_instance(&openai, 1))}}))
        .await;
    gw.put_route(json!({"id": "openai-first", "paths": ["/openai-first"],
        "plugins": {"ai-proxy-multi": multi(openai_instance(&openai, 2), bedrock_instance(&bedrock, 1))}}))
        .await;
    let ask = json!({"messages": [{"role": "user", "content": "Hi"}]});

    // Bedrock answers while it is well; failing, the request falls back to OpenAI.
    let response = post(&gw, "/bedrock-first", ask.clone(), &[]).await;
    assert_eq!(response.headers()["x-switchyard-instance"], "bedrock");
    assert_eq!(json_of(response).await["choices"][0]["message"]["content"], TEXT);
    bedrock.fail_with(503);
    let response = post(&gw, "/bedrock-first", ask.clone(), &[]).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["x-switchyard-instance"], "openai");
    assert_eq!(response.headers()["x-switchyard-attempts"], "2");
    assert_eq!(json_of(response).await["model"], "gpt-4o-mini");

    // The other way: OpenAI fails, Bedrock answers in OpenAI's shape, streamed too.
    let bedrock = BedrockMock::start(CREDENTIALS).await;
    gw.put_route(json!({"id": "openai-first", "paths": ["/openai-first"],
        "plugins": {"ai-proxy-multi": multi(openai_instance(&openai, 2), bedrock_instance(&bedrock, 1))}}))
        .await;
    openai.fail_with(500);
    let response = post(&gw, "/openai-first", ask.clone(), &[]).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["x-switchyard-instance"], "bedrock");
    let completion = json_of(response).await;
    assert_eq!(
        (completion["model"].as_str(), completion["choices"][0]["message"]["content"].as_str()),
        (Some(MODEL), Some(TEXT))
    );
    assert_logged("openai-first", &["prompt_tokens=12", "total_tokens=19"]).await;
    let mut streamed = ask;
    streamed["stream"] = json!(true);
    let response = post(&gw, "/openai-first", streamed, &[]).await;
    assert_eq!(response.headers()["x-switchyard-instance"], "bedrock");
    let events = sse_data(response).await;
    let content: String =
        events.iter().filter_map(|e| e.pointer("/choices/0/delta/content").and_then(Value::as_str)).collect();
    assert_eq!(content, TEXT);
    assert_eq!(bedrock.last().verdict, Ok(()));
}

/// A `bedrock` provider key for `mock` (the region in the JSON secret), a model on it, a caller.
async fn model_api_setup(gw: &TestGateway, mock: &BedrockMock, caller: &str) {
    let secret = json!({"access_key_id": CREDENTIALS.access_key_id, "secret_access_key": CREDENTIALS.secret_access_key,
        "session_token": CREDENTIALS.session_token, "region": CREDENTIALS.region});
    let key = gw
        .create_v1(
            "/admin/v1/provider_keys",
            json!({"display_name": "bedrock-prod", "provider": "bedrock",
            "adapter": "bedrock", "secret": secret.to_string(), "api_base": mock.base_url()}),
        )
        .await;
    assert_eq!(key["value"]["secret"], "***");
    gw.create_v1(
        "/admin/v1/models",
        json!({"display_name": "claude-haiku", "provider": "bedrock",
        "model_name": MODEL, "provider_key_id": key["id"]}),
    )
    .await;
    gw.create_v1("/admin/v1/apikeys", json!({"key_hash": sha256_hex(caller), "allowed_models": ["claude-haiku"]}))
        .await;
}

#[tokio::test]
async fn the_model_api_serves_bedrock_keys_whole_and_streamed() {
    let mock = BedrockMock::start(CREDENTIALS).await;
    let gw = gateway().await;
    model_api_setup(&gw, &mock, "sk-caller").await;
    let auth = [("authorization", "Bearer sk-caller")];
    let ask = json!({"model": "claude-haiku", "messages": [{"role": "user", "content": "Hi"}]});
    let response = post(&gw, "/v1/chat/completions", ask.clone(), &auth).await;
    assert_eq!(response.status(), StatusCode::OK);
    let completion = json_of(response).await;
    assert_eq!(completion["model"], "claude-haiku", "the alias");
    assert_eq!(completion["choices"][0]["message"]["content"], TEXT);
    assert_eq!(completion["usage"]["total_tokens"], 19);
    let seen = mock.last();
    assert_eq!(seen.verdict, Ok(()));
    assert_eq!(seen.path, "/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse");
    assert_eq!(seen.headers["x-amz-security-token"], CREDENTIALS.session_token.unwrap());

    let mut streamed = ask;
    streamed["stream"] = json!(true);
    let response = post(&gw, "/v1/chat/completions", streamed, &auth).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
    let events = sse_data(response).await;
    let content: String =
        events.iter().filter_map(|e| e.pointer("/choices/0/delta/content").and_then(Value::as_str)).collect();
    assert_eq!(content, TEXT);
    assert!(events.iter().all(|e| e == "[DONE]" || e["model"] == "claude-haiku"), "{events:?}");
    assert_eq!(events.last().unwrap(), &json!("[DONE]"));
    assert_eq!(mock.last().path, "/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse-stream");
    assert!(!logs::all().contains(CREDENTIALS.secret_access_key));
    // Usage, from the JSON answer and from the stream's `metadata` event.
    let text = gw.scrape().await;
    let tokens =
        |kind| sample(&text, "switchyard_model_api_tokens_total", &[("alias", "claude-haiku"), ("type", kind)]);
    assert_eq!((tokens("prompt"), tokens("completion")), (Some(27.0), Some(16.0)));
}

#[tokio::test]
async fn bedrock_provider_keys_need_json_credentials_and_a_region() {
    let gw = gateway().await;
    let key = |secret: Value, api_base: Option<&str>| {
        let mut key =
            json!({"display_name": "b", "provider": "bedrock", "adapter": "bedrock", "secret": secret.to_string()});
        if let Some(base) = api_base {
            key["api_base"] = json!(base);
        }
        key
    };
    let no_region = json!({"access_key_id": "AK", "secret_access_key": "very-secret-key"});
    let (status, reply) = gw
        .admin_v1(Method::POST, "/admin/v1/provider_keys", Some(key(no_region.clone(), Some("http://127.0.0.1:9"))))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(reply["error_msg"].as_str().unwrap().contains("secret.region"), "{reply}");
    assert!(!reply.to_string().contains("very-secret-key"));
    // A regional api_base names the region.
    let (status, reply) = gw
        .admin_v1(
            Method::POST,
            "/admin/v1/provider_keys",
            Some(key(no_region, Some("https://bedrock-runtime.eu-west-1.amazonaws.com"))),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    let (status, reply) = gw
        .admin_v1(
            Method::POST,
            "/admin/v1/provider_keys",
            Some(json!({"display_name": "c", "provider": "bedrock",
            "adapter": "bedrock", "secret": "very-secret-key"})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(reply["error_msg"].as_str().unwrap().contains("secret: must be the JSON credentials"), "{reply}");
    assert!(!reply.to_string().contains("very-secret-key"));
}

#[tokio::test]
async fn ai_proxy_multi_without_a_model_anywhere_is_a_400_not_a_provider_failure() {
    let bedrock = BedrockMock::start(CREDENTIALS).await;
    let gw = gateway().await;
    let mut unpinned = bedrock_instance(&bedrock, 1);
    unpinned["options"] = json!({});
    gw.put_route(json!({"id": "multi-no-model", "paths": ["/multi-no-model"],
        "plugins": {"ai-proxy-multi": {"instances": [unpinned]}}}))
        .await;
    let response = post(&gw, "/multi-no-model", json!({"messages": [{"role": "user", "content": "Hi"}]}), &[]).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body = json_of(response).await;
    assert!(body["error"]["message"].as_str().unwrap().contains("could not resolve upstream path"), "{body}");
    assert!(bedrock.seen().is_empty(), "nothing is sent");
    // Naming the model makes the same route work.
    let named = json!({"model": MODEL, "messages": [{"role": "user", "content": "Hi"}]});
    assert_eq!(post(&gw, "/multi-no-model", named, &[]).await.status(), StatusCode::OK);
}
