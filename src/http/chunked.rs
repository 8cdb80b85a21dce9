//! An incremental, zero-copy decoder for `Transfer-Encoding: chunked`
//! (RFC 9112 §7.1).
//!
//! The connection owns the buffer; [`ChunkedDecoder::step`] looks at the
//! bytes not yet consumed and says how many it consumed and what they were
//! ([`Chunk`]): body data as a range of the input (never copied), the end
//! of the body, or "need more". The caller drops the consumed prefix, keeps
//! the rest (after [`Chunk::Done`], that is the next pipelined request) and
//! calls again once more bytes arrived. The state lives in an explicit
//! [`ChunkedState`] enum, one byte at a time outside the data, in the manner
//! of hyper's `proto/h1/decode.rs`, so input may be split anywhere.
//!
//! Limits, all errors (400 and close, SPEC §5): a chunk size that does not
//! fit a `u64`, a size line longer than [`MAX_SIZE_LINE`] (digits, leading
//! zeros and extensions together), trailer fields longer than
//! [`MAX_TRAILERS`] in total. Extensions and trailers are read and
//! discarded; the size limit of the body is the caller's (it sees every
//! data range).
//!
//! Line endings: CRLF only. RFC 9112 §2.2 would let a recipient take a bare
//! LF, but SPEC §9.6 refuses it in chunked framing: a backend that reads
//! line endings differently would frame the body differently behind us
//! (request smuggling). A bare CR or LF, or data not followed by CRLF, is an
//! error, never resynchronised.

use std::fmt;
use std::ops::Range;

/// Longest size line: hex digits, whitespace and chunk extensions.
pub const MAX_SIZE_LINE: usize = 4096;
/// Most bytes of trailer fields, line endings included.
pub const MAX_TRAILERS: usize = 8192;

/// What [`ChunkedDecoder::step`] found in the bytes it consumed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Chunk {
    /// `input[range]` is body data; the range is not empty and lies within
    /// the consumed prefix (it ends it).
    Data(Range<usize>),
    /// The last chunk, the trailers and the final line ending have been
    /// consumed: the body is complete.
    Done,
    /// Everything was consumed and the body is not complete yet.
    NeedMore,
}

/// Malformed chunked framing. Each is a 400 and the connection closes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkedError {
    /// A chunk size is empty or holds a non-hex byte.
    InvalidSize,
    /// A chunk size does not fit in 64 bits.
    SizeOverflow,
    /// A size line (with its extensions) exceeds [`MAX_SIZE_LINE`].
    SizeLineTooLong,
    /// A control character in a chunk extension.
    InvalidExtension,
    /// Chunk data is not followed by a line ending.
    MissingCrlf,
    /// A CR not followed by LF.
    BareCr,
    /// A line ending without its CR: SPEC §9.6 refuses it in chunked
    /// framing, where a lenient and a strict reader would frame differently.
    BareLf,
    /// A control character in a trailer field.
    InvalidTrailer,
    /// Trailer fields exceed [`MAX_TRAILERS`].
    TrailersTooLarge,
}

impl fmt::Display for ChunkedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ChunkedError::InvalidSize => "invalid chunk size",
            ChunkedError::SizeOverflow => "chunk size too large",
            ChunkedError::SizeLineTooLong => "chunk size line too long",
            ChunkedError::InvalidExtension => "invalid chunk extension",
            ChunkedError::MissingCrlf => "chunk data not followed by CRLF",
            ChunkedError::BareCr => "CR not followed by LF in chunked body",
            ChunkedError::BareLf => "LF without CR in chunked body",
            ChunkedError::InvalidTrailer => "invalid trailer field",
            ChunkedError::TrailersTooLarge => "trailer fields too large",
        })
    }
}

impl std::error::Error for ChunkedError {}

