//! Where an upstream response body ends (RFC 9112 §6.3), and taking its data out of the bytes
//! read from the connection: a length, chunked transfer coding, or the connection's close.
//!
//! Pure over a buffer, so every framing edge (a chunk-size line split across reads, trailers, a
//! short body) is tested without a socket; [`super::conn`] feeds it what the socket gives.

use bytes::{Buf, Bytes, BytesMut};

use super::wire::WireError;

/// The longest chunk-size line (size, extensions) or trailer section accepted.
const MAX_LINE: usize = 8 * 1024;

/// How the body of one response is delimited, and how much of it is still to come.
#[derive(Debug, PartialEq, Eq)]
pub enum Framing {
    /// `Content-Length` (or no body at all: `0`): this many bytes remain.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked(Chunk),
    /// Neither: the body is everything until the upstream closes the connection.
    UntilClose,
}

/// Where a chunked body's decoding stands.
#[derive(Debug, PartialEq, Eq)]
pub enum Chunk {
    /// Expecting a chunk-size line.
    Size,
    /// In a chunk's data, with this many bytes of it left.
    Data(u64),
    /// After a chunk's data, expecting its CRLF.
    DataEnd,
    /// After the last (zero) chunk: trailer fields until an empty line; this many bytes of
    /// trailers seen so far.
    Trailers(usize),
    /// The terminating empty line has been read.
    Done,
}

/// What [`Framing::decode`] found in the buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded {
    /// Body data, taken out of the buffer (at most one chunk's, so an upstream's chunks stay
    /// the client's frames: an SSE event is never held back for the next).
    Data(Bytes),
    /// The buffer holds no more of the body: read the connection.
    More,
    /// The body is complete; anything left in the buffer is not this response's.
    End,
}

impl Framing {
    /// Takes the next piece of body out of `buf`. Runs on every poll of the response body,
    /// before the connection is read.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Decoded, WireError> {
        match self {
            Framing::Length(0) => Ok(Decoded::End),
            Framing::Length(_) | Framing::UntilClose if buf.is_empty() => Ok(Decoded::More),
            Framing::Length(left) => {
                let take = (*left).min(buf.len() as u64);
                *left -= take;
                Ok(Decoded::Data(buf.split_to(take as usize).freeze()))
            }
            Framing::UntilClose => Ok(Decoded::Data(buf.split().freeze())),
            Framing::Chunked(state) => state.decode(buf),
        }
    }

    /// Called when the connection ended (read returned nothing): the end of an `UntilClose`
    /// body, and a broken one for any other framing still expecting bytes.
    pub fn at_close(&self) -> Result<(), WireError> {
        match self {
            Framing::UntilClose | Framing::Length(0) | Framing::Chunked(Chunk::Done) => Ok(()),
            _ => Err(WireError::Closed),
        }
    }

    /// Whether the whole body has been taken.
    pub fn is_end(&self) -> bool {
        matches!(self, Framing::Length(0) | Framing::Chunked(Chunk::Done))
    }

    /// The bytes still to come, when the framing says.
    pub fn remaining(&self) -> Option<u64> {
        match self {
            Framing::Length(left) => Some(*left),
            Framing::Chunked(Chunk::Done) => Some(0),
            _ => None,
        }
    }
}

