//! A compiled APISIX upstream: weighted nodes, a keep-alive pool, and the [`Target`] that sends a
//! route's requests to it when no AI plugin chose another destination.

use std::sync::Arc;
use std::time::Duration;

use http::header::{HeaderName, HeaderValue, HOST};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::Uri;
use switchyard_sdk::balancer::SmoothWeighted;
use switchyard_sdk::headers::forwardable;
use switchyard_sdk::{
    AttemptResult, AttemptTiming, BuildContext, ClientHandle, ClientSettings, Ctx, GiveUp, Next, Request, Target,
    UpstreamRequest, Verdict,
};

use crate::resource::upstream::{Node, UpstreamSpec};

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
    balancer: SmoothWeighted,
    scheme: Scheme,
    pass_host: PassHost,
    read_timeout: Duration,
    retries: usize,
    /// Keep-alive pools per node, shared with every upstream of the same connect timeout.
    client: ClientHandle,
}

impl Upstream {
    /// Compiles a checked spec. Runs at reload and on admin validation.
    pub fn from_spec(spec: &UpstreamSpec, ctx: &dyn BuildContext) -> Result<Self, switchyard_sdk::ConfigError> {
        let nodes = spec.nodes()?;
        let authorities = nodes
            .iter()
            .map(|n| {
                n.authority.parse::<Authority>().map_err(|_| {
                    switchyard_sdk::ConfigError::new(
                        format!("upstream.nodes.{}", n.authority),
                        "is not a valid host:port",
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let pass_host = match (spec.pass_host.as_deref(), &spec.upstream_host) {
            (Some("node"), _) => PassHost::Node,
            (Some("rewrite"), Some(host)) => PassHost::Rewrite(
                HeaderValue::from_str(host)
                    .map_err(|_| switchyard_sdk::ConfigError::new("upstream.upstream_host", "is not a valid host"))?,
            ),
            _ => PassHost::Pass,
        };
        let seconds = |s: f64| Duration::from_secs_f64(s);
        Ok(Self {
            labels: nodes.iter().map(|n| Arc::from(n.authority.as_str())).collect(),
            balancer: SmoothWeighted::new(nodes.iter().map(|n| n.weight)),
            retries: spec.retries.map_or(nodes.len().saturating_sub(1), |r| r as usize),
            nodes,
            authorities,
            scheme: if spec.scheme.as_deref() == Some("https") { Scheme::HTTPS } else { Scheme::HTTP },
            pass_host,
            read_timeout: spec.timeout.map_or(DEFAULT_READ_TIMEOUT, |t| seconds(t.read)),
            client: ctx
                .client(ClientSettings {
                    connect_timeout_ms: spec.timeout.map_or(DEFAULT_CONNECT_TIMEOUT, |t| seconds(t.connect)).as_millis()
                        as u64,
                    keepalive: true,
                    keepalive_timeout_ms: UPSTREAM_KEEPALIVE_TIMEOUT_MS,
                    keepalive_pool: UPSTREAM_KEEPALIVE_POOL,
                    ssl_verify: true,
                })
                .map_err(|err| switchyard_sdk::ConfigError::new("upstream", err))?,
        })
    }

    /// A fresh per-request target over this upstream's nodes.
    pub fn target(self: &Arc<Self>) -> Box<dyn Target> {
        Box::new(UpstreamTarget { upstream: Arc::clone(self), tried: Vec::new(), current: None })
    }
}

/// Tries the nodes in weighted order; a node that refuses the connection is excluded and the next
/// one tried, up to `retries` times. Any answer, even a 5xx, is relayed as it is.
struct UpstreamTarget {
    upstream: Arc<Upstream>,
    tried: Vec<usize>,
    current: Option<usize>,
}

impl Target for UpstreamTarget {
    fn next(&mut self, ctx: &mut Ctx, req: &Request, attempt: u32) -> Next {
        let up = &self.upstream;
        if attempt as usize > up.retries + 1 {
            return Next::Exhausted(GiveUp::LastAsIs);
        }
        let Some(index) = up.balancer.pick(|i| !self.tried.contains(&i)) else {
            return Next::Exhausted(GiveUp::LastAsIs);
        };
        self.tried.push(index);
        self.current = Some(index);
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
        })
    }

    fn judge(&mut self, _ctx: &mut Ctx, result: &AttemptResult<'_>) -> Verdict {
        match result {
            AttemptResult::ConnectFailed => Verdict::Retry,
            AttemptResult::Response { .. }
            | AttemptResult::TimedOut
            | AttemptResult::FirstEventTimedOut
            | AttemptResult::Failed => Verdict::Accept,
        }
    }
}
