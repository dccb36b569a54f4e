//! The AISIX model API resources under `/admin/v1`: `provider_keys`, `models`, `apikeys`.
//! Each is stored as its resource JSON at `<prefix>/<group>/<kind>/<id>`, like a route, and shown
//! as `{"id","value","revision"}`, where `revision` is the key's own write count. Secrets come
//! back as `"***"` in every response.

use http::{Method, StatusCode};
use serde_json::{json, Value};

use super::{check, secrets, AdminError, AdminReply, AdminResult, Query};
use crate::compiler::Compiled;
use crate::resource::api_key::sha256_hex;
use crate::resource::{group_prefix, resource_key, stored_json, Kind};
use crate::state::AdminState;
use crate::store::{KeyValue, PutResult, StoreError};

/// Everything under `/admin/v1/{provider_keys,models,apikeys}[/{id}[/rotate]]`.
pub async fn resource(
    state: &AdminState,
    method: &Method,
    rest: &str,
    query: &Query<'_>,
    body: bytes::Bytes,
) -> AdminResult {
    let mut segments = rest.split('/');
    let kind = match segments.next() {
        Some("provider_keys") => Kind::ProviderKeys,
        Some("models") => Kind::Models,
        Some("apikeys" | "api_keys") => Kind::ApiKeys,
        _ => return Err(AdminError::new(StatusCode::NOT_FOUND, format!("no admin API at /admin/v1/{rest}"))),
    };
    let id = segments.next();
    let action = segments.next();
    if segments.next().is_some() {
        return Err(AdminError::new(StatusCode::NOT_FOUND, format!("no admin API at /admin/v1/{rest}")));
    }
    let group = query.group();
    if group.contains('/') {
        return Err(AdminError::bad_request("invalid gateway_group_id"));
    }
    let api = Api { state, kind, group };
    match (method, id, action) {
        (&Method::GET, None, None) => api.list().await,
        (&Method::POST, None, None) => api.create(&body).await,
        (&Method::GET, Some(id), None) => {
            let (kv, value) = api.entry(id).await?;
            Ok(AdminReply::ok(api.shown(id, &value, kv.version)))
        }
        (&Method::PUT, Some(id), None) => api.replace(id, &body).await,
        (&Method::DELETE, Some(id), None) => api.delete(id).await,
        (&Method::POST, Some(id), Some("rotate")) if kind == Kind::ApiKeys => api.rotate(id).await,
        _ => Err(AdminError::new(StatusCode::METHOD_NOT_ALLOWED, format!("{method} is not allowed here"))),
    }
}

/// A stored entry: its id, store record and resource JSON.
type Stored = (String, KeyValue, Value);

struct Api<'a> {
    state: &'a AdminState,
    kind: Kind,
    group: &'a str,
}