/// Where the decoder is in the grammar of RFC 9112 §7.1:
///
/// ```text
/// chunked-body = *chunk last-chunk trailer-section CRLF
/// chunk        = chunk-size [ chunk-ext ] CRLF chunk-data CRLF
/// last-chunk   = 1*("0") [ chunk-ext ] CRLF
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChunkedState {
    /// Before the first hex digit of a size line.
    Start,
    /// In the hex digits.
    Size,
    /// Whitespace after the size (BWS before `;`).
    SizeLws,
    /// In `;ext=val...`, up to the line ending.
    Extension,
    /// After the CR of a size line.
    SizeLf,
    /// In chunk data; `remaining` bytes to go.
    Body,
    /// After chunk data: CR or LF.
    BodyCr,
    /// After the CR that follows chunk data.
    BodyLf,
    /// At the start of a trailer line, or of the final line ending.
    TrailerStart,
    /// In a trailer field line.
    Trailer,
    /// After the CR of a trailer line.
    TrailerLf,
    /// After the CR of the final line ending.
    EndLf,
    /// The body is complete.
    Done,
}

/// Decodes one chunked body. Create one per request.
#[derive(Debug, Clone)]
pub struct ChunkedDecoder {
    state: ChunkedState,
    /// The size being read, then the bytes left in the current chunk.
    remaining: u64,
    /// Bytes of the current size line so far.
    line_len: usize,
    /// Bytes of trailer fields so far.
    trailer_len: usize,
}

impl Default for ChunkedDecoder {
    fn default() -> Self {
        ChunkedDecoder::new()
    }
}

impl ChunkedDecoder {
    pub fn new() -> Self {
        ChunkedDecoder {
            state: ChunkedState::Start,
            remaining: 0,
            line_len: 0,
            trailer_len: 0,
        }
    }

    /// Whether the whole body has been decoded.
    pub fn is_done(&self) -> bool {
        self.state == ChunkedState::Done
    }

    /// Data bytes the current chunk's size line announced and that have
    /// not been delivered yet: a body limit can refuse them before they
    /// arrive.
    pub fn announced(&self) -> u64 {
        if self.state == ChunkedState::Body {
            self.remaining
        } else {
            0
        }
    }

    /// Decodes from the start of `input`, the bytes not consumed so far.
    ///
    /// Returns how many bytes of `input` were consumed and what they held.
    /// [`Chunk::Data`] consumes up to the end of its range; call again with
    /// the rest. After [`Chunk::Done`] every call returns `(0, Done)`.
    pub fn step(&mut self, input: &[u8]) -> Result<(usize, Chunk), ChunkedError> {
        use ChunkedState::*;
        if self.state == Done {
            return Ok((0, Chunk::Done));
        }
        let mut i = 0;
        while i < input.len() {
            if self.state == Body {
                let n =
                    (input.len() - i).min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
                self.remaining -= n as u64;
                if self.remaining == 0 {
                    self.state = BodyCr;
                }
                return Ok((i + n, Chunk::Data(i..i + n)));
            }
            let b = input[i];
            i += 1;
            self.state = self.next(b)?;
            if self.state == Done {
                return Ok((i, Chunk::Done));
            }
        }
        Ok((input.len(), Chunk::NeedMore))
    }

