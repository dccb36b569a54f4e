//! How an HTTP/1.1 exchange with an upstream fails once a connection exists.

/// A connection's failure: the socket's, the upstream's early close, or bytes that are not
/// HTTP/1.1. Every one makes the connection unusable.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("upstream connection failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("the upstream closed the connection before the response ended")]
    Closed,
    #[error("invalid upstream response: {0}")]
    Protocol(&'static str),
}
