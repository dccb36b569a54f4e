//! Model API resources are ordinary resources: stored as their JSON at
//! `<prefix>/<group>/<kind>/<id>`, compiled by the same function at the admin API and at reload,
//! and reused across reloads while unchanged.

use std::sync::Arc;

use bytes::Bytes;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use switchyard::resource::api_key::sha256_hex;

use crate::harness::{MockUpstream, TestGateway};

fn provider_key(name: &str, mock: &MockUpstream, secret: &str) -> Value {
    json!({"display_name": name, "provider": "vendor", "adapter": "openai", "secret": secret, "api_base": mock.base_url()})
}

fn model(alias: &str, key_id: &Value) -> Value {
    json!({"display_name": alias, "provider": "vendor", "model_name": format!("{alias}-upstream"), "provider_key_id": key_id})
}

async fn chat(gw: &TestGateway, caller: &str, alias: &str) -> StatusCode {
    let body = json!({"model": alias, "messages": [{"role": "user", "content": "hi"}]});
    let response = gw
        .http
        .post(gw.url("/v1/chat/completions"))
        .header("Authorization", format!("Bearer {caller}"))
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    response.status()
}

async fn stored(gw: &TestGateway, key: &str) -> Value {
    let kv = gw.store().get(key).await.unwrap().expect("stored");
    serde_json::from_slice(&kv.value).unwrap()
}

#[tokio::test]
async fn entries_are_stored_as_the_resource_at_their_key_and_revision_counts_the_keys_writes() {
    let mock = MockUpstream::llm("m").await;
    let gw = TestGateway::start().await;
    let created = gw.create_v1("/admin/v1/provider_keys", provider_key("k", &mock, "sk-stored")).await;
    let id = created["id"].as_str().unwrap().to_string();
    assert_eq!(uuid::Uuid::parse_str(&id).unwrap().get_version_num(), 4);
    let key = format!("/switchyard/default/provider_keys/{id}");
    let value = stored(&gw, &key).await;
    assert_eq!(value["display_name"], "k");
    assert_eq!(value["secret"], "sk-stored", "the store holds the secret itself");
    assert!(value.get("value").is_none() && value.get("revision").is_none() && value.get("id").is_none(), "{value}");
    assert_eq!(created["revision"], 1);

    let path = format!("/admin/v1/provider_keys/{id}");
    let (status, replaced) = gw.admin_v1(Method::PUT, &path, Some(provider_key("k2", &mock, "sk-stored"))).await;
    assert_eq!((status, &replaced["revision"]), (StatusCode::OK, &json!(2)), "{replaced}");

    // A write around the admin API counts too: revision is the key's own write count.
    let mut around = stored(&gw, &key).await;
    around["display_name"] = json!("k3");
    let put = gw.store().put(&key, Bytes::from(around.to_string()), None).await.unwrap();
    gw.wait_for_revision(put.revision).await;
    let (_, fetched) = gw.admin_v1(Method::GET, &path, None).await;
    assert_eq!((&fetched["revision"], &fetched["value"]["display_name"]), (&json!(3), &json!("k3")));
    let (_, listed) = gw.admin_v1(Method::GET, "/admin/v1/provider_keys", None).await;
    assert_eq!(listed[0]["revision"], 3);
    let (_, replaced) = gw.admin_v1(Method::PUT, &path, Some(provider_key("k4", &mock, "sk-stored"))).await;
    assert_eq!(replaced["revision"], 4);
}

