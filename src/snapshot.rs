//! The immutable, compiled config a request runs against: built off the request path by the
//! reload task, published with one `ArcSwap::store`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use http::Method;
use serde::Serialize;
use switchyard_sdk::{Chain, ConfigError};

use crate::compiler::Compiler;
use crate::observe::metrics::route::RouteMetrics;

use crate::resource::route::RouteSpec;
use crate::resource::service::ServiceSpec;
use crate::resource::upstream::UpstreamSpec;
use crate::resource::{parse_key, Kind};
use crate::router::{HostPattern, Router};
use crate::store::KeyValue;
use crate::upstream::Upstream;

/// A route ready to serve: matching rules, its plugin chain (service plugins merged in), and the
/// upstream used when no AI plugin picks a target.
pub struct CompiledRoute {
    pub id: Arc<str>,
    /// Effective paths: the service's `path_prefix` included.
    pub paths: Vec<String>,
    /// Empty: any host.
    pub hosts: Vec<HostPattern>,
    /// `None`: any method.
    pub methods: Option<Vec<Method>>,
    pub priority: i64,
    /// The store revision of the route's last write: the newer route wins a tie.
    pub revision: u64,
    pub chain: Chain,
    pub upstream: Option<Arc<Upstream>>,
    /// The route's metric series, found per request without a lock.
    pub metrics: RouteMetrics,
    /// The service the route uses, whose revision is part of the fingerprint.
    service_id: Option<String>,
    /// Route and service revisions this was compiled from: unchanged means reusable.
    fingerprint: (u64, Option<u64>),
}

impl CompiledRoute {
    /// A route with no paths, plugins or upstream: the start of tests and builders.
    pub fn bare(id: &str) -> Self {
        Self {
            id: Arc::from(id),
            paths: Vec::new(),
            hosts: Vec::new(),
            methods: None,
            priority: 0,
            revision: 0,
            chain: Chain::default(),
            upstream: None,
            metrics: RouteMetrics::default(),
            service_id: None,
            fingerprint: (0, None),
        }
    }

    /// The service the route uses, if any (the `service` metric label).
    pub fn service_id(&self) -> Option<&str> {
        self.service_id.as_deref()
    }

    /// Whether this route takes a request for `host` (lower case, no port) and `method`.
    pub fn accepts(&self, host: Option<&str>, method: &Method) -> bool {
        let host_ok = self.hosts.is_empty() || host.is_some_and(|h| self.hosts.iter().any(|p| p.matches(h)));
        host_ok && self.methods.as_ref().is_none_or(|m| m.contains(method))
    }
}

/// A service as the snapshot keeps it: routes compile against it.
#[derive(Clone)]
pub struct ServiceEntry {
    pub spec: ServiceSpec,
    pub upstream: Option<UpstreamSpec>,
    pub revision: u64,
}

/// A stored resource that failed validation at reload: skipped, and listed in admin status.
#[derive(Debug, Clone, Serialize)]
pub struct Rejected {
    pub kind: String,
    pub id: String,
    pub key: String,
    pub error: String,
}

#[derive(Default)]
pub struct Snapshot {
    /// The store revision this snapshot reflects.
    pub revision: u64,
    /// User routes.
    pub router: Router,
    /// The model API's built-in routes: consulted only when no user route matches.
    pub builtin: Router,
    pub routes: HashMap<Arc<str>, Arc<CompiledRoute>>,
    pub services: HashMap<String, ServiceEntry>,
    pub rejected: Vec<Rejected>,
}

impl Snapshot {
    /// Builds a snapshot from every resource of the group (`raw`, keyed by store key). Routes whose
    /// route and service revisions are unchanged since `prev` are reused as they are, so their
    /// plugin state (balancers, health) survives the reload and only what changed is rebuilt.
    pub fn build(
        raw: &BTreeMap<String, KeyValue>,
        group_prefix: &str,
        revision: u64,
        compiler: &Compiler,
        prev: Option<&Snapshot>,
    ) -> Snapshot {
        let mut snapshot = Snapshot { revision, ..Snapshot::default() };
        let mut route_kvs = Vec::new();
        let mut model_resources = crate::catalog::ModelResources::default();
        for kv in raw.values() {
            let Some((kind, id)) = parse_key(group_prefix, &kv.key) else { continue };
            match Kind::parse(kind) {
                Some(Kind::Services) => match compile_service(&kv.value, compiler) {
                    Ok((spec, upstream)) => {
                        snapshot
                            .services
                            .insert(id.to_string(), ServiceEntry { spec, upstream, revision: kv.mod_revision });
                    }
                    Err(err) => snapshot.reject(kind, id, kv, err),
                },
                Some(Kind::Routes) => route_kvs.push((id, kv)),
                Some(Kind::ProviderKeys) => model_resources.provider_keys.push(kv),
                Some(Kind::Models) => model_resources.models.push(kv),
                Some(Kind::ApiKeys) => model_resources.api_keys.push(kv),
                None => {}
            }
        }
        let (catalog, rejected) = crate::catalog::build(&model_resources);
        for (kind, id, key, err) in rejected {
            tracing::warn!(%key, error = %err, "stored resource rejected");
            snapshot.rejected.push(Rejected { kind: kind.into(), id, key, error: err.to_string() });
        }
        let mut enabled = Vec::with_capacity(route_kvs.len());
        for (id, kv) in route_kvs {
            match snapshot.route_from(id, kv, compiler, prev) {
                Ok(Some(route)) => {
                    enabled.push(Arc::clone(&route));
                    snapshot.routes.insert(Arc::clone(&route.id), route);
                }
                Ok(None) => {}
                Err(err) => snapshot.reject("routes", id, kv, err),
            }
        }
        snapshot.router = Router::build(&enabled);
        snapshot.builtin = Router::build(&crate::catalog::builtin_routes(catalog, compiler));
        snapshot
    }

