//! The per-request side of `ai-proxy-multi`: which instance each attempt goes to, what each
//! answer means, and who takes up a broken stream.

use std::sync::Arc;
use std::time::Duration;

use http::header::RETRY_AFTER;
use serde_json::{json, Value};
use switchyard_llm::protocol::attempt::{prepare_response, Prepared};
use switchyard_llm::protocol::{convert_request, Conversion, Protocol};
use switchyard_sdk::raw_body::RawBody;
use switchyard_sdk::{
    AttemptResult, AttemptTiming, Ctx, GiveUp, Next, Request, ResumeMode, Resumption, Target, UpstreamRequest, Verdict,
};
use tokio::time::Instant;

use super::engine::Engine;
use super::errors;
use crate::health::{self, TransportFailure};

/// The pause before a same-instance retry: 100 ms, give or take half, so that requests that
/// failed together do not all come back together.
fn retry_pause() -> Duration {
    Duration::from_millis(50 + rand::random::<u64>() % 101)
}

/// One request's attempts: the instances it tried, and what the next attempt is to be.
pub struct MultiTarget {
    shared: Arc<Engine>,
    /// The client's body, converted once for every protocol its members are sent.
    prepared: Prepared,
    key: Option<String>,
    tried: Vec<usize>,
    /// The instance of the attempt in flight.
    current: Option<usize>,
    started: Instant,
    /// `judge` wants the next attempt on the same instance, after this pause.
    again: Option<Duration>,
    /// Same-instance retries spent on the current instance.
    same_retries: u32,
    /// `Retry-After` time waited out in this request.
    waited: Duration,
    /// Attempts moved to another instance: what `max_retries` caps.
    fallbacks: u32,
    /// Set once a stream broke: how the latest attempt at taking it up was made.
    resumed_with: Option<ResumeMode>,
    /// The instance that refused a prefill: the next attempt restarts on it without one.
    restart_on: Option<usize>,
}

impl MultiTarget {
    /// `prepared` holds the body for every member that can take the client's protocol; the
    /// others are never picked.
    pub(crate) fn new(shared: Arc<Engine>, prepared: Prepared, key: Option<String>) -> MultiTarget {
        MultiTarget {
            shared,
            prepared,
            key,
            tried: Vec::new(),
            current: None,
            started: Instant::now(),
            again: None,
            same_retries: 0,
            waited: Duration::ZERO,
            fallbacks: 0,
            resumed_with: None,
            restart_on: None,
        }
    }

    /// Picks an untried, available instance that can take the client's protocol and marks it
    /// tried. After a cooldown the pick is the instance's one trial; an instance whose trial
    /// another request holds is passed over.
    fn pick(&mut self, now: Instant) -> Option<usize> {
        let shared = &*self.shared;
        let client = self.prepared.client;
        // An instance whose provider no conversion reaches is never picked for this request.
        let reachable = |i: usize| shared.members[i].instance.plan(client).is_some();
        let mut passed_over = Vec::new();
        loop {
            let usable = |i: usize| {
                !self.tried.contains(&i)
                    && !passed_over.contains(&i)
                    && shared.members[i].health.available(now)
                    && reachable(i)
            };
            let picked = shared.selector.pick(usable, self.key.as_deref()).or_else(|| {
                // Everything untried is resting: `in_order_when_all_down` tries it regardless.
                let untried = |i: usize| !self.tried.contains(&i) && reachable(i);
                shared.in_order_when_all_down.then(|| shared.selector.pick(untried, self.key.as_deref())).flatten()
            });
            let index = picked?;
            let member = &shared.members[index];
            let timeout = member.timeout.unwrap_or(shared.settings.timeout);
            let hold = timeout + member.first_token.unwrap_or_default();
            if member.health.claim(now, hold) || shared.in_order_when_all_down {
                self.tried.push(index);
                self.same_retries = 0;
                return Some(index);
            }
            passed_over.push(index);
        }
    }

