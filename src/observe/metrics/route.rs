//! One route's series: found per request in lock-free caches (see [`super::series`]) that the
//! route fills on its first requests and keeps for as long as its compiled form lives, so reloads
//! that do not change the route do not refill them.

use std::sync::OnceLock;
use std::time::Duration;

use super::sharded::{Counter, Gauge, Histogram};
use switchyard_sdk::{AttemptResult, LogRecord};

use super::families::Families;
use super::series::{Found, Key, SeriesCache};
use crate::compiled::CompiledRoute;
use crate::compiled::HostPattern;

/// The `consumer` label: this build has no consumers yet, so it is empty, as APISIX leaves it
/// for anonymous requests.
const CONSUMER: &str = "";

/// Which of a route's paths and hosts a request matched: the `matched_uri` and `matched_host`
/// labels. Computed once per request, before the chain runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Matched {
    path: Option<u16>,
    host: Option<u16>,
}

impl Matched {
    /// The most specific of `route`'s paths that `path` matches (exact over prefix, longer
    /// prefix over shorter), and the first of its hosts that `host` matches.
    pub fn of(route: &CompiledRoute, host: Option<&str>, path: &str) -> Matched {
        let mut best: Option<(bool, usize, usize)> = None;
        for (i, pattern) in route.paths.iter().enumerate() {
            let (exact, len) = match pattern.strip_suffix('*') {
                Some(prefix) if path.starts_with(prefix) => (false, prefix.len()),
                None if pattern == path => (true, pattern.len()),
                _ => continue,
            };
            if best.is_none_or(|(e, l, _)| (exact, len) > (e, l)) {
                best = Some((exact, len, i));
            }
        }
        let host = host.and_then(|h| route.hosts.iter().position(|p| p.matches(h)));
        let index = |i: usize| u16::try_from(i).ok();
        Matched { path: best.and_then(|(_, _, i)| index(i)), host: host.and_then(index) }
    }

    /// The matched path pattern of `route` (the `matched_uri` label).
    pub fn uri(self, route: &CompiledRoute) -> Option<&str> {
        self.path.and_then(|i| route.paths.get(usize::from(i))).map(String::as_str)
    }

    fn number(self) -> u64 {
        let index = |i: Option<u16>| i.map_or(0, |i| u64::from(i) + 1);
        index(self.path) << 16 | index(self.host) << 40
    }
}

/// The `result` of an attempt (and `reason` of a fallback): a bounded vocabulary.
pub fn attempt_result(result: &AttemptResult<'_>) -> &'static str {
    match result {
        AttemptResult::Response { status, .. } => match status.as_u16() {
            429 => "429",
            200..=299 => "2xx",
            300..=399 => "3xx",
            400..=499 => "4xx",
            500..=599 => "5xx",
            _ => "1xx",
        },
        AttemptResult::ConnectFailed => "connect_error",
        AttemptResult::TimedOut | AttemptResult::FirstEventTimedOut => "timeout",
        AttemptResult::Failed => "error",
        AttemptResult::Skipped => "rate_limited",
    }
}

const RESULTS: [&str; 9] = ["2xx", "3xx", "4xx", "429", "5xx", "1xx", "connect_error", "timeout", "error"];

struct NodeSeries {
    request: Histogram,
    upstream: Histogram,
    apisix: Histogram,
    ingress: Counter,
    egress: Counter,
}

struct LlmSeries {
    total: Histogram,
    ttft: Histogram,
    prompt: Counter,
    completion: Counter,
    prompt_dist: Histogram,
    completion_dist: Histogram,
    active: Gauge,
}

struct ModelApiSeries {
    requests: Counter,
    prompt: Counter,
    completion: Counter,
}

struct AttemptSeries {
    attempts: Counter,
    fallbacks: Counter,
}

struct Tables {
    status: SeriesCache<Counter>,
    node: SeriesCache<NodeSeries>,
    llm: SeriesCache<LlmSeries>,
    attempts: SeriesCache<AttemptSeries>,
    model_api: SeriesCache<ModelApiSeries>,
}

/// A route's series caches, made on its first request (a route never requested costs a pointer).
#[derive(Default)]
pub struct RouteMetrics {
    tables: OnceLock<Box<Tables>>,
}

/// A copy of a route (a global rule's plugins put in front of its chain) starts with empty caches:
/// they only hold handles to series in the registry, which the copy finds again on first use.
impl Clone for RouteMetrics {
    fn clone(&self) -> Self {
        Self::default()
    }
}

/// What one finished request contributes.
pub struct Finished<'a> {
    pub route: &'a CompiledRoute,
    pub matched: Matched,
    pub log: &'a LogRecord,
    pub status: u16,
    pub request_bytes: u64,
    pub response_bytes: u64,
    pub total: Duration,
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e3
}

