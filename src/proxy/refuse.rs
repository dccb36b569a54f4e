//! A matched request the gateway refuses before its plugins run: a body too large or too slow.

use std::net::SocketAddr;
use std::sync::Arc;

use http::HeaderValue;
use switchyard_sdk::Ctx;

use super::body::ResponseBody;
use super::finish::Finisher;
use super::pipeline::{fail, Seen};
use crate::compiled::CompiledRoute;
use crate::error::ProxyError;
use crate::state::ProxyState;

/// Answers `err` in the route's error style (OpenAI's on AI routes) and logs it like any request
/// of the route, its `log` plugins included.
pub fn refuse(
    state: &ProxyState,
    route: Arc<CompiledRoute>,
    head: &http::request::Parts,
    client: SocketAddr,
    request_id: HeaderValue,
    seen: Seen,
    err: ProxyError,
) -> hyper::Response<ResponseBody> {
    let mut ctx = Ctx::new(Arc::clone(&route.id), client, request_id);
    ctx.error_style = route.error_style();
    state.observe.request_started(&mut ctx, head);
    let finisher = Finisher {
        route,
        method: head.method.clone(),
        uri: head.uri.clone(),
        request_id: ctx.request_id.clone(),
        observe: Arc::clone(&state.observe),
        matched: seen.matched,
        request_bytes: seen.request_bytes,
        llm_active: std::sync::OnceLock::new(),
    };
    fail(&finisher, ctx, err)
}
