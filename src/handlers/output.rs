//! What a location does to every response it sends, whoever made it (a
//! file, an error page, a CGI script, an upstream), SPEC §9.5:
//!
//! 1. [`coding`]: gzip or not, and whether `Vary: Accept-Encoding` is due;
//! 2. [`write_own_header`]: each of the response's own headers, as the
//!    coding and `expires` want it (an `ETag` made weak, `Accept-Ranges`
//!    dropped under gzip; a backend's `Expires` replaced);
//! 3. [`write_added`]: `Content-Encoding` and `Vary`, `expires` and
//!    `add_header`, after the response's own headers.
//!
//! `server_tokens` is the `tokens` flag of
//! [`crate::http::response::write_head_start`]. Every place that builds a
//! response head calls these, so a prepared head (a cached file's) can too.

use std::time::{Duration, SystemTime};

use crate::http::date::fmt_http_date;
use crate::http::gzip;
use crate::http::request::Request;
use crate::http::response::write_header;
use crate::http::vars;
use crate::routing::{Expires, Output};

/// nginx's `expires max`: ten years, and its fixed date.
const MAX_AGE: i64 = 315_360_000;
const MAX_DATE: &str = "Thu, 31 Dec 2037 23:55:55 GMT";
const EPOCH_DATE: &str = "Thu, 01 Jan 1970 00:00:01 GMT";

/// How a response body is coded for this client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coding {
    /// As it is, and nothing to say about it.
    Identity,
    /// As it is, with `Vary: Accept-Encoding`: another client would get it
    /// compressed, so a cache must not give this copy to everyone.
    IdentityVary,
    /// Compressed, with `Content-Encoding: gzip` and `Vary`.
    Gzip,
}

/// What [`coding`] looks at in a response.
#[derive(Debug, Clone, Copy)]
pub struct Candidate<'a> {
    pub status: u16,
    pub content_type: Option<&'a str>,
    /// The response already has a `Content-Encoding`.
    pub encoded: bool,
    /// The body's length when known (`None`: streamed, long enough).
    pub length: Option<u64>,
}

/// SPEC §9.5: gzip when it is on, the type is listed, the body is long
/// enough, it is neither a range nor bodiless nor already encoded, and the
/// client accepts gzip over HTTP/1.1. HTTP/1.0 clients get the identity
/// coding (nginx's default `gzip_http_version 1.1`): their bodies could
/// only be delimited by closing the connection. `Vary` is sent whenever
/// the answer depends on `Accept-Encoding` (nginx needs `gzip_vary on`).
pub fn coding(output: &Output, request: Option<&Request>, response: Candidate) -> Coding {
    let Some(request) = request else {
        return Coding::Identity;
    };
    let bodiless = response.status < 200 || matches!(response.status, 204 | 206 | 304);
    let qualifies = output.gzip
        && !bodiless
        && !response.encoded
        && response
            .content_type
            .is_some_and(|t| gzip::type_listed(t, &output.gzip_types))
        && response.length.is_none_or(|n| n >= output.gzip_min_length);
    if !qualifies {
        return Coding::Identity;
    }
    if request.minor_version == 0 || !gzip::accepts_gzip(request.header_str("accept-encoding")) {
        return Coding::IdentityVary;
    }
    Coding::Gzip
}

/// The statuses `add_header` (without `always`) and `expires` apply to.
fn decorated_status(status: u16) -> bool {
    matches!(
        status,
        200 | 201 | 204 | 206 | 301 | 302 | 303 | 304 | 307 | 308
    )
}

/// Whether a header a backend sent is replaced by the location's own
/// (`expires` sets `Expires` and `Cache-Control`, as nginx does).
pub fn overridden(output: &Output, status: u16, name: &str) -> bool {
    output.expires != Expires::Off
        && decorated_status(status)
        && (name.eq_ignore_ascii_case("expires") || name.eq_ignore_ascii_case("cache-control"))
}

/// Writes one of the response's own headers: under gzip the `ETag` is made
/// weak (the bytes sent are not the file's, RFC 9110 §8.8.3) and
/// `Accept-Ranges` (ranges of a compressed stream are not offered, as
/// nginx) and `Content-Length` are left out; so is a header `expires`
/// replaces.
pub fn write_own_header(
    out: &mut Vec<u8>,
    output: &Output,
    status: u16,
    coding: Coding,
    name: &str,
    value: &[u8],
) {
    if overridden(output, status, name) {
        return;
    }
    if coding == Coding::Gzip {
        // A length given for a HEAD describes the uncompressed body.
        if name.eq_ignore_ascii_case("accept-ranges") || name.eq_ignore_ascii_case("content-length")
        {
            return;
        }
        if name.eq_ignore_ascii_case("etag") && !value.starts_with(b"W/") {
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": W/");
            out.extend_from_slice(value);
            out.extend_from_slice(b"\r\n");
            return;
        }
    }
    write_header(out, name, value);
}

