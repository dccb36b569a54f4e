//! Child processes of the bench (mock, gateway nodes, etcd): ports, memory, stopping.

use std::ffi::{OsStr, OsString};
use std::io::BufRead;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::Result;

/// Starts this bench executable again with `args` (a helper: mock or relay) and returns it with
/// the first line it prints (where it listens). The helper exits when its standard input closes.
pub fn spawn_self(args: &[String]) -> Result<(Child, String)> {
    spawn_self_under(&[], args)
}

/// [`spawn_self`] behind `prefix` (see [`command_under`]).
pub fn spawn_self_under(prefix: &[OsString], args: &[String]) -> Result<(Child, String)> {
    let mut child = command_under(prefix, std::env::current_exe()?)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let stdout = child.stdout.take().ok_or("the helper has no stdout")?;
    let mut line = String::new();
    std::io::BufReader::new(stdout).read_line(&mut line)?;
    Ok((child, line))
}

/// The `key=<port>` field of a helper's first line, as a loopback address.
pub fn port_field(line: &str, key: &str) -> Result<std::net::SocketAddr> {
    let field = line.split_whitespace().find_map(|f| f.strip_prefix(key)).ok_or("the helper did not start")?;
    Ok(([127, 0, 0, 1], field.parse::<u16>()?).into())
}

/// Waits until standard input closes: how a helper learns that the bench is over.
pub async fn until_stdin_closes() -> Result<()> {
    use tokio::io::AsyncReadExt;
    let mut stdin = tokio::io::stdin();
    let mut sink = [0u8; 64];
    while stdin.read(&mut sink).await? > 0 {}
    Ok(())
}

/// A command running `program`, behind `prefix` (a program and its arguments, which runs
/// `program` in turn: valgrind) when there is one.
pub fn command_under(prefix: &[OsString], program: impl AsRef<OsStr>) -> Command {
    match prefix.split_first() {
        Some((wrapper, args)) => {
            let mut command = Command::new(wrapper);
            command.args(args).arg(program);
            command
        }
        None => Command::new(program),
    }
}

/// A loopback port free right now (the child binds it a moment later).
pub fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// The resident set size of process `pid`, in KiB (`VmRSS` of `/proc/PID/status`).
pub fn rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).ok_or("no VmRSS line")?;
    let kib = line.split_whitespace().nth(1).ok_or("malformed VmRSS line")?;
    Ok(kib.parse()?)
}

/// The direct children of process `pid` (its threads' `children` lists in `/proc`).
pub fn children(pid: u32) -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return Vec::new() };
    let mut out = Vec::new();
    for task in tasks.flatten() {
        if let Ok(list) = std::fs::read_to_string(task.path().join("children")) {
            out.extend(list.split_whitespace().filter_map(|c| c.parse::<u32>().ok()));
        }
    }
    out
}

/// CPU time the processes `pids` have used so far, all their threads summed, in nanoseconds
/// (the first field of each `/proc/PID/task/TID/schedstat`: nanosecond precision, unlike the
/// clock ticks of `/proc/PID/stat`). A process that is gone counts as zero.
pub fn cpu_nanos(pids: &[u32]) -> u64 {
    let mut total = 0;
    for pid in pids {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { continue };
        for task in tasks.flatten() {
            let Ok(stat) = std::fs::read_to_string(task.path().join("schedstat")) else { continue };
            total += stat.split_whitespace().next().and_then(|ns| ns.parse::<u64>().ok()).unwrap_or(0);
        }
    }
    total
}

/// How many file descriptors process `pid` has open (entries of `/proc/PID/fd`).
pub fn open_fds(pid: u32) -> Result<u64> {
    Ok(std::fs::read_dir(format!("/proc/{pid}/fd"))?.count() as u64)
}

/// Asks `child` to stop with SIGTERM (so stores close cleanly), waits up to `grace`, then
/// kills it. Only ever called on children this bench started.
pub fn stop(child: &mut Child, grace: Duration) {
    if matches!(child.try_wait(), Ok(Some(_))) {
        return;
    }
    let _ = std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if matches!(child.try_wait(), Ok(Some(_))) {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Sleeps about `duration` without the 1 ms granularity of tokio's timer, for polling loops
/// that time sub-millisecond events. Only the bench's own thread waits.
pub fn short_sleep(duration: Duration) {
    std::thread::sleep(duration);
}
