//! Reads an OpenAI `usage` value (every chat completion carries one, and a stream's last chunk)
//! with a scanner for the JSON it checks completely, and leaves everything else to serde.
//!
//! Written by hand because serde's derive was the dearest part of reading an answer: on the
//! 150-byte `usage` of a completion it cost about 3,500 instructions (keys decoded and checked as
//! UTF-8, fields matched as strings, nested structs), this scanner about 2,400 (callgrind, LTO
//! build: 1.4 % fewer instructions per request on an `ai-proxy` route and on the model API).
//!
//! Exactness comes first: the scanner decides only for the JSON it fully validates (plain keys,
//! integers, `null`, `true`, `false`), gives up on anything else (escapes, floats, strings,
//! arrays, a field written twice, bytes after the value), and [`openai_usage`] then asks serde.
//! So its answer is always the one `Option<UsageWire>` gives; a proptest holds it to that.

use switchyard_sdk::Usage;

use crate::providers::openai::{CachedWire, ReasoningWire, UsageWire};

/// The usage an OpenAI `usage` value holds (the bytes after its member's `:`, up to its end),
/// exactly as deserializing `Option<UsageWire>` reads it: `None` for `null` or for a value serde
/// refuses (a negative count, a float, a field written twice, broken JSON).
pub fn openai_usage(value: &[u8]) -> Option<Usage> {
    match scan(value) {
        Some(decided) => decided,
        None => serde_json::from_slice::<Option<UsageWire>>(value).ok().flatten().map(|wire| wire.usage()),
    }
}

/// The scanner's verdict: `Some(usage)` when it decided (`Some(None)`: the value is `null`),
/// `None` when serde must read the value.
fn scan(value: &[u8]) -> Option<Option<Usage>> {
    let mut reader = Reader { json: value, at: 0 };
    reader.whitespace();
    let usage = if reader.literal(b"null") {
        None
    } else {
        let mut fields = Fields::default();
        reader.object(|reader, key| fields.top_level(reader, key))?;
        Some(fields.usage())
    };
    reader.whitespace();
    (reader.at == value.len()).then_some(usage)
}

/// What the members of a `usage` object said, each field at most once.
#[derive(Default)]
struct Fields {
    prompt: Option<u64>,
    completion: Option<u64>,
    /// `Some(None)`: written as `null`.
    total: Option<Option<u64>>,
    cached: Option<Option<u64>>,
    cache_creation: Option<Option<u64>>,
    reasoning: Option<Option<u64>>,
    /// Each details member seen (even as `null`): a second one is a duplicate field.
    prompt_details: Option<()>,
    completion_details: Option<()>,
}

impl Fields {
    /// One member of the `usage` object; `None` when serde must decide.
    fn top_level(&mut self, reader: &mut Reader<'_>, key: &[u8]) -> Option<()> {
        match key {
            b"prompt_tokens" => once(&mut self.prompt, reader.integer()?),
            b"completion_tokens" => once(&mut self.completion, reader.integer()?),
            b"total_tokens" => once(&mut self.total, reader.optional_integer()?),
            b"prompt_tokens_details" => {
                once(&mut self.prompt_details, ())?;
                reader.optional_object(|reader, key| match key {
                    b"cached_tokens" => once(&mut self.cached, reader.optional_integer()?),
                    b"cache_creation_input_tokens" => once(&mut self.cache_creation, reader.optional_integer()?),
                    _ => reader.ignored(key),
                })
            }
            b"completion_tokens_details" => {
                once(&mut self.completion_details, ())?;
                reader.optional_object(|reader, key| match key {
                    b"reasoning_tokens" => once(&mut self.reasoning, reader.optional_integer()?),
                    _ => reader.ignored(key),
                })
            }
            _ => reader.ignored(key),
        }
    }

    /// The usage the fields make, computed by [`UsageWire::usage`] (which fills in a missing
    /// total) from the wire form serde would have built. An absent details object and one
    /// written as `null` read the same there, so both become one without counts.
    fn usage(self) -> Usage {
        UsageWire {
            prompt_tokens: self.prompt.unwrap_or(0),
            completion_tokens: self.completion.unwrap_or(0),
            total_tokens: self.total.flatten(),
            prompt_tokens_details: Some(CachedWire {
                cached_tokens: self.cached.flatten(),
                cache_creation_input_tokens: self.cache_creation.flatten(),
            }),
            completion_tokens_details: Some(ReasoningWire { reasoning_tokens: self.reasoning.flatten() }),
        }
        .usage()
    }
}

/// Records a field's value; `None` (serde must decide: it refuses duplicates) when it was set.
fn once<T>(slot: &mut Option<T>, value: T) -> Option<()> {
    if slot.is_some() {
        return None;
    }
    *slot = Some(value);
    Some(())
}

