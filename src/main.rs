//! The `switchyard` binary: `switchyard [-c|--config FILE]` (default `conf/config.yaml`).

use std::path::PathBuf;
use std::process::ExitCode;

use switchyard::observe::access_format::{AccessFormat, LogFormat};
use switchyard::observe::log_writer;
use switchyard::{Config, Gateway};

/// mimalloc: the request path allocates many small, short-lived buffers, where glibc's allocator
/// cost about 15 % of the gateway's CPU in `make bench`. Built without transparent huge pages,
/// which more than doubled the idle RSS. [`switchyard::allocator`] says why it is not
/// `mimalloc::MiMalloc` itself.
#[global_allocator]
static ALLOCATOR: switchyard::allocator::Allocator = switchyard::allocator::Allocator;

fn main() -> ExitCode {
    let path = match config_path(std::env::args().skip(1)) {
        Ok(path) => path,
        Err(message) => {
            eprintln!("switchyard: {message}\nusage: switchyard [-c|--config FILE]");
            return ExitCode::from(2);
        }
    };
    let config = match Config::load(&path) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("switchyard: {err}");
            return ExitCode::from(2);
        }
    };
    let _log_writer = match init_tracing(&config.log) {
        Ok(guard) => guard,
        Err(err) => {
            eprintln!("switchyard: cannot start the log writer thread: {err}");
            return ExitCode::FAILURE;
        }
    };
    match switchyard::limits::raise_open_file_limit() {
        Ok(limit) if limit.now > limit.before => {
            tracing::info!(
                from = limit.before,
                to = limit.now,
                "raised the open file limit (RLIMIT_NOFILE) to its hard limit"
            );
        }
        Ok(_) => {}
        Err(err) => tracing::warn!(error = %err, "cannot raise the open file limit (RLIMIT_NOFILE)"),
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("switchyard: cannot start the runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let mut signals = match Signals::listen() {
            Ok(signals) => signals,
            Err(err) => {
                eprintln!("switchyard: cannot listen for signals: {err}");
                return ExitCode::FAILURE;
            }
        };
        let gateway = match Gateway::start(config).await {
            Ok(gateway) => gateway,
            Err(err) => {
                eprintln!("switchyard: {err}");
                return ExitCode::FAILURE;
            }
        };
        signals.next().await;
        tracing::info!("shutting down (a second SIGTERM or SIGINT cuts in-flight requests at once)");
        gateway.shutdown_or_cut(signals.next()).await;
        tracing::info!("stopped");
        ExitCode::SUCCESS
    })
}

fn config_path(mut args: impl Iterator<Item = String>) -> Result<PathBuf, String> {
    let mut path = PathBuf::from("conf/config.yaml");
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "-c" | "--config" => path = args.next().ok_or("-c needs a file")?.into(),
            "-h" | "--help" => return Err("the config file defaults to conf/config.yaml".into()),
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    Ok(path)
}

/// Logs go to stdout through a batching writer thread ([`log_writer`]), so a request never waits
/// on a `write` system call for its access log line. The writer blocks rather than drops lines
/// when it falls behind; the returned guard flushes what is queued when `main` ends. Access
/// events are printed by [`AccessFormat`] (through [`LogFormat`]): as other lines in text mode, bare with
/// `access_log_format: json` (their message is the JSON object), so those lines are pure JSON.
/// `Err`: the writer thread could not start.
fn init_tracing(log: &switchyard::config::LogConfig) -> std::io::Result<log_writer::FlushGuard> {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;

    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(&log.level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let colours = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let (writer, guard) = log_writer::start(std::io::stdout())?;
    let json = log.access_log_format == switchyard::observe::config::AccessLogFormat::Json;
    // One layer for both kinds of line: see `access_format` for why not a layer each.
    let lines = tracing_subscriber::fmt::layer()
        .event_format(LogFormat {
            access: AccessFormat { json },
            other: tracing_subscriber::fmt::format().with_target(true),
        })
        .with_ansi(colours)
        .with_writer(writer);
    tracing_subscriber::registry().with(filter).with(lines).init();
    Ok(guard)
}

/// SIGTERM and SIGINT, listened to from start to exit, so that a second signal during the
/// graceful shutdown is never missed (nor kills the process the default way).
#[cfg(unix)]
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

#[cfg(unix)]
impl Signals {
    fn listen() -> std::io::Result<Signals> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Signals { term: signal(SignalKind::terminate())?, int: signal(SignalKind::interrupt())? })
    }

    /// Waits for the next SIGTERM or SIGINT.
    async fn next(&mut self) {
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
    }
}

#[cfg(not(unix))]
struct Signals;

#[cfg(not(unix))]
impl Signals {
    fn listen() -> std::io::Result<Signals> {
        Ok(Signals)
    }

    async fn next(&mut self) {
        let _ = tokio::signal::ctrl_c().await;
    }
}
