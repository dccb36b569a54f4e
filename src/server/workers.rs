//! Proxy workers: one single-threaded tokio runtime per core, each on its own thread, serving
//! the client connections handed to it from accept to close.
//!
//! A connection's request, its plugins, its upstream call (the upstream connection is driven in
//! the request's own task, see `crate::transport::client`) and its response all run on one
//! thread, as in an nginx worker, and no task is woken across threads. On tokio's work-stealing
//! runtime a request at one connection cost 2.5 futex calls and an eventfd write (waking another
//! worker) besides its four socket calls, and under load tasks moved between workers and both
//! took the shared idle pool's lock; README "Performance" has the measured difference. Upstream
//! idle connections are kept per worker (`crate::transport::idle`), so a worker reuses the
//! connections its own reactor drives.
//!
//! The accept loops stay on the node's main runtime and hand each accepted connection to the
//! worker with the fewest open connections: the load spreads by connection as nginx's does, and
//! the listener is bound once, so a second process cannot share its port unnoticed (as it
//! could with `SO_REUSEPORT`).

use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use tokio::runtime::Handle;
use tokio::sync::oneshot;

thread_local! {
    /// This thread's worker number, from 1; 0 on every other thread.
    static NUMBER: Cell<usize> = const { Cell::new(0) };
}

/// The worker the calling thread is, numbered from 1; 0 on any other thread (the main runtime,
/// a test's). Upstream idle pools are sharded by it.
pub fn current() -> usize {
    NUMBER.get()
}

/// Makes the calling thread count as worker `number`, for tests of what is sharded by worker.
#[cfg(test)]
pub fn pretend_to_be(number: usize) {
    NUMBER.set(number);
}

/// How long a stopping worker waits for its blocking tasks (DNS lookups) before leaving them.
const BLOCKING_GRACE: std::time::Duration = std::time::Duration::from_millis(500);

/// The proxy workers of one node, stopped (their remaining tasks dropped) when it is dropped.
pub struct Workers {
    workers: Box<[Worker]>,
    /// Where the search for the least loaded worker starts, so ties are served in turn.
    next: AtomicUsize,
}

struct Worker {
    handle: Handle,
    /// Client connections the worker serves now.
    open: Arc<AtomicUsize>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

/// Counts a connection against its worker until it is dropped (when the connection's task ends).
pub struct Assigned(Arc<AtomicUsize>);

impl Drop for Assigned {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Workers {
    /// Starts `count` workers (at least one). Runs when a node starts; `Err`: a thread or
    /// runtime could not be made.
    pub fn start(count: usize) -> std::io::Result<Workers> {
        let mut workers = Vec::with_capacity(count.max(1));
        for number in 1..=count.max(1) {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            let handle = runtime.handle().clone();
            let (stop, stopped) = oneshot::channel::<()>();
            let thread = std::thread::Builder::new().name(format!("proxy-worker-{number}")).spawn(move || {
                NUMBER.set(number);
                // A dropped sender stops the worker as well as a sent stop.
                runtime.block_on(async {
                    let _ = stopped.await;
                });
                // A blocking task still running (a DNS lookup) must not hold up the node's exit.
                runtime.shutdown_timeout(BLOCKING_GRACE);
            })?;
            workers.push(Worker {
                handle,
                open: Arc::new(AtomicUsize::new(0)),
                stop: Some(stop),
                thread: Some(thread),
            });
        }
        Ok(Workers { workers: workers.into_boxed_slice(), next: AtomicUsize::new(0) })
    }

    /// How many workers there are.
    pub fn count(&self) -> usize {
        self.workers.len()
    }

    /// The client connections each worker serves now, in worker order.
    pub fn connections(&self) -> Vec<usize> {
        self.workers.iter().map(|worker| worker.open.load(Ordering::Relaxed)).collect()
    }

    /// The tasks alive on all workers (connections and what their requests spawned).
    pub fn alive_tasks(&self) -> usize {
        self.workers.iter().map(|worker| worker.handle.metrics().num_alive_tasks()).sum()
    }

    /// The worker a new connection goes to: the one serving the fewest connections, the next
    /// in turn among equals. The connection counts against it while [`Assigned`] lives.
    pub fn pick(&self) -> (&Handle, Assigned) {
        let n = self.workers.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed) % n;
        let chosen = (0..n)
            .map(|i| &self.workers[(start + i) % n])
            .min_by_key(|worker| worker.open.load(Ordering::Relaxed))
            .unwrap_or(&self.workers[0]);
        chosen.open.fetch_add(1, Ordering::Relaxed);
        (&chosen.handle, Assigned(Arc::clone(&chosen.open)))
    }
}

impl Drop for Workers {
    /// Stops every worker and waits for its thread; tasks still on a worker are dropped.
    fn drop(&mut self) {
        for worker in self.workers.iter_mut() {
            if let Some(stop) = worker.stop.take() {
                let _ = stop.send(());
            }
        }
        if current() != 0 {
            // Dropped on a worker itself: that thread cannot wait for its own end.
            return;
        }
        for worker in self.workers.iter_mut() {
            if let Some(thread) = worker.thread.take() {
                let _ = thread.join();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;
    use std::time::Duration;

    use super::*;

    /// The number of the worker `handle` runs tasks on.
    fn number_of(handle: &Handle) -> usize {
        let (tx, rx) = mpsc::channel();
        handle.spawn(async move { tx.send(current()).unwrap() });
        rx.recv_timeout(Duration::from_secs(5)).expect("the worker ran the task")
    }

    #[test]
    fn connections_go_to_the_least_loaded_worker_in_turn() {
        let workers = Workers::start(3).unwrap();
        let mut assigned: Vec<_> = (0..3).map(|_| workers.pick()).map(|(h, a)| (number_of(h), a)).collect();
        let mut numbers: Vec<usize> = assigned.iter().map(|(n, _)| *n).collect();
        numbers.sort_unstable();
        assert_eq!(numbers, [1, 2, 3], "three connections spread over three workers");
        let (freed, _) = assigned.remove(1);
        let (handle, _again) = workers.pick();
        assert_eq!(number_of(handle), freed, "the worker whose connection ended takes the next one");
        assert_eq!(current(), 0, "the test's own thread is no worker");
    }

    #[test]
    fn dropping_the_workers_ends_their_threads_and_tasks() {
        let workers = Workers::start(2).unwrap();
        let (tx, rx) = mpsc::channel::<()>();
        let handle = workers.pick().0.clone();
        handle.spawn(async move {
            let _tx = tx;
            std::future::pending::<()>().await
        });
        drop(workers);
        // The pending task was dropped with its runtime, and its sender with it.
        assert_eq!(rx.recv_timeout(Duration::from_secs(5)), Err(mpsc::RecvTimeoutError::Disconnected));
    }
}
