//! The Prometheus side: a registry per node (never process-global, so several nodes in one
//! process keep their own counts), the families it exports, per-route series resolved without a
//! lock ([`route`]), and what is read only when the exporter is scraped ([`scrape`]).

pub mod families;
pub mod route;
pub mod scrape;
pub mod series;
pub mod sharded;

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use prometheus::{IntGaugeVec, Opts, Registry};

use self::families::Families;
use crate::mirror::Mirror;
use crate::resource::parse_key;
use crate::snapshot::Snapshot;

/// Client connections of the listeners that count them (the proxy's).
#[derive(Debug, Default)]
pub struct Connections {
    accepted: AtomicU64,
    active: AtomicI64,
}

impl Connections {
    /// Counts a connection just accepted; dropping the guard counts it closed.
    pub fn opened(self: &Arc<Self>) -> ConnectionGuard {
        self.accepted.fetch_add(1, Ordering::Relaxed);
        self.active.fetch_add(1, Ordering::Relaxed);
        ConnectionGuard(Arc::clone(self))
    }
}

/// Held by a connection's task for as long as it lives.
pub struct ConnectionGuard(Arc<Connections>);

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A node's metrics.
pub struct Metrics {
    registry: Registry,
    pub families: Families,
    pub connections: Arc<Connections>,
    /// `apisix_etcd_modify_indexes`: per resource kind, set when a snapshot is published.
    modify_indexes: IntGaugeVec,
}

impl Metrics {
    /// A node's metrics, its per-request series sharded for `workers` proxy workers.
    pub fn new(workers: usize) -> Result<Metrics, prometheus::Error> {
        let registry = Registry::new();
        let families = Families::register(&registry, sharded::shards_for(workers))?;
        let modify_indexes = IntGaugeVec::new(
            Opts::new("apisix_etcd_modify_indexes", "Latest modify index of each kind of resource in the config store"),
            &["key"],
        )?;
        registry.register(Box::new(modify_indexes.clone()))?;
        Ok(Metrics { registry, families, connections: Arc::default(), modify_indexes })
    }

    /// A proxy request arrived (`apisix_http_requests_total`), before routing.
    pub fn request_received(&self) {
        self.families.http_requests_total.inc();
    }

    /// Runs after a snapshot built from `mirror` went live: at start (`took` is `None`) and after
    /// each reload (which took `took` to build and publish).
    pub fn config_applied(&self, mirror: &Mirror, group_prefix: &str, snapshot: &Snapshot, took: Option<Duration>) {
        let families = &self.families;
        families.config_revision.set(i64::try_from(mirror.revision).unwrap_or(i64::MAX));
        if let Some(took) = took {
            families.config_reload.observe(took.as_secs_f64());
        }
        families.config_rejected.set(snapshot.rejected.len() as i64);
        let mut latest: std::collections::BTreeMap<&str, u64> = std::collections::BTreeMap::new();
        for kv in mirror.resources.values() {
            if let Some((kind, _)) = parse_key(group_prefix, &kv.key) {
                let index = latest.entry(kind).or_default();
                *index = (*index).max(kv.mod_revision);
            }
        }
        let max = latest.values().copied().max().unwrap_or(0);
        self.modify_indexes.reset();
        let gauge = |key: &str, value: u64| {
            self.modify_indexes.with_label_values(&[key]).set(i64::try_from(value).unwrap_or(i64::MAX));
        };
        for (kind, index) in latest {
            gauge(kind, index);
        }
        gauge("max_modify_index", max);
        gauge("x_etcd_index", mirror.revision);
    }
}
