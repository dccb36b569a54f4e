//! Every request has an id: the client's `X-Request-Id` when it is sane, else a new one. It goes
//! upstream as `X-Request-Id`, into the access log, and back to the client as
//! `x-switchyard-request-id` (always) and `x-request-id` (unless the upstream answered with its
//! own: a provider's id is what its support desk asks for).

use http::header::{HeaderName, HeaderValue};
use http::HeaderMap;

pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
pub const X_SWITCHYARD_REQUEST_ID: HeaderName = HeaderName::from_static("x-switchyard-request-id");

/// The longest client-chosen id kept.
const MAX_CLIENT_ID: usize = 128;

/// The id of a request with these headers. Runs once per request, before routing.
pub fn of(headers: &HeaderMap) -> HeaderValue {
    let sane = |v: &&HeaderValue| {
        let bytes = v.as_bytes();
        !bytes.is_empty() && bytes.len() <= MAX_CLIENT_ID && bytes.iter().all(|b| (0x21..=0x7e).contains(b))
    };
    match headers.get(X_REQUEST_ID).filter(sane) {
        Some(id) => id.clone(),
        None => fresh(),
    }
}

/// 128 random bits as 32 lower-case hex digits.
fn fresh() -> HeaderValue {
    let bits: u128 = rand::random();
    let mut hex = [0u8; 32];
    for (i, digit) in hex.iter_mut().enumerate() {
        let nibble = ((bits >> (124 - 4 * i)) & 0xf) as u8;
        *digit = if nibble < 10 { b'0' + nibble } else { b'a' + nibble - 10 };
    }
    // Hex digits are always a valid header value.
    HeaderValue::from_bytes(&hex).unwrap_or_else(|_| HeaderValue::from_static("0"))
}

/// Adds the id to a response's headers. `x-request-id` is left alone when the upstream set one.
pub fn stamp(headers: &mut HeaderMap, id: &HeaderValue) {
    headers.insert(X_SWITCHYARD_REQUEST_ID, id.clone());
    headers.entry(X_REQUEST_ID).or_insert_with(|| id.clone());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_a_sane_client_id_and_replaces_others() {
        let mut headers = HeaderMap::new();
        headers.insert(X_REQUEST_ID, HeaderValue::from_static("abc-123"));
        assert_eq!(of(&headers), "abc-123");
        for bad in ["", "has space", &"x".repeat(129)] {
            headers.insert(X_REQUEST_ID, HeaderValue::from_str(bad).unwrap());
            let id = of(&headers);
            assert_eq!(id.len(), 32, "{bad:?} is replaced by a fresh id");
            assert!(id.to_str().unwrap().bytes().all(|b| b.is_ascii_hexdigit()));
        }
        assert_ne!(of(&HeaderMap::new()), of(&HeaderMap::new()));
    }
}
