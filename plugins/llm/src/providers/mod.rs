//! LLM providers: each a small descriptor (default host, path, wire family, quirks) over one wire
//! module per protocol family. Adding an OpenAI-compatible vendor is one table row.

pub mod anthropic;
pub mod bedrock;
pub mod openai;
pub mod vertex;

use std::collections::BTreeMap;
use std::sync::Arc;

use http::header::{HeaderName, HeaderValue};
use http::HeaderMap;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use crate::protocol::Protocol;
use switchyard_sdk::{ConfigError, Credentials};

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
    /// AWS Bedrock's Converse API, signed with SigV4 ([`bedrock`]).
    Bedrock,
    /// Google Vertex AI: chat through its OpenAI-compatible endpoint, embeddings through a
    /// model's `:predict` ([`vertex`]).
    Vertex,
}

impl WireFamily {
    /// The protocols spoken natively; the first is the one health probes and logs name.
    pub fn speaks(self) -> &'static [Protocol] {
        match self {
            WireFamily::OpenAi => &[Protocol::OpenAiChat, Protocol::OpenAiResponses, Protocol::OpenAiEmbeddings],
            WireFamily::OpenAiCompatible => &[Protocol::OpenAiChat, Protocol::OpenAiEmbeddings],
            WireFamily::Anthropic => &[Protocol::OpenAiChat, Protocol::AnthropicMessages],
            WireFamily::AnthropicMessages => &[Protocol::AnthropicMessages],
            WireFamily::Bedrock => &[Protocol::BedrockConverse],
            WireFamily::Vertex => &[Protocol::OpenAiChat, Protocol::VertexPredict],
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
        Protocol::BedrockConverse | Protocol::VertexPredict | Protocol::Passthrough => None,
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
    // The host is the region's (`bedrock::default_base`); the model goes in the path, and
    // `bedrock::Bedrock::call` takes it out of the body.
    Provider {
        name: "bedrock",
        default_base: None,
        prefix: "",
        family: WireFamily::Bedrock,
        drops_model: false,
        max_completion_tokens: false,
    },
    vertex::PROVIDER,
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

/// Looks a provider up by its config name; the error is for the `provider` field.
pub fn lookup(name: &str) -> Result<&'static Provider, ConfigError> {
    if let Some(provider) = PROVIDERS.iter().find(|p| p.name == name) {
        return Ok(provider);
    }
    let known: Vec<&str> = PROVIDERS.iter().map(|p| p.name).collect();
    Err(ConfigError::new("provider", format!("unknown provider: use one of {}", known.join(", "))))
}

/// Everything but RFC 3986's unreserved characters is escaped in a query name or value.
const QUERY_COMPONENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// Node-level replacements of providers' default hosts (`providers.<name>.base_url`).
pub type BaseUrls = BTreeMap<String, String>;

/// Where and how to call one provider: a URL per protocol it speaks (auth query included, so
/// never logged), parsed when the config compiles, and the auth headers.
#[derive(Clone)]
pub struct Endpoint {
    pub provider: &'static Provider,
    /// The URL of the provider's first protocol (health probes take their host from it).
    pub uri: http::Uri,
    uris: Vec<(Protocol, http::Uri)>,
    passthrough: PassthroughTarget,
    pub auth_headers: HeaderMap,
    /// Bedrock's per-call URLs and SigV4 signer (provider `bedrock` only).
    pub bedrock: Option<Arc<bedrock::Bedrock>>,
    /// Credentials made just before each request is sent (Vertex AI's access token).
    pub credentials: Option<Arc<dyn Credentials>>,
    /// Vertex AI's `:predict` URL, which names the model.
    predict: Option<vertex::PredictUrl>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // URLs may carry `auth.query` secrets: the provider and protocols only.
        let protocols: Vec<&str> = self.uris.iter().map(|(p, _)| p.name()).collect();
        f.debug_struct("Endpoint").field("provider", &self.provider.name).field("protocols", &protocols).finish()
    }
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

/// The `auth` object: headers and query parameters added to every upstream request, and the
/// service account Vertex AI's access tokens are minted from.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    #[serde(default)]
    pub header: BTreeMap<String, String>,
    #[serde(default)]
    pub query: BTreeMap<String, String>,
    /// AWS credentials (provider `bedrock`).
    #[serde(default)]
    pub aws: Option<bedrock::AwsAuth>,
    pub gcp: Option<vertex::GcpAuthConfig>,
}

