//! Row 11: what caller keys and token quotas cost. A route with `key-auth` and `ai-rate-limiting`
//! (policy `redis`, on a Redis of the bench's own: one script round trip to reserve, one to
//! settle) against the same `ai-proxy` route without them, same node, same load, interleaved.
//! The same plugins with policy `local` run beside them, so the table shows what the plugins
//! cost apart from Redis.

use std::sync::Arc;

use serde_json::json;

use super::{chat, check, summary};
use crate::load::{self, Shape, Target};
use crate::node::Node;
use crate::redis::RedisProcess;
use crate::report::{Line, Verdict};
use crate::routes::{self, CHAT};
use crate::{Bench, Result};

const SCENARIO: &str = "key-auth + ai-rate-limiting on Redis (gateway column) vs the same ai-proxy route without \
                        (direct column)";
const LOCAL: &str = "reference: the same with policy local (gateway column) vs without (direct column)";
const CALLER_KEY: &str = "bench-caller-key-0001";

pub async fn measure(bench: &mut Bench, main: &Node) -> Result<()> {
    let Some(binary) = RedisProcess::binary() else {
        bench.report.push(Line::skipped(11, SCENARIO, "redis-server is not installed (make bench installs it)"));
        return Ok(());
    };
    let redis = RedisProcess::start(&binary, &bench.work.join("redis")).await?;
    let consumer = json!({"username": "bench", "plugins": {"key-auth": {"key": CALLER_KEY}}});
    main.put("consumers/bench", &consumer).await?;
    // A budget no run spends: every request is reserved and settled, none refused.
    let limiting = json!({"limit": 1_000_000_000_000_u64, "time_window": 3600, "policy": "redis",
        "redis_host": "127.0.0.1", "redis_port": redis.port});
    let route = json!({"paths": ["/bench/quota"], "plugins": {"ai-proxy": routes::ai_proxy(bench.mock.ok),
        "key-auth": {}, "ai-rate-limiting": limiting}});
    main.put_route("quota", &route).await?;
    let local = json!({"limit": 1_000_000_000_000_u64, "time_window": 3600});
    let route = json!({"paths": ["/bench/quota-local"], "plugins": {"ai-proxy": routes::ai_proxy(bench.mock.ok),
        "key-auth": {}, "ai-rate-limiting": local}});
    let revision = main.put_route("quota-local", &route).await?;
    main.wait_revision(revision).await?;
    let quota = Target::post("key-auth + ai-rate-limiting (redis)", main.proxy, "/bench/quota", CHAT)
        .header("apikey", CALLER_KEY)?
        .cpu_of(vec![main.pid(), redis.pid()]);
    let local = Target::post("key-auth + ai-rate-limiting (local)", main.proxy, "/bench/quota-local", CHAT)
        .header("apikey", CALLER_KEY)?
        .cpu_of(vec![main.pid()]);
    let targets = [chat::ai_proxy(main), Arc::new(quota), Arc::new(local)];
    for target in &targets {
        let (status, body) = load::once(target).await?;
        if status != 200 {
            return Err(format!("{} answered {status}: {}", target.name, String::from_utf8_lossy(&body)).into());
        }
    }
    let plan = bench.plan.clone();
    eprintln!("bench: row 11, {} connections", plan.connections);
    // Twice the rounds of the other rows: the 10 % target is narrower than one 4-round run's
    // spread (seven runs of one build gave 0.87× to 0.97×).
    let measure = plan.throughput_window * 2;
    let shape = Shape { connections: plan.connections, warmup: plan.warmup, measure };
    let wide = load::interleaved(&targets, shape, plan.rounds * 2).await?;
    let narrow = Shape { connections: 1, warmup: plan.warmup, measure: plan.latency_window };
    let narrow = load::interleaved(&targets, narrow, plan.rounds).await?;
    drop(redis);
    for (i, target) in targets.iter().enumerate() {
        check(bench, &format!("{} at {} connections", target.name, plan.connections), &wide[i]);
        bench
            .report
            .raw(&format!("quota/{}", target.name), json!({"c64": summary(&wide[i]), "c1": summary(&narrow[i])}));
    }
    let (plain, limited) = (&wide[0], &wide[1]);
    bench.report.push(Line::throughput(11, SCENARIO, "req/s, 64 conns", plain.rps(), limited.rps(), Some(0.9)));
    let (plain1, limited1) = (&narrow[0], &narrow[1]);
    bench.report.push(Line::latency(11, SCENARIO, "p50, 1 conn", plain1.micros(0.5), limited1.micros(0.5), None));
    let local = &wide[2];
    bench.report.push(Line::throughput(11, LOCAL, "req/s, 64 conns", plain.rps(), local.rps(), None));
    bench.report.push(Line::latency(11, LOCAL, "p50, 1 conn", plain1.micros(0.5), narrow[2].micros(0.5), None));
    bench.report.push(Line {
        direct: format!("{:.1} µs", plain.cpu_micros_per_request()),
        gateway: format!("{:.1} µs", limited.cpu_micros_per_request()),
        verdict: Verdict::Info,
        ..Line::new(11, SCENARIO, "CPU per request, 64 conns (gateway column: with Redis's)")
    });
    bench.report.push(Line {
        direct: format!("{:.1} µs", plain.cpu_micros_per_request()),
        gateway: format!("{:.1} µs", local.cpu_micros_per_request()),
        verdict: Verdict::Info,
        ..Line::new(11, LOCAL, "CPU per request, 64 conns")
    });
    Ok(())
}
