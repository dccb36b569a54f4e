//! OTLP/HTTP export (protobuf): requests hand finished spans to a bounded queue without waiting;
//! a task of its own batches them and POSTs each batch to `<endpoint>/v1/traces`. A full queue
//! drops the span and counts it, so a slow or absent collector never slows a request.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, CONTENT_TYPE};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;
use switchyard_sdk::{BuildContext, ClientHandle, ClientSettings, UpstreamRequest};
use tokio::sync::{mpsc, watch};

use super::span::text;
use crate::observe::config::TracingConfig;
use crate::transport::send::{read_all, send};
use crate::transport::Transport;

/// What the exporter has done, for the metrics.
#[derive(Debug, Default)]
pub struct ExportStats {
    pub exported: AtomicU64,
    pub dropped: AtomicU64,
    pub failed_exports: AtomicU64,
}

/// The request side of the exporter: where finished spans go.
pub struct Tracer {
    queue: mpsc::Sender<Span>,
    pub stats: Arc<ExportStats>,
    pub ratio: f64,
}

/// The exporter's side: the queue's other end and how to reach the collector.
pub struct Exporter {
    queue: mpsc::Receiver<Span>,
    stats: Arc<ExportStats>,
    url: http::Uri,
    headers: http::HeaderMap,
    client: ClientHandle,
    timeout: Duration,
    batch_size: usize,
    delay: Duration,
    resource: Resource,
}

impl Tracer {
    /// The tracer and its exporter, when `config` names an endpoint (tracing is off otherwise).
    pub fn new(config: &TracingConfig, transport: &Transport) -> Result<Option<(Tracer, Exporter)>, String> {
        let Some(url) = config.traces_url() else { return Ok(None) };
        let url: http::Uri = url.parse().map_err(|e| format!("tracing.otlp.endpoint: {e}"))?;
        let mut headers = http::HeaderMap::new();
        for (name, value) in &config.otlp.headers {
            let name = HeaderName::from_bytes(name.as_bytes()).map_err(|e| format!("tracing.otlp.headers: {e}"))?;
            let value = HeaderValue::from_str(value).map_err(|e| format!("tracing.otlp.headers.{name}: {e}"))?;
            headers.insert(name, value);
        }
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/x-protobuf"));
        let client = transport.client(ClientSettings {
            connect_timeout_ms: config.otlp.timeout_ms,
            keepalive: true,
            keepalive_timeout_ms: 60_000,
            keepalive_pool: 2,
            max_requests_per_connection: 0,
            ssl_verify: true,
        })?;
        let (tx, rx) = mpsc::channel(config.batch.max_queue_size);
        let stats = Arc::new(ExportStats::default());
        let resource = Resource {
            attributes: vec![
                text("service.name", &config.service_name),
                text("service.version", env!("CARGO_PKG_VERSION")),
                text("telemetry.sdk.name", "switchyard"),
                text("telemetry.sdk.language", "rust"),
            ],
            ..Resource::default()
        };
        let exporter = Exporter {
            queue: rx,
            stats: Arc::clone(&stats),
            url,
            headers,
            client,
            timeout: Duration::from_millis(config.otlp.timeout_ms),
            batch_size: config.batch.max_export_batch_size,
            delay: Duration::from_millis(config.batch.scheduled_delay_ms),
            resource,
        };
        Ok(Some((Tracer { queue: tx, stats, ratio: config.sampler_ratio }, exporter)))
    }

    /// Queues finished spans for export; never waits. A full queue drops them and counts them.
    pub fn submit(&self, spans: Vec<Span>) {
        for span in spans {
            if self.queue.try_send(span).is_err() {
                self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

impl Exporter {
    /// Runs until `shutdown` flips: sends a batch when it is full or its oldest span has waited
    /// `scheduled_delay_ms`, then what is left on the way out.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let mut batch: Vec<Span> = Vec::with_capacity(self.batch_size);
        loop {
            let deadline = tokio::time::sleep(self.delay);
            tokio::pin!(deadline);
            // Wait for a first span, then fill the batch until it is full or due.
            loop {
                tokio::select! {
                    span = self.queue.recv() => match span {
                        Some(span) => {
                            batch.push(span);
                            if batch.len() >= self.batch_size {
                                break;
                            }
                        }
                        None => {
                            self.export(std::mem::take(&mut batch)).await;
                            return;
                        }
                    },
                    _ = &mut deadline, if !batch.is_empty() => break,
                    _ = shutdown.changed() => {
                        while let Ok(span) = self.queue.try_recv() {
                            batch.push(span);
                        }
                        for chunk in std::mem::take(&mut batch).chunks(self.batch_size) {
                            self.export(chunk.to_vec()).await;
                        }
                        return;
                    }
                }
            }
            self.export(std::mem::replace(&mut batch, Vec::with_capacity(self.batch_size))).await;
        }
    }

    /// POSTs one batch. A failure drops the batch (and counts it): a collector that is down must
    /// not make spans pile up.
    async fn export(&self, spans: Vec<Span>) {
        if spans.is_empty() {
            return;
        }
        let count = spans.len() as u64;
        let request = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(self.resource.clone()),
                scope_spans: vec![ScopeSpans {
                    scope: Some(InstrumentationScope {
                        name: "switchyard".into(),
                        version: env!("CARGO_PKG_VERSION").into(),
                        ..InstrumentationScope::default()
                    }),
                    spans,
                    ..ScopeSpans::default()
                }],
                ..ResourceSpans::default()
            }],
        };
        let upstream = UpstreamRequest {
            method: http::Method::POST,
            url: self.url.clone(),
            headers: self.headers.clone(),
            body: Bytes::from(request.encode_to_vec()),
            client: self.client.clone(),
            timeout: self.timeout,
            max_duration: None,
            max_response_bytes: None,
            flush_interval: None,
            timing: Default::default(),
            label: Arc::from("otlp"),
            credentials: None,
        };
        let outcome = match send(upstream).await {
            Ok(response) => {
                let status = response.status();
                // Read the (small) answer so the connection can be reused.
                let _ = read_all(response, self.timeout, 64 * 1024).await;
                if status.is_success() {
                    Ok(())
                } else {
                    Err(format!("the collector answered {status}"))
                }
            }
            Err(err) => Err(err.detail()),
        };
        match outcome {
            Ok(()) => {
                self.stats.exported.fetch_add(count, Ordering::Relaxed);
            }
            Err(error) => {
                self.stats.failed_exports.fetch_add(1, Ordering::Relaxed);
                self.stats.dropped.fetch_add(count, Ordering::Relaxed);
                tracing::warn!(%error, spans = count, "OTLP trace export failed; spans dropped");
            }
        }
    }
}