impl AuthConfig {
    /// Where its credentials sit, relative to the `auth` object (see
    /// `PluginFactory::secret_fields`); a credential field added here is masked by every plugin
    /// that has an `auth`.
    pub const SECRET_FIELDS: &[&str] =
        &["header.*", "query.*", "aws.secret_access_key", "aws.session_token", "gcp.service_account_json"];

    /// [`Self::SECRET_FIELDS`] under the `auth` object found at `at` (`instances[].auth`).
    pub fn secret_fields_at(at: &str) -> Vec<String> {
        Self::SECRET_FIELDS.iter().map(|field| format!("{at}.{field}")).collect()
    }

    /// `auth.header` as sensitive header values; errors name the header's field.
    pub fn compiled_headers(&self) -> Result<HeaderMap, ConfigError> {
        let mut auth_headers = HeaderMap::new();
        for (name, value) in &self.header {
            let here = format!("auth.header.{name}");
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| ConfigError::new(here.clone(), "is not a valid header name"))?;
            let mut value =
                HeaderValue::from_str(value).map_err(|_| ConfigError::new(here, "is not a valid header value"))?;
            value.set_sensitive(true);
            auth_headers.insert(name, value);
        }
        Ok(auth_headers)
    }
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
        let (url, from_endpoint) = match endpoint {
            Some(endpoint) => {
                let url = url::Url::parse(endpoint)
                    .ok()
                    .filter(|u| matches!(u.scheme(), "http" | "https") && u.has_host())
                    .ok_or_else(|| ConfigError::new("override.endpoint", "must be an http(s) URL"))?;
                (url, true)
            }
            None => {
                let base =
                    base_urls.get(provider.name).map(String::as_str).or(provider.default_base).ok_or_else(|| {
                        ConfigError::new("override.endpoint", format!("is required for provider `{}`", provider.name))
                    })?;
                let url = url::Url::parse(base)
                    .ok()
                    .filter(|u| matches!(u.scheme(), "http" | "https") && u.has_host())
                    .ok_or_else(|| {
                        ConfigError::new("override.endpoint", "the provider's base URL is not an http(s) URL")
                    })?;
                (url, false)
            }
        };
        let auth_query: Vec<(String, String)> = auth.query.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        Self::build(provider, &url, from_endpoint, auth_query, auth.compiled_headers()?)
    }

    /// An endpoint at a full URL the caller made (the model API's adapters), with credential
    /// headers compiled already. The path names the provider's other protocols as an
    /// `override.endpoint` path does. `Err` when the URL is no http(s) URL.
    pub fn at(provider: &'static Provider, url: &str, auth_headers: HeaderMap) -> Result<Endpoint, ConfigError> {
        let url = url::Url::parse(url)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.has_host())
            .ok_or_else(|| ConfigError::new("override.endpoint", "must be an http(s) URL"))?;
        Self::build(provider, &url, true, Vec::new(), auth_headers)
    }

    /// The URL of each protocol the provider speaks, from a base or endpoint `url` (the rules of
    /// [`Endpoint::compile`]), and the passthrough target. Runs at config build.
    fn build(
        provider: &'static Provider,
        url: &url::Url,
        from_endpoint: bool,
        auth_query: Vec<(String, String)>,
        auth_headers: HeaderMap,
    ) -> Result<Endpoint, ConfigError> {
        // `scheme://host:port`, IPv6 literals kept in brackets.
        let origin = url[..url::Position::BeforePath].to_string();
        let speaks = provider.family.speaks();
        let fixed_path = (from_endpoint && url.path() != "/").then(|| url.path().to_string());
        let stem = match &fixed_path {
            // A base URL's own path (a mirror under a prefix) comes before the provider's.
            None => Some(format!("{}{}", url.path().trim_end_matches('/'), provider.prefix)),
            Some(path) => speaks
                .iter()
                .filter_map(|p| path_suffix(*p))
                .find_map(|suffix| path.strip_suffix(suffix))
                .map(str::to_string),
        };
        let endpoint_query = url.query().filter(|q| !q.is_empty());
        let mut uris = Vec::with_capacity(speaks.len());
        for protocol in speaks {
            let path = match (&stem, path_suffix(*protocol)) {
                (Some(stem), Some(suffix)) => format!("{stem}{suffix}"),
                _ => fixed_path.clone().unwrap_or_default(),
            };
            // The endpoint's own query is kept as written; `auth.query` follows it.
            let mut full = format!("{origin}{path}");
            if let Some(query) = endpoint_query {
                full.push('?');
                full.push_str(query);
            }
            let uri: http::Uri = append_query(full, &auth_query)
                .parse()
                .map_err(|_| ConfigError::new("override.endpoint", "is not a valid URL"))?;
            uris.push((*protocol, uri));
        }
        let uri = uris.first().map(|(_, uri)| uri.clone()).unwrap_or_default();
        let base = if from_endpoint { origin } else { format!("{origin}{}", url.path().trim_end_matches('/')) };
        let endpoint_query = url.query_pairs().map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
        let passthrough = PassthroughTarget { base, fixed_path, endpoint_query, auth_query };
        Ok(Endpoint { provider, uri, uris, passthrough, auth_headers, bedrock: None, credentials: None, predict: None })
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
        let client_query: Vec<(String, String)> = url::form_urlencoded::parse(client.query().unwrap_or("").as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        let taken = |key: &String, pairs: &[(String, String)]| pairs.iter().any(|(k, _)| k == key);
        let mut query: Vec<(String, String)> =
            target.endpoint_query.iter().filter(|(k, _)| !taken(k, &client_query)).cloned().collect();
        query.extend(client_query.iter().filter(|(k, _)| !taken(k, &target.auth_query)).cloned());
        query.extend(target.auth_query.iter().cloned());
        append_query(format!("{}{path}", target.base), &query).parse().ok()
    }
}

