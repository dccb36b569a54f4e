//! `key-auth` (APISIX 3.x, priority 2500): identifies the caller by an API key.
//!
//! On a consumer the config is `{"key": "..."}` (a secret, indexed by the core); on a route or a
//! service it says where the key is read: `{"header": "apikey", "query": "apikey",
//! "hide_credentials": false}`. Rewrite phase: header first, then query parameter; no key → 401
//! `Missing API key in request`, an unknown key → 401 `Invalid API key in request` (OpenAI's error
//! shape on AI routes). The key is removed from the request when `hide_credentials` is on, and
//! always on AI routes, so a caller's key never reaches a provider.

use std::borrow::Cow;
use std::sync::Arc;

use async_trait::async_trait;
use http::header::HeaderName;
use http::{StatusCode, Uri};
use serde::Deserialize;
use switchyard_sdk::respond::error_response;
use switchyard_sdk::{
    derive_phases, parse_config, BuildContext, ConfigError, Ctx, ErrorStyle, Flow, Plugin, PluginError, PluginFactory,
    Request,
};

pub struct KeyAuthFactory;

/// The plugin's name, also the namespace of its credentials in the consumer directory.
pub const NAME: &str = "key-auth";

/// Either form: a consumer's credential or a route's settings (APISIX keeps one schema per form;
/// a config holding both is refused).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyAuthConfig {
    key: Option<String>,
    header: Option<String>,
    query: Option<String>,
    hide_credentials: Option<bool>,
}

impl PluginFactory for KeyAuthFactory {
    fn name(&self) -> &'static str {
        NAME
    }

    fn priority(&self) -> i32 {
        2500
    }

    fn secret_fields(&self) -> Vec<String> {
        vec!["key".into()]
    }

    fn authenticates(&self) -> bool {
        true
    }

    fn consumer_credential(&self, config: &serde_json::Value) -> Option<String> {
        config.get("key").and_then(|k| k.as_str()).map(str::to_string)
    }

    fn build(&self, config: &serde_json::Value, _ctx: &dyn BuildContext) -> Result<Arc<dyn Plugin>, ConfigError> {
        let config: KeyAuthConfig = parse_config(config)?;
        if let Some(key) = &config.key {
            if key.is_empty() {
                return Err(ConfigError::new("key", "must not be empty"));
            }
            if config.header.is_some() || config.query.is_some() || config.hide_credentials.is_some() {
                return Err(ConfigError::new("key", "a consumer's key-auth holds only `key`"));
            }
        }
        let header = config.header.as_deref().unwrap_or("apikey");
        let header = HeaderName::from_bytes(header.to_ascii_lowercase().as_bytes())
            .map_err(|_| ConfigError::new("header", "must be a valid header name"))?;
        let query = config.query.unwrap_or_else(|| "apikey".into());
        if query.is_empty() {
            return Err(ConfigError::new("query", "must not be empty"));
        }
        Ok(Arc::new(KeyAuth { header, query, hide_credentials: config.hide_credentials.unwrap_or(false) }))
    }
}

struct KeyAuth {
    header: HeaderName,
    query: String,
    hide_credentials: bool,
}

#[derive_phases]
#[async_trait]
impl Plugin for KeyAuth {
    async fn rewrite(&self, ctx: &mut Ctx, req: &mut Request) -> Result<Flow, PluginError> {
        let from_header = req.head.headers.get(&self.header).and_then(|v| v.to_str().ok()).map(Cow::Borrowed);
        let key = from_header.or_else(|| query_value(&req.head.uri, &self.query).map(Cow::Owned));
        let Some(key) = key.filter(|k| !k.is_empty()) else {
            return Ok(Flow::Respond(reject(ctx.error_style, "Missing API key in request")));
        };
        let consumer = ctx.consumers.as_ref().and_then(|c| c.by_credential(NAME, &key));
        // The key may borrow the request's headers, which are edited below.
        drop(key);
        let Some(consumer) = consumer else {
            return Ok(Flow::Respond(reject(ctx.error_style, "Invalid API key in request")));
        };
        ctx.consumer = Some(consumer);
        if self.hide_credentials || ctx.error_style == ErrorStyle::OpenAi {
            req.head.headers.remove(&self.header);
            if let Some(uri) = without_query_param(&req.head.uri, &self.query) {
                req.head.uri = uri;
            }
        }
        Ok(Flow::Continue)
    }
}

