//! A compiled provider call: endpoint, auth, options and overrides, turned into an upstream
//! request per attempt. `ai-proxy` has one; `ai-proxy-multi` one per instance.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use http::header::{
    HeaderName, HeaderValue, ACCEPT_ENCODING, AUTHORIZATION, CONTENT_TYPE, COOKIE, PROXY_AUTHORIZATION,
};
use http::Method;
use serde_json::{Map, Value};

use crate::config::{CommonConfig, LoggingConfig, OverrideConfig};
use crate::protocol::{Conversion, Plan, Protocol};
use crate::providers::{self, bedrock, openai, vertex, AuthConfig, BaseUrls, Endpoint, Provider, WireFamily};
use switchyard_sdk::error::parse_config_part;
use switchyard_sdk::headers::forwardable;
use switchyard_sdk::raw_body::{deep_merge, RawBody};
use switchyard_sdk::{
    AttemptTiming, BuildContext, ClientHandle, ClientSettings, ConfigError, Request, UpstreamRequest,
};

/// Headers of the client never sent to a provider: its credentials (`headers::CLIENT_CREDENTIALS`), its encoding wishes (the
/// gateway reads usage from the body, so it asks for identity), and its content type (the body
/// is JSON whatever the client said).
const STRIPPED: [HeaderName; 6] =
    [AUTHORIZATION, HeaderName::from_static("x-api-key"), COOKIE, PROXY_AUTHORIZATION, ACCEPT_ENCODING, CONTENT_TYPE];

/// The protocol names `override.request_body` is keyed by (APISIX 3.18's, and `vertex-predict`
/// for the body Vertex AI's `:predict` is sent); `openai` is accepted as an alias of `openai-chat`.
pub const PROTOCOLS: [&str; 7] = [
    "openai-chat",
    "openai-responses",
    "openai-embeddings",
    "anthropic-messages",
    "bedrock-converse",
    "vertex-predict",
    "passthrough",
];

/// An `options` entry, with its value also serialised: a request whose field already has
/// exactly these bytes keeps them without parsing.
struct OptionField {
    key: String,
    value: Value,
    json: String,
}

/// One provider target.
pub struct Instance {
    pub name: Arc<str>,
    pub endpoint: Endpoint,
    /// The model `options` pins, as a metric label.
    pinned_model: Option<Arc<str>>,
    options: Vec<OptionField>,
    max_tokens: Option<u64>,
    /// `override.request_body` patches by the protocol they apply to.
    request_bodies: Vec<(Protocol, Value)>,
    force_request_body: bool,
}

impl Instance {
    /// Compiles an instance of a named provider; errors carry paths relative to the object
    /// holding these fields. `provider_conf` is read by the providers that need one (Vertex AI's
    /// project and region).
    pub fn compile(
        name: &str,
        provider: &str,
        auth: &AuthConfig,
        provider_conf: Option<&Value>,
        options: &Map<String, Value>,
        overrides: &OverrideConfig,
        base_urls: &BaseUrls,
    ) -> Result<Instance, ConfigError> {
        Self::for_provider(name, providers::lookup(provider)?, auth, provider_conf, options, overrides, base_urls)
    }

    /// Compiles an instance of a provider descriptor (the model API's adapters use this).
    pub fn for_provider(
        name: &str,
        provider: &'static Provider,
        auth: &AuthConfig,
        provider_conf: Option<&Value>,
        options: &Map<String, Value>,
        overrides: &OverrideConfig,
        base_urls: &BaseUrls,
    ) -> Result<Instance, ConfigError> {
        if auth.gcp.is_some() && provider.family != WireFamily::Vertex {
            return Err(ConfigError::new("auth.gcp", "is read by provider vertex-ai only"));
        }
        let endpoint = match provider.family {
            WireFamily::Bedrock => {
                bedrock::endpoint(provider, auth, provider_conf, overrides.endpoint.as_deref(), base_urls)?
            }
            WireFamily::Vertex => vertex::endpoint(auth, overrides.endpoint.as_deref(), provider_conf, base_urls)?,
            _ => Endpoint::compile(provider, auth, overrides.endpoint.as_deref(), base_urls)?,
        };
        Self::at_endpoint(name, endpoint, options, overrides)
    }

