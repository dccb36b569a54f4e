//! Where a request goes, attempt by attempt. The core owns the IO; a [`Target`] only decides.
//!
//! Per request the core asks `next` for an attempt, runs every plugin's `before_proxy` on it,
//! sends it, and asks `judge` whether to keep the answer or to try again. This is what lets
//! `ai-proxy-multi` fall back between instances without doing any IO itself.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode};

use crate::{Ctx, Request};

/// One upstream call, fully built: the core sends it as it is.
pub struct UpstreamRequest {
    pub method: Method,
    /// Parsed when the config compiled, or built from parts per request: never re-parsed.
    pub url: http::Uri,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// The core's connection pool (and TLS settings) to send it with.
    pub client: crate::ClientHandle,
    /// Longest wait for the response head, and longest stall between two body reads.
    pub timeout: Duration,
    /// Ends a response body that runs longer than this (streams included).
    pub max_duration: Option<Duration>,
    /// Ends a response body larger than this many bytes.
    pub max_response_bytes: Option<u64>,
    /// Event streams only: send the events that arrived within this long as one write, instead of
    /// each on its own (`None`: every event is flushed the moment it is complete).
    pub flush_interval: Option<Duration>,
    /// Names the node or instance in logs and in `x-switchyard-instance`; never a URL (a URL may
    /// carry `auth.query` secrets).
    pub label: Arc<str>,
    /// When to send, and how long a stream may keep the client waiting; all off by default.
    pub timing: AttemptTiming,
    /// Credentials the core applies just before sending, after every `before_proxy` (an OAuth2
    /// token fetched and cached); `None` for requests whose headers carry them already.
    pub credentials: Option<Arc<dyn crate::Credentials>>,
}

/// The timing of one attempt beyond `UpstreamRequest::timeout`. The default does nothing extra.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AttemptTiming {
    /// The core waits this long before sending (a same-instance retry's pause, or the wait a
    /// provider asked for with `Retry-After`).
    pub wait_before: Duration,
    /// Event streams: the first event carrying data must arrive within this long of the attempt
    /// being sent, or the attempt failed ([`AttemptResult::FirstEventTimedOut`]). While it is set
    /// the core holds the response head until that event, and sends both together.
    pub first_event: Option<Duration>,
    /// Event streams: the longest silence between two reads once streaming (`None`: `timeout`).
    pub stream_idle: Option<Duration>,
}

/// What the target wants next.
#[expect(clippy::large_enum_variant, reason = "moved once per attempt; a Box would allocate per request")]
pub enum Next {
    /// Send this.
    Attempt(UpstreamRequest),
    /// No attempt is left. The core answers 503 when no attempt was made at all; otherwise it
    /// relays the last failed answer as `GiveUp` says.
    Exhausted(GiveUp),
}

/// How to answer when every attempt failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GiveUp {
    /// Relay the last upstream status and body as they are.
    LastAsIs,
    /// Relay the last upstream body with status 502.
    LastAsBadGateway,
}

/// How one attempt went, as far as the response head.
pub enum AttemptResult<'a> {
    Response {
        status: StatusCode,
        headers: &'a HeaderMap,
        /// The body of a failed answer (status 400 or more) when the target
        /// [reads error bodies](Target::reads_error_bodies) and the body was small enough to read
        /// whole first; `None` otherwise.
        body: Option<&'a [u8]>,
    },
    ConnectFailed,
    TimedOut,
    /// The response head came, but the stream's first event did not within
    /// [`AttemptTiming::first_event`]; the attempt is abandoned.
    FirstEventTimedOut,
    /// Another transport failure (reset, TLS, protocol).
    Failed,
    /// Never sent: a plugin's `before_proxy` dropped it (`Flow::Skip`, e.g. the instance's rate
    /// limit is spent). Says nothing about the upstream's health.
    Skipped,
}

/// The target's decision about an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Relay this answer to the client.
    Accept,
    /// Drop this answer and ask `next` again.
    Retry,
}

/// How a resumed stream takes up a broken answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResumeMode {
    /// The request carries the delivered text as a final assistant message: what comes back is
    /// the continuation, relayed as it is.
    Continue,
    /// The original request, sent again: the core relays only what follows the delivered text,
    /// and only when the new answer begins with exactly that text.
    Restart,
}

/// What the target wants next for a broken stream.
#[expect(clippy::large_enum_variant, reason = "made once per resumption attempt")]
pub enum Resumption {
    Attempt(UpstreamRequest, ResumeMode),
    /// Nothing can take the stream up: it ends with an error event.
    Exhausted,
}

/// A per-request decider, made fresh for each request (so it may keep per-request state such as
/// the instances already tried) from state shared across requests.
pub trait Target: Send {
    /// Called before each attempt; `attempt` counts from 1.
    fn next(&mut self, ctx: &mut Ctx, req: &Request, attempt: u32) -> Next;
    /// Called once per attempt with its result; `Retry` is only honoured while `next` gives attempts.
    fn judge(&mut self, ctx: &mut Ctx, result: &AttemptResult<'_>) -> Verdict;

    /// Whether `judge` wants the body of failed answers (status 400 or more): the core then reads
    /// a small one whole before calling `judge`. Read once per request.
    fn reads_error_bodies(&self) -> bool {
        false
    }

    /// Whether an accepted event stream that breaks after bytes reached the client may be taken
    /// up by another attempt ([`Target::resume`]). Asked once, when the stream is accepted; only
    /// then does the core keep the request and track what the client was sent.
    fn resumable(&self) -> bool {
        false
    }

    /// Called once when an accepted stream broke (`stalled`: it went silent too long) after
    /// bytes reached the client, before the first [`Target::resume`].
    fn stream_broke(&mut self, _ctx: &mut Ctx, _stalled: bool) {}

    /// Called for each attempt at taking up a broken stream (`attempt` counts on from the
    /// request's attempts), with the assistant text the client already has. Each attempt is
    /// judged by [`Target::judge`]; `Retry` brings the next call.
    fn resume(&mut self, _ctx: &mut Ctx, _req: &Request, _attempt: u32, _delivered: &str) -> Resumption {
        Resumption::Exhausted
    }
}
