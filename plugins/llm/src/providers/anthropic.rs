//! What calling Anthropic's native API takes beyond its key. The Messages conversions live in
//! `crate::protocol` (`chat_over_messages`, `messages_request`, `messages_response`).

/// The Anthropic API version sent with every request the gateway makes on its own behalf (the
/// model API's `anthropic` adapter); route clients send their own.
pub const API_VERSION: &str = "2023-06-01";
