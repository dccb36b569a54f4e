//! The response side of a request whose answer the client must not get as the provider sent it:
//! a protocol conversion, and on the model API the caller's alias as `model` and a vendor's
//! reasoning field renamed. Runs in the body filter, after usage was read from the provider's
//! bytes; requests that need none of it insert nothing and pay nothing.
//!
//! A Bedrock stream in AWS's binary framing is decoded frame by frame first
//! ([`converse_stream::FrameReader`]): usage is read from its events, and a converted client
//! gets one SSE event per frame (its head says `text/event-stream`); a `bedrock-converse` client
//! gets the frames untouched.
//!
//! A rewrite that only renames (the alias, the reasoning field) edits a body or event field by
//! field ([`RawBody`]): only a member that changes is written anew, the rest keep the provider's
//! bytes, and an answer that needs no change goes out exactly as it came.

use std::borrow::Cow;

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_LENGTH, CONTENT_TYPE};
use serde_json::Value;
use switchyard_sdk::raw_body::RawBody;
use switchyard_sdk::sse::event_data;
use switchyard_sdk::Ctx;

use super::attempt::unix_now;
use super::chat_over_messages::MessagesToChat;
use super::converse_response::ConverseToChat;
use super::converse_stream::{self, FrameReader};
use super::event::{Data, Event};
use super::messages_response::ChatToMessages;
use super::predict::PredictToEmbeddings;
use super::responses_response::ChatToResponses;
use super::usage::{self, UpstreamWire};
use super::{Conversion, Plan, Protocol};
use crate::json_scan;
use crate::observe;

/// One step of a response rewrite; the provider's answer goes through each in order.
#[derive(Debug, Clone)]
pub enum Stage {
    ChatToMessages(Box<ChatToMessages>),
    ChatToResponses(Box<ChatToResponses>),
    MessagesToChat(Box<MessagesToChat>),
    ConverseToChat(Box<ConverseToChat>),
    PredictToEmbeddings(Box<PredictToEmbeddings>),
    /// Renames a vendor's reasoning field of chat completions and chunks to `reasoning_content`.
    ReasoningField(String),
    /// Reports `model` as the caller's alias, in any protocol's answers and events.
    Alias(String),
}

impl Stage {
    fn whole(&mut self, status: u16, body: Value) -> Value {
        match self {
            Stage::ChatToMessages(stage) => stage.whole(status, body),
            Stage::ChatToResponses(stage) => stage.whole(status, body),
            Stage::MessagesToChat(stage) => stage.whole(status, body),
            Stage::ConverseToChat(stage) => stage.whole(status, body),
            Stage::PredictToEmbeddings(stage) => stage.whole(status, body),
            Stage::ReasoningField(field) => rename_reasoning(field, body),
            Stage::Alias(alias) => with_alias(alias, body),
        }
    }

    fn event(&mut self, event: Event, out: &mut Vec<Event>) {
        match self {
            Stage::ChatToMessages(stage) => stage.event(event, out),
            Stage::ChatToResponses(stage) => stage.event(event, out),
            Stage::MessagesToChat(stage) => stage.event(event, out),
            Stage::ConverseToChat(stage) => stage.event(event, out),
            // `:predict` never streams: an event is passed on as it came.
            Stage::PredictToEmbeddings(_) => out.push(event),
            Stage::ReasoningField(field) => out.push(map_json(event, |json| rename_reasoning(field, json))),
            Stage::Alias(alias) => out.push(map_json(event, |json| with_alias(alias, json))),
        }
    }

    fn end(&mut self, out: &mut Vec<Event>) {
        match self {
            Stage::ChatToMessages(stage) => stage.end(out),
            Stage::ChatToResponses(stage) => stage.end(out),
            Stage::ConverseToChat(stage) => stage.end(out),
            Stage::MessagesToChat(_) | Stage::PredictToEmbeddings(_) | Stage::ReasoningField(_) | Stage::Alias(_) => {}
        }
    }
}

fn map_json(event: Event, f: impl FnOnce(Value) -> Value) -> Event {
    match event.data {
        Data::Json(json) => Event { name: event.name, data: Data::Json(f(json)) },
        _ => event,
    }
}

