//! The Redis counter store shares round trips between concurrent requests (group commit), keeps
//! each admission atomic inside a shared round trip, and gives back what an admission reserved
//! when nobody is left to use it. Driven on the store itself, against a real Redis.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;
use futures_util::FutureExt;
use switchyard::limits_store::RedisCounters;
use switchyard_sdk::{Admission, Counter, CounterStore, RedisSettings};

use crate::harness::redis::Redis;

fn store(redis: &Redis) -> Arc<dyn CounterStore> {
    let settings = RedisSettings {
        host: "127.0.0.1".into(),
        port: redis.port,
        username: None,
        password: None,
        database: 0,
        timeout: Duration::from_secs(2),
        ssl: false,
        ssl_verify: false,
    };
    Arc::new(RedisCounters::new(&settings))
}

/// A gauge (no window), so its stored key is `key` itself.
fn gauge(key: &str, limit: u64) -> Counter {
    Counter { key: key.into(), limit, window: None, cost: 1 }
}

async fn connection(redis: &Redis) -> redis::aio::MultiplexedConnection {
    let client = redis::Client::open(format!("redis://127.0.0.1:{}", redis.port)).unwrap();
    client.get_multiplexed_async_connection().await.unwrap()
}

/// How many scripts the server has run (`EVALSHA` and `EVAL` calls).
async fn script_calls(redis: &Redis) -> u64 {
    let info: String = redis::cmd("INFO").arg("commandstats").query_async(&mut connection(redis).await).await.unwrap();
    info.lines()
        .filter(|line| line.starts_with("cmdstat_evalsha:") || line.starts_with("cmdstat_eval:"))
        .filter_map(|line| line.split("calls=").nth(1)?.split(',').next()?.parse::<u64>().ok())
        .sum()
}

async fn value(redis: &Redis, key: &str) -> Option<i64> {
    redis::cmd("GET").arg(key).query_async(&mut connection(redis).await).await.unwrap()
}

#[tokio::test]
async fn fifty_concurrent_admissions_share_one_round_trip_and_each_stays_all_or_none() {
    let redis = Redis::start().await;
    let store = store(&redis);
    // The first admission connects and loads the script.
    assert!(matches!(store.reserve(&[gauge("warm", 10)]).await, Ok(Admission::Admitted { .. })));
    let before = script_calls(&redis).await;
    // Two counters per admission; the second one's limit (10) is what runs out.
    let counters = [gauge("{bench}:wide", 1_000), gauge("{bench}:narrow", 10)];
    let answers = join_all((0..50).map(|_| store.reserve(&counters))).await;
    let admitted = answers.iter().filter(|a| matches!(a, Ok(Admission::Admitted { .. }))).count();
    let rejected = answers.iter().filter(|a| matches!(a, Ok(Admission::Rejected { index: 1, .. }))).count();
    assert_eq!((admitted, rejected), (10, 40), "answers: {answers:?}");
    assert_eq!(script_calls(&redis).await - before, 1, "fifty admissions queued together go in one call");
    assert_eq!(value(&redis, "{bench}:narrow").await, Some(10));
    assert_eq!(value(&redis, "{bench}:wide").await, Some(10), "a rejected admission charges none of its counters");
}

