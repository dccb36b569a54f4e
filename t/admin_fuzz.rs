//! Generated admin bodies (APISIX `/apisix/admin` and AISIX `/admin/v1`): valid resources with one
//! part replaced, removed or added, JSON of any shape, and bytes that are no JSON at all. However
//! wrong, a body is answered below 500, and the node goes on serving what was valid. The inputs
//! come from a fixed seed, so a failure repeats; the count is bounded.

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use switchyard_sdk::testing::{json_key, json_value, spell};

use crate::harness::gateway::ADMIN_KEY;
use crate::harness::{MockUpstream, TestGateway};

/// Bodies sent, over all endpoints.
const BODIES: usize = 400;

/// A valid resource and the admin endpoints that take it.
struct Seed {
    value: Value,
    endpoints: &'static [(Method, &'static str)],
}

const ROUTE_ENDPOINTS: &[(Method, &str)] = &[
    (Method::PUT, "/apisix/admin/routes/fuzzed"),
    (Method::POST, "/apisix/admin/routes"),
    (Method::PUT, "/apisix/admin/routes?gateway_group_id=default"),
    (Method::PATCH, "/apisix/admin/routes/fuzzed"),
];

fn seeds(mock: &MockUpstream, provider_key_id: &str) -> Vec<Seed> {
    let endpoint = format!("{}/v1/chat/completions", mock.base_url());
    let ai_proxy = json!({"provider": "openai-compatible", "auth": {"header": {"Authorization": "Bearer k"}},
        "options": {"model": "m"}, "override": {"endpoint": endpoint}, "timeout": 3000,
        "logging": {"summaries": true}, "max_response_bytes": 1000});
    let instance = |name: &str| {
        json!({"name": name, "provider": "openai-compatible", "weight": 1, "priority": 0,
            "auth": {"header": {"Authorization": "Bearer k"}}, "override": {"endpoint": endpoint},
            "checks": {"passive": {"unhealthy": {"http_statuses": [500]}}}})
    };
    vec![
        Seed {
            value: json!({"id": "fuzzed", "uri": "/fuzzed", "methods": ["GET", "POST"], "priority": 1,
                "upstream": {"type": "roundrobin", "nodes": {mock.node(): 1}, "timeout": {"connect": 1, "read": 2},
                "pass_host": "rewrite", "upstream_host": "h"}}),
            endpoints: ROUTE_ENDPOINTS,
        },
        Seed {
            value: json!({"id": "fuzzed", "paths": ["/fuzzed/*"], "hosts": ["a.example"],
                "plugins": {"ai-proxy": ai_proxy, "proxy-buffering": {"disable_proxy_buffering": true}}}),
            endpoints: ROUTE_ENDPOINTS,
        },
        Seed {
            value: json!({"id": "fuzzed", "paths": ["/fuzzed"], "plugins": {"ai-proxy-multi": {
                "fallback_strategy": ["http_429", "http_5xx"], "balancer": {"algorithm": "chash", "hash_on": "header", "key": "x"},
                "instances": [instance("a"), instance("b")]}}}),
            endpoints: ROUTE_ENDPOINTS,
        },
        Seed {
            value: json!({"id": "fuzzed-svc", "name": "s", "path_prefix": "/p", "upstream": {"nodes": {mock.node(): 1}}}),
            endpoints: &[(Method::PUT, "/apisix/admin/services/fuzzed-svc"), (Method::POST, "/apisix/admin/services")],
        },
        Seed {
            value: json!({"display_name": "pk", "provider": "deepseek", "adapter": "openai", "secret": "s",
                "api_base": mock.base_url()}),
            endpoints: &[(Method::POST, "/admin/v1/provider_keys")],
        },
        Seed {
            value: json!({"display_name": "alias", "provider": "deepseek", "model_name": "m",
                "provider_key_id": provider_key_id, "response": {"reasoning_field": "reasoning"}}),
            endpoints: &[(Method::POST, "/admin/v1/models")],
        },
        Seed {
            value: json!({"key_hash": "a".repeat(64), "allowed_models": ["alias"]}),
            endpoints: &[(Method::POST, "/admin/v1/apikeys")],
        },
    ]
}

