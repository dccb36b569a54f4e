//! An Anthropic Messages request as an OpenAI chat-completions request, for a provider that
//! speaks only chat: system prompts, text, images and documents, tools, `tool_use` and
//! `tool_result` blocks, tool choice, stop sequences, sampling and token limits, thinking, and
//! streaming (with usage requested).

use serde_json::{json, Map, Value};

use super::ConvertError;

/// Translates a Messages request. Errors name what cannot be expressed in chat.
pub fn to_chat(request: &Value) -> Result<Map<String, Value>, ConvertError> {
    let Some(messages) = request.get("messages").and_then(Value::as_array) else {
        return Err(ConvertError("`messages` must be an array".into()));
    };
    let mut out = Map::new();
    if let Some(model) = request.get("model") {
        out.insert("model".into(), model.clone());
    }
    let mut chat = Vec::with_capacity(messages.len() + 1);
    if let Some(system) = system_text(request.get("system"))? {
        chat.push(json!({"role": "system", "content": system}));
    }
    for (i, message) in messages.iter().enumerate() {
        convert_message(message, &mut chat).map_err(|e| ConvertError(format!("messages[{i}]: {}", e.0)))?;
    }
    out.insert("messages".into(), Value::Array(chat));
    if let Some(max_tokens) = request.get("max_tokens") {
        out.insert("max_tokens".into(), max_tokens.clone());
    }
    for key in ["temperature", "top_p"] {
        if let Some(value) = request.get(key) {
            out.insert(key.into(), value.clone());
        }
    }
    if let Some(stops) = request.get("stop_sequences").and_then(Value::as_array) {
        if !stops.is_empty() {
            out.insert("stop".into(), Value::Array(stops.clone()));
        }
    }
    if let Some(user) = request.pointer("/metadata/user_id").and_then(Value::as_str) {
        out.insert("user".into(), Value::String(user.to_string()));
    }
    if let Some(effort) = reasoning_effort(request.get("thinking")) {
        out.insert("reasoning_effort".into(), Value::String(effort.into()));
    }
    let tools = request.get("tools").and_then(Value::as_array).filter(|t| !t.is_empty());
    if let Some(tools) = tools {
        let converted: Result<Vec<Value>, ConvertError> = tools.iter().map(tool).collect();
        out.insert("tools".into(), Value::Array(converted?));
        if let Some(choice) = request.get("tool_choice") {
            let (choice, parallel_off) = tool_choice(choice);
            if let Some(choice) = choice {
                out.insert("tool_choice".into(), choice);
            }
            if parallel_off {
                out.insert("parallel_tool_calls".into(), Value::Bool(false));
            }
        }
    }
    if request.get("stream") == Some(&Value::Bool(true)) {
        out.insert("stream".into(), Value::Bool(true));
        out.insert("stream_options".into(), json!({"include_usage": true}));
    }
    Ok(out)
}

/// `system` as one text: a string, or text blocks joined (cache hints dropped).
fn system_text(system: Option<&Value>) -> Result<Option<String>, ConvertError> {
    match system {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok((!text.is_empty()).then(|| text.clone())),
        Some(Value::Array(blocks)) => {
            let texts: Vec<&str> = blocks.iter().filter_map(|b| b.get("text").and_then(Value::as_str)).collect();
            Ok((!texts.is_empty()).then(|| texts.join("\n")))
        }
        Some(_) => Err(ConvertError("`system` must be a string or an array of text blocks".into())),
    }
}

