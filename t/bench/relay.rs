//! A reference point, not a product: the barest proxy tokio and hyper make (`<bench exe> relay
//! --to PORT`), in its own process like the gateway. Each client connection gets one keep-alive
//! connection to the mock; requests and answers are relayed whole, with no routing, plugins,
//! JSON, header filtering or logging. What it costs is what any proxy hop costs on this machine,
//! so the gap between it and the gateway is the gateway's own work.

use std::convert::Infallible;
use std::ffi::OsString;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::HOST;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::Mutex;

use crate::process::{port_field, spawn_self_under, stop, until_stdin_closes};
use crate::Result;

/// The relay's entry point, in the child process: `--to PORT`. Returns when stdin closes.
pub fn main(args: &[String]) -> Result<()> {
    let to = match args {
        [flag, port] if flag == "--to" => SocketAddr::from(([127, 0, 0, 1], port.parse::<u16>()?)),
        _ => return Err("usage: relay --to PORT".into()),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        println!("relay={}", listener.local_addr()?.port());
        tokio::spawn(accept(listener, to));
        until_stdin_closes().await
    })
}

async fn accept(listener: TcpListener, to: SocketAddr) {
    loop {
        let Ok((stream, _)) = listener.accept().await else { continue };
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let Ok(upstream) = crate::load::connect(to).await else { return };
            let upstream = Arc::new(Mutex::new(upstream));
            let service = service_fn(move |req| {
                let upstream = Arc::clone(&upstream);
                async move { Ok::<_, Infallible>(relay(req, to, &upstream).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
        });
    }
}

async fn relay(
    req: Request<Incoming>,
    to: SocketAddr,
    upstream: &Mutex<SendRequest<Full<Bytes>>>,
) -> Response<Full<Bytes>> {
    let (mut head, body) = req.into_parts();
    let Ok(body) = body.collect().await.map(|b| b.to_bytes()) else { return bad_gateway() };
    if let Ok(host) = HeaderValue::from_str(&to.to_string()) {
        head.headers.insert(HOST, host);
    }
    let mut upstream = upstream.lock().await;
    if upstream.ready().await.is_err() {
        return bad_gateway();
    }
    let Ok(answer) = upstream.send_request(Request::from_parts(head, Full::new(body))).await else {
        return bad_gateway();
    };
    let (head, body) = answer.into_parts();
    match body.collect().await {
        Ok(body) => Response::from_parts(head, Full::new(body.to_bytes())),
        Err(_) => bad_gateway(),
    }
}

fn bad_gateway() -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = StatusCode::BAD_GATEWAY;
    response
}

/// The relay process, seen from the bench. Dropping it stops the process.
pub struct RelayProcess {
    child: std::process::Child,
    pub addr: SocketAddr,
}

impl RelayProcess {
    /// Starts a relay to `to` and waits until it listens.
    pub fn spawn(to: SocketAddr) -> Result<RelayProcess> {
        RelayProcess::spawn_under(&[], to)
    }

    /// [`RelayProcess::spawn`] behind `prefix` (a program and its arguments, which runs the relay
    /// in turn): valgrind, for row 12.
    pub fn spawn_under(prefix: &[OsString], to: SocketAddr) -> Result<RelayProcess> {
        let (child, line) = spawn_self_under(prefix, &["relay".into(), "--to".into(), to.port().to_string()])?;
        Ok(RelayProcess { addr: port_field(&line, "relay=")?, child })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for RelayProcess {
    fn drop(&mut self) {
        stop(&mut self.child, Duration::from_secs(2));
    }
}
