//! The model API's compiled resources: provider keys, models (an alias and the provider call
//! behind it) and caller keys, and the [`Catalog`] of one snapshot that the `model-api` plugin
//! serves from. The core compiles each resource when it changes and assembles the catalog.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, HeaderName, Uri};
use serde_json::{Map, Value};
use sha2::Digest;
use subtle::ConstantTimeEq;

use super::adapter::{Adapter, AZURE_DEFAULT_API_VERSION};
use super::cooldown::Cooldown;
use super::quota::{Quota, RateLimit};
use super::routing::{Routing, RoutingAlias};
use crate::ai_proxy_multi::config::takes_prefill_by_default;
use crate::health::Health;
use switchyard_llm::config::OverrideConfig;
use switchyard_llm::instance::Instance;
use switchyard_llm::providers::{bedrock, vertex, Endpoint};
use switchyard_sdk::{ConfigError, ModelLabels};

/// A provider key's fields, checked and normalised by the core.
pub struct ProviderKeyDef<'a> {
    pub adapter: Adapter,
    pub secret: &'a str,
    pub api_base: Option<&'a str>,
    pub api_version: Option<&'a str>,
    pub strip_headers: &'a [String],
    pub reasoning_field: Option<&'a str>,
}

/// A provider key, compiled: its credential as ready headers and where its models' calls go.
pub struct ProviderKey {
    adapter: Adapter,
    /// The whole endpoint of a key whose secret says where its calls go and how they are
    /// authenticated; its models share it. `vertex`: project, region and service account (so
    /// one token cache); `bedrock`: the region's host (or `api_base`), signed with the secret's
    /// AWS credentials, every model calling it with its own model path.
    endpoint: Option<Endpoint>,
    base: Option<String>,
    api_version: String,
    auth_headers: HeaderMap,
    strip: Vec<HeaderName>,
    reasoning_field: Option<String>,
}

impl ProviderKey {
    /// Compiles a provider key. Errors name the provider key's field at fault and never repeat
    /// the secret.
    pub fn compile(def: &ProviderKeyDef<'_>) -> Result<ProviderKey, ConfigError> {
        let auth_headers = def.adapter.auth_headers(def.secret)?;
        let base = def.api_base.map(|b| b.trim_end_matches('/').to_string());
        let api_version = def.api_version.unwrap_or(AZURE_DEFAULT_API_VERSION).to_string();
        let endpoint = match (def.adapter, def.adapter.provider("")) {
            (Adapter::Vertex, _) => Some(vertex::key_endpoint(def.secret, base.as_deref())?),
            (Adapter::Bedrock, Some(provider)) => Some(bedrock::key_endpoint(provider, def.secret, base.as_deref())?),
            _ => None,
        };
        if endpoint.is_none() {
            let base = base.as_deref().ok_or_else(|| {
                ConfigError::new("api_base", format!("is required for adapter {}", def.adapter.name()))
            })?;
            // Every model of this key calls these URLs: checked now, with a stand-in model name.
            let probe = def.adapter.chat_url(base, "model", &api_version).unwrap_or_default();
            if probe.parse::<Uri>().is_err() {
                let field =
                    if api_version.contains(|c: char| !c.is_ascii_graphic()) { "api_version" } else { "api_base" };
                return Err(ConfigError::new(field, "does not make a valid upstream URL"));
            }
        }
        let mut strip = Vec::with_capacity(def.strip_headers.len());
        for (i, name) in def.strip_headers.iter().enumerate() {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| ConfigError::new(format!("strip_headers[{i}]"), "is not a header name"))?;
            strip.push(name);
        }
        Ok(ProviderKey {
            adapter: def.adapter,
            endpoint,
            base,
            api_version,
            auth_headers,
            strip,
            reasoning_field: def.reasoning_field.map(str::to_string),
        })
    }
}

/// A direct model's own fields.
pub struct ModelDef<'a> {
    pub alias: &'a str,
    pub provider: &'a str,
    pub model_name: &'a str,
    /// The response head's timeout (`None`: the model API's default).
    pub timeout: Option<Duration>,
    /// Streams: the longest wait for the first event and between two events.
    pub stream_timeout: Option<Duration>,
    pub cooldown: &'a Cooldown,
    pub rate_limit: Option<&'a RateLimit>,
}

