//! Failover users can trust blind: each provider fault of the issue, with a healthy second
//! target, through both surfaces of the one engine: an `ai-proxy-multi` route, and a routing
//! alias of the model API. Each asserts what the client saw (the whole answer once, one
//! well-formed stream, or a clean error) and what the faulty provider saw (attempts and gaps).

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use switchyard::resource::api_key::sha256_hex;

use crate::harness::faulty::{answer_text, FaultyUpstream};
use crate::harness::TestGateway;

/// Where a test sends its requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Surface {
    /// `POST /<id>`, a route with `ai-proxy-multi`.
    Route,
    /// `POST /v1/chat/completions` with `"model": "<id>"`, a routing model over two direct ones.
    Alias,
}

/// The caller key of the model API in these tests.
const CALLER: &str = "sk-failover-caller";

/// The settings a test turns, which each surface spells its own way.
#[derive(Default)]
struct Knobs {
    /// Route: plugin-level; alias: the routing model's.
    retry_after_max_wait_ms: Option<u64>,
    /// Route: `same_instance_retries`; alias: `routing.retries`.
    same_instance_retries: Option<u32>,
    /// Route: plugin-level `first_token_timeout_ms`; alias: the primary's `stream_timeout`.
    first_token_timeout_ms: Option<u64>,
    /// The primary's own first-token limit (0: none), over the above.
    primary_first_token_ms: Option<u64>,
    /// Route: `stream_idle_timeout_ms`; alias: the primary's `stream_timeout`.
    stream_idle_timeout_ms: Option<u64>,
    stream_resume: bool,
    /// Route: plugin-level `timeout`; alias: the primary's `timeout`.
    timeout: Option<u64>,
    fallback_error_codes: Vec<&'static str>,
    /// The primary's first and longest cooldown, ms (route: `checks.passive`; alias: `cooldown`).
    primary_cooldown_ms: Option<(u64, u64)>,
    /// The fallback takes a broken stream up by a restart (route: `accepts_prefill: false`;
    /// alias: an `openai` provider, which answers a prefill anew).
    fallback_restarts: bool,
    /// More `ai-proxy-multi` fields (route only: they have no routing model spelling).
    route_only: Value,
}

/// One gateway, and the surface its requests go through.
struct Tester {
    gw: TestGateway,
    surface: Surface,
}

impl Tester {
    async fn start(surface: Surface) -> Tester {
        let gw = TestGateway::start().await;
        if surface == Surface::Alias {
            gw.create_v1("/admin/v1/apikeys", json!({"key_hash": sha256_hex(CALLER), "allowed_models": ["*"]})).await;
        }
        Tester { gw, surface }
    }

    /// Sets up `id`: a primary playing `fault` on `primary` and a fallback playing `fallback_fault`
    /// on `fallback`, with `knobs`. `Err`: the admin API refused it, with its message.
    async fn try_setup(
        &self,
        id: &str,
        (primary, fault): (&FaultyUpstream, &str),
        (fallback, fallback_fault): (&FaultyUpstream, &str),
        knobs: &Knobs,
    ) -> Result<(), String> {
        match self.surface {
            Surface::Route => self.route(id, (primary, fault), (fallback, fallback_fault), knobs).await,
            Surface::Alias => self.alias(id, (primary, fault), (fallback, fallback_fault), knobs).await,
        }
    }

    async fn setup(&self, id: &str, primary: (&FaultyUpstream, &str), fallback: (&FaultyUpstream, &str), knobs: Knobs) {
        self.try_setup(id, primary, fallback, &knobs).await.unwrap();
    }

