//! The real binary under a low open file limit: it raises the soft limit to the hard one, caps
//! proxy connections below what the limit allows, closes idle ones to make room, and keeps a
//! reserve, so a flood of idle connections leaves the admin API and the proxy reachable.

use std::time::Duration;

use serde_json::json;
use tokio::net::TcpStream;

use crate::harness::node::{Node, ADMIN_KEY};
use crate::harness::MockUpstream;

/// More idle connections than the process may open descriptors.
const FLOOD: usize = 400;

/// Whether the gateway closed `socket` (end of stream), without waiting long for it.
async fn closed_by_peer(socket: &TcpStream) -> bool {
    if tokio::time::timeout(Duration::from_millis(5), socket.readable()).await.is_err() {
        return false;
    }
    let mut byte = [0u8; 1];
    matches!(socket.try_read(&mut byte), Ok(0))
}

#[tokio::test]
async fn a_flood_of_idle_connections_under_a_low_descriptor_limit_leaves_the_node_reachable() {
    let mock = MockUpstream::start("fd").await;
    let mut node = Node::start("", Some("ulimit -Sn 128 && ulimit -Hn 256")).await;
    node.put_route(json!({"id": "fd", "paths": ["/fd"], "upstream": {"nodes": {mock.node(): 1}}})).await;
    let log = node.log_when(|log| log.contains("client connection caps")).await;
    assert!(log.contains("raised the open file limit") && log.contains("from=128 to=256"), "{log}");
    // 256 descriptors: 64 in reserve, 16 of them for admin connections, half of the rest for proxy
    // connections (each may need an upstream connection too).
    assert!(log.contains("client connection caps proxy=96 admin=16"), "{log}");

    let mut idle = Vec::with_capacity(FLOOD);
    for _ in 0..FLOOD {
        idle.push(TcpStream::connect(("127.0.0.1", node.proxy)).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    // New connections, as a status probe or a new client opens them.
    let fresh = reqwest::Client::builder().no_proxy().build().unwrap();
    let status = tokio::time::timeout(
        Duration::from_secs(3),
        fresh.get(node.admin_url("/apisix/admin/status")).header("x-api-key", ADMIN_KEY).send(),
    )
    .await
    .expect("the admin API stopped answering")
    .unwrap();
    assert_eq!(status.status(), 200);
    let proxied = tokio::time::timeout(Duration::from_secs(3), fresh.get(node.proxy_url("/fd")).send())
        .await
        .expect("the proxy stopped answering new clients")
        .unwrap();
    assert_eq!(proxied.status(), 200);
    assert!(node.is_running());

    // Idle connections beyond the cap were closed to make room, oldest first.
    let mut closed = 0;
    for socket in &idle {
        closed += usize::from(closed_by_peer(socket).await);
    }
    assert!(closed >= FLOOD - 96 - 32, "only {closed} of {FLOOD} idle connections were closed");
    let log = node.log_when(|log| log.contains("connection cap reached")).await;
    assert!(!log.contains("accept failed"), "the node ran out of descriptors: {log}");
    let warnings = log.matches("connection cap reached").count();
    assert!((1..=2).contains(&warnings), "{warnings} cap warnings: one per interval expected");
}
