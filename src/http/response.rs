//! Responses: what a handler returns ([`Reply`]) and how its head is written.
//!
//! The head is written into a reused buffer: status line, `Server`, `Date`,
//! the handler's headers, the location's (`handlers::output`), the framing
//! header, `Connection`. The body is a [`Body`]: nothing, bytes (owned, or
//! shared with the open-file cache), or a region of an open file (sent with
//! `sendfile(2)` by the server).

use std::borrow::Cow;
use std::cell::OnceCell;
use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::rc::Rc;
use std::sync::Arc;

use crate::http::status::reason;

pub const SERVER: &str = concat!("webserv/", env!("CARGO_PKG_VERSION"));
/// `Server` with `server_tokens off`: the name without the version.
pub const SERVER_NAME: &str = "webserv";

/// A response ready to be written.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    /// Header lines rendered ahead of time (a cached file's), written
    /// before `headers`.
    pub prepared: Option<Arc<[u8]>>,
    /// Headers besides `Server`, `Date`, framing and `Connection`. A
    /// value known when the server is built is borrowed, not copied.
    pub headers: Vec<(&'static str, Cow<'static, str>)>,
    pub body: Body,
    /// An error reply whose `error_page` URI is to be served in its stead
    /// (an internal redirect through location choice, SPEC §9.4); the
    /// reply itself is the built-in page, sent when no redirect is made.
    pub error_page: Option<String>,
}

#[derive(Debug)]
pub enum Body {
    Empty,
    Bytes(Vec<u8>),
    /// `data[start..end]`: bytes the open-file cache holds.
    Shared {
        data: Arc<[u8]>,
        start: usize,
        end: usize,
        /// Where the whole of `data` gzipped is kept; for full bodies.
        gzipped: Option<GzipCopy>,
    },
    /// `len` bytes of `file` from `offset` (the descriptor may be shared
    /// with the open-file cache: it is read at offsets, never seeked).
    File {
        file: Arc<File>,
        offset: u64,
        len: u64,
        /// Where the whole file gzipped may be kept; for full bodies.
        gzipped: Option<GzipCopy>,
    },
}

/// The place of a cached file's compressed copy, shared by its cache entry
/// and the 200 responses made from it. The copy is made by the first
/// response that wants it and kept through the open-file cache
/// (`FileCache::gzipped`), which counts it against `memory`; the cell is
/// the entry's own, so a copy never outlives the file version it was made
/// from (a changed file is a new entry, with a new cell).
#[derive(Debug, Clone)]
pub struct GzipCopy {
    /// The file's path: the key of its cache slot.
    pub path: Rc<Path>,
    pub cell: Rc<OnceCell<Compressed>>,
}

/// What became of a cached file's compressed copy.
#[derive(Debug)]
pub enum Compressed {
    /// Kept, and counted in the cache's `memory`.
    Kept(Arc<[u8]>),
    /// Not kept (the copy is larger than `small` or than `memory` allows,
    /// or the file larger than the cache compresses in one go): compressed
    /// per response, without trying to keep it again.
    NotKept,
}

/// How the body's end is signalled to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Length {
    Known(u64),
    /// `Transfer-Encoding: chunked` (HTTP/1.1 clients only).
    Chunked,
    /// The body ends when the connection closes (HTTP/1.0 clients).
    UntilClose,
}

