//! What routing aliases add on the model API side: access, listing, strategies, resolution.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use switchyard::resource::api_key::sha256_hex;

use crate::harness::faulty::FaultyUpstream;
use crate::harness::TestGateway;

/// A model API with two direct models on `mock` and a routing alias over them.
async fn routed(gw: &TestGateway, mock: &FaultyUpstream, strategy: &str, weights: [u32; 2]) {
    let key = gw
        .create_v1(
            "/admin/v1/provider_keys",
            json!({"display_name": "pk", "provider": "vllm", "adapter": "openai",
            "secret": "key", "api_base": format!("http://{}/v1", mock.addr)}),
        )
        .await;
    for name in ["a", "b"] {
        gw.create_v1(
            "/admin/v1/models",
            json!({"display_name": name, "provider": "vllm", "model_name": "ok",
            "provider_key_id": key["id"]}),
        )
        .await;
    }
    gw.create_v1(
        "/admin/v1/models",
        json!({"display_name": "ab", "routing": {"strategy": strategy,
        "targets": [{"model": "a", "weight": weights[0]}, {"model": "b", "weight": weights[1]}]}}),
    )
    .await;
}

async fn served_by(gw: &TestGateway, caller: &str, alias: &str) -> (StatusCode, String) {
    let response = gw
        .http
        .post(gw.url("/v1/chat/completions"))
        .header("Authorization", format!("Bearer {caller}"))
        .body(json!({"model": alias, "messages": []}).to_string())
        .send()
        .await
        .unwrap();
    let target = response.headers().get("x-switchyard-instance").map_or("", |v| v.to_str().unwrap()).to_string();
    (response.status(), target)
}

#[tokio::test]
async fn routing_aliases_are_hidden_from_the_model_list_and_callers_need_the_alias() {
    let gw = TestGateway::start().await;
    let mock = FaultyUpstream::start("m").await;
    routed(&gw, &mock, "failover", [1, 1]).await;
    gw.create_v1("/admin/v1/apikeys", json!({"key_hash": sha256_hex("sk-all"), "allowed_models": ["*"]})).await;
    gw.create_v1("/admin/v1/apikeys", json!({"key_hash": sha256_hex("sk-targets"), "allowed_models": ["a", "b"]}))
        .await;
    let listed = gw.http.get(gw.url("/v1/models")).header("Authorization", "Bearer sk-all").send().await.unwrap();
    let listed: Value = serde_json::from_str(&listed.text().await.unwrap()).unwrap();
    let ids: Vec<&str> = listed["data"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["a", "b"]);
    assert_eq!(served_by(&gw, "sk-all", "ab").await, (StatusCode::OK, "a".into()));
    assert_eq!(served_by(&gw, "sk-targets", "ab").await.0, StatusCode::FORBIDDEN, "the targets are not the alias");
    assert_eq!(served_by(&gw, "sk-targets", "a").await.0, StatusCode::OK);
}

#[tokio::test]
async fn round_robin_and_weighted_routing_spread_the_first_pick() {
    let gw = TestGateway::start().await;
    let mock = FaultyUpstream::start("m").await;
    routed(&gw, &mock, "weighted", [3, 1]).await;
    gw.create_v1("/admin/v1/apikeys", json!({"key_hash": sha256_hex("sk"), "allowed_models": ["*"]})).await;
    let mut picks = Vec::new();
    for _ in 0..8 {
        picks.push(served_by(&gw, "sk", "ab").await.1);
    }
    assert_eq!(picks.iter().filter(|p| *p == "a").count(), 6, "{picks:?}");
    assert_eq!(picks.iter().filter(|p| *p == "b").count(), 2, "{picks:?}");
}

#[tokio::test]
async fn a_routing_model_whose_target_is_missing_is_rejected_until_the_target_exists() {
    let gw = TestGateway::start().await;
    let mock = FaultyUpstream::start("m").await;
    gw.create_v1("/admin/v1/apikeys", json!({"key_hash": sha256_hex("sk"), "allowed_models": ["*"]})).await;
    gw.create_v1("/admin/v1/models", json!({"display_name": "later", "routing": {"targets": [{"model": "x"}]}})).await;
    let rejected = gw.status().await["rejected"].to_string();
    assert!(rejected.contains("routing.targets[0].model") && rejected.contains("does not exist"), "{rejected}");
    assert_eq!(served_by(&gw, "sk", "later").await.0, StatusCode::NOT_FOUND);
    let key = gw
        .create_v1(
            "/admin/v1/provider_keys",
            json!({"display_name": "pk", "provider": "vllm", "adapter": "openai",
            "secret": "key", "api_base": format!("http://{}/v1", mock.addr)}),
        )
        .await;
    gw.create_v1(
        "/admin/v1/models",
        json!({"display_name": "x", "provider": "vllm", "model_name": "ok",
        "provider_key_id": key["id"]}),
    )
    .await;
    assert_eq!(served_by(&gw, "sk", "later").await, (StatusCode::OK, "x".into()));
    let (status, reply) = gw
        .admin_v1(
            Method::POST,
            "/admin/v1/models",
            Some(json!({"display_name": "both", "provider_key_id": "k",
            "routing": {"targets": [{"model": "x"}]}})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(reply["error_msg"].as_str().unwrap().contains("provider_key_id"), "{reply}");
}
