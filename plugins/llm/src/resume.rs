//! Taking up an OpenAI chat stream that broke mid-answer: what the client was sent ([`Sent`]),
//! and how the events of the attempt that takes it up are joined onto it ([`Splice`]). Pure: the
//! core owns the IO and hands both the chunks it sends the client (whole SSE events).
//!
//! Token counts of a broken attempt never arrive (usage comes last), so they are estimated: one
//! completion token per chunk that carried text (what providers stream), and the prompt of the
//! attempt that finished, less the prefill it carried.

use std::borrow::Cow;

use bytes::{Bytes, BytesMut};
use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_json::Value;
use switchyard_sdk::sse::event_data;
use switchyard_sdk::{ResumeMode, Usage};

use crate::providers::openai;

/// Beyond this much delivered text a broken stream is not taken up: the text is held in memory
/// and would go back upstream as the prefill.
pub const MAX_DELIVERED: usize = 1 << 20;

/// What the client was sent of a chat stream, as far as taking it up needs.
#[derive(Debug)]
pub struct Sent {
    /// The assistant text, in order.
    text: String,
    /// The first chunk's `id`, which spliced chunks carry too.
    id: Option<String>,
    /// Chunks that carried text: the completion tokens delivered, estimated.
    tokens: u64,
    /// One per attempt that sent the client something; the last is the current one.
    segments: Vec<Segment>,
    /// Something a continuation cannot extend was sent: a tool call, reasoning, refusal, a second
    /// choice, or more text than [`MAX_DELIVERED`].
    unresumable: bool,
    /// An event that is not an OpenAI chat chunk: this stream is not understood here.
    foreign: bool,
    /// A `finish_reason` or `[DONE]` was sent: the answer is whole.
    complete: bool,
}

#[derive(Debug, Clone, Copy, Default)]
struct Segment {
    /// Tokens of delivered text this attempt carried as its prefill.
    prefill: u64,
    /// Text chunks this attempt delivered.
    tokens: u64,
}

impl Default for Sent {
    fn default() -> Self {
        Sent {
            text: String::new(),
            id: None,
            tokens: 0,
            segments: vec![Segment::default()],
            unresumable: false,
            foreign: false,
            complete: false,
        }
    }
}

#[derive(Deserialize)]
struct ChunkView<'a> {
    #[serde(borrow, default)]
    id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    choices: Option<Vec<ChoiceView<'a>>>,
    #[serde(default)]
    usage: Option<IgnoredAny>,
}

#[derive(Deserialize)]
struct ChoiceView<'a> {
    #[serde(default)]
    index: u64,
    #[serde(borrow, default)]
    delta: Option<DeltaView<'a>>,
    #[serde(borrow, default)]
    finish_reason: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct DeltaView<'a> {
    #[serde(borrow, default)]
    content: Option<Cow<'a, str>>,
    #[serde(default)]
    tool_calls: Option<IgnoredAny>,
    #[serde(default)]
    function_call: Option<IgnoredAny>,
    #[serde(borrow, default)]
    reasoning_content: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    reasoning: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    refusal: Option<Cow<'a, str>>,
}

impl DeltaView<'_> {
    /// Whether this delta sends something a text prefill cannot carry on.
    fn beyond_text(&self) -> bool {
        let said = |field: &Option<Cow<'_, str>>| field.as_deref().is_some_and(|s| !s.is_empty());
        self.tool_calls.is_some()
            || self.function_call.is_some()
            || said(&self.reasoning_content)
            || said(&self.reasoning)
            || said(&self.refusal)
    }
}

