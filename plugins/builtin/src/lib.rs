//! The plugins switchyard ships, and the registry that names them. Each plugin is a factory that
//! compiles one route's config (no IO: see `switchyard_sdk::PluginFactory::build`) and a compiled
//! instance that runs the phases it implements.

pub mod ai_proxy;
pub mod ai_proxy_multi;
pub mod ai_rate_limiting;
pub mod health;
pub mod key_auth;
pub mod limits;
pub mod model_api;
pub mod proxy_buffering;

use std::sync::Arc;

use switchyard_llm::providers::BaseUrls;
use switchyard_sdk::Registry;

/// What the node config hands the plugins.
#[derive(Debug, Clone, Default)]
pub struct NodeSettings {
    /// `providers.<name>.base_url`.
    pub base_urls: BaseUrls,
    /// `rate_limit`: where the model API counts its keys' and models' limits.
    pub model_api_limits: model_api::quota::LimiterSettings,
}

/// Every plugin type of this build.
pub fn registry(settings: &NodeSettings) -> Registry {
    let base_urls = &settings.base_urls;
    let mut registry = Registry::new();
    registry.register(Arc::new(ai_proxy::AiProxyFactory::new(base_urls.clone())));
    registry.register(Arc::new(ai_proxy_multi::AiProxyMultiFactory::new(base_urls.clone())));
    registry.register(Arc::new(ai_rate_limiting::AiRateLimitingFactory));
    registry.register(Arc::new(key_auth::KeyAuthFactory));
    registry.register(Arc::new(model_api::ModelApiFactory { limits: settings.model_api_limits.clone() }));
    registry.register(Arc::new(proxy_buffering::ProxyBufferingFactory));
    registry
}
