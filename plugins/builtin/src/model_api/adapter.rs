//! The model API's adapters: the wire formats a provider key can speak. The one list of them,
//! with everything that differs between them: whether it is served, whether `api_base` is needed
//! and how it is normalised, where its requests go and how its credential is sent.

use http::header::{HeaderName, HeaderValue};
use http::HeaderMap;

use switchyard_llm::providers::{self, anthropic, Provider};
use switchyard_sdk::ConfigError;

/// How a provider key's upstream is spoken to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Adapter {
    OpenAi,
    Anthropic,
    Bedrock,
    Vertex,
    AzureOpenAi,
}

/// `api_base` of a provider key that names none, by its `provider` and the adapter that vendor
/// speaks (AISIX's defaults). Any other provider, or another adapter, needs its `api_base`.
const DEFAULT_API_BASES: [(&str, Adapter, &str); 5] = [
    ("openai", Adapter::OpenAi, "https://api.openai.com/v1"),
    ("deepseek", Adapter::OpenAi, "https://api.deepseek.com"),
    ("gemini", Adapter::OpenAi, "https://generativelanguage.googleapis.com/v1beta/openai"),
    ("google", Adapter::OpenAi, "https://generativelanguage.googleapis.com/v1beta/openai"),
    ("anthropic", Adapter::Anthropic, "https://api.anthropic.com"),
];

/// `api-version` of Azure calls when the provider key names none.
pub const AZURE_DEFAULT_API_VERSION: &str = "2024-10-21";

impl Adapter {
    /// Every adapter, by its name in a provider key's `adapter` field.
    pub const ALL: [(&'static str, Adapter); 5] = [
        ("openai", Adapter::OpenAi),
        ("anthropic", Adapter::Anthropic),
        ("bedrock", Adapter::Bedrock),
        ("vertex", Adapter::Vertex),
        ("azure-openai", Adapter::AzureOpenAi),
    ];

    /// The adapter called `name`; the error, for the `adapter` field, lists the valid names.
    pub fn parse(name: &str) -> Result<Adapter, ConfigError> {
        Self::ALL.iter().find(|(n, _)| *n == name).map(|(_, adapter)| *adapter).ok_or_else(|| {
            let names: Vec<&str> = Self::ALL.iter().map(|(n, _)| *n).collect();
            ConfigError::new("adapter", format!("must be one of {}", names.join(", ")))
        })
    }

    pub fn name(self) -> &'static str {
        Self::ALL.iter().find(|(_, a)| *a == self).map_or("", |(n, _)| n)
    }

    /// Whether a provider key needs an `api_base`: Bedrock finds its endpoint from the region,
    /// Vertex from the project; the others have no host to fall back on.
    pub fn needs_api_base(self) -> bool {
        !matches!(self, Adapter::Bedrock | Adapter::Vertex)
    }

