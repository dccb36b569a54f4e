//! Upstream IO, owned by the core: connection pools and TLS ([`pool`]), sending one attempt and
//! reading its answer ([`send`]). Plugins see it only through the SDK's [`BuildContext`] (a client
//! handle per config) and [`UpstreamIo`] (lent to their background work).

pub mod client;
pub mod idle;
pub mod pool;
pub mod send;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use http::StatusCode;
use switchyard_sdk::{BuildContext, ClientHandle, ClientSettings, SendError, UpstreamIo, UpstreamRequest};

use crate::error::ProxyError;

/// A node's transport: what config compiles against and what background work sends with.
#[derive(Default)]
pub struct Transport {
    pools: pool::ClientPools,
}

impl Transport {
    pub fn new() -> Arc<Transport> {
        Arc::new(Transport::default())
    }
}

impl BuildContext for Transport {
    fn client(&self, settings: ClientSettings) -> Result<ClientHandle, String> {
        self.pools.handle(settings)
    }
}

#[async_trait]
impl UpstreamIo for Transport {
    async fn status(&self, request: UpstreamRequest) -> Result<StatusCode, SendError> {
        match send::send(request).await {
            Ok(response) => Ok(response.status()),
            Err(ProxyError::UpstreamConnect(_)) => Err(SendError::Connect),
            Err(ProxyError::UpstreamTimeout) => Err(SendError::Timeout),
            Err(_) => Err(SendError::Failed),
        }
    }

    async fn connect(&self, authority: &str, timeout: Duration) -> Result<(), SendError> {
        match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(authority)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) => Err(SendError::Connect),
            Err(_) => Err(SendError::Timeout),
        }
    }
}
