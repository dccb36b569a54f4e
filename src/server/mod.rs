//! The listeners: accept loops, client connections (timeouts, header limits, caps) and graceful
//! shutdown, shared by the proxy and admin listeners.
//!
//! Shutdown goes as nginx's graceful quit: [`Servers::shut_down`] closes every listener at once,
//! lets each connection finish the request in flight (idle ones close at once), and after the
//! grace period cuts what remains: a response being written gets [`conn::CUT_FLUSH`] to end (a
//! stream with its SSE error event), anything else is closed.

mod accept;
mod conn;
mod group;
mod io;
mod state;
mod workers;

use std::future::Future;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::server::conn::http1;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;

use accept::{AcceptBackoff, AfterFailure};
use group::ConnGroup;
use state::Signal;
pub use workers::current as current_worker;
#[cfg(test)]
pub use workers::pretend_to_be;
pub use workers::Workers;

use crate::config::Config;
use crate::limits::ConnectionCaps;
use crate::observe::metrics::{ConnectionGuard, Connections};
use crate::proxy::ResponseBody;

/// The listen backlog: clients the kernel holds while the gateway is at its connection cap or
/// pausing after a failed accept (the kernel caps it at `net.core.somaxconn`). Rust's default is
/// 128, beyond which new clients' SYNs are dropped and retried for up to a minute.
const LISTEN_BACKLOG: u32 = 1024;

/// Binds a listener as the gateway's listeners are bound: address reuse, [`LISTEN_BACKLOG`].
pub fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    #[cfg(unix)]
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Below this many proxy connections, a cap lowered by the open file limit is worth a warning.
const FEW_CONNECTIONS: usize = 1024;

/// What every client connection obeys, from `proxy:` in the node config.
#[derive(Debug, Clone)]
pub struct Settings {
    pub header_timeout: Duration,
    pub keepalive_timeout: Duration,
    pub max_header_field_bytes: usize,
    pub max_request_head_bytes: usize,
    pub access_log: bool,
    pub access_log_format: crate::observe::config::AccessLogFormat,
}

impl Settings {
    pub fn from_config(config: &Config) -> Settings {
        Settings {
            header_timeout: config.proxy.client_header_timeout,
            keepalive_timeout: config.proxy.keepalive_timeout,
            max_header_field_bytes: config.proxy.max_header_field_bytes,
            max_request_head_bytes: config.proxy.max_request_head_bytes,
            access_log: config.log.access_log,
            access_log_format: config.log.access_log_format,
        }
    }

    /// hyper's connection settings. Its own header timer is off: [`io::TimedIo`] keeps the head
    /// and keep-alive deadlines, which hyper cannot tell apart.
    fn http(&self) -> http1::Builder {
        let mut http = http1::Builder::new();
        http.header_read_timeout(None::<Duration>)
            .keep_alive(!self.keepalive_timeout.is_zero())
            .max_header_size(self.max_request_head_bytes)
            // The read buffer bounds a head still incomplete; hyper's minimum is 8 KiB.
            .max_buf_size(self.max_request_head_bytes.max(8192));
        http
    }
}

/// Where shutdown stands; every accept loop follows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Serving,
    /// Listeners closed; in-flight requests finish.
    Draining,
    /// The grace period is over (`forced`: a second signal): end what remains.
    Cutting {
        forced: bool,
    },
}

/// Every listener of a node and the connections they accepted.
pub struct Servers {
    settings: Arc<Settings>,
    proxy: Arc<ConnGroup>,
    admin: Arc<ConnGroup>,
    phase: watch::Sender<Phase>,
    accept_loops: JoinSet<()>,
    /// Counts the proxy listeners' connections for metrics, when they are on.
    proxy_counter: Option<Arc<Connections>>,
    /// Where proxy connections are served; admin ones stay on the main runtime.
    workers: Arc<Workers>,
}

