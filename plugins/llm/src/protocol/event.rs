//! One server-sent event as the converters see it: its `event:` name and its parsed `data:`.

use bytes::Bytes;
use serde_json::Value;
use switchyard_sdk::sse::event_data;

/// The payload of an event.
#[derive(Debug, Clone, PartialEq)]
pub enum Data {
    Json(Value),
    /// OpenAI's `data: [DONE]`.
    Done,
    /// Anything else (comments, keep-alives, data that is not JSON): relayed as it came.
    Other(Bytes),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// The `event:` line: Anthropic and Responses streams name every event; OpenAI chat none.
    pub name: Option<String>,
    pub data: Data,
}

impl Event {
    /// An unnamed JSON event (an OpenAI chat chunk).
    pub fn unnamed(data: Value) -> Event {
        Event { name: None, data: Data::Json(data) }
    }

    /// A JSON event named after its `type` (Anthropic Messages and OpenAI Responses streams).
    pub fn typed(data: Value) -> Event {
        let name = data.get("type").and_then(Value::as_str).map(str::to_string);
        Event { name, data: Data::Json(data) }
    }

    pub fn done() -> Event {
        Event { name: None, data: Data::Done }
    }

    /// The `event:` name of one complete event, if it has one.
    pub fn name_of(raw: &[u8]) -> Option<String> {
        raw.split(|b| *b == b'\n')
            .find_map(|line| line.strip_prefix(b"event:"))
            .map(|name| String::from_utf8_lossy(name).trim().to_string())
    }

    /// Reads one complete event as the relay hands it over (its blank line included).
    pub fn parse(raw: &Bytes) -> Event {
        let name = Event::name_of(raw);
        let data = match event_data(raw) {
            Some(data) if &*data == b"[DONE]" => Data::Done,
            Some(data) => match serde_json::from_slice(&data) {
                Ok(json) => Data::Json(json),
                Err(_) => Data::Other(raw.clone()),
            },
            None => Data::Other(raw.clone()),
        };
        Event { name, data }
    }

    /// The JSON payload, when there is one.
    pub fn json(&self) -> Option<&Value> {
        match &self.data {
            Data::Json(json) => Some(json),
            _ => None,
        }
    }

    /// Appends the event in SSE framing: `event: <name>` (when named), `data: <json>`, a blank line.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match &self.data {
            Data::Other(raw) => out.extend_from_slice(raw),
            Data::Done => out.extend_from_slice(b"data: [DONE]\n\n"),
            Data::Json(json) => {
                if let Some(name) = &self.name {
                    out.extend_from_slice(b"event: ");
                    out.extend_from_slice(name.as_bytes());
                    out.push(b'\n');
                }
                out.extend_from_slice(b"data: ");
                // Writing JSON into a Vec cannot fail.
                let _ = serde_json::to_writer(&mut *out, json);
                out.extend_from_slice(b"\n\n");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn events_parse_and_encode_back() {
        let raw = Bytes::from_static(b"event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n");
        let event = Event::parse(&raw);
        assert_eq!(event, Event::typed(json!({"type": "message_stop"})));
        let mut out = Vec::new();
        event.encode(&mut out);
        assert_eq!(out, raw);
        assert_eq!(Event::parse(&Bytes::from_static(b"data: [DONE]\n\n")), Event::done());
        let comment = Bytes::from_static(b": keep-alive\n\n");
        assert_eq!(Event::parse(&comment).data, Data::Other(comment.clone()));
        let mut out = Vec::new();
        Event::unnamed(json!({"a": 1})).encode(&mut out);
        assert_eq!(out, b"data: {\"a\":1}\n\n");
    }
}
