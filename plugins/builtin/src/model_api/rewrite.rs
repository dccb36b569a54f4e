//! Rewrites model API responses for the caller: `model` becomes the caller's alias (in the JSON
//! body and in every stream chunk), a vendor's reasoning field becomes `reasoning_content`, and
//! Anthropic responses become chat completions.

use bytes::Bytes;
use serde_json::Value;

use switchyard_llm::providers::anthropic::{self, StreamTranslator};
use switchyard_sdk::raw_body::RawBody;
use switchyard_sdk::sse::event_data;

use super::adapter::Adapter;

/// Per-request rewrite state, kept in `ctx.extensions`.
#[derive(Clone)]
pub struct Rewrite {
    pub alias: String,
    pub reasoning_field: Option<String>,
    /// `Some` for the Anthropic adapter.
    pub anthropic: Option<StreamTranslator>,
    pub created: u64,
    /// Set at the response head.
    pub event_stream: bool,
    pub status: u16,
    /// A non-streaming body that arrived in pieces (kept whole before rewriting).
    pub pending: Vec<u8>,
}

impl Rewrite {
    /// The rewrite of an answer from a model of `adapter`, reported as `alias`; `body` is the
    /// caller's request (whether it asked for usage in a stream).
    pub fn new(alias: &str, adapter: Adapter, reasoning_field: Option<String>, body: &RawBody) -> Rewrite {
        let created = super::unix_now();
        let anthropic = (adapter == Adapter::Anthropic).then(|| {
            let include_usage =
                body.get::<Value>("stream_options").is_some_and(|o| o.get("include_usage") == Some(&Value::Bool(true)));
            StreamTranslator::new(alias, created, include_usage)
        });
        Rewrite {
            alias: alias.to_string(),
            reasoning_field,
            anthropic,
            created,
            event_stream: false,
            status: 200,
            pending: Vec::new(),
        }
    }

    /// Rewrites one SSE event, a chunk, or the whole body. Non-streaming bodies are rewritten
    /// once complete: earlier pieces are held back (returned empty).
    pub fn apply(&mut self, chunk: &mut Bytes, end_of_stream: bool) {
        if self.event_stream {
            if !chunk.is_empty() {
                *chunk = self.event(chunk);
            }
            return;
        }
        if !end_of_stream || !self.pending.is_empty() {
            self.pending.extend_from_slice(chunk);
            *chunk = Bytes::new();
            if !end_of_stream {
                return;
            }
            *chunk = Bytes::from(std::mem::take(&mut self.pending));
        }
        if let Ok(body) = serde_json::from_slice::<Value>(chunk) {
            *chunk = Bytes::from(self.whole(body).to_string());
        }
    }

    fn whole(&self, mut body: Value) -> Value {
        if self.anthropic.is_some() {
            return if (200..300).contains(&self.status) {
                anthropic::response_to_openai(&body, &self.alias, self.created)
            } else {
                anthropic::error_to_openai(&body).unwrap_or(body)
            };
        }
        self.openai(&mut body);
        body
    }

    fn event(&mut self, event: &[u8]) -> Bytes {
        let Some(data) = event_data(event) else { return Bytes::copy_from_slice(event) };
        let Ok(mut value) = serde_json::from_slice::<Value>(&data) else { return Bytes::copy_from_slice(event) };
        if let Some(translator) = self.anthropic.as_mut() {
            return Bytes::from(translator.translate(&value));
        }
        self.openai(&mut value);
        Bytes::from(format!("data: {value}\n\n"))
    }

    /// Alias and reasoning field on an OpenAI-shaped completion or chunk.
    fn openai(&self, body: &mut Value) {
        if body.get("model").is_some() {
            body["model"] = Value::String(self.alias.clone());
        }
        let Some(field) = &self.reasoning_field else { return };
        for choice in body.get_mut("choices").and_then(Value::as_array_mut).into_iter().flatten() {
            for part in ["message", "delta"] {
                if let Some(Value::Object(object)) = choice.get_mut(part) {
                    if let Some(reasoning) = object.remove(field) {
                        object.insert("reasoning_content".into(), reasoning);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewrite(reasoning_field: Option<&str>) -> Rewrite {
        Rewrite {
            alias: "my-alias".into(),
            reasoning_field: reasoning_field.map(str::to_string),
            anthropic: None,
            created: 1,
            event_stream: false,
            status: 200,
            pending: Vec::new(),
        }
    }

    #[test]
    fn json_reports_the_alias_and_maps_the_reasoning_field() {
        let mut r = rewrite(Some("reasoning"));
        let mut body = Bytes::from_static(
            b"{\"model\":\"upstream\",\"choices\":[{\"message\":{\"content\":\"a\",\"reasoning\":\"r\"}}]}",
        );
        r.apply(&mut body, true);
        let value: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(value["model"], "my-alias");
        assert_eq!(value["choices"][0]["message"]["reasoning_content"], "r");
        assert!(value["choices"][0]["message"].get("reasoning").is_none());
    }

    #[test]
    fn pieces_are_held_until_the_body_is_whole() {
        let mut r = rewrite(None);
        let mut first = Bytes::from_static(b"{\"model\":");
        r.apply(&mut first, false);
        assert!(first.is_empty());
        let mut rest = Bytes::from_static(b"\"x\"}");
        r.apply(&mut rest, true);
        assert_eq!(rest, Bytes::from_static(b"{\"model\":\"my-alias\"}"));
    }

    #[test]
    fn stream_events_report_the_alias_and_done_passes() {
        let mut r = rewrite(None);
        r.event_stream = true;
        let mut event = Bytes::from_static(b"data: {\"model\":\"up\",\"choices\":[]}\n\n");
        r.apply(&mut event, false);
        assert_eq!(event, Bytes::from_static(b"data: {\"model\":\"my-alias\",\"choices\":[]}\n\n"));
        let mut done = Bytes::from_static(b"data: [DONE]\n\n");
        r.apply(&mut done, false);
        assert_eq!(done, Bytes::from_static(b"data: [DONE]\n\n"));
    }
}
