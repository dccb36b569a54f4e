//! Server-sent events framing: splits a byte stream into complete events, so the gateway can
//! flush each event as one frame and plugins can read `data:` payloads without re-buffering.
//!
//! Written here rather than taken from an SSE crate on purpose: the parsers on crates.io
//! (`eventsource-stream`, `sse-codec`) decode each event into owned `String` fields, which costs a
//! copy and a UTF-8 check per event, and then the relay would have to re-encode it. This splitter
//! only finds event boundaries and hands out the original bytes as `Bytes` slices of one buffer,
//! so a relayed event is written exactly as the provider sent it.

use std::borrow::Cow;

use bytes::{Buf, Bytes, BytesMut};

/// Accumulates chunks and yields complete events (each including its terminating blank line).
#[derive(Debug, Default)]
pub struct SseSplitter {
    buf: BytesMut,
    /// Where to resume looking for a boundary: bytes before it hold none.
    scanned: usize,
}

impl SseSplitter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends `chunk` and returns the next complete event, if one is ready. Call
    /// [`SseSplitter::next_event`] until it returns `None` to drain the rest.
    pub fn push(&mut self, chunk: &[u8]) -> Option<Bytes> {
        self.buf.extend_from_slice(chunk);
        self.next_event()
    }

    /// Like [`SseSplitter::push`], for a chunk the caller owns: a chunk that is exactly one
    /// complete event (what providers send, one event per write) passes through uncopied.
    pub fn push_bytes(&mut self, chunk: Bytes) -> Option<Bytes> {
        if self.buf.is_empty() && find_event_end(&chunk, 0) == Some(chunk.len()) {
            return Some(chunk);
        }
        self.push(&chunk)
    }

    /// Returns the next complete event already buffered.
    pub fn next_event(&mut self) -> Option<Bytes> {
        let Some(end) = find_event_end(&self.buf, self.scanned.saturating_sub(2)) else {
            self.scanned = self.buf.len();
            return None;
        };
        self.scanned = 0;
        Some(self.buf.split_to(end).freeze())
    }

    /// Bytes of an unfinished event, taken at the end of the stream.
    pub fn take_rest(&mut self) -> Option<Bytes> {
        if self.buf.is_empty() {
            return None;
        }
        self.scanned = 0;
        let rest = self.buf.split().freeze();
        Some(rest)
    }

    pub fn buffered(&self) -> usize {
        self.buf.remaining()
    }
}

/// The index just past the first blank line (`\n\n`, `\r\n\r\n` or `\r\r`) at or after `from`.
/// Jumps from one line break to the next with `memchr2` (vectorised): a relayed event is a few
/// hundred bytes with a handful of breaks, and stepping byte by byte cost ~8 instructions a byte.
fn find_event_end(buf: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    while let Some(at) = memchr::memchr2(b'\n', b'\r', buf.get(i..)?) {
        i += at;
        match buf[i] {
            b'\n' if buf.get(i + 1) == Some(&b'\n') => return Some(i + 2),
            b'\n' if buf.get(i + 1) == Some(&b'\r') && buf.get(i + 2) == Some(&b'\n') => return Some(i + 3),
            b'\r' if buf.get(i + 1) == Some(&b'\r') => return Some(i + 2),
            _ => i += 1,
        }
    }
    None
}

