//! An OpenAI chat-completions request as a Bedrock Converse request: system messages become
//! `system`, the conversation becomes alternating `user` / `assistant` turns of content blocks
//! (text, images, PDF documents, `toolUse`, `toolResult`), `tools` / `tool_choice` become
//! `toolConfig`, and `max_tokens` / `temperature` / `top_p` / `stop` become `inferenceConfig`.
//! `model` and `stream` stay at the top level: they steer the call (its path) and are taken
//! out of the body when it is sent (`providers::bedrock::Bedrock::call`).

use serde_json::{json, Map, Value};

use super::ConvertError;

/// Translates a chat request. Errors name what Converse cannot express.
pub fn from_chat(chat: &Value) -> Result<Map<String, Value>, ConvertError> {
    let Some(messages) = chat.get("messages").and_then(Value::as_array) else {
        return Err(ConvertError("`messages` must be an array".into()));
    };
    let mut out = Map::new();
    for key in ["model", "stream"] {
        if let Some(value) = chat.get(key) {
            out.insert(key.into(), value.clone());
        }
    }
    let mut system = Vec::new();
    let mut turns: Vec<Value> = Vec::with_capacity(messages.len());
    for (i, message) in messages.iter().enumerate() {
        let here = |e: ConvertError| ConvertError(format!("messages[{i}]: {}", e.0));
        let role = message.get("role").and_then(Value::as_str).unwrap_or("user");
        let (role, blocks) = match role {
            "system" | "developer" => {
                let text = text_of(message.get("content"));
                if !text.is_empty() {
                    system.push(json!({"text": text}));
                }
                continue;
            }
            "assistant" => ("assistant", assistant_blocks(message).map_err(here)?),
            "tool" => ("user", vec![tool_result(message)]),
            _ => ("user", content_blocks(message.get("content")).map_err(here)?),
        };
        if blocks.is_empty() {
            continue;
        }
        push_turn(&mut turns, role, blocks);
    }
    if !system.is_empty() {
        out.insert("system".into(), Value::Array(system));
    }
    out.insert("messages".into(), Value::Array(turns));
    let mut inference = Map::new();
    if let Some(max) = chat.get("max_completion_tokens").or_else(|| chat.get("max_tokens")).filter(|v| v.is_u64()) {
        inference.insert("maxTokens".into(), max.clone());
    }
    if let Some(temperature) = chat.get("temperature").filter(|v| v.is_number()) {
        inference.insert("temperature".into(), temperature.clone());
    }
    if let Some(top_p) = chat.get("top_p").filter(|v| v.is_number()) {
        inference.insert("topP".into(), top_p.clone());
    }
    match chat.get("stop") {
        Some(Value::String(stop)) => {
            inference.insert("stopSequences".into(), json!([stop]));
        }
        Some(Value::Array(stops)) if !stops.is_empty() => {
            inference.insert("stopSequences".into(), Value::Array(stops.clone()));
        }
        _ => {}
    }
    if !inference.is_empty() {
        out.insert("inferenceConfig".into(), Value::Object(inference));
    }
    if let Some(config) = tool_config(chat, &out)? {
        out.insert("toolConfig".into(), config);
    }
    Ok(out)
}

/// Appends `blocks` as a turn of `role`, joined to the last turn when it has the same role:
/// Converse wants turns to alternate (tool results and the user's next words are one turn).
fn push_turn(turns: &mut Vec<Value>, role: &str, blocks: Vec<Value>) {
    if let Some(last) = turns.last_mut().filter(|t| t["role"] == role) {
        if let Some(content) = last.get_mut("content").and_then(Value::as_array_mut) {
            content.extend(blocks);
            return;
        }
    }
    turns.push(json!({"role": role, "content": blocks}));
}

/// An assistant message's text and tool calls as blocks.
fn assistant_blocks(message: &Value) -> Result<Vec<Value>, ConvertError> {
    let mut blocks = Vec::new();
    let text = text_of(message.get("content"));
    if !text.is_empty() {
        blocks.push(json!({"text": text}));
    }
    for call in message.get("tool_calls").and_then(Value::as_array).into_iter().flatten() {
        let arguments = call.pointer("/function/arguments").and_then(Value::as_str).unwrap_or("{}");
        let input: Value = match arguments.trim() {
            "" => json!({}),
            text => serde_json::from_str(text)
                .map_err(|_| ConvertError("tool_calls[].function.arguments must be a JSON object".into()))?,
        };
        blocks.push(json!({"toolUse": {
            "toolUseId": call.get("id").cloned().unwrap_or(Value::Null),
            "name": call.pointer("/function/name").cloned().unwrap_or(Value::Null),
            "input": input,
        }}));
    }
    Ok(blocks)
}