#[tokio::test]
async fn settlements_queue_behind_a_round_trip_and_go_in_the_next() {
    let redis = Redis::start().await;
    let store = store(&redis);
    let counters = [gauge("inflight", 100)];
    for _ in 0..20 {
        store.reserve(&counters).await.unwrap();
    }
    let before = script_calls(&redis).await;
    for _ in 0..20 {
        store.settle(vec![("inflight".into(), -1)]);
    }
    tokio::time::timeout(Duration::from_secs(5), async {
        while value(&redis, "inflight").await != Some(0) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("every settlement reaches Redis");
    let calls = script_calls(&redis).await - before;
    assert!((1..=2).contains(&calls), "twenty settlements made {calls} calls");
}

#[tokio::test]
async fn an_admission_whose_request_left_before_its_answer_is_given_back() {
    let redis = Redis::start().await;
    let store = store(&redis);
    store.reserve(&[gauge("warm", 10)]).await.unwrap();
    // Polled once (queued, its round trip started), then dropped, as a request whose client
    // went away is.
    let abandoned = store.reserve(&[gauge("left", 10)]).now_or_never();
    assert!(abandoned.is_none(), "the admission was still waiting for Redis");
    tokio::time::timeout(Duration::from_secs(5), async {
        while value(&redis, "left").await != Some(0) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the reservation was admitted in Redis, then given back");
}

async fn pttl(redis: &Redis, key: &str) -> i64 {
    redis::cmd("PTTL").arg(key).query_async(&mut connection(redis).await).await.unwrap()
}

/// How many times the server ran command `name` (`cmdstat_<name>` of `INFO commandstats`).
async fn command_calls(redis: &Redis, name: &str) -> u64 {
    let info: String = redis::cmd("INFO").arg("commandstats").query_async(&mut connection(redis).await).await.unwrap();
    let prefix = format!("cmdstat_{name}:calls=");
    info.lines().find_map(|line| line.strip_prefix(&prefix)?.split(',').next()?.parse::<u64>().ok()).unwrap_or(0)
}

/// Inside one round trip each counter is read and written once, whatever the number of
/// admissions on it, and the stored result is what the admissions one by one would leave:
/// exact integers past Lua's 14 printed digits, a window's expiry set once, a gauge's restarted,
/// and a settlement never taking a counter below zero.
#[tokio::test]
async fn a_round_trip_reads_and_writes_each_counter_once_with_exact_values_and_expiries() {
    let redis = Redis::start().await;
    let store = store(&redis);
    store.reserve(&[gauge("warm", 10)]).await.unwrap();
    let big = 123_456_789_012_345u64;
    let windowed =
        Counter { key: "{w}:tokens".into(), limit: u64::MAX / 4, window: Some(Duration::from_secs(60)), cost: big };
    let (gets, sets) = (command_calls(&redis, "get").await, command_calls(&redis, "set").await);
    let answers = join_all((0..20).map(|_| store.reserve(std::slice::from_ref(&windowed)))).await;
    assert!(answers.iter().all(|a| matches!(a, Ok(Admission::Admitted { .. }))), "{answers:?}");
    let Ok(Admission::Admitted { keys, .. }) = &answers[0] else { unreachable!() };
    let stored = keys[0].clone();
    assert_eq!(value(&redis, &stored).await, Some(20 * big as i64), "the stored counter is an exact integer");
    let calls = script_calls(&redis).await;
    let (read, written) = (command_calls(&redis, "get").await - gets, command_calls(&redis, "set").await - sets);
    assert!(read <= calls && written <= calls, "{read} reads and {written} writes for at most {calls} round trips");
    let ttl = pttl(&redis, &stored).await;
    assert!((1..=60_000).contains(&ttl), "the window's counter expires with its window: {ttl}");

    // A refund larger than what is left stops at zero and keeps the window's expiry.
    store.settle(vec![(stored.clone(), -(21 * big as i64))]);
    tokio::time::timeout(Duration::from_secs(5), async {
        while value(&redis, &stored).await != Some(0) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the refund reaches Redis");
    assert!(pttl(&redis, &stored).await > 0, "settling keeps the expiry");

    // A gauge's time to live restarts with each admission.
    store.reserve(&[gauge("g", 10)]).await.unwrap();
    redis::cmd("PEXPIRE").arg("g").arg(1_000).query_async::<()>(&mut connection(&redis).await).await.unwrap();
    store.reserve(&[gauge("g", 10)]).await.unwrap();
    assert!(pttl(&redis, "g").await > 1_000, "the gauge's expiry restarted");
    assert_eq!(value(&redis, "g").await, Some(2));
}

/// A counter with a window, as token limits use (its stored key gets the window's start).
fn tokens(key: &str, limit: u64, cost: u64) -> Counter {
    Counter { key: key.into(), limit, window: Some(Duration::from_secs(3600)), cost }
}

/// A busy counter is mostly admitted from the node's lease: a script call per growing batch of
/// requests, and on one node the remaining it reports is exactly what is left.
#[tokio::test]
async fn a_busy_counter_is_admitted_from_a_lease_with_exact_states_on_one_node() {
    let redis = Redis::start().await;
    let store = store(&redis);
    store.reserve(&[gauge("warm", 10)]).await.unwrap();
    let before = script_calls(&redis).await;
    let counter = tokens("{lease}:tokens", 1_000_000, 10);
    let mut last = None;
    for _ in 0..200 {
        let answer = store.reserve(std::slice::from_ref(&counter)).await;
        let Ok(Admission::Admitted { keys, states }) = answer else { panic!("refused: {answer:?}") };
        last = Some((keys, states));
    }
    let calls = script_calls(&redis).await - before;
    assert!(calls <= 12, "200 admissions made {calls} script calls");
    let (keys, states) = last.expect("admitted");
    assert_eq!(states[0].remaining, 1_000_000 - 2_000, "what this node admitted, exactly");
    let stored = value(&redis, &keys[0]).await.expect("stored");
    assert!((2_000..=2_000 + 256 * 10).contains(&stored), "Redis holds what was admitted and the lease: {stored}");

    // A refund stays in the lease (no script call); the next admission uses it.
    let calls = script_calls(&redis).await;
    store.settle(vec![(keys[0].clone(), -10)]);
    assert!(matches!(store.reserve(std::slice::from_ref(&counter)).await, Ok(Admission::Admitted { .. })));
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(script_calls(&redis).await, calls, "a refund the lease can hold stays in it");
}

/// Two nodes leasing one counter: together they never admit past the limit plus one
/// reservation, and the leases they still hold when refused strand almost nothing.
#[tokio::test]
async fn two_nodes_leasing_one_counter_admit_up_to_the_limit_and_never_past_it() {
    let redis = Redis::start().await;
    let nodes = [store(&redis), store(&redis)];
    let counter = tokens("{two}:tokens", 10_000, 10);
    let (mut admitted, mut open) = (0u64, [true, true]);
    while open.contains(&true) {
        for (node, open) in nodes.iter().zip(open.iter_mut()).filter(|(_, open)| **open) {
            match node.reserve(std::slice::from_ref(&counter)).await.expect("Redis answers") {
                Admission::Admitted { .. } => admitted += 1,
                Admission::Rejected { .. } => *open = false,
            }
        }
    }
    assert!(admitted * 10 <= 10_000 + 10, "{admitted} admitted");
    assert!(admitted * 10 >= 9_800, "only {admitted} admitted: leases stranded too much");
}
