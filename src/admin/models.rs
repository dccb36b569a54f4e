//! The AISIX model API resources under `/admin/v1`: `provider_keys`, `models`, `apikeys`.
//! Entries are `{"id","value","revision"}`; secrets come back as `"***"` in every response.

use http::{Method, StatusCode};
use serde_json::{json, Value};

use super::{AdminError, AdminReply, AdminResult, Query};
use crate::catalog::StoredEntry;
use crate::resource::api_key::{sha256_hex, ApiKeySpec};
use crate::resource::model::ModelSpec;
use crate::resource::provider_key::ProviderKeySpec;
use crate::resource::{group_prefix, resource_key, Kind};
use crate::state::Shared;
use crate::store::{KeyValue, StoreError};

/// Everything under `/admin/v1/{provider_keys,models,apikeys}[/{id}[/rotate]]`.
pub async fn resource(
    shared: &Shared,
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
    let api = Api { shared, kind, group };
    match (method, id, action) {
        (&Method::GET, None, None) => api.list().await,
        (&Method::POST, None, None) => api.create(&body).await,
        (&Method::GET, Some(id), None) => Ok(AdminReply::ok(api.shown(&api.entry(id).await?.1)?)),
        (&Method::PUT, Some(id), None) => api.replace(id, &body).await,
        (&Method::DELETE, Some(id), None) => api.delete(id).await,
        (&Method::POST, Some(id), Some("rotate")) if kind == Kind::ApiKeys => api.rotate(id).await,
        _ => Err(AdminError::new(StatusCode::METHOD_NOT_ALLOWED, format!("{method} is not allowed here"))),
    }
}

struct Api<'a> {
    shared: &'a Shared,
    kind: Kind,
    group: &'a str,
}

