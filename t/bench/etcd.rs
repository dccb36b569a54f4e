//! An etcd server of the bench's own (`/usr/bin/etcd`, Debian's `etcd-server`) on free loopback
//! ports with its data under the bench's work folder.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::process::{free_port, stop};
use crate::Result;

pub struct Etcd {
    child: Child,
    /// `http://127.0.0.1:PORT`, for `store.etcd.endpoints`.
    pub endpoint: String,
}

impl Etcd {
    /// The etcd binary, when installed.
    pub fn binary() -> Option<&'static Path> {
        ["/usr/bin/etcd", "/usr/local/bin/etcd"].into_iter().map(Path::new).find(|p| p.exists())
    }

    /// Starts a one-member cluster in `dir` and waits until it reports healthy.
    pub async fn start(binary: &Path, dir: &Path) -> Result<Etcd> {
        crate::fresh_dir(dir)?;
        let (client, peer) = (free_port()?, free_port()?);
        let client_url = format!("http://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let child = Command::new(binary)
            .args(["--name", "bench", "--data-dir"])
            .arg(dir.join("data"))
            .args(["--listen-client-urls", &client_url, "--advertise-client-urls", &client_url])
            .args(["--listen-peer-urls", &peer_url, "--initial-advertise-peer-urls", &peer_url])
            .args(["--initial-cluster", &format!("bench={peer_url}"), "--logger", "zap", "--log-level", "error"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("etcd.log"))?)
            .spawn()?;
        let mut etcd = Etcd { child, endpoint: client_url };
        let http = reqwest::Client::builder().no_proxy().build()?;
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Some(status) = etcd.child.try_wait()? {
                return Err(format!("etcd exited with {status}; see {}", dir.join("etcd.log").display()).into());
            }
            let health = http.get(format!("{}/health", etcd.endpoint)).send().await;
            if let Ok(response) = health {
                if response.text().await.unwrap_or_default().contains("\"true\"") {
                    return Ok(etcd);
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        stop(&mut etcd.child, Duration::from_secs(2));
        Err("etcd did not become healthy in time".into())
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        stop(&mut self.child, Duration::from_secs(5));
    }
}
