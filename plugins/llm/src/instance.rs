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
use crate::providers::{self, anthropic, openai, AuthConfig, BaseUrls, Endpoint, Provider, WireFamily};
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

/// The protocol names `override.request_body` is keyed by (APISIX 3.18); `openai` is accepted as
/// an alias of `openai-chat`.
pub const PROTOCOLS: [&str; 6] =
    ["openai-chat", "openai-responses", "openai-embeddings", "anthropic-messages", "bedrock-converse", "passthrough"];

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
    request_body: Option<Value>,
    force_request_body: bool,
}

impl Instance {
    /// Compiles an instance of a named provider; errors carry paths relative to the object
    /// holding these fields.
    pub fn compile(
        name: &str,
        provider: &str,
        auth: &AuthConfig,
        options: &Map<String, Value>,
        overrides: &OverrideConfig,
        base_urls: &BaseUrls,
    ) -> Result<Instance, ConfigError> {
        Self::for_provider(name, providers::lookup(provider)?, auth, options, overrides, base_urls)
    }

    /// Compiles an instance of a provider descriptor (the model API's adapters use this).
    pub fn for_provider(
        name: &str,
        provider: &'static Provider,
        auth: &AuthConfig,
        options: &Map<String, Value>,
        overrides: &OverrideConfig,
        base_urls: &BaseUrls,
    ) -> Result<Instance, ConfigError> {
        let endpoint = Endpoint::compile(provider, auth, overrides.endpoint.as_deref(), base_urls)?;
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
        let target = match endpoint.provider.family {
            WireFamily::OpenAi => "openai-chat",
            WireFamily::AnthropicMessages => "anthropic-messages",
        };
        let mut request_body = None;
        for (protocol, patch) in overrides.request_body.iter().flatten() {
            let here = || format!("override.request_body.{protocol}");
            let canonical = match protocol.as_str() {
                "openai" => "openai-chat",
                known if PROTOCOLS.contains(&known) => known,
                _ => {
                    return Err(ConfigError::new(here(), format!("unknown protocol; one of: {}", PROTOCOLS.join(", "))))
                }
            };
            if !patch.is_object() {
                return Err(ConfigError::new(here(), "must be an object"));
            }
            // A patch keyed by another protocol than the one this provider is sent is ignored.
            if canonical == target {
                request_body = Some(patch.clone());
            }
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
            request_body,
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

    /// Builds the upstream request for one attempt from the client's original body. The client's
    /// bytes go out untouched when no rule changes them.
    pub fn upstream_request(&self, req: &Request, body: &RawBody, settings: &CallSettings) -> UpstreamRequest {
        self.request_with(req, self.body_for(body), settings, &[])
    }

    /// The body for this instance: the client's, with options and overrides applied, in this
    /// instance's wire format.
    pub fn body_for(&self, body: &RawBody) -> Bytes {
        let mut edit = body.edit();
        for option in &self.options {
            let same = match edit.raw_unchanged(&option.key) {
                Some(raw) if raw == option.json => true,
                _ => edit.current(&option.key).as_ref() == Some(&option.value),
            };
            if !same {
                edit.set(&option.key, option.value.clone());
            }
        }
        if let Some(max_tokens) = self.max_tokens {
            if edit.current("max_tokens").and_then(|v| v.as_u64()) != Some(max_tokens) {
                edit.set("max_tokens", max_tokens.into());
            }
        }
        let family = self.endpoint.provider.family;
        if let Some(Value::Object(patch)) = &self.request_body {
            if family == WireFamily::OpenAi {
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
        }
        if self.endpoint.provider.drops_model && edit.current("model").is_some() {
            edit.remove("model");
        }
        match family {
            WireFamily::OpenAi => {
                let streamed = match edit.raw_unchanged("stream") {
                    Some(raw) => raw == "true",
                    None => edit.current("stream") == Some(Value::Bool(true)),
                };
                if streamed {
                    openai::request_usage_in_stream(&mut edit);
                }
                edit.into_bytes()
            }
            WireFamily::AnthropicMessages => {
                let openai: Value = serde_json::from_slice(&edit.into_bytes()).unwrap_or(Value::Null);
                let mut messages = anthropic::request_from_openai(&openai);
                if let Some(patch) = &self.request_body {
                    deep_merge(&mut messages, patch, self.force_request_body);
                }
                Bytes::from(messages.to_string())
            }
        }
    }

    /// The upstream request carrying `body`: the client's headers less its credentials (and
    /// `also_strip`), then the instance's auth.
    pub fn request_with(
        &self,
        req: &Request,
        body: Bytes,
        settings: &CallSettings,
        also_strip: &[HeaderName],
    ) -> UpstreamRequest {
        let mut headers = forwardable(&req.head.headers, &STRIPPED);
        for name in also_strip {
            headers.remove(name);
        }
        for (name, value) in &self.endpoint.auth_headers {
            headers.insert(name.clone(), value.clone());
        }
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        UpstreamRequest {
            method: Method::POST,
            url: self.endpoint.uri.clone(),
            headers,
            body,
            client: settings.client.clone(),
            timeout: settings.timeout,
            max_duration: settings.max_duration,
            max_response_bytes: settings.max_response_bytes,
            flush_interval: settings.flush_interval,
            label: Arc::clone(&self.name),
            timing: AttemptTiming::default(),
        }
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
