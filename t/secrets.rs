//! Secrets never come back: not in admin responses, not in error messages, not in
//! `status.rejected`, not in the log.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use switchyard::resource::api_key::sha256_hex;

use crate::harness::{logs, MockUpstream, TestGateway};

const SECRET: &str = "sk-secret-xyz";

fn ai_proxy_route(plugin: Value) -> Value {
    json!({"id": "leaky", "paths": ["/leaky"], "plugins": {"ai-proxy": plugin}})
}

/// Asserts a 400 whose message names `field` and does not contain the secret.
fn assert_refused_without_echo(status: StatusCode, reply: &Value, field: &str) {
    assert_eq!(status, StatusCode::BAD_REQUEST, "{reply}");
    let message = reply["error_msg"].as_str().unwrap();
    assert!(message.contains(field), "{message:?} should name {field:?}");
    assert!(!reply.to_string().contains(SECRET), "the secret was echoed: {reply}");
}

#[tokio::test]
async fn a_secret_in_the_wrong_slot_is_named_by_field_and_type_never_quoted() {
    logs::capture();
    let gw = TestGateway::start().await;
    let cases = [
        (json!({"provider": "openai", "auth": SECRET}), "plugins.ai-proxy.auth: invalid type: string, expected"),
        (
            json!({"provider": "openai", "auth": {"header": SECRET}}),
            "plugins.ai-proxy.auth.header: invalid type: string",
        ),
        (
            json!({"provider": "openai", "auth": {}, "timeout": SECRET}),
            "plugins.ai-proxy.timeout: invalid type: string",
        ),
        (
            json!({"provider": "openai-compatible", "auth": {}, "override": {"endpoint": SECRET}}),
            "plugins.ai-proxy.override.endpoint: must be an http(s) URL",
        ),
    ];
    for (plugin, field) in cases {
        let (status, reply) = gw.admin(Method::PUT, "/apisix/admin/routes", Some(ai_proxy_route(plugin))).await;
        assert_refused_without_echo(status, &reply, field);
    }

    let multi = json!({"id": "leaky", "paths": ["/leaky"], "plugins": {"ai-proxy-multi": {"instances": [
        {"name": "a", "provider": "openai", "weight": 1, "auth": SECRET}]}}});
    let (status, reply) = gw.admin(Method::PUT, "/apisix/admin/routes", Some(multi)).await;
    assert_refused_without_echo(status, &reply, "plugins.ai-proxy-multi.instances[0].auth: invalid type: string");

    let key = json!({"display_name": "k", "provider": "p", "adapter": "openai", "secret": "s", "api_base": SECRET});
    let (status, reply) = gw.admin_v1(Method::POST, "/admin/v1/provider_keys", Some(key)).await;
    assert_refused_without_echo(status, &reply, "api_base: must be an http(s) URL");
    assert!(!logs::all().contains(SECRET), "a refused secret reached the log");
}

#[tokio::test]
async fn a_bad_resource_written_to_the_store_is_rejected_without_its_secret() {
    logs::capture();
    let gw = TestGateway::start().await;
    let route = ai_proxy_route(json!({"provider": "openai", "auth": SECRET}));
    let put =
        gw.store().put("/switchyard/default/routes/leaky", bytes::Bytes::from(route.to_string()), None).await.unwrap();
    gw.wait_for_revision(put.revision).await;
    let status = gw.status().await;
    let rejected = &status["rejected"][0];
    assert_eq!(rejected["id"], "leaky", "{status}");
    assert!(rejected["error"].as_str().unwrap().contains("plugins.ai-proxy.auth"), "{rejected}");
    assert!(!status.to_string().contains(SECRET), "status.rejected quotes the secret: {status}");
    let (_, fetched) = gw.admin(Method::GET, "/apisix/admin/routes/leaky", None).await;
    assert_eq!(fetched["value"]["plugins"]["ai-proxy"]["auth"], "***", "a misplaced secret is masked whole");
    assert!(!logs::all().contains(SECRET), "the reload log line quotes the secret");
}

#[tokio::test]
async fn a_provider_key_put_back_with_its_masked_secret_keeps_the_secret() {
    let mock = MockUpstream::llm("m").await;
    let gw = TestGateway::start().await;
    let key = gw
        .create_v1(
            "/admin/v1/provider_keys",
            json!({"display_name": "vendor", "provider": "vendor", "adapter": "openai",
                "secret": SECRET, "api_base": mock.base_url()}),
        )
        .await;
    let id = key["id"].as_str().unwrap();
    gw.create_v1(
        "/admin/v1/models",
        json!({"display_name": "alias", "provider": "vendor", "model_name": "m", "provider_key_id": id}),
    )
    .await;
    gw.create_v1("/admin/v1/apikeys", json!({"key_hash": sha256_hex("caller"), "allowed_models": "*"})).await;

    // GET → rename → PUT the body back as it came, `"***"` included.
    let path = format!("/admin/v1/provider_keys/{id}");
    let (_, fetched) = gw.admin_v1(Method::GET, &path, None).await;
    assert_eq!(fetched["value"]["secret"], "***");
    let mut edited = fetched["value"].clone();
    edited["display_name"] = json!("vendor-renamed");
    let (status, replaced) = gw.admin_v1(Method::PUT, &path, Some(edited)).await;
    assert_eq!(status, StatusCode::OK, "{replaced}");
    assert_eq!(replaced["value"]["display_name"], "vendor-renamed");
    assert!(!replaced.to_string().contains(SECRET));
    let stored = gw.store().get(&format!("/switchyard/default/provider_keys/{id}")).await.unwrap().unwrap();
    assert_eq!(serde_json::from_slice::<Value>(&stored.value).unwrap()["secret"], SECRET);

    let response = gw
        .http
        .post(gw.url("/v1/chat/completions"))
        .header("Authorization", "Bearer caller")
        .body(json!({"model": "alias", "messages": []}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(mock.last().headers["authorization"], format!("Bearer {SECRET}"), "the real secret went upstream");
}

#[tokio::test]
async fn a_masked_secret_with_nothing_stored_is_refused() {
    let gw = TestGateway::start().await;
    let body = json!({"display_name": "k", "provider": "p", "adapter": "openai", "secret": "***",
        "api_base": "http://127.0.0.1:1"});
    let (status, reply) = gw.admin_v1(Method::POST, "/admin/v1/provider_keys", Some(body)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{reply}");
    assert!(reply["error_msg"].as_str().unwrap().starts_with("secret: \"***\" stands for a stored secret"), "{reply}");
    let (_, listed) = gw.admin_v1(Method::GET, "/admin/v1/provider_keys", None).await;
    assert_eq!(listed, json!([]), "nothing was stored");
}
