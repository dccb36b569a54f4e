//! The admin API's half of the one compile path: a submitted resource is compiled by
//! [`Compiler::compile`](crate::compiler::Compiler::compile), against what it names (service,
//! upstream object, plugin config, provider key) as stored, exactly as reload will compile it.
//! What reload would refuse is a 400 here.

use std::collections::HashMap;

use serde_json::Value;

use super::AdminError;
use crate::compiled::{PluginConfigEntry, ServiceEntry, UpstreamEntry};
use crate::compiler::{dependencies, dependency_fields, Compiled, Dependencies, NoDependencies, ProviderKeyEntry};
use crate::resource::{resource_key, stored_json, Kind};
use crate::state::AdminState;

/// Compiles `value`, a resource of `kind` about to be written to `group`. The error names the
/// field at fault (`invalid model: provider_key_id: provider key `x` does not exist`).
pub async fn compile(
    state: &AdminState,
    group: &str,
    kind: Kind,
    id: &str,
    value: &Value,
) -> Result<Compiled, AdminError> {
    let mut deps = Stored::default();
    for (of, dependency_id) in dependencies(kind, value, &NoDependencies) {
        let Some(compiled) = load(state, group, &mut deps, kind, of, &dependency_id).await? else {
            if of == Kind::Services && kind == Kind::Routes {
                // APISIX's words for a route naming a missing service.
                return Err(AdminError::bad_request(format!(
                    "failed to fetch service info by service id [{dependency_id}], response code: 404"
                )));
            }
            continue; // the compile below names the missing reference
        };
        deps.hold(dependency_id, compiled);
    }
    state
        .compiler
        .compile(kind, id, value, &deps)
        .map_err(|err| AdminError::bad_request(format!("invalid {}: {err}", noun(kind))))
}

/// Reads and compiles the stored resource `of`/`id` that a `kind` names; `None` when it is not
/// stored. A service's own upstream object is loaded into `deps` first.
async fn load(
    state: &AdminState,
    group: &str,
    deps: &mut Stored,
    kind: Kind,
    of: Kind,
    id: &str,
) -> Result<Option<Compiled>, AdminError> {
    let Some(kv) = state.store.get(&resource_key(&state.store_root, group, of, id)).await? else {
        return Ok(None);
    };
    let field = dependency_fields(kind).iter().find(|(_, k)| *k == of).map_or("", |(field, _)| *field);
    // Reload rejects it, so nothing can compile against it there either.
    let invalid = |err: String| {
        AdminError::bad_request(format!("invalid {}: {field}: `{id}` is stored but not valid ({err})", noun(kind)))
    };
    let json = stored_json(of, &kv.value).map_err(|err| invalid(err.to_string()))?;
    for (inner_kind, inner_id) in dependencies(of, &json, &NoDependencies) {
        let inner = Box::pin(load(state, group, deps, of, inner_kind, &inner_id)).await?;
        if let Some(inner) = inner {
            deps.hold(inner_id, inner);
        }
    }
    state.compiler.compile(of, id, &json, &*deps).map(Some).map_err(|err| invalid(err.to_string()))
}

/// What an error message calls a resource of `kind`.
pub fn noun(kind: Kind) -> &'static str {
    match kind {
        Kind::Routes | Kind::Services | Kind::Upstreams | Kind::PluginConfigs | Kind::GlobalRules => "configuration",
        Kind::ProviderKeys => "provider key",
        Kind::Models => "model",
        Kind::ApiKeys => "API key",
        Kind::Consumers => "consumer",
    }
}

/// The resources a submitted one names, compiled from the store.
#[derive(Default)]
struct Stored {
    services: HashMap<String, ServiceEntry>,
    upstreams: HashMap<String, UpstreamEntry>,
    plugin_configs: HashMap<String, PluginConfigEntry>,
    provider_keys: HashMap<String, ProviderKeyEntry>,
}

impl Stored {
    fn hold(&mut self, id: String, compiled: Compiled) {
        match compiled {
            Compiled::Service(service) => {
                self.services.insert(id, *service);
            }
            Compiled::Upstream(upstream) => {
                self.upstreams.insert(id, upstream);
            }
            Compiled::PluginConfig(config) => {
                self.plugin_configs.insert(id, config);
            }
            Compiled::ProviderKey(key) => {
                self.provider_keys.insert(id, *key);
            }
            Compiled::Route(_)
            | Compiled::GlobalRule(_)
            | Compiled::Model(_)
            | Compiled::ApiKey(_)
            | Compiled::Consumer(_) => {}
        }
    }
}

impl Dependencies for Stored {
    fn service(&self, id: &str) -> Option<&ServiceEntry> {
        self.services.get(id)
    }

    fn upstream(&self, id: &str) -> Option<&UpstreamEntry> {
        self.upstreams.get(id)
    }

    fn plugin_config(&self, id: &str) -> Option<&PluginConfigEntry> {
        self.plugin_configs.get(id)
    }

    fn provider_key(&self, id: &str) -> Option<&ProviderKeyEntry> {
        self.provider_keys.get(id)
    }
}
