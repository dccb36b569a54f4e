//! An OpenAI chat response as the Anthropic Messages response its client expects: whole
//! completions become a `message`, chat chunks become the full Messages event sequence
//! (`message_start`, `content_block_start` / `_delta` / `_stop` per text, thinking or tool-use
//! block, `message_delta` with the stop reason and usage, `message_stop`), and OpenAI error
//! bodies become Anthropic errors.

use http::StatusCode;
use serde_json::{json, Value};
use switchyard_sdk::respond::anthropic_error_type;

use super::event::{Data, Event};

/// A chat `finish_reason` as a Messages `stop_reason`.
fn stop_reason(finish: Option<&str>) -> &'static str {
    match finish {
        Some("length") => "max_tokens",
        Some("tool_calls" | "function_call") => "tool_use",
        Some("content_filter") => "refusal",
        _ => "end_turn",
    }
}

/// Chat usage as Messages usage: Anthropic's `input_tokens` leaves out cache reads and writes.
fn usage(usage: Option<&Value>) -> Value {
    let number = |pointer: &str| usage.and_then(|u| u.pointer(pointer)).and_then(Value::as_u64).unwrap_or(0);
    let cache_read = number("/prompt_tokens_details/cached_tokens");
    let cache_write = number("/prompt_tokens_details/cache_creation_input_tokens");
    json!({
        "input_tokens": number("/prompt_tokens").saturating_sub(cache_read.saturating_add(cache_write)),
        "output_tokens": number("/completion_tokens"),
        "cache_read_input_tokens": cache_read,
        "cache_creation_input_tokens": cache_write,
    })
}

/// A Messages id for a chat id.
fn message_id(id: Option<&Value>) -> String {
    match id.and_then(Value::as_str) {
        Some(id) if id.starts_with("msg_") => id.to_string(),
        Some(id) => format!("msg_{id}"),
        None => "msg_switchyard".to_string(),
    }
}

/// The Anthropic error body for an upstream error in OpenAI's shape (or any other JSON, or the
/// text of an error page).
pub fn error_to_messages(status: u16, body: &Value) -> Value {
    let message = body
        .pointer("/error/message")
        .and_then(Value::as_str)
        .or_else(|| body.get("message").and_then(Value::as_str))
        .or_else(|| body.as_str())
        .map_or_else(|| body.to_string(), str::to_string);
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
    json!({"type": "error", "error": {"type": anthropic_error_type(status), "message": message}})
}

/// Translates a whole chat completion.
pub fn completion_to_message(completion: &Value) -> Value {
    let choice = completion.pointer("/choices/0").unwrap_or(&Value::Null);
    let message = choice.get("message").unwrap_or(&Value::Null);
    let mut content = Vec::new();
    let reasoning = message.get("reasoning_content").or_else(|| message.get("reasoning")).and_then(Value::as_str);
    if let Some(reasoning) = reasoning.filter(|r| !r.is_empty()) {
        content.push(json!({"type": "thinking", "thinking": reasoning, "signature": ""}));
    }
    if let Some(text) = message.get("content").and_then(Value::as_str).filter(|t| !t.is_empty()) {
        content.push(json!({"type": "text", "text": text}));
    }
    for call in message.get("tool_calls").and_then(Value::as_array).into_iter().flatten() {
        let arguments = call.pointer("/function/arguments").and_then(Value::as_str).unwrap_or("{}");
        content.push(json!({
            "type": "tool_use",
            "id": call.get("id").cloned().unwrap_or(Value::Null),
            "name": call.pointer("/function/name").cloned().unwrap_or(Value::Null),
            "input": serde_json::from_str::<Value>(arguments).unwrap_or_else(|_| json!({})),
        }));
    }
    json!({
        "id": message_id(completion.get("id")),
        "type": "message",
        "role": "assistant",
        "model": completion.get("model").cloned().unwrap_or(Value::Null),
        "content": content,
        "stop_reason": stop_reason(choice.get("finish_reason").and_then(Value::as_str)),
        "stop_sequence": null,
        "usage": usage(completion.get("usage")),
    })
}

/// The kind of content block open in the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Block {
    Text,
    Thinking,
    /// A tool call, by its chat index.
    Tool(u64),
}