    /// Compiles an instance calling an endpoint compiled already (the model API's models share
    /// their provider key's credential headers).
    pub fn at_endpoint(
        name: &str,
        endpoint: Endpoint,
        options: &Map<String, Value>,
        overrides: &OverrideConfig,
    ) -> Result<Instance, ConfigError> {
        let mut request_bodies = Vec::new();
        for (name, patch) in overrides.request_body.iter().flatten() {
            let here = || format!("override.request_body.{name}");
            let Some(protocol) = Protocol::from_name(name) else {
                return Err(ConfigError::new(here(), format!("unknown protocol; one of: {}", PROTOCOLS.join(", "))));
            };
            if !patch.is_object() {
                return Err(ConfigError::new(here(), "must be an object"));
            }
            request_bodies.push((protocol, patch.clone()));
        }
        let pinned_model = options.get("model").and_then(Value::as_str).map(Arc::from);
        Ok(Instance {
            name: Arc::from(name),
            endpoint,
            pinned_model,
            options: options
                .iter()
                .map(|(key, value)| OptionField { key: key.clone(), value: value.clone(), json: value.to_string() })
                .collect(),
            max_tokens: overrides.llm_options.as_ref().and_then(|o| o.max_tokens),
            request_bodies,
            force_request_body: overrides.request_body_force_override,
        })
    }

    /// The model this instance asks for, when its options pin one.
    pub fn model(&self) -> Option<&str> {
        self.pinned_model.as_deref()
    }

    /// [`Instance::model`], shared: the metric label of the model this instance asks for.
    pub fn model_label(&self) -> Option<&Arc<str>> {
        self.pinned_model.as_ref()
    }

