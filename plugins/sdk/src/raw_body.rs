//! A JSON request body kept as its top-level fields' raw bytes, so the gateway can change a
//! top-level field (model, stream_options) without re-serialising nested ones (messages), and can
//! forward the client's bytes untouched when nothing changes.
//!
//! Kept rather than parsing into `serde_json::Value`: a `Value` tree allocates every nested
//! string and object of a long conversation, and writing it back re-encodes all of it (and may
//! reorder or reformat what the provider's prompt cache keys on). Here only the top level is
//! split, each field stays `RawValue` bytes, and an edit rewrites just the fields it touches.

use std::fmt;

use bytes::Bytes;
use serde::de::{Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;

/// Why a body is not a JSON object.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("request body is empty: send a JSON object")]
    Empty,
    #[error("request body is not valid JSON: {0}")]
    Invalid(String),
}

/// The client's body: the original bytes and its top-level fields in order.
#[derive(Debug, Clone)]
pub struct RawBody {
    original: Bytes,
    fields: Vec<(String, Box<RawValue>)>,
}

/// A body being rebuilt for one upstream attempt. Untouched fields keep their original bytes.
#[derive(Debug, Clone)]
pub struct BodyEdit<'a> {
    base: &'a RawBody,
    /// Replacements (`Some`) and removals (`None`) of top-level fields, in the order made.
    changes: Vec<(String, Option<Value>)>,
}

impl RawBody {
    /// Parses a body that must be a JSON object (whatever the request's Content-Type said).
    pub fn parse(original: Bytes) -> Result<RawBody, BodyError> {
        if original.iter().all(u8::is_ascii_whitespace) {
            return Err(BodyError::Empty);
        }
        let mut de = serde_json::Deserializer::from_slice(&original);
        let fields = (&mut de).deserialize_map(FieldsVisitor).map_err(|e| BodyError::Invalid(e.to_string()))?;
        de.end().map_err(|e| BodyError::Invalid(e.to_string()))?;
        Ok(RawBody { original, fields })
    }

    /// A body the gateway made (a request converted to another protocol), kept like a parsed one
    /// so the same edits apply to it.
    pub fn from_object(object: serde_json::Map<String, Value>) -> RawBody {
        let mut original = Vec::with_capacity(256);
        original.push(b'{');
        let mut fields = Vec::with_capacity(object.len());
        for (i, (key, value)) in object.into_iter().enumerate() {
            // Serialising a `Value` cannot fail: its keys are strings.
            let Ok(raw) = serde_json::value::to_raw_value(&value) else { continue };
            if i > 0 {
                original.push(b',');
            }
            let _ = serde_json::to_writer(&mut original, &key);
            original.push(b':');
            original.extend_from_slice(raw.get().as_bytes());
            fields.push((key, raw));
        }
        original.push(b'}');
        RawBody { original: Bytes::from(original), fields }
    }

    /// Whether the body has no field at all (`{}`).
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    pub fn original(&self) -> &Bytes {
        &self.original
    }

    /// A top-level field's raw JSON.
    pub fn raw(&self, key: &str) -> Option<&RawValue> {
        self.fields.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v.as_ref())
    }

    /// A top-level field parsed as `T`; `None` when absent or of another type.
    pub fn get<'de, T: Deserialize<'de>>(&'de self, key: &str) -> Option<T> {
        self.raw(key).and_then(|raw| serde_json::from_str(raw.get()).ok())
    }

    /// The string value of a top-level field.
    pub fn str_field(&self, key: &str) -> Option<String> {
        self.get::<String>(key)
    }

    pub fn edit(&self) -> BodyEdit<'_> {
        BodyEdit { base: self, changes: Vec::new() }
    }
}

