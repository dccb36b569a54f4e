//! What a consistent-hash balancer (`chash`) hashes: APISIX's `hash_on` and `key`, one reading
//! for upstream objects and `ai-proxy-multi`'s `balancer`.

use std::borrow::Cow;

use crate::vars::{RequestVars, Variable};
use crate::{ConfigError, Consumer};

/// Where a request's hash key comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashOn {
    /// A request variable: `hash_on: vars` (`key` names it: `host`, `uri`, `arg_user`, ...),
    /// `header` (`key` is a header name) or `cookie` (`key` is a cookie name).
    Var(Variable),
    /// `hash_on: consumer`: the name of the consumer an authentication plugin identified.
    Consumer,
}

impl HashOn {
    /// Reads `hash_on` (`vars` when absent) and `key`. A `vars` hash without a key hashes
    /// `remote_addr`. Errors name the field, relative to the object holding both (`key`,
    /// `hash_on`). Runs when the config compiles.
    pub fn parse(hash_on: Option<&str>, key: Option<&str>) -> Result<HashOn, ConfigError> {
        let key = key.filter(|k| !k.is_empty());
        let named = |prefix: &str, what: &str| {
            let key = key.ok_or_else(|| ConfigError::new("key", format!("is required when hash_on is `{what}`")))?;
            if !key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
                return Err(ConfigError::new("key", format!("must be a {what} name (letters, digits, `-`, `_`)")));
            }
            Variable::parse(&format!("{prefix}{key}")).map_err(|reason| ConfigError::new("key", reason))
        };
        Ok(match hash_on.unwrap_or("vars") {
            "vars" => HashOn::Var(match key {
                Some(key) => Variable::parse(key).map_err(|reason| ConfigError::new("key", reason))?,
                None => Variable::RemoteAddr,
            }),
            "header" => HashOn::Var(named("http_", "header")?),
            "cookie" => HashOn::Var(named("cookie_", "cookie")?),
            "consumer" => HashOn::Consumer,
            "vars_combinations" => {
                return Err(ConfigError::new("hash_on", "`vars_combinations` is not supported: use vars"))
            }
            _ => return Err(ConfigError::new("hash_on", "must be one of vars, header, cookie, consumer")),
        })
    }

    /// This request's hash key: the variable's value, or the consumer's name. When the request
    /// has none (the header is missing, no consumer was identified), the client's address, as
    /// APISIX falls back to `remote_addr`. Runs once per pick.
    pub fn key<'r>(&self, vars: &'r RequestVars<'r>, consumer: Option<&'r Consumer>) -> Cow<'r, str> {
        let found = match self {
            HashOn::Var(var) => var.read(vars).ok().and_then(|value| value.into_text()),
            HashOn::Consumer => consumer.map(|c| Cow::Borrowed(&*c.username)),
        };
        found.filter(|key| !key.is_empty()).unwrap_or_else(|| {
            let remote = Variable::RemoteAddr.read(vars).ok().and_then(|value| value.into_text());
            remote.unwrap_or_default()
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::Chain;

    fn key_of(hash_on: &HashOn, uri: &str, headers: &[(&str, &str)], consumer: Option<&Consumer>) -> String {
        let mut request = http::Request::builder().uri(uri);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let (head, ()) = request.body(()).unwrap().into_parts();
        let req = crate::Request { head, body: bytes::Bytes::new() };
        crate::vars::with_request(&req, "10.1.2.3:4000".parse().unwrap(), |vars| {
            hash_on.key(vars, consumer).into_owned()
        })
    }

    #[test]
    fn every_source_reads_the_request_and_falls_back_to_the_client_address() {
        let parse = |on: Option<&str>, key: Option<&str>| HashOn::parse(on, key).unwrap();
        let host = parse(None, Some("host"));
        assert_eq!(key_of(&host, "/", &[("host", "API.example.com:9080")], None), "api.example.com");
        assert_eq!(key_of(&parse(Some("vars"), Some("request_uri")), "/a?b=1", &[], None), "/a?b=1");
        assert_eq!(key_of(&parse(Some("vars"), Some("arg_user")), "/a?user=u7", &[], None), "u7");
        assert_eq!(key_of(&parse(Some("vars"), Some("arg_user")), "/a", &[], None), "10.1.2.3");
        assert_eq!(key_of(&parse(Some("header"), Some("x-user")), "/", &[("x-user", "h1")], None), "h1");
        assert_eq!(key_of(&parse(Some("vars"), Some("http_x_user")), "/", &[("x-user", "h2")], None), "h2");
        assert_eq!(key_of(&parse(Some("cookie"), Some("sid")), "/", &[("cookie", "a=1; sid=s9")], None), "s9");
        assert_eq!(key_of(&parse(Some("vars"), None), "/", &[], None), "10.1.2.3");
        let jack = Consumer { username: Arc::from("jack"), chain: Chain::default() };
        assert_eq!(key_of(&parse(Some("consumer"), None), "/", &[], Some(&jack)), "jack");
        assert_eq!(key_of(&parse(Some("consumer"), None), "/", &[], None), "10.1.2.3");
    }

    #[test]
    fn bad_settings_name_their_field() {
        assert_eq!(HashOn::parse(Some("header"), None).unwrap_err().path, "key");
        assert_eq!(HashOn::parse(Some("cookie"), Some("a b")).unwrap_err().path, "key");
        assert_eq!(HashOn::parse(Some("vars"), Some("nope")).unwrap_err().path, "key");
        assert_eq!(HashOn::parse(Some("vars_combinations"), Some("$host")).unwrap_err().path, "hash_on");
        assert_eq!(HashOn::parse(Some("other"), Some("host")).unwrap_err().path, "hash_on");
    }
}
