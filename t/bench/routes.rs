//! What the bench configures and sends: route bodies for the admin API and the clients' chat
//! requests.

use std::net::SocketAddr;

use serde_json::{json, Value};

/// A client's chat request. Its `model` differs from the route's, so the gateway rewrites that
/// top-level field as it would for most real clients (the messages are copied verbatim).
pub const CHAT: &str = r#"{"model":"client-model","messages":[{"role":"system","content":"You are a helpful assistant."},{"role":"user","content":"What is the Fibonacci sequence?"}],"temperature":0.7}"#;

/// The same, streamed.
pub const CHAT_STREAM: &str = r#"{"model":"client-model","messages":[{"role":"system","content":"You are a helpful assistant."},{"role":"user","content":"What is the Fibonacci sequence?"}],"temperature":0.7,"stream":true}"#;

/// The provider key the gateway adds, and the direct client sends itself.
pub const PROVIDER_KEY: &str = "sk-bench-provider";

/// The chat completions endpoint of a mock port.
pub fn endpoint(mock: SocketAddr) -> String {
    format!("http://{mock}/v1/chat/completions")
}

/// An `ai-proxy` config sending to `mock`.
pub fn ai_proxy(mock: SocketAddr) -> Value {
    json!({
        "provider": "openai-compatible",
        "auth": {"header": {"Authorization": format!("Bearer {PROVIDER_KEY}")}},
        "options": {"model": "gpt-4o-mini"},
        "override": {"endpoint": endpoint(mock)}
    })
}

/// A route at `path` with `ai-proxy` to `mock`.
pub fn chat_route(path: &str, mock: SocketAddr) -> Value {
    json!({"paths": [path], "plugins": {"ai-proxy": ai_proxy(mock)}})
}

fn instance(name: &str, mock: SocketAddr, weight: u32, priority: i64) -> Value {
    json!({
        "name": name,
        "provider": "openai-compatible",
        "auth": {"header": {"Authorization": format!("Bearer {PROVIDER_KEY}")}},
        "options": {"model": "gpt-4o-mini"},
        "override": {"endpoint": endpoint(mock)},
        "weight": weight,
        "priority": priority,
        // A 429 must not take the instance out of rotation: each request should pay one fallback.
        "checks": {"passive": {"unhealthy": {"http_statuses": [500]}}}
    })
}

/// `ai-proxy-multi` over two healthy instances weighted 3:1.
pub fn multi_route(path: &str, mock: SocketAddr) -> Value {
    json!({"paths": [path], "plugins": {"ai-proxy-multi": {
        "instances": [instance("primary", mock, 3, 0), instance("secondary", mock, 1, 0)]
    }}})
}

/// `ai-proxy-multi` whose preferred instance answers 429, so every request falls back once.
pub fn fallback_route(path: &str, limited: SocketAddr, ok: SocketAddr) -> Value {
    json!({"paths": [path], "plugins": {"ai-proxy-multi": {
        "fallback_strategy": ["http_429"],
        "instances": [instance("limited", limited, 1, 1), instance("healthy", ok, 1, 0)]
    }}})
}
