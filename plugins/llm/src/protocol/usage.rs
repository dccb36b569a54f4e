//! Usage, model and (with `logging.payloads`) text read from Anthropic Messages, OpenAI
//! Responses and Bedrock Converse answers, whole or event by event, for the access log. OpenAI chat answers are read
//! by `crate::observe`; it hands the other protocols here, told by [`UpstreamWire`].

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::Value;
use switchyard_sdk::{Ctx, Usage};

use super::event::Event;
use super::Protocol;
use crate::json_scan::{first_member, last_member};
use crate::observe::{cap_logged_text, logged_text};

/// The protocol of the current attempt's upstream answer, in `ctx.extensions`; absent means
/// OpenAI chat (the common case inserts nothing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpstreamWire(pub Protocol);

/// Anthropic's usage object (`message.usage`, `message_start.message.usage`, `message_delta.usage`).
#[derive(Debug, Default, Deserialize)]
struct AnthropicUsage {
    #[serde(default)]
    input_tokens: Option<u64>,
    #[serde(default)]
    output_tokens: Option<u64>,
    #[serde(default)]
    cache_read_input_tokens: Option<u64>,
    #[serde(default)]
    cache_creation_input_tokens: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
struct MessageHead<'a> {
    #[serde(borrow, default)]
    model: Option<Cow<'a, str>>,
    #[serde(default)]
    usage: Option<AnthropicUsage>,
}

/// A whole Messages response, or one event of a Messages stream.
#[derive(Debug, Default, Deserialize)]
struct MessagesWire<'a> {
    #[serde(borrow, default)]
    model: Option<Cow<'a, str>>,
    #[serde(default)]
    usage: Option<AnthropicUsage>,
    #[serde(borrow, default)]
    message: Option<MessageHead<'a>>,
}

/// Reads a Messages response or event. Counts merge across events: a later count replaces an
/// earlier one when it is above zero (`message_start` carries the input, `message_delta` the
/// output), and the total is recomputed.
pub fn record_messages(ctx: &mut Ctx, json: &[u8]) {
    let Ok(wire) = serde_json::from_slice::<MessagesWire<'_>>(json) else { return };
    let (model, usage) = match wire.message {
        Some(head) => (head.model, head.usage),
        None => (wire.model, wire.usage),
    };
    record_model(ctx, model.as_deref());
    if let Some(usage) = usage {
        merge_messages_usage(ctx, &usage);
    }
    if let Some(text) = logged_text(ctx) {
        if let Ok(value) = serde_json::from_slice::<Value>(json) {
            append_messages_text(&value, text);
        }
        cap_logged_text(text);
    }
}

/// Merges one Messages usage object into the logged usage (see [`record_messages`]).
fn merge_messages_usage(ctx: &mut Ctx, usage: &AnthropicUsage) {
    let mut merged = ctx.log.usage.unwrap_or_default();
    let cached = usage.cache_read_input_tokens.unwrap_or(0);
    let created = usage.cache_creation_input_tokens.unwrap_or(0);
    if let Some(input) = usage.input_tokens.filter(|n| *n > 0) {
        merged.prompt_tokens = input.saturating_add(cached).saturating_add(created);
    }
    if cached > 0 {
        merged.cached_tokens = cached;
    }
    if created > 0 {
        merged.cache_creation_tokens = created;
    }
    if let Some(output) = usage.output_tokens.filter(|n| *n > 0) {
        merged.completion_tokens = output;
    }
    merged.total_tokens = merged.prompt_tokens.saturating_add(merged.completion_tokens);
    ctx.log.usage = Some(merged);
}

fn append_messages_text(value: &Value, out: &mut String) {
    if let Some(text) = value.pointer("/delta/text").and_then(Value::as_str) {
        out.push_str(text);
    }
    for block in value.get("content").and_then(Value::as_array).into_iter().flatten() {
        if let Some(text) = block.get("text").and_then(Value::as_str) {
            out.push_str(text);
        }
    }
}

#[derive(Debug, Default, Deserialize)]
struct ResponsesUsage {
    #[serde(default)]
    input_tokens: u64,
    #[serde(default)]
    output_tokens: u64,
    #[serde(default)]
    total_tokens: Option<u64>,
    #[serde(default)]
    input_tokens_details: Option<Details>,
    #[serde(default)]
    output_tokens_details: Option<Details>,
}

#[derive(Debug, Default, Deserialize)]
struct Details {
    #[serde(default)]
    cached_tokens: Option<u64>,
    #[serde(default)]
    reasoning_tokens: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
struct ResponseHead<'a> {
    #[serde(borrow, default)]
    model: Option<Cow<'a, str>>,
    #[serde(default)]
    usage: Option<ResponsesUsage>,
}

