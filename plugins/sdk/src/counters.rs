//! Counters that bound what callers spend (tokens, requests, requests in flight), lent by the core
//! to the plugins that limit. A plugin never talks to Redis itself: it asks its
//! [`BuildContext`](crate::BuildContext) for a [`CounterStore`] while its config compiles, and the
//! core implements it in process or with a pooled Redis client.
//!
//! The protocol is reserve, then settle: at admission a request reserves an estimate of its cost on
//! every counter that applies, atomically (all or none, at most one round trip: the Redis store
//! admits from a node's lease when it can); when it ends it settles each reservation to the real
//! cost (a refund or a further charge). Concurrent requests therefore cannot all pass a nearly
//! spent limit.

use std::time::Duration;

use async_trait::async_trait;

/// One counter to reserve on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counter {
    /// Names the counter; the store adds the window it falls in. Counters reserved together
    /// (and so settled together) must share a Redis hash tag (the part of the key in `{...}`):
    /// a Redis Cluster runs one admission's script on one node, which holds a slot whole.
    pub key: String,
    /// What the counter may hold. A reservation is admitted while the counter is below it, so the
    /// most a counter can reach is `limit` plus one reservation's cost.
    pub limit: u64,
    /// Fixed windows of this length, aligned to the Unix epoch; `None` for a gauge (requests in
    /// flight), which has no window and is settled back to zero by each request's end.
    pub window: Option<Duration>,
    /// What this request reserves on it.
    pub cost: u64,
}

/// Where one counter stands after an admission.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CounterState {
    pub limit: u64,
    /// What is left of the limit (0 when spent).
    pub remaining: u64,
    /// Until the window ends (zero for a gauge).
    pub reset: Duration,
}

/// The answer to a reservation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// Every counter took its cost. `keys` are the stored counters (window included), to settle
    /// with; `states` are in the order of the counters asked for.
    Admitted { keys: Vec<String>, states: Vec<CounterState> },
    /// Counter `index` was spent, so none was charged. `retry_after` is until its window ends
    /// (zero for a gauge: it frees when a request ends).
    Rejected { index: usize, state: CounterState, retry_after: Duration },
}

/// The store could not answer in time; the caller decides whether to serve anyway.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("counter store unavailable: {0}")]
pub struct CounterError(pub String);

/// Where counters live, as a limiting plugin's config names it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum CounterPolicy {
    /// In this process: exact for one node.
    Local,
    /// A Redis server shared by every node.
    Redis(RedisSettings),
    /// A Redis Cluster shared by every node.
    RedisCluster(RedisClusterSettings),
}

/// How to reach a Redis server.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct RedisSettings {
    pub host: String,
    pub port: u16,
    pub username: Option<String>,
    pub password: Option<String>,
    pub database: u32,
    /// The longest wait for a connection or an answer; then the store reports unavailable.
    pub timeout: Duration,
    pub ssl: bool,
    pub ssl_verify: bool,
}

impl std::fmt::Debug for RedisSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisSettings")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("database", &self.database)
            .field("ssl", &self.ssl)
            .finish_non_exhaustive()
    }
}

/// How to reach a Redis Cluster: any of its nodes, the others are found from them.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct RedisClusterSettings {
    /// `host:port` of one or more nodes.
    pub nodes: Vec<String>,
    /// The cluster's name (APISIX's `redis_cluster_name`): configs naming the same name and
    /// nodes share one client.
    pub name: String,
    pub username: Option<String>,
    pub password: Option<String>,
    /// The longest wait for a connection or an answer; then the store reports unavailable.
    pub timeout: Duration,
    pub ssl: bool,
    pub ssl_verify: bool,
}

impl std::fmt::Debug for RedisClusterSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisClusterSettings")
            .field("nodes", &self.nodes)
            .field("name", &self.name)
            .field("ssl", &self.ssl)
            .finish_non_exhaustive()
    }
}

/// A counter store. Object safe; the core's implementations share one store per distinct policy,
/// so counters survive reloads.
#[async_trait]
pub trait CounterStore: Send + Sync {
    /// Runs at admission: admits the request on every counter or on none, atomically.
    async fn reserve(&self, counters: &[Counter]) -> Result<Admission, CounterError>;

    /// Runs when a request ends: adds `delta` (negative: a refund) to each stored counter `keys`
    /// names. It does not wait: the core applies it in the background, and a counter whose window
    /// has expired meanwhile is left alone.
    fn settle(&self, adjustments: Vec<(String, i64)>);
}
