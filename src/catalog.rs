//! The model API in a snapshot: provider keys, models and caller keys compiled into a
//! [`Catalog`], served by built-in routes on `/v1/...` that run the `model-api` plugin.

use std::collections::HashMap;
use std::sync::Arc;

use http::Method;
use serde::Deserialize;
use serde_json::Value;
use switchyard_builtin::model_api::catalog::{CallerKey, Catalog, ModelDef};
use switchyard_builtin::model_api::{ModelApi, Surface};
use switchyard_sdk::ChainEntry;
use switchyard_sdk::{Chain, ConfigError};

use crate::compiler::Compiler;
use crate::resource::api_key::ApiKeySpec;
use crate::resource::model::ModelSpec;
use crate::resource::provider_key::ProviderKeySpec;
use crate::snapshot::CompiledRoute;
use crate::store::KeyValue;

/// How model API resources are stored: the entry the admin API returns, secret included.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
pub struct StoredEntry {
    pub id: String,
    pub value: Value,
    pub revision: u64,
}

impl StoredEntry {
    pub fn parse(kv: &KeyValue) -> Result<StoredEntry, ConfigError> {
        serde_json::from_slice(&kv.value).map_err(|e| ConfigError::new("", format!("invalid entry: {e}")))
    }
}

/// Model API resources found in the store, by kind.
#[derive(Default)]
pub struct ModelResources<'a> {
    pub provider_keys: Vec<&'a KeyValue>,
    pub models: Vec<&'a KeyValue>,
    pub api_keys: Vec<&'a KeyValue>,
}

/// A resource that did not compile: (kind, id, key, error).
pub type Rejection = (&'static str, String, String, ConfigError);

/// Builds the catalog; invalid resources are skipped and returned as rejections.
pub fn build(resources: &ModelResources<'_>) -> (Catalog, Vec<Rejection>) {
    let mut catalog = Catalog::default();
    let mut rejected = Vec::new();
    let id_of = |kv: &KeyValue| kv.key.rsplit('/').next().unwrap_or_default().to_string();
    let mut provider_keys: HashMap<String, ProviderKeySpec> = HashMap::new();
    for kv in &resources.provider_keys {
        match StoredEntry::parse(kv).and_then(|e| ProviderKeySpec::parse(&e.value)) {
            Ok(spec) => {
                provider_keys.insert(id_of(kv), spec);
            }
            Err(err) => rejected.push(("provider_keys", id_of(kv), kv.key.clone(), err)),
        }
    }
    for kv in &resources.models {
        let compiled = StoredEntry::parse(kv).and_then(|e| ModelSpec::parse(&e.value)).and_then(|model| {
            let key = provider_keys.get(&model.provider_key_id).ok_or_else(|| {
                ConfigError::new("provider_key_id", format!("provider key `{}` does not exist", model.provider_key_id))
            })?;
            catalog.add_model(&ModelDef {
                alias: &model.display_name,
                provider: &model.provider,
                model_name: &model.model_name,
                adapter: &key.adapter,
                secret: &key.secret,
                api_base: key.api_base.as_deref(),
                api_version: key.api_version.as_deref(),
                strip_headers: &key.strip_headers,
                reasoning_field: key.response.as_ref().and_then(|r| r.reasoning_field.as_deref()),
            })
        });
        if let Err(err) = compiled {
            rejected.push(("models", id_of(kv), kv.key.clone(), err));
        }
    }
    for kv in &resources.api_keys {
        match StoredEntry::parse(kv).and_then(|e| ApiKeySpec::parse(&e.value)) {
            Ok(spec) => catalog.add_key(
                spec.hash_bytes(),
                CallerKey { id: id_of(kv), allowed: spec.allowed().map(|list| list.into_iter().collect()) },
            ),
            Err(err) => rejected.push(("api_keys", id_of(kv), kv.key.clone(), err)),
        }
    }
    (catalog, rejected)
}

/// The built-in routes of the model API over `catalog`. The snapshot keeps them apart from user
/// routes and consults them only when no user route matches, so a user route always wins.
pub fn builtin_routes(catalog: Catalog, compiler: &Compiler) -> Vec<Arc<CompiledRoute>> {
    let transport = match ModelApi::default_settings(compiler.transport.as_ref()) {
        Ok(transport) => Arc::new(transport),
        Err(err) => {
            tracing::error!(%err, "model API transport failed to compile; /v1 is not served");
            return Vec::new();
        }
    };
    let catalog = Arc::new(catalog);
    Surface::ALL
        .into_iter()
        .map(|(surface, path)| {
            let plugin = ModelApi::new(Arc::clone(&catalog), surface, Arc::clone(&transport));
            let mut route = CompiledRoute::bare(&format!("model-api:{path}"));
            route.paths = vec![path.to_string()];
            route.methods = Some(vec![if surface == Surface::Models { Method::GET } else { Method::POST }]);
            route.chain = Chain::new(vec![ChainEntry { name: "model-api", priority: 1040, plugin: Arc::new(plugin) }]);
            Arc::new(route)
        })
        .collect()
}
