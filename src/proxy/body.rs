//! The response body sent to clients: a whole body, or an upstream body relayed as it arrives
//! through the route's body filters, event by event for `text/event-stream`.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::stream::BoxStream;
use futures_util::StreamExt;
use http_body::{Body, Frame, SizeHint};
use switchyard_sdk::respond::stream_error_event;
use switchyard_sdk::sse::SseSplitter;
use switchyard_sdk::{Ctx, Outcome};
use tokio::time::{Instant, Sleep};

use super::finish::{Finisher, RequestChain};
use super::resume::{Resumer, Taking};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The largest single event of an event stream: the splitter holds an unfinished event until its
/// blank line arrives, so an upstream that never sends one would otherwise grow it without end.
pub const MAX_SSE_EVENT: usize = 16 << 20;

/// What hyper sends to the client.
pub enum ResponseBody {
    Full(Option<Bytes>),
    Relay(Box<RelayBody>),
}

impl ResponseBody {
    pub fn full(bytes: Bytes) -> Self {
        ResponseBody::Full(Some(bytes))
    }

    /// Runs in place of `poll_frame` once shutdown cut the connection: a relayed body ends now
    /// (an event stream with its SSE error event); a whole body is sent as it is.
    pub fn poll_shut_down(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self {
            ResponseBody::Relay(relay) if !relay.done => relay.cut(Cut::Shutdown),
            body => Pin::new(body).poll_frame(cx),
        }
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match &mut *self {
            ResponseBody::Full(bytes) => {
                Poll::Ready(bytes.take().filter(|b| !b.is_empty()).map(|b| Ok(Frame::data(b))))
            }
            ResponseBody::Relay(relay) => Pin::new(relay.as_mut()).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ResponseBody::Full(bytes) => bytes.as_ref().is_none_or(Bytes::is_empty),
            ResponseBody::Relay(relay) => relay.done,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ResponseBody::Full(bytes) => SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64)),
            ResponseBody::Relay(_) => SizeHint::default(),
        }
    }
}

/// Limits a relayed body must respect.
pub struct RelayLimits {
    /// Longest stall between two upstream reads.
    pub stall: Duration,
    pub max_duration: Option<Duration>,
    pub max_bytes: Option<u64>,
    /// Event streams: coalesce the events of this window into one frame.
    pub flush_interval: Option<Duration>,
}

/// Why a relay ended before the upstream finished.
#[derive(Debug, Clone, Copy)]
enum Cut {
    Stalled,
    TooLong,
    TooLarge,
    EventTooLarge,
    Broken,
    Shutdown,
}

impl Cut {
    fn message(self) -> &'static str {
        match self {
            Cut::Stalled => "the upstream stopped sending before the response was complete",
            Cut::TooLong => "the response exceeded the maximum stream duration",
            Cut::TooLarge => "the response exceeded the maximum response size",
            Cut::EventTooLarge => "an event of the stream exceeded the maximum event size",
            Cut::Broken => "the upstream connection broke before the response was complete",
            Cut::Shutdown => "cut by shutdown: the gateway stopped before the response was complete",
        }
    }

    /// The SSE error event's `code`.
    fn code(self) -> &'static str {
        match self {
            Cut::Shutdown => "gateway_shutdown",
            _ => "upstream_stream_error",
        }
    }
}

/// Relays an upstream body. Dropping it (the client went away) drops the upstream stream, which
/// cancels the upstream request; the log phase runs exactly once either way.
pub struct RelayBody {
    upstream: BoxStream<'static, Result<Bytes, crate::transport::wire::WireError>>,
    sse: Option<SseSplitter>,
    /// The client gets an event stream though the upstream sent another framing (a converted
    /// AWS event stream): a cut ends it with an SSE error event too.
    client_event_stream: bool,
    ctx: Ctx,
    finisher: Finisher,
    /// The request's chain (its consumer's plugins merged in), for the body filters.
    chain: RequestChain<'static>,
    outcome: Outcome,
    limits: RelayLimits,
    /// Fires at the earliest moment the stall limit could be reached; see [`RelayBody::stalled`].
    stall: Pin<Box<Sleep>>,
    /// When the upstream last sent something (or the relay, or a resumed stream, began).
    last_read: Instant,
    /// The waker the stall timer holds (it was last polled with it), while it has not fired.
    stall_waker: Option<Waker>,
    deadline: Option<Pin<Box<Sleep>>>,
    /// Events held back under a flush interval, and when they are due.
    batch: BytesMut,
    batch_due: Option<Pin<Box<Sleep>>>,
    received: u64,
    /// When the upstream's response head arrived: from then until the relay ends counts as
    /// time spent on the upstream.
    head_at: Instant,
    /// The final empty filter call (end of stream) has been made.
    done: bool,
    logged: bool,
    /// `stream_resume`: another attempt may take a broken stream up (`None`: nothing is tracked).
    resume: Option<Box<Resumer>>,
}