impl RouteMetrics {
    fn tables(&self) -> &Tables {
        self.tables.get_or_init(|| {
            Box::new(Tables {
                status: SeriesCache::new(16),
                node: SeriesCache::new(8),
                llm: SeriesCache::new(8),
                attempts: SeriesCache::new(16),
                model_api: SeriesCache::new(16),
            })
        })
    }

    /// Records one attempt's result, and a fallback when the target gave the attempt up.
    pub fn attempt(
        &self,
        families: &Families,
        route: &CompiledRoute,
        instance: &str,
        result: &'static str,
        retried: bool,
    ) {
        let number = RESULTS.iter().position(|r| *r == result).unwrap_or(0) as u64;
        let series = self.tables().attempts.get(Key { labels: &[instance], number }, || AttemptSeries {
            attempts: families.upstream_attempts.with_label_values(&[&*route.id, instance, result]),
            fallbacks: families.upstream_fallbacks.with_label_values(&[&*route.id, instance, result]),
        });
        series.attempts.inc();
        if retried {
            series.fallbacks.inc();
        }
    }

    /// An LLM answer starts to flow to the client: `apisix_llm_active_connections` goes up. The
    /// gauge is returned for the request to take down when it ends (however it ends).
    pub fn llm_started(&self, families: &Families, route: &CompiledRoute, log: &LogRecord) -> Option<Gauge> {
        log.provider?;
        let active = self.llm(families, route, log).active.clone();
        active.inc();
        Some(active)
    }

    /// Records a finished (or abandoned) request.
    pub fn finished(&self, families: &Families, done: &Finished<'_>) {
        let tables = self.tables();
        let route = done.route;
        let log = done.log;
        let node = log.instance.as_deref().unwrap_or("");
        let service = route.service_id().unwrap_or("");
        let key = Key { labels: &[node], number: u64::from(done.status) | done.matched.number() };
        let status = tables.status.get(key, || {
            let uri = done.matched.uri(route).unwrap_or("");
            let host = done.matched.host.and_then(|i| route.hosts.get(usize::from(i))).map(host_label);
            let code = done.status.to_string();
            let labels = [code.as_str(), &*route.id, uri, host.as_deref().unwrap_or(""), service, CONSUMER, node];
            families.http_status.with_label_values(&labels)
        });
        status.inc();

        let series = tables.node.get(Key { labels: &[node], number: 0 }, || {
            let labels =
                |kind: &str| [kind.to_string(), route.id.to_string(), service.into(), CONSUMER.into(), node.into()];
            NodeSeries {
                request: families.http_latency.with_label_values(&labels("request")),
                upstream: families.http_latency.with_label_values(&labels("upstream")),
                apisix: families.http_latency.with_label_values(&labels("apisix")),
                ingress: families.bandwidth.with_label_values(&labels("ingress")),
                egress: families.bandwidth.with_label_values(&labels("egress")),
            }
        });
        let own = done.total.saturating_sub(log.upstream_time);
        series.request.observe(ms(done.total));
        if log.attempts > 0 {
            series.upstream.observe(ms(log.upstream_time));
        }
        series.apisix.observe(ms(own));
        series.ingress.inc_by(done.request_bytes);
        series.egress.inc_by(done.response_bytes);
        families.gateway_overhead.observe(own.as_secs_f64());

        if let Some(caller) = log.caller.as_deref() {
            self.model_api(families, caller, log, done.status);
        }
        if log.provider.is_some() && log.attempts > 0 {
            let llm = self.llm(families, route, log);
            llm.total.observe(ms(done.total));
            if log.streamed == Some(true) {
                if let Some(ttft) = log.time_to_first_token {
                    llm.ttft.observe(ms(ttft));
                }
            }
            if let Some(usage) = log.usage {
                llm.prompt.inc_by(usage.prompt_tokens);
                llm.completion.inc_by(usage.completion_tokens);
                llm.prompt_dist.observe(usage.prompt_tokens as f64);
                llm.completion_dist.observe(usage.completion_tokens as f64);
            }
        }
    }

