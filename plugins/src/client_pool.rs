//! HTTP clients for upstream and provider calls, shared by every route with the same transport
//! settings, so routes to one host share its keep-alive connections and a reload makes no new
//! pools.

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

/// Idle connections kept per provider host: `keepalive_pool` per worker thread, as APISIX keeps
/// `keepalive_pool` per nginx worker process. A pool smaller than the concurrency closes
/// connections only to open new ones a moment later (hyper races a fresh connect against every
/// checkout that finds the pool empty): at 64 concurrent requests and a pool of 30, one request
/// in 60 paid for a TCP connect.
fn idle_per_host(settings: ClientSettings) -> usize {
    if !settings.keepalive {
        return 0;
    }
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    (settings.keepalive_pool as usize).saturating_mul(workers)
}

fn build(settings: ClientSettings) -> reqwest::Client {
    let idle = idle_per_host(settings);
    reqwest::Client::builder()
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_millis(settings.connect_timeout_ms))
        .pool_idle_timeout(Duration::from_millis(settings.keepalive_timeout_ms))
        .pool_max_idle_per_host(idle)
        .danger_accept_invalid_certs(!settings.ssl_verify)
        .redirect(reqwest::redirect::Policy::none())
        .referer(false)
        // The gateway decides about retries itself (fallback strategies). reqwest's own policy
        // would also clone every request's headers before sending it, in case of a retry.
        .retry(reqwest::retry::never())
        .no_proxy()
        .build()
        .unwrap_or_else(|err| {
            tracing::error!(%err, "cannot build a provider client with these settings; using defaults");
            reqwest::Client::new()
        })
}
