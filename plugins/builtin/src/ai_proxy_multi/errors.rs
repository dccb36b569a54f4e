//! What a provider's error body says, for `fallback_error_codes` and for safety refusals: the
//! codes of OpenAI-shaped bodies (`{"error": {"code", "type"}}`, Azure's `innererror.code`
//! included) and Anthropic's (`{"type": "error", "error": {"type"}}`).

use serde_json::Value;

/// Codes of a refusal on safety grounds. Such an answer is returned as it is, after exactly one
/// attempt: routing around a safety refusal is wrong.
const SAFETY_CODES: [&str; 4] =
    ["content_policy_violation", "content_filter", "ResponsibleAIPolicyViolation", "content_policy_violation_error"];

/// The codes an error body carries (empty when it is not a JSON error). A context-length
/// refusal is also reported as `context_length_exceeded` whatever the provider calls it
/// (Anthropic: `invalid_request_error`, "prompt is too long").
pub fn error_codes(body: &[u8]) -> Vec<String> {
    let Ok(body) = serde_json::from_slice::<Value>(body) else { return Vec::new() };
    let Some(error) = body.get("error") else { return Vec::new() };
    let mut codes = Vec::new();
    for field in ["/code", "/type", "/innererror/code"] {
        if let Some(code) = error.pointer(field).and_then(Value::as_str) {
            codes.push(code.to_string());
        }
    }
    let message = error.get("message").and_then(Value::as_str).unwrap_or("").to_ascii_lowercase();
    let too_long = ["prompt is too long", "maximum context length", "context length exceeded", "context window"];
    if !codes.iter().any(|c| c == "context_length_exceeded") && too_long.iter().any(|m| message.contains(m)) {
        codes.push("context_length_exceeded".into());
    }
    codes
}

/// Whether an error names a refusal on safety grounds.
pub fn is_safety_refusal(codes: &[String]) -> bool {
    codes.iter().any(|code| SAFETY_CODES.contains(&code.as_str()))
}

/// Whether `code` names a safety refusal (configs may not fall back on one).
pub fn is_safety_code(code: &str) -> bool {
    SAFETY_CODES.contains(&code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_openai_azure_and_anthropic_errors() {
        let openai = br#"{"error":{"message":"This model's maximum context length is 8192 tokens.","type":"invalid_request_error","param":"messages","code":"context_length_exceeded"}}"#;
        assert_eq!(error_codes(openai), ["context_length_exceeded", "invalid_request_error"]);
        let azure = br#"{"error":{"code":"content_filter","message":"filtered","innererror":{"code":"ResponsibleAIPolicyViolation"}}}"#;
        assert!(is_safety_refusal(&error_codes(azure)));
        let anthropic = br#"{"type":"error","error":{"type":"invalid_request_error","message":"prompt is too long: 208310 tokens > 200000 maximum"}}"#;
        assert_eq!(error_codes(anthropic), ["invalid_request_error", "context_length_exceeded"]);
        assert!(error_codes(b"upstream says no").is_empty());
        assert!(error_codes(br#"{"error":{"code":429}}"#).is_empty(), "numeric codes are statuses, not codes");
    }
}
