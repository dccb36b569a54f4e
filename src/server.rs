//! The accept loop shared by the proxy and admin listeners.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::observe::metrics::Connections;
use crate::proxy::ResponseBody;

/// Serves HTTP/1.1 on `listener` until `shutdown` flips, then closes every connection. With
/// `connections`, each connection is counted while it lives (metrics).
pub async fn serve<F, Fut>(
    listener: TcpListener,
    mut shutdown: watch::Receiver<bool>,
    connections: Option<Arc<Connections>>,
    handle: F,
) where
    F: Fn(hyper::Request<Incoming>, SocketAddr) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = hyper::Response<ResponseBody>> + Send + 'static,
{
    let counter = connections;
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(err) => {
                        // Typically out of file descriptors: back off instead of spinning.
                        tracing::warn!(error = %err, "accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                };
                // Nagle would hold back small writes such as SSE events.
                let _ = stream.set_nodelay(true);
                let handle = handle.clone();
                let counted = counter.as_ref().map(Connections::opened);
                connections.spawn(async move {
                    let _counted = counted;
                    let service = service_fn(move |req| {
                        let response = handle(req, peer);
                        async move { Ok::<_, Infallible>(response.await) }
                    });
                    if let Err(err) = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await {
                        tracing::debug!(error = %err, %peer, "connection ended with an error");
                    }
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            _ = shutdown.changed() => break,
        }
    }
    connections.shutdown().await;
}
