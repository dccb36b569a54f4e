//! One HTTP/1.1 connection to an upstream: writing a request, reading the response head, and
//! reading the body's bytes as the response body is polled. No task of its own and no channel:
//! whoever holds the connection (the request's task) does the reading and writing, so a request
//! costs its system calls and its parsing and nothing else (see [`super::client`] for why).

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{ready, Context, Poll, Waker};

use bytes::{Bytes, BytesMut};
use http::header::{CONTENT_LENGTH, TRANSFER_ENCODING};
use http::{Method, Request};
use hyper_rustls::MaybeHttpsStream;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use super::framing::{Decoded, Framing};
use super::head::{self, FieldSpan, Head};
use super::wire::WireError;

/// The first read buffer of a connection, and the least room a read is given.
const READ_SIZE: usize = 8 * 1024;
/// The most room one read is given, reached by doubling while reads fill what they get (a large
/// body then takes fewer reads).
const MAX_READ_SIZE: usize = 256 * 1024;

/// The byte stream of an upstream connection, plain or TLS.
pub enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TokioIo<TokioIo<TcpStream>>>>),
}

impl Stream {
    /// The stream the connector made, unwrapped from hyper's IO adapters.
    pub fn from_connector(stream: MaybeHttpsStream<TokioIo<TcpStream>>) -> Stream {
        match stream {
            MaybeHttpsStream::Http(plain) => Stream::Plain(plain.into_inner()),
            MaybeHttpsStream::Https(tls) => Stream::Tls(Box::new(tls.into_inner())),
        }
    }
}

/// How a request failed to get a response head.
pub enum Failure {
    /// Not one byte of the request was written: it can go on another connection.
    Unsent(WireError),
    Sent(WireError),
}

/// An open connection, between requests or carrying one.
pub struct Conn {
    stream: Stream,
    /// Bytes read and not yet taken: the rest of a response, or (between requests) nothing.
    read: BytesMut,
    read_size: usize,
    /// The request head being written; kept to write the next one without allocating.
    head: Vec<u8>,
    /// Where a response head's fields are while it is parsed; kept for the same reason.
    spans: Vec<FieldSpan>,
    /// Requests answered on it so far.
    pub served: u32,
}

impl Conn {
    pub fn new(stream: Stream) -> Box<Conn> {
        Box::new(Conn {
            stream,
            read: BytesMut::with_capacity(READ_SIZE),
            read_size: READ_SIZE,
            head: Vec::with_capacity(512),
            spans: Vec::new(),
            served: 0,
        })
    }

    /// Looks at the socket without waiting, between requests: `false` when the upstream closed
    /// it, it failed, or it sent bytes no request asked for, so it must not carry another.
    pub fn still_open(&mut self) -> bool {
        let mut cx = Context::from_waker(Waker::noop());
        self.read.is_empty() && self.poll_fill(&mut cx).is_pending()
    }

    /// Sends `request` (origin form, `body` whole) and reads the response head. Runs once per
    /// request on this connection; the body's bytes are then read through [`Conn::poll_body`].
    pub async fn exchange(&mut self, request: &Request<Bytes>, host: Option<HostField<'_>>) -> Result<Head, Failure> {
        encode_head(&mut self.head, request, host);
        let head_request = request.method() == Method::HEAD;
        let mut written = 0;
        let sent = std::future::poll_fn(|cx| self.poll_send(cx, request.body(), &mut written, head_request)).await;
        match sent {
            Ok(None) => {}
            Ok(Some(early)) => return Ok(early),
            Err(err) if written == 0 => return Err(Failure::Unsent(err.into())),
            // The upstream may have answered before it stopped reading (a `413` for a body it
            // will not take, then a close): that answer, when it is in, is the response.
            Err(err) => return self.answer_already_in(head_request).await.ok_or(Failure::Sent(err.into())),
        }
        std::future::poll_fn(|cx| self.poll_head(cx, head_request)).await.map_err(Failure::Sent)
    }

