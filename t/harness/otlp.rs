//! An OTLP/HTTP trace receiver on 127.0.0.1:0: decodes every `POST /v1/traces` body
//! (protobuf `ExportTraceServiceRequest`) and keeps the spans, with their resource attributes.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, KeyValue};
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use tokio::net::TcpListener;

#[derive(Clone)]
pub struct OtlpReceiver {
    pub addr: SocketAddr,
    spans: Arc<Mutex<Vec<Span>>>,
    resources: Arc<Mutex<Vec<Vec<KeyValue>>>>,
    /// Requests seen, with their headers.
    pub requests: Arc<Mutex<Vec<http::HeaderMap>>>,
}

impl OtlpReceiver {
    pub async fn start() -> OtlpReceiver {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let receiver = OtlpReceiver {
            addr: listener.local_addr().unwrap(),
            spans: Arc::default(),
            resources: Arc::default(),
            requests: Arc::default(),
        };
        let server = receiver.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { return };
                let receiver = server.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let receiver = receiver.clone();
                        async move { Ok::<_, Infallible>(receiver.receive(req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        receiver
    }

    /// The `tracing.otlp.endpoint` that reaches this receiver.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    async fn receive(&self, req: hyper::Request<hyper::body::Incoming>) -> hyper::Response<Full<Bytes>> {
        let (head, body) = req.into_parts();
        let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
        self.requests.lock().unwrap().push(head.headers.clone());
        let status = match (head.uri.path(), ExportTraceServiceRequest::decode(body)) {
            ("/v1/traces", Ok(export)) => {
                for resource_spans in export.resource_spans {
                    let resource = resource_spans.resource.map(|r| r.attributes).unwrap_or_default();
                    self.resources.lock().unwrap().push(resource);
                    for scope in resource_spans.scope_spans {
                        self.spans.lock().unwrap().extend(scope.spans);
                    }
                }
                200
            }
            _ => 400,
        };
        hyper::Response::builder().status(status).body(Full::new(Bytes::new())).unwrap()
    }

    pub fn spans(&self) -> Vec<Span> {
        self.spans.lock().unwrap().clone()
    }

    pub fn resources(&self) -> Vec<Vec<KeyValue>> {
        self.resources.lock().unwrap().clone()
    }

    /// Waits (up to 10 s) until at least `n` spans arrived, and returns them all.
    pub async fn wait_for(&self, n: usize) -> Vec<Span> {
        for _ in 0..1000 {
            let spans = self.spans();
            if spans.len() >= n {
                return spans;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("expected {n} spans, got {:?}", self.spans().iter().map(|s| &s.name).collect::<Vec<_>>());
    }
}

/// A span attribute as text (strings as they are, numbers printed).
pub fn attr(attributes: &[KeyValue], key: &str) -> Option<String> {
    let value = attributes.iter().find(|kv| kv.key == key)?.value.as_ref()?.value.as_ref()?;
    Some(match value {
        any_value::Value::StringValue(s) => s.clone(),
        any_value::Value::IntValue(i) => i.to_string(),
        any_value::Value::BoolValue(b) => b.to_string(),
        any_value::Value::DoubleValue(d) => d.to_string(),
        other => format!("{other:?}"),
    })
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
