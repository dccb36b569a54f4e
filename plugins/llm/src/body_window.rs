//! The two ends of a relayed response body, kept in bounded memory while the body goes by: all of
//! it while it is small, else its first and last [`WINDOW`] bytes. Enough to read what an LLM
//! answer says about itself (`model` at its start, `usage` at its end) from an answer of any size.

use std::borrow::Cow;

/// How many bytes of each end of a body are kept: far more than `usage` and `model` take.
pub const WINDOW: usize = 64 * 1024;

#[derive(Debug, Clone, Default)]
pub struct BodyWindow {
    /// The first bytes, up to `WINDOW`.
    head: Vec<u8>,
    /// The bytes after `head`, of which only the latest are kept: at most `2 * WINDOW`, so that
    /// dropping the oldest moves memory once per `WINDOW` bytes received, not once per chunk.
    tail: Vec<u8>,
    /// Bytes received in all.
    total: u64,
}

impl BodyWindow {
    /// A window holding `first`, the body's first piece.
    pub fn starting_with(first: &[u8]) -> BodyWindow {
        let mut window = BodyWindow::default();
        window.push(first);
        window
    }

    /// Takes the next piece of the body.
    pub fn push(&mut self, mut chunk: &[u8]) {
        self.total += chunk.len() as u64;
        if self.tail.is_empty() && self.head.len() < WINDOW {
            let taken = chunk.len().min(WINDOW - self.head.len());
            let needed = self.head.len() + taken;
            if needed > self.head.capacity() {
                // Doubling as a Vec would, but never past the window.
                let grown = (self.head.capacity() * 2).max(needed).min(WINDOW);
                self.head.reserve_exact(grown - self.head.len());
            }
            self.head.extend_from_slice(&chunk[..taken]);
            chunk = &chunk[taken..];
        }
        if chunk.is_empty() {
            return;
        }
        if chunk.len() >= WINDOW {
            self.tail.clear();
            chunk = &chunk[chunk.len() - WINDOW..];
        } else if self.tail.len() + chunk.len() > 2 * WINDOW {
            self.tail.drain(..self.tail.len() + chunk.len() - WINDOW);
        }
        if self.tail.capacity() == 0 {
            self.tail.reserve_exact(2 * WINDOW);
        }
        self.tail.extend_from_slice(chunk);
    }

    /// The whole body, when every byte of it was kept.
    pub fn whole(&self) -> Option<Cow<'_, [u8]>> {
        if self.tail.is_empty() {
            return Some(Cow::Borrowed(&self.head));
        }
        if self.total == (self.head.len() + self.tail.len()) as u64 {
            return Some(Cow::Owned([self.head.as_slice(), &self.tail].concat()));
        }
        None
    }

    /// The body's first bytes (at most `WINDOW`).
    pub fn head(&self) -> &[u8] {
        &self.head
    }

    /// The body's last bytes (at most `WINDOW`, fewer when the body is shorter than two windows).
    pub fn tail(&self) -> &[u8] {
        &self.tail[self.tail.len().saturating_sub(WINDOW)..]
    }

    /// Bytes received in all.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Bytes held in memory (capacity included): bounded by `3 * WINDOW`, whatever the body's size.
    pub fn held(&self) -> usize {
        self.head.capacity() + self.tail.capacity()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A body of `len` bytes counting 0..=250 over and over, so every position is recognisable.
    fn body(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i % 251) as u8).collect()
    }

    #[test]
    fn small_bodies_are_kept_whole_in_any_number_of_pieces() {
        let bytes = body(WINDOW + WINDOW / 2);
        let mut window = BodyWindow::starting_with(&bytes[..10]);
        for piece in bytes[10..].chunks(1000) {
            window.push(piece);
        }
        assert_eq!(window.whole().as_deref(), Some(bytes.as_slice()));
        assert_eq!(window.total(), bytes.len() as u64);
    }

    #[test]
    fn big_bodies_keep_their_ends_in_bounded_memory() {
        let bytes = body(20 * WINDOW + 123);
        for piece_len in [1, 7, 4096, WINDOW - 1, WINDOW, 3 * WINDOW] {
            let mut window = BodyWindow::default();
            for piece in bytes.chunks(piece_len) {
                window.push(piece);
                assert!(window.held() <= 3 * WINDOW + 64, "{} bytes held", window.held());
            }
            assert!(window.whole().is_none());
            assert_eq!(window.head(), &bytes[..WINDOW], "pieces of {piece_len}");
            assert_eq!(window.tail(), &bytes[bytes.len() - WINDOW..], "pieces of {piece_len}");
        }
    }
}
