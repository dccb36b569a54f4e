//! A matched request the gateway refuses before its plugins run: a body too large or too slow.

use std::net::SocketAddr;
use std::sync::Arc;

use http::HeaderValue;
use switchyard_sdk::Ctx;

use super::body::ResponseBody;
use super::finish::Finisher;
use super::pipeline::fail;
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
    err: ProxyError,
) -> hyper::Response<ResponseBody> {
    let mut ctx = Ctx::new(Arc::clone(&route.id), client, request_id);
    ctx.error_style = route.chain.error_style();
    let finisher = Finisher {
        route,
        method: head.method.clone(),
        uri: head.uri.clone(),
        request_id: ctx.request_id.clone(),
        access_log: state.access_log,
    };
    fail(&finisher, ctx, err)
}
