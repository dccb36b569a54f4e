//! An upstream response head (status line and fields), parsed by `httparse`, and what it says
//! about the body after it: its framing and whether the connection can carry another request.

use std::mem::MaybeUninit;

use bytes::BytesMut;
use http::header::{CONNECTION, CONTENT_LENGTH, TRANSFER_ENCODING};
use http::{HeaderMap, HeaderName, HeaderValue, Response, StatusCode, Version};

use super::framing::{Chunk, Framing};
use super::wire::WireError;

/// Room past the upstream's own fields in an answer's map. The gateway adds a few before it
/// relays the answer (request ids, `Content-Length`, plugins' fields); a map without room grows,
/// which rehashes every field, on every request.
const ANSWER_ROOM: usize = 8;

/// The most fields a response head may have (hyper's client default).
const MAX_FIELDS: usize = 100;
/// The longest response head accepted, informational responses before it included.
pub const MAX_HEAD: usize = 256 * 1024;

/// A parsed response head.
#[derive(Debug)]
pub struct Head {
    pub response: Response<()>,
    pub framing: Framing,
    /// The connection may carry another request once this body has been read.
    pub reusable: bool,
}

/// Parses the final response head at the start of `buf` and removes it (with any informational
/// `1xx` responses before it), leaving the body's first bytes. Runs after every read while a
/// request waits for its answer; `None`: the head is not complete yet. `head_request`: the
/// request was a `HEAD`, so no body follows whatever the fields say. `spans` is scratch space,
/// kept by the connection so that a head costs no allocation.
pub fn parse(buf: &mut BytesMut, head_request: bool, spans: &mut Vec<FieldSpan>) -> Result<Option<Head>, WireError> {
    loop {
        let Some(parsed) = parse_one(buf, spans)? else {
            if buf.len() > MAX_HEAD {
                return Err(WireError::Protocol("the response head is too long"));
            }
            return Ok(None);
        };
        let head_bytes = buf.split_to(parsed.length).freeze();
        let status = StatusCode::from_u16(parsed.code).map_err(|_| WireError::Protocol("invalid status code"))?;
        if status == StatusCode::SWITCHING_PROTOCOLS {
            return Err(WireError::Protocol("the upstream switched protocols, which a proxied request never asks for"));
        }
        if status.is_informational() {
            continue;
        }
        let mut headers = HeaderMap::with_capacity(spans.len() + ANSWER_ROOM);
        for span in spans.iter() {
            let name = HeaderName::from_bytes(&head_bytes[span.name.0..span.name.1])
                .map_err(|_| WireError::Protocol("invalid field name"))?;
            let value = HeaderValue::from_maybe_shared(head_bytes.slice(span.value.0..span.value.1))
                .map_err(|_| WireError::Protocol("invalid field value"))?;
            headers.append(name, value);
        }
        let version = if parsed.minor_version == 0 { Version::HTTP_10 } else { Version::HTTP_11 };
        let (framing, mut reusable) = framing(status, &headers, head_request)?;
        reusable &= keeps_alive(version, &headers);
        let mut response = Response::new(());
        *response.status_mut() = status;
        *response.version_mut() = version;
        *response.headers_mut() = headers;
        return Ok(Some(Head { response, framing, reusable }));
    }
}

/// Where one field's name and value are in the buffer the head was parsed from. Offsets rather
/// than slices, so the values can become shared slices of the head's bytes (no copy per field)
/// once the head is split off the buffer.
#[derive(Clone, Copy, Default)]
pub struct FieldSpan {
    name: (usize, usize),
    value: (usize, usize),
}

/// One response head's status line.
struct Parsed {
    length: usize,
    code: u16,
    minor_version: u8,
}