impl BodyEdit<'_> {
    /// The value a field will have: a change made in this edit, else the client's.
    pub fn current(&self, key: &str) -> Option<Value> {
        match self.changes.iter().rev().find(|(k, _)| k == key) {
            Some((_, change)) => change.clone(),
            None => self.base.get::<Value>(key),
        }
    }

    /// The raw JSON a field will have when this edit has not changed it: the client's bytes.
    /// `None` when the field is absent or was changed here. Comparing it with a value's
    /// serialised form avoids parsing the field.
    pub fn raw_unchanged(&self, key: &str) -> Option<&str> {
        if self.changes.iter().any(|(k, _)| k == key) {
            return None;
        }
        self.base.raw(key).map(RawValue::get)
    }

    pub fn set(&mut self, key: &str, value: Value) {
        self.changes.push((key.to_string(), Some(value)));
    }

    pub fn remove(&mut self, key: &str) {
        self.changes.push((key.to_string(), None));
    }

    pub fn is_unchanged(&self) -> bool {
        self.changes.is_empty()
    }

    /// The body to send: the client's own bytes when nothing changed; otherwise the fields in their
    /// original order (changed ones re-serialised, the rest copied raw), new fields at the end.
    pub fn into_bytes(self) -> Bytes {
        if self.changes.is_empty() {
            return self.base.original.clone();
        }
        let mut final_changes: Vec<(String, Option<Value>)> = Vec::new();
        for (key, change) in self.changes {
            match final_changes.iter_mut().find(|(k, _)| *k == key) {
                Some(slot) => slot.1 = change,
                None => final_changes.push((key, change)),
            }
        }
        let mut out = Vec::with_capacity(self.base.original.len() + 64);
        out.push(b'{');
        let mut first = true;
        // Keys and values are written straight into `out`: no string per field.
        let mut push = |out: &mut Vec<u8>, key: &str, value: Field<'_>| {
            if !first {
                out.push(b',');
            }
            first = false;
            // Writing JSON into a Vec cannot fail.
            let _ = serde_json::to_writer(&mut *out, key);
            out.push(b':');
            match value {
                Field::Raw(raw) => out.extend_from_slice(raw.as_bytes()),
                Field::Value(value) => {
                    let _ = serde_json::to_writer(&mut *out, value);
                }
            }
        };
        for (key, raw) in &self.base.fields {
            match final_changes.iter().find(|(k, _)| k == key) {
                Some((_, Some(value))) => push(&mut out, key, Field::Value(value)),
                Some((_, None)) => {}
                None => push(&mut out, key, Field::Raw(raw.get())),
            }
        }
        for (key, change) in &final_changes {
            if let Some(value) = change {
                if !self.base.fields.iter().any(|(k, _)| k == key) {
                    push(&mut out, key, Field::Value(value));
                }
            }
        }
        out.push(b'}');
        Bytes::from(out)
    }
}

/// A field's value as `into_bytes` writes it.
enum Field<'a> {
    Raw(&'a str),
    Value(&'a Value),
}

struct FieldsVisitor;

impl<'de> Visitor<'de> for FieldsVisitor {
    type Value = Vec<(String, Box<RawValue>)>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut fields = Vec::with_capacity(map.size_hint().unwrap_or(8));
        while let Some((key, value)) = map.next_entry::<String, Box<RawValue>>()? {
            fields.push((key, value));
        }
        Ok(fields)
    }
}

