//! Generated inputs for the workspace's property tests (the `testing` feature, dev-dependencies
//! only): JSON values biased towards the fields the gateway reads, JSON texts spelled in the ways
//! clients and providers spell them, SSE-like byte streams, and cuts of bytes into pieces.
//!
//! Every property test runs proptest's default number of cases (256; `PROPTEST_CASES=N` runs
//! more) on small inputs, so the whole set stays within seconds.

use proptest::prelude::*;
use proptest::sample::select;
use serde_json::{Map, Number, Value};

/// Keys the gateway reads or writes, mixed into generated objects so that they reach real paths.
pub const KNOWN_KEYS: &[&str] = &[
    "model",
    "messages",
    "stream",
    "stream_options",
    "include_usage",
    "usage",
    "prompt_tokens",
    "completion_tokens",
    "choices",
    "message",
    "delta",
    "role",
    "content",
    "type",
    "text",
    "index",
    "max_tokens",
    "tools",
    "tool_calls",
    "function",
    "arguments",
    "error",
    "id",
    "reasoning",
    "input_tokens",
    "output_tokens",
    "content_block",
    "stop_reason",
];

/// Values the gateway looks for by content (roles, event types, flags).
const KNOWN_STRINGS: &[&str] = &[
    "user",
    "assistant",
    "system",
    "tool",
    "developer",
    "text",
    "image_url",
    "tool_use",
    "message_start",
    "content_block_start",
    "content_block_delta",
    "message_delta",
    "message_stop",
    "text_delta",
    "input_json_delta",
    "thinking_delta",
    "error",
    "[DONE]",
    "data:,",
];

/// An object key: mostly a known one, sometimes any text (quotes, escapes, non-ASCII).
pub fn json_key() -> impl Strategy<Value = String> {
    prop_oneof![3 => select(KNOWN_KEYS).prop_map(str::to_string), 1 => "\\PC{0,6}"]
}

/// A JSON scalar, integers at their extremes included.
pub fn json_leaf() -> BoxedStrategy<Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        // Decimals of up to ten digits: serde_json reads longer ones back only to within one ULP
        // (its `float_roundtrip` feature is off), which would fail "reads back the same" for
        // reasons that are serde_json's, not the gateway's.
        (any::<i32>(), 0..5i32).prop_filter_map("finite", |(digits, scale)| {
            Number::from_f64(f64::from(digits) / 10f64.powi(scale)).map(Value::Number)
        }),
        "\\PC{0,10}".prop_map(Value::String),
        select(KNOWN_STRINGS).prop_map(Value::from),
    ]
    .boxed()
}

/// Any JSON value, up to 4 levels deep and about 48 nodes.
pub fn json_value() -> BoxedStrategy<Value> {
    json_leaf()
        .prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::vec((json_key(), inner), 0..6)
                    .prop_map(|fields| Value::Object(fields.into_iter().collect())),
            ]
        })
        .boxed()
}

/// A JSON object (keys unique).
pub fn json_object() -> BoxedStrategy<Map<String, Value>> {
    prop::collection::vec((json_key(), json_value()), 0..8).prop_map(|fields| fields.into_iter().collect()).boxed()
}

/// An object and a spelling of it as a client or provider may send it.
pub fn spelled_object() -> BoxedStrategy<(Map<String, Value>, String)> {
    (json_object(), any::<u64>())
        .prop_map(|(object, style)| {
            let text = spell(&Value::Object(object.clone()), style);
            (object, text)
        })
        .boxed()
}

/// `value` as JSON text in the spelling `style` picks: whitespace between tokens, and escapes a
/// serialiser would not write (`\/`, `\u00e9`), so "left untouched" can be told from
/// "re-serialised the same".
pub fn spell(value: &Value, style: u64) -> String {
    let mut spelling = Spelling { state: style | 1, out: String::new() };
    spelling.value(value);
    spelling.space();
    spelling.out
}

struct Spelling {
    state: u64,
    out: String,
}

