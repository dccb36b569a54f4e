//! The plugin contract: a stateless factory per plugin type, a compiled instance per route.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;

use crate::{BackgroundTask, BuildContext, ConfigError, Ctx, ErrorStyle, PluginError, UpstreamIo, UpstreamRequest};

/// A response made by the gateway itself (a plugin's rejection, an error): the whole body at once.
pub type Response = http::Response<Bytes>;

/// The client's request as the plugins see it: the head, and the body read whole.
#[derive(Debug)]
pub struct Request {
    pub head: http::request::Parts,
    pub body: Bytes,
}

/// What a request phase decided.
pub enum Flow {
    /// Go on with the next plugin, then the next phase.
    Continue,
    /// Answer the client with this response now; later request phases are skipped, `log` still runs.
    Respond(Response),
    /// `before_proxy` only: drop this attempt unsent and ask the target for another (its `judge`
    /// sees [`crate::AttemptResult::Skipped`]); when none is left, answer with this response. In
    /// the other phases it answers at once, as `Respond` does.
    Skip(Response),
}

/// What happened to a request, handed to every plugin's `log` phase once the response is done.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    pub status: u16,
    /// Bytes of response body sent to the client.
    pub body_bytes: u64,
    /// Why the gateway failed the request, when it did, as a stable code (`upstream_timeout`).
    pub reason: Option<&'static str>,
    /// The same failure in words, with its causes (never contains secrets).
    pub error: Option<String>,
    /// The response ended early: the client went away, or the upstream stream broke.
    pub aborted: bool,
}

/// Where an upstream instance stands, as the plugin that picks it sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum InstanceState {
    /// In rotation.
    Healthy,
    /// Out of rotation until a cooldown (passive checks, `Retry-After`) ends, this far ahead.
    Cooling { back_in: std::time::Duration },
    /// Out of rotation until active probes bring it back.
    Down,
}

/// One instance's health, reported for metrics.
#[derive(Debug, Clone)]
pub struct InstanceHealth {
    pub instance: Arc<str>,
    pub state: InstanceState,
}

/// Which phases a plugin implements, so the chain skips the calls that would do nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Phases(u8);

impl Phases {
    pub const NONE: Phases = Phases(0);
    pub const REWRITE: Phases = Phases(1);
    pub const ACCESS: Phases = Phases(1 << 1);
    pub const BEFORE_PROXY: Phases = Phases(1 << 2);
    pub const HEADER_FILTER: Phases = Phases(1 << 3);
    pub const BODY_FILTER: Phases = Phases(1 << 4);
    pub const LOG: Phases = Phases(1 << 5);
    pub const ALL: Phases = Phases(0x3f);

    pub const fn with(self, other: Phases) -> Phases {
        Phases(self.0 | other.0)
    }

    pub const fn contains(self, other: Phases) -> bool {
        self.0 & other.0 == other.0
    }
}

/// A plugin type. One value per type lives in the [`crate::Registry`] for the life of the process.
pub trait PluginFactory: Send + Sync + 'static {
    /// The name used as the key under a route's `plugins` object, e.g. `"ai-proxy"`.
    fn name(&self) -> &'static str;
    /// Higher runs first within each phase (APISIX's numbers where the plugin exists there).
    fn priority(&self) -> i32;
    /// Where credentials sit in this plugin's config, as patterns relative to it: dotted field
    /// names, `*` for every key of an object, `[]` for every element of an array
    /// (`instances[].auth.header.*`). The admin API shows them as `"***"`, and a `"***"` sent
    /// back keeps the stored value. Every field that holds a credential must be listed.
    fn secret_fields(&self) -> Vec<String> {
        Vec::new()
    }
    /// Whether this plugin authenticates callers (identifies a consumer, refuses the others). The
    /// model API's built-in routes, which authenticate callers with keys of their own, run the
    /// global rules' plugins but not these.
    fn authenticates(&self) -> bool {
        false
    }
    /// For an authentication plugin: the credential a consumer's config of it carries (key-auth's
    /// `key`), by which the core indexes consumers; `None` when the config holds none. Called
    /// when consumers compile, after `build` accepted the config.
    fn consumer_credential(&self, _config: &serde_json::Value) -> Option<String> {
        None
    }
    /// Parses, validates and compiles one route's config. Called by the admin API on every write
    /// (to reject bad input) and by reload (to build the snapshot), so it must be pure: no IO and
    /// no spawned task (declare background work in [`Plugin::background`]). Errors carry a path
    /// relative to the plugin's config object.
    fn build(&self, config: &serde_json::Value, ctx: &dyn BuildContext) -> Result<Arc<dyn Plugin>, ConfigError>;
}

