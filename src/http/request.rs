//! Request heads: parse the request line and headers (httparse), apply the
//! protocol rules of SPEC §5 and decide how the body is framed.
//!
//! Steps, in order:
//! 1. find a complete head within `client_max_header_size` (else 414/431);
//! 2. parse it with httparse into a stack array of header slots;
//! 3. copy the head once into the [`Request`], keeping header *offsets*;
//! 4. validate: version, `Host`, target, framing (`Content-Length`,
//!    `Transfer-Encoding`), `Connection`, `Expect`.

use std::borrow::Cow;
use std::mem::MaybeUninit;
use std::net::SocketAddr;
use std::ops::Range;

use crate::http::parse_content_length;
use crate::http::path;
use crate::http::trim_ows as trim;
use crate::http::Method;

/// More headers than this is 431, as for a head that is too large.
const MAX_HEADERS: usize = 100;

/// How the body of a request is delimited (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    None,
    Length(u64),
    Chunked,
}

/// Why a head was refused. Each maps to one status; all of them close the
/// connection, since the rest of the input can no longer be trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadError {
    /// Malformed request line or header, obs-fold, space before `:`.
    Malformed,
    /// Bad `Host`: missing in HTTP/1.1, repeated, or not a host name.
    BadHost,
    /// A target that is neither origin-form nor absolute-form, a path above
    /// `/`, a NUL byte or a bad percent escape.
    BadTarget,
    /// Both `Content-Length` and `Transfer-Encoding`, a bad or
    /// conflicting `Content-Length`, or `chunked` not the one final coding.
    BadFraming,
    /// A registered transfer coding we do not decode (`gzip`).
    UnsupportedCoding,
    /// The request line alone does not fit in the head limit.
    UriTooLong,
    /// The head does not fit in the head limit, or has too many headers.
    HeadTooLarge,
    /// A well-formed `HTTP/x.y` other than 1.0 and 1.1.
    VersionNotSupported,
}

impl HeadError {
    pub fn status(self) -> u16 {
        match self {
            HeadError::Malformed
            | HeadError::BadHost
            | HeadError::BadTarget
            | HeadError::BadFraming => 400,
            HeadError::UnsupportedCoding => 501,
            HeadError::UriTooLong => 414,
            HeadError::HeadTooLarge => 431,
            HeadError::VersionNotSupported => 505,
        }
    }
}

/// How a request reached the server: what the head cannot say, set by the
/// connection after parsing.
#[derive(Debug, Clone, Copy, Default)]
pub struct Via {
    /// Over TLS.
    pub https: bool,
    pub peer: Option<SocketAddr>,
    /// The local port the connection arrived on.
    pub server_port: u16,
}

/// A parsed request head. It owns a copy of the head bytes, so the
/// connection's input buffer can move on to the body and the next request.
#[derive(Debug)]
pub struct Request {
    head: Vec<u8>,
    method_token: Range<usize>,
    /// `None` for a valid token the server does not implement (501).
    pub method: Option<Method>,
    target: Range<usize>,
    query: Option<Range<usize>>,
    /// The percent-decoded, normalised path used for routing.
    pub path: String,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor_version: u8,
    headers: Vec<(Range<usize>, Range<usize>)>,
    /// Headers whose name holds `_`, dropped (SPEC §9.6): kept only so the
    /// connection can log them.
    dropped: Vec<Range<usize>>,
    /// Lower-cased host without port, from the target or `Host`.
    pub host: Option<String>,
    pub framing: Framing,
    pub expect_continue: bool,
    /// Whether the client allows the connection to persist.
    pub keep_alive: bool,
    pub via: Via,
}

/// Where the parts of a complete head lie: what [`Request::locate`] finds
/// in the input, before the head's bytes are taken from it.
#[derive(Debug)]
pub struct Layout {
    /// The head is `buf[..len]`.
    pub len: usize,
    method_token: Range<usize>,
    method: Option<Method>,
    target: Range<usize>,
    query: Option<Range<usize>>,
    path: String,
    /// The host of an absolute-form target.
    target_host: Option<String>,
    minor_version: u8,
    headers: Vec<(Range<usize>, Range<usize>)>,
    dropped: Vec<Range<usize>>,
}

