//! `post_arg.<path>`: finding a field of a JSON body without building a tree. The top level is
//! already split by [`RawBody`]; each deeper step scans one raw value, borrowing what it returns.

use std::fmt;

use crate::raw_body::RawBody;
use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

/// One segment of a body path: an object key, which also indexes an array when it is a number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    key: String,
    index: Option<usize>,
}

/// Splits `a.b.0` into steps; `None` when a segment is empty.
pub fn parse(path: &str) -> Option<Vec<Step>> {
    path.split('.')
        .map(|key| (!key.is_empty()).then(|| Step { key: key.to_string(), index: key.parse().ok() }))
        .collect()
}

/// The raw value at `path` in `body`, if there is one.
pub fn find<'b>(body: &'b RawBody, path: &[Step]) -> Option<&'b RawValue> {
    let (first, rest) = path.split_first()?;
    // Borrowed from the body: parsing a value as `&RawValue` only checks it, it copies nothing.
    let mut here: &RawValue = serde_json::from_str(body.raw(&first.key)?).ok()?;
    for step in rest {
        here = child(here, step)?;
    }
    Some(here)
}

/// The member `step` names of an object or array value.
fn child<'v>(value: &'v RawValue, step: &Step) -> Option<&'v RawValue> {
    let mut de = serde_json::Deserializer::from_str(value.get());
    de.deserialize_any(Child(step)).ok().flatten()
}

struct Child<'s>(&'s Step);

impl<'de> Visitor<'de> for Child<'_> {
    type Value = Option<&'de RawValue>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object or an array")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut found = None;
        // Read to the end: the deserializer checks the object closes.
        while let Some(matches) = map.next_key_seed(KeyIs(&self.0.key))? {
            if matches && found.is_none() {
                found = Some(map.next_value::<&'de RawValue>()?);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(found)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut found = None;
        let mut i = 0;
        loop {
            if Some(i) == self.0.index {
                match seq.next_element::<&'de RawValue>()? {
                    Some(v) => found = Some(v),
                    None => break,
                }
            } else if seq.next_element::<IgnoredAny>()?.is_none() {
                break;
            }
            i += 1;
        }
        Ok(found)
    }

    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
}

/// Reads an object key and says whether it is the one looked for, without keeping it.
struct KeyIs<'k>(&'k str);

impl<'de> DeserializeSeed<'de> for KeyIs<'_> {
    type Value = bool;

    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<bool, D::Error> {
        de.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeyIs<'_> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a key")
    }

    fn visit_str<E>(self, key: &str) -> Result<bool, E> {
        Ok(key == self.0)
    }
}

/// Whether the JSON array `value` holds an element for which `eq` is true.
pub fn any_element(value: &RawValue, eq: &dyn Fn(&RawValue) -> bool) -> bool {
    struct Any<'f>(&'f dyn Fn(&RawValue) -> bool);
    impl<'de> Visitor<'de> for Any<'_> {
        type Value = bool;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an array")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<bool, A::Error> {
            let mut found = false;
            while let Some(element) = seq.next_element::<&'de RawValue>()? {
                found = found || (self.0)(element);
            }
            Ok(found)
        }
    }
    let mut de = serde_json::Deserializer::from_str(value.get());
    de.deserialize_seq(Any(eq)).unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn nested_fields_and_array_elements_are_found() {
        let body = RawBody::parse(Bytes::from_static(
            br#"{"model":"m","meta":{"tier":"gold","tags":["a","b"],"k\u0065y":1},"messages":[{"role":"user"}]}"#,
        ))
        .unwrap();
        let at = |p: &str| find(&body, &parse(p).unwrap()).map(|v| v.get().to_string());
        assert_eq!(at("model").as_deref(), Some("\"m\""));
        assert_eq!(at("meta.tier").as_deref(), Some("\"gold\""));
        assert_eq!(at("meta.tags.1").as_deref(), Some("\"b\""));
        assert_eq!(at("meta.key").as_deref(), Some("1"), "escaped keys compare by their text");
        assert_eq!(at("messages.0.role").as_deref(), Some("\"user\""));
        assert_eq!(at("meta.tags.5"), None);
        assert_eq!(at("model.x"), None);
        assert_eq!(at("absent.x"), None);
        assert!(parse("a..b").is_none());
    }

    #[test]
    fn arrays_are_searched_element_by_element() {
        let raw: Box<RawValue> = serde_json::from_str(r#"["x", 2, "y"]"#).unwrap();
        assert!(any_element(&raw, &|e| e.get() == "\"y\""));
        assert!(!any_element(&raw, &|e| e.get() == "\"z\""));
    }
}