    /// The protocols this instance's provider speaks natively.
    pub fn speaks(&self) -> &'static [Protocol] {
        self.endpoint.provider.family.speaks()
    }

    /// How a `client` request reaches this instance; `None`: it cannot.
    pub fn plan(&self, client: Protocol) -> Option<Plan> {
        Plan::new(client, self.speaks())
    }

    /// Why a request sent as `plan` cannot be called, when it cannot: a call whose URL names the
    /// model (Bedrock Converse, Vertex AI's `:predict`) while neither `options`, the body nor
    /// (for Converse) the client's path names one, and no `override.endpoint` path replaces the
    /// model's. Runs in the access phase.
    pub fn unreachable(&self, plan: &Plan, body: &RawBody, client_path: &str) -> Option<&'static str> {
        let named = self.model().is_some() || body.raw("model").is_some();
        if !named && self.endpoint.needs_model(plan.target) {
            return Some(vertex::NO_MODEL);
        }
        self.endpoint.bedrock.as_ref().filter(|b| b.needs_model())?;
        let named = named || bedrock::model_in_path(client_path).is_some();
        (plan.target == Protocol::BedrockConverse && !named).then_some(bedrock::NO_MODEL)
    }

    /// Builds the upstream request for one attempt. `body` is the client's, already in the
    /// protocol `plan` sends (see [`crate::protocol::convert_request`]). The client's bytes go
    /// out untouched when no rule changes them. `None` when a passthrough path makes no URL, or
    /// a Bedrock call names no model.
    pub fn upstream_request(
        &self,
        req: &Request,
        body: &RawBody,
        plan: &Plan,
        settings: &CallSettings,
    ) -> Option<UpstreamRequest> {
        self.request_with(req, plan, self.body_for(body, plan.target), settings, &[])
    }

    /// The body for this instance: `body` (in the `target` protocol) with options and
    /// overrides applied: every `options` key replaces the body's, `llm_options.max_tokens`
    /// under the target's name for it, the `request_body` patch of the target protocol, then
    /// the provider's own rules.
    pub fn body_for(&self, body: &RawBody, target: Protocol) -> Bytes {
        let mut edit = body.edit();
        for option in &self.options {
            // A `:predict` body takes no chat options: only the model, which goes in its URL.
            if target == Protocol::VertexPredict && option.key != "model" {
                continue;
            }
            let same = match edit.raw_unchanged(&option.key) {
                Some(raw) if raw == option.json => true,
                // Two strings written without escapes hold the same text only if their bytes
                // are the same: the client's model is not parsed just to learn it differs.
                Some(raw) if is_unescaped_string(raw) && is_unescaped_string(&option.json) => false,
                _ => edit.current(&option.key).as_ref() == Some(&option.value),
            };
            if !same {
                edit.set(&option.key, option.value.clone());
            }
        }
        if let Some(max_tokens) = self.max_tokens {
            let (field, replaces) = match target {
                Protocol::OpenAiChat if self.endpoint.provider.max_completion_tokens => {
                    (Some("max_completion_tokens"), Some("max_tokens"))
                }
                Protocol::OpenAiChat | Protocol::AnthropicMessages => (Some("max_tokens"), None),
                Protocol::OpenAiResponses => (Some("max_output_tokens"), None),
                Protocol::BedrockConverse => {
                    let mut config = match edit.current("inferenceConfig") {
                        Some(Value::Object(config)) => config,
                        _ => Map::new(),
                    };
                    if config.get("maxTokens").and_then(Value::as_u64) != Some(max_tokens) {
                        config.insert("maxTokens".into(), max_tokens.into());
                        edit.set("inferenceConfig", Value::Object(config));
                    }
                    (None, None)
                }
                _ => (None, None),
            };
            if let Some(field) = field {
                if edit.current(field).and_then(|v| v.as_u64()) != Some(max_tokens) {
                    edit.set(field, max_tokens.into());
                }
            }
            if let Some(old) = replaces.filter(|old| edit.current(old).is_some()) {
                edit.remove(old);
            }
        }
        if let Some((_, Value::Object(patch))) = self.request_bodies.iter().find(|(p, _)| *p == target) {
            for (key, value) in patch {
                let current = edit.current(key);
                let mut merged = current.clone().unwrap_or(Value::Null);
                if current.is_none() {
                    merged = value.clone();
                } else {
                    deep_merge(&mut merged, value, self.force_request_body);
                }
                if Some(&merged) != current.as_ref() {
                    edit.set(key, merged);
                }
            }
        }
        if self.endpoint.provider.drops_model && edit.current("model").is_some() {
            edit.remove("model");
        }
        if target == Protocol::OpenAiChat {
            let streamed = match edit.raw_unchanged("stream") {
                Some(raw) => raw == "true",
                None => edit.current("stream") == Some(Value::Bool(true)),
            };
            if streamed {
                openai::request_usage_in_stream(&mut edit);
            }
        }
        edit.into_bytes()
    }

    /// The upstream request carrying `body` as `plan` says: the client's headers less its
    /// credentials (and `also_strip`, and on a converted call the client vendor's own
    /// `anthropic-*` or `openai-*` headers), then the instance's auth. A passthrough request
    /// keeps the client's method, path and query. A Bedrock Converse call goes to its model's
    /// path (`model` and `stream` taken out of `body`); every request carries the endpoint's
    /// credentials (Bedrock's SigV4 signer, Vertex AI's token), which the core applies as it sends.
    pub fn request_with(
        &self,
        req: &Request,
        plan: &Plan,
        body: Bytes,
        settings: &CallSettings,
        also_strip: &[HeaderName],
    ) -> Option<UpstreamRequest> {
        let (method, url, body) = match plan.target {
            Protocol::Passthrough => (req.head.method.clone(), self.endpoint.passthrough_uri(&req.head.uri)?, body),
            Protocol::BedrockConverse => {
                let (url, body) = self.endpoint.bedrock.as_ref()?.call(&body, req.head.uri.path())?;
                (Method::POST, url, body)
            }
            Protocol::VertexPredict => {
                let (url, body) = self.endpoint.predict_call(body)?;
                (Method::POST, url, body)
            }
            target => (Method::POST, self.endpoint.uri_for(target)?.clone(), body),
        };
        let mut headers = forwardable(&req.head.headers, &STRIPPED);
        for name in also_strip {
            headers.remove(name);
        }
        if plan.conversion != Conversion::Native {
            let vendor = if plan.client == Protocol::AnthropicMessages { "anthropic-" } else { "openai-" };
            let own: Vec<HeaderName> = headers.keys().filter(|n| n.as_str().starts_with(vendor)).cloned().collect();
            for name in own {
                headers.remove(name);
            }
        }
        for (name, value) in &self.endpoint.auth_headers {
            headers.insert(name.clone(), value.clone());
        }
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        Some(UpstreamRequest {
            method,
            url,
            headers,
            body,
            client: settings.client.clone(),
            timeout: settings.timeout,
            max_duration: settings.max_duration,
            max_response_bytes: settings.max_response_bytes,
            flush_interval: settings.flush_interval,
            label: Arc::clone(&self.name),
            timing: AttemptTiming::default(),
            credentials: self.endpoint.credentials.clone(),
        })
    }
}

