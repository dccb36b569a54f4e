//! The end of a request: every plugin's `log` phase, then the access log line.

use std::sync::Arc;

use http::{Method, Uri};
use switchyard_sdk::{Ctx, Outcome, Phases};

use crate::compiled::CompiledRoute;

/// Carries what the log needs from the request head, so bodies can finish after the handler
/// returned. Cloning it copies no string: the URI shares the request's bytes.
#[derive(Clone)]
pub struct Finisher {
    pub route: Arc<CompiledRoute>,
    pub method: Method,
    pub uri: Uri,
    pub request_id: http::HeaderValue,
    pub access_log: bool,
}

impl Finisher {
    /// Runs once per request, when its response is complete or abandoned.
    pub fn finish(&self, ctx: &Ctx, outcome: &Outcome) {
        for entry in self.route.chain.with_phase(Phases::LOG) {
            entry.plugin.log(ctx, outcome);
        }
        if !self.access_log {
            return;
        }
        let ai = &ctx.log;
        // Summary fields are recorded only when `logging.summaries` asked for them (a `None` field
        // is left out of the line).
        let summary = ai.log_summaries.then_some(ai);
        let usage = summary.map(|ai| ai.usage.unwrap_or_default());
        tracing::info!(
            target: "access",
            request_id = %String::from_utf8_lossy(self.request_id.as_bytes()),
            client = %ctx.client_addr.ip(),
            method = %self.method,
            path = %self.uri.path(),
            route = %ctx.route_id,
            status = outcome.status,
            bytes = outcome.body_bytes,
            duration_ms = ctx.started.elapsed().as_secs_f64() * 1e3,
            upstream = %ai.instance.as_deref().unwrap_or("-"),
            attempts = summary.map(|ai| ai.attempts),
            model = summary.map(|ai| display(ai.model.as_deref().unwrap_or("-"))),
            ttft_ms = summary.and_then(|ai| ai.time_to_first_token).map(|d| d.as_secs_f64() * 1e3),
            prompt_tokens = usage.map(|u| u.prompt_tokens),
            completion_tokens = usage.map(|u| u.completion_tokens),
            total_tokens = usage.map(|u| u.total_tokens),
            cached_tokens = usage.map(|u| u.cached_tokens),
            cache_creation_tokens = usage.map(|u| u.cache_creation_tokens),
            reasoning_tokens = usage.map(|u| u.reasoning_tokens),
            request_payload = summary.and_then(|ai| ai.request_payload.as_deref()),
            response_text = summary.and_then(|ai| ai.response_text.as_deref()),
            aborted = outcome.aborted,
            reason = outcome.reason,
            error = outcome.error.as_deref(),
        );
    }
}

/// Logs a request abandoned by its client before the response head (status 499, as nginx does),
/// or cut by shutdown (444: closed without a response), unless disarmed once the response exists.
pub struct AbandonGuard<'a> {
    finisher: &'a Finisher,
    started: std::time::Instant,
    armed: bool,
}

impl Finisher {
    pub fn abandon_guard(&self, started: std::time::Instant) -> AbandonGuard<'_> {
        AbandonGuard { finisher: self, started, armed: true }
    }
}

impl AbandonGuard<'_> {
    pub fn disarm(&mut self) {
        self.armed = false;
    }
}

impl Drop for AbandonGuard<'_> {
    fn drop(&mut self) {
        if !self.armed || !self.finisher.access_log {
            return;
        }
        let (status, error) = if crate::client_io::dropped_by_shutdown() {
            (444, "cut by shutdown before the response")
        } else {
            (499, "client closed the connection before the response")
        };
        tracing::info!(
            target: "access",
            request_id = %String::from_utf8_lossy(self.finisher.request_id.as_bytes()),
            method = %self.finisher.method,
            path = %self.finisher.uri.path(),
            route = %self.finisher.route.id,
            status,
            duration_ms = self.started.elapsed().as_secs_f64() * 1e3,
            aborted = true,
            error,
        );
    }
}