impl RelayBody {
    pub fn new(
        upstream: BoxStream<'static, Result<Bytes, crate::transport::wire::WireError>>,
        event_stream: bool,
        ctx: Ctx,
        finisher: Finisher,
        status: u16,
        limits: RelayLimits,
    ) -> Self {
        let elapsed = ctx.started.elapsed();
        let deadline = limits.max_duration.map(|d| Box::pin(tokio::time::sleep(d.saturating_sub(elapsed))));
        Self {
            upstream,
            sse: event_stream.then(SseSplitter::new),
            client_event_stream: event_stream,
            chain: finisher.chain(&ctx).into_owned(),
            ctx,
            finisher,
            outcome: Outcome { status, ..Outcome::default() },
            stall: Box::pin(tokio::time::sleep(limits.stall)),
            last_read: Instant::now(),
            stall_waker: None,
            deadline,
            limits,
            batch: BytesMut::new(),
            batch_due: None,
            received: 0,
            head_at: Instant::now(),
            done: false,
            logged: false,
            resume: None,
        }
    }

    /// Runs when the header filters made the client's answer an event stream out of another
    /// framing: an early end is then told with an SSE error event, as for any event stream.
    pub fn tells_cuts_as_events(&mut self) {
        self.client_event_stream = true;
    }

    /// Lets another attempt take the stream up if it breaks.
    pub fn resume_with(&mut self, resumer: Resumer) {
        self.resume = Some(Box::new(resumer));
    }

    /// Called where the stream broke: starts taking it up when that may be tried (the loop then
    /// waits for it), else `false`.
    fn take_up(&mut self, stalled: bool) -> bool {
        let Some(resume) = self.resume.as_mut() else { return false };
        if !resume.begin(&mut self.ctx, &self.finisher.route, &self.finisher.observe, stalled) {
            return false;
        }
        // The unfinished event of the broken stream is dropped with it.
        self.sse = Some(SseSplitter::new());
        true
    }

    /// Runs the body filters on one piece and returns it as a frame, or `None` when the filters
    /// emptied it.
    fn filtered(&mut self, mut chunk: Bytes, end: bool) -> Option<Bytes> {
        for entry in self.chain.with_phase(switchyard_sdk::Phases::BODY_FILTER) {
            let plugin = &entry.plugin;
            plugin.body_filter(&mut self.ctx, &mut chunk, end);
        }
        if let Some(resume) = self.resume.as_mut() {
            resume.on_sent(&mut self.ctx, &mut chunk);
        }
        self.outcome.body_bytes += chunk.len() as u64;
        (!chunk.is_empty()).then_some(chunk)
    }

    /// An event ready for the client: returned at once, or (with a flush interval) added to the
    /// batch, which is returned when due.
    fn emit(&mut self, event: Bytes, cx: &mut Context<'_>) -> Option<Bytes> {
        let Some(interval) = self.limits.flush_interval else { return Some(event) };
        self.batch.extend_from_slice(&event);
        if self.batch_due.is_none() {
            self.batch_due = Some(Box::pin(tokio::time::sleep(interval)));
        }
        self.due_batch(cx)
    }

    /// The held events, once their window has passed (the timer wakes the task when it does).
    fn due_batch(&mut self, cx: &mut Context<'_>) -> Option<Bytes> {
        let due = self.batch_due.as_mut()?;
        if due.as_mut().poll(cx).is_pending() {
            return None;
        }
        self.batch_due = None;
        Some(self.batch.split().freeze())
    }

    /// Runs when the upstream has nothing to read: whether it has now sent nothing for the stall
    /// limit (else the timer wakes the task when it might have). The timer is moved on only when
    /// it fires, to the limit after the last read: moving it on every read cost a timer update
    /// (a clock read and the wheel's bookkeeping) per chunk.
    ///
    /// A timer that has not fired and holds this task's waker already is not polled again: that
    /// would only register the same waker once more (~110 instructions, on every pending poll of
    /// a stream).
    fn stalled(&mut self, cx: &mut Context<'_>) -> bool {
        let holds_waker = self.stall_waker.as_ref().is_some_and(|waker| waker.will_wake(cx.waker()));
        if holds_waker && !self.stall.is_elapsed() {
            return false;
        }
        while self.stall.as_mut().poll(cx).is_ready() {
            let due = self.last_read + self.limits.stall;
            if due <= Instant::now() {
                return true;
            }
            self.stall.as_mut().reset(due);
        }
        if !holds_waker {
            self.stall_waker = Some(cx.waker().clone());
        }
        false
    }

    /// Whatever is still held, followed by `last`.
    fn with_held(&mut self, last: Bytes) -> Bytes {
        self.batch_due = None;
        if self.batch.is_empty() {
            return last;
        }
        self.batch.extend_from_slice(&last);
        self.batch.split().freeze()
    }

