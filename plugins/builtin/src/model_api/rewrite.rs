//! Rewrites model API responses for the caller: `model` becomes the caller's alias (in the JSON
//! body and in every stream chunk), a vendor's reasoning field becomes `reasoning_content`, and
//! Anthropic responses become chat completions.
//!
//! An OpenAI-shaped body or chunk is edited field by field ([`RawBody`]): only a field that changes
//! is written anew, the rest keep the provider's bytes, and a body that needs no change goes out
//! exactly as it came.

use bytes::{BufMut, Bytes, BytesMut};
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
            if let Some(event) = self.event(chunk) {
                *chunk = event;
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
        if let Some(body) = self.whole(chunk) {
            *chunk = body;
        }
    }

    /// The whole body for the caller; `None` when it goes out as it came.
    fn whole(&self, body: &Bytes) -> Option<Bytes> {
        if self.anthropic.is_some() {
            let body: Value = serde_json::from_slice(body).ok()?;
            let translated = if (200..300).contains(&self.status) {
                anthropic::response_to_openai(&body, &self.alias, self.created)
            } else {
                anthropic::error_to_openai(&body)?
            };
            return Some(Bytes::from(translated.to_string()));
        }
        self.openai(body)
    }

    /// One event for the caller; `None` when it goes out as it came (comments, `[DONE]`, chunks
    /// that already say the alias).
    fn event(&mut self, event: &[u8]) -> Option<Bytes> {
        let data = event_data(event)?;
        if let Some(translator) = self.anthropic.as_mut() {
            let value: Value = serde_json::from_slice(&data).ok()?;
            return Some(Bytes::from(translator.translate(&value)));
        }
        let data = self.openai(&Bytes::from(data))?;
        let mut out = BytesMut::with_capacity(data.len() + 8);
        out.put_slice(b"data: ");
        out.put_slice(&data);
        out.put_slice(b"\n\n");
        Some(out.freeze())
    }

    /// An OpenAI-shaped completion or chunk with the alias and the reasoning field renamed;
    /// `None` when neither applies (or it is not a JSON object).
    fn openai(&self, json: &Bytes) -> Option<Bytes> {
        let body = RawBody::parse(json.clone()).ok()?;
        let mut edit = body.edit();
        if body.raw("model").is_some() && body.get::<String>("model").as_deref() != Some(self.alias.as_str()) {
            edit.set("model", Value::String(self.alias.clone()));
        }
        if let Some(field) = &self.reasoning_field {
            let mentioned = body.raw("choices").is_some_and(|raw| raw.get().contains(field.as_str()));
            if let Some(mut choices) = body.get::<Value>("choices").filter(|_| mentioned) {
                if rename_reasoning(&mut choices, field) {
                    edit.set("choices", choices);
                }
            }
        }
        (!edit.is_unchanged()).then(|| edit.into_bytes())
    }
}

