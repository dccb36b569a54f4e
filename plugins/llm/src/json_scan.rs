//! Finds a top-level member of a JSON object in a piece of it: its first bytes (scanning forward)
//! or its last bytes (scanning backward), without parsing or keeping the rest; or where every
//! top-level member of a whole object sits ([`members`]). Used to read `model` and
//! `usage` from an answer (whole, or too large to hold whole), and to find the `model` value the
//! model API's alias echo replaces in place.
//!
//! Inside a JSON string every `"` is escaped, so outside strings a quote always opens or closes
//! one: both scans skip strings (and what looks like JSON in them) and count nesting, so a member
//! of a nested object, or the text `\"usage\":` in a message, is never taken for a top-level one.

use serde::Deserialize;

/// The value of the first top-level member `key` of the object that `head` begins, parsed as `T`.
/// `None` when the member is absent from `head` (or cut off by its end), or is not a `T`.
pub fn first_member<'a, T: Deserialize<'a>>(head: &'a [u8], key: &str) -> Option<T> {
    let rest = &head[first_member_value(head, key)?..];
    let mut values = serde_json::Deserializer::from_slice(rest).into_iter::<T>();
    let value = values.next()?.ok()?;
    // A value is whole only when the member visibly ends: a number cut by the end of `head`
    // (`-1` of `-1000`) parses, but is not the value.
    ends_member(rest, values.byte_offset()).then_some(value)
}

/// The text of the first top-level member `key` of the object that `head` begins, when its value
/// is a string written without escapes (a model name, as a rule): borrowed, no decoding.
/// `None` when [`first_member`] would find nothing, or when the string has escapes (then
/// `first_member::<String>` decodes it). Runs on every event of a stream, where handing a short
/// string to serde cost more than finding it.
pub fn first_member_plain_str<'a>(head: &'a [u8], key: &str) -> Option<&'a str> {
    let rest = &head[first_member_value(head, key)?..];
    let open = skip_whitespace(rest, 0);
    if rest.get(open) != Some(&b'"') {
        return None;
    }
    let end = string_end(rest, open)?;
    let text = &rest[open + 1..end - 1];
    if text.contains(&b'\\') || !ends_member(rest, end) {
        return None;
    }
    std::str::from_utf8(text).ok()
}

/// Whether the member whose value ends at `end` of `rest` visibly ends there: a `,` or `}` follows.
fn ends_member(rest: &[u8], end: usize) -> bool {
    matches!(rest.get(skip_whitespace(rest, end)), Some(b',' | b'}'))
}

/// Where the value of the first top-level member `key` of the object that `head` begins starts
/// (just past its `:`); `None` when the member is not in `head`.
fn first_member_value(head: &[u8], key: &str) -> Option<usize> {
    let mut i = skip_whitespace(head, 0);
    if head.get(i) != Some(&b'{') {
        return None;
    }
    i += 1;
    let mut depth = 1usize;
    while let Some(&byte) = head.get(i) {
        match byte {
            b'"' => {
                let end = string_end(head, i)?;
                let after = skip_whitespace(head, end);
                if depth == 1 && head.get(after) == Some(&b':') {
                    if &head[i + 1..end - 1] == key.as_bytes() {
                        return Some(after + 1);
                    }
                    i = after + 1;
                } else {
                    i = end;
                }
                continue;
            }
            b'{' | b'[' => depth += 1,
            b'}' | b']' => {
                depth -= 1;
                if depth == 0 {
                    return None;
                }
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// The value of the last top-level member `key` of the object that `tail` ends, parsed as `T`.
/// `None` when the member is not within `tail`, or is not a `T`.
pub fn last_member<'a, T: Deserialize<'a>>(tail: &'a [u8], key: &str) -> Option<T> {
    serde_json::from_slice(last_member_raw(tail, key)?).ok()
}

/// The bytes of the last top-level member `key`'s value (between its `:` and the `,` or `}`
/// after it, whitespace included) in the object that `tail` ends, unparsed; `None` when the member
/// is not within `tail`.
pub fn last_member_raw<'a>(tail: &'a [u8], key: &str) -> Option<&'a [u8]> {
    let mut depth = 0usize;
    // At depth 1: where the member being passed over ends (its `,` or the object's `}`), and the
    // `:` seen since, which makes the next string to the left that member's key.
    let mut member_end = None;
    let mut colon = None;
    let mut i = tail.len();
    while i > 0 {
        i -= 1;
        match tail[i] {
            b'"' => {
                let start = string_start(tail, i)?;
                if depth == 1 {
                    if let (Some(colon), Some(end)) = (colon, member_end) {
                        if &tail[start + 1..i] == key.as_bytes() {
                            return Some(&tail[colon + 1..end]);
                        }
                    }
                    colon = None;
                }
                i = start;
            }
            b':' if depth == 1 => colon = Some(i),
            b',' if depth == 1 => {
                member_end = Some(i);
                colon = None;
            }
            b'}' | b']' => {
                depth += 1;
                if depth == 1 {
                    member_end = Some(i);
                }
            }
            b'{' | b'[' => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return None;
                }
            }
            _ => {}
        }
    }
    None
}

