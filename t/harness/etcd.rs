//! A real etcd (Debian's `etcd-server`, binary `etcd` on PATH or `$ETCD_BIN`) on free loopback
//! ports with its own data folder. It can be stopped and restarted on the same ports and data, to
//! test outages. A missing etcd fails the test with instructions: it is never skipped.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use switchyard::config::StoreBackend;
use switchyard::Config;
use tempfile::TempDir;

pub struct Etcd {
    child: Option<Child>,
    client_port: u16,
    peer_port: u16,
    dir: TempDir,
    /// Serves clients over TLS and asks them for a certificate: files in `dir` (see [`Etcd::tls`]).
    tls: bool,
}

/// PEM file names in the etcd folder when it serves TLS.
const CA: &str = "ca.pem";
const SERVER: [&str; 2] = ["server.pem", "server-key.pem"];
const CLIENT: [&str; 2] = ["client.pem", "client-key.pem"];

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn binary() -> PathBuf {
    std::env::var_os("ETCD_BIN").map_or_else(|| PathBuf::from("etcd"), PathBuf::from)
}

impl Etcd {
    /// Spawns a one-member cluster and waits until it answers.
    pub async fn start() -> Etcd {
        Self::start_with(false).await
    }

    /// Like [`Etcd::start`], serving clients over TLS with a fresh CA, and requiring client
    /// certificates signed by it.
    pub async fn start_tls() -> Etcd {
        Self::start_with(true).await
    }

    async fn start_with(tls: bool) -> Etcd {
        let dir = tempfile::tempdir().unwrap();
        if tls {
            write_certificates(dir.path());
        }
        let mut etcd = Etcd { child: None, client_port: free_port(), peer_port: free_port(), dir, tls };
        // A port found free may be taken before etcd binds it (by another test's connection).
        for _ in 0..3 {
            match etcd.spawn().await {
                Ok(()) => return etcd,
                Err(log) if log.contains("address already in use") => {
                    (etcd.client_port, etcd.peer_port) = (free_port(), free_port());
                    let _ = std::fs::remove_dir_all(etcd.dir.path().join("data"));
                    let _ = std::fs::remove_file(etcd.log_path());
                }
                Err(log) => panic!("{log}"),
            }
        }
        panic!("etcd found no free port in 3 tries");
    }

    /// `http(s)://127.0.0.1:<port>`, for `store.etcd.endpoints`.
    pub fn endpoint(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.client_port)
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Kills etcd (SIGKILL: an outage, not a shutdown) and waits until it is gone.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts etcd again on the same ports and data after [`Etcd::stop`].
    pub async fn restart(&mut self) {
        assert!(self.child.is_none(), "restart follows stop");
        if let Err(log) = self.spawn().await {
            panic!("{log}");
        }
    }

    /// A client of its own, for writes around the gateway (as `etcdctl` would make them).
    pub async fn client(&self) -> etcd_client::Client {
        etcd_client::Client::connect([self.endpoint()], None).await.unwrap()
    }

    /// Points a node config at this etcd, in group `group`, with a short timeout so outage tests
    /// run fast.
    pub fn configure(&self, config: &mut Config, group: &str) {
        config.gateway_group_id = group.into();
        config.store.backend = StoreBackend::Etcd;
        config.store.etcd.endpoints = vec![self.endpoint()];
        config.store.etcd.timeout_ms = 1000;
        if self.tls {
            config.store.etcd.ca_file = Some(self.file(CA));
            config.store.etcd.cert_file = Some(self.file(CLIENT[0]));
            config.store.etcd.key_file = Some(self.file(CLIENT[1]));
        }
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("etcd.log")
    }

    /// Spawns etcd and waits until it is healthy; on failure, what went wrong with etcd's log.
    async fn spawn(&mut self) -> Result<(), String> {
        let client = self.endpoint();
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.log_path()).unwrap();
        let mut command = Command::new(binary());
        if self.tls {
            command.arg(format!("--cert-file={}", self.file(SERVER[0]).display()));
            command.arg(format!("--key-file={}", self.file(SERVER[1]).display()));
            command.arg(format!("--trusted-ca-file={}", self.file(CA).display()));
            command.arg("--client-cert-auth");
        }
        let spawned = command
            .arg("--name=test")
            .arg(format!("--data-dir={}", self.dir.path().join("data").display()))
            .arg(format!("--listen-client-urls={client}"))
            .arg(format!("--advertise-client-urls={client}"))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster=test={peer}"))
            .args(["--heartbeat-interval=50", "--election-timeout=500", "--logger=zap", "--log-level=warn"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn();
        let child = match spawned {
            Ok(child) => child,
            Err(err) => panic!(
                "cannot run etcd ({}): {err}. These tests need a real etcd: install Debian's `etcd-server` \
                 (`apt-get install -y etcd-server`; `make test` does it) or set ETCD_BIN",
                binary().display()
            ),
        };
        self.child = Some(child);
        self.wait_until_healthy().await
    }

    async fn wait_until_healthy(&mut self) -> Result<(), String> {
        let mut http = reqwest::Client::builder().no_proxy().timeout(Duration::from_millis(500));
        if self.tls {
            let ca = std::fs::read(self.file(CA)).unwrap();
            let mut identity = std::fs::read(self.file(CLIENT[0])).unwrap();
            identity.extend(std::fs::read(self.file(CLIENT[1])).unwrap());
            http = http
                .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
                .identity(reqwest::Identity::from_pem(&identity).unwrap());
        }
        let http = http.build().unwrap();
        let url = format!("{}/health", self.endpoint());
        for _ in 0..200 {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.child = None;
                    return Err(format!(
                        "etcd exited with {status}:\n{}",
                        std::fs::read_to_string(self.log_path()).unwrap_or_default()
                    ));
                }
            }
            if let Ok(response) = http.get(&url).send().await {
                if response.text().await.is_ok_and(|body| body.contains("\"true\"")) {
                    return Ok(());
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(format!("etcd did not become healthy:\n{}", std::fs::read_to_string(self.log_path()).unwrap_or_default()))
    }
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate, as PEM files in `dir`.
fn write_certificates(dir: &std::path::Path) {
    use rcgen::{BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    std::fs::write(dir.join(CA), ca.self_signed(&ca_key).unwrap().pem()).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    for ([cert, key], purpose) in
        [(SERVER, ExtendedKeyUsagePurpose::ServerAuth), (CLIENT, ExtendedKeyUsagePurpose::ClientAuth)]
    {
        let leaf_key = KeyPair::generate().unwrap();
        let mut leaf = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
        leaf.extended_key_usages = vec![purpose];
        std::fs::write(dir.join(cert), leaf.signed_by(&leaf_key, &issuer).unwrap().pem()).unwrap();
        std::fs::write(dir.join(key), leaf_key.serialize_pem()).unwrap();
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.stop();
    }
}
