//! Google Cloud on 127.0.0.1:0, for the Vertex AI tests: an OAuth2 token endpoint (`/token`)
//! and Vertex AI's chat and `:predict` endpoints, on one listener.
//!
//! The token endpoint checks each JWT-bearer grant as Google does: the assertion's RS256
//! signature against the test service account's public key, its `iss` (the account's email),
//! `aud` (the token URI), `scope` and lifetime. It counts token requests and issues
//! `ya29.mock-<n>` tokens that live `expires_in` seconds. The Vertex side accepts only a bearer
//! it issued (and that has not expired) or one [`GcpMock::accept`]ed, and answers 401 as Google
//! does otherwise; it refuses a `:predict` body with fields Vertex does not know.
//!
//! The test service account's RSA key is made once per test binary ([`test_key`]): no private
//! key is committed.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
use serde_json::{json, Value};
use tokio::net::TcpListener;

use super::mock::Seen;
use super::wire;

/// The test service account's email: the assertions' `iss`.
pub const CLIENT_EMAIL: &str = "switchyard-test@test-project.iam.gserviceaccount.com";
pub const PROJECT: &str = "test-project";
pub const REGION: &str = "us-central1";
const SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";

const CHAT_JSON: &str = include_str!("../fixtures/chat.json");
const CHAT_SSE: &str = include_str!("../fixtures/chat.sse");

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type MockBody = http_body_util::combinators::BoxBody<Bytes, BoxError>;

/// An RSA key pair in PEM form.
pub struct TestKey {
    pub private_pem: String,
    pub public_pem: String,
}

impl TestKey {
    fn generate() -> TestKey {
        let private = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).unwrap();
        let private_pem = private.to_pkcs8_pem(LineEnding::LF).unwrap().to_string();
        let public_pem = private.to_public_key().to_public_key_pem(LineEnding::LF).unwrap();
        TestKey { private_pem, public_pem }
    }
}

/// The test service account's key, made on first use.
pub fn test_key() -> &'static TestKey {
    static KEY: OnceLock<TestKey> = OnceLock::new();
    KEY.get_or_init(TestKey::generate)
}

/// Another key, which the token endpoint does not know.
pub fn stranger_key() -> &'static TestKey {
    static KEY: OnceLock<TestKey> = OnceLock::new();
    KEY.get_or_init(TestKey::generate)
}

/// A service account JSON key (as `gcloud` writes it) for `key`, trading at `token_uri`.
pub fn service_account_json(key: &TestKey, token_uri: &str) -> String {
    json!({
        "type": "service_account",
        "project_id": PROJECT,
        "private_key_id": "test-key-1",
        "private_key": key.private_pem,
        "client_email": CLIENT_EMAIL,
        "client_id": "1234567890",
        "token_uri": token_uri,
    })
    .to_string()
}

/// How the token endpoint answers.
#[derive(Debug, Clone)]
pub struct TokenBehaviour {
    /// The lifetime of the tokens issued, in seconds.
    pub expires_in: u64,
    /// Answer every token request with this status (and an OAuth2 error).
    pub fail_with: Option<u16>,
    /// Wait this long before answering a token request.
    pub delay: Duration,
}

impl Default for TokenBehaviour {
    fn default() -> Self {
        TokenBehaviour { expires_in: 3600, fail_with: None, delay: Duration::ZERO }
    }
}

#[derive(Default)]
struct State {
    /// Issued tokens and when each expires.
    issued: HashMap<String, Instant>,
    /// Bearers accepted whatever the token endpoint issued (pre-minted tokens).
    accepted: Vec<String>,
    behaviour: TokenBehaviour,
    /// Vertex requests, as received.
    seen: Vec<Seen>,
    /// Assertions the token endpoint refused, with why.
    refused: Vec<String>,
}

#[derive(Clone)]
pub struct GcpMock {
    pub addr: SocketAddr,
    token_requests: Arc<AtomicUsize>,
    unauthenticated: Arc<AtomicUsize>,
    state: Arc<Mutex<State>>,
}

