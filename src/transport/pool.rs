//! HTTP clients for upstream and provider calls, shared by every route with the same transport
//! settings, so routes to one host share its keep-alive connections and a reload makes no new
//! pools. TLS is rustls with the Mozilla roots (webpki-roots).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper_rustls::HttpsConnectorBuilder;
use hyper_util::client::legacy::connect::HttpConnector;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use switchyard_sdk::{ClientHandle, ClientSettings};

use super::client::UpstreamClient;
use super::idle::IdlePool;

/// One node's upstream clients, one per distinct [`ClientSettings`], made on first use and kept
/// for the life of the node. Compiling a config takes its clients from here (through
/// [`switchyard_sdk::BuildContext`]); no connection is opened until a request is sent.
pub struct ClientPools {
    clients: Mutex<HashMap<ClientSettings, ClientHandle>>,
    /// The node's proxy workers: each keeps its own idle connections.
    workers: usize,
}

impl Default for ClientPools {
    /// Pools for one proxy worker per core.
    fn default() -> Self {
        ClientPools::for_workers(crate::config::ProxyConfig::default().worker_count())
    }
}

impl ClientPools {
    pub fn for_workers(workers: usize) -> ClientPools {
        ClientPools { clients: Mutex::default(), workers: workers.max(1) }
    }

    /// The client for `settings`, wrapped for plugins.
    pub fn handle(&self, settings: ClientSettings) -> Result<ClientHandle, String> {
        let mut clients = self.clients.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(client) = clients.get(&settings) {
            return Ok(client.clone());
        }
        let client = ClientHandle::new(build(settings, self.workers)?);
        clients.insert(settings, client.clone());
        Ok(client)
    }
}

/// Idle connections kept per provider host in each worker's shard: `keepalive_pool`, as APISIX
/// keeps `keepalive_pool` per nginx worker process. A pool smaller than the concurrency closes
/// connections only to open new ones a moment later: at 64 concurrent requests and a pool of 30,
/// one request in 60 paid for a TCP connect.
fn idle_per_host(settings: ClientSettings) -> usize {
    if !settings.keepalive {
        return 0;
    }
    settings.keepalive_pool as usize
}

/// A client for `settings`, its idle pool sharded for `workers` proxy workers (and the threads
/// that are none).
fn build(settings: ClientSettings, workers: usize) -> Result<UpstreamClient, String> {
    let mut http = HttpConnector::new();
    http.set_nodelay(true);
    http.set_connect_timeout(Some(Duration::from_millis(settings.connect_timeout_ms)));
    http.enforce_http(false);
    let https = HttpsConnectorBuilder::new()
        .with_tls_config(tls_config(settings.ssl_verify)?)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    let idle = IdlePool::new(
        workers + 1,
        idle_per_host(settings),
        Duration::from_millis(settings.keepalive_timeout_ms),
        settings.max_requests_per_connection,
    );
    Ok(UpstreamClient::new(https, idle))
}

fn tls_config(verify: bool) -> Result<ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|err| format!("TLS setup failed: {err}"))?;
    let config = if verify {
        let roots = RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
        builder.with_root_certificates(roots).with_no_client_auth()
    } else {
        builder.dangerous().with_custom_certificate_verifier(Arc::new(AnyCertificate(provider))).with_no_client_auth()
    };
    Ok(config)
}

/// `ssl_verify: false`: any certificate is accepted (signatures are still checked, so the peer
/// must hold the key of the certificate it shows).
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
