//! The `switchyard` binary as a process of its own, for what only a process has: signals, exit
//! codes, its open file limit. Its log (stdout and stderr) goes to a file the test reads.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use serde_json::Value;
use tempfile::TempDir;

pub const ADMIN_KEY: &str = "node-admin-key";

pub struct Node {
    child: Child,
    pub proxy: u16,
    pub admin: u16,
    _dir: TempDir,
    log: PathBuf,
    pub http: reqwest::Client,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Node {
    /// Starts the binary with a config of loopback listeners, a fresh store and the access log
    /// on, plus `extra` (top-level YAML keys, or a `proxy:` block replacing the listen one), and
    /// waits until its admin API answers. With `limits`, the binary runs under
    /// `sh -c 'ulimit ... && exec switchyard ...'`, e.g. `ulimit -Sn 128 && ulimit -Hn 256`.
    pub async fn start(extra: &str, limits: Option<&str>) -> Node {
        let dir = tempfile::tempdir().unwrap();
        let (proxy, admin) = (free_port(), free_port());
        let config = dir.path().join("config.yaml");
        let proxy_block = if extra.contains("proxy:") {
            extra.replace("proxy:", &format!("proxy:\n  listen: [\"127.0.0.1:{proxy}\"]"))
        } else {
            format!("proxy:\n  listen: [\"127.0.0.1:{proxy}\"]\n{extra}")
        };
        std::fs::write(
            &config,
            format!(
                "{proxy_block}\nadmin:\n  listen: [\"127.0.0.1:{admin}\"]\n  keys: [\"{ADMIN_KEY}\"]\n\
                 metrics:\n  listen: \"127.0.0.1:0\"\nstatus:\n  listen: \"127.0.0.1:0\"\n\
                 store:\n  path: \"{}\"\nlog:\n  access_log: true\n",
                dir.path().join("data").display()
            ),
        )
        .unwrap();
        let log = dir.path().join("switchyard.log");
        let binary = env!("CARGO_BIN_EXE_switchyard");
        let mut command = match limits {
            None => Command::new(binary),
            Some(limits) => {
                let mut sh = Command::new("sh");
                sh.args(["-c", &format!("{limits} && exec \"$0\" \"$@\""), binary]);
                sh
            }
        };
        let child = command
            .args(["-c", config.to_str().unwrap()])
            .env("RUST_LOG", "info")
            .stdout(Stdio::from(std::fs::File::create(&log).unwrap()))
            .stderr(Stdio::from(std::fs::File::options().append(true).open(&log).unwrap()))
            .spawn()
            .unwrap();
        let http = reqwest::Client::builder().no_proxy().build().unwrap();
        let mut node = Node { child, proxy, admin, _dir: dir, log, http };
        for _ in 0..400 {
            if node.http.get(node.admin_url("/apisix/admin/status")).header("x-api-key", ADMIN_KEY).send().await.is_ok()
            {
                return node;
            }
            if let Some(status) = node.child.try_wait().unwrap() {
                panic!("switchyard exited with {status}: {}", node.log());
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("switchyard did not start: {}", node.log());
    }

    pub fn proxy_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.proxy)
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.admin)
    }

    /// PUTs a route through the admin API; returns once its store revision is live.
    pub async fn put_route(&self, route: Value) {
        let id = route["id"].as_str().unwrap().to_string();
        let response = self
            .http
            .put(self.admin_url(&format!("/apisix/admin/routes/{id}")))
            .header("x-api-key", ADMIN_KEY)
            .body(route.to_string())
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success(), "route PUT failed: {}", response.status());
        let revision: u64 = response.headers()["x-switchyard-revision"].to_str().unwrap().parse().unwrap();
        for _ in 0..400 {
            let status = self
                .http
                .get(self.admin_url("/apisix/admin/status"))
                .header("x-api-key", ADMIN_KEY)
                .send()
                .await
                .unwrap();
            let status: Value = serde_json::from_str(&status.text().await.unwrap()).unwrap();
            if status["revision"].as_u64().unwrap() >= revision {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("route {id} never went live");
    }

    /// Sends `signal` (`TERM`, `INT`) to the process.
    pub fn signal(&self, signal: &str) {
        let sent = Command::new("kill").args(["-s", signal, &self.child.id().to_string()]).status().unwrap();
        assert!(sent.success(), "kill -s {signal} failed");
    }

    /// Waits for the process to exit, at most `wait`.
    pub async fn exited(&mut self, wait: Duration) -> ExitStatus {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(tokio::time::Instant::now() < deadline, "switchyard still running after {wait:?}: {}", self.log());
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Everything the process has logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The log once `wanted` holds for it, or as it is after 5 s: the node writes its log in
    /// batches (every 20 ms, later when the machine is busy), so a line logged a moment ago may
    /// not be in the file yet.
    pub async fn log_when(&self, wanted: impl Fn(&str) -> bool) -> String {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            let log = self.log();
            if wanted(&log) || std::time::Instant::now() >= deadline {
                return log;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
