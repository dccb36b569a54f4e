//! Responses the gateway makes itself, in the two error styles it speaks.

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_TYPE};
use http::StatusCode;

use crate::{ErrorStyle, Response};

/// An error response: `{"error_msg"}` (APISIX) or `{"error":{"message","type","code"}}` (OpenAI,
/// whose `type` follows the status class).
pub fn error_response(status: StatusCode, style: ErrorStyle, message: &str, code: &str) -> Response {
    let body = match style {
        ErrorStyle::Apisix => serde_json::json!({ "error_msg": message }),
        ErrorStyle::OpenAi => {
            let kind = match status.as_u16() {
                401 => "authentication_error",
                403 => "permission_error",
                404 => "not_found_error",
                429 => "rate_limit_error",
                s if s >= 500 => "server_error",
                _ => "invalid_request_error",
            };
            serde_json::json!({ "error": { "message": message, "type": kind, "code": code } })
        }
    };
    json_response(status, &body)
}

/// A JSON response with `content-type: application/json`.
pub fn json_response(status: StatusCode, body: &serde_json::Value) -> Response {
    let mut response = Response::new(Bytes::from(body.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}