    /// The `api_base` of a key of `provider` (a vendor label) that names none: the vendor's own
    /// API root when it speaks this adapter, else `None`.
    pub fn default_api_base(self, provider: &str) -> Option<&'static str> {
        let provider = provider.trim().to_ascii_lowercase();
        DEFAULT_API_BASES
            .iter()
            .find(|(name, adapter, _)| *name == provider && *adapter == self)
            .map(|(_, _, base)| *base)
    }

    /// Why a provider key of this adapter needs an `api_base`, for the error when it has none.
    pub fn api_base_required(self) -> String {
        let defaults: Vec<&str> =
            DEFAULT_API_BASES.iter().filter(|(_, adapter, _)| *adapter == self).map(|(name, _, _)| *name).collect();
        match defaults.as_slice() {
            [] => format!("is required for adapter {}", self.name()),
            names => format!(
                "is required for adapter {} unless provider is one of {} (whose API root is the default)",
                self.name(),
                names.join(", ")
            ),
        }
    }

    /// Trims spaces and trailing slashes and drops a pasted endpoint path (for Azure, the whole
    /// `/openai/deployments/...` part, keeping its `api-version`). Never guesses a vendor URL.
    /// Returns the base and, when the pasted URL had one, its `api-version`.
    pub fn normalise_api_base(self, raw: &str) -> Result<(String, Option<String>), ConfigError> {
        let invalid = || ConfigError::new("api_base", "must be an http(s) URL");
        let trimmed = raw.trim();
        let (without_query, query) = match trimmed.split_once('?') {
            Some((base, query)) => (base, Some(query)),
            None => (trimmed, None),
        };
        let rest = without_query
            .strip_prefix("https://")
            .or_else(|| without_query.strip_prefix("http://"))
            .ok_or_else(invalid)?;
        if rest.is_empty() || rest.starts_with('/') || rest.contains(char::is_whitespace) {
            return Err(invalid());
        }
        let mut base = without_query.trim_end_matches('/').to_string();
        for suffix in self.pasted_suffixes() {
            if let Some(stripped) = base.strip_suffix(suffix) {
                base = stripped.trim_end_matches('/').to_string();
                break;
            }
        }
        if self == Adapter::AzureOpenAi {
            if let Some(at) = base.find("/openai/deployments") {
                base.truncate(at);
            } else if let Some(stripped) = base.strip_suffix("/openai") {
                base = stripped.to_string();
            }
        }
        let version =
            query.and_then(|q| q.split('&').find_map(|pair| pair.strip_prefix("api-version="))).map(str::to_string);
        Ok((base, version))
    }

    /// Endpoint paths people paste at the end of a base URL.
    fn pasted_suffixes(self) -> &'static [&'static str] {
        match self {
            Adapter::OpenAi => &["/chat/completions", "/embeddings", "/completions", "/models"],
            Adapter::Anthropic => &["/v1/messages", "/messages"],
            _ => &[],
        }
    }

    /// The provider descriptor (wire family, quirks) of the calls of a model whose provider
    /// label is `vendor`; `None` when not served. Only OpenAI itself is known to serve the
    /// Responses API: other `openai` keys speak chat and embeddings.
    pub fn provider(self, vendor: &str) -> Option<&'static Provider> {
        match self {
            Adapter::OpenAi if vendor.trim().eq_ignore_ascii_case("openai") => providers::lookup("openai").ok(),
            Adapter::OpenAi => providers::lookup("openai-compatible").ok(),
            Adapter::AzureOpenAi => providers::lookup("azure-openai").ok(),
            Adapter::Anthropic => Some(&providers::ANTHROPIC_MESSAGES),
            Adapter::Bedrock => providers::lookup("bedrock").ok(),
            Adapter::Vertex => None,
        }
    }

    /// Where a model's calls go (`model_name` is the Azure deployment); `None` when not served,
    /// or (Bedrock) when the model's path is made per call by the key's endpoint.
    /// The path names one protocol of the adapter's provider; the others are found beside it
    /// (`.../embeddings`, `.../responses`).
    pub fn chat_url(self, base: &str, model_name: &str, api_version: &str) -> Option<String> {
        match self {
            Adapter::OpenAi => Some(format!("{base}/chat/completions")),
            Adapter::AzureOpenAi => {
                Some(format!("{base}/openai/deployments/{model_name}/chat/completions?api-version={api_version}"))
            }
            Adapter::Anthropic => Some(format!("{base}/v1/messages")),
            Adapter::Bedrock | Adapter::Vertex => None,
        }
    }

    /// Where Anthropic's token counts go: the `anthropic` adapter only.
    pub fn count_tokens_url(self, base: &str) -> Option<String> {
        (self == Adapter::Anthropic).then(|| format!("{base}/v1/messages/count_tokens"))
    }

    /// The provider key's secret as the headers its upstream expects. The error, for the `secret`
    /// field, never repeats the secret.
    pub fn auth_headers(self, secret: &str) -> Result<HeaderMap, ConfigError> {
        let pairs: Vec<(&'static str, String)> = match self {
            Adapter::OpenAi => vec![("authorization", format!("Bearer {secret}"))],
            Adapter::AzureOpenAi => vec![("api-key", secret.to_string())],
            Adapter::Anthropic => {
                vec![("x-api-key", secret.to_string()), ("anthropic-version", anthropic::API_VERSION.to_string())]
            }
            Adapter::Bedrock | Adapter::Vertex => Vec::new(),
        };
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            let mut value = HeaderValue::from_str(&value).map_err(|_| {
                ConfigError::new(
                    "secret",
                    "must be usable as an HTTP header value: no line breaks or other control characters",
                )
            })?;
            value.set_sensitive(true);
            headers.insert(HeaderName::from_static(name), value);
        }
        Ok(headers)
    }
}

