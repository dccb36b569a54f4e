//! One upstream attempt on the wire.

use std::cell::RefCell;
use std::collections::HashMap;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use switchyard_plugins::{AttemptResult, UpstreamRequest};

use crate::error::ProxyError;

/// Parsed URLs kept per worker thread; cleared when full (per-request URLs of plain upstreams).
const URL_CACHE_SIZE: usize = 1024;

thread_local! {
    static URLS: RefCell<HashMap<String, reqwest::Url>> = RefCell::new(HashMap::new());
}

/// The parsed form of `url`. A provider endpoint is the same string on every request, and
/// parsing it (IDNA host mapping included) cost about 4 % of a request's CPU time.
fn parse_url(url: &str) -> Option<reqwest::Url> {
    URLS.with(|cache| {
        let mut cache = cache.borrow_mut();
        if let Some(parsed) = cache.get(url) {
            return Some(parsed.clone());
        }
        let parsed = reqwest::Url::parse(url).ok()?;
        if cache.len() >= URL_CACHE_SIZE {
            cache.clear();
        }
        cache.insert(url.to_owned(), parsed.clone());
        Some(parsed)
    })
}

/// Sends a built request and waits for the response head, at most `timeout`.
pub async fn send(up: UpstreamRequest) -> Result<reqwest::Response, ProxyError> {
    let Some(url) = parse_url(&up.url) else {
        tracing::debug!(url = %up.url, "upstream URL does not parse");
        return Err(ProxyError::UpstreamBroken);
    };
    // Built whole rather than through `RequestBuilder`, which re-inserts every header one by one.
    let mut request = reqwest::Request::new(up.method, url);
    *request.headers_mut() = up.headers;
    *request.body_mut() = Some(up.body.into());
    match tokio::time::timeout(up.timeout, up.client.execute(request)).await {
        Err(_) => Err(ProxyError::UpstreamTimeout),
        Ok(Ok(response)) => Ok(response),
        Ok(Err(err)) if err.is_timeout() => Err(ProxyError::UpstreamTimeout),
        Ok(Err(err)) if err.is_connect() => {
            tracing::debug!(error = %err, "upstream connect failed");
            Err(ProxyError::UpstreamConnect)
        }
        Ok(Err(err)) => {
            tracing::debug!(error = %err, "upstream request failed");
            Err(ProxyError::UpstreamBroken)
        }
    }
}

/// How a failed send looks to a target's `judge`.
pub fn attempt_result(err: &ProxyError) -> AttemptResult<'static> {
    match err {
        ProxyError::UpstreamConnect => AttemptResult::ConnectFailed,
        ProxyError::UpstreamTimeout => AttemptResult::TimedOut,
        _ => AttemptResult::Failed,
    }
}

/// Reads a whole response body, failing on a stall longer than `stall` or more than `max` bytes.
/// A body that arrives in one piece (most LLM answers) is returned as that piece, uncopied.
pub async fn read_all(response: reqwest::Response, stall: Duration, max: Option<u64>) -> Result<Bytes, ProxyError> {
    let capacity = response.content_length().map_or(8 * 1024, |l| l.min(1 << 20) as usize);
    let mut stream = response.bytes_stream();
    let mut first = Bytes::new();
    let mut joined: Option<BytesMut> = None;
    loop {
        match tokio::time::timeout(stall, stream.next()).await {
            Err(_) => return Err(ProxyError::UpstreamTimeout),
            Ok(None) => return Ok(joined.map_or(first, BytesMut::freeze)),
            Ok(Some(Err(_))) => return Err(ProxyError::UpstreamBroken),
            Ok(Some(Ok(chunk))) => {
                let held = joined.as_ref().map_or(first.len(), BytesMut::len);
                if max.is_some_and(|max| (held + chunk.len()) as u64 > max) {
                    return Err(ProxyError::UpstreamBroken);
                }
                match joined.as_mut() {
                    Some(body) => body.extend_from_slice(&chunk),
                    None if first.is_empty() => first = chunk,
                    None => {
                        let mut body = BytesMut::with_capacity(capacity.max(held + chunk.len()));
                        body.extend_from_slice(&first);
                        body.extend_from_slice(&chunk);
                        joined = Some(body);
                    }
                }
            }
        }
    }
}
