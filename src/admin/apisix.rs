//! The APISIX v3 resource API (routes, services, upstreams, plugin configs, global rules,
//! consumers): envelopes, status codes, paging.

use std::sync::atomic::Ordering;

use http::{Method, StatusCode};
use serde_json::{json, Map, Value};

use super::{check, in_use, secrets, AdminError, AdminReply, AdminResult, Query};
use crate::compiler::{consumers, Compiled, ConsumerDirectory, ConsumerEntry, NoDependencies};
use crate::resource::consumer::valid_username;
use crate::resource::{group_prefix, resource_key, stored_json, unix_now, valid_id, Kind};
use crate::state::AdminState;
use crate::store::KeyValue;

/// `GET /apisix/admin/status`: the applied revision, the backend and whether it is reachable,
/// whether the live config came from the local cache, and rejected resources.
pub fn status(state: &AdminState) -> AdminResult {
    let status = &state.status;
    Ok(AdminReply::ok(json!({
        "revision": status.applied_revision(),
        "store": state.store.backend(),
        "connected": state.store.connected(),
        "cached": status.is_cached(),
        "gateway_group_id": state.config.gateway_group_id,
        "rejected": &*status.rejected(),
        "background_tasks": {
            "running": status.background.running.load(Ordering::Relaxed),
            "started": status.background.started.load(Ordering::Relaxed),
        },
        // Every task alive on the node's runtimes (connections, requests, background work): the
        // soak in `make bench` checks that it stays flat.
        "tasks": tokio::runtime::Handle::current().metrics().num_alive_tasks() + state.workers.alive_tasks(),
        // Client connections per proxy worker: how evenly the load is spread.
        "proxy_workers": state.workers.connections(),
    })))
}

/// Everything under `/apisix/admin/{routes,services,upstreams,plugin_configs,global_rules}[/{id}]`.
pub async fn resource(
    state: &AdminState,
    method: &Method,
    kind: &str,
    id: Option<&str>,
    query: &Query<'_>,
    body: bytes::Bytes,
) -> AdminResult {
    let kind = Kind::parse(kind)
        .ok_or_else(|| AdminError::new(StatusCode::NOT_FOUND, format!("unknown resource `{kind}`")))?;
    if kind.is_model_api() {
        return Err(AdminError::new(StatusCode::NOT_FOUND, "use /admin/v1 for model API resources"));
    }
    let group = query.group();
    if group.contains('/') {
        return Err(AdminError::bad_request("invalid gateway_group_id"));
    }
    let api = Api { state, kind, group };
    match (method, id) {
        (&Method::GET, None) => api.list(query).await,
        (&Method::GET, Some(id)) => api.get(id).await,
        (&Method::PUT, id) => {
            let value = parse_object(&body)?;
            let id = resolve_id(id, &value, kind.id_field())?;
            api.write(id, value).await
        }
        (&Method::POST, None) if kind != Kind::Consumers => {
            let mut value = parse_object(&body)?;
            if value.contains_key("id") {
                return Err(AdminError::bad_request("POST makes its own id: use PUT to choose one"));
            }
            let id = format!("{:020}", rand::random::<u64>() % 10u64.pow(19));
            value.insert("id".into(), Value::String(id.clone()));
            api.write(id, value).await
        }
        (&Method::PATCH, Some(id)) => api.patch(id, &body).await,
        (&Method::DELETE, Some(id)) => api.delete(id, query.get("force") == Some("true")).await,
        _ => Err(AdminError::new(StatusCode::METHOD_NOT_ALLOWED, format!("{method} is not allowed here"))),
    }
}

struct Api<'a> {
    state: &'a AdminState,
    kind: Kind,
    group: &'a str,
}

