//! The variables, and reading them from one request without allocating: every name is resolved
//! when the config compiles.

use std::borrow::Cow;
use std::cell::OnceCell;
use std::fmt::Write;
use std::net::SocketAddr;

use crate::raw_body::RawBody;
use bytes::Bytes;
use http::header::{HeaderName, COOKIE};
use serde_json::value::RawValue;

use super::json_path::{self, Step};

/// One variable, its name already resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Variable {
    /// The request path, without the query string.
    Uri,
    /// `request_uri`: the path with the query string, as sent.
    RequestUri,
    /// `query_string` (or `args`): the query string, without the `?`.
    QueryString,
    /// The request's host, lower case and without a port.
    Host,
    /// The client's address, without the port.
    RemoteAddr,
    RemotePort,
    RequestMethod,
    /// `server_name`: the name of the server block that took the request, which is `_` for every
    /// request in APISIX (its one `server` block is `server_name _`); kept for the configs that
    /// name it.
    ServerName,
    /// `arg_<name>`: a query argument, as sent (not percent-decoded, as nginx's `$arg_`).
    Arg(String),
    /// `http_<name>`: a request header; `_` in the name stands for `-`.
    Http(HeaderName),
    /// `cookie_<name>`.
    Cookie(String),
    /// `post_arg.<path>`: a field of the JSON request body; dotted segments go into objects, a
    /// numeric segment also indexes an array (`post_arg.messages.0.role`).
    PostArg(Vec<Step>),
}

impl Variable {
    /// Resolves a variable name; `Err` says what names exist.
    pub fn parse(name: &str) -> Result<Variable, String> {
        let unknown = || {
            format!(
                "unknown variable `{name}`: use uri, request_uri, query_string, host, remote_addr, \
                 remote_port, request_method, server_name, arg_<name>, http_<name>, cookie_<name> or \
                 post_arg.<path>"
            )
        };
        Ok(match name {
            "uri" => Variable::Uri,
            "request_uri" => Variable::RequestUri,
            "query_string" | "args" => Variable::QueryString,
            "host" => Variable::Host,
            "remote_addr" => Variable::RemoteAddr,
            "remote_port" => Variable::RemotePort,
            "request_method" => Variable::RequestMethod,
            "server_name" => Variable::ServerName,
            _ => {
                if let Some(arg) = name.strip_prefix("arg_").filter(|a| !a.is_empty()) {
                    Variable::Arg(arg.to_string())
                } else if let Some(header) = name.strip_prefix("http_").filter(|h| !h.is_empty()) {
                    let header = header.to_ascii_lowercase().replace('_', "-");
                    Variable::Http(HeaderName::from_bytes(header.as_bytes()).map_err(|_| unknown())?)
                } else if let Some(cookie) = name.strip_prefix("cookie_").filter(|c| !c.is_empty()) {
                    Variable::Cookie(cookie.to_string())
                } else if let Some(path) = name.strip_prefix("post_arg.") {
                    Variable::PostArg(json_path::parse(path).ok_or_else(unknown)?)
                } else {
                    return Err(unknown());
                }
            }
        })
    }

    /// Whether reading this variable needs the request body.
    pub fn needs_body(&self) -> bool {
        matches!(self, Variable::PostArg(_))
    }

    /// This variable's value in `req`. `Err(NeedsBody)` when it is a body field and the body has
    /// not been read yet.
    pub fn read<'r>(&self, req: &'r RequestVars<'r>) -> Result<Value<'r>, NeedsBody> {
        Ok(match self {
            Variable::Uri => Value::Str(Cow::Borrowed(req.head.uri.path())),
            Variable::RequestUri => {
                Value::Str(Cow::Borrowed(req.head.uri.path_and_query().map_or("/", |p| p.as_str())))
            }
            Variable::QueryString => req.head.uri.query().map_or(Value::Absent, |q| Value::Str(Cow::Borrowed(q))),
            Variable::Host => req.host.map_or(Value::Absent, |h| Value::Str(Cow::Borrowed(h))),
            Variable::RemoteAddr => Value::Str(Cow::Borrowed(req.remote_addr())),
            Variable::RemotePort => Value::Str(Cow::Borrowed(req.remote_port())),
            Variable::RequestMethod => Value::Str(Cow::Borrowed(req.head.method.as_str())),
            Variable::ServerName => Value::Str(Cow::Borrowed("_")),
            Variable::Arg(name) => arg(req.head.uri.query(), name).map_or(Value::Absent, |v| Value::Str(v.into())),
            Variable::Http(name) => req
                .head
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map_or(Value::Absent, |v| Value::Str(Cow::Borrowed(v))),
            Variable::Cookie(name) => cookie(&req.head.headers, name).map_or(Value::Absent, |v| Value::Str(v.into())),
            Variable::PostArg(path) => {
                let body = req.body.ok_or(NeedsBody)?;
                let parsed = req.parsed.get_or_init(|| RawBody::parse(body.clone()).ok());
                parsed.as_ref().and_then(|b| json_path::find(b, path)).map_or(Value::Absent, Value::from_json)
            }
        })
    }
}

