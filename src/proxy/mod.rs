//! The proxy listener's request handler: match a route, run its plugin chain, call the upstream.

mod attempt;
mod body;
mod finish;
mod pipeline;
mod refuse;
pub mod request_id;
mod resume;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use std::cell::OnceCell;

use bytes::Bytes;
use hyper::body::Incoming;
use switchyard_sdk::{ErrorStyle, Request};

pub use body::{BoxError, ResponseBody};
pub use finish::Finisher;

use crate::error::ProxyError;
use crate::observe::metrics::route::Matched;
use crate::state::ProxyState;
use crate::vars::{NeedsBody, RequestVars};

/// The largest request body the proxy reads; plugins may set lower limits.
pub const MAX_REQUEST_BODY: usize = 64 * 1024 * 1024;

/// Serves one request on a proxy listener.
#[expect(
    clippy::manual_async_fn,
    reason = "an async block keeps its captures in place: see \"Futures on the request path\" in the crate docs"
)]
pub fn handle(
    state: Arc<ProxyState>,
    req: hyper::Request<Incoming>,
    client: SocketAddr,
) -> impl Future<Output = hyper::Response<ResponseBody>> {
    async move {
        state.observe.request_received();
        #[expect(clippy::disallowed_methods, reason = "the request's one load: everything below gets &Snapshot")]
        let snapshot = state.live.load();
        let (mut head, incoming) = req.into_parts();
        let mut incoming = Some(incoming);
        let id = request_id::of(&head.headers);
        let host = switchyard_sdk::vars::request_host(&head);
        let parsed = OnceCell::new();
        let mut read: Option<Bytes> = None;
        let found = loop {
            let found = {
                let vars = RequestVars::new(&head, host.as_deref(), client, read.as_ref(), &parsed);
                snapshot.router.find(&vars).and_then(|found| match found {
                    Some(route) => Ok(Some(route)),
                    None => snapshot.builtin.find(&vars),
                })
            };
            match (found, incoming.take()) {
                (Ok(found), rest) => {
                    incoming = rest;
                    break found.cloned();
                }
                // A candidate route matches on a body field: read the body (once) and match again.
                (Err(NeedsBody), Some(body)) => {
                    if crate::client_io::declares_more_than(&head.headers, MAX_REQUEST_BODY) {
                        return local(
                            ProxyError::PayloadTooLarge(MAX_REQUEST_BODY).to_response(ErrorStyle::Apisix),
                            &id,
                        );
                    }
                    match read_body(body, MAX_REQUEST_BODY, state.client_body_timeout).await {
                        Ok(bytes) => read = Some(bytes),
                        Err(err) => return local(err.to_response(ErrorStyle::Apisix), &id),
                    }
                }
                (Err(NeedsBody), None) => break None,
            }
        };
        let Some(route) = found.or_else(|| snapshot.unmatched.clone()) else {
            return local(ProxyError::RouteNotFound.to_response(ErrorStyle::Apisix), &id);
        };
        let matched = Matched::of(&route, host.as_deref(), head.uri.path());
        let head_bytes = head_size(&head);
        let seen = pipeline::Seen { matched, request_bytes: head_bytes };
        let body = match (read, incoming) {
            (Some(bytes), _) => bytes,
            (None, Some(body)) => {
                if crate::client_io::declares_more_than(&head.headers, MAX_REQUEST_BODY) {
                    let too_large = ProxyError::PayloadTooLarge(MAX_REQUEST_BODY);
                    return refuse::refuse(&state, route, &head, client, id, seen, too_large);
                }
                match read_body(body, MAX_REQUEST_BODY, state.client_body_timeout).await {
                    Ok(body) => body,
                    Err(err) => return refuse::refuse(&state, route, &head, client, id, seen, err),
                }
            }
            // The body is taken from `incoming` only to be read into `read`.
            (None, None) => Bytes::new(),
        };
        // The body as parsed for matching, handed on so the AI plugins do not parse it again.
        if let Some(parsed) = parsed.into_inner().flatten() {
            head.extensions.insert(parsed);
        }
        let seen = pipeline::Seen { request_bytes: head_bytes + body.len() as u64, ..seen };
        let consumers = Arc::clone(&snapshot.consumer_directory) as Arc<dyn switchyard_sdk::Consumers>;
        pipeline::run(&state, route, Request { head, body }, client, id, seen, consumers).await
    }
}

/// The size of a request head as sent: request line and header lines (`apisix_bandwidth`).
fn head_size(head: &http::request::Parts) -> u64 {
    let line = head.method.as_str().len() + head.uri.path_and_query().map_or(1, |p| p.as_str().len()) + 11;
    let headers: usize = head.headers.iter().map(|(name, value)| name.as_str().len() + value.len() + 4).sum();
    (line + headers + 2) as u64
}

/// Reads a request body whole, refusing more than `max` bytes and a wait longer than
/// `between_reads` for its next piece.
#[expect(
    clippy::manual_async_fn,
    reason = "an async block keeps its captures in place: see \"Futures on the request path\" in the crate docs"
)]
pub fn read_body(
    body: Incoming,
    max: usize,
    between_reads: std::time::Duration,
) -> impl Future<Output = Result<Bytes, ProxyError>> {
    async move {
        use crate::client_io::BodyReadError;
        crate::client_io::read_whole(body, max, between_reads).await.map_err(|err| match err {
            BodyReadError::TooLarge => ProxyError::PayloadTooLarge(max),
            BodyReadError::TimedOut => ProxyError::ClientTimeout,
            BodyReadError::Broken => ProxyError::BadRequest("failed to read the request body".into()),
        })
    }
}

/// A response made by the gateway itself, stamped with the request's id.
pub fn local(mut response: switchyard_sdk::Response, id: &http::HeaderValue) -> hyper::Response<ResponseBody> {
    request_id::stamp(response.headers_mut(), id);
    response.map(ResponseBody::full)
}