/// Appends the chat messages one Messages turn becomes: an assistant turn becomes one message
/// (text and tool calls); a user turn's tool results become `tool` messages, placed first
/// because chat needs them right after the assistant's calls, then its other content.
fn convert_message(message: &Value, out: &mut Vec<Value>) -> Result<(), ConvertError> {
    let role = message.get("role").and_then(Value::as_str).unwrap_or("");
    let blocks = match message.get("content") {
        Some(Value::String(text)) => vec![json!({"type": "text", "text": text})],
        Some(Value::Array(blocks)) => blocks.clone(),
        _ => return Err(ConvertError("`content` must be a string or an array of blocks".into())),
    };
    match role {
        "assistant" => {
            let mut text = String::new();
            let mut calls = Vec::new();
            for block in &blocks {
                match block_type(block) {
                    "text" => text.push_str(block.get("text").and_then(Value::as_str).unwrap_or("")),
                    "tool_use" => calls.push(json!({
                        "id": block.get("id").cloned().unwrap_or(Value::Null),
                        "type": "function",
                        "function": {
                            "name": block.get("name").cloned().unwrap_or(Value::Null),
                            "arguments": block.get("input").unwrap_or(&json!({})).to_string(),
                        },
                    })),
                    // Earlier reasoning is not sent back to a chat provider.
                    "thinking" | "redacted_thinking" => {}
                    other => return Err(unsupported_block(other)),
                }
            }
            let mut reply = json!({"role": "assistant", "content": if text.is_empty() && !calls.is_empty() { Value::Null } else { Value::String(text) }});
            if !calls.is_empty() {
                reply["tool_calls"] = Value::Array(calls);
            }
            out.push(reply);
        }
        "user" => {
            let mut parts = Vec::new();
            for block in &blocks {
                match block_type(block) {
                    "tool_result" => out.push(json!({
                        "role": "tool",
                        "tool_call_id": block.get("tool_use_id").cloned().unwrap_or(Value::Null),
                        "content": tool_result_text(block),
                    })),
                    _ => parts.push(user_part(block)?),
                }
            }
            if !parts.is_empty() {
                out.push(json!({"role": "user", "content": user_content(parts)}));
            }
        }
        other => return Err(ConvertError(format!("role `{other}` is not `user` or `assistant`"))),
    }
    Ok(())
}

fn block_type(block: &Value) -> &str {
    block.get("type").and_then(Value::as_str).unwrap_or("")
}

fn unsupported_block(kind: &str) -> ConvertError {
    ConvertError(format!("content block type `{kind}` cannot be sent to an OpenAI chat provider"))
}

/// A user content block as a chat content part.
fn user_part(block: &Value) -> Result<Value, ConvertError> {
    match block_type(block) {
        "text" => Ok(json!({"type": "text", "text": block.get("text").cloned().unwrap_or_default()})),
        "image" => Ok(json!({"type": "image_url", "image_url": {"url": source_url(block.get("source"))?}})),
        "document" => {
            let url = source_url(block.get("source"))?;
            if !url.starts_with("data:") {
                return Ok(json!({"type": "text", "text": url}));
            }
            let name = block.get("title").and_then(Value::as_str).unwrap_or("document.pdf");
            Ok(json!({"type": "file", "file": {"file_data": url, "filename": name}}))
        }
        other => Err(unsupported_block(other)),
    }
}

/// A Messages `source` as a URL: base64 data becomes a data URL.
fn source_url(source: Option<&Value>) -> Result<String, ConvertError> {
    let source = source.ok_or_else(|| ConvertError("an image or document block needs a `source`".into()))?;
    let text = |key: &str| source.get(key).and_then(Value::as_str).unwrap_or("");
    match text("type") {
        "base64" => Ok(format!("data:{};base64,{}", text("media_type"), text("data"))),
        "url" => Ok(text("url").to_string()),
        "text" => Ok(text("data").to_string()),
        other => Err(ConvertError(format!("source type `{other}` cannot be sent to an OpenAI chat provider"))),
    }
}

/// Text-only content becomes a string (every chat provider takes one), anything else parts.
fn user_content(parts: Vec<Value>) -> Value {
    if parts.iter().all(|p| p["type"] == "text") {
        let texts: Vec<&str> = parts.iter().filter_map(|p| p["text"].as_str()).collect();
        return Value::String(texts.join("\n"));
    }
    Value::Array(parts)
}

/// A tool result's content as text (an error result says so).
fn tool_result_text(block: &Value) -> String {
    let text = match block.get("content") {
        Some(Value::String(text)) => text.clone(),
        Some(Value::Array(parts)) => {
            parts.iter().filter_map(|p| p.get("text").and_then(Value::as_str)).collect::<Vec<_>>().join("\n")
        }
        _ => String::new(),
    };
    if block.get("is_error") == Some(&Value::Bool(true)) {
        return format!("Error: {text}");
    }
    text
}

/// A client tool as a chat function; Anthropic's server tools have no chat equivalent.
fn tool(tool: &Value) -> Result<Value, ConvertError> {
    let kind = tool.get("type").and_then(Value::as_str).unwrap_or("custom");
    if kind != "custom" || tool.get("input_schema").is_none() {
        return Err(ConvertError(format!("tool type `{kind}` cannot be sent to an OpenAI chat provider")));
    }
    let mut function = json!({"name": tool.get("name").cloned().unwrap_or(Value::Null),
        "parameters": tool.get("input_schema").cloned().unwrap_or_else(|| json!({"type": "object"}))});
    if let Some(description) = tool.get("description") {
        function["description"] = description.clone();
    }
    Ok(json!({"type": "function", "function": function}))
}