/// Every JSON pointer into `value`, the root included.
fn pointers(value: &Value, at: String, out: &mut Vec<String>) {
    match value {
        Value::Object(fields) => {
            for (key, item) in fields {
                pointers(item, format!("{at}/{}", key.replace('~', "~0").replace('/', "~1")), out);
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                pointers(item, format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
    out.push(at);
}

/// How one generated body is made.
#[derive(Debug, Clone)]
struct Recipe {
    seed: usize,
    endpoint: usize,
    /// Which part of the seed to change, and how: 0 replace, 1 remove, 2 add a field beside it.
    part: usize,
    how: u8,
    key: String,
    value: Value,
    /// 0..=6: the mutated seed; 7: any JSON; 8: any bytes.
    kind: u8,
    style: u64,
    bytes: Vec<u8>,
}

fn recipe() -> impl Strategy<Value = Recipe> {
    (
        (any::<usize>(), any::<usize>(), any::<usize>(), 0..3u8),
        (json_key(), json_value(), 0..9u8, any::<u64>(), prop::collection::vec(any::<u8>(), 0..64)),
    )
        .prop_map(|((seed, endpoint, part, how), (key, value, kind, style, bytes))| Recipe {
            seed,
            endpoint,
            part,
            how,
            key,
            value,
            kind,
            style,
            bytes,
        })
}

/// The body a recipe makes from `seed`.
fn body(recipe: &Recipe, seed: &Value) -> Vec<u8> {
    match recipe.kind {
        7 => spell(&recipe.value, recipe.style).into_bytes(),
        8 => recipe.bytes.clone(),
        _ => {
            let mut value = seed.clone();
            let mut parts = Vec::new();
            pointers(&value, String::new(), &mut parts);
            let pointer = &parts[recipe.part % parts.len()];
            let (parent, last) = pointer.rsplit_once('/').unwrap_or(("", ""));
            match recipe.how {
                0 => match value.pointer_mut(pointer) {
                    Some(slot) => *slot = recipe.value.clone(),
                    None => value = recipe.value.clone(),
                },
                1 => match value.pointer_mut(parent) {
                    Some(Value::Object(fields)) => {
                        fields.remove(&last.replace("~1", "/").replace("~0", "~"));
                    }
                    Some(Value::Array(items)) if !items.is_empty() => {
                        items.remove(last.parse::<usize>().unwrap_or(0) % items.len());
                    }
                    _ => {}
                },
                _ => {
                    if let Some(Value::Object(fields)) = value.pointer_mut(parent) {
                        fields.insert(recipe.key.clone(), recipe.value.clone());
                    }
                }
            }
            spell(&value, recipe.style).into_bytes()
        }
    }
}

async fn send(gw: &TestGateway, method: Method, path: &str, body: Vec<u8>) -> (StatusCode, String) {
    let response = gw
        .http
        .request(method, format!("http://{}{path}", gw.admin))
        .header("X-API-KEY", ADMIN_KEY)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    (response.status(), response.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_admin_bodies_never_make_a_5xx_and_the_node_keeps_serving() {
    let gw = TestGateway::start().await;
    let mock = MockUpstream::llm("fuzz").await;
    gw.put_route(json!({"id": "control", "paths": ["/control"], "upstream": {"nodes": {mock.node(): 1}}})).await;
    let (status, key) = send(
        &gw,
        Method::POST,
        "/admin/v1/provider_keys",
        json!({"display_name": "base", "provider": "deepseek", "adapter": "openai", "secret": "s",
            "api_base": mock.base_url()})
        .to_string()
        .into_bytes(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{key}");
    let key_id = serde_json::from_str::<Value>(&key).unwrap()["id"].as_str().unwrap().to_string();
    let seeds = seeds(&mock, &key_id);

    let mut runner = TestRunner::deterministic();
    let recipes = recipe();
    let mut accepted = 0;
    for _ in 0..BODIES {
        let recipe = recipes.new_tree(&mut runner).unwrap().current();
        let seed = &seeds[recipe.seed % seeds.len()];
        let (method, path) = &seed.endpoints[recipe.endpoint % seed.endpoints.len()];
        let body = body(&recipe, &seed.value);
        let (status, reply) = send(&gw, method.clone(), path, body.clone()).await;
        assert!(
            status.as_u16() < 500,
            "{method} {path} answered {status} {reply}\nto {}\n(recipe {recipe:?})",
            String::from_utf8_lossy(&body)
        );
        accepted += usize::from(status.is_success());
    }
    // Some bodies must have been valid, or the mutations never got past the first check.
    assert!(accepted > BODIES / 20, "only {accepted} of {BODIES} bodies were accepted");

    for path in ["/apisix/admin/routes", "/apisix/admin/services", "/admin/v1/models", "/admin/v1/provider_keys"] {
        let (status, reply) = send(&gw, Method::GET, path, Vec::new()).await;
        assert_eq!(status, StatusCode::OK, "GET {path}: {reply}");
    }
    gw.status().await;
    let (status, _) = gw.get("/control").await;
    assert_eq!(status, StatusCode::OK, "the node stopped serving its valid routes");
}
