//! Reading an LLM response on its way to the client, from a copy: usage (both for JSON and SSE
//! responses), the answered model, and (with `logging.payloads`) the response text. Shared by both
//! AI plugins; it never changes a byte.

use crate::providers::openai::{self, Summary};
use crate::sse::event_data;
use crate::Ctx;
use bytes::Bytes;
use http::header::CONTENT_TYPE;

/// Header phase: remembers whether the body will be an event stream.
pub fn on_head(ctx: &mut Ctx, head: &http::response::Parts) {
    ctx.ai.event_stream = head
        .headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().starts_with("text/event-stream"));
}

/// Body phase: one SSE event, one chunk, or the whole body.
pub fn on_body(ctx: &mut Ctx, chunk: &Bytes, end_of_stream: bool) {
    if ctx.ai.event_stream {
        if let Some(data) = event_data(chunk) {
            if data != b"[DONE]" {
                record(ctx, &data);
            }
        }
    } else if end_of_stream && ctx.ai.pending_body.is_empty() {
        record(ctx, chunk);
    } else {
        ctx.ai.pending_body.extend_from_slice(chunk);
        if end_of_stream {
            let whole = std::mem::take(&mut ctx.ai.pending_body);
            record(ctx, &whole);
        }
    }
}

fn record(ctx: &mut Ctx, json: &[u8]) {
    let Some(summary) = Summary::parse(json) else { return };
    if let Some(usage) = summary.usage() {
        ctx.ai.usage = Some(usage);
    }
    if let Some(model) = summary.model.as_deref() {
        if ctx.ai.model.as_deref() != Some(model) {
            ctx.ai.model = Some(model.to_string());
        }
    }
    if let Some(text) = ctx.ai.response_text.as_mut() {
        // Only with `logging.payloads`: the full tree is needed for the text.
        if let Ok(response) = serde_json::from_slice::<serde_json::Value>(json) {
            openai::append_text(&response, text);
        }
    }
}
