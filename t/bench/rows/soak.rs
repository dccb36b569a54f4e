//! Row 8: a soak of mixed traffic, 10 minutes in a full run (`SWITCHYARD_SOAK_SECS` sets another
//! length, e.g. `SWITCHYARD_SOAK_SECS=60 make bench`): plain proxying, `ai-proxy` answers and
//! streams, failing upstreams (a 429 provider, a refused connection, a fallback), and an admin
//! write every second. The gateway's RSS, open file descriptors and runtime tasks are sampled
//! throughout; at the end they must be where they were once the traffic had settled.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::{check, summary};
use crate::load::{self, Shape, Target};
use crate::node::Node;
use crate::process::{free_port, open_fds};
use crate::report::{mib, thousands, Line, Verdict};
use crate::routes::{self, CHAT, CHAT_STREAM};
use crate::{Bench, Result};

/// Sets the soak's length in seconds (fractions allowed), full and smoke runs alike.
pub const DURATION_VAR: &str = "SWITCHYARD_SOAK_SECS";

/// One look at the gateway.
#[derive(Debug, Clone, Copy)]
struct Sample {
    at: Duration,
    rss_kib: u64,
    fds: u64,
    tasks: u64,
}

/// The soak's length: the environment's, else the plan's.
fn duration(default: Duration) -> Result<Duration> {
    match std::env::var(DURATION_VAR) {
        Ok(secs) => {
            Ok(Duration::try_from_secs_f64(secs.trim().parse()?)
                .map_err(|err| format!("{DURATION_VAR}={secs}: {err}"))?)
        }
        Err(_) => Ok(default),
    }
}

async fn sample(node: &Node, at: Duration) -> Result<Sample> {
    let tasks = node.status().await?.get("tasks").and_then(Value::as_u64).ok_or("status has no `tasks`")?;
    Ok(Sample { at, rss_kib: node.rss_kib()?, fds: open_fds(node.pid())?, tasks })
}

/// The median of `figure` over the samples taken between `from` and `to` (fractions of the run).
fn median(samples: &[Sample], length: Duration, (from, to): (f64, f64), figure: fn(&Sample) -> u64) -> u64 {
    let mut values: Vec<u64> =
        samples.iter().filter(|s| s.at >= length.mul_f64(from) && s.at <= length.mul_f64(to)).map(figure).collect();
    values.sort_unstable();
    values.get(values.len() / 2).copied().unwrap_or(0)
}

/// Puts the soak's own routes on `node` and returns the traffic: each target with its
/// connections.
async fn configure(bench: &Bench, node: &Node) -> Result<Vec<(Arc<Target>, usize)>> {
    let (ok, limited) = (bench.mock.ok, bench.mock.limited);
    let refused = format!("127.0.0.1:{}", free_port()?);
    node.put_route("soak-plain", &json!({"paths": ["/soak/plain"], "upstream": {"nodes": {ok.to_string(): 1}}}))
        .await?;
    node.put_route("soak-limited", &routes::chat_route("/soak/limited", limited)).await?;
    let last = node
        .put_route("soak-refused", &json!({"paths": ["/soak/refused"], "upstream": {"nodes": {refused: 1}}}))
        .await?;
    node.wait_revision(last).await?;
    let wide = if bench.plan.full { 4 } else { 1 };
    let expecting = |target: Target, status: u16| Arc::new(Target { expect: status, ..target });
    Ok(vec![
        (Arc::new(Target::post("plain proxy", node.proxy, "/soak/plain", CHAT)), wide),
        (Arc::new(Target::post("ai-proxy", node.proxy, "/bench/chat", CHAT)), wide),
        (Arc::new(Target::post("ai-proxy stream", node.proxy, "/bench/chat", CHAT_STREAM)), 2 * wide),
        (Arc::new(Target::post("ai-proxy-multi fallback", node.proxy, "/bench/fallback", CHAT)), wide / 2 + 1),
        (expecting(Target::post("429 provider", node.proxy, "/soak/limited", CHAT), 429), 1),
        (expecting(Target::post("refused upstream", node.proxy, "/soak/refused", CHAT), 502), 1),
    ])
}

