//! The gateway under test, on 127.0.0.1:0 with its own store folder.

use std::net::SocketAddr;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::Value;
use switchyard::{Config, Gateway};
use tempfile::TempDir;

pub const ADMIN_KEY: &str = "test-admin-key";

pub struct TestGateway {
    gateway: Option<Gateway>,
    pub proxy: SocketAddr,
    pub admin: SocketAddr,
    pub dir: TempDir,
    pub http: reqwest::Client,
}

impl TestGateway {
    /// A node of group `default` with a fresh embedded store.
    pub async fn start() -> TestGateway {
        Self::start_in(tempfile::tempdir().unwrap(), |_| {}).await
    }

    /// A node whose store lives in `dir` (reuse one to test restarts), config adjusted by `tweak`.
    pub async fn start_in(dir: TempDir, tweak: impl FnOnce(&mut Config)) -> TestGateway {
        Self::start_custom(dir, tweak, |_| {}).await
    }

    /// A node as [`TestGateway::start_in`], with plugin types added by `plugins` (test plugins).
    pub async fn start_custom(
        dir: TempDir,
        tweak: impl FnOnce(&mut Config),
        plugins: impl FnOnce(&mut switchyard_sdk::Registry),
    ) -> TestGateway {
        let mut config = Config::default();
        config.proxy.listen = vec!["127.0.0.1:0".into()];
        config.admin.listen = vec!["127.0.0.1:0".into()];
        config.admin.keys = vec![ADMIN_KEY.into()];
        config.store.path = dir.path().join("store");
        config.log.access_log = false;
        tweak(&mut config);
        let mut registry = switchyard::plugins::builtin(&config);
        plugins(&mut registry);
        let gateway = Gateway::start_with(config, registry).await.expect("gateway starts");
        let (proxy, admin) = (gateway.proxy_addrs[0], gateway.admin_addrs[0]);
        let http = reqwest::Client::builder().no_proxy().build().unwrap();
        TestGateway { gateway: Some(gateway), proxy, admin, dir, http }
    }

    /// Stops the node and hands back its store folder.
    pub async fn stop(mut self) -> TempDir {
        if let Some(gateway) = self.gateway.take() {
            gateway.shutdown().await;
        }
        self.dir
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.proxy)
    }

    /// Sends an admin request with the admin key. The body is sent as `curl -d` does: no JSON
    /// content type.
    pub async fn admin(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut request = self
            .http
            .request(method, format!("http://{}{path}", self.admin))
            .header("X-API-KEY", ADMIN_KEY)
            .header("content-type", "application/x-www-form-urlencoded");
        if let Some(body) = body {
            request = request.body(body.to_string());
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let revision =
            response.headers().get("x-switchyard-revision").map(|v| v.to_str().unwrap().parse::<u64>().unwrap());
        let text = response.text().await.unwrap();
        let value: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        if let Some(revision) = revision {
            self.wait_for_revision(revision).await;
        }
        (status, value)
    }

    /// Sends an `/admin/v1` request the way the seeds do (`Authorization: Bearer <admin key>`, a
    /// JSON content type) and waits until the write it made, if any, is live.
    pub async fn admin_v1(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut request = self
            .http
            .request(method, format!("http://{}{path}", self.admin))
            .header("Authorization", format!("Bearer {ADMIN_KEY}"))
            .header("Content-Type", "application/json");
        if let Some(body) = body {
            request = request.body(body.to_string());
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let revision =
            response.headers().get("x-switchyard-revision").map(|v| v.to_str().unwrap().parse::<u64>().unwrap());
        let body: Value = serde_json::from_str(&response.text().await.unwrap()).unwrap_or(Value::Null);
        if let Some(revision) = revision {
            self.wait_for_revision(revision).await;
        }
        (status, body)
    }

    /// POSTs an `/admin/v1` resource, expecting success; the entry created.
    pub async fn create_v1(&self, path: &str, body: Value) -> Value {
        let (status, reply) = self.admin_v1(Method::POST, path, Some(body)).await;
        assert_eq!(status, StatusCode::OK, "{path}: {reply}");
        reply
    }

    /// PUTs a route (the body carries its id) and waits until it is live.
    pub async fn put_route(&self, route: Value) -> Value {
        let (status, body) =
            self.admin(Method::PUT, "/apisix/admin/routes?gateway_group_id=default", Some(route)).await;
        assert!(status.is_success(), "route PUT failed: {status} {body}");
        body
    }

    pub async fn put_service(&self, service: Value) -> Value {
        let (status, body) = self.admin(Method::PUT, "/apisix/admin/services", Some(service)).await;
        assert!(status.is_success(), "service PUT failed: {status} {body}");
        body
    }

    pub async fn status(&self) -> Value {
        let (status, body) = self.admin(Method::GET, "/apisix/admin/status", None).await;
        assert_eq!(status, StatusCode::OK);
        body
    }

    /// Waits until the node has applied store revision `revision` (config is live).
    pub async fn wait_for_revision(&self, revision: u64) {
        let status = &self.gateway.as_ref().expect("running").status;
        let applied = status.wait_for_revision(revision, Duration::from_secs(10)).await;
        assert!(applied, "revision {revision} not applied (at {})", status.applied_revision());
    }

    /// A GET through the proxy; status and body text.
    pub async fn get(&self, path: &str) -> (StatusCode, String) {
        let response = self.http.get(self.url(path)).send().await.unwrap();
        (response.status(), response.text().await.unwrap())
    }
}

impl TestGateway {
    /// The node's live snapshot.
    pub fn snapshot(&self) -> std::sync::Arc<switchyard::snapshot::Snapshot> {
        self.gateway.as_ref().expect("running").snapshot()
    }

    /// The node's config store, for writes that bypass the admin API.
    pub fn store(&self) -> std::sync::Arc<dyn switchyard::store::ConfigStore> {
        std::sync::Arc::clone(&self.gateway.as_ref().expect("running").store)
    }
}
