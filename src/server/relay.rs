//! A response streamed from a backend (a CGI script, an upstream) to the
//! client: the head, then body pieces framed for the client as they come,
//! held in one bounded buffer. The backend is read only while
//! [`Relay::has_room`], so memory stays bounded whatever the body's size.
//! A gzip relay ([`Relay::gzip`]) compresses each piece before framing it.

use std::io::{self, Write};

use crate::http::gzip;
use crate::http::response::{chunk_size_line, Length};

/// Past this many buffered bytes, stop reading the backend.
const HIGH_WATER: usize = 64 * 1024;

#[derive(Debug)]
pub struct Relay {
    buf: Vec<u8>,
    pos: usize,
    framing: Framing,
    ended: bool,
    /// Compresses the body before it is framed (always chunked then).
    encoder: Option<Box<gzip::Encoder>>,
    /// Compressed bytes of the current piece, reused.
    coded: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// This many body bytes may still be sent.
    Length(u64),
    Chunked,
    UntilClose,
    /// A HEAD request: the body is read and dropped.
    Discard,
    /// The body arrives already framed as chunked (relayed as is).
    PreChunked,
}

impl Relay {
    /// A relay that starts with the response `head`; `length` is how the
    /// body is framed for the client (`None`: no body is sent).
    pub fn new(head: Vec<u8>, length: Option<Length>) -> Relay {
        Relay {
            buf: head,
            pos: 0,
            framing: match length {
                Some(Length::Known(n)) => Framing::Length(n),
                Some(Length::Chunked) => Framing::Chunked,
                Some(Length::UntilClose) => Framing::UntilClose,
                None => Framing::Discard,
            },
            ended: false,
            encoder: None,
            coded: Vec::new(),
        }
    }

    /// This relay's body is compressed with gzip on the way. The head
    /// must say so (`Content-Encoding`) and frame the body as chunked, or
    /// carry none (HEAD): a compressed length is not known in advance.
    pub fn gzip(mut self) -> Relay {
        if self.framing != Framing::Discard {
            self.framing = Framing::Chunked;
            self.encoder = Some(Box::default());
        }
        self
    }

    /// A relay whose body pieces are already chunked, as read upstream.
    pub fn pre_chunked(head: Vec<u8>) -> Relay {
        Relay {
            framing: Framing::PreChunked,
            ..Relay::new(head, None)
        }
    }

    pub fn has_room(&self) -> bool {
        self.buf.len() - self.pos < HIGH_WATER
    }

    /// Appends body bytes, framed for the client. Bytes past a promised
    /// length are dropped.
    pub fn push(&mut self, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        if let Some(encoder) = &mut self.encoder {
            let mut coded = std::mem::take(&mut self.coded);
            encoder.write(data, &mut coded);
            self.push_framed(&coded);
            coded.clear();
            self.coded = coded;
            return;
        }
        self.push_framed(data);
    }

    fn push_framed(&mut self, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        self.compact();
        match &mut self.framing {
            Framing::Length(remaining) => {
                let n = data
                    .len()
                    .min(usize::try_from(*remaining).unwrap_or(usize::MAX));
                self.buf.extend_from_slice(&data[..n]);
                *remaining -= n as u64;
            }
            Framing::Chunked => {
                chunk_size_line(data.len(), &mut self.buf);
                self.buf.extend_from_slice(data);
                self.buf.extend_from_slice(b"\r\n");
            }
            Framing::UntilClose | Framing::PreChunked => self.buf.extend_from_slice(data),
            Framing::Discard => {}
        }
    }

    /// The backend's body is complete. Returns false when the promised
    /// length was not reached: the client can only learn that from a
    /// closed connection.
    pub fn end(&mut self) -> bool {
        if !self.ended {
            self.ended = true;
            if let Some(mut encoder) = self.encoder.take() {
                let mut rest = Vec::new();
                encoder.finish(&mut rest);
                self.push_framed(&rest);
            }
            if self.framing == Framing::Chunked {
                self.compact();
                self.buf.extend_from_slice(b"0\r\n\r\n");
            }
        }
        !matches!(self.framing, Framing::Length(n) if n > 0)
    }