    /// One byte outside chunk data.
    fn next(&mut self, b: u8) -> Result<ChunkedState, ChunkedError> {
        use ChunkedState::*;
        if matches!(self.state, Start | Size | SizeLws | Extension | SizeLf) {
            self.line_len += 1;
            if self.line_len > MAX_SIZE_LINE {
                return Err(ChunkedError::SizeLineTooLong);
            }
        }
        if matches!(self.state, TrailerStart | Trailer | TrailerLf | EndLf) {
            self.trailer_len += 1;
            if self.trailer_len > MAX_TRAILERS {
                return Err(ChunkedError::TrailersTooLarge);
            }
        }
        Ok(match (self.state, b, hex(b)) {
            (Start, _, Some(digit)) => {
                self.remaining = u64::from(digit);
                Size
            }
            (Start, _, None) => return Err(ChunkedError::InvalidSize),
            (Size, _, Some(digit)) => {
                self.remaining = self
                    .remaining
                    .checked_mul(16)
                    .and_then(|n| n.checked_add(u64::from(digit)))
                    .ok_or(ChunkedError::SizeOverflow)?;
                Size
            }
            (Size | SizeLws, b' ' | b'\t', _) => SizeLws,
            (Size | SizeLws | Extension, b';', _) => Extension,
            (Size | SizeLws | Extension, b'\r', _) => SizeLf,
            (SizeLf, b'\n', _) => self.end_size_line(),
            (Size | SizeLws | Extension, b'\n', _) => return Err(ChunkedError::BareLf),
            (Size | SizeLws, _, _) => return Err(ChunkedError::InvalidSize),
            (Extension, _, _) if is_text(b) => Extension,
            (Extension, _, _) => return Err(ChunkedError::InvalidExtension),
            (SizeLf, _, _) => return Err(ChunkedError::BareCr),
            (BodyCr, b'\r', _) => BodyLf,
            (BodyLf, b'\n', _) => {
                self.line_len = 0;
                Start
            }
            (BodyCr, b'\n', _) => return Err(ChunkedError::BareLf),
            (BodyCr | BodyLf, _, _) => return Err(ChunkedError::MissingCrlf),
            (TrailerStart, b'\r', _) => EndLf,
            (EndLf, b'\n', _) => Done,
            (Trailer, b'\r', _) => TrailerLf,
            (TrailerLf, b'\n', _) => TrailerStart,
            (TrailerStart | Trailer, b'\n', _) => return Err(ChunkedError::BareLf),
            (TrailerStart | Trailer, _, _) if is_text(b) => Trailer,
            (TrailerStart | Trailer, _, _) => return Err(ChunkedError::InvalidTrailer),
            (TrailerLf | EndLf, _, _) => return Err(ChunkedError::BareCr),
            // step() handles data and the end itself and never gets here.
            (Body | Done, _, _) => self.state,
        })
    }

    fn end_size_line(&mut self) -> ChunkedState {
        if self.remaining == 0 {
            ChunkedState::TrailerStart
        } else {
            ChunkedState::Body
        }
    }
}

fn hex(b: u8) -> Option<u8> {
    super::path::hex_val(b)
}

