//! The result table: one line per figure, each beside the direct call it is compared with and
//! the target it is held to, printed as markdown and kept with the raw figures under
//! `<target dir>/bench/`.

use std::fmt::Write as _;
use std::path::Path;

use serde_json::{Map, Value};

use crate::Result;

/// How a line fares against its target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    Fail,
    /// A figure with no target.
    Info,
    /// Could not be measured in this build or on this machine.
    Skipped,
}

impl Verdict {
    /// `Pass` when `ok`, else `Fail`.
    pub fn of(ok: bool) -> Verdict {
        if ok {
            Verdict::Pass
        } else {
            Verdict::Fail
        }
    }

    fn label(self) -> &'static str {
        match self {
            Verdict::Pass => "PASS",
            Verdict::Fail => "**FAIL**",
            Verdict::Info => "",
            Verdict::Skipped => "n/a",
        }
    }
}

/// One line of the table.
#[derive(Debug, Clone)]
pub struct Line {
    pub row: u8,
    pub scenario: String,
    pub metric: String,
    pub direct: String,
    pub gateway: String,
    /// The ratio against direct, or what the gateway adds to it.
    pub versus: String,
    pub target: String,
    pub verdict: Verdict,
}

impl Line {
    pub fn new(row: u8, scenario: &str, metric: &str) -> Line {
        Line {
            row,
            scenario: scenario.into(),
            metric: metric.into(),
            direct: "–".into(),
            gateway: "–".into(),
            versus: "–".into(),
            target: "–".into(),
            verdict: Verdict::Info,
        }
    }

    /// A throughput line: gateway / direct as a ratio, held to `at_least` when given.
    pub fn throughput(row: u8, scenario: &str, metric: &str, direct: f64, gateway: f64, at_least: Option<f64>) -> Line {
        let ratio = gateway / direct.max(1e-9);
        Line {
            direct: format!("{} req/s", thousands(direct)),
            gateway: format!("{} req/s", thousands(gateway)),
            versus: format!("{ratio:.2}×"),
            target: at_least.map_or("–".into(), |min| format!("≥ {min:.2}×")),
            verdict: at_least.map_or(Verdict::Info, |min| Verdict::of(ratio >= min)),
            ..Line::new(row, scenario, metric)
        }
    }

    /// A latency line in microseconds: what the gateway adds, held to `added_at_most` when given.
    pub fn latency(
        row: u8,
        scenario: &str,
        metric: &str,
        direct_us: f64,
        gateway_us: f64,
        added_at_most: Option<f64>,
    ) -> Line {
        let added = gateway_us - direct_us;
        Line {
            direct: micros(direct_us),
            gateway: micros(gateway_us),
            versus: format!("{:+.0} µs ({:.2}×)", added, gateway_us / direct_us.max(1e-9)),
            target: added_at_most.map_or("–".into(), |max| format!("added ≤ {max:.0} µs")),
            verdict: added_at_most.map_or(Verdict::Info, |max| Verdict::of(added <= max)),
            ..Line::new(row, scenario, metric)
        }
    }

    /// CPU time the proxy's processes spent per request (the fairest figure when the load
    /// generator, the mock and the proxy share two cores).
    pub fn cpu(row: u8, scenario: &str, micros_per_request: f64) -> Line {
        Line {
            gateway: format!("{micros_per_request:.1} µs"), ..Line::new(row, scenario, "CPU per request, 64 conns")
        }
    }

    /// Throughput of one proxy against another measured in the same run, held to `at_least`.
    pub fn against(row: u8, scenario: &str, metric: &str, reference: f64, ours: f64, at_least: f64) -> Line {
        let ratio = ours / reference.max(1e-9);
        Line {
            direct: format!("{} req/s", thousands(reference)),
            gateway: format!("{} req/s", thousands(ours)),
            versus: format!("{ratio:.2}×"),
            target: format!("≥ {at_least:.2}×"),
            verdict: Verdict::of(ratio >= at_least),
            ..Line::new(row, scenario, metric)
        }
    }