    /// Whether the connection must close after this response: the body ran
    /// to the end of the connection, or fell short of its length.
    pub fn must_close(&self) -> bool {
        matches!(self.framing, Framing::UntilClose | Framing::Length(1..))
    }

    /// Everything buffered is written and the body is complete.
    pub fn is_done(&self) -> bool {
        self.ended && self.pos == self.buf.len()
    }

    pub fn has_pending(&self) -> bool {
        self.pos < self.buf.len()
    }

    /// Writes buffered bytes until done or `WouldBlock`. Returns how many
    /// bytes were written.
    pub fn write_to(&mut self, out: &mut impl Write) -> io::Result<usize> {
        let mut total = 0;
        while self.pos < self.buf.len() {
            match out.write(&self.buf[self.pos..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.pos += n;
                    total += n;
                }
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) if err.kind() == io::ErrorKind::WouldBlock && total > 0 => break,
                Err(err) => return Err(err),
            }
        }
        self.compact();
        Ok(total)
    }

    /// The buffer, empty, for the next response to reuse (the relay is
    /// done with it).
    pub fn take_buf(&mut self) -> Vec<u8> {
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        self.pos = 0;
        buf
    }

    /// Drops written bytes once they are most of the buffer.
    fn compact(&mut self) {
        if self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        } else if self.pos > HIGH_WATER / 2 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_relay_frames_each_piece_and_ends() {
        let mut r = Relay::new(b"HEAD\r\n\r\n".to_vec(), Some(Length::Chunked));
        r.push(b"hello");
        r.push(b"");
        assert!(r.end());
        let mut out = Vec::new();
        r.write_to(&mut out).unwrap();
        assert_eq!(out, b"HEAD\r\n\r\n5\r\nhello\r\n0\r\n\r\n");
        assert!(r.is_done());
        assert!(!r.must_close());
    }

    #[test]
    fn length_relay_truncates_and_reports_short_bodies() {
        let mut r = Relay::new(Vec::new(), Some(Length::Known(3)));
        r.push(b"abcdef");
        assert!(r.end());
        let mut out = Vec::new();
        r.write_to(&mut out).unwrap();
        assert_eq!(out, b"abc");
        let mut short = Relay::new(Vec::new(), Some(Length::Known(3)));
        short.push(b"a");
        assert!(!short.end());
        assert!(short.must_close());
    }

    #[test]
    fn gzip_relay_compresses_into_chunks() {
        use std::io::Read;
        let mut r = Relay::new(b"H\r\n\r\n".to_vec(), Some(Length::Known(99))).gzip();
        let text: Vec<u8> = (0..20_000)
            .flat_map(|i| format!("{i} ").into_bytes())
            .collect();
        let mut out = Vec::new();
        for piece in text.chunks(3000) {
            r.push(piece);
            r.write_to(&mut out).unwrap();
        }
        assert!(r.end());
        r.write_to(&mut out).unwrap();
        assert!(r.is_done() && !r.must_close());
        let body = out.strip_prefix(b"H\r\n\r\n".as_slice()).unwrap();
        let mut decoder = crate::http::chunked::ChunkedDecoder::new();
        let mut gz = Vec::new();
        let mut pos = 0;
        loop {
            let (used, chunk) = decoder.step(&body[pos..]).unwrap();
            match chunk {
                crate::http::chunked::Chunk::Data(range) => {
                    gz.extend_from_slice(&body[pos..][range])
                }
                crate::http::chunked::Chunk::Done => break,
                crate::http::chunked::Chunk::NeedMore => panic!("the body is whole"),
            }
            pos += used;
        }
        let mut plain = Vec::new();
        flate2::read::GzDecoder::new(gz.as_slice())
            .read_to_end(&mut plain)
            .unwrap();
        assert_eq!(plain, text);
        // A HEAD relay stays without a body.
        let mut head = Relay::new(b"H".to_vec(), None).gzip();
        head.push(b"body");
        head.end();
        let mut out = Vec::new();
        head.write_to(&mut out).unwrap();
        assert_eq!(out, b"H");
    }

    #[test]
    fn discard_keeps_only_the_head() {
        let mut r = Relay::new(b"H".to_vec(), None);
        r.push(b"body");
        r.end();
        let mut out = Vec::new();
        r.write_to(&mut out).unwrap();
        assert_eq!(out, b"H");
    }
}
