//! The plugins switchyard ships, and the registry that names them. Each plugin is a factory that
//! compiles one route's config (no IO: see `switchyard_sdk::PluginFactory::build`) and a compiled
//! instance that runs the phases it implements.

pub mod ai_proxy;
pub mod ai_proxy_multi;
pub mod model_api;
pub mod proxy_buffering;

use std::sync::Arc;

use switchyard_llm::providers::BaseUrls;
use switchyard_sdk::Registry;

/// Every plugin type of this build. `base_urls`: the node config's `providers.<name>.base_url`.
pub fn registry(base_urls: &BaseUrls) -> Registry {
    let mut registry = Registry::new();
    registry.register(Arc::new(ai_proxy::AiProxyFactory::new(base_urls.clone())));
    registry.register(Arc::new(ai_proxy_multi::AiProxyMultiFactory::new(base_urls.clone())));
    registry.register(Arc::new(model_api::ModelApiFactory));
    registry.register(Arc::new(proxy_buffering::ProxyBufferingFactory));
    registry
}