/// A cursor over the value's bytes. Every method returns `None` where the scanner gives up.
struct Reader<'a> {
    json: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    /// Skips JSON's whitespace (not form feeds: JSON has none).
    fn whitespace(&mut self) {
        while matches!(self.json.get(self.at), Some(b' ' | b'\n' | b'\t' | b'\r')) {
            self.at += 1;
        }
    }

    /// Consumes `word` when the bytes at the cursor are it.
    fn literal(&mut self, word: &[u8]) -> bool {
        let found = self.json[self.at..].starts_with(word);
        if found {
            self.at += word.len();
        }
        found
    }

    /// An object, each member handed to `member` with the cursor on its value (and expected
    /// just past it afterwards).
    fn object(&mut self, mut member: impl FnMut(&mut Self, &'a [u8]) -> Option<()>) -> Option<()> {
        if !self.literal(b"{") {
            return None;
        }
        self.whitespace();
        if self.literal(b"}") {
            return Some(());
        }
        loop {
            let key = self.key()?;
            self.whitespace();
            if !self.literal(b":") {
                return None;
            }
            self.whitespace();
            member(self, key)?;
            self.whitespace();
            if self.literal(b"}") {
                return Some(());
            }
            if !self.literal(b",") {
                return None;
            }
            self.whitespace();
        }
    }

    /// `null` or an object (a details member).
    fn optional_object(&mut self, member: impl FnMut(&mut Self, &'a [u8]) -> Option<()>) -> Option<()> {
        if self.literal(b"null") {
            return Some(());
        }
        self.object(member)
    }

    /// A key without escapes, as its bytes (a known field's name is then its text; an unknown
    /// one is checked by [`Reader::ignored`]); `None` for one with escapes, which serde decodes.
    fn key(&mut self) -> Option<&'a [u8]> {
        let json = self.json;
        if json.get(self.at) != Some(&b'"') {
            return None;
        }
        let start = self.at + 1;
        let len = json[start..].iter().position(|&b| b == b'"' || b == b'\\')?;
        if json[start + len] != b'"' {
            return None;
        }
        self.at = start + len + 1;
        Some(&json[start..start + len])
    }

    /// A non-negative integer serde reads as a `u64` for sure: `0`, or at most 19 digits without
    /// a leading zero, not followed by a fraction or an exponent.
    fn integer(&mut self) -> Option<u64> {
        let digits = self.json[self.at..].iter().take_while(|b| b.is_ascii_digit()).count();
        if digits == 0 || digits > 19 || (digits > 1 && self.json[self.at] == b'0') {
            return None;
        }
        if matches!(self.json.get(self.at + digits), Some(b'.' | b'e' | b'E')) {
            return None;
        }
        let value = self.json[self.at..self.at + digits].iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
        self.at += digits;
        Some(value)
    }

    /// `null` or an integer, for an `Option<u64>` field.
    fn optional_integer(&mut self) -> Option<Option<u64>> {
        if self.json.get(self.at) == Some(&b'n') {
            return self.literal(b"null").then_some(None);
        }
        self.integer().map(Some)
    }

    /// The member `key` that serde ignores: passed over when its key is printable ASCII (which
    /// serde takes as it is) and its value an integer, `null`, `true` or `false` (what providers
    /// put there); anything else is left to serde, which checks it.
    fn ignored(&mut self, key: &[u8]) -> Option<()> {
        if !key.iter().all(|b| (0x20..0x7f).contains(b)) {
            return None;
        }
        match self.json.get(self.at)? {
            b'n' => self.literal(b"null").then_some(()),
            b't' => self.literal(b"true").then_some(()),
            b'f' => self.literal(b"false").then_some(()),
            _ => self.integer().map(|_| ()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn serde(value: &[u8]) -> Option<Usage> {
        serde_json::from_slice::<Option<UsageWire>>(value).ok().flatten().map(|wire| wire.usage())
    }

    #[test]
    fn an_openai_usage_is_read_without_serde() {
        let cases: [(&str, Option<Usage>); 5] = [
            (
                r#"{"prompt_tokens":24,"completion_tokens":52,"total_tokens":76,"prompt_tokens_details":{"cached_tokens":3,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":7,"accepted_prediction_tokens":0}}"#,
                Some(Usage {
                    prompt_tokens: 24,
                    completion_tokens: 52,
                    total_tokens: 76,
                    cached_tokens: 3,
                    cache_creation_tokens: 0,
                    reasoning_tokens: 7,
                }),
            ),
            (
                " { \"prompt_tokens\" : 2 ,\n\"completion_tokens\":3,\"total_tokens\":null } ",
                Some(Usage { prompt_tokens: 2, completion_tokens: 3, total_tokens: 5, ..Usage::default() }),
            ),
            (
                r#"{"prompt_tokens":1,"prompt_tokens_details":null,"cache_creation_input_tokens":4}"#,
                Some(Usage { prompt_tokens: 1, total_tokens: 1, ..Usage::default() }),
            ),
            ("{}", Some(Usage::default())),
            ("null", None),
        ];
        for (json, expected) in cases {
            assert_eq!(scan(json.as_bytes()), Some(expected), "{json}");
            assert_eq!(serde(json.as_bytes()), expected, "{json}");
            assert_eq!(openai_usage(json.as_bytes()), expected, "{json}");
        }
    }

    #[test]
    fn what_the_scanner_does_not_check_is_left_to_serde() {
        for json in [
            r#"{"prompt_tokens":-1}"#,
            r#"{"prompt_tokens":1.0}"#,
            r#"{"prompt_tokens":1e2}"#,
            r#"{"prompt_tokens":01}"#,
            r#"{"prompt_tokens":null}"#,
            r#"{"prompt_tokens":1,"prompt_tokens":2}"#,
            r#"{"prompt\u005ftokens":1}"#,
            r#"{"note":"x"}"#,
            r#"{"prompt_tokens":99999999999999999999}"#,
            r#"{"prompt_tokens":1} x"#,
            r#"{"prompt_tokens":1"#,
            "{\"raw\ttab\":1}",
        ] {
            assert_eq!(scan(json.as_bytes()), None, "{json}");
            assert_eq!(openai_usage(json.as_bytes()), serde(json.as_bytes()), "{json}");
        }
        assert_eq!(
            openai_usage(br#"{"prompt\u005ftokens":4,"note":"x"}"#).map(|u| u.prompt_tokens),
            Some(4),
            "serde decodes what the scanner passes on"
        );
    }

    /// Values a usage member may hold: mostly what the scanner reads (so that most generated
    /// objects are decided by it), and each kind it must pass on to serde.
    fn value() -> impl Strategy<Value = String> {
        let leaf = prop_oneof![
            8 => (0u64..1000).prop_map(|n| n.to_string()),
            2 => any::<u64>().prop_map(|n| n.to_string()),
            3 => Just("null".to_string()),
            1 => Just("true".to_string()),
            1 => Just("99999999999999999999".to_string()),
            1 => Just("fals".to_string()),
            1 => Just("-3".to_string()),
            1 => Just("007".to_string()),
            1 => Just("1.5".to_string()),
            1 => Just("2e3".to_string()),
            1 => Just("\"text\"".to_string()),
            1 => Just("[1]".to_string()),
        ];
        leaf.prop_recursive(2, 8, 4, |inner| {
            prop::collection::vec((key(), inner), 0..4).prop_map(|members| object(&members))
        })
    }

    fn key() -> impl Strategy<Value = String> {
        prop_oneof![
            3 => Just("prompt_tokens"),
            3 => Just("completion_tokens"),
            2 => Just("total_tokens"),
            2 => Just("prompt_tokens_details"),
            2 => Just("completion_tokens_details"),
            2 => Just("cached_tokens"),
            2 => Just("cache_creation_input_tokens"),
            2 => Just("reasoning_tokens"),
            2 => Just("audio_tokens"),
            1 => Just("prompt\\u005ftokens"),
            1 => Just("caf\u{e9}"),
            1 => Just("raw\ttab"),
        ]
        .prop_map(str::to_string)
    }

    fn object(members: &[(String, String)]) -> String {
        let members: Vec<String> = members.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
        format!("{{{}}}", members.join(","))
    }

    /// A `usage` value, its members drawn from `value`, spaced with JSON whitespace (or not).
    fn usage_value() -> impl Strategy<Value = String> {
        let members = prop::collection::vec((key(), value()), 0..5).prop_map(|members| object(&members));
        let spaced = (members, prop::sample::select(vec!["", " ", "\n\t", "\r "])).prop_map(|(json, space)| {
            json.replace(',', &format!("{space},{space}")).replace(':', &format!(":{space}"))
        });
        prop_oneof![4 => spaced, 1 => Just("null".to_string()), 1 => Just(" {} ".to_string())]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2048))]

        #[test]
        fn the_scanner_agrees_with_serde_whenever_it_decides(json in usage_value()) {
            if let Some(decided) = scan(json.as_bytes()) {
                prop_assert_eq!(decided, serde(json.as_bytes()), "{}", json);
            }
            prop_assert_eq!(openai_usage(json.as_bytes()), serde(json.as_bytes()), "{}", json);
        }

        #[test]
        fn any_bytes_get_serde_s_answer(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
            prop_assert_eq!(openai_usage(&bytes), serde(&bytes));
        }
    }
}
