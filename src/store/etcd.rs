//! The etcd backend: several nodes share one config, and changes reach every node by watch.
//!
//! The client connects lazily and is rebuilt after an outage, so a node that starts while etcd is
//! down, or outlives an etcd restart, reconnects by itself the next time it calls. Every call is
//! bounded by `store.etcd.timeout_ms`; a call that fails for want of etcd is
//! [`StoreError::Unavailable`], which the admin API answers with 503.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use etcd_client::{
    Certificate, Client, Compare, CompareOp, ConnectOptions, DeleteOptions, EventType, GetOptions, Identity,
    PutOptions, TlsOptions, Txn, TxnOp, TxnOpResponse, WatchOptions, WatchResponse, WatchStream,
};
use tokio::sync::{mpsc, Mutex};

use super::{ConfigStore, Event, KeyValue, PutResult, StoreError, WatchMessage};
use crate::config::EtcdConfig;

pub struct EtcdStore {
    endpoints: Vec<String>,
    options: ConnectOptions,
    timeout: Duration,
    /// `None` until the first call, and again after a call found etcd unreachable.
    client: Mutex<Option<Client>>,
    /// Whether the last call reached etcd.
    connected: AtomicBool,
}

impl EtcdStore {
    /// Prepares the connection from `store.etcd` (reading the TLS files); connects on first use,
    /// so this succeeds while etcd is down. Fails only on unreadable TLS files.
    pub fn new(config: &EtcdConfig) -> Result<Self, StoreError> {
        let timeout = Duration::from_millis(config.timeout_ms);
        let mut options = ConnectOptions::new()
            .with_timeout(timeout)
            .with_connect_timeout(timeout)
            // Finds a dead connection that no reset announced (a lost network, a frozen host).
            .with_keep_alive(Duration::from_secs(10), timeout)
            .with_auto_token_refresh(true);
        if let (Some(user), Some(password)) = (&config.user, &config.password) {
            options = options.with_user(user.clone(), password.clone());
        }
        if config.ca_file.is_some() || config.cert_file.is_some() {
            let mut tls = TlsOptions::new();
            if let Some(ca) = &config.ca_file {
                tls = tls.ca_certificate(Certificate::from_pem(read_pem("ca_file", ca)?));
            }
            if let (Some(cert), Some(key)) = (&config.cert_file, &config.key_file) {
                tls = tls.identity(Identity::from_pem(read_pem("cert_file", cert)?, read_pem("key_file", key)?));
            }
            options = options.with_tls(tls);
        }
        Ok(Self {
            endpoints: config.endpoints.clone(),
            options,
            timeout,
            client: Mutex::new(None),
            connected: AtomicBool::new(false),
        })
    }

    /// The shared client, connecting first when there is none.
    async fn client(&self) -> Result<Client, StoreError> {
        let mut slot = self.client.lock().await;
        if let Some(client) = slot.as_ref() {
            return Ok(client.clone());
        }
        let connect = Client::connect(self.endpoints.clone(), Some(self.options.clone()));
        let client = match tokio::time::timeout(self.timeout, connect).await {
            Ok(Ok(client)) => client,
            Ok(Err(err)) => return Err(classify(err)),
            Err(_) => return Err(self.timed_out()),
        };
        *slot = Some(client.clone());
        Ok(client)
    }

    /// Runs one etcd call within the timeout. Keeps `connected` up to date, and drops the client
    /// after an outage: a channel that never reached etcd does not recover by itself.
    async fn run<T, F, Fut>(&self, call: F) -> Result<T, StoreError>
    where
        F: FnOnce(Client) -> Fut,
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        let result = match self.client().await {
            Ok(client) => match tokio::time::timeout(self.timeout, call(client)).await {
                Ok(result) => result.map_err(classify),
                Err(_) => Err(self.timed_out()),
            },
            Err(err) => Err(err),
        };
        match &result {
            Ok(_) => self.connected.store(true, Ordering::Release),
            Err(StoreError::Unavailable(_)) => {
                self.connected.store(false, Ordering::Release);
                *self.client.lock().await = None;
            }
            Err(_) => {}
        }
        result
    }

    fn timed_out(&self) -> StoreError {
        StoreError::Unavailable(format!("etcd did not answer within {} ms", self.timeout.as_millis()))
    }
}

fn read_pem(field: &str, path: &std::path::Path) -> Result<Vec<u8>, StoreError> {
    std::fs::read(path)
        .map_err(|e| StoreError::Internal(format!("store.etcd.{field}: cannot read {}: {e}", path.display())))
}

/// Sorts an etcd error: what a retry may cure is `Unavailable`, the rest `Internal`.
fn classify(err: etcd_client::Error) -> StoreError {
    use etcd_client::Error as E;
    use tonic::Code;
    match err {
        E::GRpcStatus(status) => match status.code() {
            Code::Unavailable
            | Code::DeadlineExceeded
            | Code::Cancelled
            | Code::Unknown
            | Code::Aborted
            | Code::ResourceExhausted => StoreError::Unavailable(format!("etcd: {}", status.message())),
            _ => StoreError::Internal(format!("etcd: {}", status.message())),
        },
        E::TransportError(e) => StoreError::Unavailable(format!("etcd transport: {e}")),
        E::IoError(e) => StoreError::Unavailable(format!("etcd connection: {e}")),
        E::WatchError(e) => StoreError::Unavailable(format!("etcd watch: {e}")),
        other => StoreError::Internal(other.to_string()),
    }
}