impl Request {
    /// Parses the head at the start of `buf`. `Ok(None)`: incomplete, read
    /// more. `Ok(Some((request, len)))`: the head was `buf[..len]`.
    pub fn parse(buf: &[u8], max_head: usize) -> Result<Option<(Request, usize)>, HeadError> {
        let Some(layout) = Request::locate(buf, max_head)? else {
            return Ok(None);
        };
        let len = layout.len;
        let request = Request::from_head(buf[..len].to_vec(), layout)?;
        Ok(Some((request, len)))
    }

    /// The first step of [`Request::parse`]: finds a complete head at the
    /// start of `buf` and where its parts are. The caller then hands its
    /// bytes to [`Request::from_head`], without a copy when it can.
    pub fn locate(buf: &[u8], max_head: usize) -> Result<Option<Layout>, HeadError> {
        // Slots httparse fills itself: zeroing a hundred of them for each
        // request cost as much as the parse.
        let mut slots = [MaybeUninit::<httparse::Header>::uninit(); MAX_HEADERS];
        let mut raw = httparse::Request::new(&mut []);
        let len = match raw.parse_with_uninit_headers(buf, &mut slots) {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) => return incomplete(buf, max_head),
            Err(httparse::Error::TooManyHeaders) => return Err(HeadError::HeadTooLarge),
            Err(httparse::Error::Version) => return Err(version_error(buf)),
            Err(_) => return Err(HeadError::Malformed),
        };
        if len > max_head {
            return Err(HeadError::HeadTooLarge);
        }
        let offset = |s: &[u8]| {
            let start = s.as_ptr() as usize - buf.as_ptr() as usize;
            start..start + s.len()
        };
        let method_str = raw.method.ok_or(HeadError::Malformed)?;
        let target_str = raw.path.ok_or(HeadError::Malformed)?;
        let minor_version = raw.version.ok_or(HeadError::Malformed)?;
        let target = resolve_target(target_str)?;
        // A name with `_` could stand for one with `-` behind us (CGI and
        // WSGI servers read them alike): `Transfer_Encoding` would frame a
        // body differently upstream, `X_Forwarded_For` would spoof a CGI
        // variable. Dropped here, such a header reaches nothing (as nginx's
        // `underscores_in_headers off`).
        let mut headers = Vec::with_capacity(raw.headers.len());
        let mut dropped = Vec::new();
        for header in raw.headers.iter() {
            let name = offset(header.name.as_bytes());
            if header.name.as_bytes().contains(&b'_') {
                dropped.push(name);
            } else {
                headers.push((name, offset(header.value)));
            }
        }
        Ok(Some(Layout {
            len,
            method_token: offset(method_str.as_bytes()),
            method: Method::from_token(method_str),
            target: offset(target_str.as_bytes()),
            query: target.query.map(offset),
            path: target.path,
            target_host: target.host,
            minor_version,
            headers,
            dropped,
        }))
    }

    /// The second step of [`Request::parse`]: `head` holds the head that
    /// `layout` describes (the bytes it was found in, from the start).
    pub fn from_head(head: Vec<u8>, layout: Layout) -> Result<Request, HeadError> {
        let mut request = Request {
            head,
            method_token: layout.method_token,
            method: layout.method,
            target: layout.target,
            query: layout.query,
            path: layout.path,
            minor_version: layout.minor_version,
            headers: layout.headers,
            dropped: layout.dropped,
            host: layout.target_host,
            framing: Framing::None,
            expect_continue: false,
            keep_alive: layout.minor_version == 1,
            via: Via::default(),
        };
        request.resolve_host()?;
        request.framing = request.framing_rules()?;
        request.resolve_connection();
        Ok(request)
    }

    /// The error for a head of `len` bytes under a limit of `max_head`
    /// (the limit of the server `Host` chose, known only after parsing).
    pub fn over_limit(&self, len: usize, max_head: usize) -> Option<HeadError> {
        if len <= max_head {
            return None;
        }
        let line = memchr::memchr(b'\n', &self.head).unwrap_or(self.head.len());
        Some(if line >= max_head {
            HeadError::UriTooLong
        } else {
            HeadError::HeadTooLarge
        })
    }

    /// `https` or `http`, as nginx's `$scheme`.
    pub fn scheme(&self) -> &'static str {
        if self.via.https {
            "https"
        } else {
            "http"
        }
    }

    pub fn method_str(&self) -> &str {
        self.str_at(&self.method_token)
    }

    /// The request target as sent (for logs and `REQUEST_URI`).
    pub fn target(&self) -> &str {
        self.str_at(&self.target)
    }

    /// The target as nginx's `$request_uri` and CGI's `REQUEST_URI` give
    /// it: path and query as sent, without the scheme and authority of an
    /// absolute-form target.
    pub fn request_uri(&self) -> Cow<'_, str> {
        let rest = path::origin_form(self.target().as_bytes());
        let rest = std::str::from_utf8(rest).unwrap_or("");
        match rest.as_bytes().first() {
            Some(b'/') => Cow::Borrowed(rest),
            // `http://host` or `http://host?q`: the path is `/`.
            _ => Cow::Owned(format!("/{rest}")),
        }
    }

    /// Names of the headers that were dropped for holding `_`.
    pub fn dropped_headers(&self) -> impl Iterator<Item = &str> + '_ {
        self.dropped.iter().map(|r| self.str_at(r))
    }

    /// The query string without `?`, as sent.
    pub fn query(&self) -> Option<&str> {
        self.query.as_ref().map(|r| self.str_at(r))
    }

    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(n, _)| self.head[n.clone()].eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| &self.head[v.clone()])
    }

    /// The first header named `name`, if it is valid UTF-8.
    pub fn header_str(&self, name: &str) -> Option<&str> {
        self.header(name).and_then(|v| std::str::from_utf8(v).ok())
    }

    /// Every header in order, names as sent.
    pub fn headers(&self) -> impl Iterator<Item = (&str, &[u8])> + '_ {
        self.headers
            .iter()
            .map(|(n, v)| (self.str_at(n), &self.head[v.clone()]))
    }

    pub fn is_head(&self) -> bool {
        self.method == Some(Method::Head)
    }

    /// The request line as sent, for the access log.
    pub fn request_line(&self) -> &str {
        std::str::from_utf8(self.request_line_bytes()).unwrap_or("-")
    }

    /// The request line's bytes, checked as UTF-8 only when shown.
    pub fn request_line_bytes(&self) -> &[u8] {
        let end = self.head.iter().position(|&b| b == b'\r' || b == b'\n');
        &self.head[..end.unwrap_or(0)]
    }

    fn str_at(&self, r: &Range<usize>) -> &str {
        // httparse only hands out tokens and targets made of visible ASCII
        // and header names made of token characters.
        std::str::from_utf8(&self.head[r.clone()]).unwrap_or("")
    }

    /// The values of the headers named `name`, in order. Names are
    /// compared as bytes here and in [`Request::header`]: lookups run
    /// several times per request, and checking every name as UTF-8 each
    /// time cost more than the comparisons.
    fn values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| self.head[n.clone()].eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| &self.head[v.clone()])
    }

    /// RFC 9112 §3.2: HTTP/1.1 needs exactly one `Host`.
    fn resolve_host(&mut self) -> Result<(), HeadError> {
        let host = {
            let mut hosts = self.values("host");
            let first = hosts.next();
            if hosts.next().is_some() {
                return Err(HeadError::BadHost);
            }
            match first {
                Some(value) => Some(clean_host(value)?),
                None if self.minor_version == 1 => return Err(HeadError::BadHost),
                None => None,
            }
        };
        if self.host.is_none() {
            self.host = host;
        }
        Ok(())
    }

    /// RFC 9112 §6.3, in one place.
    fn framing_rules(&self) -> Result<Framing, HeadError> {
        let mut codings = self.values("transfer-encoding").peekable();
        let mut lengths = self.values("content-length").peekable();
        if codings.peek().is_some() {
            // RFC 9112 §6.1: a 1.0 message with Transfer-Encoding has faulty
            // framing (an HTTP/1.0 intermediary may not have understood it).
            if lengths.peek().is_some() || self.minor_version == 0 {
                return Err(HeadError::BadFraming);
            }
            return transfer_codings(codings);
        }
        let mut length = None;
        for value in lengths.flat_map(|v| v.split(|&b| b == b',')) {
            let n = parse_content_length(trim(value)).ok_or(HeadError::BadFraming)?;
            if length.is_some_and(|l| l != n) {
                return Err(HeadError::BadFraming);
            }
            length = Some(n);
        }
        Ok(match length {
            Some(n) => Framing::Length(n),
            None => Framing::None,
        })
    }

    fn resolve_connection(&mut self) {
        let mut close = false;
        let mut keep_alive = false;
        for token in self
            .values("connection")
            .flat_map(|v| v.split(|&b| b == b','))
        {
            let token = trim(token);
            close |= token.eq_ignore_ascii_case(b"close");
            keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
        }
        self.keep_alive = !close && (self.minor_version == 1 || keep_alive);
        self.expect_continue = self.minor_version == 1
            && self
                .values("expect")
                .any(|v| trim(v).eq_ignore_ascii_case(b"100-continue"));
    }
}

