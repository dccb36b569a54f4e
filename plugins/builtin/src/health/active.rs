//! Active health checks: background work that the core runs for each checked instance while its
//! compiled plugin is live (declared by `Plugin::background`, never started by `build`).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use http::uri::{Authority, Scheme};
use http::{HeaderMap, Method, Uri};
use switchyard_sdk::{AttemptTiming, ClientHandle, ConfigError, SendError, UpstreamIo, UpstreamRequest};

use super::checks::ActiveConfig;
use super::Health;

/// Probes one instance until the core drops this future.
pub async fn run(probe: Arc<Probe>, health: Arc<Health>, io: Arc<dyn UpstreamIo>) {
    let config = &probe.config;
    loop {
        let interval = if health.probed_down() { config.unhealthy.interval } else { config.healthy.interval };
        tokio::time::sleep(Duration::from_secs_f64(interval)).await;
        let unhealthy_after = match probe.run(io.as_ref()).await {
            ProbeOutcome::Healthy => {
                health.record_probe(true, config.healthy.successes, u32::MAX);
                continue;
            }
            ProbeOutcome::HttpFailure => config.unhealthy.http_failures,
            ProbeOutcome::TcpFailure => config.unhealthy.tcp_failures,
            ProbeOutcome::Timeout => config.unhealthy.timeouts,
            ProbeOutcome::Neutral => continue,
        };
        health.record_probe(false, config.healthy.successes, unhealthy_after);
    }
}

enum ProbeOutcome {
    Healthy,
    HttpFailure,
    TcpFailure,
    Timeout,
    /// A status in neither list: no verdict.
    Neutral,
}

/// One instance's probe, compiled with the plugin: the URL is built once.
pub struct Probe {
    config: ActiveConfig,
    uri: Uri,
    authority: Authority,
    headers: HeaderMap,
    client: ClientHandle,
}

impl Probe {
    /// Compiles `checks.active` against the instance's endpoint: same scheme and host unless the
    /// config names others (`type`, `port`). Errors are relative to `checks.active`.
    pub fn new(config: &ActiveConfig, endpoint: &Uri, client: ClientHandle) -> Result<Probe, ConfigError> {
        let invalid = || ConfigError::new("checks.active", "does not make a valid probe URL for this instance");
        let endpoint_authority = endpoint.authority().ok_or_else(invalid)?;
        let authority = match config.port {
            Some(port) => {
                let host = endpoint_authority.host();
                let host = if host.contains(':') && !host.starts_with('[') { format!("[{host}]") } else { host.into() };
                format!("{host}:{port}").parse().map_err(|_| invalid())?
            }
            None => endpoint_authority.clone(),
        };
        let scheme = match config.kind.as_str() {
            "https" => Scheme::HTTPS,
            "http" => Scheme::HTTP,
            _ => endpoint.scheme().cloned().unwrap_or(Scheme::HTTP),
        };
        let uri = Uri::builder()
            .scheme(scheme)
            .authority(authority.clone())
            .path_and_query(config.http_path.as_str())
            .build()
            .map_err(|_| ConfigError::new("checks.active.http_path", "is not a valid path"))?;
        let mut headers = HeaderMap::new();
        for (i, line) in config.req_headers.iter().enumerate() {
            let here = || ConfigError::new(format!("checks.active.req_headers[{i}]"), "must be `Name: value`");
            let (name, value) = line.split_once(':').ok_or_else(here)?;
            let name = HeaderName::from_bytes(name.trim().as_bytes()).map_err(|_| here())?;
            let value = HeaderValue::from_str(value.trim()).map_err(|_| here())?;
            headers.insert(name, value);
        }
        if let Some(host) = &config.host {
            let host = HeaderValue::from_str(host)
                .map_err(|_| ConfigError::new("checks.active.host", "is not a valid host"))?;
            headers.insert(http::header::HOST, host);
        }
        Ok(Probe { config: config.clone(), uri, authority, headers, client })
    }

    async fn run(&self, io: &dyn UpstreamIo) -> ProbeOutcome {
        let timeout = Duration::from_secs_f64(self.config.timeout);
        if self.config.kind == "tcp" {
            return match io.connect(self.authority.as_str(), timeout).await {
                Ok(()) => ProbeOutcome::Healthy,
                Err(SendError::Timeout) => ProbeOutcome::Timeout,
                Err(_) => ProbeOutcome::TcpFailure,
            };
        }
        let request = UpstreamRequest {
            method: Method::GET,
            url: self.uri.clone(),
            headers: self.headers.clone(),
            body: Bytes::new(),
            client: self.client.clone(),
            timeout,
            max_duration: None,
            max_response_bytes: None,
            flush_interval: None,
            label: Arc::from("active-check"),
            timing: AttemptTiming::default(),
            credentials: None,
        };
        match io.status(request).await {
            Err(SendError::Timeout) => ProbeOutcome::Timeout,
            Err(_) => ProbeOutcome::TcpFailure,
            Ok(status) => {
                let status = status.as_u16();
                if self.config.healthy.http_statuses.contains(&status) {
                    ProbeOutcome::Healthy
                } else if self.config.unhealthy.http_statuses.contains(&status) {
                    ProbeOutcome::HttpFailure
                } else {
                    ProbeOutcome::Neutral
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(active: serde_json::Value, endpoint: &str) -> Result<Probe, ConfigError> {
        let config: ActiveConfig = serde_json::from_value(active).unwrap();
        Probe::new(&config, &endpoint.parse().unwrap(), ClientHandle::new(()))
    }

    #[test]
    fn probe_urls_keep_ipv6_literals_whole() {
        let same_port = probe(serde_json::json!({"http_path": "/health"}), "http://[::1]:8080/v1/chat").unwrap();
        assert_eq!(same_port.uri, "http://[::1]:8080/health");
        let other_port =
            probe(serde_json::json!({"port": 9000, "type": "https"}), "http://[2001:db8::1]:80/v1").unwrap();
        assert_eq!(other_port.uri, "https://[2001:db8::1]:9000/");
        assert_eq!(other_port.authority.as_str(), "[2001:db8::1]:9000");
        let named = probe(serde_json::json!({"port": 81, "type": "https"}), "http://llm.internal/v1").unwrap();
        assert_eq!(named.uri, "https://llm.internal:81/");
    }

    #[test]
    fn bad_probe_headers_are_refused_naming_the_entry() {
        let err = probe(serde_json::json!({"req_headers": ["no colon"]}), "http://h/v1").err().unwrap();
        assert_eq!(err.path, "checks.active.req_headers[0]");
    }
}
