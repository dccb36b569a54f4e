//! Rows 1–3: non-streaming chat through `ai-proxy`, the model API and `ai-proxy-multi` (two
//! weighted instances; the preferred one answering 429), against the mock called directly.

use std::sync::Arc;

use serde_json::json;

use super::{check, model_api, summary};
use crate::load::{self, Shape, Target};
use crate::nginx::NginxProcess;
use crate::node::Node;
use crate::relay::RelayProcess;
use crate::report::Line;
use crate::routes::{self, CHAT, PROVIDER_KEY};
use crate::{Bench, Result};

/// Routes besides the measured ones, so the main node holds 10 (row 6 compares with 10,000).
const FILLER_ROUTES: usize = 7;

/// Puts the measured routes (and fillers, 10 in all) on `node`, waits until they are live, and
/// sets up the model API when this build has it (`Err`: why not).
pub async fn configure(bench: &Bench, node: &Node) -> Result<Result<Arc<Target>, String>> {
    let (ok, limited) = (bench.mock.ok, bench.mock.limited);
    node.put_route("chat", &routes::chat_route("/bench/chat", ok)).await?;
    node.put_route("multi", &routes::multi_route("/bench/multi", ok)).await?;
    let mut last = node.put_route("fallback", &routes::fallback_route("/bench/fallback", limited, ok)).await?;
    for i in 0..FILLER_ROUTES {
        last = node.put_route(&format!("filler-{i}"), &routes::chat_route(&format!("/bench/filler/{i}"), ok)).await?;
    }
    node.wait_revision(last).await?;
    model_api::configure(node, ok).await
}

/// The direct call every chat row is compared with.
pub fn direct(bench: &Bench) -> Result<Arc<Target>> {
    let target = Target::post("direct", bench.mock.ok, "/v1/chat/completions", CHAT)
        .header("authorization", &format!("Bearer {PROVIDER_KEY}"))?;
    Ok(Arc::new(target))
}

/// The `ai-proxy` route of `node`.
pub fn ai_proxy(node: &Node) -> Arc<Target> {
    Arc::new(Target::post("ai-proxy", node.proxy, "/bench/chat", CHAT).cpu_of(vec![node.pid()]))
}

