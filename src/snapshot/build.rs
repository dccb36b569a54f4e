//! Building a snapshot from the group's stored resources, compiling only what changed since the
//! previous one.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use switchyard_builtin::model_api::catalog::Catalog;
use switchyard_sdk::ConfigError;

use super::global;
use super::{Entry, Rejected, Snapshot, Source};
use crate::compiler::model_api::CompiledModel;
use crate::compiler::{self, consumers, model_api, objects, routes, CompileFn, Compiler, ConsumerDirectory};
use crate::resource::{parse_key, stored_json, Kind};
use crate::router::Router;
use crate::store::KeyValue;

/// The resources of one kind as listed: id and store record.
type Listed<'a> = Vec<(&'a str, &'a KeyValue)>;

/// How the resources of one kind are compiled: the compile function of their kind, and what to
/// note on a fresh result (a route's revision orders it among routes on the same path).
struct Loader<T> {
    kind: Kind,
    compile: CompileFn<T>,
    stamp: fn(&mut T, u64),
}

impl<T> Loader<T> {
    fn new(kind: Kind, compile: CompileFn<T>) -> Self {
        Self { kind, compile, stamp: |_, _| {} }
    }
}

/// What loading one kind gave.
struct Loaded<T> {
    entries: HashMap<String, Entry<T>>,
    rejected: Vec<Rejected>,
    /// Whether any entry was compiled anew rather than reused.
    fresh: bool,
}

impl Snapshot {
    /// Builds a snapshot from every resource of the group (`raw`, keyed by store key). Each
    /// resource goes through [`Compiler::compile`]'s function for its kind, unless `prev` holds it
    /// compiled from the same write (and from the same write of its service or provider key):
    /// then it is reused as it is, so plugin state (balancers, health) survives the reload and a
    /// reload compiles only what changed. Invalid resources are skipped and listed in `rejected`.
    pub fn build(
        raw: &BTreeMap<String, KeyValue>,
        group_prefix: &str,
        revision: u64,
        compiler: &Compiler,
        prev: Option<&Snapshot>,
    ) -> Snapshot {
        let mut listed: HashMap<Kind, Listed<'_>> = HashMap::new();
        for kv in raw.values() {
            let Some((kind, id)) = parse_key(group_prefix, &kv.key) else { continue };
            let Some(kind) = Kind::parse(kind) else { continue };
            listed.entry(kind).or_default().push((id, kv));
        }
        let of = |kind: Kind| listed.get(&kind).map_or(&[][..], Vec::as_slice);
        let mut snapshot = Snapshot { revision, ..Snapshot::default() };
        // Dependencies first: routes compile against services, upstreams and plugin configs,
        // services against upstreams, models against provider keys.
        let upstreams = Loader::new(Kind::Upstreams, objects::upstream);
        let upstreams = snapshot.load(&upstreams, of(Kind::Upstreams), prev.map(|p| &p.upstreams), compiler);
        snapshot.upstreams = snapshot.keep(upstreams);
        let plugin_configs = Loader::new(Kind::PluginConfigs, objects::plugin_config);
        let plugin_configs =
            snapshot.load(&plugin_configs, of(Kind::PluginConfigs), prev.map(|p| &p.plugin_configs), compiler);
        snapshot.plugin_configs = snapshot.keep(plugin_configs);
        let global_rules = Loader::new(Kind::GlobalRules, objects::global_rule);
        let global_rules = snapshot.load(&global_rules, of(Kind::GlobalRules), prev.map(|p| &p.global_rules), compiler);
        snapshot.global_rules = snapshot.keep(global_rules);
        snapshot.global_chain = global::chain(&snapshot.global_rules);
        snapshot.unmatched = global::unmatched(&snapshot.global_chain);
        let services = Loader::new(Kind::Services, routes::service);
        let services = snapshot.load(&services, of(Kind::Services), prev.map(|p| &p.services), compiler);
        snapshot.services = snapshot.keep(services);
        let provider_keys = Loader::new(Kind::ProviderKeys, model_api::provider_key);
        let provider_keys =
            snapshot.load(&provider_keys, of(Kind::ProviderKeys), prev.map(|p| &p.provider_keys), compiler);
        let mut catalog_fresh = provider_keys.fresh;
        snapshot.provider_keys = snapshot.keep(provider_keys);
        let routes =
            Loader { kind: Kind::Routes, compile: routes::route, stamp: |route, revision| route.revision = revision };
        let routes = snapshot.load(&routes, of(Kind::Routes), prev.map(|p| &p.routes), compiler);
        let models = Loader::new(Kind::Models, model_api::model);
        let models = snapshot.load(&models, of(Kind::Models), prev.map(|p| &p.models), compiler);
        let api_keys = Loader::new(Kind::ApiKeys, model_api::api_key);
        let api_keys = snapshot.load(&api_keys, of(Kind::ApiKeys), prev.map(|p| &p.api_keys), compiler);
        catalog_fresh |= models.fresh || api_keys.fresh;
        snapshot.routes = snapshot.keep(routes);
        snapshot.models = snapshot.keep(models);
        snapshot.api_keys = snapshot.keep(api_keys);

        let enabled: Vec<_> = snapshot.enabled_routes().map(|r| global::served(r, &snapshot.global_chain)).collect();
        snapshot.router = Router::build(&enabled);
        match prev.filter(|p| {
            !catalog_fresh && p.models.len() == snapshot.models.len() && p.api_keys.len() == snapshot.api_keys.len()
        }) {
            Some(prev) => {
                snapshot.catalog = Arc::clone(&prev.catalog);
                snapshot.builtin_routes = prev.builtin_routes.clone();
                snapshot.catalog_rejected = prev.catalog_rejected.clone();
            }
            None => snapshot.assemble_catalog(group_prefix, compiler),
        }
        snapshot.rejected.extend(snapshot.catalog_rejected.iter().cloned());
        let model_api_global = global::for_model_api(&snapshot.global_chain, &compiler.registry);
        let builtin: Vec<_> = snapshot.builtin_routes.iter().map(|r| global::served(r, &model_api_global)).collect();
        snapshot.builtin = Router::build(&builtin);
        let consumers = Loader::new(Kind::Consumers, consumers::consumer);
        let consumers = snapshot.load(&consumers, of(Kind::Consumers), prev.map(|p| &p.consumers), compiler);
        snapshot.consumers = snapshot.keep(consumers);
        snapshot.index_consumers(group_prefix);
        snapshot
    }

