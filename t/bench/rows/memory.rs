//! Row 5: the gateway process's resident memory idle, under 256 connections, and across a soak;
//! the mock's (a bare hyper server) stands in the direct column.

use std::time::{Duration, Instant};

use serde_json::json;

use super::{chat, check};
use crate::load::{self, Shape};
use crate::node::Node;
use crate::process::rss_kib;
use crate::report::{mib, Line, Verdict};
use crate::{Bench, Result};

const MIB: u64 = 1024;

/// Resident memory of the configured gateway before any traffic, and of the mock.
pub struct Idle {
    gateway: u64,
    mock: u64,
}

/// Measures idle memory: call it after configuring, before the first request.
pub fn idle(bench: &Bench, node: &Node) -> Result<Idle> {
    Ok(Idle { gateway: node.rss_kib()?, mock: rss_kib(bench.mock.pid())? })
}

/// RSS samples of the gateway and the mock taken while a load run goes on.
struct Samples {
    /// (time since the load started, gateway KiB, mock KiB)
    points: Vec<(Duration, u64, u64)>,
}

impl Samples {
    fn peak(&self) -> (u64, u64) {
        self.points.iter().fold((0, 0), |(g, m), p| (g.max(p.1), m.max(p.2)))
    }
}

/// Runs `shape` against the `ai-proxy` route, sampling memory every `every`.
async fn sampled(bench: &Bench, node: &Node, shape: Shape, every: Duration) -> Result<(load::Outcome, Samples)> {
    let target = chat::ai_proxy(node);
    let started = Instant::now();
    let run = tokio::spawn(async move { load::run(&target, shape).await });
    let mut samples = Samples { points: Vec::new() };
    while !run.is_finished() {
        tokio::time::sleep(every).await;
        if run.is_finished() {
            break;
        }
        samples.points.push((started.elapsed(), node.rss_kib()?, rss_kib(bench.mock.pid())?));
    }
    Ok((run.await??, samples))
}

pub async fn measure(bench: &mut Bench, node: &Node, idle: Idle) -> Result<()> {
    let plan = bench.plan.clone();
    eprintln!("bench: row 5, {} connections", plan.memory_connections);
    let wide = Shape { connections: plan.memory_connections, warmup: plan.warmup, measure: plan.memory_window };
    let (wide_outcome, wide_samples) = sampled(bench, node, wide, Duration::from_millis(100)).await?;
    check(bench, "256 connections", &wide_outcome);
    eprintln!("bench: row 5, {:.0} s soak at {} connections", plan.soak.as_secs_f64(), plan.connections);
    let soak = Shape { connections: plan.connections, warmup: Duration::ZERO, measure: plan.soak };
    let (soak_outcome, soak_samples) = sampled(bench, node, soak, Duration::from_millis(250)).await?;
    check(bench, "soak", &soak_outcome);
    let baseline = soak_samples.points.iter().find(|p| p.0 >= plan.soak_baseline).map_or(0, |p| p.1);
    let end = soak_samples.points.last().map_or(0, |p| p.1);
    let growth = (end as f64 - baseline as f64) / (baseline.max(1) as f64) * 100.0;

    let (peak, mock_peak) = wide_samples.peak();
    bench.report.raw(
        "memory",
        json!({
            "idle_kib": idle.gateway, "mock_idle_kib": idle.mock,
            "c256_peak_kib": peak, "mock_c256_peak_kib": mock_peak, "c256": super::summary(&wide_outcome),
            "soak_baseline_kib": baseline, "soak_end_kib": end, "soak_growth_pct": growth,
            "soak": super::summary(&soak_outcome),
            "soak_samples": soak_samples.points.iter().map(|p| json!([p.0.as_secs_f64(), p.1, p.2])).collect::<Vec<_>>(),
        }),
    );
    let ratio = |g: u64, m: u64| format!("{:.2}×", g as f64 / m.max(1) as f64);
    let scenario = "memory (RSS); direct = the mock";
    bench.report.push(Line {
        direct: mib(idle.mock),
        gateway: mib(idle.gateway),
        versus: ratio(idle.gateway, idle.mock),
        target: "≤ 15 MiB".into(),
        verdict: Verdict::of(idle.gateway <= 15 * MIB),
        ..Line::new(5, scenario, "idle, 10 routes")
    });
    bench.report.push(Line {
        direct: mib(mock_peak),
        gateway: mib(peak),
        versus: ratio(peak, mock_peak),
        target: "≤ 64 MiB".into(),
        verdict: Verdict::of(peak <= 64 * MIB),
        ..Line::new(5, scenario, &format!("peak at {} conns", plan.memory_connections))
    });
    bench.report.push(Line {
        gateway: format!("{} → {}", mib(baseline), mib(end)),
        versus: format!("{growth:+.2} %"),
        target: "growth ≤ 2 %".into(),
        verdict: Verdict::of(growth <= 2.0),
        ..Line::new(5, scenario, &format!("{:.0} s soak at {} conns", plan.soak.as_secs_f64(), plan.connections))
    });
    Ok(())
}