impl Sent {
    /// Reads one chunk sent to the client. Data that is not JSON is relayed and ignored here.
    pub fn observe(&mut self, chunk: &[u8]) {
        for event in split_events(chunk) {
            let Some(data) = event_data(event) else { continue };
            if &*data == b"[DONE]" {
                self.complete = true;
                continue;
            }
            let Ok(view) = serde_json::from_slice::<ChunkView<'_>>(&data) else { continue };
            let Some(choices) = view.choices else {
                // A usage-only chunk is ours to read; anything else speaks another protocol.
                self.foreign |= view.usage.is_none();
                continue;
            };
            if self.id.is_none() {
                self.id = view.id.map(Cow::into_owned);
            }
            for choice in choices {
                self.unresumable |= choice.index != 0;
                self.complete |= choice.finish_reason.is_some();
                let Some(delta) = choice.delta else { continue };
                self.unresumable |= delta.beyond_text();
                if let Some(text) = delta.content.filter(|t| !t.is_empty()) {
                    if self.text.len() + text.len() > MAX_DELIVERED {
                        self.unresumable = true;
                    } else {
                        self.text.push_str(&text);
                    }
                    self.tokens += 1;
                    if let Some(current) = self.segments.last_mut() {
                        current.tokens += 1;
                    }
                }
            }
        }
    }

    /// Whether another attempt may take the stream up if it breaks now.
    pub fn resumable(&self) -> bool {
        !self.foreign && !self.unresumable && !self.complete
    }

    /// Whether a stream that ended now, cleanly on the wire, ended before its answer did.
    pub fn cut_short(&self) -> bool {
        !self.foreign && !self.complete
    }

    /// The assistant text the client has.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Called when an attempt takes the stream up: the splice its events go through.
    pub fn take_up(&mut self, mode: ResumeMode) -> Splice {
        let prefill = match mode {
            ResumeMode::Continue => self.tokens,
            ResumeMode::Restart => 0,
        };
        let splice = Splice {
            repeat: match mode {
                ResumeMode::Continue => String::new(),
                ResumeMode::Restart => self.text.clone(),
            },
            id: self.id.clone(),
            broken: self.segments.clone(),
            prefill,
            started: false,
        };
        self.segments.push(Segment { prefill, tokens: 0 });
        splice
    }
}

/// The new answer parted from the text the client has: it cannot be joined on.
#[derive(Debug, PartialEq, Eq)]
pub struct Parted;

/// One chunk after splicing.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Spliced {
    /// What to send instead (empty: nothing).
    pub chunk: Bytes,
    /// The whole exchange's usage, when the chunk reported usage.
    pub usage: Option<Usage>,
}

/// Joins the events of an attempt that took a broken stream up onto what the client has: drops
/// its opening role chunk, drops (restart) the text the client already has, gives its chunks the
/// first stream's `id`, and reports the usage of every attempt in its usage chunk.
#[derive(Debug)]
pub struct Splice {
    /// Restart: the delivered text the new answer has yet to repeat before it says anything new.
    repeat: String,
    id: Option<String>,
    /// The attempts before, whose usage never arrived.
    broken: Vec<Segment>,
    /// Tokens of the prefill this attempt carried.
    prefill: u64,
    /// The first chunk worth sending has been sent.
    started: bool,
}

impl Splice {
    /// Rewrites one chunk (whole events) of the new attempt, as the client is to get it.
    pub fn rewrite(&mut self, chunk: &[u8]) -> Result<Spliced, Parted> {
        let mut out = BytesMut::new();
        let mut usage = None;
        for event in split_events(chunk) {
            let parsed = event_data(event)
                .filter(|data| &**data != b"[DONE]")
                .and_then(|data| serde_json::from_slice::<Value>(&data).ok())
                .filter(Value::is_object);
            let Some(mut chunk) = parsed else {
                out.extend_from_slice(event);
                continue;
            };
            if !self.keep(&mut chunk)? {
                continue;
            }
            if let (Some(id), Some(slot)) = (&self.id, chunk.get_mut("id")) {
                *slot = Value::String(id.clone());
            }
            if let Some(reported) = openai::usage(&chunk) {
                let whole = self.whole(reported);
                let slot = &mut chunk["usage"];
                slot["prompt_tokens"] = whole.prompt_tokens.into();
                slot["completion_tokens"] = whole.completion_tokens.into();
                slot["total_tokens"] = whole.total_tokens.into();
                usage = Some(whole);
            }
            out.extend_from_slice(format!("data: {chunk}\n\n").as_bytes());
        }
        Ok(Spliced { chunk: out.freeze(), usage })
    }

