//! A Bedrock Converse answer as the OpenAI chat answer its client expects: a whole response
//! becomes a `chat.completion`, the stream's events (decoded from AWS's binary framing by
//! `converse_stream`) become chat chunks one by one, Bedrock errors (JSON bodies, or exception
//! frames mid-stream) become OpenAI errors. Stop reasons are mapped (`end_turn` → `stop`,
//! `max_tokens` → `length`, `tool_use` → `tool_calls`, guardrails → `content_filter`), usage comes
//! from the response's `usage` or the stream's `metadata` event.

use http::header::HeaderName;
use serde_json::{json, Value};

use super::event::{Data, Event};

/// The header naming a Bedrock error's type (`ValidationException:http://...`).
const ERROR_TYPE: HeaderName = HeaderName::from_static("x-amzn-errortype");
/// The id AWS gives each request: the completion's id is made from it.
const REQUEST_ID: HeaderName = HeaderName::from_static("x-amzn-requestid");

/// A Converse `stopReason` as an OpenAI `finish_reason`.
pub fn finish_reason(stop_reason: Option<&str>) -> Value {
    match stop_reason {
        Some("max_tokens" | "model_context_window_exceeded") => json!("length"),
        Some("tool_use") => json!("tool_calls"),
        Some("guardrail_intervened" | "content_filtered") => json!("content_filter"),
        Some(_) => json!("stop"),
        None => Value::Null,
    }
}

/// Converse usage as OpenAI usage: cache reads and writes count as prompt tokens.
pub fn usage(usage: &Value) -> Value {
    let number = |key: &str| usage.get(key).and_then(Value::as_u64).unwrap_or(0);
    let (input, output) = (number("inputTokens"), number("outputTokens"));
    let (cache_read, cache_write) = (number("cacheReadInputTokens"), number("cacheWriteInputTokens"));
    // Saturating: counts come from the provider, and no answer may make the gateway overflow.
    let prompt = input.saturating_add(cache_read).saturating_add(cache_write);
    let mut details = json!({"cached_tokens": cache_read});
    if cache_write > 0 {
        details["cache_creation_input_tokens"] = cache_write.into();
    }
    json!({"prompt_tokens": prompt, "completion_tokens": output, "total_tokens": prompt.saturating_add(output),
        "prompt_tokens_details": details})
}

/// The OpenAI error for a Bedrock error body (`{"message": ...}`) of an error `kind`.
pub fn error_to_chat(status: u16, body: &Value, kind: Option<&str>) -> Value {
    let message = body
        .get("message")
        .or_else(|| body.get("Message"))
        .and_then(Value::as_str)
        .map(str::to_string)
        .or_else(|| body.as_str().map(str::to_string))
        .unwrap_or_else(|| body.to_string());
    let kind = kind.map(|k| k.split(':').next().unwrap_or(k).to_string());
    let kind = kind.unwrap_or_else(|| if status >= 500 { "api_error".into() } else { "invalid_request_error".into() });
    json!({"error": {"message": message, "type": kind, "code": status}})
}

/// The response side of a chat client over Bedrock Converse, one event at a time.
#[derive(Debug, Clone, Default)]
pub struct ConverseToChat {
    created: u64,
    /// The model the call asked for (Converse answers do not name it).
    model: Option<String>,
    include_usage: bool,
    id: String,
    error_type: Option<String>,
    /// Chat tool-call index by Converse content-block index.
    tool_blocks: Vec<(u64, usize)>,
    stopped: bool,
    done: bool,
}

impl ConverseToChat {
    /// `include_usage`: the client asked for a usage chunk (`stream_options.include_usage`).
    pub fn new(created: u64, include_usage: bool) -> Self {
        Self { created, include_usage, id: "chatcmpl-bedrock".into(), ..Self::default() }
    }

    /// Names the answers after the model the call asked for.
    pub fn set_model(&mut self, model: Option<String>) {
        self.model = model;
    }

    /// Header phase: the request id (for the completion's id) and an error's type.
    pub fn on_head(&mut self, head: &http::response::Parts) {
        if let Some(id) = head.headers.get(REQUEST_ID).and_then(|v| v.to_str().ok()) {
            self.id = format!("chatcmpl-{id}");
        }
        self.error_type = head.headers.get(ERROR_TYPE).and_then(|v| v.to_str().ok()).map(str::to_string);
    }