/// A compiled plugin: one per route (and per config revision), shared by all its requests.
/// State that must outlive a request (balancer positions, health) lives here.
#[async_trait]
pub trait Plugin: Send + Sync {
    /// The phases this plugin implements; the others are never called. Write it with
    /// `#[derive_phases]` on the `impl Plugin` block rather than by hand, so it cannot drift
    /// from the methods the block defines.
    fn phases(&self) -> Phases;

    /// The error style of routes running this plugin (AI plugins: OpenAI's), or `None` to leave
    /// it to others. Read once, when the chain is compiled.
    fn error_style(&self) -> Option<ErrorStyle> {
        None
    }

    /// The work this compiled plugin needs done between requests. Called by the reload task once,
    /// when the plugin first enters the published snapshot; each task is dropped when the plugin
    /// leaves it. A plugin kept across reloads (its config unchanged) keeps its tasks running.
    fn background(&self, _io: &Arc<dyn UpstreamIo>) -> Vec<BackgroundTask> {
        Vec::new()
    }

    /// The health of the instances this plugin picks from. Called when metrics are scraped, never
    /// on the request path; plugins without instances report none.
    fn instance_health(&self) -> Vec<InstanceHealth> {
        Vec::new()
    }

    /// Runs once per request, first: adjust the request, set per-request flags.
    async fn rewrite(&self, _ctx: &mut Ctx, _req: &mut Request) -> Result<Flow, PluginError> {
        Ok(Flow::Continue)
    }

    /// Runs once per request after every rewrite: authenticate, limit, pick a [`crate::Target`].
    async fn access(&self, _ctx: &mut Ctx, _req: &mut Request) -> Result<Flow, PluginError> {
        Ok(Flow::Continue)
    }

    /// Runs before every upstream attempt (again on each retry) with the request about to be sent.
    async fn before_proxy(&self, _ctx: &mut Ctx, _upstream: &mut UpstreamRequest) -> Result<Flow, PluginError> {
        Ok(Flow::Continue)
    }

    /// Runs once with the response head that is about to reach the client.
    fn header_filter(&self, _ctx: &mut Ctx, _head: &mut http::response::Parts) {}

    /// Runs on every piece of response body before it is sent: the whole body when buffered, one
    /// complete event for `text/event-stream`, otherwise each chunk as it arrives. Synchronous: it
    /// is on the hot path.
    fn body_filter(&self, _ctx: &mut Ctx, _chunk: &mut Bytes, _end_of_stream: bool) {}

    /// Runs once when the response is finished or abandoned.
    fn log(&self, _ctx: &Ctx, _outcome: &Outcome) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::derive_phases;

    struct Access;
    #[derive_phases]
    #[async_trait]
    impl Plugin for Access {
        async fn access(&self, _ctx: &mut Ctx, _req: &mut Request) -> Result<Flow, PluginError> {
            Ok(Flow::Continue)
        }
        fn log(&self, _ctx: &Ctx, _outcome: &Outcome) {}
    }

    struct Quiet;
    #[derive_phases]
    impl Plugin for Quiet {
        fn error_style(&self) -> Option<ErrorStyle> {
            None
        }
    }

    #[test]
    fn derived_phases_are_exactly_the_methods_implemented() {
        assert_eq!(Access.phases(), Phases::ACCESS.with(Phases::LOG));
        assert_eq!(Quiet.phases(), Phases::NONE);
    }
}
