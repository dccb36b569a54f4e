//! W3C trace context: reading a client's `traceparent`, writing ours for each upstream attempt,
//! new ids, and the sampling decision (OpenTelemetry's parent-based trace-id-ratio sampler).

use http::HeaderValue;

pub const TRACEPARENT: http::HeaderName = http::HeaderName::from_static("traceparent");
pub const TRACESTATE: http::HeaderName = http::HeaderName::from_static("tracestate");

pub type TraceId = [u8; 16];
pub type SpanId = [u8; 8];

/// A client's trace context: its trace, the span that called us, and whether it is sampled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parent {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    pub sampled: bool,
}

/// Parses `traceparent` (`00-<32 hex>-<16 hex>-<2 hex>`). Unknown future versions are read by
/// their first four fields, as the W3C spec asks; all-zero ids and version `ff` are invalid.
pub fn parse_traceparent(value: &HeaderValue) -> Option<Parent> {
    let text = value.to_str().ok()?.trim();
    let mut parts = text.split('-');
    let (version, trace, span, flags) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if version.len() != 2 || version == "ff" || (version == "00" && parts.next().is_some()) {
        return None;
    }
    u8::from_str_radix(version, 16).ok()?;
    let trace_id: TraceId = hex::<16>(trace)?;
    let span_id: SpanId = hex::<8>(span)?;
    let flags = hex::<1>(flags)?[0];
    if trace_id == [0; 16] || span_id == [0; 8] {
        return None;
    }
    Some(Parent { trace_id, span_id, sampled: flags & 1 == 1 })
}

/// The `traceparent` an upstream attempt carries: our trace, the attempt's span.
pub fn traceparent(trace_id: &TraceId, span_id: &SpanId, sampled: bool) -> HeaderValue {
    let mut text = [0u8; 55];
    text[..3].copy_from_slice(b"00-");
    write_hex(&mut text[3..35], trace_id);
    text[35] = b'-';
    write_hex(&mut text[36..52], span_id);
    text[52..].copy_from_slice(if sampled { b"-01" } else { b"-00" });
    // Hex digits and dashes are always a valid header value.
    HeaderValue::from_bytes(&text).unwrap_or_else(|_| HeaderValue::from_static("00-0-0-00"))
}

/// Lower-case hex of `bytes`.
pub fn to_hex(bytes: &[u8]) -> String {
    let mut out = vec![0u8; bytes.len() * 2];
    write_hex(&mut out, bytes);
    String::from_utf8(out).unwrap_or_default()
}

fn write_hex(out: &mut [u8], bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (i, byte) in bytes.iter().enumerate() {
        out[2 * i] = DIGITS[usize::from(byte >> 4)];
        out[2 * i + 1] = DIGITS[usize::from(byte & 0xf)];
    }
}

fn hex<const N: usize>(text: &str) -> Option<[u8; N]> {
    let bytes = text.as_bytes();
    if bytes.len() != 2 * N {
        return None;
    }
    let digit = |b: u8| match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        _ => None,
    };
    let mut out = [0u8; N];
    for (i, pair) in bytes.chunks_exact(2).enumerate() {
        out[i] = digit(pair[0])? << 4 | digit(pair[1])?;
    }
    Some(out)
}

pub fn new_trace_id() -> TraceId {
    loop {
        let id: TraceId = rand::random();
        if id != [0; 16] {
            return id;
        }
    }
}

pub fn new_span_id() -> SpanId {
    loop {
        let id: SpanId = rand::random();
        if id != [0; 8] {
            return id;
        }
    }
}

/// Whether a trace this node starts is recorded: OpenTelemetry's `TraceIdRatioBased`, which
/// compares the trace id's last 8 bytes with the ratio, so every node decides alike.
pub fn ratio_samples(trace_id: &TraceId, ratio: f64) -> bool {
    if ratio >= 1.0 {
        return true;
    }
    if ratio <= 0.0 {
        return false;
    }
    let mut low = [0u8; 8];
    low.copy_from_slice(&trace_id[8..]);
    let bound = (ratio * (1u64 << 63) as f64) as u64;
    (u64::from_be_bytes(low) >> 1) < bound
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_writes_the_w3c_example() {
        let value = HeaderValue::from_static("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
        let parent = parse_traceparent(&value).unwrap();
        assert_eq!(to_hex(&parent.trace_id), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(to_hex(&parent.span_id), "00f067aa0ba902b7");
        assert!(parent.sampled);
        assert_eq!(traceparent(&parent.trace_id, &parent.span_id, true), value);
        let unsampled = traceparent(&parent.trace_id, &parent.span_id, false);
        assert!(!parse_traceparent(&unsampled).unwrap().sampled);
    }

    #[test]
    fn refuses_malformed_and_zero_contexts() {
        for bad in [
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "garbage",
        ] {
            assert_eq!(parse_traceparent(&HeaderValue::from_static(bad)), None, "{bad}");
        }
        let future = HeaderValue::from_static("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-more");
        assert!(parse_traceparent(&future).is_some());
    }

    #[test]
    fn the_ratio_sampler_keeps_about_its_share() {
        assert!(ratio_samples(&[0xff; 16], 1.0));
        assert!(!ratio_samples(&[0; 16], 0.0));
        let kept = (0..10_000).filter(|_| ratio_samples(&new_trace_id(), 0.25)).count();
        assert!((2_000..3_000).contains(&kept), "{kept}");
    }
}
