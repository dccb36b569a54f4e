//! One attempt on the wire, as the attempt loop and stream resumption both make it: run the
//! `before_proxy` phase, wait if the target asked, send, read what `judge` needs to see (a failed
//! answer's small body, a held stream's first event), and ask the target.
//!
//! Nothing here reads a body on the common path: a 2xx answer without `first_event` timing goes to
//! `judge` with its body untouched on the wire.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::header::CONTENT_TYPE;
use http::HeaderMap;
use http_body_util::BodyExt;
use switchyard_sdk::sse::{event_data, SseSplitter};
use switchyard_sdk::{AttemptResult, Ctx, Flow, Phases, Response, Target, UpstreamRequest, Verdict};
use tokio::time::Instant;

use super::finish::RequestChain;
use super::request_id;

use crate::compiled::CompiledRoute;
use crate::error::ProxyError;
use crate::observe::Observe;
use crate::transport::send::{attempt_result, send, UpstreamResponse};

/// The largest failed-answer body read whole for `judge`; a longer one is judged without it.
const MAX_JUDGED_BODY: usize = 64 * 1024;

/// An answer the core has started reading.
pub struct Answer {
    /// The head, and whatever of the body is still on the wire.
    pub response: UpstreamResponse,
    pub read: Read,
}

/// What the core read of an answer's body before `judge`.
pub enum Read {
    /// Nothing: the body is all on the wire.
    Nothing,
    /// A failed answer's body, whole.
    Whole(Bytes),
    /// The first chunks (a held stream's first event, or the start of a long error body); the
    /// rest is on the wire.
    Started(Vec<Bytes>),
}

/// How an attempt ended, once judged.
pub enum Step {
    /// Relay this answer.
    Accepted(Answer),
    /// The attempt failed before an answer, and the target keeps that outcome.
    Failed(ProxyError),
    /// The target wants another attempt; this one's answer (or failure) is what to relay if
    /// nothing better comes.
    Retry(Result<Answer, ProxyError>),
}

/// Why the `before_proxy` phase stopped an attempt.
pub enum Stopped {
    /// Answer the client with this.
    Respond(Response),
    Failed(ProxyError),
    /// Drop this attempt unsent (a spent rate limit); the target decides whether another one is
    /// made or this is the answer.
    Skip(Response),
}

/// Runs every plugin's `before_proxy` on one attempt; `chain` is the request's (the route's,
/// with an identified consumer's plugins merged over it).
pub async fn before_proxy(
    chain: &RequestChain<'_>,
    ctx: &mut Ctx,
    upstream: &mut UpstreamRequest,
) -> Result<(), Stopped> {
    for entry in chain.with_phase(Phases::BEFORE_PROXY) {
        match entry.plugin.before_proxy(ctx, upstream).await {
            Ok(Flow::Continue) => {}
            Ok(Flow::Respond(response)) => return Err(Stopped::Respond(response)),
            Ok(Flow::Skip(response)) => return Err(Stopped::Skip(response)),
            Err(source) => return Err(Stopped::Failed(ProxyError::PluginFailed { plugin: entry.name, source })),
        }
    }
    Ok(())
}

/// Who watches attempts (metrics, traces): the node's observability and the route's series.
#[derive(Clone, Copy)]
pub struct Watch<'a> {
    pub observe: &'a Observe,
    pub route: &'a CompiledRoute,
}

/// Asks the target about an attempt that was sent at `sent_at`, and tells the watch: the wait for
/// the upstream counts as upstream time, the verdict as an attempt (and a fallback).
fn judge(
    target: &mut dyn Target,
    ctx: &mut Ctx,
    result: &AttemptResult<'_>,
    watch: Watch<'_>,
    sent_at: Instant,
) -> Verdict {
    ctx.log.upstream_time += sent_at.elapsed();
    let verdict = target.judge(ctx, result);
    watch.observe.attempt_judged(watch.route, ctx, result, verdict);
    verdict
}

