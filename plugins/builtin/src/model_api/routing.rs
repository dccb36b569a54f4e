//! Routing models (AISIX `routing`): an alias whose requests go to other aliases, its targets,
//! with failover. A routing alias compiles to the engine `ai-proxy-multi` runs, so a request to
//! it fails over, waits out `Retry-After`, holds a stream's head for its first event and takes up
//! a broken stream exactly as a route would; its targets' cooldowns are their health.

use std::sync::Arc;
use std::time::Duration;
use switchyard_llm::labels::KnownModels;

use serde::{Deserialize, Serialize};
use switchyard_llm::instance::CallSettings;
use switchyard_llm::protocol::rewrite::Stage;
use switchyard_sdk::{ConfigError, Ctx};

use super::catalog::{model_quota, Model};
use super::quota::{Quota, RateLimit};
use crate::ai_proxy_multi::config::BalancerConfig;
use crate::ai_proxy_multi::engine::{check_fallback_codes, AttemptSetup, Engine, Member, Strategy};
use crate::ai_proxy_multi::select::Selector;

/// How the first target of a request is chosen; the next ones follow on failure.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RoutingStrategy {
    /// The first target, then the next in order.
    #[default]
    Failover,
    /// Each request starts at the next target.
    RoundRobin,
    /// Each request starts at a target drawn by weight (smooth weighted round-robin).
    Weighted,
}

/// What happens when every target is cooling down.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OnAllFiltered {
    /// 503, with `Retry-After` set to the first target's return.
    #[default]
    Fail,
    /// Try them anyway, in order.
    OriginalOrder,
}

/// A routing model's fields, checked by the core.
pub struct RoutingDef<'a> {
    pub strategy: RoutingStrategy,
    /// Target aliases and their weights.
    pub targets: &'a [(String, u32)],
    /// Same-target retries of a 5xx or a failed connection.
    pub retries: u32,
    /// Caps the moves to a later target (`None`: every target may be tried).
    pub max_fallbacks: Option<u32>,
    pub retry_on_429: bool,
    pub on_all_filtered: OnAllFiltered,
    pub stream_resume: bool,
    pub retry_after_max_wait: Duration,
    pub fallback_error_codes: &'a [String],
    pub rate_limit: Option<&'a RateLimit>,
}

/// A routing model, compiled: its targets are named, and found when the catalog is assembled.
pub struct Routing {
    pub alias: String,
    strategy: RoutingStrategy,
    targets: Vec<(String, u32)>,
    retries: u32,
    max_fallbacks: Option<u32>,
    retry_on_429: bool,
    on_all_filtered: OnAllFiltered,
    stream_resume: bool,
    retry_after_max_wait: Duration,
    fallback_codes: Vec<String>,
    /// The routing model's own `rate_limit` (its targets' apply to each attempt on them).
    pub quota: Option<Arc<Quota>>,
}

impl Routing {
    /// Checks a routing model; errors are relative to its `routing` object.
    pub fn compile(alias: &str, def: &RoutingDef<'_>) -> Result<Routing, ConfigError> {
        if def.targets.is_empty() {
            return Err(ConfigError::new("targets", "must hold at least one target"));
        }
        for (i, (target, _)) in def.targets.iter().enumerate() {
            if target.trim().is_empty() {
                return Err(ConfigError::new(format!("targets[{i}].model"), "must not be empty"));
            }
            if target == alias {
                return Err(ConfigError::new(format!("targets[{i}].model"), "must not be the routing model itself"));
            }
            if def.targets[..i].iter().any(|(earlier, _)| earlier == target) {
                return Err(ConfigError::new(format!("targets[{i}].model"), "names a target twice"));
            }
        }
        check_fallback_codes(def.fallback_error_codes, "fallback_error_codes")?;
        Ok(Routing {
            alias: alias.to_string(),
            strategy: def.strategy,
            targets: def.targets.to_vec(),
            retries: def.retries,
            max_fallbacks: def.max_fallbacks,
            retry_on_429: def.retry_on_429,
            on_all_filtered: def.on_all_filtered,
            stream_resume: def.stream_resume,
            retry_after_max_wait: def.retry_after_max_wait,
            fallback_codes: def.fallback_error_codes.to_vec(),
            quota: model_quota(alias, def.rate_limit),
        })
    }

    /// The target aliases, in order.
    pub fn target_aliases(&self) -> impl Iterator<Item = &str> {
        self.targets.iter().map(|(alias, _)| alias.as_str())
    }
}

/// A routing model whose targets were found among the catalog's direct models.
pub struct RoutingAlias {
    pub routing: Arc<Routing>,
    /// In `routing.targets` order; each is served (its adapter is available).
    pub targets: Vec<Arc<Model>>,
}

impl RoutingAlias {
    /// The engine requests to this alias run on.
    pub(crate) fn engine(&self, settings: Arc<CallSettings>) -> Result<Engine, ConfigError> {
        let routing = &self.routing;
        let count = self.targets.len() as i64;
        let mut members = Vec::with_capacity(self.targets.len());
        let mut weights = Vec::with_capacity(self.targets.len());
        for (i, (model, (alias, weight))) in self.targets.iter().zip(&routing.targets).enumerate() {
            let instance = model
                .instance
                .clone()
                .ok_or_else(|| ConfigError::new(format!("routing.targets[{i}].model"), "is not served"))?;
            let mut member = Member::new(instance, Arc::clone(&model.health));
            member.first_token = model.stream_timeout;
            member.stream_idle = model.stream_timeout;
            member.timeout = model.timeout;
            member.accepts_prefill = model.accepts_prefill;
            member.strip = model.strip.clone();
            member.setup =
                Some(Arc::new(AnswerAs { alias: model.alias.clone(), reasoning_field: model.reasoning_field.clone() }));
            members.push(member);
            weights.push(match routing.strategy {
                RoutingStrategy::Failover => (alias.as_str(), count - i as i64, 1),
                RoutingStrategy::RoundRobin => (alias.as_str(), 0, 1),
                RoutingStrategy::Weighted => (alias.as_str(), 0, *weight),
            });
        }
        Ok(Engine {
            models: KnownModels::new([routing.alias.as_str()]),
            members,
            selector: Selector::new(&weights, &BalancerConfig::default())?,
            strategy: Strategy { on_rate_limit: false, on_429: routing.retry_on_429, on_5xx: true, on_transport: true },
            fallback_statuses: Vec::new(),
            fallback_codes: routing.fallback_codes.clone(),
            max_retries: routing.max_fallbacks,
            retry_window: None,
            retry_after_max_wait: routing.retry_after_max_wait,
            same_instance_retries: routing.retries,
            stream_resume: routing.stream_resume,
            in_order_when_all_down: routing.on_all_filtered == OnAllFiltered::OriginalOrder,
            settings,
        })
    }
}

/// Before an attempt on a target: its answer is named after the target (the model that wrote
/// it), in every protocol, and the target's reasoning field is renamed; the conversion from the
/// target's wire format runs between the two.
struct AnswerAs {
    alias: String,
    reasoning_field: Option<String>,
}

impl AttemptSetup for AnswerAs {
    fn prepare(&self, ctx: &mut Ctx) -> (Vec<Stage>, Vec<Stage>) {
        ctx.log.model = Some(self.alias.clone());
        let before = self.reasoning_field.iter().map(|field| Stage::ReasoningField(field.clone())).collect();
        (before, vec![Stage::Alias(self.alias.clone())])
    }
}
