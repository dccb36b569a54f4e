//! The switchyard plugin SDK: what a plugin is ([`PluginFactory`], [`Plugin`]), what it sees of a
//! request ([`Ctx`], [`Request`]), how it names a destination ([`Target`], [`UpstreamRequest`]),
//! and the helpers plugins share (config errors with dotted paths, [`raw_body::RawBody`], SSE
//! framing, gateway-made responses).
//!
//! It does no IO and holds no global state: the core lends upstream clients through
//! [`BuildContext`] when a config compiles and sends every request itself.

// `#[derive_phases]` names `::switchyard_sdk`, also inside this crate's own tests.
extern crate self as switchyard_sdk;

pub mod balancer;
pub mod chash;
pub mod consumer;
pub mod counters;
pub mod credentials;
pub mod ctx;
pub mod error;
pub mod headers;
pub mod plugin;
pub mod raw_body;
pub mod registry;
pub mod respond;
pub mod response_headers;
pub mod sse;
pub mod target;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod transport;
pub mod vars;

pub use consumer::{Consumer, Consumers};
pub use counters::{
    Admission, Counter, CounterError, CounterPolicy, CounterState, CounterStore, RedisClusterSettings, RedisSettings,
};
pub use credentials::{CredentialError, Credentials};
pub use ctx::{Ctx, ErrorStyle, LogRecord, ModelLabels, Usage};
pub use error::{parse_config, ConfigError, PluginError};
pub use plugin::{Flow, InstanceHealth, InstanceState, Outcome, Phases, Plugin, PluginFactory, Request, Response};
pub use registry::{Chain, ChainEntry, Registry};
pub use response_headers::ResponseHeaders;
pub use switchyard_sdk_macros::derive_phases;
pub use target::{
    AttemptResult, AttemptTiming, GiveUp, Next, ResumeMode, Resumption, Target, UpstreamRequest, Verdict,
};
pub use transport::{
    provided, BackgroundTask, BuildContext, ClientHandle, ClientSettings, Fetched, SendError, UpstreamIo,
};
