//! Starting and stopping a whole node: store, first snapshot, reload task, listeners.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::config::{Config, StoreBackend};
use crate::reload::{follow, Mirror};
use crate::snapshot::Snapshot;
use crate::state::Shared;
use crate::store::embedded::EmbeddedStore;
use crate::store::ConfigStore;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("config store: {0}")]
    Store(#[from] crate::store::StoreError),
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("{0}")]
    Config(#[from] crate::config::ConfigFileError),
}

/// A running node. Dropping it does not stop it: call [`Gateway::shutdown`].
pub struct Gateway {
    pub proxy_addrs: Vec<SocketAddr>,
    pub admin_addrs: Vec<SocketAddr>,
    pub shared: Arc<Shared>,
    shutdown: watch::Sender<bool>,
    tasks: JoinSet<()>,
}

impl Gateway {
    /// Opens the store, builds the first snapshot, binds every listener and starts serving.
    /// Returns once the node accepts connections; ports given as 0 are resolved in the result.
    pub async fn start(config: Config) -> Result<Gateway, StartError> {
        let store: Arc<dyn ConfigStore> = match config.store.backend {
            StoreBackend::Embedded => Arc::new(EmbeddedStore::open(&config.store.path)?),
            StoreBackend::Etcd => {
                return Err(StartError::Config(crate::config::ConfigFileError::Invalid(
                    "store.backend `etcd` is not available in this build yet; use `embedded`".into(),
                )))
            }
        };
        let registry = crate::plugins::builtin(&config);
        let proxy_listen = config.proxy_addrs()?;
        let admin_listen = config.admin_addrs()?;
        let prefix = crate::resource::group_prefix(crate::state::STORE_ROOT, &config.gateway_group_id);
        let mirror = Mirror::load(store.as_ref(), &prefix).await?;
        let snapshot = Snapshot::build(&mirror.resources, &prefix, mirror.revision, &registry, None);
        let shared = Arc::new(Shared::new(config, store, registry, snapshot));

        let (shutdown, shutdown_rx) = watch::channel(false);
        let mut tasks = JoinSet::new();
        let mut proxy_addrs = Vec::new();
        for addr in proxy_listen {
            let listener = bind(addr).await?;
            proxy_addrs.push(listener.local_addr().map_err(|source| StartError::Bind { addr, source })?);
            let shared = Arc::clone(&shared);
            tasks.spawn(crate::server::serve(listener, shutdown_rx.clone(), move |req, peer| {
                crate::proxy::handle(Arc::clone(&shared), req, peer)
            }));
        }
        let mut admin_addrs = Vec::new();
        for addr in admin_listen {
            let listener = bind(addr).await?;
            admin_addrs.push(listener.local_addr().map_err(|source| StartError::Bind { addr, source })?);
            let shared = Arc::clone(&shared);
            tasks.spawn(crate::server::serve(listener, shutdown_rx.clone(), move |req, _peer| {
                crate::admin::handle(Arc::clone(&shared), req)
            }));
        }
        tasks.spawn(follow(Arc::clone(&shared), mirror, shutdown_rx));
        tracing::info!(proxy = ?proxy_addrs, admin = ?admin_addrs, store = shared.store.backend(), "switchyard started");
        Ok(Gateway { proxy_addrs, admin_addrs, shared, shutdown, tasks })
    }

    /// Stops accepting, closes connections, stops reloading, and waits for all of it (the store
    /// is closed once the last reference is gone).
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        while self.tasks.join_next().await.is_some() {}
    }
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr).await.map_err(|source| StartError::Bind { addr, source })
}
