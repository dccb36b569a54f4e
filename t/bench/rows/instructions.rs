//! Row 12: instructions per request under callgrind, the `ai-proxy` route against nginx as a
//! plain proxy (and the bare hyper relay beside them), all in front of the same mock with the same
//! load (four connections); whole answers, then streamed ones (the mock's SSE stream, row 4's).
//! A figure of the work itself, free of what else the machine is doing:
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
use crate::routes::{self, CHAT, CHAT_STREAM, PROVIDER_KEY};
use crate::sse;
use crate::{Bench, Result};

const SCENARIO: &str = "ai-proxy ÷ nginx under callgrind (direct column: nginx)";
const STREAMS: &str = "SSE via ai-proxy ÷ nginx under callgrind (direct column: nginx)";
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
    let stream = Arc::new(Target::post("ai-proxy stream under callgrind", node.proxy, "/bench/chat", CHAT_STREAM));
    let gateway = per_request(bench, &callgrind, node.pid(), Load::Whole(&target), &out).await;
    let gateway_streams = per_request(bench, &callgrind, node.pid(), Load::Streams(&stream), &out).await;
    node.stop();
    let (gateway, gateway_streams) = (gateway?, gateway_streams?);

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
    let stream = Arc::new(
        Target::post("nginx stream under callgrind", nginx.addr, "/v1/chat/completions", CHAT_STREAM)
            .header("authorization", &format!("Bearer {PROVIDER_KEY}"))?,
    );
    let pid = nginx.pids().first().copied().ok_or("nginx has no process")?;
    let reference = per_request(bench, &callgrind, pid, Load::Whole(&target), &nginx_out).await?;
    let reference_streams = per_request(bench, &callgrind, pid, Load::Streams(&stream), &nginx_out).await?;
    drop(nginx);

    let relay_out = dir.join("relay.callgrind");
    let relay = RelayProcess::spawn_under(&callgrind.prefix(&relay_out), bench.mock.ok)?;
    let target = Arc::new(
        Target::post("bare hyper relay under callgrind", relay.addr, "/v1/chat/completions", CHAT)
            .header("authorization", &format!("Bearer {PROVIDER_KEY}"))?,
    );
    let bare = per_request(bench, &callgrind, relay.pid(), Load::Whole(&target), &relay_out).await?;
    drop(relay);

    let line = |scenario: &str, metric: &str, ours: &PerRequest, reference: &PerRequest| Line {
        direct: thousands_of_instructions(reference.instructions),
        gateway: thousands_of_instructions(ours.instructions),
        versus: format!("{:.2}×", ours.instructions / reference.instructions.max(1.0)),
        ..Line::new(12, scenario, metric)
    };
    let whole = "instructions per request, 4 conns";
    bench.report.push(line(SCENARIO, whole, &gateway, &reference));
    bench.report.push(line(RELAY, whole, &bare, &reference));
    let events = bench.plan.sse.sse_events;
    let streams = format!("instructions per stream of {events} events, 4 conns");
    bench.report.push(line(STREAMS, &streams, &gateway_streams, &reference_streams));
    let figures = |of: &PerRequest| json!({"per_request": of.instructions, "requests": of.requests});
    bench.report.raw(
        "instructions",
        json!({
            "gateway": figures(&gateway),
            "nginx": figures(&reference),
            "bare_relay": figures(&bare),
            "gateway_streams": figures(&gateway_streams),
            "nginx_streams": figures(&reference_streams),
            "events_per_stream": events,
        }),
    );
    Ok(())
}

/// The requests of a window: whole answers, or streams read to their end.
#[derive(Clone, Copy)]
enum Load<'a> {
    Whole(&'a Arc<Target>),
    Streams(&'a Arc<Target>),
}

/// What one proxy ran for the requests of a window.
struct PerRequest {
    instructions: f64,
    requests: u64,
}

/// Warms the load's target up, then counts the instructions process `pid` (under callgrind,
/// writing to `out`) runs for a window of it.
async fn per_request(
    bench: &mut Bench,
    callgrind: &Callgrind,
    pid: u32,
    load: Load<'_>,
    out: &Path,
) -> Result<PerRequest> {
    // At least a second: under callgrind a debug build (the smoke run's) answers a few dozen
    // requests a second.
    let measure = bench.plan.throughput_window.max(Duration::from_secs(1));
    // valgrind translates code the first time it runs: the warm-up keeps that out of the count.
    run(bench, load, measure / 2).await?;
    callgrind.zero(pid)?;
    let (requests, failed) = run(bench, load, measure).await?;
    let instructions = callgrind.dump(pid, out)?;
    if failed > 0 || requests == 0 {
        bench.problems.push(format!("{}: {failed} failed, {requests} answered in full", load.target().name));
    }
    Ok(PerRequest { instructions: instructions as f64 / requests.max(1) as f64, requests })
}

/// Runs `load` for `measure` on [`CONNECTIONS`] connections; returns the requests answered in
/// full and those that failed.
async fn run(bench: &Bench, load: Load<'_>, measure: Duration) -> Result<(u64, u64)> {
    Ok(match load {
        Load::Whole(target) => {
            let outcome =
                load::run(target, Shape { connections: CONNECTIONS, warmup: Duration::ZERO, measure }).await?;
            (outcome.ok, outcome.errors)
        }
        Load::Streams(target) => {
            let outcome = sse::run(target, CONNECTIONS, measure, bench.plan.sse.sse_events).await?;
            (outcome.streams, outcome.failed)
        }
    })
}

impl Load<'_> {
    fn target(&self) -> &Target {
        match self {
            Load::Whole(target) | Load::Streams(target) => target,
        }
    }
}

fn thousands_of_instructions(n: f64) -> String {
    format!("{:.1}k", n / 1e3)
}
