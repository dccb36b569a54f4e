//! Row 7: two nodes sharing an etcd store; each write on node A is timed until node B serves it.

use std::time::{Duration, Instant};

use serde_json::json;

use super::until_served;
use crate::etcd::Etcd;
use crate::load::Target;
use crate::node::Node;
use crate::report::{micros, Line, Verdict};
use crate::routes::{self, CHAT};
use crate::{Bench, Result};

const SCENARIO: &str = "etcd, 2 nodes";

pub async fn measure(bench: &mut Bench) -> Result<()> {
    let Some(binary) = Etcd::binary() else {
        bench.report.push(Line::skipped(7, SCENARIO, "etcd is not installed (apt-get install etcd-server)"));
        return Ok(());
    };
    eprintln!("bench: row 7, {} writes through etcd", bench.plan.etcd_writes);
    let etcd = Etcd::start(binary, &bench.work.join("etcd")).await?;
    let store = |dir: &std::path::Path| {
        format!(
            "store:\n  backend: etcd\n  path: \"{}\"\n  etcd:\n    endpoints: [\"{}\"]",
            dir.join("cache").display(),
            etcd.endpoint
        )
    };
    let (dir_a, dir_b) = (bench.work.join("etcd-a"), bench.work.join("etcd-b"));
    let a = match Node::start(&bench.bin, &dir_a, &store(&dir_a)).await {
        Ok(node) => node,
        Err(err) => {
            let why = err.to_string();
            // The node's own last words, e.g. `store: unknown field `etcd``.
            let why = why.lines().last().unwrap_or("").rsplit(": ").take(2).collect::<Vec<_>>();
            let why = why.into_iter().rev().collect::<Vec<_>>().join(": ");
            bench.report.push(Line::skipped(7, SCENARIO, &format!("etcd backend not available ({why})")));
            return Ok(());
        }
    };
    let b = Node::start(&bench.bin, &dir_b, &store(&dir_b)).await?;

    let mut times = Vec::with_capacity(bench.plan.etcd_writes);
    for i in 0..bench.plan.etcd_writes {
        let path = format!("/bench/etcd/{i}");
        let probe = Target::post("etcd route", b.proxy, &path, CHAT);
        let written = Instant::now();
        a.put_route(&format!("etcd-{i}"), &routes::chat_route(&path, bench.mock.ok)).await?;
        times.push(until_served(&probe, written, Duration::from_secs(30)).await?);
    }
    a.stop();
    b.stop();
    drop(etcd);
    times.sort();
    let rank = |q: f64| times[((q * times.len() as f64).ceil() as usize).clamp(1, times.len()) - 1];
    let (p50, p99) = (rank(0.5), rank(0.99));
    let ms: Vec<f64> = times.iter().map(|d| d.as_secs_f64() * 1e3).collect();
    bench.report.raw("etcd", json!({"writes": times.len(), "propagation_ms": ms}));
    let us = |d: Duration| micros(d.as_secs_f64() * 1e6);
    let metric = format!("admin write on A → served by B, {} writes", times.len());
    bench.report.push(Line { gateway: format!("p50 {}", us(p50)), ..Line::new(7, SCENARIO, &metric) });
    bench.report.push(Line {
        gateway: format!("p99 {}", us(p99)),
        target: "p99 ≤ 100 ms".into(),
        verdict: Verdict::of(p99 <= Duration::from_millis(100)),
        ..Line::new(7, SCENARIO, &metric)
    });
    Ok(())
}