    async fn route(
        &self,
        id: &str,
        (primary, fault): (&FaultyUpstream, &str),
        (fallback, fallback_fault): (&FaultyUpstream, &str),
        knobs: &Knobs,
    ) -> Result<(), String> {
        let instance = |name: &str, mock: &FaultyUpstream, fault: &str, priority: i64| {
            json!({"name": name, "provider": "openai-compatible", "weight": 1, "priority": priority,
                "auth": {"header": {"Authorization": "Bearer key"}}, "options": {"model": fault},
                "override": {"endpoint": mock.endpoint()}})
        };
        let mut instances = [instance("primary", primary, fault, 2), instance("fallback", fallback, fallback_fault, 1)];
        if let Some(ms) = knobs.primary_first_token_ms {
            instances[0]["first_token_timeout_ms"] = json!(ms);
        }
        if let Some((first, max)) = knobs.primary_cooldown_ms {
            instances[0]["checks"] = json!({"passive": {"cooldown_ms": first, "max_cooldown_ms": max}});
        }
        if knobs.fallback_restarts {
            instances[1]["accepts_prefill"] = json!(false);
        }
        let mut plugin = json!({"fallback_strategy": ["http_429", "http_5xx"], "instances": instances,
            "stream_resume": knobs.stream_resume, "fallback_error_codes": knobs.fallback_error_codes});
        for (field, value) in [
            ("retry_after_max_wait_ms", knobs.retry_after_max_wait_ms),
            ("same_instance_retries", knobs.same_instance_retries.map(u64::from)),
            ("first_token_timeout_ms", knobs.first_token_timeout_ms),
            ("stream_idle_timeout_ms", knobs.stream_idle_timeout_ms),
            ("timeout", knobs.timeout),
        ] {
            if let Some(value) = value {
                plugin[field] = json!(value);
            }
        }
        if let Some(extra) = knobs.route_only.as_object() {
            plugin.as_object_mut().unwrap().extend(extra.clone());
        }
        let route = json!({"id": id, "paths": [format!("/{id}")], "plugins": {"ai-proxy-multi": plugin}});
        let (status, reply) = self.gw.admin(Method::PUT, "/apisix/admin/routes", Some(route)).await;
        if status.is_success() {
            Ok(())
        } else {
            Err(reply["error_msg"].as_str().unwrap_or_default().to_string())
        }
    }

    async fn alias(
        &self,
        id: &str,
        (primary, fault): (&FaultyUpstream, &str),
        (fallback, fallback_fault): (&FaultyUpstream, &str),
        knobs: &Knobs,
    ) -> Result<(), String> {
        let mut targets = Vec::new();
        for (role, mock, fault) in [("primary", primary, fault), ("fallback", fallback, fallback_fault)] {
            let provider = if role == "fallback" && knobs.fallback_restarts { "openai" } else { "vllm" };
            let key = self
                .gw
                .create_v1(
                    "/admin/v1/provider_keys",
                    json!({"display_name": format!("{id}-{role}"), "provider": provider,
                    "adapter": "openai", "secret": "key", "api_base": format!("http://{}/v1", mock.addr)}),
                )
                .await;
            let mut model = json!({"display_name": format!("{id}-{role}"), "provider": provider, "model_name": fault,
                "provider_key_id": key["id"]});
            if role == "primary" {
                let stream_timeout = knobs
                    .primary_first_token_ms
                    .or(knobs.first_token_timeout_ms)
                    .or(knobs.stream_idle_timeout_ms)
                    .filter(|ms| *ms > 0);
                if let Some(ms) = stream_timeout {
                    model["stream_timeout"] = json!(ms);
                }
                if let Some(ms) = knobs.timeout {
                    model["timeout"] = json!(ms);
                }
                if let Some((first, max)) = knobs.primary_cooldown_ms {
                    model["cooldown"] =
                        json!({"default_seconds": first as f64 / 1000.0, "max_seconds": max as f64 / 1000.0});
                }
            }
            self.gw.create_v1("/admin/v1/models", model).await;
            targets.push(json!({"model": format!("{id}-{role}")}));
        }
        let routing = json!({"display_name": id, "routing": {"strategy": "failover", "targets": targets,
            "retries": knobs.same_instance_retries.unwrap_or(0), "retry_on_429": true,
            "stream_resume": knobs.stream_resume, "retry_after_max_wait_ms": knobs.retry_after_max_wait_ms.unwrap_or(0),
            "fallback_error_codes": knobs.fallback_error_codes}});
        let (status, reply) = self.gw.admin_v1(Method::POST, "/admin/v1/models", Some(routing)).await;
        if status.is_success() {
            Ok(())
        } else {
            Err(reply["error_msg"].as_str().unwrap_or_default().to_string())
        }
    }

    /// One chat request to `id`.
    async fn ask(&self, id: &str, stream: bool) -> Answer {
        let started = Instant::now();
        let mut body = json!({"stream": stream, "messages": [{"role": "user", "content": "count to sixty"}]});
        let request = match self.surface {
            Surface::Route => self.gw.http.post(self.gw.url(&format!("/{id}"))),
            Surface::Alias => {
                body["model"] = json!(id);
                self.gw
                    .http
                    .post(self.gw.url("/v1/chat/completions"))
                    .header("Authorization", format!("Bearer {CALLER}"))
            }
        };
        let response = request.body(body.to_string()).send().await.unwrap();
        let header =
            |name: &str| response.headers().get(name).map_or(String::new(), |v| v.to_str().unwrap().to_string());
        let instance = header("x-switchyard-instance");
        // A routing alias names its targets `<id>-primary` and `<id>-fallback`.
        let instance = instance.strip_prefix(&format!("{id}-")).unwrap_or(&instance).to_string();
        let (status, attempts) = (response.status(), header("x-switchyard-attempts"));
        let body = response.text().await.unwrap();
        Answer { status, instance, attempts, body, took: started.elapsed() }
    }

