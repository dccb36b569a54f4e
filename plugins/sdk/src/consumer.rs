//! Consumers: the callers an authentication plugin identifies. The core compiles them with their
//! own plugins and indexes them by credential; an auth plugin finds one through
//! [`Ctx::consumers`](crate::Ctx) and records it in `ctx.consumer`, after which every later plugin,
//! the access log and the balancer see it, and the consumer's plugins replace the route's.

use std::sync::Arc;

use crate::Chain;

/// One consumer, compiled.
pub struct Consumer {
    /// The consumer's `username`, its id.
    pub username: Arc<str>,
    /// The consumer's own plugins, compiled; they replace the route's plugins of the same name
    /// for this consumer's requests (APISIX's merge: the consumer wins per plugin).
    pub chain: Chain,
}

impl std::fmt::Debug for Consumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer").field("username", &self.username).finish_non_exhaustive()
    }
}

/// The consumers of the live config, as the core lends them to a request.
pub trait Consumers: Send + Sync {
    /// The consumer whose config of the authentication plugin `plugin` carries `credential`
    /// (for `key-auth`, its `key`). Runs once per authenticated request.
    fn by_credential(&self, plugin: &str, credential: &str) -> Option<Arc<Consumer>>;
}