/// What a request target gives.
struct Target<'a> {
    path: String,
    query: Option<&'a [u8]>,
    host: Option<String>,
}

/// Origin-form `/path?query`, or absolute-form `http://host/path` (RFC
/// 9112 §3.2.2: then the target's host wins over `Host`); one with
/// `userinfo@` is refused (SPEC §9.3). The target is text as httparse
/// checked it, so a path that needs no decoding is not checked again.
fn resolve_target(target: &str) -> Result<Target<'_>, HeadError> {
    let raw = target.as_bytes();
    let (path_bytes, query) = path::split_target(raw);
    let authority = path::absolute_form_authority(raw);
    if authority.is_some_and(|a| a.contains(&b'@')) {
        return Err(HeadError::BadTarget);
    }
    let host = authority.map(clean_host).transpose()?;
    // The path is a part of the target, cut at ASCII bytes, or the `/` of
    // an absolute-form target without one.
    let text = raw
        .as_ptr_range()
        .contains(&path_bytes.as_ptr())
        .then(|| path_bytes.as_ptr() as usize - raw.as_ptr() as usize)
        .and_then(|start| target.get(start..start + path_bytes.len()));
    let path = match text {
        Some(text) => path::normalize_text(text),
        None => path::normalize(path_bytes),
    }
    .map_err(|_| HeadError::BadTarget)?;
    Ok(Target { path, query, host })
}

