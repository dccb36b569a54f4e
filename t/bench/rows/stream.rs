//! Row 4: SSE through `ai-proxy` against the mock's stream called directly: time to first byte,
//! delay added to each event, and whether every event arrived as its own frame.

use std::sync::Arc;

use serde_json::json;

use crate::load::Target;
use crate::node::Node;
use crate::report::{Line, Verdict};
use crate::routes::{CHAT_STREAM, PROVIDER_KEY};
use crate::sse::{self, StreamOutcome};
use crate::{Bench, Result};

const SCENARIO: &str = "SSE via ai-proxy";

pub async fn measure(bench: &mut Bench, node: &Node) -> Result<()> {
    let plan = bench.plan.clone();
    let events = plan.sse.sse_events;
    eprintln!("bench: row 4, {} streams at a time", plan.sse_connections);
    let direct = Target::post("direct stream", bench.mock.ok, "/v1/chat/completions", CHAT_STREAM)
        .header("authorization", &format!("Bearer {PROVIDER_KEY}"))?;
    let gateway = Target::post("ai-proxy stream", node.proxy, "/bench/chat", CHAT_STREAM);
    let targets = [Arc::new(direct), Arc::new(gateway)];
    let outcomes = sse::interleaved(&targets, plan.sse_connections, plan.sse_window, plan.rounds, events).await?;
    let (d, g) = (&outcomes[0], &outcomes[1]);
    for (name, o) in [("direct", d), ("gateway", g)] {
        if o.failed > 0 || o.streams == 0 {
            bench.problems.push(format!("{name} streams: {} failed, {} complete", o.failed, o.streams));
        }
        bench.report.raw(&format!("sse/{name}"), raw(o));
    }
    let us = |h: &hdrhistogram::Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1e3;
    let report = &mut bench.report;
    report.push(Line::latency(4, SCENARIO, "time to first byte p50", us(&d.ttfb, 0.5), us(&g.ttfb, 0.5), Some(200.0)));
    report.push(Line::latency(4, SCENARIO, "time to first byte p99", us(&d.ttfb, 0.99), us(&g.ttfb, 0.99), None));
    let (d50, g50) = (us(&d.event_delay, 0.5), us(&g.event_delay, 0.5));
    report.push(Line::latency(4, SCENARIO, "per-event delay p50", d50, g50, None));
    let (d99, g99) = (us(&d.event_delay, 0.99), us(&g.event_delay, 0.99));
    report.push(Line::latency(4, SCENARIO, "per-event delay p99", d99, g99, Some(50.0)));
    let frames = |o: &StreamOutcome| {
        format!("{:.1} frames/stream, {} of {} streams coalesced", per_stream(o), o.coalesced, o.streams)
    };
    report.push(Line {
        direct: frames(d),
        gateway: frames(g),
        target: format!("{events} frames = events sent"),
        verdict: Verdict::of(g.coalesced == 0 && g.streams > 0 && g.failed == 0),
        ..Line::new(4, SCENARIO, "frames received")
    });
    Ok(())
}

fn per_stream(o: &StreamOutcome) -> f64 {
    o.frames as f64 / o.streams.max(1) as f64
}

fn raw(o: &StreamOutcome) -> serde_json::Value {
    let us = |h: &hdrhistogram::Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1e3;
    json!({
        "streams": o.streams, "failed": o.failed, "frames": o.frames, "events": o.events, "coalesced": o.coalesced,
        "ttfb_p50_us": us(&o.ttfb, 0.5), "ttfb_p99_us": us(&o.ttfb, 0.99),
        "event_delay_p50_us": us(&o.event_delay, 0.5), "event_delay_p99_us": us(&o.event_delay, 0.99),
        "event_delay_max_us": o.event_delay.max() as f64 / 1e3,
    })
}
