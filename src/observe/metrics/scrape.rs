//! The exporter: what a scrape reads beyond the registry (instance health from the live
//! snapshot, store reachability, connections, node info), and the listener's handler.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use http::{header, Method, StatusCode};
use prometheus::core::Collector;
use prometheus::proto::MetricFamily;
use prometheus::{Encoder, GaugeVec, IntGaugeVec, Opts, TextEncoder};
use switchyard_sdk::InstanceState;

use super::Metrics;
use crate::observe::config::METRICS_PATH;
use crate::observe::Observe;
use crate::proxy::ResponseBody;
use crate::state::{LiveSnapshot, NodeStatus};
use crate::store::ConfigStore;

/// What a scrape reads besides the registry.
pub struct Sources {
    pub observe: Arc<Observe>,
    pub live: Arc<LiveSnapshot>,
    pub store: Arc<dyn ConfigStore>,
    pub status: Arc<NodeStatus>,
}

/// Serves the exporter listener: the metrics at [`METRICS_PATH`], 404 elsewhere.
pub async fn handle(
    sources: Arc<Sources>,
    req: hyper::Request<hyper::body::Incoming>,
) -> hyper::Response<ResponseBody> {
    let (status, content_type, body) = match (req.method(), req.uri().path(), sources.observe.metrics.as_ref()) {
        (&Method::GET, METRICS_PATH, Some(metrics)) => match metrics.render(&sources) {
            Ok(text) => (StatusCode::OK, TextEncoder::new().format_type().to_string(), Bytes::from(text)),
            Err(err) => {
                tracing::error!(error = %err, "cannot encode the metrics");
                (StatusCode::INTERNAL_SERVER_ERROR, "text/plain".into(), Bytes::from_static(b"cannot encode metrics\n"))
            }
        },
        _ => (StatusCode::NOT_FOUND, "text/plain".into(), Bytes::from_static(b"not found\n")),
    };
    let mut response = hyper::Response::new(ResponseBody::full(body));
    *response.status_mut() = status;
    if let Ok(value) = http::HeaderValue::from_str(&content_type) {
        response.headers_mut().insert(header::CONTENT_TYPE, value);
    }
    response
}

impl Metrics {
    /// The whole exposition, in Prometheus' text format. Runs per scrape, off the request path.
    pub fn render(&self, sources: &Sources) -> Result<String, prometheus::Error> {
        let mut families = self.registry.gather();
        families.extend(scraped(self, sources)?);
        // A family without series (no instance to report yet) would not encode.
        families.retain(|family| !family.get_metric().is_empty());
        families.sort_by(|a, b| a.name().cmp(b.name()));
        let mut buf = Vec::new();
        TextEncoder::new().encode(&families, &mut buf)?;
        Ok(String::from_utf8_lossy(&buf).into_owned())
    }
}

/// Families whose values are read at scrape time.
fn scraped(metrics: &Metrics, sources: &Sources) -> Result<Vec<MetricFamily>, prometheus::Error> {
    let mut out = Vec::new();
    let connected = i64::from(sources.store.connected());
    let single = |name: &str, help: &str, value: i64| -> Result<Vec<MetricFamily>, prometheus::Error> {
        let gauge = prometheus::IntGauge::new(name, help)?;
        gauge.set(value);
        Ok(gauge.collect())
    };
    out.extend(single(
        "apisix_etcd_reachable",
        "Config server etcd reachable from APISIX, 0 is unreachable",
        connected,
    )?);
    out.extend(single(
        "switchyard_store_connected",
        "Whether the node's last call reached its config store (1) or not (0)",
        connected,
    )?);
    out.extend(single(
        "switchyard_store_cached",
        "Whether the node serves its local snapshot cache because the store was down when it started",
        i64::from(sources.status.is_cached()),
    )?);

    let node_info = IntGaugeVec::new(Opts::new("apisix_node_info", "Info of APISIX node"), &["hostname", "version"])?;
    node_info.with_label_values(&[hostname().as_str(), env!("CARGO_PKG_VERSION")]).set(1);
    out.extend(node_info.collect());

    let connections =
        IntGaugeVec::new(Opts::new("apisix_nginx_http_current_connections", "Number of HTTP connections"), &["state"])?;
    let stats = &metrics.connections;
    let accepted = i64::try_from(stats.accepted.load(Ordering::Relaxed)).unwrap_or(i64::MAX);
    connections.with_label_values(&["accepted"]).set(accepted);
    connections.with_label_values(&["handled"]).set(accepted);
    connections.with_label_values(&["active"]).set(stats.active.load(Ordering::Relaxed));
    out.extend(connections.collect());

    out.extend(instance_health(sources)?);

    if let Some(tracer) = &sources.observe.tracer {
        let stats = &tracer.stats;
        let counter = |name: &str, help: &str, value: &std::sync::atomic::AtomicU64| {
            let counter = prometheus::IntCounter::new(name, help)?;
            counter.inc_by(value.load(Ordering::Relaxed));
            Ok::<_, prometheus::Error>(counter.collect())
        };
        out.extend(counter("switchyard_trace_spans_exported_total", "Spans the collector accepted", &stats.exported)?);
        out.extend(counter(
            "switchyard_trace_spans_dropped_total",
            "Spans dropped because the export queue was full or their export failed",
            &stats.dropped,
        )?);
        out.extend(counter(
            "switchyard_trace_exports_failed_total",
            "OTLP export requests that failed",
            &stats.failed_exports,
        )?);
    }
    Ok(out)
}

/// `switchyard_instance_health` (one series per state, 1 for the current one) and
/// `switchyard_instance_cooldown_seconds`, for every instance of every live route.
fn instance_health(sources: &Sources) -> Result<Vec<MetricFamily>, prometheus::Error> {
    let health = IntGaugeVec::new(
        Opts::new(
            "switchyard_instance_health",
            "Upstream instance health per route: 1 for its current state (healthy, cooling, down), 0 for the others",
        ),
        &["route", "instance", "state"],
    )?;
    let cooldown = GaugeVec::new(
        Opts::new("switchyard_instance_cooldown_seconds", "Seconds until a cooling instance returns to rotation"),
        &["route", "instance"],
    )?;
    #[expect(clippy::disallowed_methods, reason = "a scrape is where its read starts: one load per scrape")]
    let snapshot = sources.live.load();
    for route in snapshot.routes.values().map(|entry| &entry.compiled).filter(|route| route.enabled) {
        for plugin in route.chain.plugins() {
            for instance in plugin.instance_health() {
                let (current, back_in) = match instance.state {
                    InstanceState::Healthy => ("healthy", 0.0),
                    InstanceState::Cooling { back_in } => ("cooling", back_in.as_secs_f64()),
                    InstanceState::Down => ("down", 0.0),
                };
                for state in ["healthy", "cooling", "down"] {
                    let value = i64::from(state == current);
                    health.with_label_values(&[&*route.id, &*instance.instance, state]).set(value);
                }
                cooldown.with_label_values(&[&*route.id, &*instance.instance]).set(back_in);
            }
        }
    }
    let mut out = health.collect();
    out.extend(cooldown.collect());
    Ok(out)
}

/// This machine's name, for `apisix_node_info`.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".into())
}
