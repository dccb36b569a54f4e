//! Starting and stopping a whole node: store, first snapshot, reload task, listeners.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::cache::MirrorCache;
use crate::compiler::Compiler;
use crate::config::{Config, StoreBackend};
use crate::mirror::Mirror;
use crate::observe::Observe;
use crate::reload::{follow, save_cache};
use crate::server::Servers;
use crate::snapshot::Snapshot;
use crate::state::{AdminState, LiveSnapshot, NodeStatus, ProxyState, ReloadState};
use crate::store::embedded::EmbeddedStore;
use crate::store::etcd::EtcdStore;
use crate::store::{ConfigStore, StoreError};
use crate::transport::Transport;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("config store: {0}")]
    Store(#[from] crate::store::StoreError),
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("{0}")]
    Config(#[from] crate::config::ConfigFileError),
    #[error("observability: {0}")]
    Observe(String),
    #[error("cannot start the proxy workers: {0}")]
    Workers(std::io::Error),
    #[error("{reason}, and there is no local snapshot cache at {} to serve meanwhile; start the node once etcd is reachable", cache.display())]
    NoCache { reason: StoreError, cache: std::path::PathBuf },
}

/// A running node. Dropping it does not stop it: call [`Gateway::shutdown`].
pub struct Gateway {
    pub proxy_addrs: Vec<SocketAddr>,
    pub admin_addrs: Vec<SocketAddr>,
    /// The Prometheus exporter's address, when metrics are on.
    pub metrics_addr: Option<SocketAddr>,
    /// The status probes' address, when the status listener is on.
    pub status_addr: Option<SocketAddr>,
    /// Where the node stands: applied revision, cache use, rejected resources.
    pub status: Arc<NodeStatus>,
    /// The config store this node follows.
    pub store: Arc<dyn ConfigStore>,
    live: Arc<LiveSnapshot>,
    shutdown_timeout: std::time::Duration,
    servers: Servers,
    shutdown: watch::Sender<bool>,
    tasks: JoinSet<()>,
}

impl Gateway {
    /// Opens the store, builds the first snapshot, binds every listener and starts serving.
    /// Returns once the node accepts connections; ports given as 0 are resolved in the result.
    pub async fn start(config: Config) -> Result<Gateway, StartError> {
        let registry = crate::plugins::builtin(&config);
        Self::start_with(config, registry).await
    }

