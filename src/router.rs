//! Route matching: `matchit` finds the most specific path; host, method, priority and recency
//! pick among the routes on it.
//!
//! A path ending in `*` is a prefix match; others are exact. Among matches the most specific path
//! wins (exact over prefix, longer prefix over shorter), then higher `priority`, then the route
//! written most recently (highest store revision).

use std::cmp::Reverse;
use std::collections::HashMap;
use std::sync::Arc;

use http::Method;

use crate::compiled::CompiledRoute;

/// How specific a path pattern is: exact beats prefix, then longer beats shorter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Specificity {
    exact: bool,
    len: usize,
}

type Candidate = (Specificity, Arc<CompiledRoute>);

#[derive(Default)]
pub struct Router {
    tree: matchit::Router<usize>,
    buckets: Vec<Vec<Candidate>>,
    /// Every prefix pattern, most specific first: the fallback when the tree's best path has no
    /// route for this host or method.
    prefixes: Vec<(String, Candidate)>,
    /// Prefixes not ending in `/` (`/api*`), which matchit cannot hold as catch-alls.
    loose_prefixes: Vec<(String, Candidate)>,
}

impl Router {
    /// Builds the router from enabled routes. Runs at reload, off the request path.
    pub fn build(routes: &[Arc<CompiledRoute>]) -> Router {
        let mut keyed: HashMap<String, Vec<Candidate>> = HashMap::new();
        let mut router = Router::default();
        for route in routes {
            for path in &route.paths {
                match path.strip_suffix('*') {
                    Some(prefix) => {
                        let candidate = (Specificity { exact: false, len: prefix.len() }, Arc::clone(route));
                        router.prefixes.push((prefix.to_string(), candidate.clone()));
                        if prefix.ends_with('/') {
                            keyed.entry(format!("{}{{*rest}}", escape(prefix))).or_default().push(candidate.clone());
                            keyed.entry(escape(prefix)).or_default().push(candidate);
                        } else {
                            router.loose_prefixes.push((prefix.to_string(), candidate));
                        }
                    }
                    None => {
                        let candidate = (Specificity { exact: true, len: path.len() }, Arc::clone(route));
                        keyed.entry(escape(path)).or_default().push(candidate);
                    }
                }
            }
        }
        let order = |c: &Candidate| (Reverse(c.0), Reverse(c.1.priority), Reverse(c.1.revision));
        for (pattern, mut bucket) in keyed {
            bucket.sort_by_key(order);
            match router.tree.insert(pattern.clone(), router.buckets.len()) {
                Ok(()) => router.buckets.push(bucket),
                Err(err) => {
                    tracing::warn!(%pattern, %err, "path not indexed; matched by scan");
                    for candidate in bucket {
                        let prefix = pattern.trim_end_matches("{*rest}").to_string();
                        router.loose_prefixes.push((prefix, candidate));
                    }
                }
            }
        }
        router.prefixes.sort_by_key(|(_, c)| order(c));
        router.loose_prefixes.sort_by_key(|(_, c)| order(c));
        router
    }

    /// The route serving a request, if any. `host` is lower-case without a port.
    pub fn find(&self, host: Option<&str>, path: &str, method: &Method) -> Option<&Arc<CompiledRoute>> {
        let accepts = |c: &&Candidate| c.1.accepts(host, method);
        let from_tree = self
            .tree
            .at(path)
            .ok()
            .and_then(|m| self.buckets.get(*m.value))
            .and_then(|bucket| bucket.iter().find(accepts));
        let loose =
            self.loose_prefixes.iter().map(|(p, c)| (p, c)).find(|(p, c)| path.starts_with(p.as_str()) && accepts(c));
        let best = match (from_tree, loose) {
            (Some(t), Some((_, l))) if l.0 > t.0 => Some(l),
            (Some(t), _) => Some(t),
            (None, Some((_, l))) => Some(l),
            (None, None) => {
                self.prefixes.iter().find(|(p, c)| path.starts_with(p.as_str()) && accepts(&c)).map(|(_, c)| c)
            }
        };
        best.map(|c| &c.1)
    }
}

/// Escapes matchit's parameter braces so literal paths stay literal.
fn escape(path: &str) -> String {
    path.replace('{', "{{").replace('}', "}}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compiled::CompiledRoute;
    use crate::compiled::HostPattern;

    fn route(id: &str, paths: &[&str], priority: i64, revision: u64) -> Arc<CompiledRoute> {
        let mut r = CompiledRoute::bare(id);
        r.paths = paths.iter().map(|p| p.to_string()).collect();
        r.priority = priority;
        r.revision = revision;
        Arc::new(r)
    }

    fn find<'r>(router: &'r Router, path: &str) -> Option<&'r str> {
        router.find(None, path, &Method::GET).map(|r| &*r.id)
    }

    #[test]
    fn exact_beats_prefix_and_longer_prefix_beats_shorter() {
        let router = Router::build(&[
            route("all", &["/*"], 0, 1),
            route("v1", &["/v1/*"], 0, 2),
            route("chat", &["/v1/chat"], 0, 3),
            route("api", &["/api*"], 0, 4),
        ]);
        assert_eq!(find(&router, "/v1/chat"), Some("chat"));
        assert_eq!(find(&router, "/v1/models"), Some("v1"));
        assert_eq!(find(&router, "/v1/"), Some("v1"));
        assert_eq!(find(&router, "/other"), Some("all"));
        assert_eq!(find(&router, "/apikeys"), Some("api"));
        assert_eq!(find(&router, "/"), Some("all"));
    }

    #[test]
    fn priority_then_recency_break_ties() {
        let router = Router::build(&[route("old", &["/x"], 0, 1), route("new", &["/x"], 0, 2)]);
        assert_eq!(find(&router, "/x"), Some("new"));
        let router = Router::build(&[route("high", &["/x"], 5, 1), route("new", &["/x"], 0, 2)]);
        assert_eq!(find(&router, "/x"), Some("high"));
    }

    #[test]
    fn host_and_method_filter_and_fall_back_to_less_specific() {
        let mut only_post = CompiledRoute::bare("post");
        only_post.paths = vec!["/v1/chat".into()];
        only_post.methods = Some(vec![Method::POST]);
        let mut hosted = CompiledRoute::bare("hosted");
        hosted.paths = vec!["/v1/*".into()];
        hosted.hosts = vec![HostPattern::parse("*.example.com")];
        let router = Router::build(&[Arc::new(only_post), Arc::new(hosted), route("any", &["/*"], 0, 1)]);
        assert_eq!(router.find(None, "/v1/chat", &Method::POST).map(|r| &*r.id), Some("post"));
        assert_eq!(router.find(None, "/v1/chat", &Method::GET).map(|r| &*r.id), Some("any"));
        assert_eq!(router.find(Some("a.example.com"), "/v1/chat", &Method::GET).map(|r| &*r.id), Some("hosted"));
        assert_eq!(router.find(Some("example.com"), "/v1/x", &Method::GET).map(|r| &*r.id), Some("any"));
    }

    #[test]
    fn braces_in_paths_are_literal() {
        let router = Router::build(&[route("b", &["/a/{id}"], 0, 1)]);
        assert_eq!(find(&router, "/a/{id}"), Some("b"));
        assert_eq!(find(&router, "/a/7"), None);
    }
}
