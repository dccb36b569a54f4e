//! The request side every AI plugin shares: the body size limit, the body parse, and the
//! client's protocol.

use http::StatusCode;
use switchyard_sdk::raw_body::{BodyError, RawBody};
use switchyard_sdk::respond::error_response;
use switchyard_sdk::{Ctx, ErrorStyle, Request, Response};

use crate::instance::CallSettings;
use crate::protocol::Protocol;

/// Checks the size limit and parses the body, recording what logging asked for. `style` is the
/// error style of the client's protocol. `Err` is the client's error response (413 or 400).
pub fn parse_body(
    ctx: &mut Ctx,
    req: &Request,
    settings: &CallSettings,
    style: ErrorStyle,
) -> Result<RawBody, Box<Response>> {
    if settings.max_request_bytes.is_some_and(|max| req.body.len() as u64 > max) {
        return Err(Box::new(error_response(
            StatusCode::PAYLOAD_TOO_LARGE,
            style,
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
        Box::new(error_response(StatusCode::BAD_REQUEST, style, &err.to_string(), code))
    })?;
    let logging = settings.logging;
    ctx.log.log_summaries = logging.summaries || logging.payloads;
    if logging.payloads {
        ctx.log.response_text = Some(String::new());
    }
    Ok(body)
}

/// Records the request's prompt for `logging.payloads` (`messages`, or `input` for the
/// protocols that call it so).
pub fn record_payload(ctx: &mut Ctx, body: &RawBody, protocol: Protocol) {
    if ctx.log.response_text.is_some() {
        ctx.log.request_payload = body.raw(protocol.payload_field()).map(str::to_string);
    }
}

/// The access phase of `ai-proxy` and `ai-proxy-multi` up to the provider choice: the body,
/// parsed once, and the client's protocol detected from the path and its top-level fields. The
/// request's error style becomes the protocol's (Anthropic's for `/v1/messages`). `Err`: the
/// client's 400 or 413, in its protocol's error shape.
pub fn parse_route_request(
    ctx: &mut Ctx,
    req: &Request,
    settings: &CallSettings,
) -> Result<(RawBody, Protocol), Box<Response>> {
    // The Messages path alone decides the error shape, so even an unparsable body gets it.
    if req.head.uri.path().ends_with("/v1/messages") {
        ctx.error_style = ErrorStyle::Anthropic;
    }
    let body = parse_body(ctx, req, settings, ctx.error_style)?;
    let Some(protocol) = Protocol::detect(req.head.uri.path(), &body) else {
        return Err(Box::new(error_response(
            StatusCode::BAD_REQUEST,
            ctx.error_style,
            "no matching AI protocol for the request",
            "unknown_protocol",
        )));
    };
    ctx.error_style = protocol.error_style();
    record_payload(ctx, &body, protocol);
    Ok((body, protocol))
}