/// Writes what the location adds to a head, for a response of `status` to
/// `request` (`None`: a head that could not be parsed; variables are then
/// empty): `Content-Encoding` and `Vary` for the coding, then `expires`,
/// then the `add_header` list.
pub fn write_added(
    out: &mut Vec<u8>,
    output: &Output,
    status: u16,
    coding: Coding,
    request: Option<&Request>,
    now: SystemTime,
) {
    match coding {
        Coding::Identity => {}
        Coding::IdentityVary => out.extend_from_slice(b"Vary: Accept-Encoding\r\n"),
        Coding::Gzip => {
            out.extend_from_slice(b"Content-Encoding: gzip\r\nVary: Accept-Encoding\r\n")
        }
    }
    let decorated = decorated_status(status);
    if decorated {
        write_expires(out, output.expires, now);
    }
    for header in output.add_header.iter() {
        if !(decorated || header.always) {
            continue;
        }
        if vars::has_variables(&header.value) {
            let mut value = vars::expand(&header.value, request, |_, _| false);
            // A byte that could end the header early never reaches it.
            value.retain(|&b| !matches!(b, b'\r' | b'\n' | 0));
            write_header(out, &header.name, &value);
        } else {
            write_header(out, &header.name, header.value.as_bytes());
        }
    }
}

