//! The switchyard plugin SDK and the plugins that ship with the gateway.
//!
//! This crate knows nothing of servers, routers or config stores: the gateway core (`switchyard`)
//! compiles each route's plugin configs through a [`Registry`] into a [`Chain`] and runs its phases.

pub mod ai_proxy;
pub mod ai_proxy_multi;
pub mod balancer;
pub mod client_pool;
pub mod ctx;
pub mod error;
pub mod headers;
pub mod model_api;
pub mod plugin;
pub mod providers;
pub mod proxy_buffering;
pub mod raw_body;
pub mod registry;
pub mod respond;
pub mod sse;
pub mod target;

pub use ctx::{Ctx, ErrorStyle};
pub use error::{parse_config, ConfigError, PluginError};
pub use plugin::{Flow, Outcome, Phases, Plugin, PluginFactory, Request, Response};
pub use registry::{Chain, Registry};
pub use target::{AttemptResult, GiveUp, Next, Target, UpstreamRequest, Verdict};
