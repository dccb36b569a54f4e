//! The upstream HTTP client: each request drives its own connection, inside its own task.
//!
//! Hand-written over hyper's `client::conn` rather than hyper-util's pooled client, because that
//! client runs every connection in a task of its own: a request and its response each cross
//! from the request's task to the connection's and back, and on a multi-threaded runtime those
//! wake-ups often land on the other thread (a futex call and a context switch each). Here the
//! task serving the client connection also polls the upstream connection, as an nginx worker
//! handles both sockets in one event loop: the request is written, the response head and every
//! body chunk read, with no hand-off at all. A connection goes back to the pool
//! ([`super::idle`]) when its response has been read to the end.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::HOST;
use http::uri::{PathAndQuery, Port, Scheme};
use http::{HeaderValue, Request, Response, Uri};
use http_body::{Body, Frame, SizeHint};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use tower_service::Service;

use super::idle::{Conn, IdlePool, Origin};

/// Why an exchange failed: before a connection existed, or on one.
#[derive(Debug)]
pub enum ExchangeError {
    Connect(Box<dyn std::error::Error + Send + Sync>),
    Broken(hyper::Error),
    BadUri(&'static str),
}

/// The client every upstream call goes through: a connector (TCP options, TLS) and the idle
/// connections it made. Request bodies are always whole.
pub struct UpstreamClient {
    connector: HttpsConnector<HttpConnector>,
    idle: Arc<IdlePool>,
}

impl UpstreamClient {
    pub fn new(connector: HttpsConnector<HttpConnector>, idle: Arc<IdlePool>) -> UpstreamClient {
        UpstreamClient { connector, idle }
    }

    /// Sends `request` (its URI absolute) on an idle connection to its origin, or a new one, and
    /// waits for the response head. The returned body keeps driving the connection while it is
    /// read, and returns it to the pool at its end.
    pub async fn request(&self, mut request: Request<Full<Bytes>>) -> Result<Response<UpstreamBody>, ExchangeError> {
        let origin = to_origin_form(&mut request)?;
        while let Some(conn) = self.idle.take(&origin) {
            match exchange(conn, request).await {
                Ok((response, conn)) => return Ok(self.wrap(response, conn, origin)),
                // The upstream closed the connection before the request went out: try the next.
                Err(Failure::Unsent(again)) => request = *again,
                Err(Failure::Sent(err)) => return Err(ExchangeError::Broken(err)),
            }
        }
        // Boxed: the connect and handshake state is large, and most requests never need it.
        let conn = Box::pin(self.connect(&origin)).await?;
        match exchange(conn, request).await {
            Ok((response, conn)) => Ok(self.wrap(response, conn, origin)),
            Err(Failure::Sent(err)) => Err(ExchangeError::Broken(err)),
            Err(Failure::Unsent(_)) => {
                Err(ExchangeError::Connect("the new connection closed before the request was sent".into()))
            }
        }
    }

    fn wrap(&self, response: Response<Incoming>, conn: Option<Box<Conn>>, origin: Origin) -> Response<UpstreamBody> {
        response.map(|body| UpstreamBody { body, conn, home: Some((Arc::clone(&self.idle), origin)) })
    }

