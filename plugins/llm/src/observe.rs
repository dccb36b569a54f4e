//! Reading an LLM response on its way to the client, from a copy: usage (both for JSON and SSE
//! responses), the answered model, and (with `logging.payloads`) the response text. Shared by both
//! AI plugins; it never changes a byte.
//!
//! A JSON body relayed in pieces (`proxy-buffering` off) is not kept whole: only its ends are
//! ([`BodyWindow`]), from which `model` and `usage` are read, so an answer of any size costs a
//! bounded amount of memory. Its text is logged only when the body fit in the window.

use std::sync::LazyLock;

use crate::body_window::BodyWindow;
use crate::json_scan::{first_member, first_member_plain_str, last_member, last_member_raw};
use crate::protocol::usage::{self, UpstreamWire};
use crate::protocol::Protocol;
use crate::providers::openai;
use crate::usage_scan::openai_usage;
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
    /// An event of this attempt's stream named the model: later events are not read for it.
    model_named: bool,
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
        ctx.extensions.insert(Reading { event_stream, body: BodyWindow::default(), model_named: false });
    }
}

/// Whether the answer being relayed is an event stream whose head went out already: true only
/// after the header phase of a stream (when a broken stream is being taken up).
pub fn relaying_event_stream(ctx: &Ctx) -> bool {
    ctx.extensions.get::<Reading>().is_some_and(|reading| reading.event_stream)
}

/// Runs when an attempt's answer is about to be read, the first or one taking up a broken
/// stream: the new attempt's events are read for the model again (another instance may answer
/// with another model).
pub fn attempt_begins(ctx: &mut Ctx) {
    if let Some(reading) = ctx.extensions.get_mut::<Reading>() {
        reading.model_named = false;
    }
}

/// Body phase: one SSE event, one chunk, or the whole body.
pub fn on_body(ctx: &mut Ctx, chunk: &Bytes, end_of_stream: bool) {
    let reading = ctx.extensions.get_mut::<Reading>();
    match reading {
        Some(reading) if reading.event_stream => {
            let Some(data) = event_data(chunk) else { return };
            if &*data == b"[DONE]" {
                return;
            }
            // Every event of a stream names the same model: the first one that names it is read for
            // it (the walk to `model` cost more than the rest of an event's reading).
            let model = if reading.model_named { Model::Named } else { Model::Unknown };
            if record(ctx, &data, Carries::Sometimes, model) == Model::Named && model == Model::Unknown {
                if let Some(reading) = ctx.extensions.get_mut::<Reading>() {
                    reading.model_named = true;
                }
            }
        }
        None if end_of_stream => {
            record(ctx, chunk, Carries::AsARule, Model::Unknown);
        }
        None => {
            ctx.extensions.insert(Reading {
                event_stream: false,
                body: BodyWindow::starting_with(chunk),
                model_named: false,
            });
        }
        Some(reading) => {
            reading.body.push(chunk);
            if end_of_stream {
                let body = std::mem::take(&mut reading.body);
                match body.whole() {
                    Some(whole) => {
                        record(ctx, &whole, Carries::AsARule, Model::Unknown);
                    }
                    None => record_ends(ctx, &body),
                }
            }
        }
    }
}

/// Usage from the end of a body too large to have been kept, and the model from its start (or
/// its end, where some providers put it). Messages and Responses answers are read by
/// `protocol::usage`, told by [`UpstreamWire`].
fn record_ends(ctx: &mut Ctx, body: &BodyWindow) {
    if let Some(&UpstreamWire(
        protocol @ (Protocol::AnthropicMessages | Protocol::OpenAiResponses | Protocol::BedrockConverse),
    )) = ctx.extensions.get::<UpstreamWire>()
    {
        return usage::record_ends(ctx, protocol, body.head(), body.tail());
    }
    record_members(ctx, body.head(), body.tail(), Carries::AsARule, Model::Unknown);
}

/// How often the JSON being read carries `usage`: it decides whether a quick search for the key
/// comes before the scan for the member.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Carries {
    /// A whole answer: usage is its last member or next to it, where the scan from the end finds it
    /// at once. A search first would read the whole answer for nothing.
    AsARule,
    /// An event of a stream: usage comes once, at the end. An event without the text `"usage"`
    /// is not scanned for it (a vectorised search instead of a byte-by-byte walk).
    Sometimes,
}

