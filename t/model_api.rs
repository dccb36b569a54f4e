//! The model API: `/admin/v1` resources and the OpenAI-compatible `/v1` proxy.

use futures_util::StreamExt;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use switchyard::resource::api_key::sha256_hex;

use crate::harness::{MockUpstream, TestGateway};

async fn admin_v1(gw: &TestGateway, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
    gw.admin_v1(method, path, body).await
}

async fn created(gw: &TestGateway, path: &str, body: Value) -> Value {
    gw.create_v1(path, body).await
}

/// The seed 000 flow: a provider key, a model alias and a caller key; returns the model entry.
async fn deepseek_setup(gw: &TestGateway, mock: &MockUpstream, caller_key: &str) -> Value {
    let key = created(
        gw,
        "/admin/v1/provider_keys",
        json!({"display_name": "deepseek-prod", "provider": "deepseek",
        "adapter": "openai", "secret": "YOUR_PROVIDER_API_KEY", "api_base": mock.base_url()}),
    )
    .await;
    let model = created(
        gw,
        "/admin/v1/models",
        json!({"display_name": "deepseek-flash-prod", "provider": "deepseek",
        "model_name": "deepseek-v4-flash", "provider_key_id": key["id"]}),
    )
    .await;
    created(
        gw,
        "/admin/v1/apikeys",
        json!({"key_hash": sha256_hex(caller_key), "allowed_models": ["deepseek-flash-prod"]}),
    )
    .await;
    model
}

