//! Row 2's setup: a provider key, a model and a caller API key through the model admin API
//! (`/admin/v1/*` on the admin listener), then callers use `POST /v1/chat/completions`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::load::{self, Target};
use crate::node::Node;
use crate::routes::{CHAT, PROVIDER_KEY};
use crate::Result;

const CALLER_KEY: &str = "sk-bench-caller-0001";
const MODEL_ALIAS: &str = "bench-model";

/// Configures the model API on `node` to reach the mock at `ok`. `Ok(Err(why))` when this build
/// has no model API (or it refused the bench's resources): row 2 is then reported, not faked.
pub async fn configure(node: &Node, ok: SocketAddr) -> Result<Result<Arc<Target>, String>> {
    let provider_key = json!({
        "display_name": "bench-provider", "provider": "openai", "adapter": "openai",
        "secret": PROVIDER_KEY, "api_base": format!("http://{ok}/v1"),
    });
    let (status, body, mut revision) = node.admin_post("/admin/v1/provider_keys", &provider_key).await?;
    if status == 404 || status == 405 {
        return Ok(Err("model API not available".into()));
    }
    if !(200..300).contains(&status) {
        return Ok(Err(format!("model API refused the provider key: {status} {body}")));
    }
    let Some(key_id) = id_of(&body) else {
        return Ok(Err(format!("model API answered a provider key without an id: {body}")));
    };
    let model = json!({
        "display_name": MODEL_ALIAS, "provider": "openai", "model_name": "gpt-4o-mini", "provider_key_id": key_id,
    });
    let apikey = json!({"key_hash": sha256_hex(CALLER_KEY), "allowed_models": [MODEL_ALIAS]});
    for (path, body) in [("/admin/v1/models", model), ("/admin/v1/apikeys", apikey)] {
        let (status, answer, written) = node.admin_post(path, &body).await?;
        if !(200..300).contains(&status) {
            return Ok(Err(format!("model API refused {path}: {status} {answer}")));
        }
        revision = revision.max(written);
    }
    if let Some(revision) = revision {
        node.wait_revision(revision).await?;
    }
    let body = CHAT.replacen("client-model", MODEL_ALIAS, 1);
    let target = Target::post("model API", node.proxy, "/v1/chat/completions", &body)
        .header("authorization", &format!("Bearer {CALLER_KEY}"))?;
    // The write may be acknowledged before this node serves it: wait for the first good answer.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, answer) = load::once(&target).await?;
        if status == 200 {
            return Ok(Ok(Arc::new(target)));
        }
        if Instant::now() > deadline {
            return Ok(Err(format!("the model API never answered 200: {status} {}", String::from_utf8_lossy(&answer))));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The new resource's id, wherever the answer puts it (`id`, `value.id`, `data.id`).
fn id_of(body: &Value) -> Option<String> {
    [&body["id"], &body["value"]["id"], &body["data"]["id"]].into_iter().find_map(|v| match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    })
}

fn sha256_hex(text: &str) -> String {
    Sha256::digest(text.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}
