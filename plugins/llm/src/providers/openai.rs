//! The OpenAI chat-completions wire family: what the gateway reads from and adds to it.

use serde::Deserialize;
use serde_json::Value;

use switchyard_sdk::raw_body::BodyEdit;
use switchyard_sdk::Usage;

/// Asks a streaming upstream to send usage in its last chunk (`stream_options.include_usage`),
/// leaving the body untouched when the client already asked.
pub fn request_usage_in_stream(edit: &mut BodyEdit<'_>) {
    let mut options = match edit.current("stream_options") {
        Some(Value::Object(options)) => options,
        _ => serde_json::Map::new(),
    };
    if options.get("include_usage") == Some(&Value::Bool(true)) {
        return;
    }
    options.insert("include_usage".into(), Value::Bool(true));
    edit.set("stream_options", Value::Object(options));
}

/// A `usage` object as OpenAI sends it; [`UsageWire::usage`] reads it.
#[derive(Debug, Default, Deserialize)]
pub struct UsageWire {
    #[serde(default)]
    pub(crate) prompt_tokens: u64,
    #[serde(default)]
    pub(crate) completion_tokens: u64,
    #[serde(default)]
    pub(crate) total_tokens: Option<u64>,
    #[serde(default)]
    pub(crate) prompt_tokens_details: Option<CachedWire>,
    #[serde(default)]
    pub(crate) completion_tokens_details: Option<ReasoningWire>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct CachedWire {
    #[serde(default)]
    pub(crate) cached_tokens: Option<u64>,
    /// Set by OpenAI-compatible fronts of Anthropic models.
    #[serde(default)]
    pub(crate) cache_creation_input_tokens: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct ReasoningWire {
    #[serde(default)]
    pub(crate) reasoning_tokens: Option<u64>,
}

impl UsageWire {
    /// The token counts, the total computed when the provider left it out.
    pub fn usage(&self) -> Usage {
        Usage {
            prompt_tokens: self.prompt_tokens,
            completion_tokens: self.completion_tokens,
            total_tokens: self.total_tokens.unwrap_or(self.prompt_tokens.saturating_add(self.completion_tokens)),
            cached_tokens: self.prompt_tokens_details.as_ref().and_then(|d| d.cached_tokens).unwrap_or(0),
            cache_creation_tokens: self
                .prompt_tokens_details
                .as_ref()
                .and_then(|d| d.cache_creation_input_tokens)
                .unwrap_or(0),
            reasoning_tokens: self.completion_tokens_details.as_ref().and_then(|d| d.reasoning_tokens).unwrap_or(0),
        }
    }
}

/// The `usage` object of a completion or of a stream chunk; `None` when absent or null.
pub fn usage(response: &Value) -> Option<Usage> {
    let usage = response.get("usage").filter(|u| u.is_object())?;
    let number = |v: Option<&Value>| v.and_then(Value::as_u64).unwrap_or(0);
    let prompt = number(usage.get("prompt_tokens"));
    let completion = number(usage.get("completion_tokens"));
    Some(Usage {
        prompt_tokens: prompt,
        completion_tokens: completion,
        total_tokens: usage.get("total_tokens").and_then(Value::as_u64).unwrap_or(prompt.saturating_add(completion)),
        cached_tokens: number(usage.pointer("/prompt_tokens_details/cached_tokens")),
        cache_creation_tokens: number(usage.pointer("/prompt_tokens_details/cache_creation_input_tokens")),
        reasoning_tokens: number(usage.pointer("/completion_tokens_details/reasoning_tokens")),
    })
}

/// The assistant text of a completion (`choices[].message.content`) or of a stream chunk
/// (`choices[].delta.content`), appended to `out`.
pub fn append_text(response: &Value, out: &mut String) {
    for choice in response.get("choices").and_then(Value::as_array).into_iter().flatten() {
        let text =
            choice.pointer("/message/content").or_else(|| choice.pointer("/delta/content")).and_then(Value::as_str);
        if let Some(text) = text {
            out.push_str(text);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use serde_json::json;

    use crate::json_scan::last_member;

    #[test]
    fn reads_every_usage_field() {
        let response = json!({"usage": {"prompt_tokens": 10, "completion_tokens": 48, "total_tokens": 58,
            "prompt_tokens_details": {"cached_tokens": 4}, "completion_tokens_details": {"reasoning_tokens": 7}}});
        assert_eq!(
            usage(&response),
            Some(Usage {
                prompt_tokens: 10,
                completion_tokens: 48,
                total_tokens: 58,
                cached_tokens: 4,
                cache_creation_tokens: 0,
                reasoning_tokens: 7
            })
        );
        assert_eq!(usage(&json!({"usage": null})), None);
        let bytes = response.to_string();
        let wire = |json: &[u8]| last_member::<Option<UsageWire>>(json, "usage").flatten().map(|u| u.usage());
        assert_eq!(wire(bytes.as_bytes()), usage(&response));
        assert_eq!(wire(b"{\"usage\":null,\"model\":\"m\"}"), None);
    }

    #[test]
    fn include_usage_is_added_once() {
        let body = switchyard_sdk::raw_body::RawBody::parse(Bytes::from_static(b"{\"stream\":true}")).unwrap();
        let mut edit = body.edit();
        request_usage_in_stream(&mut edit);
        assert_eq!(
            edit.into_bytes(),
            Bytes::from_static(b"{\"stream\":true,\"stream_options\":{\"include_usage\":true}}")
        );
        let body = switchyard_sdk::raw_body::RawBody::parse(Bytes::from_static(
            b"{\"stream_options\":{\"include_usage\":true}}",
        ))
        .unwrap();
        let mut edit = body.edit();
        request_usage_in_stream(&mut edit);
        assert!(edit.is_unchanged());
    }
}
