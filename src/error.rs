//! Errors the gateway itself answers with, and how they are rendered for the client.

use http::StatusCode;
pub use switchyard_sdk::respond::{error_response, json_response};
use switchyard_sdk::{ErrorStyle, PluginError, Response};

/// Everything that makes the gateway answer a proxied request itself.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("404 Route Not Found")]
    RouteNotFound,
    #[error("{0}")]
    BadRequest(String),
    #[error("request body is larger than {0} bytes")]
    PayloadTooLarge(usize),
    #[error("the request body did not arrive in time (client_body_timeout)")]
    ClientTimeout,
    #[error("no upstream is configured or available for this route")]
    NoUpstream,
    #[error("failed to connect to the upstream")]
    UpstreamConnect(#[source] BoxError),
    #[error("the upstream did not answer in time")]
    UpstreamTimeout,
    #[error("the upstream connection failed")]
    UpstreamBroken(#[source] BoxError),
    /// The request's credentials could not be made (a token endpoint failed): an upstream
    /// failure, so a fallback may follow.
    #[error("could not authenticate to the upstream: {0}")]
    UpstreamCredentials(switchyard_sdk::CredentialError),
    #[error("plugin `{plugin}` failed")]
    PluginFailed {
        plugin: &'static str,
        #[source]
        source: PluginError,
    },
    /// A buffered answer passed the most the gateway holds for one response.
    #[error("the upstream's answer is too large: over {0} bytes, the most the gateway buffers for one response")]
    ResponseTooLarge(u64),
    #[error("internal error")]
    Internal(String),
}

/// The cause of an upstream failure, kept whole for the log.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl ProxyError {
    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::RouteNotFound => StatusCode::NOT_FOUND,
            ProxyError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ProxyError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ProxyError::ClientTimeout => StatusCode::REQUEST_TIMEOUT,
            ProxyError::NoUpstream => StatusCode::SERVICE_UNAVAILABLE,
            ProxyError::UpstreamConnect(_) => StatusCode::BAD_GATEWAY,
            ProxyError::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            ProxyError::UpstreamBroken(_) | ProxyError::ResponseTooLarge(_) => StatusCode::BAD_GATEWAY,
            ProxyError::UpstreamCredentials(_) => StatusCode::BAD_GATEWAY,
            ProxyError::PluginFailed { .. } | ProxyError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The machine-readable reason: the OpenAI `code`, and the access log's error field.
    pub fn reason(&self) -> &'static str {
        match self {
            ProxyError::RouteNotFound => "route_not_found",
            ProxyError::BadRequest(_) => "invalid_request",
            ProxyError::PayloadTooLarge(_) => "request_too_large",
            ProxyError::ClientTimeout => "request_timeout",
            ProxyError::NoUpstream => "no_upstream_available",
            ProxyError::UpstreamConnect(_) => "upstream_connect_failed",
            ProxyError::UpstreamTimeout => "upstream_timeout",
            ProxyError::UpstreamBroken(_) => "upstream_failed",
            ProxyError::UpstreamCredentials(_) => "upstream_auth_failed",
            ProxyError::ResponseTooLarge(_) => "response_too_large",
            ProxyError::PluginFailed { .. } | ProxyError::Internal(_) => "internal_error",
        }
    }

    /// The client-facing message: internal details stay in the log.
    fn public_message(&self) -> String {
        match self {
            ProxyError::PluginFailed { .. } | ProxyError::Internal(_) => "internal error".into(),
            other => other.to_string(),
        }
    }

    /// The error with its causes, for the log: `plugin `x` failed: <cause>: <cause>`. Never sent
    /// to the client.
    pub fn detail(&self) -> String {
        let mut out = match self {
            ProxyError::Internal(detail) => format!("internal error: {detail}"),
            other => other.to_string(),
        };
        let mut cause = std::error::Error::source(self);
        while let Some(err) = cause {
            out.push_str(": ");
            out.push_str(&err.to_string());
            cause = err.source();
        }
        out
    }

    /// Renders the error as `{"error_msg"}` (APISIX) or `{"error":{...}}` (OpenAI).
    pub fn to_response(&self, style: ErrorStyle) -> Response {
        error_response(self.status(), style, &self.public_message(), self.reason())
    }
}
