//! The phase order of one request, as APISIX runs it: the global rules' rewrite → their access →
//! the route's rewrite → (its consumer's plugins merged in) → the route's access →
//! (before_proxy → send → judge)* → header_filter → body_filter → log, the global rules' plugins
//! first in each later phase. A request phase that answers skips the later request phases; `log`
//! always runs.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::header::{HeaderName, CONTENT_LENGTH};
use http::{HeaderMap, HeaderValue, StatusCode};
use switchyard_sdk::{
    AttemptResult, Chain, Consumers, Ctx, Flow, GiveUp, Next, Outcome, Phases, Request, Response, Verdict,
};

use super::attempt::{self, Answer, Read, Step, Stopped, Watch};
use super::body::{RelayBody, RelayLimits, ResponseBody};
use super::finish::{ConsumerChain, Finisher};
use super::request_id;
use super::resume::{Resumer, UpstreamBody};
use crate::compiled::CompiledRoute;
use crate::error::ProxyError;
use crate::observe::metrics::route::Matched;
use crate::state::ProxyState;
use crate::transport::send::read_all;
use futures_util::StreamExt;

/// The largest failed-attempt body kept to relay if every attempt fails.
const MAX_FAILURE_BODY: u64 = 1 << 20;

/// The largest answer read whole when buffering (the default) and the route sets no
/// `max_response_bytes`: a bigger one is refused with a 502 rather than held in memory. Relayed
/// (unbuffered and event-stream) answers have no such default: they never sit whole in memory.
pub const DEFAULT_MAX_BUFFERED_RESPONSE: u64 = 64 << 20;

const HOP_BY_HOP_FIELDS: usize = 7;

/// Response headers never relayed: hop-by-hop, and the framing hyper sets itself.
const HOP_BY_HOP: [HeaderName; HOP_BY_HOP_FIELDS] = [
    http::header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    http::header::TRANSFER_ENCODING,
    http::header::TRAILER,
    http::header::UPGRADE,
    HeaderName::from_static("proxy-connection"),
    http::header::TE,
];

/// A failed attempt kept in case nothing better comes.
enum Failure {
    Response {
        status: StatusCode,
        headers: HeaderMap,
        body: Bytes,
    },
    Transport(ProxyError),
    /// A plugin skipped the attempt unsent (`Flow::Skip`), with the answer to give if none follows.
    Skipped(Response),
}

/// What the handler learnt about a request before its chain runs, for metrics.
pub struct Seen {
    pub matched: Matched,
    pub request_bytes: u64,
}

/// Serves a matched request through its route's chain and upstream.
#[expect(
    clippy::manual_async_fn,
    reason = "an async block keeps its captures in place: see \"Futures on the request path\" in the crate docs"
)]
pub fn run(
    state: &ProxyState,
    route: Arc<CompiledRoute>,
    req: Request,
    client: SocketAddr,
    request_id: HeaderValue,
    seen: Seen,
    consumers: Arc<dyn Consumers>,
) -> impl Future<Output = hyper::Response<ResponseBody>> + '_ {
    async move {
        let mut ctx = Ctx::new(Arc::clone(&route.id), client, request_id);
        ctx.error_style = route.error_style();
        ctx.consumers = Some(consumers);
        state.observe.request_started(&mut ctx, &req.head);
        let finisher = Finisher {
            route,
            method: req.head.method.clone(),
            uri: req.head.uri.clone(),
            request_id: ctx.request_id.clone(),
            observe: Arc::clone(&state.observe),
            matched: seen.matched,
            request_bytes: seen.request_bytes,
            llm_active: std::sync::OnceLock::new(),
        };
        // hyper drops this future when the client goes away before the response head; the guard then
        // logs the request (the drop also cancels any upstream call in flight).
        let mut abandoned = finisher.abandon_guard(ctx.started);
        let response = serve(&finisher, req, ctx).await;
        abandoned.disarm();
        response
    }
}