/// Sends attempt number `attempt` and judges it. `error_bodies`: the target reads failed answers'
/// bodies ([`Target::reads_error_bodies`]).
#[expect(
    clippy::manual_async_fn,
    reason = "an async block keeps its captures in place: see \"Futures on the request path\" in the crate docs"
)]
pub fn attempt<'a>(
    mut upstream: UpstreamRequest,
    target: &'a mut dyn Target,
    ctx: &'a mut Ctx,
    attempt: u32,
    error_bodies: bool,
    watch: Watch<'a>,
) -> impl Future<Output = Step> + 'a {
    async move {
        upstream.headers.insert(request_id::X_REQUEST_ID, ctx.request_id.clone());
        ctx.log.attempts = attempt;
        ctx.log.instance = Some(Arc::clone(&upstream.label));
        watch.observe.attempt_sending(ctx, &mut upstream);
        let timing = upstream.timing;
        if !timing.wait_before.is_zero() {
            tokio::time::sleep(timing.wait_before).await;
        }
        let stall = upstream.timeout;
        let sent_at = Instant::now();
        let mut response = match send(upstream).await {
            Ok(response) => response,
            Err(err) => {
                return match judge(target, ctx, &attempt_result(&err), watch, sent_at) {
                    Verdict::Accept => Step::Failed(err),
                    Verdict::Retry => {
                        log_retry(ctx, attempt, &err.detail());
                        Step::Retry(Err(err))
                    }
                };
            }
        };
        let status = response.status();
        let read = if error_bodies && status.as_u16() >= 400 {
            read_error_body(&mut response, stall).await
        } else if let Some(limit) =
            timing.first_event.filter(|_| status.is_success() && is_event_stream(response.headers()))
        {
            match first_event(&mut response, sent_at + limit).await {
                Ok(chunks) => {
                    ctx.log.time_to_first_token.get_or_insert(ctx.started.elapsed());
                    Read::Started(chunks)
                }
                Err(missed) => {
                    let (result, err) = match missed {
                        Missed::TimedOut => (AttemptResult::FirstEventTimedOut, ProxyError::UpstreamTimeout),
                        Missed::Broken => (
                            AttemptResult::Failed,
                            ProxyError::UpstreamBroken("the stream broke before its first event".into()),
                        ),
                    };
                    return match judge(target, ctx, &result, watch, sent_at) {
                        Verdict::Accept => Step::Failed(err),
                        Verdict::Retry => {
                            log_retry(ctx, attempt, "no first event in time");
                            Step::Retry(Err(err))
                        }
                    };
                }
            }
        } else {
            Read::Nothing
        };
        let body = match &read {
            Read::Whole(body) => Some(&body[..]),
            Read::Nothing | Read::Started(_) => None,
        };
        let result = AttemptResult::Response { status, headers: response.headers(), body };
        match judge(target, ctx, &result, watch, sent_at) {
            Verdict::Accept => Step::Accepted(Answer { response, read }),
            Verdict::Retry => {
                log_retry(ctx, attempt, status.as_str());
                Step::Retry(Ok(Answer { response, read }))
            }
        }
    }
}

/// Whether a response head announces an event stream.
pub fn is_event_stream(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().starts_with("text/event-stream"))
}

/// Whether a response head announces AWS's binary event stream (Bedrock's `converse-stream`):
/// never buffered whole, relayed chunk by chunk.
pub fn is_binary_event_stream(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().starts_with("application/vnd.amazon.eventstream"))
}

/// The log's record of an attempt that is given up for another.
fn log_retry(ctx: &Ctx, attempt: u32, outcome: &str) {
    tracing::warn!(
        request_id = %String::from_utf8_lossy(ctx.request_id.as_bytes()),
        route = %ctx.route_id,
        instance = %ctx.log.instance.as_deref().unwrap_or("-"),
        attempt,
        outcome,
        "attempt failed, trying again"
    );
}

/// Reads a failed answer's body for `judge`: whole when it ends within [`MAX_JUDGED_BODY`], else
/// the start of it. A body that stalls or breaks is judged as far as it came.
async fn read_error_body(response: &mut UpstreamResponse, stall: Duration) -> Read {
    let mut chunks = Vec::new();
    let mut held = 0;
    while let Ok(Some(Ok(frame))) = tokio::time::timeout(stall, response.body_mut().frame()).await {
        let Ok(data) = frame.into_data() else { continue };
        held += data.len();
        chunks.push(data);
        if held > MAX_JUDGED_BODY {
            return Read::Started(chunks);
        }
    }
    if chunks.len() == 1 {
        return Read::Whole(chunks.swap_remove(0));
    }
    let mut whole = BytesMut::with_capacity(held);
    for chunk in &chunks {
        whole.extend_from_slice(chunk);
    }
    Read::Whole(whole.freeze())
}

enum Missed {
    TimedOut,
    Broken,
}

/// Reads a stream until its first event that carries data (comments and keep-alives do not
/// count), by `deadline`. Returns the chunks read, to be relayed first; a stream that ends before
/// any event returns what came.
async fn first_event(response: &mut UpstreamResponse, deadline: Instant) -> Result<Vec<Bytes>, Missed> {
    let mut chunks = Vec::new();
    let mut sse = SseSplitter::new();
    loop {
        let data = match tokio::time::timeout_at(deadline, response.body_mut().frame()).await {
            Err(_) => return Err(Missed::TimedOut),
            Ok(None) => return Ok(chunks),
            Ok(Some(Err(_))) => return Err(Missed::Broken),
            Ok(Some(Ok(frame))) => match frame.into_data() {
                Ok(data) => data,
                Err(_) => continue,
            },
        };
        let mut event = sse.push(&data);
        chunks.push(data);
        while let Some(complete) = event {
            if event_data(&complete).is_some() {
                return Ok(chunks);
            }
            event = sse.next_event();
        }
    }
}
