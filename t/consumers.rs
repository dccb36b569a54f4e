//! Consumers and `key-auth`: admin CRUD with the key masked, keys by header and by query, the
//! 401s, `hide_credentials`, the consumer's plugins merged over the route's, and the caller's key
//! never reaching a provider.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use switchyard::config::ProviderConfig;

use crate::harness::{logs, MockUpstream, TestGateway};

const JACK_KEY: &str = "jack-key-0123456789";

/// A gateway whose `openai` provider is `mock`, with the access log on.
pub async fn gateway_for(mock: &MockUpstream) -> TestGateway {
    logs::capture();
    let base = mock.base_url();
    TestGateway::start_in(tempfile::tempdir().unwrap(), move |config| {
        config.providers.insert("openai".into(), ProviderConfig { base_url: Some(base.clone()) });
        config.log.access_log = true;
    })
    .await
}

pub async fn put_consumer(gw: &TestGateway, consumer: Value) -> Value {
    let (status, reply) = gw.admin(Method::PUT, "/apisix/admin/consumers", Some(consumer)).await;
    assert!(status.is_success(), "consumer PUT failed: {status} {reply}");
    reply
}

/// An `ai-proxy` route to the mock's `openai`, with `key-auth`, and `extra` plugins.
pub fn ai_route(id: &str, path: &str, key_auth: Value, extra: Value) -> Value {
    let mut plugins = json!({
        "ai-proxy": {"provider": "openai", "auth": {"header": {"Authorization": "Bearer sk-provider"}},
            "options": {"model": "route-model"}},
        "key-auth": key_auth,
    });
    if let (Value::Object(plugins), Value::Object(extra)) = (&mut plugins, extra) {
        plugins.extend(extra);
    }
    json!({"id": id, "paths": [path], "plugins": plugins})
}

