//! Taking up an event stream that broke after bytes reached the client (`stream_resume`).
//!
//! The relay holds a [`Resumer`] only when the target said its stream may be resumed; otherwise
//! nothing here runs. The relay hands it every chunk it sends the client ([`Resumer::on_sent`]:
//! track the assistant text, splice a taken-up stream's events on), asks it on a break whether
//! another attempt may take the stream up ([`Resumer::begin`]), and then polls it
//! ([`Resumer::poll`]) until a new upstream body is ready or nothing could take it up.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::stream::BoxStream;
use futures_util::StreamExt;
use switchyard_llm::resume::{Sent, Splice};
use switchyard_sdk::{Ctx, Request, ResumeMode, Resumption, Target};

use super::attempt::{self, Answer, Read, Step};
use crate::compiled::CompiledRoute;
use crate::observe::Observe;

/// An upstream body as the relay reads it.
pub type UpstreamBody = BoxStream<'static, Result<Bytes, crate::transport::wire::WireError>>;

/// What the relay does next, after [`Resumer::poll`].
pub enum Taking {
    /// Nothing is being taken up: relay on.
    Idle,
    /// An attempt is under way; the task wakes when it is done.
    Pending,
    /// Relay this body from now on.
    Ready(UpstreamBody),
    /// Nothing could take the stream up, or the new answer parted from the text the client has:
    /// end it with the error event.
    Failed,
}

/// The target and the request, kept for another attempt.
struct Parked {
    target: Box<dyn Target>,
    req: Request,
}

/// A resumption under way: it owns the request's context until it is done.
struct Job {
    ctx: Ctx,
    parked: Parked,
    attempts: u32,
    taken: Option<(UpstreamBody, ResumeMode)>,
}

pub struct Resumer {
    /// `None` while a resumption runs (the job holds them).
    parked: Option<Parked>,
    attempts: u32,
    sent: Sent,
    splice: Option<Splice>,
    running: Option<Pin<Box<dyn Future<Output = Job> + Send>>>,
    failed: bool,
}

impl Resumer {
    /// Keeps what another attempt needs; `attempts`: the attempts made so far.
    pub fn new(target: Box<dyn Target>, req: Request, attempts: u32) -> Resumer {
        Resumer {
            parked: Some(Parked { target, req }),
            attempts,
            sent: Sent::default(),
            splice: None,
            running: None,
            failed: false,
        }
    }

    /// Called with each chunk before it goes to the client: splices a taken-up stream's events
    /// on, and tracks what the client got.
    pub fn on_sent(&mut self, ctx: &mut Ctx, chunk: &mut Bytes) {
        if self.failed {
            // Whatever else was already read of an answer that parted from ours stays unsent.
            *chunk = Bytes::new();
            return;
        }
        if let Some(splice) = self.splice.as_mut() {
            match splice.rewrite(chunk) {
                Ok(spliced) => {
                    *chunk = spliced.chunk;
                    if spliced.usage.is_some() {
                        ctx.log.usage = spliced.usage;
                    }
                }
                Err(_) => {
                    tracing::warn!(
                        request_id = %String::from_utf8_lossy(ctx.request_id.as_bytes()),
                        route = %ctx.route_id,
                        instance = %ctx.log.instance.as_deref().unwrap_or("-"),
                        "the restarted answer does not begin with the text already sent; ending the stream"
                    );
                    self.failed = true;
                    *chunk = Bytes::new();
                    return;
                }
            }
        }
        self.sent.observe(chunk);
    }

    /// Whether a stream that ended cleanly on the wire ended before its answer did.
    pub fn cut_short(&self) -> bool {
        self.sent.cut_short()
    }

    /// Called when the stream broke (`stalled`: went silent too long). Starts taking it up and
    /// returns `true` when that may be tried; it then owns `ctx` until [`Resumer::poll`] gives
    /// it back.
    pub fn begin(&mut self, ctx: &mut Ctx, route: &Arc<CompiledRoute>, observe: &Arc<Observe>, stalled: bool) -> bool {
        if self.failed || self.running.is_some() || !self.sent.resumable() {
            return false;
        }
        let Some(parked) = self.parked.take() else { return false };
        let stand_in = Ctx::new(Arc::clone(&ctx.route_id), ctx.client_addr, ctx.request_id.clone());
        let job = Job { ctx: std::mem::replace(ctx, stand_in), parked, attempts: self.attempts, taken: None };
        let watched = (Arc::clone(route), Arc::clone(observe));
        self.running = Some(Box::pin(take_up(job, watched, self.sent.text().to_string(), stalled)));
        true
    }

    /// Drives a resumption under way; gives `ctx` back when it is done.
    pub fn poll(&mut self, cx: &mut Context<'_>, ctx: &mut Ctx) -> Taking {
        if self.failed {
            return Taking::Failed;
        }
        let Some(running) = self.running.as_mut() else { return Taking::Idle };
        let Poll::Ready(job) = running.as_mut().poll(cx) else { return Taking::Pending };
        self.running = None;
        *ctx = job.ctx;
        self.parked = Some(job.parked);
        self.attempts = job.attempts;
        let request_id = String::from_utf8_lossy(ctx.request_id.as_bytes()).into_owned();
        let instance = ctx.log.instance.as_deref().unwrap_or("-").to_string();
        match job.taken {
            Some((body, mode)) => {
                tracing::info!(
                    request_id, route = %ctx.route_id, instance, attempt = self.attempts, ?mode,
                    delivered_bytes = self.sent.text().len(), "broken stream taken up"
                );
                self.splice = Some(self.sent.take_up(mode));
                Taking::Ready(body)
            }
            None => {
                tracing::warn!(request_id, route = %ctx.route_id, attempt = self.attempts, "no attempt could take the broken stream up");
                self.failed = true;
                Taking::Failed
            }
        }
    }
}

/// Asks the target for attempts at taking the stream up until one answers with a stream.
async fn take_up(mut job: Job, watched: (Arc<CompiledRoute>, Arc<Observe>), delivered: String, stalled: bool) -> Job {
    let (route, observe) = watched;
    let Job { ctx, parked: Parked { target, req }, attempts, taken } = &mut job;
    target.stream_broke(ctx, stalled);
    let error_bodies = target.reads_error_bodies();
    loop {
        *attempts += 1;
        let (mut upstream, mode) = match target.resume(ctx, req, *attempts, &delivered) {
            Resumption::Exhausted => break,
            Resumption::Attempt(upstream, mode) => (upstream, mode),
        };
        if attempt::before_proxy(&super::finish::RequestChain::of(&route, ctx), ctx, &mut upstream).await.is_err() {
            break;
        }
        let watch = attempt::Watch { observe: &observe, route: &route };
        match attempt::attempt(upstream, target.as_mut(), ctx, *attempts, error_bodies, watch).await {
            Step::Accepted(answer) => {
                let head = answer.response.headers();
                if answer.response.status().is_success() && attempt::is_event_stream(head) {
                    *taken = Some((body_of(answer), mode));
                }
                break;
            }
            Step::Failed(_) => break,
            Step::Retry(_) => {}
        }
    }
    job
}

/// An accepted stream's body: what the core read of it first, then the rest.
fn body_of(answer: Answer) -> UpstreamBody {
    let rest = answer.response.into_body();
    match answer.read {
        Read::Nothing => Box::pin(rest),
        Read::Whole(body) => Box::pin(futures_util::stream::iter([Ok(body)])),
        Read::Started(chunks) => Box::pin(futures_util::stream::iter(chunks.into_iter().map(Ok)).chain(rest)),
    }
}
