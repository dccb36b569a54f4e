//! A real Redis (Debian's `redis-server` on PATH, or `$REDIS_BIN`) on a free loopback port with
//! its own data folder, as etcd is: plain, with a password and an ACL user, over TLS (a
//! certificate made with rcgen), or three of them made a Redis Cluster with `redis-cli --cluster
//! create` (`$REDIS_CLI` names another redis-cli). A missing binary fails the test with
//! instructions.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tempfile::TempDir;

pub struct Redis {
    child: Option<Child>,
    /// The port clients connect to (the TLS port of a TLS server).
    pub port: u16,
    _dir: TempDir,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The password of the `default` user of [`Redis::start_with_auth`].
pub const PASSWORD: &str = "redis-default-secret";
/// The ACL user of [`Redis::start_with_auth`], and its password.
pub const ACL_USER: (&str, &str) = ("limiter", "limiter-secret");

impl Redis {
    /// Spawns redis-server (no persistence) and waits until it accepts connections.
    pub async fn start() -> Redis {
        Self::start_with(|_, _| Vec::new()).await
    }

    /// A server whose `default` user needs [`PASSWORD`], with the ACL user [`ACL_USER`].
    pub async fn start_with_auth() -> Redis {
        Self::start_with(|_, _| {
            let user = format!(">{}", ACL_USER.1);
            ["--requirepass", PASSWORD, "--user", ACL_USER.0, "on", &user, "~*", "&*", "+@all"]
                .map(String::from)
                .to_vec()
        })
        .await
    }

    /// A server that speaks TLS only, with a self-signed certificate for 127.0.0.1; clients are
    /// not asked for a certificate.
    pub async fn start_tls() -> Redis {
        Self::start_with(|dir, port| {
            let certified =
                rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
            let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
            std::fs::write(&cert, certified.cert.pem()).unwrap();
            std::fs::write(&key, certified.signing_key.serialize_pem()).unwrap();
            let path = |p: &Path| p.display().to_string();
            vec![
                "--port".into(),
                "0".into(),
                "--tls-port".into(),
                port.to_string(),
                "--tls-cert-file".into(),
                path(&cert),
                "--tls-key-file".into(),
                path(&key),
                "--tls-auth-clients".into(),
                "no".into(),
            ]
        })
        .await
    }

    /// Spawns redis-server with the arguments `extra` makes from its folder and port (later
    /// arguments win), and waits until the port accepts connections.
    async fn start_with(extra: impl Fn(&Path, u16) -> Vec<String>) -> Redis {
        let mut dir = tempfile::tempdir().unwrap();
        let binary = std::env::var("REDIS_BIN").unwrap_or_else(|_| "redis-server".into());
        for _ in 0..3 {
            let port = free_port();
            let child = Command::new(&binary)
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
                .arg("--dir")
                .arg(dir.path())
                .args(extra(dir.path(), port))
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

/// Three masters made one Redis Cluster, each slot served.
pub struct RedisCluster {
    nodes: Vec<Redis>,
}

impl RedisCluster {
    /// Spawns three `--cluster-enabled` servers (each with its bus on a free port too), joins
    /// them with `redis-cli --cluster create`, and waits until every node says `cluster_state:ok`.
    pub async fn start() -> RedisCluster {
        let mut nodes = Vec::new();
        for _ in 0..3 {
            nodes.push(
                Redis::start_with(|dir, _| {
                    let config = dir.join("nodes.conf").display().to_string();
                    let bus = free_port().to_string();
                    ["--cluster-enabled", "yes", "--cluster-config-file", &config, "--cluster-port", &bus]
                        .map(String::from)
                        .to_vec()
                })
                .await,
            );
        }
        let cluster = RedisCluster { nodes };
        let cli = std::env::var("REDIS_CLI").unwrap_or_else(|_| "redis-cli".into());
        let created = Command::new(&cli)
            .args(["--cluster", "create"])
            .args(cluster.addresses())
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap_or_else(|e| panic!("cannot run {cli} ({e}): apt-get install -y redis-tools"));
        assert!(created.success(), "redis-cli --cluster create failed");
        for _ in 0..500 {
            let ok = cluster.nodes.iter().all(|node| {
                let info = Command::new(&cli).args(["-p", &node.port.to_string(), "cluster", "info"]).output();
                info.is_ok_and(|out| String::from_utf8_lossy(&out.stdout).contains("cluster_state:ok"))
            });
            if ok {
                return cluster;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("the Redis Cluster never reached cluster_state:ok");
    }

    /// `127.0.0.1:port` of each node.
    pub fn addresses(&self) -> Vec<String> {
        self.nodes.iter().map(|node| format!("127.0.0.1:{}", node.port)).collect()
    }

    /// How many keys each node holds (`DBSIZE`), in node order.
    pub fn key_counts(&self) -> Vec<u64> {
        let cli = std::env::var("REDIS_CLI").unwrap_or_else(|_| "redis-cli".into());
        self.nodes
            .iter()
            .map(|node| {
                let out = Command::new(&cli).args(["-p", &node.port.to_string(), "dbsize"]).output().unwrap();
                String::from_utf8_lossy(&out.stdout).trim().parse().unwrap_or(0)
            })
            .collect()
    }
}
