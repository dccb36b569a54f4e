//! The config store: where resources live, and how changes reach the reload task.
//!
//! Keys follow `<prefix>/<gateway_group_id>/<kind>/<id>`; values are the resource JSON. Revisions
//! behave like etcd's: one counter for the whole store, increased by every write; and each key
//! counts its own writes (etcd's per-key `version`).

pub mod embedded;
pub mod etcd;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::mpsc;

/// One stored resource with its revisions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: Bytes,
    /// The store revision of the write that created the key.
    pub create_revision: u64,
    /// The store revision of the latest write to the key.
    pub mod_revision: u64,
    /// How many times the key was written since it was created (etcd's `version`): 1 after the
    /// create, 2 after the first replace. A delete ends the count; a new key starts from 1.
    pub version: u64,
}

/// A change under a watched prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Put(KeyValue),
    Delete { key: String, revision: u64 },
}

impl Event {
    pub fn revision(&self) -> u64 {
        match self {
            Event::Put(kv) => kv.mod_revision,
            Event::Delete { revision, .. } => *revision,
        }
    }
}

/// What a watch delivers.
#[derive(Debug)]
pub enum WatchMessage {
    /// Changes in revision order; all events of one revision arrive together.
    Events(Vec<Event>),
    /// The store reached this revision with no change under the watched prefix (a write to
    /// another group): nothing to rebuild, but the node is up to date.
    Progress(u64),
    /// The requested revision is gone (compacted) or the watcher fell behind: list again.
    Resync,
}

/// The result of a write.
#[derive(Debug, Clone)]
pub struct PutResult {
    pub revision: u64,
    /// The key's write count after this write ([`KeyValue::version`]).
    pub version: u64,
    /// The value the key held before, if any (tells create from replace).
    pub previous: Option<KeyValue>,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store cannot be reached now (etcd down); the caller may retry later.
    #[error("config store unavailable: {0}")]
    Unavailable(String),
    /// A compare-and-set found another revision.
    #[error("the resource was changed concurrently")]
    Conflict,
    #[error("config store failure: {0}")]
    Internal(String),
}

/// A config backend. The admin API writes through it; the reload task lists and watches it.
#[async_trait]
pub trait ConfigStore: Send + Sync + 'static {
    /// `embedded` or `etcd`, reported by `GET /apisix/admin/status`.
    fn backend(&self) -> &'static str;

    /// Whether the last call reached the store, reported by `GET /apisix/admin/status`. A local
    /// store is always reachable.
    fn connected(&self) -> bool {
        true
    }

    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError>;

    /// Every key under `prefix`, and the store revision the listing reflects.
    async fn list(&self, prefix: &str) -> Result<(Vec<KeyValue>, u64), StoreError>;

    /// Writes `value`. With `expect_mod_revision`, only if the key's current mod revision equals it
    /// (`Some(0)`: only if the key is absent); otherwise [`StoreError::Conflict`].
    async fn put(&self, key: &str, value: Bytes, expect_mod_revision: Option<u64>) -> Result<PutResult, StoreError>;

    /// Deletes `key`; the revision of the deletion, or `None` when the key did not exist.
    async fn delete(&self, key: &str) -> Result<Option<u64>, StoreError>;

    /// Changes under `prefix` from `from_revision` on (inclusive), until the receiver is dropped.
    async fn watch(&self, prefix: &str, from_revision: u64) -> Result<mpsc::Receiver<WatchMessage>, StoreError>;
}
