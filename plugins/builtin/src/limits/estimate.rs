//! The estimate a request reserves at admission, on every surface that limits tokens
//! (`ai-rate-limiting`, the model API's `tpm` / `tpd`).
//!
//! Prompt tokens: the request body's length in bytes divided by 4, rounded up (about four bytes
//! of English text per token; the JSON around the messages makes it an overestimate, which errs
//! toward the limit). Completion tokens: the request's `max_completion_tokens`, else its
//! `max_tokens`, else its `max_output_tokens` (the Responses API), else a configured default
//! (256; 0 for embeddings, which produce none). The reservation is settled to the real usage when
//! the response ends.

use serde::Deserialize;
use switchyard_sdk::raw_body::RawBody;
use switchyard_sdk::Usage;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Estimate {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
}

/// The fields that bound a request's completion, in the order they are believed.
#[derive(Deserialize)]
struct Limits {
    max_completion_tokens: Option<u64>,
    max_tokens: Option<u64>,
    max_output_tokens: Option<u64>,
}

impl Limits {
    fn completion(&self) -> Option<u64> {
        self.max_completion_tokens.or(self.max_tokens).or(self.max_output_tokens)
    }
}

impl Estimate {
    /// Runs once per request at admission, on the raw body (read as JSON for its bounds). A body
    /// without the bytes `max_` names no bound and is not parsed at all: a search costs a tenth
    /// of a parse. (A key spelled with JSON escapes, `"\u006dax_tokens"`, is then missed and the
    /// default stands; the reservation is settled to the real usage either way.)
    pub fn of(body: &[u8], default_completion_tokens: u64) -> Estimate {
        let bound = memchr::memmem::find(body, b"max_")
            .and_then(|_| serde_json::from_slice::<Limits>(body).ok())
            .and_then(|l| l.completion());
        Self::from_parts(body.len(), bound, default_completion_tokens)
    }

    /// As [`Estimate::of`], for a body already parsed (the model API's): no second parse.
    pub fn of_parsed(body: &RawBody, default_completion_tokens: u64) -> Estimate {
        let limits = Limits {
            max_completion_tokens: body.get("max_completion_tokens"),
            max_tokens: body.get("max_tokens"),
            max_output_tokens: body.get("max_output_tokens"),
        };
        Self::from_parts(body.original().len(), limits.completion(), default_completion_tokens)
    }

    fn from_parts(body_len: usize, bound: Option<u64>, default_completion_tokens: u64) -> Estimate {
        Estimate {
            prompt_tokens: (body_len as u64).div_ceil(4),
            completion_tokens: bound.unwrap_or(default_completion_tokens),
        }
    }

    /// As usage, for a limit to count.
    pub fn usage(&self) -> Usage {
        Usage {
            prompt_tokens: self.prompt_tokens,
            completion_tokens: self.completion_tokens,
            total_tokens: self.prompt_tokens + self.completion_tokens,
            ..Usage::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_completion_tokens_then_max_tokens_then_max_output_tokens_then_the_default() {
        let body = br#"{"messages":[],"max_tokens":40,"max_completion_tokens":30}"#;
        assert_eq!(Estimate::of(body, 256), Estimate { prompt_tokens: 15, completion_tokens: 30 });
        assert_eq!(Estimate::of(br#"{"max_tokens":40}"#, 256).completion_tokens, 40);
        assert_eq!(Estimate::of(br#"{"max_output_tokens":70}"#, 256).completion_tokens, 70);
        assert_eq!(Estimate::of(b"{}", 256), Estimate { prompt_tokens: 1, completion_tokens: 256 });
        assert_eq!(Estimate::of(b"not json", 9).completion_tokens, 9);
    }

    #[test]
    fn a_parsed_body_gives_the_same_estimate() {
        let bytes = br#"{"input":"hi","max_output_tokens":12,"max_tokens":40}"#;
        let parsed = RawBody::parse(bytes::Bytes::from_static(bytes)).unwrap();
        assert_eq!(Estimate::of_parsed(&parsed, 256), Estimate::of(bytes, 256));
        assert_eq!(Estimate::of_parsed(&parsed, 256).completion_tokens, 40);
    }
}
