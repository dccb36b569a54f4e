//! What an accept loop does when `accept` fails.
//!
//! Out of file descriptors (`EMFILE`, `ENFILE`), buffers or memory, `accept` fails again at once
//! for as long as the shortage lasts: retrying in a loop burns a core and writes a warning per
//! try. The loop pauses instead, longer each time up to a second, and warns once per interval
//! with the number of failures since the last warning.

use std::io;
use std::time::Duration;

use tokio::time::Instant;

/// The first pause after a failure; each failure in a row doubles it, up to [`MAX_PAUSE`].
pub const FIRST_PAUSE: Duration = Duration::from_millis(10);
pub const MAX_PAUSE: Duration = Duration::from_secs(1);
/// At most one warning per interval, however many accepts fail.
pub const WARN_INTERVAL: Duration = Duration::from_secs(10);

/// What to do after a failed accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterFailure {
    /// The failure concerned one connection (the client reset it before it was accepted): accept
    /// the next one at once.
    Retry,
    /// The process or system is short of a resource: wait `pause` before accepting again, and
    /// log a warning counting `warn` failures when it is `Some`.
    Pause { pause: Duration, warn: Option<u64> },
}

/// Failure bookkeeping of one accept loop.
#[derive(Debug)]
pub struct AcceptBackoff {
    pause: Duration,
    /// Failures since the last warning.
    unreported: u64,
    warned_at: Option<Instant>,
}

impl Default for AcceptBackoff {
    fn default() -> Self {
        Self { pause: FIRST_PAUSE, unreported: 0, warned_at: None }
    }
}

impl AcceptBackoff {
    /// Runs after each failed accept, `now` being the time of the failure.
    pub fn failed(&mut self, err: &io::Error, now: Instant) -> AfterFailure {
        if is_per_connection(err) {
            return AfterFailure::Retry;
        }
        self.unreported += 1;
        let pause = self.pause;
        self.pause = (self.pause * 2).min(MAX_PAUSE);
        let due = self.warned_at.is_none_or(|at| now.duration_since(at) >= WARN_INTERVAL);
        let warn = due.then(|| {
            self.warned_at = Some(now);
            std::mem::take(&mut self.unreported)
        });
        AfterFailure::Pause { pause, warn }
    }

    /// Runs after each successful accept: the next failure pauses briefly again. The warning
    /// interval is kept, so a limit that is hit over and over still warns once per interval.
    pub fn accepted(&mut self) {
        self.pause = FIRST_PAUSE;
    }
}

/// Errors about one connection, gone before it was accepted, rather than about the process.
fn is_per_connection(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `EMFILE` on Linux: "Too many open files".
    fn too_many_open_files() -> io::Error {
        io::Error::from_raw_os_error(24)
    }

    #[test]
    fn running_out_of_descriptors_pauses_longer_each_time_and_warns_once_per_interval() {
        let start = Instant::now();
        let mut backoff = AcceptBackoff::default();
        let mut now = start;
        let mut pauses = Vec::new();
        let mut warnings = Vec::new();
        // 25 seconds of failures, each retried after the pause it asked for.
        while now.duration_since(start) < Duration::from_secs(25) {
            match backoff.failed(&too_many_open_files(), now) {
                AfterFailure::Pause { pause, warn } => {
                    pauses.push(pause);
                    warnings.extend(warn.map(|n| (now.duration_since(start), n)));
                    now += pause;
                }
                AfterFailure::Retry => panic!("EMFILE must pause"),
            }
        }
        assert_eq!(&pauses[..4], [10, 20, 40, 80].map(Duration::from_millis));
        assert!(pauses.iter().all(|p| *p <= MAX_PAUSE) && pauses.contains(&MAX_PAUSE));
        // 25 s of failures: a warning at the first, then one per 10 s, each counting the failures.
        assert_eq!(warnings.len(), 3, "{warnings:?}");
        assert_eq!(warnings[0], (Duration::ZERO, 1));
        assert!(warnings[1].0 >= WARN_INTERVAL && warnings[1].1 > 10, "{warnings:?}");
        let counted: u64 = warnings.iter().map(|w| w.1).sum();
        assert!(counted <= pauses.len() as u64);
        assert!(pauses.len() < 40, "{} tries in 25 s: not backing off", pauses.len());
    }

    #[test]
    fn a_success_shortens_the_pause_but_not_the_warning_interval() {
        let now = Instant::now();
        let mut backoff = AcceptBackoff::default();
        for _ in 0..5 {
            backoff.failed(&too_many_open_files(), now);
        }
        backoff.accepted();
        let after = backoff.failed(&too_many_open_files(), now + Duration::from_secs(1));
        assert_eq!(after, AfterFailure::Pause { pause: FIRST_PAUSE, warn: None });
        let later = backoff.failed(&too_many_open_files(), now + WARN_INTERVAL);
        assert!(matches!(later, AfterFailure::Pause { warn: Some(6), .. }), "{later:?}");
    }

    #[test]
    fn a_connection_reset_before_accept_is_retried_at_once() {
        let mut backoff = AcceptBackoff::default();
        let reset = io::Error::from(io::ErrorKind::ConnectionAborted);
        assert_eq!(backoff.failed(&reset, Instant::now()), AfterFailure::Retry);
    }
}
