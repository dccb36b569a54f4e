//! One client connection's task: hyper's HTTP/1.1 state machine over a [`TimedIo`], with the
//! gateway's header checks in front of the handler, driven until the connection ends or a
//! shutdown signal ends it.

use std::convert::Infallible;
use std::future::{poll_fn, Future};
use std::net::SocketAddr;
use std::pin::{pin, Pin};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::Either;
use http::StatusCode;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::io::TimedIo;
use super::state::{ConnState, Signal, RESPONDING};
use super::Settings;
use crate::client_io::as_cut;
use crate::proxy::{BoxError, ResponseBody};

/// After a cut, how long a response body may take to send its end (the SSE error event of a
/// stream) before the connection is dropped.
pub const CUT_FLUSH: Duration = Duration::from_secs(1);

/// The response body hyper writes: the handler's, which it ends early when shutdown cuts the
/// connection; dropping it marks the connection idle.
pub struct TrackedBody {
    inner: ResponseBody,
    conn: Arc<ConnState>,
    cut: bool,
}

impl TrackedBody {
    fn wrap(response: hyper::Response<ResponseBody>, conn: Arc<ConnState>) -> hyper::Response<TrackedBody> {
        conn.response_began();
        if response.status() == StatusCode::PAYLOAD_TOO_LARGE {
            conn.body_refused();
        }
        response.map(|inner| TrackedBody { inner, conn, cut: false })
    }
}

impl Body for TrackedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if !this.cut && this.conn.is_cut() {
            this.cut = true;
            return this.inner.poll_shut_down(cx);
        }
        Pin::new(&mut this.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for TrackedBody {
    fn drop(&mut self) {
        self.conn.response_ended();
    }
}

/// How a connection's task ended.
enum End {
    Closed(hyper::Result<()>),
    Cut,
}

/// Serves one accepted connection to its end. `handle` answers each request whose head passed
/// the header checks.
pub async fn serve<F, Fut>(
    stream: TcpStream,
    peer: SocketAddr,
    conn: Arc<ConnState>,
    settings: Arc<Settings>,
    http: http1::Builder,
    handle: F,
) where
    F: Fn(hyper::Request<Incoming>, SocketAddr) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = hyper::Response<ResponseBody>> + Send + 'static,
{
    // Nagle would hold back small writes such as SSE events.
    let _ = stream.set_nodelay(true);
    let io = TimedIo::new(stream, Arc::clone(&conn), settings.header_timeout, settings.keepalive_timeout);
    let service = {
        let (conn, settings) = (Arc::clone(&conn), Arc::clone(&settings));
        service_fn(move |req: hyper::Request<Incoming>| {
            conn.request_began();
            // Not boxed: hyper keeps the service's future in one box per connection, where each
            // request's (about 8 KB) is moved, instead of a fresh allocation per request.
            let response = match oversized_field(&req, settings.max_header_field_bytes) {
                None => Either::Left(handle(req, peer)),
                Some(refused) => Either::Right(std::future::ready(refuse_oversized(&req, peer, &settings, refused))),
            };
            let conn = Arc::clone(&conn);
            async move { Ok::<_, Infallible>(TrackedBody::wrap(response.await, conn)) }
        })
    };
    let mut connection = pin!(Some(http.serve_connection(TokioIo::new(io), service)));
    let mut acted = 0u8;
    let mut flush_deadline: Option<Pin<Box<tokio::time::Sleep>>> = None;
    let end = poll_fn(|cx| {
        let Some(mut http) = connection.as_mut().as_pin_mut() else { return Poll::Ready(End::Closed(Ok(()))) };
        conn.register(cx.waker());
        let signals = conn.signals();
        if signals & Signal::CUT_NOW != 0 {
            return Poll::Ready(End::Cut);
        }
        if signals & Signal::RECLAIM != 0 && acted & Signal::GRACEFUL == 0 && conn.close_if_idle() {
            http.as_mut().graceful_shutdown();
            acted |= Signal::GRACEFUL;
        }
        if signals & Signal::GRACEFUL != 0 && acted & Signal::GRACEFUL == 0 {
            // Idle: closes now. Busy: closes once the response in flight is written.
            http.as_mut().graceful_shutdown();
            acted |= Signal::GRACEFUL;
        }
        if signals & Signal::CUT != 0 && acted & Signal::CUT == 0 {
            acted |= Signal::CUT;
            if conn.phase() != RESPONDING {
                // No response has begun: nothing to end properly, the connection just closes.
                return Poll::Ready(End::Cut);
            }
            http.as_mut().graceful_shutdown();
            flush_deadline = Some(Box::pin(tokio::time::sleep(CUT_FLUSH)));
        }
        if let Some(deadline) = flush_deadline.as_mut() {
            if deadline.as_mut().poll(cx).is_ready() {
                return Poll::Ready(End::Cut);
            }
        }
        http.poll(cx).map(End::Closed)
    })
    .await;
    match end {
        End::Cut => as_cut(|| connection.set(None)),
        End::Closed(Ok(())) => {}
        End::Closed(Err(err)) if err.is_parse_too_large() => {
            if settings.access_log {
                let error = format!(
                    "request head larger than {} bytes or with more than 100 fields",
                    settings.max_request_head_bytes
                );
                crate::observe::access_log::refused(settings.access_log_format, peer.ip(), None, 431, &error);
            }
        }
        End::Closed(Err(err)) => tracing::debug!(error = %err, %peer, "connection ended with an error"),
    }
}

/// The name of a header field (name and value) larger than `max` bytes, if any.
fn oversized_field(req: &hyper::Request<Incoming>, max: usize) -> Option<http::HeaderName> {
    req.headers().iter().find(|(name, value)| name.as_str().len() + value.len() > max).map(|(name, _)| name.clone())
}

/// Answers a request with an oversized header field with 431, before any handler sees it.
fn refuse_oversized(
    req: &hyper::Request<Incoming>,
    peer: SocketAddr,
    settings: &Settings,
    field: http::HeaderName,
) -> hyper::Response<ResponseBody> {
    let message = format!("request header field {field} is larger than {} bytes", settings.max_header_field_bytes);
    if settings.access_log {
        let request = Some((req.method(), req.uri().path()));
        crate::observe::access_log::refused(settings.access_log_format, peer.ip(), request, 431, &message);
    }
    let body = serde_json::json!({ "error_msg": message });
    crate::error::json_response(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, &body).map(ResponseBody::full)
}
