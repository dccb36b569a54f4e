//! Captures the gateway's log lines (all tests share one process-wide subscriber), so tests can
//! assert on access log fields such as token counts, and on secrets never being logged.

use std::io::Write;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

static LINES: Mutex<Vec<u8>> = Mutex::new(Vec::new());

struct Capture;

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        LINES.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Installs the capturing subscriber once (info and above, no colours).
pub fn capture() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        let subscriber =
            tracing_subscriber::fmt().with_env_filter("info").with_ansi(false).with_writer(|| Capture).finish();
        tracing::subscriber::set_global_default(subscriber).unwrap();
    });
}

/// Every captured line so far.
pub fn all() -> String {
    String::from_utf8_lossy(&LINES.lock().unwrap()).into_owned()
}

/// Waits (briefly) for an access log line of route `route` and returns it.
pub async fn access_line(route: &str) -> String {
    let needle = format!("route={route} ");
    for _ in 0..200 {
        if let Some(line) = all().lines().find(|l| l.contains(" access: ") && l.contains(&needle)) {
            return line.to_string();
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("no access log line for route {route}");
}