/// An alias and everything needed to call its upstream model.
pub struct Model {
    pub alias: String,
    pub provider: String,
    pub adapter: Adapter,
    /// The upstream call; `None` for an adapter this build does not serve. Its provider
    /// descriptor says which protocols it speaks (the others are converted, or refused).
    pub instance: Option<Arc<Instance>>,
    /// Anthropic's `/v1/messages/count_tokens` (the `anthropic` adapter only).
    pub count_tokens: Option<Arc<Instance>>,
    /// A vendor's custom reasoning field, renamed `reasoning_content`.
    pub reasoning_field: Option<String>,
    /// Client headers removed before the call (the provider key's `strip_headers`).
    pub strip: Vec<HeaderName>,
    pub timeout: Option<Duration>,
    pub stream_timeout: Option<Duration>,
    /// Its cooldown state, shared by every routing alias that targets it.
    pub health: Arc<Health>,
    /// Continues a final assistant message (else takes a broken stream up by a restart).
    pub accepts_prefill: bool,
    /// The alias and the upstream model name, as metric labels (both come from config).
    pub labels: ModelLabels,
    /// Its `rate_limit`, shared by every caller (`None`: unlimited).
    pub quota: Option<Arc<Quota>>,
}

/// The limits of the model `alias`: its counters are the model's, whoever calls it.
pub fn model_quota(alias: &str, rate_limit: Option<&RateLimit>) -> Option<Arc<Quota>> {
    Quota::compile(rate_limit?, &format!("model-api:model:{alias}"), format!("model `{alias}`"))
}

/// The limits of the API key resource `id`.
pub fn key_quota(id: &str, rate_limit: Option<&RateLimit>) -> Option<Arc<Quota>> {
    Quota::compile(rate_limit?, &format!("model-api:key:{id}"), "this API key".into())
}

impl Model {
    /// Compiles a model against its provider key; errors name the model's field at fault.
    pub fn compile(def: &ModelDef<'_>, key: &ProviderKey) -> Result<Model, ConfigError> {
        let adapter = key.adapter;
        let provider = adapter.provider(def.provider);
        let instance = |url: Option<String>| -> Result<Option<Arc<Instance>>, ConfigError> {
            let (Some(url), Some(provider)) = (url, provider) else { return Ok(None) };
            // Checked as it is: the URL parser would quietly escape what does not fit.
            let fits = url.parse::<Uri>().is_ok();
            let endpoint = Endpoint::at(provider, &url, key.auth_headers.clone())
                .ok()
                .filter(|_| fits)
                .ok_or_else(|| ConfigError::new("model_name", "does not fit in the upstream URL"))?;
            // Azure names the model by its deployment in the URL; the others in the body.
            let options = if provider.drops_model {
                Map::new()
            } else {
                Map::from_iter([("model".to_string(), Value::String(def.model_name.to_string()))])
            };
            Instance::at_endpoint(def.alias, endpoint, &options, &OverrideConfig::default()).map(|i| Some(Arc::new(i)))
        };
        let base = key.base.as_deref().unwrap_or_default();
        let chat = match &key.endpoint {
            // The model names the path of each call (escaped then), not the endpoint.
            Some(endpoint) => {
                let options = Map::from_iter([("model".to_string(), Value::String(def.model_name.to_string()))]);
                let instance =
                    Instance::at_endpoint(def.alias, endpoint.clone(), &options, &OverrideConfig::default())?;
                Some(Arc::new(instance))
            }
            None => instance(adapter.chat_url(base, def.model_name, &key.api_version))?,
        };
        Ok(Model {
            alias: def.alias.to_string(),
            provider: def.provider.to_string(),
            adapter,
            instance: chat,
            count_tokens: instance(adapter.count_tokens_url(base))?,
            reasoning_field: key.reasoning_field.clone(),
            strip: key.strip.clone(),
            timeout: def.timeout,
            stream_timeout: def.stream_timeout,
            health: Arc::new(def.cooldown.health()),
            labels: ModelLabels { requested: Some(Arc::from(def.alias)), upstream: Some(Arc::from(def.model_name)) },
            quota: model_quota(def.alias, def.rate_limit),
            accepts_prefill: match adapter {
                Adapter::Anthropic => true,
                Adapter::AzureOpenAi => false,
                _ => takes_prefill_by_default(def.provider),
            },
        })
    }
}

