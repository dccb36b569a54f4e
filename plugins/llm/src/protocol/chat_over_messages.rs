//! An OpenAI chat client over a provider that speaks only Anthropic Messages (the model API's
//! `anthropic` adapter): chat requests become Messages requests, and Messages responses, whole
//! or streamed, become chat completions and chunks, usage included.

use serde_json::{json, Map, Value};

use super::event::{Data, Event};

/// Anthropic requires `max_tokens`; used when the chat request sets none.
const DEFAULT_MAX_TOKENS: u64 = 4096;

/// Translates an OpenAI chat-completions request.
pub fn request_to_messages(openai: &Value) -> Map<String, Value> {
    let mut out = Map::new();
    if let Some(model) = openai.get("model") {
        out.insert("model".into(), model.clone());
    }
    let max_tokens = openai
        .get("max_completion_tokens")
        .or_else(|| openai.get("max_tokens"))
        .and_then(Value::as_u64)
        .unwrap_or(DEFAULT_MAX_TOKENS);
    out.insert("max_tokens".into(), max_tokens.into());
    let (system, messages) =
        messages_from_openai(openai.get("messages").and_then(Value::as_array).map_or(&[], Vec::as_slice));
    if !system.is_empty() {
        out.insert("system".into(), Value::String(system));
    }
    out.insert("messages".into(), Value::Array(messages));
    for key in ["temperature", "top_p", "stream"] {
        if let Some(value) = openai.get(key) {
            out.insert(key.into(), value.clone());
        }
    }
    match openai.get("stop") {
        Some(Value::String(stop)) => {
            out.insert("stop_sequences".into(), json!([stop]));
        }
        Some(Value::Array(stops)) => {
            out.insert("stop_sequences".into(), Value::Array(stops.clone()));
        }
        _ => {}
    }
    if let Some(user) = openai.get("user").and_then(Value::as_str) {
        out.insert("metadata".into(), json!({"user_id": user}));
    }
    if let Some(effort) = openai.get("reasoning_effort").and_then(Value::as_str) {
        let budget = match effort {
            "minimal" | "low" => 1024,
            "medium" => 4096,
            _ => 16384,
        };
        out.insert("thinking".into(), json!({"type": "enabled", "budget_tokens": budget}));
    }
    if let Some(tools) = openai.get("tools").and_then(Value::as_array) {
        let tools: Vec<Value> = tools
            .iter()
            .filter_map(|t| t.get("function"))
            .map(|f| {
                json!({
                    "name": f.get("name").cloned().unwrap_or(Value::Null),
                    "description": f.get("description").cloned().unwrap_or(Value::String(String::new())),
                    "input_schema": f.get("parameters").cloned().unwrap_or_else(|| json!({"type": "object"})),
                })
            })
            .collect();
        out.insert("tools".into(), Value::Array(tools));
    }
    let parallel_off = openai.get("parallel_tool_calls") == Some(&Value::Bool(false));
    if let Some(choice) = openai.get("tool_choice") {
        let translated = match choice {
            Value::String(s) if s == "required" => Some(json!({"type": "any"})),
            Value::String(s) if s == "auto" || s == "none" => Some(json!({"type": s})),
            Value::Object(_) => choice.pointer("/function/name").map(|name| json!({"type": "tool", "name": name})),
            _ => None,
        };
        if let Some(mut translated) = translated {
            if parallel_off && translated["type"] != "none" {
                translated["disable_parallel_tool_use"] = Value::Bool(true);
            }
            out.insert("tool_choice".into(), translated);
        }
    } else if parallel_off && out.contains_key("tools") {
        out.insert("tool_choice".into(), json!({"type": "auto", "disable_parallel_tool_use": true}));
    }
    out
}

/// System prompts joined, and the conversation as Messages (tool results grouped into user turns).
fn messages_from_openai(messages: &[Value]) -> (String, Vec<Value>) {
    let mut system = Vec::new();
    let mut out: Vec<Value> = Vec::new();
    for message in messages {
        let role = message.get("role").and_then(Value::as_str).unwrap_or("user");
        match role {
            "system" | "developer" => system.push(text_of(message.get("content"))),
            "tool" => {
                let block = json!({
                    "type": "tool_result",
                    "tool_use_id": message.get("tool_call_id").cloned().unwrap_or(Value::Null),
                    "content": text_of(message.get("content")),
                });
                match out.last_mut() {
                    Some(last)
                        if last["role"] == "user"
                            && last["content"]
                                .as_array()
                                .is_some_and(|c| c.iter().all(|b| b["type"] == "tool_result")) =>
                    {
                        if let Some(blocks) = last["content"].as_array_mut() {
                            blocks.push(block);
                        }
                    }
                    _ => out.push(json!({"role": "user", "content": [block]})),
                }
            }
            "assistant" => {
                let mut blocks = content_blocks(message.get("content"));
                for call in message.get("tool_calls").and_then(Value::as_array).into_iter().flatten() {
                    let arguments = call.pointer("/function/arguments").and_then(Value::as_str).unwrap_or("{}");
                    blocks.push(json!({
                        "type": "tool_use",
                        "id": call.get("id").cloned().unwrap_or(Value::Null),
                        "name": call.pointer("/function/name").cloned().unwrap_or(Value::Null),
                        "input": serde_json::from_str::<Value>(arguments).unwrap_or_else(|_| json!({})),
                    }));
                }
                out.push(json!({"role": "assistant", "content": blocks}));
            }
            _ => out.push(json!({"role": "user", "content": content_blocks(message.get("content"))})),
        }
    }
    (system.join("\n\n"), out)
}