    /// Writes the encoded head and `body` (one vectored write when the socket takes both), then
    /// flushes (TLS); `written` counts the bytes that went out. While the upstream takes no more,
    /// its answer is read: one that comes before the whole request went out ends the sending
    /// (`Some`), and the connection is not reused.
    fn poll_send(
        &mut self,
        cx: &mut Context<'_>,
        body: &Bytes,
        written: &mut usize,
        head_request: bool,
    ) -> Poll<Result<Option<Head>, io::Error>> {
        let total = self.head.len() + body.len();
        while *written < total {
            let (head, rest) = match self.head.get(*written..) {
                Some(head) => (head, &body[..]),
                None => (&[][..], &body[*written - self.head.len()..]),
            };
            match Pin::new(&mut self.stream).poll_write_vectored(cx, &[IoSlice::new(head), IoSlice::new(rest)]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => *written += n,
                Poll::Ready(Err(err)) => return Poll::Ready(Err(err)),
                Poll::Pending => match self.poll_head(cx, head_request) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Ok(early)) => return Poll::Ready(Ok(Some(Head { reusable: false, ..early }))),
                    Poll::Ready(Err(WireError::Io(err))) => return Poll::Ready(Err(err)),
                    Poll::Ready(Err(_)) => return Poll::Ready(Err(io::ErrorKind::ConnectionAborted.into())),
                },
            }
        }
        Pin::new(&mut self.stream).poll_flush(cx).map_ok(|()| None)
    }

    /// The response head the upstream sent before the request could be sent whole, if it did;
    /// never reused. A connection whose write failed is readable at once (its data, or the
    /// error), so this does not wait on the upstream.
    async fn answer_already_in(&mut self, head_request: bool) -> Option<Head> {
        let head = std::future::poll_fn(|cx| self.poll_head(cx, head_request)).await;
        head.ok().map(|early| Head { reusable: false, ..early })
    }

    /// Reads until the response head is complete.
    fn poll_head(&mut self, cx: &mut Context<'_>, head_request: bool) -> Poll<Result<Head, WireError>> {
        loop {
            if let Some(head) = head::parse(&mut self.read, head_request, &mut self.spans)? {
                return Poll::Ready(Ok(head));
            }
            if ready!(self.poll_fill(cx))? == 0 {
                return Poll::Ready(Err(WireError::Closed));
            }
        }
    }

    /// The next piece of a response body framed by `framing`: data, `None` at its end, or the
    /// connection's failure. Runs on every poll of the response body.
    pub fn poll_body(&mut self, cx: &mut Context<'_>, framing: &mut Framing) -> Poll<Option<Result<Bytes, WireError>>> {
        loop {
            match framing.decode(&mut self.read) {
                Err(err) => return Poll::Ready(Some(Err(err))),
                Ok(Decoded::Data(data)) => return Poll::Ready(Some(Ok(data))),
                Ok(Decoded::End) => return Poll::Ready(None),
                Ok(Decoded::More) => {}
            }
            match ready!(self.poll_fill(cx)) {
                Err(err) => return Poll::Ready(Some(Err(err.into()))),
                Ok(0) => {
                    return Poll::Ready(match framing.at_close() {
                        Ok(()) => None,
                        Err(err) => Some(Err(err)),
                    })
                }
                Ok(_) => {}
            }
        }
    }

    /// Whether nothing beyond the response just read is buffered (a connection holding more
    /// cannot tell where the next response starts).
    pub fn is_drained(&self) -> bool {
        self.read.is_empty()
    }

    /// Runs when a response has been read to its end and the connection goes back to the pool:
    /// reads start small again, and a buffer grown for a large body is let go, so an idle
    /// connection holds 8 KiB rather than what its largest answer needed.
    pub fn settle(&mut self) {
        self.read_size = READ_SIZE;
        if self.read.capacity() > 4 * READ_SIZE {
            self.read = BytesMut::with_capacity(READ_SIZE);
        }
    }

    /// Reads once from the socket into the buffer; `Ok(0)`: the upstream closed it.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if self.read.capacity() - self.read.len() < READ_SIZE / 4 {
            self.read.reserve(self.read_size);
        }
        let room = self.read.capacity() - self.read.len();
        let read = ready!(tokio_util::io::poll_read_buf(Pin::new(&mut self.stream), cx, &mut self.read))?;
        if read == room {
            self.read_size = (self.read_size * 2).min(MAX_READ_SIZE);
        }
        Poll::Ready(Ok(read))
    }
}

/// A `Host` field the request head gets besides the request's own fields: a host (a name, an
/// IPv4 address, or an IPv6 one in brackets, as a URI writes it) and a port.
#[derive(Clone, Copy, Debug)]
pub struct HostField<'a> {
    pub host: &'a str,
    pub port: Option<u16>,
}

