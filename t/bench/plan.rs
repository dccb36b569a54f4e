//! How big and how long each measurement is: the full run of `cargo bench`, or the smoke run
//! `cargo test` makes (seconds, to prove the harness still works end to end).

use std::time::Duration;

use crate::mock::MockSettings;

#[derive(Debug, Clone)]
pub struct Plan {
    /// `false`: a smoke run; figures are printed but targets mean nothing (debug build).
    pub full: bool,
    /// Discarded at the start of every load run.
    pub warmup: Duration,
    /// Measured time per target for throughput, split over `rounds`.
    pub throughput_window: Duration,
    /// Measured time per target for single-connection latency, split over `rounds`.
    pub latency_window: Duration,
    pub rounds: u32,
    pub connections: usize,
    pub memory_connections: usize,
    pub memory_window: Duration,
    pub soak: Duration,
    /// The soak's growth is measured from this far into it (pools and caches are full by then).
    pub soak_baseline: Duration,
    /// Row 8's soak of mixed traffic (`SWITCHYARD_SOAK_SECS` overrides it).
    pub mixed_soak: Duration,
    pub sse: MockSettings,
    pub sse_connections: usize,
    pub sse_window: Duration,
    pub routes: usize,
    /// Single-route changes timed on the node holding `routes` routes.
    pub changes: usize,
    pub etcd_writes: usize,
    /// The rows to run (`--rows 1,4`); all when empty. Rows 1–3 run together.
    pub rows: Vec<u8>,
}

impl Plan {
    /// What `make bench` measures: about three minutes of load, then the ten-minute soak.
    pub fn full() -> Plan {
        Plan {
            full: true,
            warmup: Duration::from_millis(200),
            throughput_window: Duration::from_secs(4),
            latency_window: Duration::from_secs(4),
            rounds: 4,
            connections: 64,
            memory_connections: 256,
            memory_window: Duration::from_secs(4),
            soak: Duration::from_secs(60),
            soak_baseline: Duration::from_secs(5),
            mixed_soak: Duration::from_secs(600),
            sse: MockSettings { sse_events: 20, sse_gap: Duration::from_millis(10) },
            sse_connections: 8,
            sse_window: Duration::from_secs(4),
            routes: 10_000,
            changes: 20,
            etcd_writes: 100,
            rows: Vec::new(),
        }
    }

    /// The same steps at toy sizes.
    pub fn smoke() -> Plan {
        Plan {
            full: false,
            warmup: Duration::from_millis(50),
            throughput_window: Duration::from_millis(200),
            latency_window: Duration::from_millis(200),
            rounds: 1,
            connections: 4,
            memory_connections: 8,
            memory_window: Duration::from_millis(200),
            soak: Duration::from_millis(600),
            soak_baseline: Duration::from_millis(200),
            mixed_soak: Duration::from_secs(2),
            sse: MockSettings { sse_events: 4, sse_gap: Duration::from_millis(2) },
            sse_connections: 2,
            sse_window: Duration::from_millis(200),
            routes: 30,
            changes: 2,
            etcd_writes: 3,
            rows: Vec::new(),
        }
    }

    /// Whether any of `rows` is to run.
    pub fn runs(&self, rows: &[u8]) -> bool {
        self.rows.is_empty() || rows.iter().any(|r| self.rows.contains(r))
    }

    /// Reads `--rows 1,4` (or `--rows=1,4`) from the command line.
    pub fn with_rows_from(mut self, args: &[String]) -> crate::Result<Plan> {
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            let list = match arg.strip_prefix("--rows") {
                Some("") => args.next().ok_or("--rows needs a list such as 1,4")?.as_str(),
                Some(rest) if rest.starts_with('=') => &rest[1..],
                _ => continue,
            };
            for row in list.split(',') {
                self.rows.push(row.trim().parse()?);
            }
        }
        Ok(self)
    }
}
