//! A mock LLM provider (OpenAI chat wire) on raw TCP, so that it can fail the way real providers
//! and networks do: reset, hang, cut or stall a stream at will. The request's `model` names the
//! fault, so each instance of a route can misbehave its own way (an instance's `options.model`);
//! a `x-fault` request header names it instead when present.
//!
//! A healthy answer (`ok`) is 60 tokens, `t0 t1 ... t59 `, one per stream event, then a
//! `finish_reason` chunk, a usage chunk and `data: [DONE]`. A request whose last message is an
//! assistant prefill holding the first k tokens is continued from token k, as a model would.
//! Usage: `prompt_tokens` 10 plus the prefill's tokens, `completion_tokens` the tokens sent.
//!
//! Faults (`N`, `MS`: numbers):
//! - `429-after-N`: 429 with `Retry-After: N`, always; `429-once-after-N`: only the first time;
//! - `429`: 429 without `Retry-After`, always; `503`: 503, always; `500-once`: 500, then `ok`;
//! - `reset`: reads the request and resets the connection; `hang`: never answers;
//! - `slow-first-token-MS`: the head at once, the first event MS ms later;
//! - `cut-N`: N tokens, then the connection is cut (no end of the chunked body);
//! - `stall-N`: N tokens, then silence for 10 s, then the cut;
//! - `bad-json`: one event in the middle is not JSON;
//! - `no-done`: a complete stream (finish, usage) without `data: [DONE]`, the body ended properly
//!   and the connection kept open;
//! - `context-length`, `content-policy`: 400 with that OpenAI error code;
//! - `no-prefill`: 400 for a request that ends with an assistant message, else `ok`;
//!   `no-prefill-alt`: the same, but its answer is another one (`u0 u1 ...`);
//! - `down`: 503 while [`FaultyUpstream::set_down`] says so, else `ok`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Tokens in a whole answer.
pub const TOKENS: usize = 60;

/// A request as the mock received it.
#[derive(Debug, Clone)]
pub struct Hit {
    pub at: Instant,
    pub fault: String,
    pub body: Value,
}

impl Hit {
    /// The assistant prefill the request ends with, if it does.
    pub fn prefill(&self) -> Option<String> {
        let last = self.body["messages"].as_array()?.last()?;
        (last["role"] == "assistant").then(|| last["content"].as_str().unwrap_or("").to_string())
    }
}

#[derive(Clone)]
pub struct FaultyUpstream {
    pub addr: SocketAddr,
    name: &'static str,
    hits: Arc<Mutex<Vec<Hit>>>,
    down: Arc<AtomicBool>,
}

/// The answer text from token `from` on.
pub fn answer_text(from: usize) -> String {
    (from..TOKENS).map(|i| format!("t{i} ")).collect()
}

