//! switchyard's benchmark: `make bench` (`cargo bench --bench gateway`).
//!
//! Starts an in-tree mock LLM upstream and the release `switchyard` binary as processes of their
//! own, drives them with an in-tree load generator, and prints one markdown table in which every
//! gateway figure stands beside a direct call to the mock measured in the same run. Raw figures
//! go to `<target dir>/bench/`.
//!
//! Run without `--bench` (as `cargo test` does), it makes a smoke run: every step at toy sizes,
//! failing only when the harness itself breaks.

mod callgrind;
mod etcd;
mod load;
mod mock;
mod nginx;
mod node;
mod plan;
mod process;
mod redis;
mod relay;
mod report;
mod routes;
mod rows;
mod sse;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::mock::MockProcess;
use crate::node::{embedded_store, Node};
use crate::plan::Plan;
use crate::report::Report;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub type Result<T, E = BoxError> = std::result::Result<T, E>;

/// What every row needs: the plan, the binaries, the mock, and the report being filled.
pub struct Bench {
    pub plan: Plan,
    /// The `switchyard` binary built with this bench's profile.
    pub bin: PathBuf,
    /// Nodes' stores and logs, emptied at the start of each run.
    pub work: PathBuf,
    pub mock: MockProcess,
    pub report: Report,
    /// Wrong answers and broken streams: a run with any is not to be trusted.
    pub problems: Vec<String>,
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let helper = match args.first().map(String::as_str) {
        Some("mock") => Some(mock::main(&args[1..])),
        Some("relay") => Some(relay::main(&args[1..])),
        _ => None,
    };
    if let Some(result) = helper {
        return match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("bench helper: {err}");
                ExitCode::FAILURE
            }
        };
    }
    let plan = if args.iter().any(|a| a == "--bench") { Plan::full() } else { Plan::smoke() };
    let plan = match plan.with_rows_from(&args) {
        Ok(plan) => plan,
        Err(err) => {
            eprintln!("bench: {err}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("bench: cannot start the runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(plan)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(err) => {
            eprintln!("bench failed: {err}");
            ExitCode::FAILURE
        }
    }
}

/// The gateway binary the rows run: this tree's release build, or `SWITCHYARD_BENCH_BIN` (another
/// build, say an earlier commit's, measured with this bench in the same conditions).
fn gateway_binary() -> PathBuf {
    std::env::var_os("SWITCHYARD_BENCH_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_switchyard")))
}

/// Runs every row, prints the table and saves it; `false` when a row saw wrong answers.
async fn run(plan: Plan) -> Result<bool> {
    let out = results_dir(plan.full)?;
    let work = out.join("run");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;
    let mut bench = Bench {
        mock: MockProcess::spawn(plan.sse)?,
        report: Report::new(plan.full),
        plan,
        bin: gateway_binary(),
        work,
        problems: Vec::new(),
    };
    describe_machine(&mut bench);
    eprintln!("bench: starting the gateway and configuring it");
    let main_dir = bench.work.join("main");
    let main = Node::start(&bench.bin, &main_dir, &embedded_store(&main_dir.join("store"))).await?;
    let model_api = rows::chat::configure(&bench, &main).await?;
    let idle = rows::memory::idle(&bench, &main)?;
    if bench.plan.runs(&[1, 2, 3]) {
        rows::chat::measure(&mut bench, &main, model_api).await?;
    }
    if bench.plan.runs(&[4]) {
        rows::stream::measure(&mut bench, &main).await?;
    }
    if bench.plan.runs(&[5]) {
        rows::memory::measure(&mut bench, &main, idle).await?;
    }
    if bench.plan.runs(&[6]) {
        rows::scale::measure(&mut bench, &main).await?;
    }
    if bench.plan.runs(&[7]) {
        rows::etcd::measure(&mut bench).await?;
    }
    if bench.plan.runs(&[8]) {
        rows::soak::measure(&mut bench, &main).await?;
    }
    if bench.plan.runs(&[9]) {
        rows::metrics::measure(&mut bench, &main).await?;
    }
    if bench.plan.runs(&[10]) {
        rows::scale::measure_vars(&mut bench).await?;
    }
    if bench.plan.runs(&[11]) {
        rows::quota::measure(&mut bench, &main).await?;
    }
    if bench.plan.runs(&[12]) {
        rows::instructions::measure(&mut bench).await?;
    }
    main.stop();

    for problem in &bench.problems {
        bench.report.notes.push(format!("PROBLEM: {problem}"));
    }
    bench.report.save(&out)?;
    println!("{}", bench.report.markdown());
    eprintln!("bench: raw results in {}", out.display());
    Ok(bench.problems.is_empty())
}

/// `<target dir>/bench` (`bench/smoke` for smoke runs): the bench executable lives in
/// `<target dir>/<profile>/deps/`, wherever `CARGO_TARGET_DIR` put it.
fn results_dir(full: bool) -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let target = exe.ancestors().nth(3).ok_or("cannot find the target directory")?;
    let dir = target.join("bench");
    Ok(if full { dir } else { dir.join("smoke") })
}

fn describe_machine(bench: &mut Bench) {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load: Vec<&str> = load.split_whitespace().take(3).collect();
    let mode =
        if bench.plan.full { "full run (bench profile)" } else { "smoke run (debug build: figures mean nothing)" };
    bench.report.context.push(format!(
        "switchyard bench, {mode}: {cores} cores, load average {} at start; mock completion {} bytes; \
         SSE {} events {} ms apart.",
        load.join(" "),
        mock::COMPLETION.len(),
        bench.plan.sse.sse_events,
        bench.plan.sse.sse_gap.as_millis()
    ));
    bench.report.raw("machine", serde_json::json!({"cores": cores, "loadavg": load, "full": bench.plan.full}));
}

/// Wall-clock nanoseconds since the epoch: comparable across processes on this machine.
pub fn unix_nanos() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// Creates `dir` afresh.
pub fn fresh_dir(dir: &Path) -> Result<()> {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir)?;
    Ok(())
}
