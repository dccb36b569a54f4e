//! Bedrock's streamed answers (`/converse-stream`) arrive in AWS's binary event-stream framing
//! (`application/vnd.amazon.eventstream`), decoded here frame by frame as the chunks arrive, by
//! the AWS-maintained `aws-smithy-eventstream` crate. Each frame becomes one [`Event`] named by
//! its `:event-type` (`messageStart`, `contentBlockDelta`, `messageStop`, `metadata`, ...) with its
//! JSON payload; an exception frame becomes an `error` event. A `bedrock-converse` client gets
//! the frames as they came (read only for usage); a converted client gets one SSE event per
//! frame from `rewrite`.

use aws_smithy_eventstream::frame::{DecodedFrame, MessageFrameDecoder};
use aws_smithy_types::event_stream::{HeaderValue, Message};
use bytes::{Buf, BytesMut};
use http::header::CONTENT_TYPE;
use serde_json::{json, Value};

use super::event::{Data, Event};

/// The content type of AWS's binary event stream.
pub const CONTENT_TYPE_VALUE: &str = "application/vnd.amazon.eventstream";

/// The largest frame held while it arrives (the framing allows 16 MiB).
const MAX_FRAME: usize = 16 << 20;

/// Whether a response head announces AWS's binary event stream.
pub fn is_binary_stream(head: &http::response::Parts) -> bool {
    head.headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().starts_with(CONTENT_TYPE_VALUE))
}

/// The frames of one answer as they arrive: the bytes of an unfinished frame are held until the
/// rest comes. Per request, in `ctx.extensions`.
#[derive(Debug, Clone, Default)]
pub struct FrameReader {
    held: BytesMut,
    /// A frame could not be decoded: the rest of the stream is not read.
    broken: bool,
}

impl FrameReader {
    /// Adds one chunk and returns the events of the frames it completed, in order.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<Event> {
        let mut events = Vec::new();
        if self.broken {
            return events;
        }
        self.held.extend_from_slice(chunk);
        loop {
            // A fresh decoder per frame: it only reads the prelude to learn the frame's length,
            // and a held frame is tried again, whole, when more bytes came.
            let mut unread: &[u8] = &self.held;
            let frame = match MessageFrameDecoder::new().decode_frame(&mut unread) {
                Ok(DecodedFrame::Complete(message)) => message,
                Ok(DecodedFrame::Incomplete) if self.held.len() <= MAX_FRAME => break,
                Ok(DecodedFrame::Incomplete) => return self.fail(events, "a frame is larger than 16 MiB"),
                Err(err) => return self.fail(events, &err.to_string()),
            };
            let used = self.held.len() - unread.len();
            self.held.advance(used);
            if let Some(event) = event_of(&frame) {
                events.push(event);
            }
        }
        events
    }

    fn fail(&mut self, mut events: Vec<Event>, why: &str) -> Vec<Event> {
        self.broken = true;
        self.held.clear();
        let message = format!("the upstream's event stream could not be read: {why}");
        events.push(Event {
            name: Some("error".into()),
            data: Data::Json(json!({"type": "stream_error", "message": message})),
        });
        events
    }
}

/// A frame's string header.
fn header<'m>(message: &'m Message, name: &str) -> Option<&'m str> {
    message.headers().iter().find(|h| h.name().as_str() == name).and_then(|h| match h.value() {
        HeaderValue::String(value) => Some(value.as_str()),
        _ => None,
    })
}

/// The event a frame carries: an `event` frame by its `:event-type`, an `exception` or `error`
/// frame as an `error` event (`{"type", "message"}`). `None` for a payload that is not JSON.
fn event_of(message: &Message) -> Option<Event> {
    let payload: Value = serde_json::from_slice(message.payload()).unwrap_or(Value::Null);
    match header(message, ":message-type") {
        Some("exception") => {
            let kind = header(message, ":exception-type").unwrap_or("exception");
            let text = payload.get("message").or_else(|| payload.get("Message")).cloned().unwrap_or(Value::Null);
            Some(Event { name: Some("error".into()), data: Data::Json(json!({"type": kind, "message": text})) })
        }
        Some("error") => {
            let kind = header(message, ":error-code").unwrap_or("error");
            let text = header(message, ":error-message").unwrap_or("");
            Some(Event { name: Some("error".into()), data: Data::Json(json!({"type": kind, "message": text})) })
        }
        _ => {
            let name = header(message, ":event-type")?;
            payload.is_object().then(|| Event { name: Some(name.to_string()), data: Data::Json(payload) })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_smithy_eventstream::frame::write_message_to;
    use aws_smithy_types::event_stream::Header;

    fn frame(event_type: &str, payload: Value) -> Vec<u8> {
        let message = Message::new(payload.to_string().into_bytes())
            .add_header(Header::new(":message-type", HeaderValue::String("event".into())))
            .add_header(Header::new(":event-type", HeaderValue::String(event_type.to_string().into())))
            .add_header(Header::new(":content-type", HeaderValue::String("application/json".into())));
        let mut out = Vec::new();
        write_message_to(&message, &mut out).unwrap();
        out
    }

    #[test]
    fn frames_split_anywhere_decode_in_order() {
        let mut bytes = frame("messageStart", json!({"role": "assistant", "p": "abc"}));
        bytes.extend(frame("contentBlockDelta", json!({"contentBlockIndex": 0, "delta": {"text": "Hi"}})));
        let exception = Message::new(b"{\"message\":\"slow down\"}".to_vec())
            .add_header(Header::new(":message-type", HeaderValue::String("exception".into())))
            .add_header(Header::new(":exception-type", HeaderValue::String("throttlingException".into())));
        write_message_to(&exception, &mut bytes).unwrap();
        for piece in [1, 7, 13, bytes.len()] {
            let mut reader = FrameReader::default();
            let events: Vec<Event> = bytes.chunks(piece).flat_map(|chunk| reader.push(chunk)).collect();
            assert_eq!(events.len(), 3, "pieces of {piece}");
            assert_eq!(events[0].name.as_deref(), Some("messageStart"));
            assert_eq!(events[1].json().unwrap()["delta"]["text"], "Hi");
            assert_eq!(events[2].name.as_deref(), Some("error"));
            assert_eq!(events[2].json().unwrap(), &json!({"type": "throttlingException", "message": "slow down"}));
        }
    }

    #[test]
    fn a_corrupt_frame_ends_the_reading_with_an_error_event() {
        let mut bytes = frame("messageStart", json!({"role": "assistant"}));
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        let mut reader = FrameReader::default();
        let events = reader.push(&bytes);
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].name.as_deref(), Some("error"));
        assert!(reader.push(&frame("messageStop", json!({}))).is_empty());
    }
}
