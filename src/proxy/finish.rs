//! The end of a request: every plugin's `log` phase, then the access log line.

use std::sync::Arc;

use http::{Method, Uri};
use switchyard_plugins::{Ctx, Outcome, Phases};

use crate::snapshot::CompiledRoute;

/// Carries what the log needs from the request head, so bodies can finish after the handler
/// returned. Cloning it copies no string: the URI shares the request's bytes.
#[derive(Clone)]
pub struct Finisher {
    pub route: Arc<CompiledRoute>,
    pub method: Method,
    pub uri: Uri,
    pub access_log: bool,
}

impl Finisher {
    /// Runs once per request, when its response is complete or abandoned.
    pub fn finish(&self, ctx: &Ctx, outcome: &Outcome) {
        for plugin in self.route.chain.with_phase(Phases::LOG) {
            plugin.log(ctx, outcome);
        }
        if !self.access_log {
            return;
        }
        let ai = &ctx.ai;
        let usage = ai.usage.unwrap_or_default();
        if ai.log_summaries {
            tracing::info!(
                target: "access",
                client = %ctx.client_addr.ip(),
                method = %self.method,
                path = %self.uri.path(),
                route = %ctx.route_id,
                status = outcome.status,
                bytes = outcome.body_bytes,
                duration_ms = ctx.started.elapsed().as_secs_f64() * 1e3,
                instance = %ai.instance.as_deref().unwrap_or("-"),
                attempts = ai.attempts,
                model = %ai.model.as_deref().unwrap_or("-"),
                ttft_ms = ai.time_to_first_token.map_or(-1.0, |d| d.as_secs_f64() * 1e3),
                prompt_tokens = usage.prompt_tokens,
                completion_tokens = usage.completion_tokens,
                total_tokens = usage.total_tokens,
                cached_tokens = usage.cached_tokens,
                reasoning_tokens = usage.reasoning_tokens,
                request_payload = ai.request_payload.as_deref(),
                response_text = ai.response_text.as_deref(),
                aborted = outcome.aborted,
                error = outcome.error.as_deref(),
            );
        } else {
            tracing::info!(
                target: "access",
                client = %ctx.client_addr.ip(),
                method = %self.method,
                path = %self.uri.path(),
                route = %ctx.route_id,
                status = outcome.status,
                bytes = outcome.body_bytes,
                duration_ms = ctx.started.elapsed().as_secs_f64() * 1e3,
                upstream = %ai.instance.as_deref().unwrap_or("-"),
                aborted = outcome.aborted,
                error = outcome.error.as_deref(),
            );
        }
    }
}
