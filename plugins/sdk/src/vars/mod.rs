//! The nginx-style request variables APISIX configs name: one reader for every place that reads
//! them (a route's `vars`, `chash` keys of upstreams and `ai-proxy-multi`, `ai-rate-limiting`
//! rule keys). A name is resolved once, when the config compiles ([`Variable::parse`]); reading it
//! from a request ([`Variable::read`]) allocates nothing.

pub mod json_path;
mod variable;

use std::borrow::Cow;
use std::cell::OnceCell;
use std::net::SocketAddr;

use http::header::HOST;

pub use variable::{NeedsBody, RequestVars, Value, Variable};

/// Runs `read` over the variables of a plugin's request from `client`: for a plugin or the core
/// after routing (the router builds its own [`RequestVars`]). The host is found in the head, and
/// the body parsed only if a `post_arg` variable reads it.
pub fn with_request<R>(req: &crate::Request, client: SocketAddr, read: impl FnOnce(&RequestVars<'_>) -> R) -> R {
    let host = request_host(&req.head);
    let parsed = OnceCell::new();
    read(&RequestVars::new(&req.head, host.as_deref(), client, Some(&req.body), &parsed))
}

/// The request's host as the `host` variable has it: the `Host` header, else the URI's authority
/// (HTTP/2), lower case and without a port. Borrowed unless it had to be lower-cased.
pub fn request_host(head: &http::request::Parts) -> Option<Cow<'_, str>> {
    let raw = head.headers.get(HOST).and_then(|h| h.to_str().ok()).or_else(|| head.uri.host())?;
    let host = match raw.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(v6),
        None => raw.split(':').next().unwrap_or(raw),
    };
    Some(if host.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(host.to_ascii_lowercase())
    } else {
        Cow::Borrowed(host)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(uri: &str, host: Option<&str>) -> http::request::Parts {
        let mut request = http::Request::builder().uri(uri);
        if let Some(host) = host {
            request = request.header(HOST, host);
        }
        request.body(()).unwrap().into_parts().0
    }

    #[test]
    fn the_host_drops_its_port_and_case() {
        assert_eq!(request_host(&head("/", Some("Api.Example.com:8080"))).as_deref(), Some("api.example.com"));
        assert!(matches!(request_host(&head("/", Some("api.example.com"))), Some(Cow::Borrowed(_))));
        assert_eq!(request_host(&head("/", Some("[2001:db8::1]:80"))).as_deref(), Some("2001:db8::1"));
        assert_eq!(request_host(&head("https://h2.example/x", None)).as_deref(), Some("h2.example"));
        assert_eq!(request_host(&head("/", None)), None);
    }
}
