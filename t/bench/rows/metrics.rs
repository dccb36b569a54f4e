//! Row 9: what recording metrics costs. The main node (metrics on, as by default) against a node
//! with `metrics.enabled: false`, same route, same load, interleaved.

use std::sync::Arc;

use serde_json::json;

use super::{chat, check, summary};
use crate::load::{self, Shape, Target};
use crate::node::{embedded_store, Node};
use crate::report::Line;
use crate::routes;
use crate::{Bench, Result};

const SCENARIO: &str = "metrics on (gateway column) vs off (direct column), ai-proxy";

pub async fn measure(bench: &mut Bench, main: &Node) -> Result<()> {
    let dir = bench.work.join("metrics-off");
    let off = Node::start_with_metrics(&bench.bin, &dir, &embedded_store(&dir.join("store")), false).await?;
    let revision = off.put_route("chat", &routes::chat_route("/bench/chat", bench.mock.ok)).await?;
    off.wait_revision(revision).await?;
    let targets =
        [Arc::new(Target::post("ai-proxy, metrics off", off.proxy, "/bench/chat", routes::CHAT)), chat::ai_proxy(main)];
    for target in &targets {
        let (status, _) = load::once(target).await?;
        if status != 200 {
            return Err(format!("{} answered {status}", target.name).into());
        }
    }
    let plan = bench.plan.clone();
    eprintln!("bench: row 9, {} connections", plan.connections);
    let shape = Shape { connections: plan.connections, warmup: plan.warmup, measure: plan.throughput_window };
    let wide = load::interleaved(&targets, shape, plan.rounds).await?;
    let narrow = Shape { connections: 1, warmup: plan.warmup, measure: plan.latency_window };
    let narrow = load::interleaved(&targets, narrow, plan.rounds).await?;
    drop(off);
    for (i, target) in targets.iter().enumerate() {
        check(bench, &format!("{} at {} connections", target.name, plan.connections), &wide[i]);
        bench
            .report
            .raw(&format!("metrics/{}", target.name), json!({"c64": summary(&wide[i]), "c1": summary(&narrow[i])}));
    }
    let (off, on) = (&wide[0], &wide[1]);
    bench.report.push(Line::throughput(9, SCENARIO, "req/s, 64 conns", off.rps(), on.rps(), Some(0.97)));
    let (off1, on1) = (&narrow[0], &narrow[1]);
    bench.report.push(Line::latency(9, SCENARIO, "p50, 1 conn", off1.micros(0.5), on1.micros(0.5), None));
    Ok(())
}
