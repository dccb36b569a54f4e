//! A mock of AWS Bedrock's runtime API on 127.0.0.1:0. Like AWS, it first checks each request's
//! Signature Version 4: it recomputes the signature from the request it received, by the
//! specification (canonical request, string to sign, HMAC-SHA256 key chain; written here, not
//! taken from the gateway's crate), with the credentials it was started with, and answers 403
//! with AWS's error shape when the signature, the key id, the scope or the session token is
//! wrong. Then it serves Converse: `POST /model/{model}/converse` a JSON answer,
//! `/converse-stream` a binary event stream (frames written by `aws-smithy-eventstream`), after
//! checking the body is a Converse request Bedrock would take (no `model`, no `stream`, turns
//! of content blocks starting with the user's).
//!
//! A request that offers tools (`toolConfig`) and does not answer a tool result gets a tool
//! call. Headers steer it: `x-mock-stop-reason: R` (the stop reason), `x-mock-gate: 1` (a stream
//! sends its first frame, then waits for [`BedrockMock::release`]), `x-mock-exception: T` (a
//! stream sends an exception frame of type T after its first frame), `x-mock-break-after: N` (a
//! stream's connection is cut after N frames).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use aws_smithy_eventstream::frame::write_message_to;
use aws_smithy_types::event_stream::{Header, HeaderValue, Message};
use bytes::Bytes;
use hmac::{Hmac, KeyInit, Mac};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use tokio::sync::Notify;

/// The credentials the mock accepts.
#[derive(Debug, Clone)]
pub struct AwsCredentials {
    pub access_key_id: &'static str,
    pub secret_access_key: &'static str,
    pub session_token: Option<&'static str>,
    pub region: &'static str,
}

/// Test credentials (AWS's documentation example key) with a session token, in us-east-1.
pub const CREDENTIALS: AwsCredentials = AwsCredentials {
    access_key_id: "AKIDEXAMPLE",
    secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
    session_token: Some("FQoGZXIvYXdzEXAMPLESESSIONTOKEN"),
    region: "us-east-1",
};

/// The usage of the JSON answer, and of the stream's `metadata` event.
pub const JSON_USAGE: (u64, u64, u64) = (12, 7, 19);
pub const STREAM_USAGE: (u64, u64, u64) = (15, 9, 24);

/// The text of every answer, and of a stream's deltas joined.
pub const TEXT: &str = "Hello from Bedrock.";
const TEXT_PIECES: [&str; 3] = ["Hello", " from", " Bedrock."];

/// A request as the mock received it (its path as sent, still escaped).
#[derive(Debug, Clone)]
pub struct Seen {
    pub path: String,
    pub headers: http::HeaderMap,
    pub body: Bytes,
    /// `Ok` or why the signature was refused.
    pub verdict: Result<(), String>,
}