/// Transfer codings of a request (RFC 9112 §6.1, §6.3). Only `chunked`,
/// once, is decoded. When `chunked` is not the one final coding the body
/// length cannot be known: 400 (RFC 9112 §6.3 rule 4), which also covers
/// every obfuscation (`xchunked`, `chunked, identity`, an empty element, a
/// parameter, a control byte): a proxy behind us could read those as
/// `chunked` (SPEC §9.6). A list of registered codings we do not decode
/// (`gzip`, or `gzip, chunked`) is 501, as SPEC §5 says.
fn transfer_codings<'a>(values: impl Iterator<Item = &'a [u8]>) -> Result<Framing, HeadError> {
    const REGISTERED: &[&[u8]] = &[b"gzip", b"x-gzip", b"deflate", b"compress", b"x-compress"];
    let codings: Vec<&[u8]> = values
        .flat_map(|v| v.split(|&b| b == b','))
        .map(trim)
        .collect();
    let is_chunked = |c: &&[u8]| c.eq_ignore_ascii_case(b"chunked");
    let (last, rest) = codings.split_last().ok_or(HeadError::BadFraming)?;
    if rest.iter().any(is_chunked) {
        return Err(HeadError::BadFraming);
    }
    if is_chunked(last) && rest.is_empty() {
        return Ok(Framing::Chunked);
    }
    let others = if is_chunked(last) { rest } else { &codings[..] };
    if others
        .iter()
        .all(|c| REGISTERED.iter().any(|r| c.eq_ignore_ascii_case(r)))
    {
        Err(HeadError::UnsupportedCoding)
    } else {
        Err(HeadError::BadFraming)
    }
}

/// An incomplete head: wait for more, unless the limit is already reached.
fn incomplete<T>(buf: &[u8], max_head: usize) -> Result<Option<T>, HeadError> {
    if buf.len() < max_head {
        return Ok(None);
    }
    if memchr::memchr(b'\n', &buf[..max_head]).is_none() {
        Err(HeadError::UriTooLong)
    } else {
        Err(HeadError::HeadTooLarge)
    }
}

/// httparse refuses any version but 1.0 and 1.1; a well-formed `HTTP/x.y`
/// is 505, anything else a malformed request line.
fn version_error(buf: &[u8]) -> HeadError {
    let line_end = memchr::memchr(b'\n', buf).unwrap_or(buf.len());
    let line = buf[..line_end]
        .strip_suffix(b"\r")
        .unwrap_or(&buf[..line_end]);
    let version = line.rsplit(|&b| b == b' ').next().unwrap_or(b"");
    match version {
        [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]
            if major.is_ascii_digit() && minor.is_ascii_digit() && line.contains(&b' ') =>
        {
            HeadError::VersionNotSupported
        }
        _ => HeadError::Malformed,
    }
}

