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
