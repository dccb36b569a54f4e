//! Routes and services (the APISIX resources), compiled.

use std::sync::Arc;

use http::Method;
use serde_json::Value;
use switchyard_sdk::ConfigError;

use super::{Compiler, Dependencies};
use crate::compiled::HostPattern;
use crate::compiled::{CompiledRoute, ServiceEntry};
use crate::resource::route::RouteSpec;
use crate::resource::service::ServiceSpec;
use crate::upstream::Upstream;
use crate::vars::Vars;

/// Parses a service, compiles its plugins (to check them: its routes compile their own chain with
/// the service's plugins merged in) and its upstream: the inline one, else its `upstream_id`'s
/// (found in `deps`).
pub fn service(
    compiler: &Compiler,
    _id: &str,
    value: &Value,
    deps: &dyn Dependencies,
) -> Result<ServiceEntry, ConfigError> {
    let (spec, upstream) = ServiceSpec::parse(value)?;
    compiler.chain(&spec.plugins, "plugins", deps)?;
    let upstream = match (&upstream, &spec.upstream_id) {
        (Some(inline), _) => Some(Arc::new(Upstream::from_spec(inline, compiler.transport.as_ref(), "upstream")?)),
        (None, Some(id)) => Some(upstream_object(deps, id)?),
        (None, None) => None,
    };
    Ok(ServiceEntry { spec, upstream })
}

/// The compiled upstream object `id`, shared; a missing one is an error on `upstream_id`.
fn upstream_object(deps: &dyn Dependencies, id: &str) -> Result<Arc<Upstream>, ConfigError> {
    deps.upstream(id)
        .map(|entry| Arc::clone(&entry.upstream))
        .ok_or_else(|| ConfigError::new("upstream_id", format!("upstream `{id}` does not exist")))
}

/// Compiles a route against its service, upstream object and plugin config (found in `deps`).
/// Plugins merge as APISIX does, per plugin name: the route's over the plugin config's over the
/// service's. The upstream is the route's inline one, else its `upstream_id`'s, else the
/// service's; hosts and path prefix come from the service when the route has none of its own. A
/// disabled route (`status: 0`) is compiled all the same, and left out of the router.
pub fn route(
    compiler: &Compiler,
    id: &str,
    value: &Value,
    deps: &dyn Dependencies,
) -> Result<CompiledRoute, ConfigError> {
    let (spec, upstream) = RouteSpec::parse(value)?;
    let service = match &spec.service_id {
        Some(service_id) => Some(
            deps.service(service_id)
                .ok_or_else(|| ConfigError::new("service_id", format!("service `{service_id}` does not exist")))?,
        ),
        None => None,
    };
    let plugin_config = match &spec.plugin_config_id {
        Some(id) => Some(
            deps.plugin_config(id)
                .ok_or_else(|| ConfigError::new("plugin_config_id", format!("plugin config `{id}` does not exist")))?,
        ),
        None => None,
    };
    let mut plugins = service.map(|s| s.spec.plugins.clone()).unwrap_or_default();
    let layers = plugin_config.map(|c| &c.spec.plugins).into_iter().chain([&spec.plugins]);
    for layer in layers {
        for (name, config) in layer {
            plugins.insert(name.clone(), config.clone());
        }
    }
    let chain = compiler.chain(&plugins, "plugins", deps)?;
    let upstream = match (&upstream, &spec.upstream_id) {
        (Some(inline), _) => Some(Arc::new(Upstream::from_spec(inline, compiler.transport.as_ref(), "upstream")?)),
        (None, Some(id)) => Some(upstream_object(deps, id)?),
        (None, None) => service.and_then(|s| s.upstream.clone()),
    };
    let vars = spec.vars.as_ref().map(|v| Vars::compile(v, "vars")).transpose()?.map(Arc::new);
    let paths =
        spec.all_paths().into_iter().map(|p| service.map_or_else(|| p.to_string(), |s| s.spec.prefixed(p))).collect();
    let mut hosts: Vec<&str> = spec.all_hosts();
    if hosts.is_empty() {
        hosts = service
            .and_then(|s| s.spec.hosts.as_ref())
            .map_or_else(Vec::new, |h| h.iter().map(String::as_str).collect());
    }
    let methods =
        spec.methods.as_ref().map(|m| m.iter().filter_map(|m| Method::from_bytes(m.as_bytes()).ok()).collect());
    let mut route = CompiledRoute::bare(id);
    route.paths = paths;
    route.hosts = hosts.into_iter().map(HostPattern::parse).collect();
    route.methods = methods;
    route.vars = vars;
    route.priority = spec.priority;
    route.chain = chain;
    route.upstream = upstream;
    route.enabled = spec.enabled();
    route.service_id = spec.service_id.clone();
    Ok(route)
}
