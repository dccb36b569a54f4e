//! A rule's `key`: what its counter is kept per. `$consumer_name`, a request variable
//! (`$remote_addr`, `$http_x_team`, `$arg_user`, `$uri`, ... as [`Variable`] reads them), or a
//! literal (one counter for every request).

use switchyard_sdk::vars::{with_request, Variable};
use switchyard_sdk::{Ctx, Request};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuleKey {
    Literal(String),
    ConsumerName,
    Var(Variable),
}

impl RuleKey {
    /// Resolves a rule's key when the config compiles; `Err` says which variables exist.
    pub fn parse(key: &str) -> Result<RuleKey, String> {
        Ok(match key.strip_prefix('$') {
            None => RuleKey::Literal(key.to_string()),
            Some("consumer_name") => RuleKey::ConsumerName,
            Some(name) => RuleKey::Var(Variable::parse(name).map_err(|reason| format!("{reason}, or consumer_name"))?),
        })
    }

    /// The key's value for this request; the client address when the request has none (no such
    /// header, no consumer). Runs once per rule in access.
    pub fn value(&self, ctx: &Ctx, req: &Request) -> String {
        let value = match self {
            RuleKey::Literal(text) => Some(text.clone()),
            RuleKey::ConsumerName => ctx.consumer.as_ref().map(|c| c.username.to_string()),
            RuleKey::Var(var) => with_request(req, ctx.client_addr, |vars| {
                var.read(vars).ok().and_then(|v| v.into_text()).map(|text| text.into_owned())
            }),
        };
        value.filter(|v| !v.is_empty()).unwrap_or_else(|| ctx.client_addr.ip().to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_resolve_when_the_config_compiles() {
        assert_eq!(RuleKey::parse("$remote_addr"), Ok(RuleKey::Var(Variable::RemoteAddr)));
        assert_eq!(RuleKey::parse("$consumer_name"), Ok(RuleKey::ConsumerName));
        assert_eq!(RuleKey::parse("team-a"), Ok(RuleKey::Literal("team-a".into())));
        assert!(RuleKey::parse("$nope").unwrap_err().contains("consumer_name"));
    }

    #[test]
    fn values_read_the_request() {
        let (head, ()) =
            http::Request::builder().uri("/chat?user=u1").header("x-team", "red").body(()).unwrap().into_parts();
        let req = Request { head, body: bytes::Bytes::new() };
        let ctx = Ctx::new("r".into(), "10.0.0.9:1".parse().unwrap(), http::HeaderValue::from_static("id"));
        let value = |key: &str| RuleKey::parse(key).unwrap().value(&ctx, &req);
        assert_eq!(value("$http_x_team"), "red");
        assert_eq!(value("$arg_user"), "u1");
        assert_eq!(value("$uri"), "/chat");
        assert_eq!(value("$http_x_missing"), "10.0.0.9");
        assert_eq!(value("$consumer_name"), "10.0.0.9");
        assert_eq!(value("fixed"), "fixed");
    }
}