/// The payload of an event's `data:` lines, joined by `\n` as the SSE spec says; `None` when the
/// event has no data line (comments, `event:`-only keep-alives). Runs on every relayed event: an
/// event with one data line (what providers send) is borrowed, not copied.
pub fn event_data(event: &[u8]) -> Option<Cow<'_, [u8]>> {
    let mut data: Option<Cow<'_, [u8]>> = None;
    let mut start = 0;
    while start < event.len() {
        let end = memchr::memchr(b'\n', &event[start..]).map_or(event.len(), |at| start + at);
        let line = &event[start..end];
        start = end + 1;
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(rest) = line.strip_prefix(b"data:") else { continue };
        let rest = rest.strip_prefix(b" ").unwrap_or(rest);
        data = Some(match data {
            Some(joined) if !joined.is_empty() => {
                let mut joined = joined.into_owned();
                joined.push(b'\n');
                joined.extend_from_slice(rest);
                Cow::Owned(joined)
            }
            _ => Cow::Borrowed(rest),
        });
    }
    data
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_events_across_chunk_boundaries() {
        let mut sse = SseSplitter::new();
        assert_eq!(sse.push(b"data: {\"a\":1}\n"), None);
        assert_eq!(sse.push(b"\ndata: two\n\ndata: thr").as_deref(), Some(&b"data: {\"a\":1}\n\n"[..]));
        assert_eq!(sse.next_event().as_deref(), Some(&b"data: two\n\n"[..]));
        assert_eq!(sse.next_event(), None);
        assert_eq!(sse.take_rest().as_deref(), Some(&b"data: thr"[..]));
    }

    #[test]
    fn a_chunk_holding_one_whole_event_passes_through() {
        let mut sse = SseSplitter::new();
        let event = Bytes::from_static(b"data: one\n\n");
        assert_eq!(sse.push_bytes(event.clone()).map(|e| e.as_ptr()), Some(event.as_ptr()));
        assert_eq!(sse.push_bytes(Bytes::from_static(b"data: a\n\ndata: b\n\n")).as_deref(), Some(&b"data: a\n\n"[..]));
        assert_eq!(sse.next_event().as_deref(), Some(&b"data: b\n\n"[..]));
        assert_eq!(sse.push_bytes(Bytes::from_static(b"data: c")), None);
        assert_eq!(sse.push_bytes(Bytes::from_static(b"\n\n")).as_deref(), Some(&b"data: c\n\n"[..]));
    }

    #[test]
    fn understands_crlf_boundaries() {
        let mut sse = SseSplitter::new();
        assert_eq!(sse.push(b"data: x\r\n\r\ndata: y").as_deref(), Some(&b"data: x\r\n\r\n"[..]));
    }

    mod generated {
        use super::*;
        use crate::testing::{cut, cut_points, sse_like};
        use proptest::prelude::*;

        /// Every event `stream` holds, split from it whole.
        fn events_at_once(stream: &[u8]) -> Vec<Bytes> {
            let mut sse = SseSplitter::new();
            let mut events: Vec<Bytes> = sse.push(stream).into_iter().collect();
            events.extend(std::iter::from_fn(|| sse.next_event()));
            events
        }

        proptest! {
            /// However the stream is cut, the events (each ending at its first blank line) and the
            /// rest join back to it, and only the unfinished event is ever held.
            #[test]
            fn events_are_the_stream_cut_at_blank_lines_whatever_the_pieces(
                stream in sse_like(), points in cut_points(), owned in any::<bool>()
            ) {
                let mut sse = SseSplitter::new();
                let mut events = Vec::new();
                let mut received = 0;
                for piece in cut(&stream, &points) {
                    received += piece.len();
                    let first = if owned { sse.push_bytes(Bytes::copy_from_slice(piece)) } else { sse.push(piece) };
                    events.extend(first);
                    events.extend(std::iter::from_fn(|| sse.next_event()));
                    let emitted: usize = events.iter().map(Bytes::len).sum();
                    prop_assert_eq!(sse.buffered(), received - emitted);
                }
                for event in &events {
                    prop_assert_eq!(find_event_end(event, 0), Some(event.len()));
                }
                let mut joined = events.concat();
                joined.extend_from_slice(&sse.take_rest().unwrap_or_default());
                prop_assert_eq!(&joined, &stream);
                prop_assert_eq!(events, events_at_once(&stream));
            }

            /// The vectorised scans agree with reading the bytes one at a time, on any bytes.
            #[test]
            fn scans_agree_with_a_byte_by_byte_reading(
                event in prop::collection::vec(prop::sample::select(b"data: x\r\n".to_vec()), 0..200),
                any_bytes in prop::collection::vec(any::<u8>(), 0..200),
                sse in sse_like(),
                from in 0usize..8,
            ) {
                for bytes in [&event, &any_bytes, &sse] {
                    prop_assert_eq!(event_data(bytes).map(Cow::into_owned), data_lines_one_by_one(bytes));
                    let from = from.min(bytes.len());
                    prop_assert_eq!(find_event_end(bytes, from), blank_line_byte_by_byte(bytes, from));
                }
            }
        }
    }

    #[test]
    fn joins_multiple_data_lines() {
        assert_eq!(event_data(b"event: m\ndata: a\ndata:b\n\n").as_deref(), Some(&b"a\nb"[..]));
        assert_eq!(event_data(b"data: a\r\ndata: b\r\n\r\n").as_deref(), Some(&b"a\nb"[..]));
        assert_eq!(event_data(b": keep-alive\n\n"), None);
    }

    #[test]
    fn one_data_line_is_borrowed_from_the_event() {
        let event = b"id: 7\ndata: {\"a\":1}\n\n";
        let data = event_data(event).unwrap();
        assert!(matches!(data, Cow::Borrowed(_)));
        assert_eq!(&*data, br#"{"a":1}"#);
    }

    /// What `event_data` reads, the plain way: every line split, `data:` lines joined.
    fn data_lines_one_by_one(event: &[u8]) -> Option<Vec<u8>> {
        let mut data: Option<Vec<u8>> = None;
        for line in event.split(|b| *b == b'\n') {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if let Some(rest) = line.strip_prefix(b"data:") {
                let rest = rest.strip_prefix(b" ").unwrap_or(rest);
                let joined = data.get_or_insert_with(Vec::new);
                if !joined.is_empty() {
                    joined.push(b'\n');
                }
                joined.extend_from_slice(rest);
            }
        }
        data
    }

    /// What `find_event_end` finds, the plain way: every byte looked at.
    fn blank_line_byte_by_byte(buf: &[u8], from: usize) -> Option<usize> {
        (from..buf.len()).find_map(|i| match buf[i] {
            b'\n' if buf.get(i + 1) == Some(&b'\n') => Some(i + 2),
            b'\n' if buf.get(i + 1) == Some(&b'\r') && buf.get(i + 2) == Some(&b'\n') => Some(i + 3),
            b'\r' if buf.get(i + 1) == Some(&b'\r') => Some(i + 2),
            _ => None,
        })
    }
}
