//! The bar to clear: nginx (Debian's package) as a plain keep-alive reverse proxy to the same mock,
//! started with a generated config (one worker process per core, as the gateway has one proxy
//! worker per core; access log off; keep-alive on both sides with no per-connection request cap,
//! since nginx's default of 1,000 would close a load connection mid-run; buffering off so streams
//! are relayed as they come), measured in the same run as the gateway.
//! `make bench` installs nginx when it is missing; a smoke run without it says so in the report.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::process::{command_under, free_port, stop};
use crate::Result;

pub struct NginxProcess {
    master: Child,
    pub addr: SocketAddr,
}

impl NginxProcess {
    /// Starts nginx in `dir` proxying every path to `upstream`; returns once it accepts
    /// connections and its workers run. `Err` says why it could not (not installed, failed to start).
    pub fn spawn(upstream: SocketAddr, dir: &Path) -> Result<NginxProcess> {
        NginxProcess::spawn_with(upstream, dir, None)
    }

    /// [`NginxProcess::spawn`] as one process (no master, one worker) with `prefix` (a program
    /// and its arguments) run in front of nginx: valgrind, for row 12.
    pub fn spawn_single_under(upstream: SocketAddr, dir: &Path, prefix: &[OsString]) -> Result<NginxProcess> {
        NginxProcess::spawn_with(upstream, dir, Some(prefix))
    }

    fn spawn_with(upstream: SocketAddr, dir: &Path, single_under: Option<&[OsString]>) -> Result<NginxProcess> {
        let binary = ["/usr/sbin/nginx", "/usr/bin/nginx"]
            .into_iter()
            .find(|path| Path::new(path).exists())
            .ok_or("nginx is not installed (make bench installs Debian's nginx-light)")?;
        std::fs::create_dir_all(dir.join("logs"))?;
        let port = free_port()?;
        let (workers, master) = match single_under {
            Some(_) => (1, "off"),
            None => (std::thread::available_parallelism().map_or(1, |n| n.get()), "on"),
        };
        let config = format!(
            "worker_processes {workers};\n\
             master_process {master};\n\
             pid {dir}/nginx.pid;\n\
             error_log {dir}/logs/error.log warn;\n\
             events {{ worker_connections 4096; }}\n\
             http {{\n\
             \x20 access_log off;\n\
             \x20 keepalive_requests 10000000;\n\
             \x20 client_body_temp_path {dir}/body;\n\
             \x20 proxy_temp_path {dir}/proxy;\n\
             \x20 upstream mock {{ server {upstream}; keepalive 256; keepalive_requests 10000000; }}\n\
             \x20 server {{\n\
             \x20   listen 127.0.0.1:{port};\n\
             \x20   location / {{\n\
             \x20     proxy_pass http://mock;\n\
             \x20     proxy_http_version 1.1;\n\
             \x20     proxy_set_header Connection \"\";\n\
             \x20     proxy_buffering off;\n\
             \x20   }}\n\
             \x20 }}\n\
             }}\n",
            dir = dir.display(),
        );
        let config_path = dir.join("nginx.conf");
        std::fs::write(&config_path, config)?;
        let master = command_under(single_under.unwrap_or_default(), binary)
            .args(["-e", "stderr", "-p"])
            .arg(dir)
            .arg("-c")
            .arg(&config_path)
            .args(["-g", "daemon off;"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()?;
        let mut nginx = NginxProcess { master, addr: ([127, 0, 0, 1], port).into() };
        // Under valgrind, nginx takes seconds to start.
        let patience = if single_under.is_some() { Duration::from_secs(60) } else { Duration::from_secs(10) };
        let deadline = Instant::now() + patience;
        while std::net::TcpStream::connect(nginx.addr).is_err() {
            if let Some(status) = nginx.master.try_wait()? {
                return Err(format!("nginx exited at start ({status}); see {}/logs/error.log", dir.display()).into());
            }
            if Instant::now() > deadline {
                return Err(format!("nginx did not start listening within {} s", patience.as_secs()).into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // The master listens before it forks its workers: until they exist, `pids` would miss
        // the processes that do the work (and nginx's CPU would read as zero).
        while single_under.is_none() && crate::process::children(nginx.master.id()).len() < workers {
            if Instant::now() > deadline {
                return Err(format!("nginx did not start its {workers} workers within 10 s").into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(nginx)
    }

    /// The master and its workers: the processes whose CPU time is nginx's cost.
    pub fn pids(&self) -> Vec<u32> {
        let master = self.master.id();
        let mut pids = vec![master];
        pids.extend(crate::process::children(master));
        pids
    }
}

impl Drop for NginxProcess {
    fn drop(&mut self) {
        stop(&mut self.master, Duration::from_secs(2));
    }
}
