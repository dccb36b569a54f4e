//! Reading an LLM response on its way to the client, from a copy: usage (both for JSON and SSE
//! responses), the answered model, and (with `logging.payloads`) the response text. Shared by both
//! AI plugins; it never changes a byte.

use crate::protocol::usage::{self, UpstreamWire};
use crate::protocol::Protocol;
use crate::providers::openai::{self, Summary};
use bytes::Bytes;
use http::header::CONTENT_TYPE;
use switchyard_sdk::sse::event_data;
use switchyard_sdk::Ctx;

/// The reader's per-request state, in its own slot of `ctx.extensions`.
#[derive(Clone, Default)]
struct Reading {
    /// The response is an event stream (known at the response head).
    event_stream: bool,
    /// A non-streaming body that arrived in several pieces, kept until it is whole.
    pending: Vec<u8>,
}

/// Header phase: remembers whether the body will be an event stream. Only streams need the slot:
/// a buffered body (the common case) arrives whole and needs no state.
pub fn on_head(ctx: &mut Ctx, head: &http::response::Parts) {
    let event_stream = head
        .headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().starts_with("text/event-stream"));
    if event_stream {
        ctx.extensions.insert(Reading { event_stream, pending: Vec::new() });
    }
}

/// Body phase: one SSE event, one chunk, or the whole body.
pub fn on_body(ctx: &mut Ctx, chunk: &Bytes, end_of_stream: bool) {
    let reading = ctx.extensions.get_mut::<Reading>();
    match reading {
        Some(reading) if reading.event_stream => {
            if let Some(data) = event_data(chunk) {
                if data != b"[DONE]" {
                    record(ctx, &data);
                }
            }
        }
        None if end_of_stream => record(ctx, chunk),
        None => {
            ctx.extensions.insert(Reading { event_stream: false, pending: chunk.to_vec() });
        }
        Some(reading) => {
            reading.pending.extend_from_slice(chunk);
            if end_of_stream {
                let whole = std::mem::take(&mut reading.pending);
                record(ctx, &whole);
            }
        }
    }
}

fn record(ctx: &mut Ctx, json: &[u8]) {
    match ctx.extensions.get::<UpstreamWire>() {
        Some(UpstreamWire(Protocol::AnthropicMessages)) => return usage::record_messages(ctx, json),
        Some(UpstreamWire(Protocol::OpenAiResponses)) => return usage::record_responses(ctx, json),
        _ => {}
    }
    let Some(summary) = Summary::parse(json) else { return };
    if let Some(usage) = summary.usage() {
        ctx.log.usage = Some(usage);
    }
    if let Some(model) = summary.model.as_deref() {
        if ctx.log.model.as_deref() != Some(model) {
            ctx.log.model = Some(model.to_string());
        }
    }
    if let Some(text) = ctx.log.response_text.as_mut() {
        // Only with `logging.payloads`: the full tree is needed for the text.
        if let Ok(response) = serde_json::from_slice::<serde_json::Value>(json) {
            openai::append_text(&response, text);
        }
    }
}