/// HTAB, visible ASCII, space and obs-text: what field values and
/// extensions may hold (RFC 9110 §5.5).
fn is_text(b: u8) -> bool {
    b == b'\t' || (b >= 0x20 && b != 0x7f)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The outcome of feeding `pieces` one after the other, keeping the
    /// unconsumed bytes as a connection would: the data, and the total
    /// consumed when the body ended.
    fn feed(pieces: &[&[u8]]) -> Result<(Vec<u8>, Option<usize>), ChunkedError> {
        let mut decoder = ChunkedDecoder::new();
        let mut buf = Vec::new();
        let mut data = Vec::new();
        let mut consumed = 0;
        for piece in pieces {
            buf.extend_from_slice(piece);
            loop {
                let (n, chunk) = decoder.step(&buf)?;
                assert!(n <= buf.len());
                consumed += n;
                match chunk {
                    Chunk::Data(r) => {
                        assert!(!r.is_empty() && r.end == n, "{r:?} of {n}");
                        data.extend_from_slice(&buf[r]);
                    }
                    Chunk::Done => {
                        assert!(decoder.is_done());
                        assert_eq!(decoder.step(&buf[n..]).unwrap(), (0, Chunk::Done));
                        return Ok((data, Some(consumed)));
                    }
                    Chunk::NeedMore => assert_eq!(n, buf.len()),
                }
                buf.drain(..n);
                if buf.is_empty() {
                    break;
                }
            }
        }
        Ok((data, None))
    }

    /// `input` whole, split in two at every position, and one byte at a
    /// time must all give the same result (hyper's `all_async_cases`).
    fn feed_every_way(input: &[u8]) -> Result<(Vec<u8>, Option<usize>), ChunkedError> {
        let whole = feed(&[input]);
        for k in 0..=input.len() {
            assert_eq!(feed(&[&input[..k], &input[k..]]), whole, "split at {k}");
        }
        let bytes: Vec<&[u8]> = input.chunks(1).collect();
        assert_eq!(feed(&bytes), whole, "byte by byte");
        whole
    }

    #[test]
    fn decodes_valid_bodies() {
        // (input, data, bytes left after the body)
        let table: &[(&[u8], &[u8], usize)] = &[
            (b"5\r\nhello\r\n0\r\n\r\n", b"hello", 0),
            (b"0\r\n\r\n", b"", 0),
            (b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n", b"abcde", 0),
            (b"A\r\n0123456789\r\n0\r\n\r\n", b"0123456789", 0),
            (b"a\r\n0123456789\r\n0\r\n\r\n", b"0123456789", 0),
            (b"0005\r\nhello\r\n000\r\n\r\n", b"hello", 0),
            (b"1\r\n\n\r\n0\r\n\r\n", b"\n", 0),
            (b"4\r\n\r\n\r\n\r\n0\r\n\r\n", b"\r\n\r\n", 0),
            (b"2\r\n0\r\r\n0\r\n\r\n", b"0\r", 0),
            // extensions, with and without values, quoted, BWS before ';'
            (b"5;a=b\r\nhello\r\n0;last\r\n\r\n", b"hello", 0),
            (b"5 ;a=\"x;y\\\"\"\r\nhello\r\n0\r\n\r\n", b"hello", 0),
            (b"5\t; a = b\r\nhello\r\n0\r\n\r\n", b"hello", 0),
            (b"5  \r\nhello\r\n0\r\n\r\n", b"hello", 0),
            (b"5;\xc3\xa9\r\nhello\r\n0\r\n\r\n", b"hello", 0),
            // trailers are read and dropped
            (b"0\r\nX-A: 1\r\nX-B: 2\r\n\r\n", b"", 0),
            (b"1\r\nx\r\n0\r\nExpires: never\r\n\r\n", b"x", 0),
            // a following pipelined request is not consumed
            (b"0\r\n\r\nGET / HTTP/1.1\r\n\r\n", b"", 18),
            (b"3\r\nabc\r\n0\r\n\r\n0\r\n\r\n", b"abc", 5),
        ];
        for &(input, data, left) in table {
            let name = String::from_utf8_lossy(input);
            let got = feed_every_way(input);
            assert_eq!(
                got,
                Ok((data.to_vec(), Some(input.len() - left))),
                "{name:?}"
            );
        }
    }

    #[test]
    fn large_chunks() {
        let mut input = b"10000\r\n".to_vec();
        input.extend(std::iter::repeat_n(b'z', 0x10000));
        input.extend_from_slice(b"\r\n0\r\n\r\n");
        let (data, consumed) = feed(&[&input]).unwrap();
        assert_eq!(data.len(), 0x10000);
        assert_eq!(consumed, Some(input.len()));
        let pieces: Vec<&[u8]> = input.chunks(1000).collect();
        assert_eq!(feed(&pieces).unwrap(), (data, Some(input.len())));
    }

    #[test]
    fn incomplete_bodies_need_more() {
        let table: &[&[u8]] = &[
            b"",
            b"5",
            b"5\r",
            b"5\r\n",
            b"5\r\nhel",
            b"5\r\nhello",
            b"5\r\nhello\r",
            b"5\r\nhello\r\n",
            b"5\r\nhello\r\n0",
            b"5\r\nhello\r\n0\r\n",
            b"0\r\nX: 1\r\n",
            b"0\r\n\r",
            b"5;ext",
            b"ffffffffffffffff\r\nabc",
        ];
        for &input in table {
            let name = String::from_utf8_lossy(input);
            let (_, consumed) = feed_every_way(input).unwrap();
            assert_eq!(consumed, None, "{name:?}");
        }
    }

    #[test]
    fn rejects_malformed_bodies() {
        use ChunkedError::*;
        let long_ext = [b"5;".as_slice(), &[b'a'; MAX_SIZE_LINE]].concat();
        let long_zeros = [&[b'0'; MAX_SIZE_LINE][..], b"\r\n"].concat();
        let fitting_zeros = [&[b'0'; MAX_SIZE_LINE - 2][..], b"\r\n\r\n"].concat();
        let long_trailer = [b"0\r\nX: ".as_slice(), &[b'a'; MAX_TRAILERS]].concat();
        let table: &[(&[u8], ChunkedError)] = &[
            (b"x\r\n", InvalidSize),
            (b"\r\n", InvalidSize),
            (b"\n", InvalidSize),
            (b";a\r\n", InvalidSize),
            (b" 5\r\n", InvalidSize),
            (b"-1\r\n", InvalidSize),
            (b"+5\r\n", InvalidSize),
            (b"0x5\r\n", InvalidSize),
            (b"5g\r\n", InvalidSize),
            (b"1 2\r\n", InvalidSize),
            (b"5\r\nhello\r\nz\r\n", InvalidSize),
            (b"10000000000000000\r\n", SizeOverflow),
            (b"fffffffffffffffff\r\n", SizeOverflow),
            (&long_ext, SizeLineTooLong),
            (&long_zeros, SizeLineTooLong),
            (b"5;a\0\r\n", InvalidExtension),
            (b"5;a\x7f\r\n", InvalidExtension),
            (b"5\rX", BareCr),
            (b"5;a\r\r\n", BareCr),
            (b"5\r\nhelloX", MissingCrlf),
            (b"5\r\nhello\rX", MissingCrlf),
            (b"5\r\nhello\r\r\n", MissingCrlf),
            (b"5\r\nhello world\r\n", MissingCrlf),
            (b"3\r\nhello\r\n0\r\n\r\n", MissingCrlf),
            (b"0\r\nX: \x01\r\n\r\n", InvalidTrailer),
            (b"0\r\n\x00", InvalidTrailer),
            (b"0\r\nX: 1\rY", BareCr),
            (b"0\r\n\rX", BareCr),
            (&long_trailer, TrailersTooLarge),
            // SPEC §9.6: a bare LF anywhere in the framing
            (b"5\nhello\r\n0\r\n\r\n", BareLf),
            (b"5;x\nhello\r\n0\r\n\r\n", BareLf),
            (b"5\r\nhello\n0\r\n\r\n", BareLf),
            (b"0\r\nT: 1\n\r\n", BareLf),
            (b"0\r\n\n", BareLf),
        ];
        for &(input, err) in table {
            let name = String::from_utf8_lossy(&input[..input.len().min(40)]);
            assert_eq!(feed_every_way(input), Err(err), "{name:?}");
        }
        assert_eq!(
            feed(&[&fitting_zeros]),
            Ok((vec![], Some(fitting_zeros.len())))
        );
    }

    fn encode(chunks: &[Vec<u8>], ext: bool) -> Vec<u8> {
        let mut out = Vec::new();
        for c in chunks.iter().filter(|c| !c.is_empty()) {
            out.extend(format!("{:x}", c.len()).bytes());
            if ext {
                out.extend_from_slice(b";k=v");
            }
            out.extend_from_slice(b"\r\n");
            out.extend_from_slice(c);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"0\r\n\r\n");
        out
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(input in proptest::collection::vec(any::<u8>(), 0..200), k in 0usize..200) {
            let k = k.min(input.len());
            let whole = feed(&[&input]);
            prop_assert_eq!(feed(&[&input[..k], &input[k..]]), whole);
        }

        #[test]
        fn round_trips_encoded_chunks(
            chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 0..8),
            ext in any::<bool>(),
            k in 0usize..400,
        ) {
            let input = encode(&chunks, ext);
            let want = (chunks.concat(), Some(input.len()));
            let k = k.min(input.len());
            prop_assert_eq!(feed(&[&input[..k], &input[k..], b"GET"]), Ok(want));
        }
    }
}
