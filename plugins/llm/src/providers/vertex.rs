//! Google Vertex AI (`vertex-ai` on routes, the `vertex` adapter on the model API).
//!
//! Chat goes to Vertex's OpenAI-compatible endpoint,
//! `/v1beta1/projects/{project}/locations/{region}/endpoints/openapi/chat/completions`, streaming
//! included (it answers OpenAI SSE); embeddings to a model's
//! `/v1/projects/{project}/locations/{region}/publishers/google/models/{model}:predict`, converted
//! from and to OpenAI's shape (`crate::protocol::predict`). The host is
//! `{region}-aiplatform.googleapis.com` (`aiplatform.googleapis.com` for the `global` region),
//! unless `override.endpoint` (or the node's `providers.vertex-ai.base_url`) names another.
//! Every request carries `Authorization: Bearer <access token>`, the token minted from the
//! service account of `auth.gcp` and cached ([`crate::gcp`]); or a token the config gives in
//! `auth.header` (the model API's `access_token`).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::AUTHORIZATION;
use http::{HeaderMap, HeaderValue};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde::Deserialize;
use serde_json::Value;
use switchyard_sdk::raw_body::RawBody;
use switchyard_sdk::{ConfigError, Credentials};

use super::{append_query, AuthConfig, BaseUrls, Endpoint, PassthroughTarget, Provider, WireFamily};
use crate::gcp::{AccessTokens, ServiceAccount, TokenPolicy};
use crate::protocol::Protocol;

pub const PROVIDER: Provider = Provider {
    name: "vertex-ai",
    default_base: None,
    prefix: "",
    family: WireFamily::Vertex,
    drops_model: false,
    max_completion_tokens: true,
};

/// A model name is one path segment of the `:predict` URL: everything but RFC 3986's unreserved
/// characters is escaped (as APISIX's `ngx.escape_uri`).
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// `auth.gcp` (APISIX 3.18): the service account whose access tokens authenticate every request.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GcpAuthConfig {
    /// The service account's JSON key: a secret (masked in admin responses, never logged).
    pub service_account_json: Option<Value>,
    /// Seconds: the longest a token is used, however long it lives.
    pub max_ttl: Option<u64>,
    /// Seconds before a token expires that it is renewed.
    #[serde(default = "sixty")]
    pub expire_early_secs: u64,
}

fn sixty() -> u64 {
    60
}

impl fmt::Debug for GcpAuthConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GcpAuthConfig")
            .field("max_ttl", &self.max_ttl)
            .field("expire_early_secs", &self.expire_early_secs)
            .finish_non_exhaustive()
    }
}

impl GcpAuthConfig {
    /// The access tokens of the configured service account. Errors name the `auth.gcp` field.
    fn access_tokens(&self) -> Result<AccessTokens, ConfigError> {
        let field = "auth.gcp.service_account_json";
        let key = self
            .service_account_json
            .as_ref()
            .ok_or_else(|| ConfigError::new(field, "is required: the service account's JSON key"))?;
        let account = ServiceAccount::parse(key).map_err(|message| ConfigError::new(field, message))?;
        if self.max_ttl == Some(0) {
            return Err(ConfigError::new("auth.gcp.max_ttl", "must be at least 1 (seconds)"));
        }
        let policy = TokenPolicy {
            max_ttl: self.max_ttl.map(Duration::from_secs),
            expire_early: Duration::from_secs(self.expire_early_secs),
        };
        Ok(AccessTokens::new(account, policy))
    }
}

/// `provider_conf` as Vertex AI reads it; other keys are left to other providers.
#[derive(Default, Deserialize)]
struct ProviderConf {
    project_id: Option<Value>,
    region: Option<Value>,
}

/// Where a project's models live: its id and region, both checked to fit in a URL.
#[derive(Debug, Clone)]
struct Location {
    project: String,
    region: String,
}

