//! What turns stored config into compiled config: the plugin registry and the node's transport.
//! The admin API (to validate a write) and reload (to build the snapshot) use the same one.

use std::sync::Arc;

use switchyard_sdk::{Chain, ConfigError, Registry};

use crate::transport::Transport;

pub struct Compiler {
    pub registry: Registry,
    pub transport: Arc<Transport>,
}

impl Compiler {
    pub fn new(registry: Registry, transport: Arc<Transport>) -> Self {
        Self { registry, transport }
    }

    /// Compiles a `plugins` object; `path` is where it sits, for error paths.
    pub fn chain(
        &self,
        plugins: &serde_json::Map<String, serde_json::Value>,
        path: &str,
    ) -> Result<Chain, ConfigError> {
        self.registry.build_chain(plugins, path, self.transport.as_ref())
    }
}