/// Where one top-level member of an object sits: its key's text (between the quotes) and its
/// value's bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberSpan {
    pub key: std::ops::Range<usize>,
    pub value: std::ops::Range<usize>,
}

/// Every top-level member of the object `json` holds, in order, found without parsing any value,
/// one at a time: each item is a member, or `None` (and then nothing more) where `json` turns out
/// not to be one whole object (bytes after its end other than whitespace, a member cut off, a key
/// that is not a string). Collected into an `Option<Vec<_>>`, it is the list or `None`.
pub fn members(json: &[u8]) -> Members<'_> {
    Members { json, at: None, done: false }
}

/// The iterator [`members`] returns.
pub struct Members<'a> {
    json: &'a [u8],
    /// Where the next key starts (after the object's `{` or a member's `,`); `None` before the
    /// object's opening brace was read.
    at: Option<usize>,
    done: bool,
}

impl Members<'_> {
    /// The next member, `Ok(None)` after the last one, `Err(())` when `json` is not one whole object.
    fn step(&mut self) -> Result<Option<MemberSpan>, ()> {
        let json = self.json;
        let mut i = match self.at {
            Some(at) => at,
            None => {
                let open = skip_whitespace(json, 0);
                if json.get(open) != Some(&b'{') {
                    return Err(());
                }
                let first = skip_whitespace(json, open + 1);
                if json.get(first) == Some(&b'}') {
                    return if skip_whitespace(json, first + 1) == json.len() { Ok(None) } else { Err(()) };
                }
                first
            }
        };
        if json.get(i) != Some(&b'"') {
            return Err(());
        }
        let key_end = string_end(json, i).ok_or(())?;
        let key = i + 1..key_end - 1;
        i = skip_whitespace(json, key_end);
        if json.get(i) != Some(&b':') {
            return Err(());
        }
        let start = skip_whitespace(json, i + 1);
        let end = value_end(json, start).ok_or(())?;
        i = skip_whitespace(json, end);
        match json.get(i) {
            Some(b',') => self.at = Some(skip_whitespace(json, i + 1)),
            Some(b'}') if skip_whitespace(json, i + 1) == json.len() => self.done = true,
            _ => return Err(()),
        }
        Ok(Some(MemberSpan { key, value: start..end }))
    }
}

impl Iterator for Members<'_> {
    type Item = Option<MemberSpan>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.step() {
            Ok(Some(member)) => Some(Some(member)),
            Ok(None) => {
                self.done = true;
                None
            }
            Err(()) => {
                self.done = true;
                Some(None)
            }
        }
    }
}

