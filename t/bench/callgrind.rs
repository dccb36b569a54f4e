//! Instructions per request: a proxy run under valgrind's callgrind, its counters zeroed before a
//! window of load and dumped after it (`callgrind_control`). Unlike time, an instruction count
//! does not move with what else runs on the machine: it tells apart changes of a few percent that
//! throughput on two shared cores cannot. `make bench` installs valgrind when it is missing.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::Result;

/// valgrind and its control script, found on this machine.
pub struct Callgrind {
    valgrind: PathBuf,
    control: PathBuf,
}

impl Callgrind {
    /// `Err` says why the row cannot run (valgrind is not installed).
    pub fn find() -> Result<Callgrind> {
        let installed = |name: &str| {
            ["/usr/bin", "/usr/local/bin"].iter().map(|dir| Path::new(dir).join(name)).find(|path| path.exists())
        };
        match (installed("valgrind"), installed("callgrind_control")) {
            (Some(valgrind), Some(control)) => Ok(Callgrind { valgrind, control }),
            _ => Err("valgrind is not installed (make bench installs Debian's valgrind)".into()),
        }
    }

    /// What goes before a program's path to run it under callgrind, its counts written to `out`
    /// (and to `out.N` for the N-th dump asked for).
    pub fn prefix(&self, out: &Path) -> Vec<OsString> {
        let mut file = OsString::from("--callgrind-out-file=");
        file.push(out);
        vec![self.valgrind.clone().into_os_string(), "--tool=callgrind".into(), "--quiet".into(), file]
    }

    /// Sets the counters of process `pid` (running under callgrind) to zero; returns once done.
    pub fn zero(&self, pid: u32) -> Result<()> {
        self.control(pid, "-z")
    }

    /// Dumps the counters of process `pid`, whose counts go to `out`, and returns the
    /// instructions it ran since they were last zeroed.
    pub fn dump(&self, pid: u32, out: &Path) -> Result<u64> {
        self.control(pid, "-d")?;
        let latest = latest_dump(out)?;
        let text = std::fs::read_to_string(&latest)?;
        totals(&text).ok_or_else(|| format!("no instruction total in {}", latest.display()).into())
    }

    fn control(&self, pid: u32, command: &str) -> Result<()> {
        let output = Command::new(&self.control).arg(command).arg(pid.to_string()).stdin(Stdio::null()).output()?;
        if !output.status.success() {
            let said = String::from_utf8_lossy(&output.stderr);
            return Err(format!("callgrind_control {command} {pid} failed: {}", said.trim()).into());
        }
        Ok(())
    }
}

/// The dump with the highest number among `out.1`, `out.2`, …
fn latest_dump(out: &Path) -> Result<PathBuf> {
    let dir = out.parent().ok_or("the callgrind output has no directory")?;
    let name = out.file_name().ok_or("the callgrind output has no file name")?.to_string_lossy().into_owned();
    let mut latest: Option<(u32, PathBuf)> = None;
    for entry in std::fs::read_dir(dir)?.flatten() {
        let file = entry.file_name().to_string_lossy().into_owned();
        let Some(number) = file.strip_prefix(&name).and_then(|rest| rest.strip_prefix('.')) else { continue };
        let Ok(number) = number.parse::<u32>() else { continue };
        if latest.as_ref().is_none_or(|(highest, _)| number > *highest) {
            latest = Some((number, entry.path()));
        }
    }
    latest.map(|(_, path)| path).ok_or_else(|| format!("callgrind wrote no dump next to {}", out.display()).into())
}

/// The instruction total of a callgrind output file (its `totals:` line, else `summary:`).
fn totals(text: &str) -> Option<u64> {
    let line = |key: &str| {
        text.lines().find_map(|line| line.strip_prefix(key)).and_then(|rest| rest.split_whitespace().next())
    };
    line("totals:").or_else(|| line("summary:")).and_then(|n| n.parse().ok())
}
