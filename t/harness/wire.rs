//! What a real provider would refuse: the mock LLM checks every request body against the
//! protocol of the path it was sent to, so a conversion that leaves a foreign field or an
//! impossible message order fails the test with a 400 naming the problem.

use serde_json::Value;

const CHAT_ROLES: [&str; 5] = ["system", "developer", "user", "assistant", "tool"];
/// Fields of the Anthropic and Responses protocols that a chat provider does not know.
const NOT_CHAT: [&str; 7] =
    ["system", "stop_sequences", "thinking", "top_k", "input", "instructions", "max_output_tokens"];
const NOT_MESSAGES: [&str; 5] = ["stream_options", "max_completion_tokens", "response_format", "n", "input"];

/// Checks an OpenAI chat-completions request.
pub fn check_chat(body: &Value) -> Result<(), String> {
    for field in NOT_CHAT {
        if body.get(field).is_some() {
            return Err(format!("`{field}` is not a chat-completions field"));
        }
    }
    if body.get("stream_options").is_some() && body.get("stream") != Some(&Value::Bool(true)) {
        return Err("`stream_options` without `stream: true`".into());
    }
    let messages = body.get("messages").and_then(Value::as_array).ok_or("`messages` must be an array")?;
    // The calls of the last assistant message, and those still waiting for their result.
    let (mut called, mut pending): (Vec<String>, Vec<String>) = (Vec::new(), Vec::new());
    for (i, message) in messages.iter().enumerate() {
        let role = message.get("role").and_then(Value::as_str).unwrap_or("");
        if !CHAT_ROLES.contains(&role) {
            return Err(format!("messages[{i}].role `{role}` is not a chat role"));
        }
        if role == "tool" {
            let id = message
                .get("tool_call_id")
                .and_then(Value::as_str)
                .ok_or(format!("messages[{i}] has no tool_call_id"))?;
            if !called.iter().any(|c| c == id) {
                return Err(format!("messages[{i}] answers `{id}`, which the assistant message before did not call"));
            }
            pending.retain(|p| p != id);
            continue;
        }
        if !pending.is_empty() {
            return Err(format!("messages[{i}] comes before the results of tool calls {}", pending.join(", ")));
        }
        called.clear();
        for call in message.get("tool_calls").and_then(Value::as_array).into_iter().flatten() {
            if !call.pointer("/function/arguments").is_some_and(Value::is_string) {
                return Err(format!("messages[{i}] has a tool call whose arguments are not a string"));
            }
            called.push(call.get("id").and_then(Value::as_str).unwrap_or("").to_string());
        }
        pending = called.clone();
        if let Some(parts) = message.get("content").and_then(Value::as_array) {
            for part in parts {
                let kind = part.get("type").and_then(Value::as_str).unwrap_or("");
                if !["text", "image_url", "input_audio", "file"].contains(&kind) {
                    return Err(format!("messages[{i}] has a content part of type `{kind}`"));
                }
            }
        }
    }
    Ok(())
}

/// Checks an Anthropic Messages request.
pub fn check_messages(body: &Value) -> Result<(), String> {
    for field in NOT_MESSAGES {
        if body.get(field).is_some() {
            return Err(format!("`{field}` is not a Messages field"));
        }
    }
    if !body.get("max_tokens").is_some_and(Value::is_u64) {
        return Err("`max_tokens` is required".into());
    }
    let messages = body.get("messages").and_then(Value::as_array).ok_or("`messages` must be an array")?;
    for (i, message) in messages.iter().enumerate() {
        let role = message.get("role").and_then(Value::as_str).unwrap_or("");
        if role != "user" && role != "assistant" {
            return Err(format!("messages[{i}].role `{role}` is not user or assistant"));
        }
        if message.get("tool_calls").is_some() {
            return Err(format!("messages[{i}] carries OpenAI `tool_calls`"));
        }
        for block in message.get("content").and_then(Value::as_array).into_iter().flatten() {
            let kind = block.get("type").and_then(Value::as_str).unwrap_or("");
            if !["text", "image", "document", "tool_use", "tool_result", "thinking"].contains(&kind) {
                return Err(format!("messages[{i}] has a content block of type `{kind}`"));
            }
        }
    }
    Ok(())
}

/// Checks an OpenAI Responses request (the Responses API refuses `stream_options`).
pub fn check_responses(body: &Value) -> Result<(), String> {
    for field in ["messages", "stream_options", "max_tokens"] {
        if body.get(field).is_some() {
            return Err(format!("`{field}` is not a Responses field"));
        }
    }
    if body.get("input").is_none() {
        return Err("`input` is required".into());
    }
    Ok(())
}

/// Checks a Messages token count request (a Messages request without `max_tokens`).
pub fn check_count_tokens(body: &Value) -> Result<(), String> {
    if !body.get("messages").is_some_and(Value::is_array) || body.get("model").is_none() {
        return Err("a token count needs `model` and `messages`".into());
    }
    Ok(())
}

/// Checks an embeddings request.
pub fn check_embeddings(body: &Value) -> Result<(), String> {
    if body.get("input").is_none() || body.get("messages").is_some() {
        return Err("an embeddings request has `input` and no `messages`".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tool_results_must_follow_their_calls() {
        let good = json!({"messages": [{"role": "user", "content": "w?"},
            {"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "function": {"name": "w", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "c1", "content": "sunny"}, {"role": "user", "content": "thanks"}]});
        assert_eq!(check_chat(&good), Ok(()));
        let bad = json!({"messages": [
            {"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "function": {"name": "w", "arguments": "{}"}}]},
            {"role": "user", "content": "thanks"}, {"role": "tool", "tool_call_id": "c1", "content": "sunny"}]});
        assert!(check_chat(&bad).is_err());
        assert!(check_chat(&json!({"system": "x", "messages": []})).is_err());
        assert!(check_messages(&json!({"messages": []})).is_err());
        assert!(check_responses(&json!({"input": "x", "stream_options": {}})).is_err());
    }
}
