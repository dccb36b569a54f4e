//! The nginx-style request variables plugins key on (`arg_<name>`, `http_<name>`): one reading,
//! shared by `chash` keys and rate-limiting rule keys.

use http::{HeaderMap, Uri};

/// The raw (not percent-decoded) value of query parameter `name`, first occurrence.
pub fn query_arg<'a>(uri: &'a Uri, name: &str) -> Option<&'a str> {
    uri.query()?.split('&').filter_map(|pair| pair.split_once('=')).find(|(key, _)| *key == name).map(|(_, v)| v)
}

/// The value of the header an `http_<name>` variable names: `name` with `_` read as `-`.
pub fn http_var<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name.replace('_', "-").as_str()).and_then(|v| v.to_str().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_query_args_and_http_vars() {
        let uri: Uri = "/p?a=1&b=two&a=3".parse().unwrap();
        assert_eq!(query_arg(&uri, "a"), Some("1"));
        assert_eq!(query_arg(&uri, "b"), Some("two"));
        assert_eq!(query_arg(&uri, "c"), None);
        let mut headers = HeaderMap::new();
        headers.insert("x-user-id", "u1".parse().unwrap());
        assert_eq!(http_var(&headers, "x_user_id"), Some("u1"));
        assert_eq!(http_var(&headers, "x_other"), None);
    }
}
