//! A JSON request body kept as its top-level fields' raw bytes, so the gateway can change a
//! top-level field (model, stream_options) without re-serialising nested ones (messages), and can
//! forward the client's bytes untouched when nothing changes.
//!
//! Kept rather than parsing into `serde_json::Value`: a `Value` tree allocates every nested
//! string and object of a long conversation, and writing it back re-encodes all of it (and may
//! reorder or reformat what the provider's prompt cache keys on). Here only the top level is
//! split, each field stays the client's bytes, and an edit rewrites just the fields it touches.

use std::fmt;
use std::ops::Range;

use bytes::Bytes;
use bytestring::ByteString;
use serde::de::{DeserializeSeed, Deserializer, MapAccess, Visitor};
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

/// The client's body: the original bytes and where its top-level fields are in them, in order.
///
/// Fields are kept as byte ranges of `original`, not copied out: parsing a body then allocates
/// once (the field list) instead of twice per field, and an edited body copies each untouched
/// field (its key included) straight from the client's bytes.
#[derive(Debug, Clone)]
pub struct RawBody {
    /// Checked as UTF-8 once, when parsed: every field is then text without another check.
    original: ByteString,
    fields: Vec<Field>,
}

/// One top-level field of a [`RawBody`].
#[derive(Debug, Clone)]
struct Field {
    key: Key,
    /// The value's raw JSON in `original`.
    value: Range<usize>,
}

/// A field's name.
#[derive(Debug, Clone)]
enum Key {
    /// As written: the text between its quotes in `original`, with no escape in it.
    At(Range<usize>),
    /// Decoded, for a name written with escapes (`"mo\u0064el"`).
    Decoded(Box<str>),
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
        // JSON text is UTF-8 (RFC 8259).
        let original = ByteString::try_from(original).map_err(|e| BodyError::Invalid(e.to_string()))?;
        let text: &str = &original;
        let mut de = serde_json::Deserializer::from_str(text);
        let fields =
            (&mut de).deserialize_map(FieldsVisitor { text }).map_err(|e| BodyError::Invalid(e.to_string()))?;
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
            if i > 0 {
                original.push(b',');
            }
            // Serialising into a Vec cannot fail: a `Value`'s keys are strings.
            let key_start = original.len();
            let _ = serde_json::to_writer(&mut original, &key);
            let key = if original.len() == key_start + key.len() + 2 {
                Key::At(key_start + 1..original.len() - 1)
            } else {
                Key::Decoded(key.into_boxed_str())
            };
            original.push(b':');
            let value_start = original.len();
            let _ = serde_json::to_writer(&mut original, &value);
            fields.push(Field { key, value: value_start..original.len() });
        }
        original.push(b'}');
        // serde_json writes UTF-8: the check cannot fail.
        RawBody { original: ByteString::try_from(original).unwrap_or_default(), fields }
    }

    /// Whether the body has no field at all (`{}`).
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    pub fn original(&self) -> &Bytes {
        self.original.as_bytes()
    }

    /// A top-level field's raw JSON, as the client wrote it (the last one, if the name repeats).
    pub fn raw(&self, key: &str) -> Option<&str> {
        self.fields.iter().rev().find(|field| self.named(field, key)).map(|field| self.text(field.value.clone()))
    }

    /// A top-level field parsed as `T`; `None` when absent or of another type.
    pub fn get<'de, T: Deserialize<'de>>(&'de self, key: &str) -> Option<T> {
        self.raw(key).and_then(|raw| serde_json::from_str(raw).ok())
    }

    /// The string value of a top-level field.
    pub fn str_field(&self, key: &str) -> Option<String> {
        self.get::<String>(key)
    }

    pub fn edit(&self) -> BodyEdit<'_> {
        BodyEdit { base: self, changes: Vec::new() }
    }

    /// Whether `field` is called `key`.
    fn named(&self, field: &Field, key: &str) -> bool {
        match &field.key {
            Key::At(range) => self.original.as_bytes().get(range.clone()) == Some(key.as_bytes()),
            Key::Decoded(name) => &**name == key,
        }
    }

    /// Writes `field`'s name and its colon: as the client wrote the name when it could be kept.
    fn write_name(&self, out: &mut Vec<u8>, field: &Field) {
        match &field.key {
            Key::At(name) => out.extend_from_slice(self.text(name.start - 1..name.end + 1).as_bytes()),
            // Writing JSON into a Vec cannot fail.
            Key::Decoded(name) => {
                let _ = serde_json::to_writer(&mut *out, name);
            }
        }
        out.push(b':');
    }

    /// Text of `original` at `range`: every range kept borders on ASCII punctuation, so on
    /// character boundaries, and the lookup cannot fail.
    fn text(&self, range: Range<usize>) -> &str {
        self.original.get(range).unwrap_or_default()
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
        self.base.raw(key)
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
        let base = self.base;
        if self.changes.is_empty() {
            return base.original.as_bytes().clone();
        }
        // The last change of a key is the one that counts.
        let latest = |key: &dyn Fn(&str) -> bool| self.changes.iter().rev().find(|(k, _)| key(k)).map(|(_, c)| c);
        let mut out = Vec::with_capacity(base.original.len() + 64);
        out.push(b'{');
        let separate = |out: &mut Vec<u8>| {
            if out.len() > 1 {
                out.push(b',');
            }
        };
        for field in &base.fields {
            let change = latest(&|k| base.named(field, k));
            if let Some(None) = change {
                continue;
            }
            separate(&mut out);
            base.write_name(&mut out, field);
            match change {
                // Writing JSON into a Vec cannot fail.
                Some(Some(value)) => {
                    let _ = serde_json::to_writer(&mut out, value);
                }
                _ => out.extend_from_slice(base.text(field.value.clone()).as_bytes()),
            }
        }
        // Fields the client did not send, in the order first set.
        for (i, (key, _)) in self.changes.iter().enumerate() {
            let first_time = !self.changes[..i].iter().any(|(k, _)| k == key);
            if let Some(Some(value)) = latest(&|k| k == key).filter(|_| first_time) {
                if !base.fields.iter().any(|field| base.named(field, key)) {
                    separate(&mut out);
                    let _ = serde_json::to_writer(&mut out, key);
                    out.push(b':');
                    let _ = serde_json::to_writer(&mut out, value);
                }
            }
        }
        out.push(b'}');
        Bytes::from(out)
    }
}

