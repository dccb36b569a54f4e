//! The admin listener: key check, then the APISIX resource API under `/apisix/admin`.

mod apisix;
mod check;
mod models;
mod query;
mod secrets;

use std::sync::Arc;

use bytes::Bytes;
use http::header::AUTHORIZATION;
use http::StatusCode;
use hyper::body::Incoming;
use subtle::ConstantTimeEq;

use crate::error::json_response;
use crate::proxy::ResponseBody;
use crate::state::AdminState;

pub use query::Query;

/// The largest admin request body (APISIX's limit).
pub const MAX_ADMIN_BODY: usize = 1536 * 1024;

/// An admin answer: a status, a JSON body, and for writes the store revision they made (also
/// sent as `x-switchyard-revision`, so clients can wait until `status.revision` reaches it).
pub struct AdminReply {
    pub status: StatusCode,
    pub body: serde_json::Value,
    pub revision: Option<u64>,
}

impl AdminReply {
    pub fn ok(body: serde_json::Value) -> Self {
        Self { status: StatusCode::OK, body, revision: None }
    }
}

pub type AdminResult = Result<AdminReply, AdminError>;

/// An admin failure, rendered as `{"error_msg": ...}`.
#[derive(Debug)]
pub struct AdminError {
    pub status: StatusCode,
    pub message: String,
}

impl AdminError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self { status, message: message.into() }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "Key not found")
    }
}

impl From<crate::store::StoreError> for AdminError {
    fn from(err: crate::store::StoreError) -> Self {
        use crate::store::StoreError;
        match err {
            StoreError::Unavailable(_) => Self::new(StatusCode::SERVICE_UNAVAILABLE, err.to_string()),
            StoreError::Conflict => Self::new(StatusCode::CONFLICT, err.to_string()),
            StoreError::Internal(detail) => {
                tracing::error!(%detail, "config store failure");
                Self::new(StatusCode::INTERNAL_SERVER_ERROR, "config store failure")
            }
        }
    }
}

/// Serves one request on an admin listener.
pub async fn handle(state: Arc<AdminState>, req: hyper::Request<Incoming>) -> hyper::Response<ResponseBody> {
    let (head, body) = req.into_parts();
    let result = if !authorized(&state, &head.headers) {
        Err(AdminError::new(StatusCode::UNAUTHORIZED, "failed to check token"))
    } else {
        match read_admin_body(&head.headers, body, state.config.proxy.client_body_timeout).await {
            Ok(body) => dispatch(&state, &head, body).await,
            Err(err) => Err(err),
        }
    };
    let response = match result {
        Ok(reply) => {
            let mut response = json_response(reply.status, &reply.body);
            if let Some(revision) = reply.revision {
                response.headers_mut().insert("x-switchyard-revision", revision.into());
            }
            response
        }
        Err(err) => json_response(err.status, &serde_json::json!({ "error_msg": err.message })),
    };
    response.map(ResponseBody::full)
}

async fn dispatch(state: &AdminState, head: &http::request::Parts, body: Bytes) -> AdminResult {
    let path = head.uri.path().trim_end_matches('/');
    let query = Query::parse(head.uri.query());
    if let Some(rest) = path.strip_prefix("/admin/v1/") {
        return models::resource(state, &head.method, rest, &query, body).await;
    }
    let Some(rest) = path.strip_prefix("/apisix/admin/") else {
        return Err(AdminError::new(StatusCode::NOT_FOUND, format!("no admin API at {path}")));
    };
    if rest == "status" {
        return apisix::status(state);
    }
    let (kind, id) = match rest.split_once('/') {
        Some((kind, id)) => (kind, Some(id)),
        None => (rest, None),
    };
    apisix::resource(state, &head.method, kind, id, &query, body).await
}

/// Accepts `X-API-KEY: <key>` or `Authorization: Bearer <key>`, compared in constant time.
fn authorized(state: &AdminState, headers: &http::HeaderMap) -> bool {
    let presented = headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .or_else(|| {
            headers
                .get(AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        })
        .map(str::trim);
    let Some(presented) = presented else { return false };
    // Every configured key is compared, each in constant time: no early exit tells which matched.
    let matched = state
        .config
        .admin
        .keys
        .iter()
        .fold(subtle::Choice::from(0), |ok, key| ok | key.as_bytes().ct_eq(presented.as_bytes()));
    matched.into()
}

/// Reads an admin body whole: a `Content-Length` over the limit is refused before it is read, and
/// a client that stops sending for `between_reads` gets a 408.
async fn read_admin_body(
    headers: &http::HeaderMap,
    body: Incoming,
    between_reads: std::time::Duration,
) -> Result<Bytes, AdminError> {
    use crate::client_io::BodyReadError;
    let too_large = || {
        AdminError::new(StatusCode::PAYLOAD_TOO_LARGE, format!("request body is larger than {MAX_ADMIN_BODY} bytes"))
    };
    if crate::client_io::declares_more_than(headers, MAX_ADMIN_BODY) {
        return Err(too_large());
    }
    crate::client_io::read_whole(body, MAX_ADMIN_BODY, between_reads).await.map_err(|err| match err {
        BodyReadError::TooLarge => too_large(),
        BodyReadError::TimedOut => {
            AdminError::new(StatusCode::REQUEST_TIMEOUT, "the request body did not arrive in time")
        }
        BodyReadError::Broken => AdminError::bad_request("failed to read the request body"),
    })
}