/// A whole Responses answer, or one event of a Responses stream (`response.*` events carry the
/// response object).
#[derive(Debug, Default, Deserialize)]
struct ResponsesWire<'a> {
    #[serde(borrow, default)]
    model: Option<Cow<'a, str>>,
    #[serde(default)]
    usage: Option<ResponsesUsage>,
    #[serde(borrow, default)]
    response: Option<ResponseHead<'a>>,
}

/// Reads a Responses answer or event: usage arrives whole, in the final `response.completed`.
pub fn record_responses(ctx: &mut Ctx, json: &[u8]) {
    let Ok(wire) = serde_json::from_slice::<ResponsesWire<'_>>(json) else { return };
    let (model, usage) = match wire.response {
        Some(head) => (head.model, head.usage),
        None => (wire.model, wire.usage),
    };
    record_model(ctx, model.as_deref());
    if let Some(usage) = usage {
        ctx.log.usage = Some(usage.usage());
    }
    if let Some(text) = logged_text(ctx) {
        if let Ok(value) = serde_json::from_slice::<Value>(json) {
            append_responses_text(&value, text);
        }
        cap_logged_text(text);
    }
}

impl ResponsesUsage {
    /// The token counts, the total computed when the provider left it out.
    fn usage(&self) -> Usage {
        let detail = |d: &Option<Details>, f: fn(&Details) -> Option<u64>| d.as_ref().and_then(f).unwrap_or(0);
        Usage {
            prompt_tokens: self.input_tokens,
            completion_tokens: self.output_tokens,
            total_tokens: self.total_tokens.unwrap_or(self.input_tokens.saturating_add(self.output_tokens)),
            cached_tokens: detail(&self.input_tokens_details, |d| d.cached_tokens),
            cache_creation_tokens: 0,
            reasoning_tokens: detail(&self.output_tokens_details, |d| d.reasoning_tokens),
        }
    }
}

/// Bedrock's usage object (a Converse answer's `usage`, the stream's `metadata.usage`).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ConverseUsage {
    #[serde(default)]
    input_tokens: u64,
    #[serde(default)]
    output_tokens: u64,
    #[serde(default)]
    cache_read_input_tokens: u64,
    #[serde(default)]
    cache_write_input_tokens: u64,
}