impl GcpMock {
    pub async fn start() -> GcpMock {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mock = GcpMock {
            addr: listener.local_addr().unwrap(),
            token_requests: Arc::default(),
            unauthenticated: Arc::default(),
            state: Arc::default(),
        };
        let server = mock.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { return };
                let mock = server.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| {
                        let mock = mock.clone();
                        async move { Ok::<_, Infallible>(mock.answer(req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        mock
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn token_uri(&self) -> String {
        format!("{}/token", self.base_url())
    }

    /// The test service account, trading its assertions here.
    pub fn service_account(&self) -> String {
        service_account_json(test_key(), &self.token_uri())
    }

    /// Token requests received, refused ones included.
    pub fn token_requests(&self) -> usize {
        self.token_requests.load(Ordering::SeqCst)
    }

    /// Vertex requests refused for their bearer.
    pub fn unauthenticated(&self) -> usize {
        self.unauthenticated.load(Ordering::SeqCst)
    }

    /// Why assertions were refused.
    pub fn refused(&self) -> Vec<String> {
        self.state.lock().unwrap().refused.clone()
    }

    pub fn behave(&self, behaviour: TokenBehaviour) {
        self.state.lock().unwrap().behaviour = behaviour;
    }

    /// Accepts `token` as a bearer from now on.
    pub fn accept(&self, token: &str) {
        self.state.lock().unwrap().accepted.push(token.to_string());
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.state.lock().unwrap().seen.clone()
    }

    pub fn last(&self) -> Seen {
        self.seen().pop().expect("the Vertex mock saw a request")
    }

    async fn answer(&self, req: hyper::Request<hyper::body::Incoming>) -> hyper::Response<MockBody> {
        let (head, body) = req.into_parts();
        let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
        let path = head.uri.path().to_string();
        if path == "/token" {
            return self.token(&body).await;
        }
        self.state.lock().unwrap().seen.push(Seen {
            path: head.uri.path_and_query().map_or("/".into(), |p| p.to_string()),
            headers: head.headers.clone(),
            body: body.clone(),
        });
        let bearer = head.headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("");
        if !self.authenticated(bearer) {
            self.unauthenticated.fetch_add(1, Ordering::SeqCst);
            return google_error(
                401,
                "UNAUTHENTICATED",
                "Request had invalid authentication credentials. Expected OAuth 2 access token.",
            );
        }
        let request: Value = match serde_json::from_slice(&body) {
            Ok(request) => request,
            Err(_) => return google_error(400, "INVALID_ARGUMENT", "Invalid JSON payload received."),
        };
        let models = format!("/v1/projects/{PROJECT}/locations/{REGION}/publishers/google/models/");
        if path == format!("/v1beta1/projects/{PROJECT}/locations/{REGION}/endpoints/openapi/chat/completions") {
            return chat(&request);
        }
        if let Some(model) = path.strip_prefix(&models).and_then(|rest| rest.strip_suffix(":predict")) {
            return predict(model, &request);
        }
        google_error(404, "NOT_FOUND", &format!("no Vertex AI endpoint at {path}"))
    }

    fn authenticated(&self, bearer: &str) -> bool {
        let Some(token) = bearer.strip_prefix("Bearer ") else { return false };
        let state = self.state.lock().unwrap();
        state.accepted.iter().any(|t| t == token)
            || state.issued.get(token).is_some_and(|until| Instant::now() < *until)
    }

    /// The token endpoint: a JWT-bearer grant, checked, answered with a new token.
    async fn token(&self, body: &[u8]) -> hyper::Response<MockBody> {
        let n = self.token_requests.fetch_add(1, Ordering::SeqCst) + 1;
        let behaviour = self.state.lock().unwrap().behaviour.clone();
        tokio::time::sleep(behaviour.delay).await;
        if let Some(status) = behaviour.fail_with {
            return json_answer(status, json!({"error": "internal_failure", "error_description": "the mock is down"}));
        }
        let form: HashMap<String, String> = url::form_urlencoded::parse(body).into_owned().collect();
        if form.get("grant_type").map(String::as_str) != Some("urn:ietf:params:oauth:grant-type:jwt-bearer") {
            return json_answer(400, json!({"error": "unsupported_grant_type"}));
        }
        if let Err(why) = self.check_assertion(form.get("assertion").map_or("", String::as_str)) {
            self.state.lock().unwrap().refused.push(why.clone());
            return json_answer(400, json!({"error": "invalid_grant", "error_description": why}));
        }
        let token = format!("ya29.mock-{n}");
        let until = Instant::now() + Duration::from_secs(behaviour.expires_in);
        self.state.lock().unwrap().issued.insert(token.clone(), until);
        json_answer(200, json!({"access_token": token, "expires_in": behaviour.expires_in, "token_type": "Bearer"}))
    }

    /// Checks an assertion's signature (with the test key's public half) and claims.
    fn check_assertion(&self, assertion: &str) -> Result<(), String> {
        #[derive(serde::Deserialize)]
        struct Claims {
            scope: String,
            iat: u64,
            exp: u64,
        }
        let key = jsonwebtoken::DecodingKey::from_rsa_pem(test_key().public_pem.as_bytes()).unwrap();
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
        validation.set_audience(&[self.token_uri()]);
        validation.set_issuer(&[CLIENT_EMAIL]);
        validation.set_required_spec_claims(&["exp", "iat", "iss", "aud"]);
        let claims = jsonwebtoken::decode::<Claims>(assertion, &key, &validation)
            .map_err(|err| format!("Invalid JWT: {err}"))?
            .claims;
        if claims.scope != SCOPE {
            return Err(format!("Invalid scope: {}", claims.scope));
        }
        if claims.exp <= claims.iat || claims.exp - claims.iat > 3600 {
            return Err("Invalid JWT: the assertion must live at most an hour".into());
        }
        Ok(())
    }
}

/// Vertex's OpenAI-compatible chat: the `chat.json` completion, or `chat.sse` when streamed.
fn chat(request: &Value) -> hyper::Response<MockBody> {
    if let Err(problem) = wire::check_chat(request) {
        return google_error(400, "INVALID_ARGUMENT", &problem);
    }
    if request["stream"] == true {
        let events: Vec<Result<Frame<Bytes>, BoxError>> =
            CHAT_SSE.split_inclusive("\n\n").map(|e| Ok(Frame::data(Bytes::from(e.to_string())))).collect();
        let body = StreamBody::new(futures_util::stream::iter(events)).boxed();
        return hyper::Response::builder().header("content-type", "text/event-stream").body(body).unwrap();
    }
    let mut completion: Value = serde_json::from_str(CHAT_JSON).unwrap();
    completion["model"] = request["model"].clone();
    json_answer(200, completion)
}

/// A text embedding model's `:predict`: three values per instance, its word count as tokens.
fn predict(model: &str, request: &Value) -> hyper::Response<MockBody> {
    let known = ["instances", "parameters"];
    if let Some(unknown) =
        request.as_object().into_iter().flatten().map(|(k, _)| k).find(|k| !known.contains(&k.as_str()))
    {
        let message = format!("Invalid JSON payload received. Unknown name \"{unknown}\": Cannot find field.");
        return google_error(400, "INVALID_ARGUMENT", &message);
    }
    let Some(instances) = request["instances"].as_array() else {
        return google_error(400, "INVALID_ARGUMENT", "instances is required");
    };
    let mut predictions = Vec::new();
    for instance in instances {
        let Some(content) = instance["content"].as_str() else {
            return google_error(400, "INVALID_ARGUMENT", "every instance needs a content string");
        };
        let words = content.split_whitespace().count();
        predictions.push(json!({"embeddings": {"values": [0.5, -0.25, words as f64],
            "statistics": {"token_count": words, "truncated": false}}}));
    }
    json_answer(200, json!({"predictions": predictions, "metadata": {"model": model}}))
}

fn google_error(status: u16, kind: &str, message: &str) -> hyper::Response<MockBody> {
    json_answer(status, json!({"error": {"code": status, "message": message, "status": kind}}))
}

fn json_answer(status: u16, body: Value) -> hyper::Response<MockBody> {
    hyper::Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())).map_err(|never| match never {}).boxed())
        .unwrap()
}