    /// Whether a chunk goes to the client; trims (restart) the text the client already has.
    fn keep(&mut self, chunk: &mut Value) -> Result<bool, Parted> {
        let Some(choice) = chunk.pointer_mut("/choices/0") else { return Ok(true) };
        let text = choice.pointer("/delta/content").and_then(Value::as_str).unwrap_or("");
        let finished = choice.get("finish_reason").is_some_and(|f| !f.is_null());
        let beyond = choice.get("delta").and_then(|d| DeltaView::deserialize(d).ok()).is_some_and(|d| d.beyond_text());
        if !self.repeat.is_empty() {
            if finished || beyond {
                return Err(Parted);
            }
            if self.repeat.starts_with(text) {
                self.repeat.drain(..text.len());
                return Ok(false);
            }
            let Some(new) = text.strip_prefix(self.repeat.as_str()) else { return Err(Parted) };
            let new = new.to_string();
            self.repeat.clear();
            choice["delta"]["content"] = Value::String(new);
            self.started = true;
            return Ok(true);
        }
        if !self.started && text.is_empty() && !finished && !beyond {
            // The new answer's opening role chunk: the client had one already.
            return Ok(false);
        }
        self.started = true;
        Ok(true)
    }

    /// The usage of the whole exchange, given the usage this attempt reported.
    fn whole(&self, this: Usage) -> Usage {
        let prompt = this.prompt_tokens.saturating_sub(self.prefill);
        let mut whole = this;
        for broken in &self.broken {
            let (p, c) = (prompt.saturating_add(broken.prefill), broken.tokens);
            whole.prompt_tokens = whole.prompt_tokens.saturating_add(p);
            whole.completion_tokens = whole.completion_tokens.saturating_add(c);
            whole.total_tokens = whole.total_tokens.saturating_add(p.saturating_add(c));
        }
        whole
    }
}

