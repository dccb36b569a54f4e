//! What request handlers need from the connection layer, kept apart from it (the server depends
//! on the handlers' response body; the handlers must not depend back on the server): reading a
//! request body under the client timeouts, and knowing when a drop is shutdown's doing.

mod request_body;

use std::cell::Cell;

pub use request_body::{declares_more_than, read_whole, BodyReadError};

thread_local! {
    static CUTTING: Cell<bool> = const { Cell::new(false) };
}

/// True while the current thread drops a connection that shutdown cut: whatever logs from its
/// `Drop` (a request abandoned before its response, a relayed body) reports "cut by shutdown"
/// rather than blaming the client.
pub fn dropped_by_shutdown() -> bool {
    CUTTING.with(Cell::get)
}

/// Runs `drop` with [`dropped_by_shutdown`] true.
pub(crate) fn as_cut(drop: impl FnOnce()) {
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            CUTTING.with(|cutting| cutting.set(false));
        }
    }
    CUTTING.with(|cutting| cutting.set(true));
    let _reset = Reset;
    drop();
}