    /// Ends the body early. Event streams get a final SSE `error` event in the request's error
    /// style (and never `[DONE]`), so a client cannot mistake a cut answer for a complete one;
    /// other bodies end with an error, which aborts the response on the wire.
    fn cut(&mut self, cut: Cut) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.done = true;
        self.outcome.aborted = true;
        self.outcome.reason = Some(cut.code());
        self.outcome.error = Some(cut.message().into());
        self.finish();
        if self.client_event_stream {
            let error = stream_error_event(self.ctx.error_style, cut.message(), cut.code());
            return Poll::Ready(Some(Ok(Frame::data(self.with_held(error)))));
        }
        Poll::Ready(Some(Err(cut.message().into())))
    }

    fn finish(&mut self) {
        if !self.logged {
            self.logged = true;
            self.ctx.log.upstream_time += self.head_at.elapsed();
            self.finisher.finish(&self.ctx, &self.outcome);
        }
    }
}

impl Body for RelayBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        loop {
            if this.done {
                return Poll::Ready(None);
            }
            if let Some(event) = this.sse.as_mut().and_then(SseSplitter::next_event) {
                if let Some(frame) = this.filtered(event, false).and_then(|event| this.emit(event, cx)) {
                    return Poll::Ready(Some(Ok(Frame::data(frame))));
                }
                continue;
            }
            if let Some(frame) = this.due_batch(cx) {
                return Poll::Ready(Some(Ok(Frame::data(frame))));
            }
            if let Some(deadline) = this.deadline.as_mut() {
                if deadline.as_mut().poll(cx).is_ready() {
                    return this.cut(Cut::TooLong);
                }
            }
            if let Some(resume) = this.resume.as_mut() {
                match resume.poll(cx, &mut this.ctx) {
                    Taking::Idle => {}
                    Taking::Pending => return Poll::Pending,
                    Taking::Ready(upstream) => {
                        this.upstream = upstream;
                        this.last_read = Instant::now();
                    }
                    Taking::Failed => return this.cut(Cut::Broken),
                }
            }
            match this.upstream.poll_next_unpin(cx) {
                Poll::Ready(Some(Ok(chunk))) => {
                    if this.received == 0 {
                        this.ctx.log.time_to_first_token.get_or_insert(this.ctx.started.elapsed());
                    }
                    this.received += chunk.len() as u64;
                    if this.limits.max_bytes.is_some_and(|max| this.received > max) {
                        return this.cut(Cut::TooLarge);
                    }
                    this.last_read = Instant::now();
                    match this.sse.as_mut() {
                        Some(sse) => match sse.push_bytes(chunk) {
                            Some(event) => {
                                if let Some(frame) = this.filtered(event, false).and_then(|event| this.emit(event, cx))
                                {
                                    return Poll::Ready(Some(Ok(Frame::data(frame))));
                                }
                            }
                            // Nothing complete: all that is held is one unfinished event.
                            None if sse.buffered() > MAX_SSE_EVENT => return this.cut(Cut::EventTooLarge),
                            None => {}
                        },
                        None => {
                            if let Some(frame) = this.filtered(chunk, false) {
                                return Poll::Ready(Some(Ok(Frame::data(frame))));
                            }
                        }
                    }
                }
                Poll::Ready(Some(Err(_))) => {
                    if this.take_up(false) {
                        continue;
                    }
                    return this.cut(Cut::Broken);
                }
                Poll::Ready(None) if this.resume.as_ref().is_some_and(|r| r.cut_short()) => {
                    if this.take_up(false) {
                        continue;
                    }
                    return this.cut(Cut::Broken);
                }
                Poll::Ready(None) => {
                    let rest = this.sse.as_mut().and_then(SseSplitter::take_rest).unwrap_or_default();
                    this.done = true;
                    let last = this.filtered(rest, true).unwrap_or_default();
                    let last = this.with_held(last);
                    this.finish();
                    return Poll::Ready((!last.is_empty()).then(|| Ok(Frame::data(last))));
                }
                Poll::Pending => {
                    if this.stalled(cx) {
                        if this.take_up(true) {
                            continue;
                        }
                        return this.cut(Cut::Stalled);
                    }
                    return Poll::Pending;
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }
}

impl Drop for RelayBody {
    fn drop(&mut self) {
        if !self.logged {
            // The client went away before the end (or shutdown cut its connection): the upstream
            // request is cancelled with us.
            self.outcome.aborted = true;
            let cause = if crate::client_io::dropped_by_shutdown() {
                Cut::Shutdown.message()
            } else {
                "client closed the connection"
            };
            self.outcome.error.get_or_insert_with(|| cause.into());
            self.finish();
        }
    }
}
