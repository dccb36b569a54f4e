//! The request side every AI plugin shares: the body size limit and the chat body parse.

use http::StatusCode;
use switchyard_sdk::raw_body::{BodyError, RawBody};
use switchyard_sdk::respond::error_response;
use switchyard_sdk::{Ctx, ErrorStyle, Request, Response};

use crate::instance::CallSettings;

/// Checks the size limit and parses the chat body, recording what logging asked for. `Err` is the
/// client's error response (413 or 400, OpenAI shape).
pub fn parse_chat_body(ctx: &mut Ctx, req: &Request, settings: &CallSettings) -> Result<RawBody, Box<Response>> {
    if settings.max_request_bytes.is_some_and(|max| req.body.len() as u64 > max) {
        return Err(Box::new(error_response(
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorStyle::OpenAi,
            "request body exceeds max_req_body_size",
            "request_too_large",
        )));
    }
    // The core may have parsed it already, to match a route on a body field.
    let matched = req.head.extensions.get::<RawBody>().filter(|parsed| parsed.original() == &req.body);
    let body = matched.cloned().map_or_else(|| RawBody::parse(req.body.clone()), Ok).map_err(|err| {
        let code = match err {
            BodyError::Empty => "empty_body",
            BodyError::Invalid(_) => "invalid_json",
        };
        Box::new(error_response(StatusCode::BAD_REQUEST, ErrorStyle::OpenAi, &err.to_string(), code))
    })?;
    let logging = settings.logging;
    ctx.log.log_summaries = logging.summaries || logging.payloads;
    if logging.payloads {
        ctx.log.request_payload = body.raw("messages").map(|m| m.get().to_string());
        ctx.log.response_text = Some(String::new());
    }
    Ok(body)
}