pub async fn measure(bench: &mut Bench, node: &Node, model_api: Result<Arc<Target>, String>) -> Result<()> {
    let relay = RelayProcess::spawn(bench.mock.ok)?;
    let reference = Target::post("bare hyper relay", relay.addr, "/v1/chat/completions", CHAT)
        .header("authorization", &format!("Bearer {PROVIDER_KEY}"))?
        .cpu_of(vec![relay.pid()]);
    let gateway = vec![node.pid()];
    let mut targets = vec![
        direct(bench)?,
        ai_proxy(node),
        Arc::new(Target::post("ai-proxy-multi", node.proxy, "/bench/multi", CHAT).cpu_of(gateway.clone())),
        Arc::new(Target::post("ai-proxy-multi 429", node.proxy, "/bench/fallback", CHAT).cpu_of(gateway.clone())),
        Arc::new(reference),
    ];
    let nginx = NginxProcess::spawn(bench.mock.ok, &bench.work.join("nginx"));
    let nginx_index = match &nginx {
        Ok(nginx) => {
            let target = Target::post("nginx", nginx.addr, "/v1/chat/completions", CHAT)
                .header("authorization", &format!("Bearer {PROVIDER_KEY}"))?
                .cpu_of(nginx.pids());
            targets.push(Arc::new(target));
            Some(targets.len() - 1)
        }
        Err(_) => None,
    };
    let model_api_index = match &model_api {
        Ok(target) => {
            targets.push(Arc::new(Target::clone(target).cpu_of(gateway)));
            Some(targets.len() - 1)
        }
        Err(_) => None,
    };
    for target in &targets {
        let (status, body) = load::once(target).await?;
        if status != 200 || !body.starts_with(b"{\"id\":\"chatcmpl-") {
            return Err(format!("{} answered {status}: {}", target.name, String::from_utf8_lossy(&body)).into());
        }
    }
    let plan = bench.plan.clone();
    eprintln!("bench: rows 1-3, {} connections", plan.connections);
    let before = bench.mock.stats().await?;
    let wide = Shape { connections: plan.connections, warmup: plan.warmup, measure: plan.throughput_window };
    let wide = load::interleaved(&targets, wide, plan.rounds).await?;
    let after = bench.mock.stats().await?;
    eprintln!("bench: rows 1-3, 1 connection");
    let narrow = Shape { connections: 1, warmup: plan.warmup, measure: plan.latency_window };
    let narrow = load::interleaved(&targets, narrow, plan.rounds).await?;
    drop(relay);

    for (i, target) in targets.iter().enumerate() {
        check(bench, &format!("{} at {} connections", target.name, plan.connections), &wide[i]);
        check(bench, &format!("{} at 1 connection", target.name), &narrow[i]);
        bench
            .report
            .raw(&format!("chat/{}", target.name), json!({"c64": summary(&wide[i]), "c1": summary(&narrow[i])}));
    }
    pool_reuse(bench, before, after);

    let (d, d1) = (&wide[0], &narrow[0]);
    let lines = |row: u8, name: &str, i: usize, judged: bool| {
        let (g, g1) = (&wide[i], &narrow[i]);
        vec![
            Line::throughput(row, name, "req/s, 64 conns", d.rps(), g.rps(), judged.then_some(0.5)),
            Line::latency(row, name, "p50, 1 conn", d1.micros(0.5), g1.micros(0.5), judged.then_some(60.0)),
            Line::latency(row, name, "p99, 1 conn", d1.micros(0.99), g1.micros(0.99), judged.then_some(150.0)),
            Line::cpu(row, name, g.cpu_micros_per_request()),
        ]
    };
    let mut table = lines(1, "ai-proxy", 1, true);
    table.extend(lines(1, "reference: bare hyper relay, no plugins", 4, false));
    match (nginx_index, &nginx) {
        (Some(n), _) => {
            table.extend(lines(1, "reference: nginx plain proxy", n, false));
            table.push(Line::against(1, "ai-proxy ÷ nginx", "req/s, 64 conns", wide[n].rps(), wide[1].rps(), 1.0));
            table.push(Line::cpu_against(1, "ai-proxy ÷ nginx", &wide[n], &wide[1]));
        }
        (None, Err(why)) => table.push(Line::skipped(1, "reference: nginx plain proxy", &why.to_string())),
        (None, Ok(_)) => {}
    }
    match (model_api_index, &model_api) {
        (Some(m), _) => {
            table.extend(lines(2, "model API /v1/chat/completions", m, false));
            table.push(Line::against(2, "model API ÷ ai-proxy", "req/s, 64 conns", wide[1].rps(), wide[m].rps(), 0.9));
        }
        (None, Err(why)) => table.push(Line::skipped(2, "model API /v1/chat/completions", why)),
        (None, Ok(_)) => {}
    }
    table.extend(lines(3, "ai-proxy-multi, 2 instances 3:1", 2, false));
    table.extend(lines(3, "ai-proxy-multi, first answers 429", 3, false));
    let fallback_cost = narrow[3].micros(0.5) - narrow[2].micros(0.5);
    table.push(Line {
        gateway: format!("{fallback_cost:+.0} µs"),
        versus: "vs 2 instances, p50".into(),
        ..Line::new(3, "ai-proxy-multi, first answers 429", "cost of one fallback")
    });
    for line in table {
        bench.report.push(line);
    }
    Ok(())
}

/// Below this many mock requests per connection the gateway opened, its upstream connections
/// count as not reused. A pool that reuses nothing opens one connection per gateway request,
/// and gateway requests are most of the mock's (two in every three targets): well under 2
/// requests per connection. Reuse gives hundreds; what it still opens comes from connections
/// closed after `keepalive_pool.requests` (1,000) requests, and from `keepalive_pool.size`
/// (30 idle per worker by default) being a little below the 32 requests each worker has in
/// flight at 64 connections, so a few connections are closed and reopened per burst.
const REUSED_AT_LEAST: u64 = 20;

/// Notes how many upstream connections the gateway opened during the 64-connection runs, and
/// how many mock requests that makes per connection.
fn pool_reuse(bench: &mut Bench, before: (u64, u64), after: (u64, u64)) {
    let rounds = u64::from(bench.plan.rounds.max(1));
    // The direct and relay runs open one connection per client connection per round; `stats`
    // opens one.
    let direct = 2 * bench.plan.connections as u64 * rounds + 1;
    let opened = (after.0 - before.0).saturating_sub(direct);
    let requests = after.1 - before.1;
    bench.report.raw("upstream_connections_c64", json!({"opened_by_gateway": opened, "mock_requests": requests}));
    let per_connection = requests / opened.max(1);
    let verdict = if per_connection >= REUSED_AT_LEAST { "reused" } else { "NOT reused" };
    bench.report.notes.push(format!(
        "Upstream keep-alive: during the 64-connection runs the gateway opened {opened} connections to the mock, \
         which answered {requests} requests in all, {per_connection} per connection ({verdict}: at least \
         {REUSED_AT_LEAST} means reused)."
    ));
}
