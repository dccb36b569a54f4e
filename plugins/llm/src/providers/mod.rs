//! LLM providers: each a small descriptor (default host, path, wire family, quirks) over one wire
//! module per protocol family. Adding an OpenAI-compatible vendor is one table row.

pub mod anthropic;
pub mod openai;

use std::collections::BTreeMap;

use http::header::{HeaderName, HeaderValue};
use http::HeaderMap;

use crate::protocol::Protocol;
use switchyard_sdk::ConfigError;

/// Which protocols a provider speaks natively; the others reach it converted, when a
/// conversion exists (see [`crate::protocol::Plan`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireFamily {
    /// OpenAI itself: chat, Responses and embeddings.
    OpenAi,
    /// OpenAI-compatible vendors: chat and embeddings.
    OpenAiCompatible,
    /// Anthropic's API: chat (its OpenAI-compatible endpoint) and Messages.
    Anthropic,
    /// Anthropic Messages only: the model API's `anthropic` adapter.
    AnthropicMessages,
}

impl WireFamily {
    /// The protocols spoken natively; the first is the one health probes and logs name.
    pub fn speaks(self) -> &'static [Protocol] {
        match self {
            WireFamily::OpenAi => &[Protocol::OpenAiChat, Protocol::OpenAiResponses, Protocol::OpenAiEmbeddings],
            WireFamily::OpenAiCompatible => &[Protocol::OpenAiChat, Protocol::OpenAiEmbeddings],
            WireFamily::Anthropic => &[Protocol::OpenAiChat, Protocol::AnthropicMessages],
            WireFamily::AnthropicMessages => &[Protocol::AnthropicMessages],
        }
    }
}

/// The last part of each protocol's path; a provider puts its own prefix before it.
pub fn path_suffix(protocol: Protocol) -> Option<&'static str> {
    match protocol {
        Protocol::OpenAiChat => Some("/chat/completions"),
        Protocol::OpenAiResponses => Some("/responses"),
        Protocol::OpenAiEmbeddings => Some("/embeddings"),
        Protocol::AnthropicMessages => Some("/messages"),
        Protocol::BedrockConverse | Protocol::Passthrough => None,
    }
}

/// A built-in provider.
#[derive(Debug, PartialEq, Eq)]
pub struct Provider {
    pub name: &'static str,
    /// `scheme://host` used when neither `override.endpoint` nor the node's
    /// `providers.<name>.base_url` says otherwise; `None`: an endpoint is required.
    pub default_base: Option<&'static str>,
    /// The path before each protocol's suffix: `/v1` gives `/v1/chat/completions`.
    pub prefix: &'static str,
    pub family: WireFamily,
    /// The deployment in the URL names the model (Azure): `model` is dropped from the body.
    pub drops_model: bool,
    /// `override.llm_options.max_tokens` is sent to chat as `max_completion_tokens` (OpenAI's
    /// current name) instead of `max_tokens`.
    pub max_completion_tokens: bool,
}

const PROVIDERS: &[Provider] = &[
    Provider {
        name: "openai",
        default_base: Some("https://api.openai.com"),
        prefix: "/v1",
        family: WireFamily::OpenAi,
        drops_model: false,
        max_completion_tokens: true,
    },
    Provider {
        name: "deepseek",
        default_base: Some("https://api.deepseek.com"),
        prefix: "",
        family: WireFamily::OpenAiCompatible,
        drops_model: false,
        max_completion_tokens: false,
    },
    Provider {
        name: "openrouter",
        default_base: Some("https://openrouter.ai"),
        prefix: "/api/v1",
        family: WireFamily::OpenAiCompatible,
        drops_model: false,
        max_completion_tokens: false,
    },
    Provider {
        name: "gemini",
        default_base: Some("https://generativelanguage.googleapis.com"),
        prefix: "/v1beta/openai",
        family: WireFamily::OpenAiCompatible,
        drops_model: false,
        max_completion_tokens: true,
    },
    Provider {
        name: "aimlapi",
        default_base: Some("https://api.aimlapi.com"),
        prefix: "",
        family: WireFamily::OpenAiCompatible,
        drops_model: false,
        max_completion_tokens: false,
    },
    Provider {
        name: "anthropic",
        default_base: Some("https://api.anthropic.com"),
        prefix: "/v1",
        family: WireFamily::Anthropic,
        drops_model: false,
        max_completion_tokens: false,
    },
    Provider {
        name: "openai-compatible",
        default_base: None,
        prefix: "/v1",
        family: WireFamily::OpenAiCompatible,
        drops_model: false,
        max_completion_tokens: false,
    },
    Provider {
        name: "azure-openai",
        default_base: None,
        prefix: "",
        family: WireFamily::OpenAiCompatible,
        drops_model: true,
        max_completion_tokens: false,
    },
];

