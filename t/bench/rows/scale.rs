//! Row 6: 10,000 routes. A store is filled through the admin API (on tmpfs, where fsync is
//! free, so filling takes seconds), then a node starts on a copy of it on disk: the time from
//! process start to serving the last route is the load time. Then single-route changes are timed
//! from the admin write to the proxy serving them, and throughput on one route is compared with
//! the 10-route main node.
//!
//! Row 10: what route `vars` cost at that scale. Two stores of as many routes on the same paths,
//! one where every route has `vars` and one without; a node on each, their middle routes loaded
//! in turns in the same run.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::stream::{self, StreamExt, TryStreamExt};
use serde_json::{json, Value};

use super::{chat, check, summary, until_served};
use crate::load::{self, Shape, Target};
use crate::node::{embedded_store, Node};
use crate::report::{micros, thousands, Line, Verdict};
use crate::routes::{self, CHAT};
use crate::{fresh_dir, Bench, Result};

/// Admin writes in flight while filling the store.
const FILL_CONCURRENCY: usize = 16;
/// How long a change may take to go live before the bench calls it lost.
const CHANGE_PATIENCE: Duration = Duration::from_secs(30);

pub async fn measure(bench: &mut Bench, main: &Node) -> Result<()> {
    let plan = bench.plan.clone();
    let routes = plan.routes;
    eprintln!("bench: row 6, filling a store with {routes} routes");
    let store = bench.work.join("scale").join("store");
    let ok = bench.mock.ok;
    let fill_time = fill(bench, &store, |i| routes::chat_route(&route_path(i), ok)).await?;

    eprintln!("bench: row 6, starting a node on {routes} routes");
    let last = Target::post("last route", ([127, 0, 0, 1], 0).into(), &route_path(routes - 1), CHAT);
    let started = Instant::now();
    let mut node = Node::spawn(&bench.bin, &bench.work.join("scale"), &embedded_store(&store))?;
    let last = Target { addr: node.proxy, ..last };
    let load_time = until_served(&last, started, Duration::from_secs(60)).await?;
    node.wait_ready().await?;

    eprintln!("bench: row 6, {} single-route changes", plan.changes);
    let mut changes = Vec::with_capacity(plan.changes);
    for k in 0..plan.changes {
        let path = format!("/bench/changed/{k}");
        let route = routes::chat_route(&path, bench.mock.ok);
        let probe = Target::post("changed route", node.proxy, &path, CHAT);
        let written = Instant::now();
        node.put_route(&route_id(k), &route).await?;
        changes.push(until_served(&probe, written, CHANGE_PATIENCE).await?);
    }
    changes.sort();

    eprintln!("bench: row 6, throughput with {routes} routes vs 10");
    let mid = Arc::new(Target::post("10,000 routes", node.proxy, &route_path(routes / 2), CHAT));
    let targets = [chat::direct(bench)?, chat::ai_proxy(main), mid];
    let shape = Shape { connections: plan.connections, warmup: plan.warmup, measure: plan.throughput_window };
    let outcomes = load::interleaved(&targets, shape, plan.rounds).await?;
    check(bench, "10 routes", &outcomes[1]);
    check(bench, &format!("{routes} routes"), &outcomes[2]);
    node.stop();

    let change_ms: Vec<f64> = changes.iter().map(|d| d.as_secs_f64() * 1e3).collect();
    let p50 = changes[changes.len() / 2];
    let worst = changes[changes.len() - 1];
    bench.report.raw(
        "scale",
        json!({
            "routes": routes, "fill_s": fill_time.as_secs_f64(), "load_ms": load_time.as_secs_f64() * 1e3,
            "change_ms": change_ms, "direct": summary(&outcomes[0]), "routes_10": summary(&outcomes[1]),
            "routes_many": summary(&outcomes[2]),
        }),
    );
    let scenario = format!("{} routes", thousands(routes as f64));
    let ms = |d: Duration| micros(d.as_secs_f64() * 1e6);
    bench.report.push(Line {
        gateway: ms(load_time),
        versus: format!("(filling them by admin API took {:.1} s)", fill_time.as_secs_f64()),
        target: "≤ 1 s".into(),
        verdict: Verdict::of(load_time <= Duration::from_secs(1)),
        ..Line::new(6, &scenario, "load: process start → last route served")
    });
    bench.report.push(Line {
        gateway: format!("p50 {}, max {}", ms(p50), ms(worst)),
        target: "≤ 50 ms".into(),
        verdict: Verdict::of(p50 <= Duration::from_millis(50)),
        ..Line::new(6, &scenario, &format!("one change live (admin PUT → served), {} changes", changes.len()))
    });
    let (d, ten, many) = (outcomes[0].rps(), outcomes[1].rps(), outcomes[2].rps());
    bench.report.push(Line {
        direct: format!("{} req/s", thousands(d)),
        gateway: format!("{} req/s vs {} req/s", thousands(many), thousands(ten)),
        versus: format!("{:.2}× (10 routes: {:.2}× direct)", many / ten.max(1e-9), ten / d.max(1e-9)),
        target: "≥ 0.95× of 10 routes".into(),
        verdict: Verdict::of(many >= 0.95 * ten),
        ..Line::new(6, &scenario, &format!("req/s, 64 conns: {scenario} vs 10"))
    });
    Ok(())
}

