//! A matched request the gateway refuses before its plugins run: a body too large or too slow.

use std::net::SocketAddr;
use std::sync::Arc;

use http::HeaderValue;
use switchyard_sdk::Ctx;

use super::body::ResponseBody;
use super::finish::Finisher;
use super::pipeline::{fail, Seen};
use crate::error::ProxyError;
use crate::snapshot::CompiledRoute;
use crate::state::Shared;

/// Answers `err` in the route's error style (OpenAI's on AI routes) and logs it like any request
/// of the route, its `log` plugins included.
pub fn refuse(
    shared: &Shared,
    route: Arc<CompiledRoute>,
    head: &http::request::Parts,
    client: SocketAddr,
    request_id: HeaderValue,
    seen: Seen,
    err: ProxyError,
) -> hyper::Response<ResponseBody> {
    let mut ctx = Ctx::new(Arc::clone(&route.id), client, request_id);
    ctx.error_style = route.chain.error_style();
    shared.observe.request_started(&mut ctx, head);
    let finisher = Finisher {
        route,
        method: head.method.clone(),
        uri: head.uri.clone(),
        request_id: ctx.request_id.clone(),
        observe: Arc::clone(&shared.observe),
        matched: seen.matched,
        request_bytes: seen.request_bytes,
        llm_active: std::sync::OnceLock::new(),
    };
    fail(&finisher, ctx, err)
}
