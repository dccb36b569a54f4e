//! The model API's resources compiled: provider keys, models and caller keys; and the built-in
//! routes that serve them, compiled like any route.

use std::any::{Any, TypeId};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use switchyard_builtin::model_api::catalog::{
    key_quota, CallerKey, Catalog, Model, ModelDef, ProviderKey, ProviderKeyDef,
};
use switchyard_builtin::model_api::routing::{Routing, RoutingDef};
use switchyard_sdk::ConfigError;

use super::{routes, Compiler, Dependencies};
use crate::compiled::CompiledRoute;
use crate::resource::api_key::ApiKeySpec;
use crate::resource::model::ModelSpec;
use crate::resource::provider_key::ProviderKeySpec;

/// A provider key: its normalised spec (what the admin API stores) and its compiled form.
pub struct ProviderKeyEntry {
    pub spec: ProviderKeySpec,
    pub key: ProviderKey,
}

/// A model alias: its spec, and what it compiled to.
pub struct ModelEntry {
    pub spec: ModelSpec,
    pub compiled: CompiledModel,
}

pub enum CompiledModel {
    /// The upstream calls, compiled against the provider key.
    Direct(Arc<Model>),
    /// The targets by alias, found when the catalog is assembled.
    Routing(Arc<Routing>),
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

/// Compiles a direct model against its provider key (found in `deps`), or checks a routing one.
pub fn model(
    _compiler: &Compiler,
    _id: &str,
    value: &Value,
    deps: &dyn Dependencies,
) -> Result<ModelEntry, ConfigError> {
    let spec = ModelSpec::parse(value)?;
    if let Some(routing) = &spec.routing {
        let targets: Vec<(String, u32)> = routing.targets.iter().map(|t| (t.model.clone(), t.weight)).collect();
        let def = RoutingDef {
            strategy: routing.strategy,
            targets: &targets,
            retries: routing.retries,
            max_fallbacks: routing.max_fallbacks,
            retry_on_429: routing.retry_on_429,
            on_all_filtered: routing.on_all_filtered,
            stream_resume: routing.stream_resume,
            retry_after_max_wait: Duration::from_millis(routing.retry_after_max_wait_ms),
            fallback_error_codes: &routing.fallback_error_codes,
            rate_limit: spec.rate_limit.as_ref(),
        };
        let compiled = Routing::compile(&spec.display_name, &def).map_err(|e| e.within("routing"))?;
        return Ok(ModelEntry { spec, compiled: CompiledModel::Routing(Arc::new(compiled)) });
    }
    let text = |field: &Option<String>| field.clone().unwrap_or_default();
    let (provider, model_name, key_id) = (text(&spec.provider), text(&spec.model_name), text(&spec.provider_key_id));
    let key = deps
        .provider_key(&key_id)
        .ok_or_else(|| ConfigError::new("provider_key_id", format!("provider key `{key_id}` does not exist")))?;
    let millis = |ms: Option<u64>| ms.filter(|ms| *ms > 0).map(Duration::from_millis);
    let cooldown = spec.cooldown.clone().unwrap_or_default();
    let def = ModelDef {
        alias: &spec.display_name,
        provider: &provider,
        model_name: &model_name,
        timeout: millis(spec.timeout),
        stream_timeout: millis(spec.stream_timeout),
        cooldown: &cooldown,
        rate_limit: spec.rate_limit.as_ref(),
    };
    let model = Arc::new(Model::compile(&def, &key.key)?);
    Ok(ModelEntry { spec, compiled: CompiledModel::Direct(model) })
}

pub fn api_key(
    _compiler: &Compiler,
    id: &str,
    value: &Value,
    _deps: &dyn Dependencies,
) -> Result<ApiKeyEntry, ConfigError> {
    let spec = ApiKeySpec::parse(value)?;
    let key = CallerKey {
        id: Arc::from(id),
        hash: spec.hash_bytes(),
        allowed: spec.allowed().map(|list| list.into_iter().collect()),
        quota: key_quota(id, spec.rate_limit.as_ref()),
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
