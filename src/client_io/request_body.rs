//! Reading a request body whole, for the proxy and admin handlers: the size limit is checked
//! against `Content-Length` before a byte is read, and the wait between two reads is bounded
//! (`proxy.client_body_timeout`).

use std::future::Future;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::FutureExt;
use http::header::CONTENT_LENGTH;
use http::HeaderMap;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::Incoming;

/// Why a request body could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyReadError {
    /// More than the limit: 413.
    TooLarge,
    /// The client sent nothing for longer than the wait allowed between reads: 408.
    TimedOut,
    /// The connection broke or the framing was invalid: 400.
    Broken,
}

/// Whether the request's `Content-Length` is over `max`. Such a request is refused before its
/// body is read: hyper sends `100 Continue` to a client that asked for it only when the body is
/// first read, so the client gets the refusal instead, and sends no body.
pub fn declares_more_than(headers: &HeaderMap, max: usize) -> bool {
    headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .is_some_and(|length| length > max as u64)
}

/// Reads a body whole: at most `max` bytes, waiting at most `between_reads` for each piece. A
/// piece that is already there (most bodies arrive with their head) costs no timer.
#[expect(
    clippy::manual_async_fn,
    reason = "an async block keeps its captures in place: see \"Futures on the request path\" in the crate docs"
)]
pub fn read_whole(
    body: Incoming,
    max: usize,
    between_reads: Duration,
) -> impl Future<Output = Result<Bytes, BodyReadError>> {
    async move {
        let mut body = Limited::new(body, max);
        let mut first = Bytes::new();
        let mut joined: Option<BytesMut> = None;
        loop {
            let frame = match body.frame().now_or_never() {
                Some(frame) => frame,
                None => tokio::time::timeout(between_reads, body.frame()).await.map_err(|_| BodyReadError::TimedOut)?,
            };
            let Some(frame) = frame else { break };
            let frame = frame.map_err(|err| {
                if err.downcast_ref::<LengthLimitError>().is_some() {
                    BodyReadError::TooLarge
                } else {
                    BodyReadError::Broken
                }
            })?;
            let Ok(data) = frame.into_data() else { continue };
            match joined.as_mut() {
                Some(joined) => joined.extend_from_slice(&data),
                None if first.is_empty() => first = data,
                None => {
                    let mut both = BytesMut::with_capacity(first.len() + data.len());
                    both.extend_from_slice(&first);
                    both.extend_from_slice(&data);
                    joined = Some(both);
                }
            }
        }
        Ok(joined.map_or(first, BytesMut::freeze))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_declared_length_over_the_limit_is_recognised() {
        let mut headers = HeaderMap::new();
        assert!(!declares_more_than(&headers, 10));
        headers.insert(CONTENT_LENGTH, "10".parse().unwrap());
        assert!(!declares_more_than(&headers, 10));
        headers.insert(CONTENT_LENGTH, "11".parse().unwrap());
        assert!(declares_more_than(&headers, 10));
        headers.insert(CONTENT_LENGTH, "99999999999999999999".parse().unwrap());
        assert!(!declares_more_than(&headers, 10), "an unparsable length is left to hyper, which refuses it");
    }
}
