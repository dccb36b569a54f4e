//! The plugin registry (every plugin type the node knows) and the compiled chain of one route.

use std::collections::HashMap;
use std::sync::Arc;

use crate::error::join_path;
use crate::{BuildContext, ConfigError, ErrorStyle, Phases, Plugin, PluginFactory};

/// Every plugin type this node can run, by name. Built once at start-up.
#[derive(Default, Clone)]
pub struct Registry {
    factories: HashMap<&'static str, Arc<dyn PluginFactory>>,
}

impl Registry {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a plugin type; a later registration of the same name replaces the earlier one.
    pub fn register(&mut self, factory: Arc<dyn PluginFactory>) {
        self.factories.insert(factory.name(), factory);
    }

    pub fn get(&self, name: &str) -> Option<&Arc<dyn PluginFactory>> {
        self.factories.get(name)
    }

    /// Compiles a `plugins` object into a chain ordered by priority. Runs on admin writes and on
    /// reload; `path` is where the object sits in the resource (`plugins`), for error paths.
    pub fn build_chain(
        &self,
        plugins: &serde_json::Map<String, serde_json::Value>,
        path: &str,
        ctx: &dyn BuildContext,
    ) -> Result<Chain, ConfigError> {
        let mut entries = Vec::with_capacity(plugins.len());
        for (name, config) in plugins {
            let here = join_path(path, name);
            let factory = self
                .factories
                .get(name.as_str())
                .ok_or_else(|| ConfigError::new(here.clone(), format!("unknown plugin `{name}`")))?;
            let plugin = factory.build(config, ctx).map_err(|err| err.within(&here))?;
            entries.push(ChainEntry { name: factory.name(), priority: factory.priority(), plugin });
        }
        Ok(Chain::new(entries))
    }
}

/// One compiled plugin in a chain.
#[derive(Clone)]
pub struct ChainEntry {
    pub name: &'static str,
    pub priority: i32,
    pub plugin: Arc<dyn Plugin>,
}

/// A route's plugins, compiled once per route per config revision, highest priority first.
/// Cloning it is one reference count.
#[derive(Clone)]
pub struct Chain {
    entries: Arc<[ChainEntry]>,
    /// The first plugin's that declares one, in run order.
    error_style: Option<ErrorStyle>,
}

impl Default for Chain {
    fn default() -> Self {
        Self::new(Vec::new())
    }
}

impl Chain {
    pub fn new(mut entries: Vec<ChainEntry>) -> Self {
        entries.sort_by(|a, b| b.priority.cmp(&a.priority).then(a.name.cmp(b.name)));
        let error_style = entries.iter().find_map(|e| e.plugin.error_style());
        Self { entries: entries.into(), error_style }
    }

    /// This chain with `overrides` merged over it: a plugin in both runs as `overrides` has it
    /// (a consumer's plugins over its route's, as APISIX merges them). The error style stays
    /// this chain's. Runs once per request of a consumer that has plugins of its own.
    pub fn merged_with(&self, overrides: &Chain) -> Chain {
        let kept = self.entries.iter().filter(|e| !overrides.contains(e.name));
        let entries: Vec<ChainEntry> = kept.chain(overrides.entries.iter()).cloned().collect();
        Chain { error_style: self.error_style, ..Chain::new(entries) }
    }

    /// This chain's plugins, then `then`'s, each in its own order (not merged by priority): a
    /// global rule's plugins run before a route's. The error style is `then`'s when it has one.
    pub fn followed_by(&self, then: &Chain) -> Chain {
        let entries: Vec<ChainEntry> = self.entries.iter().chain(then.entries.iter()).cloned().collect();
        Self { entries: entries.into(), error_style: then.error_style.or(self.error_style) }
    }

    /// This chain without the plugins `drop` picks, the others in the same order (the model
    /// API's routes leave the global rules' authentication plugins out). Runs at reload.
    pub fn without(&self, drop: impl Fn(&ChainEntry) -> bool) -> Chain {
        let entries: Vec<ChainEntry> = self.entries.iter().filter(|e| !drop(e)).cloned().collect();
        let error_style = entries.iter().find_map(|e| e.plugin.error_style());
        Self { entries: entries.into(), error_style }
    }

    /// How the gateway renders its own errors on this chain's routes.
    pub fn error_style(&self) -> ErrorStyle {
        self.error_style.unwrap_or_default()
    }

    /// The error style a plugin of this chain declares, if any: a route's own plugins decide
    /// before the global rules'.
    pub fn declared_error_style(&self) -> Option<ErrorStyle> {
        self.error_style
    }

    /// The plugins implementing `phase`, in run order.
    pub fn with_phase(&self, phase: Phases) -> impl Iterator<Item = &ChainEntry> + '_ {
        self.entries.iter().filter(move |e| e.plugin.phases().contains(phase))
    }

    /// Every compiled plugin, in run order.
    pub fn plugins(&self) -> impl Iterator<Item = &Arc<dyn Plugin>> + '_ {
        self.entries.iter().map(|e| &e.plugin)
    }

    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.entries.iter().map(|e| e.name)
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn contains(&self, name: &str) -> bool {
        self.entries.iter().any(|e| e.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{parse_config, ClientHandle, ClientSettings};

    struct NoClients;
    impl BuildContext for NoClients {
        fn client(&self, _settings: ClientSettings) -> Result<ClientHandle, String> {
            Ok(ClientHandle::new(()))
        }
    }

    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct FlagConfig {
        #[expect(dead_code, reason = "parsed only to be validated")]
        flag: bool,
    }

    struct Flag;
    #[crate::derive_phases]
    impl Plugin for Flag {}

    struct FlagFactory;
    impl PluginFactory for FlagFactory {
        fn name(&self) -> &'static str {
            "flag"
        }
        fn priority(&self) -> i32 {
            0
        }
        fn build(&self, config: &serde_json::Value, _ctx: &dyn BuildContext) -> Result<Arc<dyn Plugin>, ConfigError> {
            parse_config::<FlagConfig>(config)?;
            Ok(Arc::new(Flag))
        }
    }

    fn registry() -> Registry {
        let mut registry = Registry::new();
        registry.register(Arc::new(FlagFactory));
        registry
    }

    #[test]
    fn unknown_plugin_is_rejected_with_its_path() {
        let plugins = serde_json::json!({"no-such-plugin": {}});
        let err = registry().build_chain(plugins.as_object().unwrap(), "plugins", &NoClients).err().unwrap();
        assert_eq!(err.path, "plugins.no-such-plugin");
    }

    #[test]
    fn invalid_config_names_the_dotted_path() {
        let plugins = serde_json::json!({"flag": {"flag": "yes"}});
        let err = registry().build_chain(plugins.as_object().unwrap(), "plugins", &NoClients).err().unwrap();
        assert_eq!(err.path, "plugins.flag.flag");
    }
}
