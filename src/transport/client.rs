//! The upstream HTTP client: each request drives its own connection, inside its own task, and
//! speaks HTTP/1.1 on it itself ([`super::conn`]; heads parsed by `httparse`).
//!
//! Why not hyper's clients, though hyper serves the client side:
//! - hyper-util's pooled client runs every connection in a task of its own: a request and its
//!   response each cross from the request's task to the connection's and back, and on a
//!   multi-threaded runtime those wake-ups often land on the other thread (a futex call and a
//!   context switch each).
//! - hyper's `client::conn`, even driven in the request's own task (as this client did until
//!   session 11), passes every request and every body chunk through channels between its
//!   `SendRequest` handle and its connection: a queue for the request, a one-shot for the
//!   answer, a "want" signal, a channel per body. Each is atomics on every request, and each
//!   send wakes the very task that is running, which then polls its whole connection again.
//!   README "Performance" (session 11) has the measured difference.
//!
//! Here the task serving the client connection writes the request, reads the response head and
//! reads every body chunk straight from the socket, as an nginx worker handles both sockets in
//! one event loop. A connection goes back to the pool ([`super::idle`]) when its response has
//! been read to the end.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::HOST;
use http::uri::{PathAndQuery, Scheme};
use http::{Request, Response, Uri};
use http_body::{Body, Frame, SizeHint};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use tower_service::Service;

use super::conn::{Conn, Failure, HostField, Stream};
use super::framing::Framing;
use super::head::Head;
use super::idle::{IdlePool, Origin};
use super::wire::WireError;

/// Why an exchange failed: before a connection existed, or on one.
#[derive(Debug)]
pub enum ExchangeError {
    Connect(Box<dyn std::error::Error + Send + Sync>),
    Broken(WireError),
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
    /// waits for the response head. The returned body reads the rest from the connection as it
    /// is polled, and returns the connection to the pool at its end.
    #[expect(
        clippy::manual_async_fn,
        reason = "an async block keeps its captures in place: see \"Futures on the request path\" in the crate docs"
    )]
    pub fn request(
        &self,
        mut request: Request<Bytes>,
    ) -> impl Future<Output = Result<Response<UpstreamBody>, ExchangeError>> + '_ {
        async move {
            let origin = to_origin_form(&mut request)?;
            let host = (!request.headers().contains_key(HOST)).then(|| host_field(&origin));
            while let Some(mut conn) = self.idle.take(&origin) {
                match conn.exchange(&request, host).await {
                    Ok(head) => return Ok(self.wrap(head, conn, origin)),
                    // The upstream closed the connection before the request went out: try the next.
                    Err(Failure::Unsent(_)) => {}
                    Err(Failure::Sent(err)) => return Err(ExchangeError::Broken(err)),
                }
            }
            // Boxed: the connect and handshake state is large, and most requests never need it.
            let mut conn = Box::pin(self.connect(&origin)).await?;
            match conn.exchange(&request, host).await {
                Ok(head) => Ok(self.wrap(head, conn, origin)),
                Err(Failure::Sent(err)) => Err(ExchangeError::Broken(err)),
                Err(Failure::Unsent(err)) => Err(ExchangeError::Connect(err.into())),
            }
        }
    }

    fn wrap(&self, head: Head, conn: Box<Conn>, origin: Origin) -> Response<UpstreamBody> {
        let Head { response, framing, reusable } = head;
        let home = reusable.then(|| (Arc::clone(&self.idle), origin));
        response.map(|()| UpstreamBody { conn: Some(conn), framing, home })
    }

    /// Opens a connection (TCP, then TLS for `https`).
    async fn connect(&self, origin: &Origin) -> Result<Box<Conn>, ExchangeError> {
        let uri = Uri::builder()
            .scheme(origin.scheme.clone())
            .authority(origin.authority.clone())
            .path_and_query("/")
            .build()
            .map_err(|_| ExchangeError::BadUri("cannot build the connection address"))?;
        let stream = self.connector.clone().call(uri).await.map_err(ExchangeError::Connect)?;
        Ok(Conn::new(Stream::from_connector(stream)))
    }
}

/// Turns an absolute request URI into origin form (`/path?query`), as HTTP/1.1 sends it to a
/// server. Returns the origin to connect to.
fn to_origin_form(request: &mut Request<Bytes>) -> Result<Origin, ExchangeError> {
    // Moved out, not cloned: the URI's bytes are usually the route config's, shared by every
    // worker, and a clone and its drop are two reference count changes on them.
    let uri = std::mem::take(request.uri_mut()).into_parts();
    let (Some(scheme), Some(authority)) = (uri.scheme, uri.authority) else {
        return Err(ExchangeError::BadUri("an upstream URI must be absolute"));
    };
    let path = uri.path_and_query.unwrap_or_else(|| PathAndQuery::from_static("/"));
    *request.uri_mut() = Uri::from(path);
    Ok(Origin { scheme, authority })
}

