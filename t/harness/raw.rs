//! A bare HTTP/1.1 client on a TCP socket, for what real clients hide: half-sent heads and bodies,
//! idle connections, `Expect: 100-continue`, and exactly when the server closes.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

pub struct RawClient {
    pub stream: TcpStream,
    /// Bytes read but not yet consumed.
    pending: Vec<u8>,
}

/// One response: status, head text (lower-cased), body.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub head: String,
    pub body: String,
}

impl RawClient {
    pub async fn connect(addr: SocketAddr) -> RawClient {
        RawClient { stream: TcpStream::connect(addr).await.unwrap(), pending: Vec::new() }
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
    }

    /// Reads one response whose body has a `content-length` (or none); panics after `wait`.
    pub async fn response(&mut self, wait: Duration) -> RawResponse {
        tokio::time::timeout(wait, self.read_response()).await.expect("no response in time")
    }

    async fn read_response(&mut self) -> RawResponse {
        let end = loop {
            if let Some(end) = self.pending.windows(4).position(|w| w == b"\r\n\r\n") {
                break end + 4;
            }
            assert!(
                self.fill().await > 0,
                "closed before a response head: {:?}",
                String::from_utf8_lossy(&self.pending)
            );
        };
        let head = String::from_utf8_lossy(&self.pending[..end]).to_ascii_lowercase();
        self.pending.drain(..end);
        let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("a status line");
        let length = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .map_or(0, |v| v.trim().parse::<usize>().unwrap());
        while self.pending.len() < length {
            assert!(self.fill().await > 0, "closed in the middle of a body");
        }
        let body = String::from_utf8_lossy(&self.pending[..length]).into_owned();
        self.pending.drain(..length);
        RawResponse { status, head, body }
    }

    /// Waits until the server closes the connection and returns how long that took; panics when
    /// it sends anything, or has not closed after `wait`.
    pub async fn closed_after(&mut self, wait: Duration) -> Duration {
        let start = Instant::now();
        let read = tokio::time::timeout(wait, self.fill()).await.expect("the server kept the connection open");
        assert_eq!(read, 0, "the server sent {:?} instead of closing", String::from_utf8_lossy(&self.pending));
        start.elapsed()
    }

    /// Reads once into `pending`: the number of bytes, 0 at end of stream (a reset counts as end).
    async fn fill(&mut self) -> usize {
        let mut chunk = [0u8; 16 * 1024];
        match self.stream.read(&mut chunk).await {
            Ok(n) => {
                self.pending.extend_from_slice(&chunk[..n]);
                n
            }
            Err(err) if err.kind() == std::io::ErrorKind::ConnectionReset => 0,
            Err(err) => panic!("read failed: {err}"),
        }
    }
}

/// A GET request head for `path`.
pub fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: gateway\r\n\r\n").into_bytes()
}
