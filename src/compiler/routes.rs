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

/// Parses a service and compiles its plugins and upstream (to check them: its routes compile
/// their own chain with the service's plugins merged in).
pub fn service(
    compiler: &Compiler,
    _id: &str,
    value: &Value,
    deps: &dyn Dependencies,
) -> Result<ServiceEntry, ConfigError> {
    let (spec, upstream) = ServiceSpec::parse(value)?;
    compiler.chain(&spec.plugins, "plugins", deps)?;
    if let Some(upstream) = &upstream {
        Upstream::from_spec(upstream, compiler.transport.as_ref())?;
    }
    Ok(ServiceEntry { spec, upstream })
}

/// Compiles a route against its service (found in `deps`): the service's plugins merged under the
/// route's, its upstream, hosts and path prefix when the route has none of its own. A disabled
/// route (`status: 0`) is compiled all the same, and left out of the router.
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
    let mut plugins = service.map(|s| s.spec.plugins.clone()).unwrap_or_default();
    for (name, config) in &spec.plugins {
        plugins.insert(name.clone(), config.clone());
    }
    let chain = compiler.chain(&plugins, "plugins", deps)?;
    let upstream = upstream.as_ref().or_else(|| service.and_then(|s| s.upstream.as_ref()));
    let upstream = upstream.map(|u| Upstream::from_spec(u, compiler.transport.as_ref())).transpose()?.map(Arc::new);
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
    route.priority = spec.priority;
    route.chain = chain;
    route.upstream = upstream;
    route.enabled = spec.enabled();
    Ok(route)
}
