//! The plugins this build ships, registered by name.

use std::sync::Arc;

use switchyard_plugins::proxy_buffering::ProxyBufferingFactory;
use switchyard_plugins::Registry;

use crate::config::Config;

/// Every plugin type the node can run. Node config (provider hosts) is handed to the factories
/// that need it.
pub fn builtin(_config: &Config) -> Registry {
    let mut registry = Registry::new();
    registry.register(Arc::new(ProxyBufferingFactory));
    registry
}
