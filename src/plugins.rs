//! The plugins this build ships, registered by name.

use std::collections::BTreeMap;

use switchyard_sdk::Registry;

use crate::config::Config;

/// Every plugin type the node can run. Node config (provider hosts, the model API's rate limit
/// counters) is handed to the factories that need it.
pub fn builtin(config: &Config) -> Registry {
    let base_urls: BTreeMap<String, String> =
        config.providers.iter().filter_map(|(name, p)| Some((name.clone(), p.base_url.clone()?))).collect();
    switchyard_builtin::registry(&switchyard_builtin::NodeSettings {
        base_urls,
        model_api_limits: config.rate_limit.settings(),
    })
}
