//! Secrets in stored resources, one mechanism for all of them: masked as `"***"` in every admin
//! response, and restored from the stored resource when a client sends `"***"` back, so a
//! GET → edit → PUT round trip keeps the real value; `"***"` where nothing is stored is refused.
//!
//! A field is a secret because a pattern names it ([`fields`]): a provider key's `secret`, and
//! in `plugins` whatever each plugin factory declares (`PluginFactory::secret_fields`), such as
//! the AI plugins' `auth.header.*` and `auth.query.*`. A new secret field is one more pattern.

use serde_json::Value;
use switchyard_sdk::Registry;

use crate::resource::Kind;

/// What every admin response shows instead of a secret.
pub const MASK: &str = "***";

/// A provider key's secret fields.
const PROVIDER_KEY_FIELDS: &[&str] = &["secret"];

/// One step of a secret field pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step<'p> {
    Key(&'p str),
    /// `*`: every key of an object.
    AnyKey,
    /// `[]`: every element of an array.
    AnyIndex,
}

/// `instances[].auth.header.*` → `instances`, `[]`, `auth`, `header`, `*`.
fn steps(pattern: &str) -> Vec<Step<'_>> {
    let mut out = Vec::new();
    for part in pattern.split('.') {
        let (name, arrays) = match part.find("[]") {
            Some(at) => (&part[..at], part[at..].matches("[]").count()),
            None => (part, 0),
        };
        match name {
            "" => {}
            "*" => out.push(Step::AnyKey),
            name => out.push(Step::Key(name)),
        }
        out.extend(std::iter::repeat_n(Step::AnyIndex, arrays));
    }
    out
}

/// The secret field patterns of a resource of `kind`, from the resource root. A plugin this node
/// does not know is masked whole: which of its fields are secrets cannot be told.
pub fn fields(kind: Kind, resource: &Value, registry: &Registry) -> Vec<String> {
    match kind {
        Kind::ProviderKeys => PROVIDER_KEY_FIELDS.iter().map(|f| f.to_string()).collect(),
        Kind::Models | Kind::ApiKeys | Kind::Upstreams => Vec::new(),
        Kind::Routes | Kind::Services | Kind::PluginConfigs | Kind::GlobalRules | Kind::Consumers => {
            let Some(Value::Object(plugins)) = resource.get("plugins") else { return Vec::new() };
            plugins
                .keys()
                .flat_map(|name| match registry.get(name) {
                    Some(factory) => {
                        factory.secret_fields().into_iter().map(|field| format!("plugins.{name}.{field}")).collect()
                    }
                    None => vec![format!("plugins.{name}")],
                })
                .collect()
        }
    }
}

/// Replaces every secret of `resource` with `"***"`. A value found where a secret field's
/// pattern expects an object or an array to look into (a secret pasted one level too high) is
/// masked whole.
pub fn mask(kind: Kind, resource: &mut Value, registry: &Registry) {
    for field in fields(kind, resource, registry) {
        mask_at(resource, &steps(&field));
    }
}