async fn chat(gw: &TestGateway, caller_key: &str, body: Value) -> reqwest::Response {
    gw.http
        .post(gw.url("/v1/chat/completions"))
        .header("Authorization", format!("Bearer {caller_key}"))
        .header("Content-Type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap()
}

async fn json_of(response: reqwest::Response) -> Value {
    serde_json::from_str(&response.text().await.unwrap()).unwrap()
}

#[tokio::test]
async fn seed_vendor_flow_works_as_written_and_echoes_the_alias() {
    let mock = MockUpstream::llm("deepseek").await;
    let gw = TestGateway::start().await;
    deepseek_setup(&gw, &mock, "sk-deepseek-caller").await;
    let response = chat(
        &gw,
        "sk-deepseek-caller",
        json!({"model": "deepseek-flash-prod",
        "messages": [{"role": "user", "content": "Say hello from DeepSeek."}]}),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    let body = json_of(response).await;
    assert_eq!(body["model"], "deepseek-flash-prod");
    assert_eq!(body["object"], "chat.completion");
    let seen = mock.last();
    assert_eq!(seen.path, "/chat/completions");
    assert_eq!(seen.headers["authorization"], "Bearer YOUR_PROVIDER_API_KEY");
    let sent: Value = serde_json::from_slice(&seen.body).unwrap();
    assert_eq!(sent["model"], "deepseek-v4-flash");
}

#[tokio::test]
async fn streamed_chunks_all_report_the_alias() {
    let mock = MockUpstream::llm("deepseek").await;
    let gw = TestGateway::start().await;
    deepseek_setup(&gw, &mock, "sk-s").await;
    let response = chat(&gw, "sk-s", json!({"model": "deepseek-flash-prod", "stream": true, "messages": []})).await;
    assert_eq!(response.status(), StatusCode::OK);
    let mut frames = Vec::new();
    let mut body = response.bytes_stream();
    while let Some(frame) = body.next().await {
        frames.push(String::from_utf8(frame.unwrap().to_vec()).unwrap());
    }
    assert_eq!(frames.len(), 7, "{frames:?}");
    for frame in &frames[..6] {
        let data: Value = serde_json::from_str(frame.strip_prefix("data: ").unwrap().trim()).unwrap();
        assert_eq!(data["model"], "deepseek-flash-prod", "{frame}");
    }
    assert_eq!(frames[6], "data: [DONE]\n\n");
}

#[tokio::test]
async fn seed_provider_key_response_masks_the_secret_everywhere() {
    crate::harness::logs::capture();
    let gw = TestGateway::start().await;
    let secret = "sk-openai-very-secret";
    let (status, entry) = admin_v1(
        &gw,
        Method::POST,
        "/admin/v1/provider_keys",
        Some(json!({"display_name": "openai-prod",
        "provider": "openai", "adapter": "openai", "secret": secret, "api_base": "https://api.openai.com/v1"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let id = entry["id"].as_str().unwrap().to_string();
    assert_eq!(id.len(), 36, "a UUID");
    assert_eq!(entry["revision"], 1);
    assert_eq!(
        entry["value"],
        json!({"display_name": "openai-prod", "secret": "***", "api_base": "https://api.openai.com/v1",
        "provider": "openai", "adapter": "openai", "telemetry_tags": {"featured": false},
        "strip_headers": ["authorization", "cookie", "set-cookie", "x-api-key"]})
    );
    let replaced = json!({"display_name": "openai-prod", "provider": "openai", "adapter": "openai", "secret": secret,
        "api_base": " https://api.openai.com/v1/chat/completions/ ", "strip_headers": ["X-Internal"]});
    let responses = [
        admin_v1(&gw, Method::GET, &format!("/admin/v1/provider_keys/{id}"), None).await,
        admin_v1(&gw, Method::GET, "/admin/v1/provider_keys", None).await,
        admin_v1(&gw, Method::PUT, &format!("/admin/v1/provider_keys/{id}"), Some(replaced.clone())).await,
        admin_v1(&gw, Method::PUT, &format!("/admin/v1/provider_keys/{id}"), Some(replaced)).await,
    ];
    for (status, body) in &responses {
        assert_eq!(*status, StatusCode::OK, "{body}");
        assert!(!body.to_string().contains(secret), "secret leaked: {body}");
    }
    assert!(responses[1].1.is_array());
    let last = &responses[3].1;
    assert_eq!(last["revision"], 3, "revision grows by one per replace");
    assert_eq!(last["value"]["api_base"], "https://api.openai.com/v1", "normalised");
    assert_eq!(last["value"]["strip_headers"], json!(["x-internal"]));
    assert!(!crate::harness::logs::all().contains(secret));
}

#[tokio::test]
async fn seed_bring_your_own_endpoint_flow_with_cost() {
    let mock = MockUpstream::llm("vllm").await;
    let gw = TestGateway::start().await;
    let key = created(
        &gw,
        "/admin/v1/provider_keys",
        json!({"display_name": "vllm-private", "provider": "vllm",
        "adapter": "openai", "secret": "not-used-by-vllm", "api_base": format!("{}/v1", mock.base_url())}),
    )
    .await;
    let model = created(
        &gw,
        "/admin/v1/models",
        json!({"display_name": "llama-3-private", "provider": "vllm",
        "model_name": "meta-llama/Llama-3.1-8B-Instruct", "provider_key_id": key["id"],
        "cost": {"input_per_1k": 0.0, "output_per_1k": 0.0}}),
    )
    .await;
    assert_eq!(model["value"]["cost"], json!({"input_per_1k": 0.0, "output_per_1k": 0.0}));
    created(
        &gw,
        "/admin/v1/apikeys",
        json!({"key_hash": sha256_hex("sk-byo-caller"), "allowed_models": ["llama-3-private"]}),
    )
    .await;
    let response = chat(
        &gw,
        "sk-byo-caller",
        json!({"model": "llama-3-private",
        "messages": [{"role": "user", "content": "Say hello from the private model."}]}),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(json_of(response).await["model"], "llama-3-private");
    assert_eq!(mock.last().path, "/v1/chat/completions");
    assert_eq!(mock.last().headers["authorization"], "Bearer not-used-by-vllm");
}

#[tokio::test]
async fn proxy_status_codes_use_the_openai_error_shape() {
    let mock = MockUpstream::llm("m").await;
    let gw = TestGateway::start().await;
    deepseek_setup(&gw, &mock, "sk-ok").await;
    let other_key = created(
        &gw,
        "/admin/v1/provider_keys",
        json!({"display_name": "other", "provider": "x",
        "adapter": "openai", "secret": "s", "api_base": mock.base_url()}),
    )
    .await;
    created(
        &gw,
        "/admin/v1/models",
        json!({"display_name": "forbidden-model", "provider": "x", "model_name": "m",
        "provider_key_id": other_key["id"]}),
    )
    .await;
    created(&gw, "/admin/v1/apikeys", json!({"key_hash": sha256_hex("sk-all"), "allowed_models": "*"})).await;

    let cases = [
        ("sk-wrong", json!({"model": "deepseek-flash-prod", "messages": []}), 401, "invalid_api_key"),
        ("sk-ok", json!({"model": "nope", "messages": []}), 404, "model_not_found"),
        ("sk-ok", json!({"model": "forbidden-model", "messages": []}), 403, "permission_denied"),
    ];
    for (key, body, status, code) in cases {
        let response = chat(&gw, key, body).await;
        assert_eq!(response.status().as_u16(), status, "{code}");
        let body = json_of(response).await;
        assert_eq!(body["error"]["code"], code, "{body}");
        assert!(body["error"]["message"].is_string() && body["error"]["type"].is_string());
    }
    let response = gw.http.post(gw.url("/v1/chat/completions")).body("{}").send().await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "no key at all");
    let response =
        gw.http.post(gw.url("/v1/chat/completions")).header("x-api-key", "sk-ok").body("{bad").send().await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(chat(&gw, "sk-all", json!({"model": "forbidden-model", "messages": []})).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn admin_status_codes_name_the_field_and_catch_duplicates() {
    let gw = TestGateway::start().await;
    let key = json!({"display_name": "k", "provider": "p", "adapter": "openai", "secret": "s", "api_base": "http://127.0.0.1:1"});
    let id = created(&gw, "/admin/v1/provider_keys", key.clone()).await["id"].as_str().unwrap().to_string();
    let cases = [
        (
            "/admin/v1/provider_keys",
            json!({"display_name": "k2", "provider": "p", "adapter": "soap", "secret": "s"}),
            400,
            "adapter",
        ),
        ("/admin/v1/provider_keys", json!({"display_name": "k2", "provider": "p", "adapter": "openai"}), 400, "secret"),
        (
            "/admin/v1/provider_keys",
            json!({"display_name": "k2", "provider": "p", "adapter": "openai", "secret": "s", "api_base": "not a url"}),
            400,
            "api_base",
        ),
        ("/admin/v1/provider_keys", key.clone(), 409, "display_name"),
        (
            "/admin/v1/models",
            json!({"display_name": "m", "provider": "p", "model_name": "x", "provider_key_id": "missing"}),
            400,
            "provider_key_id",
        ),
        (
            "/admin/v1/models",
            json!({"display_name": "m", "provider": "p", "model_name": "x", "provider_key_id": id, "cost": {"input_per_1k": 1}}),
            400,
            "cost.output_per_1k",
        ),
        ("/admin/v1/apikeys", json!({"key_hash": "abc", "allowed_models": ["m"]}), 400, "key_hash"),
    ];
    for (path, body, status, field) in cases {
        let (got, reply) = admin_v1(&gw, Method::POST, path, Some(body)).await;
        assert_eq!(got.as_u16(), status, "{path} {reply}");
        assert!(reply["error_msg"].as_str().unwrap().contains(field), "{reply} should name {field}");
    }
    created(
        &gw,
        "/admin/v1/models",
        json!({"display_name": "m", "provider": "p", "model_name": "x", "provider_key_id": id}),
    )
    .await;
    let (status, _) = admin_v1(
        &gw,
        Method::POST,
        "/admin/v1/models",
        Some(json!({"display_name": "m", "provider": "p", "model_name": "y", "provider_key_id": id})),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);
    let hash = sha256_hex("k");
    created(&gw, "/admin/v1/apikeys", json!({"key_hash": hash, "allowed_models": "*"})).await;
    let (status, _) =
        admin_v1(&gw, Method::POST, "/admin/v1/apikeys", Some(json!({"key_hash": hash, "allowed_models": []}))).await;
    assert_eq!(status, StatusCode::CONFLICT);

    assert_eq!(admin_v1(&gw, Method::GET, "/admin/v1/models/missing", None).await.0, StatusCode::NOT_FOUND);
    assert_eq!(admin_v1(&gw, Method::DELETE, "/admin/v1/models/missing", None).await.0, StatusCode::NOT_FOUND);
    let unauthorized = gw
        .http
        .get(format!("http://{}/admin/v1/models", gw.admin))
        .header("Authorization", "Bearer nope")
        .send()
        .await
        .unwrap();
    assert_eq!(unauthorized.status(), StatusCode::UNAUTHORIZED);
    let by_header = gw
        .http
        .get(format!("http://{}/admin/v1/models", gw.admin))
        .header("x-api-key", crate::harness::gateway::ADMIN_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(by_header.status(), StatusCode::OK);
    let (status, reply) = admin_v1(&gw, Method::DELETE, &format!("/admin/v1/provider_keys/{id}"), None).await;
    assert_eq!(status, StatusCode::CONFLICT, "a provider key in use by a model: {reply}");
}

#[tokio::test]
async fn rotation_returns_the_new_key_once_and_retires_the_old_one() {
    let mock = MockUpstream::llm("m").await;
    let gw = TestGateway::start().await;
    deepseek_setup(&gw, &mock, "sk-old").await;
    let (_, keys) = admin_v1(&gw, Method::GET, "/admin/v1/apikeys", None).await;
    let id = keys[0]["id"].as_str().unwrap().to_string();
    let (status, rotated) = admin_v1(&gw, Method::POST, &format!("/admin/v1/apikeys/{id}/rotate"), None).await;
    assert_eq!(status, StatusCode::OK);
    let new_key = rotated["key"].as_str().unwrap().to_string();
    assert_eq!(rotated["value"]["key_hash"], sha256_hex(&new_key));
    assert_eq!(rotated["revision"], 2);
    let (_, again) = admin_v1(&gw, Method::GET, &format!("/admin/v1/apikeys/{id}"), None).await;
    assert!(again.get("key").is_none(), "the plaintext is shown once");
    let body = json!({"model": "deepseek-flash-prod", "messages": []});
    assert_eq!(chat(&gw, "sk-old", body.clone()).await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(chat(&gw, &new_key, body).await.status(), StatusCode::OK);
    let (status, deleted) = admin_v1(&gw, Method::DELETE, &format!("/admin/v1/apikeys/{id}"), None).await;
    assert_eq!((status, deleted), (StatusCode::OK, json!({"deleted": true, "id": id})));
}

#[tokio::test]
async fn strip_headers_and_caller_keys_never_reach_the_provider() {
    let mock = MockUpstream::llm("m").await;
    let gw = TestGateway::start().await;
    let key = created(
        &gw,
        "/admin/v1/provider_keys",
        json!({"display_name": "k", "provider": "p", "adapter": "openai",
        "secret": "provider-secret", "api_base": mock.base_url(), "strip_headers": ["x-internal"]}),
    )
    .await;
    created(
        &gw,
        "/admin/v1/models",
        json!({"display_name": "a", "provider": "p", "model_name": "m", "provider_key_id": key["id"]}),
    )
    .await;
    created(&gw, "/admin/v1/apikeys", json!({"key_hash": sha256_hex("caller"), "allowed_models": ["a"]})).await;
    let response = gw
        .http
        .post(gw.url("/v1/chat/completions"))
        .header("x-api-key", "caller")
        .header("x-internal", "secret-routing")
        .header("cookie", "c=1")
        .header("x-trace", "kept")
        .body(json!({"model": "a", "messages": []}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let seen = mock.last();
    assert!(!seen.headers.contains_key("x-internal"));
    assert!(!seen.headers.contains_key("x-api-key"), "the caller's key was forwarded");
    assert!(!seen.headers.contains_key("cookie"));
    assert_eq!(seen.headers["authorization"], "Bearer provider-secret");
    assert_eq!(seen.headers["x-trace"], "kept");
}

#[tokio::test]
async fn azure_and_anthropic_adapters_speak_their_wire() {
    let mock = MockUpstream::llm("m").await;
    let gw = TestGateway::start().await;
    let azure = created(&gw, "/admin/v1/provider_keys", json!({"display_name": "az", "provider": "azure", "adapter": "azure-openai",
        "secret": "az-secret", "api_base": format!("{}/openai/deployments/x/chat/completions?api-version=2024-02-01", mock.base_url())}))
    .await;
    let claude = created(
        &gw,
        "/admin/v1/provider_keys",
        json!({"display_name": "cl", "provider": "anthropic", "adapter": "anthropic",
        "secret": "cl-secret", "api_base": mock.base_url()}),
    )
    .await;
    created(&gw, "/admin/v1/models", json!({"display_name": "gpt", "provider": "azure", "model_name": "gpt4o-deploy", "provider_key_id": azure["id"]})).await;
    created(&gw, "/admin/v1/models", json!({"display_name": "claude", "provider": "anthropic", "model_name": "claude-sonnet-4", "provider_key_id": claude["id"]})).await;
    created(&gw, "/admin/v1/apikeys", json!({"key_hash": sha256_hex("k"), "allowed_models": "*"})).await;

    let response = chat(&gw, "k", json!({"model": "gpt", "messages": [{"role": "user", "content": "hi"}]})).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(json_of(response).await["model"], "gpt");
    let seen = mock.last();
    assert_eq!(seen.path, "/openai/deployments/gpt4o-deploy/chat/completions?api-version=2024-02-01");
    assert_eq!(seen.headers["api-key"], "az-secret");
    assert!(serde_json::from_slice::<Value>(&seen.body).unwrap().get("model").is_none());

    let response = chat(
        &gw,
        "k",
        json!({"model": "claude", "max_tokens": 50,
        "messages": [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    let body = json_of(response).await;
    assert_eq!(body["model"], "claude");
    assert_eq!(body["choices"][0]["message"]["content"], "Hello from Claude.");
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    assert_eq!(
        body["usage"],
        json!({"prompt_tokens": 32, "completion_tokens": 6, "total_tokens": 38,
            "prompt_tokens_details": {"cached_tokens": 8, "cache_creation_input_tokens": 3}})
    );
    let seen = mock.last();
    assert_eq!(seen.path, "/v1/messages");
    assert_eq!(seen.headers["x-api-key"], "cl-secret");
    assert_eq!(seen.headers["anthropic-version"], "2023-06-01");
    let sent: Value = serde_json::from_slice(&seen.body).unwrap();
    assert_eq!(sent["system"], "Be kind.");
    assert_eq!(sent["model"], "claude-sonnet-4");
    assert_eq!(sent["messages"], json!([{"role": "user", "content": [{"type": "text", "text": "hi"}]}]));

    let response = chat(
        &gw,
        "k",
        json!({"model": "claude", "stream": true, "stream_options": {"include_usage": true},
        "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    let mut text = String::new();
    let mut stream = response.bytes_stream();
    while let Some(frame) = stream.next().await {
        text.push_str(&String::from_utf8_lossy(&frame.unwrap()));
    }
    let chunks: Vec<Value> = text
        .split("\n\n")
        .filter_map(|e| e.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    let content: String = chunks.iter().filter_map(|c| c["choices"][0]["delta"]["content"].as_str()).collect();
    assert_eq!(content, "Hello there");
    assert!(chunks.iter().all(|c| c["model"] == "claude"));
    assert!(chunks.iter().any(|c| c["choices"][0]["finish_reason"] == "stop"));
    assert_eq!(chunks.last().unwrap()["usage"]["total_tokens"], 27);
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
}

#[tokio::test]
async fn models_list_embeddings_reasoning_field_and_hot_reload() {
    let mock = MockUpstream::llm("m").await;
    let gw = TestGateway::start().await;
    let key = created(
        &gw,
        "/admin/v1/provider_keys",
        json!({"display_name": "k", "provider": "vendor", "adapter": "openai",
        "secret": "s", "api_base": mock.base_url(), "response": {"reasoning_field": "reasoning"}}),
    )
    .await;
    let model = created(
        &gw,
        "/admin/v1/models",
        json!({"display_name": "alias", "provider": "vendor", "model_name": "v1-model", "provider_key_id": key["id"]}),
    )
    .await;
    created(
        &gw,
        "/admin/v1/models",
        json!({"display_name": "hidden", "provider": "vendor", "model_name": "x", "provider_key_id": key["id"]}),
    )
    .await;
    created(&gw, "/admin/v1/apikeys", json!({"key_hash": sha256_hex("k"), "allowed_models": ["alias"]})).await;

    let list = gw.http.get(gw.url("/v1/models")).header("Authorization", "Bearer k").send().await.unwrap();
    assert_eq!(
        json_of(list).await,
        json!({"object": "list", "data": [{"id": "alias", "object": "model", "created": 0, "owned_by": "vendor"}]})
    );

    let embeddings = gw
        .http
        .post(gw.url("/v1/embeddings"))
        .header("Authorization", "Bearer k")
        .body(json!({"model": "alias", "input": "hello"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(embeddings.status(), StatusCode::OK);
    assert_eq!(json_of(embeddings).await["model"], "alias");
    assert_eq!(mock.last().path, "/embeddings");

    let response = gw
        .http
        .post(gw.url("/v1/chat/completions"))
        .header("Authorization", "Bearer k")
        .header("x-mock-reasoning-field", "reasoning")
        .body(json!({"model": "alias", "messages": []}).to_string())
        .send()
        .await
        .unwrap();
    let body = json_of(response).await;
    assert_eq!(body["choices"][0]["message"]["reasoning_content"], "thinking it over");
    assert!(body["choices"][0]["message"].get("reasoning").is_none());

    let id = model["id"].as_str().unwrap();
    let (status, _) = admin_v1(
        &gw,
        Method::PUT,
        &format!("/admin/v1/models/{id}"),
        Some(json!({"display_name": "alias",
        "provider": "vendor", "model_name": "v2-model", "provider_key_id": key["id"]})),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    chat(&gw, "k", json!({"model": "alias", "messages": []})).await;
    let sent: Value = serde_json::from_slice(&mock.last().body).unwrap();
    assert_eq!(sent["model"], "v2-model", "the change is live without a restart");
}

#[tokio::test]
async fn every_model_api_call_logs_its_model_and_tokens() {
    crate::harness::logs::capture();
    let mock = MockUpstream::llm("deepseek-usage-log").await;
    let gw = TestGateway::start_in(tempfile::tempdir().unwrap(), |config| config.log.access_log = true).await;
    deepseek_setup(&gw, &mock, "sk-usage-log").await;
    let response = gw
        .http
        .post(gw.url("/v1/chat/completions"))
        .header("Authorization", "Bearer sk-usage-log")
        .header("X-Request-Id", "model-api-usage-log")
        .body(json!({"model": "deepseek-flash-prod", "messages": [{"role": "user", "content": "Hi"}]}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    response.bytes().await.unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let line = loop {
        let all = crate::harness::logs::all();
        if let Some(line) = all.lines().find(|l| l.contains("request_id=model-api-usage-log")) {
            break line.to_string();
        }
        assert!(std::time::Instant::now() < deadline, "no access line for the call");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    // The alias is the line's upstream; `model` is the model the provider answered with.
    assert!(line.contains("upstream=deepseek-flash-prod") && line.contains("model=deepseek-v4-flash"), "{line}");
    for field in ["prompt_tokens=", "completion_tokens=", "total_tokens="] {
        assert!(line.contains(field), "{field} missing: {line}");
    }
    assert!(!line.contains("total_tokens=0 "), "{line}");
}