/// `model` (top level, in `message` of `message_start`, in `response` of Responses events).
fn with_alias(alias: &str, mut body: Value) -> Value {
    for pointer in ["/model", "/message/model", "/response/model"] {
        if let Some(model) = body.pointer_mut(pointer) {
            *model = Value::String(alias.to_string());
        }
    }
    body
}

fn rename_reasoning(field: &str, mut body: Value) -> Value {
    if let Some(choices) = body.get_mut("choices") {
        rename_in_choices(choices, field);
    }
    body
}

/// Renames `field` to `reasoning_content` in every choice's `message` and `delta`; whether any was.
fn rename_in_choices(choices: &mut Value, field: &str) -> bool {
    let mut renamed = false;
    for choice in choices.as_array_mut().into_iter().flatten() {
        for part in ["message", "delta"] {
            if let Some(Value::Object(object)) = choice.get_mut(part) {
                if let Some(reasoning) = object.remove(field) {
                    object.insert("reasoning_content".into(), reasoning);
                    renamed = true;
                }
            }
        }
    }
    renamed
}

/// A JSON object (a whole answer, or an event's data) with renaming stages applied member by
/// member; `None` when none changes anything (or it is not a JSON object, or a stage converts).
fn renamed(stages: &[Stage], json: Bytes) -> Option<Bytes> {
    if let [Stage::Alias(alias)] = stages {
        if let Some(decided) = alias_in_place(alias, &json) {
            return decided;
        }
    }
    let body = RawBody::parse(json).ok()?;
    let mut edit = body.edit();
    for stage in stages {
        match stage {
            Stage::Alias(alias) => {
                if body.raw("model").is_some() && body.get::<String>("model").as_deref() != Some(alias.as_str()) {
                    edit.set("model", Value::String(alias.clone()));
                }
                // `message_start` carries the Messages answer, Responses events the response.
                for outer in ["message", "response"] {
                    let Some(mut object) = body.get::<Value>(outer) else { continue };
                    let Some(model) = object.get_mut("model") else { continue };
                    if model.as_str() != Some(alias.as_str()) {
                        *model = Value::String(alias.clone());
                        edit.set(outer, object);
                    }
                }
            }
            Stage::ReasoningField(field) => {
                let mentioned = body.raw("choices").is_some_and(|raw| raw.contains(field.as_str()));
                if let Some(mut choices) = body.get::<Value>("choices").filter(|_| mentioned) {
                    if rename_in_choices(&mut choices, field) {
                        edit.set("choices", choices);
                    }
                }
            }
            _ => return None,
        }
    }
    (!edit.is_unchanged()).then(|| edit.into_bytes())
}

/// The alias echo of an answer or chunk whose top level names its `model` (OpenAI chat and
/// embeddings, most events): the value's bytes are replaced in place, the rest copied as it came,
/// where parsing every member and writing the object again cost as much as the rest of the
/// model API's request path. `Some(result)` when that decides (`None` inside: nothing to
/// change); `None` when the general path must (not one object, a key written with escapes or
/// twice, or a nested `message` / `response` whose `model` the alias also replaces).
fn alias_in_place(alias: &str, json: &Bytes) -> Option<Option<Bytes>> {
    let mut model = None;
    for member in json_scan::members(json) {
        let member = member?;
        match &json[member.key.clone()] {
            // A second `model`, or one nested in `message` / `response`: the general path decides.
            b"model" if model.is_some() => return None,
            b"model" => model = Some(member.value),
            b"message" | b"response" => return None,
            key if key.contains(&b'\\') => return None,
            _ => {}
        }
    }
    let Some(model) = model else { return Some(None) };
    let value = &json[model.clone()];
    let mut out = Vec::with_capacity(json.len() + alias.len() + 2);
    out.extend_from_slice(&json[..model.start]);
    if written_as_is(alias) {
        // As a rule: quoted here rather than serialised again for every answer and event.
        if value.strip_prefix(b"\"").and_then(|v| v.strip_suffix(b"\"")) == Some(alias.as_bytes()) {
            return Some(None);
        }
        out.push(b'"');
        out.extend_from_slice(alias.as_bytes());
        out.push(b'"');
    } else {
        let quoted = serde_json::to_vec(alias).ok()?;
        if value == quoted {
            return Some(None);
        }
        out.extend_from_slice(&quoted);
    }
    out.extend_from_slice(&json[model.end..]);
    Some(Some(Bytes::from(out)))
}

