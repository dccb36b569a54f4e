//! Where log lines go: a shared buffer that one writer thread empties into stdout
//! [`FLUSH_EVERY`] after its first line, or as soon as it holds [`EAGER_BYTES`]. An empty buffer
//! keeps the thread asleep: an idle gateway does not wake it.
//!
//! Hand-written rather than `tracing_appender::non_blocking`, because that writer hands every
//! line to its thread through a channel, and waking the parked thread costs a futex call and two
//! context switches per line: with the access log on, per request. Batching turns that into one
//! `write` per interval, as nginx's `access_log ... buffer= flush=` does; under load it is the
//! difference between a few hundred writes a second and one per request. A request never waits
//! for the write itself; it waits only when [`LIMIT_BYTES`] are queued (the writer has fallen
//! behind), so lines are never dropped and memory stays bounded.

use std::io::Write;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

/// How long a line may wait in the buffer: short enough that a tail of the log looks live.
pub const FLUSH_EVERY: Duration = Duration::from_millis(20);
/// A buffer this full is written at once rather than at the next tick.
pub const EAGER_BYTES: usize = 64 * 1024;
/// Writers wait (the log is lossless) while this much is queued.
pub const LIMIT_BYTES: usize = 4 * 1024 * 1024;

struct Queue {
    lines: Vec<u8>,
    closing: bool,
}