impl Servers {
    /// Runs when a node starts, before its listeners are bound; logs the connection caps, with a
    /// warning when the open file limit leaves room for fewer than [`FEW_CONNECTIONS`].
    /// `Err`: the proxy workers could not start.
    pub fn new(config: &Config, caps: ConnectionCaps, open_files: Option<u64>) -> std::io::Result<Servers> {
        let files = open_files.map_or_else(|| "unknown".to_string(), |n| n.to_string());
        let wanted = config.proxy.max_connections;
        if caps.proxy < wanted && caps.proxy < FEW_CONNECTIONS {
            tracing::warn!(max_connections = wanted, lowered_to = caps.proxy, open_files = %files, reserve = caps.reserve,
                "proxy.max_connections lowered to fit the open file limit: raise the hard RLIMIT_NOFILE \
                (ulimit -Hn, systemd LimitNOFILE=) for more");
        }
        tracing::info!(proxy = caps.proxy, admin = caps.admin, max_connections = wanted, open_files = %files,
            reserve = caps.reserve, "client connection caps");
        let workers = Workers::start(config.proxy.worker_count())?;
        tracing::debug!(workers = workers.count(), "proxy workers started");
        Ok(Servers {
            settings: Arc::new(Settings::from_config(config)),
            proxy: Arc::new(ConnGroup::new("proxy", caps.proxy)),
            admin: Arc::new(ConnGroup::new("admin", caps.admin)),
            phase: watch::channel(Phase::Serving).0,
            accept_loops: JoinSet::new(),
            proxy_counter: None,
            workers: Arc::new(workers),
        })
    }

    /// The workers proxy connections are served on.
    pub fn workers(&self) -> Arc<Workers> {
        Arc::clone(&self.workers)
    }

    /// Counts the connections of proxy listeners served from now on in `counter` (metrics).
    pub fn count_proxy_connections(&mut self, counter: Arc<Connections>) {
        self.proxy_counter = Some(counter);
    }

    /// Serves a proxy listener with `handle` until shutdown.
    pub fn serve_proxy<F, Fut>(&mut self, listener: TcpListener, handle: F)
    where
        F: Fn(hyper::Request<Incoming>, SocketAddr) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = hyper::Response<ResponseBody>> + Send + 'static,
    {
        let group = Arc::clone(&self.proxy);
        let counter = self.proxy_counter.clone();
        let workers = Some(Arc::clone(&self.workers));
        self.serve(listener, group, counter, workers, handle);
    }

    /// Serves an admin listener with `handle` until shutdown.
    pub fn serve_admin<F, Fut>(&mut self, listener: TcpListener, handle: F)
    where
        F: Fn(hyper::Request<Incoming>, SocketAddr) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = hyper::Response<ResponseBody>> + Send + 'static,
    {
        let group = Arc::clone(&self.admin);
        self.serve(listener, group, None, None, handle);
    }

    fn serve<F, Fut>(
        &mut self,
        listener: TcpListener,
        group: Arc<ConnGroup>,
        counter: Option<Arc<Connections>>,
        workers: Option<Arc<Workers>>,
        handle: F,
    ) where
        F: Fn(hyper::Request<Incoming>, SocketAddr) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = hyper::Response<ResponseBody>> + Send + 'static,
    {
        let phase = self.phase.subscribe();
        let accept = accept_loop(listener, group, Arc::clone(&self.settings), phase, counter, workers, handle);
        self.accept_loops.spawn(accept);
    }

    /// Closes every listener at once, waits up to `grace` for the connections to finish what
    /// they are doing, then cuts the rest; `cut_now` resolving (a second signal) cuts at once.
    /// Returns when every connection is gone.
    pub async fn shut_down(mut self, grace: Duration, cut_now: impl Future<Output = ()>) {
        tracing::info!(
            proxy_connections = self.proxy.open(),
            admin_connections = self.admin.open(),
            grace_s = grace.as_secs_f64(),
            "listeners closed; letting in-flight requests finish"
        );
        self.phase.send_replace(Phase::Draining);
        let accept_loops = &mut self.accept_loops;
        let cut = tokio::select! {
            () = async { while accept_loops.join_next().await.is_some() {} } => None,
            () = tokio::time::sleep(grace) => Some(false),
            () = cut_now => Some(true),
        };
        if let Some(forced) = cut {
            tracing::warn!(
                proxy_connections = self.proxy.open(),
                admin_connections = self.admin.open(),
                forced,
                "cutting the connections still open: {}",
                if forced { "second signal" } else { "shutdown_timeout reached" }
            );
            self.phase.send_replace(Phase::Cutting { forced });
            while self.accept_loops.join_next().await.is_some() {}
        }
    }
}