/// A caller key: its id, the sha256 of the key, and the aliases it may use (`None`: all).
pub struct CallerKey {
    /// The API key resource's id: shared, as it labels the caller's metrics (never the key).
    pub id: Arc<str>,
    pub hash: [u8; 32],
    pub allowed: Option<HashSet<String>>,
    /// Its `rate_limit` (`None`: unlimited).
    pub quota: Option<Arc<Quota>>,
}

impl CallerKey {
    pub fn may_use(&self, alias: &str) -> bool {
        self.allowed.as_ref().is_none_or(|allowed| allowed.contains(alias))
    }
}

/// The model API's tables in one snapshot: caller keys by hash, models and routing aliases by
/// alias. Hashed with foldhash (seeded per process) rather than SipHash: every call looks up
/// two of them, and only admins add entries, so callers cannot flood a bucket.
#[derive(Default)]
pub struct Catalog {
    keys: HashMap<[u8; 32], Arc<CallerKey>, Fold>,
    models: HashMap<String, Arc<Model>, Fold>,
    routing: HashMap<String, RoutingAlias, Fold>,
}

pub type Fold = foldhash::fast::RandomState;

impl Catalog {
    /// Adds a caller key; `Err` with the id of the key already holding the same hash.
    pub fn add_key(&mut self, key: Arc<CallerKey>) -> Result<(), String> {
        if let Some(holder) = self.keys.get(&key.hash) {
            return Err(holder.id.to_string());
        }
        self.keys.insert(key.hash, key);
        Ok(())
    }

    /// Adds a model; `false` when its alias is taken already.
    pub fn add_model(&mut self, model: Arc<Model>) -> bool {
        if self.models.contains_key(&model.alias) {
            return false;
        }
        self.models.insert(model.alias.clone(), model);
        true
    }

    /// Adds a routing alias, once every direct model is in: its targets must be direct models
    /// that are served. `Err` says why it cannot be served, naming the field.
    pub fn add_routing(&mut self, routing: Arc<Routing>) -> Result<(), String> {
        if self.models.contains_key(&routing.alias) || self.routing.contains_key(&routing.alias) {
            return Err("display_name: is already used by another model".into());
        }
        let mut targets = Vec::new();
        for (i, alias) in routing.target_aliases().enumerate() {
            match self.models.get(alias) {
                Some(model) if model.instance.is_some() => targets.push(Arc::clone(model)),
                Some(_) => {
                    return Err(format!(
                        "routing.targets[{i}].model: `{alias}` is not served: its adapter is not available"
                    ))
                }
                None if self.routing.contains_key(alias) => {
                    return Err(format!("routing.targets[{i}].model: `{alias}` is a routing model, not a direct one"))
                }
                None => return Err(format!("routing.targets[{i}].model: model `{alias}` does not exist")),
            }
        }
        self.routing.insert(routing.alias.clone(), RoutingAlias { routing, targets });
        Ok(())
    }

    /// Every routing alias.
    pub fn routing_aliases(&self) -> impl Iterator<Item = (&str, &RoutingAlias)> {
        self.routing.iter().map(|(alias, routed)| (alias.as_str(), routed))
    }

    /// The caller key whose sha256 is that of `presented`.
    pub fn authenticate(&self, presented: &str) -> Option<&CallerKey> {
        let hash: [u8; 32] = sha2::Sha256::digest(presented.as_bytes()).into();
        // The map finds the candidate by hash; the final comparison takes constant time.
        let (stored, key) = self.keys.get_key_value(&hash)?;
        bool::from(stored.ct_eq(&hash)).then_some(key.as_ref())
    }

    pub fn model(&self, alias: &str) -> Option<&Arc<Model>> {
        self.models.get(alias)
    }

