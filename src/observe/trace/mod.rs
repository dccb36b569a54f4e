//! OpenTelemetry traces: a server span per request and a client span per upstream attempt, with
//! the GenAI and HTTP semantic-convention attributes; W3C trace context continued from the client
//! and sent upstream; OTLP/HTTP export off the request path.

pub mod context;
pub mod export;
pub mod span;

pub use export::{ExportStats, Exporter, Tracer};
pub use span::RequestTrace;