/// Whether the model answering is known: before a piece of the answer is read, already; after,
/// now.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Model {
    /// Read the piece for it.
    Unknown,
    /// Named by an earlier event of the stream (the piece is not read for it), or by this piece.
    Named,
}

/// Usage from the top-level `usage` member nearest the end of `tail`, and, unless `model` is
/// [`Model::Named`], the model from the `model` member nearest the start of `head` (else nearest
/// the end of `tail`). Only those two members are parsed: the scan passes over the rest (choices,
/// messages) without building it. Returns whether the model is named now.
fn record_members(ctx: &mut Ctx, head: &[u8], tail: &[u8], usage: Carries, model: Model) -> Model {
    /// Built once: a searcher made per call costs more than the search of a short event.
    static USAGE_KEY: LazyLock<memchr::memmem::Finder<'static>> =
        LazyLock::new(|| memchr::memmem::Finder::new(b"\"usage\""));
    if usage == Carries::AsARule || USAGE_KEY.find(tail).is_some() {
        if let Some(usage) = last_member_raw(tail, "usage").and_then(openai_usage) {
            ctx.log.usage = Some(usage);
        }
    }
    if model == Model::Named {
        return Model::Named;
    }
    // Borrowed when the name has no escapes (always, in practice); else copied as it is decoded.
    if let Some(model) = first_member_plain_str(head, "model") {
        if ctx.log.model.as_deref() != Some(model) {
            ctx.log.model = Some(model.to_owned());
        }
    } else if let Some(model) = first_member::<String>(head, "model").or_else(|| last_member(tail, "model")) {
        ctx.log.model = Some(model);
    } else {
        return Model::Unknown;
    }
    Model::Named
}

/// Reads usage and (unless `model` says it is known) the model from one whole answer or event;
/// returns whether the model is named now. The Messages, Responses, Converse and Predict readers
/// read every event for the model: their streams name it in one event only.
fn record(ctx: &mut Ctx, json: &[u8], usage: Carries, model: Model) -> Model {
    match ctx.extensions.get::<UpstreamWire>() {
        Some(UpstreamWire(Protocol::AnthropicMessages)) => usage::record_messages(ctx, json),
        Some(UpstreamWire(Protocol::OpenAiResponses)) => usage::record_responses(ctx, json),
        Some(UpstreamWire(Protocol::BedrockConverse)) => usage::record_converse(ctx, json),
        Some(UpstreamWire(Protocol::VertexPredict)) => crate::protocol::predict::record_usage(ctx, json),
        _ => return record_openai(ctx, json, usage, model),
    }
    Model::Unknown
}

/// [`record`] for an OpenAI answer or chunk.
fn record_openai(ctx: &mut Ctx, json: &[u8], usage: Carries, model: Model) -> Model {
    // A completion keeps `usage` at its end and `model` at its start: scanning for the two
    // members passes over `choices` instead of deserializing it (about a quarter fewer
    // instructions on a 600-byte answer).
    let model = record_members(ctx, json, json, usage, model);
    if let Some(text) = logged_text(ctx) {
        // Only with `logging.payloads`: the full tree is needed for the text.
        if let Ok(response) = serde_json::from_slice::<serde_json::Value>(json) {
            openai::append_text(&response, text);
        }
        cap_logged_text(text);
    }
    model
}

/// The response text being logged (`logging.payloads`), while it is still under its limit; `None`
/// when payloads are not logged or the text is already full.
pub(crate) fn logged_text(ctx: &mut Ctx) -> Option<&mut String> {
    ctx.log.response_text.as_mut().filter(|text| text.len() <= MAX_LOGGED_TEXT)
}

