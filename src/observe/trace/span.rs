//! One request's trace: the server span of the request and a client span per upstream attempt,
//! recorded as the request goes and turned into OTLP spans when it ends.

use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use http::HeaderValue;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::{status, Span, Status};
use switchyard_sdk::{Ctx, Outcome};

use super::context::{new_span_id, new_trace_id, parse_traceparent, ratio_samples, SpanId, TraceId};
use super::context::{TRACEPARENT, TRACESTATE};

/// An upstream attempt as its span will tell it.
#[derive(Clone)]
struct Attempt {
    span_id: SpanId,
    start: u64,
    end: Option<u64>,
    instance: Arc<str>,
    method: http::Method,
    server: Option<String>,
    request_model: Option<String>,
    /// The attempt's result (`2xx`, `429`, `connect_error`, ...) and status, once judged.
    result: Option<&'static str>,
    status: Option<u16>,
    retried: bool,
}

/// The trace state of one request, kept in its context from the first phase to the log.
#[derive(Clone)]
pub struct RequestTrace {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    parent: Option<SpanId>,
    tracestate: Option<HeaderValue>,
    /// Recorded and exported; an unsampled trace is still continued upstream.
    pub sampled: bool,
    start_unix_nanos: u64,
    started: Instant,
    attempts: Vec<Attempt>,
}

/// What a finished request's spans are made of, besides its context.
pub struct Ending<'a> {
    pub method: &'a http::Method,
    pub path: &'a str,
    pub route_uri: Option<&'a str>,
    pub request_id: &'a str,
    pub outcome: &'a Outcome,
}

impl RequestTrace {
    /// Starts the request's trace: continues the client's `traceparent` (its sampling decision
    /// included) or starts a new trace sampled at `ratio`.
    pub fn start(headers: &http::HeaderMap, ratio: f64, started: Instant) -> RequestTrace {
        let parent = headers.get(TRACEPARENT).and_then(parse_traceparent);
        let (trace_id, sampled) = match parent {
            Some(parent) => (parent.trace_id, parent.sampled),
            None => {
                let id = new_trace_id();
                (id, ratio_samples(&id, ratio))
            }
        };
        let now_unix = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
        RequestTrace {
            trace_id,
            span_id: new_span_id(),
            parent: parent.map(|p| p.span_id),
            tracestate: parent.and(headers.get(TRACESTATE).cloned()),
            sampled,
            start_unix_nanos: now_unix.saturating_sub(started.elapsed().as_nanos() as u64),
            started,
            attempts: Vec::new(),
        }
    }

    fn unix_nanos(&self, at: Instant) -> u64 {
        self.start_unix_nanos + at.saturating_duration_since(self.started).as_nanos() as u64
    }

    /// Before an attempt is sent: a new child span, whose context the request carries upstream.
    pub fn attempt(&mut self, log: &switchyard_sdk::LogRecord, upstream: &mut switchyard_sdk::UpstreamRequest) {
        let span_id = new_span_id();
        let header = super::context::traceparent(&self.trace_id, &span_id, self.sampled);
        upstream.headers.insert(TRACEPARENT, header);
        match &self.tracestate {
            Some(state) => upstream.headers.insert(TRACESTATE, state.clone()),
            None => upstream.headers.remove(TRACESTATE),
        };
        if !self.sampled {
            return;
        }
        self.attempts.push(Attempt {
            span_id,
            start: self.unix_nanos(Instant::now()),
            end: None,
            instance: Arc::clone(&upstream.label),
            method: upstream.method.clone(),
            server: upstream.url.host().map(str::to_string),
            request_model: log.model.clone(),
            result: None,
            status: None,
            retried: false,
        });
    }

    /// After the attempt's answer (or failure) was judged. A retried attempt's span ends here;
    /// the accepted one's ends with the response.
    pub fn judged(&mut self, result: &'static str, status: Option<u16>, retried: bool) {
        let now = self.unix_nanos(Instant::now());
        if let Some(attempt) = self.attempts.last_mut() {
            attempt.result = Some(result);
            attempt.status = status;
            attempt.retried = retried;
            if retried {
                attempt.end = Some(now);
            }
        }
    }

