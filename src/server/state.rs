//! What one client connection shares between its socket wrapper, its service, its response
//! body, and the listener that may ask it to close.
//!
//! Everything here is atomics: a request costs a counter increment, a compare-and-swap and three
//! stores (plus a reference count for its response body), never a lock or an allocation.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU8, Ordering};

use futures_util::task::AtomicWaker;
use tokio::sync::OwnedSemaphorePermit;

/// No byte of the next request head has arrived: closing loses nothing.
pub const IDLE: u8 = 0;
/// Part of a request head has arrived.
pub const HEAD: u8 = 1;
/// The handler runs: it reads the body, waits for the upstream.
pub const HANDLING: u8 = 2;
/// The response body is being written.
pub const RESPONDING: u8 = 3;
/// Closed while idle to make room (see [`Signal::RECLAIM`]).
pub const CLOSING: u8 = 4;

/// Requests from the listener to a connection's task. They stay set once raised (except
/// `RECLAIM`, which the task clears), so late readers such as the response body see them too.
pub struct Signal;

impl Signal {
    /// Shutdown began: finish the request in flight, if any, then close.
    pub const GRACEFUL: u8 = 1;
    /// The connection cap is reached: close if idle.
    pub const RECLAIM: u8 = 1 << 1;
    /// The shutdown grace period is over: end a stream with its error event, then close.
    pub const CUT: u8 = 1 << 2;
    /// A second signal: close at once.
    pub const CUT_NOW: u8 = 1 << 3;
}

pub struct ConnState {
    phase: AtomicU8,
    /// Requests started on this connection (wrapping): a change tells the socket wrapper that a
    /// response ended and a new wait for a head began.
    requests: AtomicU32,
    signals: AtomicU8,
    /// A response refused a request body (413) before it was read: the client may still be
    /// sending it when the connection closes.
    body_refused: AtomicBool,
    /// The connection task, woken when a signal is raised.
    waker: AtomicWaker,
    /// The connection's place under its listener's cap, given back when the connection ends.
    _permit: OwnedSemaphorePermit,
}

impl ConnState {
    pub fn new(permit: OwnedSemaphorePermit) -> Self {
        Self {
            phase: AtomicU8::new(IDLE),
            requests: AtomicU32::new(0),
            signals: AtomicU8::new(0),
            body_refused: AtomicBool::new(false),
            waker: AtomicWaker::new(),
            _permit: permit,
        }
    }

    pub fn phase(&self) -> u8 {
        self.phase.load(Ordering::Acquire)
    }

    pub fn requests(&self) -> u32 {
        self.requests.load(Ordering::Relaxed)
    }

    /// Runs when the socket hands over the first bytes of a request head.
    pub fn head_began(&self) {
        let _ = self.phase.compare_exchange(IDLE, HEAD, Ordering::AcqRel, Ordering::Relaxed);
    }

    /// Runs when hyper hands a parsed request head to the service.
    pub fn request_began(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.body_refused.store(false, Ordering::Relaxed);
        self.phase.store(HANDLING, Ordering::Release);
    }

    /// Runs when the handler returned its response.
    pub fn response_began(&self) {
        self.phase.store(RESPONDING, Ordering::Release);
    }

    /// Runs when the handler answered 413: the request body was refused unread.
    pub fn body_refused(&self) {
        self.body_refused.store(true, Ordering::Relaxed);
    }

    /// True when a response refused its request body, whose rest the client may still send.
    pub fn expects_refused_body(&self) -> bool {
        self.body_refused.load(Ordering::Relaxed)
    }

    /// Runs when hyper has written the response body (or dropped it).
    pub fn response_ended(&self) {
        self.phase.store(IDLE, Ordering::Release);
    }

    /// Marks an idle connection as closing; false when a request began meanwhile.
    pub fn close_if_idle(&self) -> bool {
        self.phase.compare_exchange(IDLE, CLOSING, Ordering::AcqRel, Ordering::Relaxed).is_ok()
    }

    /// Raises `signal` and wakes the connection's task to act on it.
    pub fn raise(&self, signal: u8) {
        self.signals.fetch_or(signal, Ordering::AcqRel);
        self.waker.wake();
    }

    /// The signals raised so far; `RECLAIM` is cleared by reading it.
    pub fn signals(&self) -> u8 {
        let signals = self.signals.load(Ordering::Acquire);
        if signals & Signal::RECLAIM != 0 {
            self.signals.fetch_and(!Signal::RECLAIM, Ordering::AcqRel);
        }
        signals
    }

    /// True once shutdown cut the connection: the response body ends itself.
    pub fn is_cut(&self) -> bool {
        self.signals.load(Ordering::Acquire) & (Signal::CUT | Signal::CUT_NOW) != 0
    }

    /// Records the task to wake on a signal; runs on every poll of the connection's task.
    pub fn register(&self, waker: &std::task::Waker) {
        self.waker.register(waker);
    }
}
