//! A gateway node under test: the release `switchyard` binary as its own process (so its memory
//! is its own), its config file, and the admin calls the bench makes on it.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::process::{command_under, free_port, rss_kib, stop};
use crate::Result;

pub const ADMIN_KEY: &str = "bench-admin-key";

/// How long a node may take to start or to apply a write before the bench gives up.
const PATIENCE: Duration = Duration::from_secs(60);

pub struct Node {
    child: Child,
    pub proxy: SocketAddr,
    pub admin: SocketAddr,
    pub dir: PathBuf,
    pub http: reqwest::Client,
}

impl Node {
    /// Starts `bin` in `dir` with the given `store:` section of the node config and waits until
    /// its admin API answers.
    pub async fn start(bin: &Path, dir: &Path, store_yaml: &str) -> Result<Node> {
        let mut node = Node::spawn(bin, dir, store_yaml)?;
        node.wait_ready().await?;
        Ok(node)
    }

    /// Starts the process and returns at once; [`Node::wait_ready`] waits for it. Metrics are on
    /// (as by default), their exporter on a port of its own.
    pub fn spawn(bin: &Path, dir: &Path, store_yaml: &str) -> Result<Node> {
        Node::spawn_with(&[], bin, dir, store_yaml, true)
    }

    /// [`Node::start`], with metrics on or off (row 9 compares the two).
    pub async fn start_with_metrics(bin: &Path, dir: &Path, store_yaml: &str, metrics: bool) -> Result<Node> {
        let mut node = Node::spawn_with(&[], bin, dir, store_yaml, metrics)?;
        node.wait_ready().await?;
        Ok(node)
    }

    /// [`Node::start`] with `prefix` (a program and its arguments) run in front of `bin`, which it
    /// runs in turn: valgrind, for row 12. The node's process is the prefix's.
    pub async fn start_under(prefix: &[OsString], bin: &Path, dir: &Path, store_yaml: &str) -> Result<Node> {
        let mut node = Node::spawn_with(prefix, bin, dir, store_yaml, true)?;
        node.wait_ready().await?;
        Ok(node)
    }

    fn spawn_with(prefix: &[OsString], bin: &Path, dir: &Path, store_yaml: &str, metrics: bool) -> Result<Node> {
        std::fs::create_dir_all(dir)?;
        let (proxy, admin) = (free_port()?, free_port()?);
        let metrics = if metrics { "listen: \"127.0.0.1:0\"" } else { "enabled: false" };
        let config = format!(
            "proxy:\n  listen: [\"127.0.0.1:{proxy}\"]\nadmin:\n  listen: [\"127.0.0.1:{admin}\"]\n  keys: [\"{ADMIN_KEY}\"]\n\
             metrics:\n  {metrics}\nstatus:\n  listen: \"127.0.0.1:0\"\n{store_yaml}\nlog:\n  level: info\n  access_log: true\n"
        );
        let config_path = dir.join("config.yaml");
        std::fs::write(&config_path, config)?;
        // The access log goes to stdout: formatted and written as in production, then dropped.
        let child = command_under(prefix, bin)
            .arg("-c")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("stderr.log"))?)
            .spawn()?;
        let http = reqwest::Client::builder().no_proxy().build()?;
        Ok(Node {
            child,
            proxy: SocketAddr::from(([127, 0, 0, 1], proxy)),
            admin: SocketAddr::from(([127, 0, 0, 1], admin)),
            dir: dir.to_path_buf(),
            http,
        })
    }

    /// Waits until the admin API answers; fails with the node's own words when it exited.
    pub async fn wait_ready(&mut self) -> Result<()> {
        let deadline = Instant::now() + PATIENCE;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                let log = std::fs::read_to_string(self.dir.join("stderr.log")).unwrap_or_default();
                return Err(format!("switchyard exited with {status}: {}", log.trim()).into());
            }
            if self.status().await.is_ok() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        Err("switchyard did not start in time".into())
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn rss_kib(&self) -> Result<u64> {
        rss_kib(self.pid())
    }

    /// `GET /apisix/admin/status`.
    pub async fn status(&self) -> Result<Value> {
        let response = self
            .http
            .get(format!("http://{}/apisix/admin/status", self.admin))
            .header("x-api-key", ADMIN_KEY)
            .send()
            .await?;
        if !response.status().is_success() {
            return Err(format!("status answered {}", response.status()).into());
        }
        Ok(serde_json::from_slice(&response.bytes().await?)?)
    }

    /// PUTs a route and returns the store revision of the write (not yet waited for).
    pub async fn put_route(&self, id: &str, route: &Value) -> Result<u64> {
        self.put(&format!("routes/{id}"), route).await
    }

    /// PUTs `/apisix/admin/<path>` (a route, a consumer, ...) and returns the store revision of
    /// the write (not yet waited for).
    pub async fn put(&self, path: &str, body: &Value) -> Result<u64> {
        let response = self
            .http
            .put(format!("http://{}/apisix/admin/{path}", self.admin))
            .header("x-api-key", ADMIN_KEY)
            .body(body.to_string())
            .send()
            .await?;
        let status = response.status();
        let revision = revision_of(&response);
        if !status.is_success() {
            return Err(format!("PUT {path}: {status} {}", response.text().await.unwrap_or_default()).into());
        }
        revision.ok_or_else(|| "a write answered without x-switchyard-revision".into())
    }

    /// Waits until the node has applied `revision` (the write is live).
    pub async fn wait_revision(&self, revision: u64) -> Result<()> {
        let deadline = Instant::now() + PATIENCE;
        while Instant::now() < deadline {
            let applied = self.status().await?.get("revision").and_then(Value::as_u64).unwrap_or(0);
            if applied >= revision {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        Err(format!("revision {revision} was not applied in time").into())
    }

    /// A JSON POST on the admin listener with `Authorization: Bearer <admin key>`: status, body,
    /// and the revision the write made when it says.
    pub async fn admin_post(&self, path: &str, body: &Value) -> Result<(u16, Value, Option<u64>)> {
        let response = self
            .http
            .post(format!("http://{}{path}", self.admin))
            .bearer_auth(ADMIN_KEY)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await?;
        let status = response.status().as_u16();
        let revision = revision_of(&response);
        let text = response.text().await?;
        Ok((status, serde_json::from_str(&text).unwrap_or(Value::String(text)), revision))
    }

    /// Stops the node cleanly (SIGTERM), so its store is closed as in an orderly restart.
    pub fn stop(mut self) {
        stop(&mut self.child, Duration::from_secs(10));
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        stop(&mut self.child, Duration::from_secs(2));
    }
}

fn revision_of(response: &reqwest::Response) -> Option<u64> {
    response.headers().get("x-switchyard-revision").and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok())
}

/// The `store:` section of an embedded-store node keeping its data in `path`.
pub fn embedded_store(path: &Path) -> String {
    format!("store:\n  backend: embedded\n  path: \"{}\"", path.display())
}