/// Anthropic's native Messages API alone, used by the model API's `anthropic` adapter (routes'
/// `anthropic` provider speaks Messages and Anthropic's OpenAI-compatible chat).
pub const ANTHROPIC_MESSAGES: Provider = Provider {
    name: "anthropic",
    default_base: None,
    prefix: "/v1",
    family: WireFamily::AnthropicMessages,
    drops_model: false,
    max_completion_tokens: false,
};

/// Providers APISIX knows that this build does not serve yet.
const NOT_YET: &[&str] = &["vertex-ai", "bedrock"];

/// Looks a provider up by its config name; the error is for the `provider` field.
pub fn lookup(name: &str) -> Result<&'static Provider, ConfigError> {
    if let Some(provider) = PROVIDERS.iter().find(|p| p.name == name) {
        return Ok(provider);
    }
    if NOT_YET.contains(&name) {
        return Err(ConfigError::new("provider", format!("provider `{name}` is not supported yet")));
    }
    let known: Vec<&str> = PROVIDERS.iter().map(|p| p.name).collect();
    Err(ConfigError::new("provider", format!("unknown provider `{name}`; one of: {}", known.join(", "))))
}

/// Node-level replacements of providers' default hosts (`providers.<name>.base_url`).
pub type BaseUrls = BTreeMap<String, String>;

/// Where and how to call one provider: a URL per protocol it speaks (auth query included, so
/// never logged), parsed when the config compiles, and the auth headers.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub provider: &'static Provider,
    /// The URL of the provider's first protocol (health probes take their host from it).
    pub uri: http::Uri,
    uris: Vec<(Protocol, http::Uri)>,
    passthrough: PassthroughTarget,
    pub auth_headers: HeaderMap,
}

/// Where a `passthrough` request goes: the provider's origin and the client's path, unless
/// `override.endpoint` named a path.
#[derive(Debug, Clone)]
struct PassthroughTarget {
    /// `scheme://authority`, and the base URL's path when it has one.
    base: String,
    fixed_path: Option<String>,
    endpoint_query: Vec<(String, String)>,
    auth_query: Vec<(String, String)>,
}

/// The `auth` object: headers and query parameters added to every upstream request.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    #[serde(default)]
    pub header: BTreeMap<String, String>,
    #[serde(default)]
    pub query: BTreeMap<String, String>,
}