impl ConverseUsage {
    /// The token counts: cache reads and writes count as prompt tokens (as for Anthropic).
    fn usage(&self) -> Usage {
        let prompt = self
            .input_tokens
            .saturating_add(self.cache_read_input_tokens)
            .saturating_add(self.cache_write_input_tokens);
        Usage {
            prompt_tokens: prompt,
            completion_tokens: self.output_tokens,
            total_tokens: prompt.saturating_add(self.output_tokens),
            cached_tokens: self.cache_read_input_tokens,
            cache_creation_tokens: self.cache_write_input_tokens,
            reasoning_tokens: 0,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
struct ConverseWire {
    #[serde(default)]
    usage: Option<ConverseUsage>,
}

/// Reads a whole Converse answer: its `usage`, and (with `logging.payloads`) its text. Converse
/// answers name no model: the logged one stays the requested one.
pub fn record_converse(ctx: &mut Ctx, json: &[u8]) {
    let Ok(wire) = serde_json::from_slice::<ConverseWire>(json) else { return };
    if let Some(usage) = wire.usage {
        ctx.log.usage = Some(usage.usage());
    }
    if let Some(text) = logged_text(ctx) {
        if let Ok(value) = serde_json::from_slice::<Value>(json) {
            for block in value.pointer("/output/message/content").and_then(Value::as_array).into_iter().flatten() {
                text.push_str(block.get("text").and_then(Value::as_str).unwrap_or(""));
            }
        }
        cap_logged_text(text);
    }
}

/// Reads one event of a Converse stream: usage from `metadata`, text from `contentBlockDelta`.
pub fn record_converse_event(ctx: &mut Ctx, event: &Event) {
    let Some(payload) = event.json() else { return };
    match event.name.as_deref() {
        Some("metadata") => {
            if let Some(usage) = payload.get("usage").and_then(|u| ConverseUsage::deserialize(u).ok()) {
                ctx.log.usage = Some(usage.usage());
            }
        }
        Some("contentBlockDelta") => {
            if let Some(text) = logged_text(ctx) {
                text.push_str(payload.pointer("/delta/text").and_then(Value::as_str).unwrap_or(""));
                cap_logged_text(text);
            }
        }
        _ => {}
    }
}

/// Runs at the end of a Messages or Responses answer too large to have been kept whole
/// (`crate::observe` keeps its ends): usage from the last top-level `usage` member of `tail`, the
/// model from the first `model` member of `head` (or the last of `tail`). Both shapes put
/// `model` early and `usage` at the top level, after the content.
pub fn record_ends(ctx: &mut Ctx, protocol: Protocol, head: &[u8], tail: &[u8]) {
    let model = first_member::<String>(head, "model").or_else(|| last_member(tail, "model"));
    record_model(ctx, model.as_deref());
    match protocol {
        Protocol::AnthropicMessages => {
            if let Some(usage) = last_member::<Option<AnthropicUsage>>(tail, "usage").flatten() {
                merge_messages_usage(ctx, &usage);
            }
        }
        Protocol::BedrockConverse => {
            if let Some(usage) = last_member::<Option<ConverseUsage>>(tail, "usage").flatten() {
                ctx.log.usage = Some(usage.usage());
            }
        }
        _ => {
            if let Some(usage) = last_member::<Option<ResponsesUsage>>(tail, "usage").flatten() {
                ctx.log.usage = Some(usage.usage());
            }
        }
    }
}

fn append_responses_text(value: &Value, out: &mut String) {
    if value.get("type").and_then(Value::as_str) == Some("response.output_text.delta") {
        if let Some(delta) = value.get("delta").and_then(Value::as_str) {
            out.push_str(delta);
        }
        return;
    }
    for item in value.get("output").and_then(Value::as_array).into_iter().flatten() {
        for part in item.get("content").and_then(Value::as_array).into_iter().flatten() {
            if part.get("type").and_then(Value::as_str) == Some("output_text") {
                out.push_str(part.get("text").and_then(Value::as_str).unwrap_or(""));
            }
        }
    }
}

fn record_model(ctx: &mut Ctx, model: Option<&str>) {
    if let Some(model) = model.filter(|m| !m.is_empty()) {
        if ctx.log.model.as_deref() != Some(model) {
            ctx.log.model = Some(model.to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> Ctx {
        Ctx::new("r".into(), "127.0.0.1:1".parse().unwrap(), http::HeaderValue::from_static("id"))
    }

    #[test]
    fn messages_usage_merges_start_and_delta() {
        let mut ctx = ctx();
        ctx.log.response_text = Some(String::new());
        record_messages(&mut ctx, br#"{"type":"message_start","message":{"model":"claude","usage":{"input_tokens":21,"cache_read_input_tokens":4,"cache_creation_input_tokens":2,"output_tokens":1}}}"#);
        record_messages(
            &mut ctx,
            br#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hi"}}"#,
        );
        record_messages(
            &mut ctx,
            br#"{"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":6}}"#,
        );
        assert_eq!(
            ctx.log.usage,
            Some(Usage {
                prompt_tokens: 27,
                completion_tokens: 6,
                total_tokens: 33,
                cached_tokens: 4,
                cache_creation_tokens: 2,
                reasoning_tokens: 0
            })
        );
        assert_eq!(ctx.log.model.as_deref(), Some("claude"));
        assert_eq!(ctx.log.response_text.as_deref(), Some("Hi"));
    }

    #[test]
    fn converse_usage_comes_whole_or_with_the_metadata_event() {
        let mut ctx = ctx();
        ctx.log.response_text = Some(String::new());
        record_converse(&mut ctx, br#"{"output":{"message":{"role":"assistant","content":[{"text":"Hi"}]}},"stopReason":"end_turn","usage":{"inputTokens":12,"outputTokens":7,"totalTokens":19,"cacheReadInputTokens":2}}"#);
        let usage = Usage {
            prompt_tokens: 14,
            completion_tokens: 7,
            total_tokens: 21,
            cached_tokens: 2,
            cache_creation_tokens: 0,
            reasoning_tokens: 0,
        };
        assert_eq!(ctx.log.usage, Some(usage));
        assert_eq!(ctx.log.response_text.as_deref(), Some("Hi"));
        let mut ctx = self::ctx();
        let event =
            |name: &str, json: Value| Event { name: Some(name.into()), data: super::super::event::Data::Json(json) };
        record_converse_event(&mut ctx, &event("contentBlockDelta", serde_json::json!({"delta": {"text": "x"}})));
        assert_eq!(ctx.log.usage, None);
        record_converse_event(
            &mut ctx,
            &event("metadata", serde_json::json!({"usage": {"inputTokens": 3, "outputTokens": 4, "totalTokens": 7}})),
        );
        assert_eq!(ctx.log.usage.map(|u| u.total_tokens), Some(7));
    }

    #[test]
    fn responses_usage_comes_with_the_completed_response() {
        let mut ctx = ctx();
        record_responses(&mut ctx, br#"{"type":"response.output_text.delta","delta":"x"}"#);
        assert_eq!(ctx.log.usage, None);
        record_responses(&mut ctx, br#"{"type":"response.completed","response":{"model":"gpt","usage":{"input_tokens":9,"input_tokens_details":{"cached_tokens":3},"output_tokens":4,"output_tokens_details":{"reasoning_tokens":2},"total_tokens":13}}}"#);
        assert_eq!(
            ctx.log.usage,
            Some(Usage {
                prompt_tokens: 9,
                completion_tokens: 4,
                total_tokens: 13,
                cached_tokens: 3,
                cache_creation_tokens: 0,
                reasoning_tokens: 2
            })
        );
        assert_eq!(ctx.log.model.as_deref(), Some("gpt"));
    }
}
