//! What turns stored config into compiled config: the plugin registry, the node's transport, and
//! one compile function per kind of resource ([`routes::route`], [`routes::service`],
//! [`model_api::provider_key`], [`model_api::model`], [`model_api::api_key`]). The admin API
//! reaches them through [`Compiler::compile`] to check a write; reload calls them for every
//! resource that changed. Being the same functions, whatever reload would refuse is a 400 at the
//! admin API naming the field, and whatever the admin API accepts goes live.

pub mod consumers;
pub mod model_api;
pub mod objects;
pub mod routes;

use std::any::{Any, TypeId};
use std::sync::Arc;

use serde_json::Value;
use switchyard_sdk::{
    BuildContext, Chain, ClientHandle, ClientSettings, ConfigError, CounterPolicy, CounterStore, Registry,
};

use crate::limits_store::CounterStores;

use crate::compiled::{CompiledRoute, GlobalRuleEntry, PluginConfigEntry, ServiceEntry, UpstreamEntry};
use crate::resource::Kind;
use crate::transport::Transport;

pub use consumers::{ConsumerDirectory, ConsumerEntry};
pub use model_api::{ApiKeyEntry, ModelEntry, ProviderKeyEntry};

pub struct Compiler {
    pub registry: Registry,
    pub transport: Arc<Transport>,
    /// The counter stores lent to limiting plugins, kept across reloads.
    pub counters: Arc<CounterStores>,
}

/// The resources a resource compiles against, already compiled: a route's service, upstream and
/// plugin config, a service's upstream, a model's provider key. Reload answers from the snapshot
/// it is building; the admin API from the store.
pub trait Dependencies: Sync {
    fn service(&self, _id: &str) -> Option<&ServiceEntry> {
        None
    }

    fn upstream(&self, _id: &str) -> Option<&UpstreamEntry> {
        None
    }

    fn plugin_config(&self, _id: &str) -> Option<&PluginConfigEntry> {
        None
    }

    fn provider_key(&self, _id: &str) -> Option<&ProviderKeyEntry> {
        None
    }

    /// Data the built-in routes' plugins serve (the model API's catalog), by type: see
    /// [`BuildContext::provided`]. `None` for everything a user configures.
    fn provided(&self, _type_id: TypeId) -> Option<Arc<dyn Any + Send + Sync>> {
        None
    }
}

/// For resources that name no other.
pub struct NoDependencies;

impl Dependencies for NoDependencies {}

/// One compiled resource, of any kind (the large ones boxed: the enum is passed around whole).
pub enum Compiled {
    Route(CompiledRoute),
    Service(Box<ServiceEntry>),
    Upstream(UpstreamEntry),
    PluginConfig(PluginConfigEntry),
    GlobalRule(GlobalRuleEntry),
    ProviderKey(Box<ProviderKeyEntry>),
    Model(ModelEntry),
    ApiKey(ApiKeyEntry),
    Consumer(ConsumerEntry),
}

/// A compile function: the resource's id and stored JSON, and what it compiles against.
pub type CompileFn<T> = fn(&Compiler, &str, &Value, &dyn Dependencies) -> Result<T, ConfigError>;

impl Compiler {
    pub fn new(registry: Registry, transport: Arc<Transport>) -> Self {
        Self { registry, transport, counters: Arc::default() }
    }

    /// Compiles one resource of `kind` from its JSON with its kind's compile function: what the
    /// admin API runs on every write. Errors carry the dotted path of the field at fault and
    /// never quote a value.
    pub fn compile(
        &self,
        kind: Kind,
        id: &str,
        value: &Value,
        deps: &dyn Dependencies,
    ) -> Result<Compiled, ConfigError> {
        Ok(match kind {
            Kind::Routes => Compiled::Route(routes::route(self, id, value, deps)?),
            Kind::Services => Compiled::Service(Box::new(routes::service(self, id, value, deps)?)),
            Kind::Upstreams => Compiled::Upstream(objects::upstream(self, id, value, deps)?),
            Kind::PluginConfigs => Compiled::PluginConfig(objects::plugin_config(self, id, value, deps)?),
            Kind::GlobalRules => Compiled::GlobalRule(objects::global_rule(self, id, value, deps)?),
            Kind::ProviderKeys => Compiled::ProviderKey(Box::new(model_api::provider_key(self, id, value, deps)?)),
            Kind::Models => Compiled::Model(model_api::model(self, id, value, deps)?),
            Kind::ApiKeys => Compiled::ApiKey(model_api::api_key(self, id, value, deps)?),
            Kind::Consumers => Compiled::Consumer(consumers::consumer(self, id, value, deps)?),
        })
    }

    /// Compiles a `plugins` object; `path` is where it sits, for error paths.
    pub fn chain(
        &self,
        plugins: &serde_json::Map<String, Value>,
        path: &str,
        deps: &dyn Dependencies,
    ) -> Result<Chain, ConfigError> {
        self.registry.build_chain(
            plugins,
            path,
            &Context { transport: &self.transport, counters: &self.counters, deps },
        )
    }
}

/// The resources `value` (of `kind`) names and compiles against: its kind and id each. A route
/// also depends on the upstream object its service names (found in `deps`), since it serves
/// through it.
pub fn dependencies(kind: Kind, value: &Value, deps: &dyn Dependencies) -> Vec<(Kind, String)> {
    let mut out: Vec<(Kind, String)> =
        dependency_fields(kind).iter().filter_map(|(field, of)| Some((*of, id_of(value.get(*field)?)?))).collect();
    if kind == Kind::Routes {
        let service_upstream = out
            .iter()
            .find(|(of, _)| *of == Kind::Services)
            .and_then(|(_, id)| deps.service(id)?.spec.upstream_id.clone());
        out.extend(service_upstream.map(|id| (Kind::Upstreams, id)));
    }
    out
}

/// The fields by which a resource of `kind` names those it compiles against, and their kinds.
pub fn dependency_fields(kind: Kind) -> &'static [(&'static str, Kind)] {
    match kind {
        Kind::Routes => &[
            ("service_id", Kind::Services),
            ("upstream_id", Kind::Upstreams),
            ("plugin_config_id", Kind::PluginConfigs),
        ],
        Kind::Services => &[("upstream_id", Kind::Upstreams)],
        Kind::Models => &[("provider_key_id", Kind::ProviderKeys)],
        Kind::Upstreams
        | Kind::PluginConfigs
        | Kind::GlobalRules
        | Kind::ProviderKeys
        | Kind::ApiKeys
        | Kind::Consumers => &[],
    }
}

/// A reference as APISIX allows it: a string or a number.
fn id_of(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// What plugin factories see while a chain compiles: the node's pools, and whatever the
/// dependencies provide.
struct Context<'a> {
    transport: &'a Transport,
    counters: &'a CounterStores,
    deps: &'a dyn Dependencies,
}

impl BuildContext for Context<'_> {
    fn client(&self, settings: ClientSettings) -> Result<ClientHandle, String> {
        self.transport.client(settings)
    }

    fn provided(&self, type_id: TypeId) -> Option<Arc<dyn Any + Send + Sync>> {
        self.deps.provided(type_id)
    }

    fn counters(&self, policy: &CounterPolicy) -> Result<Arc<dyn CounterStore>, String> {
        Ok(self.counters.get(policy))
    }
}
