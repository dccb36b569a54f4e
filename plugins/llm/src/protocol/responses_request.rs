//! An OpenAI Responses request as an OpenAI chat-completions request, for a provider that
//! speaks only chat: `instructions`, `input` (text, message items with text, image and file
//! parts, `function_call` and `function_call_output` items), function tools and tool choice,
//! output token limit, sampling, reasoning effort, structured output, and streaming.

use serde_json::{json, Map, Value};

use super::ConvertError;

/// Translates a Responses request. Errors name what a chat provider cannot do.
pub fn to_chat(request: &Value) -> Result<Map<String, Value>, ConvertError> {
    if request.get("previous_response_id").is_some_and(|id| !id.is_null()) {
        return Err(ConvertError(
            "`previous_response_id` needs a provider that keeps responses: send the whole conversation in `input`"
                .into(),
        ));
    }
    let mut out = Map::new();
    if let Some(model) = request.get("model") {
        out.insert("model".into(), model.clone());
    }
    let mut messages = Vec::new();
    if let Some(instructions) = request.get("instructions").and_then(Value::as_str) {
        messages.push(json!({"role": "system", "content": instructions}));
    }
    match request.get("input") {
        Some(Value::String(text)) => messages.push(json!({"role": "user", "content": text})),
        Some(Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                convert_item(item, &mut messages).map_err(|e| ConvertError(format!("input[{i}]: {}", e.0)))?;
            }
        }
        _ => return Err(ConvertError("`input` must be a string or an array of items".into())),
    }
    out.insert("messages".into(), Value::Array(messages));
    if let Some(max) = request.get("max_output_tokens").filter(|v| !v.is_null()) {
        out.insert("max_tokens".into(), max.clone());
    }
    for key in ["temperature", "top_p", "user", "parallel_tool_calls", "top_logprobs", "service_tier"] {
        if let Some(value) = request.get(key).filter(|v| !v.is_null()) {
            out.insert(key.into(), value.clone());
        }
    }
    if let Some(effort) = request.pointer("/reasoning/effort").filter(|v| v.is_string()) {
        out.insert("reasoning_effort".into(), effort.clone());
    }
    if let Some(format) = response_format(request.pointer("/text/format")) {
        out.insert("response_format".into(), format);
    }
    if let Some(tools) = request.get("tools").and_then(Value::as_array).filter(|t| !t.is_empty()) {
        let converted: Result<Vec<Value>, ConvertError> = tools.iter().map(tool).collect();
        out.insert("tools".into(), Value::Array(converted?));
        if let Some(choice) = request.get("tool_choice").and_then(tool_choice) {
            out.insert("tool_choice".into(), choice);
        }
    }
    if request.get("stream") == Some(&Value::Bool(true)) {
        out.insert("stream".into(), Value::Bool(true));
        out.insert("stream_options".into(), json!({"include_usage": true}));
    }
    Ok(out)
}

