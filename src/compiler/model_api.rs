//! The model API's resources compiled: provider keys, models and caller keys; and the built-in
//! routes that serve them, compiled like any route.

use std::any::{Any, TypeId};
use std::sync::Arc;

use serde_json::Value;
use switchyard_builtin::model_api::catalog::{CallerKey, Catalog, Model, ModelDef, ProviderKey, ProviderKeyDef};
use switchyard_sdk::ConfigError;

use super::{routes, Compiler, Dependencies};
use crate::resource::api_key::ApiKeySpec;
use crate::resource::model::ModelSpec;
use crate::resource::provider_key::ProviderKeySpec;
use crate::snapshot::CompiledRoute;

/// A provider key: its normalised spec (what the admin API stores) and its compiled form.
pub struct ProviderKeyEntry {
    pub spec: ProviderKeySpec,
    pub key: ProviderKey,
}

/// A model alias: its spec, and the upstream calls compiled against its provider key.
pub struct ModelEntry {
    pub spec: ModelSpec,
    pub model: Arc<Model>,
}

/// A caller key: its spec and the compiled hash and allowed aliases.
pub struct ApiKeyEntry {
    pub spec: ApiKeySpec,
    pub key: Arc<CallerKey>,
}

pub fn provider_key(
    _compiler: &Compiler,
    _id: &str,
    value: &Value,
    _deps: &dyn Dependencies,
) -> Result<ProviderKeyEntry, ConfigError> {
    let spec = ProviderKeySpec::parse(value)?;
    let key = ProviderKey::compile(&ProviderKeyDef {
        adapter: spec.adapter,
        secret: &spec.secret,
        api_base: spec.api_base.as_deref(),
        api_version: spec.api_version.as_deref(),
        strip_headers: &spec.strip_headers,
        reasoning_field: spec.response.as_ref().and_then(|r| r.reasoning_field.as_deref()),
    })?;
    Ok(ProviderKeyEntry { spec, key })
}

/// Compiles a model against its provider key (found in `deps`).
pub fn model(
    _compiler: &Compiler,
    _id: &str,
    value: &Value,
    deps: &dyn Dependencies,
) -> Result<ModelEntry, ConfigError> {
    let spec = ModelSpec::parse(value)?;
    let key = deps.provider_key(&spec.provider_key_id).ok_or_else(|| {
        ConfigError::new("provider_key_id", format!("provider key `{}` does not exist", spec.provider_key_id))
    })?;
    let def = ModelDef { alias: &spec.display_name, provider: &spec.provider, model_name: &spec.model_name };
    let model = Arc::new(Model::compile(&def, &key.key)?);
    Ok(ModelEntry { spec, model })
}

pub fn api_key(
    _compiler: &Compiler,
    id: &str,
    value: &Value,
    _deps: &dyn Dependencies,
) -> Result<ApiKeyEntry, ConfigError> {
    let spec = ApiKeySpec::parse(value)?;
    let key = CallerKey {
        id: id.to_string(),
        hash: spec.hash_bytes(),
        allowed: spec.allowed().map(|list| list.into_iter().collect()),
    };
    Ok(ApiKeyEntry { spec, key: Arc::new(key) })
}

/// The model API's built-in routes over `catalog`, compiled by the route compile every user route
/// goes through; only they are given the catalog. Runs at reload when the catalog changed.
pub fn builtin_routes(compiler: &Compiler, catalog: &Arc<Catalog>) -> Vec<Arc<CompiledRoute>> {
    let deps = ProvidesCatalog(Arc::clone(catalog));
    let mut out = Vec::new();
    for value in switchyard_builtin::model_api::builtin_routes() {
        let id = value.get("id").and_then(Value::as_str).unwrap_or_default();
        match routes::route(compiler, id, &value, &deps) {
            Ok(route) => out.push(Arc::new(route)),
            Err(err) => {
                tracing::error!(route = id, %err, "a built-in model API route failed to compile; it is not served")
            }
        }
    }
    out
}

struct ProvidesCatalog(Arc<Catalog>);

impl Dependencies for ProvidesCatalog {
    fn provided(&self, type_id: TypeId) -> Option<Arc<dyn Any + Send + Sync>> {
        (type_id == TypeId::of::<Catalog>()).then(|| Arc::clone(&self.0) as Arc<dyn Any + Send + Sync>)
    }
}
