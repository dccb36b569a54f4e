//! Upstream IO, owned by the core: connection pools and TLS ([`pool`]), sending one attempt and
//! reading its answer ([`send`]). Plugins see it only through the SDK's [`BuildContext`] (a client
//! handle per config) and [`UpstreamIo`] (lent to their background work and to the credentials
//! an upstream request carries).

pub mod client;
pub mod conn;
pub mod framing;
pub mod head;
pub mod idle;
pub mod pool;
pub mod send;
pub mod wire;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use http::StatusCode;
use switchyard_sdk::{BuildContext, ClientHandle, ClientSettings, Fetched, SendError, UpstreamIo, UpstreamRequest};

use crate::error::ProxyError;

/// A node's transport: what config compiles against and what background work sends with.
#[derive(Default)]
pub struct Transport {
    pools: pool::ClientPools,
}

impl Transport {
    /// A transport for a node with one proxy worker per core.
    pub fn new() -> Arc<Transport> {
        Arc::new(Transport::default())
    }

    /// A transport for a node with `workers` proxy workers: idle connections are kept per worker.
    pub fn for_workers(workers: usize) -> Arc<Transport> {
        Arc::new(Transport { pools: pool::ClientPools::for_workers(workers) })
    }
}

impl BuildContext for Transport {
    fn client(&self, settings: ClientSettings) -> Result<ClientHandle, String> {
        self.pools.handle(settings)
    }
}

/// The core's upstream IO as plugins borrow it: every call goes out on the client handle the
/// request carries, so it needs no state of its own. Lent to the credentials applied by
/// [`send::send`] and, through [`Transport`], to background work.
pub struct Wire;

#[async_trait]
impl UpstreamIo for Wire {
    async fn status(&self, request: UpstreamRequest) -> Result<StatusCode, SendError> {
        send::send(request).await.map(|response| response.status()).map_err(|err| send_error(&err))
    }

    async fn fetch(&self, request: UpstreamRequest, max_body: u64) -> Result<Fetched, SendError> {
        let stall = request.timeout;
        let response = send::send(request).await.map_err(|err| send_error(&err))?;
        let status = response.status();
        let body = send::read_all(response, stall, max_body).await.map_err(|err| send_error(&err))?;
        Ok(Fetched { status, body })
    }

    async fn connect(&self, authority: &str, timeout: Duration) -> Result<(), SendError> {
        match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(authority)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) => Err(SendError::Connect),
            Err(_) => Err(SendError::Timeout),
        }
    }
}

/// How a failed send looks to a plugin.
fn send_error(err: &ProxyError) -> SendError {
    match err {
        ProxyError::UpstreamConnect(_) => SendError::Connect,
        ProxyError::UpstreamTimeout => SendError::Timeout,
        _ => SendError::Failed,
    }
}

#[async_trait]
impl UpstreamIo for Transport {
    async fn status(&self, request: UpstreamRequest) -> Result<StatusCode, SendError> {
        Wire.status(request).await
    }

    async fn fetch(&self, request: UpstreamRequest, max_body: u64) -> Result<Fetched, SendError> {
        Wire.fetch(request, max_body).await
    }

    async fn connect(&self, authority: &str, timeout: Duration) -> Result<(), SendError> {
        Wire.connect(authority, timeout).await
    }
}
