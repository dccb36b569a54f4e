//! What the core lends plugins for upstream IO. The SDK holds no client and no pool: a factory asks
//! its [`BuildContext`] for a [`ClientHandle`] when it compiles a config, carries that handle into
//! every [`crate::UpstreamRequest`] it builds, and the core sends the request. Background work gets
//! an [`UpstreamIo`] from the core when the core starts it.

use std::any::{Any, TypeId};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use http::StatusCode;

use crate::UpstreamRequest;

/// The settings that make two upstream connection pools different.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientSettings {
    pub connect_timeout_ms: u64,
    pub keepalive: bool,
    pub keepalive_timeout_ms: u64,
    /// Idle connections kept per host.
    pub keepalive_pool: u32,
    /// Requests one connection carries before it is closed (APISIX's `keepalive_pool.requests`);
    /// 0: no limit.
    pub max_requests_per_connection: u32,
    pub ssl_verify: bool,
}

/// An upstream connection pool made by the core. Opaque to plugins: cloning it is one reference
/// count, and only the core that made it can send with it.
#[derive(Clone)]
pub struct ClientHandle(Arc<dyn Any + Send + Sync>);

impl ClientHandle {
    /// Wraps the core's client. Called by the core's transport, never by plugins.
    pub fn new<T: Any + Send + Sync>(client: T) -> Self {
        Self(Arc::new(client))
    }

    /// The core's client, when this handle holds a `T`.
    pub fn get<T: Any>(&self) -> Option<&T> {
        self.0.downcast_ref()
    }
}

impl fmt::Debug for ClientHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClientHandle")
    }
}

/// What a factory may use while it compiles one config. Building stays pure: asking for a client
/// returns a shared pool (made on first use), it opens no connection.
pub trait BuildContext: Send + Sync {
    /// The pool for `settings`; `Err` says why it cannot be made (a TLS setup failure).
    fn client(&self, settings: ClientSettings) -> Result<ClientHandle, String>;

    /// Data the core compiled from other resources for the plugin of one of its built-in routes
    /// (the model API's catalog), asked for by type; read it with [`provided`]. `None` whenever
    /// the config being compiled is a user's route or service.
    fn provided(&self, _type_id: TypeId) -> Option<Arc<dyn Any + Send + Sync>> {
        None
    }

    /// The counter store for `policy`, shared by every config naming the same one (so counters
    /// survive reloads). Opens no connection: a Redis store connects on first use.
    fn counters(&self, _policy: &crate::CounterPolicy) -> Result<Arc<dyn crate::CounterStore>, String> {
        Err("this build lends no counter store".into())
    }
}

/// The `T` the core provides to this compile ([`BuildContext::provided`]), if any.
pub fn provided<T: Any + Send + Sync>(ctx: &dyn BuildContext) -> Option<Arc<T>> {
    ctx.provided(TypeId::of::<T>())?.downcast::<T>().ok()
}

/// How an upstream call failed before a response head arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendError {
    /// The connection could not be opened.
    Connect,
    /// No response head within the request's timeout.
    Timeout,
    /// Any other transport failure (reset, TLS, protocol).
    Failed,
}

/// A small answer read whole by [`UpstreamIo::fetch`].
#[derive(Debug, Clone)]
pub struct Fetched {
    pub status: StatusCode,
    pub body: Bytes,
}

/// The core's upstream IO, lent to background work and to [`crate::Credentials`].
#[async_trait]
pub trait UpstreamIo: Send + Sync {
    /// Sends `request` and returns the status of the response head (the body is discarded).
    async fn status(&self, request: UpstreamRequest) -> Result<StatusCode, SendError>;
    /// Sends `request` and reads its whole answer (a token endpoint's), failing with
    /// [`SendError::Failed`] when the body is longer than `max_body` bytes.
    async fn fetch(&self, request: UpstreamRequest, max_body: u64) -> Result<Fetched, SendError>;
    /// Opens a TCP connection to `host:port` and closes it again, within `timeout`.
    async fn connect(&self, authority: &str, timeout: Duration) -> Result<(), SendError>;
}

/// Work a compiled plugin needs done between requests (active health probes, token refreshers).
/// The core starts it only for plugins of the snapshot it publishes, and stops it by dropping the
/// future when that compiled plugin leaves the live snapshot.
pub type BackgroundTask = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;
