//! Global rules: their plugins run on every user route of the group, before the route's own.

use std::collections::HashMap;
use std::sync::Arc;

use switchyard_sdk::Chain;

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

/// The route as the router serves it: the global plugins in front of its own. Without global
/// rules it is the compiled route itself (the same `Arc`); with them, a copy sharing every
/// compiled plugin, so plugin state survives either way.
pub fn served(route: &Arc<CompiledRoute>, global: &Chain) -> Arc<CompiledRoute> {
    if global.is_empty() {
        return Arc::clone(route);
    }
    let mut served = CompiledRoute::clone(route);
    served.chain = global.followed_by(&route.chain);
    Arc::new(served)
}