impl Location {
    /// From `provider_conf`; `None` when either is missing. `field` prefixes the error paths.
    fn from_conf(conf: Option<&Value>, field: &str) -> Result<Option<Location>, ConfigError> {
        let conf: ProviderConf = match conf {
            None | Some(Value::Null) => ProviderConf::default(),
            Some(value) => serde_json::from_value(value.clone())
                .map_err(|_| ConfigError::new(field, "must be an object with project_id and region"))?,
        };
        let text = |value: Option<Value>, name: &str| match value {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(text)) => Ok(Some(text)),
            Some(_) => Err(ConfigError::new(format!("{field}.{name}"), "must be a string")),
        };
        let (project, region) = (text(conf.project_id, "project_id")?, text(conf.region, "region")?);
        let (Some(project), Some(region)) = (project, region) else { return Ok(None) };
        Location::new(project, region, field).map(Some)
    }

    /// Checks that `project` and `region` fit where they go (a path, a host name).
    fn new(project: String, region: String, field: &str) -> Result<Location, ConfigError> {
        // Project ids are letters, digits and hyphens; domain-scoped ones add `.` and `:`.
        let project_fits = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | ':' | '_');
        if project.is_empty() || !project.chars().all(project_fits) {
            return Err(ConfigError::new(format!("{field}.project_id"), "must be a Google Cloud project id"));
        }
        let region_fits = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-';
        if region.is_empty() || !region.chars().all(region_fits) {
            return Err(ConfigError::new(format!("{field}.region"), "must be a Google Cloud region, e.g. us-central1"));
        }
        Ok(Location { project, region })
    }

    /// The regional host's origin (`global` has no regional host).
    fn origin(&self) -> String {
        match self.region.as_str() {
            "global" => "https://aiplatform.googleapis.com".to_string(),
            region => format!("https://{region}-aiplatform.googleapis.com"),
        }
    }

    fn chat_path(&self) -> String {
        format!("/v1beta1/projects/{}/locations/{}/endpoints/openapi/chat/completions", self.project, self.region)
    }

    fn models_path(&self) -> String {
        format!("/v1/projects/{}/locations/{}/publishers/google/models/", self.project, self.region)
    }
}

/// Where `:predict` calls go.
#[derive(Debug, Clone)]
pub(crate) enum PredictUrl {
    /// `{stem}{escaped model}{tail}`: the stem ends in `/models/`, the tail is `:predict` and
    /// the query.
    PerModel { stem: String, tail: String },
    /// An `override.endpoint` path that is not a chat path: every call goes there (APISIX).
    Fixed(http::Uri),
}

impl PredictUrl {
    fn for_model(&self, model: Option<&str>) -> Option<http::Uri> {
        match self {
            PredictUrl::Fixed(uri) => Some(uri.clone()),
            PredictUrl::PerModel { stem, tail } => {
                let model = model.filter(|m| !m.is_empty())?;
                format!("{stem}{}{tail}", utf8_percent_encode(model, SEGMENT)).parse().ok()
            }
        }
    }
}

/// The message of the 400 for an embeddings request that names no model to put in the URL.
pub const NO_MODEL: &str = "could not resolve upstream path: ensure the route or request body specifies a model, \
                            or that override.endpoint includes a path";

