//! Secrets inside route and service configs (the provider keys in AI plugins' `auth.header` and
//! `auth.query`): masked in every admin response, and restored from the stored config when a
//! client sends a masked value back (a GET → edit → PUT round trip keeps the real key).

use serde_json::Value;

/// What every admin response shows instead of a secret.
pub const MASK: &str = "***";

/// Replaces every `auth.header.*` / `auth.query.*` string under `plugins` with `"***"`.
pub fn mask(resource: &mut Value) {
    if let Some(plugins) = resource.get_mut("plugins") {
        visit_auth(plugins, &mut |value: &mut Value| *value = Value::String(MASK.into()));
    }
}

/// Puts the stored secret back wherever `submitted` carries `"***"`; `Err` names the first masked
/// value that has nothing stored to restore from.
pub fn restore(submitted: &mut Value, stored: Option<&Value>) -> Result<(), String> {
    let Some(plugins) = submitted.get_mut("plugins") else { return Ok(()) };
    restore_in(plugins, stored.and_then(|s| s.get("plugins")), "plugins")
}

fn visit_auth(value: &mut Value, apply: &mut impl FnMut(&mut Value)) {
    match value {
        Value::Object(map) => {
            for (key, child) in map.iter_mut() {
                if key == "auth" {
                    for part in ["header", "query"] {
                        if let Some(Value::Object(entries)) = child.get_mut(part) {
                            entries.values_mut().filter(|v| v.is_string()).for_each(&mut *apply);
                        }
                    }
                } else {
                    visit_auth(child, apply);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|item| visit_auth(item, apply)),
        _ => {}
    }
}

fn restore_in(value: &mut Value, stored: Option<&Value>, path: &str) -> Result<(), String> {
    match value {
        Value::Object(map) => {
            for (key, child) in map.iter_mut() {
                let here = format!("{path}.{key}");
                let old = stored.and_then(|s| s.get(key));
                if key == "auth" {
                    for part in ["header", "query"] {
                        let Some(Value::Object(entries)) = child.get_mut(part) else { continue };
                        for (name, secret) in entries.iter_mut() {
                            if secret.as_str() != Some(MASK) {
                                continue;
                            }
                            match old.and_then(|o| o.get(part)).and_then(|p| p.get(name)) {
                                Some(real) => *secret = real.clone(),
                                None => {
                                    return Err(format!(
                                        "{here}.{part}.{name}: \"***\" stands for a stored secret, and none is stored \
                                         here: send the real value"
                                    ))
                                }
                            }
                        }
                    }
                } else {
                    restore_in(child, old, &here)?;
                }
            }
            Ok(())
        }
        Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                // Instances are matched by name when they have one, so reordering keeps secrets.
                let old = match item.get("name").and_then(Value::as_str) {
                    Some(name) => stored
                        .and_then(Value::as_array)
                        .and_then(|olds| olds.iter().find(|o| o.get("name").and_then(Value::as_str) == Some(name))),
                    None => stored.and_then(|s| s.get(i)),
                };
                restore_in(item, old, &format!("{path}[{i}]"))?;
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

    fn route(key: &str) -> Value {
        json!({"plugins": {
            "ai-proxy": {"provider": "openai", "auth": {"header": {"Authorization": key}, "query": {"k": key}}},
            "ai-proxy-multi": {"instances": [
                {"name": "a", "auth": {"header": {"x": format!("{key}-a")}}},
                {"name": "b", "auth": {"header": {"x": format!("{key}-b")}}}
            ]}
        }})
    }

    #[test]
    fn masks_every_auth_value() {
        let mut value = route("sk-real");
        mask(&mut value);
        assert!(!value.to_string().contains("sk-real"), "{value}");
        assert_eq!(value["plugins"]["ai-proxy"]["provider"], "openai");
    }

    #[test]
    fn masked_values_are_restored_by_path_and_instance_name() {
        let stored = route("sk-real");
        let mut submitted = route("sk-real");
        mask(&mut submitted);
        submitted["plugins"]["ai-proxy-multi"]["instances"].as_array_mut().unwrap().reverse();
        restore(&mut submitted, Some(&stored)).unwrap();
        assert_eq!(submitted["plugins"]["ai-proxy"]["auth"]["header"]["Authorization"], "sk-real");
        assert_eq!(submitted["plugins"]["ai-proxy-multi"]["instances"][0]["auth"]["header"]["x"], "sk-real-b");
    }

    #[test]
    fn a_mask_with_nothing_stored_is_refused() {
        let mut submitted = route("***");
        let err = restore(&mut submitted, None).unwrap_err();
        assert!(err.starts_with("plugins.ai-proxy.auth.header.Authorization"), "{err}");
    }
}
