//! The load generator: a closed loop of keep-alive HTTP/1.1 connections (raw hyper client, so the
//! client costs little and the same for every target), each sending the next request as soon as
//! the previous answer is read whole. Latencies go to an HDR histogram in nanoseconds.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hdrhistogram::Histogram;
use http::header::{HeaderName, HeaderValue, CONTENT_TYPE, HOST};
use http::{Method, Request};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{handshake, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::Result;

/// Consecutive failures after which a connection gives up (the target is down, not slow).
const MAX_CONSECUTIVE_ERRORS: u32 = 50;

/// One kind of request, sent again and again.
#[derive(Debug, Clone)]
pub struct Target {
    /// What the table calls it.
    pub name: String,
    pub addr: SocketAddr,
    pub path: String,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub body: Bytes,
    /// The status a correct answer has; any other counts as an error.
    pub expect: u16,
    /// The processes doing this target's proxying, whose CPU time per request is reported
    /// (empty: not measured, as for a direct call).
    pub cpu_of: Vec<u32>,
}

impl Target {
    /// A JSON POST to `addr` `path`, expecting 200.
    pub fn post(name: &str, addr: SocketAddr, path: &str, body: &str) -> Target {
        Target {
            name: name.into(),
            addr,
            path: path.into(),
            headers: Vec::new(),
            body: Bytes::copy_from_slice(body.as_bytes()),
            expect: 200,
            cpu_of: Vec::new(),
        }
    }

    /// Reports the CPU time `pids` spend per request of this target.
    pub fn cpu_of(mut self, pids: Vec<u32>) -> Target {
        self.cpu_of = pids;
        self
    }

    pub fn header(mut self, name: &'static str, value: &str) -> Result<Target> {
        self.headers.push((HeaderName::from_static(name), HeaderValue::from_str(value)?));
        Ok(self)
    }

    /// Builds the next request (client-side work, the same for every target).
    pub fn request(&self) -> Result<Request<Full<Bytes>>> {
        let mut builder = Request::builder()
            .method(Method::POST)
            .uri(self.path.as_str())
            .header(HOST, self.addr.to_string())
            .header(CONTENT_TYPE, "application/json");
        for (name, value) in &self.headers {
            builder = builder.header(name, value);
        }
        Ok(builder.body(Full::new(self.body.clone()))?)
    }
}

/// A keep-alive connection ready to send.
pub async fn connect(addr: SocketAddr) -> Result<SendRequest<Full<Bytes>>> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (sender, connection) = handshake(TokioIo::new(stream)).await?;
    // The connection task ends when its sender is dropped or the peer closes.
    tokio::spawn(connection);
    Ok(sender)
}

/// How long and how wide one load run is.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    pub connections: usize,
    /// Sent but not counted: connections open, pools fill, caches warm.
    pub warmup: Duration,
    pub measure: Duration,
}

/// What a run (or several merged) measured.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Correct answers completed inside the measured window.
    pub ok: u64,
    /// Wrong statuses and transport errors, over the whole run.
    pub errors: u64,
    /// The measured time, summed over merged runs.
    pub measured: Duration,
    /// Latency of each counted request, in nanoseconds.
    pub latency: Histogram<u64>,
    /// CPU time the target's proxy processes used during the measured windows.
    pub cpu: Duration,
}

impl Outcome {
    pub fn new() -> Result<Outcome> {
        Ok(Outcome { ok: 0, errors: 0, measured: Duration::ZERO, latency: histogram()?, cpu: Duration::ZERO })
    }

    pub fn merge(&mut self, other: &Outcome) -> Result<()> {
        self.ok += other.ok;
        self.errors += other.errors;
        self.measured += other.measured;
        self.cpu += other.cpu;
        self.latency.add(&other.latency)?;
        Ok(())
    }

    pub fn rps(&self) -> f64 {
        self.ok as f64 / self.measured.as_secs_f64().max(1e-9)
    }

    /// CPU microseconds the proxy processes spent per counted request (0 when not measured).
    pub fn cpu_micros_per_request(&self) -> f64 {
        self.cpu.as_secs_f64() * 1e6 / (self.ok.max(1) as f64)
    }

    /// The latency at `quantile` (0.5, 0.99), in microseconds.
    pub fn micros(&self, quantile: f64) -> f64 {
        self.latency.value_at_quantile(quantile) as f64 / 1e3
    }
}