impl Api<'_> {
    fn key(&self, id: &str) -> String {
        resource_key(&self.state.store_root, self.group, self.kind, id)
    }

    /// The APISIX envelope of one stored resource.
    fn envelope(&self, id: &str, kv: &KeyValue) -> Result<Value, AdminError> {
        let mut value: Value = serde_json::from_slice(&kv.value).map_err(|_| {
            AdminError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("stored {} `{id}` is not JSON", self.kind.as_str()),
            )
        })?;
        secrets::mask(self.kind, &mut value, &self.state.compiler.registry);
        Ok(json!({
            "key": format!("/apisix/{}/{id}", self.kind.as_str()),
            "value": value,
            "createdIndex": kv.create_revision,
            "modifiedIndex": kv.mod_revision,
        }))
    }

    async fn get(&self, id: &str) -> AdminResult {
        let kv = self.state.store.get(&self.key(id)).await?.ok_or_else(AdminError::not_found)?;
        Ok(AdminReply::ok(self.envelope(id, &kv)?))
    }

    async fn list(&self, query: &Query<'_>) -> AdminResult {
        let prefix = format!("{}{}/", group_prefix(&self.state.store_root, self.group), self.kind.as_str());
        let (items, _) = self.state.store.list(&prefix).await?;
        let total = items.len();
        let number = |name: &str| -> Result<Option<usize>, AdminError> {
            query
                .get(name)
                .map(|v| {
                    v.parse::<usize>()
                        .ok()
                        .filter(|n| *n > 0)
                        .ok_or_else(|| AdminError::bad_request(format!("{name} must be a positive integer")))
                })
                .transpose()
        };
        let (page, page_size) = (number("page")?, number("page_size")?);
        let window: Box<dyn Iterator<Item = &KeyValue>> = match (page, page_size) {
            (None, None) => Box::new(items.iter()),
            (page, size) => {
                let size = size.unwrap_or(10);
                Box::new(items.iter().skip((page.unwrap_or(1) - 1) * size).take(size))
            }
        };
        let list = window
            .map(|kv| self.envelope(kv.key.rsplit('/').next().unwrap_or_default(), kv))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(AdminReply::ok(json!({ "list": list, "total": total })))
    }

    /// Validates and stores a whole resource (create or replace).
    async fn write(&self, id: String, mut value: Map<String, Value>) -> AdminResult {
        if self.kind == Kind::Consumers {
            if !valid_username(&id) {
                return Err(AdminError::bad_request("invalid username: use 1 to 100 of [a-zA-Z0-9_-]"));
            }
        } else if !valid_id(&id) {
            return Err(AdminError::bad_request(format!("invalid id `{id}`: use 1 to 64 of [a-zA-Z0-9-_.]")));
        }
        let key = self.key(&id);
        let previous = self.state.store.get(&key).await?;
        let now = unix_now();
        let stored = previous.as_ref().and_then(|kv| serde_json::from_slice::<Value>(&kv.value).ok());
        let create_time = stored.as_ref().and_then(|v| v.get("create_time").and_then(Value::as_u64)).unwrap_or(now);
        value.insert(self.kind.id_field().into(), Value::String(id.clone()));
        value.insert("create_time".into(), create_time.into());
        value.insert("update_time".into(), now.into());
        let mut value = Value::Object(value);
        secrets::restore(self.kind, &mut value, stored.as_ref(), &self.state.compiler.registry)
            .map_err(AdminError::bad_request)?;
        self.validate(&id, &value).await?;
        let bytes = bytes::Bytes::from(value.to_string());
        // Compare-and-set against what was read: a concurrent write makes this one a 409, never a
        // silent overwrite with a stale create_time.
        let expected = previous.as_ref().map_or(0, |p| p.mod_revision);
        let put = self.state.store.put(&key, bytes.clone(), Some(expected)).await?;
        let created = put.previous.is_none();
        let kv = KeyValue {
            key,
            value: bytes,
            create_revision: put.previous.map_or(put.revision, |p| p.create_revision),
            mod_revision: put.revision,
            version: put.version,
        };
        Ok(AdminReply {
            status: if created { StatusCode::CREATED } else { StatusCode::OK },
            body: self.envelope(&id, &kv)?,
            revision: Some(put.revision),
        })
    }

    /// The same compile reload runs, so what the admin API accepts always goes live.
    async fn validate(&self, id: &str, value: &Value) -> Result<(), AdminError> {
        let compiled = check::compile(self.state, self.group, self.kind, id, value).await?;
        if let Compiled::Consumer(consumer) = compiled {
            self.check_credentials_unique(id, &consumer).await?;
        }
        Ok(())
    }

    /// Two consumers of a group may not share a credential: the key would name either. Checked
    /// against every other stored consumer (compiled as reload compiles them).
    async fn check_credentials_unique(&self, id: &str, consumer: &ConsumerEntry) -> Result<(), AdminError> {
        if consumer.credentials.is_empty() {
            return Ok(());
        }
        let prefix = format!("{}{}/", group_prefix(&self.state.store_root, self.group), Kind::Consumers.as_str());
        let (stored, _) = self.state.store.list(&prefix).await?;
        let mut directory = ConsumerDirectory::default();
        for kv in &stored {
            let other = kv.key.rsplit('/').next().unwrap_or_default();
            if other == id {
                continue;
            }
            let compiled = stored_json(Kind::Consumers, &kv.value)
                .and_then(|json| consumers::consumer(&self.state.compiler, other, &json, &NoDependencies));
            if let Ok(entry) = compiled {
                // Stored consumers that clash among themselves are reload's to report.
                let _ = directory.add(&entry);
            }
        }
        directory.add(consumer).map_err(|err| AdminError::bad_request(format!("invalid consumer: {err}")))
    }

    /// JSON merge patch (RFC 7396) onto the stored resource, then a full validation.
    async fn patch(&self, id: &str, body: &[u8]) -> AdminResult {
        let patch = parse_object(body)?;
        if patch.get(self.kind.id_field()).is_some_and(|v| id_string(v).as_deref() != Some(id)) {
            return Err(AdminError::bad_request("the id in the body does not match the path"));
        }
        let kv = self.state.store.get(&self.key(id)).await?.ok_or_else(AdminError::not_found)?;
        let mut value: Value = serde_json::from_slice(&kv.value)
            .map_err(|_| AdminError::new(StatusCode::INTERNAL_SERVER_ERROR, "stored resource is not JSON"))?;
        json_patch::merge(&mut value, &Value::Object(patch));
        let Value::Object(value) = value else {
            return Err(AdminError::bad_request("the patched resource is not an object"));
        };
        self.write(id.to_string(), value).await
    }

    async fn delete(&self, id: &str, force: bool) -> AdminResult {
        if !force {
            in_use::refuse_if_used(self.state, self.group, self.kind, id).await?;
        }
        let revision = self.state.store.delete(&self.key(id)).await?.ok_or_else(AdminError::not_found)?;
        Ok(AdminReply {
            status: StatusCode::OK,
            body: json!({ "deleted": "1", "key": format!("/apisix/{}/{id}", self.kind.as_str()) }),
            revision: Some(revision),
        })
    }
}