impl Spelling {
    /// The next pseudo-random number (xorshift64): the spelling is a pure function of the style.
    fn next(&mut self) -> u64 {
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        self.state
    }

    fn space(&mut self) {
        let pick = self.next() % 8;
        self.out.push_str(["", "", "", "", " ", "\n", "\t ", "\r\n  "][pick as usize]);
    }

    fn value(&mut self, value: &Value) {
        self.space();
        match value {
            Value::String(text) => self.string(text),
            Value::Array(items) => {
                self.out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        self.space();
                        self.out.push(',');
                    }
                    self.value(item);
                }
                self.space();
                self.out.push(']');
            }
            Value::Object(fields) => {
                self.out.push('{');
                for (i, (key, item)) in fields.iter().enumerate() {
                    if i > 0 {
                        self.space();
                        self.out.push(',');
                    }
                    self.space();
                    self.string(key);
                    self.space();
                    self.out.push(':');
                    self.value(item);
                }
                self.space();
                self.out.push('}');
            }
            scalar => self.out.push_str(&scalar.to_string()),
        }
    }

    fn string(&mut self, text: &str) {
        self.out.push('"');
        for c in text.chars() {
            match c {
                '"' => self.out.push_str("\\\""),
                '\\' => self.out.push_str("\\\\"),
                '/' if self.next().is_multiple_of(2) => self.out.push_str("\\/"),
                c if (c as u32) < 0x20 || (!c.is_ascii() && self.next().is_multiple_of(2)) => {
                    let mut units = [0u16; 2];
                    for unit in c.encode_utf16(&mut units) {
                        self.out.push_str(&format!("\\u{unit:04x}"));
                    }
                }
                c => self.out.push(c),
            }
        }
        self.out.push('"');
    }
}

/// Pieces of SSE streams: fields, line ends of every kind, blank lines, payloads.
const SSE_TOKENS: &[&str] = &[
    "data: ",
    "data:",
    "event: message",
    "id: 7",
    ": keep-alive",
    "retry: 10",
    "\n",
    "\n",
    "\r",
    "\r\n",
    "\n\n",
    "\r\n\r\n",
    "{\"a\":1}",
    "[DONE]",
    "x",
    "é",
];

/// A byte stream that looks like SSE, with the odd arbitrary byte.
pub fn sse_like() -> BoxedStrategy<Vec<u8>> {
    prop::collection::vec(
        prop_oneof![6 => select(SSE_TOKENS).prop_map(|t| t.as_bytes().to_vec()), 1 => any::<u8>().prop_map(|b| vec![b])],
        0..80,
    )
    .prop_map(|tokens| tokens.concat())
    .boxed()
}

/// Where to cut a body into pieces: up to 8 positions, taken modulo its length by [`cut`].
pub fn cut_points() -> BoxedStrategy<Vec<usize>> {
    prop::collection::vec(any::<usize>(), 0..8).boxed()
}

/// `bytes` cut at `points` (each modulo its length + 1, sorted): pieces that join back to it,
/// empty ones included.
pub fn cut<'a>(bytes: &'a [u8], points: &[usize]) -> Vec<&'a [u8]> {
    let mut at: Vec<usize> = points.iter().map(|p| p % (bytes.len() + 1)).collect();
    at.sort_unstable();
    let mut pieces = Vec::with_capacity(at.len() + 1);
    let mut start = 0;
    for end in at {
        pieces.push(&bytes[start..end]);
        start = end;
    }
    pieces.push(&bytes[start..]);
    pieces
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest! {
        #[test]
        fn every_spelling_reads_back_as_the_value(value in json_value(), style in any::<u64>()) {
            let text = spell(&value, style);
            prop_assert_eq!(serde_json::from_str::<Value>(&text).ok(), Some(value));
        }

        #[test]
        fn cuts_join_back(bytes in prop::collection::vec(any::<u8>(), 0..64), points in cut_points()) {
            prop_assert_eq!(cut(&bytes, &points).concat(), bytes);
        }
    }
}