/// `url` with `pairs` appended to its query, RFC 3986 encoded (space as %20, as APISIX's
/// `ngx.encode_args`: some providers read `+` literally).
fn append_query(mut url: String, pairs: &[(String, String)]) -> String {
    let mut separator = if url.contains('?') { '&' } else { '?' };
    for (name, value) in pairs {
        url.push(separator);
        url.extend(utf8_percent_encode(name, QUERY_COMPONENT));
        url.push('=');
        url.extend(utf8_percent_encode(value, QUERY_COMPONENT));
        separator = '&';
    }
    url
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
        assert_eq!(url("openai", Some("http://[::1]:8080"), &[]).unwrap(), "http://[::1]:8080/v1/chat/completions");
    }

    #[test]
    fn unknown_providers_are_refused_naming_the_known_ones() {
        let message = lookup("nope").unwrap_err().message;
        assert!(message.contains("unknown provider") && message.contains("bedrock") && message.contains("vertex-ai"));
    }

    #[test]
    fn auth_query_is_encoded_into_the_url() {
        let auth = AuthConfig { query: [("api-key".to_string(), "a b&c".to_string())].into(), ..AuthConfig::default() };
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
        let auth = AuthConfig { query: [("akey".to_string(), "secret".to_string())].into(), ..AuthConfig::default() };
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
