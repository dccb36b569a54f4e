//! Secrets never come back: not in admin responses, not in error messages, not in
//! `status.rejected`, not in the log.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::harness::{logs, TestGateway};

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
    assert!(!logs::all().contains(SECRET), "the reload log line quotes the secret");
}
