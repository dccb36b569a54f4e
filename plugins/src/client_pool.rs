//! HTTP clients for provider calls, shared by every route with the same transport settings, so
//! routes to one provider share its keep-alive connections and a reload makes no new pools.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

/// The settings that make two clients different.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientSettings {
    pub connect_timeout_ms: u64,
    pub keepalive: bool,
    pub keepalive_timeout_ms: u64,
    pub keepalive_pool: u32,
    pub ssl_verify: bool,
}

/// The client for `settings`, made on first use and kept for the life of the process.
pub fn client_for(settings: ClientSettings) -> reqwest::Client {
    static CLIENTS: OnceLock<Mutex<HashMap<ClientSettings, reqwest::Client>>> = OnceLock::new();
    let clients = CLIENTS.get_or_init(Mutex::default);
    let mut clients = clients.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    clients.entry(settings).or_insert_with(|| build(settings)).clone()
}

fn build(settings: ClientSettings) -> reqwest::Client {
    let idle = if settings.keepalive { settings.keepalive_pool as usize } else { 0 };
    reqwest::Client::builder()
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_millis(settings.connect_timeout_ms))
        .pool_idle_timeout(Duration::from_millis(settings.keepalive_timeout_ms))
        .pool_max_idle_per_host(idle)
        .danger_accept_invalid_certs(!settings.ssl_verify)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
        .unwrap_or_else(|err| {
            tracing::error!(%err, "cannot build a provider client with these settings; using defaults");
            reqwest::Client::new()
        })
}
