//! What turns stored config into compiled config: the plugin registry, the node's transport, and
//! one compile function per kind of resource ([`routes::route`], [`routes::service`],
//! [`model_api::provider_key`], [`model_api::model`], [`model_api::api_key`]). The admin API
//! reaches them through [`Compiler::compile`] to check a write; reload calls them for every
//! resource that changed. Being the same functions, whatever reload would refuse is a 400 at the
//! admin API naming the field, and whatever the admin API accepts goes live.

pub mod model_api;
pub mod routes;

use std::any::{Any, TypeId};
use std::sync::Arc;

use serde_json::Value;
use switchyard_sdk::{BuildContext, Chain, ClientHandle, ClientSettings, ConfigError, Registry};

use crate::compiled::{CompiledRoute, ServiceEntry};
use crate::resource::Kind;
use crate::transport::Transport;

pub use model_api::{ApiKeyEntry, ModelEntry, ProviderKeyEntry};

pub struct Compiler {
    pub registry: Registry,
    pub transport: Arc<Transport>,
}

/// The resources a resource compiles against, already compiled: a route's service, a model's
/// provider key. Reload answers from the snapshot it is building; the admin API from the store.
pub trait Dependencies: Sync {
    fn service(&self, _id: &str) -> Option<&ServiceEntry> {
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
    ProviderKey(Box<ProviderKeyEntry>),
    Model(ModelEntry),
    ApiKey(ApiKeyEntry),
}

/// A compile function: the resource's id and stored JSON, and what it compiles against.
pub type CompileFn<T> = fn(&Compiler, &str, &Value, &dyn Dependencies) -> Result<T, ConfigError>;

impl Compiler {
    pub fn new(registry: Registry, transport: Arc<Transport>) -> Self {
        Self { registry, transport }
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
            Kind::ProviderKeys => Compiled::ProviderKey(Box::new(model_api::provider_key(self, id, value, deps)?)),
            Kind::Models => Compiled::Model(model_api::model(self, id, value, deps)?),
            Kind::ApiKeys => Compiled::ApiKey(model_api::api_key(self, id, value, deps)?),
        })
    }

    /// Compiles a `plugins` object; `path` is where it sits, for error paths.
    pub fn chain(
        &self,
        plugins: &serde_json::Map<String, Value>,
        path: &str,
        deps: &dyn Dependencies,
    ) -> Result<Chain, ConfigError> {
        self.registry.build_chain(plugins, path, &Context { transport: &self.transport, deps })
    }
}

/// The resource `value` (of `kind`) names and compiles against, if any: its kind and id.
pub fn dependency(kind: Kind, value: &Value) -> Option<(Kind, String)> {
    let (field, of) = dependency_field(kind)?;
    Some((of, value.get(field)?.as_str()?.to_string()))
}

/// The field by which a resource of `kind` names the one it compiles against, and that one's kind.
pub fn dependency_field(kind: Kind) -> Option<(&'static str, Kind)> {
    match kind {
        Kind::Routes => Some(("service_id", Kind::Services)),
        Kind::Models => Some(("provider_key_id", Kind::ProviderKeys)),
        Kind::Services | Kind::ProviderKeys | Kind::ApiKeys => None,
    }
}

/// What plugin factories see while a chain compiles: the node's pools, and whatever the
/// dependencies provide.
struct Context<'a> {
    transport: &'a Transport,
    deps: &'a dyn Dependencies,
}

impl BuildContext for Context<'_> {
    fn client(&self, settings: ClientSettings) -> Result<ClientHandle, String> {
        self.transport.client(settings)
    }

    fn provided(&self, type_id: TypeId) -> Option<Arc<dyn Any + Send + Sync>> {
        self.deps.provided(type_id)
    }
}