#[derive(Clone)]
pub struct BedrockMock {
    pub addr: SocketAddr,
    credentials: AwsCredentials,
    seen: Arc<Mutex<Vec<Seen>>>,
    gate: Arc<Notify>,
    /// Answer every (well signed) request with this status.
    failing: Arc<Mutex<Option<u16>>>,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type MockBody = http_body_util::combinators::BoxBody<Bytes, BoxError>;

impl BedrockMock {
    pub async fn start(credentials: AwsCredentials) -> BedrockMock {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mock = BedrockMock {
            addr: listener.local_addr().unwrap(),
            credentials,
            seen: Arc::default(),
            gate: Arc::new(Notify::new()),
            failing: Arc::default(),
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

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    pub fn last(&self) -> Seen {
        self.seen().pop().expect("the Bedrock mock saw a request")
    }

    /// Answers every well-signed request with `status` (AWS's error shape) from now on.
    pub fn fail_with(&self, status: u16) {
        *self.failing.lock().unwrap() = Some(status);
    }

    /// Lets a gated stream (`x-mock-gate`) go on.
    pub fn release(&self) {
        self.gate.notify_one();
    }

    async fn answer(&self, req: hyper::Request<hyper::body::Incoming>) -> hyper::Response<MockBody> {
        let (head, body) = req.into_parts();
        let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
        let path = head.uri.path_and_query().map_or("/".to_string(), |p| p.to_string());
        let verdict = verify(&self.credentials, head.method.as_str(), &path, &head.headers, &body);
        self.seen.lock().unwrap().push(Seen {
            path: path.clone(),
            headers: head.headers.clone(),
            body: body.clone(),
            verdict: verdict.clone(),
        });
        if let Err((kind, message)) = refusal(&verdict) {
            return error(403, kind, &message);
        }
        if let Some(status) = *self.failing.lock().unwrap() {
            let kind = match status {
                429 => "ThrottlingException",
                503 => "ServiceUnavailableException",
                400 => "ValidationException",
                _ => "InternalServerException",
            };
            return error(status, kind, &format!("the Bedrock mock says {status}"));
        }
        let (stream, model) = match converse_path(head.uri.path()) {
            Some(found) => found,
            None => return error(404, "UnknownOperationException", "unknown operation"),
        };
        let request: Value = match serde_json::from_slice(&body) {
            Ok(request) => request,
            Err(err) => return error(400, "SerializationException", &format!("body is not JSON: {err}")),
        };
        if let Err(problem) = check_converse(&request) {
            return error(400, "ValidationException", &problem);
        }
        let steer = |name: &str| head.headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
        let tool = request.pointer("/toolConfig/tools/0/toolSpec/name").and_then(Value::as_str);
        let answers_result = request["messages"]
            .as_array()
            .and_then(|m| m.last())
            .and_then(|m| m["content"].as_array())
            .is_some_and(|blocks| blocks.iter().any(|b| b.get("toolResult").is_some()));
        let calls = tool.filter(|_| !answers_result).map(str::to_string);
        let default_stop = if calls.is_some() { "tool_use" } else { "end_turn" };
        let stop = steer("x-mock-stop-reason").unwrap_or_else(|| default_stop.to_string());
        let builder = hyper::Response::builder().header("x-amzn-requestid", "mock-req-1").header("x-mock-model", model);
        if !stream {
            let mut content = vec![json!({"text": TEXT})];
            if let Some(name) = &calls {
                content = vec![
                    json!({"text": "Checking."}),
                    json!({"toolUse": {"toolUseId": "tooluse_1", "name": name, "input": {"city": "Paris"}}}),
                ];
            }
            let (input, output, total) = JSON_USAGE;
            let answer = json!({"output": {"message": {"role": "assistant", "content": content}}, "stopReason": stop,
                "usage": {"inputTokens": input, "outputTokens": output, "totalTokens": total}, "metrics": {"latencyMs": 42}});
            return builder.header("content-type", "application/json").body(full(answer.to_string())).unwrap();
        }
        let mut frames = vec![frame("messageStart", json!({"role": "assistant"}))];
        if let Some(kind) = steer("x-mock-exception") {
            frames.push(exception(&kind, "the Bedrock mock stops the stream"));
        } else {
            match &calls {
                Some(name) => {
                    frames.push(frame(
                        "contentBlockStart",
                        json!({"contentBlockIndex": 0,
                        "start": {"toolUse": {"toolUseId": "tooluse_1", "name": name}}}),
                    ));
                    for piece in ["{\"city\":", "\"Paris\"}"] {
                        frames.push(frame(
                            "contentBlockDelta",
                            json!({"contentBlockIndex": 0, "delta": {"toolUse": {"input": piece}}}),
                        ));
                    }
                }
                None => {
                    for piece in TEXT_PIECES {
                        frames.push(frame(
                            "contentBlockDelta",
                            json!({"contentBlockIndex": 0, "delta": {"text": piece}}),
                        ));
                    }
                }
            }
            frames.push(frame("contentBlockStop", json!({"contentBlockIndex": 0})));
            frames.push(frame("messageStop", json!({"stopReason": stop})));
            let (input, output, total) = STREAM_USAGE;
            frames.push(frame(
                "metadata",
                json!({"usage": {"inputTokens": input, "outputTokens": output,
                "totalTokens": total}, "metrics": {"latencyMs": 42}}),
            ));
        }
        let gated = head.headers.contains_key("x-mock-gate");
        let cut = steer("x-mock-break-after").and_then(|n| n.parse::<usize>().ok());
        if let Some(n) = cut {
            frames.truncate(n);
        }
        let body = self.paced(frames, gated, cut.is_some());
        builder.header("content-type", "application/vnd.amazon.eventstream").body(body).unwrap()
    }

    /// Sends each frame as its own chunk; with `gated`, waits for the gate after the first; with
    /// `then_break`, cuts the connection after the last.
    fn paced(&self, frames: Vec<Bytes>, gated: bool, then_break: bool) -> MockBody {
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, BoxError>>(1);
        let gate = Arc::clone(&self.gate);
        tokio::spawn(async move {
            for (i, piece) in frames.into_iter().enumerate() {
                if gated && i == 1 {
                    gate.notified().await;
                }
                if tx.send(Ok(Frame::data(piece))).await.is_err() {
                    return;
                }
            }
            if then_break {
                let _ = tx.send(Err("the Bedrock mock cut the stream".into())).await;
            }
        });
        let mut rx = rx;
        StreamBody::new(futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))).boxed()
    }
}

/// `(stream, model)` of a Converse path, the model unescaped.
fn converse_path(path: &str) -> Option<(bool, String)> {
    let rest = path.strip_prefix("/model/")?;
    let (model, stream) = match rest.strip_suffix("/converse-stream") {
        Some(model) => (model, true),
        None => (rest.strip_suffix("/converse")?, false),
    };
    // The model is one path segment: anything else was not escaped.
    if model.contains('/') {
        return None;
    }
    Some((stream, percent_encoding::percent_decode_str(model).decode_utf8().ok()?.into_owned()))
}

/// The error type and message of a refused signature.
fn refusal(verdict: &Result<(), String>) -> Result<(), (&'static str, String)> {
    match verdict {
        Ok(()) => Ok(()),
        Err(why) if why.starts_with("unknown") => Err(("UnrecognizedClientException", why.clone())),
        Err(why) => Err(("InvalidSignatureException", why.clone())),
    }
}

/// AWS's error answer: `{"message"}` and the type in `x-amzn-ErrorType`.
fn error(status: u16, kind: &str, message: &str) -> hyper::Response<MockBody> {
    hyper::Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .header("x-amzn-errortype", format!("{kind}:http://internal.amazon.com/coral/com.amazon.bedrock/"))
        .header("x-amzn-requestid", "mock-req-error")
        .body(full(json!({"message": message}).to_string()))
        .unwrap()
}

fn full(text: String) -> MockBody {
    http_body_util::Full::new(Bytes::from(text)).map_err(|never| match never {}).boxed()
}

/// One event frame as Bedrock sends it (its payload padded with `p`, as Bedrock does).
pub fn frame(event_type: &str, mut payload: Value) -> Bytes {
    payload["p"] = json!("abcdefghijklmnopqrstuvwxyzABCDEFGHIJ");
    let message = Message::new(payload.to_string().into_bytes())
        .add_header(Header::new(":event-type", HeaderValue::String(event_type.to_string().into())))
        .add_header(Header::new(":content-type", HeaderValue::String("application/json".into())))
        .add_header(Header::new(":message-type", HeaderValue::String("event".into())));
    let mut out = Vec::new();
    write_message_to(&message, &mut out).unwrap();
    Bytes::from(out)
}

fn exception(kind: &str, message: &str) -> Bytes {
    let message = Message::new(json!({"message": message}).to_string().into_bytes())
        .add_header(Header::new(":exception-type", HeaderValue::String(kind.to_string().into())))
        .add_header(Header::new(":content-type", HeaderValue::String("application/json".into())))
        .add_header(Header::new(":message-type", HeaderValue::String("exception".into())));
    let mut out = Vec::new();
    write_message_to(&message, &mut out).unwrap();
    Bytes::from(out)
}

/// Whether a body is a Converse request Bedrock takes; `Err` says what it would refuse.
fn check_converse(request: &Value) -> Result<(), String> {
    const KEYS: [&str; 10] = [
        "messages",
        "system",
        "inferenceConfig",
        "toolConfig",
        "guardrailConfig",
        "additionalModelRequestFields",
        "additionalModelResponseFieldPaths",
        "promptVariables",
        "requestMetadata",
        "performanceConfig",
    ];
    let object = request.as_object().ok_or("the body must be an object")?;
    if let Some(key) = object.keys().find(|k| !KEYS.contains(&k.as_str())) {
        return Err(format!("extraneous key [{key}] is not permitted"));
    }
    let messages =
        request["messages"].as_array().filter(|m| !m.is_empty()).ok_or("messages must be a non-empty array")?;
    let mut expected = "user";
    let mut tool_blocks = false;
    for (i, message) in messages.iter().enumerate() {
        if message["role"] != expected {
            return Err(format!("messages[{i}]: roles must alternate, starting with user"));
        }
        expected = if expected == "user" { "assistant" } else { "user" };
        let blocks = message["content"].as_array().filter(|c| !c.is_empty());
        let blocks = blocks.ok_or_else(|| format!("messages[{i}].content must be a non-empty array of blocks"))?;
        for block in blocks {
            let kinds: Vec<&String> = block.as_object().map(|b| b.keys().collect()).unwrap_or_default();
            let known = ["text", "image", "document", "toolUse", "toolResult", "reasoningContent"];
            if kinds.len() != 1 || !known.contains(&kinds[0].as_str()) {
                return Err(format!("messages[{i}]: a content block has one member of {known:?}: {block}"));
            }
            tool_blocks |= matches!(kinds[0].as_str(), "toolUse" | "toolResult");
            if let Some(tool) = block.get("toolUse") {
                if !tool["input"].is_object() || !tool["toolUseId"].is_string() || !tool["name"].is_string() {
                    return Err(format!("messages[{i}]: toolUse needs toolUseId, name and an input object"));
                }
            }
            if let Some(result) = block.get("toolResult") {
                if !result["toolUseId"].is_string() || !result["content"].is_array() {
                    return Err(format!("messages[{i}]: toolResult needs toolUseId and content"));
                }
            }
        }
    }
    if let Some(system) = request.get("system") {
        if !system.as_array().is_some_and(|s| s.iter().all(|b| b["text"].is_string())) {
            return Err("system must be an array of text blocks".into());
        }
    }
    if let Some(config) = request.get("inferenceConfig") {
        let keys = ["maxTokens", "temperature", "topP", "stopSequences"];
        if let Some(key) = config.as_object().and_then(|c| c.keys().find(|k| !keys.contains(&k.as_str()))) {
            return Err(format!("inferenceConfig: extraneous key [{key}] is not permitted"));
        }
    }
    if let Some(config) = request.get("toolConfig") {
        let tools = config["tools"].as_array().ok_or("toolConfig.tools must be an array")?;
        if !tools.iter().all(|t| t["toolSpec"]["name"].is_string() && t["toolSpec"]["inputSchema"]["json"].is_object())
        {
            return Err("toolConfig.tools[]: a toolSpec needs a name and inputSchema.json".into());
        }
    } else if tool_blocks {
        return Err("toolConfig field must be defined when using toolUse and toolResult content blocks".into());
    }
    Ok(())
}

/// Checks a request's Signature Version 4 against `credentials`, by the specification. `Err`
/// says what is wrong (`unknown ...` for a key or token AWS would not recognise).
pub fn verify(
    credentials: &AwsCredentials,
    method: &str,
    path_and_query: &str,
    headers: &http::HeaderMap,
    body: &[u8],
) -> Result<(), String> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let authorization = header("authorization").ok_or("missing Authorization header")?;
    let fields = authorization.strip_prefix("AWS4-HMAC-SHA256 ").ok_or("not an AWS4-HMAC-SHA256 signature")?;
    let part = |name: &str| {
        fields.split(", ").find_map(|f| f.strip_prefix(name).and_then(|f| f.strip_prefix('='))).map(str::to_string)
    };
    let credential = part("Credential").ok_or("no Credential")?;
    let signed_headers = part("SignedHeaders").ok_or("no SignedHeaders")?;
    let signature = part("Signature").ok_or("no Signature")?;
    let scope: Vec<&str> = credential.split('/').collect();
    let [key_id, date, region, service, terminal] = scope[..] else { return Err(format!("bad scope {credential}")) };
    if key_id != credentials.access_key_id {
        return Err(format!("unknown access key id {key_id}"));
    }
    if region != credentials.region || service != "bedrock" || terminal != "aws4_request" {
        return Err(format!("the scope {date}/{region}/{service}/{terminal} is not this endpoint's"));
    }
    let amz_date = header("x-amz-date").ok_or("missing x-amz-date")?;
    if !amz_date.starts_with(date) {
        return Err("x-amz-date is not the scope's date".into());
    }
    let signed: Vec<&str> = signed_headers.split(';').collect();
    for needed in ["host", "x-amz-date"] {
        if !signed.contains(&needed) {
            return Err(format!("{needed} is not signed"));
        }
    }
    match (credentials.session_token, header("x-amz-security-token")) {
        (Some(expected), Some(sent)) if expected == sent => {
            if !signed.contains(&"x-amz-security-token") {
                return Err("x-amz-security-token is not signed".into());
            }
        }
        (Some(_), _) => return Err("unknown security token: x-amz-security-token is missing or wrong".into()),
        (None, Some(_)) => return Err("unknown security token: none was issued with this key".into()),
        (None, None) => {}
    }
    let (path, query) = path_and_query.split_once('?').unwrap_or((path_and_query, ""));
    // Not S3: every segment of the path as sent is escaped again.
    let canonical_uri: Vec<String> = path.split('/').map(uri_encode).collect();
    let mut pairs: Vec<(String, String)> = url_pairs(query);
    pairs.sort();
    let canonical_query: Vec<String> =
        pairs.iter().map(|(k, v)| format!("{}={}", uri_encode(k), uri_encode(v))).collect();
    let mut canonical_headers = String::new();
    for name in &signed {
        let values: Vec<String> = headers
            .get_all(*name)
            .iter()
            .map(|v| v.to_str().unwrap_or("").split_whitespace().collect::<Vec<_>>().join(" "))
            .collect();
        canonical_headers.push_str(&format!("{name}:{}\n", values.join(",")));
    }
    let canonical_request = [
        method.to_string(),
        canonical_uri.join("/"),
        canonical_query.join("&"),
        canonical_headers,
        signed_headers.clone(),
        hex(&Sha256::digest(body)),
    ]
    .join("\n");
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{date}/{region}/{service}/aws4_request\n{}",
        hex(&Sha256::digest(canonical_request.as_bytes()))
    );
    let mut key = hmac(format!("AWS4{}", credentials.secret_access_key).as_bytes(), date.as_bytes());
    for step in [region, service, "aws4_request"] {
        key = hmac(&key, step.as_bytes());
    }
    let expected = hex(&hmac(&key, string_to_sign.as_bytes()));
    if expected != signature {
        return Err("The request signature we calculated does not match the signature you provided".into());
    }
    Ok(())
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// RFC 3986 escaping of everything but the unreserved characters, as SigV4 wants.
fn uri_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

fn url_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let decode = |s: &str| percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned();
            (decode(k), decode(v))
        })
        .collect()
}
