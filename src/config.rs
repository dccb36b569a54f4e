//! The node config (`conf/config.yaml`): listeners, admin keys, store, provider hosts, logging.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::limits_store::config::RateLimitConfig;
use crate::observe::config::{AccessLogFormat, MetricsConfig, StatusConfig, TracingConfig};

/// The admin key shipped in `conf/config.yaml`: accepted on loopback listeners only.
pub const DEFAULT_ADMIN_KEY: &str = "admin-local-only-change-me";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The gateway group whose resources this node serves.
    pub gateway_group_id: String,
    pub proxy: ProxyConfig,
    pub admin: AdminConfig,
    pub store: StoreConfig,
    /// Per built-in provider: a replacement for its default host (mirrors, proxies, tests).
    pub providers: BTreeMap<String, ProviderConfig>,
    pub log: LogConfig,
    /// On SIGTERM or SIGINT: how long in-flight requests and streams may take to finish before
    /// they are cut (seconds in the file).
    #[serde(deserialize_with = "seconds")]
    pub shutdown_timeout: Duration,
    /// Observability (`src/observe/config.rs`): Prometheus exporter, probes, OpenTelemetry traces.
    pub metrics: MetricsConfig,
    pub status: StatusConfig,
    pub tracing: TracingConfig,
    /// The model API's `rate_limit` counters (`src/limits_store/config.rs`).
    pub rate_limit: RateLimitConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            gateway_group_id: "default".into(),
            proxy: ProxyConfig::default(),
            admin: AdminConfig::default(),
            store: StoreConfig::default(),
            providers: BTreeMap::new(),
            log: LogConfig::default(),
            shutdown_timeout: Duration::from_secs(30),
            metrics: MetricsConfig::default(),
            status: StatusConfig::default(),
            tracing: TracingConfig::default(),
            rate_limit: RateLimitConfig::default(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProxyConfig {
    pub listen: Vec<String>,
    /// The longest a client may take to send a request head: from accepting the connection for
    /// its first request, from the head's first byte on a kept-alive connection. Then the
    /// connection is closed. The admin listeners use the same value.
    #[serde(deserialize_with = "seconds")]
    pub client_header_timeout: Duration,
    /// The longest wait between two reads of a request body; then 408 and the connection closes.
    #[serde(deserialize_with = "seconds")]
    pub client_body_timeout: Duration,
    /// How long a connection may wait idle for its next request; 0 turns keep-alive off.
    #[serde(deserialize_with = "seconds")]
    pub keepalive_timeout: Duration,
    /// The largest request header field (name and value); a larger one is answered 431.
    pub max_header_field_bytes: usize,
    /// The largest request head (request line and every header field); a larger one is answered 431.
    pub max_request_head_bytes: usize,
    /// The most client connections the proxy listeners hold at once, lowered at start to what the
    /// open file limit allows (see `crate::limits`).
    pub max_connections: usize,
    /// Threads serving client connections, each with its own single-threaded runtime (see
    /// `crate::server`); 0: one per core.
    pub workers: usize,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        Self {
            listen: vec!["0.0.0.0:9080".into(), "0.0.0.0:3000".into()],
            client_header_timeout: Duration::from_secs(60),
            client_body_timeout: Duration::from_secs(60),
            keepalive_timeout: Duration::from_secs(75),
            max_header_field_bytes: 32 * 1024,
            max_request_head_bytes: 64 * 1024,
            max_connections: 10240,
            workers: 0,
        }
    }
}

/// The longest duration a config key may hold, so deadlines computed from it never overflow.
const MAX_SECONDS: f64 = 7.0 * 24.0 * 3600.0;

/// Reads a duration written as a number of seconds (`60`, `0.5`), refusing negative, infinite and
/// absurdly long values.
fn seconds<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    let value = f64::deserialize(deserializer)?;
    if !(0.0..=MAX_SECONDS).contains(&value) {
        return Err(serde::de::Error::custom(format!(
            "{value} is not a number of seconds between 0 and {MAX_SECONDS}"
        )));
    }
    Ok(Duration::from_secs_f64(value))
}