    fn model(&self) -> Value {
        self.model.clone().map_or(Value::Null, Value::String)
    }

    /// A whole response (or an error body when `status` is not 2xx).
    pub fn whole(&mut self, status: u16, body: Value) -> Value {
        if !(200..300).contains(&status) {
            return error_to_chat(status, &body, self.error_type.as_deref());
        }
        let mut text = String::new();
        let mut reasoning = String::new();
        let mut tool_calls = Vec::new();
        for block in body.pointer("/output/message/content").and_then(Value::as_array).into_iter().flatten() {
            if let Some(part) = block.get("text").and_then(Value::as_str) {
                text.push_str(part);
            } else if let Some(part) = block.pointer("/reasoningContent/reasoningText/text").and_then(Value::as_str) {
                reasoning.push_str(part);
            } else if let Some(tool) = block.get("toolUse") {
                tool_calls.push(json!({
                    "id": tool.get("toolUseId").cloned().unwrap_or(Value::Null),
                    "type": "function",
                    "function": {
                        "name": tool.get("name").cloned().unwrap_or(Value::Null),
                        "arguments": tool.get("input").map_or_else(|| "{}".to_string(), Value::to_string),
                    },
                }));
            }
        }
        let content = if text.is_empty() && !tool_calls.is_empty() { Value::Null } else { Value::String(text) };
        let mut reply = json!({"role": "assistant", "content": content});
        if !reasoning.is_empty() {
            reply["reasoning_content"] = Value::String(reasoning);
        }
        if !tool_calls.is_empty() {
            reply["tool_calls"] = Value::Array(tool_calls);
        }
        let stop = body.get("stopReason").and_then(Value::as_str);
        json!({
            "id": self.id, "object": "chat.completion", "created": self.created, "model": self.model(),
            "choices": [{"index": 0, "message": reply, "finish_reason": finish_reason(stop)}],
            "usage": usage(body.get("usage").unwrap_or(&Value::Null)),
        })
    }

    fn chunk(&self, delta: Value, finish: Value) -> Event {
        Event::unnamed(json!({
            "id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model(),
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }))
    }

    /// One stream event (named by its `:event-type`); the chat chunks it becomes go to `out`.
    pub fn event(&mut self, event: Event, out: &mut Vec<Event>) {
        let name = event.name.clone().unwrap_or_default();
        let Data::Json(payload) = event.data else { return };
        if self.done {
            return;
        }
        match name.as_str() {
            "messageStart" => out.push(self.chunk(json!({"role": "assistant", "content": ""}), Value::Null)),
            "contentBlockStart" => {
                let Some(tool) = payload.pointer("/start/toolUse") else { return };
                let index = payload.get("contentBlockIndex").and_then(Value::as_u64).unwrap_or(0);
                let tool_index = self.tool_blocks.len();
                self.tool_blocks.push((index, tool_index));
                out.push(self.chunk(
                    json!({"tool_calls": [{"index": tool_index, "id": tool.get("toolUseId"), "type": "function",
                        "function": {"name": tool.get("name"), "arguments": ""}}]}),
                    Value::Null,
                ));
            }
            "contentBlockDelta" => {
                let delta = payload.get("delta").unwrap_or(&Value::Null);
                let chunk = if let Some(text) = delta.get("text") {
                    json!({"content": text})
                } else if let Some(text) = delta.pointer("/reasoningContent/text") {
                    json!({"reasoning_content": text})
                } else if let Some(input) = delta.pointer("/toolUse/input") {
                    let index = payload.get("contentBlockIndex").and_then(Value::as_u64).unwrap_or(0);
                    let tool_index = self.tool_blocks.iter().find(|(i, _)| *i == index).map_or(0, |(_, t)| *t);
                    json!({"tool_calls": [{"index": tool_index, "function": {"arguments": input}}]})
                } else {
                    return;
                };
                out.push(self.chunk(chunk, Value::Null));
            }
            "messageStop" => {
                self.stopped = true;
                let stop = payload.get("stopReason").and_then(Value::as_str);
                out.push(self.chunk(json!({}), finish_reason(stop)));
            }
            "metadata" => {
                if self.include_usage {
                    out.push(Event::unnamed(json!({
                        "id": self.id, "object": "chat.completion.chunk", "created": self.created,
                        "model": self.model(), "choices": [],
                        "usage": usage(payload.get("usage").unwrap_or(&Value::Null)),
                    })));
                }
                self.done = true;
                out.push(Event::done());
            }
            "error" => {
                let kind = payload.get("type").and_then(Value::as_str);
                let error = error_to_chat(500, &payload, kind);
                self.done = true;
                out.push(Event { name: Some("error".into()), data: Data::Json(error) });
            }
            // `contentBlockStop`, and event types added later, say nothing a chat client needs.
            _ => {}
        }
    }

