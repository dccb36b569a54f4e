//! The estimate a request reserves at admission.
//!
//! Prompt tokens: the request body's length in bytes divided by 4, rounded up (about four bytes
//! of English text per token; the JSON around the messages makes it an overestimate, which errs
//! toward the limit). Completion tokens: the request's `max_completion_tokens`, else its
//! `max_tokens`, else the plugin's `default_completion_tokens` (256). The reservation is settled
//! to the real usage when the response ends.

use serde::Deserialize;
use switchyard_sdk::Usage;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Estimate {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
}

#[derive(Deserialize)]
struct Limits {
    max_tokens: Option<u64>,
    max_completion_tokens: Option<u64>,
}

impl Estimate {
    /// Runs once per request, in the access phase.
    pub fn of(body: &[u8], default_completion_tokens: u64) -> Estimate {
        let limits = serde_json::from_slice::<Limits>(body).ok();
        let completion_tokens =
            limits.and_then(|l| l.max_completion_tokens.or(l.max_tokens)).unwrap_or(default_completion_tokens);
        Estimate { prompt_tokens: (body.len() as u64).div_ceil(4), completion_tokens }
    }

    /// As usage, for the limit strategy to count.
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
    fn max_completion_tokens_then_max_tokens_then_the_default() {
        let body = br#"{"messages":[],"max_tokens":40,"max_completion_tokens":30}"#;
        assert_eq!(Estimate::of(body, 256), Estimate { prompt_tokens: 15, completion_tokens: 30 });
        assert_eq!(Estimate::of(br#"{"max_tokens":40}"#, 256).completion_tokens, 40);
        assert_eq!(Estimate::of(b"{}", 256), Estimate { prompt_tokens: 1, completion_tokens: 256 });
        assert_eq!(Estimate::of(b"not json", 9).completion_tokens, 9);
    }
}
