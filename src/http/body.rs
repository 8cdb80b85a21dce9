//! Request bodies: one decoder for both framings (RFC 9112 §6.3), with the
//! zero-copy contract of [`ChunkedDecoder`]: each step names the body bytes
//! inside the input it was given and how much of the input it consumed.

use crate::http::chunked::{Chunk, ChunkedDecoder, ChunkedError};
use crate::http::request::Framing;

#[derive(Debug)]
pub enum BodyDecoder {
    /// `Content-Length`: this many bytes are still to come.
    Length(u64),
    Chunked(ChunkedDecoder),
}

impl BodyDecoder {
    pub fn new(framing: Framing) -> BodyDecoder {
        match framing {
            Framing::None => BodyDecoder::Length(0),
            Framing::Length(n) => BodyDecoder::Length(n),
            Framing::Chunked => BodyDecoder::Chunked(ChunkedDecoder::new()),
        }
    }

    /// Body bytes announced but not yet delivered: the rest of a
    /// `Content-Length`, or of the current chunk.
    pub fn announced(&self) -> u64 {
        match self {
            BodyDecoder::Length(remaining) => *remaining,
            BodyDecoder::Chunked(decoder) => decoder.announced(),
        }
    }

    /// One step over `input` (which may be empty).
    pub fn step(&mut self, input: &[u8]) -> Result<(usize, Chunk), ChunkedError> {
        match self {
            BodyDecoder::Length(0) => Ok((0, Chunk::Done)),
            BodyDecoder::Length(remaining) => {
                let n = (*remaining).min(input.len() as u64) as usize;
                if n == 0 {
                    return Ok((0, Chunk::NeedMore));
                }
                *remaining -= n as u64;
                Ok((n, Chunk::Data(0..n)))
            }
            BodyDecoder::Chunked(decoder) => decoder.step(input),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn length_body_stops_at_its_length() {
        let mut d = BodyDecoder::new(Framing::Length(3));
        assert!(matches!(d.step(b""), Ok((0, Chunk::NeedMore))));
        assert!(matches!(d.step(b"ab"), Ok((2, Chunk::Data(r))) if r == (0..2)));
        assert!(matches!(d.step(b"cGET"), Ok((1, Chunk::Data(r))) if r == (0..1)));
        assert!(matches!(d.step(b"GET"), Ok((0, Chunk::Done))));
    }

    #[test]
    fn no_body_is_done_at_once() {
        let mut d = BodyDecoder::new(Framing::None);
        assert!(matches!(d.step(b"GET"), Ok((0, Chunk::Done))));
    }
}
