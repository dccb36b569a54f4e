//! `ai-proxy` with `provider: "vertex-ai"`: chat, streaming, embeddings, config errors, masking.

use futures_util::StreamExt;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use super::{chat_path, gateway, hello, json_of, last_bearer, post, predict_path, put_vertex_route, vertex_plugin};
use crate::harness::gcp_mock::{test_key, GcpMock, PROJECT, REGION};
use crate::harness::logs;

#[tokio::test]
async fn vertex_chat_reaches_the_openai_endpoint_with_a_minted_token_and_logs_usage() {
    let mock = GcpMock::start().await;
    let gw = gateway().await;
    put_vertex_route(&gw, "vertex-chat", vertex_plugin(&mock, mock.service_account(), json!({}), json!({}))).await;
    let response = post(&gw, "vertex-chat", hello()).await;
    assert_eq!(response.status(), StatusCode::OK);
    let completion = json_of(response).await;
    assert_eq!(completion["object"], "chat.completion");
    assert_eq!(completion["model"], "google/gemini-2.0-flash");

    let seen = mock.last();
    assert_eq!(seen.path, chat_path());
    assert_eq!(last_bearer(&mock), "Bearer ya29.mock-1");
    assert_eq!(seen.headers["content-type"], "application/json");
    let sent: Value = serde_json::from_slice(&seen.body).unwrap();
    assert_eq!(sent["model"], "google/gemini-2.0-flash");
    assert_eq!(mock.token_requests(), 1);
    assert!(mock.refused().is_empty(), "{:?}", mock.refused());

    let line = logs::access_line("vertex-chat").await;
    for field in
        ["status=200", "prompt_tokens=10", "completion_tokens=48", "total_tokens=58", "model=google/gemini-2.0-flash"]
    {
        assert!(line.contains(field), "{field} missing from {line}");
    }
    // The service account key reaches no log line.
    let key_body = test_key().private_pem.lines().nth(1).unwrap();
    assert!(!logs::all().contains(key_body), "the private key reached the log");
}