impl ProxyConfig {
    /// Checks the connection settings serde cannot: timeouts that must not be 0, and sizes.
    fn validate(&self) -> Result<(), ConfigFileError> {
        let invalid = |msg: &str| Err(ConfigFileError::Invalid(format!("proxy.{msg}")));
        if self.client_header_timeout.is_zero() || self.client_body_timeout.is_zero() {
            return invalid("client_header_timeout and client_body_timeout must be above 0 seconds");
        }
        if !(MIN_REQUEST_HEAD_BYTES..=MAX_REQUEST_HEAD_BYTES).contains(&self.max_request_head_bytes) {
            return invalid(&format!(
                "max_request_head_bytes must be between {MIN_REQUEST_HEAD_BYTES} and {MAX_REQUEST_HEAD_BYTES}"
            ));
        }
        if self.max_header_field_bytes == 0 || self.max_header_field_bytes > self.max_request_head_bytes {
            return invalid("max_header_field_bytes must be above 0 and at most max_request_head_bytes");
        }
        if self.max_connections == 0 {
            return invalid("max_connections must be at least 1");
        }
        if self.workers > MAX_WORKERS {
            return invalid(&format!("workers must be at most {MAX_WORKERS} (0: one per core)"));
        }
        Ok(())
    }

    /// How many proxy workers to start: `workers`, or one per core when it is 0.
    pub fn worker_count(&self) -> usize {
        match self.workers {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        }
    }
}

/// The most proxy workers a node starts: beyond a few per core they only add threads.
const MAX_WORKERS: usize = 1024;

/// Bounds of `proxy.max_request_head_bytes`: a head must hold a request line, and the whole head
/// is buffered in memory.
const MIN_REQUEST_HEAD_BYTES: usize = 1024;
const MAX_REQUEST_HEAD_BYTES: usize = 16 * 1024 * 1024;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    pub listen: Vec<String>,
    pub keys: Vec<String>,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self { listen: vec!["127.0.0.1:7080".into(), "127.0.0.1:3001".into()], keys: vec![DEFAULT_ADMIN_KEY.into()] }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum StoreBackend {
    #[default]
    Embedded,
    Etcd,
}

/// The key root of the embedded store: `<root>/<gateway_group_id>/<kind>/<id>`.
pub const EMBEDDED_STORE_ROOT: &str = "/switchyard";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    pub backend: StoreBackend,
    /// The embedded store's folder (its database file is `switchyard.redb` inside it). With etcd,
    /// the folder of the local snapshot cache (`etcd-cache.json`).
    pub path: PathBuf,
    pub etcd: EtcdConfig,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self { backend: StoreBackend::Embedded, path: PathBuf::from("data/"), etcd: EtcdConfig::default() }
    }
}

impl StoreConfig {
    /// The root every store key starts with: `store.etcd.prefix` on etcd, `/switchyard` embedded.
    /// Never ends with `/`.
    pub fn root(&self) -> String {
        match self.backend {
            StoreBackend::Embedded => EMBEDDED_STORE_ROOT.to_string(),
            StoreBackend::Etcd => self.etcd.prefix.trim_end_matches('/').to_string(),
        }
    }
}

/// `store.etcd`: used when `store.backend` is `etcd`.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EtcdConfig {
    /// `http://host:port` or `https://host:port` of each etcd member.
    pub endpoints: Vec<String>,
    /// The key root: resources live under `<prefix>/<gateway_group_id>/<kind>/<id>`.
    pub prefix: String,
    /// The longest wait for one etcd request (and for connecting), in milliseconds.
    pub timeout_ms: u64,
    pub user: Option<String>,
    pub password: Option<String>,
    /// PEM CA bundle that signs the etcd server certificates (TLS; `https://` endpoints).
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate and key, for etcd's client certificate authentication.
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
}

