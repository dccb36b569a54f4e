//! Which client headers may travel upstream.

use http::header::{self, HeaderName};
use http::HeaderMap;

/// Hop-by-hop headers (RFC 9110 §7.6.1), the ones the HTTP client sets itself, and `Expect` (the
/// gateway has read the whole body already: the upstream must not be asked to wait for it).
const NEVER_FORWARDED: [HeaderName; 11] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    header::PROXY_AUTHENTICATE,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    HeaderName::from_static("proxy-connection"),
    header::HOST,
    header::CONTENT_LENGTH,
    header::EXPECT,
];

/// The client's credentials: never sent to an LLM provider, which gets the route's own key.
pub const CLIENT_CREDENTIALS: [HeaderName; 4] =
    [header::AUTHORIZATION, HeaderName::from_static("x-api-key"), header::COOKIE, header::PROXY_AUTHORIZATION];

/// Room past the client's fields in a forwarded request's map, for the fields added before it is
/// sent (the provider's credentials, the request id, `Host`): a map without room grows, which
/// rehashes every field.
const UPSTREAM_MAP_ROOM: usize = 8;

/// Copies `src` without hop-by-hop headers (including any named by `Connection`), `host`,
/// `content-length`, and the headers in `strip`.
pub fn forwardable(src: &HeaderMap, strip: &[HeaderName]) -> HeaderMap {
    let named_by_connection: Vec<String> = src
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|v| v.trim().to_ascii_lowercase())
        .collect();
    let mut out = HeaderMap::with_capacity(src.len() + UPSTREAM_MAP_ROOM);
    for (name, value) in src {
        if NEVER_FORWARDED.contains(name)
            || strip.contains(name)
            || named_by_connection.iter().any(|n| n == name.as_str())
        {
            continue;
        }
        out.append(name.clone(), value.clone());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn drops_hop_by_hop_and_stripped_headers() {
        let mut src = HeaderMap::new();
        src.insert(header::CONNECTION, HeaderValue::from_static("keep-alive, x-secret-hop"));
        src.insert("x-secret-hop", HeaderValue::from_static("1"));
        src.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer caller"));
        src.insert(header::HOST, HeaderValue::from_static("gw"));
        src.insert("x-request-id", HeaderValue::from_static("abc"));
        let out = forwardable(&src, &CLIENT_CREDENTIALS);
        assert_eq!(out.len(), 1);
        assert_eq!(out["x-request-id"], "abc");
    }
}
