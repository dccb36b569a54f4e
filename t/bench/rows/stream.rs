//! Row 4: SSE through `ai-proxy` against the mock's stream called directly: time to first byte,
//! delay added to each event, and whether every event arrived as its own frame. nginx relaying
//! the same stream (buffering off) runs beside them, and the gateway's per-event delay is held to
//! nginx's.

use std::sync::Arc;

use serde_json::json;

use crate::load::Target;
use crate::nginx::NginxProcess;
use crate::node::Node;
use crate::report::{Line, Verdict};
use crate::routes::{CHAT_STREAM, PROVIDER_KEY};
use crate::sse::{self, StreamOutcome};
use crate::{Bench, Result};

const SCENARIO: &str = "SSE via ai-proxy";
const NGINX: &str = "reference: SSE via nginx plain proxy";
const AGAINST_NGINX: &str = "SSE via ai-proxy ÷ nginx (direct column: nginx)";

pub async fn measure(bench: &mut Bench, node: &Node) -> Result<()> {
    let plan = bench.plan.clone();
    let events = plan.sse.sse_events;
    eprintln!("bench: row 4, {} streams at a time", plan.sse_connections);
    let direct = Target::post("direct stream", bench.mock.ok, "/v1/chat/completions", CHAT_STREAM)
        .header("authorization", &format!("Bearer {PROVIDER_KEY}"))?;
    let gateway = Target::post("ai-proxy stream", node.proxy, "/bench/chat", CHAT_STREAM);
    let mut targets = vec![Arc::new(direct), Arc::new(gateway)];
    let nginx = NginxProcess::spawn(bench.mock.ok, &bench.work.join("nginx-sse"));
    match &nginx {
        Ok(nginx) => targets.push(Arc::new(
            Target::post("nginx stream", nginx.addr, "/v1/chat/completions", CHAT_STREAM)
                .header("authorization", &format!("Bearer {PROVIDER_KEY}"))?,
        )),
        Err(why) => bench.report.push(Line::skipped(4, NGINX, &why.to_string())),
    }
    let outcomes = sse::interleaved(&targets, plan.sse_connections, plan.sse_window, plan.rounds, events).await?;
    drop(nginx);
    let (d, g) = (&outcomes[0], &outcomes[1]);
    for (name, o) in [("direct", d), ("gateway", g)].into_iter().chain(outcomes.get(2).map(|n| ("nginx", n))) {
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
    if let Some(n) = outcomes.get(2) {
        report.push(Line::latency(4, NGINX, "time to first byte p50", us(&d.ttfb, 0.5), us(&n.ttfb, 0.5), None));
        let (n50, n99) = (us(&n.event_delay, 0.5), us(&n.event_delay, 0.99));
        report.push(Line::latency(4, NGINX, "per-event delay p50", d50, n50, None));
        report.push(Line::latency(4, NGINX, "per-event delay p99", d99, n99, None));
        report.push(Line { gateway: frames(n), ..Line::new(4, NGINX, "frames received") });
        let ttfb =
            Line::latency_against(4, AGAINST_NGINX, "time to first byte p50", us(&n.ttfb, 0.5), us(&g.ttfb, 0.5));
        report.push(Line { target: "–".into(), verdict: Verdict::Info, ..ttfb });
        report.push(Line::latency_against(4, AGAINST_NGINX, "per-event delay p50", n50, g50));
        report.push(Line::latency_against(4, AGAINST_NGINX, "per-event delay p99", n99, g99));
    }
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
