//! The status listener, as APISIX has it, for Kubernetes probes: `GET /status` answers 200 while
//! the process runs; `GET /status/ready` answers 200 once the node serves a config (read from the
//! store, or from its local cache when the store was down at start) and 503 before.

use std::sync::Arc;

use bytes::Bytes;
use http::{header, HeaderValue, Method, StatusCode};

use super::Observe;
use crate::proxy::ResponseBody;

/// Serves one probe request. `observe` holds the readiness flag the gateway sets.
pub async fn handle(
    observe: Arc<Observe>,
    req: hyper::Request<hyper::body::Incoming>,
) -> hyper::Response<ResponseBody> {
    let (status, body): (StatusCode, &'static str) = match (req.method(), req.uri().path()) {
        (&Method::GET | &Method::HEAD, "/status") => (StatusCode::OK, r#"{"status":"ok"}"#),
        (&Method::GET | &Method::HEAD, "/status/ready") if observe.is_ready() => (StatusCode::OK, r#"{"status":"ok"}"#),
        (&Method::GET | &Method::HEAD, "/status/ready") => {
            (StatusCode::SERVICE_UNAVAILABLE, r#"{"status":"error","error":"the config is not loaded yet"}"#)
        }
        _ => (StatusCode::NOT_FOUND, r#"{"error_msg":"not found"}"#),
    };
    let mut response = hyper::Response::new(ResponseBody::full(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}