/// The `Host` field of a request to `origin` that has none: its host, and its port unless it is
/// the scheme's default (never the URI's user information). Written straight into the request
/// head, rather than put into the request's map as a new value (a copy and a check of the text
/// the URI parser already checked).
fn host_field(origin: &Origin) -> HostField<'_> {
    let port = origin.authority.port_u16().filter(|port| !is_default_port(&origin.scheme, *port));
    HostField { host: origin.authority.host(), port }
}

fn is_default_port(scheme: &Scheme, port: u16) -> bool {
    (*scheme == Scheme::HTTP && port == 80) || (*scheme == Scheme::HTTPS && port == 443)
}

/// An upstream response body, read from its connection as it is polled. The connection goes
/// back to the pool when the body has ended (dropping it earlier closes it: a half-read HTTP/1.1
/// connection cannot carry another request).
pub struct UpstreamBody {
    /// `None` once the body has ended or failed.
    conn: Option<Box<Conn>>,
    framing: Framing,
    /// Where the connection goes when the body ends; `None`: it is closed instead (the upstream
    /// said so, or the body ran to the connection's close).
    home: Option<(Arc<IdlePool>, Origin)>,
}

impl UpstreamBody {
    fn release(&mut self) {
        if let (Some(mut conn), Some((pool, origin))) = (self.conn.take(), self.home.take()) {
            if conn.is_drained() {
                conn.settle();
                pool.put(origin, conn);
            }
        }
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = WireError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, WireError>>> {
        futures_util::Stream::poll_next(self, cx).map(|piece| piece.map(|data| data.map(Frame::data)))
    }

    fn is_end_stream(&self) -> bool {
        self.framing.is_end()
    }

    fn size_hint(&self) -> SizeHint {
        self.framing.remaining().map_or_else(SizeHint::default, SizeHint::with_exact)
    }
}

/// The body as the relay reads it: its data pieces, without the [`Frame`] around each (a body
/// adapter's `poll_next` moved every piece through a frame and back, ~120 instructions a piece).
impl futures_util::Stream for UpstreamBody {
    type Item = Result<Bytes, WireError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        let Some(conn) = this.conn.as_mut() else { return Poll::Ready(None) };
        let piece = std::task::ready!(conn.poll_body(cx, &mut this.framing));
        match &piece {
            None if this.framing.is_end() => this.release(),
            None | Some(Err(_)) => this.conn = None,
            Some(Ok(_)) => {}
        }
        Poll::Ready(piece)
    }
}

impl Drop for UpstreamBody {
    /// A body read to its last byte may never be polled for its end (a `204`, a `HEAD`, a
    /// length reached): its connection is still fit for reuse.
    fn drop(&mut self) {
        if self.framing.is_end() {
            self.release();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host_of(uri: &str) -> (String, Option<u16>) {
        let mut request = Request::get(uri).body(Bytes::new()).unwrap_or_else(|err| panic!("{uri}: {err}"));
        let origin = to_origin_form(&mut request).unwrap_or_else(|_| panic!("{uri} is not absolute"));
        let HostField { host, port } = host_field(&origin);
        (host.to_string(), port)
    }

    #[test]
    fn the_host_field_names_the_origin_without_its_default_port_or_user_information() {
        assert_eq!(host_of("http://api.example/v1"), ("api.example".into(), None));
        assert_eq!(host_of("http://api.example:80/v1"), ("api.example".into(), None));
        assert_eq!(host_of("https://api.example:443/v1"), ("api.example".into(), None));
        assert_eq!(host_of("https://api.example:80/v1"), ("api.example".into(), Some(80)));
        assert_eq!(host_of("http://127.0.0.1:9300/v1"), ("127.0.0.1".into(), Some(9300)));
        assert_eq!(host_of("http://[::1]:8080/v1"), ("[::1]".into(), Some(8080)));
        assert_eq!(host_of("http://user:secret@api.example:8080/v1"), ("api.example".into(), Some(8080)));
    }

    #[test]
    fn a_request_goes_out_in_origin_form() {
        let mut request = Request::get("http://api.example:8080/v1/chat?x=1").body(Bytes::new()).unwrap_or_default();
        let origin = to_origin_form(&mut request).unwrap_or_else(|_| panic!("absolute"));
        assert_eq!(request.uri(), "/v1/chat?x=1");
        assert_eq!(origin.authority.as_str(), "api.example:8080");
        let mut relative = Request::get("/v1").body(Bytes::new()).unwrap_or_default();
        assert!(to_origin_form(&mut relative).is_err());
    }
}
