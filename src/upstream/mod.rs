//! A compiled APISIX upstream: weighted nodes, a keep-alive pool, and the [`Target`] that sends a
//! route's requests to it when no AI plugin chose another destination.

mod balance;
mod health;

use std::sync::Arc;
use std::time::Duration;

use http::header::{HeaderName, HeaderValue, HOST};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::Uri;
use switchyard_sdk::balancer::SmoothWeighted;
use switchyard_sdk::headers::forwardable;
use switchyard_sdk::ConfigError;
use switchyard_sdk::{
    AttemptResult, AttemptTiming, BuildContext, ClientHandle, ClientSettings, Ctx, GiveUp, Next, Request, Target,
    UpstreamRequest, Verdict,
};

use crate::resource::upstream::{Node, UpstreamSpec};
use balance::{Balancer, InFlight, LeastConn, Ring};
use health::NodeHealth;
use switchyard_sdk::chash::HashOn;
use switchyard_sdk::vars::with_request;

const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(60);
const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(60);
/// APISIX's upstream keep-alive defaults: 60 s idle, 320 idle connections.
const UPSTREAM_KEEPALIVE_TIMEOUT_MS: u64 = 60_000;
const UPSTREAM_KEEPALIVE_POOL: u32 = 320;

#[derive(Debug, Clone, PartialEq, Eq)]
enum PassHost {
    Pass,
    Node,
    Rewrite(HeaderValue),
}

pub struct Upstream {
    nodes: Vec<Node>,
    /// Each node's `host:port`, parsed once.
    authorities: Vec<Authority>,
    labels: Vec<Arc<str>>,
    balancer: Balancer,
    scheme: Scheme,
    pass_host: PassHost,
    read_timeout: Duration,
    retries: usize,
    /// No retry starts once this long has passed since the request began.
    retry_timeout: Option<Duration>,
    /// Keep-alive pools per node, shared with every upstream of the same connect timeout.
    client: ClientHandle,
    /// `checks`: unhealthy nodes are skipped while a healthy one is left.
    health: Option<NodeHealth>,
}