/// A condition needs the request body, which the caller has not read yet: read it, then ask again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NeedsBody;

/// What variables are read from: one request. The body is `None` until the caller has read it;
/// it is parsed at most once, into `parsed`, which the caller hands on to the AI plugins.
pub struct RequestVars<'r> {
    pub head: &'r http::request::Parts,
    pub host: Option<&'r str>,
    pub client: SocketAddr,
    pub body: Option<&'r Bytes>,
    pub parsed: &'r OnceCell<Option<RawBody>>,
    remote_addr: OnceCell<StackText>,
    remote_port: OnceCell<StackText>,
}

impl<'r> RequestVars<'r> {
    pub fn new(
        head: &'r http::request::Parts,
        host: Option<&'r str>,
        client: SocketAddr,
        body: Option<&'r Bytes>,
        parsed: &'r OnceCell<Option<RawBody>>,
    ) -> Self {
        Self { head, host, client, body, parsed, remote_addr: OnceCell::new(), remote_port: OnceCell::new() }
    }

    fn remote_addr(&self) -> &str {
        // An IP address always fits in 46 bytes.
        self.remote_addr.get_or_init(|| StackText::of(self.client.ip())).as_str()
    }

    fn remote_port(&self) -> &str {
        self.remote_port.get_or_init(|| StackText::of(self.client.port())).as_str()
    }
}

/// A value read from a request, typed as lua-resty-expr sees it: headers, arguments and cookies
/// are strings; body fields keep their JSON type.
#[derive(Debug, Clone)]
pub enum Value<'a> {
    Absent,
    Null,
    Str(Cow<'a, str>),
    Num(f64),
    Bool(bool),
    /// An array or object, kept raw.
    Json(&'a RawValue),
}

impl PartialEq for Value<'_> {
    /// Same type and value; raw JSON compares by its text.
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Value::Absent, Value::Absent) | (Value::Null, Value::Null) => true,
            (Value::Str(a), Value::Str(b)) => a == b,
            (Value::Num(a), Value::Num(b)) => a == b,
            (Value::Bool(a), Value::Bool(b)) => a == b,
            (Value::Json(a), Value::Json(b)) => a.get() == b.get(),
            _ => false,
        }
    }
}

impl<'a> Value<'a> {
    /// A JSON value as a variable value. Strings are borrowed unless they hold escapes.
    pub fn from_json(raw: &'a RawValue) -> Value<'a> {
        let text = raw.get().trim();
        match text.as_bytes().first() {
            Some(b'"') => match text.get(1..text.len() - 1).filter(|inner| !inner.contains('\\')) {
                Some(inner) => Value::Str(Cow::Borrowed(inner)),
                None => serde_json::from_str::<String>(text).map_or(Value::Absent, |s| Value::Str(Cow::Owned(s))),
            },
            Some(b't') => Value::Bool(true),
            Some(b'f') => Value::Bool(false),
            Some(b'n') => Value::Null,
            Some(b'[' | b'{') => Value::Json(raw),
            Some(_) => text.parse().map_or(Value::Absent, Value::Num),
            None => Value::Absent,
        }
    }

    /// The value as text, for keys (`chash`, rate-limit rules): strings as they are, numbers
    /// and booleans written out, arrays and objects as their JSON. `None`: absent or null.
    pub fn into_text(self) -> Option<Cow<'a, str>> {
        match self {
            Value::Absent | Value::Null => None,
            Value::Str(s) => Some(s),
            Value::Num(n) => Some(Cow::Owned(n.to_string())),
            Value::Bool(b) => Some(Cow::Borrowed(if b { "true" } else { "false" })),
            Value::Json(raw) => Some(Cow::Borrowed(raw.get())),
        }
    }

    /// Lua's `tonumber`: numbers, and strings that read as one.
    pub fn as_number(&self) -> Option<f64> {
        match self {
            Value::Num(n) => Some(*n),
            Value::Str(s) => s.trim().parse().ok(),
            _ => None,
        }
    }
}

/// The first `name=value` of a query string, as sent.
fn arg<'q>(query: Option<&'q str>, name: &str) -> Option<&'q str> {
    query?.split('&').find_map(|pair| match pair.split_once('=') {
        Some((key, value)) if key == name => Some(value),
        None if pair == name => Some(""),
        _ => None,
    })
}

/// A cookie's value from the `Cookie` headers.
fn cookie<'h>(headers: &'h http::HeaderMap, name: &str) -> Option<&'h str> {
    headers.get_all(COOKIE).iter().filter_map(|v| v.to_str().ok()).find_map(|line| {
        line.split(';').find_map(|pair| {
            let (key, value) = pair.trim().split_once('=')?;
            (key == name).then_some(value)
        })
    })
}

