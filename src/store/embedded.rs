//! The embedded store: a redb database file on local disk. Zero setup, one node.
//!
//! Every write is one redb transaction committed with immediate durability (fsync) before the
//! admin API answers, so an acknowledged write survives `kill -9`. Watches are served from an
//! in-memory tail of recent events; a watcher asking for older revisions is told to resync.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use tokio::sync::{broadcast, mpsc};

use super::{ConfigStore, Event, KeyValue, PutResult, StoreError, WatchMessage};

const KV: TableDefinition<&str, &[u8]> = TableDefinition::new("kv");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const REVISION: &str = "revision";
/// The record layout in `KV`: absent in files made before records kept their write count.
const FORMAT: &str = "format";
/// Create revision, mod revision and write count before the value.
const FORMAT_COUNTED: u64 = 2;
/// How many recent events a late watcher can catch up from before it must resync.
const HISTORY: usize = 4096;
const FILE_NAME: &str = "switchyard.redb";

pub struct EmbeddedStore {
    db: Arc<Database>,
    feed: Mutex<Feed>,
}

/// Recent events and the live channel, kept under one lock so a new watcher sees each event
/// exactly once: either from history or from the channel.
struct Feed {
    history: VecDeque<Event>,
    sender: broadcast::Sender<Arc<Event>>,
}

impl EmbeddedStore {
    /// Opens (creating when missing) the database in the folder `dir`. Fails when another process
    /// holds it open.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::Internal(format!("cannot create store folder {}: {e}", dir.display())))?;
        let path = dir.join(FILE_NAME);
        let db = Database::create(&path)
            .map_err(|e| StoreError::Internal(format!("cannot open {}: {e}", path.display())))?;
        // The store holds provider-key secrets: readable by this user only.
        #[cfg(unix)]
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .map_err(|e| StoreError::Internal(format!("cannot restrict {}: {e}", path.display())))?;
        let txn = db.begin_write().map_err(internal)?;
        {
            let mut table = txn.open_table(KV).map_err(internal)?;
            let mut meta = txn.open_table(META).map_err(internal)?;
            if meta.get(FORMAT).map_err(internal)?.map(|v| v.value()) != Some(FORMAT_COUNTED) {
                count_writes(&mut table)?;
                meta.insert(FORMAT, FORMAT_COUNTED).map_err(internal)?;
            }
        }
        txn.commit().map_err(internal)?;
        let (sender, _) = broadcast::channel(HISTORY);
        Ok(Self { db: Arc::new(db), feed: Mutex::new(Feed { history: VecDeque::new(), sender }) })
    }

    fn publish(&self, event: Event) {
        let Ok(mut feed) = self.feed.lock() else { return };
        if feed.history.len() == HISTORY {
            feed.history.pop_front();
        }
        feed.history.push_back(event.clone());
        // No receiver is not an error: nobody watches yet.
        let _ = feed.sender.send(Arc::new(event));
    }

    async fn blocking<T: Send + 'static>(
        &self,
        job: impl FnOnce(&Database) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let db = Arc::clone(&self.db);
        tokio::task::spawn_blocking(move || job(&db))
            .await
            .map_err(|e| StoreError::Internal(format!("store task failed: {e}")))?
    }
}

fn internal(err: impl std::fmt::Display) -> StoreError {
    StoreError::Internal(err.to_string())
}

/// Stored form: create revision, mod revision, write count (little-endian u64 each), then the
/// value.
fn encode(kv: &KeyValue) -> Vec<u8> {
    let mut out = Vec::with_capacity(24 + kv.value.len());
    out.extend_from_slice(&kv.create_revision.to_le_bytes());
    out.extend_from_slice(&kv.mod_revision.to_le_bytes());
    out.extend_from_slice(&kv.version.to_le_bytes());
    out.extend_from_slice(&kv.value);
    out
}

fn word(raw: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(raw.get(at..at + 8)?.try_into().ok()?))
}