/// Compiles a `vertex-ai` route endpoint: where its chat and embeddings go (from `provider_conf`
/// or `override.endpoint`), and its credentials. Errors name the field at fault, relative to
/// the plugin (or instance) object.
pub fn endpoint(
    auth: &AuthConfig,
    override_endpoint: Option<&str>,
    provider_conf: Option<&Value>,
    base_urls: &BaseUrls,
) -> Result<Endpoint, ConfigError> {
    let location = Location::from_conf(provider_conf, "provider_conf")?;
    let auth_query: Vec<(String, String)> = auth.query.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    let (origin, fixed_path, endpoint_query) = match override_endpoint {
        Some(endpoint) => {
            let url = url::Url::parse(endpoint)
                .ok()
                .filter(|u| matches!(u.scheme(), "http" | "https") && u.has_host())
                .ok_or_else(|| ConfigError::new("override.endpoint", "must be an http(s) URL"))?;
            let fixed_path = (url.path() != "/").then(|| url.path().to_string());
            (url[..url::Position::BeforePath].to_string(), fixed_path, url.query().map(str::to_string))
        }
        None => {
            let location = location.as_ref().ok_or_else(|| {
                ConfigError::new(
                    "provider_conf",
                    "vertex-ai requires either provider_conf (project_id + region) or override.endpoint",
                )
            })?;
            let origin = match base_urls.get(PROVIDER.name) {
                Some(base) => base.trim_end_matches('/').to_string(),
                None => location.origin(),
            };
            (origin, None, None)
        }
    };
    let with_query = |url: String| -> String {
        let url = match &endpoint_query {
            Some(query) => format!("{url}?{query}"),
            None => url,
        };
        append_query(url, &auth_query)
    };
    let chat_path = match (&fixed_path, &location) {
        (Some(path), _) => path.clone(),
        (None, Some(location)) => location.chat_path(),
        (None, None) => {
            return Err(ConfigError::new(
                "provider_conf",
                "vertex-ai requires either provider_conf (project_id + region) or an override.endpoint with a path",
            ))
        }
    };
    let chat: http::Uri = with_query(format!("{origin}{chat_path}"))
        .parse()
        .map_err(|_| ConfigError::new("override.endpoint", "is not a valid URL"))?;
    let predict = match (&fixed_path, &location) {
        (Some(path), _) if !path.ends_with("/chat/completions") => Some(PredictUrl::Fixed(chat.clone())),
        (_, Some(location)) => {
            let tail = with_query(":predict".to_string());
            Some(PredictUrl::PerModel { stem: format!("{origin}{}", location.models_path()), tail })
        }
        (_, None) => None,
    };
    let credentials: Option<Arc<dyn Credentials>> = match &auth.gcp {
        Some(gcp) => Some(Arc::new(gcp.access_tokens()?)),
        None if auth.header.keys().any(|name| name.eq_ignore_ascii_case("authorization")) => None,
        None => {
            return Err(ConfigError::new(
                "auth.gcp",
                "is required for provider vertex-ai: the service account to mint access tokens from \
                 (or give a token in auth.header.Authorization)",
            ))
        }
    };
    let passthrough = PassthroughTarget {
        base: origin,
        fixed_path,
        endpoint_query: url::form_urlencoded::parse(endpoint_query.as_deref().unwrap_or("").as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect(),
        auth_query,
    };
    Ok(Endpoint {
        provider: &PROVIDER,
        uri: chat.clone(),
        uris: vec![(Protocol::OpenAiChat, chat)],
        passthrough,
        auth_headers: auth.compiled_headers()?,
        bedrock: None,
        credentials,
        predict,
    })
}

/// A model API provider key's `secret` for the `vertex` adapter (AISIX): the project, the
/// region, and one credential, a service account's JSON key (minted into tokens and cached) or a
/// token the operator renews.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeySecret {
    project: String,
    region: String,
    service_account_json: Option<Value>,
    access_token: Option<String>,
}