/// Writes the request line and fields of `request` into `out` (cleared first), `host` first
/// when given. The body is always whole, so it is framed by `Content-Length`, whatever the
/// request's own framing fields said: a length that disagreed with the bytes sent would
/// desynchronise the connection.
fn encode_head(out: &mut Vec<u8>, request: &Request<Bytes>, host: Option<HostField<'_>>) {
    out.clear();
    out.extend_from_slice(request.method().as_str().as_bytes());
    out.push(b' ');
    let target = request.uri().path_and_query().map_or("/", |target| target.as_str());
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    if let Some(HostField { host, port }) = host {
        out.extend_from_slice(b"host: ");
        out.extend_from_slice(host.as_bytes());
        if let Some(port) = port {
            out.push(b':');
            out.extend_from_slice(itoa::Buffer::new().format(port).as_bytes());
        }
        out.extend_from_slice(b"\r\n");
    }
    for (name, value) in request.headers() {
        if name == CONTENT_LENGTH || name == TRANSFER_ENCODING {
            continue;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    let length = request.body().len();
    if length > 0 || expects_length(request) {
        out.extend_from_slice(b"content-length: ");
        out.extend_from_slice(itoa::Buffer::new().format(length).as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// An empty body still gets `Content-Length: 0` where a server expects a body (and may answer
/// `411 Length Required` without one) or where the request said it had a length.
fn expects_length(request: &Request<Bytes>) -> bool {
    matches!(*request.method(), Method::POST | Method::PUT | Method::PATCH)
        || request.headers().contains_key(CONTENT_LENGTH)
}

impl AsyncRead for Stream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(tcp) => Pin::new(tcp).poll_read(cx, buf),
            Stream::Tls(tls) => Pin::new(tls.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(tcp) => Pin::new(tcp).poll_write(cx, buf),
            Stream::Tls(tls) => Pin::new(tls.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(tcp) => Pin::new(tcp).poll_write_vectored(cx, bufs),
            Stream::Tls(tls) => Pin::new(tls.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Plain(tcp) => tcp.is_write_vectored(),
            Stream::Tls(tls) => tls.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(tcp) => Pin::new(tcp).poll_flush(cx),
            Stream::Tls(tls) => Pin::new(tls.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(tcp) => Pin::new(tcp).poll_shutdown(cx),
            Stream::Tls(tls) => Pin::new(tls.as_mut()).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(request: Request<Bytes>) -> String {
        encoded_with_host(request, None)
    }

    fn encoded_with_host(request: Request<Bytes>, host: Option<HostField<'_>>) -> String {
        let mut out = Vec::new();
        encode_head(&mut out, &request, host);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn a_host_field_goes_first_with_its_port_when_it_has_one() {
        let request = || Request::get("/a").header("x-b", "c").body(Bytes::new()).unwrap();
        let named = HostField { host: "api.example", port: None };
        assert_eq!(encoded_with_host(request(), Some(named)), "GET /a HTTP/1.1\r\nhost: api.example\r\nx-b: c\r\n\r\n");
        let v6 = HostField { host: "[::1]", port: Some(8080) };
        assert_eq!(encoded_with_host(request(), Some(v6)), "GET /a HTTP/1.1\r\nhost: [::1]:8080\r\nx-b: c\r\n\r\n");
    }

    #[test]
    fn the_head_frames_a_whole_body_by_its_length() {
        let request = Request::post("/v1/chat?x=1")
            .header("host", "api.example")
            .header("transfer-encoding", "chunked")
            .header("content-length", "999")
            .header("x-multi", "a")
            .header("x-multi", "b")
            .body(Bytes::from_static(b"{\"a\":1}"))
            .unwrap();
        assert_eq!(
            encoded(request),
            "POST /v1/chat?x=1 HTTP/1.1\r\nhost: api.example\r\nx-multi: a\r\nx-multi: b\r\ncontent-length: 7\r\n\r\n"
        );
    }

    #[tokio::test]
    async fn a_large_body_is_read_whole_and_settling_shrinks_the_buffer_back() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let body = vec![b'x'; 600 * 1024];
        let answer = [format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", body.len()).into_bytes(), body].concat();
        let upstream = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut request = [0u8; 1024];
            let _ = socket.read(&mut request).await.unwrap();
            socket.write_all(&answer).await.unwrap();
            socket
        });
        let mut conn = Conn::new(Stream::Plain(TcpStream::connect(address).await.unwrap()));
        let request = Request::get("/big").header("host", "up").body(Bytes::new()).unwrap();
        let Ok(mut head) = conn.exchange(&request, None).await else { panic!("no response head") };
        let mut received = 0;
        while let Some(piece) = std::future::poll_fn(|cx| conn.poll_body(cx, &mut head.framing)).await {
            received += piece.unwrap().len();
        }
        assert_eq!(received, 600 * 1024);
        // However the reads went, a buffer left large is let go.
        conn.read.reserve(100 * 1024);
        conn.settle();
        assert_eq!(conn.read_size, READ_SIZE);
        assert!(conn.read.capacity() <= 2 * READ_SIZE);
        assert!(conn.is_drained());
        drop(upstream.await.unwrap());
    }

    #[test]
    fn an_empty_body_gets_a_zero_length_only_where_one_is_expected() {
        let get = Request::get("/models").body(Bytes::new()).unwrap();
        assert_eq!(encoded(get), "GET /models HTTP/1.1\r\n\r\n");
        let post = Request::post("/").body(Bytes::new()).unwrap();
        assert_eq!(encoded(post), "POST / HTTP/1.1\r\ncontent-length: 0\r\n\r\n");
        let delete = Request::delete("/x").header("content-length", "12").body(Bytes::new()).unwrap();
        assert_eq!(encoded(delete), "DELETE /x HTTP/1.1\r\ncontent-length: 0\r\n\r\n");
    }
}