/// The plugin-level transport settings, compiled.
pub struct CallSettings {
    pub client: ClientHandle,
    pub timeout: Duration,
    pub max_request_bytes: Option<u64>,
    pub max_duration: Option<Duration>,
    pub max_response_bytes: Option<u64>,
    pub flush_interval: Option<Duration>,
    pub logging: LoggingConfig,
}

impl CallSettings {
    /// Parses an AI plugin's config object: its own fields (`T`) and the shared transport fields
    /// ([`CommonConfig`]), refusing keys that belong to neither.
    pub fn parse_plugin<T: serde::de::DeserializeOwned>(
        config: &serde_json::Value,
        ctx: &dyn BuildContext,
    ) -> Result<(T, CallSettings), ConfigError> {
        if !config.is_object() {
            return Err(ConfigError::new("", "must be an object"));
        }
        let (common, left_by_common) = parse_config_part::<CommonConfig>(config)?;
        let (own, left_by_own) = parse_config_part::<T>(config)?;
        // A key is unknown when neither struct took it.
        if let Some(unknown) = left_by_own.iter().find(|key| left_by_common.contains(key)) {
            return Err(ConfigError::new(unknown.clone(), "unknown field"));
        }
        Ok((own, CallSettings::compile(&common, ctx)?))
    }

    /// Checks the shared fields and takes a connection pool for them from the core.
    pub fn compile(common: &CommonConfig, ctx: &dyn BuildContext) -> Result<CallSettings, ConfigError> {
        common.check()?;
        let client = ctx
            .client(ClientSettings {
                connect_timeout_ms: common.timeout,
                keepalive: common.keepalive,
                keepalive_timeout_ms: common.keepalive_timeout,
                keepalive_pool: common.keepalive_pool,
                max_requests_per_connection: 0,
                ssl_verify: common.ssl_verify,
            })
            .map_err(|err| ConfigError::new("ssl_verify", err))?;
        Ok(CallSettings {
            client,
            timeout: Duration::from_millis(common.timeout),
            max_request_bytes: common.max_req_body_size,
            max_duration: common.max_stream_duration_ms.map(Duration::from_millis),
            max_response_bytes: common.max_response_bytes,
            flush_interval: (common.streaming_flush_interval_ms > 0)
                .then(|| Duration::from_millis(common.streaming_flush_interval_ms)),
            logging: common.logging,
        })
    }
}

/// Whether `json` (one valid JSON value) is a string with no escape in it, so that its bytes
/// between the quotes are its text.
fn is_unescaped_string(json: &str) -> bool {
    json.len() >= 2 && json.starts_with('"') && !json.as_bytes()[1..].contains(&b'\\')
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly by design")]

    use super::*;
    use serde_json::json;

    fn with_model_option(model: &str) -> Instance {
        let options = json!({"model": model});
        let Value::Object(options) = options else { unreachable!() };
        let overrides = OverrideConfig::default();
        Instance::compile("t", "openai", &AuthConfig::default(), None, &options, &overrides, &BaseUrls::new()).unwrap()
    }

    #[test]
    fn a_model_option_equal_to_the_clients_leaves_the_body_as_it_came_however_it_is_spelled() {
        let instance = with_model_option("gpt-4o");
        for client in
            [r#"{"model":"gpt-4o","n":1}"#, r#"{"model":"gpt\u002d4o","n":1}"#, r#"{"model" : "\u0067pt-4o"}"#]
        {
            let body = RawBody::parse(Bytes::from(client)).unwrap();
            assert_eq!(instance.body_for(&body, Protocol::OpenAiChat), client.as_bytes(), "{client}");
        }
        let body = RawBody::parse(Bytes::from(r#"{"model":"gpt-4o-mini","n":1}"#)).unwrap();
        assert_eq!(&instance.body_for(&body, Protocol::OpenAiChat)[..], br#"{"model":"gpt-4o","n":1}"#);
    }

    #[test]
    fn only_a_string_without_escapes_is_taken_as_its_own_text() {
        assert!(is_unescaped_string(r#""gpt-4o""#));
        assert!(is_unescaped_string(r#""""#));
        assert!(!is_unescaped_string(r#""a\"b""#));
        assert!(!is_unescaped_string(r#""\u0067""#));
        assert!(!is_unescaped_string("12"));
        assert!(!is_unescaped_string("null"));
    }
}