    /// The model the fallback's answer names: its upstream model on a route, its alias on the
    /// model API (which names answers after the model that wrote them).
    fn fallback_model(&self, id: &str) -> String {
        match self.surface {
            Surface::Route => "ok".into(),
            Surface::Alias => format!("{id}-fallback"),
        }
    }
}

/// Two fresh mocks: the primary's and the fallback's.
async fn mocks() -> (FaultyUpstream, FaultyUpstream) {
    (FaultyUpstream::start("primary").await, FaultyUpstream::start("fallback").await)
}

/// Each fault test runs through a route and through a routing alias.
macro_rules! on_both_surfaces {
    ($($fault:ident),* $(,)?) => {$(
        mod $fault {
            #[tokio::test]
            async fn route() {
                super::$fault(super::Surface::Route).await
            }
            #[tokio::test]
            async fn routing_alias() {
                super::$fault(super::Surface::Alias).await
            }
        }
    )*};
}

/// What a client got from one request.
struct Answer {
    status: StatusCode,
    instance: String,
    attempts: String,
    body: String,
    took: Duration,
}

/// An event stream as the client read it.
#[derive(Debug)]
struct Stream {
    text: String,
    done: bool,
    errors: usize,
    role_chunks: usize,
    ids: Vec<String>,
    models: Vec<String>,
    usage: Option<Value>,
    /// Events after `[DONE]` or after an error event (none in a well-formed stream).
    after_end: usize,
}

fn read_stream(body: &str) -> Stream {
    assert!(body.ends_with("\n\n"), "the stream ends with a whole event: {body:?}");
    let mut stream = Stream {
        text: String::new(),
        done: false,
        errors: 0,
        role_chunks: 0,
        ids: Vec::new(),
        models: Vec::new(),
        usage: None,
        after_end: 0,
    };
    for event in body.split("\n\n").filter(|e| !e.is_empty()) {
        if stream.done || stream.errors > 0 {
            stream.after_end += 1;
        }
        if event.starts_with("event: error") {
            stream.errors += 1;
            continue;
        }
        let data = event.strip_prefix("data: ").unwrap_or_else(|| panic!("not a data event: {event:?}"));
        if data == "[DONE]" {
            stream.done = true;
            continue;
        }
        let Ok(chunk) = serde_json::from_str::<Value>(data) else { continue };
        stream.ids.push(chunk["id"].as_str().unwrap_or("").to_string());
        stream.models.push(chunk["model"].as_str().unwrap_or("").to_string());
        if chunk["choices"][0]["delta"]["role"] == "assistant" {
            stream.role_chunks += 1;
        }
        if let Some(text) = chunk["choices"][0]["delta"]["content"].as_str() {
            stream.text.push_str(text);
        }
        if chunk["usage"].is_object() {
            stream.usage = Some(chunk["usage"].clone());
        }
    }
    stream
}

/// The whole answer, once, in one well-formed stream that ends with `[DONE]`.
fn assert_whole(stream: &Stream) {
    assert_eq!(stream.text, answer_text(0), "the whole answer, once");
    assert!(stream.done && stream.errors == 0 && stream.after_end == 0, "{stream:?}");
    assert_eq!(stream.role_chunks, 1, "one opening chunk");
    assert!(stream.ids.windows(2).all(|w| w[0] == w[1]), "one id: {:?}", stream.ids);
}

/// A cut answer that says so: the delivered tokens, then the error event, never `[DONE]`.
fn assert_cut_after(stream: &Stream, tokens: usize) {
    assert_eq!(stream.text, answer_text(0)[..answer_text(0).len() - answer_text(tokens).len()]);
    assert!(!stream.done && stream.errors == 1 && stream.after_end == 0, "{stream:?}");
}

fn gaps(hits: &[crate::harness::faulty::Hit]) -> Vec<Duration> {
    hits.windows(2).map(|w| w[1].at - w[0].at).collect()
}

mod faults;
mod routing;
