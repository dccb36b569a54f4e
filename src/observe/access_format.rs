//! How the binary prints access events: the line the access log wrote ([`super::access_log`]),
//! after the same time, level and target as every other log line (in JSON mode, bare).
//!
//! `tracing_subscriber`'s own formatter passes a message through a writer that checks and
//! escapes it one character at a time: about 12,000 instructions for one access line, a tenth
//! of the whole proxy path. The access log writes its lines with every value already escaped
//! (free text quoted, control characters never bare), so they are copied as they are.
//!
//! Runs for every access line, so the time is written here too rather than by the
//! subscriber's timer (see [`write_now`]).
//!
//! Access lines and the other log lines go through one layer ([`LogFormat`] picks the format by
//! target) rather than two layers with a filter each: with a per-layer filter that lets the
//! access target through and another that keeps it out, tracing caches no verdict for the
//! access callsite ("sometimes"), so every `enabled!` check and every line ran the global
//! filter's directives and both layer filters again, about 400 instructions a request.

use std::cell::RefCell;
use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// The format of every log line: access events (target `access`) in [`AccessFormat`], the
/// others in `other`, the subscriber's usual format.
pub struct LogFormat<F> {
    pub access: AccessFormat,
    pub other: F,
}

impl<S, N, F> FormatEvent<S, N> for LogFormat<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(&self, ctx: &FmtContext<'_, S, N>, writer: Writer<'_>, event: &Event<'_>) -> fmt::Result {
        if event.metadata().target() == super::access_log::TARGET {
            self.access.format_event(ctx, writer, event)
        } else {
            self.other.format_event(ctx, writer, event)
        }
    }
}

/// The event format of access events. `json`: print the line bare, so each line of output is
/// one JSON object.
pub struct AccessFormat {
    pub json: bool,
}

impl<S, N> FormatEvent<S, N> for AccessFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(&self, _ctx: &FmtContext<'_, S, N>, mut writer: Writer<'_>, event: &Event<'_>) -> fmt::Result {
        if !self.json {
            let ansi = writer.has_ansi_escapes();
            if ansi {
                writer.write_str("\x1b[2m")?;
            }
            write_now(&mut writer)?;
            // As the default format: dimmed time, the level padded to five, dimmed target.
            writer.write_str(if ansi {
                "\x1b[0m \x1b[32m INFO\x1b[0m \x1b[2maccess:\x1b[0m "
            } else {
                "  INFO access: "
            })?;
        }
        let mut message = Message { writer: &mut writer, result: Ok(()) };
        event.record(&mut message);
        message.result?;
        writer.write_char('\n')
    }
}

/// Writes the time now as the other log lines show it (`2026-12-01T09:30:00.123456Z`, UTC).
///
/// The text up to the second is made once per second per thread and kept: formatting a whole
/// date per line cost more than the rest of the line's prefix.
fn write_now(writer: &mut Writer<'_>) -> fmt::Result {
    thread_local! {
        static SECOND: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
    }
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    SECOND.with_borrow_mut(|(second, text)| {
        if *second != now.as_secs() {
            *second = now.as_secs();
            *text = up_to_the_second(now.as_secs());
        }
        writer.write_str(text)?;
        let mut micros = now.subsec_micros();
        let mut digits = *b"000000Z";
        for digit in digits[..6].iter_mut().rev() {
            *digit = b'0' + (micros % 10) as u8;
            micros /= 10;
        }
        writer.write_str(std::str::from_utf8(&digits).unwrap_or_default())
    })
}

/// `2026-12-01T09:30:00.` for a second since the Unix epoch.
fn up_to_the_second(second: u64) -> String {
    let Ok(time) = time::OffsetDateTime::from_unix_timestamp(second as i64) else { return String::from("?.") };
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.",
        time.year(),
        time.month() as u8,
        time.day(),
        time.hour(),
        time.minute(),
        time.second()
    )
}

/// Copies an event's `message` field; access events have no other.
struct Message<'w, 'a> {
    writer: &'w mut Writer<'a>,
    result: fmt::Result,
}

impl Visit for Message<'_, '_> {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            self.result = write!(self.writer, "{value:?}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What one layer with [`LogFormat`] prints for an access event and another event.
    fn printed(json: bool) -> Vec<String> {
        use std::sync::{Arc, Mutex};
        use tracing_subscriber::layer::SubscriberExt;

        #[derive(Clone, Default)]
        struct Lines(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Lines {
            fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(bytes);
                Ok(bytes.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let lines = Lines::default();
        let sink = lines.clone();
        let layer = tracing_subscriber::fmt::layer()
            .event_format(LogFormat {
                access: AccessFormat { json },
                other: tracing_subscriber::fmt::format().with_target(true),
            })
            .with_ansi(false)
            .with_writer(move || sink.clone());
        tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
            tracing::info!(target: crate::observe::access_log::TARGET, "{}", "{\"status\":200}");
            tracing::info!(target: "switchyard::gateway", port = 9080, "started");
        });
        let text = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
        text.lines().map(str::to_owned).collect()
    }

    #[test]
    fn access_lines_and_other_lines_each_get_their_format() {
        let text = printed(false);
        assert_eq!(text.len(), 2, "{text:?}");
        assert!(text[0].ends_with("Z  INFO access: {\"status\":200}"), "{text:?}");
        assert!(text[1].ends_with("Z  INFO switchyard::gateway: started port=9080"), "{text:?}");
        let json = printed(true);
        assert_eq!(json[0], "{\"status\":200}", "bare in JSON mode: {json:?}");
        assert!(json[1].ends_with("Z  INFO switchyard::gateway: started port=9080"), "{json:?}");
    }

    #[test]
    fn the_second_prefix_is_rfc_3339_utc() {
        assert_eq!(up_to_the_second(0), "1970-01-01T00:00:00.");
        assert_eq!(up_to_the_second(1_796_117_400), "2026-12-01T09:30:00.");
    }
}
