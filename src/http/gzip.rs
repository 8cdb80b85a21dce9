//! gzip content coding (RFC 9110 §8.4.1.3, SPEC §9.5): the negotiation
//! (does the client accept gzip, does the type qualify) and the encoder,
//! bytes in, bytes out; nothing here knows sockets or files.
//!
//! - [`accepts_gzip`] reads `Accept-Encoding` with its q-values;
//! - [`type_listed`] matches a `Content-Type` against `gzip_types`;
//! - [`Encoder`] compresses a body streamed in pieces: memory stays that of
//!   the compressor whatever the body's size;
//! - [`compress`] compresses a whole small buffer at once (for bodies that
//!   are already in memory, and for cached compressed copies).
//!
//! The level is 1, nginx's default `gzip_comp_level`: on the fly, speed
//! matters more than the last percent of size.

use std::io::Write;

use flate2::write::GzEncoder;
use flate2::Compression;

/// nginx's default `gzip_comp_level`.
const LEVEL: u32 = 1;

/// Whether an `Accept-Encoding` value accepts gzip (RFC 9110 §12.5.3):
/// `gzip` (or its alias `x-gzip`) with a q-value above 0, else `*` with
/// one. An explicit `gzip;q=0` refuses even when `*` accepts. No header at
/// all: the client did not ask, and gets the identity coding (as nginx).
pub fn accepts_gzip(header: Option<&str>) -> bool {
    let Some(header) = header else {
        return false;
    };
    let mut star = None;
    for item in header.split(',') {
        let mut parts = item.split(';');
        let coding = parts.next().unwrap_or("").trim();
        let q = parts
            .find_map(|p| {
                let (k, v) = p.split_once('=')?;
                k.trim()
                    .eq_ignore_ascii_case("q")
                    .then(|| q_value(v.trim()))
            })
            .unwrap_or(Some(1000));
        // A malformed q-value refuses that coding rather than guessing.
        let accepted = q.is_some_and(|q| q > 0);
        if coding.eq_ignore_ascii_case("gzip") || coding.eq_ignore_ascii_case("x-gzip") {
            return accepted;
        }
        if coding == "*" {
            star = Some(accepted);
        }
    }
    star.unwrap_or(false)
}

/// A q-value in thousandths (RFC 9110 §12.4.2): `0`, `0.5`, `1`, `1.000`.
fn q_value(text: &str) -> Option<u16> {
    let (int, frac) = text.split_once('.').unwrap_or((text, ""));
    if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut thousandths: u16 = match int {
        "0" => 0,
        "1" => 1000,
        _ => return None,
    };
    for (i, b) in frac.bytes().enumerate() {
        thousandths += u16::from(b - b'0') * [100, 10, 1][i];
    }
    (thousandths <= 1000).then_some(thousandths)
}

/// Whether `content_type` (parameters ignored, case-insensitive) is one of
/// `types`; `text/html` always is, as in nginx.
pub fn type_listed(content_type: &str, types: &[String]) -> bool {
    let mime = content_type.split(';').next().unwrap_or("").trim();
    mime.eq_ignore_ascii_case("text/html") || types.iter().any(|t| t.eq_ignore_ascii_case(mime))
}

/// Compresses `data` whole into one gzip member.
pub fn compress(data: &[u8]) -> Vec<u8> {
    let mut encoder = Encoder::new();
    let mut out = Vec::with_capacity(data.len() / 3 + 64);
    encoder.write(data, &mut out);
    encoder.finish(&mut out);
    out
}

/// A gzip stream compressed piece by piece: what a piece yields is
/// appended to the caller's buffer (possibly nothing yet: the compressor
/// keeps a window), and [`Encoder::finish`] appends the rest and the
/// trailer.
pub struct Encoder {
    inner: GzEncoder<Vec<u8>>,
}

impl std::fmt::Debug for Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("gzip::Encoder")
    }
}

impl Default for Encoder {
    fn default() -> Self {
        Encoder::new()
    }
}

impl Encoder {
    pub fn new() -> Encoder {
        Encoder {
            inner: GzEncoder::new(Vec::new(), Compression::new(LEVEL)),
        }
    }

    /// Compresses `data`, appending what is ready to `out`.
    pub fn write(&mut self, data: &[u8], out: &mut Vec<u8>) {
        // Writing into a `Vec` cannot fail: the compressor's own errors
        // are only for invalid streams, which an encoder never makes.
        let _ = self.inner.write_all(data);
        out.append(self.inner.get_mut());
    }

    /// Ends the stream: the compressor's rest and the gzip trailer.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        let _ = self.inner.try_finish();
        out.append(self.inner.get_mut());
    }
}

/// Decompresses a whole gzip stream: what the tests check output with.
#[cfg(test)]
pub(crate) fn gunzip(data: &[u8]) -> Vec<u8> {
    use std::io::Read;
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(data)
        .read_to_end(&mut out)
        .unwrap();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_encoding_table() {
        let cases: &[(Option<&str>, bool)] = &[
            (None, false),
            (Some(""), false),
            (Some("gzip"), true),
            (Some("GZIP"), true),
            (Some("x-gzip"), true),
            (Some("deflate, gzip;q=1.0, br"), true),
            (Some("gzip;q=0"), false),
            (Some("gzip; q=0.000"), false),
            (Some("gzip;q=0.001"), true),
            (Some("*"), true),
            (Some("*;q=0"), false),
            (Some("gzip;q=0, *"), false),
            (Some("*, gzip;q=0"), false),
            (Some("identity"), false),
            (Some("br, deflate"), false),
            (Some("gzip;q=2"), false),
            (Some("gzip;q=abc"), false),
            (Some("gzip;level=1"), true),
        ];
        for (header, expected) in cases {
            assert_eq!(accepts_gzip(*header), *expected, "{header:?}");
        }
    }

    #[test]
    fn types_ignore_parameters_and_always_include_html() {
        let types = vec!["text/css".to_owned(), "application/json".to_owned()];
        let cases = [
            ("text/css", true),
            ("text/css; charset=utf-8", true),
            ("Application/JSON", true),
            ("text/html; charset=utf-8", true),
            ("image/png", false),
            ("", false),
        ];
        for (content_type, expected) in cases {
            assert_eq!(
                type_listed(content_type, &types),
                expected,
                "{content_type}"
            );
        }
    }

    #[test]
    fn streamed_and_whole_round_trip() {
        let data: Vec<u8> = (0..300_000u32)
            .flat_map(|i| format!("line {} {}\n", i, i % 17).into_bytes())
            .collect();
        let whole = compress(&data);
        assert_eq!(gunzip(&whole), data);
        assert!(
            whole.len() < data.len() / 2,
            "{} of {}",
            whole.len(),
            data.len()
        );
        let mut encoder = Encoder::new();
        let mut out = Vec::new();
        let mut largest_step = 0;
        for piece in data.chunks(7_000) {
            let before = out.len();
            encoder.write(piece, &mut out);
            largest_step = largest_step.max(out.len() - before);
        }
        encoder.finish(&mut out);
        assert_eq!(gunzip(&out), data);
        // Output comes out as it is made, not all at the end.
        assert!(largest_step < 64 * 1024, "{largest_step}");
        assert!(out.len() > largest_step);
        assert_eq!(gunzip(&compress(b"")), b"");
    }
}
