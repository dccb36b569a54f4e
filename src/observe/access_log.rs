//! The access log: one line per proxied request at target `access`, as `key=value` text or as a
//! JSON object (`log.access_log_format`). In JSON the prompt and answer text appear only when the
//! route's `logging.payloads` recorded them; provider keys are never recorded at all.

use std::time::Duration;

use serde::Serialize;
use switchyard_sdk::{Ctx, Outcome};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::observe::config::AccessLogFormat;
use crate::observe::text_line::TextLine;
use crate::proxy::Finisher;

/// What one JSON access log line holds. Fields that do not apply are `null`, so every line has
/// the same keys; the payload fields appear only with `logging.payloads`.
#[derive(Serialize)]
struct JsonLine<'a> {
    time: String,
    request_id: &'a str,
    trace_id: Option<&'a str>,
    client: Option<String>,
    method: &'a str,
    path: &'a str,
    route: &'a str,
    service: Option<&'a str>,
    /// The consumer key-auth identified, if any.
    consumer: Option<&'a str>,
    status: u16,
    /// Response body bytes sent to the client.
    bytes: u64,
    duration_ms: f64,
    upstream_ms: Option<f64>,
    ttft_ms: Option<f64>,
    instance: Option<&'a str>,
    attempts: u32,
    provider: Option<&'a str>,
    model: Option<&'a str>,
    prompt_tokens: Option<u64>,
    completion_tokens: Option<u64>,
    total_tokens: Option<u64>,
    cached_tokens: Option<u64>,
    reasoning_tokens: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    request_payload: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_text: Option<&'a str>,
    aborted: bool,
    /// Why the gateway failed or cut the request, as a stable code (`upstream_timeout`).
    reason: Option<&'a str>,
    error: Option<&'a str>,
}

fn ms(duration: std::time::Duration) -> f64 {
    duration.as_secs_f64() * 1e3
}

fn now() -> String {
    OffsetDateTime::now_utc().format(&Rfc3339).unwrap_or_default()
}

/// Writes the line of a finished request, which took `duration` (the figure its metrics got
/// too). `trace_id`: the request's trace, when it has one.
pub fn finished(
    format: AccessLogFormat,
    finisher: &Finisher,
    ctx: &Ctx,
    outcome: &Outcome,
    duration: Duration,
    trace_id: Option<&str>,
) {
    let ai = &ctx.log;
    let request_id = String::from_utf8_lossy(finisher.request_id.as_bytes());
    if format == AccessLogFormat::Json {
        let usage = ai.usage;
        let line = JsonLine {
            time: now(),
            request_id: &request_id,
            trace_id,
            client: Some(ctx.client_addr.ip().to_string()),
            method: finisher.method.as_str(),
            path: finisher.uri.path(),
            route: &ctx.route_id,
            service: finisher.route.service_id(),
            consumer: ctx.consumer.as_ref().map(|c| &*c.username),
            status: outcome.status,
            bytes: outcome.body_bytes,
            duration_ms: ms(duration),
            upstream_ms: (ai.attempts > 0).then(|| ms(ai.upstream_time)),
            ttft_ms: ai.time_to_first_token.map(ms),
            instance: ai.instance.as_deref(),
            attempts: ai.attempts,
            provider: ai.provider,
            model: ai.model.as_deref(),
            prompt_tokens: usage.map(|u| u.prompt_tokens),
            completion_tokens: usage.map(|u| u.completion_tokens),
            total_tokens: usage.map(|u| u.total_tokens),
            cached_tokens: usage.map(|u| u.cached_tokens),
            reasoning_tokens: usage.map(|u| u.reasoning_tokens),
            request_payload: ai.request_payload.as_deref(),
            response_text: ai.response_text.as_deref(),
            aborted: outcome.aborted,
            reason: outcome.reason,
            error: outcome.error.as_deref(),
        };
        write_json(&line);
        return;
    }
    if !access_enabled() {
        return;
    }
    // Summary fields are recorded only when `logging.summaries` asked for them (a `None` field
    // is left out of the line).
    let summary = ai.log_summaries.then_some(ai);
    let usage = summary.map(|ai| ai.usage.unwrap_or_default());
    let mut line = TextLine::new();
    line.text("request_id", &request_id)
        .ip("client", ctx.client_addr.ip())
        .text("method", finisher.method.as_str())
        .text("path", finisher.uri.path())
        .text("route", &ctx.route_id);
    if let Some(consumer) = &ctx.consumer {
        line.text("consumer", &consumer.username);
    }
    line.int("status", Some(outcome.status))
        .int("bytes", Some(outcome.body_bytes))
        .millis("duration_ms", Some(duration))
        .text("upstream", ai.instance.as_deref().unwrap_or("-"))
        .int("attempts", summary.map(|ai| ai.attempts));
    if let Some(ai) = summary {
        line.text("model", ai.model.as_deref().unwrap_or("-"));
    }
    line.millis("ttft_ms", summary.and_then(|ai| ai.time_to_first_token))
        .int("prompt_tokens", usage.map(|u| u.prompt_tokens))
        .int("completion_tokens", usage.map(|u| u.completion_tokens))
        .int("total_tokens", usage.map(|u| u.total_tokens))
        .int("cached_tokens", usage.map(|u| u.cached_tokens))
        .int("cache_creation_tokens", usage.map(|u| u.cache_creation_tokens))
        .int("reasoning_tokens", usage.map(|u| u.reasoning_tokens))
        .quoted("request_payload", summary.and_then(|ai| ai.request_payload.as_deref()))
        .quoted("response_text", summary.and_then(|ai| ai.response_text.as_deref()))
        .quoted("trace_id", trace_id)
        .boolean("aborted", Some(outcome.aborted))
        .quoted("reason", outcome.reason)
        .quoted("error", outcome.error.as_deref());
    write_text(line);
}