    /// Opens a connection (TCP, then TLS for `https`) and does the HTTP/1.1 handshake.
    async fn connect(&self, origin: &Origin) -> Result<Box<Conn>, ExchangeError> {
        let uri = Uri::builder()
            .scheme(origin.scheme.clone())
            .authority(origin.authority.clone())
            .path_and_query("/")
            .build()
            .map_err(|_| ExchangeError::BadUri("cannot build the connection address"))?;
        let stream = self.connector.clone().call(uri).await.map_err(ExchangeError::Connect)?;
        let (sender, driver) = http1::handshake(stream).await.map_err(|err| ExchangeError::Connect(err.into()))?;
        Ok(Box::new(Conn { sender, driver, served: 0 }))
    }
}

enum Failure {
    /// The request was not written: it can go on another connection.
    Unsent(Box<Request<Full<Bytes>>>),
    Sent(hyper::Error),
}

/// Sends one request on `conn`, driving the connection until the response head arrives. The
/// connection comes back with the response unless it ended meanwhile. A connection stays boxed
/// from its handshake to its close: with its buffers and TLS state it is kilobytes, and every
/// future it would sit in inline (this one, the request's, the response body) would be that much
/// bigger and costlier to move.
async fn exchange(
    conn: Box<Conn>,
    request: Request<Full<Bytes>>,
) -> Result<(Response<Incoming>, Option<Box<Conn>>), Failure> {
    let mut conn = Some(conn);
    // A connection that ends is dropped at once: that is what answers a request queued on it.
    let drive = |conn: &mut Option<Box<Conn>>, cx: &mut Context<'_>| {
        if conn.as_mut().is_some_and(|open| Pin::new(&mut open.driver).poll(cx).is_ready()) {
            *conn = None;
        }
    };
    // Ready to send: a reused connection must first be polled back to idle.
    let ready = std::future::poll_fn(|cx| {
        drive(&mut conn, cx);
        match conn.as_mut().map(|open| open.sender.poll_ready(cx)) {
            None => Poll::Ready(false),
            Some(Poll::Ready(result)) => Poll::Ready(result.is_ok()),
            Some(Poll::Pending) => Poll::Pending,
        }
    })
    .await;
    let answer = match conn.as_mut() {
        Some(open) if ready => open.sender.try_send_request(request),
        _ => return Err(Failure::Unsent(Box::new(request))),
    };
    let mut answer = std::pin::pin!(answer);
    let result = std::future::poll_fn(|cx| {
        drive(&mut conn, cx);
        answer.as_mut().poll(cx)
    })
    .await;
    match result {
        Ok(response) => Ok((response, conn)),
        Err(mut err) => match err.take_message() {
            Some(message) => Err(Failure::Unsent(Box::new(message))),
            None => Err(Failure::Sent(err.into_error())),
        },
    }
}

/// Turns an absolute request URI into origin form (`/path?query`), as HTTP/1.1 sends it to a
/// server, and sets `Host` when the request has none. Returns the origin to connect to.
fn to_origin_form(request: &mut Request<Full<Bytes>>) -> Result<Origin, ExchangeError> {
    // Moved out, not cloned: the URI's bytes are usually the route config's, shared by every
    // worker, and a clone and its drop are two reference count changes on them.
    let uri = std::mem::take(request.uri_mut()).into_parts();
    let (Some(scheme), Some(authority)) = (uri.scheme, uri.authority) else {
        return Err(ExchangeError::BadUri("an upstream URI must be absolute"));
    };
    if !request.headers().contains_key(HOST) {
        let host = match authority.port() {
            Some(port) if !is_default_port(&scheme, &port) => HeaderValue::from_str(authority.as_str()),
            _ => HeaderValue::from_str(authority.host()),
        };
        if let Ok(host) = host {
            request.headers_mut().insert(HOST, host);
        }
    }
    let path = uri.path_and_query.unwrap_or_else(|| PathAndQuery::from_static("/"));
    *request.uri_mut() = Uri::from(path);
    Ok(Origin { scheme, authority })
}

fn is_default_port(scheme: &Scheme, port: &Port<&str>) -> bool {
    (*scheme == Scheme::HTTP && port.as_u16() == 80) || (*scheme == Scheme::HTTPS && port.as_u16() == 443)
}

/// An upstream response body that drives its connection while it is read, and gives the
/// connection back to the pool when the body has ended (dropping it earlier closes it: a
/// half-read HTTP/1.1 connection cannot carry another request).
pub struct UpstreamBody {
    body: Incoming,
    conn: Option<Box<Conn>>,
    home: Option<(Arc<IdlePool>, Origin)>,
}

impl UpstreamBody {
    fn release(&mut self) {
        if let (Some(conn), Some((pool, origin))) = (self.conn.take(), self.home.take()) {
            pool.put(origin, conn);
        }
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        // The body first: asking it for data is what lets the connection read more. Only when
        // it has none is the connection driven (reading the socket into the body), and the body
        // asked again in the same poll, so a chunk never waits for another turn of the task.
        let mut frame = Pin::new(&mut this.body).poll_frame(cx);
        if frame.is_pending() {
            if let Some(conn) = this.conn.as_mut() {
                // An ended connection still lets the body say how it ended.
                if Pin::new(&mut conn.driver).poll(cx).is_ready() {
                    this.conn = None;
                }
            }
            frame = Pin::new(&mut this.body).poll_frame(cx);
        }
        match &frame {
            Poll::Ready(None) => this.release(),
            Poll::Ready(Some(Err(_))) => this.conn = None,
            _ => {}
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl Drop for UpstreamBody {
    /// A body with nothing to read (a `204`, a `HEAD`) may never be polled: its connection is
    /// still fit for reuse.
    fn drop(&mut self) {
        if self.body.is_end_stream() {
            self.release();
        }
    }
}
