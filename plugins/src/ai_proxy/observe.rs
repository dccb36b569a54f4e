//! Reading an LLM response on its way to the client, from a copy: usage (both for JSON and SSE
//! responses), the answered model, and (with `logging.payloads`) the response text. Shared by both
//! AI plugins; it never changes a byte.

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use serde_json::Value;

use crate::providers::openai;
use crate::sse::event_data;
use crate::Ctx;

/// Per-request state of the observer, kept in `ctx.extensions`.
#[derive(Default, Clone)]
struct Observed {
    event_stream: bool,
    /// A non-streaming body that arrived in several pieces (proxy buffering disabled).
    pending: Vec<u8>,
}

/// Header phase: remembers whether the body will be an event stream.
pub fn on_head(ctx: &mut Ctx, head: &http::response::Parts) {
    let event_stream = head
        .headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().starts_with("text/event-stream"));
    ctx.extensions.insert(Observed { event_stream, pending: Vec::new() });
}

/// Body phase: one SSE event, one chunk, or the whole body.
pub fn on_body(ctx: &mut Ctx, chunk: &Bytes, end_of_stream: bool) {
    let Some(mut observed) = ctx.extensions.remove::<Observed>() else { return };
    if observed.event_stream {
        if let Some(data) = event_data(chunk) {
            if data != b"[DONE]" {
                if let Ok(event) = serde_json::from_slice::<Value>(&data) {
                    record(ctx, &event);
                }
            }
        }
    } else if end_of_stream && observed.pending.is_empty() {
        if let Ok(response) = serde_json::from_slice::<Value>(chunk) {
            record(ctx, &response);
        }
    } else {
        observed.pending.extend_from_slice(chunk);
        if end_of_stream {
            if let Ok(response) = serde_json::from_slice::<Value>(&observed.pending) {
                record(ctx, &response);
            }
            observed.pending = Vec::new();
        }
    }
    ctx.extensions.insert(observed);
}

fn record(ctx: &mut Ctx, response: &Value) {
    if let Some(usage) = openai::usage(response) {
        ctx.ai.usage = Some(usage);
    }
    if let Some(model) = response.get("model").and_then(Value::as_str) {
        if ctx.ai.model.as_deref() != Some(model) {
            ctx.ai.model = Some(model.to_string());
        }
    }
    if let Some(text) = ctx.ai.response_text.as_mut() {
        openai::append_text(response, text);
    }
}