    /// Indexes the consumers by credential, in id order, so the first of two holding the same
    /// credential wins whatever the order of the reload. Cheap: one map entry per credential.
    fn index_consumers(&mut self, group_prefix: &str) {
        let mut directory = ConsumerDirectory::default();
        for (id, entry) in sorted(&self.consumers) {
            if let Err(error) = directory.add(&entry.compiled) {
                let key = format!("{group_prefix}{}/{id}", Kind::Consumers.as_str());
                tracing::warn!(key = %key, error = %error, "stored resource rejected");
                self.rejected.push(Rejected { kind: Kind::Consumers.as_str().into(), id: id.to_string(), key, error });
            }
        }
        self.consumer_directory = Arc::new(directory);
    }

    /// Compiles (or reuses from `prev`) every listed resource of one kind against this snapshot's
    /// dependencies so far.
    fn load<T>(
        &self,
        loader: &Loader<T>,
        listed: &[(&str, &KeyValue)],
        prev: Option<&HashMap<String, Entry<T>>>,
        compiler: &Compiler,
    ) -> Loaded<T> {
        let mut loaded = Loaded { entries: HashMap::with_capacity(listed.len()), rejected: Vec::new(), fresh: false };
        for (id, kv) in listed {
            if let Some(old) = prev.and_then(|p| p.get(*id)).filter(|old| self.unchanged(old, kv)) {
                loaded.entries.insert(id.to_string(), old.clone());
                continue;
            }
            match self.compile_one(loader, id, kv, compiler) {
                Ok(entry) => {
                    loaded.fresh = true;
                    loaded.entries.insert(id.to_string(), entry);
                }
                Err(err) => {
                    tracing::warn!(key = %kv.key, error = %err, "stored resource rejected");
                    loaded.rejected.push(Rejected {
                        kind: loader.kind.as_str().into(),
                        id: id.to_string(),
                        key: kv.key.clone(),
                        error: err.to_string(),
                    });
                }
            }
        }
        loaded
    }