/// Parses one response head (informational or final) at the start of `buf`, its fields' places
/// into `spans`; `None` while it is incomplete. The fields' array is left uninitialised for
/// httparse to fill: zeroing its 3.2 KB on every call cost more than parsing the head.
fn parse_one(buf: &BytesMut, spans: &mut Vec<FieldSpan>) -> Result<Option<Parsed>, WireError> {
    if buf.is_empty() {
        return Ok(None);
    }
    let mut fields = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_FIELDS];
    let mut response = httparse::Response::new(&mut []);
    let length =
        match httparse::ParserConfig::default().parse_response_with_uninit_headers(&mut response, buf, &mut fields) {
            Ok(httparse::Status::Complete(length)) => length,
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(httparse::Error::TooManyHeaders) => {
                return Err(WireError::Protocol("the response has too many fields"))
            }
            Err(_) => return Err(WireError::Protocol("malformed response head")),
        };
    let start = buf.as_ptr() as usize;
    let span = |part: &[u8]| {
        let from = part.as_ptr() as usize - start;
        (from, from + part.len())
    };
    spans.clear();
    spans.extend(
        response.headers.iter().map(|field| FieldSpan { name: span(field.name.as_bytes()), value: span(field.value) }),
    );
    Ok(Some(Parsed { length, code: response.code.unwrap_or_default(), minor_version: response.version.unwrap_or(1) }))
}

/// How the body is delimited (RFC 9112 §6.3), and whether that framing leaves the connection
/// fit for another request.
fn framing(status: StatusCode, headers: &HeaderMap, head_request: bool) -> Result<(Framing, bool), WireError> {
    if head_request || status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED {
        return Ok((Framing::Length(0), true));
    }
    if headers.contains_key(TRANSFER_ENCODING) {
        // Both `Transfer-Encoding` and `Content-Length` may be a smuggling attempt: the former
        // wins, and the connection is not trusted with another request.
        let reusable = !headers.contains_key(CONTENT_LENGTH);
        return Ok(if last_coding_is_chunked(headers) {
            (Framing::Chunked(Chunk::Size), reusable)
        } else {
            (Framing::UntilClose, false)
        });
    }
    let mut length = None;
    for value in headers.get_all(CONTENT_LENGTH) {
        for part in value.as_bytes().split(|byte| *byte == b',') {
            let part = part.trim_ascii();
            if part.is_empty() || part.len() > 19 || !part.iter().all(u8::is_ascii_digit) {
                return Err(WireError::Protocol("invalid Content-Length"));
            }
            let this = part.iter().fold(0u64, |sum, digit| sum * 10 + u64::from(digit - b'0'));
            if length.is_some_and(|seen| seen != this) {
                return Err(WireError::Protocol("conflicting Content-Length values"));
            }
            length = Some(this);
        }
    }
    Ok(match length {
        Some(length) => (Framing::Length(length), true),
        None => (Framing::UntilClose, false),
    })
}

fn last_coding_is_chunked(headers: &HeaderMap) -> bool {
    let last_field = headers.get_all(TRANSFER_ENCODING).iter().next_back();
    last_field
        .and_then(|value| value.as_bytes().rsplit(|byte| *byte == b',').next())
        .is_some_and(|coding| coding.trim_ascii().eq_ignore_ascii_case(b"chunked"))
}

