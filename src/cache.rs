//! An etcd node's copy of its last applied config on local disk (`<store.path>/etcd-cache.json`),
//! so a node that restarts while etcd is down still serves what it served before.

use std::io::Write;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::mirror::Mirror;
use crate::store::KeyValue;

pub const FILE_NAME: &str = "etcd-cache.json";

#[derive(Serialize, Deserialize)]
struct CacheFile {
    /// The group prefix the resources were listed under: a cache of another group is not used.
    group_prefix: String,
    revision: u64,
    resources: Vec<CachedKv>,
}

#[derive(Serialize, Deserialize)]
struct CachedKv {
    key: String,
    /// The resource JSON as stored (an invalid one is kept, and rejected again at load).
    value: String,
    create_revision: u64,
    mod_revision: u64,
    /// Absent from caches written before write counts were kept.
    #[serde(default)]
    version: u64,
}

/// Where one node keeps its cache, and for which group.
#[derive(Debug, Clone)]
pub struct MirrorCache {
    path: PathBuf,
    group_prefix: String,
}

impl MirrorCache {
    pub fn new(dir: &Path, group_prefix: &str) -> Self {
        Self { path: dir.join(FILE_NAME), group_prefix: group_prefix.to_string() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the cache when the node starts and etcd cannot be reached. `None` when there is no
    /// cache, it cannot be read (logged), or it holds another group's config.
    pub fn load(&self) -> Option<Mirror> {
        let text = match std::fs::read(&self.path) {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return None,
            Err(err) => {
                tracing::warn!(path = %self.path.display(), error = %err, "cannot read the snapshot cache");
                return None;
            }
        };
        let file: CacheFile = match serde_json::from_slice(&text) {
            Ok(file) => file,
            Err(err) => {
                tracing::warn!(path = %self.path.display(), error = %err, "the snapshot cache is corrupt; ignored");
                return None;
            }
        };
        if file.group_prefix != self.group_prefix {
            tracing::warn!(path = %self.path.display(), cached = %file.group_prefix, "the snapshot cache is another group's; ignored");
            return None;
        }
        let resources = file
            .resources
            .into_iter()
            .map(|kv| {
                let kv = KeyValue {
                    key: kv.key,
                    value: Bytes::from(kv.value),
                    create_revision: kv.create_revision,
                    mod_revision: kv.mod_revision,
                    version: kv.version,
                };
                (kv.key.clone(), kv)
            })
            .collect();
        Some(Mirror { resources, revision: file.revision })
    }

    /// Replaces the cache with `mirror`, after each applied revision. Atomic: a temporary file in
    /// the same folder is written, synced and renamed over the old cache, so a crash leaves
    /// either the old cache or the new one.
    pub fn save(&self, mirror: &Mirror) -> std::io::Result<()> {
        let file = CacheFile {
            group_prefix: self.group_prefix.clone(),
            revision: mirror.revision,
            resources: mirror
                .resources
                .values()
                .map(|kv| CachedKv {
                    key: kv.key.clone(),
                    value: String::from_utf8_lossy(&kv.value).into_owned(),
                    create_revision: kv.create_revision,
                    mod_revision: kv.mod_revision,
                    version: kv.version,
                })
                .collect(),
        };
        let bytes = serde_json::to_vec(&file).map_err(std::io::Error::other)?;
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let temp = self.path.with_extension("json.tmp");
        {
            // The cache holds provider-key secrets: readable by this user only.
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create(true).truncate(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let mut out = options.open(&temp)?;
            out.write_all(&bytes)?;
            out.sync_all()?;
        }
        std::fs::rename(&temp, &self.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mirror(revision: u64) -> Mirror {
        let kv = KeyValue {
            key: "/s/g/routes/r1".into(),
            value: Bytes::from_static(b"{\"paths\":[\"/a\"]}"),
            create_revision: 2,
            mod_revision: revision,
            version: 3,
        };
        Mirror { resources: [(kv.key.clone(), kv)].into_iter().collect(), revision }
    }

    #[test]
    fn a_saved_mirror_loads_back_for_its_own_group_only() {
        let dir = tempfile::tempdir().unwrap();
        let cache = MirrorCache::new(dir.path(), "/s/g/");
        assert!(cache.load().is_none());
        cache.save(&mirror(3)).unwrap();
        cache.save(&mirror(7)).unwrap();
        let loaded = cache.load().unwrap();
        assert_eq!(loaded.revision, 7);
        assert_eq!(loaded.resources, mirror(7).resources);
        assert!(!dir.path().join("etcd-cache.json.tmp").exists());
        assert!(MirrorCache::new(dir.path(), "/s/other/").load().is_none());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(cache.path()).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "the cache holds secrets: {mode:o}");
        }
    }

    #[test]
    fn a_corrupt_cache_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE_NAME), b"{not json").unwrap();
        assert!(MirrorCache::new(dir.path(), "/s/g/").load().is_none());
    }
}