impl Default for EtcdConfig {
    fn default() -> Self {
        Self {
            endpoints: vec!["http://127.0.0.1:2379".into()],
            prefix: EMBEDDED_STORE_ROOT.into(),
            timeout_ms: 5000,
            user: None,
            password: None,
            ca_file: None,
            cert_file: None,
            key_file: None,
        }
    }
}

/// Written by hand so the password never reaches a log line.
impl std::fmt::Debug for EtcdConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdConfig")
            .field("endpoints", &self.endpoints)
            .field("prefix", &self.prefix)
            .field("timeout_ms", &self.timeout_ms)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("ca_file", &self.ca_file)
            .field("cert_file", &self.cert_file)
            .field("key_file", &self.key_file)
            .finish()
    }
}

impl EtcdConfig {
    /// Checks the etcd settings; runs at config load when the backend is etcd.
    fn validate(&self) -> Result<(), ConfigFileError> {
        let invalid = |msg: &str| Err(ConfigFileError::Invalid(format!("store.etcd.{msg}")));
        if self.endpoints.is_empty() {
            return invalid("endpoints must name at least one etcd URL");
        }
        if let Some(bad) = self.endpoints.iter().find(|e| !(e.starts_with("http://") || e.starts_with("https://"))) {
            return invalid(&format!("endpoints: `{bad}` must start with http:// or https://"));
        }
        let tls = self.ca_file.is_some() || self.cert_file.is_some();
        if tls && self.endpoints.iter().any(|e| e.starts_with("http://")) {
            return invalid("endpoints must all be https:// when ca_file or cert_file is set");
        }
        let prefix = self.prefix.trim_end_matches('/');
        if !prefix.starts_with('/') {
            return invalid("prefix must start with '/' and name a folder, such as /switchyard");
        }
        if self.timeout_ms == 0 {
            return invalid("timeout_ms must be at least 1");
        }
        if self.user.is_some() != self.password.is_some() {
            return invalid("user and password go together: set both or neither");
        }
        if self.cert_file.is_some() != self.key_file.is_some() {
            return invalid("cert_file and key_file go together: set both or neither");
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    pub base_url: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `error`, `warn`, `info`, `debug` or `trace` (or a tracing filter such as `switchyard=debug`).
    pub level: String,
    /// One line per proxied request, at target `access`.
    pub access_log: bool,
    /// `text` or `json` (one JSON object per line).
    pub access_log_format: AccessLogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self { level: "info".into(), access_log: true, access_log_format: AccessLogFormat::Text }
    }
}

/// Why a config cannot be used. The CLI exits with code 2 on any of these.
#[derive(Debug, thiserror::Error)]
pub enum ConfigFileError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("invalid config file {path}: {source}")]
    Parse { path: PathBuf, source: serde_norway::Error },
    #[error("invalid config: {0}")]
    Invalid(String),
}