/// A `tool` message as a `toolResult` block (its text; JSON text as a JSON result).
fn tool_result(message: &Value) -> Value {
    let text = text_of(message.get("content"));
    let content = match serde_json::from_str::<Value>(&text) {
        Ok(json @ Value::Object(_)) => json!([{"json": json}]),
        _ => json!([{"text": text}]),
    };
    json!({"toolResult": {
        "toolUseId": message.get("tool_call_id").cloned().unwrap_or(Value::Null),
        "content": content,
    }})
}

/// A message's text (a string, or its text parts joined), for system prompts and tool results.
fn text_of(content: Option<&Value>) -> String {
    match content {
        Some(Value::String(text)) => text.clone(),
        Some(Value::Array(parts)) => {
            parts.iter().filter_map(|p| p.get("text").and_then(Value::as_str)).collect::<Vec<_>>().join("")
        }
        _ => String::new(),
    }
}

/// User content as Converse blocks: text, images and PDF files sent inline (as data URLs).
fn content_blocks(content: Option<&Value>) -> Result<Vec<Value>, ConvertError> {
    let parts = match content {
        Some(Value::String(text)) if text.is_empty() => return Ok(Vec::new()),
        Some(Value::String(text)) => return Ok(vec![json!({"text": text})]),
        Some(Value::Array(parts)) => parts,
        _ => return Ok(Vec::new()),
    };
    let mut blocks = Vec::with_capacity(parts.len());
    for part in parts {
        match part.get("type").and_then(Value::as_str) {
            Some("text") => blocks.push(json!({"text": part.get("text").cloned().unwrap_or_default()})),
            Some("image_url") => {
                let url = part.pointer("/image_url/url").and_then(Value::as_str).unwrap_or("");
                let (media_type, data) = inline(url).ok_or_else(|| {
                    ConvertError("bedrock takes images inline only: send the image as a data URL".into())
                })?;
                let format = media_type.strip_prefix("image/").unwrap_or(media_type);
                blocks.push(json!({"image": {"format": format, "source": {"bytes": data}}}));
            }
            Some("file") => {
                let data = part.pointer("/file/file_data").and_then(Value::as_str).unwrap_or("");
                let (media_type, data) = inline(data)
                    .ok_or_else(|| ConvertError("bedrock takes documents inline only: send file_data".into()))?;
                let format = media_type.rsplit('/').next().unwrap_or("pdf");
                let name = part.pointer("/file/filename").and_then(Value::as_str).unwrap_or("document");
                // Converse allows letters, digits, spaces, hyphens, parentheses and brackets.
                let name: String =
                    name.chars().map(|c| if c.is_alphanumeric() || " -()[]".contains(c) { c } else { '-' }).collect();
                blocks.push(json!({"document": {"format": format, "name": name, "source": {"bytes": data}}}));
            }
            Some(other) => return Err(ConvertError(format!("content part `{other}` is not supported by bedrock"))),
            None => {}
        }
    }
    Ok(blocks)
}

/// A base64 data URL's media type and data.
fn inline(url: &str) -> Option<(&str, &str)> {
    url.strip_prefix("data:").and_then(|rest| rest.split_once(";base64,"))
}

