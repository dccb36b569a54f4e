//! Counters in Redis, shared by every node: one server-side script call admits a request (all of
//! its counters or none) and one settles it, with `timeout` on connecting and on every answer.
//! Each call also draws a lease on a busy windowed counter, so that most admissions are then
//! answered in process ([`lease`]).
//! A single server is reached over one multiplexed, self-reconnecting connection
//! (`redis::aio::ConnectionManager`), and the calls of concurrent requests share round trips
//! ([`batch`]). A Redis Cluster is reached through the `redis` crate's cluster client, which
//! routes each call to the node holding its keys' slot (the keys of one admission share a hash
//! tag, see `switchyard_sdk::Counter::key`) and follows the cluster's topology; there each
//! request makes its own calls, since concurrent requests' keys live on different nodes.

mod batch;
mod lease;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::{
    ConnectionAddr, ConnectionInfo, FromRedisValue, IntoConnectionInfo, RedisConnectionInfo, RedisResult,
    ScriptInvocation, TlsMode,
};
use switchyard_sdk::{Admission, Counter, CounterError, CounterStore, RedisClusterSettings, RedisSettings};
use tokio::sync::OnceCell;

use self::batch::{Batch, Reservation};
use self::lease::{Leases, Part, Taken};
use super::{now_ms, state, windowed};

/// Where the counters live.
enum Server {
    Single { addr: ConnectionAddr, redis: RedisConnectionInfo },
    Cluster(RedisClusterSettings),
}

/// An open connection, of either kind (both multiplexed and cheap to clone).
#[derive(Clone)]
enum Connection {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl Connection {
    async fn invoke<T: FromRedisValue>(&mut self, invocation: &ScriptInvocation<'_>) -> RedisResult<T> {
        match self {
            Connection::Single(connection) => invocation.invoke_async(connection).await,
            Connection::Cluster(connection) => invocation.invoke_async(connection).await,
        }
    }
}

pub struct RedisCounters {
    server: Server,
    timeout: Duration,
    connection: OnceCell<Connection>,
    batch: Arc<Batch>,
    leases: Leases,
}

impl RedisCounters {
    /// Runs when a config naming this server first compiles: connects on first use, not here.
    pub fn new(settings: &RedisSettings) -> Self {
        let addr = if settings.ssl {
            ConnectionAddr::TcpTls {
                host: settings.host.clone(),
                port: settings.port,
                insecure: !settings.ssl_verify,
                tls_params: None,
            }
        } else {
            ConnectionAddr::Tcp(settings.host.clone(), settings.port)
        };
        let mut redis = RedisConnectionInfo::default().set_db(i64::from(settings.database));
        if let Some(username) = &settings.username {
            redis = redis.set_username(username);
        }
        if let Some(password) = &settings.password {
            redis = redis.set_password(password);
        }
        Self::serving(Server::Single { addr, redis }, settings.timeout)
    }

    /// As [`RedisCounters::new`], for a Redis Cluster.
    pub fn cluster(settings: &RedisClusterSettings) -> Self {
        Self::serving(Server::Cluster(settings.clone()), settings.timeout)
    }

    fn serving(server: Server, timeout: Duration) -> Self {
        Self { server, timeout, connection: OnceCell::new(), batch: Batch::new(timeout), leases: Leases::default() }
    }

    /// Opens a connection to the server, or to the cluster (its topology read from the nodes).
    async fn connect(&self) -> RedisResult<Connection> {
        match &self.server {
            Server::Single { addr, redis } => {
                let info = IntoConnectionInfo::into_connection_info(addr.clone())
                    .map(|info: ConnectionInfo| info.set_redis_settings(redis.clone()))?;
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(self.timeout))
                    .set_response_timeout(Some(self.timeout))
                    .set_number_of_retries(1);
                let client = redis::Client::open(info)?;
                Ok(Connection::Single(ConnectionManager::new_with_config(client, config).await?))
            }
            Server::Cluster(settings) => {
                let scheme = if settings.ssl { "rediss" } else { "redis" };
                let nodes = settings.nodes.iter().map(|node| format!("{scheme}://{node}"));
                let mut builder = ClusterClientBuilder::new(nodes)
                    .connection_timeout(self.timeout)
                    .response_timeout(self.timeout)
                    .retries(1);
                if settings.ssl {
                    builder = builder.tls(if settings.ssl_verify { TlsMode::Secure } else { TlsMode::Insecure });
                }
                if let Some(username) = &settings.username {
                    builder = builder.username(username);
                }
                if let Some(password) = &settings.password {
                    builder = builder.password(password);
                }
                Ok(Connection::Cluster(builder.build()?.get_async_connection().await?))
            }
        }
    }