/// Runs after text was appended: cuts a text past [`MAX_LOGGED_TEXT`] there (on a character
/// boundary) and ends it with `…`.
pub(crate) fn cap_logged_text(text: &mut String) {
    if text.len() > MAX_LOGGED_TEXT {
        let mut end = MAX_LOGGED_TEXT;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
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

    /// A Messages answer and a Responses answer whose text is `filler_len` bytes, usage last.
    fn other_protocols(filler_len: usize) -> [(Protocol, Vec<u8>, Usage); 2] {
        let filler = "x".repeat(filler_len);
        let messages = format!(
            r#"{{"id":"m","type":"message","role":"assistant","model":"big-model","content":[{{"type":"text","text":"{filler} \"usage\":{{}}"}}],"stop_reason":"end_turn","usage":{{"input_tokens":2,"cache_read_input_tokens":1,"output_tokens":3}}}}"#
        );
        let responses = format!(
            r#"{{"id":"r","object":"response","model":"big-model","output":[{{"type":"message","content":[{{"type":"output_text","text":"{filler}"}}]}}],"usage":{{"input_tokens":2,"output_tokens":3,"total_tokens":5}},"metadata":{{}}}}"#
        );
        [
            (
                Protocol::AnthropicMessages,
                messages.into_bytes(),
                Usage { prompt_tokens: 3, completion_tokens: 3, total_tokens: 6, cached_tokens: 1, ..Usage::default() },
            ),
            (
                Protocol::OpenAiResponses,
                responses.into_bytes(),
                Usage { prompt_tokens: 2, completion_tokens: 3, total_tokens: 5, ..Usage::default() },
            ),
        ]
    }

    #[test]
    fn usage_and_model_of_messages_and_responses_bodies_in_pieces_small_or_large() {
        for filler in [10, 1 << 20] {
            for (protocol, body, usage) in other_protocols(filler) {
                let mut ctx = ctx();
                ctx.extensions.insert(UpstreamWire(protocol));
                let pieces: Vec<&[u8]> = body.chunks(16 * 1024).collect();
                for (i, piece) in pieces.iter().enumerate() {
                    on_body(&mut ctx, &Bytes::copy_from_slice(piece), i + 1 == pieces.len());
                }
                assert_eq!(ctx.log.usage, Some(usage), "{protocol:?}, filler of {filler}");
                assert_eq!(ctx.log.model.as_deref(), Some("big-model"), "{protocol:?}, filler of {filler}");
            }
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
    fn a_stream_keeps_the_first_model_each_attempt_names_and_the_usage_however_it_is_written() {
        let mut ctx = ctx();
        let head = http::Response::builder().header("content-type", "text/event-stream").body(()).unwrap();
        on_head(&mut ctx, &head.into_parts().0);
        let events: [&[u8]; 6] = [
            b"data: {\"choices\":[{\"delta\":{\"role\":\"assistant\"}}]}\n\n",
            b"data: {\"model\":\"fir\\u0073t\",\"choices\":[{\"delta\":{\"content\":\"\\\"usage\\\":1\"}}]}\n\n",
            b"data: {\"model\":\"second\",\"choices\":[]}\n\n",
            b"data: {\"model\":\"second\",\"choices\":[],\"usage\" : {\"prompt_tokens\":4,\"completion_tokens\":1}}\n\n",
            b"data: [DONE]\n\n",
            // Another attempt takes up the stream: its events are read for the model again.
            b"data: {\"model\":\"second\",\"choices\":[]}\n\n",
        ];
        let mut seen = Vec::new();
        for (i, event) in events.into_iter().enumerate() {
            if i == 5 {
                attempt_begins(&mut ctx);
            }
            on_body(&mut ctx, &Bytes::from_static(event), false);
            seen.push((ctx.log.model.clone().unwrap_or_default(), ctx.log.usage.map(|u| u.total_tokens)));
        }
        let expected =
            [("", None), ("first", None), ("first", None), ("first", Some(5)), ("first", Some(5)), ("second", Some(5))];
        let expected: Vec<(String, Option<u64>)> = expected.iter().map(|(m, u)| (m.to_string(), *u)).collect();
        assert_eq!(seen, expected);
    }

    #[test]
    fn a_whole_body_in_one_piece_needs_no_state() {
        let mut ctx = ctx();
        on_body(&mut ctx, &Bytes::from(completion(10)), true);
        assert!(ctx.extensions.get::<Reading>().is_none());
        assert_eq!(ctx.log.usage.map(|u| u.total_tokens), Some(5));
    }
}