/// Whether the upstream keeps the connection open after this response: HTTP/1.1 unless it says
/// `Connection: close`; HTTP/1.0 only when it says `keep-alive`.
fn keeps_alive(version: Version, headers: &HeaderMap) -> bool {
    let has = |token: &[u8]| {
        headers.get_all(CONNECTION).iter().any(|value| {
            value.as_bytes().split(|byte| *byte == b',').any(|part| part.trim_ascii().eq_ignore_ascii_case(token))
        })
    };
    if version == Version::HTTP_10 {
        has(b"keep-alive")
    } else {
        !has(b"close")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(wire: &[u8], head_request: bool) -> Result<Option<(Head, BytesMut)>, WireError> {
        let mut buf = BytesMut::from(wire);
        Ok(parse(&mut buf, head_request, &mut Vec::new())?.map(|head| (head, buf)))
    }

    #[test]
    fn a_length_framed_head_leaves_the_body_in_the_buffer() {
        let wire =
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\nX-A: 1\r\nX-A: 2\r\n\r\n{}";
        let (head, buf) = parse_all(wire, false).unwrap().unwrap();
        assert_eq!(head.response.status(), StatusCode::OK);
        assert_eq!(head.response.headers()["content-type"], "application/json");
        assert_eq!(head.response.headers().get_all("x-a").iter().count(), 2);
        assert_eq!(head.framing, Framing::Length(2));
        assert!(head.reusable);
        assert_eq!(&buf[..], b"{}");
    }

    #[test]
    fn an_incomplete_head_asks_for_more_at_every_split() {
        let wire = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
        for cut in 0..wire.len() {
            assert!(parse_all(&wire[..cut], false).unwrap().is_none(), "cut at {cut}");
        }
        let (head, _) = parse_all(wire, false).unwrap().unwrap();
        assert_eq!(head.framing, Framing::Chunked(Chunk::Size));
    }

    #[test]
    fn informational_responses_are_skipped() {
        let wire = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n";
        let (head, buf) = parse_all(wire, false).unwrap().unwrap();
        assert_eq!(head.response.status(), StatusCode::CREATED);
        assert!(head.response.headers().get("link").is_none());
        assert!(buf.is_empty());
        assert!(parse_all(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 2", false).unwrap().is_none());
    }

    #[test]
    fn bodiless_answers_and_close_delimited_bodies() {
        let (head, _) = parse_all(b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n", true).unwrap().unwrap();
        assert_eq!(head.framing, Framing::Length(0), "the answer to a HEAD has no body");
        let (head, _) = parse_all(b"HTTP/1.1 204 No Content\r\n\r\n", false).unwrap().unwrap();
        assert_eq!((head.framing, head.reusable), (Framing::Length(0), true));
        let (head, _) = parse_all(b"HTTP/1.1 200 OK\r\n\r\nuntil close", false).unwrap().unwrap();
        assert_eq!((head.framing, head.reusable), (Framing::UntilClose, false));
        let (head, _) = parse_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", false).unwrap().unwrap();
        assert_eq!((head.framing, head.reusable), (Framing::UntilClose, false));
    }

    #[test]
    fn connection_reuse_follows_version_and_connection_field() {
        let reusable = |wire: &[u8]| parse_all(wire, false).unwrap().unwrap().0.reusable;
        assert!(!reusable(b"HTTP/1.1 200 OK\r\nConnection: keep-alive, Close\r\nContent-Length: 0\r\n\r\n"));
        assert!(!reusable(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n"));
        assert!(reusable(b"HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 0\r\n\r\n"));
        assert!(!reusable(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n"));
    }

    #[test]
    fn bad_heads_are_refused() {
        for wire in [
            &b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n",
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n",
            b"HTTP/1.1 2000 OK\r\n\r\n",
            b"SSH-2.0-OpenSSH\r\n\r\n",
        ] {
            assert!(parse_all(wire, false).is_err(), "{:?}", String::from_utf8_lossy(wire));
        }
        let (head, _) = parse_all(b"HTTP/1.1 200 OK\r\nContent-Length: 7, 7\r\n\r\n", false).unwrap().unwrap();
        assert_eq!(head.framing, Framing::Length(7), "a repeated equal length is one length");
        let many: Vec<u8> = [&b"HTTP/1.1 200 OK\r\n"[..], &b"X: y\r\n".repeat(MAX_FIELDS + 1), b"\r\n"].concat();
        assert!(parse_all(&many, false).is_err());
        let endless: Vec<u8> = [&b"HTTP/1.1 200 OK\r\nX: "[..], &vec![b'y'; MAX_HEAD]].concat();
        assert!(parse_all(&endless, false).is_err());
    }
}