fn decode(key: &str, raw: &[u8]) -> Result<KeyValue, StoreError> {
    let (Some(create_revision), Some(mod_revision), Some(version)) = (word(raw, 0), word(raw, 8), word(raw, 16)) else {
        return Err(StoreError::Internal(format!("corrupt entry for {key}")));
    };
    Ok(KeyValue {
        key: key.to_string(),
        create_revision,
        mod_revision,
        version,
        value: Bytes::copy_from_slice(&raw[24..]),
    })
}

/// Rewrites records of a file made before they kept their write count (create revision, mod
/// revision, value) in today's form. Runs once, when such a file is opened. The count is exact for
/// a key written once; the model API's entries of then carried their own count in an
/// `{"id","value","revision"}` envelope, which is taken over; any other replaced key counts as
/// written twice, the fewest it can have been.
fn count_writes(table: &mut redb::Table<&str, &[u8]>) -> Result<(), StoreError> {
    let mut upgraded = Vec::new();
    for entry in table.iter().map_err(internal)? {
        let (key, raw) = entry.map_err(internal)?;
        let raw = raw.value();
        let (Some(create_revision), Some(mod_revision)) = (word(raw, 0), word(raw, 8)) else {
            return Err(StoreError::Internal(format!("corrupt entry for {}", key.value())));
        };
        let value = Bytes::copy_from_slice(&raw[16..]);
        let enveloped = serde_json::from_slice::<serde_json::Value>(&value).ok().and_then(|v| {
            let object = v.as_object()?;
            (object.len() == 3 && object.contains_key("id") && object.get("value")?.is_object())
                .then(|| object.get("revision")?.as_u64())
                .flatten()
        });
        let version = match enveloped {
            Some(count) => count.max(1),
            None if create_revision == mod_revision => 1,
            None => 2,
        };
        upgraded.push(KeyValue { key: key.value().to_string(), value, create_revision, mod_revision, version });
    }
    for kv in upgraded {
        table.insert(kv.key.as_str(), encode(&kv).as_slice()).map_err(internal)?;
    }
    Ok(())
}

