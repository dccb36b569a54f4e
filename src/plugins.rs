//! The plugins this build ships, registered by name.

use std::collections::BTreeMap;
use std::sync::Arc;

use switchyard_plugins::ai_proxy::AiProxyFactory;
use switchyard_plugins::ai_proxy_multi::AiProxyMultiFactory;
use switchyard_plugins::proxy_buffering::ProxyBufferingFactory;
use switchyard_plugins::Registry;

use crate::config::Config;

/// Every plugin type the node can run. Node config (provider hosts) is handed to the factories
/// that need it.
pub fn builtin(config: &Config) -> Registry {
    let base_urls: BTreeMap<String, String> =
        config.providers.iter().filter_map(|(name, p)| Some((name.clone(), p.base_url.clone()?))).collect();
    let mut registry = Registry::new();
    registry.register(Arc::new(AiProxyFactory::new(base_urls.clone())));
    registry.register(Arc::new(AiProxyMultiFactory::new(base_urls)));
    registry.register(Arc::new(ProxyBufferingFactory));
    registry
}