impl Config {
    /// Reads and validates a YAML config file.
    pub fn load(path: &Path) -> Result<Self, ConfigFileError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigFileError::Read { path: path.to_path_buf(), source })?;
        let config: Config = if text.trim().is_empty() {
            Config::default()
        } else {
            serde_norway::from_str(&text)
                .map_err(|source| ConfigFileError::Parse { path: path.to_path_buf(), source })?
        };
        config.validate()?;
        Ok(config)
    }

    /// Checks what serde cannot: addresses parse, keys exist, and the shipped admin key is never
    /// exposed beyond loopback.
    pub fn validate(&self) -> Result<(), ConfigFileError> {
        let invalid = |msg: String| Err(ConfigFileError::Invalid(msg));
        if self.gateway_group_id.is_empty() || self.gateway_group_id.contains('/') {
            return invalid("gateway_group_id must be a non-empty name without '/'".into());
        }
        let proxy = parse_addrs("proxy.listen", &self.proxy.listen)?;
        let admin = parse_addrs("admin.listen", &self.admin.listen)?;
        if proxy.is_empty() {
            return invalid("proxy.listen must name at least one address".into());
        }
        self.proxy.validate()?;
        if self.admin.keys.is_empty() || self.admin.keys.iter().any(|k| k.trim().is_empty()) {
            return invalid("admin.keys must hold at least one non-empty key".into());
        }
        let exposed = admin.iter().find(|a| !a.ip().is_loopback());
        if let Some(addr) = exposed {
            if self.admin.keys.iter().any(|k| k == DEFAULT_ADMIN_KEY) {
                return invalid(format!(
                    "admin.listen has the non-loopback address {addr} while admin.keys holds the \
                     default key `{DEFAULT_ADMIN_KEY}`: set your own admin key first"
                ));
            }
        }
        if self.store.backend == StoreBackend::Etcd {
            self.store.etcd.validate()?;
        }
        self.metrics.addr()?;
        self.status.addr()?;
        self.tracing.validate()?;
        self.rate_limit.validate()?;
        for (name, provider) in &self.providers {
            if let Some(url) = &provider.base_url {
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    return invalid(format!("providers.{name}.base_url must start with http:// or https://"));
                }
            }
        }
        Ok(())
    }

    pub fn proxy_addrs(&self) -> Result<Vec<SocketAddr>, ConfigFileError> {
        parse_addrs("proxy.listen", &self.proxy.listen)
    }

    pub fn admin_addrs(&self) -> Result<Vec<SocketAddr>, ConfigFileError> {
        parse_addrs("admin.listen", &self.admin.listen)
    }
}

