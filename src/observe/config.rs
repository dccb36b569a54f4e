//! The node config's observability sections: `metrics`, `status` and `tracing` (and the access
//! log's format under `log`). Kept apart from `config.rs` so each section reads on its own.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use serde::Deserialize;

use crate::config::ConfigFileError;

/// `log.access_log_format`: how each access log line is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AccessLogFormat {
    /// `key=value` fields after the log prefix, as every other log line.
    #[default]
    Text,
    /// One JSON object per line, nothing else on it.
    Json,
}

/// `metrics`: the Prometheus exporter.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Off: no listener, and nothing is recorded.
    pub enabled: bool,
    /// The exporter's own listener (APISIX's default); it serves [`METRICS_PATH`] only.
    pub listen: String,
}

/// Where the exporter answers, as in APISIX, so existing scrape configs work unchanged.
pub const METRICS_PATH: &str = "/apisix/prometheus/metrics";

impl Default for MetricsConfig {
    fn default() -> Self {
        Self { enabled: true, listen: "127.0.0.1:9091".into() }
    }
}

/// `status`: the probe listener (`GET /status`, `GET /status/ready`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StatusConfig {
    pub enabled: bool,
    pub listen: String,
}

impl Default for StatusConfig {
    fn default() -> Self {
        Self { enabled: true, listen: "127.0.0.1:7085".into() }
    }
}

/// `tracing`: OpenTelemetry traces, exported over OTLP/HTTP (protobuf). Off while no endpoint is set.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TracingConfig {
    /// `service.name` of every exported span.
    pub service_name: String,
    /// The share of traces started here that are recorded (0.0 to 1.0). A client's `traceparent`
    /// decides for its own traces.
    pub sampler_ratio: f64,
    pub otlp: OtlpConfig,
    pub batch: BatchConfig,
}

impl Default for TracingConfig {
    fn default() -> Self {
        Self {
            service_name: "switchyard".into(),
            sampler_ratio: 1.0,
            otlp: OtlpConfig::default(),
            batch: BatchConfig::default(),
        }
    }
}

/// `tracing.otlp`: where spans go.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OtlpConfig {
    /// The collector's base URL (`http://otel-collector:4318`); spans are POSTed to `/v1/traces`.
    pub endpoint: Option<String>,
    /// Headers sent with every export (an API key for a hosted collector).
    pub headers: BTreeMap<String, String>,
    /// The longest wait for one export, in milliseconds.
    pub timeout_ms: u64,
}

/// Header values may hold credentials: only their names are printed.
impl std::fmt::Debug for OtlpConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OtlpConfig")
            .field("endpoint", &self.endpoint)
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .field("timeout_ms", &self.timeout_ms)
            .finish()
    }
}

/// `tracing.batch`: the export queue (OpenTelemetry's batch span processor settings).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BatchConfig {
    /// Spans waiting for export; when it is full, new spans are dropped and counted.
    pub max_queue_size: usize,
    /// Spans per export request.
    pub max_export_batch_size: usize,
    /// The longest a span waits before its batch is sent, in milliseconds.
    pub scheduled_delay_ms: u64,
}

impl Default for BatchConfig {
    fn default() -> Self {
        Self { max_queue_size: 2048, max_export_batch_size: 512, scheduled_delay_ms: 1000 }
    }
}

impl Default for OtlpConfig {
    fn default() -> Self {
        Self { endpoint: None, headers: BTreeMap::new(), timeout_ms: 10_000 }
    }
}

impl MetricsConfig {
    /// The exporter's address, when metrics are on.
    pub fn addr(&self) -> Result<Option<SocketAddr>, ConfigFileError> {
        optional_addr(self.enabled, "metrics.listen", &self.listen)
    }
}

impl StatusConfig {
    /// The probe listener's address, when it is on.
    pub fn addr(&self) -> Result<Option<SocketAddr>, ConfigFileError> {
        optional_addr(self.enabled, "status.listen", &self.listen)
    }
}

impl TracingConfig {
    /// The OTLP traces URL (`<endpoint>/v1/traces`), when tracing is on.
    pub fn traces_url(&self) -> Option<String> {
        let endpoint = self.otlp.endpoint.as_deref().map(str::trim).filter(|e| !e.is_empty())?;
        Some(format!("{}/v1/traces", endpoint.trim_end_matches('/')))
    }

    /// Checks what serde cannot; runs with the rest of the node config's validation.
    pub fn validate(&self) -> Result<(), ConfigFileError> {
        let invalid = |msg: &str| Err(ConfigFileError::Invalid(format!("tracing.{msg}")));
        if !(0.0..=1.0).contains(&self.sampler_ratio) {
            return invalid("sampler_ratio must be between 0.0 and 1.0");
        }
        if let Some(url) = self.traces_url() {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return invalid("otlp.endpoint must start with http:// or https://");
            }
            if url.parse::<http::Uri>().is_err() {
                return invalid("otlp.endpoint is not a valid URL");
            }
        }
        for (name, value) in &self.otlp.headers {
            if http::HeaderName::from_bytes(name.as_bytes()).is_err() || http::HeaderValue::from_str(value).is_err() {
                return invalid(&format!("otlp.headers.{name} is not a valid header"));
            }
        }
        if self.otlp.timeout_ms == 0 || self.batch.scheduled_delay_ms == 0 {
            return invalid("otlp.timeout_ms and batch.scheduled_delay_ms must be at least 1");
        }
        if self.batch.max_queue_size == 0 || self.batch.max_export_batch_size == 0 {
            return invalid("batch.max_queue_size and batch.max_export_batch_size must be at least 1");
        }
        Ok(())
    }
}

fn optional_addr(enabled: bool, field: &str, addr: &str) -> Result<Option<SocketAddr>, ConfigFileError> {
    if !enabled {
        return Ok(None);
    }
    addr.parse()
        .map(Some)
        .map_err(|_| ConfigFileError::Invalid(format!("{field}: `{addr}` is not an address like 127.0.0.1:9091")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracing_is_off_without_an_endpoint_and_checked_with_one() {
        let mut config = TracingConfig::default();
        assert_eq!(config.traces_url(), None);
        assert!(config.validate().is_ok());
        config.otlp.endpoint = Some("http://collector:4318/".into());
        assert_eq!(config.traces_url().as_deref(), Some("http://collector:4318/v1/traces"));
        config.sampler_ratio = 1.5;
        assert!(config.validate().unwrap_err().to_string().contains("sampler_ratio"));
        config.sampler_ratio = 0.5;
        config.otlp.endpoint = Some("collector:4318".into());
        assert!(config.validate().unwrap_err().to_string().contains("http://"));
    }

    #[test]
    fn header_values_are_never_printed() {
        let mut config = OtlpConfig::default();
        config.headers.insert("x-api-key".into(), "secret-value".into());
        let printed = format!("{config:?}");
        assert!(printed.contains("x-api-key") && !printed.contains("secret-value"), "{printed}");
    }

    #[test]
    fn listeners_take_port_zero_and_can_be_turned_off() {
        let metrics = MetricsConfig { enabled: true, listen: "127.0.0.1:0".into() };
        assert_eq!(metrics.addr().unwrap().map(|a| a.port()), Some(0));
        assert_eq!(MetricsConfig { enabled: false, ..metrics }.addr().unwrap(), None);
        assert!(StatusConfig { enabled: true, listen: "nowhere".into() }.addr().is_err());
    }
}