    /// A latency of ours against a reference proxy's in the same run, both in microseconds, held
    /// to at most the reference's.
    pub fn latency_against(row: u8, scenario: &str, metric: &str, reference_us: f64, ours_us: f64) -> Line {
        Line {
            direct: micros(reference_us),
            gateway: micros(ours_us),
            versus: format!("{:+.0} µs ({:.2}×)", ours_us - reference_us, ours_us / reference_us.max(1e-9)),
            target: "≤ the reference's".into(),
            verdict: Verdict::of(ours_us <= reference_us),
            ..Line::new(row, scenario, metric)
        }
    }

    /// CPU per request of ours against a reference proxy (lower is better).
    pub fn cpu_against(row: u8, scenario: &str, reference: &crate::load::Outcome, ours: &crate::load::Outcome) -> Line {
        let (r, o) = (reference.cpu_micros_per_request(), ours.cpu_micros_per_request());
        Line {
            direct: format!("{r:.1} µs"),
            gateway: format!("{o:.1} µs"),
            versus: format!("{:.2}×", o / r.max(1e-9)),
            ..Line::new(row, scenario, "CPU per request, 64 conns")
        }
    }

    /// A line that could not be measured, saying why.
    pub fn skipped(row: u8, scenario: &str, why: &str) -> Line {
        Line { gateway: format!("not measured: {why}"), verdict: Verdict::Skipped, ..Line::new(row, scenario, "–") }
    }
}

/// The whole report: context lines, the table, and the raw figures.
pub struct Report {
    /// `false` in smoke runs: targets are shown but not judged.
    pub judged: bool,
    pub context: Vec<String>,
    pub lines: Vec<Line>,
    pub notes: Vec<String>,
    pub raw: Map<String, Value>,
}

impl Report {
    pub fn new(judged: bool) -> Report {
        Report { judged, context: Vec::new(), lines: Vec::new(), notes: Vec::new(), raw: Map::new() }
    }

    pub fn push(&mut self, line: Line) {
        self.lines.push(line);
    }

    pub fn raw(&mut self, key: &str, value: Value) {
        self.raw.insert(key.into(), value);
    }

    /// The report as markdown: context, table, then how many targets pass.
    pub fn markdown(&self) -> String {
        let mut out = String::new();
        for line in &self.context {
            let _ = writeln!(out, "{line}");
        }
        out.push('\n');
        out.push_str("| row | scenario | metric | direct | gateway | vs direct | target | result |\n");
        out.push_str("|---|---|---|---:|---:|---:|---|---|\n");
        for l in &self.lines {
            let verdict = match l.verdict {
                Verdict::Pass | Verdict::Fail if !self.judged => "(smoke)",
                verdict => verdict.label(),
            };
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} | {} |",
                l.row, l.scenario, l.metric, l.direct, l.gateway, l.versus, l.target, verdict
            );
        }
        let judged: Vec<&Line> =
            self.lines.iter().filter(|l| matches!(l.verdict, Verdict::Pass | Verdict::Fail)).collect();
        let passed = judged.iter().filter(|l| l.verdict == Verdict::Pass).count();
        if self.judged {
            let _ = writeln!(out, "\nTargets: {passed} of {} pass.", judged.len());
            for l in judged.iter().filter(|l| l.verdict == Verdict::Fail) {
                let _ = writeln!(
                    out,
                    "- FAIL: row {} {} {}: {} (target {})",
                    l.row, l.scenario, l.metric, l.gateway, l.target
                );
            }
        } else {
            let _ = writeln!(out, "\nTargets are not judged in a smoke run (debug build, toy sizes).");
        }
        for note in &self.notes {
            let _ = writeln!(out, "- {note}");
        }
        out
    }

    /// Writes `results.md` and `raw.json` into `dir`.
    pub fn save(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir)?;
        std::fs::write(dir.join("results.md"), self.markdown())?;
        let raw = serde_json::to_string_pretty(&Value::Object(self.raw.clone()))?;
        std::fs::write(dir.join("raw.json"), raw)?;
        Ok(())
    }
}

/// `31234.5` → `31,235`.
pub fn thousands(value: f64) -> String {
    let digits = format!("{:.0}", value.max(0.0));
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Microseconds, switching to milliseconds past 10 ms.
pub fn micros(us: f64) -> String {
    if us >= 10_000.0 {
        format!("{:.1} ms", us / 1e3)
    } else {
        format!("{us:.0} µs")
    }
}

pub fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}