/// The response side of a Messages client over a chat provider, one chunk at a time.
#[derive(Debug, Clone, Default)]
pub struct ChatToMessages {
    started: bool,
    finished: bool,
    /// The block being streamed and its Messages index.
    open: Option<(Block, u64)>,
    next_index: u64,
    stop_reason: Option<&'static str>,
    usage: Option<Value>,
}

impl ChatToMessages {
    pub fn new() -> Self {
        Self::default()
    }

    /// A whole response (or an error body when `status` is not 2xx).
    pub fn whole(&mut self, status: u16, body: Value) -> Value {
        if (200..300).contains(&status) {
            completion_to_message(&body)
        } else {
            error_to_messages(status, &body)
        }
    }

    /// One upstream chunk; the Messages events it becomes go to `out`.
    pub fn event(&mut self, event: Event, out: &mut Vec<Event>) {
        let chunk = match event.data {
            Data::Done => return self.end(out),
            Data::Other(_) => return out.push(event),
            Data::Json(chunk) => chunk,
        };
        if self.finished {
            return;
        }
        if chunk.get("error").is_some() {
            return out.push(Event::typed(error_to_messages(500, &chunk)));
        }
        self.start(&chunk, out);
        if let Some(usage) = chunk.get("usage").filter(|u| u.is_object()) {
            self.usage = Some(usage.clone());
        }
        let Some(choice) = chunk.pointer("/choices/0") else { return };
        let delta = choice.get("delta").unwrap_or(&Value::Null);
        let reasoning = delta.get("reasoning_content").or_else(|| delta.get("reasoning")).and_then(Value::as_str);
        if let Some(thinking) = reasoning.filter(|t| !t.is_empty()) {
            let index =
                self.open_block(Block::Thinking, json!({"type": "thinking", "thinking": "", "signature": ""}), out);
            out.push(delta_event(index, json!({"type": "thinking_delta", "thinking": thinking})));
        }
        if let Some(text) = delta.get("content").and_then(Value::as_str).filter(|t| !t.is_empty()) {
            let index = self.open_block(Block::Text, json!({"type": "text", "text": ""}), out);
            out.push(delta_event(index, json!({"type": "text_delta", "text": text})));
        }
        for call in delta.get("tool_calls").and_then(Value::as_array).into_iter().flatten() {
            let tool = call.get("index").and_then(Value::as_u64).unwrap_or(0);
            let index = match self.open {
                Some((Block::Tool(open), index)) if open == tool => index,
                _ => self.open_block(
                    Block::Tool(tool),
                    json!({"type": "tool_use", "id": call.get("id").cloned().unwrap_or(Value::Null),
                        "name": call.pointer("/function/name").cloned().unwrap_or(Value::Null), "input": {}}),
                    out,
                ),
            };
            let arguments = call.pointer("/function/arguments").and_then(Value::as_str).unwrap_or("");
            if !arguments.is_empty() {
                out.push(delta_event(index, json!({"type": "input_json_delta", "partial_json": arguments})));
            }
        }
        if let Some(finish) = choice.get("finish_reason").and_then(Value::as_str) {
            self.stop_reason = Some(stop_reason(Some(finish)));
            self.close_block(out);
        }
    }

    /// The upstream stream ended (`[DONE]` or its last byte): closes the message once.
    pub fn end(&mut self, out: &mut Vec<Event>) {
        if self.finished {
            return;
        }
        self.start(&Value::Null, out);
        self.close_block(out);
        self.finished = true;
        out.push(Event::typed(json!({
            "type": "message_delta",
            "delta": {"stop_reason": self.stop_reason.unwrap_or("end_turn"), "stop_sequence": null},
            "usage": usage(self.usage.as_ref()),
        })));
        out.push(Event::typed(json!({"type": "message_stop"})));
    }

    fn start(&mut self, chunk: &Value, out: &mut Vec<Event>) {
        if std::mem::replace(&mut self.started, true) {
            return;
        }
        out.push(Event::typed(json!({"type": "message_start", "message": {
            "id": message_id(chunk.get("id")), "type": "message", "role": "assistant",
            "model": chunk.get("model").cloned().unwrap_or(Value::Null), "content": [],
            "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": 0, "output_tokens": 0},
        }})));
    }

    /// The index of the open block of `kind`, starting it (and closing another) when needed.
    fn open_block(&mut self, kind: Block, content_block: Value, out: &mut Vec<Event>) -> u64 {
        if let Some((open, index)) = self.open {
            if open == kind {
                return index;
            }
        }
        self.close_block(out);
        let index = self.next_index;
        self.next_index += 1;
        self.open = Some((kind, index));
        out.push(Event::typed(json!({"type": "content_block_start", "index": index, "content_block": content_block})));
        index
    }

    fn close_block(&mut self, out: &mut Vec<Event>) {
        if let Some((_, index)) = self.open.take() {
            out.push(Event::typed(json!({"type": "content_block_stop", "index": index})));
        }
    }
}