/// Accepts connections on `listener` under `group`'s cap until shutdown begins, then waits for
/// them (see [`drain`]). Each connection is served by one of `workers`, or on this runtime
/// without them.
async fn accept_loop<F, Fut>(
    listener: TcpListener,
    group: Arc<ConnGroup>,
    settings: Arc<Settings>,
    mut phase: watch::Receiver<Phase>,
    counter: Option<Arc<Connections>>,
    workers: Option<Arc<Workers>>,
    handle: F,
) where
    F: Fn(hyper::Request<Incoming>, SocketAddr) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = hyper::Response<ResponseBody>> + Send + 'static,
{
    let http = settings.http();
    let mut connections = JoinSet::new();
    let mut backoff = AcceptBackoff::default();
    let mut full_warned: Option<Instant> = None;
    while *phase.borrow_and_update() == Phase::Serving {
        let permit = match group.try_permit() {
            Some(permit) => permit,
            None => {
                let reclaimed = group.reclaim_idle();
                if full_warned.is_none_or(|at| at.elapsed() >= accept::WARN_INTERVAL) {
                    full_warned = Some(Instant::now());
                    tracing::warn!(
                        listener = group.kind,
                        cap = group.cap,
                        closing_idle = reclaimed,
                        "connection cap reached: closing idle connections, new clients wait in the listen backlog"
                    );
                }
                tokio::select! {
                    permit = group.permit() => match permit {
                        Some(permit) => permit,
                        None => break,
                    },
                    _ = phase.changed() => break,
                }
            }
        };
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    backoff.accepted();
                    let conn = group.admit(permit);
                    let counted = counter.as_ref().map(Connections::opened);
                    let (settings, http, handle) = (Arc::clone(&settings), http.clone(), handle.clone());
                    let serve = move |stream| conn::serve(stream, peer, conn, settings, http, handle);
                    spawn_connection(&mut connections, workers.as_deref(), (stream, peer), serve, counted);
                }
                Err(err) => {
                    drop(permit);
                    if let AfterFailure::Pause { pause, warn } = backoff.failed(&err, Instant::now()) {
                        if let Some(failures) = warn {
                            tracing::warn!(listener = group.kind, error = %err, failures, pause_ms = pause.as_millis() as u64,
                                "accept failed: pausing the listener (one warning per 10 s)");
                        }
                        tokio::select! {
                            () = tokio::time::sleep(pause) => {}
                            _ = phase.changed() => break,
                        }
                    } else {
                        tracing::debug!(error = %err, "accept failed for one connection");
                    }
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            _ = phase.changed() => break,
        }
    }
    drop(listener);
    drain(connections, &group, phase).await;
}

/// Starts a connection's task `serve` (made from its socket): on the least loaded of `workers`,
/// whose reactor the socket moves to, or on this runtime without them. `counted` lives as long
/// as the task.
fn spawn_connection<S, Fut>(
    connections: &mut JoinSet<()>,
    workers: Option<&Workers>,
    (stream, peer): (TcpStream, SocketAddr),
    serve: S,
    counted: Option<ConnectionGuard>,
) where
    S: FnOnce(TcpStream) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let Some(workers) = workers else {
        connections.spawn(async move {
            let _counted = counted;
            serve(stream).await
        });
        return;
    };
    let stream = match stream.into_std() {
        Ok(stream) => stream,
        Err(err) => return tracing::debug!(error = %err, %peer, "cannot hand a connection to a worker"),
    };
    let (worker, assigned) = workers.pick();
    let task = async move {
        let _counted = (counted, assigned);
        match TcpStream::from_std(stream) {
            Ok(stream) => serve(stream).await,
            Err(err) => tracing::debug!(error = %err, %peer, "cannot hand a connection to its worker"),
        }
    };
    connections.spawn_on(task, worker);
}

/// Waits for a listener's connections once it stopped accepting: each finishes the request in
/// flight and closes. When the phase turns to cutting, the remaining ones are cut; a connection
/// still open [`conn::CUT_FLUSH`] later (plus a margin) is aborted.
async fn drain(mut connections: JoinSet<()>, group: &ConnGroup, mut phase: watch::Receiver<Phase>) {
    group.signal_all(Signal::GRACEFUL);
    loop {
        if let Phase::Cutting { forced } = *phase.borrow_and_update() {
            group.signal_all(if forced { Signal::CUT_NOW } else { Signal::CUT });
            break;
        }
        tokio::select! {
            next = connections.join_next() => if next.is_none() { return },
            changed = phase.changed() => if changed.is_err() {
                // The node is being dropped without a shutdown: nothing more to wait for.
                break;
            },
        }
    }
    {
        let all_ended = pin!(async { while connections.join_next().await.is_some() {} });
        let _ = tokio::time::timeout(conn::CUT_FLUSH + Duration::from_millis(500), all_ended).await;
    }
    connections.shutdown().await;
}
