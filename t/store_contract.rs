//! One contract every config store keeps, run on each backend: the reload task and the admin API
//! rely on nothing else.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use switchyard::config::EtcdConfig;
use switchyard::store::embedded::EmbeddedStore;
use switchyard::store::etcd::EtcdStore;
use switchyard::store::{ConfigStore, Event, StoreError, WatchMessage};

use crate::harness::Etcd;

const A: &str = "/contract/g1/routes/a";
const B: &str = "/contract/g1/routes/b";
const C: &str = "/contract/g1/services/c";
const PREFIX: &str = "/contract/g1/";
/// Shares `PREFIX`'s first characters but not its folder: must never show under it.
const NEIGHBOUR: &str = "/contract/g10/routes/a";

fn bytes(s: &'static str) -> Bytes {
    Bytes::from_static(s.as_bytes())
}

/// The events of the next `count` revisions from `rx` (progress notices skipped).
async fn next_events(rx: &mut tokio::sync::mpsc::Receiver<WatchMessage>, count: usize) -> Vec<Event> {
    let mut events: Vec<Event> = Vec::new();
    while events.len() < count {
        let message = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .unwrap_or_else(|_| panic!("watch went quiet after {events:?}"))
            .expect("watch open");
        match message {
            WatchMessage::Events(batch) => events.extend(batch),
            WatchMessage::Progress(_) => {}
            WatchMessage::Resync => panic!("unexpected resync after {events:?}"),
        }
    }
    events
}

fn key(event: &Event) -> &str {
    match event {
        Event::Put(kv) => &kv.key,
        Event::Delete { key, .. } => key,
    }
}

pub async fn contract(store: Arc<dyn ConfigStore>) {
    // Create, then replace: the revision grows and the previous value comes back.
    let created = store.put(A, bytes("1"), None).await.unwrap();
    assert!(created.previous.is_none());
    let replaced = store.put(A, bytes("2"), None).await.unwrap();
    assert!(replaced.revision > created.revision);
    assert_eq!((created.version, replaced.version), (1, 2), "each key counts its own writes");
    let previous = replaced.previous.expect("a replace returns the previous value");
    assert_eq!((previous.value, previous.mod_revision, previous.version), (bytes("1"), created.revision, 1));
    let a = store.get(A).await.unwrap().unwrap();
    assert_eq!(
        (a.value, a.create_revision, a.mod_revision, a.version),
        (bytes("2"), created.revision, replaced.revision, 2)
    );
    assert!(store.get("/contract/g1/routes/missing").await.unwrap().is_none());

    // Compare-and-set: 0 means absent; any other stale revision is a conflict.
    let b1 = store.put(B, bytes("b"), Some(0)).await.unwrap();
    assert!(b1.revision > replaced.revision && b1.previous.is_none());
    assert!(matches!(store.put(B, bytes("x"), Some(0)).await, Err(StoreError::Conflict)));
    assert!(matches!(store.put(B, bytes("x"), Some(b1.revision - 1)).await, Err(StoreError::Conflict)));
    assert!(matches!(store.put("/contract/g1/routes/none", bytes("x"), Some(1)).await, Err(StoreError::Conflict)));
    let b2 = store.put(B, bytes("b2"), Some(b1.revision)).await.unwrap();
    assert_eq!(b2.previous.unwrap().mod_revision, b1.revision);
    assert_eq!((b1.version, b2.version), (1, 2), "a refused compare-and-set does not count");

    // Listing by prefix: only the folder's keys, sorted, with the store revision.
    let neighbour = store.put(NEIGHBOUR, bytes("n"), None).await.unwrap();
    let (items, revision) = store.list(PREFIX).await.unwrap();
    assert_eq!(items.iter().map(|kv| kv.key.as_str()).collect::<Vec<_>>(), [A, B]);
    assert_eq!(items.iter().map(|kv| kv.version).collect::<Vec<_>>(), [2, 2]);
    assert_eq!(revision, neighbour.revision, "a listing reflects the store revision, other folders' writes included");

    // Delete: the revision of the deletion, or nothing when there was nothing.
    let deleted = store.delete(A).await.unwrap().expect("A existed");
    assert!(deleted > neighbour.revision);
    assert_eq!(store.delete(A).await.unwrap(), None);
    assert!(store.get(A).await.unwrap().is_none());

    // Watch from a past revision: history under the prefix in order, then live writes, never a
    // neighbour's.
    let mut rx = store.watch(PREFIX, created.revision).await.unwrap();
    let history = next_events(&mut rx, 5).await;
    let revisions: Vec<u64> = history.iter().map(Event::revision).collect();
    assert_eq!(revisions, [created.revision, replaced.revision, b1.revision, b2.revision, deleted]);
    assert!(matches!(&history[4], Event::Delete { key, .. } if key == A));
    store.put(NEIGHBOUR, bytes("n2"), None).await.unwrap();
    let live = store.put(C, bytes("c"), None).await.unwrap();
    let next = next_events(&mut rx, 1).await;
    assert_eq!((key(&next[0]), next[0].revision()), (C, live.revision));

    // A watch from now on sees only what comes next.
    let mut later = store.watch(PREFIX, live.revision + 1).await.unwrap();
    let last = store.put(B, bytes("b3"), None).await.unwrap();
    let next = next_events(&mut later, 1).await;
    assert_eq!((key(&next[0]), next[0].revision()), (B, last.revision));
    match &next[0] {
        Event::Put(kv) => {
            assert_eq!((kv.value.clone(), kv.create_revision, kv.version), (bytes("b3"), b1.revision, 3))
        }
        Event::Delete { .. } => panic!("expected a put"),
    }
    assert_eq!(last.version, 3);

    // A deleted key created again counts from 1.
    let again = store.put(A, bytes("again"), Some(0)).await.unwrap();
    assert_eq!(again.version, 1);
    assert_eq!(store.get(A).await.unwrap().unwrap().version, 1);
}

#[tokio::test]
async fn the_embedded_store_keeps_the_store_contract() {
    let dir = tempfile::tempdir().unwrap();
    contract(Arc::new(EmbeddedStore::open(dir.path()).unwrap())).await;
}

#[tokio::test]
async fn the_etcd_store_keeps_the_store_contract() {
    let etcd = Etcd::start().await;
    let config = EtcdConfig { endpoints: vec![etcd.endpoint()], ..EtcdConfig::default() };
    let store = Arc::new(EtcdStore::new(&config).unwrap());
    contract(store.clone()).await;
    assert!(store.connected());
}
