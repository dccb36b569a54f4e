//! What compiling a route or service produces: the pieces the router matches on and the snapshot
//! holds. A leaf module, so the compiler, the router and the snapshot all depend on it and not on
//! each other.

use std::sync::Arc;

use http::Method;
use switchyard_sdk::Chain;

use crate::resource::service::ServiceSpec;
use crate::resource::upstream::UpstreamSpec;
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
    /// `status: 0` routes are compiled (and checked) but not routed to.
    pub enabled: bool,
    pub chain: Chain,
    pub upstream: Option<Arc<Upstream>>,
}

impl CompiledRoute {
    /// An enabled route with no paths, plugins or upstream: the start of the compiler and tests.
    pub fn bare(id: &str) -> Self {
        Self {
            id: Arc::from(id),
            paths: Vec::new(),
            hosts: Vec::new(),
            methods: None,
            priority: 0,
            revision: 0,
            enabled: true,
            chain: Chain::default(),
            upstream: None,
        }
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
    pub upstream: Option<UpstreamSpec>,
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
