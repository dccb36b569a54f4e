//! A request's body in every protocol its providers may be sent (converted once, in the access
//! phase), and each attempt's setup: its upstream request and what the response side must do.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;
use switchyard_sdk::raw_body::RawBody;
use switchyard_sdk::{Ctx, Request, UpstreamRequest};

use super::rewrite::{ResponseRewrite, Stage};
use super::usage::UpstreamWire;
use super::{convert_request, Conversion, ConvertError, Plan, Protocol};
use crate::instance::{CallSettings, Instance};
use crate::observe;

/// The client's body, and its conversions for the providers that need one.
pub struct Prepared {
    pub client: Protocol,
    original: RawBody,
    converted: Vec<(Conversion, RawBody)>,
}

impl Prepared {
    /// Converts `body` for each plan that needs it (once per distinct conversion). `Err`: the
    /// request cannot be converted (the client's 400).
    pub fn new(client: Protocol, body: RawBody, plans: impl IntoIterator<Item = Plan>) -> Result<Self, ConvertError> {
        let mut converted: Vec<(Conversion, RawBody)> = Vec::new();
        for plan in plans {
            if plan.conversion != Conversion::Native && !converted.iter().any(|(c, _)| *c == plan.conversion) {
                converted.push((plan.conversion, convert_request(plan.conversion, &body)?));
            }
        }
        Ok(Self { client, original: body, converted })
    }

    /// The client's own body.
    pub fn original(&self) -> &RawBody {
        &self.original
    }

    /// The body in the protocol `plan` sends.
    pub fn body_for(&self, plan: &Plan) -> &RawBody {
        match plan.conversion {
            Conversion::Native => &self.original,
            conversion => self.converted.iter().find(|(c, _)| *c == conversion).map_or(&self.original, |(_, b)| b),
        }
    }

    /// One attempt at `instance`: records in `ctx` how its answer is read and rewritten (an
    /// earlier attempt at another provider may have left other settings), and builds its
    /// request. `None` when the instance cannot serve this protocol or no URL can be made.
    pub fn attempt(
        &self,
        ctx: &mut Ctx,
        req: &Request,
        instance: &Instance,
        settings: &CallSettings,
    ) -> Option<UpstreamRequest> {
        let plan = instance.plan(self.client)?;
        let upstream = instance.upstream_request(req, self.body_for(&plan), &plan, settings)?;
        prepare_response(ctx, &plan, self.include_usage(&plan), Vec::new(), Vec::new());
        Some(upstream)
    }

    /// Whether a chat client asked for a usage chunk (only read when its answer is converted).
    pub fn include_usage(&self, plan: &Plan) -> bool {
        plan.conversion.makes_chat_answer()
            && self.original.get::<Value>("stream_options").is_some_and(|o| o["include_usage"] == Value::Bool(true))
    }
}

/// Sets `ctx` up for the answer of a call made as `plan` says: which protocol usage is read
/// from, and the response rewrite (`before` the conversion stages, `after` them). A native
/// chat call with nothing to rewrite inserts nothing. Runs before each attempt, also one taking
/// up a broken stream (whose head is not seen again).
pub fn prepare_response(ctx: &mut Ctx, plan: &Plan, include_usage: bool, before: Vec<Stage>, after: Vec<Stage>) {
    observe::attempt_begins(ctx);
    match plan.target {
        Protocol::OpenAiChat | Protocol::OpenAiEmbeddings | Protocol::Passthrough => {
            ctx.extensions.remove::<UpstreamWire>();
        }
        target => {
            ctx.extensions.insert(UpstreamWire(target));
        }
    }
    let mut stages = before;
    stages.extend(ResponseRewrite::stages_for(plan, include_usage));
    stages.extend(after);
    for stage in &mut stages {
        if let Stage::PredictToEmbeddings(stage) = stage {
            // The embeddings list names the model asked for: `:predict` answers do not.
            stage.model = ctx.log.model.clone();
        }
    }
    if stages.is_empty() {
        ctx.extensions.remove::<ResponseRewrite>();
    } else {
        let mut rewrite = ResponseRewrite::new(stages);
        rewrite.name_model(ctx.log.model.as_deref());
        if observe::relaying_event_stream(ctx) {
            // Taking up a broken stream: its head, and what it said, went out already.
            rewrite.continues_event_stream();
        }
        ctx.extensions.insert(rewrite);
    }
}

/// Seconds since the Unix epoch (0 if the clock is before it).
pub fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::super::rewrite;
    use super::*;
    use bytes::Bytes;

    #[test]
    fn an_attempt_taking_up_a_stream_converts_its_events_though_its_head_is_not_seen() {
        let mut ctx = Ctx::new("r".into(), ([127, 0, 0, 1], 1).into(), http::HeaderValue::from_static("id"));
        let response = http::Response::builder().header("content-type", "text/event-stream").body(()).unwrap();
        let mut head = response.into_parts().0;
        // The first attempt: a chat stream from a chat provider, its head relayed to the client.
        let native = Plan::new(Protocol::OpenAiChat, &[Protocol::OpenAiChat]).unwrap();
        prepare_response(&mut ctx, &native, false, Vec::new(), vec![Stage::Alias("a".into())]);
        rewrite::on_head(&mut ctx, &mut head);
        // It broke; the attempt taking it up goes to a Messages provider.
        let converted = Plan::new(Protocol::OpenAiChat, &[Protocol::AnthropicMessages]).unwrap();
        prepare_response(&mut ctx, &converted, false, Vec::new(), vec![Stage::Alias("a".into())]);
        let mut event = Bytes::from_static(
            b"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\
              \"delta\":{\"type\":\"text_delta\",\"text\":\"Hi\"}}\n\n",
        );
        rewrite::on_body(&mut ctx, &mut event, false);
        let chunk = std::str::from_utf8(&event).unwrap();
        assert!(chunk.starts_with("data: {") && chunk.contains("\"content\":\"Hi\""), "{chunk}");
        assert!(chunk.contains("\"model\":\"a\""), "{chunk}");
    }
}