/// A histogram of nanoseconds from 1 µs to 60 s at 3 significant digits.
pub fn histogram() -> Result<Histogram<u64>> {
    Ok(Histogram::new_with_bounds(1_000, 60_000_000_000, 3)?)
}

/// Runs `shape.connections` closed loops against `target`; returns when the window is over.
pub async fn run(target: &Arc<Target>, shape: Shape) -> Result<Outcome> {
    let start = Instant::now();
    let window = (start + shape.warmup, start + shape.warmup + shape.measure);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..shape.connections {
        tasks.spawn(connection_loop(Arc::clone(target), window));
    }
    let cpu = (!target.cpu_of.is_empty()).then(|| tokio::spawn(cpu_during(target.cpu_of.clone(), window)));
    let mut total = Outcome::new()?;
    while let Some(joined) = tasks.join_next().await {
        total.merge(&joined??)?;
    }
    total.measured = shape.measure;
    if let Some(cpu) = cpu {
        total.cpu = cpu.await?;
    }
    Ok(total)
}

/// The CPU time `pids` use between the window's start and end.
async fn cpu_during(pids: Vec<u32>, (from, until): (Instant, Instant)) -> Duration {
    tokio::time::sleep_until(from).await;
    let before = crate::process::cpu_nanos(&pids);
    tokio::time::sleep_until(until).await;
    Duration::from_nanos(crate::process::cpu_nanos(&pids).saturating_sub(before))
}

/// One connection's loop: reconnects after a failure, stops at the window's end.
async fn connection_loop(target: Arc<Target>, (from, until): (Instant, Instant)) -> Result<Outcome> {
    let mut outcome = Outcome::new()?;
    let mut sender: Option<SendRequest<Full<Bytes>>> = None;
    let mut consecutive_errors = 0;
    while Instant::now() < until && consecutive_errors < MAX_CONSECUTIVE_ERRORS {
        let mut ready = match sender.take() {
            Some(sender) => sender,
            None => match connect(target.addr).await {
                Ok(sender) => sender,
                Err(_) => {
                    outcome.errors += 1;
                    consecutive_errors += 1;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        if ready.ready().await.is_err() {
            outcome.errors += 1;
            consecutive_errors += 1;
            continue;
        }
        let request = target.request()?;
        let sent = Instant::now();
        let ok = match ready.send_request(request).await {
            Ok(response) => {
                let status = response.status().as_u16();
                response.into_body().collect().await.is_ok() && status == target.expect
            }
            Err(_) => false,
        };
        let done = Instant::now();
        if !ok {
            outcome.errors += 1;
            consecutive_errors += 1;
            continue;
        }
        consecutive_errors = 0;
        sender = Some(ready);
        if sent >= from && done <= until {
            outcome.ok += 1;
            outcome.latency.record(saturating_nanos(done - sent))?;
        }
    }
    Ok(outcome)
}

pub fn saturating_nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX).clamp(1_000, 60_000_000_000)
}

/// Measures several targets with the same shape, interleaved round by round (A B C, C B A, ...)
/// so that a neighbour's burst of CPU use on this shared machine hits them all alike. Each
/// round measures `shape.measure / rounds`.
pub async fn interleaved(targets: &[Arc<Target>], shape: Shape, rounds: u32) -> Result<Vec<Outcome>> {
    let mut outcomes = Vec::with_capacity(targets.len());
    for _ in targets {
        outcomes.push(Outcome::new()?);
    }
    let round = Shape { measure: shape.measure / rounds.max(1), ..shape };
    for number in 0..rounds.max(1) {
        for index in round_order(targets.len(), number) {
            outcomes[index].merge(&run(&targets[index], round).await?)?;
        }
    }
    Ok(outcomes)
}

/// The order round `round` measures `count` targets in: forwards in even rounds, backwards in odd
/// ones, so that over an even number of rounds every target's mean place is the same (a target
/// measured right after another meets the state that one left: its connections closing, the
/// machine's clock speed).
pub fn round_order(count: usize, round: u32) -> impl Iterator<Item = usize> {
    let backwards = round % 2 == 1;
    (0..count).map(move |i| if backwards { count - 1 - i } else { i })
}

/// Sends one request on a fresh connection: its status and body.
pub async fn once(target: &Target) -> Result<(u16, Bytes)> {
    let mut sender = connect(target.addr).await?;
    let response = sender.send_request(target.request()?).await?;
    let status = response.status().as_u16();
    Ok((status, response.into_body().collect().await?.to_bytes()))
}