    /// Direct aliases `key` may use, sorted, with their provider labels. Routing aliases are not
    /// listed, as AISIX does not list them.
    pub fn models_for(&self, key: &CallerKey) -> Vec<(&str, &str)> {
        let mut out: Vec<(&str, &str)> = self
            .models
            .values()
            .filter(|m| key.may_use(&m.alias))
            .map(|m| (m.alias.as_str(), m.provider.as_str()))
            .collect();
        out.sort_unstable();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(adapter: Adapter, api_base: Option<&str>, api_version: Option<&str>) -> Result<ProviderKey, ConfigError> {
        ProviderKey::compile(&ProviderKeyDef {
            adapter,
            secret: "sk-1",
            api_base,
            api_version,
            strip_headers: &[],
            reasoning_field: None,
        })
    }

    #[test]
    fn each_adapter_calls_its_urls_with_its_credential() {
        use switchyard_llm::protocol::Protocol;
        let cooldown = Cooldown::default();
        let def = ModelDef {
            alias: "a",
            provider: "p",
            model_name: "m-1",
            timeout: None,
            stream_timeout: None,
            cooldown: &cooldown,
            rate_limit: None,
        };
        let url = |instance: &Option<Arc<Instance>>, protocol| {
            instance.as_ref().unwrap().endpoint.uri_for(protocol).map(|u| u.to_string())
        };
        let openai = Model::compile(&def, &key(Adapter::OpenAi, Some("http://h/v1"), None).unwrap()).unwrap();
        let chat = openai.instance.as_ref().unwrap();
        assert_eq!(url(&openai.instance, Protocol::OpenAiChat).unwrap(), "http://h/v1/chat/completions");
        assert_eq!(url(&openai.instance, Protocol::OpenAiEmbeddings).unwrap(), "http://h/v1/embeddings");
        assert_eq!(url(&openai.instance, Protocol::OpenAiResponses), None, "only OpenAI itself speaks Responses");
        assert_eq!(chat.endpoint.auth_headers["authorization"], "Bearer sk-1");
        assert_eq!(chat.model(), Some("m-1"));
        assert!(openai.count_tokens.is_none());
        let real_openai = ModelDef { provider: "openai", model_name: "gpt-4o", ..def };
        let real = Model::compile(&real_openai, &key(Adapter::OpenAi, Some("http://h/v1"), None).unwrap()).unwrap();
        assert_eq!(url(&real.instance, Protocol::OpenAiResponses).unwrap(), "http://h/v1/responses");
        let azure = Model::compile(&def, &key(Adapter::AzureOpenAi, Some("http://az"), None).unwrap()).unwrap();
        assert_eq!(
            url(&azure.instance, Protocol::OpenAiChat).unwrap(),
            "http://az/openai/deployments/m-1/chat/completions?api-version=2024-10-21"
        );
        assert_eq!(
            url(&azure.instance, Protocol::OpenAiEmbeddings).unwrap(),
            "http://az/openai/deployments/m-1/embeddings?api-version=2024-10-21"
        );
        let claude = Model::compile(&def, &key(Adapter::Anthropic, Some("http://c"), None).unwrap()).unwrap();
        assert_eq!(url(&claude.instance, Protocol::AnthropicMessages).unwrap(), "http://c/v1/messages");
        assert_eq!(
            url(&claude.count_tokens, Protocol::AnthropicMessages).unwrap(),
            "http://c/v1/messages/count_tokens"
        );
    }

    #[test]
    fn fields_that_make_no_url_are_named() {
        assert_eq!(key(Adapter::OpenAi, None, None).err().unwrap().path, "api_base");
        assert_eq!(key(Adapter::AzureOpenAi, Some("http://az"), Some("2024 01")).err().unwrap().path, "api_version");
        let azure = key(Adapter::AzureOpenAi, Some("http://az"), None).unwrap();
        let cooldown = Cooldown::default();
        let def = ModelDef {
            alias: "a",
            provider: "p",
            model_name: "my deployment",
            timeout: None,
            stream_timeout: None,
            cooldown: &cooldown,
            rate_limit: None,
        };
        assert_eq!(Model::compile(&def, &azure).err().unwrap().path, "model_name");
    }
}