fn write_expires(out: &mut Vec<u8>, expires: Expires, now: SystemTime) {
    let (date, cache_control) = match expires {
        Expires::Off => return,
        Expires::Epoch => (EPOCH_DATE.to_owned(), "no-cache".to_owned()),
        Expires::Max => (MAX_DATE.to_owned(), format!("max-age={MAX_AGE}")),
        Expires::Seconds(secs) => {
            let offset = Duration::from_secs(secs.unsigned_abs());
            let at = if secs >= 0 {
                now.checked_add(offset)
            } else {
                now.checked_sub(offset)
            };
            let control = if secs >= 0 {
                format!("max-age={secs}")
            } else {
                "no-cache".to_owned()
            };
            (fmt_http_date(at.unwrap_or(now)), control)
        }
    };
    write_header(out, "Expires", date.as_bytes());
    write_header(out, "Cache-Control", cache_control.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routing::AddHeader;
    use std::sync::Arc;

    fn output() -> Output {
        Output {
            gzip: true,
            gzip_types: Arc::from(vec!["text/css".to_owned()]),
            gzip_min_length: 256,
            gzip_static: false,
            add_header: Arc::from(vec![
                AddHeader {
                    name: "X-Plain".into(),
                    value: "1".into(),
                    always: false,
                },
                AddHeader {
                    name: "X-Host".into(),
                    value: "h=$host$uri".into(),
                    always: true,
                },
            ]),
            expires: Expires::Off,
            server_tokens: true,
        }
    }

    fn request(head: &str) -> Request {
        Request::parse(head.as_bytes(), 8192).unwrap().unwrap().0
    }

    fn candidate(status: u16, content_type: &str, length: Option<u64>) -> Candidate<'_> {
        Candidate {
            status,
            content_type: Some(content_type),
            encoded: false,
            length,
        }
    }

    #[test]
    fn coding_table() {
        let gzip11 = request("GET / HTTP/1.1\r\nHost: a\r\nAccept-Encoding: gzip\r\n\r\n");
        let gzip10 = request("GET / HTTP/1.0\r\nAccept-Encoding: gzip\r\n\r\n");
        let refuses = request("GET / HTTP/1.1\r\nHost: a\r\nAccept-Encoding: gzip;q=0\r\n\r\n");
        let silent = request("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
        let on = output();
        let off = Output {
            gzip: false,
            ..output()
        };
        let html = candidate(200, "text/html; charset=utf-8", Some(1000));
        let cases = [
            (&on, Some(&gzip11), html, Coding::Gzip),
            (&off, Some(&gzip11), html, Coding::Identity),
            (&on, None, html, Coding::Identity),
            (&on, Some(&gzip10), html, Coding::IdentityVary),
            (&on, Some(&refuses), html, Coding::IdentityVary),
            (&on, Some(&silent), html, Coding::IdentityVary),
            (
                &on,
                Some(&gzip11),
                candidate(200, "text/css", None),
                Coding::Gzip,
            ),
            (
                &on,
                Some(&gzip11),
                candidate(200, "image/png", Some(999)),
                Coding::Identity,
            ),
            (
                &on,
                Some(&gzip11),
                candidate(200, "text/html", Some(255)),
                Coding::Identity,
            ),
            (
                &on,
                Some(&gzip11),
                candidate(200, "text/html", Some(256)),
                Coding::Gzip,
            ),
            (
                &on,
                Some(&gzip11),
                candidate(404, "text/html", Some(999)),
                Coding::Gzip,
            ),
            (
                &on,
                Some(&gzip11),
                candidate(206, "text/html", Some(999)),
                Coding::Identity,
            ),
            (
                &on,
                Some(&gzip11),
                candidate(304, "text/html", None),
                Coding::Identity,
            ),
            (
                &on,
                Some(&gzip11),
                candidate(204, "text/html", None),
                Coding::Identity,
            ),
            (
                &on,
                Some(&gzip11),
                Candidate {
                    encoded: true,
                    ..html
                },
                Coding::Identity,
            ),
        ];
        for (i, (output, request, response, expected)) in cases.into_iter().enumerate() {
            assert_eq!(coding(output, request, response), expected, "case {i}");
        }
    }

    fn added(output: &Output, status: u16, request: Option<&Request>) -> String {
        let mut out = Vec::new();
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
        write_added(&mut out, output, status, Coding::Identity, request, now);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn add_header_only_on_listed_statuses_unless_always() {
        let req = request("GET /p HTTP/1.1\r\nHost: ex\r\n\r\n");
        let o = output();
        assert_eq!(
            added(&o, 200, Some(&req)),
            "X-Plain: 1\r\nX-Host: h=ex/p\r\n"
        );
        assert_eq!(
            added(&o, 304, Some(&req)),
            "X-Plain: 1\r\nX-Host: h=ex/p\r\n"
        );
        assert_eq!(added(&o, 404, Some(&req)), "X-Host: h=ex/p\r\n");
        assert_eq!(added(&o, 500, None), "X-Host: h=\r\n");
    }

    #[test]
    fn expires_values() {
        let base = Output {
            add_header: Arc::from(Vec::new()),
            ..output()
        };
        let with = |expires| Output {
            expires,
            ..base.clone()
        };
        let cases = [
            (Expires::Off, 200, ""),
            (
                Expires::Seconds(3600),
                200,
                "Expires: Sun, 09 Sep 2001 02:46:40 GMT\r\nCache-Control: max-age=3600\r\n",
            ),
            (
                Expires::Seconds(-1),
                200,
                "Expires: Sun, 09 Sep 2001 01:46:39 GMT\r\nCache-Control: no-cache\r\n",
            ),
            (
                Expires::Epoch,
                301,
                "Expires: Thu, 01 Jan 1970 00:00:01 GMT\r\nCache-Control: no-cache\r\n",
            ),
            (
                Expires::Max,
                200,
                "Expires: Thu, 31 Dec 2037 23:55:55 GMT\r\nCache-Control: max-age=315360000\r\n",
            ),
            (Expires::Max, 404, ""),
        ];
        for (expires, status, expected) in cases {
            assert_eq!(added(&with(expires), status, None), expected, "{expires:?}");
        }
        assert!(overridden(&with(Expires::Max), 200, "cache-control"));
        assert!(!overridden(&with(Expires::Max), 404, "Expires"));
        assert!(!overridden(&with(Expires::Off), 200, "Expires"));
    }

    #[test]
    fn gzip_weakens_the_etag_and_drops_accept_ranges() {
        let o = output();
        let mut out = Vec::new();
        for coding in [Coding::Gzip, Coding::Identity] {
            write_own_header(&mut out, &o, 200, coding, "ETag", b"\"a-1\"");
            write_own_header(&mut out, &o, 200, coding, "Accept-Ranges", b"bytes");
            write_own_header(&mut out, &o, 200, coding, "ETag", b"W/\"b\"");
        }
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "ETag: W/\"a-1\"\r\nETag: W/\"b\"\r\n\
             ETag: \"a-1\"\r\nAccept-Ranges: bytes\r\nETag: W/\"b\"\r\n"
        );
        let mut out = Vec::new();
        let now = SystemTime::UNIX_EPOCH;
        write_added(
            &mut out,
            &Output {
                add_header: Arc::from(Vec::new()),
                ..o
            },
            200,
            Coding::Gzip,
            None,
            now,
        );
        assert_eq!(out, b"Content-Encoding: gzip\r\nVary: Accept-Encoding\r\n");
    }
}
