//! The model API's compiled tables: caller keys by hash, and model aliases with the provider call
//! behind each. Built by the core from stored resources at every reload.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use http::HeaderName;
use serde_json::{Map, Value};
use sha2::Digest;

use switchyard_llm::config::OverrideConfig;
use switchyard_llm::instance::Instance;
use switchyard_llm::providers::{self, anthropic, AuthConfig, BaseUrls, Provider};
use switchyard_sdk::ConfigError;

/// A caller key: its id and the aliases it may use (`None`: all).
pub struct CallerKey {
    pub id: String,
    pub allowed: Option<HashSet<String>>,
}

impl CallerKey {
    pub fn may_use(&self, alias: &str) -> bool {
        self.allowed.as_ref().is_none_or(|allowed| allowed.contains(alias))
    }
}

/// How a model's provider key talks to its upstream.
pub enum Adapter {
    OpenAi,
    AzureOpenAi,
    Anthropic,
    /// Stored, but not served by this build (`bedrock`, `vertex`).
    Unavailable(String),
}

/// An alias and everything needed to call its upstream model.
pub struct Model {
    pub alias: String,
    pub provider: String,
    pub adapter: Adapter,
    /// The upstream call; `None` for an unavailable adapter. Its provider descriptor says which
    /// protocols it speaks (the others are converted, or refused).
    pub instance: Option<Instance>,
    /// Anthropic's `/v1/messages/count_tokens` (the `anthropic` adapter only).
    pub count_tokens: Option<Instance>,
    /// A vendor's custom reasoning field, renamed `reasoning_content`.
    pub reasoning_field: Option<String>,
    /// Client headers removed before the call (the provider key's `strip_headers`).
    pub strip: Vec<HeaderName>,
}

/// What the core hands over to describe one model alias.
pub struct ModelDef<'a> {
    pub alias: &'a str,
    pub provider: &'a str,
    pub model_name: &'a str,
    pub adapter: &'a str,
    pub secret: &'a str,
    pub api_base: Option<&'a str>,
    pub api_version: Option<&'a str>,
    pub strip_headers: &'a [String],
    pub reasoning_field: Option<&'a str>,
}

const AZURE_DEFAULT_API_VERSION: &str = "2024-10-21";

#[derive(Default)]
pub struct Catalog {
    keys: HashMap<[u8; 32], CallerKey>,
    models: HashMap<String, Arc<Model>>,
}

impl Catalog {
    pub fn add_key(&mut self, hash: [u8; 32], key: CallerKey) {
        self.keys.insert(hash, key);
    }

    /// Compiles and adds a model alias; the error names the provider key's field at fault.
    pub fn add_model(&mut self, def: &ModelDef<'_>) -> Result<(), ConfigError> {
        let model = compile(def)?;
        self.models.insert(def.alias.to_string(), Arc::new(model));
        Ok(())
    }

    /// The caller key whose sha256 is that of `presented`.
    pub fn authenticate(&self, presented: &str) -> Option<&CallerKey> {
        let hash: [u8; 32] = sha2::Sha256::digest(presented.as_bytes()).into();
        // The map finds the candidate by hash; the final comparison takes constant time.
        let (stored, key) = self.keys.get_key_value(&hash)?;
        let same = stored.iter().zip(&hash).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0;
        same.then_some(key)
    }

    pub fn model(&self, alias: &str) -> Option<&Arc<Model>> {
        self.models.get(alias)
    }

    /// Aliases `key` may use, sorted, with their provider labels.
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

fn compile(def: &ModelDef<'_>) -> Result<Model, ConfigError> {
    let base = def.api_base.map(|b| b.trim_end_matches('/').to_string());
    let header = |name: &str, value: String| AuthConfig {
        header: [(name.to_string(), value)].into(),
        query: Default::default(),
    };
    let bearer = header("Authorization", format!("Bearer {}", def.secret));
    let pinned = |model: &str| Map::from_iter([("model".to_string(), Value::String(model.to_string()))]);
    let instance = |provider: &'static Provider, auth: &AuthConfig, options: Map<String, Value>, endpoint: String| {
        let overrides = OverrideConfig { endpoint: Some(endpoint), ..OverrideConfig::default() };
        Instance::for_provider(def.alias, provider, auth, &options, &overrides, &BaseUrls::new())
            .map_err(|e| ConfigError::new("api_base", e.message))
    };
    let require_base = || base.clone().ok_or_else(|| ConfigError::new("api_base", "is required for this adapter"));
    let (adapter, instance, count_tokens) = match def.adapter {
        "openai" => {
            let base = require_base()?;
            // Only OpenAI itself is known to serve the Responses API; other vendors get chat.
            let provider = providers::lookup(if def.provider == "openai" { "openai" } else { "openai-compatible" })?;
            let chat = instance(provider, &bearer, pinned(def.model_name), format!("{base}/chat/completions"))?;
            (Adapter::OpenAi, Some(chat), None)
        }
        "azure-openai" => {
            let base = require_base()?;
            let version = def.api_version.unwrap_or(AZURE_DEFAULT_API_VERSION);
            let url = format!("{base}/openai/deployments/{}/chat/completions?api-version={version}", def.model_name);
            let chat = instance(
                providers::lookup("azure-openai")?,
                &header("api-key", def.secret.to_string()),
                Map::new(),
                url,
            )?;
            (Adapter::AzureOpenAi, Some(chat), None)
        }
        "anthropic" => {
            let base = require_base()?;
            let mut auth = header("x-api-key", def.secret.to_string());
            auth.header.insert("anthropic-version".into(), anthropic::API_VERSION.into());
            let messages = &providers::ANTHROPIC_MESSAGES;
            let call = instance(messages, &auth, pinned(def.model_name), format!("{base}/v1/messages"))?;
            // A path that is none of the protocol paths is used as it is: the count endpoint.
            let count = instance(messages, &auth, pinned(def.model_name), format!("{base}/v1/messages/count_tokens"))?;
            (Adapter::Anthropic, Some(call), Some(count))
        }
        other => (Adapter::Unavailable(other.to_string()), None, None),
    };
    let strip = def.strip_headers.iter().filter_map(|h| HeaderName::from_bytes(h.as_bytes()).ok()).collect();
    Ok(Model {
        alias: def.alias.to_string(),
        provider: def.provider.to_string(),
        adapter,
        instance,
        count_tokens,
        reasoning_field: def.reasoning_field.map(str::to_string),
        strip,
    })
}