impl Chunk {
    fn decode(&mut self, buf: &mut BytesMut) -> Result<Decoded, WireError> {
        loop {
            match self {
                Chunk::Size => {
                    let Some(line) = take_line(buf)? else { return Ok(Decoded::More) };
                    let size = chunk_size(&line)?;
                    *self = if size == 0 { Chunk::Trailers(0) } else { Chunk::Data(size) };
                }
                Chunk::Data(_) if buf.is_empty() => return Ok(Decoded::More),
                Chunk::Data(left) => {
                    let take = (*left).min(buf.len() as u64);
                    *left -= take;
                    if *left == 0 {
                        *self = Chunk::DataEnd;
                    }
                    return Ok(Decoded::Data(buf.split_to(take as usize).freeze()));
                }
                Chunk::DataEnd => {
                    if buf.len() < 2 {
                        return Ok(Decoded::More);
                    }
                    if &buf[..2] != b"\r\n" {
                        return Err(WireError::Protocol("a chunk's data is not followed by CRLF"));
                    }
                    buf.advance(2);
                    *self = Chunk::Size;
                }
                Chunk::Trailers(seen) => {
                    let Some(line) = take_line(buf)? else { return Ok(Decoded::More) };
                    if line.is_empty() {
                        *self = Chunk::Done;
                        return Ok(Decoded::End);
                    }
                    *seen += line.len();
                    if *seen > MAX_LINE {
                        return Err(WireError::Protocol("the chunked body's trailers are too long"));
                    }
                }
                Chunk::Done => return Ok(Decoded::End),
            }
        }
    }
}

/// Takes one CRLF-terminated line out of `buf`, without its CRLF; `None` while it is incomplete.
fn take_line(buf: &mut BytesMut) -> Result<Option<BytesMut>, WireError> {
    let Some(end) = memchr::memchr(b'\n', buf) else {
        if buf.len() > MAX_LINE {
            return Err(WireError::Protocol("a chunk-size or trailer line is too long"));
        }
        return Ok(None);
    };
    if end == 0 || buf[end - 1] != b'\r' {
        return Err(WireError::Protocol("a chunked body line does not end in CRLF"));
    }
    let mut line = buf.split_to(end + 1);
    line.truncate(end - 1);
    Ok(Some(line))
}