    /// A model API caller's request: counted per alias and API key id, with its tokens.
    fn model_api(&self, families: &Families, caller: &str, log: &LogRecord, status: u16) {
        let alias = log.model_labels.requested.as_deref().unwrap_or("");
        let key = Key { labels: &[alias, caller], number: u64::from(status) };
        let series = self.tables().model_api.get(key, || ModelApiSeries {
            requests: families.model_api_requests.with_label_values(&[alias, caller, &status.to_string()]),
            prompt: families.model_api_tokens.with_label_values(&[alias, caller, "prompt"]),
            completion: families.model_api_tokens.with_label_values(&[alias, caller, "completion"]),
        });
        series.requests.inc();
        if let Some(usage) = log.usage {
            series.prompt.inc_by(usage.prompt_tokens);
            series.completion.inc_by(usage.completion_tokens);
        }
    }

    fn llm(&self, families: &Families, route: &CompiledRoute, log: &LogRecord) -> Found<'_, LlmSeries> {
        let node = log.instance.as_deref().unwrap_or("");
        let requested = log.model_labels.requested.as_deref().unwrap_or("");
        let upstream = log.model_labels.upstream.as_deref().unwrap_or("");
        let streamed = log.streamed == Some(true);
        let key = Key { labels: &[node, requested, upstream], number: u64::from(streamed) };
        self.tables().llm.get(key, || {
            let request_type = if streamed { "ai_stream" } else { "ai_chat" };
            let service = route.service_id().unwrap_or("");
            let labels = [&*route.id, service, CONSUMER, node, request_type, requested, upstream];
            let typed = |kind: &str| {
                let mut all = vec![kind];
                all.extend(labels);
                families.llm_latency.with_label_values(&all)
            };
            LlmSeries {
                total: typed("total"),
                ttft: typed("ttft"),
                prompt: families.llm_prompt_tokens.with_label_values(&labels),
                completion: families.llm_completion_tokens.with_label_values(&labels),
                prompt_dist: families.llm_prompt_tokens_dist.with_label_values(&labels),
                completion_dist: families.llm_completion_tokens_dist.with_label_values(&labels),
                active: families.llm_active_connections.with_label_values(&labels),
            }
        })
    }
}

/// A host pattern as the route wrote it.
fn host_label(pattern: &HostPattern) -> String {
    match pattern {
        HostPattern::Exact(host) => host.clone(),
        HostPattern::Wildcard(suffix) => format!("*{suffix}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_most_specific_path_and_the_first_matching_host_are_labels() {
        let mut route = CompiledRoute::bare("r");
        route.paths = vec!["/v1/*".into(), "/v1/chat/*".into(), "/v1/chat/completions".into()];
        route.hosts = vec![HostPattern::parse("api.example.com"), HostPattern::parse("*.example.com")];
        let matched = Matched::of(&route, Some("eu.example.com"), "/v1/chat/completions");
        assert_eq!(matched, Matched { path: Some(2), host: Some(1) });
        assert_eq!(Matched::of(&route, None, "/v1/chat/x").path, Some(1));
        assert_eq!(Matched::of(&route, None, "/v1/models").path, Some(0));
        assert_eq!(Matched::of(&route, None, "/v2").number(), 0);
        assert_eq!(host_label(&route.hosts[1]), "*.example.com");
    }
}