/// A short text on the stack: a formatted IP address without a heap allocation.
#[derive(Clone, Copy)]
struct StackText {
    bytes: [u8; 48],
    len: usize,
}

impl Default for StackText {
    fn default() -> Self {
        Self { bytes: [0; 48], len: 0 }
    }
}

impl StackText {
    /// `value` formatted; cut short if it does not fit (no address or port is that long).
    fn of(value: impl std::fmt::Display) -> StackText {
        let mut text = StackText::default();
        let _ = write!(text, "{value}");
        text
    }

    fn as_str(&self) -> &str {
        std::str::from_utf8(&self.bytes[..self.len]).unwrap_or_default()
    }
}

impl Write for StackText {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let end = self.len + s.len();
        let slot = self.bytes.get_mut(self.len..end).ok_or(std::fmt::Error)?;
        slot.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_resolve_or_are_refused() {
        assert_eq!(Variable::parse("http_X_Api_Key").unwrap(), Variable::Http(HeaderName::from_static("x-api-key")));
        assert_eq!(Variable::parse("arg_name").unwrap(), Variable::Arg("name".into()));
        assert!(Variable::parse("post_arg.model").unwrap().needs_body());
        assert!(Variable::parse("nope").unwrap_err().contains("unknown variable `nope`"));
        assert!(Variable::parse("arg_").is_err());
        assert!(Variable::parse("post_arg.").is_err());
        assert_eq!(Variable::parse("args").unwrap(), Variable::QueryString);
        assert!(Variable::parse("hostname").unwrap_err().contains("server_name"), "the message lists the names");
    }

    #[test]
    fn request_line_variables_read_as_nginx_has_them() {
        let (head, ()) = http::Request::builder().uri("/v1/chat?a=1&b=2").body(()).unwrap().into_parts();
        let parsed = OnceCell::new();
        let req = RequestVars::new(&head, Some("api.example.com"), "10.0.0.7:5123".parse().unwrap(), None, &parsed);
        let read = |name: &str| Variable::parse(name).unwrap().read(&req).unwrap();
        assert_eq!(read("uri"), Value::Str("/v1/chat".into()));
        assert_eq!(read("request_uri"), Value::Str("/v1/chat?a=1&b=2".into()));
        assert_eq!(read("query_string"), Value::Str("a=1&b=2".into()));
        assert_eq!(read("host"), Value::Str("api.example.com".into()));
        assert_eq!(read("remote_port"), Value::Str("5123".into()));
        assert_eq!(read("server_name"), Value::Str("_".into()));
        let (bare, ()) = http::Request::new(()).into_parts();
        let req = RequestVars::new(&bare, None, "10.0.0.7:5123".parse().unwrap(), None, &parsed);
        assert_eq!(Variable::QueryString.read(&req).unwrap(), Value::Absent);
        assert_eq!(Variable::Host.read(&req).unwrap(), Value::Absent);
    }

    #[test]
    fn query_args_and_cookies_are_found() {
        assert_eq!(arg(Some("a=1&b=2&flag"), "b"), Some("2"));
        assert_eq!(arg(Some("a=1&flag"), "flag"), Some(""));
        assert_eq!(arg(Some("ab=1"), "a"), None);
        let mut headers = http::HeaderMap::new();
        headers.insert(COOKIE, "x=1; session=abc".parse().unwrap());
        assert_eq!(cookie(&headers, "session"), Some("abc"));
        assert_eq!(cookie(&headers, "y"), None);
    }

    #[test]
    fn json_values_keep_their_type() {
        let raw = |s: &str| serde_json::from_str::<Box<RawValue>>(s).unwrap();
        assert_eq!(Value::from_json(&raw("\"gpt-4\"")), Value::Str("gpt-4".into()));
        assert_eq!(Value::from_json(&raw("\"a\\\"b\"")), Value::Str("a\"b".into()));
        assert_eq!(Value::from_json(&raw("12.5")), Value::Num(12.5));
        assert_eq!(Value::from_json(&raw("true")), Value::Bool(true));
        assert_eq!(Value::from_json(&raw("null")), Value::Null);
        assert!(matches!(Value::from_json(&raw("[1]")), Value::Json(_)));
    }

    #[test]
    fn remote_addr_is_formatted_on_the_stack() {
        let (head, _) = http::Request::new(()).into_parts();
        let parsed = OnceCell::new();
        let req = RequestVars::new(&head, None, "[2001:db8::1]:80".parse().unwrap(), None, &parsed);
        assert_eq!(req.remote_addr(), "2001:db8::1");
        assert_eq!(Variable::RemoteAddr.read(&req).unwrap(), Value::Str("2001:db8::1".into()));
        assert_eq!(Variable::parse("post_arg.model").unwrap().read(&req), Err(NeedsBody));
    }
}