/// The body as a JSON object, whatever the Content-Type said (`curl -d` sends form-urlencoded).
fn parse_object(body: &[u8]) -> Result<Map<String, Value>, AdminError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(AdminError::bad_request("request body is empty: send a JSON object"));
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(AdminError::bad_request("request body must be a JSON object")),
        Err(err) => Err(AdminError::bad_request(format!("invalid JSON in request body: {err}"))),
    }
}

/// An id given as a string or a number (APISIX accepts both).
fn id_string(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The id of a PUT: the path's, or the body's; both given must agree.
fn resolve_id(path_id: Option<&str>, body: &Map<String, Value>, field: &str) -> Result<String, AdminError> {
    let body_id = match body.get(field) {
        None => None,
        Some(v) => {
            Some(id_string(v).ok_or_else(|| AdminError::bad_request(format!("{field} must be a string or a number")))?)
        }
    };
    match (path_id, body_id) {
        (Some(path), Some(body)) if path != body => {
            Err(AdminError::bad_request(format!("wrong id: the path says `{path}`, the body says `{body}`")))
        }
        (Some(path), _) => Ok(path.to_string()),
        (None, Some(body)) => Ok(body),
        (None, None) => Err(AdminError::bad_request(format!("missing {field}: put it in the path or in the body"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_from_path_and_body_must_agree() {
        let body = json!({"id": 7}).as_object().cloned().unwrap();
        assert_eq!(resolve_id(None, &body, "id").unwrap(), "7");
        assert_eq!(resolve_id(Some("7"), &body, "id").unwrap(), "7");
        assert!(resolve_id(Some("8"), &body, "id").is_err());
        assert!(resolve_id(None, &Map::new(), "id").is_err());
        let consumer = json!({"username": "jack"}).as_object().cloned().unwrap();
        assert_eq!(resolve_id(None, &consumer, "username").unwrap(), "jack");
    }
}