/// `tools` and `tool_choice` as `toolConfig`. `"none"` sends the tools without a choice only
/// when the conversation already holds tool blocks (Converse needs the tools then), else none.
fn tool_config(chat: &Value, converted: &Map<String, Value>) -> Result<Option<Value>, ConvertError> {
    let Some(tools) = chat.get("tools").and_then(Value::as_array).filter(|t| !t.is_empty()) else {
        return Ok(None);
    };
    let mut specs = Vec::with_capacity(tools.len());
    for tool in tools {
        let Some(function) = tool.get("function") else {
            let kind = tool.get("type").and_then(Value::as_str).unwrap_or("?");
            return Err(ConvertError(format!("tool type `{kind}` is not supported by bedrock: send functions")));
        };
        let mut spec = json!({
            "name": function.get("name").cloned().unwrap_or(Value::Null),
            "inputSchema": {"json": function.get("parameters").cloned().unwrap_or_else(|| json!({"type": "object"}))},
        });
        if let Some(description) = function.get("description").filter(|d| d.as_str().is_some_and(|d| !d.is_empty())) {
            spec["description"] = description.clone();
        }
        specs.push(json!({"toolSpec": spec}));
    }
    let choice = match chat.get("tool_choice") {
        None => None,
        Some(Value::String(choice)) if choice == "auto" => Some(json!({"auto": {}})),
        Some(Value::String(choice)) if choice == "required" => Some(json!({"any": {}})),
        Some(Value::String(choice)) if choice == "none" => {
            let holds_tools = converted.get("messages").and_then(Value::as_array).is_some_and(|turns| {
                turns
                    .iter()
                    .flat_map(|t| t["content"].as_array().into_iter().flatten())
                    .any(|b| b.get("toolUse").is_some() || b.get("toolResult").is_some())
            });
            if !holds_tools {
                return Ok(None);
            }
            None
        }
        Some(choice) => match choice.pointer("/function/name") {
            Some(name) => Some(json!({"tool": {"name": name}})),
            None => return Err(ConvertError("tool_choice is not one bedrock understands".into())),
        },
    };
    let mut config = json!({"tools": specs});
    if let Some(choice) = choice {
        config["toolChoice"] = choice;
    }
    Ok(Some(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_turns_tools_and_inference_settings_translate() {
        let chat = json!({
            "model": "anthropic.claude-3-haiku-20240307-v1:0", "stream": true, "max_tokens": 100,
            "temperature": 0.2, "top_p": 0.9, "stop": "END", "user": "u1",
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Weather in Paris?"},
                {"role": "assistant", "content": null, "tool_calls": [{"id": "t1", "type": "function",
                    "function": {"name": "weather", "arguments": "{\"city\":\"Paris\"}"}}]},
                {"role": "tool", "tool_call_id": "t1", "content": "sunny"},
                {"role": "user", "content": [{"type": "text", "text": "And tomorrow?"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBOR"}}]}
            ],
            "tools": [{"type": "function", "function": {"name": "weather", "description": "d", "parameters": {"type": "object"}}}],
            "tool_choice": {"type": "function", "function": {"name": "weather"}}
        });
        let converse = Value::Object(from_chat(&chat).unwrap());
        assert_eq!(converse["model"], "anthropic.claude-3-haiku-20240307-v1:0");
        assert_eq!(converse["stream"], true);
        assert_eq!(converse["system"], json!([{"text": "Be brief."}]));
        assert_eq!(
            converse["inferenceConfig"],
            json!({"maxTokens": 100, "temperature": 0.2, "topP": 0.9, "stopSequences": ["END"]})
        );
        let turns = converse["messages"].as_array().unwrap();
        assert_eq!(turns.len(), 3, "tool result and the next question are one user turn: {turns:?}");
        assert_eq!(turns[0], json!({"role": "user", "content": [{"text": "Weather in Paris?"}]}));
        assert_eq!(
            turns[1]["content"][0],
            json!({"toolUse": {"toolUseId": "t1", "name": "weather", "input": {"city": "Paris"}}})
        );
        assert_eq!(turns[2]["content"][0], json!({"toolResult": {"toolUseId": "t1", "content": [{"text": "sunny"}]}}));
        assert_eq!(turns[2]["content"][1], json!({"text": "And tomorrow?"}));
        assert_eq!(turns[2]["content"][2], json!({"image": {"format": "png", "source": {"bytes": "iVBOR"}}}));
        assert_eq!(
            converse["toolConfig"],
            json!({"tools": [{"toolSpec": {"name": "weather", "description": "d", "inputSchema": {"json": {"type": "object"}}}}],
                "toolChoice": {"tool": {"name": "weather"}}})
        );
        assert!(converse.get("user").is_none());
    }

    #[test]
    fn what_converse_cannot_take_is_refused_by_name() {
        let url_image = json!({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x/y.png"}}]}]});
        assert!(from_chat(&url_image).unwrap_err().0.contains("data URL"));
        assert!(from_chat(&json!({"messages": "hi"})).is_err());
        let none = json!({"messages": [{"role": "user", "content": "hi"}], "tool_choice": "none",
            "tools": [{"type": "function", "function": {"name": "f"}}]});
        assert!(from_chat(&none).unwrap().get("toolConfig").is_none());
    }
}
