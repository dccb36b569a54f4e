//! The proxy listener's request handler: match a route, run its plugin chain, call the upstream.

mod attempt;
mod body;
mod finish;
mod pipeline;
mod refuse;
pub mod request_id;
mod resume;

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::header::HOST;
use hyper::body::Incoming;
use switchyard_sdk::{ErrorStyle, Request};

pub use body::{BoxError, ResponseBody};

use crate::error::ProxyError;
use crate::state::ProxyState;

/// The largest request body the proxy reads; plugins may set lower limits.
pub const MAX_REQUEST_BODY: usize = 64 * 1024 * 1024;

/// Serves one request on a proxy listener.
pub async fn handle(
    state: Arc<ProxyState>,
    req: hyper::Request<Incoming>,
    client: SocketAddr,
) -> hyper::Response<ResponseBody> {
    #[expect(clippy::disallowed_methods, reason = "the request's one load: everything below gets &Snapshot")]
    let snapshot = state.live.load();
    let (head, body) = req.into_parts();
    let id = request_id::of(&head.headers);
    let host = request_host(&head);
    let (path, method) = (head.uri.path(), &head.method);
    let found =
        snapshot.router.find(host.as_deref(), path, method).or_else(|| snapshot.builtin.find(None, path, method));
    let Some(route) = found.cloned() else {
        return local(ProxyError::RouteNotFound.to_response(ErrorStyle::Apisix), &id);
    };
    if crate::client_io::declares_more_than(&head.headers, MAX_REQUEST_BODY) {
        return refuse::refuse(&state, route, &head, client, id, ProxyError::PayloadTooLarge(MAX_REQUEST_BODY));
    }
    let body = match read_body(body, MAX_REQUEST_BODY, state.client_body_timeout).await {
        Ok(body) => body,
        Err(err) => return refuse::refuse(&state, route, &head, client, id, err),
    };
    pipeline::run(&state, route, Request { head, body }, client, id).await
}

/// The request's host, lower case and without a port: `Host`, else the URI's authority.
fn request_host(head: &http::request::Parts) -> Option<String> {
    let raw = head.headers.get(HOST).and_then(|h| h.to_str().ok()).or_else(|| head.uri.host())?;
    let host = match raw.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(v6),
        None => raw.split(':').next().unwrap_or(raw),
    };
    Some(host.to_ascii_lowercase())
}

/// Reads a request body whole, refusing more than `max` bytes and a wait longer than
/// `between_reads` for its next piece.
pub async fn read_body(body: Incoming, max: usize, between_reads: std::time::Duration) -> Result<Bytes, ProxyError> {
    use crate::client_io::BodyReadError;
    crate::client_io::read_whole(body, max, between_reads).await.map_err(|err| match err {
        BodyReadError::TooLarge => ProxyError::PayloadTooLarge(max),
        BodyReadError::TimedOut => ProxyError::ClientTimeout,
        BodyReadError::Broken => ProxyError::BadRequest("failed to read the request body".into()),
    })
}

/// A response made by the gateway itself, stamped with the request's id.
pub fn local(mut response: switchyard_sdk::Response, id: &http::HeaderValue) -> hyper::Response<ResponseBody> {
    request_id::stamp(response.headers_mut(), id);
    response.map(ResponseBody::full)
}