pub async fn chat(gw: &TestGateway, path: &str, key: Option<&str>) -> reqwest::Response {
    let mut request = gw.http.post(gw.url(path)).body(r#"{"messages":[{"role":"user","content":"hi"}]}"#);
    if let Some(key) = key {
        request = request.header("apikey", key);
    }
    request.send().await.unwrap()
}

pub async fn json_of(response: reqwest::Response) -> Value {
    serde_json::from_str(&response.text().await.unwrap()).unwrap()
}

#[tokio::test]
async fn consumers_are_stored_listed_and_deleted_with_their_key_masked() {
    logs::capture();
    let gw = TestGateway::start().await;
    let consumer = json!({"username": "jack", "desc": "a caller", "labels": {"team": "a"},
        "plugins": {"key-auth": {"key": JACK_KEY}}});
    let (status, reply) = gw.admin(Method::PUT, "/apisix/admin/consumers", Some(consumer)).await;
    assert_eq!(status, StatusCode::CREATED, "{reply}");
    assert_eq!(reply["key"], "/apisix/consumers/jack");
    assert_eq!(reply["value"]["plugins"]["key-auth"]["key"], "***");
    assert!(reply["value"]["create_time"].is_u64());

    let (status, reply) = gw.admin(Method::GET, "/apisix/admin/consumers/jack", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(reply["value"]["username"], "jack");
    assert_eq!(reply["value"]["plugins"]["key-auth"]["key"], "***");
    let (_, list) = gw.admin(Method::GET, "/apisix/admin/consumers", None).await;
    assert_eq!(list["total"], 1);
    assert!(!list.to_string().contains(JACK_KEY));

    // GET → edit → PUT with the mask keeps the key (the route below still admits it).
    let mut edited = reply["value"].clone();
    edited["desc"] = json!("edited");
    let (status, reply) = gw.admin(Method::PUT, "/apisix/admin/consumers/jack", Some(edited)).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    let upstream = MockUpstream::start("plain").await;
    gw.put_route(json!({"id": "r", "paths": ["/r"], "plugins": {"key-auth": {}},
        "upstream": {"nodes": {upstream.node(): 1}}}))
        .await;
    let response = gw.http.get(gw.url("/r")).header("apikey", JACK_KEY).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);

    // The path and the body must agree; POST makes no consumer; a bad username is a 400.
    let (status, _) = gw.admin(Method::PUT, "/apisix/admin/consumers/jill", Some(json!({"username": "jack"}))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = gw.admin(Method::POST, "/apisix/admin/consumers", Some(json!({"username": "x"}))).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    let (status, _) = gw.admin(Method::PUT, "/apisix/admin/consumers", Some(json!({"username": "a.b"}))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // Two consumers with one key: refused, without the key in the answer.
    let twin = json!({"username": "jill", "plugins": {"key-auth": {"key": JACK_KEY}}});
    let (status, reply) = gw.admin(Method::PUT, "/apisix/admin/consumers", Some(twin)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{reply}");
    assert!(reply["error_msg"].as_str().unwrap().contains("already used by consumer `jack`"), "{reply}");
    assert!(!reply.to_string().contains(JACK_KEY));

    let (status, _) = gw.admin(Method::DELETE, "/apisix/admin/consumers/jack", None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = gw.admin(Method::GET, "/apisix/admin/consumers/jack", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let response = gw.http.get(gw.url("/r")).header("apikey", JACK_KEY).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "a deleted consumer's key no longer works");
    assert!(!logs::all().contains(JACK_KEY), "a consumer key reached the log");
}

#[tokio::test]
async fn key_auth_reads_header_then_query_and_hides_credentials_when_asked() {
    let gw = TestGateway::start().await;
    let upstream = MockUpstream::start("plain").await;
    put_consumer(&gw, json!({"username": "jack", "plugins": {"key-auth": {"key": JACK_KEY}}})).await;
    let route = |id: &str, key_auth: Value| {
        json!({"id": id, "paths": [format!("/{id}")], "plugins": {"key-auth": key_auth},
            "upstream": {"nodes": {upstream.node(): 1}}})
    };
    gw.put_route(route("shown", json!({}))).await;
    gw.put_route(route("hidden", json!({"header": "X-Team-Key", "query": "k", "hide_credentials": true}))).await;

    let response = gw.http.get(gw.url("/shown")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(json_of(response).await, json!({"message": "Missing API key in request"}));
    let response = gw.http.get(gw.url("/shown")).header("apikey", "nope").send().await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(json_of(response).await, json!({"message": "Invalid API key in request"}));
    assert_eq!(upstream.hits(), 0);

    // hide_credentials off (APISIX's default): the key goes on to a plain upstream.
    let response = gw.http.get(gw.url(&format!("/shown?apikey={JACK_KEY}&a=1"))).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(upstream.last().path, format!("/shown?apikey={JACK_KEY}&a=1"));
    let response = gw.http.get(gw.url("/shown")).header("apikey", JACK_KEY).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(upstream.last().headers["apikey"], JACK_KEY);

    // hide_credentials on: neither the header nor the query parameter goes on.
    let response = gw.http.get(gw.url("/hidden")).header("x-team-key", JACK_KEY).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(!upstream.last().headers.contains_key("x-team-key"));
    let response = gw.http.get(gw.url(&format!("/hidden?a=1&k={JACK_KEY}"))).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(upstream.last().path, "/hidden?a=1");
    let response = gw.http.get(gw.url("/hidden")).header("apikey", JACK_KEY).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "this route reads X-Team-Key, not apikey");
}

#[tokio::test]
async fn on_ai_routes_the_key_never_reaches_the_provider_and_errors_are_openai_shaped() {
    let mock = MockUpstream::llm("openai").await;
    let gw = gateway_for(&mock).await;
    put_consumer(&gw, json!({"username": "jack", "plugins": {"key-auth": {"key": JACK_KEY}}})).await;
    gw.put_route(ai_route("ai", "/ai", json!({}), json!({}))).await;

    let response = chat(&gw, "/ai", None).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let body = json_of(response).await;
    assert_eq!(body["error"]["message"], "Missing API key in request");
    let body = json_of(chat(&gw, "/ai", Some("wrong")).await).await;
    assert_eq!(body["error"]["message"], "Invalid API key in request");

    let response = chat(&gw, "/ai", Some(JACK_KEY)).await;
    assert_eq!(response.status(), StatusCode::OK);
    let response = gw.http.post(gw.url(&format!("/ai?apikey={JACK_KEY}"))).body(r#"{"messages":[]}"#).send().await;
    assert_eq!(response.unwrap().status(), StatusCode::OK);
    for seen in mock.seen() {
        let sent = format!("{:?} {} {}", seen.headers, seen.path, String::from_utf8_lossy(&seen.body));
        assert!(!sent.contains(JACK_KEY), "the caller's key reached the provider: {sent}");
        assert_eq!(seen.headers["authorization"], "Bearer sk-provider");
    }
    logs::access_line("ai").await;
    let logged = logs::all();
    assert!(logged.lines().any(|l| l.contains("route=ai ") && l.contains("consumer=jack")), "no consumer logged");
}

#[tokio::test]
async fn a_consumers_plugins_replace_the_routes_for_its_requests() {
    let mock = MockUpstream::llm("openai").await;
    let gw = gateway_for(&mock).await;
    put_consumer(&gw, json!({"username": "jack", "plugins": {"key-auth": {"key": JACK_KEY}}})).await;
    let vip = json!({"username": "vip", "plugins": {"key-auth": {"key": "vip-key-0123456789"},
        "ai-proxy": {"provider": "openai", "auth": {"header": {"Authorization": "Bearer sk-vip"}},
            "options": {"model": "vip-model"}}}});
    let reply = put_consumer(&gw, vip).await;
    assert_eq!(reply["value"]["plugins"]["ai-proxy"]["auth"]["header"]["Authorization"], "***");
    gw.put_route(ai_route("merge", "/merge", json!({}), json!({}))).await;

    assert_eq!(chat(&gw, "/merge", Some(JACK_KEY)).await.status(), StatusCode::OK);
    let seen = mock.last();
    assert_eq!(serde_json::from_slice::<Value>(&seen.body).unwrap()["model"], "route-model");
    assert_eq!(seen.headers["authorization"], "Bearer sk-provider");

    assert_eq!(chat(&gw, "/merge", Some("vip-key-0123456789")).await.status(), StatusCode::OK);
    let seen = mock.last();
    assert_eq!(serde_json::from_slice::<Value>(&seen.body).unwrap()["model"], "vip-model");
    assert_eq!(seen.headers["authorization"], "Bearer sk-vip");
}

#[tokio::test]
async fn chash_on_consumer_keeps_each_consumer_on_one_instance_and_spreads_consumers() {
    let mocks = [MockUpstream::llm("a").await, MockUpstream::llm("b").await, MockUpstream::llm("c").await];
    let gw = TestGateway::start().await;
    let users = ["alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi"];
    for user in users {
        put_consumer(&gw, json!({"username": user, "plugins": {"key-auth": {"key": format!("{user}-key")}}})).await;
    }
    let instances: Vec<Value> = ["a", "b", "c"]
        .iter()
        .zip(&mocks)
        .map(|(name, mock)| {
            json!({"name": name, "provider": "openai-compatible", "weight": 1,
                "auth": {"header": {"Authorization": "Bearer sk-provider"}}, "options": {"model": "m"},
                "override": {"endpoint": format!("{}/v1/chat/completions", mock.base_url())}})
        })
        .collect();
    gw.put_route(json!({"id": "sticky", "paths": ["/sticky"], "plugins": {"key-auth": {},
        "ai-proxy-multi": {"balancer": {"algorithm": "chash", "hash_on": "consumer"}, "instances": instances}}}))
        .await;
    // Every request comes from 127.0.0.1: only the consumer can tell them apart.
    let mut owners = std::collections::HashSet::new();
    for user in users {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..4 {
            let response = chat(&gw, "/sticky", Some(&format!("{user}-key"))).await;
            assert_eq!(response.status(), StatusCode::OK);
            seen.insert(response.headers()["x-switchyard-instance"].to_str().unwrap().to_string());
        }
        assert_eq!(seen.len(), 1, "{user} moved between instances: {seen:?}");
        owners.extend(seen);
    }
    assert!(owners.len() >= 2, "consumers spread over the instances: {owners:?}");
}