/// `tool_choice` as chat's, and whether parallel tool use was turned off.
fn tool_choice(choice: &Value) -> (Option<Value>, bool) {
    let parallel_off = choice.get("disable_parallel_tool_use") == Some(&Value::Bool(true));
    let converted = match choice.get("type").and_then(Value::as_str) {
        Some("auto") => Some(json!("auto")),
        Some("any") => Some(json!("required")),
        Some("none") => Some(json!("none")),
        Some("tool") => choice.get("name").map(|name| json!({"type": "function", "function": {"name": name}})),
        _ => None,
    };
    (converted, parallel_off)
}

/// An extended-thinking budget as a reasoning effort.
fn reasoning_effort(thinking: Option<&Value>) -> Option<&'static str> {
    let thinking = thinking?;
    if thinking.get("type").and_then(Value::as_str) != Some("enabled") {
        return None;
    }
    Some(match thinking.get("budget_tokens").and_then(Value::as_u64).unwrap_or(0) {
        0..=2048 => "low",
        2049..=8192 => "medium",
        _ => "high",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chat(request: Value) -> Value {
        Value::Object(to_chat(&request).unwrap())
    }

    #[test]
    fn system_sampling_stops_and_limits_take_chat_names() {
        let out = chat(json!({"model": "m", "max_tokens": 300, "temperature": 0.2, "top_p": 0.9, "top_k": 5,
            "stop_sequences": ["END"], "metadata": {"user_id": "u-1"},
            "system": [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}, {"type": "text", "text": "Be kind."}],
            "thinking": {"type": "enabled", "budget_tokens": 4000},
            "messages": [{"role": "user", "content": "Hi"}]}));
        assert_eq!(
            out,
            json!({"model": "m", "messages": [{"role": "system", "content": "Be brief.\nBe kind."},
                {"role": "user", "content": "Hi"}],
                "max_tokens": 300, "temperature": 0.2, "top_p": 0.9, "stop": ["END"], "user": "u-1",
                "reasoning_effort": "medium"})
        );
    }

    #[test]
    fn tool_use_and_results_become_tool_calls_and_tool_messages_in_order() {
        let out = chat(json!({"model": "m", "max_tokens": 10, "stream": true,
        "tools": [{"name": "weather", "description": "Weather", "input_schema": {"type": "object"}}],
        "tool_choice": {"type": "any", "disable_parallel_tool_use": true},
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "Weather?"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAA"}}]},
            {"role": "assistant", "content": [{"type": "thinking", "thinking": "hmm", "signature": "s"},
                {"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "t1", "name": "weather", "input": {"city": "Paris"}}]},
            {"role": "user", "content": [{"type": "text", "text": "thanks"},
                {"type": "tool_result", "tool_use_id": "t1", "content": [{"type": "text", "text": "sunny"}]}]}
        ]}));
        let messages = out["messages"].as_array().unwrap();
        assert_eq!(
            messages[0]["content"][1],
            json!({"type": "image_url", "image_url": {"url": "data:image/png;base64,AAA"}})
        );
        assert_eq!(messages[1]["content"], "Checking.");
        assert_eq!(
            messages[1]["tool_calls"][0]["function"],
            json!({"name": "weather", "arguments": "{\"city\":\"Paris\"}"})
        );
        assert_eq!(messages[2], json!({"role": "tool", "tool_call_id": "t1", "content": "sunny"}));
        assert_eq!(messages[3], json!({"role": "user", "content": "thanks"}));
        assert_eq!(
            out["tools"][0],
            json!({"type": "function", "function": {"name": "weather",
            "parameters": {"type": "object"}, "description": "Weather"}})
        );
        assert_eq!(out["tool_choice"], "required");
        assert_eq!(out["parallel_tool_calls"], false);
        assert_eq!(out["stream_options"], json!({"include_usage": true}));
    }

    #[test]
    fn a_tool_choice_without_tools_is_dropped_and_bad_input_is_refused() {
        let out = chat(json!({"max_tokens": 1, "tool_choice": {"type": "tool", "name": "x"},
            "messages": [{"role": "user", "content": "a"}]}));
        assert!(out.get("tool_choice").is_none());
        assert!(to_chat(&json!({"max_tokens": 1})).unwrap_err().0.contains("messages"));
        let server_tool =
            json!({"max_tokens": 1, "messages": [], "tools": [{"type": "web_search_20250305", "name": "web_search"}]});
        assert!(to_chat(&server_tool).unwrap_err().0.contains("web_search_20250305"));
        let bad_role = json!({"messages": [{"role": "system", "content": "x"}]});
        assert!(to_chat(&bad_role).unwrap_err().0.contains("messages[0]"));
    }
}