/// The whole events in a chunk, each with its blank line.
fn split_events(chunk: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = chunk;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let end = (0..rest.len())
            .find_map(|i| match &rest[i..] {
                [b'\n', b'\n', ..] | [b'\r', b'\r', ..] => Some(i + 2),
                [b'\n', b'\r', b'\n', ..] => Some(i + 3),
                _ => None,
            })
            .unwrap_or(rest.len());
        let (event, after) = rest.split_at(end);
        rest = after;
        Some(event)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text_chunk(id: &str, text: &str) -> String {
        format!("data: {{\"id\":\"{id}\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":{text:?}}},\"finish_reason\":null}}]}}\n\n")
    }

    fn role_chunk(id: &str) -> String {
        format!("data: {{\"id\":\"{id}\",\"choices\":[{{\"index\":0,\"delta\":{{\"role\":\"assistant\",\"content\":\"\"}}}}]}}\n\n")
    }

    fn sent(chunks: &[String]) -> Sent {
        let mut sent = Sent::default();
        for chunk in chunks {
            sent.observe(chunk.as_bytes());
        }
        sent
    }

    fn contents(chunk: &[u8]) -> String {
        let mut out = String::new();
        for event in split_events(chunk) {
            if let Some(value) = event_data(event).and_then(|d| serde_json::from_slice::<Value>(&d).ok()) {
                out.push_str(value.pointer("/choices/0/delta/content").and_then(Value::as_str).unwrap_or(""));
            }
        }
        out
    }

    #[test]
    fn tracks_text_completeness_and_what_cannot_be_continued() {
        let mut s = sent(&[role_chunk("a"), text_chunk("a", "Hello"), text_chunk("a", " world")]);
        assert_eq!((s.text(), s.resumable(), s.cut_short()), ("Hello world", true, true));
        s.observe(b"data: {not json\n\n");
        assert!(s.resumable(), "a broken event is relayed and ignored");
        s.observe(b"data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n");
        assert!(!s.resumable() && !s.cut_short(), "a finished answer is whole");

        let tool = "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"{\\\"a\"}}]}}]}\n\n";
        let s = sent(&[role_chunk("b"), tool.to_string()]);
        assert!(!s.resumable() && s.cut_short(), "never inside a tool call's arguments");

        let s = sent(&["data: {\"type\":\"message_start\"}\n\n".to_string()]);
        assert!(!s.resumable() && !s.cut_short(), "another protocol is not ours to judge");

        let s = sent(&[format!("{}{}data: [DONE]\n\n", role_chunk("c"), text_chunk("c", "x"))]);
        assert!(!s.resumable(), "several events in one chunk are all read");
    }

    #[test]
    fn a_continuation_loses_its_role_chunk_and_takes_the_first_id() {
        let mut s = sent(&[role_chunk("first"), text_chunk("first", "one "), text_chunk("first", "two ")]);
        let mut splice = s.take_up(ResumeMode::Continue);
        assert_eq!(splice.rewrite(role_chunk("second").as_bytes()), Ok(Spliced::default()));
        let out = splice.rewrite(text_chunk("second", "three").as_bytes()).unwrap();
        assert_eq!(contents(&out.chunk), "three");
        assert!(String::from_utf8_lossy(&out.chunk).contains("\"id\":\"first\""));
        s.observe(&out.chunk);
        assert_eq!(s.text(), "one two three");
    }

    #[test]
    fn a_restart_relays_only_what_follows_the_delivered_text() {
        let mut s = sent(&[role_chunk("a"), text_chunk("a", "The cat "), text_chunk("a", "sat")]);
        let mut splice = s.take_up(ResumeMode::Restart);
        let mut relayed = String::new();
        for piece in ["The ", "cat s", "at on", " the mat"] {
            relayed.push_str(&contents(&splice.rewrite(text_chunk("b", piece).as_bytes()).unwrap().chunk));
        }
        assert_eq!(relayed, " on the mat");

        let mut s = sent(&[role_chunk("a"), text_chunk("a", "The cat")]);
        let mut splice = s.take_up(ResumeMode::Restart);
        assert_eq!(splice.rewrite(text_chunk("b", "A dog").as_bytes()), Err(Parted));
        let mut splice = s.take_up(ResumeMode::Restart);
        let stop = "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n";
        assert_eq!(splice.rewrite(text_chunk("b", "The").as_bytes()).map(|s| s.chunk.is_empty()), Ok(true));
        assert_eq!(splice.rewrite(stop.as_bytes()), Err(Parted), "a shorter answer cannot finish ours");
    }

    #[test]
    fn the_usage_chunk_reports_every_attempt() {
        // 40 tokens delivered on a prompt of 10, then cut; the continuation's prompt holds them.
        let mut chunks = vec![role_chunk("a")];
        chunks.extend((0..40).map(|i| text_chunk("a", &format!("w{i} "))));
        let mut s = sent(&chunks);
        let mut splice = s.take_up(ResumeMode::Continue);
        let usage = "data: {\"id\":\"b\",\"choices\":[],\"usage\":{\"prompt_tokens\":50,\"completion_tokens\":20,\"total_tokens\":70}}\n\n";
        let out = splice.rewrite(usage.as_bytes()).unwrap();
        let whole = out.usage.unwrap();
        assert_eq!((whole.prompt_tokens, whole.completion_tokens, whole.total_tokens), (60, 60, 120));
        let sent_usage: Value = serde_json::from_slice(&event_data(&out.chunk).unwrap()).unwrap();
        assert_eq!(sent_usage["usage"]["total_tokens"], 120);
        assert_eq!(sent_usage["id"], "a");
    }
}