impl Endpoint {
    /// Compiles provider, auth and `override.endpoint` into a ready endpoint. Runs at config build.
    ///
    /// Without an endpoint path each protocol gets the provider's prefix and its own suffix.
    /// An endpoint path ending in one of the provider's protocol paths (`.../chat/completions`)
    /// names where the others live too (`.../embeddings` beside it); any other endpoint path
    /// is used for every protocol, as APISIX does.
    pub fn compile(
        provider: &'static Provider,
        auth: &AuthConfig,
        endpoint: Option<&str>,
        base_urls: &BaseUrls,
    ) -> Result<Endpoint, ConfigError> {
        let (base, path, query) = match endpoint {
            Some(endpoint) => {
                let (base, rest) = split_url(endpoint).ok_or_else(|| {
                    ConfigError::new("override.endpoint", format!("`{endpoint}` is not an http(s) URL"))
                })?;
                let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
                (base.to_string(), path, query)
            }
            None => {
                let base =
                    base_urls.get(provider.name).map(String::as_str).or(provider.default_base).ok_or_else(|| {
                        ConfigError::new("override.endpoint", format!("is required for provider `{}`", provider.name))
                    })?;
                (base.trim_end_matches('/').to_string(), "", "")
            }
        };
        let speaks = provider.family.speaks();
        let fixed_path = (!path.is_empty() && path != "/").then(|| path.to_string());
        let stem = match &fixed_path {
            None => Some(provider.prefix.to_string()),
            Some(path) => speaks
                .iter()
                .filter_map(|p| path_suffix(*p))
                .find_map(|suffix| path.strip_suffix(suffix))
                .map(str::to_string),
        };
        let auth_query: Vec<(String, String)> = auth.query.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        let endpoint_query = parse_query(query);
        let mut uris = Vec::with_capacity(speaks.len());
        for protocol in speaks {
            let path = match (&stem, path_suffix(*protocol)) {
                (Some(stem), Some(suffix)) => format!("{stem}{suffix}"),
                _ => fixed_path.clone().unwrap_or_default(),
            };
            let url = with_query(format!("{base}{path}"), &endpoint_query, &auth_query);
            let uri: http::Uri =
                url.parse().map_err(|_| ConfigError::new("override.endpoint", "is not a valid URL"))?;
            uris.push((*protocol, uri));
        }
        let mut auth_headers = HeaderMap::new();
        for (name, value) in &auth.header {
            let here = format!("auth.header.{name}");
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| ConfigError::new(here.clone(), "is not a valid header name"))?;
            let mut value =
                HeaderValue::from_str(value).map_err(|_| ConfigError::new(here, "is not a valid header value"))?;
            value.set_sensitive(true);
            auth_headers.insert(name, value);
        }
        let uri = uris.first().map(|(_, uri)| uri.clone()).unwrap_or_default();
        let passthrough = PassthroughTarget { base, fixed_path, endpoint_query, auth_query };
        Ok(Endpoint { provider, uri, uris, passthrough, auth_headers })
    }

    /// The URL for a protocol the provider speaks.
    pub fn uri_for(&self, protocol: Protocol) -> Option<&http::Uri> {
        self.uris.iter().find(|(p, _)| *p == protocol).map(|(_, uri)| uri)
    }

    /// The URL of a `passthrough` request: the client's path (unless the endpoint fixed one)
    /// and query, where the client's keys replace the endpoint's but never `auth.query`'s.
    /// Built per request; `None` when the result is not a valid URL.
    pub fn passthrough_uri(&self, client: &http::Uri) -> Option<http::Uri> {
        let target = &self.passthrough;
        let path = target.fixed_path.as_deref().unwrap_or_else(|| client.path());
        let client_query = parse_query(client.query().unwrap_or(""));
        let mut query: Vec<(String, String)> =
            target.endpoint_query.iter().filter(|(k, _)| !client_query.iter().any(|(c, _)| c == k)).cloned().collect();
        query.extend(client_query.into_iter().filter(|(k, _)| !target.auth_query.iter().any(|(a, _)| a == k)));
        with_query(format!("{}{path}", target.base), &query, &target.auth_query).parse().ok()
    }
}

/// `url` with `pairs` then `auth` appended as its query (keys and values encoded).
fn with_query(mut url: String, pairs: &[(String, String)], auth: &[(String, String)]) -> String {
    let mut separator = '?';
    for (name, value) in pairs.iter().chain(auth) {
        url.push(separator);
        url.push_str(&percent_encode(name));
        if !value.is_empty() {
            url.push('=');
            url.push_str(&percent_encode(value));
        }
        separator = '&';
    }
    url
}

