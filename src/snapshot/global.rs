//! Global rules: their plugins run on every route of the group (the model API's built-in routes
//! included), before the route's own.

use std::collections::HashMap;
use std::sync::Arc;

use switchyard_sdk::{Chain, Registry};

use super::Entry;
use crate::compiled::{CompiledRoute, GlobalRuleEntry};

/// Every global rule's plugins in one chain: rules in id order, each rule's plugins by priority.
pub fn chain(rules: &HashMap<String, Entry<GlobalRuleEntry>>) -> Chain {
    let mut ids: Vec<&String> = rules.keys().collect();
    ids.sort_unstable();
    ids.into_iter()
        .filter_map(|id| rules.get(id))
        .fold(Chain::default(), |all, rule| all.followed_by(&rule.compiled.chain))
}

/// The global plugins the model API's built-in routes run: every one but the authentication
/// plugins (`key-auth`), since those routes authenticate callers with their own API keys (a
/// global `key-auth` would otherwise ask every OpenAI SDK for a second key it cannot send).
pub fn for_model_api(global: &Chain, registry: &Registry) -> Chain {
    global.without(|entry| registry.get(entry.name).is_some_and(|factory| factory.authenticates()))
}

/// The stand-in route of requests no route matches, while there are global rules: it runs their
/// plugins (all of them, authentication included, as APISIX does), then answers 404.
pub fn unmatched(global: &Chain) -> Option<Arc<CompiledRoute>> {
    if global.is_empty() {
        return None;
    }
    let mut route = CompiledRoute::bare("");
    route.global = global.clone();
    route.unmatched = true;
    Some(Arc::new(route))
}

/// The route as the router serves it: with the global plugins to run before its own. Without
/// global rules it is the compiled route itself (the same `Arc`); with them, a copy sharing every
/// compiled plugin, so plugin state survives either way.
pub fn served(route: &Arc<CompiledRoute>, global: &Chain) -> Arc<CompiledRoute> {
    if global.is_empty() {
        return Arc::clone(route);
    }
    let mut served = CompiledRoute::clone(route);
    served.global = global.clone();
    Arc::new(served)
}
