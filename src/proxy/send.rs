//! One upstream attempt on the wire.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use switchyard_plugins::{AttemptResult, UpstreamRequest};

use crate::error::ProxyError;

/// Sends a built request and waits for the response head, at most `timeout`.
pub async fn send(up: UpstreamRequest) -> Result<reqwest::Response, ProxyError> {
    let request = up.client.request(up.method, &up.url).headers(up.headers).body(up.body);
    match tokio::time::timeout(up.timeout, request.send()).await {
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
pub async fn read_all(response: reqwest::Response, stall: Duration, max: Option<u64>) -> Result<Bytes, ProxyError> {
    let mut body = BytesMut::with_capacity(response.content_length().map_or(8 * 1024, |l| l.min(1 << 20) as usize));
    let mut stream = response.bytes_stream();
    loop {
        match tokio::time::timeout(stall, stream.next()).await {
            Err(_) => return Err(ProxyError::UpstreamTimeout),
            Ok(None) => return Ok(body.freeze()),
            Ok(Some(Err(_))) => return Err(ProxyError::UpstreamBroken),
            Ok(Some(Ok(chunk))) => {
                if max.is_some_and(|max| (body.len() + chunk.len()) as u64 > max) {
                    return Err(ProxyError::UpstreamBroken);
                }
                body.extend_from_slice(&chunk);
            }
        }
    }
}