/// A query string as decoded pairs.
fn parse_query(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

/// Decodes `%XX` escapes and `+` (a space in query strings); invalid escapes stay as they are.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok().and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `scheme://authority` and the rest (path and query) of an http(s) URL.
fn split_url(url: &str) -> Option<(&str, &str)> {
    let rest = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://"))?;
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    if authority_end == 0 {
        return None;
    }
    let split = url.len() - rest.len() + authority_end;
    Some((&url[..split], &url[split..]))
}

/// Percent-encodes a query component (RFC 3986 unreserved characters pass).
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(provider: &str, endpoint: Option<&str>, bases: &[(&str, &str)]) -> Result<String, ConfigError> {
        let bases = bases.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Endpoint::compile(lookup(provider)?, &AuthConfig::default(), endpoint, &bases).map(|e| e.uri.to_string())
    }

    #[test]
    fn every_provider_has_its_default_url() {
        assert_eq!(url("openai", None, &[]).unwrap(), "https://api.openai.com/v1/chat/completions");
        assert_eq!(url("deepseek", None, &[]).unwrap(), "https://api.deepseek.com/chat/completions");
        assert_eq!(url("openrouter", None, &[]).unwrap(), "https://openrouter.ai/api/v1/chat/completions");
        assert_eq!(
            url("gemini", None, &[]).unwrap(),
            "https://generativelanguage.googleapis.com/v1beta/openai/chat/completions"
        );
        assert_eq!(url("aimlapi", None, &[]).unwrap(), "https://api.aimlapi.com/chat/completions");
        assert_eq!(url("anthropic", None, &[]).unwrap(), "https://api.anthropic.com/v1/chat/completions");
    }

    #[test]
    fn endpoint_and_node_base_urls_replace_the_default() {
        assert_eq!(
            url("deepseek", None, &[("deepseek", "http://127.0.0.1:9/")]).unwrap(),
            "http://127.0.0.1:9/chat/completions"
        );
        assert_eq!(url("openai", Some("http://h:1"), &[]).unwrap(), "http://h:1/v1/chat/completions");
        assert_eq!(url("openai-compatible", Some("http://h:1/custom/chat"), &[]).unwrap(), "http://h:1/custom/chat");
        assert_eq!(url("openai-compatible", None, &[]).unwrap_err().path, "override.endpoint");
        assert_eq!(url("azure-openai", None, &[]).unwrap_err().path, "override.endpoint");
        assert_eq!(url("openai", Some("ftp://x"), &[]).unwrap_err().path, "override.endpoint");
    }

    #[test]
    fn later_providers_are_refused_with_a_clear_message() {
        let err = lookup("vertex-ai").unwrap_err();
        assert!(err.message.contains("not supported yet"));
        assert!(lookup("nope").unwrap_err().message.contains("unknown provider"));
    }

    #[test]
    fn auth_query_is_encoded_into_the_url() {
        let auth = AuthConfig { header: BTreeMap::new(), query: [("api-key".to_string(), "a b&c".to_string())].into() };
        let endpoint =
            Endpoint::compile(lookup("openai").unwrap(), &auth, Some("http://h/x?v=1"), &BaseUrls::new()).unwrap();
        assert_eq!(endpoint.uri, "http://h/x?v=1&api-key=a%20b%26c");
    }

    fn urls(provider: &str, endpoint: Option<&str>) -> Vec<(&'static str, String)> {
        let endpoint =
            Endpoint::compile(lookup(provider).unwrap(), &AuthConfig::default(), endpoint, &BaseUrls::new()).unwrap();
        Protocol::ALL.iter().filter_map(|p| Some((p.name(), endpoint.uri_for(*p)?.to_string()))).collect()
    }

    #[test]
    fn each_protocol_a_provider_speaks_has_its_url() {
        assert_eq!(
            urls("openai", None),
            [
                ("openai-chat", "https://api.openai.com/v1/chat/completions".to_string()),
                ("openai-responses", "https://api.openai.com/v1/responses".to_string()),
                ("openai-embeddings", "https://api.openai.com/v1/embeddings".to_string()),
            ]
        );
        assert_eq!(
            urls("anthropic", None),
            [
                ("openai-chat", "https://api.anthropic.com/v1/chat/completions".to_string()),
                ("anthropic-messages", "https://api.anthropic.com/v1/messages".to_string()),
            ]
        );
        // An endpoint naming one of the provider's paths names the others beside it.
        let azure = "https://r.openai.azure.com/openai/deployments/d/chat/completions?api-version=2024-10-21";
        assert_eq!(
            urls("azure-openai", Some(azure)),
            [
                ("openai-chat", azure.to_string()),
                (
                    "openai-embeddings",
                    "https://r.openai.azure.com/openai/deployments/d/embeddings?api-version=2024-10-21".to_string()
                ),
            ]
        );
        // Any other endpoint path is used for every protocol (APISIX).
        assert_eq!(
            urls("deepseek", Some("http://h/random")),
            [("openai-chat", "http://h/random".to_string()), ("openai-embeddings", "http://h/random".to_string())]
        );
    }

    #[test]
    fn passthrough_keeps_the_clients_path_and_query_but_never_beats_auth_query() {
        let auth = AuthConfig { header: BTreeMap::new(), query: [("akey".to_string(), "secret".to_string())].into() };
        let endpoint = Endpoint::compile(
            lookup("openai").unwrap(),
            &auth,
            Some("http://h:1?name=fromendpoint&ekey=eval"),
            &BaseUrls::new(),
        )
        .unwrap();
        let client: http::Uri = "/v1/images/generations?name=fromclient&ckey=cval&akey=attacker".parse().unwrap();
        assert_eq!(
            endpoint.passthrough_uri(&client).unwrap(),
            "http://h:1/v1/images/generations?ekey=eval&name=fromclient&ckey=cval&akey=secret"
        );
        let fixed = Endpoint::compile(
            lookup("openai").unwrap(),
            &auth,
            Some("http://h:1/v1/chat/completions"),
            &BaseUrls::new(),
        )
        .unwrap();
        assert_eq!(fixed.passthrough_uri(&client).unwrap().path(), "/v1/chat/completions");
    }
}