#[tokio::test]
async fn vertex_streaming_chat_relays_the_sse_and_logs_its_usage() {
    let mock = GcpMock::start().await;
    let gw = gateway().await;
    put_vertex_route(&gw, "vertex-stream", vertex_plugin(&mock, mock.service_account(), json!({}), json!({}))).await;
    let mut body = hello();
    body["stream"] = json!(true);
    let response = post(&gw, "vertex-stream", body).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
    let mut text = String::new();
    let mut stream = response.bytes_stream();
    while let Some(chunk) = stream.next().await {
        text.push_str(std::str::from_utf8(&chunk.unwrap()).unwrap());
    }
    let events: Vec<&str> = text.split("\n\n").filter(|e| !e.is_empty()).collect();
    assert_eq!(events.len(), 7, "{text}");
    assert!(text.contains(r#""content":"Hello""#) && text.ends_with("data: [DONE]\n\n"), "{text}");
    let sent: Value = serde_json::from_slice(&mock.last().body).unwrap();
    assert_eq!(sent["stream_options"], json!({"include_usage": true}), "usage is asked for");
    assert_eq!(last_bearer(&mock), "Bearer ya29.mock-1");
    let line = logs::access_line("vertex-stream").await;
    for field in ["prompt_tokens=12", "completion_tokens=5", "total_tokens=17"] {
        assert!(line.contains(field), "{field} missing from {line}");
    }
}

#[tokio::test]
async fn vertex_embeddings_go_through_predict_and_come_back_in_openai_shape() {
    let mock = GcpMock::start().await;
    let gw = gateway().await;
    let extra = json!({"options": {},
        "override": {"endpoint": mock.base_url(), "request_body": {"vertex-predict": {"parameters": {"autoTruncate": false}}}}});
    let plugin = vertex_plugin(&mock, mock.service_account(), json!({}), extra);
    put_vertex_route(&gw, "vertex-embed", plugin).await;
    let body = json!({"model": "text-embedding-005", "input": ["hello world", "one two three"], "dimensions": 3});
    let response = post(&gw, "vertex-embed", body).await;
    assert_eq!(response.status(), StatusCode::OK);
    let list = json_of(response).await;
    assert_eq!(list["object"], "list");
    assert_eq!(list["model"], "text-embedding-005");
    assert_eq!(list["data"][0], json!({"object": "embedding", "index": 0, "embedding": [0.5, -0.25, 2.0]}));
    assert_eq!(list["data"][1]["embedding"], json!([0.5, -0.25, 3.0]));
    assert_eq!(list["usage"], json!({"prompt_tokens": 5, "total_tokens": 5}));

    let seen = mock.last();
    assert_eq!(seen.path, predict_path("text-embedding-005"));
    assert_eq!(last_bearer(&mock), "Bearer ya29.mock-1");
    let sent: Value = serde_json::from_slice(&seen.body).unwrap();
    assert_eq!(
        sent,
        json!({"instances": [{"content": "hello world"}, {"content": "one two three"}],
            "parameters": {"outputDimensionality": 3, "autoTruncate": false}})
    );
    let line = logs::access_line("vertex-embed").await;
    assert!(line.contains("prompt_tokens=5") && line.contains("total_tokens=5"), "{line}");

    // No model anywhere: no `:predict` URL can be made.
    let response = post(&gw, "vertex-embed", json!({"input": "hello"})).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let error = json_of(response).await;
    assert!(error["error"]["message"].as_str().unwrap().contains("specifies a model"), "{error}");
    assert_eq!(mock.token_requests(), 1);
}

#[tokio::test]
async fn vertex_config_errors_are_refused_naming_the_field() {
    let mock = GcpMock::start().await;
    let gw = gateway().await;
    let with_key = |key: Value| {
        json!({"provider": "vertex-ai", "auth": {"gcp": {"service_account_json": key}},
        "provider_conf": {"project_id": PROJECT, "region": REGION}})
    };
    let no_location =
        json!({"provider": "vertex-ai", "auth": {"gcp": {"service_account_json": mock.service_account()}}});
    let sa = |mut fields: Value, drop: &str| {
        let mut key: Value = serde_json::from_str(&mock.service_account()).unwrap();
        key.as_object_mut().unwrap().remove(drop);
        if let (Value::Object(key), Value::Object(fields)) = (&mut key, fields.take()) {
            key.extend(fields);
        }
        key.to_string()
    };
    let cases = [
        (no_location, "plugins.ai-proxy.provider_conf", "requires either provider_conf"),
        (with_key(json!("{not json")), "plugins.ai-proxy.auth.gcp.service_account_json", "does not parse"),
        (
            with_key(json!(sa(json!({}), "client_email"))),
            "plugins.ai-proxy.auth.gcp.service_account_json",
            "client_email",
        ),
        (
            with_key(json!(sa(
                json!({"private_key": "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"}),
                ""
            ))),
            "plugins.ai-proxy.auth.gcp.service_account_json",
            "private_key",
        ),
        (
            json!({"provider": "vertex-ai", "auth": {"gcp": {"service_account_json": mock.service_account(), "max_ttl": 0}},
                "provider_conf": {"project_id": PROJECT, "region": REGION}}),
            "plugins.ai-proxy.auth.gcp.max_ttl",
            "at least 1",
        ),
        (
            json!({"provider": "vertex-ai", "auth": {"gcp": {"colour": 1}}, "provider_conf": {"project_id": "p", "region": "r"}}),
            "plugins.ai-proxy.auth.gcp.colour",
            "",
        ),
        (
            json!({"provider": "vertex-ai", "auth": {}, "provider_conf": {"project_id": "p", "region": "r"}}),
            "plugins.ai-proxy.auth.gcp",
            "is required",
        ),
        (
            json!({"provider": "vertex-ai", "auth": {"header": {"Authorization": "Bearer t"}},
                "provider_conf": {"project_id": "p", "region": "us central"}}),
            "plugins.ai-proxy.provider_conf.region",
            "region",
        ),
        (
            json!({"provider": "openai", "auth": {"gcp": {"service_account_json": mock.service_account()}}}),
            "plugins.ai-proxy.auth.gcp",
            "vertex-ai only",
        ),
    ];
    for (plugin, field, says) in cases {
        let route = json!({"id": "vertex-bad", "paths": ["/vertex-bad"], "plugins": {"ai-proxy": plugin}});
        let (status, reply) = gw.admin(Method::PUT, "/apisix/admin/routes", Some(route)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{field}: {reply}");
        let message = reply["error_msg"].as_str().unwrap();
        assert!(message.contains(field) && message.contains(says), "{message:?} should name {field:?} ({says:?})");
        assert!(!message.contains("BEGIN PRIVATE KEY"), "{message}");
    }
    let multi = json!({"instances": [{"name": "v", "provider": "vertex-ai", "weight": 1,
        "auth": {"gcp": {"service_account_json": "{}"}}, "provider_conf": {"project_id": "p", "region": "r"}}]});
    let route = json!({"id": "vertex-bad", "paths": ["/vertex-bad"], "plugins": {"ai-proxy-multi": multi}});
    let (status, reply) = gw.admin(Method::PUT, "/apisix/admin/routes", Some(route)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let message = reply["error_msg"].as_str().unwrap();
    assert!(message.contains("plugins.ai-proxy-multi.instances[0].auth.gcp.service_account_json"), "{message}");
}

#[tokio::test]
async fn the_service_account_is_masked_in_admin_responses_and_kept_on_a_round_trip() {
    let mock = GcpMock::start().await;
    let gw = gateway().await;
    let plugin = vertex_plugin(&mock, mock.service_account(), json!({"max_ttl": 300}), json!({}));
    let route = json!({"id": "vertex-masked", "paths": ["/vertex-masked"], "plugins": {"ai-proxy": plugin}});
    let (status, created) = gw.admin(Method::PUT, "/apisix/admin/routes", Some(route)).await;
    assert!(status.is_success(), "{created}");
    let (status, fetched) = gw.admin(Method::GET, "/apisix/admin/routes/vertex-masked", None).await;
    assert_eq!(status, StatusCode::OK);
    for reply in [&created, &fetched] {
        let gcp = &reply["value"]["plugins"]["ai-proxy"]["auth"]["gcp"];
        assert_eq!(gcp["service_account_json"], "***", "{reply}");
        assert_eq!(gcp["max_ttl"], 300);
        assert!(!reply.to_string().contains("PRIVATE KEY"), "{reply}");
    }
    // What a GET gave is PUT back: the stored key is kept, and still mints tokens.
    let (status, reply) = gw.admin(Method::PUT, "/apisix/admin/routes", Some(fetched["value"].clone())).await;
    assert!(status.is_success(), "{reply}");
    let response = post(&gw, "vertex-masked", hello()).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(last_bearer(&mock), "Bearer ya29.mock-1");
}

#[tokio::test]
async fn the_readme_route_works_as_written_with_the_node_pointing_vertex_at_the_mock() {
    let mock = GcpMock::start().await;
    logs::capture();
    let base = mock.base_url();
    let gw = crate::harness::TestGateway::start_in(tempfile::tempdir().unwrap(), move |config| {
        config.providers.insert("vertex-ai".into(), switchyard::config::ProviderConfig { base_url: Some(base) });
    })
    .await;
    // README: the route as written (no override.endpoint), the key file as one JSON string.
    let route = json!({
        "id": "vertex-route",
        "paths": ["/vertex/*"],
        "plugins": {"ai-proxy": {
            "provider": "vertex-ai",
            "auth": {"gcp": {"service_account_json": mock.service_account(), "max_ttl": 1800}},
            "provider_conf": {"project_id": PROJECT, "region": REGION},
            "logging": {"summaries": true}
        }}
    });
    let (status, reply) = gw.admin(Method::PUT, "/apisix/admin/routes", Some(route)).await;
    assert!(status.is_success(), "{reply}");
    let chat = json!({"model": "google/gemini-2.0-flash",
        "messages": [{"role": "user", "content": "Say hello from Vertex."}]});
    let response = gw.http.post(gw.url("/vertex/chat")).body(chat.to_string()).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(mock.last().path, chat_path());
    let embed = json!({"model": "text-embedding-005", "input": ["hello world"]});
    let response = gw.http.post(gw.url("/vertex/embeddings")).body(embed.to_string()).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(json_of(response).await["data"][0]["embedding"], json!([0.5, -0.25, 2.0]));
    assert_eq!(mock.last().path, predict_path("text-embedding-005"));
    assert_eq!(mock.token_requests(), 1);
}
