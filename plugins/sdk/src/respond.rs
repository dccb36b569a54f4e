//! Responses the gateway makes itself, in the error styles it speaks.

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_TYPE};
use http::StatusCode;

use crate::{ErrorStyle, Response};

/// An error response: `{"error_msg"}` (APISIX), `{"error":{"message","type","code"}}` (OpenAI,
/// whose `type` follows the status class) or `{"type":"error","error":{"type","message"}}`
/// (Anthropic).
pub fn error_response(status: StatusCode, style: ErrorStyle, message: &str, code: &str) -> Response {
    json_response(status, &error_body(status, style, message, code))
}

/// The JSON body of an error in `style`.
pub fn error_body(status: StatusCode, style: ErrorStyle, message: &str, code: &str) -> serde_json::Value {
    match style {
        ErrorStyle::Apisix => serde_json::json!({ "error_msg": message }),
        ErrorStyle::OpenAi => {
            serde_json::json!({ "error": { "message": message, "type": openai_error_type(status), "code": code } })
        }
        ErrorStyle::Anthropic => {
            serde_json::json!({ "type": "error", "error": { "type": anthropic_error_type(status), "message": message } })
        }
    }
}

/// OpenAI's error `type` for a status.
pub fn openai_error_type(status: StatusCode) -> &'static str {
    match status.as_u16() {
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        429 => "rate_limit_error",
        s if s >= 500 => "server_error",
        _ => "invalid_request_error",
    }
}

/// Anthropic's error `type` for a status (its documented list).
pub fn anthropic_error_type(status: StatusCode) -> &'static str {
    match status.as_u16() {
        401 => "authentication_error",
        402 => "billing_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        529 => "overloaded_error",
        s if s >= 500 => "api_error",
        _ => "invalid_request_error",
    }
}

/// The SSE `error` event that ends a stream cut short, in `style`: SDKs of both vendors raise
/// it as an error instead of taking the answer for complete.
pub fn stream_error_event(style: ErrorStyle, message: &str, code: &str) -> Bytes {
    let data = match style {
        ErrorStyle::Anthropic => {
            serde_json::json!({"type": "error", "error": {"type": "api_error", "message": message}})
        }
        ErrorStyle::Apisix | ErrorStyle::OpenAi => {
            serde_json::json!({"error": {"message": message, "type": "server_error", "code": code}})
        }
    };
    Bytes::from(format!("event: error\ndata: {data}\n\n"))
}

/// A JSON response with `content-type: application/json`.
pub fn json_response(status: StatusCode, body: &serde_json::Value) -> Response {
    let mut response = Response::new(Bytes::from(body.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_style_has_its_vendor_shape() {
        let body = |style| error_body(StatusCode::TOO_MANY_REQUESTS, style, "slow down", "limited");
        assert_eq!(body(ErrorStyle::Apisix), serde_json::json!({"error_msg": "slow down"}));
        assert_eq!(
            body(ErrorStyle::OpenAi),
            serde_json::json!({"error": {"message": "slow down", "type": "rate_limit_error", "code": "limited"}})
        );
        assert_eq!(
            body(ErrorStyle::Anthropic),
            serde_json::json!({"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}})
        );
        let event = stream_error_event(ErrorStyle::Anthropic, "cut", "x");
        assert!(event.starts_with(b"event: error\ndata: {\"type\":\"error\""));
    }
}