/// A `Host` value without its port, lower-cased; refuses what cannot be a
/// host name (as nginx does for `/`, `\`, NUL and whitespace).
fn clean_host(value: &[u8]) -> Result<String, HeadError> {
    let host = match value {
        [b'[', rest @ ..] => {
            let end = rest
                .iter()
                .position(|&b| b == b']')
                .ok_or(HeadError::BadHost)?;
            &value[..end + 2]
        }
        _ => value.split(|&b| b == b':').next().unwrap_or(value),
    };
    // NUL, whitespace and the other controls are all at or below ' '.
    let bad = |&b: &u8| b <= b' ' || matches!(b, b'/' | b'\\' | 0x7f);
    if host.iter().any(bad) || host.starts_with(b".") {
        return Err(HeadError::BadHost);
    }
    let host = std::str::from_utf8(host).map_err(|_| HeadError::BadHost)?;
    Ok(host.trim_end_matches('.').to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: usize = 8192;

    fn parse(input: &str) -> Result<Request, HeadError> {
        match Request::parse(input.as_bytes(), MAX)? {
            Some((request, len)) => {
                assert_eq!(len, input.len());
                Ok(request)
            }
            None => panic!("incomplete: {input:?}"),
        }
    }

    fn status(input: &str) -> u16 {
        match parse(input) {
            Ok(_) => 200,
            Err(e) => e.status(),
        }
    }

    #[test]
    fn protocol_rules_table() {
        let cases: &[(&str, u16)] = &[
            ("GET / HTTP/1.1\r\nHost: a\r\n\r\n", 200),
            ("GET / HTTP/1.0\r\n\r\n", 200),
            ("GET / HTTP/1.1\n\n", 400),
            ("GET / HTTP/1.1\r\n\r\n", 400),
            ("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
            ("GET / HTTP/1.1\r\nHost: a\r\nbad header\r\n\r\n", 400),
            ("GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400),
            ("GET / HTTP/1.1\r\nHost: a\r\nX: 1\r\n  folded\r\n\r\n", 400),
            ("GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505),
            ("GET / HTTP/1.2\r\nHost: a\r\n\r\n", 505),
            ("GET / HTTP/x\r\nHost: a\r\n\r\n", 400),
            ("GET / FOO/1.1\r\nHost: a\r\n\r\n", 400),
            ("GET /../x HTTP/1.1\r\nHost: a\r\n\r\n", 400),
            ("GET /a%00b HTTP/1.1\r\nHost: a\r\n\r\n", 400),
            ("GET nopath HTTP/1.1\r\nHost: a\r\n\r\n", 400),
            ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
            ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n", 400),
            ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n", 200),
            ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", 400),
            ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1x\r\n\r\n", 400),
            ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999\r\n\r\n", 400),
            ("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", 501),
            ("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501),
            // RFC 9112 §6.3: `chunked` not the one final coding is 400.
            ("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n", 400),
            ("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n", 400),
            ("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
            ("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", 400),
            ("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked,\r\n\r\n", 400),
            ("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\n", 200),
            ("BREW / HTTP/1.1\r\nHost: a\r\n\r\n", 200),
            // RFC 9112 §6.1: Transfer-Encoding in HTTP/1.0 is faulty framing.
            ("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
            ("POST / HTTP/1.0\r\nHost: a\r\nContent-Length: 3\r\n\r\n", 200),
        ];
        for (input, expected) in cases {
            assert_eq!(status(input), *expected, "{input:?}");
        }
    }

    #[test]
    fn fields_are_resolved() {
        let r = parse("GET /a/./b/../c%20d?x=1&y HTTP/1.1\r\nHost: Example.COM:8080\r\nConnection: close\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n").unwrap();
        assert_eq!(r.method, Some(Method::Get));
        assert_eq!(r.path, "/a/c d");
        assert_eq!(r.query(), Some("x=1&y"));
        assert_eq!(r.target(), "/a/./b/../c%20d?x=1&y");
        assert_eq!(r.host.as_deref(), Some("example.com"));
        assert_eq!(r.framing, Framing::Length(5));
        assert!(r.expect_continue);
        assert!(!r.keep_alive);
        assert_eq!(r.header_str("HOST"), Some("Example.COM:8080"));
        assert_eq!(r.request_line(), "GET /a/./b/../c%20d?x=1&y HTTP/1.1");
    }

    #[test]
    fn unknown_and_lowercase_methods_have_no_method() {
        for input in [
            "BREW / HTTP/1.1\r\nHost: a\r\n\r\n",
            "get / HTTP/1.1\r\nHost: a\r\n\r\n",
        ] {
            let r = parse(input).unwrap();
            assert_eq!(r.method, None);
            assert_eq!(r.method_str(), input[..4].trim_end());
        }
    }

    #[test]
    fn keep_alive_rules() {
        let cases: &[(&str, bool)] = &[
            ("GET / HTTP/1.1\r\nHost: a\r\n\r\n", true),
            (
                "GET / HTTP/1.1\r\nHost: a\r\nConnection: Close\r\n\r\n",
                false,
            ),
            ("GET / HTTP/1.0\r\n\r\n", false),
            ("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", true),
        ];
        for (input, expected) in cases {
            assert_eq!(parse(input).unwrap().keep_alive, *expected, "{input:?}");
        }
    }

    #[test]
    fn headers_with_underscores_are_dropped() {
        let r = parse("POST / HTTP/1.1\r\nHost: a\r\nTransfer_Encoding: chunked\r\nContent_Length: 9\r\nContent-Length: 3\r\nX_Forwarded_For: 6.6.6.6\r\nX-Forwarded-For: 1.1.1.1\r\n\r\n").unwrap();
        assert_eq!(r.framing, Framing::Length(3));
        assert_eq!(r.header_str("x-forwarded-for"), Some("1.1.1.1"));
        assert!(r.headers().all(|(name, _)| !name.contains('_')));
        assert_eq!(
            r.dropped_headers().collect::<Vec<_>>(),
            ["Transfer_Encoding", "Content_Length", "X_Forwarded_For"]
        );
    }

    #[test]
    fn request_uri_is_path_and_query_in_every_form() {
        let cases = [
            ("/a/b?q=1", "/a/b?q=1"),
            ("http://h:81/a/b?q=1", "/a/b?q=1"),
            ("HTTP://h", "/"),
            ("http://h?q", "/?q"),
        ];
        for (target, expected) in cases {
            let r = parse(&format!("GET {target} HTTP/1.1\r\nHost: a\r\n\r\n")).unwrap();
            assert_eq!(r.request_uri(), expected, "{target}");
        }
    }

    #[test]
    fn absolute_form_target_with_userinfo_is_refused() {
        for target in ["http://user@h/", "http://u:p@h:81/x", "HTTPS://@h/"] {
            let head = format!("GET {target} HTTP/1.1\r\nHost: h\r\n\r\n");
            assert_eq!(
                Request::parse(head.as_bytes(), 8192).unwrap_err(),
                HeadError::BadTarget,
                "{target}"
            );
        }
    }

    #[test]
    fn absolute_form_target_gives_host() {
        let r = parse("GET http://Other.example:81/x?q HTTP/1.1\r\nHost: a\r\n\r\n").unwrap();
        assert_eq!(r.host.as_deref(), Some("other.example"));
        assert_eq!(r.path, "/x");
        assert_eq!(r.query(), Some("q"));
    }

    #[test]
    fn limits_give_414_and_431() {
        let long_line = format!("GET /{} HTTP/1.1\r\n", "a".repeat(100));
        assert_eq!(
            Request::parse(long_line.as_bytes(), 50).unwrap_err(),
            HeadError::UriTooLong
        );
        let big_head = format!("GET / HTTP/1.1\r\nX: {}\r\n", "a".repeat(100));
        assert_eq!(
            Request::parse(big_head.as_bytes(), 50).unwrap_err(),
            HeadError::HeadTooLarge
        );
        let complete = format!(
            "GET / HTTP/1.1\r\nHost: a\r\nX: {}\r\n\r\n",
            "a".repeat(100)
        );
        assert_eq!(
            Request::parse(complete.as_bytes(), 50).unwrap_err(),
            HeadError::HeadTooLarge
        );
        let many: String = (0..=MAX_HEADERS).map(|i| format!("X{i}: y\r\n")).collect();
        let input = format!("GET / HTTP/1.1\r\nHost: a\r\n{many}\r\n");
        assert_eq!(
            Request::parse(input.as_bytes(), MAX).unwrap_err(),
            HeadError::HeadTooLarge
        );
    }

    #[test]
    fn every_split_is_partial_until_complete() {
        let input = b"POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc";
        let head_len = input.len() - 3;
        for cut in 0..head_len {
            assert!(
                Request::parse(&input[..cut], MAX).unwrap().is_none(),
                "cut {cut}"
            );
        }
        let (_, len) = Request::parse(input, MAX).unwrap().unwrap();
        assert_eq!(len, head_len);
    }
}