/// Reads the top-level object of `text` into [`Field`]s: names and values are borrowed from
/// `text` and kept as their offsets in it.
struct FieldsVisitor<'t> {
    text: &'t str,
}

impl FieldsVisitor<'_> {
    /// Where `part`, a slice of `text`, starts in it.
    fn offset(&self, part: &str) -> usize {
        part.as_ptr() as usize - self.text.as_ptr() as usize
    }
}

impl<'de> Visitor<'de> for FieldsVisitor<'_> {
    type Value = Vec<Field>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut fields = Vec::with_capacity(map.size_hint().unwrap_or(8));
        while let Some(name) = map.next_key_seed(NameSeed)? {
            let value: &'de RawValue = map.next_value()?;
            let key = match name {
                Name::Borrowed(name) => {
                    let start = self.offset(name);
                    Key::At(start..start + name.len())
                }
                Name::Decoded(name) => Key::Decoded(name.into_boxed_str()),
            };
            let start = self.offset(value.get());
            fields.push(Field { key, value: start..start + value.get().len() });
        }
        Ok(fields)
    }
}

/// A field name as the deserializer gives it: a slice of the input when written without
/// escapes, else decoded.
enum Name<'de> {
    Borrowed(&'de str),
    Decoded(String),
}

struct NameSeed;

impl<'de> DeserializeSeed<'de> for NameSeed {
    type Value = Name<'de>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for NameSeed {
    type Value = Name<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a field name")
    }

    fn visit_borrowed_str<E>(self, name: &'de str) -> Result<Self::Value, E> {
        Ok(Name::Borrowed(name))
    }

    fn visit_str<E>(self, name: &str) -> Result<Self::Value, E> {
        Ok(Name::Decoded(name.to_owned()))
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
        assert_eq!(body.raw("messages").unwrap(), r#"[{"role":"user","content":"hi"}]"#);
        let mut edit = body.edit();
        edit.set("model", json!("n"));
        assert_eq!(
            edit.into_bytes(),
            Bytes::from_static(br#"{"model":"n","messages":[{"role":"user","content":"hi"}]}"#)
        );
    }

    #[test]
    fn a_name_written_with_escapes_is_found_and_written_decoded() {
        let body = RawBody::parse(Bytes::from_static(br#"{"mo\u0064el":"a", "x" : 1}"#)).unwrap();
        assert_eq!(body.raw("model"), Some(r#""a""#));
        assert_eq!(body.raw("x"), Some("1"));
        let mut edit = body.edit();
        edit.set("x", json!(2));
        assert_eq!(edit.into_bytes(), Bytes::from_static(br#"{"model":"a","x":2}"#));
        let mut edit = body.edit();
        edit.set("model", json!("b"));
        assert_eq!(edit.into_bytes(), Bytes::from_static(br#"{"model":"b","x":1}"#));
    }

    #[test]
    fn the_last_of_repeated_changes_and_names_counts() {
        let body = RawBody::parse(Bytes::from_static(br#"{"a":1,"a":2}"#)).unwrap();
        assert_eq!(body.raw("a"), Some("2"));
        let mut edit = body.edit();
        edit.set("b", json!(1));
        edit.set("c", json!(1));
        edit.set("b", json!(2));
        edit.remove("c");
        assert_eq!(edit.into_bytes(), Bytes::from_static(br#"{"a":1,"a":2,"b":2}"#));
    }

    #[test]
    fn a_body_that_is_not_utf8_is_refused() {
        assert!(matches!(RawBody::parse(Bytes::from_static(b"{\"a\":\"\xff\"}")), Err(BodyError::Invalid(_))));
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
                    prop_assert_eq!(again.raw(key), body.raw(key));
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