/// Appends the chat messages one input item becomes. Consecutive function calls join one
/// assistant message, as chat expects them.
fn convert_item(item: &Value, out: &mut Vec<Value>) -> Result<(), ConvertError> {
    let kind = item.get("type").and_then(Value::as_str).unwrap_or("message");
    match kind {
        "message" => {
            let role = match item.get("role").and_then(Value::as_str) {
                Some(role @ ("user" | "assistant" | "system" | "developer")) => role,
                other => {
                    return Err(ConvertError(format!(
                        "role {other:?} is not one of user, assistant, system, developer"
                    )))
                }
            };
            out.push(json!({"role": role, "content": content(item.get("content"))?}));
        }
        "function_call" => {
            let call = json!({
                "id": item.get("call_id").cloned().unwrap_or(Value::Null),
                "type": "function",
                "function": {"name": item.get("name").cloned().unwrap_or(Value::Null),
                    "arguments": item.get("arguments").cloned().unwrap_or_else(|| json!("{}"))},
            });
            match out.last_mut() {
                Some(last) if last["role"] == "assistant" && last.get("tool_calls").is_some() => {
                    if let Some(calls) = last["tool_calls"].as_array_mut() {
                        calls.push(call);
                    }
                }
                Some(last) if last["role"] == "assistant" => last["tool_calls"] = json!([call]),
                _ => out.push(json!({"role": "assistant", "content": null, "tool_calls": [call]})),
            }
        }
        "function_call_output" => {
            let output = match item.get("output") {
                Some(Value::String(text)) => text.clone(),
                Some(Value::Array(parts)) => {
                    parts.iter().filter_map(|p| p.get("text").and_then(Value::as_str)).collect::<Vec<_>>().join("\n")
                }
                Some(other) => other.to_string(),
                None => String::new(),
            };
            out.push(json!({"role": "tool", "tool_call_id": item.get("call_id").cloned().unwrap_or(Value::Null), "content": output}));
        }
        // Reasoning from earlier turns is not sent back to a chat provider.
        "reasoning" => {}
        other => {
            return Err(ConvertError(format!("input item type `{other}` cannot be sent to an OpenAI chat provider")))
        }
    }
    Ok(())
}

/// A message's content: a string stays one; parts become chat parts.
fn content(content: Option<&Value>) -> Result<Value, ConvertError> {
    let parts = match content {
        Some(Value::String(text)) => return Ok(Value::String(text.clone())),
        Some(Value::Array(parts)) => parts,
        _ => return Err(ConvertError("`content` must be a string or an array of parts".into())),
    };
    let mut out = Vec::with_capacity(parts.len());
    for part in parts {
        let text = || part.get("text").cloned().unwrap_or_default();
        out.push(match part.get("type").and_then(Value::as_str).unwrap_or("") {
            "input_text" | "output_text" | "text" => json!({"type": "text", "text": text()}),
            "refusal" => json!({"type": "text", "text": part.get("refusal").cloned().unwrap_or_default()}),
            "input_image" => {
                let Some(url) = part.get("image_url").and_then(Value::as_str) else {
                    return Err(ConvertError(
                        "an `input_image` needs an `image_url` (file ids are not supported)".into(),
                    ));
                };
                let mut image = json!({"url": url});
                if let Some(detail) = part.get("detail") {
                    image["detail"] = detail.clone();
                }
                json!({"type": "image_url", "image_url": image})
            }
            "input_file" => {
                let mut file = Map::new();
                for key in ["file_data", "file_id", "filename"] {
                    if let Some(value) = part.get(key) {
                        file.insert(key.into(), value.clone());
                    }
                }
                json!({"type": "file", "file": file})
            }
            other => {
                return Err(ConvertError(format!(
                    "content part type `{other}` cannot be sent to an OpenAI chat provider"
                )))
            }
        });
    }
    // Text-only content becomes a string, which every chat provider takes.
    if out.iter().all(|p| p["type"] == "text") {
        let texts: Vec<&str> = out.iter().filter_map(|p| p["text"].as_str()).collect();
        return Ok(Value::String(texts.join("\n")));
    }
    Ok(Value::Array(out))
}

/// A function tool as a chat tool; built-in tools (web search, file search, ...) have none.
fn tool(tool: &Value) -> Result<Value, ConvertError> {
    let kind = tool.get("type").and_then(Value::as_str).unwrap_or("");
    if kind != "function" {
        return Err(ConvertError(format!("tool type `{kind}` cannot be sent to an OpenAI chat provider")));
    }
    let mut function = Map::new();
    for key in ["name", "description", "parameters", "strict"] {
        if let Some(value) = tool.get(key).filter(|v| !v.is_null()) {
            function.insert(key.into(), value.clone());
        }
    }
    Ok(json!({"type": "function", "function": function}))
}