fn mask_at(value: &mut Value, steps: &[Step<'_>]) {
    let Some((step, rest)) = steps.split_first() else {
        if !value.is_null() {
            *value = Value::String(MASK.into());
        }
        return;
    };
    match (step, value) {
        (_, Value::Null) => {}
        (Step::Key(key), Value::Object(map)) => {
            if let Some(child) = map.get_mut(*key) {
                mask_at(child, rest);
            }
        }
        (Step::AnyKey, Value::Object(map)) => map.values_mut().for_each(|child| mask_at(child, rest)),
        (Step::AnyIndex, Value::Array(items)) => items.iter_mut().for_each(|item| mask_at(item, rest)),
        (_, misplaced) => *misplaced = Value::String(MASK.into()),
    }
}

/// Puts the stored secret back wherever `submitted` carries `"***"` in a secret field (array
/// elements with a `name` are matched by name, so reordering instances keeps their secrets).
/// `Err` names the first `"***"` with nothing stored to restore from.
pub fn restore(kind: Kind, submitted: &mut Value, stored: Option<&Value>, registry: &Registry) -> Result<(), String> {
    for field in fields(kind, submitted, registry) {
        restore_at(submitted, stored, &steps(&field), String::new())?;
    }
    Ok(())
}

fn restore_at(value: &mut Value, stored: Option<&Value>, steps: &[Step<'_>], path: String) -> Result<(), String> {
    let stored = stored.filter(|s| !s.is_null());
    if value.as_str() == Some(MASK) {
        // A leaf, or a value masked whole (stored where a container was expected).
        if steps.is_empty() || stored.is_none_or(|s| !s.is_object() && !s.is_array()) {
            return match stored {
                Some(real) => {
                    *value = real.clone();
                    Ok(())
                }
                None => Err(format!(
                    "{path}: \"***\" stands for a stored secret, and none is stored here: send the real value"
                )),
            };
        }
    }
    let Some((step, rest)) = steps.split_first() else { return Ok(()) };
    let join = |key: &str| if path.is_empty() { key.to_string() } else { format!("{path}.{key}") };
    match (step, value) {
        (Step::Key(key), Value::Object(map)) => match map.get_mut(*key) {
            Some(child) => restore_at(child, stored.and_then(|s| s.get(*key)), rest, join(key)),
            None => Ok(()),
        },
        (Step::AnyKey, Value::Object(map)) => {
            for (key, child) in map.iter_mut() {
                restore_at(child, stored.and_then(|s| s.get(key)), rest, join(key))?;
            }
            Ok(())
        }
        (Step::AnyIndex, Value::Array(items)) => {
            let olds = stored.and_then(Value::as_array);
            for (i, item) in items.iter_mut().enumerate() {
                let old = match item.get("name").and_then(Value::as_str) {
                    Some(name) => {
                        olds.and_then(|olds| olds.iter().find(|o| o.get("name").and_then(Value::as_str) == Some(name)))
                    }
                    None => olds.and_then(|olds| olds.get(i)),
                };
                restore_at(item, old, rest, format!("{path}[{i}]"))?;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn registry() -> Registry {
        switchyard_builtin::registry(&switchyard_builtin::NodeSettings::default())
    }

    fn route(key: &str) -> Value {
        json!({"plugins": {
            "ai-proxy": {"provider": "openai", "auth": {"header": {"Authorization": key}, "query": {"k": key}}},
            "ai-proxy-multi": {"instances": [
                {"name": "a", "auth": {"header": {"x": format!("{key}-a")}}},
                {"name": "b", "auth": {"header": {"x": format!("{key}-b")}}}
            ]},
            "proxy-buffering": {"disable_proxy_buffering": true}
        }})
    }

    #[test]
    fn patterns_split_into_steps() {
        assert_eq!(
            steps("instances[].auth.header.*"),
            [Step::Key("instances"), Step::AnyIndex, Step::Key("auth"), Step::Key("header"), Step::AnyKey]
        );
        assert_eq!(steps("secret"), [Step::Key("secret")]);
    }

    #[test]
    fn masks_every_declared_secret_and_nothing_else() {
        let mut value = route("sk-real");
        mask(Kind::Routes, &mut value, &registry());
        assert!(!value.to_string().contains("sk-real"), "{value}");
        assert_eq!(value["plugins"]["ai-proxy"]["provider"], "openai");
        assert_eq!(value["plugins"]["proxy-buffering"]["disable_proxy_buffering"], true);
        let mut key = json!({"display_name": "k", "secret": "sk-real"});
        mask(Kind::ProviderKeys, &mut key, &registry());
        assert_eq!(key, json!({"display_name": "k", "secret": "***"}));
    }

    #[test]
    fn misplaced_secrets_and_unknown_plugins_are_masked_whole() {
        let mut value = json!({"plugins": {"ai-proxy": {"auth": "sk-real"}, "ai-proxy-multi": {"instances": [
            {"name": "a", "auth": {"header": "sk-real"}}]}, "not-a-plugin": {"password": "sk-real"}}});
        mask(Kind::Routes, &mut value, &registry());
        assert!(!value.to_string().contains("sk-real"), "{value}");
        assert_eq!(value["plugins"]["ai-proxy"]["auth"], "***");
        assert_eq!(value["plugins"]["not-a-plugin"], "***");
    }

    #[test]
    fn masked_values_are_restored_by_path_and_instance_name() {
        let registry = registry();
        let stored = route("sk-real");
        let mut submitted = route("sk-real");
        mask(Kind::Routes, &mut submitted, &registry);
        submitted["plugins"]["ai-proxy-multi"]["instances"].as_array_mut().unwrap().reverse();
        restore(Kind::Routes, &mut submitted, Some(&stored), &registry).unwrap();
        assert_eq!(submitted["plugins"]["ai-proxy"]["auth"]["header"]["Authorization"], "sk-real");
        assert_eq!(submitted["plugins"]["ai-proxy-multi"]["instances"][0]["auth"]["header"]["x"], "sk-real-b");
        let stored = json!({"secret": "sk-real", "display_name": "a"});
        let mut submitted = json!({"secret": "***", "display_name": "b"});
        restore(Kind::ProviderKeys, &mut submitted, Some(&stored), &registry).unwrap();
        assert_eq!(submitted["secret"], "sk-real");
    }

    #[test]
    fn a_mask_with_nothing_stored_is_refused() {
        let registry = registry();
        let mut submitted = route("***");
        let err = restore(Kind::Routes, &mut submitted, None, &registry).unwrap_err();
        assert!(err.starts_with("plugins.ai-proxy.auth.header.Authorization"), "{err}");
        let mut submitted = json!({"secret": "***"});
        let err = restore(Kind::ProviderKeys, &mut submitted, None, &registry).unwrap_err();
        assert!(err.starts_with("secret: "), "{err}");
        let mut submitted = json!({"secret": "***"});
        let stored = json!({"display_name": "no secret stored"});
        assert!(restore(Kind::ProviderKeys, &mut submitted, Some(&stored), &registry).is_err());
    }
}