fn parse_addrs(field: &str, addrs: &[String]) -> Result<Vec<SocketAddr>, ConfigFileError> {
    addrs
        .iter()
        .map(|a| {
            a.parse()
                .map_err(|_| ConfigFileError::Invalid(format!("{field}: `{a}` is not an address like 0.0.0.0:9080")))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_documented_ports() {
        let config = Config::default();
        assert_eq!(config.proxy.listen, ["0.0.0.0:9080", "0.0.0.0:3000"]);
        assert_eq!(config.admin.listen, ["127.0.0.1:7080", "127.0.0.1:3001"]);
        assert!(config.validate().is_ok());
    }

    #[test]
    fn default_key_on_public_admin_listener_is_refused() {
        let mut config = Config::default();
        config.admin.listen = vec!["0.0.0.0:7080".into()];
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("default key"), "{err}");
        config.admin.keys = vec!["my-own-secret".into()];
        assert!(config.validate().is_ok());
    }

    #[test]
    fn etcd_settings_are_checked_and_the_password_is_never_printed() {
        let yaml = "store:\n  backend: etcd\n  etcd:\n    endpoints: [\"http://10.0.0.1:2379\"]\n    \
                    prefix: /sy/\n    user: root\n    password: hunter2\n";
        let config: Config = serde_norway::from_str(yaml).unwrap();
        assert!(config.validate().is_ok());
        assert_eq!(config.store.root(), "/sy");
        assert!(!format!("{config:?}").contains("hunter2"));

        let mut bad = config.clone();
        bad.store.etcd.password = None;
        assert!(bad.validate().unwrap_err().to_string().contains("user and password"));
        let mut bad = config.clone();
        bad.store.etcd.endpoints = vec!["10.0.0.1:2379".into()];
        assert!(bad.validate().unwrap_err().to_string().contains("http://"));
        let mut bad = config;
        bad.store.etcd.ca_file = Some("ca.pem".into());
        assert!(bad.validate().unwrap_err().to_string().contains("https://"));
        assert_eq!(Config::default().store.root(), "/switchyard");
    }

    #[test]
    fn the_shipped_config_file_loads_and_matches_the_defaults() {
        let config = Config::load(Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/conf/config.yaml"))).unwrap();
        let defaults = Config::default();
        assert_eq!(format!("{:?}", config.store), format!("{:?}", defaults.store));
        assert_eq!(format!("{:?}", config.proxy), format!("{:?}", defaults.proxy));
        assert_eq!(format!("{:?}", config.log), format!("{:?}", defaults.log));
        assert_eq!(format!("{:?}", config.metrics), format!("{:?}", defaults.metrics));
        assert_eq!(format!("{:?}", config.status), format!("{:?}", defaults.status));
        assert_eq!(format!("{:?}", config.tracing), format!("{:?}", defaults.tracing));
        assert_eq!(format!("{:?}", config.rate_limit), format!("{:?}", defaults.rate_limit));
        assert_eq!(config.shutdown_timeout, defaults.shutdown_timeout);
    }

    #[test]
    fn connection_settings_are_read_in_seconds_and_checked() {
        let yaml = "shutdown_timeout: 1.5\nproxy:\n  client_header_timeout: 0.25\n  keepalive_timeout: 0\n";
        let config: Config = serde_norway::from_str(yaml).unwrap();
        assert_eq!(config.shutdown_timeout, Duration::from_millis(1500));
        assert_eq!(config.proxy.client_header_timeout, Duration::from_millis(250));
        assert_eq!(config.proxy.keepalive_timeout, Duration::ZERO);
        assert!(config.validate().is_ok());

        let err = serde_norway::from_str::<Config>("proxy:\n  client_body_timeout: -1\n").unwrap_err();
        assert!(err.to_string().contains("seconds"), "{err}");
        assert!(serde_norway::from_str::<Config>("shutdown_timeout: .inf\n").is_err());
        let zero: Config = serde_norway::from_str("proxy:\n  client_body_timeout: 0\n").unwrap();
        assert!(zero.validate().unwrap_err().to_string().contains("client_body_timeout"));
        let tiny: Config = serde_norway::from_str("proxy:\n  max_request_head_bytes: 100\n").unwrap();
        assert!(tiny.validate().unwrap_err().to_string().contains("max_request_head_bytes"));
        let field: Config = serde_norway::from_str("proxy:\n  max_header_field_bytes: 70000\n").unwrap();
        assert!(field.validate().unwrap_err().to_string().contains("max_header_field_bytes"));
    }

    #[test]
    fn proxy_workers_default_to_one_per_core_and_are_bounded() {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        assert_eq!(Config::default().proxy.worker_count(), cores);
        let three: Config = serde_norway::from_str("proxy:\n  workers: 3\n").unwrap();
        assert!(three.validate().is_ok());
        assert_eq!(three.proxy.worker_count(), 3);
        let absurd: Config = serde_norway::from_str("proxy:\n  workers: 100000\n").unwrap();
        assert!(absurd.validate().unwrap_err().to_string().contains("proxy.workers must be at most 1024"));
        assert!(serde_norway::from_str::<Config>("proxy:\n  workers: -1\n").is_err());
    }

    #[test]
    fn the_rate_limit_redis_is_checked_and_its_password_never_printed() {
        let yaml = "rate_limit:\n  redis:\n    host: redis.internal\n    password: hunter2\n";
        let config: Config = serde_norway::from_str(yaml).unwrap();
        assert!(config.validate().is_ok());
        let redis = config.rate_limit.redis.as_ref().unwrap();
        assert_eq!((redis.port, redis.database, redis.timeout_ms, redis.ssl), (6379, 0, 1000, false));
        assert!(!format!("{config:?}").contains("hunter2"));
        let empty: Config = serde_norway::from_str("rate_limit:\n  redis:\n    host: ''\n").unwrap();
        assert!(empty.validate().unwrap_err().to_string().contains("rate_limit.redis.host"));
        assert!(serde_norway::from_str::<Config>("rate_limit:\n  redis:\n    hots: x\n").is_err());
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let err = serde_norway::from_str::<Config>("proxy:\n  listn: []\n").unwrap_err();
        assert!(err.to_string().contains("listn"));
    }
}