/// Whether JSON writes `text` as a string without escapes: no quote, backslash or control
/// character (serde_json escapes nothing else).
fn written_as_is(text: &str) -> bool {
    text.bytes().all(|byte| byte >= 0x20 && byte != b'"' && byte != b'\\')
}

/// One event with renaming stages applied to its data; `None` when it goes out as it came
/// (comments, `[DONE]`, data that needs no change).
fn renamed_event(stages: &[Stage], raw: &Bytes) -> Option<Bytes> {
    let data = event_data(raw).filter(|data| &**data != b"[DONE]")?;
    let data = match data {
        Cow::Borrowed(data) => {
            // One `data:` line: its JSON is replaced where it stands, and the event's other lines
            // (`event:`, `id:`, comments) go out as they came.
            let at = data.as_ptr() as usize - raw.as_ptr() as usize;
            let end = at + data.len();
            let renamed = renamed(stages, raw.slice(at..end))?;
            let mut out = Vec::with_capacity(raw.len() - (end - at) + renamed.len());
            out.extend_from_slice(&raw[..at]);
            out.extend_from_slice(&renamed);
            out.extend_from_slice(&raw[end..]);
            return Some(Bytes::from(out));
        }
        // Data over several lines is joined: the event is written again with one.
        Cow::Owned(data) => Bytes::from(data),
    };
    let json = renamed(stages, data)?;
    let mut out = Vec::with_capacity(json.len() + 48);
    if let Some(name) = Event::name_of(raw) {
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(name.as_bytes());
        out.push(b'\n');
    }
    out.extend_from_slice(b"data: ");
    out.extend_from_slice(&json);
    out.extend_from_slice(b"\n\n");
    Some(Bytes::from(out))
}

/// Per-request rewrite state, in `ctx.extensions` (set per attempt: each attempt may convert for
/// another provider).
#[derive(Debug, Clone)]
pub struct ResponseRewrite {
    stages: Vec<Stage>,
    /// Set at the response head.
    event_stream: bool,
    status: u16,
    /// A non-streaming body that arrived in pieces, kept until it is whole.
    pending: Vec<u8>,
}

impl ResponseRewrite {
    pub fn new(stages: Vec<Stage>) -> Self {
        Self { stages, event_stream: false, status: 200, pending: Vec::new() }
    }

    /// Runs when the rewrite is set up for an attempt taking up a broken event stream: its
    /// head went out already (a 2xx event stream) and is not seen again.
    pub fn continues_event_stream(&mut self) {
        self.event_stream = true;
        self.status = 200;
    }

    /// The stages converting the answer of `plan`'s provider back to its client's protocol
    /// (none for a native call). `include_usage`: a chat client asked for a usage chunk.
    pub fn stages_for(plan: &Plan, include_usage: bool) -> Vec<Stage> {
        if plan.conversion == Conversion::Native {
            return Vec::new();
        }
        // The Unix time stamped on the objects a conversion makes up.
        let created = unix_now();
        match plan.conversion {
            Conversion::Native => Vec::new(),
            Conversion::MessagesOverChat => vec![Stage::ChatToMessages(Box::default())],
            Conversion::ResponsesOverChat => vec![Stage::ChatToResponses(Box::new(ChatToResponses::new(created)))],
            Conversion::ChatOverMessages => {
                vec![Stage::MessagesToChat(Box::new(MessagesToChat::new(created, include_usage)))]
            }
            Conversion::ResponsesOverMessages => vec![
                Stage::MessagesToChat(Box::new(MessagesToChat::new(created, true))),
                Stage::ChatToResponses(Box::new(ChatToResponses::new(created))),
            ],
            Conversion::ChatOverConverse => {
                vec![Stage::ConverseToChat(Box::new(ConverseToChat::new(created, include_usage)))]
            }
            Conversion::MessagesOverConverse => vec![
                Stage::ConverseToChat(Box::new(ConverseToChat::new(created, true))),
                Stage::ChatToMessages(Box::default()),
            ],
            Conversion::ResponsesOverConverse => vec![
                Stage::ConverseToChat(Box::new(ConverseToChat::new(created, true))),
                Stage::ChatToResponses(Box::new(ChatToResponses::new(created))),
            ],
            Conversion::EmbeddingsOverPredict => vec![Stage::PredictToEmbeddings(Box::default())],
        }
    }