/// Writes the line of a request that ended before its response head, after `duration`: its
/// client left (499) or shutdown cut it (444).
pub fn abandoned(format: AccessLogFormat, finisher: &Finisher, duration: Duration, status: u16, error: &str) {
    let request_id = String::from_utf8_lossy(finisher.request_id.as_bytes());
    if format == AccessLogFormat::Json {
        let line = serde_json::json!({
            "time": now(),
            "request_id": request_id,
            "method": finisher.method.as_str(),
            "path": finisher.uri.path(),
            "route": &*finisher.route.id,
            "service": finisher.route.service_id(),
            "consumer": null,
            "status": status,
            "duration_ms": ms(duration),
            "aborted": true,
            "error": error,
        });
        write_json(&line);
        return;
    }
    if !access_enabled() {
        return;
    }
    let mut line = TextLine::new();
    line.text("request_id", &request_id)
        .text("method", finisher.method.as_str())
        .text("path", finisher.uri.path())
        .text("route", &finisher.route.id)
        .int("status", Some(status))
        .millis("duration_ms", Some(duration))
        .boolean("aborted", Some(true))
        .quoted("error", Some(error));
    write_text(line);
}

/// Writes the line of a request the listener refused before any route saw it (a head too large:
/// 431). `request`: its method and path, when the head could be read.
pub fn refused(
    format: AccessLogFormat,
    client: std::net::IpAddr,
    request: Option<(&http::Method, &str)>,
    status: u16,
    error: &str,
) {
    let (method, path) = request.map_or((None, None), |(m, p)| (Some(m.as_str()), Some(p)));
    if format == AccessLogFormat::Json {
        let line = serde_json::json!({
            "time": now(),
            "client": client.to_string(),
            "method": method,
            "path": path,
            "route": null,
            "status": status,
            "error": error,
        });
        write_json(&line);
        return;
    }
    if !access_enabled() {
        return;
    }
    let mut line = TextLine::new();
    line.ip("client", client);
    if let (Some(method), Some(path)) = (method, path) {
        line.text("method", method).text("path", path);
    }
    line.int("status", Some(status)).text("error", error);
    write_text(line);
}

/// The target of access events: the log format prints them as access lines.
pub const TARGET: &str = "access";

/// Whether the log filter lets access lines through (checked before a line is written).
fn access_enabled() -> bool {
    tracing::enabled!(target: TARGET, tracing::Level::INFO)
}

/// A text line goes out as the event's only content, after the subscriber's time, level and
/// target, as any other event.
fn write_text(line: TextLine) {
    tracing::info!(target: TARGET, "{}", line.finish());
}

/// A JSON line goes out as the event's only content; the binary's log setup prints such events
/// bare (see `main.rs`), so each line on stdout is one JSON object.
fn write_json(line: &impl Serialize) {
    match serde_json::to_string(line) {
        Ok(json) => tracing::info!(target: TARGET, "{json}"),
        Err(err) => tracing::warn!(error = %err, "cannot write an access log line"),
    }
}