    /// The request's spans, the server span first. Runs once, when the request ends.
    pub fn spans(&self, ctx: &Ctx, ending: &Ending<'_>) -> Vec<Span> {
        let end = self.unix_nanos(Instant::now());
        let log = &ctx.log;
        let usage = log.usage;
        let mut genai = Vec::new();
        if let Some(provider) = log.provider {
            genai.push(text("gen_ai.operation.name", log.operation.unwrap_or("chat")));
            genai.push(text("gen_ai.provider.name", provider));
            if let Some(usage) = usage {
                genai.push(int("gen_ai.usage.input_tokens", usage.prompt_tokens));
                genai.push(int("gen_ai.usage.output_tokens", usage.completion_tokens));
                if usage.cached_tokens > 0 {
                    genai.push(int("gen_ai.usage.cache_read.input_tokens", usage.cached_tokens));
                }
            }
        }
        let status = ending.outcome.status;
        let mut attributes = vec![
            text("http.request.method", ending.method.as_str()),
            text("url.path", ending.path),
            int("http.response.status_code", u64::from(status)),
            text("client.address", &ctx.client_addr.ip().to_string()),
            text("switchyard.route.id", &ctx.route_id),
            text("switchyard.request_id", ending.request_id),
            int("switchyard.attempts", u64::from(log.attempts)),
        ];
        if let Some(uri) = ending.route_uri {
            attributes.push(text("http.route", uri));
        }
        let accepted = self.attempts.last().filter(|a| !a.retried);
        let request_model = accepted.and_then(|a| a.request_model.as_deref());
        if log.provider.is_some() {
            if let Some(model) = request_model {
                attributes.push(text("gen_ai.request.model", model));
            }
            if let Some(model) = log.model.as_deref() {
                attributes.push(text("gen_ai.response.model", model));
            }
        }
        attributes.extend(genai.iter().cloned());
        if let Some(error) = &ending.outcome.error {
            attributes.push(text("error.type", error_type(status, ending.outcome.aborted)));
            attributes.push(text("switchyard.error", error));
        }
        let server = Span {
            trace_id: self.trace_id.to_vec(),
            span_id: self.span_id.to_vec(),
            trace_state: self.tracestate.as_ref().and_then(|s| s.to_str().ok()).unwrap_or_default().into(),
            parent_span_id: self.parent.map(|p| p.to_vec()).unwrap_or_default(),
            flags: 0x100 | u32::from(self.parent.is_some()) << 9 | 1,
            name: format!("{} {}", ending.method, ending.route_uri.unwrap_or(&ctx.route_id)),
            kind: SpanKind::Server as i32,
            start_time_unix_nano: self.start_unix_nanos,
            end_time_unix_nano: end,
            attributes,
            status: Some(span_status(status >= 500 || ending.outcome.aborted, ending.outcome.error.as_deref())),
            ..Span::default()
        };
        let mut spans = vec![server];
        for (i, attempt) in self.attempts.iter().enumerate() {
            spans.push(self.attempt_span(i, attempt, ctx, &genai, end));
        }
        spans
    }

    fn attempt_span(&self, index: usize, attempt: &Attempt, ctx: &Ctx, genai: &[KeyValue], end: u64) -> Span {
        let log = &ctx.log;
        let mut attributes = vec![
            text("switchyard.instance", &attempt.instance),
            int("switchyard.attempt", index as u64 + 1),
            text("http.request.method", attempt.method.as_str()),
        ];
        if let Some(server) = &attempt.server {
            attributes.push(text("server.address", server));
        }
        if let Some(status) = attempt.status {
            attributes.push(int("http.response.status_code", u64::from(status)));
        }
        let failed = attempt.retried || attempt.status.is_none_or(|s| s >= 400);
        if let (true, Some(result)) = (failed, attempt.result) {
            attributes.push(text("error.type", result));
        }
        if attempt.retried {
            attributes.push(text("switchyard.retry_reason", attempt.result.unwrap_or("error")));
        }
        let name = match (log.provider, &attempt.request_model) {
            (Some(_), Some(model)) => format!("{} {model}", log.operation.unwrap_or("chat")),
            (Some(_), None) => log.operation.unwrap_or("chat").to_string(),
            (None, _) => attempt.method.to_string(),
        };
        if log.provider.is_some() {
            if let Some(model) = &attempt.request_model {
                attributes.push(text("gen_ai.request.model", model));
            }
            if attempt.retried {
                // Usage and the response model belong to the answer that was relayed.
                attributes.extend(genai.iter().filter(|kv| !kv.key.starts_with("gen_ai.usage")).cloned());
            } else {
                if let Some(model) = log.model.as_deref() {
                    attributes.push(text("gen_ai.response.model", model));
                }
                attributes.extend(genai.iter().cloned());
            }
        }
        Span {
            trace_id: self.trace_id.to_vec(),
            span_id: attempt.span_id.to_vec(),
            trace_state: self.tracestate.as_ref().and_then(|s| s.to_str().ok()).unwrap_or_default().into(),
            parent_span_id: self.span_id.to_vec(),
            flags: 0x100 | 1,
            name,
            kind: SpanKind::Client as i32,
            start_time_unix_nano: attempt.start,
            end_time_unix_nano: attempt.end.unwrap_or(end),
            attributes,
            status: Some(span_status(failed, None)),
            ..Span::default()
        }
    }
}

/// `error.type` of a failed request: its status, or `aborted`.
fn error_type(status: u16, aborted: bool) -> &'static str {
    match (aborted, status) {
        (true, _) => "aborted",
        (_, 499) => "client_closed",
        (_, 502) => "502",
        (_, 503) => "503",
        (_, 504) => "504",
        (_, 500..=599) => "5xx",
        _ => "4xx",
    }
}

fn span_status(error: bool, message: Option<&str>) -> Status {
    match error {
        true => Status { code: status::StatusCode::Error as i32, message: message.unwrap_or_default().to_string() },
        false => Status::default(),
    }
}

pub fn text(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue { value: Some(any_value::Value::StringValue(value.to_string())) }),
        ..KeyValue::default()
    }
}

fn int(key: &str, value: u64) -> KeyValue {
    let value = i64::try_from(value).unwrap_or(i64::MAX);
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue { value: Some(any_value::Value::IntValue(value)) }),
        ..KeyValue::default()
    }
}