#[expect(
    clippy::manual_async_fn,
    reason = "an async block keeps its captures in place: see \"Futures on the request path\" in the crate docs"
)]
fn serve(
    finisher: &Finisher,
    mut req: Request,
    mut ctx: Ctx,
) -> impl Future<Output = hyper::Response<ResponseBody>> + '_ {
    async move {
        let route = &*finisher.route;
        let stopped = async {
            let global = &route.global;
            request_phase(global, Phases::REWRITE, &mut ctx, &mut req).await?;
            request_phase(global, Phases::ACCESS, &mut ctx, &mut req).await?;
            request_phase(&route.chain, Phases::REWRITE, &mut ctx, &mut req).await?;
            adopt_consumer_plugins(route, &mut ctx, &mut req).await?;
            request_phase(&finisher.chain(&ctx).own, Phases::ACCESS, &mut ctx, &mut req).await
        }
        .await;
        match stopped {
            Ok(()) => {}
            Err(Ok(response)) => return respond_local(finisher, ctx, response),
            Err(Err(err)) => return fail(finisher, ctx, err),
        }
        let target = ctx.target.take().or_else(|| route.upstream.as_ref().map(|u| u.target()));
        let Some(mut target) = target else {
            let error = if route.unmatched { ProxyError::RouteNotFound } else { ProxyError::NoUpstream };
            return fail(finisher, ctx, error);
        };
        let mut last_failure: Option<Failure> = None;
        let error_bodies = target.reads_error_bodies();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut upstream = match target.next(&mut ctx, &req, attempt) {
                Next::Attempt(upstream) => upstream,
                Next::Exhausted(give_up) => {
                    return match last_failure {
                        None => fail(finisher, ctx, ProxyError::NoUpstream),
                        Some(Failure::Transport(err)) => fail(finisher, ctx, err),
                        Some(Failure::Skipped(response)) => respond_local(finisher, ctx, response),
                        Some(Failure::Response { status, headers, body }) => {
                            let status =
                                if give_up == GiveUp::LastAsBadGateway { StatusCode::BAD_GATEWAY } else { status };
                            respond_buffered(finisher, ctx, status, headers, body)
                        }
                    };
                }
            };
            match attempt::before_proxy(&finisher.chain(&ctx), &mut ctx, &mut upstream).await {
                Ok(()) => {}
                Err(Stopped::Respond(response)) => return respond_local(finisher, ctx, response),
                Err(Stopped::Failed(err)) => return fail(finisher, ctx, err),
                Err(Stopped::Skip(response)) => match target.judge(&mut ctx, &AttemptResult::Skipped) {
                    Verdict::Accept => return respond_local(finisher, ctx, response),
                    Verdict::Retry => {
                        last_failure = Some(Failure::Skipped(response));
                        continue;
                    }
                },
            }
            let limits = RelayLimits {
                stall: upstream.timing.stream_idle.unwrap_or(upstream.timeout),
                max_duration: upstream.max_duration,
                max_bytes: upstream.max_response_bytes,
                flush_interval: upstream.flush_interval,
            };
            let watch = Watch { observe: &finisher.observe, route };
            match attempt::attempt(upstream, target.as_mut(), &mut ctx, attempt, error_bodies, watch).await {
                Step::Accepted(answer) => {
                    let resume = if target.resumable() { Some(Resumer::new(target, req, attempt)) } else { None };
                    return respond_upstream(finisher, ctx, answer, limits, resume).await;
                }
                Step::Failed(err) => return fail(finisher, ctx, err),
                Step::Retry(Ok(Answer { mut response, read })) => {
                    let status = response.status();
                    let headers = std::mem::take(response.headers_mut());
                    let body = match read {
                        Read::Whole(body) => body,
                        Read::Started(_) => Bytes::new(),
                        Read::Nothing => {
                            let read_at = Instant::now();
                            let body = read_all(response, limits.stall, MAX_FAILURE_BODY).await.unwrap_or_default();
                            ctx.log.upstream_time += read_at.elapsed();
                            body
                        }
                    };
                    last_failure = Some(Failure::Response { status, headers, body });
                }
                Step::Retry(Err(err)) => last_failure = Some(Failure::Transport(err)),
            }
        }
    }
}

/// Why the request phases stopped early: the answer a plugin made, or its failure.
type Stop = Result<Response, ProxyError>;

/// Runs `phase` (rewrite or access) of every plugin of `chain` that implements it, in order,
/// until one answers or fails.
async fn request_phase(chain: &Chain, phase: Phases, ctx: &mut Ctx, req: &mut Request) -> Result<(), Stop> {
    for entry in chain.with_phase(phase) {
        let flow = if phase == Phases::REWRITE {
            entry.plugin.rewrite(ctx, req).await
        } else {
            entry.plugin.access(ctx, req).await
        };
        match flow {
            Ok(Flow::Continue) => {}
            Ok(Flow::Respond(response) | Flow::Skip(response)) => return Err(Ok(response)),
            Err(source) => return Err(Err(ProxyError::PluginFailed { plugin: entry.name, source })),
        }
    }
    Ok(())
}

