//! `proxy-buffering`: whether a non-streaming upstream response is read whole before it is sent.
//!
//! Buffering (the default, also without this plugin) protects the upstream from slow clients;
//! `"disable_proxy_buffering": true` relays bytes as they arrive. `text/event-stream` is never
//! buffered, whatever this says: each complete event is flushed at once.

use std::sync::Arc;

use async_trait::async_trait;
use serde::Deserialize;

use switchyard_sdk::{
    derive_phases, parse_config, BuildContext, ConfigError, Ctx, Flow, Plugin, PluginError, PluginFactory, Request,
};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProxyBufferingConfig {
    #[serde(default)]
    disable_proxy_buffering: bool,
}

pub struct ProxyBufferingFactory;

impl PluginFactory for ProxyBufferingFactory {
    fn name(&self) -> &'static str {
        "proxy-buffering"
    }

    fn priority(&self) -> i32 {
        21990
    }

    fn build(&self, config: &serde_json::Value, _ctx: &dyn BuildContext) -> Result<Arc<dyn Plugin>, ConfigError> {
        let config: ProxyBufferingConfig = parse_config(config)?;
        Ok(Arc::new(ProxyBuffering { buffer: !config.disable_proxy_buffering }))
    }
}

struct ProxyBuffering {
    buffer: bool,
}

#[derive_phases]
#[async_trait]
impl Plugin for ProxyBuffering {
    async fn rewrite(&self, ctx: &mut Ctx, _req: &mut Request) -> Result<Flow, PluginError> {
        ctx.buffer_response = self.buffer;
        Ok(Flow::Continue)
    }
}
