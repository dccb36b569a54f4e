//! A real Redis (Debian's `redis-server` on PATH, or `$REDIS_BIN`) on a free loopback port with
//! its own data folder, as etcd is. A missing binary fails the test with instructions.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tempfile::TempDir;

pub struct Redis {
    child: Option<Child>,
    pub port: u16,
    _dir: TempDir,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Redis {
    /// Spawns redis-server (no persistence) and waits until it accepts connections.
    pub async fn start() -> Redis {
        let mut dir = tempfile::tempdir().unwrap();
        let binary = std::env::var("REDIS_BIN").unwrap_or_else(|_| "redis-server".into());
        for _ in 0..3 {
            let port = free_port();
            let child = Command::new(&binary)
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
                .arg("--dir")
                .arg(dir.path())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| {
                    panic!("cannot run {binary} ({e}): `make test` installs it, or apt-get install -y redis-server")
                });
            let mut redis = Redis { child: Some(child), port, _dir: dir };
            for _ in 0..100 {
                if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
                    return redis;
                }
                if let Some(Ok(Some(_))) = redis.child.as_mut().map(Child::try_wait) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            redis.stop();
            dir = std::mem::replace(&mut redis._dir, tempfile::tempdir().unwrap());
        }
        panic!("redis-server did not start on a free port in 3 tries");
    }

    /// Kills the server (an outage).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}