impl Api<'_> {
    fn key(&self, id: &str) -> String {
        resource_key(&self.shared.store_root, self.group, self.kind, id)
    }

    fn noun(&self) -> &'static str {
        match self.kind {
            Kind::ProviderKeys => "provider key",
            Kind::Models => "model",
            _ => "API key",
        }
    }

    async fn all(&self, kind: Kind) -> Result<Vec<StoredEntry>, AdminError> {
        let prefix = format!("{}{}/", group_prefix(&self.shared.store_root, self.group), kind.as_str());
        let (items, _) = self.shared.store.list(&prefix).await?;
        Ok(items.iter().filter_map(|kv| StoredEntry::parse(kv).ok()).collect())
    }

    /// The stored entry and its store record; 404 when absent.
    async fn entry(&self, id: &str) -> Result<(KeyValue, StoredEntry), AdminError> {
        let kv = self
            .shared
            .store
            .get(&self.key(id))
            .await?
            .ok_or_else(|| AdminError::new(StatusCode::NOT_FOUND, format!("{} `{id}` not found", self.noun())))?;
        let entry =
            StoredEntry::parse(&kv).map_err(|e| AdminError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
        Ok((kv, entry))
    }

    /// An entry as responses show it: the secret masked.
    fn shown(&self, entry: &StoredEntry) -> Result<Value, AdminError> {
        let value = match self.kind {
            Kind::ProviderKeys => ProviderKeySpec::parse(&entry.value).map(|spec| spec.masked()).unwrap_or_else(|_| {
                let mut value = entry.value.clone();
                value["secret"] = json!(crate::resource::provider_key::MASK);
                value
            }),
            _ => entry.value.clone(),
        };
        Ok(json!({"id": entry.id, "value": value, "revision": entry.revision}))
    }

    async fn list(&self) -> AdminResult {
        let entries = self.all(self.kind).await?;
        let shown = entries.iter().map(|e| self.shown(e)).collect::<Result<Vec<_>, _>>()?;
        Ok(AdminReply::ok(Value::Array(shown)))
    }

    /// Checks and normalises a submitted value: the stored form (secret included).
    async fn validate(&self, id: &str, body: &[u8]) -> Result<Value, AdminError> {
        let value = parse_object(body)?;
        let invalid =
            |err: switchyard_sdk::ConfigError| AdminError::bad_request(format!("invalid {}: {err}", self.noun()));
        let (normalised, unique_field, unique_value) = match self.kind {
            Kind::ProviderKeys => {
                let spec = ProviderKeySpec::parse(&value).map_err(invalid)?;
                let name = spec.display_name.clone();
                (serde_json::to_value(spec).unwrap_or(Value::Null), "display_name", name)
            }
            Kind::Models => {
                let spec = ModelSpec::parse(&value).map_err(invalid)?;
                let key = resource_key(&self.shared.store_root, self.group, Kind::ProviderKeys, &spec.provider_key_id);
                if self.shared.store.get(&key).await?.is_none() {
                    return Err(AdminError::bad_request(format!(
                        "invalid model: provider_key_id: provider key `{}` does not exist",
                        spec.provider_key_id
                    )));
                }
                let name = spec.display_name.clone();
                (serde_json::to_value(spec).unwrap_or(Value::Null), "display_name", name)
            }
            _ => {
                let spec = ApiKeySpec::parse(&value).map_err(invalid)?;
                let hash = spec.key_hash.clone();
                (serde_json::to_value(spec).unwrap_or(Value::Null), "key_hash", hash)
            }
        };
        let clash =
            self.all(self.kind).await?.into_iter().find(|e| {
                e.id != id && e.value.get(unique_field).and_then(Value::as_str) == Some(unique_value.as_str())
            });
        if let Some(other) = clash {
            return Err(AdminError::new(
                StatusCode::CONFLICT,
                format!("{unique_field} is already used by {} `{}`", self.noun(), other.id),
            ));
        }
        Ok(normalised)
    }

    /// Writes an entry: only if the key is absent (`expect` 0) or still at `expect`.
    async fn store(&self, entry: &StoredEntry, expect: u64) -> Result<u64, AdminError> {
        let bytes = bytes::Bytes::from(serde_json::to_vec(entry).unwrap_or_default());
        match self.shared.store.put(&self.key(&entry.id), bytes, Some(expect)).await {
            Ok(put) => Ok(put.revision),
            Err(StoreError::Conflict) => {
                Err(AdminError::new(StatusCode::CONFLICT, format!("the {} changed meanwhile: retry", self.noun())))
            }
            Err(err) => Err(err.into()),
        }
    }

    async fn create(&self, body: &[u8]) -> AdminResult {
        let id = uuid::Uuid::new_v4().to_string();
        let value = self.validate(&id, body).await?;
        let entry = StoredEntry { id, value, revision: 1 };
        let revision = self.store(&entry, 0).await?;
        Ok(AdminReply { status: StatusCode::OK, body: self.shown(&entry)?, revision: Some(revision) })
    }

    async fn replace(&self, id: &str, body: &[u8]) -> AdminResult {
        let (kv, old) = self.entry(id).await?;
        let value = self.validate(id, body).await?;
        let entry = StoredEntry { id: id.to_string(), value, revision: old.revision + 1 };
        let revision = self.store(&entry, kv.mod_revision).await?;
        Ok(AdminReply { status: StatusCode::OK, body: self.shown(&entry)?, revision: Some(revision) })
    }

    async fn delete(&self, id: &str) -> AdminResult {
        self.entry(id).await?;
        if self.kind == Kind::ProviderKeys {
            let users: Vec<String> = self
                .all(Kind::Models)
                .await?
                .into_iter()
                .filter(|m| m.value.get("provider_key_id").and_then(Value::as_str) == Some(id))
                .map(|m| m.id)
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
            .shared
            .store
            .delete(&self.key(id))
            .await?
            .ok_or_else(|| AdminError::new(StatusCode::NOT_FOUND, format!("{} `{id}` not found", self.noun())))?;
        Ok(AdminReply { status: StatusCode::OK, body: json!({"deleted": true, "id": id}), revision: Some(revision) })
    }

    /// A new random caller key: only its hash is stored; the plaintext is returned this once.
    async fn rotate(&self, id: &str) -> AdminResult {
        let (kv, old) = self.entry(id).await?;
        let plaintext = format!("sk-{}", random_hex(24));
        let mut value = old.value.clone();
        value["key_hash"] = Value::String(sha256_hex(&plaintext));
        let entry = StoredEntry { id: id.to_string(), value, revision: old.revision + 1 };
        let revision = self.store(&entry, kv.mod_revision).await?;
        let mut body = self.shown(&entry)?;
        body["key"] = Value::String(plaintext);
        Ok(AdminReply { status: StatusCode::OK, body, revision: Some(revision) })
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
