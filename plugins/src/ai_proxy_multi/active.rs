//! Active health checks: one background task per checked instance, started when the config is
//! compiled and ended when the compiled plugin goes away (the task holds only a weak reference).

use std::sync::{Arc, Weak};
use std::time::Duration;

use http::header::{HeaderName, HeaderValue};
use http::HeaderMap;

use super::config::ActiveConfig;
use super::health::Health;
use crate::client_pool::UpstreamClient;

/// Starts probing `target` (`scheme://host:port` of the instance) when a Tokio runtime is running.
pub fn spawn(health: &Arc<Health>, config: &ActiveConfig, target: &str, client: UpstreamClient) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
    let probe = Probe::new(config, target, client);
    let weak = Arc::downgrade(health);
    let config = config.clone();
    runtime.spawn(run(weak, config, probe));
}

async fn run(health: Weak<Health>, config: ActiveConfig, probe: Probe) {
    loop {
        let healthy = match health.upgrade() {
            Some(health) => !health.probed_down(),
            None => return,
        };
        let interval = if healthy { config.healthy.interval } else { config.unhealthy.interval };
        tokio::time::sleep(Duration::from_secs_f64(interval)).await;
        let outcome = probe.run(&config).await;
        let Some(health) = health.upgrade() else { return };
        let unhealthy_after = match outcome {
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

struct Probe {
    url: String,
    authority: String,
    headers: HeaderMap,
    client: UpstreamClient,
}

impl Probe {
    fn new(config: &ActiveConfig, target: &str, client: UpstreamClient) -> Self {
        let (scheme, authority) = target.split_once("://").unwrap_or(("http", target));
        let mut authority = authority.to_string();
        if let Some(port) = config.port {
            let host = authority.rsplit_once(':').map_or(authority.as_str(), |(h, _)| h).to_string();
            authority = format!("{host}:{port}");
        }
        let scheme = match config.kind.as_str() {
            "https" => "https",
            "http" => "http",
            _ => scheme,
        };
        let mut headers = HeaderMap::new();
        for line in &config.req_headers {
            if let Some((name, value)) = line.split_once(':') {
                if let (Ok(name), Ok(value)) =
                    (HeaderName::from_bytes(name.trim().as_bytes()), HeaderValue::from_str(value.trim()))
                {
                    headers.insert(name, value);
                }
            }
        }
        if let Some(host) = &config.host {
            if let Ok(host) = HeaderValue::from_str(host) {
                headers.insert(http::header::HOST, host);
            }
        }
        Self { url: format!("{scheme}://{authority}{}", config.http_path), authority, headers, client }
    }

    async fn run(&self, config: &ActiveConfig) -> ProbeOutcome {
        let timeout = Duration::from_secs_f64(config.timeout);
        if config.kind == "tcp" {
            return match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(&self.authority)).await {
                Ok(Ok(_)) => ProbeOutcome::Healthy,
                Ok(Err(_)) => ProbeOutcome::TcpFailure,
                Err(_) => ProbeOutcome::Timeout,
            };
        }
        let mut request = http::Request::new(http_body_util::Full::new(bytes::Bytes::new()));
        match self.url.parse() {
            Ok(uri) => *request.uri_mut() = uri,
            Err(_) => return ProbeOutcome::TcpFailure,
        }
        *request.headers_mut() = self.headers.clone();
        match tokio::time::timeout(timeout, self.client.request(request)).await {
            Err(_) => ProbeOutcome::Timeout,
            Ok(Err(_)) => ProbeOutcome::TcpFailure,
            Ok(Ok(response)) => {
                let status = response.status().as_u16();
                if config.healthy.http_statuses.contains(&status) {
                    ProbeOutcome::Healthy
                } else if config.unhealthy.http_statuses.contains(&status) {
                    ProbeOutcome::HttpFailure
                } else {
                    ProbeOutcome::Neutral
                }
            }
        }
    }
}