/// Stored by name.
impl serde::Serialize for Adapter {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

/// Read by name; an unknown one is refused listing the valid names, never repeating it.
impl<'de> serde::Deserialize<'de> for Adapter {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        Adapter::parse(&name).map_err(|err| serde::de::Error::custom(err.message))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_base_is_normalised_without_guessing() {
        let cases = [
            (Adapter::OpenAi, " https://api.openai.com/v1/ ", "https://api.openai.com/v1"),
            (Adapter::OpenAi, "https://api.openai.com/v1/chat/completions", "https://api.openai.com/v1"),
            (Adapter::OpenAi, "https://api.deepseek.com", "https://api.deepseek.com"),
            (Adapter::OpenAi, "http://10.0.0.5:8000/v1//", "http://10.0.0.5:8000/v1"),
            (Adapter::Anthropic, "https://api.anthropic.com/v1/messages", "https://api.anthropic.com"),
            (
                Adapter::AzureOpenAi,
                "https://r.openai.azure.com/openai/deployments/gpt4/chat/completions?api-version=2024-02-01",
                "https://r.openai.azure.com",
            ),
        ];
        for (adapter, raw, expected) in cases {
            assert_eq!(adapter.normalise_api_base(raw).unwrap().0, expected, "{raw}");
        }
        let pasted = "https://r.openai.azure.com/openai/deployments/x/chat/completions?api-version=2024-02-01";
        assert_eq!(Adapter::AzureOpenAi.normalise_api_base(pasted).unwrap().1.as_deref(), Some("2024-02-01"));
        assert!(Adapter::OpenAi.normalise_api_base("api.openai.com").is_err());
        assert!(Adapter::OpenAi.normalise_api_base("https://").is_err());
    }

    #[test]
    fn known_vendors_default_their_api_root_for_the_adapter_they_speak() {
        assert_eq!(Adapter::OpenAi.default_api_base("openai"), Some("https://api.openai.com/v1"));
        assert_eq!(Adapter::OpenAi.default_api_base("DeepSeek"), Some("https://api.deepseek.com"));
        assert_eq!(Adapter::OpenAi.default_api_base("google"), Adapter::OpenAi.default_api_base("gemini"));
        assert_eq!(Adapter::Anthropic.default_api_base("anthropic"), Some("https://api.anthropic.com"));
        assert_eq!(Adapter::OpenAi.default_api_base("anthropic"), None, "another adapter: no guess");
        assert_eq!(Adapter::OpenAi.default_api_base("acme"), None);
        assert_eq!(Adapter::AzureOpenAi.default_api_base("openai"), None);
        assert!(Adapter::OpenAi.api_base_required().contains("openai, deepseek, gemini, google"));
        assert_eq!(Adapter::AzureOpenAi.api_base_required(), "is required for adapter azure-openai");
    }

    #[test]
    fn names_round_trip_and_unknown_names_list_the_valid_ones() {
        for (name, adapter) in Adapter::ALL {
            assert_eq!(Adapter::parse(name).unwrap(), adapter);
            assert_eq!(adapter.name(), name);
        }
        let err = Adapter::parse("soap").unwrap_err();
        assert_eq!(err.path, "adapter");
        assert!(!err.message.contains("soap"), "{err}");
        assert!(Adapter::ALL.iter().all(|(n, _)| err.message.contains(n)), "{err}");
    }

    #[test]
    fn a_secret_that_is_no_header_value_is_refused_without_being_repeated() {
        let err = Adapter::OpenAi.auth_headers("sk-line\nbreak").unwrap_err();
        assert_eq!(err.path, "secret");
        assert!(!err.message.contains("sk-line"), "{err}");
        let headers = Adapter::Anthropic.auth_headers("sk-a").unwrap();
        assert_eq!(headers["x-api-key"], "sk-a");
        assert!(headers["x-api-key"].is_sensitive());
    }
}
