//! The admin API's half of the one compile path: a submitted resource is compiled by
//! [`Compiler::compile`](crate::compiler::Compiler::compile), against its service or provider key
//! as stored, exactly as reload will compile it. What reload would refuse is a 400 here.

use serde_json::Value;

use super::AdminError;
use crate::compiled::ServiceEntry;
use crate::compiler::{dependency, dependency_field, Compiled, Dependencies, NoDependencies, ProviderKeyEntry};
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
    if let Some((of, dependency_id)) = dependency(kind, value) {
        let key = resource_key(&state.store_root, group, of, &dependency_id);
        let compiled = match state.store.get(&key).await? {
            Some(kv) => Some(
                stored_json(of, &kv.value)
                    .and_then(|json| state.compiler.compile(of, &dependency_id, &json, &NoDependencies))
                    .map_err(|err| {
                        // Reload rejects it, so nothing can compile against it there either.
                        let field = dependency_field(kind).map_or("", |(field, _)| field);
                        AdminError::bad_request(format!(
                            "invalid {}: {field}: `{dependency_id}` is stored but not valid ({err})",
                            noun(kind)
                        ))
                    })?,
            ),
            None => None,
        };
        match compiled {
            Some(Compiled::Service(service)) => deps.service = Some((dependency_id, *service)),
            Some(Compiled::ProviderKey(key)) => deps.provider_key = Some((dependency_id, *key)),
            _ if kind == Kind::Routes => {
                // APISIX's words for a route naming a missing service.
                return Err(AdminError::bad_request(format!(
                    "failed to fetch service info by service id [{dependency_id}], response code: 404"
                )));
            }
            _ => {}
        }
    }
    state
        .compiler
        .compile(kind, id, value, &deps)
        .map_err(|err| AdminError::bad_request(format!("invalid {}: {err}", noun(kind))))
}

/// What an error message calls a resource of `kind`.
pub fn noun(kind: Kind) -> &'static str {
    match kind {
        Kind::Routes | Kind::Services => "configuration",
        Kind::ProviderKeys => "provider key",
        Kind::Models => "model",
        Kind::ApiKeys => "API key",
    }
}

/// The one dependency a submitted resource names, compiled from the store.
#[derive(Default)]
struct Stored {
    service: Option<(String, ServiceEntry)>,
    provider_key: Option<(String, ProviderKeyEntry)>,
}

impl Dependencies for Stored {
    fn service(&self, id: &str) -> Option<&ServiceEntry> {
        self.service.as_ref().filter(|(held, _)| held == id).map(|(_, service)| service)
    }

    fn provider_key(&self, id: &str) -> Option<&ProviderKeyEntry> {
        self.provider_key.as_ref().filter(|(held, _)| held == id).map(|(_, key)| key)
    }
}
