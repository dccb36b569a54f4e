//! `chash` keys through the proxy, on plain upstreams and on `ai-proxy-multi`'s `balancer`: each
//! variable kind resolves (a value sticks to one node and values spread over the nodes, which a
//! key read as nothing could not do), `hash_on: consumer` hashes the key-auth consumer, and a
//! request without the key falls back to its client address, as APISIX does.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr};

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::consumers::put_consumer;
use crate::harness::{MockUpstream, TestGateway};

/// Distinct key values sent per kind, each twice.
const VALUES: usize = 12;

/// Where a kind's value `n` goes in the request.
#[derive(Clone, Copy)]
enum Carrier {
    Host,
    /// In the path, below the route's prefix.
    Path,
    /// The whole query string.
    Query,
    /// `?user=<n>`.
    Arg,
    /// `x-user: <n>`.
    Header,
    /// `Cookie: sid=<n>`.
    Cookie,
    /// The client's address: `127.0.0.<n + 2>`.
    ClientAddress,
}

/// Every kind tested: `hash_on`, `key`, and where its value is carried.
const KINDS: [(&str, &str, Carrier); 11] = [
    ("vars", "host", Carrier::Host),
    ("vars", "uri", Carrier::Path),
    ("vars", "request_uri", Carrier::Query),
    ("vars", "query_string", Carrier::Query),
    ("vars", "arg_user", Carrier::Arg),
    ("vars", "http_x_user", Carrier::Header),
    ("vars", "cookie_sid", Carrier::Cookie),
    ("vars", "remote_addr", Carrier::ClientAddress),
    ("header", "x-user", Carrier::Header),
    ("cookie", "sid", Carrier::Cookie),
    // A request without the header hashes its client address.
    ("header", "x-absent", Carrier::ClientAddress),
];

/// A client whose connections come from `127.0.0.<last>`.
fn client_from(last: u8) -> reqwest::Client {
    let address = IpAddr::V4(Ipv4Addr::new(127, 0, 0, last));
    reqwest::Client::builder().no_proxy().local_address(address).build().unwrap()
}

