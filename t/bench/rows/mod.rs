//! The table's rows, each measured against a direct call to the mock in the same run.

pub mod chat;
pub mod etcd;
pub mod instructions;
pub mod memory;
pub mod metrics;
pub mod model_api;
pub mod quota;
pub mod scale;
pub mod soak;
pub mod stream;

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::load::{self, Outcome, Target};
use crate::process::short_sleep;
use crate::{Bench, Result};

/// The raw figures of a load outcome.
pub fn summary(outcome: &Outcome) -> Value {
    json!({
        "ok": outcome.ok,
        "errors": outcome.errors,
        "measured_s": outcome.measured.as_secs_f64(),
        "rps": outcome.rps(),
        "p50_us": outcome.micros(0.5),
        "p90_us": outcome.micros(0.9),
        "p99_us": outcome.micros(0.99),
        "p999_us": outcome.micros(0.999),
        "max_us": outcome.latency.max() as f64 / 1e3,
    })
}

/// Notes wrong answers: the figures of a run that had any are suspect.
pub fn check(bench: &mut Bench, what: &str, outcome: &Outcome) {
    if outcome.errors > 0 || outcome.ok == 0 {
        bench.problems.push(format!("{what}: {} errors, {} good answers", outcome.errors, outcome.ok));
    }
}

/// Polls `probe` until it answers 200; the time since `since`. Polls every 200 µs on one
/// keep-alive connection (reconnecting while the node is not listening yet).
pub async fn until_served(probe: &Target, since: Instant, patience: Duration) -> Result<Duration> {
    let mut sender = None;
    while since.elapsed() < patience {
        if sender.is_none() {
            sender = load::connect(probe.addr).await.ok();
        }
        if let Some(ready) = sender.as_mut() {
            let answered = async {
                ready.ready().await?;
                let response = ready.send_request(probe.request()?).await?;
                let status = response.status().as_u16();
                http_body_util::BodyExt::collect(response.into_body()).await?;
                Ok::<_, crate::BoxError>(status)
            }
            .await;
            match answered {
                Ok(200) => return Ok(since.elapsed()),
                Ok(_) => {}
                Err(_) => sender = None,
            }
        }
        short_sleep(Duration::from_micros(200));
    }
    Err(format!("{} was not served within {patience:?}", probe.path).into())
}
