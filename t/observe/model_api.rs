//! Model API metrics: requests and tokens per alias and per API key id (never the key).

use reqwest::StatusCode;
use serde_json::json;
use switchyard::resource::api_key::sha256_hex;

use crate::harness::prom::{sample, total};
use crate::harness::{MockUpstream, TestGateway};

async fn call(gw: &TestGateway, key: &str, model: &str) -> StatusCode {
    let response = gw
        .http
        .post(gw.url("/v1/chat/completions"))
        .header("Authorization", format!("Bearer {key}"))
        .body(json!({"model": model, "messages": [{"role": "user", "content": "hi"}]}).to_string())
        .send()
        .await
        .unwrap();
    let status = response.status();
    response.bytes().await.unwrap();
    status
}

#[tokio::test]
async fn requests_and_tokens_are_counted_per_alias_and_api_key_id() {
    let mock = MockUpstream::llm("vendor").await;
    let gw = TestGateway::start().await;
    let key = gw
        .create_v1(
            "/admin/v1/provider_keys",
            json!({"display_name": "vendor", "provider": "deepseek", "adapter": "openai",
                "secret": "sk-vendor", "api_base": mock.base_url()}),
        )
        .await;
    for (alias, model) in [("fast", "vendor-fast-1"), ("slow", "vendor-slow-1")] {
        gw.create_v1(
            "/admin/v1/models",
            json!({"display_name": alias, "provider": "deepseek", "model_name": model, "provider_key_id": key["id"]}),
        )
        .await;
    }
    let team_a =
        gw.create_v1("/admin/v1/apikeys", json!({"key_hash": sha256_hex("sk-team-a"), "allowed_models": "*"})).await;
    let team_b = gw
        .create_v1("/admin/v1/apikeys", json!({"key_hash": sha256_hex("sk-team-b"), "allowed_models": ["fast"]}))
        .await;
    let (a, b) = (team_a["id"].as_str().unwrap(), team_b["id"].as_str().unwrap());

    for _ in 0..2 {
        assert_eq!(call(&gw, "sk-team-a", "fast").await, StatusCode::OK);
    }
    assert_eq!(call(&gw, "sk-team-a", "slow").await, StatusCode::OK);
    assert_eq!(call(&gw, "sk-team-b", "fast").await, StatusCode::OK);
    assert_eq!(call(&gw, "sk-team-b", "slow").await, StatusCode::FORBIDDEN);
    assert_eq!(call(&gw, "sk-team-b", "no-such-alias").await, StatusCode::NOT_FOUND);
    assert_eq!(call(&gw, "sk-unknown", "fast").await, StatusCode::UNAUTHORIZED);

    let text = gw.scrape().await;
    let requests = |alias, key, code| {
        sample(&text, "switchyard_model_api_requests_total", &[("alias", alias), ("api_key_id", key), ("code", code)])
    };
    assert_eq!(requests("fast", a, "200"), Some(2.0));
    assert_eq!(requests("slow", a, "200"), Some(1.0));
    assert_eq!(requests("fast", b, "200"), Some(1.0));
    assert_eq!(requests("slow", b, "403"), Some(1.0));
    assert_eq!(requests("", b, "404"), Some(1.0), "an alias that does not exist is no label");
    let tokens = |alias, key, kind| {
        sample(&text, "switchyard_model_api_tokens_total", &[("alias", alias), ("api_key_id", key), ("type", kind)])
    };
    // t/fixtures/chat.json: 10 prompt and 48 completion tokens per answer.
    assert_eq!(tokens("fast", a, "prompt"), Some(20.0));
    assert_eq!(tokens("fast", a, "completion"), Some(96.0));
    assert_eq!(tokens("fast", b, "completion"), Some(48.0));
    assert_eq!(total(&text, "switchyard_model_api_requests_total", &[]), 6.0, "the unknown key is not a caller");
    assert!(!text.contains("sk-team") && !text.contains("no-such-alias"), "keys and client-chosen names stay out");
    let llm =
        [("route_id", "model-api:/v1/chat/completions"), ("request_llm_model", "fast"), ("llm_model", "vendor-fast-1")];
    assert_eq!(total(&text, "apisix_llm_prompt_tokens", &llm), 30.0);
}
