//! Consumers, compiled: the consumer's plugins as a chain (its credentials left out: they
//! identify it, they do not run), and the credentials the core indexes it by.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::Value;
use switchyard_sdk::{ConfigError, Consumer, Consumers};

use super::{Compiler, Dependencies};
use crate::resource::consumer::ConsumerSpec;

/// A compiled consumer.
pub struct ConsumerEntry {
    pub consumer: Arc<Consumer>,
    /// (authentication plugin, credential) pairs, e.g. `("key-auth", "<key>")`.
    pub credentials: Vec<(&'static str, String)>,
}

impl std::fmt::Debug for ConsumerEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsumerEntry").field("consumer", &self.consumer.username).finish_non_exhaustive()
    }
}

/// Compiles a consumer. The `id` is its username (a body naming another is refused).
pub fn consumer(
    compiler: &Compiler,
    id: &str,
    value: &Value,
    deps: &dyn Dependencies,
) -> Result<ConsumerEntry, ConfigError> {
    let spec = ConsumerSpec::parse(value)?;
    if spec.username != id {
        return Err(ConfigError::new("username", "must be the consumer's id"));
    }
    // Every plugin is checked as a whole; the credentials are then set apart from the chain.
    compiler.chain(&spec.plugins, "plugins", deps)?;
    let mut credentials = Vec::new();
    let mut running = serde_json::Map::new();
    for (name, config) in &spec.plugins {
        let factory = compiler.registry.get(name);
        match factory.and_then(|f| Some((f.name(), f.consumer_credential(config)?))) {
            Some(credential) => credentials.push(credential),
            None => {
                running.insert(name.clone(), config.clone());
            }
        }
    }
    let chain = compiler.chain(&running, "plugins", deps)?;
    Ok(ConsumerEntry { consumer: Arc::new(Consumer { username: Arc::from(id), chain }), credentials })
}

/// Every consumer of a snapshot by credential: what authentication plugins look callers up in.
/// foldhash rather than SipHash: this lookup runs on every authenticated request, and only
/// admins insert keys (a caller can look up, never add, so it cannot flood a bucket).
#[derive(Default)]
pub struct ConsumerDirectory {
    by_plugin: HashMap<&'static str, HashMap<Box<str>, Arc<Consumer>, Fold>, Fold>,
}

type Fold = foldhash::fast::RandomState;

impl ConsumerDirectory {
    /// Indexes `entry`'s credentials. A credential another consumer already holds is refused with
    /// that consumer's name, and nothing of `entry` is indexed.
    pub fn add(&mut self, entry: &ConsumerEntry) -> Result<(), String> {
        for (plugin, credential) in &entry.credentials {
            if let Some(holder) = self.by_plugin.get(plugin).and_then(|keys| keys.get(credential.as_str())) {
                return Err(format!(
                    "plugins.{plugin}: the credential is already used by consumer `{}`",
                    holder.username
                ));
            }
        }
        for (plugin, credential) in &entry.credentials {
            let keys = self.by_plugin.entry(plugin).or_default();
            keys.insert(credential.as_str().into(), Arc::clone(&entry.consumer));
        }
        Ok(())
    }
}

impl Consumers for ConsumerDirectory {
    fn by_credential(&self, plugin: &str, credential: &str) -> Option<Arc<Consumer>> {
        self.by_plugin.get(plugin)?.get(credential).cloned()
    }
}
