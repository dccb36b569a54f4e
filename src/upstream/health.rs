//! Health checks on a plain upstream's nodes (`checks`): the same passive observation and active
//! probes as `ai-proxy-multi` instances (one implementation, `switchyard_builtin::health`).
//! Probes run as background work the reload task starts for upstreams of the published snapshot.

use std::sync::Arc;

use http::uri::{Authority, Scheme};
use http::Uri;
use switchyard_builtin::health::active::{self, Probe};
use switchyard_builtin::health::checks::ChecksConfig;
use switchyard_builtin::health::{Health, TransportFailure};
use switchyard_sdk::{AttemptResult, BackgroundTask, ClientHandle, ConfigError, UpstreamIo};
use tokio::time::Instant;

/// Each node's health, and the probes that feed it.
pub struct NodeHealth {
    nodes: Vec<Arc<Health>>,
    /// Whether answers are observed (`checks.passive`).
    passive: bool,
    probes: Vec<Arc<Probe>>,
}

impl NodeHealth {
    /// Compiles `checks` (at `path`) for nodes at `authorities`. Pure: probes start later, as
    /// background work.
    pub fn new(
        checks: &ChecksConfig,
        authorities: &[Authority],
        scheme: &Scheme,
        client: &ClientHandle,
        path: &str,
    ) -> Result<NodeHealth, ConfigError> {
        let nodes =
            authorities.iter().map(|_| Arc::new(Health::new(checks.passive.clone().unwrap_or_default()))).collect();
        let mut probes = Vec::new();
        if let Some(config) = &checks.active {
            let here = switchyard_sdk::error::join_path(path, "checks.active");
            config.check().map_err(|e| e.within(&here))?;
            for authority in authorities {
                let endpoint = Uri::builder()
                    .scheme(scheme.clone())
                    .authority(authority.clone())
                    .path_and_query("/")
                    .build()
                    .map_err(|_| ConfigError::new(here.clone(), "does not make a valid probe URL"))?;
                let probe = Probe::new(config, &endpoint, client.clone()).map_err(|e| e.within(path))?;
                probes.push(Arc::new(probe));
            }
        }
        Ok(NodeHealth { nodes, passive: checks.passive.is_some(), probes })
    }

    /// Whether node `index` may be picked now.
    pub fn available(&self, index: usize) -> bool {
        let now = Instant::now();
        self.nodes.get(index).is_none_or(|health| health.available(now))
    }

    /// Records how an attempt on node `index` went (passive checks only).
    pub fn record(&self, index: usize, result: &AttemptResult<'_>) {
        let Some(health) = self.nodes.get(index).filter(|_| self.passive) else { return };
        let now = Instant::now();
        match result {
            AttemptResult::Response { status, headers, .. } => health.record_status(status.as_u16(), headers, now),
            AttemptResult::ConnectFailed => health.record_transport(TransportFailure::Connect, now),
            AttemptResult::TimedOut | AttemptResult::FirstEventTimedOut => {
                health.record_transport(TransportFailure::Timeout, now)
            }
            AttemptResult::Failed => health.record_transport(TransportFailure::Other, now),
            // Never sent: says nothing of the node.
            AttemptResult::Skipped => {}
        }
    }

    /// One probe loop per node, for the reload task to run while this upstream is live.
    pub fn background(&self, io: &Arc<dyn UpstreamIo>) -> Vec<BackgroundTask> {
        self.probes
            .iter()
            .zip(&self.nodes)
            .map(|(probe, health)| {
                Box::pin(active::run(Arc::clone(probe), Arc::clone(health), Arc::clone(io))) as BackgroundTask
            })
            .collect()
    }
}