    /// Names the answers a conversion makes up after `model` where the provider's answer does
    /// not name one (Bedrock Converse).
    pub fn name_model(&mut self, model: Option<&str>) {
        for stage in &mut self.stages {
            if let Stage::ConverseToChat(stage) = stage {
                stage.set_model(model.map(str::to_string));
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.stages.is_empty()
    }

    /// Whether a stage changes the protocol (not only names in it).
    fn converts(&self) -> bool {
        self.stages.iter().any(|s| !matches!(s, Stage::ReasoningField(_) | Stage::Alias(_)))
    }

    /// Header phase: remembers the status and whether the body is an event stream.
    pub fn on_head(&mut self, head: &http::response::Parts) {
        for stage in &mut self.stages {
            if let Stage::ConverseToChat(stage) = stage {
                stage.on_head(head);
            }
        }
        self.status = head.status.as_u16();
        self.event_stream = head
            .headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim_start().starts_with("text/event-stream"));
    }

    /// Rewrites one SSE event, a chunk, or the whole body. Non-streaming bodies are rewritten
    /// once complete: earlier pieces are held back (returned empty).
    pub fn apply(&mut self, chunk: &mut Bytes, end_of_stream: bool) {
        if self.event_stream {
            return self.apply_event(chunk, end_of_stream);
        }
        if !end_of_stream || !self.pending.is_empty() {
            self.pending.extend_from_slice(chunk);
            *chunk = Bytes::new();
            if !end_of_stream {
                return;
            }
            *chunk = Bytes::from(std::mem::take(&mut self.pending));
        }
        if !self.converts() {
            if let Some(body) = renamed(&self.stages, chunk.clone()) {
                *chunk = body;
            }
            return;
        }
        let mut body = match serde_json::from_slice::<Value>(chunk) {
            Ok(body) => body,
            // A provider's error page that is not JSON: errors are still given the client's shape.
            Err(_) if self.status >= 400 && self.converts() => {
                Value::String(String::from_utf8_lossy(chunk).into_owned())
            }
            Err(_) => return,
        };
        for stage in &mut self.stages {
            body = stage.whole(self.status, body);
        }
        *chunk = Bytes::from(body.to_string());
    }

    fn apply_event(&mut self, chunk: &mut Bytes, end_of_stream: bool) {
        if !self.converts() {
            if let Some(event) = renamed_event(&self.stages, chunk) {
                *chunk = event;
            }
            return;
        }
        let mut events = Vec::with_capacity(4);
        if !chunk.is_empty() {
            events.push(Event::parse(chunk));
        }
        *chunk = self.events(events, end_of_stream);
    }

    /// Runs `events` (the provider's, in order) through every stage and returns what the client
    /// gets, SSE-framed. `end_of_stream`: the provider's stream ended after them.
    pub fn events(&mut self, mut events: Vec<Event>, end_of_stream: bool) -> Bytes {
        for stage in &mut self.stages {
            let mut out = Vec::with_capacity(events.len() + 4);
            for event in events {
                stage.event(event, &mut out);
            }
            if end_of_stream {
                stage.end(&mut out);
            }
            events = out;
        }
        let mut bytes = Vec::with_capacity(256);
        for event in &events {
            event.encode(&mut bytes);
        }
        Bytes::from(bytes)
    }
}

/// Header phase of every AI surface: usage reading, then the rewrite (when there is one). A
/// Bedrock stream in AWS's binary framing is set up to be decoded; when it is converted, the
/// client is told it gets an event stream.
pub fn on_head(ctx: &mut Ctx, head: &mut http::response::Parts) {
    observe::on_head(ctx, head);
    let converse = ctx.extensions.get::<UpstreamWire>() == Some(&UpstreamWire(Protocol::BedrockConverse));
    if converse && converse_stream::is_binary_stream(head) {
        ctx.extensions.insert(FrameReader::default());
        if ctx.extensions.get::<ResponseRewrite>().is_some_and(ResponseRewrite::converts) {
            head.headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
            head.headers.remove(CONTENT_LENGTH);
        }
    }
    if let Some(rewrite) = ctx.extensions.get_mut::<ResponseRewrite>() {
        rewrite.on_head(head);
    }
}

/// Body phase of every AI surface: usage is read from the provider's bytes, then the client's
/// answer is made from them.
pub fn on_body(ctx: &mut Ctx, chunk: &mut Bytes, end_of_stream: bool) {
    if let Some(reader) = ctx.extensions.get_mut::<FrameReader>() {
        let events = reader.push(chunk);
        for event in &events {
            usage::record_converse_event(ctx, event);
        }
        if let Some(rewrite) = ctx.extensions.get_mut::<ResponseRewrite>().filter(|r| r.converts()) {
            *chunk = rewrite.events(events, end_of_stream);
        }
        return;
    }
    observe::on_body(ctx, chunk, end_of_stream);
    if let Some(rewrite) = ctx.extensions.get_mut::<ResponseRewrite>() {
        rewrite.apply(chunk, end_of_stream);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn head(status: u16, content_type: &str) -> http::response::Parts {
        let response = http::Response::builder().status(status).header(CONTENT_TYPE, content_type).body(()).unwrap();
        response.into_parts().0
    }

    #[test]
    fn whole_bodies_go_through_every_stage_once_complete() {
        let mut rewrite = ResponseRewrite::new(vec![
            Stage::ReasoningField("reasoning".into()),
            Stage::ChatToMessages(Box::default()),
            Stage::Alias("alias".into()),
        ]);
        rewrite.on_head(&head(200, "application/json"));
        let mut first = Bytes::from_static(br#"{"id":"c","model":"up","choices":[{"finish_reason":"stop","#);
        rewrite.apply(&mut first, false);
        assert!(first.is_empty());
        let mut rest = Bytes::from_static(br#""message":{"content":"Hi","reasoning":"r"}}]}"#);
        rewrite.apply(&mut rest, true);
        let message: Value = serde_json::from_slice(&rest).unwrap();
        assert_eq!(message["model"], "alias");
        assert_eq!(message["content"][0], json!({"type": "thinking", "thinking": "r", "signature": ""}));
        assert_eq!(message["content"][1], json!({"type": "text", "text": "Hi"}));
    }

    #[test]
    fn a_chain_carries_end_of_stream_events_through_later_stages() {
        let created = 1;
        let mut rewrite = ResponseRewrite::new(vec![
            Stage::MessagesToChat(Box::new(MessagesToChat::new(created, true))),
            Stage::ChatToResponses(Box::new(ChatToResponses::new(created))),
            Stage::Alias("alias".into()),
        ]);
        rewrite.on_head(&head(200, "text/event-stream"));
        let mut text = String::new();
        let stream = concat!(
            "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"model\":\"c\",\"usage\":{\"input_tokens\":21,\"output_tokens\":1}}}\n\n",
            "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
            "event: ping\ndata: {\"type\":\"ping\"}\n\n",
            "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hello\"}}\n\n",
            "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\" there\"}}\n\n",
            "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
            "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":6}}\n\n",
            "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
        );
        for event in stream.split_inclusive("\n\n") {
            let mut chunk = Bytes::from(event.to_string());
            rewrite.apply(&mut chunk, false);
            text.push_str(std::str::from_utf8(&chunk).unwrap());
        }
        let mut last = Bytes::new();
        rewrite.apply(&mut last, true);
        text.push_str(std::str::from_utf8(&last).unwrap());
        assert!(text.starts_with("event: response.created\n"), "{text}");
        assert!(text.contains("\"delta\":\"Hello\""), "{text}");
        let completed = text.rsplit("event: response.completed\ndata: ").next().unwrap();
        let completed: Value = serde_json::from_str(completed.trim()).unwrap();
        assert_eq!(completed["response"]["model"], "alias");
        assert_eq!(completed["response"]["output"][0]["content"][0]["text"], "Hello there");
        assert_eq!(completed["response"]["usage"]["input_tokens"], 21);
        assert_eq!(completed["response"]["usage"]["output_tokens"], 6);
        assert!(!text.contains("[DONE]"));
    }

    #[test]
    fn error_pages_that_are_not_json_take_the_clients_shape() {
        let mut rewrite = ResponseRewrite::new(vec![Stage::ChatToMessages(Box::default())]);
        rewrite.on_head(&head(502, "text/html"));
        let mut body = Bytes::from_static(b"<html>bad gateway</html>");
        rewrite.apply(&mut body, true);
        let error: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            error,
            json!({"type": "error", "error": {"type": "api_error", "message": "<html>bad gateway</html>"}})
        );
    }

    #[test]
    fn an_alias_is_written_as_is_exactly_when_serde_json_would_add_no_escapes() {
        for code in 0..=0x80u32 {
            let text = format!("a{}é", char::from_u32(code).unwrap());
            let as_is = serde_json::to_string(&text).unwrap() == format!("\"{text}\"");
            assert_eq!(written_as_is(&text), as_is, "{text:?}");
        }
    }

    #[test]
    fn an_event_keeps_its_other_lines_as_sent_around_the_renamed_data() {
        let alias = vec![Stage::Alias("my-alias".into())];
        let raw = Bytes::from_static(b"id: 17\r\nevent: chunk\r\n: note\r\ndata:{\"model\":\"gpt\",\"n\":1}\r\n\r\n");
        let out = renamed_event(&alias, &raw).unwrap();
        assert_eq!(&out[..], &b"id: 17\r\nevent: chunk\r\n: note\r\ndata:{\"model\":\"my-alias\",\"n\":1}\r\n\r\n"[..]);
        // Data over two lines is joined into one.
        let split = Bytes::from_static(b"id: 18\ndata: {\"model\":\"gpt\",\ndata: \"n\":1}\n\n");
        let out = renamed_event(&alias, &split).unwrap();
        assert_eq!(&out[..], &b"data: {\"model\":\"my-alias\",\n\"n\":1}\n\n"[..]);
        assert!(renamed_event(&alias, &Bytes::from_static(b"data: [DONE]\n\n")).is_none());
        assert!(renamed_event(&alias, &Bytes::from_static(b"data:\n\n")).is_none());
    }

    #[test]
    fn the_alias_replaces_the_model_bytes_in_place_and_keeps_the_rest_as_sent() {
        let alias = vec![Stage::Alias("my-alias".into())];
        let body =
            Bytes::from_static(br#"{"id":"c1", "model" : "gpt-4o-2024","choices":[{"message":{"model":"x"}}],"n":1}"#);
        let out = renamed(&alias, body).unwrap();
        assert_eq!(&out[..], br#"{"id":"c1", "model" : "my-alias","choices":[{"message":{"model":"x"}}],"n":1}"#);
        // Already the alias, or no model at all: nothing to change.
        assert!(renamed(&alias, Bytes::from_static(br#"{"model":"my-alias"}"#)).is_none());
        assert!(renamed(&alias, Bytes::from_static(br#"{"object":"list"}"#)).is_none());
        // A quote in the alias is escaped; a non-string model is replaced too.
        let quoting = vec![Stage::Alias("a\"b".into())];
        assert_eq!(&renamed(&quoting, Bytes::from_static(br#"{"model":null}"#)).unwrap()[..], br#"{"model":"a\"b"}"#);
        // A nested Messages answer takes the general path, which replaces its model too.
        let start = Bytes::from_static(br#"{"type":"message_start","message":{"model":"claude"}}"#);
        let out: Value = serde_json::from_slice(&renamed(&alias, start).unwrap()).unwrap();
        assert_eq!(out["message"]["model"], "my-alias");
        // A key written with escapes is still found (by the general path).
        let escaped = Bytes::from_static(br#"{"mod\u0065l":"gpt"}"#);
        let out: Value = serde_json::from_slice(&renamed(&alias, escaped).unwrap()).unwrap();
        assert_eq!(out["model"], "my-alias");
        // What the in-place path leaves to the general one: a model named twice, a nested
        // answer, an escaped key, and bytes that are not one whole object.
        for json in [
            &br#"{"model":"a","n":1,"model":"b"}"#[..],
            br#"{"model":"a","response":{"model":"b"}}"#,
            br#"{"model":"a","mod\u0065l":"b"}"#,
            br#"{"model":"a""#,
            br#"{"model":"a"} {}"#,
            br#"["model"]"#,
        ] {
            assert_eq!(
                alias_in_place("my-alias", &Bytes::from_static(json)),
                None,
                "{}",
                String::from_utf8_lossy(json)
            );
        }
        assert_eq!(alias_in_place("my-alias", &Bytes::from_static(b" { } ")), Some(None));
    }
}
