//! The failover engine that one `ai-proxy-multi` config, or one routing alias of the model API,
//! compiles to: its members (a provider call each, with health that outlives requests), how one
//! is picked, and which failures move a request on. Per request, a
//! [`MultiTarget`](super::target::MultiTarget) runs it.

use std::sync::Arc;
use std::time::Duration;
use switchyard_llm::labels::KnownModels;

use http::HeaderName;
use switchyard_llm::instance::{CallSettings, Instance};
use switchyard_llm::protocol::rewrite::Stage;
use switchyard_sdk::{ConfigError, Ctx};

use super::active::Probe;
use super::config::FallbackStrategyConfig;
use super::errors;
use super::select::Selector;
use crate::health::Health;

/// Which failures move a request to the next instance.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Strategy {
    /// A spent `ai-rate-limiting` limit moves to the next instance.
    pub(crate) on_rate_limit: bool,
    pub(crate) on_429: bool,
    pub(crate) on_5xx: bool,
    /// Connection refused, timeouts, broken connections.
    pub(crate) on_transport: bool,
}

impl Strategy {
    /// `fallback_strategy` as `ai-proxy-multi` reads it.
    pub(crate) fn parse(config: Option<&FallbackStrategyConfig>) -> Result<Strategy, ConfigError> {
        let mut strategy = Strategy::default();
        let names: Vec<(String, &str)> = match config {
            None => return Ok(strategy),
            Some(FallbackStrategyConfig::One(name)) => vec![("fallback_strategy".into(), name.as_str())],
            Some(FallbackStrategyConfig::Many(names)) => {
                names.iter().enumerate().map(|(i, n)| (format!("fallback_strategy[{i}]"), n.as_str())).collect()
            }
        };
        let single = matches!(config, Some(FallbackStrategyConfig::One(_)));
        for (path, name) in names {
            match name {
                "http_429" => strategy.on_429 = true,
                "rate_limiting" => {
                    strategy.on_429 = true;
                    strategy.on_rate_limit = true;
                }
                "http_5xx" => {
                    strategy.on_5xx = true;
                    strategy.on_transport = true;
                }
                "instance_health_and_rate_limiting" if single => {
                    strategy = Strategy { on_rate_limit: true, on_429: true, on_5xx: true, on_transport: true };
                }
                _ => {
                    return Err(ConfigError::new(
                        path,
                        "unknown fallback strategy: use http_429, http_5xx, rate_limiting or \
                         instance_health_and_rate_limiting (alone)",
                    ))
                }
            }
        }
        Ok(strategy)
    }
}

/// Refuses safety refusal codes in a list of codes to fall back on; `field` names the list.
pub(crate) fn check_fallback_codes(codes: &[String], field: &str) -> Result<(), ConfigError> {
    match codes.iter().position(|code| errors::is_safety_code(code)) {
        Some(i) => Err(ConfigError::new(
            format!("{field}[{i}]"),
            "is a safety refusal code, and a safety refusal is never routed around",
        )),
        None => Ok(()),
    }
}

/// What a member adds to each attempt on it (the model API names the answer after the target
/// and renames its reasoning field).
pub(crate) trait AttemptSetup: Send + Sync {
    /// Runs before each attempt on the member: notes what it must in `ctx`, and returns the
    /// answer's rewrite stages to run before the protocol conversion and after it.
    fn prepare(&self, ctx: &mut Ctx) -> (Vec<Stage>, Vec<Stage>);
}

/// One instance, or one routing target.
pub(crate) struct Member {
    pub(crate) instance: Arc<Instance>,
    /// Shared by everything that calls this provider the same way: a direct model's cooldowns
    /// hold for every routing alias that targets it.
    pub(crate) health: Arc<Health>,
    /// `checks.active`: run by the core as background work while this plugin is live.
    pub(crate) probe: Option<Arc<Probe>>,
    /// Event streams: the first event must come within this long.
    pub(crate) first_token: Option<Duration>,
    /// Event streams: the longest silence between two events (`None`: the head timeout).
    pub(crate) stream_idle: Option<Duration>,
    /// The head timeout, when it is not the plugin's.
    pub(crate) timeout: Option<Duration>,
    /// Takes up a broken stream by continuing a prefill (else by a restart).
    pub(crate) accepts_prefill: bool,
    /// Client headers removed before the call (the model API's `strip_headers`).
    pub(crate) strip: Vec<HeaderName>,
    pub(crate) setup: Option<Arc<dyn AttemptSetup>>,
}

impl Member {
    /// A member with nothing beyond its call and health.
    pub(crate) fn new(instance: Arc<Instance>, health: Arc<Health>) -> Member {
        Member {
            instance,
            health,
            probe: None,
            first_token: None,
            stream_idle: None,
            timeout: None,
            accepts_prefill: false,
            strip: Vec::new(),
            setup: None,
        }
    }
}

/// The compiled engine, shared by the requests of one config.
pub(crate) struct Engine {
    /// The model names the config knows (pinned models, a routing alias): the requested models
    /// that become metric labels.
    pub(crate) models: KnownModels,
    pub(crate) members: Vec<Member>,
    pub(crate) selector: Selector,
    pub(crate) strategy: Strategy,
    pub(crate) fallback_statuses: Vec<u16>,
    pub(crate) fallback_codes: Vec<String>,
    /// Caps the attempts moved to another member.
    pub(crate) max_retries: Option<u32>,
    pub(crate) retry_window: Option<Duration>,
    pub(crate) retry_after_max_wait: Duration,
    pub(crate) same_instance_retries: u32,
    pub(crate) stream_resume: bool,
    /// When every untried member is cooling down or down by probe: try them anyway, in order,
    /// instead of giving up (the model API's `on_all_filtered: original_order`).
    pub(crate) in_order_when_all_down: bool,
    pub(crate) settings: Arc<CallSettings>,
}