/// Sends value `n` of `carrier` to the route under `prefix`; `post` sends a chat body.
async fn send(
    gw: &TestGateway,
    clients: &[reqwest::Client],
    prefix: &str,
    carrier: Carrier,
    n: usize,
    post: bool,
) -> reqwest::Response {
    let (client, path) = match carrier {
        Carrier::ClientAddress => (&clients[n], format!("{prefix}/x")),
        Carrier::Path => (&gw.http, format!("{prefix}/p{n}")),
        Carrier::Query => (&gw.http, format!("{prefix}/x?q={n}")),
        Carrier::Arg => (&gw.http, format!("{prefix}/x?user=u{n}")),
        _ => (&gw.http, format!("{prefix}/x")),
    };
    let method = if post { Method::POST } else { Method::GET };
    let mut request = client.request(method, gw.url(&path));
    request = match carrier {
        Carrier::Host => request.header("host", format!("h{n}.example.com")),
        Carrier::Header => request.header("x-user", format!("u{n}")),
        Carrier::Cookie => request.header("cookie", format!("a=1; sid=s{n}")),
        _ => request,
    };
    if post {
        request = request.body(r#"{"messages":[{"role":"user","content":"hi"}]}"#);
    }
    request.send().await.unwrap()
}

/// Sends each value of `carrier` twice to the route under `prefix`; per value, what answered
/// (the response header `answered_by` names it).
async fn owners(
    gw: &TestGateway,
    clients: &[reqwest::Client],
    prefix: &str,
    carrier: Carrier,
    post: bool,
    answered_by: &str,
) -> HashMap<usize, HashSet<String>> {
    let mut owners: HashMap<usize, HashSet<String>> = HashMap::new();
    for n in 0..VALUES {
        for _ in 0..2 {
            let response = send(gw, clients, prefix, carrier, n, post).await;
            assert_eq!(response.status(), StatusCode::OK, "{prefix}, value {n}");
            owners.entry(n).or_default().insert(response.headers()[answered_by].to_str().unwrap().to_string());
        }
    }
    owners
}

/// Asserts that each of `owners`' values went to one node every time, and that the values
/// spread over more than one node.
fn assert_sticky_and_spread(what: &str, owners: &HashMap<usize, HashSet<String>>) {
    for (n, seen) in owners {
        assert_eq!(seen.len(), 1, "{what}: value {n} moved between nodes: {seen:?}");
    }
    let nodes: HashSet<&String> = owners.values().flatten().collect();
    assert!(nodes.len() >= 2, "{what}: every value went to {nodes:?}: the key was not read");
}

fn clients() -> Vec<reqwest::Client> {
    (0..VALUES).map(|n| client_from(n as u8 + 2)).collect()
}

#[tokio::test]
async fn every_variable_kind_is_a_chash_key_on_plain_upstreams() {
    let gw = TestGateway::start().await;
    let mocks = [MockUpstream::start("a").await, MockUpstream::start("b").await, MockUpstream::start("c").await];
    let nodes: serde_json::Map<String, Value> = mocks.iter().map(|m| (m.node(), json!(1))).collect();
    let clients = clients();
    for (i, (hash_on, key, carrier)) in KINDS.into_iter().enumerate() {
        gw.put_route(json!({"id": format!("c{i}"), "uri": format!("/c{i}/*"),
            "upstream": {"type": "chash", "hash_on": hash_on, "key": key, "nodes": nodes}}))
            .await;
        let owners = owners(&gw, &clients, &format!("/c{i}"), carrier, false, "x-mock-name").await;
        assert_sticky_and_spread(&format!("hash_on {hash_on}, key {key}"), &owners);
    }
}

#[tokio::test]
async fn every_variable_kind_is_a_chash_key_on_ai_proxy_multi() {
    let gw = TestGateway::start().await;
    let mocks = [MockUpstream::llm("a").await, MockUpstream::llm("b").await, MockUpstream::llm("c").await];
    let instances: Vec<Value> = ["a", "b", "c"]
        .iter()
        .zip(&mocks)
        .map(|(name, mock)| {
            json!({"name": name, "provider": "openai-compatible", "weight": 1,
                "auth": {"header": {"Authorization": "Bearer sk-provider"}},
                "override": {"endpoint": format!("{}/v1/chat/completions", mock.base_url())}})
        })
        .collect();
    let clients = clients();
    for (i, (hash_on, key, carrier)) in KINDS.into_iter().enumerate() {
        gw.put_route(json!({"id": format!("m{i}"), "uri": format!("/m{i}/*"), "plugins": {"ai-proxy-multi": {
            "balancer": {"algorithm": "chash", "hash_on": hash_on, "key": key}, "instances": instances}}}))
            .await;
        let owners = owners(&gw, &clients, &format!("/m{i}"), carrier, true, "x-switchyard-instance").await;
        assert_sticky_and_spread(&format!("balancer hash_on {hash_on}, key {key}"), &owners);
    }
}

#[tokio::test]
async fn an_upstream_hashes_the_key_auth_consumer_and_else_the_client_address() {
    let gw = TestGateway::start().await;
    let mocks = [MockUpstream::start("a").await, MockUpstream::start("b").await, MockUpstream::start("c").await];
    let nodes: serde_json::Map<String, Value> = mocks.iter().map(|m| (m.node(), json!(1))).collect();
    let (status, reply) = gw
        .admin(
            Method::PUT,
            "/apisix/admin/upstreams/by-consumer",
            Some(json!({"type": "chash", "hash_on": "consumer", "nodes": nodes})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "no key is needed: {reply}");
    for n in 0..VALUES {
        put_consumer(
            &gw,
            json!({"username": format!("user{n}"), "plugins": {"key-auth": {"key": format!("key-{n}")}}}),
        )
        .await;
    }
    gw.put_route(json!({"id": "auth", "uri": "/auth", "upstream_id": "by-consumer", "plugins": {"key-auth": {}}}))
        .await;
    gw.put_route(json!({"id": "open", "uri": "/open", "upstream_id": "by-consumer"})).await;

    let mut by_consumer: HashMap<usize, HashSet<String>> = HashMap::new();
    let mut by_address: HashMap<usize, HashSet<String>> = HashMap::new();
    for (n, client) in clients().iter().enumerate() {
        for _ in 0..2 {
            // Every consumer's requests come from one address: only the consumer varies.
            let response = gw.http.get(gw.url("/auth")).header("apikey", format!("key-{n}")).send().await.unwrap();
            assert_eq!(response.status(), StatusCode::OK);
            by_consumer.entry(n).or_default().insert(response.headers()["x-mock-name"].to_str().unwrap().into());
            let response = client.get(gw.url("/open")).send().await.unwrap();
            assert_eq!(response.status(), StatusCode::OK);
            by_address.entry(n).or_default().insert(response.headers()["x-mock-name"].to_str().unwrap().into());
        }
    }
    assert_sticky_and_spread("hash_on consumer", &by_consumer);
    assert_sticky_and_spread("hash_on consumer, no consumer: the client address", &by_address);

    // The same consumer from another address stays on its node.
    let from_elsewhere = client_from(200).get(gw.url("/auth")).header("apikey", "key-3").send().await.unwrap();
    assert!(by_consumer[&3].contains(from_elsewhere.headers()["x-mock-name"].to_str().unwrap()));
}

#[tokio::test]
async fn chash_keys_that_name_nothing_are_refused_with_their_field() {
    let gw = TestGateway::start().await;
    for (body, field) in [
        (json!({"type": "chash", "key": "hostname", "nodes": {"127.0.0.1:1": 1}}), "key"),
        (json!({"type": "chash", "hash_on": "header", "key": "a b", "nodes": {"127.0.0.1:1": 1}}), "key"),
        (
            json!({"type": "chash", "hash_on": "vars_combinations", "key": "$host", "nodes": {"127.0.0.1:1": 1}}),
            "hash_on",
        ),
    ] {
        let (status, error) = gw.admin(Method::PUT, "/apisix/admin/upstreams/bad", Some(body)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{error}");
        let message = error["error_msg"].as_str().unwrap();
        assert!(message.starts_with(&format!("invalid configuration: {field}")), "{message}");
    }
    let multi = json!({"id": "bad", "uri": "/bad", "plugins": {"ai-proxy-multi": {
        "balancer": {"algorithm": "chash", "hash_on": "vars", "key": "nope"},
        "instances": [{"name": "a", "provider": "openai", "weight": 1,
            "auth": {"header": {"Authorization": "Bearer k"}}}]}}});
    let (status, error) = gw.admin(Method::PUT, "/apisix/admin/routes/bad", Some(multi)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(error["error_msg"].as_str().unwrap().contains("plugins.ai-proxy-multi.balancer.key"), "{error}");
}
