//! Every metric family a node exports, registered in the node's own registry: APISIX's names and
//! labels (so its dashboards and alert rules work unchanged), then switchyard's own.

use prometheus::{HistogramOpts, IntGauge, Opts, Registry};

use super::sharded::{self, CounterVec, Gauge, GaugeVec, HistogramVec, Sharded};

/// APISIX's latency buckets, in milliseconds.
pub const LATENCY_MS: [f64; 15] =
    [1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0, 10000.0, 30000.0, 60000.0];
/// Tokens per request.
const TOKENS: [f64; 12] =
    [10.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0, 10000.0, 20000.0, 50000.0, 100000.0];
/// The gateway's own share of a request, in seconds: 10 µs to 1 s.
const OVERHEAD_S: [f64; 14] =
    [1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 5e-2, 0.1, 1.0];
const RELOAD_S: [f64; 10] = [1e-4, 5e-4, 1e-3, 5e-3, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0];

/// Labels of `apisix_http_status`.
pub const STATUS_LABELS: [&str; 7] = ["code", "route", "matched_uri", "matched_host", "service", "consumer", "node"];
/// Labels of `apisix_http_latency` and `apisix_bandwidth`.
pub const HTTP_LABELS: [&str; 5] = ["type", "route", "service", "consumer", "node"];
/// Labels of the LLM family (`apisix_llm_*`), without `type`.
pub const LLM_LABELS: [&str; 7] =
    ["route_id", "service_id", "consumer", "node", "request_type", "request_llm_model", "llm_model"];

/// The families a request adds to are sharded per worker ([`sharded`]); the config ones, set by
/// one thread now and then, are the `prometheus` crate's own.
pub struct Families {
    pub http_status: CounterVec,
    pub http_latency: HistogramVec,
    pub bandwidth: CounterVec,
    pub http_requests_total: Gauge,
    pub llm_latency: HistogramVec,
    pub llm_prompt_tokens: CounterVec,
    pub llm_completion_tokens: CounterVec,
    pub llm_prompt_tokens_dist: HistogramVec,
    pub llm_completion_tokens_dist: HistogramVec,
    pub llm_active_connections: GaugeVec,
    pub model_api_requests: CounterVec,
    pub model_api_tokens: CounterVec,
    pub upstream_attempts: CounterVec,
    pub upstream_fallbacks: CounterVec,
    pub gateway_overhead: sharded::Histogram,
    pub config_revision: IntGauge,
    pub config_reload: prometheus::Histogram,
    pub config_rejected: IntGauge,
}