#[async_trait]
impl ConfigStore for EmbeddedStore {
    fn backend(&self) -> &'static str {
        "embedded"
    }

    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        let key = key.to_string();
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(internal)?;
            let table = txn.open_table(KV).map_err(internal)?;
            let found = table.get(key.as_str()).map_err(internal)?;
            found.map(|raw| decode(&key, raw.value())).transpose()
        })
        .await
    }

    async fn list(&self, prefix: &str) -> Result<(Vec<KeyValue>, u64), StoreError> {
        let prefix = prefix.to_string();
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(internal)?;
            let table = txn.open_table(KV).map_err(internal)?;
            let meta = txn.open_table(META).map_err(internal)?;
            let revision = meta.get(REVISION).map_err(internal)?.map(|v| v.value()).unwrap_or(0);
            let mut out = Vec::new();
            for entry in table.range(prefix.as_str()..).map_err(internal)? {
                let (key, raw) = entry.map_err(internal)?;
                if !key.value().starts_with(prefix.as_str()) {
                    break;
                }
                out.push(decode(key.value(), raw.value())?);
            }
            Ok((out, revision))
        })
        .await
    }

    async fn put(&self, key: &str, value: Bytes, expect_mod_revision: Option<u64>) -> Result<PutResult, StoreError> {
        let key_owned = key.to_string();
        let (result, kv) = self
            .blocking(move |db| {
                let key = key_owned;
                let txn = db.begin_write().map_err(internal)?;
                let outcome = {
                    let mut table = txn.open_table(KV).map_err(internal)?;
                    let mut meta = txn.open_table(META).map_err(internal)?;
                    let previous =
                        table.get(key.as_str()).map_err(internal)?.map(|raw| decode(&key, raw.value())).transpose()?;
                    if let Some(expected) = expect_mod_revision {
                        if previous.as_ref().map_or(0, |p| p.mod_revision) != expected {
                            return Err(StoreError::Conflict);
                        }
                    }
                    let revision = meta.get(REVISION).map_err(internal)?.map(|v| v.value()).unwrap_or(0) + 1;
                    let kv = KeyValue {
                        key,
                        value,
                        create_revision: previous.as_ref().map_or(revision, |p| p.create_revision),
                        mod_revision: revision,
                        version: previous.as_ref().map_or(1, |p| p.version + 1),
                    };
                    table.insert(kv.key.as_str(), encode(&kv).as_slice()).map_err(internal)?;
                    meta.insert(REVISION, revision).map_err(internal)?;
                    (PutResult { revision, version: kv.version, previous }, kv)
                };
                txn.commit().map_err(internal)?;
                Ok(outcome)
            })
            .await?;
        self.publish(Event::Put(kv));
        Ok(result)
    }

    async fn delete(&self, key: &str) -> Result<Option<u64>, StoreError> {
        let key_owned = key.to_string();
        let revision = self
            .blocking(move |db| {
                let txn = db.begin_write().map_err(internal)?;
                let revision = {
                    let mut table = txn.open_table(KV).map_err(internal)?;
                    let mut meta = txn.open_table(META).map_err(internal)?;
                    if table.remove(key_owned.as_str()).map_err(internal)?.is_none() {
                        return Ok(None);
                    }
                    let revision = meta.get(REVISION).map_err(internal)?.map(|v| v.value()).unwrap_or(0) + 1;
                    meta.insert(REVISION, revision).map_err(internal)?;
                    revision
                };
                txn.commit().map_err(internal)?;
                Ok(Some(revision))
            })
            .await?;
        if let Some(revision) = revision {
            self.publish(Event::Delete { key: key.to_string(), revision });
        }
        Ok(revision)
    }

    async fn watch(&self, prefix: &str, from_revision: u64) -> Result<mpsc::Receiver<WatchMessage>, StoreError> {
        let (backlog, mut live, resync) = {
            let feed = self.feed.lock().map_err(|_| StoreError::Internal("store feed poisoned".into()))?;
            let oldest = feed.history.front().map(Event::revision);
            // Events before `from_revision` that history no longer holds cannot be replayed.
            let resync = oldest.is_some_and(|oldest| oldest > from_revision.max(1)) && feed.history.len() == HISTORY;
            let backlog: Vec<Event> = feed.history.iter().filter(|e| e.revision() >= from_revision).cloned().collect();
            (backlog, feed.sender.subscribe(), resync)
        };
        let (tx, rx) = mpsc::channel(64);
        let prefix = prefix.to_string();
        tokio::spawn(async move {
            if resync {
                let _ = tx.send(WatchMessage::Resync).await;
                return;
            }
            let mine = |e: &Event| match e {
                Event::Put(kv) => kv.key.starts_with(&prefix),
                Event::Delete { key, .. } => key.starts_with(&prefix),
            };
            let backlog: Vec<Event> = backlog.into_iter().filter(|e| mine(e)).collect();
            if !backlog.is_empty() && tx.send(WatchMessage::Events(backlog)).await.is_err() {
                return;
            }
            loop {
                let message = match live.recv().await {
                    Ok(event) if event.revision() >= from_revision && mine(&event) => {
                        WatchMessage::Events(vec![(*event).clone()])
                    }
                    Ok(event) if event.revision() >= from_revision => WatchMessage::Progress(event.revision()),
                    Ok(_) => continue,
                    Err(broadcast::error::RecvError::Lagged(_)) => WatchMessage::Resync,
                    Err(broadcast::error::RecvError::Closed) => return,
                };
                let resync = matches!(message, WatchMessage::Resync);
                if tx.send(message).await.is_err() || resync {
                    return;
                }
            }
        });
        Ok(rx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn revisions_grow_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = EmbeddedStore::open(dir.path()).unwrap();
            let first = store.put("/s/default/routes/a", Bytes::from_static(b"{}"), None).await.unwrap();
            assert_eq!(first.revision, 1);
            assert!(first.previous.is_none());
            let second = store.put("/s/default/routes/a", Bytes::from_static(b"{\"x\":1}"), None).await.unwrap();
            assert_eq!(second.revision, 2);
            assert_eq!(second.previous.unwrap().mod_revision, 1);
            assert_eq!(store.delete("/s/default/routes/missing").await.unwrap(), None);
        }
        let store = EmbeddedStore::open(dir.path()).unwrap();
        let (items, revision) = store.list("/s/default/").await.unwrap();
        assert_eq!(revision, 2);
        assert_eq!(items.len(), 1);
        assert_eq!(items[0].create_revision, 1);
        assert_eq!(items[0].value, Bytes::from_static(b"{\"x\":1}"));
    }

    #[tokio::test]
    async fn a_file_from_before_write_counts_is_upgraded_once() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = Database::create(dir.path().join(FILE_NAME)).unwrap();
            let txn = db.begin_write().unwrap();
            {
                let mut kv = txn.open_table(KV).unwrap();
                let old = |create: u64, modified: u64, value: &str| {
                    [&create.to_le_bytes()[..], &modified.to_le_bytes(), value.as_bytes()].concat()
                };
                kv.insert("/s/g/routes/once", old(1, 1, "{}").as_slice()).unwrap();
                kv.insert("/s/g/routes/replaced", old(2, 3, "{\"x\":1}").as_slice()).unwrap();
                let envelope = r#"{"id":"m","value":{"display_name":"a"},"revision":5}"#;
                kv.insert("/s/g/models/m", old(4, 9, envelope).as_slice()).unwrap();
                txn.open_table(META).unwrap().insert(REVISION, 9).unwrap();
            }
            txn.commit().unwrap();
        }
        let versions = |store: EmbeddedStore| async move {
            let (items, revision) = store.list("/s/g/").await.unwrap();
            assert_eq!(revision, 9);
            items.into_iter().map(|kv| (kv.key, kv.version, kv.mod_revision)).collect::<Vec<_>>()
        };
        let store = EmbeddedStore::open(dir.path()).unwrap();
        let replaced = store.get("/s/g/routes/replaced").await.unwrap().unwrap();
        assert_eq!((replaced.value, replaced.create_revision), (Bytes::from_static(b"{\"x\":1}"), 2));
        assert_eq!(
            versions(store).await,
            [("/s/g/models/m".into(), 5, 9), ("/s/g/routes/once".into(), 1, 1), ("/s/g/routes/replaced".into(), 2, 3)]
        );
        let store = EmbeddedStore::open(dir.path()).unwrap();
        assert_eq!(store.put("/s/g/routes/once", Bytes::new(), None).await.unwrap().version, 2);
        drop(store);
        let store = EmbeddedStore::open(dir.path()).unwrap();
        assert_eq!(store.get("/s/g/routes/once").await.unwrap().unwrap().version, 2, "upgraded only once");
    }

    #[cfg(unix)]
    #[test]
    fn the_database_file_is_private_to_its_user() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        EmbeddedStore::open(dir.path()).unwrap();
        let mode = std::fs::metadata(dir.path().join(FILE_NAME)).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "{mode:o}");
    }

    #[tokio::test]
    async fn compare_and_set_refuses_a_stale_revision() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path()).unwrap();
        store.put("/k", Bytes::new(), Some(0)).await.unwrap();
        assert!(matches!(store.put("/k", Bytes::new(), Some(0)).await, Err(StoreError::Conflict)));
        assert!(store.put("/k", Bytes::new(), Some(1)).await.is_ok());
    }

    #[tokio::test]
    async fn watch_replays_history_then_follows_live_writes_under_its_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path()).unwrap();
        store.put("/a/1", Bytes::new(), None).await.unwrap();
        store.put("/b/1", Bytes::new(), None).await.unwrap();
        let mut rx = store.watch("/a/", 1).await.unwrap();
        store.put("/a/2", Bytes::new(), None).await.unwrap();
        store.delete("/a/1").await.unwrap();
        let mut revisions = Vec::new();
        while revisions.len() < 3 {
            match rx.recv().await.unwrap() {
                WatchMessage::Events(events) => revisions.extend(events.iter().map(Event::revision)),
                WatchMessage::Progress(_) => {}
                WatchMessage::Resync => panic!("unexpected resync"),
            }
        }
        assert_eq!(revisions, [1, 3, 4]);
    }
}
