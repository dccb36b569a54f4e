//! Row 12: instructions per request under callgrind, the `ai-proxy` route against nginx as a
//! plain proxy (and the bare hyper relay beside them), all in front of the same mock with the same
//! load (four connections). A figure of the work itself, free of what else the machine is doing:
//! it moves by well under 1 % between runs, where throughput moves by 10 %. Each proxy runs alone
//! under valgrind (a second gateway node, nginx as one process, the relay), since callgrind slows
//! it about fiftyfold.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use crate::callgrind::Callgrind;
use crate::load::{self, Shape, Target};
use crate::nginx::NginxProcess;
use crate::node::{embedded_store, Node};
use crate::relay::RelayProcess;
use crate::report::Line;
use crate::routes::{self, CHAT, PROVIDER_KEY};
use crate::{Bench, Result};

const SCENARIO: &str = "ai-proxy ÷ nginx under callgrind (direct column: nginx)";
/// The barest tokio and hyper proxy (`relay.rs`): what the HTTP layers alone cost, without the
/// gateway's work.
const RELAY: &str = "reference: bare hyper relay ÷ nginx under callgrind";
/// Few connections: under callgrind each proxy serves a few thousand requests a second at most.
const CONNECTIONS: usize = 4;

pub async fn measure(bench: &mut Bench) -> Result<()> {
    let callgrind = match Callgrind::find() {
        Ok(callgrind) => callgrind,
        Err(why) => {
            bench.report.push(Line::skipped(12, SCENARIO, &why.to_string()));
            return Ok(());
        }
    };
    eprintln!("bench: row 12, the gateway and nginx under callgrind");
    let dir = bench.work.join("callgrind");
    std::fs::create_dir_all(&dir)?;

    let out = dir.join("gateway.callgrind");
    let node_dir = dir.join("node");
    let node =
        Node::start_under(&callgrind.prefix(&out), &bench.bin, &node_dir, &embedded_store(&node_dir.join("store")))
            .await?;
    let revision = node.put_route("chat", &routes::chat_route("/bench/chat", bench.mock.ok)).await?;
    node.wait_revision(revision).await?;
    let target = Arc::new(Target::post("ai-proxy under callgrind", node.proxy, "/bench/chat", CHAT));
    let gateway = per_request(bench, &callgrind, node.pid(), &target, &out).await;
    node.stop();
    let gateway = gateway?;

    let nginx_out = dir.join("nginx.callgrind");
    let nginx = match NginxProcess::spawn_single_under(bench.mock.ok, &dir.join("nginx"), &callgrind.prefix(&nginx_out))
    {
        Ok(nginx) => nginx,
        Err(why) => {
            bench.report.push(Line::skipped(12, SCENARIO, &why.to_string()));
            return Ok(());
        }
    };
    let target = Arc::new(
        Target::post("nginx under callgrind", nginx.addr, "/v1/chat/completions", CHAT)
            .header("authorization", &format!("Bearer {PROVIDER_KEY}"))?,
    );
    let pid = nginx.pids().first().copied().ok_or("nginx has no process")?;
    let reference = per_request(bench, &callgrind, pid, &target, &nginx_out).await?;
    drop(nginx);

    let relay_out = dir.join("relay.callgrind");
    let relay = RelayProcess::spawn_under(&callgrind.prefix(&relay_out), bench.mock.ok)?;
    let target = Arc::new(
        Target::post("bare hyper relay under callgrind", relay.addr, "/v1/chat/completions", CHAT)
            .header("authorization", &format!("Bearer {PROVIDER_KEY}"))?,
    );
    let bare = per_request(bench, &callgrind, relay.pid(), &target, &relay_out).await?;
    drop(relay);

    let line = |scenario: &str, ours: &PerRequest| Line {
        direct: thousands_of_instructions(reference.instructions),
        gateway: thousands_of_instructions(ours.instructions),
        versus: format!("{:.2}×", ours.instructions / reference.instructions.max(1.0)),
        ..Line::new(12, scenario, "instructions per request, 4 conns")
    };
    bench.report.push(line(SCENARIO, &gateway));
    bench.report.push(line(RELAY, &bare));
    bench.report.raw(
        "instructions",
        json!({
            "gateway": {"per_request": gateway.instructions, "requests": gateway.requests},
            "nginx": {"per_request": reference.instructions, "requests": reference.requests},
            "bare_relay": {"per_request": bare.instructions, "requests": bare.requests},
        }),
    );
    Ok(())
}

/// What one proxy ran for the requests of a window.
struct PerRequest {
    instructions: f64,
    requests: u64,
}

/// Warms `target` up, then counts the instructions process `pid` (under callgrind, writing to
/// `out`) runs for a window of load.
async fn per_request(
    bench: &mut Bench,
    callgrind: &Callgrind,
    pid: u32,
    target: &Arc<Target>,
    out: &Path,
) -> Result<PerRequest> {
    // At least a second: under callgrind a debug build (the smoke run's) answers a few dozen
    // requests a second.
    let measure = bench.plan.throughput_window.max(Duration::from_secs(1));
    let window = |measure| Shape { connections: CONNECTIONS, warmup: Duration::ZERO, measure };
    // valgrind translates code the first time it runs: the warm-up keeps that out of the count.
    load::run(target, window(measure / 2)).await?;
    callgrind.zero(pid)?;
    let outcome = load::run(target, window(measure)).await?;
    let instructions = callgrind.dump(pid, out)?;
    super::check(bench, &target.name, &outcome);
    Ok(PerRequest { instructions: instructions as f64 / outcome.ok.max(1) as f64, requests: outcome.ok })
}

fn thousands_of_instructions(n: f64) -> String {
    format!("{:.1}k", n / 1e3)
}
