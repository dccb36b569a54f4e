//! The group's resources as the reload task last read them from the store: what each snapshot is
//! built from, and what an etcd node caches on disk.

use std::collections::BTreeMap;

use crate::store::{ConfigStore, Event, KeyValue, StoreError};

/// The group's resources as last read from the store, and the revision they reflect.
pub struct Mirror {
    pub resources: BTreeMap<String, KeyValue>,
    pub revision: u64,
}

impl Mirror {
    /// Lists everything under `prefix`: the start of every sync.
    pub async fn load(store: &dyn ConfigStore, prefix: &str) -> Result<Mirror, StoreError> {
        let (items, revision) = store.list(prefix).await?;
        Ok(Mirror { resources: items.into_iter().map(|kv| (kv.key.clone(), kv)).collect(), revision })
    }

    /// Applies a batch of watch events, in order.
    pub fn apply(&mut self, events: Vec<Event>) {
        for event in events {
            self.revision = self.revision.max(event.revision());
            match event {
                Event::Put(kv) => {
                    self.resources.insert(kv.key.clone(), kv);
                }
                Event::Delete { key, .. } => {
                    self.resources.remove(&key);
                }
            }
        }
    }
}