pub async fn measure(bench: &mut Bench, node: &Node) -> Result<()> {
    let length = duration(bench.plan.mixed_soak)?;
    let traffic = configure(bench, node).await?;
    let connections: usize = traffic.iter().map(|(_, c)| c).sum();
    eprintln!("bench: row 8, {:.0} s soak of mixed traffic on {connections} connections", length.as_secs_f64());
    let started = Instant::now();
    let runs: Vec<_> = traffic
        .iter()
        .map(|(target, connections)| {
            let (target, shape) =
                (Arc::clone(target), Shape { connections: *connections, warmup: Duration::ZERO, measure: length });
            tokio::spawn(async move { load::run(&target, shape).await })
        })
        .collect();

    let every = (length / 120).max(Duration::from_millis(250));
    let mut samples = Vec::new();
    let (mut writes, mut failed_writes) = (0u64, 0u64);
    let mut last_write: Option<Instant> = None;
    let mut last_sample: Option<Instant> = None;
    while started.elapsed() < length {
        if last_write.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
            last_write = Some(Instant::now());
            let route = routes::chat_route(&format!("/soak/admin/{}", writes % 10), bench.mock.ok);
            writes += 1;
            failed_writes += u64::from(node.put_route("soak-admin", &route).await.is_err());
        }
        if last_sample.is_none_or(|t| t.elapsed() >= every) {
            last_sample = Some(Instant::now());
            samples.push(sample(node, started.elapsed()).await?);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut outcomes = Vec::with_capacity(runs.len());
    for run in runs {
        outcomes.push(run.await??);
    }
    // Clients gone: what the node still holds once their connections have closed.
    tokio::time::sleep((length / 2).min(Duration::from_secs(2))).await;
    let after = sample(node, started.elapsed()).await?;

    let mut raw = serde_json::Map::new();
    let (mut answered, mut wrong) = (0, 0);
    for ((target, _), outcome) in traffic.iter().zip(&outcomes) {
        check(bench, &format!("soak: {}", target.name), outcome);
        answered += outcome.ok;
        wrong += outcome.errors;
        raw.insert(target.name.clone(), summary(outcome));
    }
    if failed_writes > 0 {
        bench.problems.push(format!("soak: {failed_writes} of {writes} admin writes failed"));
    }
    let settled = (0.1, 0.2);
    let end = (0.9, 1.0);
    let figures =
        |figure: fn(&Sample) -> u64| (median(&samples, length, settled, figure), median(&samples, length, end, figure));
    let rss = figures(|s| s.rss_kib);
    let fds = figures(|s| s.fds);
    let tasks = figures(|s| s.tasks);
    bench.report.raw(
        "soak",
        json!({
            "seconds": length.as_secs_f64(), "connections": connections, "admin_writes": writes,
            "failed_admin_writes": failed_writes, "traffic": raw,
            "settled": {"rss_kib": rss.0, "fds": fds.0, "tasks": tasks.0},
            "end": {"rss_kib": rss.1, "fds": fds.1, "tasks": tasks.1},
            "after": {"rss_kib": after.rss_kib, "fds": after.fds, "tasks": after.tasks},
            "samples": samples.iter().map(|s| json!([s.at.as_secs_f64(), s.rss_kib, s.fds, s.tasks])).collect::<Vec<_>>(),
        }),
    );

    let secs = length.as_secs_f64();
    let span = if secs >= 60.0 { format!("{:.0} min", secs / 60.0) } else { format!("{secs:.0} s") };
    let scenario = format!("soak, {span} of mixed traffic, {connections} conns, 1 admin write/s");
    let growth = (rss.1 as f64 - rss.0 as f64) / (rss.0.max(1) as f64) * 100.0;
    // A count is flat when it ends within 10 % (and at least 4) of where it had settled.
    let flat = |(settled, end): (u64, u64)| end <= settled + (settled / 10).max(4);
    bench.report.push(Line {
        gateway: format!(
            "{} as expected, {wrong} wrong; {writes} admin writes, {failed_writes} failed",
            thousands(answered as f64)
        ),
        target: "0 wrong, 0 failed".into(),
        verdict: Verdict::of(wrong == 0 && failed_writes == 0 && answered > 0),
        ..Line::new(8, &scenario, "answers (200, 429 and 502 as sent)")
    });
    bench.report.push(Line {
        gateway: format!("{} → {}", mib(rss.0), mib(rss.1)),
        versus: format!("{growth:+.2} %"),
        target: "growth ≤ 5 %".into(),
        verdict: Verdict::of(growth <= 5.0),
        ..Line::new(8, &scenario, "RSS, settled → end (medians)")
    });
    for (metric, figure, idle) in [("open file descriptors", fds, after.fds), ("runtime tasks", tasks, after.tasks)] {
        bench.report.push(Line {
            gateway: format!("{} → {} (idle after: {idle})", figure.0, figure.1),
            target: "end ≤ settled + 10 %".into(),
            verdict: Verdict::of(flat(figure)),
            ..Line::new(8, &scenario, &format!("{metric}, settled → end"))
        });
    }
    Ok(())
}
