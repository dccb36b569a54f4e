//! The `key=value` text of an access log line, written by the gateway itself and handed to
//! `tracing` as the event's one message.
//!
//! Before, each field was a `tracing` field, and the subscriber's formatter visited twenty of
//! them through `dyn Debug` and `core::fmt` with padding and style checks: about 17,000
//! instructions a request, a seventh of the whole proxy path. Writing the line into one buffer
//! (integers with `itoa`) costs a fraction of that and prints the same text: a value of a
//! `Display` field as it displays, a text value quoted and escaped as `Debug` does, and a field
//! whose value is `None` left out. Durations are milliseconds with three decimals, written with
//! integer digits rather than `Debug` of an `f64`.

use std::fmt::{Display, Write};
use std::time::Duration;

/// One line being written; [`TextLine::finish`] gives the text.
pub struct TextLine {
    text: String,
}

impl TextLine {
    pub fn new() -> TextLine {
        TextLine { text: String::with_capacity(256) }
    }

    fn key(&mut self, name: &str) {
        if !self.text.is_empty() {
            self.text.push(' ');
        }
        self.text.push_str(name);
        self.text.push('=');
    }

    /// `name=value`, the value as it displays (a path, an address, a name).
    pub fn display(&mut self, name: &str, value: impl Display) -> &mut Self {
        self.key(name);
        let _ = write!(self.text, "{value}");
        self
    }

    /// `name=address`. An IPv4 address is written octet by octet: `Display` pads and checks
    /// widths, and cost as much as the rest of the line's fields together.
    pub fn ip(&mut self, name: &str, ip: std::net::IpAddr) -> &mut Self {
        let std::net::IpAddr::V4(v4) = ip else { return self.display(name, ip) };
        self.key(name);
        let mut digits = itoa::Buffer::new();
        for (i, octet) in v4.octets().into_iter().enumerate() {
            if i > 0 {
                self.text.push('.');
            }
            self.text.push_str(digits.format(octet));
        }
        self
    }

    /// `name=value` for a name or path; quoted and escaped as [`TextLine::quoted`] when it holds a
    /// control character (a model name from a provider's answer could), so a value can never
    /// end the line or carry a terminal escape sequence.
    pub fn text(&mut self, name: &str, value: &str) -> &mut Self {
        if value.bytes().any(|b| b < 0x20 || b == 0x7f) {
            return self.quoted(name, Some(value));
        }
        self.key(name);
        self.text.push_str(value);
        self
    }

    /// `name="value"`, quoted and escaped (free text: errors, payloads); nothing when `None`.
    pub fn quoted(&mut self, name: &str, value: Option<&str>) -> &mut Self {
        if let Some(value) = value {
            self.key(name);
            let _ = write!(self.text, "{value:?}");
        }
        self
    }

    /// `name=N`; nothing when `None`.
    pub fn int(&mut self, name: &str, value: Option<impl itoa::Integer>) -> &mut Self {
        if let Some(value) = value {
            self.key(name);
            self.text.push_str(itoa::Buffer::new().format(value));
        }
        self
    }

    /// `name=<milliseconds>` with three decimals (microseconds), e.g. `duration_ms=12.345`;
    /// nothing when `None`. Integer digits: `{:?}` of an `f64` cost as much as the rest of the
    /// line.
    pub fn millis(&mut self, name: &str, value: Option<Duration>) -> &mut Self {
        if let Some(value) = value {
            self.key(name);
            let micros = value.as_micros();
            self.text.push_str(itoa::Buffer::new().format(micros / 1000));
            let fraction = (micros % 1000) as u16;
            self.text.push('.');
            for digit in [fraction / 100, fraction / 10 % 10, fraction % 10] {
                self.text.push(char::from(b'0' + digit as u8));
            }
        }
        self
    }

    /// `name=true` or `name=false`; nothing when `None`.
    pub fn boolean(&mut self, name: &str, value: Option<bool>) -> &mut Self {
        if let Some(value) = value {
            self.key(name);
            self.text.push_str(if value { "true" } else { "false" });
        }
        self
    }

    pub fn finish(self) -> String {
        self.text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_print_as_key_value_pairs() {
        let mut line = TextLine::new();
        line.text("request_id", "abc")
            .ip("client", std::net::Ipv4Addr::LOCALHOST.into())
            .ip("peer", "::1".parse().unwrap())
            .int("status", Some(200u16))
            .int("attempts", None::<u32>)
            .millis("duration_ms", Some(Duration::from_micros(12_345)))
            .millis("ttft_ms", Some(Duration::from_nanos(7_900)))
            .millis("upstream_ms", None)
            .quoted("error", Some("bad \"thing\"\n"))
            .quoted("reason", None)
            .boolean("aborted", Some(false));
        assert_eq!(
            line.finish(),
            r#"request_id=abc client=127.0.0.1 peer=::1 status=200 duration_ms=12.345 ttft_ms=0.007 error="bad \"thing\"\n" aborted=false"#
        );
    }

    #[test]
    fn a_control_character_in_plain_text_is_quoted() {
        let mut line = TextLine::new();
        line.text("model", "evil\n\u{1b}[31m").text("path", "/chat");
        assert_eq!(line.finish(), r#"model="evil\n\u{1b}[31m" path=/chat"#);
    }
}
