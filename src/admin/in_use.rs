//! APISIX's delete rule: a service, upstream or plugin config that other resources still name
//! cannot be deleted unless `?force=true`.

use serde_json::Value;

use super::AdminError;
use crate::compiler::dependency_fields;
use crate::resource::{group_prefix, Kind};
use crate::state::AdminState;

/// The kinds whose resources may name one of `kind`, each with the naming field.
fn referrers(kind: Kind) -> Vec<(Kind, &'static str)> {
    [Kind::Routes, Kind::Services, Kind::Models]
        .into_iter()
        .flat_map(|referrer| {
            dependency_fields(referrer)
                .iter()
                .filter(move |(_, of)| *of == kind)
                .map(move |(field, _)| (referrer, *field))
        })
        .collect()
}

/// Refuses to delete `kind`/`id` of `group` while routes or services name it. Runs before an
/// unforced DELETE under `/apisix/admin`.
pub async fn refuse_if_used(state: &AdminState, group: &str, kind: Kind, id: &str) -> Result<(), AdminError> {
    for (referrer, field) in referrers(kind) {
        if referrer.is_model_api() {
            continue; // the model API checks its own
        }
        let prefix = format!("{}{}/", group_prefix(&state.store_root, group), referrer.as_str());
        let (stored, _) = state.store.list(&prefix).await?;
        let users: Vec<&str> = stored
            .iter()
            .filter(|kv| {
                serde_json::from_slice::<Value>(&kv.value)
                    .ok()
                    .is_some_and(|v| v.get(field).and_then(id_text).as_deref() == Some(id))
            })
            .map(|kv| kv.key.rsplit('/').next().unwrap_or_default())
            .collect();
        if !users.is_empty() {
            return Err(AdminError::bad_request(format!(
                "can not delete this {}, {} [{}] is still using it now (use ?force=true)",
                singular(kind),
                singular(referrer),
                users.join(", ")
            )));
        }
    }
    Ok(())
}

fn singular(kind: Kind) -> &'static str {
    match kind {
        Kind::Routes => "route",
        Kind::Services => "service",
        Kind::Upstreams => "upstream",
        Kind::PluginConfigs => "plugin config",
        Kind::GlobalRules => "global rule",
        Kind::ProviderKeys => "provider key",
        Kind::Models => "model",
        Kind::ApiKeys => "API key",
        Kind::Consumers => "consumer",
    }
}

fn id_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_referenced_kind_knows_who_names_it() {
        assert_eq!(referrers(Kind::Services), [(Kind::Routes, "service_id")]);
        assert_eq!(referrers(Kind::Upstreams), [(Kind::Routes, "upstream_id"), (Kind::Services, "upstream_id")]);
        assert_eq!(referrers(Kind::PluginConfigs), [(Kind::Routes, "plugin_config_id")]);
        assert!(referrers(Kind::GlobalRules).is_empty());
    }
}
