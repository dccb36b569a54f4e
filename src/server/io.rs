//! The client socket as hyper sees it. It bounds the waits for a request head, and closes with a
//! lingering close.
//!
//! Head timeouts, as nginx counts them: the first request's head must be complete within
//! `client_header_timeout` of the accept; afterwards a connection may wait `keepalive_timeout`
//! for the next request, whose head must then be complete within `client_header_timeout` of its
//! first byte. A timeout fails the read, and hyper closes the connection.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

use super::state::{ConnState, CLOSING, HEAD, IDLE};

/// The longest a closing connection keeps reading what its client still sends (nginx's
/// `lingering_time`).
const LINGERING_TIME: Duration = Duration::from_secs(30);
/// ... and the longest it waits for more of it (nginx's `lingering_timeout`).
const LINGERING_TIMEOUT: Duration = Duration::from_secs(5);

pub struct TimedIo {
    stream: TcpStream,
    conn: Arc<ConnState>,
    header_timeout: Duration,
    keepalive_timeout: Duration,
    /// Fires at the deadline of the current wait (one timer per connection, moved, never
    /// re-created).
    timer: Pin<Box<Sleep>>,
    /// The connection's request count when the current wait began.
    requests_seen: u32,
    /// When a kept-alive request's head began to arrive: its deadline is set from this only if
    /// the head does not arrive in one read, so a whole head costs no timer change.
    head_started: Option<Instant>,
    /// Set once a wait timed out: such a connection is closed without lingering.
    timed_out: bool,
    lingering: Option<Lingering>,
}

struct Lingering {
    until: Instant,
    /// Some data came after the response: keep reading until the client stops.
    draining: bool,
}

impl TimedIo {
    /// Wraps a socket just accepted: the first request head is due within `header_timeout`.
    pub fn new(stream: TcpStream, conn: Arc<ConnState>, header_timeout: Duration, keepalive_timeout: Duration) -> Self {
        Self {
            stream,
            conn,
            header_timeout,
            keepalive_timeout,
            timer: Box::pin(tokio::time::sleep(header_timeout)),
            requests_seen: 0,
            head_started: None,
            timed_out: false,
            lingering: None,
        }
    }
}

impl TimedIo {
    /// Starts the keep-alive wait when a response has ended since the last wait began. The timer
    /// is polled with `cx` so that it wakes the connection's task: hyper reads again only when
    /// the socket becomes readable.
    fn start_keepalive_wait(&mut self, cx: &mut Context<'_>) {
        let requests = self.conn.requests();
        if requests == self.requests_seen || !matches!(self.conn.phase(), IDLE | CLOSING) {
            return;
        }
        self.requests_seen = requests;
        self.head_started = None;
        // Later than the previous deadline, as a rule: tokio then moves the timer without a lock.
        self.timer.as_mut().reset(Instant::now() + self.keepalive_timeout);
        let _ = self.timer.as_mut().poll(cx);
    }
}

impl AsyncRead for TimedIo {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let phase = this.conn.phase();
        if !matches!(phase, IDLE | HEAD | CLOSING) {
            // A request is being served: its body's reads are bounded by the handler.
            return Pin::new(&mut this.stream).poll_read(cx, buf);
        }
        this.start_keepalive_wait(cx);
        let requests = this.requests_seen;
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.stream).poll_read(cx, buf);
        match polled {
            Poll::Ready(Ok(())) if phase == IDLE && buf.filled().len() > before => {
                this.conn.head_began();
                if requests > 0 {
                    this.head_started = Some(Instant::now());
                }
            }
            Poll::Pending => {
                if let Some(started) = this.head_started.take() {
                    this.timer.as_mut().reset(started + this.header_timeout);
                }
                if this.timer.as_mut().poll(cx).is_ready() {
                    this.timed_out = true;
                    let what = if phase == IDLE && requests > 0 {
                        "idle for keepalive_timeout"
                    } else {
                        "request head not complete within client_header_timeout"
                    };
                    return Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, what)));
                }
            }
            _ => {}
        }
        polled
    }
}

impl AsyncWrite for TimedIo {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    /// hyper flushes after writing each response: the keep-alive wait starts here.
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.start_keepalive_wait(cx);
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    /// Runs when hyper closes the connection after its last response. Closing a socket that
    /// holds unread data makes the kernel send a reset, which can destroy the response before the
    /// client reads it (a 413 sent while the client is still sending its body, say). So, as
    /// nginx's lingering close: send FIN, then read and drop what the client still sends, until
    /// it stops for [`LINGERING_TIMEOUT`] or [`LINGERING_TIME`] has passed. A client that sends
    /// nothing more is closed at once, unless a 413 refused its body: the rest of that body may
    /// not have arrived yet, so the close waits for it up to [`LINGERING_TIMEOUT`] too.
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.lingering.is_none() {
            ready!(Pin::new(&mut this.stream).poll_shutdown(cx))?;
            if this.timed_out {
                return Poll::Ready(Ok(()));
            }
            this.lingering = Some(Lingering { until: Instant::now() + LINGERING_TIME, draining: false });
        }
        let Some(lingering) = this.lingering.as_mut() else { return Poll::Ready(Ok(())) };
        let mut scratch = [0u8; 8192];
        loop {
            let mut unread = ReadBuf::new(&mut scratch);
            match Pin::new(&mut this.stream).poll_read(cx, &mut unread) {
                Poll::Ready(Ok(())) if !unread.filled().is_empty() => {
                    let now = Instant::now();
                    if now >= lingering.until {
                        return Poll::Ready(Ok(()));
                    }
                    lingering.draining = true;
                    this.timer.as_mut().reset(now + LINGERING_TIMEOUT);
                }
                // End of stream or an error: the client is done.
                Poll::Ready(_) => return Poll::Ready(Ok(())),
                Poll::Pending if !lingering.draining => {
                    if !this.conn.expects_refused_body() {
                        return Poll::Ready(Ok(()));
                    }
                    // Nothing has come yet, but the rest of a refused body is on its way.
                    lingering.draining = true;
                    this.timer.as_mut().reset(Instant::now() + LINGERING_TIMEOUT);
                }
                Poll::Pending => {
                    return match this.timer.as_mut().poll(cx) {
                        Poll::Ready(()) => Poll::Ready(Ok(())),
                        Poll::Pending => Poll::Pending,
                    };
                }
            }
        }
    }
}