    fn compile_one<T>(
        &self,
        loader: &Loader<T>,
        id: &str,
        kv: &KeyValue,
        compiler: &Compiler,
    ) -> Result<Entry<T>, ConfigError> {
        let value = stored_json(loader.kind, &kv.value)?;
        let mut compiled = (loader.compile)(compiler, id, &value, self)?;
        (loader.stamp)(&mut compiled, kv.mod_revision);
        let dependencies = compiler::dependencies(loader.kind, &value, self)
            .into_iter()
            .filter_map(|(of, id)| self.revision_of(of, &id).map(|revision| (of, Arc::from(id), revision)))
            .collect();
        Ok(Entry { compiled: Arc::new(compiled), source: Source { revision: kv.mod_revision, dependencies } })
    }

    /// Whether `old` was compiled from this very write and from its dependencies as they are now.
    /// Checked before parsing: a reload with 10,000 routes then parses only what changed.
    fn unchanged<T>(&self, old: &Entry<T>, kv: &KeyValue) -> bool {
        old.source.revision == kv.mod_revision
            && old.source.dependencies.iter().all(|(of, id, revision)| self.revision_of(*of, id) == Some(*revision))
    }

    /// The revision a compiled dependency of this snapshot was compiled from. (A route names the
    /// upstream object of its service among its own dependencies: see `compiler::dependencies`.)
    fn revision_of(&self, kind: Kind, id: &str) -> Option<u64> {
        match kind {
            Kind::Services => self.services.get(id).map(|e| e.source.revision),
            Kind::Upstreams => self.upstreams.get(id).map(|e| e.source.revision),
            Kind::PluginConfigs => self.plugin_configs.get(id).map(|e| e.source.revision),
            Kind::ProviderKeys => self.provider_keys.get(id).map(|e| e.source.revision),
            Kind::Routes | Kind::GlobalRules | Kind::Models | Kind::ApiKeys | Kind::Consumers => None,
        }
    }

    /// Keeps a kind's rejections and hands back its entries.
    fn keep<T>(&mut self, loaded: Loaded<T>) -> HashMap<String, Entry<T>> {
        self.rejected.extend(loaded.rejected);
        loaded.entries
    }

    /// Builds the catalog from this snapshot's models and caller keys (by id, so the first of two
    /// holding the same alias or key hash wins, whatever the order of the reload), and the
    /// built-in routes that serve it.
    fn assemble_catalog(&mut self, group_prefix: &str, compiler: &Compiler) {
        let mut catalog = Catalog::default();
        let mut rejected = Vec::new();
        let reject = |kind: Kind, id: &str, error: String| Rejected {
            kind: kind.as_str().into(),
            id: id.to_string(),
            key: format!("{group_prefix}{}/{id}", kind.as_str()),
            error,
        };
        let mut aliases: HashMap<&str, &str> = HashMap::new();
        let mut routing = Vec::new();
        for (id, entry) in sorted(&self.models) {
            let alias = entry.compiled.spec.display_name.as_str();
            match aliases.get(alias) {
                Some(holder) => rejected.push(reject(
                    Kind::Models,
                    id,
                    format!("display_name: is already used by model `{holder}`"),
                )),
                None => {
                    aliases.insert(alias, id);
                    match &entry.compiled.compiled {
                        CompiledModel::Direct(model) => {
                            catalog.add_model(Arc::clone(model));
                        }
                        CompiledModel::Routing(routed) => routing.push((id, Arc::clone(routed))),
                    }
                }
            }
        }
        // Routing models name direct ones: they go in once every direct model is.
        for (id, routed) in routing {
            if let Err(error) = catalog.add_routing(routed) {
                rejected.push(reject(Kind::Models, id, error));
            }
        }
        for (id, entry) in sorted(&self.api_keys) {
            if let Err(holder) = catalog.add_key(Arc::clone(&entry.compiled.key)) {
                rejected.push(reject(Kind::ApiKeys, id, format!("key_hash: is already used by API key `{holder}`")));
            }
        }
        for rejection in &rejected {
            tracing::warn!(key = %rejection.key, error = %rejection.error, "stored resource rejected");
        }
        self.catalog = Arc::new(catalog);
        self.builtin_routes = model_api::builtin_routes(compiler, &self.catalog);
        self.catalog_rejected = rejected;
    }
}

fn sorted<T>(entries: &HashMap<String, Entry<T>>) -> Vec<(&str, &Entry<T>)> {
    let mut out: Vec<_> = entries.iter().map(|(id, entry)| (id.as_str(), entry)).collect();
    out.sort_unstable_by_key(|(id, _)| *id);
    out
}