/// Row 10. The conditions of each route hold for the bench's request (so both tables serve the
/// same route the same way); one of them names the route, so no two routes' `vars` are alike.
pub async fn measure_vars(bench: &mut Bench) -> Result<()> {
    let plan = bench.plan.clone();
    let routes = plan.routes;
    let ok = bench.mock.ok;
    let mut nodes = Vec::new();
    let mut load_ms = Vec::new();
    for with_vars in [false, true] {
        let name = if with_vars { "vars" } else { "plain" };
        eprintln!("bench: row 10, filling a store with {routes} routes ({name})");
        let dir = bench.work.join("scale-vars").join(name);
        let store = dir.join("store");
        fill(bench, &store, |i| if with_vars { vars_route(i, ok) } else { routes::chat_route(&route_path(i), ok) })
            .await?;
        let started = Instant::now();
        let node = Node::spawn(&bench.bin, &dir, &embedded_store(&store))?;
        let last = Target::post("last route", node.proxy, &route_path(routes - 1), CHAT);
        load_ms.push(until_served(&last, started, Duration::from_secs(60)).await?.as_secs_f64() * 1e3);
        nodes.push(node);
    }
    for node in &mut nodes {
        node.wait_ready().await?;
    }

    eprintln!("bench: row 10, throughput on {routes} routes with vars vs without");
    let middle = route_path(routes / 2);
    let target =
        |name: &str, node: &Node| Arc::new(Target::post(name, node.proxy, &middle, CHAT).cpu_of(vec![node.pid()]));
    let targets = [target("without vars", &nodes[0]), target("with vars", &nodes[1])];
    let shape = Shape { connections: plan.connections, warmup: plan.warmup, measure: plan.throughput_window };
    let outcomes = load::interleaved(&targets, shape, plan.rounds).await?;
    for node in nodes {
        node.stop();
    }
    check(bench, &format!("{routes} routes without vars"), &outcomes[0]);
    check(bench, &format!("{routes} routes with vars"), &outcomes[1]);
    bench.report.raw(
        "scale_vars",
        json!({"routes": routes, "load_ms": {"plain": load_ms[0], "vars": load_ms[1]},
            "plain": summary(&outcomes[0]), "vars": summary(&outcomes[1])}),
    );
    let scenario =
        format!("{} routes, every one with `vars` (gateway column) vs none (direct column)", thousands(routes as f64));
    let (plain, with_vars) = (&outcomes[0], &outcomes[1]);
    bench.report.push(Line::against(10, &scenario, "req/s, 64 conns", plain.rps(), with_vars.rps(), 0.95));
    bench.report.push(Line::cpu_against(10, &scenario, plain, with_vars));
    Ok(())
}

/// A chat route at route `i`'s path whose `vars` the bench's request meets: four conditions,
/// a regex among them, the last naming the route.
fn vars_route(i: usize, mock: SocketAddr) -> Value {
    let mut route = routes::chat_route(&route_path(i), mock);
    route["vars"] = json!([
        ["request_method", "==", "POST"],
        ["http_content_type", "~*", "^application/json"],
        ["host", "~=", "blocked.example.com"],
        ["arg_tenant", "~=", format!("not-{i}")],
    ]);
    route
}

fn route_id(i: usize) -> String {
    format!("scale-{i}")
}

fn route_path(i: usize) -> String {
    format!("/bench/scale/{i}")
}

/// Fills `store` with `plan.routes` routes (`route(i)` at id `scale-<i>`) through a node's admin
/// API and stops that node cleanly. The node runs on tmpfs when there is one; the store is then
/// copied to `store`.
async fn fill(bench: &Bench, store: &Path, route: impl Fn(usize) -> Value) -> Result<Duration> {
    let scratch = scratch_dir(bench)?;
    let scratch_store = scratch.join("store");
    let node = Node::start(&bench.bin, &scratch, &embedded_store(&scratch_store)).await?;
    let started = Instant::now();
    let (node_ref, route) = (&node, &route);
    let revisions: Vec<u64> = stream::iter(0..bench.plan.routes)
        .map(|i| async move { node_ref.put_route(&route_id(i), &route(i)).await })
        .buffer_unordered(FILL_CONCURRENCY)
        .try_collect()
        .await?;
    node.wait_revision(revisions.into_iter().max().unwrap_or(0)).await?;
    let took = started.elapsed();
    node.stop();
    fresh_dir(store)?;
    for entry in std::fs::read_dir(&scratch_store)? {
        let entry = entry?;
        std::fs::copy(entry.path(), store.join(entry.file_name()))?;
    }
    let _ = std::fs::remove_dir_all(&scratch);
    Ok(took)
}

/// A folder on tmpfs (`/dev/shm`) when the machine has one, else under the bench's work folder.
fn scratch_dir(bench: &Bench) -> Result<PathBuf> {
    let shm = Path::new("/dev/shm");
    let base = if shm.is_dir() { shm.to_path_buf() } else { bench.work.clone() };
    let dir = base.join(format!("switchyard-bench-fill-{}", std::process::id()));
    fresh_dir(&dir)?;
    Ok(dir)
}
