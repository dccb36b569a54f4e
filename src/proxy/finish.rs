//! The end of a request: every plugin's `log` phase, then metrics, spans and the access log line.

use std::borrow::Cow;
use std::sync::{Arc, OnceLock};

use crate::observe::metrics::sharded::Gauge;
use http::{Method, Uri};
use switchyard_sdk::{Chain, ChainEntry, Ctx, Outcome, Phases};

use crate::compiled::CompiledRoute;
use crate::observe::metrics::route::Matched;
use crate::observe::Observe;

/// The plugins a request runs: the group's global rules', then its route's own, or its route's
/// with an identified consumer's plugins merged over them (the global rules' are never merged).
///
/// Borrowed from the route where it can be: a route's chains are shared by every worker, and
/// taking a reference count on them per phase made both workers' cores pass the counts' cache
/// lines back and forth.
pub struct RequestChain<'a> {
    pub global: Cow<'a, Chain>,
    pub own: Cow<'a, Chain>,
}

impl<'a> RequestChain<'a> {
    /// The chain `route`'s request runs now (its consumer, once identified, counts: that chain is
    /// the context's, so it is cloned, two reference counts).
    pub fn of(route: &'a CompiledRoute, ctx: &Ctx) -> RequestChain<'a> {
        let own = match ctx.extensions.get::<ConsumerChain>() {
            Some(merged) => Cow::Owned(merged.0.clone()),
            None => Cow::Borrowed(&route.chain),
        };
        RequestChain { global: Cow::Borrowed(&route.global), own }
    }

    /// The same chain, owned: for a response body, which outlives the route it was borrowed from.
    pub fn into_owned(self) -> RequestChain<'static> {
        RequestChain { global: Cow::Owned(self.global.into_owned()), own: Cow::Owned(self.own.into_owned()) }
    }

    /// The plugins implementing `phase`, in run order: the global rules' first. For the phases
    /// after access (rewrite and access run in APISIX's own order: see `pipeline`).
    pub fn with_phase(&self, phase: Phases) -> impl Iterator<Item = &ChainEntry> + '_ {
        self.global.with_phase(phase).chain(self.own.with_phase(phase))
    }
}

/// Carries what the log needs from the request head, so bodies can finish after the handler
/// returned. Cloning it copies no string: the URI shares the request's bytes.
#[derive(Clone)]
pub struct Finisher {
    pub route: Arc<CompiledRoute>,
    pub method: Method,
    pub uri: Uri,
    pub request_id: http::HeaderValue,
    pub observe: Arc<Observe>,
    /// Which of the route's paths and hosts matched (metric labels).
    pub matched: Matched,
    /// The request's size as received: request line, headers and body.
    pub request_bytes: u64,
    /// `apisix_llm_active_connections` of the LLM answer being relayed, taken down when the
    /// request ends.
    pub llm_active: OnceLock<Gauge>,
}

/// A request's chain when its consumer has plugins of its own: the route's with the consumer's
/// merged over it. Kept in the request's context once the consumer is known.
#[derive(Clone)]
pub struct ConsumerChain(pub Chain);

impl Finisher {
    /// The plugins this request runs: the global rules', then its route's, or the route's merged
    /// with its consumer's.
    pub fn chain(&self, ctx: &Ctx) -> RequestChain<'_> {
        RequestChain::of(&self.route, ctx)
    }

    /// Runs once per request, when its response is complete or abandoned.
    pub fn finish(&self, ctx: &Ctx, outcome: &Outcome) {
        for entry in self.chain(ctx).with_phase(Phases::LOG) {
            entry.plugin.log(ctx, outcome);
        }
        self.observe.finished(self, ctx, outcome);
    }

    /// The route path pattern the request matched.
    pub fn matched_uri(&self) -> Option<&str> {
        self.matched.uri(&self.route)
    }
}

/// Records a request abandoned by its client before the response head (status 499, as nginx
/// does) or cut by shutdown (444: closed without a response), unless disarmed once the response
/// exists.
pub struct AbandonGuard<'a> {
    finisher: &'a Finisher,
    started: std::time::Instant,
    armed: bool,
}

impl Finisher {
    pub fn abandon_guard(&self, started: std::time::Instant) -> AbandonGuard<'_> {
        AbandonGuard { finisher: self, started, armed: true }
    }
}

impl AbandonGuard<'_> {
    pub fn disarm(&mut self) {
        self.armed = false;
    }
}

impl Drop for AbandonGuard<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let (status, error) = if crate::client_io::dropped_by_shutdown() {
            (444, "cut by shutdown before the response")
        } else {
            (499, "client closed the connection before the response")
        };
        self.finisher.observe.abandoned(self.finisher, self.started, status, error);
    }
}