/// etcd's revisions are `i64` and never negative; ours are `u64`.
fn revision(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

fn header_revision(header: Option<&etcd_client::ResponseHeader>) -> u64 {
    header.map_or(0, |h| revision(h.revision()))
}

fn key_value(kv: &etcd_client::KeyValue) -> KeyValue {
    KeyValue {
        key: String::from_utf8_lossy(kv.key()).into_owned(),
        value: Bytes::copy_from_slice(kv.value()),
        create_revision: revision(kv.create_revision()),
        mod_revision: revision(kv.mod_revision()),
        version: revision(kv.version()),
    }
}

/// A key's version after a put that found `previous` there: etcd counts up from the previous
/// version, and from 1 for a key that did not exist.
fn next_version(previous: Option<&KeyValue>) -> u64 {
    previous.map_or(1, |p| p.version + 1)
}

#[async_trait]
impl ConfigStore for EtcdStore {
    fn backend(&self) -> &'static str {
        "etcd"
    }

    fn connected(&self) -> bool {
        self.connected.load(Ordering::Acquire)
    }

    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        let response = self.run(|mut c| async move { c.get(key, None).await }).await?;
        Ok(response.kvs().first().map(key_value))
    }

    async fn list(&self, prefix: &str) -> Result<(Vec<KeyValue>, u64), StoreError> {
        let options = GetOptions::new().with_prefix();
        let response = self.run(|mut c| async move { c.get(prefix, Some(options)).await }).await?;
        Ok((response.kvs().iter().map(key_value).collect(), header_revision(response.header())))
    }

    async fn put(&self, key: &str, value: Bytes, expect_mod_revision: Option<u64>) -> Result<PutResult, StoreError> {
        let options = PutOptions::new().with_prev_key();
        let Some(expected) = expect_mod_revision else {
            let response = self.run(|mut c| async move { c.put(key, value.to_vec(), Some(options)).await }).await?;
            let previous = response.prev_key().map(key_value);
            return Ok(PutResult {
                revision: header_revision(response.header()),
                version: next_version(previous.as_ref()),
                previous,
            });
        };
        // An absent key compares as mod revision 0, which is what `Some(0)` asks for.
        let expected = i64::try_from(expected).map_err(|_| StoreError::Conflict)?;
        let txn = Txn::new().when([Compare::mod_revision(key, CompareOp::Equal, expected)]).and_then([TxnOp::put(
            key,
            value.to_vec(),
            Some(options),
        )]);
        let response = self.run(|mut c| async move { c.txn(txn).await }).await?;
        if !response.succeeded() {
            return Err(StoreError::Conflict);
        }
        let previous = response.op_responses().into_iter().find_map(|op| match op {
            TxnOpResponse::Put(put) => Some(put.prev_key().map(key_value)),
            _ => None,
        });
        let previous = previous.flatten();
        Ok(PutResult {
            revision: header_revision(response.header()),
            version: next_version(previous.as_ref()),
            previous,
        })
    }

    async fn delete(&self, key: &str) -> Result<Option<u64>, StoreError> {
        let response =
            self.run(|mut c| async move { c.delete(key, Some(DeleteOptions::new().with_prev_key())).await }).await?;
        Ok((response.deleted() > 0).then(|| header_revision(response.header())))
    }

    async fn watch(&self, prefix: &str, from_revision: u64) -> Result<mpsc::Receiver<WatchMessage>, StoreError> {
        let start = i64::try_from(from_revision.max(1)).unwrap_or(i64::MAX);
        let options = WatchOptions::new().with_prefix().with_start_revision(start);
        let stream = self.run(|mut c| async move { c.watch(prefix, Some(options)).await }).await?;
        let (tx, rx) = mpsc::channel(64);
        tokio::spawn(forward(stream, tx));
        Ok(rx)
    }
}

/// Relays one etcd watch to the reload task until the receiver is dropped. A compaction, a
/// cancel, or a broken stream ends it with [`WatchMessage::Resync`].
async fn forward(stream: WatchStream, tx: mpsc::Sender<WatchMessage>) {
    // The request half stays alive with the task: dropping it would end the watch.
    let (_requests, mut responses) = stream.split();
    loop {
        let received = tokio::select! {
            received = responses.message() => received,
            _ = tx.closed() => return,
        };
        let message = match received {
            Ok(Some(response)) => match translate(&response) {
                Some(message) => message,
                None => continue,
            },
            Ok(None) => {
                tracing::warn!("etcd closed the watch; resyncing");
                WatchMessage::Resync
            }
            Err(err) => {
                tracing::warn!(error = %err, "etcd watch broke; resyncing");
                WatchMessage::Resync
            }
        };
        let resync = matches!(message, WatchMessage::Resync);
        if tx.send(message).await.is_err() || resync {
            return;
        }
    }
}

/// What one watch response means to the reload task; `None` for the creation notice.
fn translate(response: &WatchResponse) -> Option<WatchMessage> {
    if response.compact_revision() > 0 {
        tracing::warn!(compacted = response.compact_revision(), "etcd compacted past the watch; resyncing");
        return Some(WatchMessage::Resync);
    }
    if response.canceled() {
        tracing::warn!(reason = response.cancel_reason(), "etcd canceled the watch; resyncing");
        return Some(WatchMessage::Resync);
    }
    if response.events().is_empty() {
        // The creation notice's header may run ahead of events still to come: only a progress
        // notification vouches that nothing before its revision is pending.
        return (!response.created()).then(|| WatchMessage::Progress(header_revision(response.header())));
    }
    let events = response
        .events()
        .iter()
        .filter_map(|event| {
            let kv = event.kv()?;
            Some(match event.event_type() {
                EventType::Put => Event::Put(key_value(kv)),
                // A delete event's kv carries the deletion's revision as its mod revision.
                EventType::Delete => Event::Delete {
                    key: String::from_utf8_lossy(kv.key()).into_owned(),
                    revision: revision(kv.mod_revision()),
                },
            })
        })
        .collect();
    Some(WatchMessage::Events(events))
}