impl FaultyUpstream {
    pub async fn start(name: &'static str) -> FaultyUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mock =
            FaultyUpstream { addr: listener.local_addr().unwrap(), name, hits: Arc::default(), down: Arc::default() };
        let server = mock.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                stream.set_nodelay(true).unwrap();
                tokio::spawn(server.clone().serve(stream));
            }
        });
        mock
    }

    /// The chat completions endpoint, for an instance's `override.endpoint`.
    pub fn endpoint(&self) -> String {
        format!("http://{}/v1/chat/completions", self.addr)
    }

    pub fn hits(&self) -> Vec<Hit> {
        self.hits.lock().unwrap().clone()
    }

    /// Requests for `fault`.
    pub fn hits_for(&self, fault: &str) -> Vec<Hit> {
        self.hits().into_iter().filter(|h| h.fault == fault).collect()
    }

    /// Makes `down` answer 503 (or not) from now on.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    /// Serves one connection, request after request, until a fault ends it or the peer leaves.
    async fn serve(self, mut stream: TcpStream) {
        let mut buffer = Vec::new();
        while let Some((head, body)) = read_request(&mut stream, &mut buffer).await {
            let body: Value = serde_json::from_slice(&body).unwrap_or_default();
            let header = head.lines().find_map(|line| {
                let (name, value) = line.split_once(':')?;
                name.eq_ignore_ascii_case("x-fault").then(|| value.trim().to_string())
            });
            let fault = header.unwrap_or_else(|| body["model"].as_str().unwrap_or("ok").to_string());
            let earlier = self.hits_for(&fault).len();
            let hit = Hit { at: Instant::now(), fault: fault.clone(), body };
            self.hits.lock().unwrap().push(hit.clone());
            if !self.answer(&mut stream, &fault, earlier, &hit).await {
                return;
            }
        }
    }

    /// Answers one request; `false` when the connection is done with.
    async fn answer(&self, stream: &mut TcpStream, fault: &str, earlier: usize, hit: &Hit) -> bool {
        let number = |prefix: &str| fault.strip_prefix(prefix).and_then(|n| n.parse::<u64>().ok());
        if let Some(seconds) = number("429-after-") {
            return error(stream, 429, &[("retry-after", &seconds.to_string())], "rate_limit_exceeded").await;
        }
        if let Some(seconds) = number("429-once-after-").filter(|_| earlier == 0) {
            return error(stream, 429, &[("retry-after", &seconds.to_string())], "rate_limit_exceeded").await;
        }
        let down = fault == "down" && self.down.load(Ordering::SeqCst);
        match fault {
            "429" => return error(stream, 429, &[], "rate_limit_exceeded").await,
            "503" => return error(stream, 503, &[], "server_overloaded").await,
            "500-once" if earlier == 0 => return error(stream, 500, &[], "server_error").await,
            _ if down => return error(stream, 503, &[], "server_overloaded").await,
            "context-length" => return error(stream, 400, &[], "context_length_exceeded").await,
            "content-policy" => return error(stream, 400, &[], "content_policy_violation").await,
            _ if fault.starts_with("no-prefill") && hit.prefill().is_some() => {
                return error(stream, 400, &[], "prefill_not_supported").await
            }
            "reset" => {
                stream.set_zero_linger().unwrap();
                return false;
            }
            "hang" => {
                tokio::time::sleep(Duration::from_secs(60)).await;
                return false;
            }
            _ => {}
        }
        let model = hit.body["model"].as_str().unwrap_or("ok").to_string();
        let from = hit.prefill().map_or(0, |p| p.split_whitespace().count());
        let letter = if fault.ends_with("-alt") { 'u' } else { 't' };
        if hit.body["stream"] != true {
            let completion = json!({"id": format!("chatcmpl-{}", self.name), "object": "chat.completion",
                "created": 1, "model": model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": answer_text(from)}, "finish_reason": "stop"}],
                "usage": usage(from)});
            return respond(stream, 200, &[("content-type", "application/json")], &completion.to_string()).await;
        }
        let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n";
        if stream.write_all(head.as_bytes()).await.is_err() {
            return false;
        }
        if let Some(ms) = number("slow-first-token-") {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
        let chunk = |delta: Value, finish: Value| {
            let chunk = json!({"id": format!("chatcmpl-{}", self.name), "object": "chat.completion.chunk",
                "created": 1, "model": model, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]});
            format!("data: {chunk}\n\n")
        };
        let mut events = vec![chunk(json!({"role": "assistant", "content": ""}), Value::Null)];
        events.extend((from..TOKENS).map(|i| chunk(json!({"content": format!("{letter}{i} ")}), Value::Null)));
        if fault == "bad-json" {
            events.insert(TOKENS / 2, "data: {\"id\": \"oops\", \"choices\": [\n\n".to_string());
        }
        events.push(chunk(json!({}), json!("stop")));
        let usage_chunk = json!({"id": format!("chatcmpl-{}", self.name), "object": "chat.completion.chunk",
            "created": 1, "model": model, "choices": [], "usage": usage(from)});
        events.push(format!("data: {usage_chunk}\n\n"));
        if fault != "no-done" {
            events.push("data: [DONE]\n\n".to_string());
        }
        // The token after which the stream is cut or stalls (the role chunk comes first).
        let broken = number("cut-").or(number("stall-")).map(|n| n as usize + 1);
        for (i, event) in events.iter().enumerate() {
            if broken == Some(i) {
                if fault.starts_with("stall-") {
                    tokio::time::sleep(Duration::from_secs(10)).await;
                }
                return false;
            }
            let framed = format!("{:x}\r\n{event}\r\n", event.len());
            if stream.write_all(framed.as_bytes()).await.is_err() {
                return false;
            }
        }
        stream.write_all(b"0\r\n\r\n").await.is_ok()
    }
}

fn usage(from: usize) -> Value {
    let (prompt, completion) = (10 + from, TOKENS - from);
    json!({"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion})
}

async fn error(stream: &mut TcpStream, status: u16, headers: &[(&str, &str)], code: &str) -> bool {
    let body = json!({"error": {"message": format!("mock fault: {code}"), "type": "invalid_request_error", "param": null, "code": code}});
    let mut all = vec![("content-type", "application/json")];
    all.extend_from_slice(headers);
    respond(stream, status, &all, &body.to_string()).await
}

async fn respond(stream: &mut TcpStream, status: u16, headers: &[(&str, &str)], body: &str) -> bool {
    let mut out = format!("HTTP/1.1 {status} Mock\r\ncontent-length: {}\r\n", body.len());
    for (name, value) in headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str("\r\n");
    out.push_str(body);
    stream.write_all(out.as_bytes()).await.is_ok()
}

/// Reads one request (head and `content-length` body); `None` when the peer closed.
async fn read_request(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> Option<(String, Vec<u8>)> {
    let head_end = loop {
        if let Some(at) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        let mut chunk = [0u8; 8192];
        let read = stream.read(&mut chunk).await.ok().filter(|n| *n > 0)?;
        buffer.extend_from_slice(&chunk[..read]);
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
    let length = head
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length").then(|| value.trim().parse::<usize>().ok())?
        })
        .unwrap_or(0);
    while buffer.len() < head_end + length {
        let mut chunk = [0u8; 8192];
        let read = stream.read(&mut chunk).await.ok().filter(|n| *n > 0)?;
        buffer.extend_from_slice(&chunk[..read]);
    }
    let body = buffer[head_end..head_end + length].to_vec();
    buffer.drain(..head_end + length);
    Some((head, body))
}