impl Body {
    pub fn len(&self) -> u64 {
        match self {
            Body::Empty => 0,
            Body::Bytes(bytes) => bytes.len() as u64,
            Body::Shared { start, end, .. } => end.saturating_sub(*start) as u64,
            Body::File { len, .. } => *len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Reply {
    pub fn new(status: u16) -> Reply {
        Reply {
            status,
            prepared: None,
            headers: Vec::new(),
            body: Body::Empty,
            error_page: None,
        }
    }

    pub fn with_header(mut self, name: &'static str, value: impl Into<Cow<'static, str>>) -> Reply {
        self.headers.push((name, value.into()));
        self
    }

    pub fn with_body(mut self, content_type: &str, body: Vec<u8>) -> Reply {
        self.headers
            .push(("Content-Type", content_type.to_owned().into()));
        self.body = Body::Bytes(body);
        self
    }

    /// A header's value, from `headers` or the `prepared` lines.
    pub fn header(&self, name: &str) -> Option<&str> {
        let own = self
            .headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_ref());
        own.or_else(|| {
            let prepared = std::str::from_utf8(self.prepared.as_deref()?).ok()?;
            prepared.split("\r\n").find_map(|line| {
                let (n, v) = line.split_once(':')?;
                n.eq_ignore_ascii_case(name).then(|| v.trim())
            })
        })
    }

    /// RFC 9110 §6.4.1: 1xx, 204 and 304 never carry a body or a length.
    pub fn has_no_body(&self) -> bool {
        status_has_no_body(self.status)
    }
}

pub fn status_has_no_body(status: u16) -> bool {
    status < 200 || status == 204 || status == 304
}

/// The status line, `Server` (with the version when `tokens`, as
/// `server_tokens on`) and `Date`: the start of every head.
pub fn write_head_start(out: &mut Vec<u8>, status: u16, date: &str, tokens: bool) {
    write_status_line(out, status);
    out.extend_from_slice(b"Server: ");
    out.extend_from_slice(if tokens { SERVER } else { SERVER_NAME }.as_bytes());
    out.extend_from_slice(b"\r\nDate: ");
    out.extend_from_slice(date.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// The framing header, `Connection` and the blank line: the end of a head.
pub fn write_head_end(out: &mut Vec<u8>, length: Option<Length>, keep_alive: bool) {
    match length {
        Some(Length::Known(n)) => {
            out.extend_from_slice(b"Content-Length: ");
            write_decimal(out, n);
            out.extend_from_slice(b"\r\n");
        }
        Some(Length::Chunked) => out.extend_from_slice(b"Transfer-Encoding: chunked\r\n"),
        Some(Length::UntilClose) | None => {}
    }
    out.extend_from_slice(if keep_alive {
        b"Connection: keep-alive\r\n\r\n"
    } else {
        b"Connection: close\r\n\r\n"
    });
}

pub fn write_status_line(out: &mut Vec<u8>, status: u16) {
    // Without the formatting machinery: it costs more than the rest of
    // the head (a 404 is as common as a 200 on some sites).
    out.extend_from_slice(b"HTTP/1.1 ");
    match status {
        // Three digits, as every status is: no division loop.
        100..=999 => out.extend_from_slice(&[
            b'0' + (status / 100) as u8,
            b'0' + (status / 10 % 10) as u8,
            b'0' + (status % 10) as u8,
        ]),
        _ => write_decimal(out, u64::from(status)),
    }
    out.push(b' ');
    out.extend_from_slice(reason(status).as_bytes());
    out.extend_from_slice(b"\r\n");
}

pub fn write_header(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// `n` in decimal, without the formatting machinery (every response has a
/// length).
fn write_decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

/// The size line of one chunk of a chunked body: `HEX\r\n`.
pub fn chunk_size_line(len: usize, out: &mut Vec<u8>) {
    let _ = write!(out, "{len:X}\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_head(
        out: &mut Vec<u8>,
        status: u16,
        headers: &[(&str, &str)],
        length: Option<Length>,
        keep_alive: bool,
        tokens: bool,
    ) {
        write_head_start(out, status, "DATE", tokens);
        for (name, value) in headers {
            write_header(out, name, value.as_bytes());
        }
        write_head_end(out, length, keep_alive);
    }

    #[test]
    fn head_has_server_date_length_and_connection() {
        let mut out = Vec::new();
        let headers = [("Content-Type", "text/plain")];
        write_head(&mut out, 200, &headers, Some(Length::Known(5)), true, true);
        let expected = format!(
            "HTTP/1.1 200 OK\r\nServer: {SERVER}\r\nDate: DATE\r\nContent-Type: text/plain\r\n\
             Content-Length: 5\r\nConnection: keep-alive\r\n\r\n"
        );
        assert_eq!(String::from_utf8(out).unwrap(), expected);
    }

    #[test]
    fn server_tokens_off_drops_the_version() {
        let mut out = Vec::new();
        write_head(&mut out, 200, &[], None, true, false);
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("\r\nServer: webserv\r\n"), "{text}");
    }

    #[test]
    fn chunked_and_close() {
        let mut out = Vec::new();
        write_head(&mut out, 404, &[], Some(Length::Chunked), false, true);
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("HTTP/1.1 404 Not Found\r\n"));
        assert!(text.ends_with("Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"));
    }

    #[test]
    fn lengths_in_decimal() {
        for n in [0u64, 7, 10, 1024, u64::MAX] {
            let mut out = Vec::new();
            write_decimal(&mut out, n);
            assert_eq!(out, n.to_string().into_bytes());
        }
    }

    #[test]
    fn chunk_size_line_is_hex() {
        let mut out = Vec::new();
        chunk_size_line(255, &mut out);
        assert_eq!(out, b"FF\r\n");
    }
}