/// Compiles a `vertex` provider key: `secret` as above, `api_base` (optional) replacing the
/// regional host. Errors name the provider key's field and never repeat the secret.
pub fn key_endpoint(secret: &str, api_base: Option<&str>) -> Result<Endpoint, ConfigError> {
    let shape = "must be JSON: {\"project\", \"region\", and \"service_account_json\" or \"access_token\"}";
    let secret: KeySecret = serde_json::from_str(secret).map_err(|_| ConfigError::new("secret", shape))?;
    let location = Location::new(secret.project, secret.region, "secret")
        .map_err(|err| ConfigError::new(err.path.replace("project_id", "project"), err.message))?;
    let (credentials, auth_headers): (Option<Arc<dyn Credentials>>, HeaderMap) =
        match (secret.service_account_json, secret.access_token) {
            (Some(key), None) => {
                let account = ServiceAccount::parse(&key)
                    .map_err(|message| ConfigError::new("secret.service_account_json", message))?;
                let policy = TokenPolicy { max_ttl: None, expire_early: Duration::from_secs(sixty()) };
                (Some(Arc::new(AccessTokens::new(account, policy))), HeaderMap::new())
            }
            (None, Some(token)) => {
                let mut bearer = HeaderValue::from_str(&format!("Bearer {}", token.trim()))
                    .map_err(|_| ConfigError::new("secret.access_token", "must be usable as an HTTP header value"))?;
                bearer.set_sensitive(true);
                (None, HeaderMap::from_iter([(AUTHORIZATION, bearer)]))
            }
            _ => {
                return Err(ConfigError::new(
                    "secret",
                    "must hold exactly one of service_account_json and access_token",
                ))
            }
        };
    let origin = match api_base {
        Some(base) => base.trim_end_matches('/').to_string(),
        None => location.origin(),
    };
    let chat: http::Uri = format!("{origin}{}", location.chat_path())
        .parse()
        .map_err(|_| ConfigError::new("api_base", "does not make a valid upstream URL"))?;
    Ok(Endpoint {
        provider: &PROVIDER,
        uri: chat.clone(),
        uris: vec![(Protocol::OpenAiChat, chat)],
        passthrough: PassthroughTarget {
            base: origin.clone(),
            fixed_path: None,
            endpoint_query: Vec::new(),
            auth_query: Vec::new(),
        },
        auth_headers,
        bedrock: None,
        credentials,
        predict: Some(PredictUrl::PerModel {
            stem: format!("{origin}{}", location.models_path()),
            tail: ":predict".to_string(),
        }),
    })
}

impl Endpoint {
    /// Whether a `target` call needs a model named by the request or the config (a `:predict`
    /// URL names it); asked in the access phase, to answer 400 rather than fail later.
    pub fn needs_model(&self, target: Protocol) -> bool {
        target == Protocol::VertexPredict && matches!(self.predict, Some(PredictUrl::PerModel { .. }))
    }

