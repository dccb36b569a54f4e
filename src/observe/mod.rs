//! Observability: Prometheus metrics with APISIX's names ([`metrics`]), OpenTelemetry traces
//! ([`trace`]), the access log ([`access_log`]) and the status probes ([`status`]).
//!
//! The proxy calls the hooks below at fixed points of a request; each does nothing when its
//! feature is off. Metrics take no lock and allocate nothing per request once a route's series
//! exist; traces (when an endpoint is set) are queued for a task of their own.

pub mod access_format;
pub mod access_log;
pub mod config;
pub mod log_writer;
pub mod metrics;
pub mod status;
mod text_line;
pub mod trace;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use switchyard_sdk::{AttemptResult, Ctx, LogRecord, Outcome, UpstreamRequest, Verdict};

use self::config::AccessLogFormat;
use self::metrics::route::{attempt_result, Finished};
use self::metrics::Metrics;
use self::trace::span::Ending;
use self::trace::{Exporter, RequestTrace, Tracer};
use crate::compiled::CompiledRoute;
use crate::config::Config;
use crate::proxy::Finisher;
use crate::transport::Transport;

/// A node's observability: what is on, and the state each feature keeps.
pub struct Observe {
    pub metrics: Option<Metrics>,
    pub tracer: Option<Tracer>,
    /// `None` when the access log is off.
    pub access_log: Option<AccessLogFormat>,
    /// Set once the first config is live; `GET /status/ready` answers 200 from then on.
    ready: AtomicBool,
}

impl Observe {
    /// Builds what `config` turns on. The exporter, when tracing is on, is for the caller to run.
    pub fn new(config: &Config, transport: &Transport) -> Result<(Observe, Option<Exporter>), String> {
        let metrics = match config.metrics.enabled {
            true => Some(Metrics::new(config.proxy.worker_count()).map_err(|e| format!("metrics: {e}"))?),
            false => None,
        };
        let (tracer, exporter) = match Tracer::new(&config.tracing, transport)? {
            Some((tracer, exporter)) => (Some(tracer), Some(exporter)),
            None => (None, None),
        };
        let access_log = config.log.access_log.then_some(config.log.access_log_format);
        Ok((Observe { metrics, tracer, access_log, ready: AtomicBool::new(false) }, exporter))
    }

    /// Nothing recorded, nothing logged: for nodes and tests that want none of it.
    pub fn off() -> Observe {
        Observe { metrics: None, tracer: None, access_log: None, ready: AtomicBool::new(false) }
    }

    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::Release);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// A request reached a proxy listener, before routing.
    pub fn request_received(&self) {
        if let Some(metrics) = &self.metrics {
            metrics.request_received();
        }
    }

    /// A route matched: start the request's trace (continuing the client's, if it sent one).
    pub fn request_started(&self, ctx: &mut Ctx, head: &http::request::Parts) {
        if let Some(tracer) = &self.tracer {
            ctx.extensions.insert(RequestTrace::start(&head.headers, tracer.ratio, ctx.started));
        }
    }

    /// An attempt is about to be sent: its span starts, and its trace context goes with it.
    pub fn attempt_sending(&self, ctx: &mut Ctx, upstream: &mut UpstreamRequest) {
        if self.tracer.is_none() {
            return;
        }
        let Ctx { log, extensions, .. } = ctx;
        if let Some(trace) = extensions.get_mut::<RequestTrace>() {
            trace.attempt(log, upstream);
        }
    }

    /// The target judged an attempt: count it (and the fallback, when retried) and end its span.
    pub fn attempt_judged(&self, route: &CompiledRoute, ctx: &mut Ctx, result: &AttemptResult<'_>, verdict: Verdict) {
        let label = attempt_result(result);
        let retried = verdict == Verdict::Retry;
        if let Some(metrics) = &self.metrics {
            let instance = ctx.log.instance.as_deref().unwrap_or("");
            route.metrics.attempt(&metrics.families, route, instance, label, retried);
        }
        if let Some(trace) = ctx.extensions.get_mut::<RequestTrace>() {
            let status = match result {
                AttemptResult::Response { status, .. } => Some(status.as_u16()),
                _ => None,
            };
            trace.judged(label, status, retried);
        }
    }

    /// An upstream answer was accepted and starts towards the client: an LLM answer counts as
    /// active until the request ends, however it ends.
    pub fn response_started(&self, finisher: &Finisher, log: &LogRecord) {
        if let Some(metrics) = &self.metrics {
            if let Some(active) = finisher.route.metrics.llm_started(&metrics.families, &finisher.route, log) {
                // Set once per request: only one answer is ever accepted.
                let _ = finisher.llm_active.set(active);
            }
        }
    }

    /// The request is over (answered, failed, or cut): metrics, spans, access log line.
    pub fn finished(&self, finisher: &Finisher, ctx: &Ctx, outcome: &Outcome) {
        let total = ctx.started.elapsed();
        if let Some(metrics) = &self.metrics {
            let route = &finisher.route;
            let done = Finished {
                route,
                matched: finisher.matched,
                log: &ctx.log,
                status: outcome.status,
                request_bytes: finisher.request_bytes,
                response_bytes: outcome.body_bytes,
                total,
            };
            route.metrics.finished(&metrics.families, &done);
            if let Some(active) = finisher.llm_active.get() {
                active.dec();
            }
        }
        let trace = ctx.extensions.get::<RequestTrace>();
        let mut trace_id = None;
        if let (Some(tracer), Some(trace)) = (&self.tracer, trace) {
            trace_id = Some(trace::context::to_hex(&trace.trace_id));
            if trace.sampled {
                let request_id = String::from_utf8_lossy(finisher.request_id.as_bytes());
                let ending = Ending {
                    method: &finisher.method,
                    path: finisher.uri.path(),
                    route_uri: finisher.matched_uri(),
                    request_id: &request_id,
                    outcome,
                };
                tracer.submit(trace.spans(ctx, &ending));
            }
        }
        if let Some(format) = self.access_log {
            access_log::finished(format, finisher, ctx, outcome, total, trace_id.as_deref());
        }
    }

    /// The request ended before its response head: the client left (`status` 499) or shutdown
    /// cut it (444); `error` says which.
    pub fn abandoned(&self, finisher: &Finisher, started: Instant, status: u16, error: &'static str) {
        let total = started.elapsed();
        if let Some(metrics) = &self.metrics {
            let route = &finisher.route;
            let log = LogRecord::default();
            let done = Finished {
                route,
                matched: finisher.matched,
                log: &log,
                status,
                request_bytes: finisher.request_bytes,
                response_bytes: 0,
                total,
            };
            route.metrics.finished(&metrics.families, &done);
            if let Some(active) = finisher.llm_active.get() {
                active.dec();
            }
        }
        if let Some(format) = self.access_log {
            access_log::abandoned(format, finisher, total, status, error);
        }
    }
}
