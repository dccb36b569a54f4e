//! A Redis server of the bench's own (`redis-server`, Debian's package, or `$REDIS_BIN`) on a free
//! loopback port with its data under the bench's work folder and persistence off. `make bench`
//! installs it when it is missing; a run without it says so in the report.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::process::{free_port, stop};
use crate::Result;

pub struct RedisProcess {
    child: Child,
    pub port: u16,
}

impl RedisProcess {
    /// The redis-server binary, when installed.
    pub fn binary() -> Option<PathBuf> {
        let named = std::env::var_os("REDIS_BIN").map(PathBuf::from);
        let installed = ["/usr/bin/redis-server", "/usr/local/bin/redis-server"].into_iter().map(PathBuf::from);
        named.into_iter().chain(installed).find(|p| p.exists())
    }

    /// Starts the server in `dir` and waits until it accepts connections.
    pub async fn start(binary: &Path, dir: &Path) -> Result<RedisProcess> {
        crate::fresh_dir(dir)?;
        let port = free_port()?;
        let child = Command::new(binary)
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("redis.log"))?)
            .spawn()?;
        let mut redis = RedisProcess { child, port };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Some(status) = redis.child.try_wait()? {
                return Err(
                    format!("redis-server exited with {status}; see {}", dir.join("redis.log").display()).into()
                );
            }
            if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
                return Ok(redis);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Err("redis-server did not accept connections in time".into())
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for RedisProcess {
    fn drop(&mut self) {
        stop(&mut self.child, Duration::from_secs(2));
    }
}