/// Just past the value that starts at `start`: a string, an object or array (nesting counted,
/// strings skipped), or a bare literal (number, `true`, `false`, `null`).
fn value_end(json: &[u8], start: usize) -> Option<usize> {
    match *json.get(start)? {
        b'"' => string_end(json, start),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut i = start;
            loop {
                match *json.get(i)? {
                    b'"' => {
                        i = string_end(json, i)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(i + 1);
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
        }
        _ => {
            let len = json[start..].iter().position(|b| matches!(b, b',' | b'}' | b']') || b.is_ascii_whitespace());
            let end = start + len.unwrap_or(json.len() - start);
            (end > start).then_some(end)
        }
    }
}

fn skip_whitespace(json: &[u8], mut i: usize) -> usize {
    while json.get(i).is_some_and(u8::is_ascii_whitespace) {
        i += 1;
    }
    i
}

/// Just past the closing quote of the string whose opening quote is at `open`; `None` when the
/// string does not end within `json`.
fn string_end(json: &[u8], open: usize) -> Option<usize> {
    let mut i = open + 1;
    loop {
        i += memchr::memchr2(b'"', b'\\', json.get(i..)?)?;
        match json[i] {
            b'\\' => i += 2,
            _ => return Some(i + 1),
        }
    }
}

/// The opening quote of the string whose closing quote is at `close`: the nearest quote before it
/// not escaped, i.e. preceded by an even number of backslashes. `None` when the string (or the
/// backslashes before a quote) reach back past the start of `json`, which leaves it undecided.
fn string_start(json: &[u8], close: usize) -> Option<usize> {
    let mut i = close;
    loop {
        i = memchr::memrchr(b'"', &json[..i])?;
        let backslashes = json[..i].iter().rev().take_while(|b| **b == b'\\').count();
        if backslashes == i {
            return None;
        }
        if backslashes % 2 == 0 {
            return Some(i);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn top_level_members(json: &[u8]) -> Option<Vec<MemberSpan>> {
        members(json).collect()
    }

    /// The end of a string, one byte at a time: what `string_end`'s search must agree with.
    fn plain_string_end(json: &[u8], open: usize) -> Option<usize> {
        let mut i = open + 1;
        while i < json.len() {
            match json[i] {
                b'\\' => i += 2,
                b'"' => return Some(i + 1),
                _ => i += 1,
            }
        }
        None
    }

    /// Letters of every length below 40, plain and with `mark` applied at each position in turn.
    fn texts(mark: impl Fn(&mut [u8], usize)) -> Vec<Vec<u8>> {
        let mut texts = Vec::new();
        for length in 0..40 {
            for escape_at in (0..length).map(Some).chain([None]) {
                let mut body: Vec<u8> = (0..length).map(|i| b'a' + (i % 26) as u8).collect();
                if let Some(at) = escape_at {
                    mark(&mut body, at);
                }
                texts.push(body);
            }
        }
        texts
    }

    #[test]
    fn string_ends_agree_with_a_byte_by_byte_scan() {
        let backslash_then_quote = |body: &mut [u8], at: usize| {
            body[at] = b'\\';
            if at + 1 < body.len() {
                body[at + 1] = b'"';
            }
        };
        for body in texts(backslash_then_quote) {
            let closed = [&b"\""[..], &body, b"\" , 1"].concat();
            let open = [&b"\""[..], &body].concat();
            for json in [closed, open] {
                assert_eq!(string_end(&json, 0), plain_string_end(&json, 0), "{}", String::from_utf8_lossy(&json));
            }
        }
    }

    /// The start of a string, one byte at a time: what `string_start`'s search must agree with.
    fn plain_string_start(json: &[u8], close: usize) -> Option<usize> {
        let mut i = close;
        while i > 0 {
            i -= 1;
            if json[i] == b'"' {
                let backslashes = json[..i].iter().rev().take_while(|b| **b == b'\\').count();
                if backslashes == i {
                    return None;
                }
                if backslashes % 2 == 0 {
                    return Some(i);
                }
            }
        }
        None
    }

    #[test]
    fn string_starts_agree_with_a_byte_by_byte_scan() {
        let quote_after_backslash = |body: &mut [u8], at: usize| {
            body[at] = b'"';
            if at > 0 {
                body[at - 1] = b'\\';
            }
        };
        for body in texts(quote_after_backslash) {
            let opened = [&b"1, \""[..], &body, b"\""].concat();
            let unopened = [&body[..], b"\""].concat();
            for json in [opened, unopened] {
                let close = json.len() - 1;
                let text = String::from_utf8_lossy(&json);
                assert_eq!(string_start(&json, close), plain_string_start(&json, close), "{text}");
            }
        }
    }

    #[test]
    fn a_plain_string_member_is_borrowed_and_an_escaped_one_is_left_to_serde() {
        let body = BODY.as_bytes();
        assert_eq!(first_member_plain_str(body, "model"), Some("m-1"));
        assert_eq!(first_member_plain_str(body, "id"), Some("x"));
        assert_eq!(first_member_plain_str(body, "usage"), None, "not a string");
        assert_eq!(first_member_plain_str(body, "content"), None, "not a top-level member");
        let escaped = br#"{"model":"m\u002d1"}"#;
        assert_eq!(first_member_plain_str(escaped, "model"), None);
        assert_eq!(first_member::<String>(escaped, "model").as_deref(), Some("m-1"));
        assert_eq!(
            first_member_plain_str(br#"{"model" : "a long model name, past the byte loop" }"#, "model"),
            Some("a long model name, past the byte loop")
        );
        assert_eq!(first_member_plain_str(br#"{"model":"m-1""#, "model"), None, "the member does not visibly end");
        assert_eq!(first_member_plain_str(br#"{"model":"m-"#, "model"), None, "the value is cut off");
    }

    const BODY: &str = r#"{"id":"x","model":"m-1","choices":[{"message":{"content":"a \"model\":\"no\" \\","usage":{"n":1}}}],"usage":{"prompt_tokens":3} }"#;

    #[test]
    fn finds_top_level_members_from_either_end() {
        let body = BODY.as_bytes();
        assert_eq!(first_member::<String>(body, "model").as_deref(), Some("m-1"));
        assert_eq!(last_member::<Value>(body, "usage"), Some(json!({"prompt_tokens": 3})));
        assert_eq!(last_member::<String>(body, "model").as_deref(), Some("m-1"));
        assert_eq!(first_member::<Value>(body, "usage"), Some(json!({"prompt_tokens": 3})));
        assert_eq!(first_member::<Value>(body, "n"), None);
        assert_eq!(last_member::<Value>(body, "n"), None);
    }

    #[test]
    fn windows_that_cut_the_body_still_find_what_they_hold() {
        let body = BODY.as_bytes();
        assert_eq!(first_member::<String>(&body[..25], "model").as_deref(), Some("m-1"));
        assert_eq!(first_member::<String>(&body[..20], "model"), None, "the value is cut off");
        let tail = &body[body.len() - 40..];
        assert_eq!(last_member::<Value>(tail, "usage"), Some(json!({"prompt_tokens": 3})));
        // A tail starting inside the message text: the escaped quotes are not taken for strings.
        let from_text = &body[BODY.find("no").unwrap()..];
        assert_eq!(last_member::<Value>(from_text, "usage"), Some(json!({"prompt_tokens": 3})));
        assert_eq!(last_member::<Value>(b"\\\\\"usage\":1}", "usage"), None, "undecidable escapes");
    }

    #[test]
    fn a_number_cut_by_the_end_of_the_head_is_not_read() {
        assert_eq!(first_member::<serde_json::Value>(b"{\"id\":-10", "id"), None);
        assert_eq!(first_member::<serde_json::Value>(b"{\"id\":-10}", "id"), Some(serde_json::json!(-10)));
        assert_eq!(first_member::<u64>(b"{\"n\": 12 ,", "n"), Some(12));
    }

    #[test]
    fn top_level_members_are_found_with_their_spans() {
        let body = BODY.as_bytes();
        let members = top_level_members(body).unwrap();
        let keys: Vec<&str> = members.iter().map(|m| std::str::from_utf8(&body[m.key.clone()]).unwrap()).collect();
        assert_eq!(keys, ["id", "model", "choices", "usage"]);
        assert_eq!(&body[members[1].value.clone()], br#""m-1""#);
        assert_eq!(&body[members[3].value.clone()], br#"{"prompt_tokens":3}"#);
        let literals = top_level_members(br#" { "a" : -1.5e3 , "b":true,"c":null,"d":[1,{"e":"]"}] } "#).unwrap();
        assert_eq!(literals.len(), 4);
        assert_eq!(top_level_members(b"{}"), Some(Vec::new()));
        for junk in
            [&b""[..], b"[]", b"{", b"{\"a\"}", b"{\"a\":}", b"{\"a\":1,}", b"{\"a\":1} x", b"{1:2}", b"{\"a\":\"b"]
        {
            assert_eq!(top_level_members(junk), None, "{}", String::from_utf8_lossy(junk));
        }
    }

    #[test]
    fn garbage_is_none_never_a_panic() {
        for junk in [&b""[..], b"{", b"}", b"\"", b"{\"a", b"]]]}", b"{\"model\":", b"\\\"}", b"[{\"usage\":1}]"] {
            assert_eq!(first_member::<Value>(junk, "usage"), None);
            assert_eq!(last_member::<Value>(junk, "usage"), None);
        }
    }
}
