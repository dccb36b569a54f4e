//! Reading an LLM response on its way to the client, from a copy: usage (both for JSON and SSE
//! responses), the answered model, and (with `logging.payloads`) the response text. Shared by both
//! AI plugins; it never changes a byte.
//!
//! A JSON body relayed in pieces (`proxy-buffering` off) is not kept whole: only its ends are
//! ([`BodyWindow`]), from which `model` and `usage` are read, so an answer of any size costs a
//! bounded amount of memory. Its text is logged only when the body fit in the window.

use crate::body_window::BodyWindow;
use crate::json_scan::{first_member, last_member};
use crate::providers::openai::{self, Summary, UsageWire};
use bytes::Bytes;
use http::header::CONTENT_TYPE;
use switchyard_sdk::sse::event_data;
use switchyard_sdk::Ctx;

/// The most response text an access log line carries (`logging.payloads`): a longer answer's text
/// is cut there and ends with `…`, so a long stream cannot grow the log record without end.
pub const MAX_LOGGED_TEXT: usize = crate::body_window::WINDOW;

/// The reader's per-request state, in its own slot of `ctx.extensions`.
#[derive(Clone, Default)]
struct Reading {
    /// The response is an event stream (known at the response head).
    event_stream: bool,
    /// A non-streaming body that arrives in several pieces: its ends.
    body: BodyWindow,
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
        ctx.extensions.insert(Reading { event_stream, body: BodyWindow::default() });
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
            ctx.extensions.insert(Reading { event_stream: false, body: BodyWindow::starting_with(chunk) });
        }
        Some(reading) => {
            reading.body.push(chunk);
            if end_of_stream {
                let body = std::mem::take(&mut reading.body);
                match body.whole() {
                    Some(whole) => record(ctx, &whole),
                    None => record_ends(ctx, &body),
                }
            }
        }
    }
}

/// Usage from the end of a body too large to have been kept, and the model from its start (or
/// its end, where some providers put it).
fn record_ends(ctx: &mut Ctx, body: &BodyWindow) {
    if let Some(usage) = last_member::<Option<UsageWire>>(body.tail(), "usage").flatten() {
        ctx.log.usage = Some(usage.usage());
    }
    let model = first_member::<String>(body.head(), "model").or_else(|| last_member(body.tail(), "model"));
    if model.is_some() {
        ctx.log.model = model;
    }
}

fn record(ctx: &mut Ctx, json: &[u8]) {
    let Some(summary) = Summary::parse(json) else { return };
    if let Some(usage) = summary.usage() {
        ctx.log.usage = Some(usage);
    }
    if let Some(model) = summary.model.as_deref() {
        if ctx.log.model.as_deref() != Some(model) {
            ctx.log.model = Some(model.to_string());
        }
    }
    if let Some(text) = ctx.log.response_text.as_mut().filter(|text| text.len() <= MAX_LOGGED_TEXT) {
        // Only with `logging.payloads`: the full tree is needed for the text.
        if let Ok(response) = serde_json::from_slice::<serde_json::Value>(json) {
            openai::append_text(&response, text);
        }
        if text.len() > MAX_LOGGED_TEXT {
            let mut end = MAX_LOGGED_TEXT;
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            text.truncate(end);
            text.push('…');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_sdk::Usage;

    fn ctx() -> Ctx {
        Ctx::new("r".into(), ([127, 0, 0, 1], 1).into(), http::HeaderValue::from_static("id"))
    }

    /// A completion whose text is `filler_len` bytes, its usage last.
    fn completion(filler_len: usize) -> Vec<u8> {
        let mut body = br#"{"id":"c","model":"big-model","choices":[{"message":{"content":""#.to_vec();
        body.extend(std::iter::repeat_n(b'x', filler_len));
        body.extend_from_slice(br#""}}],"usage":{"prompt_tokens":2,"completion_tokens":3}}"#);
        body
    }

    fn read_in_pieces(body: &[u8], piece: usize) -> Ctx {
        let mut ctx = ctx();
        let pieces: Vec<&[u8]> = body.chunks(piece).collect();
        for (i, piece) in pieces.iter().enumerate() {
            on_body(&mut ctx, &Bytes::copy_from_slice(piece), i + 1 == pieces.len());
        }
        ctx
    }

    #[test]
    fn usage_and_model_of_a_body_in_pieces_small_or_large() {
        let usage = Usage { prompt_tokens: 2, completion_tokens: 3, total_tokens: 5, ..Usage::default() };
        for filler in [10, 1 << 20] {
            let ctx = read_in_pieces(&completion(filler), 16 * 1024);
            assert_eq!(ctx.log.usage, Some(usage), "filler of {filler}");
            assert_eq!(ctx.log.model.as_deref(), Some("big-model"), "filler of {filler}");
        }
    }

    #[test]
    fn logged_text_of_a_long_stream_stops_at_its_limit() {
        let mut ctx = ctx();
        ctx.log.response_text = Some(String::new());
        let head = http::Response::builder().header("content-type", "text/event-stream").body(()).unwrap();
        on_head(&mut ctx, &head.into_parts().0);
        let event = Bytes::from_static("data: {\"choices\":[{\"delta\":{\"content\":\"héllo \"}}]}\n\n".as_bytes());
        for _ in 0..20_000 {
            on_body(&mut ctx, &event, false);
        }
        let text = ctx.log.response_text.unwrap();
        assert!(text.starts_with("héllo héllo") && text.ends_with('…'), "{}", &text[..20]);
        assert!(text.len() <= MAX_LOGGED_TEXT + '…'.len_utf8());
    }

    #[test]
    fn a_whole_body_in_one_piece_needs_no_state() {
        let mut ctx = ctx();
        on_body(&mut ctx, &Bytes::from(completion(10)), true);
        assert!(ctx.extensions.get::<Reading>().is_none());
        assert_eq!(ctx.log.usage.map(|u| u.total_tokens), Some(5));
    }
}
