//! Observability: the Prometheus exporter, OpenTelemetry traces, JSON access logs, probes.

mod dashboard;
mod json_log;
mod metrics;
mod model_api;
mod promtool;
mod status;
mod tracing;