struct Shared {
    queue: Mutex<Queue>,
    /// Wakes the writer thread: a line came into the empty buffer, the buffer passed
    /// [`EAGER_BYTES`], or the log is closing.
    wake_writer: Condvar,
    /// Wakes requests waiting for room once the writer has taken the buffer.
    drained: Condvar,
    /// Times the writer thread took the buffer (tests count its wake-ups).
    #[cfg(test)]
    rounds: std::sync::atomic::AtomicUsize,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The `MakeWriter` given to `tracing_subscriber`: each event's formatted line is appended to
/// the shared buffer.
#[derive(Clone)]
pub struct BatchedLog {
    shared: Arc<Shared>,
}

/// Kept by `main` for the life of the process; dropping it writes what is queued and stops the
/// writer thread.
pub struct FlushGuard {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

/// Starts the writer thread for `out` (stdout in the binary; a buffer in tests) and returns
/// the writer to hand to `tracing_subscriber` and the guard that flushes on exit.
pub fn start(out: impl Write + Send + 'static) -> std::io::Result<(BatchedLog, FlushGuard)> {
    let shared = Arc::new(Shared {
        queue: Mutex::new(Queue { lines: Vec::with_capacity(EAGER_BYTES), closing: false }),
        wake_writer: Condvar::new(),
        drained: Condvar::new(),
        #[cfg(test)]
        rounds: std::sync::atomic::AtomicUsize::new(0),
    });
    let writer = Arc::clone(&shared);
    let thread = std::thread::Builder::new().name("log-writer".into()).spawn(move || write_out(&writer, out))?;
    Ok((BatchedLog { shared: Arc::clone(&shared) }, FlushGuard { shared, thread: Some(thread) }))
}

/// The writer thread: sleeps while the buffer is empty; once a line arrives, lets more gather
/// for [`FLUSH_EVERY`] (less when the buffer passes [`EAGER_BYTES`]), then takes the whole
/// buffer and writes it with one call, outside the lock. Ends once the log is closing and
/// everything is written.
fn write_out(shared: &Shared, mut out: impl Write) {
    let mut spare = Vec::with_capacity(EAGER_BYTES);
    loop {
        let closing = {
            let mut queue = shared.lock();
            while queue.lines.is_empty() && !queue.closing {
                queue = shared.wake_writer.wait(queue).unwrap_or_else(|poisoned| poisoned.into_inner());
            }
            if queue.lines.len() < EAGER_BYTES && !queue.closing {
                queue = shared.wake_writer.wait_timeout(queue, FLUSH_EVERY).map_or_else(|p| p.into_inner().0, |r| r.0);
            }
            std::mem::swap(&mut queue.lines, &mut spare);
            queue.closing
        };
        #[cfg(test)]
        shared.rounds.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        shared.drained.notify_all();
        if !spare.is_empty() {
            // A log that cannot be written has nowhere to report it; the lines are dropped.
            let _ = out.write_all(&spare).and_then(|()| out.flush());
            spare.clear();
        }
        if closing && shared.lock().lines.is_empty() {
            return;
        }
    }
}

impl Drop for FlushGuard {
    fn drop(&mut self) {
        self.shared.lock().closing = true;
        self.shared.wake_writer.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for BatchedLog {
    type Writer = LineSink<'a>;

    fn make_writer(&'a self) -> LineSink<'a> {
        LineSink { shared: &self.shared }
    }
}

/// One event's writer: appends to the shared buffer.
pub struct LineSink<'a> {
    shared: &'a Shared,
}

impl Write for LineSink<'_> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let mut queue = self.shared.lock();
        while queue.lines.len() >= LIMIT_BYTES && !queue.closing {
            self.shared.wake_writer.notify_one();
            queue = self.shared.drained.wait(queue).unwrap_or_else(|poisoned| poisoned.into_inner());
        }
        let before = queue.lines.len();
        queue.lines.extend_from_slice(bytes);
        // Only the first line of a batch (the writer sleeps on an empty buffer) and the write
        // that crosses the mark wake the writer: a notify is a system call.
        if before == 0 || (before < EAGER_BYTES && queue.lines.len() >= EAGER_BYTES) {
            self.shared.wake_writer.notify_one();
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use tracing_subscriber::fmt::MakeWriter;

    /// A `Write` whose bytes the test can read, counting the calls that reached it.
    #[derive(Clone, Default)]
    struct Recorder(Arc<Mutex<(Vec<u8>, usize)>>);

    impl Write for Recorder {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            let mut seen = self.0.lock().unwrap();
            seen.0.extend_from_slice(bytes);
            seen.1 += 1;
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn lines_arrive_in_order_batched_and_all_flushed_on_drop() {
        let out = Recorder::default();
        let (log, guard) = start(out.clone()).unwrap();
        for n in 0..10_000 {
            log.make_writer().write_all(format!("line {n}\n").as_bytes()).unwrap();
        }
        drop(guard);
        let (bytes, writes) = out.0.lock().unwrap().clone();
        let text = String::from_utf8(bytes).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 10_000);
        assert!(lines.iter().enumerate().all(|(n, line)| *line == format!("line {n}")));
        assert!(writes < 1_000, "10,000 lines took {writes} writes: not batched");
    }

    #[test]
    fn a_quiet_log_is_written_within_the_interval() {
        let out = Recorder::default();
        let (log, _guard) = start(out.clone()).unwrap();
        log.make_writer().write_all(b"one line\n").unwrap();
        let deadline = std::time::Instant::now() + FLUSH_EVERY * 50;
        while out.0.lock().unwrap().0.is_empty() {
            assert!(std::time::Instant::now() < deadline, "the line was not written");
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    #[test]
    fn an_idle_log_leaves_its_thread_asleep_and_a_late_line_is_still_written() {
        let out = Recorder::default();
        let (log, _guard) = start(out.clone()).unwrap();
        std::thread::sleep(FLUSH_EVERY * 10);
        assert_eq!(log.shared.rounds.load(std::sync::atomic::Ordering::Relaxed), 0, "woke with nothing to write");
        log.make_writer().write_all(b"late line\n").unwrap();
        let deadline = std::time::Instant::now() + FLUSH_EVERY * 50;
        while out.0.lock().unwrap().0.is_empty() {
            assert!(std::time::Instant::now() < deadline, "the line was not written");
            std::thread::sleep(Duration::from_millis(2));
        }
        std::thread::sleep(FLUSH_EVERY * 10);
        assert_eq!(log.shared.rounds.load(std::sync::atomic::Ordering::Relaxed), 1, "one line, one round");
    }

    #[test]
    fn writers_wait_rather_than_drop_when_the_writer_falls_behind() {
        let out = Recorder::default();
        let (log, guard) = start(out.clone()).unwrap();
        let line = vec![b'x'; 1023];
        let writers: Vec<_> = (0..4)
            .map(|_| {
                let (log, line) = (log.clone(), line.clone());
                std::thread::spawn(move || {
                    for _ in 0..4096 {
                        let mut sink = log.make_writer();
                        sink.write_all(&line).unwrap();
                        sink.write_all(b"\n").unwrap();
                    }
                })
            })
            .collect();
        writers.into_iter().for_each(|w| w.join().unwrap());
        drop(guard);
        assert_eq!(out.0.lock().unwrap().0.len(), 4 * 4096 * 1024);
    }
}
