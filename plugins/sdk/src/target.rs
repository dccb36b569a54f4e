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
    },
    ConnectFailed,
    TimedOut,
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

/// A per-request decider, made fresh for each request (so it may keep per-request state such as
/// the instances already tried) from state shared across requests.
pub trait Target: Send {
    /// Called before each attempt; `attempt` counts from 1.
    fn next(&mut self, ctx: &mut Ctx, req: &Request, attempt: u32) -> Next;
    /// Called once per attempt with its result; `Retry` is only honoured while `next` gives attempts.
    fn judge(&mut self, ctx: &mut Ctx, result: &AttemptResult<'_>) -> Verdict;
}
