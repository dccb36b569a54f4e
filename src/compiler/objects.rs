//! The resources routes and services refer to by id: upstream objects and plugin configs, and
//! the group-wide global rules.

use std::sync::Arc;

use serde_json::Value;
use switchyard_sdk::ConfigError;

use super::{Compiler, Dependencies};
use crate::compiled::{GlobalRuleEntry, PluginConfigEntry, UpstreamEntry};
use crate::resource::global_rule::GlobalRuleSpec;
use crate::resource::plugin_config::PluginConfigSpec;
use crate::resource::upstream::UpstreamSpec;
use crate::upstream::Upstream;

/// Compiles an upstream object: its nodes, balancer and health checks, shared by every route and
/// service that names it.
pub fn upstream(
    compiler: &Compiler,
    _id: &str,
    value: &Value,
    _deps: &dyn Dependencies,
) -> Result<UpstreamEntry, ConfigError> {
    let spec = UpstreamSpec::parse(value, "")?;
    let upstream = Upstream::from_spec(&spec, compiler.transport.as_ref(), "")?;
    Ok(UpstreamEntry { upstream: Arc::new(upstream) })
}

/// Parses a plugin config and compiles its plugins on their own, to check them (each route merges
/// them into its chain and compiles that).
pub fn plugin_config(
    compiler: &Compiler,
    _id: &str,
    value: &Value,
    deps: &dyn Dependencies,
) -> Result<PluginConfigEntry, ConfigError> {
    let spec = PluginConfigSpec::parse(value)?;
    compiler.chain(&spec.plugins, "plugins", deps)?;
    Ok(PluginConfigEntry { spec })
}

/// Compiles a global rule's plugins into the chain every request of the group runs first.
pub fn global_rule(
    compiler: &Compiler,
    _id: &str,
    value: &Value,
    deps: &dyn Dependencies,
) -> Result<GlobalRuleEntry, ConfigError> {
    let spec = GlobalRuleSpec::parse(value)?;
    Ok(GlobalRuleEntry { chain: compiler.chain(&spec.plugins, "plugins", deps)? })
}