impl Upstream {
    /// Compiles a checked spec found at `path` (`upstream` inline, empty for an upstream object).
    /// Runs at reload and on admin validation.
    pub fn from_spec(spec: &UpstreamSpec, ctx: &dyn BuildContext, path: &str) -> Result<Self, ConfigError> {
        let at = |field: &str| switchyard_sdk::error::join_path(path, field);
        let nodes = spec.nodes().map_err(|e| e.within(path))?;
        let authorities = nodes
            .iter()
            .map(|n| {
                n.authority
                    .parse::<Authority>()
                    .map_err(|_| ConfigError::new(at(&format!("nodes.{}", n.authority)), "is not a valid host:port"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let pass_host = match (spec.pass_host.as_deref(), &spec.upstream_host) {
            (Some("node"), _) => PassHost::Node,
            (Some("rewrite"), Some(host)) => PassHost::Rewrite(
                HeaderValue::from_str(host)
                    .map_err(|_| ConfigError::new(at("upstream_host"), "is not a valid host"))?,
            ),
            _ => PassHost::Pass,
        };
        let seconds = |s: f64| Duration::from_secs_f64(s);
        let weights: Vec<u32> = nodes.iter().map(|n| n.weight).collect();
        let balancer = match spec.kind.as_deref() {
            Some("chash") => {
                let key = spec.key.as_deref().filter(|k| !k.is_empty());
                let hash_on = HashOn::parse(spec.hash_on.as_deref(), key).map_err(|e| e.within(path))?;
                let names: Vec<&str> = nodes.iter().map(|n| n.authority.as_str()).collect();
                Balancer::Hash(Ring::new(hash_on, &names, &weights))
            }
            Some("least_conn") => Balancer::LeastConn(LeastConn::new(weights)),
            _ => Balancer::RoundRobin(SmoothWeighted::new(weights)),
        };
        let pool = spec.keepalive_pool;
        let scheme = if spec.scheme.as_deref() == Some("https") { Scheme::HTTPS } else { Scheme::HTTP };
        let client = ctx
            .client(ClientSettings {
                connect_timeout_ms: spec.timeout.map_or(DEFAULT_CONNECT_TIMEOUT, |t| seconds(t.connect)).as_millis()
                    as u64,
                keepalive: true,
                keepalive_timeout_ms: pool.map_or(UPSTREAM_KEEPALIVE_TIMEOUT_MS, |p| (p.idle_timeout * 1000.0) as u64),
                keepalive_pool: pool.map_or(UPSTREAM_KEEPALIVE_POOL, |p| p.size),
                max_requests_per_connection: pool.map_or(0, |p| p.requests),
                ssl_verify: true,
            })
            .map_err(|err| ConfigError::new(if path.is_empty() { "nodes" } else { path }, err))?;
        let health = spec
            .checks
            .as_ref()
            .map(|checks| NodeHealth::new(checks, &authorities, &scheme, &client, path))
            .transpose()?;
        Ok(Self {
            labels: nodes.iter().map(|n| Arc::from(n.authority.as_str())).collect(),
            balancer,
            retries: spec.retries.map_or(nodes.len().saturating_sub(1), |r| r as usize),
            retry_timeout: spec.retry_timeout.filter(|t| *t > 0.0).map(seconds),
            nodes,
            authorities,
            scheme,
            pass_host,
            read_timeout: spec.timeout.map_or(DEFAULT_READ_TIMEOUT, |t| seconds(t.read)),
            client,
            health,
        })
    }

    /// The active health probes of this upstream's nodes, for the reload task to run while the
    /// upstream is live (none without `checks.active`).
    pub fn background(&self, io: &Arc<dyn switchyard_sdk::UpstreamIo>) -> Vec<switchyard_sdk::BackgroundTask> {
        self.health.as_ref().map_or_else(Vec::new, |health| health.background(io))
    }

    /// A fresh per-request target over this upstream's nodes.
    pub fn target(self: &Arc<Self>) -> Box<dyn Target> {
        Box::new(UpstreamTarget { upstream: Arc::clone(self), tried: Vec::new(), current: None, in_flight: None })
    }
}

/// Tries the nodes in weighted order; a node that refuses the connection is excluded and the next
/// one tried, up to `retries` times. Any answer, even a 5xx, is relayed as it is.
struct UpstreamTarget {
    upstream: Arc<Upstream>,
    tried: Vec<usize>,
    current: Option<usize>,
    /// `least_conn`: the attempt in flight, counted on its node.
    in_flight: Option<InFlight>,
}

impl UpstreamTarget {
    /// The node for the next attempt: the balancer's pick among the healthy nodes not tried yet;
    /// when every untried node is unhealthy, among those anyway (as APISIX does).
    fn pick(&self, req: &Request, ctx: &Ctx) -> Option<usize> {
        let up = &self.upstream;
        let untried = |i: usize| !self.tried.contains(&i);
        let healthy = |i: usize| untried(i) && up.health.as_ref().is_none_or(|h| h.available(i));
        let pick = |key: Option<&str>| up.balancer.pick(key, healthy).or_else(|| up.balancer.pick(key, untried));
        let Balancer::Hash(ring) = &up.balancer else { return pick(None) };
        with_request(req, ctx.client_addr, |vars| pick(Some(&ring.hash_on.key(vars, ctx.consumer.as_deref()))))
    }
}

impl Target for UpstreamTarget {
    fn next(&mut self, ctx: &mut Ctx, req: &Request, attempt: u32) -> Next {
        let up = &self.upstream;
        if attempt as usize > up.retries + 1 {
            return Next::Exhausted(GiveUp::LastAsIs);
        }
        if attempt > 1 && up.retry_timeout.is_some_and(|limit| ctx.started.elapsed() >= limit) {
            return Next::Exhausted(GiveUp::LastAsIs);
        }
        let Some(index) = self.pick(req, ctx) else {
            return Next::Exhausted(GiveUp::LastAsIs);
        };
        self.tried.push(index);
        self.current = Some(index);
        self.in_flight = None;
        if let Balancer::LeastConn(least) = &up.balancer {
            self.in_flight = Some(least.start(index));
        }
        let node = &up.nodes[index];
        let mut parts = http::uri::Parts::default();
        parts.scheme = Some(up.scheme.clone());
        parts.authority = Some(up.authorities[index].clone());
        parts.path_and_query =
            Some(req.head.uri.path_and_query().cloned().unwrap_or_else(|| PathAndQuery::from_static("/")));
        let Ok(url) = Uri::from_parts(parts) else {
            return Next::Exhausted(GiveUp::LastAsIs);
        };
        let mut headers = forwardable(&req.head.headers, &[]);
        let host = match &up.pass_host {
            PassHost::Pass => {
                req.head.headers.get(HOST).cloned().or_else(|| HeaderValue::from_str(&node.authority).ok())
            }
            PassHost::Node => HeaderValue::from_str(&node.authority).ok(),
            PassHost::Rewrite(host) => Some(host.clone()),
        };
        if let Some(host) = host {
            headers.insert(HOST, host);
        }
        if let Ok(client_ip) = HeaderValue::from_str(&ctx.client_addr.ip().to_string()) {
            headers.append(HeaderName::from_static("x-forwarded-for"), client_ip.clone());
            headers.insert(HeaderName::from_static("x-real-ip"), client_ip);
        }
        Next::Attempt(UpstreamRequest {
            method: req.head.method.clone(),
            url,
            headers,
            body: req.body.clone(),
            client: up.client.clone(),
            timeout: up.read_timeout,
            max_duration: None,
            max_response_bytes: None,
            flush_interval: None,
            label: Arc::clone(&up.labels[index]),
            timing: AttemptTiming::default(),
            credentials: None,
        })
    }

    fn judge(&mut self, _ctx: &mut Ctx, result: &AttemptResult<'_>) -> Verdict {
        self.in_flight = None;
        if let (Some(health), Some(index)) = (&self.upstream.health, self.current) {
            health.record(index, result);
        }
        match result {
            AttemptResult::ConnectFailed => Verdict::Retry,
            AttemptResult::Response { .. }
            | AttemptResult::TimedOut
            | AttemptResult::FirstEventTimedOut
            | AttemptResult::Failed
            | AttemptResult::Skipped => Verdict::Accept,
        }
    }
}