    /// The attempt on instance `index`: the one place a request body is built for an instance,
    /// and the answer's reading and rewrite set up for it. `prefilled`: the client's body with a
    /// prefill (in the client's protocol), when a resumption carries one. `None` when the body
    /// cannot be made for the instance or no URL can be: nothing is left to try.
    fn attempt_on(
        &mut self,
        ctx: &mut Ctx,
        req: &Request,
        index: usize,
        prefilled: Option<&RawBody>,
        wait: Duration,
    ) -> Option<UpstreamRequest> {
        self.current = Some(index);
        let shared = &*self.shared;
        let member = &shared.members[index];
        let instance = &member.instance;
        let plan = instance.plan(self.prepared.client)?;
        ctx.log.provider = Some(instance.endpoint.provider.name);
        ctx.log.model = instance.model().map(str::to_string).or_else(|| self.prepared.original().str_field("model"));
        ctx.log.model_labels = shared.models.labels(self.prepared.original(), instance.model_label());
        let converted;
        let body = match prefilled {
            None => self.prepared.body_for(&plan),
            Some(prefilled) if plan.conversion == Conversion::Native => prefilled,
            Some(prefilled) => {
                converted = convert_request(plan.conversion, prefilled).ok()?;
                &converted
            }
        };
        let body = instance.body_for(body, plan.target);
        let mut upstream = instance.request_with(req, &plan, body, &shared.settings, &member.strip)?;
        if let Some(timeout) = member.timeout {
            upstream.timeout = timeout;
        }
        upstream.timing =
            AttemptTiming { wait_before: wait, first_event: member.first_token, stream_idle: member.stream_idle };
        let (before, after) = member.setup.as_ref().map(|setup| setup.prepare(ctx)).unwrap_or_default();
        prepare_response(ctx, &plan, self.prepared.include_usage(&plan), before, after);
        Some(upstream)
    }

    /// Nothing is pickable: tell the client when the first cooling instance comes back.
    fn advise_retry_after(&self, ctx: &mut Ctx, now: Instant) {
        let back = self.shared.members.iter().filter_map(|m| m.health.back_at()).filter(|at| *at > now).min();
        if let Some(back) = back {
            let seconds = (back - now).as_secs_f64().ceil().max(1.0) as u64;
            ctx.response_headers.insert(RETRY_AFTER, seconds.into());
        }
    }

    /// Whether the request can wait `wait` for the same instance: the route is willing to, the
    /// wait fits what is left of that willingness, and it ends before the request's deadline.
    fn may_wait(&self, wait: Duration) -> bool {
        let shared = &*self.shared;
        let after_wait = self.started.elapsed() + wait;
        !shared.retry_after_max_wait.is_zero()
            && self.waited + wait <= shared.retry_after_max_wait
            && shared.settings.max_duration.is_none_or(|deadline| after_wait < deadline)
            && shared.retry_window.is_none_or(|window| after_wait <= window)
    }

    /// Spends a same-instance retry, if any is left: the next attempt goes to the same instance.
    fn retry_here(&mut self) -> bool {
        if self.same_retries >= self.shared.same_instance_retries {
            return false;
        }
        self.same_retries += 1;
        self.again = Some(retry_pause());
        true
    }
}

/// An attempt, or the end of the request when none could be built.
fn attempt_or_exhausted(upstream: Option<UpstreamRequest>) -> Next {
    match upstream {
        Some(upstream) => Next::Attempt(upstream),
        None => Next::Exhausted(GiveUp::LastAsBadGateway),
    }
}

fn verdict(retry: bool) -> Verdict {
    if retry {
        Verdict::Retry
    } else {
        Verdict::Accept
    }
}

/// The client's request with the delivered text as a final assistant message; `None` when the
/// body has no `messages` to add it to.
fn with_prefill(body: &RawBody, delivered: &str) -> Option<RawBody> {
    let mut messages: Vec<Value> = body.get("messages")?;
    messages.push(json!({"role": "assistant", "content": delivered}));
    let mut edit = body.edit();
    edit.set("messages", Value::Array(messages));
    RawBody::parse(edit.into_bytes()).ok()
}

impl Target for MultiTarget {
    fn next(&mut self, ctx: &mut Ctx, req: &Request, attempt: u32) -> Next {
        let shared = &*self.shared;
        if attempt > 1 && shared.retry_window.is_some_and(|window| self.started.elapsed() > window) {
            return Next::Exhausted(GiveUp::LastAsIs);
        }
        if let (Some(wait), Some(index)) = (self.again.take(), self.current) {
            return attempt_or_exhausted(self.attempt_on(ctx, req, index, None, wait));
        }
        if attempt > 1 {
            self.fallbacks += 1;
            if shared.max_retries.is_some_and(|max| self.fallbacks > max) {
                return Next::Exhausted(GiveUp::LastAsIs);
            }
        }
        let now = Instant::now();
        let Some(index) = self.pick(now) else {
            if attempt == 1 {
                self.advise_retry_after(ctx, now);
            }
            return Next::Exhausted(GiveUp::LastAsBadGateway);
        };
        attempt_or_exhausted(self.attempt_on(ctx, req, index, None, Duration::ZERO))
    }