impl Families {
    /// Creates and registers every family in `registry` (the node's own); the per-request ones
    /// keep one cell per shard (see [`sharded::shards_for`]).
    pub fn register(registry: &Registry, shards: usize) -> prometheus::Result<Families> {
        let llm_with_type: Vec<&str> = std::iter::once("type").chain(LLM_LABELS).collect();
        let sharded = Sharded::new(shards);
        let families = Families {
            http_status: sharded.counters(
                Opts::new("apisix_http_status", "HTTP status codes per service in APISIX"),
                &STATUS_LABELS,
            )?,
            http_latency: sharded.histograms(
                HistogramOpts::new("apisix_http_latency", "HTTP request latency in milliseconds per service in APISIX")
                    .buckets(LATENCY_MS.to_vec()),
                &HTTP_LABELS,
            )?,
            bandwidth: sharded.counters(
                Opts::new("apisix_bandwidth", "Total bandwidth in bytes consumed per service in APISIX"),
                &HTTP_LABELS,
            )?,
            http_requests_total: sharded.gauge(
                Opts::new("apisix_http_requests_total", "The total number of client requests since APISIX started"),
                registry,
            )?,
            llm_latency: sharded.histograms(
                HistogramOpts::new("apisix_llm_latency", "LLM request latency in milliseconds")
                    .buckets(LATENCY_MS.to_vec()),
                &llm_with_type,
            )?,
            llm_prompt_tokens: sharded.counters(
                Opts::new("apisix_llm_prompt_tokens", "LLM service consumed prompt tokens"),
                &LLM_LABELS,
            )?,
            llm_completion_tokens: sharded.counters(
                Opts::new("apisix_llm_completion_tokens", "LLM service consumed completion tokens"),
                &LLM_LABELS,
            )?,
            llm_prompt_tokens_dist: sharded.histograms(
                HistogramOpts::new("apisix_llm_prompt_tokens_dist", "LLM prompt tokens per request")
                    .buckets(TOKENS.to_vec()),
                &LLM_LABELS,
            )?,
            llm_completion_tokens_dist: sharded.histograms(
                HistogramOpts::new("apisix_llm_completion_tokens_dist", "LLM completion tokens per request")
                    .buckets(TOKENS.to_vec()),
                &LLM_LABELS,
            )?,
            llm_active_connections: sharded.gauges(
                Opts::new("apisix_llm_active_connections", "Number of active connections to LLM service"),
                &LLM_LABELS,
            )?,
            model_api_requests: sharded.counters(
                Opts::new(
                    "switchyard_model_api_requests_total",
                    "Model API requests of authenticated callers, per model alias, API key id and status code",
                ),
                &["alias", "api_key_id", "code"],
            )?,
            model_api_tokens: sharded.counters(
                Opts::new(
                    "switchyard_model_api_tokens_total",
                    "Model API tokens per model alias and API key id, by type (prompt, completion)",
                ),
                &["alias", "api_key_id", "type"],
            )?,
            upstream_attempts: sharded.counters(
                Opts::new(
                    "switchyard_upstream_attempts_total",
                    "Upstream attempts per route and instance, by result (2xx, 4xx, 429, 5xx, connect_error, timeout, error)",
                ),
                &["route", "instance", "result"],
            )?,
            upstream_fallbacks: sharded.counters(
                Opts::new(
                    "switchyard_upstream_fallbacks_total",
                    "Attempts given up for another instance, per route and failed instance, by reason",
                ),
                &["route", "instance", "reason"],
            )?,
            gateway_overhead: sharded.histogram(
                HistogramOpts::new(
                    "switchyard_gateway_overhead_seconds",
                    "Time a request spent in the gateway itself: its duration less the time spent waiting for upstreams",
                )
                .buckets(OVERHEAD_S.to_vec()),
                registry,
            )?,
            config_revision: IntGauge::new(
                "switchyard_config_revision",
                "The config store revision this node has applied",
            )?,
            config_reload: prometheus::Histogram::with_opts(
                HistogramOpts::new("switchyard_config_reload_duration_seconds", "Time to build and publish a snapshot")
                    .buckets(RELOAD_S.to_vec()),
            )?,
            config_rejected: IntGauge::new(
                "switchyard_config_rejected_resources",
                "Stored resources skipped because they do not validate, in the live config",
            )?,
        };
        registry.register(Box::new(families.http_status.clone()))?;
        registry.register(Box::new(families.http_latency.clone()))?;
        registry.register(Box::new(families.bandwidth.clone()))?;
        registry.register(Box::new(families.llm_latency.clone()))?;
        registry.register(Box::new(families.llm_prompt_tokens.clone()))?;
        registry.register(Box::new(families.llm_completion_tokens.clone()))?;
        registry.register(Box::new(families.llm_prompt_tokens_dist.clone()))?;
        registry.register(Box::new(families.llm_completion_tokens_dist.clone()))?;
        registry.register(Box::new(families.llm_active_connections.clone()))?;
        registry.register(Box::new(families.model_api_requests.clone()))?;
        registry.register(Box::new(families.model_api_tokens.clone()))?;
        registry.register(Box::new(families.upstream_attempts.clone()))?;
        registry.register(Box::new(families.upstream_fallbacks.clone()))?;
        registry.register(Box::new(families.config_revision.clone()))?;
        registry.register(Box::new(families.config_reload.clone()))?;
        registry.register(Box::new(families.config_rejected.clone()))?;
        Ok(families)
    }
}