fn delta_event(index: u64, delta: Value) -> Event {
    Event::typed(json!({"type": "content_block_delta", "index": index, "delta": delta}))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(events: &[Event]) -> Vec<&str> {
        events.iter().map(|e| e.name.as_deref().unwrap_or("-")).collect()
    }

    #[test]
    fn completions_become_messages_with_usage_net_of_cache() {
        let completion = json!({"id": "chatcmpl-1", "model": "gpt", "choices": [{"index": 0, "finish_reason": "tool_calls",
            "message": {"role": "assistant", "content": "Checking.", "reasoning_content": "think",
                "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Paris\"}"}}]}}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 4, "total_tokens": 14, "prompt_tokens_details": {"cached_tokens": 3}}});
        let message = ChatToMessages::new().whole(200, completion);
        assert_eq!(message["id"], "msg_chatcmpl-1");
        assert_eq!(message["stop_reason"], "tool_use");
        assert_eq!(message["content"][0], json!({"type": "thinking", "thinking": "think", "signature": ""}));
        assert_eq!(message["content"][1], json!({"type": "text", "text": "Checking."}));
        assert_eq!(
            message["content"][2],
            json!({"type": "tool_use", "id": "c1", "name": "weather", "input": {"city": "Paris"}})
        );
        assert_eq!(
            message["usage"],
            json!({"input_tokens": 7, "output_tokens": 4, "cache_read_input_tokens": 3, "cache_creation_input_tokens": 0})
        );
    }

    #[test]
    fn errors_take_the_anthropic_shape() {
        let error = json!({"error": {"message": "slow down", "type": "rate", "code": 429}});
        assert_eq!(
            ChatToMessages::new().whole(429, error),
            json!({"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}})
        );
    }

    #[test]
    fn chunks_become_the_full_event_sequence_with_usage_at_the_end() {
        let mut stage = ChatToMessages::new();
        let mut out = Vec::new();
        let chunk = |delta: Value, finish: Value| {
            Event::unnamed(
                json!({"id": "c", "model": "m", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}),
            )
        };
        stage.event(chunk(json!({"role": "assistant", "content": ""}), Value::Null), &mut out);
        stage.event(chunk(json!({"content": "Hel"}), Value::Null), &mut out);
        stage.event(chunk(json!({"content": "lo"}), Value::Null), &mut out);
        stage.event(
            chunk(
                json!({"tool_calls": [{"index": 0, "id": "t1", "function": {"name": "w", "arguments": ""}}]}),
                Value::Null,
            ),
            &mut out,
        );
        stage.event(
            chunk(json!({"tool_calls": [{"index": 0, "function": {"arguments": "{}"}}]}), Value::Null),
            &mut out,
        );
        stage.event(chunk(json!({}), json!("tool_calls")), &mut out);
        stage.event(
            Event::unnamed(json!({"id": "c", "choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 2}})),
            &mut out,
        );
        stage.event(Event::done(), &mut out);
        stage.end(&mut out);
        assert_eq!(
            names(&out),
            [
                "message_start",
                "content_block_start",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "content_block_start",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ]
        );
        assert_eq!(out[5].json().unwrap()["index"], 1);
        assert_eq!(out[6].json().unwrap()["delta"], json!({"type": "input_json_delta", "partial_json": "{}"}));
        let delta = out[8].json().unwrap();
        assert_eq!(delta["delta"]["stop_reason"], "tool_use");
        assert_eq!(delta["usage"]["input_tokens"], 5);
        assert_eq!(delta["usage"]["output_tokens"], 2);
    }

    #[test]
    fn a_stream_without_done_is_closed_at_its_end() {
        let mut stage = ChatToMessages::new();
        let mut out = Vec::new();
        stage.event(
            Event::unnamed(json!({"choices": [{"delta": {"content": "x"}, "finish_reason": "stop"}]})),
            &mut out,
        );
        stage.end(&mut out);
        assert_eq!(names(&out).last(), Some(&"message_stop"));
    }
}