    /// The upstream stream ended: a stopped message whose `metadata` never came is done now.
    pub fn end(&mut self, out: &mut Vec<Event>) {
        if self.stopped && !self.done {
            self.done = true;
            out.push(Event::done());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named(name: &str, payload: Value) -> Event {
        Event { name: Some(name.into()), data: Data::Json(payload) }
    }

    #[test]
    fn whole_responses_translate_text_tools_stop_reason_and_usage() {
        let response = json!({"output": {"message": {"role": "assistant", "content": [
                {"reasoningContent": {"reasoningText": {"text": "hmm", "signature": "s"}}},
                {"text": "Let me check."},
                {"toolUse": {"toolUseId": "t1", "name": "weather", "input": {"city": "Paris"}}}]}},
            "stopReason": "tool_use",
            "usage": {"inputTokens": 20, "outputTokens": 9, "totalTokens": 34, "cacheReadInputTokens": 5},
            "metrics": {"latencyMs": 100}});
        let mut stage = ConverseToChat::new(7, false);
        stage.set_model(Some("claude".into()));
        let chat = stage.whole(200, response);
        assert_eq!(chat["model"], "claude");
        assert_eq!(chat["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(chat["choices"][0]["message"]["content"], "Let me check.");
        assert_eq!(chat["choices"][0]["message"]["reasoning_content"], "hmm");
        assert_eq!(chat["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"], "{\"city\":\"Paris\"}");
        assert_eq!(chat["usage"]["prompt_tokens"], 25);
        assert_eq!(chat["usage"]["completion_tokens"], 9);
        assert_eq!(chat["usage"]["total_tokens"], 34);
        let error = ConverseToChat::new(7, false).whole(400, json!({"message": "bad model"}));
        assert_eq!(error["error"]["message"], "bad model");
        for (stop, finish) in [
            ("end_turn", "stop"),
            ("stop_sequence", "stop"),
            ("max_tokens", "length"),
            ("tool_use", "tool_calls"),
            ("guardrail_intervened", "content_filter"),
            ("content_filtered", "content_filter"),
        ] {
            assert_eq!(finish_reason(Some(stop)), finish, "{stop}");
        }
    }

    #[test]
    fn streams_translate_event_by_event() {
        let mut t = ConverseToChat::new(1, true);
        let mut out = Vec::new();
        t.event(named("messageStart", json!({"role": "assistant"})), &mut out);
        t.event(named("contentBlockDelta", json!({"contentBlockIndex": 0, "delta": {"text": "Hi"}})), &mut out);
        t.event(named("contentBlockStop", json!({"contentBlockIndex": 0})), &mut out);
        t.event(
            named(
                "contentBlockStart",
                json!({"contentBlockIndex": 1, "start": {"toolUse": {"toolUseId": "t1", "name": "f"}}}),
            ),
            &mut out,
        );
        t.event(
            named("contentBlockDelta", json!({"contentBlockIndex": 1, "delta": {"toolUse": {"input": "{\"a\":"}}})),
            &mut out,
        );
        t.event(named("messageStop", json!({"stopReason": "tool_use"})), &mut out);
        t.event(named("metadata", json!({"usage": {"inputTokens": 3, "outputTokens": 2, "totalTokens": 5}})), &mut out);
        let json = |i: usize| out[i].json().unwrap().clone();
        assert_eq!(out.len(), 7, "{out:?}");
        assert_eq!(json(0)["choices"][0]["delta"]["role"], "assistant");
        assert_eq!(json(1)["choices"][0]["delta"]["content"], "Hi");
        assert_eq!(json(2)["choices"][0]["delta"]["tool_calls"][0]["id"], "t1");
        assert_eq!(json(3)["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"], "{\"a\":");
        assert_eq!(json(4)["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(json(5)["usage"]["total_tokens"], 5);
        assert_eq!(out[6], Event::done());
        let mut more = Vec::new();
        t.end(&mut more);
        assert!(more.is_empty());
    }
}
