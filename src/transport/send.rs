//! One upstream attempt on the wire.

use std::future::Future;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use http_body::Body;
use switchyard_sdk::{AttemptResult, UpstreamRequest};

use super::client::{ExchangeError, UpstreamBody, UpstreamClient};

use crate::error::ProxyError;

/// The upstream's response: its head, and the body still on the wire.
pub type UpstreamResponse = hyper::Response<UpstreamBody>;

/// Sends a built request and waits for the response head, at most `timeout`. Credentials the
/// request carries ([`UpstreamRequest::credentials`]) are applied first: this is the one place
/// every attempt, resumption and probe passes just before the wire, after every plugin changed
/// the request; their own calls (a token endpoint's) go out through [`super::Wire`].
#[expect(
    clippy::manual_async_fn,
    reason = "an async block keeps its captures in place: see \"Futures on the request path\" in the crate docs"
)]
pub fn send(mut up: UpstreamRequest) -> impl Future<Output = Result<UpstreamResponse, ProxyError>> {
    async move {
        if let Some(credentials) = up.credentials.take() {
            credentials.apply(&mut up, &super::Wire).await.map_err(ProxyError::UpstreamCredentials)?;
        }
        let Some(client) = up.client.get::<UpstreamClient>() else {
            return Err(ProxyError::Internal("an upstream request carries a client this core did not make".into()));
        };
        let mut request = hyper::Request::new(up.body);
        *request.method_mut() = up.method;
        *request.uri_mut() = up.url;
        *request.headers_mut() = up.headers;
        match tokio::time::timeout(up.timeout, client.request(request)).await {
            Err(_) => Err(ProxyError::UpstreamTimeout),
            Ok(Ok(response)) => Ok(response),
            Ok(Err(ExchangeError::Connect(err))) => Err(ProxyError::UpstreamConnect(err)),
            Ok(Err(ExchangeError::Broken(err))) => Err(ProxyError::UpstreamBroken(err.into())),
            Ok(Err(ExchangeError::BadUri(why))) => Err(ProxyError::Internal(why.into())),
        }
    }
}

/// How a failed send looks to a target's `judge`.
pub fn attempt_result(err: &ProxyError) -> AttemptResult<'static> {
    match err {
        ProxyError::UpstreamConnect(_) => AttemptResult::ConnectFailed,
        ProxyError::UpstreamTimeout => AttemptResult::TimedOut,
        _ => AttemptResult::Failed,
    }
}

/// Reads a whole response body, failing on a stall longer than `stall` or on more than `max`
/// bytes (at once when the upstream announces a longer `Content-Length`; the error then carries
/// `max`). A body that arrives in one piece (most LLM answers) is returned as that piece, uncopied.
#[expect(
    clippy::manual_async_fn,
    reason = "an async block keeps its captures in place: see \"Futures on the request path\" in the crate docs"
)]
pub fn read_all(
    response: UpstreamResponse,
    stall: Duration,
    max: u64,
) -> impl Future<Output = Result<Bytes, ProxyError>> {
    async move {
        let mut body = response.into_body();
        let announced = body.size_hint().exact();
        if announced.is_some_and(|length| length > max) {
            return Err(ProxyError::ResponseTooLarge(max));
        }
        let capacity = announced.map_or(8 * 1024, |l| l.min(1 << 20) as usize);
        let mut first = Bytes::new();
        let mut joined: Option<BytesMut> = None;
        loop {
            match tokio::time::timeout(stall, body.next()).await {
                Err(_) => return Err(ProxyError::UpstreamTimeout),
                Ok(None) => return Ok(joined.map_or(first, BytesMut::freeze)),
                Ok(Some(Err(err))) => return Err(ProxyError::UpstreamBroken(err.into())),
                Ok(Some(Ok(chunk))) => {
                    let held = joined.as_ref().map_or(first.len(), BytesMut::len);
                    if (held + chunk.len()) as u64 > max {
                        return Err(ProxyError::ResponseTooLarge(max));
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
}