fn reject(style: ErrorStyle, message: &str) -> switchyard_sdk::Response {
    match style {
        // APISIX's own body for its plugins' rejections.
        ErrorStyle::Apisix => {
            switchyard_sdk::respond::json_response(StatusCode::UNAUTHORIZED, &serde_json::json!({ "message": message }))
        }
        ErrorStyle::OpenAi | ErrorStyle::Anthropic => {
            error_response(StatusCode::UNAUTHORIZED, style, message, "invalid_api_key")
        }
    }
}

/// The first value of query parameter `name`, decoded as a form (`%XX`, `+` as a space; an
/// invalid escape stays as it is).
fn query_value(uri: &Uri, name: &str) -> Option<String> {
    form_urlencoded::parse(uri.query()?.as_bytes()).find(|(key, _)| key == name).map(|(_, value)| value.into_owned())
}

/// `uri` without any `name=` parameter; `None` when it has none.
fn without_query_param(uri: &Uri, name: &str) -> Option<Uri> {
    let query = uri.query()?;
    let is_key = |pair: &&str| pair.split('=').next() == Some(name);
    if !query.split('&').any(|pair| is_key(&pair)) {
        return None;
    }
    let kept: Vec<&str> = query.split('&').filter(|pair| !is_key(pair)).collect();
    let path_and_query =
        if kept.is_empty() { uri.path().to_string() } else { format!("{}?{}", uri.path(), kept.join("&")) };
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = path_and_query.parse().ok();
    Uri::from_parts(parts).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_keys_are_read_decoded_and_removed() {
        let uri: Uri = "/v1/chat?a=1&apikey=k%2By+z&b=2".parse().unwrap();
        assert_eq!(query_value(&uri, "apikey").as_deref(), Some("k+y z"));
        assert_eq!(without_query_param(&uri, "apikey").unwrap().to_string(), "/v1/chat?a=1&b=2");
        let only: Uri = "/x?apikey=k".parse().unwrap();
        assert_eq!(without_query_param(&only, "apikey").unwrap().to_string(), "/x");
        assert!(without_query_param(&"/x?a=1".parse().unwrap(), "apikey").is_none());
        let invalid: Uri = "/x?apikey=%zz%4".parse().unwrap();
        assert_eq!(query_value(&invalid, "apikey").as_deref(), Some("%zz%4"));
    }

    #[test]
    fn consumer_and_route_forms_do_not_mix() {
        let factory = KeyAuthFactory;
        struct NoIo;
        impl BuildContext for NoIo {
            fn client(&self, _: switchyard_sdk::ClientSettings) -> Result<switchyard_sdk::ClientHandle, String> {
                Err("none".into())
            }
        }
        assert!(factory.build(&serde_json::json!({"key": "k"}), &NoIo).is_ok());
        assert!(factory.build(&serde_json::json!({"header": "x-key", "hide_credentials": true}), &NoIo).is_ok());
        assert_eq!(factory.build(&serde_json::json!({"key": "k", "header": "h"}), &NoIo).err().unwrap().path, "key");
        assert_eq!(factory.build(&serde_json::json!({"key": 1}), &NoIo).err().unwrap().path, "key");
        assert_eq!(factory.consumer_credential(&serde_json::json!({"key": "k"})).as_deref(), Some("k"));
        assert_eq!(factory.consumer_credential(&serde_json::json!({"header": "h"})), None);
    }
}