fn tool_choice(choice: &Value) -> Option<Value> {
    match choice {
        Value::String(_) => Some(choice.clone()),
        Value::Object(_) if choice["type"] == "function" => {
            Some(json!({"type": "function", "function": {"name": choice.get("name").cloned().unwrap_or(Value::Null)}}))
        }
        _ => None,
    }
}

/// `text.format` as chat's `response_format`.
fn response_format(format: Option<&Value>) -> Option<Value> {
    let format = format?;
    match format.get("type").and_then(Value::as_str)? {
        "json_object" => Some(json!({"type": "json_object"})),
        "json_schema" => {
            let mut schema = Map::new();
            for key in ["name", "description", "schema", "strict"] {
                if let Some(value) = format.get(key) {
                    schema.insert(key.into(), value.clone());
                }
            }
            Some(json!({"type": "json_schema", "json_schema": schema}))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chat(request: Value) -> Value {
        Value::Object(to_chat(&request).unwrap())
    }

    #[test]
    fn text_input_and_instructions_become_messages() {
        let out = chat(json!({"model": "m", "instructions": "Be brief.", "input": "Hi", "max_output_tokens": 50,
            "temperature": 0.3, "reasoning": {"effort": "low"}, "store": false, "stream": true}));
        assert_eq!(
            out,
            json!({"model": "m", "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
                "max_tokens": 50, "temperature": 0.3, "reasoning_effort": "low", "stream": true,
                "stream_options": {"include_usage": true}})
        );
    }

    #[test]
    fn items_tools_and_outputs_become_chat_messages() {
        let out = chat(json!({"model": "m",
        "tools": [{"type": "function", "name": "weather", "description": "d", "parameters": {"type": "object"}, "strict": null}],
        "tool_choice": {"type": "function", "name": "weather"},
        "text": {"format": {"type": "json_schema", "name": "w", "schema": {"type": "object"}, "strict": true}},
        "input": [
            {"role": "user", "content": [{"type": "input_text", "text": "Weather?"},
                {"type": "input_image", "image_url": "https://x/p.png", "detail": "low"}]},
            {"type": "reasoning", "id": "rs_1", "summary": []},
            {"type": "function_call", "call_id": "c1", "name": "weather", "arguments": "{\"city\":\"Paris\"}"},
            {"type": "function_call", "call_id": "c2", "name": "weather", "arguments": "{\"city\":\"Rome\"}"},
            {"type": "function_call_output", "call_id": "c1", "output": "sunny"},
            {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Sunny."}]}
        ]}));
        let messages = out["messages"].as_array().unwrap();
        assert_eq!(
            messages[0]["content"][1],
            json!({"type": "image_url", "image_url": {"url": "https://x/p.png", "detail": "low"}})
        );
        assert_eq!(messages[1]["tool_calls"].as_array().unwrap().len(), 2);
        assert_eq!(messages[1]["tool_calls"][1]["id"], "c2");
        assert_eq!(messages[2], json!({"role": "tool", "tool_call_id": "c1", "content": "sunny"}));
        assert_eq!(messages[3], json!({"role": "assistant", "content": "Sunny."}));
        assert_eq!(
            out["tools"][0],
            json!({"type": "function", "function": {"name": "weather", "description": "d", "parameters": {"type": "object"}}})
        );
        assert_eq!(out["tool_choice"], json!({"type": "function", "function": {"name": "weather"}}));
        assert_eq!(out["response_format"]["json_schema"]["name"], "w");
    }

    #[test]
    fn what_chat_cannot_do_is_refused() {
        let refused = |request: Value| to_chat(&request).unwrap_err().0;
        assert!(refused(json!({"input": "x", "previous_response_id": "resp_1"})).contains("previous_response_id"));
        assert!(refused(json!({"input": "x", "tools": [{"type": "web_search"}]})).contains("web_search"));
        assert!(refused(json!({"input": [{"type": "item_reference", "id": "x"}]})).contains("input[0]"));
        assert!(refused(json!({"input": 5})).contains("`input`"));
    }
}
