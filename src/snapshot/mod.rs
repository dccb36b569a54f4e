//! The immutable, compiled config a request runs against: built off the request path by the
//! reload task ([`Snapshot::build`]), published with one `ArcSwap::store`.

mod build;
mod global;

use std::collections::HashMap;
use std::sync::Arc;

use serde::Serialize;
use switchyard_builtin::model_api::catalog::Catalog;

use switchyard_sdk::Chain;

use crate::compiled::{CompiledRoute, GlobalRuleEntry, PluginConfigEntry, ServiceEntry, UpstreamEntry};
use crate::compiler::{ApiKeyEntry, ConsumerDirectory, ConsumerEntry, Dependencies, ModelEntry, ProviderKeyEntry};
use crate::resource::Kind;
use crate::router::Router;

/// A compiled resource, and the writes it was compiled from: the next reload reuses it as it is
/// (same `Arc`, plugin state included) while neither the resource nor any dependency changed.
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
    /// The resources it compiled against (a route's service, upstream object and plugin config, a
    /// model's provider key), each with the revision of its last write.
    dependencies: Vec<(Kind, Arc<str>, u64)>,
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
    /// The model API's built-in routes, as served (with the global rules' plugins): consulted
    /// only when no user route matches.
    pub builtin: Router,
    /// The same routes as compiled, kept for the next reload while the catalog does not change.
    pub builtin_routes: Vec<Arc<CompiledRoute>>,
    /// Every compiled route, disabled ones included, by id.
    pub routes: HashMap<String, Entry<CompiledRoute>>,
    pub services: HashMap<String, Entry<ServiceEntry>>,
    pub upstreams: HashMap<String, Entry<UpstreamEntry>>,
    pub plugin_configs: HashMap<String, Entry<PluginConfigEntry>>,
    pub global_rules: HashMap<String, Entry<GlobalRuleEntry>>,
    /// Every global rule's plugins (rules in id order), run before each route's own.
    pub global_chain: Chain,
    /// What a request no route matches runs while there are global rules: their plugins, then
    /// a 404. `None` without global rules (the 404 is answered at once).
    pub unmatched: Option<Arc<CompiledRoute>>,
    pub provider_keys: HashMap<String, Entry<ProviderKeyEntry>>,
    pub models: HashMap<String, Entry<ModelEntry>>,
    pub api_keys: HashMap<String, Entry<ApiKeyEntry>>,
    pub consumers: HashMap<String, Entry<ConsumerEntry>>,
    /// The consumers above by credential, for authentication plugins (a consumer whose credential
    /// another already holds is left out, and listed in `rejected`).
    pub consumer_directory: Arc<ConsumerDirectory>,
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

    fn upstream(&self, id: &str) -> Option<&UpstreamEntry> {
        self.upstreams.get(id).map(|entry| entry.compiled.as_ref())
    }

    fn plugin_config(&self, id: &str) -> Option<&PluginConfigEntry> {
        self.plugin_configs.get(id).map(|entry| entry.compiled.as_ref())
    }

    fn provider_key(&self, id: &str) -> Option<&ProviderKeyEntry> {
        self.provider_keys.get(id).map(|entry| entry.compiled.as_ref())
    }
}