/// Renames `field` to `reasoning_content` in every choice's `message` and `delta`; whether any was.
fn rename_reasoning(choices: &mut Value, field: &str) -> bool {
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

#[cfg(test)]
mod generated {
    use super::*;
    use proptest::prelude::*;
    use serde_json::Map;
    use switchyard_sdk::testing::{cut, cut_points, json_value, spell, spelled_object};

    const ALIAS: &str = "my-alias";

    fn rewrite(reasoning_field: Option<&str>, anthropic: bool, status: u16, event_stream: bool) -> Rewrite {
        Rewrite {
            alias: ALIAS.into(),
            reasoning_field: reasoning_field.map(str::to_string),
            anthropic: anthropic.then(|| StreamTranslator::new(ALIAS, 1, true)),
            created: 1,
            event_stream,
            status,
            pending: Vec::new(),
        }
    }

    /// What the caller must get: the alias as `model` (when the body has one) and the reasoning
    /// field renamed.
    fn expected(object: &Map<String, Value>, reasoning_field: Option<&str>) -> Map<String, Value> {
        let mut expected = object.clone();
        if let Some(model) = expected.get_mut("model") {
            *model = Value::String(ALIAS.into());
        }
        if let (Some(field), Some(choices)) = (reasoning_field, expected.get_mut("choices")) {
            rename_reasoning(choices, field);
        }
        expected
    }

    /// A body that sometimes already says the alias, sometimes carries reasoning in a choice.
    fn response() -> impl Strategy<Value = (Map<String, Value>, String)> {
        (spelled_object(), 0..3u8, any::<bool>(), json_value(), any::<u64>()).prop_map(
            |((mut object, text), model, reasoning, value, style)| {
                let plain = model == 0 && !reasoning;
                match model {
                    1 => {
                        object.insert("model".into(), Value::String(ALIAS.into()));
                    }
                    2 => {
                        object.insert("model".into(), Value::String("upstream-model".into()));
                    }
                    _ => {}
                }
                if reasoning {
                    let choice = serde_json::json!({"index": 0, "message": {"content": "a", "reasoning": value}});
                    object.insert("choices".into(), Value::Array(vec![choice]));
                }
                let text = if plain { text } else { spell(&Value::Object(object.clone()), style) };
                (object, text)
            },
        )
    }

    proptest! {
        /// Whole bodies and stream chunks get the alias and `reasoning_content`; when that changes
        /// nothing they go out byte for byte as they came, and otherwise the fields left alone
        /// keep their bytes.
        #[test]
        fn openai_bodies_change_only_what_they_must(
            (object, text) in response(),
            reasoning_field in proptest::option::of(Just("reasoning")),
            points in cut_points(),
        ) {
            let expected = expected(&object, reasoning_field);
            let mut whole = rewrite(reasoning_field, false, 200, false);
            let pieces = cut(text.as_bytes(), &points);
            let mut out = Vec::new();
            for (i, piece) in pieces.iter().enumerate() {
                let mut chunk = Bytes::copy_from_slice(piece);
                whole.apply(&mut chunk, i + 1 == pieces.len());
                out.extend_from_slice(&chunk);
            }
            let mut stream = rewrite(reasoning_field, false, 200, true);
            let compact = Value::Object(object.clone()).to_string();
            let event = Bytes::from(format!("data: {compact}\n\n"));
            let mut chunk = event.clone();
            stream.apply(&mut chunk, false);
            if expected == object {
                prop_assert_eq!(&out, text.as_bytes());
                prop_assert_eq!(chunk, event);
            } else {
                let got: Map<String, Value> = serde_json::from_slice(&out).unwrap();
                prop_assert_eq!(&got, &expected);
                let data = chunk.strip_prefix(b"data: ").unwrap().strip_suffix(b"\n\n").unwrap();
                prop_assert_eq!(&serde_json::from_slice::<Map<String, Value>>(data).unwrap(), &expected);
                let (before, after) = (RawBody::parse(Bytes::from(text)).unwrap(), RawBody::parse(Bytes::from(out)).unwrap());
                for key in object.keys().filter(|k| *k != "model" && *k != "choices") {
                    prop_assert_eq!(before.raw(key).map(|r| r.get()), after.raw(key).map(|r| r.get()));
                }
            }
        }

        /// Anything else (not JSON, not an object, Anthropic bodies and events of any shape, any
        /// status) is rewritten or passed on without a panic.
        #[test]
        fn any_body_or_event_is_survived(
            bytes in prop::collection::vec(any::<u8>(), 0..200),
            value in json_value(),
            anthropic in any::<bool>(),
            status in prop_oneof![Just(200u16), Just(429u16), 100..600u16],
        ) {
            let spelled = value.to_string();
            for body in [&bytes[..], spelled.as_bytes()] {
                let mut chunk = Bytes::copy_from_slice(body);
                rewrite(Some("reasoning"), anthropic, status, false).apply(&mut chunk, true);
                let mut event = Bytes::from([&b"data: "[..], body, b"\n\n"].concat());
                rewrite(Some("reasoning"), anthropic, status, true).apply(&mut event, false);
                if !anthropic && serde_json::from_slice::<Map<String, Value>>(body).is_err() {
                    prop_assert_eq!(&chunk[..], body, "what is not an object passes untouched");
                }
            }
        }
    }
}