    /// [`Gateway::start`] with another set of plugin types: the built-in ones plus an embedder's
    /// own, or a test's.
    pub async fn start_with(config: Config, registry: switchyard_sdk::Registry) -> Result<Gateway, StartError> {
        let compiler = Arc::new(Compiler::new(registry, Transport::for_workers(config.proxy.worker_count())));
        let proxy_listen = config.proxy_addrs()?;
        let admin_listen = config.admin_addrs()?;
        let metrics_listen = config.metrics.addr()?;
        let status_listen = config.status.addr()?;
        let (observe, exporter) = Observe::new(&config, &compiler.transport).map_err(StartError::Observe)?;
        let observe = Arc::new(observe);
        let open_files = crate::limits::open_file_limit();
        let caps = crate::limits::ConnectionCaps::plan(open_files, config.proxy.max_connections);
        let mut servers = Servers::new(&config, caps, open_files).map_err(StartError::Workers)?;
        if let Some(metrics) = &observe.metrics {
            servers.count_proxy_connections(Arc::clone(&metrics.connections));
        }
        // The probes answer from the start: `/status/ready` says 503 until the config is live.
        let mut status_addr = None;
        if let Some(addr) = status_listen {
            let listener = bind(addr).await?;
            status_addr = Some(listener.local_addr().map_err(|source| StartError::Bind { addr, source })?);
            let observe = Arc::clone(&observe);
            servers.serve_admin(listener, move |req, _peer| crate::observe::status::handle(Arc::clone(&observe), req));
        }
        let prefix = crate::resource::group_prefix(&config.store.root(), &config.gateway_group_id);
        let (store, cache): (Arc<dyn ConfigStore>, _) = match config.store.backend {
            StoreBackend::Embedded => (Arc::new(EmbeddedStore::open(&config.store.path)?), None),
            StoreBackend::Etcd => {
                (Arc::new(EtcdStore::new(&config.store.etcd)?), Some(MirrorCache::new(&config.store.path, &prefix)))
            }
        };
        let (mirror, cached) = first_mirror(store.as_ref(), &prefix, cache.as_ref()).await?;
        let snapshot = Arc::new(Snapshot::build(&mirror.resources, &prefix, mirror.revision, &compiler, None));
        if let Some(metrics) = &observe.metrics {
            metrics.config_applied(&mirror, &prefix, &snapshot, None);
        }
        let status = Arc::new(NodeStatus::new(&snapshot, cached));
        let live = Arc::new(LiveSnapshot::new(Arc::clone(&snapshot)));
        if !cached {
            save_cache(cache.as_ref(), &mirror).await;
        }
        let config = Arc::new(config);
        let proxy = Arc::new(ProxyState {
            live: Arc::clone(&live),
            observe: Arc::clone(&observe),
            client_body_timeout: config.proxy.client_body_timeout,
        });
        let admin = Arc::new(AdminState {
            config: Arc::clone(&config),
            store: Arc::clone(&store),
            compiler: Arc::clone(&compiler),
            store_root: config.store.root(),
            status: Arc::clone(&status),
            workers: servers.workers(),
        });
        let reload = ReloadState {
            store: Arc::clone(&store),
            compiler,
            group_prefix: prefix,
            cache,
            live: Arc::clone(&live),
            status: Arc::clone(&status),
            observe: Arc::clone(&observe),
        };

        let (shutdown, shutdown_rx) = watch::channel(false);
        let mut tasks = JoinSet::new();
        let mut proxy_addrs = Vec::new();
        for addr in proxy_listen {
            let listener = bind(addr).await?;
            proxy_addrs.push(listener.local_addr().map_err(|source| StartError::Bind { addr, source })?);
            let proxy = Arc::clone(&proxy);
            servers.serve_proxy(listener, move |req, peer| crate::proxy::handle(Arc::clone(&proxy), req, peer));
        }
        let mut admin_addrs = Vec::new();
        for addr in admin_listen {
            let listener = bind(addr).await?;
            admin_addrs.push(listener.local_addr().map_err(|source| StartError::Bind { addr, source })?);
            let admin = Arc::clone(&admin);
            servers.serve_admin(listener, move |req, _peer| crate::admin::handle(Arc::clone(&admin), req));
        }
        let mut metrics_addr = None;
        if let Some(addr) = metrics_listen.filter(|_| observe.metrics.is_some()) {
            let listener = bind(addr).await?;
            metrics_addr = Some(listener.local_addr().map_err(|source| StartError::Bind { addr, source })?);
            let sources = Arc::new(crate::observe::metrics::scrape::Sources {
                observe: Arc::clone(&observe),
                live: Arc::clone(&live),
                store: Arc::clone(&store),
                status: Arc::clone(&status),
            });
            servers.serve_admin(listener, move |req, _peer| {
                crate::observe::metrics::scrape::handle(Arc::clone(&sources), req)
            });
        }
        if let Some(exporter) = exporter {
            tasks.spawn(exporter.run(shutdown_rx.clone()));
        }
        tasks.spawn(follow(reload, snapshot, mirror, shutdown_rx));
        observe.set_ready();
        tracing::info!(proxy = ?proxy_addrs, admin = ?admin_addrs, metrics = ?metrics_addr, status = ?status_addr,
            store = store.backend(), "switchyard started");
        let shutdown_timeout = config.shutdown_timeout;
        Ok(Gateway {
            proxy_addrs,
            admin_addrs,
            metrics_addr,
            status_addr,
            status,
            store,
            live,
            shutdown_timeout,
            servers,
            shutdown,
            tasks,
        })
    }

    /// The config the node serves now (for embedders and tests; requests load their own).
    pub fn snapshot(&self) -> Arc<Snapshot> {
        #[expect(clippy::disallowed_methods, reason = "a read for the embedder, not a request's")]
        self.live.load()
    }

    /// Stops gracefully: closes the listeners, lets in-flight requests finish for up to
    /// `shutdown_timeout`, cuts the rest, stops reloading, and waits for all of it (the store is
    /// closed once the last reference is gone).
    pub async fn shutdown(self) {
        self.shutdown_or_cut(std::future::pending()).await;
    }

    /// As [`Gateway::shutdown`], but `cut_now` resolving (a second signal) ends the wait for
    /// in-flight requests at once.
    pub async fn shutdown_or_cut(self, cut_now: impl std::future::Future<Output = ()>) {
        let Gateway { shutdown_timeout, servers, shutdown, mut tasks, .. } = self;
        servers.shut_down(shutdown_timeout, cut_now).await;
        let _ = shutdown.send(true);
        while tasks.join_next().await.is_some() {}
    }
}

/// The config a node starts with: listed from the store, or, when the store cannot be reached,
/// the local cache (`true` in the result). With neither, the node does not start: serving an
/// empty config would answer 404 for every route the group has.
async fn first_mirror(
    store: &dyn ConfigStore,
    prefix: &str,
    cache: Option<&MirrorCache>,
) -> Result<(Mirror, bool), StartError> {
    match Mirror::load(store, prefix).await {
        Ok(mirror) => Ok((mirror, false)),
        Err(reason @ StoreError::Unavailable(_)) => {
            let Some(cache) = cache else { return Err(reason.into()) };
            match cache.load() {
                Some(mirror) => {
                    tracing::warn!(error = %reason, revision = mirror.revision, cache = %cache.path().display(),
                        "config store unreachable: serving the cached snapshot until it returns");
                    Ok((mirror, true))
                }
                None => Err(StartError::NoCache { reason, cache: cache.path().to_path_buf() }),
            }
        }
        Err(err) => Err(err.into()),
    }
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, StartError> {
    crate::server::listen(addr).map_err(|source| StartError::Bind { addr, source })
}
