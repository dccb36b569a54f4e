//! Streaming measurement: closed loops of `"stream": true` requests, each read frame by frame.
//! Per stream: time to the first body byte, and per event the delay from the moment the mock
//! handed it to its socket (its `id:` holds that wall-clock time) to the moment it arrived here;
//! both processes read the same system clock. Counting the frames tells whether anything on the
//! way coalesced events.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use tokio::time::Instant;

use crate::load::{connect, histogram, saturating_nanos, Target};
use crate::Result;

/// What a set of streams measured.
#[derive(Debug, Clone)]
pub struct StreamOutcome {
    /// Streams read to the end with a 200.
    pub streams: u64,
    pub failed: u64,
    /// Request sent → first body frame, nanoseconds.
    pub ttfb: Histogram<u64>,
    /// Mock hands an event to its socket → the event is read here, nanoseconds.
    pub event_delay: Histogram<u64>,
    pub frames: u64,
    pub events: u64,
    /// Streams whose frame count differed from the events the mock sent.
    pub coalesced: u64,
}

impl StreamOutcome {
    fn new() -> Result<StreamOutcome> {
        Ok(StreamOutcome {
            streams: 0,
            failed: 0,
            ttfb: histogram()?,
            event_delay: histogram()?,
            frames: 0,
            events: 0,
            coalesced: 0,
        })
    }

    pub fn merge(&mut self, other: &StreamOutcome) -> Result<()> {
        self.streams += other.streams;
        self.failed += other.failed;
        self.ttfb.add(&other.ttfb)?;
        self.event_delay.add(&other.event_delay)?;
        self.frames += other.frames;
        self.events += other.events;
        self.coalesced += other.coalesced;
        Ok(())
    }
}

/// Runs `connections` loops of streams against `target` for `measure`; `events` is what the
/// mock sends per stream.
pub async fn run(target: &Arc<Target>, connections: usize, measure: Duration, events: usize) -> Result<StreamOutcome> {
    let until = Instant::now() + measure;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..connections {
        let target = Arc::clone(target);
        tasks.spawn(async move {
            let mut outcome = StreamOutcome::new()?;
            let mut sender = None;
            while Instant::now() < until && outcome.failed < 10 {
                let mut ready = match sender.take() {
                    Some(ready) => ready,
                    None => connect(target.addr).await?,
                };
                match one_stream(&target, &mut ready, events, &mut outcome).await {
                    Ok(()) => sender = Some(ready),
                    Err(_) => outcome.failed += 1,
                }
            }
            Ok::<_, crate::BoxError>(outcome)
        });
    }
    let mut total = StreamOutcome::new()?;
    while let Some(joined) = tasks.join_next().await {
        total.merge(&joined??)?;
    }
    Ok(total)
}

/// Direct and gateway streams alternately, `rounds` times, each round `measure / rounds`, in
/// [`crate::load::round_order`].
pub async fn interleaved(
    targets: &[Arc<Target>],
    connections: usize,
    measure: Duration,
    rounds: u32,
    events: usize,
) -> Result<Vec<StreamOutcome>> {
    let mut outcomes = Vec::with_capacity(targets.len());
    for _ in targets {
        outcomes.push(StreamOutcome::new()?);
    }
    for number in 0..rounds.max(1) {
        for index in crate::load::round_order(targets.len(), number) {
            outcomes[index].merge(&run(&targets[index], connections, measure / rounds.max(1), events).await?)?;
        }
    }
    Ok(outcomes)
}

/// Sends one streaming request on a keep-alive connection and reads it to the end.
async fn one_stream(
    target: &Target,
    sender: &mut SendRequest<Full<Bytes>>,
    expected_events: usize,
    outcome: &mut StreamOutcome,
) -> Result<()> {
    sender.ready().await?;
    let sent = Instant::now();
    let response = sender.send_request(target.request()?).await?;
    if response.status().as_u16() != target.expect {
        return Err(format!("status {}", response.status()).into());
    }
    let mut body = response.into_body();
    let (mut frames, mut events) = (0usize, 0usize);
    let mut partial = Vec::new();
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame?.into_data() else { continue };
        let arrived = crate::unix_nanos();
        if frames == 0 {
            outcome.ttfb.record(saturating_nanos(sent.elapsed()))?;
        }
        frames += 1;
        partial.extend_from_slice(&data);
        while let Some(end) = partial.windows(2).position(|w| w == b"\n\n") {
            let event: Vec<u8> = partial.drain(..end + 2).collect();
            events += 1;
            if let Some(stamp) = sent_stamp(&event) {
                outcome.event_delay.record(saturating_nanos(Duration::from_nanos(arrived.saturating_sub(stamp))))?;
            }
        }
    }
    outcome.streams += 1;
    outcome.frames += frames as u64;
    outcome.events += events as u64;
    if frames != expected_events || events != expected_events {
        outcome.coalesced += 1;
    }
    Ok(())
}

/// The `id:` line of an event: when the mock sent it (unix nanoseconds).
fn sent_stamp(event: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(event).ok()?;
    text.lines().find_map(|line| line.strip_prefix("id: ")).and_then(|v| v.trim().parse().ok())
}