/// OpenAI content (a string or parts) as text, for system prompts and tool results.
fn text_of(content: Option<&Value>) -> String {
    match content {
        Some(Value::String(text)) => text.clone(),
        Some(Value::Array(parts)) => {
            parts.iter().filter_map(|p| p.get("text").and_then(Value::as_str)).collect::<Vec<_>>().join("")
        }
        _ => String::new(),
    }
}

/// OpenAI content as Anthropic content blocks (text, images, PDF files).
fn content_blocks(content: Option<&Value>) -> Vec<Value> {
    match content {
        Some(Value::String(text)) if !text.is_empty() => vec![json!({"type": "text", "text": text})],
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|part| match part.get("type").and_then(Value::as_str) {
                Some("text") => Some(json!({"type": "text", "text": part.get("text").cloned().unwrap_or_default()})),
                Some("image_url") => {
                    let url = part.pointer("/image_url/url").and_then(Value::as_str)?;
                    Some(json!({"type": "image", "source": source_of(url)}))
                }
                Some("file") => {
                    let data = part.pointer("/file/file_data").and_then(Value::as_str)?;
                    Some(json!({"type": "document", "source": source_of(data)}))
                }
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// A data URL as a base64 source, anything else as a URL source.
fn source_of(url: &str) -> Value {
    match url.strip_prefix("data:").and_then(|rest| rest.split_once(";base64,")) {
        Some((media_type, data)) => json!({"type": "base64", "media_type": media_type, "data": data}),
        None => json!({"type": "url", "url": url}),
    }
}

/// Anthropic `stop_reason` as an OpenAI `finish_reason`.
fn finish_reason(stop_reason: Option<&str>) -> Value {
    match stop_reason {
        Some("max_tokens") => json!("length"),
        Some("tool_use") => json!("tool_calls"),
        Some("refusal") => json!("content_filter"),
        Some(_) => json!("stop"),
        None => Value::Null,
    }
}

/// Anthropic usage as OpenAI usage: cache reads and writes are prompt tokens too.
fn usage(usage: &Value, output_tokens: Option<u64>) -> Value {
    let number = |key: &str| usage.get(key).and_then(Value::as_u64).unwrap_or(0);
    let (input, cache_read, cache_write) =
        (number("input_tokens"), number("cache_read_input_tokens"), number("cache_creation_input_tokens"));
    let output = output_tokens.unwrap_or_else(|| number("output_tokens"));
    // Saturating: counts come from the provider, and no answer may make the gateway overflow.
    let prompt = input.saturating_add(cache_read).saturating_add(cache_write);
    let mut details = json!({"cached_tokens": cache_read});
    if cache_write > 0 {
        details["cache_creation_input_tokens"] = cache_write.into();
    }
    json!({"prompt_tokens": prompt, "completion_tokens": output, "total_tokens": prompt.saturating_add(output), "prompt_tokens_details": details})
}

/// Translates a whole Messages response.
pub fn response_to_chat(message: &Value, created: u64) -> Value {
    let mut text = String::new();
    let mut reasoning = String::new();
    let mut tool_calls = Vec::new();
    for block in message.get("content").and_then(Value::as_array).into_iter().flatten() {
        match block.get("type").and_then(Value::as_str) {
            Some("text") => text.push_str(block.get("text").and_then(Value::as_str).unwrap_or("")),
            Some("thinking") => reasoning.push_str(block.get("thinking").and_then(Value::as_str).unwrap_or("")),
            Some("tool_use") => tool_calls.push(json!({
                "id": block.get("id").cloned().unwrap_or(Value::Null),
                "type": "function",
                "function": {
                    "name": block.get("name").cloned().unwrap_or(Value::Null),
                    "arguments": block.get("input").map_or_else(|| "{}".to_string(), Value::to_string),
                },
            })),
            _ => {}
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
    let stop = message.get("stop_reason").and_then(Value::as_str);
    json!({
        "id": message.get("id").cloned().unwrap_or(Value::Null),
        "object": "chat.completion",
        "created": created,
        "model": message.get("model").cloned().unwrap_or(Value::Null),
        "choices": [{"index": 0, "message": reply, "finish_reason": finish_reason(stop)}],
        "usage": usage(message.get("usage").unwrap_or(&Value::Null), None),
    })
}

/// Translates an Anthropic error body (`{"type":"error","error":{...}}`) to the OpenAI shape.
pub fn error_to_chat(body: &Value) -> Option<Value> {
    let error = body.get("error")?;
    Some(json!({"error": {
        "message": error.get("message").cloned().unwrap_or(Value::Null),
        "type": error.get("type").cloned().unwrap_or(Value::Null),
        "code": Value::Null,
    }}))
}

/// The response side: a Messages response or event stream becomes chat, one event at a time.
#[derive(Debug, Clone, Default)]
pub struct MessagesToChat {
    created: u64,
    id: String,
    model: Value,
    include_usage: bool,
    input_usage: Value,
    output_tokens: Option<u64>,
    /// OpenAI tool-call index by Anthropic content-block index.
    tool_blocks: Vec<(u64, usize)>,
}

impl MessagesToChat {
    /// `include_usage`: the client asked for a usage chunk (`stream_options.include_usage`).
    pub fn new(created: u64, include_usage: bool) -> Self {
        Self { created, include_usage, input_usage: Value::Null, ..Self::default() }
    }

    fn chunk(&self, delta: Value, finish: Value) -> Event {
        Event::unnamed(json!({
            "id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }))
    }

    /// A whole response (or an error body when `status` is not 2xx).
    pub fn whole(&mut self, status: u16, body: Value) -> Value {
        if (200..300).contains(&status) {
            response_to_chat(&body, self.created)
        } else {
            error_to_chat(&body).unwrap_or_else(|| super::openai_error(status, body))
        }
    }

    /// One upstream event; the chat chunks it becomes go to `out`.
    pub fn event(&mut self, event: Event, out: &mut Vec<Event>) {
        let Data::Json(event) = event.data else { return out.push(event) };
        match event.get("type").and_then(Value::as_str) {
            Some("message_start") => {
                let message = event.get("message").unwrap_or(&Value::Null);
                self.id = message.get("id").and_then(Value::as_str).unwrap_or("").to_string();
                self.model = message.get("model").cloned().unwrap_or(Value::Null);
                self.input_usage = message.get("usage").cloned().unwrap_or(Value::Null);
                out.push(self.chunk(json!({"role": "assistant", "content": ""}), Value::Null));
            }
            Some("content_block_start") => {
                let block = event.get("content_block").unwrap_or(&Value::Null);
                if block.get("type").and_then(Value::as_str) != Some("tool_use") {
                    return;
                }
                let index = event.get("index").and_then(Value::as_u64).unwrap_or(0);
                let tool_index = self.tool_blocks.len();
                self.tool_blocks.push((index, tool_index));
                out.push(self.chunk(
                    json!({"tool_calls": [{"index": tool_index, "id": block.get("id"), "type": "function",
                        "function": {"name": block.get("name"), "arguments": ""}}]}),
                    Value::Null,
                ));
            }
            Some("content_block_delta") => {
                let delta = event.get("delta").unwrap_or(&Value::Null);
                let chunk = match delta.get("type").and_then(Value::as_str) {
                    Some("text_delta") => json!({"content": delta.get("text")}),
                    Some("thinking_delta") => json!({"reasoning_content": delta.get("thinking")}),
                    Some("input_json_delta") => {
                        let index = event.get("index").and_then(Value::as_u64).unwrap_or(0);
                        let tool_index = self.tool_blocks.iter().find(|(i, _)| *i == index).map_or(0, |(_, t)| *t);
                        json!({"tool_calls": [{"index": tool_index, "function": {"arguments": delta.get("partial_json")}}]})
                    }
                    _ => return,
                };
                out.push(self.chunk(chunk, Value::Null));
            }
            Some("message_delta") => {
                self.output_tokens = event.pointer("/usage/output_tokens").and_then(Value::as_u64);
                // Newer API versions repeat the input counts here; they are the final ones.
                if let (Some(Value::Object(start)), Some(Value::Object(delta))) =
                    (Some(&mut self.input_usage), event.get("usage"))
                {
                    for (key, value) in delta {
                        if key != "output_tokens" && value.as_u64().is_some() {
                            start.insert(key.clone(), value.clone());
                        }
                    }
                }
                let stop = event.pointer("/delta/stop_reason").and_then(Value::as_str);
                out.push(self.chunk(json!({}), finish_reason(stop)));
            }
            Some("message_stop") => {
                if self.include_usage {
                    out.push(Event::unnamed(json!({
                        "id": self.id, "object": "chat.completion.chunk", "created": self.created,
                        "model": self.model, "choices": [],
                        "usage": usage(&self.input_usage, self.output_tokens),
                    })));
                }
                out.push(Event::done());
            }
            Some("error") => {
                let error = error_to_chat(&event).unwrap_or_else(|| json!({"error": {"message": "upstream error"}}));
                out.push(Event { name: Some("error".into()), data: Data::Json(error) });
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_translate_system_tools_and_tool_results() {
        let openai = json!({
            "model": "claude-x", "max_tokens": 100, "stop": "END", "user": "u1", "stream": true,
            "parallel_tool_calls": false,
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Weather in Paris?"},
                {"role": "assistant", "content": null, "tool_calls": [{"id": "t1", "type": "function",
                    "function": {"name": "weather", "arguments": "{\"city\":\"Paris\"}"}}]},
                {"role": "tool", "tool_call_id": "t1", "content": "sunny"}
            ],
            "tools": [{"type": "function", "function": {"name": "weather", "description": "d", "parameters": {"type": "object"}}}],
            "tool_choice": "required"
        });
        let messages = Value::Object(request_to_messages(&openai));
        assert_eq!(messages["system"], "Be brief.");
        assert_eq!(messages["max_tokens"], 100);
        assert_eq!(messages["stop_sequences"], json!(["END"]));
        assert_eq!(messages["metadata"]["user_id"], "u1");
        assert_eq!(
            messages["messages"][0],
            json!({"role": "user", "content": [{"type": "text", "text": "Weather in Paris?"}]})
        );
        assert_eq!(messages["messages"][1]["content"][0]["input"], json!({"city": "Paris"}));
        assert_eq!(messages["messages"][2]["content"][0]["tool_use_id"], "t1");
        assert_eq!(messages["tools"][0]["input_schema"], json!({"type": "object"}));
        assert_eq!(messages["tool_choice"], json!({"type": "any", "disable_parallel_tool_use": true}));
    }

    #[test]
    fn responses_translate_text_tools_and_usage() {
        let message = json!({"id": "msg_1", "type": "message", "role": "assistant", "stop_reason": "tool_use",
            "model": "claude-x",
            "content": [{"type": "text", "text": "Let me check."}, {"type": "tool_use", "id": "t1", "name": "weather", "input": {"city": "Paris"}}],
            "usage": {"input_tokens": 20, "output_tokens": 9, "cache_read_input_tokens": 5}});
        let chat = MessagesToChat::new(7, false).whole(200, message);
        assert_eq!(chat["model"], "claude-x");
        assert_eq!(chat["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(chat["choices"][0]["message"]["content"], "Let me check.");
        assert_eq!(chat["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"], "{\"city\":\"Paris\"}");
        assert_eq!(chat["usage"]["prompt_tokens"], 25);
        assert_eq!(chat["usage"]["completion_tokens"], 9);
        assert_eq!(chat["usage"]["prompt_tokens_details"]["cached_tokens"], 5);
        let error = json!({"type": "error", "error": {"type": "overloaded_error", "message": "busy"}});
        assert_eq!(MessagesToChat::new(7, false).whole(529, error)["error"]["message"], "busy");
    }

    #[test]
    fn streams_translate_event_by_event() {
        let mut t = MessagesToChat::new(1, true);
        let mut out = Vec::new();
        t.event(
            Event::typed(
                json!({"type": "message_start", "message": {"id": "m1", "model": "c", "usage": {"input_tokens": 3}}}),
            ),
            &mut out,
        );
        t.event(Event::typed(json!({"type": "ping"})), &mut out);
        t.event(
            Event::typed(
                json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hi"}}),
            ),
            &mut out,
        );
        t.event(
            Event::typed(
                json!({"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 2}}),
            ),
            &mut out,
        );
        t.event(Event::typed(json!({"type": "message_stop"})), &mut out);
        assert_eq!(out.len(), 5, "{out:?}");
        assert_eq!(out[0].json().unwrap()["choices"][0]["delta"]["role"], "assistant");
        assert_eq!(out[1].json().unwrap()["choices"][0]["delta"]["content"], "Hi");
        assert_eq!(out[2].json().unwrap()["choices"][0]["finish_reason"], "stop");
        assert_eq!(out[3].json().unwrap()["usage"]["total_tokens"], 5);
        assert_eq!(out[4], Event::done());
    }
}