impl Api<'_> {
    fn key(&self, id: &str) -> String {
        resource_key(&self.state.store_root, self.group, self.kind, id)
    }

    fn noun(&self) -> &'static str {
        check::noun(self.kind)
    }

    /// Every stored entry of `kind` in the group; records that are not JSON are left out (reload
    /// lists them in `status.rejected`).
    async fn all(&self, kind: Kind) -> Result<Vec<Stored>, AdminError> {
        let prefix = format!("{}{}/", group_prefix(&self.state.store_root, self.group), kind.as_str());
        let (items, _) = self.state.store.list(&prefix).await?;
        Ok(items
            .into_iter()
            .filter_map(|kv| {
                let value = stored_json(kind, &kv.value).ok()?;
                Some((kv.key.rsplit('/').next().unwrap_or_default().to_string(), kv, value))
            })
            .collect())
    }

    /// The stored entry and its resource JSON; 404 when absent.
    async fn entry(&self, id: &str) -> Result<(KeyValue, Value), AdminError> {
        let kv = self
            .state
            .store
            .get(&self.key(id))
            .await?
            .ok_or_else(|| AdminError::new(StatusCode::NOT_FOUND, format!("{} `{id}` not found", self.noun())))?;
        let value = stored_json(self.kind, &kv.value)
            .map_err(|e| AdminError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("stored {}: {e}", self.noun())))?;
        Ok((kv, value))
    }

    /// An entry as responses show it: secrets masked, `revision` the key's write count.
    fn shown(&self, id: &str, value: &Value, revision: u64) -> Value {
        let mut value = value.clone();
        secrets::mask(self.kind, &mut value, &self.state.compiler.registry);
        json!({"id": id, "value": value, "revision": revision})
    }

    /// Puts stored secrets back where `value` says `"***"`; a 400 when nothing is stored there.
    fn restore(&self, value: &mut Value, stored: Option<&Value>) -> Result<(), AdminError> {
        secrets::restore(self.kind, value, stored, &self.state.compiler.registry).map_err(AdminError::bad_request)
    }

    async fn list(&self) -> AdminResult {
        let entries = self.all(self.kind).await?;
        let shown = entries.iter().map(|(id, kv, value)| self.shown(id, value, kv.version)).collect();
        Ok(AdminReply::ok(Value::Array(shown)))
    }

    /// Compiles a submitted value as reload will, and checks that its name (or key hash) is not
    /// another entry's. The result is what is stored: the normalised resource, secret included.
    async fn checked(&self, id: &str, value: &Value) -> Result<Value, AdminError> {
        let compiled = check::compile(self.state, self.group, self.kind, id, value).await?;
        let (stored, unique_field, unique_value) = match &compiled {
            Compiled::ProviderKey(key) => (serde_json::to_value(&key.spec), "display_name", &key.spec.display_name),
            Compiled::Model(model) => (serde_json::to_value(&model.spec), "display_name", &model.spec.display_name),
            Compiled::ApiKey(key) => (serde_json::to_value(&key.spec), "key_hash", &key.spec.key_hash),
            Compiled::Route(_) | Compiled::Service(_) => {
                return Err(AdminError::new(StatusCode::NOT_FOUND, "use /apisix/admin for routes and services"))
            }
        };
        let stored = stored.map_err(|e| AdminError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
        let clash = self.all(self.kind).await?.into_iter().find(|(other, _, value)| {
            other != id && value.get(unique_field).and_then(Value::as_str) == Some(unique_value.as_str())
        });
        if let Some((other, _, _)) = clash {
            return Err(AdminError::new(
                StatusCode::CONFLICT,
                format!("{unique_field} is already used by {} `{other}`", self.noun()),
            ));
        }
        Ok(stored)
    }

    /// Writes an entry: only if the key is absent (`expect` 0) or still at `expect`.
    async fn write(&self, id: &str, value: &Value, expect: u64) -> Result<PutResult, AdminError> {
        let bytes = bytes::Bytes::from(value.to_string());
        match self.state.store.put(&self.key(id), bytes, Some(expect)).await {
            Ok(put) => Ok(put),
            Err(StoreError::Conflict) => {
                Err(AdminError::new(StatusCode::CONFLICT, format!("the {} changed meanwhile: retry", self.noun())))
            }
            Err(err) => Err(err.into()),
        }
    }

    async fn create(&self, body: &[u8]) -> AdminResult {
        let id = uuid::Uuid::new_v4().to_string();
        let mut value = parse_object(body)?;
        self.restore(&mut value, None)?;
        let stored = self.checked(&id, &value).await?;
        let put = self.write(&id, &stored, 0).await?;
        Ok(AdminReply {
            status: StatusCode::OK,
            body: self.shown(&id, &stored, put.version),
            revision: Some(put.revision),
        })
    }

    async fn replace(&self, id: &str, body: &[u8]) -> AdminResult {
        let (kv, old) = self.entry(id).await?;
        let mut value = parse_object(body)?;
        self.restore(&mut value, Some(&old))?;
        let stored = self.checked(id, &value).await?;
        let put = self.write(id, &stored, kv.mod_revision).await?;
        Ok(AdminReply {
            status: StatusCode::OK,
            body: self.shown(id, &stored, put.version),
            revision: Some(put.revision),
        })
    }

    async fn delete(&self, id: &str) -> AdminResult {
        self.entry(id).await?;
        if self.kind == Kind::ProviderKeys {
            let users: Vec<String> = self
                .all(Kind::Models)
                .await?
                .into_iter()
                .filter(|(_, _, model)| model.get("provider_key_id").and_then(Value::as_str) == Some(id))
                .map(|(model, _, _)| model)
                .collect();
            if !users.is_empty() {
                return Err(AdminError::new(
                    StatusCode::CONFLICT,
                    format!(
                        "provider key `{id}` is used by model(s) {}: delete or repoint them first",
                        users.join(", ")
                    ),
                ));
            }
        }
        let revision = self
            .state
            .store
            .delete(&self.key(id))
            .await?
            .ok_or_else(|| AdminError::new(StatusCode::NOT_FOUND, format!("{} `{id}` not found", self.noun())))?;
        Ok(AdminReply { status: StatusCode::OK, body: json!({"deleted": true, "id": id}), revision: Some(revision) })
    }

    /// A new random caller key: only its hash is stored; the plaintext is returned this once.
    async fn rotate(&self, id: &str) -> AdminResult {
        let (kv, mut value) = self.entry(id).await?;
        let plaintext = format!("sk-{}", random_hex(24));
        value["key_hash"] = Value::String(sha256_hex(&plaintext));
        let stored = self.checked(id, &value).await?;
        let put = self.write(id, &stored, kv.mod_revision).await?;
        let mut body = self.shown(id, &stored, put.version);
        body["key"] = Value::String(plaintext);
        Ok(AdminReply { status: StatusCode::OK, body, revision: Some(put.revision) })
    }
}

fn parse_object(body: &[u8]) -> Result<Value, AdminError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(value @ Value::Object(_)) => Ok(value),
        Ok(_) => Err(AdminError::bad_request("request body must be a JSON object")),
        Err(_) if body.iter().all(u8::is_ascii_whitespace) => Err(AdminError::bad_request("request body is empty")),
        Err(err) => Err(AdminError::bad_request(format!("invalid JSON in request body: {err}"))),
    }
}

fn random_hex(bytes: usize) -> String {
    (0..bytes).map(|_| format!("{:02x}", rand::random::<u8>())).collect()
}
