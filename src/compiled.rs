//! What compiling a route or service produces: the pieces the router matches on and the snapshot
//! holds. A leaf module, so the compiler, the router and the snapshot all depend on it and not on
//! each other.

use std::sync::Arc;

use http::Method;
use switchyard_sdk::{Chain, ErrorStyle};

use crate::observe::metrics::route::RouteMetrics;
use crate::resource::plugin_config::PluginConfigSpec;
use crate::resource::service::ServiceSpec;
use crate::upstream::Upstream;
use crate::vars::Vars;

/// A route ready to serve: matching rules, its plugin chain (service plugins merged in), and the
/// upstream used when no AI plugin picks a target.
#[derive(Clone)]
pub struct CompiledRoute {
    pub id: Arc<str>,
    /// Effective paths: the service's `path_prefix` included.
    pub paths: Vec<String>,
    /// Empty: any host.
    pub hosts: Vec<HostPattern>,
    /// `None`: any method.
    pub methods: Option<Vec<Method>>,
    /// Conditions on the request beyond path, host and method; `None` costs nothing.
    pub vars: Option<Arc<Vars>>,
    pub priority: i64,
    /// The store revision of the route's last write: the newer route wins a tie.
    pub revision: u64,
    /// `status: 0` routes are compiled (and checked) but not routed to.
    pub enabled: bool,
    /// The route's own plugins (its service's and plugin config's merged in).
    pub chain: Chain,
    /// The group's global rules' plugins, run before `chain` in every phase (their rewrite and
    /// access both before the route's rewrite, as APISIX runs them). Empty on the compiled route;
    /// the router's copy gets them (`snapshot::global::served`), so editing a rule recompiles no
    /// route.
    pub global: Chain,
    pub upstream: Option<Arc<Upstream>>,
    /// The service the route uses, if any (the `service` metric label).
    pub service_id: Option<String>,
    /// The route's metric series, found per request without a lock.
    pub metrics: RouteMetrics,
    /// Stands for "no route matched": the global rules run, then the request is answered 404
    /// (as APISIX runs its global rules on requests no route matches).
    pub unmatched: bool,
}

impl CompiledRoute {
    /// An enabled route with no paths, plugins or upstream: the start of the compiler and tests.
    pub fn bare(id: &str) -> Self {
        Self {
            id: Arc::from(id),
            paths: Vec::new(),
            hosts: Vec::new(),
            methods: None,
            vars: None,
            priority: 0,
            revision: 0,
            enabled: true,
            chain: Chain::default(),
            global: Chain::default(),
            upstream: None,
            service_id: None,
            metrics: RouteMetrics::default(),
            unmatched: false,
        }
    }

    /// How the gateway renders its own errors on this route: as its own plugins declare (an AI
    /// plugin: OpenAI's), else as the global rules' do, else APISIX's.
    pub fn error_style(&self) -> ErrorStyle {
        self.chain.declared_error_style().or_else(|| self.global.declared_error_style()).unwrap_or_default()
    }

    /// The service the route uses, if any.
    pub fn service_id(&self) -> Option<&str> {
        self.service_id.as_deref()
    }

    /// Whether this route takes a request for `host` (lower case, no port) and `method`.
    pub fn accepts(&self, host: Option<&str>, method: &Method) -> bool {
        let host_ok = self.hosts.is_empty() || host.is_some_and(|h| self.hosts.iter().any(|p| p.matches(h)));
        host_ok && self.methods.as_ref().is_none_or(|m| m.contains(method))
    }
}

/// A service as routes compile against it.
#[derive(Clone)]
pub struct ServiceEntry {
    pub spec: ServiceSpec,
    /// Its inline `upstream`, else its `upstream_id`'s: one compiled upstream (one balancer, one
    /// health state) shared by every route that uses it.
    pub upstream: Option<Arc<Upstream>>,
}

/// An upstream object, compiled once and shared by the routes and services naming it.
pub struct UpstreamEntry {
    pub upstream: Arc<Upstream>,
}

/// A plugin config as routes compile against it (its plugins are merged into each route's).
pub struct PluginConfigEntry {
    pub spec: PluginConfigSpec,
}

/// One global rule's plugins, compiled.
pub struct GlobalRuleEntry {
    pub chain: Chain,
}

/// A host pattern of a route: exact (`api.example.com`) or wildcard (`*.example.com`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPattern {
    Exact(String),
    /// The suffix including the leading dot: `.example.com`.
    Wildcard(String),
}

impl HostPattern {
    pub fn parse(host: &str) -> HostPattern {
        let host = host.to_ascii_lowercase();
        match host.strip_prefix('*') {
            Some(suffix) => HostPattern::Wildcard(suffix.to_string()),
            None => HostPattern::Exact(host),
        }
    }

    pub fn matches(&self, host: &str) -> bool {
        match self {
            HostPattern::Exact(exact) => exact == host,
            HostPattern::Wildcard(suffix) => host.len() > suffix.len() && host.ends_with(suffix.as_str()),
        }
    }
}