/// The size a chunk-size line gives: hexadecimal digits, then optional whitespace and
/// extensions (`;name=value`), which carry nothing a proxy needs.
fn chunk_size(line: &[u8]) -> Result<u64, WireError> {
    let invalid = || WireError::Protocol("invalid chunk size");
    let digits = line.iter().take_while(|byte| byte.is_ascii_hexdigit()).count();
    let blanks = line[digits..].iter().take_while(|byte| matches!(byte, b' ' | b'\t')).count();
    let after = &line[digits + blanks..];
    if digits == 0 || digits > 15 || !(after.is_empty() || after[0] == b';') {
        return Err(invalid());
    }
    line[..digits].iter().try_fold(0u64, |size, digit| {
        let value = char::from(*digit).to_digit(16).ok_or_else(invalid)?;
        Ok(size << 4 | u64::from(value))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `input` in pieces of `step` bytes, collecting the data until the end.
    fn decode_in_steps(framing: &mut Framing, input: &[u8], step: usize) -> Result<(Vec<Bytes>, BytesMut), WireError> {
        let mut buf = BytesMut::new();
        let mut data = Vec::new();
        let mut pieces = input.chunks(step.max(1));
        loop {
            match framing.decode(&mut buf)? {
                Decoded::Data(bytes) => data.push(bytes),
                Decoded::End => return Ok((data, buf)),
                Decoded::More => match pieces.next() {
                    Some(piece) => buf.extend_from_slice(piece),
                    None => {
                        framing.at_close()?;
                        return Ok((data, buf));
                    }
                },
            }
        }
    }

    fn joined(data: &[Bytes]) -> Vec<u8> {
        data.iter().flat_map(|bytes| bytes.iter().copied()).collect()
    }

    #[test]
    fn chunked_body_decodes_whatever_the_read_boundaries() {
        let wire = b"5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\nx-trailer: t\r\n\r\nNEXT";
        for step in 1..wire.len() {
            let mut framing = Framing::Chunked(Chunk::Size);
            let (data, rest) = decode_in_steps(&mut framing, wire, step).unwrap();
            assert_eq!(joined(&data), b"hello, world", "step {step}");
            assert!(framing.is_end());
            assert!(b"NEXT".starts_with(&rest), "step {step}: what follows the body stays in the buffer");
        }
    }

    #[test]
    fn each_chunk_is_its_own_piece_when_read_at_once() {
        let mut framing = Framing::Chunked(Chunk::Size);
        let wire = b"6\r\ndata:1\r\n6\r\ndata:2\r\n0\r\n\r\n";
        let (data, rest) = decode_in_steps(&mut framing, wire, wire.len()).unwrap();
        assert_eq!(data, vec![Bytes::from_static(b"data:1"), Bytes::from_static(b"data:2")]);
        assert!(rest.is_empty());
    }

    #[test]
    fn length_body_stops_at_its_length() {
        let mut framing = Framing::Length(5);
        let (data, rest) = decode_in_steps(&mut framing, b"hello world", 3).unwrap();
        assert_eq!(joined(&data), b"hello");
        assert_eq!(framing.remaining(), Some(0));
        assert!(b" world".starts_with(&rest));
    }

    #[test]
    fn a_body_cut_short_is_an_error_unless_it_ends_at_close() {
        assert!(matches!(decode_in_steps(&mut Framing::Length(10), b"short", 2), Err(WireError::Closed)));
        let chunked = decode_in_steps(&mut Framing::Chunked(Chunk::Size), b"5\r\nhel", 2);
        assert!(matches!(chunked, Err(WireError::Closed)));
        let (data, _) = decode_in_steps(&mut Framing::UntilClose, b"all of it", 4).unwrap();
        assert_eq!(joined(&data), b"all of it");
    }

    /// `data` cut into chunks of `sizes` (cycled; the last chunk takes what is left), in
    /// chunked coding with size lines in either case and with or without extensions.
    fn chunked(data: &[u8], sizes: &[usize], upper: bool, extension: bool) -> Vec<u8> {
        let mut wire = Vec::new();
        let mut rest = data;
        for size in sizes.iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let (chunk, after) = rest.split_at((*size).clamp(1, rest.len()));
            let line = if upper { format!("{:X}", chunk.len()) } else { format!("{:x}", chunk.len()) };
            wire.extend_from_slice(line.as_bytes());
            if extension {
                wire.extend_from_slice(b" ;name=\"value\"");
            }
            wire.extend_from_slice(b"\r\n");
            wire.extend_from_slice(chunk);
            wire.extend_from_slice(b"\r\n");
            rest = after;
        }
        wire.extend_from_slice(b"0\r\ntrailer: yes\r\n\r\n");
        wire
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]

        /// Whatever the chunk sizes and however the reads cut the wire, the data comes out whole
        /// and in order, no piece spans two chunks, and the bytes after the body stay buffered.
        #[test]
        fn any_chunking_read_in_any_pieces_gives_the_data_back(
            data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600),
            sizes in proptest::collection::vec(1usize..80, 1..8),
            step in 1usize..64,
            upper in proptest::prelude::any::<bool>(),
            extension in proptest::prelude::any::<bool>(),
        ) {
            let mut wire = chunked(&data, &sizes, upper, extension);
            wire.extend_from_slice(b"HTTP/1.1 200");
            let mut framing = Framing::Chunked(Chunk::Size);
            let (pieces, rest) = decode_in_steps(&mut framing, &wire, step).unwrap();
            proptest::prop_assert_eq!(joined(&pieces), data);
            proptest::prop_assert!(pieces.iter().all(|piece| piece.len() <= *sizes.iter().max().unwrap()));
            proptest::prop_assert!(framing.is_end());
            proptest::prop_assert!(b"HTTP/1.1 200".starts_with(&rest));
        }
    }

    #[test]
    fn malformed_chunked_framing_is_refused() {
        for wire in [
            &b"zz\r\nhello\r\n"[..],
            b"5\r\nhelloXX0\r\n\r\n",
            b"5\nhello\r\n",
            b"5 x\r\nhello\r\n",
            b"10000000000000000\r\n",
        ] {
            let result = decode_in_steps(&mut Framing::Chunked(Chunk::Size), wire, wire.len());
            assert!(matches!(result, Err(WireError::Protocol(_))), "{:?}", String::from_utf8_lossy(wire));
        }
        let endless = vec![b'1'; MAX_LINE + 2];
        assert!(decode_in_steps(&mut Framing::Chunked(Chunk::Size), &endless, 1024).is_err());
    }
}