/// RFC 7396-style deep merge of `patch` into `target`. With `patch_wins` false, values already in
/// `target` are kept and only missing ones are filled in.
pub fn deep_merge(target: &mut Value, patch: &Value, patch_wins: bool) {
    match (target, patch) {
        (Value::Object(target), Value::Object(patch)) => {
            for (key, value) in patch {
                match target.get_mut(key) {
                    Some(existing) => deep_merge(existing, value, patch_wins),
                    None => {
                        target.insert(key.clone(), value.clone());
                    }
                }
            }
        }
        (target, patch) => {
            if patch_wins {
                *target = patch.clone();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn unchanged_body_is_the_clients_bytes() {
        let original = Bytes::from_static(b"{ \"messages\" : [ {\"role\":\"user\"} ] }");
        let body = RawBody::parse(original.clone()).unwrap();
        assert_eq!(body.edit().into_bytes(), original);
    }

    #[test]
    fn top_level_changes_keep_nested_bytes_verbatim() {
        let body =
            RawBody::parse(Bytes::from_static(b"{\"model\":\"a\",\"messages\":[ {\"content\" : \"hi\"} ],\"x\":1}"))
                .unwrap();
        let mut edit = body.edit();
        edit.set("model", json!("b"));
        edit.remove("x");
        edit.set("stream_options", json!({"include_usage": true}));
        assert_eq!(
            edit.into_bytes(),
            Bytes::from_static(b"{\"model\":\"b\",\"messages\":[ {\"content\" : \"hi\"} ],\"stream_options\":{\"include_usage\":true}}")
        );
    }

    #[test]
    fn a_made_body_is_edited_like_a_parsed_one() {
        let made = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
        let Value::Object(object) = made.clone() else { unreachable!() };
        let body = RawBody::from_object(object);
        assert_eq!(serde_json::from_slice::<Value>(body.original()).unwrap(), made);
        assert_eq!(body.raw("messages").unwrap().get(), r#"[{"role":"user","content":"hi"}]"#);
        let mut edit = body.edit();
        edit.set("model", json!("n"));
        assert_eq!(
            edit.into_bytes(),
            Bytes::from_static(br#"{"model":"n","messages":[{"role":"user","content":"hi"}]}"#)
        );
    }

    #[test]
    fn rejects_empty_invalid_and_non_object_bodies() {
        assert!(matches!(RawBody::parse(Bytes::from_static(b"  ")), Err(BodyError::Empty)));
        assert!(matches!(RawBody::parse(Bytes::from_static(b"{\"a\":")), Err(BodyError::Invalid(_))));
        assert!(matches!(RawBody::parse(Bytes::from_static(b"[1]")), Err(BodyError::Invalid(_))));
        assert!(matches!(RawBody::parse(Bytes::from_static(b"{} x")), Err(BodyError::Invalid(_))));
    }

    mod generated {
        use super::*;
        use crate::testing::{json_key, json_value, spelled_object};
        use proptest::prelude::*;
        use serde_json::Map;

        proptest! {
            #[test]
            fn any_bytes_are_parsed_or_refused(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
                let _ = RawBody::parse(Bytes::from(bytes));
            }

            #[test]
            fn an_unchanged_body_is_the_clients_bytes((_object, text) in spelled_object()) {
                let body = RawBody::parse(Bytes::from(text.clone())).unwrap();
                prop_assert_eq!(body.edit().into_bytes(), Bytes::from(text));
            }

            /// Sets and removals change their fields and nothing else: every other field keeps the
            /// client's bytes.
            #[test]
            fn edits_change_only_their_fields(
                (object, text) in spelled_object(),
                changes in prop::collection::vec((json_key(), proptest::option::of(json_value())), 0..6),
            ) {
                let body = RawBody::parse(Bytes::from(text)).unwrap();
                let mut edit = body.edit();
                let mut expected = object.clone();
                for (key, change) in &changes {
                    match change {
                        Some(value) => {
                            edit.set(key, value.clone());
                            expected.insert(key.clone(), value.clone());
                        }
                        None => {
                            edit.remove(key);
                            expected.remove(key);
                        }
                    }
                }
                let out = edit.into_bytes();
                let got: Map<String, Value> = serde_json::from_slice(&out).unwrap();
                prop_assert_eq!(&got, &expected);
                let again = RawBody::parse(out).unwrap();
                for key in object.keys().filter(|k| !changes.iter().any(|(changed, _)| changed == *k)) {
                    prop_assert_eq!(again.raw(key).map(RawValue::get), body.raw(key).map(RawValue::get));
                }
            }
        }
    }

    #[test]
    fn deep_merge_respects_who_wins() {
        let mut target = json!({"a": 1, "b": {"c": 1}});
        deep_merge(&mut target, &json!({"a": 2, "b": {"d": 2}}), false);
        assert_eq!(target, json!({"a": 1, "b": {"c": 1, "d": 2}}));
        deep_merge(&mut target, &json!({"a": 2}), true);
        assert_eq!(target["a"], 2);
    }
}