    /// The compiled route for a stored route; `None` when it is disabled.
    fn route_from(
        &self,
        id: &str,
        kv: &KeyValue,
        compiler: &Compiler,
        prev: Option<&Snapshot>,
    ) -> Result<Option<Arc<CompiledRoute>>, ConfigError> {
        if let Some(old) = prev.and_then(|p| p.routes.get(id)) {
            if self.unchanged(old, kv) {
                return Ok(Some(Arc::clone(old)));
            }
        }
        let value: serde_json::Value =
            serde_json::from_slice(&kv.value).map_err(|e| ConfigError::new("", format!("invalid JSON: {e}")))?;
        let (spec, upstream) = RouteSpec::parse(&value)?;
        if !spec.enabled() {
            return Ok(None);
        }
        let service = match &spec.service_id {
            Some(service_id) => Some(
                self.services
                    .get(service_id)
                    .ok_or_else(|| ConfigError::new("service_id", format!("service `{service_id}` does not exist")))?,
            ),
            None => None,
        };
        let fingerprint = (kv.mod_revision, service.map(|s| s.revision));
        if let Some(old) = prev.and_then(|p| p.routes.get(id)) {
            if old.fingerprint == fingerprint {
                return Ok(Some(Arc::clone(old)));
            }
        }
        let mut route = compile_route(id, &spec, upstream.as_ref(), service, compiler)?;
        route.revision = kv.mod_revision;
        route.fingerprint = fingerprint;
        Ok(Some(Arc::new(route)))
    }

    /// Whether `old` was compiled from this very write of the route and from its service as it
    /// is now. Checked before parsing: a reload with 10,000 routes then parses only what changed.
    fn unchanged(&self, old: &CompiledRoute, kv: &KeyValue) -> bool {
        if old.fingerprint.0 != kv.mod_revision {
            return false;
        }
        match &old.service_id {
            None => true,
            Some(service_id) => self.services.get(service_id).is_some_and(|s| Some(s.revision) == old.fingerprint.1),
        }
    }

    fn reject(&mut self, kind: &str, id: &str, kv: &KeyValue, err: ConfigError) {
        tracing::warn!(key = %kv.key, error = %err, "stored resource rejected");
        self.rejected.push(Rejected { kind: kind.into(), id: id.into(), key: kv.key.clone(), error: err.to_string() });
    }
}

/// Parses a service and checks its plugins. The admin API and reload share it.
pub fn compile_service(value: &[u8], compiler: &Compiler) -> Result<(ServiceSpec, Option<UpstreamSpec>), ConfigError> {
    let value: serde_json::Value =
        serde_json::from_slice(value).map_err(|e| ConfigError::new("", format!("invalid JSON: {e}")))?;
    let (spec, upstream) = ServiceSpec::parse(&value)?;
    compiler.chain(&spec.plugins, "plugins")?;
    if let Some(upstream) = &upstream {
        Upstream::from_spec(upstream, compiler.transport.as_ref())?;
    }
    Ok((spec, upstream))
}

/// Compiles a parsed route against its service. The admin API runs it on every write (so what it
/// accepts always compiles at reload) and reload runs it for each changed route.
pub fn compile_route(
    id: &str,
    spec: &RouteSpec,
    upstream: Option<&UpstreamSpec>,
    service: Option<&ServiceEntry>,
    compiler: &Compiler,
) -> Result<CompiledRoute, ConfigError> {
    let mut plugins = service.map(|s| s.spec.plugins.clone()).unwrap_or_default();
    for (name, config) in &spec.plugins {
        plugins.insert(name.clone(), config.clone());
    }
    let chain = compiler.chain(&plugins, "plugins")?;
    let upstream = upstream.or_else(|| service.and_then(|s| s.upstream.as_ref()));
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
    Ok(CompiledRoute {
        id: Arc::from(id),
        paths,
        hosts: hosts.into_iter().map(HostPattern::parse).collect(),
        methods,
        priority: spec.priority,
        revision: 0,
        chain,
        upstream,
        metrics: RouteMetrics::default(),
        service_id: spec.service_id.clone(),
        fingerprint: (0, None),
    })
}