    /// A `:predict` call of `body` (a predict request that may name its `model`, which moves
    /// from the body into the URL). `None` when the endpoint has no `:predict` URL or the model
    /// is missing. Runs per attempt.
    pub fn predict_call(&self, body: Bytes) -> Option<(http::Uri, Bytes)> {
        let predict = self.predict.as_ref()?;
        let parsed = RawBody::parse(body).ok()?;
        let model = parsed.str_field("model");
        let url = predict.for_model(model.as_deref())?;
        if model.is_none() {
            return Some((url, parsed.original().clone()));
        }
        let mut edit = parsed.edit();
        edit.remove("model");
        Some((url, edit.into_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn bearer_auth() -> AuthConfig {
        AuthConfig { header: [("Authorization".to_string(), "Bearer t".to_string())].into(), ..AuthConfig::default() }
    }

    fn conf(project: &str, region: &str) -> Value {
        json!({"project_id": project, "region": region})
    }

    #[test]
    fn urls_come_from_the_project_and_region() {
        let regional = endpoint(&bearer_auth(), None, Some(&conf("p-1", "us-central1")), &BaseUrls::new()).unwrap();
        assert_eq!(
            regional.uri_for(Protocol::OpenAiChat).unwrap(),
            "https://us-central1-aiplatform.googleapis.com/v1beta1/projects/p-1/locations/us-central1/endpoints/openapi/chat/completions"
        );
        let (url, body) =
            regional.predict_call(Bytes::from_static(br#"{"instances":[],"model":"text/emb 1"}"#)).unwrap();
        assert_eq!(
            url,
            "https://us-central1-aiplatform.googleapis.com/v1/projects/p-1/locations/us-central1/publishers/google/models/text%2Femb%201:predict"
        );
        assert_eq!(body, Bytes::from_static(br#"{"instances":[]}"#));
        assert!(regional.predict_call(Bytes::from_static(br#"{"instances":[]}"#)).is_none(), "no model");
        let global = endpoint(&bearer_auth(), None, Some(&conf("p", "global")), &BaseUrls::new()).unwrap();
        assert_eq!(global.uri.host(), Some("aiplatform.googleapis.com"));
    }

    #[test]
    fn an_endpoint_replaces_the_host_and_a_path_replaces_the_chat_path() {
        let at = |endpoint_url: &str, conf: Option<Value>| {
            endpoint(&bearer_auth(), Some(endpoint_url), conf.as_ref(), &BaseUrls::new())
        };
        let mock = at("http://127.0.0.1:9", Some(conf("p", "r1"))).unwrap();
        assert_eq!(mock.uri, "http://127.0.0.1:9/v1beta1/projects/p/locations/r1/endpoints/openapi/chat/completions");
        assert!(mock.needs_model(Protocol::VertexPredict));
        let fixed = at("http://h/custom?k=v", None).unwrap();
        assert_eq!(fixed.uri, "http://h/custom?k=v");
        assert!(!fixed.needs_model(Protocol::VertexPredict));
        assert_eq!(fixed.predict_call(Bytes::from_static(br#"{"model":"m"}"#)).unwrap().0, "http://h/custom?k=v");
        let chat_only = at("http://h/x/chat/completions", None).unwrap();
        assert!(chat_only.predict_call(Bytes::from_static(br#"{"model":"m"}"#)).is_none());
        assert_eq!(at("http://h", None).unwrap_err().path, "provider_conf");
    }

    #[test]
    fn config_errors_name_the_field() {
        let none = BaseUrls::new();
        assert_eq!(endpoint(&bearer_auth(), None, None, &none).unwrap_err().path, "provider_conf");
        let only_project = json!({"project_id": "p"});
        assert_eq!(endpoint(&bearer_auth(), None, Some(&only_project), &none).unwrap_err().path, "provider_conf");
        let bad_region = conf("p", "us central");
        assert_eq!(endpoint(&bearer_auth(), None, Some(&bad_region), &none).unwrap_err().path, "provider_conf.region");
        let bad_project = conf("p/../x", "r");
        assert_eq!(
            endpoint(&bearer_auth(), None, Some(&bad_project), &none).unwrap_err().path,
            "provider_conf.project_id"
        );
        let no_auth = endpoint(&AuthConfig::default(), None, Some(&conf("p", "r")), &none).unwrap_err();
        assert_eq!(no_auth.path, "auth.gcp");
        let gcp: AuthConfig = serde_json::from_value(json!({"gcp": {"service_account_json": "{}"}})).unwrap();
        let err = endpoint(&gcp, None, Some(&conf("p", "r")), &none).unwrap_err();
        assert_eq!(err.path, "auth.gcp.service_account_json");
        let no_key: AuthConfig = serde_json::from_value(json!({"gcp": {}})).unwrap();
        assert!(endpoint(&no_key, None, Some(&conf("p", "r")), &none).unwrap_err().message.contains("is required"));
    }

    #[test]
    fn provider_key_secrets_are_checked_without_being_repeated() {
        let token = json!({"project": "p", "region": "europe-west4", "access_token": "ya29.secret"}).to_string();
        let keyed = key_endpoint(&token, None).unwrap();
        assert_eq!(keyed.auth_headers["authorization"], "Bearer ya29.secret");
        assert_eq!(keyed.uri.host(), Some("europe-west4-aiplatform.googleapis.com"));
        let proxied = key_endpoint(&token, Some("http://127.0.0.1:7/")).unwrap();
        assert_eq!(
            proxied.uri,
            "http://127.0.0.1:7/v1beta1/projects/p/locations/europe-west4/endpoints/openapi/chat/completions"
        );
        let cases = [
            ("not json ya29.secret".to_string(), "secret"),
            (json!({"project": "p", "region": "r"}).to_string(), "secret"),
            (
                json!({"project": "p", "region": "r", "access_token": "a", "service_account_json": {}}).to_string(),
                "secret",
            ),
            (json!({"project": "p", "region": "R!", "access_token": "ya29.secret"}).to_string(), "secret.region"),
            (
                json!({"project": "p", "region": "r", "service_account_json": {"private_key": "ya29.secret"}})
                    .to_string(),
                "secret.service_account_json",
            ),
        ];
        for (secret, path) in cases {
            let err = key_endpoint(&secret, None).unwrap_err();
            assert_eq!(err.path, path, "{err}");
            assert!(!err.message.contains("ya29.secret"), "{err}");
        }
    }
}
