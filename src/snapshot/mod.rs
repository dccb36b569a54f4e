//! The immutable, compiled config a request runs against: built off the request path by the
//! reload task ([`Snapshot::build`]), published with one `ArcSwap::store`.

mod build;

use std::collections::HashMap;
use std::sync::Arc;

use serde::Serialize;
use switchyard_builtin::model_api::catalog::Catalog;

use crate::compiled::{CompiledRoute, ServiceEntry};
use crate::compiler::{ApiKeyEntry, Dependencies, ModelEntry, ProviderKeyEntry};
use crate::resource::Kind;
use crate::router::Router;

/// A compiled resource, and the writes it was compiled from: the next reload reuses it as it is
/// (same `Arc`, plugin state included) while neither the resource nor its dependency changed.
pub struct Entry<T> {
    pub compiled: Arc<T>,
    source: Source,
}

impl<T> Clone for Entry<T> {
    fn clone(&self) -> Self {
        Self { compiled: Arc::clone(&self.compiled), source: self.source.clone() }
    }
}

/// The store revisions a compiled resource reflects.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Source {
    /// The revision of the resource's own last write.
    revision: u64,
    /// The resource it compiled against (a route's service, a model's provider key), and the
    /// revision of that one's last write.
    dependency: Option<(Kind, Arc<str>, u64)>,
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
    pub builtin: Arc<Router>,
    /// Every compiled route, disabled ones included, by id.
    pub routes: HashMap<String, Entry<CompiledRoute>>,
    pub services: HashMap<String, Entry<ServiceEntry>>,
    pub provider_keys: HashMap<String, Entry<ProviderKeyEntry>>,
    pub models: HashMap<String, Entry<ModelEntry>>,
    pub api_keys: HashMap<String, Entry<ApiKeyEntry>>,
    /// What the built-in routes serve: the models and caller keys above.
    pub catalog: Arc<Catalog>,
    pub rejected: Vec<Rejected>,
    /// Models and caller keys left out of `catalog` (an alias or key hash used twice), kept with
    /// it when the next reload reuses it.
    catalog_rejected: Vec<Rejected>,
}

impl Snapshot {
    /// The enabled routes' compiled forms, for the router and the plugins' background work.
    pub fn enabled_routes(&self) -> impl Iterator<Item = &Arc<CompiledRoute>> + '_ {
        self.routes.values().map(|entry| &entry.compiled).filter(|route| route.enabled)
    }
}

/// A snapshot being built answers dependencies from what it compiled so far.
impl Dependencies for Snapshot {
    fn service(&self, id: &str) -> Option<&ServiceEntry> {
        self.services.get(id).map(|entry| entry.compiled.as_ref())
    }

    fn provider_key(&self, id: &str) -> Option<&ProviderKeyEntry> {
        self.provider_keys.get(id).map(|entry| entry.compiled.as_ref())
    }
}