/// Runs after the route's rewrite phase, once a plugin (the route's or a global rule's) may have
/// identified a consumer with plugins of its own: the route's chain becomes its own with the
/// consumer's merged over it (consumer wins per plugin; the global rules' stay apart), and the
/// consumer's plugins run their rewrite phase, which the route's chain did not have them run.
/// `Err` carries the answer when one of them answers or fails.
async fn adopt_consumer_plugins(route: &CompiledRoute, ctx: &mut Ctx, req: &mut Request) -> Result<(), Stop> {
    let Some(consumer) = ctx.consumer.clone().filter(|c| !c.chain.is_empty()) else { return Ok(()) };
    ctx.extensions.insert(ConsumerChain(route.chain.merged_with(&consumer.chain)));
    request_phase(&consumer.chain, Phases::REWRITE, ctx, req).await
}

/// Relays an accepted upstream response: buffered whole, or streamed (always for event streams,
/// and for a body the core already started reading). `resume`: the target may take up a broken
/// event stream.
#[expect(
    clippy::manual_async_fn,
    reason = "an async block keeps its captures in place: see \"Futures on the request path\" in the crate docs"
)]
fn respond_upstream(
    finisher: &Finisher,
    mut ctx: Ctx,
    answer: Answer,
    limits: RelayLimits,
    resume: Option<Resumer>,
) -> impl Future<Output = hyper::Response<ResponseBody>> + '_ {
    async move {
        let Answer { mut response, read } = answer;
        let status = response.status();
        let event_stream = attempt::is_event_stream(response.headers());
        // A stream in another framing (AWS's binary event stream) is relayed as it arrives too.
        let streamed = event_stream || attempt::is_binary_event_stream(response.headers());
        let headers = std::mem::take(response.headers_mut());
        ctx.log.streamed = Some(streamed);
        finisher.observe.response_started(finisher, &ctx.log);
        let started = match read {
            Read::Nothing => Vec::new(),
            Read::Whole(body) => return respond_buffered(finisher, ctx, status, headers, body),
            Read::Started(chunks) => chunks,
        };
        if !streamed && ctx.buffer_response && started.is_empty() {
            let max = limits.max_bytes.unwrap_or(DEFAULT_MAX_BUFFERED_RESPONSE);
            let read_at = Instant::now();
            let read = read_all(response, limits.stall, max).await;
            ctx.log.upstream_time += read_at.elapsed();
            return match read {
                Ok(body) => {
                    ctx.log.time_to_first_token.get_or_insert(ctx.started.elapsed());
                    respond_buffered(finisher, ctx, status, headers, body)
                }
                Err(err) => fail(finisher, ctx, err),
            };
        }
        let mut head = response_head(status, headers, &mut ctx, true);
        run_header_filters(finisher, &mut ctx, &mut head);
        let rest = response.into_body();
        let stream: UpstreamBody = if started.is_empty() {
            Box::pin(rest)
        } else {
            Box::pin(futures_util::stream::iter(started.into_iter().map(Ok)).chain(rest))
        };
        let converted_to_events = !event_stream && attempt::is_event_stream(&head.headers);
        let mut relay = RelayBody::new(stream, event_stream, ctx, finisher.clone(), status.as_u16(), limits);
        if converted_to_events {
            relay.tells_cuts_as_events();
        }
        if let Some(resume) = resume.filter(|_| event_stream && status.is_success()) {
            relay.resume_with(resume);
        }
        hyper::Response::from_parts(head, ResponseBody::Relay(Box::new(relay)))
    }
}

/// Sends a whole upstream body through the filters (as one piece, end of stream).
fn respond_buffered(
    finisher: &Finisher,
    mut ctx: Ctx,
    status: StatusCode,
    headers: HeaderMap,
    mut body: Bytes,
) -> hyper::Response<ResponseBody> {
    let mut head = response_head(status, headers, &mut ctx, false);
    run_header_filters(finisher, &mut ctx, &mut head);
    for entry in finisher.chain(&ctx).with_phase(Phases::BODY_FILTER) {
        entry.plugin.body_filter(&mut ctx, &mut body, true);
    }
    head.headers.insert(CONTENT_LENGTH, body.len().into());
    let outcome = Outcome { status: status.as_u16(), body_bytes: body.len() as u64, ..Outcome::default() };
    finisher.finish(&ctx, &outcome);
    hyper::Response::from_parts(head, ResponseBody::full(body))
}

