//! LLM providers: each a small descriptor (default host, path, wire family, quirks) over one wire
//! module per protocol family. Adding an OpenAI-compatible vendor is one table row.

pub mod anthropic;
pub mod openai;

use std::collections::BTreeMap;

use http::header::{HeaderName, HeaderValue};
use http::HeaderMap;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use switchyard_sdk::ConfigError;

/// The request/response format a provider speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireFamily {
    OpenAi,
    /// Anthropic Messages (`/v1/messages`): requests and responses are translated.
    AnthropicMessages,
}

/// A built-in provider.
#[derive(Debug, PartialEq, Eq)]
pub struct Provider {
    pub name: &'static str,
    /// `scheme://host` used when neither `override.endpoint` nor the node's
    /// `providers.<name>.base_url` says otherwise; `None`: an endpoint is required.
    pub default_base: Option<&'static str>,
    /// The chat completions path appended to the base.
    pub path: &'static str,
    pub family: WireFamily,
    /// The deployment in the URL names the model (Azure): `model` is dropped from the body.
    pub drops_model: bool,
}

const PROVIDERS: &[Provider] = &[
    Provider {
        name: "openai",
        default_base: Some("https://api.openai.com"),
        path: "/v1/chat/completions",
        family: WireFamily::OpenAi,
        drops_model: false,
    },
    Provider {
        name: "deepseek",
        default_base: Some("https://api.deepseek.com"),
        path: "/chat/completions",
        family: WireFamily::OpenAi,
        drops_model: false,
    },
    Provider {
        name: "openrouter",
        default_base: Some("https://openrouter.ai"),
        path: "/api/v1/chat/completions",
        family: WireFamily::OpenAi,
        drops_model: false,
    },
    Provider {
        name: "gemini",
        default_base: Some("https://generativelanguage.googleapis.com"),
        path: "/v1beta/openai/chat/completions",
        family: WireFamily::OpenAi,
        drops_model: false,
    },
    Provider {
        name: "aimlapi",
        default_base: Some("https://api.aimlapi.com"),
        path: "/chat/completions",
        family: WireFamily::OpenAi,
        drops_model: false,
    },
    Provider {
        name: "anthropic",
        default_base: Some("https://api.anthropic.com"),
        path: "/v1/chat/completions",
        family: WireFamily::OpenAi,
        drops_model: false,
    },
    Provider {
        name: "openai-compatible",
        default_base: None,
        path: "/v1/chat/completions",
        family: WireFamily::OpenAi,
        drops_model: false,
    },
    Provider {
        name: "azure-openai",
        default_base: None,
        path: "/chat/completions",
        family: WireFamily::OpenAi,
        drops_model: true,
    },
];

/// Anthropic's native Messages API, used by the model API's `anthropic` adapter (routes' `anthropic`
/// provider uses Anthropic's OpenAI-compatible API instead).
pub const ANTHROPIC_MESSAGES: Provider = Provider {
    name: "anthropic",
    default_base: None,
    path: "/v1/messages",
    family: WireFamily::AnthropicMessages,
    drops_model: false,
};

/// Providers APISIX knows that this build does not serve yet.
const NOT_YET: &[&str] = &["vertex-ai", "bedrock"];

/// Looks a provider up by its config name; the error is for the `provider` field.
pub fn lookup(name: &str) -> Result<&'static Provider, ConfigError> {
    if let Some(provider) = PROVIDERS.iter().find(|p| p.name == name) {
        return Ok(provider);
    }
    if NOT_YET.contains(&name) {
        return Err(ConfigError::new("provider", format!("{} are not supported yet", NOT_YET.join(" and "))));
    }
    let known: Vec<&str> = PROVIDERS.iter().map(|p| p.name).collect();
    Err(ConfigError::new("provider", format!("unknown provider: use one of {}", known.join(", "))))
}

/// Everything but RFC 3986's unreserved characters is escaped in a query name or value.
const QUERY_COMPONENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// Node-level replacements of providers' default hosts (`providers.<name>.base_url`).
pub type BaseUrls = BTreeMap<String, String>;

/// Where and how to call one provider: the full URL (auth query included, so never logged) and
/// the auth headers.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub provider: &'static Provider,
    /// Parsed once, when the config compiles.
    pub uri: http::Uri,
    pub auth_headers: HeaderMap,
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

impl AuthConfig {
    /// Where its credentials sit, relative to the `auth` object (see
    /// `PluginFactory::secret_fields`); a credential field added here is masked by every plugin
    /// that has an `auth`.
    pub const SECRET_FIELDS: &[&str] = &["header.*", "query.*"];

    /// [`Self::SECRET_FIELDS`] under the `auth` object found at `at` (`instances[].auth`).
    pub fn secret_fields_at(at: &str) -> Vec<String> {
        Self::SECRET_FIELDS.iter().map(|field| format!("{at}.{field}")).collect()
    }
}

impl Endpoint {
    /// Compiles provider, auth and `override.endpoint` into a ready endpoint. Runs at config build.
    pub fn compile(
        provider: &'static Provider,
        auth: &AuthConfig,
        endpoint: Option<&str>,
        base_urls: &BaseUrls,
    ) -> Result<Endpoint, ConfigError> {
        let mut url = match endpoint {
            Some(endpoint) => {
                let mut url = url::Url::parse(endpoint)
                    .ok()
                    .filter(|u| matches!(u.scheme(), "http" | "https") && u.has_host())
                    .ok_or_else(|| ConfigError::new("override.endpoint", "must be an http(s) URL"))?;
                if url.path() == "/" {
                    url.set_path(provider.path);
                }
                url
            }
            None => {
                let base =
                    base_urls.get(provider.name).map(String::as_str).or(provider.default_base).ok_or_else(|| {
                        ConfigError::new("override.endpoint", format!("is required for provider `{}`", provider.name))
                    })?;
                let joined = format!("{}{}", base.trim_end_matches('/'), provider.path);
                url::Url::parse(&joined).map_err(|_| {
                    ConfigError::new("override.endpoint", "the provider's base URL is not an http(s) URL")
                })?
            }
        };
        if !auth.query.is_empty() {
            // RFC 3986 encoding (space as %20), as APISIX's `ngx.encode_args`: some providers
            // read `+` literally.
            let mut query = url.query().unwrap_or_default().to_string();
            for (name, value) in &auth.query {
                if !query.is_empty() {
                    query.push('&');
                }
                query.extend(utf8_percent_encode(name, QUERY_COMPONENT));
                query.push('=');
                query.extend(utf8_percent_encode(value, QUERY_COMPONENT));
            }
            url.set_query(Some(&query));
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
        let uri = url.as_str().parse().map_err(|_| ConfigError::new("override.endpoint", "is not a valid URL"))?;
        Ok(Endpoint { provider, uri, auth_headers })
    }
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
}