#[tokio::test]
async fn entries_in_the_old_envelope_still_load_and_are_rewritten_in_the_new_shape() {
    let mock = MockUpstream::llm("m").await;
    let gw = TestGateway::start().await;
    let envelope = |id: &str, value: Value, revision: u64| json!({"id": id, "value": value, "revision": revision});
    let writes = [
        ("provider_keys/old-key", envelope("old-key", provider_key("legacy", &mock, "sk-legacy"), 2)),
        ("models/old-model", envelope("old-model", model("legacy-alias", &json!("old-key")), 1)),
        (
            "api_keys/old-caller",
            envelope("old-caller", json!({"key_hash": sha256_hex("sk-caller"), "allowed_models": "*"}), 1),
        ),
    ];
    let mut revision = 0;
    for (key, value) in writes {
        let key = format!("/switchyard/default/{key}");
        revision = gw.store().put(&key, Bytes::from(value.to_string()), None).await.unwrap().revision;
    }
    gw.wait_for_revision(revision).await;
    assert_eq!(gw.status().await["rejected"], json!([]));
    assert_eq!(chat(&gw, "sk-caller", "legacy-alias").await, StatusCode::OK);
    assert_eq!(mock.last().headers["authorization"], "Bearer sk-legacy");

    let (status, fetched) = gw.admin_v1(Method::GET, "/admin/v1/provider_keys/old-key", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(fetched["value"]["display_name"], "legacy");
    assert_eq!(fetched["value"]["secret"], "***");
    let (status, _) = gw
        .admin_v1(Method::PUT, "/admin/v1/provider_keys/old-key", Some(provider_key("renamed", &mock, "sk-new")))
        .await;
    assert_eq!(status, StatusCode::OK);
    let value = stored(&gw, "/switchyard/default/provider_keys/old-key").await;
    assert_eq!((&value["display_name"], &value["secret"]), (&json!("renamed"), &json!("sk-new")));
    assert!(value.get("value").is_none(), "written in the new shape: {value}");
    assert_eq!(chat(&gw, "sk-caller", "legacy-alias").await, StatusCode::OK);
    assert_eq!(mock.last().headers["authorization"], "Bearer sk-new");
}

#[tokio::test]
async fn what_reload_would_reject_the_admin_api_refuses_naming_the_field() {
    let mock = MockUpstream::llm("m").await;
    let gw = TestGateway::start().await;
    let secret = "sk-line\nbreak-secret";
    let (status, reply) =
        gw.admin_v1(Method::POST, "/admin/v1/provider_keys", Some(provider_key("k", &mock, secret))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{reply}");
    let message = reply["error_msg"].as_str().unwrap();
    assert!(message.starts_with("invalid provider key: secret: "), "{message}");
    assert!(!message.contains("break-secret"), "{message}");

    let (status, reply) = gw.admin_v1(Method::POST, "/admin/v1/models", Some(model("m", &json!("no-such-key")))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(reply["error_msg"].as_str().unwrap().starts_with("invalid model: provider_key_id: "), "{reply}");

    // The same provider key written around the admin API is rejected at reload, and a model
    // naming it is refused as its dependency is missing.
    let key = "/switchyard/default/provider_keys/broken";
    let put = gw.store().put(key, Bytes::from(provider_key("k", &mock, secret).to_string()), None).await.unwrap();
    gw.wait_for_revision(put.revision).await;
    let status_body = gw.status().await;
    assert_eq!(status_body["rejected"][0]["id"], "broken", "{status_body}");
    assert!(status_body["rejected"][0]["error"].as_str().unwrap().starts_with("secret: "));
    assert!(!status_body.to_string().contains("break-secret"));
    let (status, reply) = gw.admin_v1(Method::POST, "/admin/v1/models", Some(model("m", &json!("broken")))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{reply}");
    let message = reply["error_msg"].as_str().unwrap();
    assert!(
        message.starts_with("invalid model: provider_key_id: `broken` is stored but not valid (secret: "),
        "{message}"
    );
    assert!(!message.contains("break-secret"), "{message}");

    // The model API's plugin serves the built-in routes only.
    let route = json!({"id": "r", "paths": ["/mine"], "plugins": {"model-api": {"surface": "models"}}});
    let (status, reply) = gw.admin(Method::PUT, "/apisix/admin/routes", Some(route)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(reply["error_msg"].as_str().unwrap().contains("plugins.model-api"), "{reply}");
    // And model API kinds are not reachable through the APISIX API (which would not mask them).
    let (status, _) = gw.admin(Method::GET, "/apisix/admin/provider_keys", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn duplicates_written_around_the_admin_api_are_rejected_the_first_id_wins() {
    let mock = MockUpstream::llm("m").await;
    let gw = TestGateway::start().await;
    let key = gw.create_v1("/admin/v1/provider_keys", provider_key("k", &mock, "s")).await;
    gw.create_v1("/admin/v1/apikeys", json!({"key_hash": sha256_hex("caller"), "allowed_models": "*"})).await;
    let mut revision = 0;
    for id in ["b-second", "a-first"] {
        let mut value = model("same-alias", &key["id"]);
        value["model_name"] = json!(id);
        let key = format!("/switchyard/default/models/{id}");
        revision = gw.store().put(&key, Bytes::from(value.to_string()), None).await.unwrap().revision;
    }
    gw.wait_for_revision(revision).await;
    let status = gw.status().await;
    assert_eq!(status["rejected"].as_array().unwrap().len(), 1, "{status}");
    assert_eq!(status["rejected"][0]["id"], "b-second");
    assert!(status["rejected"][0]["error"].as_str().unwrap().contains("a-first"));
    assert_eq!(chat(&gw, "caller", "same-alias").await, StatusCode::OK);
    let sent: Value = serde_json::from_slice(&mock.last().body).unwrap();
    assert_eq!(sent["model"], "a-first");
}

#[tokio::test]
async fn a_reload_compiles_only_what_changed() {
    let mock = MockUpstream::llm("m").await;
    let gw = TestGateway::start().await;
    gw.put_service(json!({"id": "s1", "upstream": {"nodes": {mock.node(): 1}}})).await;
    gw.put_route(json!({"id": "r1", "paths": ["/r1"], "service_id": "s1"})).await;
    let k1 = gw.create_v1("/admin/v1/provider_keys", provider_key("k1", &mock, "s1")).await;
    let k2 = gw.create_v1("/admin/v1/provider_keys", provider_key("k2", &mock, "s2")).await;
    let m1 = gw.create_v1("/admin/v1/models", model("m1", &k1["id"])).await;
    let m2 = gw.create_v1("/admin/v1/models", model("m2", &k2["id"])).await;
    let a1 = gw.create_v1("/admin/v1/apikeys", json!({"key_hash": sha256_hex("c"), "allowed_models": "*"})).await;
    let id = |entry: &Value| entry["id"].as_str().unwrap().to_string();
    let (k1, k2, m1, m2, a1) = (id(&k1), id(&k2), id(&m1), id(&m2), id(&a1));

    let before = gw.snapshot();
    gw.put_route(json!({"id": "r2", "paths": ["/r2"], "upstream": {"nodes": {mock.node(): 1}}})).await;
    let after = gw.snapshot();
    assert!(!Arc::ptr_eq(&before, &after), "a new snapshot was published");
    assert!(Arc::ptr_eq(&before.services["s1"].compiled, &after.services["s1"].compiled));
    assert!(Arc::ptr_eq(&before.routes["r1"].compiled, &after.routes["r1"].compiled));
    assert!(Arc::ptr_eq(&before.provider_keys[&k1].compiled, &after.provider_keys[&k1].compiled));
    assert!(Arc::ptr_eq(&before.models[&m1].compiled, &after.models[&m1].compiled));
    assert!(Arc::ptr_eq(&before.api_keys[&a1].compiled, &after.api_keys[&a1].compiled));
    assert!(Arc::ptr_eq(&before.catalog, &after.catalog), "no model API change: the catalog is kept");
    let kept = before.builtin_routes.iter().zip(&after.builtin_routes).all(|(b, a)| Arc::ptr_eq(b, a));
    assert!(kept && !before.builtin_routes.is_empty(), "and so are the built-in routes");

    // A provider key's new write recompiles it and its models, nothing else.
    let path = format!("/admin/v1/provider_keys/{k1}");
    let (status, _) = gw.admin_v1(Method::PUT, &path, Some(provider_key("k1", &mock, "s1-rotated"))).await;
    assert_eq!(status, StatusCode::OK);
    let rotated = gw.snapshot();
    assert!(!Arc::ptr_eq(&after.provider_keys[&k1].compiled, &rotated.provider_keys[&k1].compiled));
    assert!(!Arc::ptr_eq(&after.models[&m1].compiled, &rotated.models[&m1].compiled));
    assert!(Arc::ptr_eq(&after.provider_keys[&k2].compiled, &rotated.provider_keys[&k2].compiled));
    assert!(Arc::ptr_eq(&after.models[&m2].compiled, &rotated.models[&m2].compiled));
    assert!(Arc::ptr_eq(&after.routes["r1"].compiled, &rotated.routes["r1"].compiled));
    assert!(!Arc::ptr_eq(&after.catalog, &rotated.catalog));
    assert_eq!(chat(&gw, "c", "m1").await, StatusCode::OK);
    assert_eq!(mock.last().headers["authorization"], "Bearer s1-rotated");

    // A service's new write recompiles it and its routes, nothing else.
    gw.put_service(json!({"id": "s1", "desc": "changed", "upstream": {"nodes": {mock.node(): 1}}})).await;
    let changed = gw.snapshot();
    assert!(!Arc::ptr_eq(&rotated.services["s1"].compiled, &changed.services["s1"].compiled));
    assert!(!Arc::ptr_eq(&rotated.routes["r1"].compiled, &changed.routes["r1"].compiled));
    assert!(Arc::ptr_eq(&rotated.routes["r2"].compiled, &changed.routes["r2"].compiled));
    assert!(Arc::ptr_eq(&rotated.models[&m1].compiled, &changed.models[&m1].compiled));
    assert!(Arc::ptr_eq(&rotated.catalog, &changed.catalog));
}

#[tokio::test]
async fn provider_keys_default_api_base_for_known_vendors_as_aisix_does() {
    let gw = TestGateway::start().await;
    let key = |name: &str, provider: &str, adapter: &str| json!({"display_name": name, "provider": provider, "adapter": adapter, "secret": "sk"});
    let defaults = [
        ("openai", "openai", "https://api.openai.com/v1"),
        ("deepseek", "openai", "https://api.deepseek.com"),
        ("anthropic", "anthropic", "https://api.anthropic.com"),
        ("gemini", "openai", "https://generativelanguage.googleapis.com/v1beta/openai"),
        ("google", "openai", "https://generativelanguage.googleapis.com/v1beta/openai"),
    ];
    for (provider, adapter, base) in defaults {
        let entry = gw.create_v1("/admin/v1/provider_keys", key(provider, provider, adapter)).await;
        assert_eq!(entry["value"]["api_base"], base, "{provider}");
        let id = entry["id"].as_str().unwrap();
        let stored = stored(&gw, &format!("/switchyard/default/provider_keys/{id}")).await;
        assert_eq!(stored["api_base"], base, "the default is stored with the key");
    }
    for (provider, adapter) in [("azure", "azure-openai"), ("acme", "openai"), ("openai", "azure-openai")] {
        let (status, reply) =
            gw.admin_v1(Method::POST, "/admin/v1/provider_keys", Some(key(provider, provider, adapter))).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{provider} {adapter}: {reply}");
        assert!(reply["error_msg"].as_str().unwrap().starts_with("invalid provider key: api_base: is required"));
    }
    for (provider, adapter) in [("gcp", "vertex"), ("aws", "bedrock")] {
        let mut body = key(provider, provider, adapter);
        if adapter == "bedrock" {
            // A bedrock key's secret is its JSON credentials; the region finds the host.
            body["secret"] = json!(r#"{"access_key_id":"AK","secret_access_key":"SK","region":"us-east-1"}"#);
        }
        if adapter == "vertex" {
            // A vertex key's secret says where its project is, and how to get a token.
            body["secret"] = json!(json!({"project": "p", "region": "us-central1", "access_token": "t"}).to_string());
        }
        let entry = gw.create_v1("/admin/v1/provider_keys", body).await;
        assert!(entry["value"].get("api_base").is_none(), "{entry}");
    }
    // A given api_base wins over the default.
    let mut own = key("own", "openai", "openai");
    own["api_base"] = json!("https://proxy.internal/openai/v1/");
    let entry = gw.create_v1("/admin/v1/provider_keys", own).await;
    assert_eq!(entry["value"]["api_base"], "https://proxy.internal/openai/v1");
}
