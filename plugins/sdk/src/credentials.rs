//! Credentials an upstream request is given just before it is sent, when making them takes IO of
//! their own (an OAuth2 access token fetched from a token endpoint and cached).
//!
//! A plugin puts [`Credentials`] in [`crate::UpstreamRequest::credentials`]; the core calls
//! [`Credentials::apply`] once per attempt, after every plugin's `before_proxy` (so the request
//! is final), lending its own transport as the [`UpstreamIo`] to make any calls with. The SDK
//! itself still does no IO.

use async_trait::async_trait;

use crate::{UpstreamIo, UpstreamRequest};

/// Why an upstream request could not be given its credentials. The message is shown to the
/// client (with a 502) and logged: it names what failed (the token endpoint and its answer),
/// never a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct CredentialError(pub String);

/// Makes an upstream request's credentials (sets its `Authorization` header, say).
#[async_trait]
pub trait Credentials: Send + Sync {
    /// Runs just before `request` is sent, once per attempt. `io` sends any request the
    /// credentials need (through the core's pools). `Err` fails the attempt as an upstream
    /// failure: a target's `judge` sees [`crate::AttemptResult::Failed`], and the client a 502.
    async fn apply(&self, request: &mut UpstreamRequest, io: &dyn UpstreamIo) -> Result<(), CredentialError>;
}
