//! Route matching: `matchit` finds the most specific path; host, method, `vars`, priority and
//! recency pick among the routes on it.
//!
//! A path ending in `*` is a prefix match; others are exact. Among routes whose host, method and
//! `vars` accept the request, the most specific path wins (exact over prefix, longer prefix over
//! shorter), then higher `priority`, then the route written most recently (highest store
//! revision).

use std::cmp::Reverse;
use std::collections::HashMap;
use std::sync::Arc;

use crate::compiled::CompiledRoute;
use crate::vars::{NeedsBody, RequestVars};

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

    /// The route serving a request, if any. `Err(NeedsBody)` when a route that matches on path,
    /// host and method has a `post_arg` condition and `req` carries no body yet: the caller reads
    /// the body and asks again. Routes without `vars` are decided without evaluating anything.
    pub fn find(&self, req: &RequestVars<'_>) -> Result<Option<&Arc<CompiledRoute>>, NeedsBody> {
        let path = req.head.uri.path();
        let accepts = |c: &Candidate| -> Result<bool, NeedsBody> {
            if !c.1.accepts(req.host, &req.head.method) {
                return Ok(false);
            }
            c.1.vars.as_ref().map_or(Ok(true), |vars| vars.matches(req))
        };
        let mut from_tree = None;
        if let Some(bucket) = self.tree.at(path).ok().and_then(|m| self.buckets.get(*m.value)) {
            from_tree = first(bucket.iter(), accepts)?;
        }
        let loose =
            first(self.loose_prefixes.iter().filter(|(p, _)| path.starts_with(p.as_str())).map(|(_, c)| c), accepts)?;
        let best = match (from_tree, loose) {
            (Some(t), Some(l)) if l.0 > t.0 => Some(l),
            (Some(t), _) => Some(t),
            (None, Some(l)) => Some(l),
            (None, None) => {
                first(self.prefixes.iter().filter(|(p, _)| path.starts_with(p.as_str())).map(|(_, c)| c), accepts)?
            }
        };
        Ok(best.map(|c| &c.1))
    }
}

/// The first candidate `accepts` takes, in order.
fn first<'c>(
    candidates: impl Iterator<Item = &'c Candidate>,
    accepts: impl Fn(&Candidate) -> Result<bool, NeedsBody>,
) -> Result<Option<&'c Candidate>, NeedsBody> {
    for candidate in candidates {
        if accepts(candidate)? {
            return Ok(Some(candidate));
        }
    }
    Ok(None)
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
    use http::Method;

    fn route(id: &str, paths: &[&str], priority: i64, revision: u64) -> Arc<CompiledRoute> {
        let mut r = CompiledRoute::bare(id);
        r.paths = paths.iter().map(|p| p.to_string()).collect();
        r.priority = priority;
        r.revision = revision;
        Arc::new(r)
    }

    fn find_as(router: &Router, host: Option<&str>, path: &str, method: Method) -> Option<String> {
        let (mut head, ()) = http::Request::new(()).into_parts();
        head.uri = path.parse().unwrap();
        head.method = method;
        let parsed = std::cell::OnceCell::new();
        let req = RequestVars::new(&head, host, "127.0.0.1:1".parse().unwrap(), None, &parsed);
        router.find(&req).unwrap().map(|r| r.id.to_string())
    }

    fn find(router: &Router, path: &str) -> Option<String> {
        find_as(router, None, path, Method::GET)
    }

    #[test]
    fn exact_beats_prefix_and_longer_prefix_beats_shorter() {
        let router = Router::build(&[
            route("all", &["/*"], 0, 1),
            route("v1", &["/v1/*"], 0, 2),
            route("chat", &["/v1/chat"], 0, 3),
            route("api", &["/api*"], 0, 4),
        ]);
        assert_eq!(find(&router, "/v1/chat").as_deref(), Some("chat"));
        assert_eq!(find(&router, "/v1/models").as_deref(), Some("v1"));
        assert_eq!(find(&router, "/v1/").as_deref(), Some("v1"));
        assert_eq!(find(&router, "/other").as_deref(), Some("all"));
        assert_eq!(find(&router, "/apikeys").as_deref(), Some("api"));
        assert_eq!(find(&router, "/").as_deref(), Some("all"));
    }

    #[test]
    fn priority_then_recency_break_ties() {
        let router = Router::build(&[route("old", &["/x"], 0, 1), route("new", &["/x"], 0, 2)]);
        assert_eq!(find(&router, "/x").as_deref(), Some("new"));
        let router = Router::build(&[route("high", &["/x"], 5, 1), route("new", &["/x"], 0, 2)]);
        assert_eq!(find(&router, "/x").as_deref(), Some("high"));
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
        assert_eq!(find_as(&router, None, "/v1/chat", Method::POST).as_deref(), Some("post"));
        assert_eq!(find_as(&router, None, "/v1/chat", Method::GET).as_deref(), Some("any"));
        assert_eq!(find_as(&router, Some("a.example.com"), "/v1/chat", Method::GET).as_deref(), Some("hosted"));
        assert_eq!(find_as(&router, Some("example.com"), "/v1/x", Method::GET).as_deref(), Some("any"));
    }

    #[test]
    fn routes_whose_vars_fail_are_skipped_for_the_next_in_order() {
        let with_vars = |id: &str, priority: i64, vars: serde_json::Value| {
            let mut r = CompiledRoute::bare(id);
            r.paths = vec!["/chat".into()];
            r.priority = priority;
            r.vars = Some(Arc::new(crate::vars::Vars::compile(&vars, "vars").unwrap()));
            Arc::new(r)
        };
        let router = Router::build(&[
            with_vars("alice", 10, serde_json::json!([["arg_user", "==", "alice"]])),
            with_vars("bob", 5, serde_json::json!([["arg_user", "==", "bob"]])),
            route("rest", &["/*"], 0, 1),
        ]);
        assert_eq!(find(&router, "/chat?user=bob").as_deref(), Some("bob"));
        assert_eq!(find(&router, "/chat?user=alice").as_deref(), Some("alice"));
        assert_eq!(find(&router, "/chat?user=carol").as_deref(), Some("rest"));
    }

    #[test]
    fn braces_in_paths_are_literal() {
        let router = Router::build(&[route("b", &["/a/{id}"], 0, 1)]);
        assert_eq!(find(&router, "/a/{id}").as_deref(), Some("b"));
        assert_eq!(find(&router, "/a/7").as_deref(), None);
    }
}