    fn judge(&mut self, _ctx: &mut Ctx, result: &AttemptResult<'_>) -> Verdict {
        let Some(index) = self.current else { return Verdict::Accept };
        let now = Instant::now();
        if let AttemptResult::Response { status, headers, .. } = result {
            self.shared.members[index].health.record_status(status.as_u16(), headers, now);
            if status.as_u16() < 400 {
                return Verdict::Accept;
            }
        }
        // A failure: its handling may need `&mut self` while reading the shared config.
        let shared = Arc::clone(&self.shared);
        let health = &shared.members[index].health;
        let strategy = shared.strategy;
        match result {
            AttemptResult::Response { status, headers, body } => {
                let code = status.as_u16();
                let codes = body.map(errors::error_codes).unwrap_or_default();
                if errors::is_safety_refusal(&codes) {
                    return Verdict::Accept;
                }
                if self.resumed_with == Some(ResumeMode::Continue) && status.is_client_error() && code != 429 {
                    // The instance refused the prefill: it restarts without one.
                    self.restart_on = Some(index);
                    return Verdict::Retry;
                }
                if code == 429 {
                    if let Some(wait) = health::retry_after(headers).filter(|wait| self.may_wait(*wait)) {
                        self.waited += wait;
                        self.again = Some(wait);
                        return Verdict::Retry;
                    }
                }
                if status.is_server_error() && self.retry_here() {
                    return Verdict::Retry;
                }
                verdict(
                    shared.fallback_statuses.contains(&code)
                        || (code == 429 && strategy.on_429)
                        || (status.is_server_error() && strategy.on_5xx)
                        || codes.iter().any(|c| shared.fallback_codes.contains(c)),
                )
            }
            AttemptResult::ConnectFailed | AttemptResult::Failed => {
                let failure = match result {
                    AttemptResult::ConnectFailed => TransportFailure::Connect,
                    _ => TransportFailure::Other,
                };
                health.record_transport(failure, now);
                verdict(self.retry_here() || strategy.on_transport)
            }
            AttemptResult::TimedOut => {
                health.record_transport(TransportFailure::Timeout, now);
                verdict(strategy.on_transport)
            }
            AttemptResult::FirstEventTimedOut => {
                // Asked for explicitly: the next instance is tried whatever the strategy says.
                health.record_transport(TransportFailure::Timeout, now);
                Verdict::Retry
            }
            // Only skipped when the fallback strategy lets a spent rate limit move on (the rate
            // limiter asks `RateLimitFallback` first): say nothing of the instance's health.
            AttemptResult::Skipped => Verdict::Retry,
        }
    }

    fn reads_error_bodies(&self) -> bool {
        true
    }

    /// Only an OpenAI chat stream is taken up: the relay splices chat chunks.
    fn resumable(&self) -> bool {
        self.shared.stream_resume && self.prepared.client == Protocol::OpenAiChat
    }

    fn stream_broke(&mut self, _ctx: &mut Ctx, stalled: bool) {
        if let Some(index) = self.current {
            let failure = if stalled { TransportFailure::Timeout } else { TransportFailure::Other };
            self.shared.members[index].health.record_transport(failure, Instant::now());
        }
    }

    fn resume(&mut self, ctx: &mut Ctx, req: &Request, _attempt: u32, delivered: &str) -> Resumption {
        let (index, mode, wait) = if let Some(index) = self.restart_on.take() {
            (index, ResumeMode::Restart, Duration::ZERO)
        } else if let (Some(wait), Some(index), Some(mode)) = (self.again.take(), self.current, self.resumed_with) {
            (index, mode, wait)
        } else {
            let Some(index) = self.pick(Instant::now()) else { return Resumption::Exhausted };
            let continues = !delivered.is_empty() && self.shared.members[index].accepts_prefill;
            (index, if continues { ResumeMode::Continue } else { ResumeMode::Restart }, Duration::ZERO)
        };
        let prefilled = match mode {
            ResumeMode::Continue => with_prefill(self.prepared.original(), delivered),
            ResumeMode::Restart => None,
        };
        let mode = if prefilled.is_some() { mode } else { ResumeMode::Restart };
        self.resumed_with = Some(mode);
        match self.attempt_on(ctx, req, index, prefilled.as_ref(), wait) {
            Some(upstream) => Resumption::Attempt(upstream, mode),
            None => Resumption::Exhausted,
        }
    }
}