/// The head relayed to the client: the upstream's headers less hop-by-hop ones (taken over,
/// not copied), plus the headers plugins added to the context.
fn response_head(status: StatusCode, mut headers: HeaderMap, ctx: &mut Ctx, streamed: bool) -> http::response::Parts {
    drop_hop_by_hop(&mut headers);
    if streamed {
        headers.remove(CONTENT_LENGTH);
    }
    // Room for the plugins' fields and the request id, unless the map has it already (an
    // answer's map is parsed with room for them: `transport::head`).
    headers.reserve(ctx.response_headers.len() + 2);
    std::mem::take(&mut ctx.response_headers).apply_to(&mut headers);
    request_id::stamp(&mut headers, &ctx.request_id);
    let (mut head, ()) = hyper::Response::new(()).into_parts();
    head.status = status;
    head.headers = headers;
    head
}

/// Removes the hop-by-hop fields from an upstream's headers, those its `Connection` names
/// included. An answer usually has one of them (`Connection`) or none: finding which are there,
/// by comparing names, costs less than hashing all seven for removals.
fn drop_hop_by_hop(headers: &mut HeaderMap) {
    let mut present = [false; HOP_BY_HOP_FIELDS];
    let mut names_fields = false;
    for (name, value) in headers.iter() {
        if let Some(i) = HOP_BY_HOP.iter().position(|hop| hop == name) {
            present[i] = true;
            // `HOP_BY_HOP[0]` is `Connection`.
            names_fields |= i == 0 && !is_connection_option(value.as_bytes());
        }
    }
    if names_fields {
        drop_named_by_connection(headers);
    }
    for (name, _) in HOP_BY_HOP.iter().zip(present).filter(|(_, present)| *present) {
        headers.remove(name);
    }
}

/// Removes the fields an answer's `Connection` names (RFC 9110 §7.6.1): they were meant for the
/// gateway's connection only. Runs only when a `Connection` value is more than `keep-alive` or
/// `close`.
fn drop_named_by_connection(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(http::header::CONNECTION)
        .iter()
        .flat_map(|value| value.as_bytes().split(|byte| *byte == b','))
        .map(<[u8]>::trim_ascii)
        .filter(|token| !token.is_empty() && !is_connection_option(token))
        .filter_map(|token| HeaderName::from_bytes(token).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
}

/// Whether a `Connection` token (or a whole value) is one that names no field: `keep-alive` or
/// `close`, what answers carry as a rule.
fn is_connection_option(token: &[u8]) -> bool {
    token.eq_ignore_ascii_case(b"keep-alive") || token.eq_ignore_ascii_case(b"close")
}

fn run_header_filters(finisher: &Finisher, ctx: &mut Ctx, head: &mut http::response::Parts) {
    for entry in finisher.chain(ctx).with_phase(Phases::HEADER_FILTER) {
        entry.plugin.header_filter(ctx, head);
    }
}

/// Answers with a response a plugin made.
fn respond_local(finisher: &Finisher, ctx: Ctx, mut response: Response) -> hyper::Response<ResponseBody> {
    let outcome =
        Outcome { status: response.status().as_u16(), body_bytes: response.body().len() as u64, ..Outcome::default() };
    request_id::stamp(response.headers_mut(), &ctx.request_id);
    finisher.finish(&ctx, &outcome);
    response.map(ResponseBody::full)
}

/// Answers with a gateway error in the route's error style.
pub(super) fn fail(finisher: &Finisher, mut ctx: Ctx, err: ProxyError) -> hyper::Response<ResponseBody> {
    if err.status() == StatusCode::INTERNAL_SERVER_ERROR {
        tracing::error!(route = %ctx.route_id, error = %err.detail(), "request failed inside the gateway");
    }
    let mut response = err.to_response(ctx.error_style);
    std::mem::take(&mut ctx.response_headers).apply_to(response.headers_mut());
    request_id::stamp(response.headers_mut(), &ctx.request_id);
    let outcome = Outcome {
        status: response.status().as_u16(),
        body_bytes: response.body().len() as u64,
        reason: Some(err.reason()),
        error: Some(err.detail()),
        aborted: false,
    };
    finisher.finish(&ctx, &outcome);
    response.map(ResponseBody::full)
}