    /// The shared connection, opened on first use (again after a failed first try).
    async fn connection(&self) -> Result<Connection, CounterError> {
        let connect = async {
            tokio::time::timeout(self.timeout, self.connect())
                .await
                .map_err(|_| CounterError("timed out connecting to Redis".into()))?
                .map_err(|e| CounterError(e.to_string()))
        };
        self.connection.get_or_try_init(|| connect).await.cloned()
    }
}

/// Gives back what an admission took from its leases unless it was admitted: also when the
/// request is dropped while it waits for Redis.
struct Pending<'a> {
    leases: &'a Leases,
    keyed: &'a [(String, Duration)],
    parts: &'a [Part],
    admitted: bool,
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        if !self.admitted {
            self.leases.give_back(self.keyed, self.parts);
        }
    }
}

#[async_trait]
impl CounterStore for RedisCounters {
    async fn reserve(&self, counters: &[Counter]) -> Result<Admission, CounterError> {
        let now_ms = now_ms();
        let keyed: Vec<(String, Duration)> = counters.iter().map(|c| windowed(&c.key, c.window, now_ms)).collect();
        let parts = match self.leases.take(counters, &keyed) {
            Taken::Admitted(states) => {
                return Ok(Admission::Admitted { keys: keyed.into_iter().map(|(key, _)| key).collect(), states })
            }
            Taken::Draw(parts) => parts,
        };
        let mut pending = Pending { leases: &self.leases, keyed: &keyed, parts: &parts, admitted: false };
        // Which counter each sent one is.
        let sent: Vec<usize> = (0..counters.len()).filter(|&i| parts[i].sent).collect();
        let reservations = sent
            .iter()
            .map(|&i| Reservation {
                key: keyed[i].0.clone(),
                limit: counters[i].limit,
                ttl_ms: keyed[i].1.as_millis().max(1) as u64,
                cost: parts[i].charge,
                gauge: counters[i].window.is_none(),
                ask: parts[i].ask,
            })
            .collect();
        let answer = async {
            let mut connection = self.connection().await?;
            match &connection {
                Connection::Single(_) => self.batch.admit(&connection, reservations).await,
                Connection::Cluster(_) => {
                    let mut answers = self.batch.round_trip(&mut connection, &[], &[&reservations]).await?;
                    Ok(answers.pop().unwrap_or_default())
                }
            }
        };
        let answer = tokio::time::timeout(self.timeout, answer)
            .await
            .map_err(|_| CounterError("timed out waiting for Redis".into()))??;
        let number = |i: usize| answer.get(i).copied().unwrap_or(0).max(0) as u64;
        if number(0) == 0 {
            let spent = (number(1) as usize).saturating_sub(1).min(sent.len().saturating_sub(1));
            let index = *sent.get(spent).ok_or_else(|| CounterError("no counter".into()))?;
            let counter = &counters[index];
            let gauge = counter.window.is_none();
            let left = keyed[index].1;
            let state = state(counter.limit, number(2), left, gauge);
            return Ok(Admission::Rejected { index, state, retry_after: if gauge { Duration::ZERO } else { left } });
        }
        let values: Vec<u64> = (0..sent.len()).map(|i| number(1 + i)).collect();
        let grants: Vec<u64> = (0..sent.len()).map(|i| number(1 + sent.len() + i)).collect();
        let states = self.leases.admitted(counters, &keyed, &parts, &values, &grants);
        pending.admitted = true;
        drop(pending);
        Ok(Admission::Admitted { keys: keyed.into_iter().map(|(key, _)| key).collect(), states })
    }

    fn settle(&self, adjustments: Vec<(String, i64)>) {
        let adjustments: Vec<_> = adjustments.into_iter().filter(|(_, delta)| *delta != 0).collect();
        if adjustments.is_empty() {
            return;
        }
        let adjustments = self.leases.settle(adjustments);
        if adjustments.is_empty() {
            return;
        }
        let Some(connection) = self.connection.get() else { return };
        match connection {
            Connection::Single(_) => self.batch.settle(connection, adjustments),
            Connection::Cluster(_) => {
                // A request dropped outside the runtime (at shutdown) has nobody left to settle for.
                let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
                let (batch, mut connection) = (Arc::clone(&self.batch), connection.clone());
                runtime.spawn(async move {
                    if batch.round_trip(&mut connection, &adjustments, &[]).await.is_err() {
                        tracing::debug!("a rate limit settlement did not reach Redis");
                    }
                });
            }
        }
    }
}
