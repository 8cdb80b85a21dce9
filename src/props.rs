//! Properties of the parsers, asserted on arbitrary bytes: by the fuzz
//! targets in `fuzz/` (cargo-fuzz, nightly) and, on the saved inputs of
//! `fuzz/corpus` and `fuzz/regressions`, by the stable `cargo test`
//! (`tests/fuzz_replay.rs`). Each function panics when a property fails;
//! none may panic otherwise, whatever the input.

use std::path::Path;

use crate::http::chunked::{Chunk, ChunkedDecoder};
use crate::http::multipart::{Event, MultipartParser};
use crate::http::path;
use crate::http::range::{parse_range, RangeOutcome};
use crate::http::request::Request;

/// A property: panics when it does not hold for the input.
pub type Property = fn(&[u8]);

/// The targets, by name, for the replay test and `make fuzz`.
pub const TARGETS: &[(&str, Property)] = &[
    ("request_head", request_head),
    ("chunked", chunked),
    ("multipart", multipart),
    ("path", path_normalize),
    ("range", range),
    ("cgi_head", cgi_head),
    ("upstream_head", upstream_head),
    ("config", config),
    ("fmt", fmt),
    ("route", route),
];

/// A request head: the parser never reads past the head it reports, the
/// routing path never climbs above `/`, and no header with `_` survives.
pub fn request_head(data: &[u8]) {
    let Ok(Some((request, len))) = Request::parse(data, 8192) else {
        return;
    };
    assert!(len <= data.len() && len <= 8192);
    check_normalized(&request.path);
    assert!(request.request_uri().starts_with('/'));
    assert!(request.headers().all(|(name, _)| !name.contains('_')));
    if let Some(host) = &request.host {
        assert!(!host
            .bytes()
            .any(|b| b == b'/' || b.is_ascii_whitespace() || b == 0));
    }
    // The head delimits itself: the same bytes alone parse the same way.
    let again = Request::parse(&data[..len], 8192).expect("a head parses alone");
    assert_eq!(again.map(|(r, l)| (r.path, l)), Some((request.path, len)));
}

fn check_normalized(p: &str) {
    assert!(p.starts_with('/'), "{p:?}");
    assert!(!p.contains('\0'), "{p:?}");
    for segment in p[1..].split('/') {
        assert!(segment != "." && segment != "..", "{p:?}");
    }
    assert!(!p.contains("//"), "{p:?}");
    let base = Path::new("/srv/root");
    assert!(path::map_under(base, p).starts_with(base), "{p:?}");
}

/// A chunked body: what the decoder accepts, a plain reading of RFC 9112
/// §7.1 decodes to the same bytes, and splitting the input anywhere
/// changes nothing. The first byte picks the split.
pub fn chunked(data: &[u8]) {
    let Some((&split, input)) = data.split_first() else {
        return;
    };
    let whole = decode_chunked(input, &[input.len()]);
    let cut = usize::from(split) % (input.len() + 1);
    let pieces = decode_chunked(input, &[cut, input.len()]);
    assert_eq!(whole, pieces, "split at {cut}");
    if let Ok(Some((body, used))) = whole {
        assert_eq!(reference_chunked(input), Some((body, used)));
    }
}

type Decoded = Result<Option<(Vec<u8>, usize)>, String>;

/// Feeds `input` as it would arrive, up to each of `ends` in turn; the
/// body and the bytes used once done, `None` if it never ends.
fn decode_chunked(input: &[u8], ends: &[usize]) -> Decoded {
    let mut decoder = ChunkedDecoder::new();
    let mut body = Vec::new();
    let mut pos = 0;
    for &end in ends {
        loop {
            let (n, chunk) = decoder.step(&input[pos..end]).map_err(|e| e.to_string())?;
            assert!(pos + n <= end);
            match chunk {
                Chunk::Data(range) => {
                    body.extend_from_slice(&input[pos + range.start..pos + range.end])
                }
                Chunk::Done => return Ok(Some((body, pos + n))),
                Chunk::NeedMore => {
                    pos += n;
                    break;
                }
            }
            pos += n;
        }
    }
    Ok(None)
}

/// RFC 9112 §7.1, read plainly: hex size, anything up to CRLF, data,
/// CRLF; after the last chunk, field lines up to an empty line.
fn reference_chunked(input: &[u8]) -> Option<(Vec<u8>, usize)> {
    let mut body = Vec::new();
    let mut pos = 0;
    let line = |pos: usize| -> Option<(&[u8], usize)> {
        let rest = input.get(pos..)?;
        let end = rest.windows(2).position(|w| w == b"\r\n")?;
        Some((&rest[..end], pos + end + 2))
    };
    loop {
        let (size_line, next) = line(pos)?;
        let digits = size_line
            .iter()
            .take_while(|b| b.is_ascii_hexdigit())
            .count();
        if digits == 0 {
            return None;
        }
        let size = u64::from_str_radix(std::str::from_utf8(&size_line[..digits]).ok()?, 16).ok()?;
        pos = next;
        if size == 0 {
            loop {
                let (field, next) = line(pos)?;
                pos = next;
                if field.is_empty() {
                    return Some((body, pos));
                }
            }
        }
        let size = usize::try_from(size).ok()?;
        let data = input.get(pos..pos.checked_add(size)?)?;
        body.extend_from_slice(data);
        pos += size;
        if input.get(pos..pos + 2)? != b"\r\n" {
            return None;
        }
        pos += 2;
    }
}

/// A multipart body (boundary `XyZ`): the parser never consumes more than
/// it was given, and data ranges lie inside what it consumed.
pub fn multipart(data: &[u8]) {
    let mut parser = MultipartParser::new("XyZ");
    let mut pos = 0;
    for _ in 0..10_000 {
        let Ok((n, event)) = parser.step(&data[pos..]) else {
            return;
        };
        assert!(pos + n <= data.len());
        if let Event::Data(range) = &event {
            assert!(range.start <= range.end && range.end <= n);
        }
        pos += n;
        match event {
            Event::Done | Event::NeedMore => return,
            Event::Part(_) | Event::Data(_) | Event::PartEnd => {}
        }
    }
    panic!("the parser made no end of {} bytes", data.len());
}

/// A request path: a normalised one never climbs and maps inside its root.
pub fn path_normalize(data: &[u8]) {
    if let Ok(p) = path::normalize(data) {
        check_normalized(&p);
    }
    let (p, _query) = path::split_target(data);
    if let Ok(p) = path::normalize(p) {
        check_normalized(&p);
    }
}

/// A `Range` header against a length taken from the first bytes: a
/// partial answer lies inside the representation.
pub fn range(data: &[u8]) {
    let Some((len_bytes, header)) = data.split_at_checked(2) else {
        return;
    };
    let len = u64::from(u16::from_le_bytes([len_bytes[0], len_bytes[1]]));
    let Ok(header) = std::str::from_utf8(header) else {
        return;
    };
    if let RangeOutcome::Partial { start, end } = parse_range(header, len) {
        assert!(
            start <= end && end < len,
            "{header:?} on {len}: {start}-{end}"
        );
    }
}

/// A CGI header block: never past the input, a status of three digits.
pub fn cgi_head(data: &[u8]) {
    if let Ok(Some((head, len))) = crate::handlers::cgi::parse_head(data) {
        assert!(len <= data.len());
        assert!((100..=999).contains(&head.status), "{}", head.status);
        for (name, value) in &head.headers {
            assert!(!name.is_empty() && !name.contains([':', '\r', '\n']));
            assert!(!value.contains(['\r', '\n', '\0']));
        }
    }
}

/// An upstream response head: never past the input; relayed header values
/// cannot end the client's head early.
pub fn upstream_head(data: &[u8]) {
    for head_request in [false, true] {
        if let Ok(Some((head, len))) =
            crate::handlers::proxy::parse_response_head(data, head_request)
        {
            assert!(len <= data.len());
            for (name, value) in &head.headers {
                assert!(!name.contains([':', '\r', '\n']));
                assert!(!value.iter().any(|&b| b == b'\r' || b == b'\n'));
            }
        }
    }
}

/// A configuration file: loading never panics, and a table comes exactly
/// when no error was reported.
pub fn config(data: &[u8]) {
    let Ok(dir) = tempdir() else {
        return;
    };
    let file = dir.join("fuzz.conf");
    if std::fs::write(&file, data).is_err() {
        return;
    }
    let (table, report) = crate::config::load(&file);
    let errors = report
        .diagnostics
        .iter()
        .any(|d| d.severity == crate::config::Severity::Error);
    assert_eq!(table.is_some(), !errors);
    let _ = report.render_text();
    let _ = std::fs::remove_dir_all(&dir);
}

/// `webserv fmt` (SPEC §9.4): on text that parses, formatting is
/// idempotent; on text that also loads, the formatted text loads into the
/// same routing table (compared as JSON, as `tests/fmt.rs` does). Both
/// files sit in one directory, so relative paths resolve alike.
pub fn fmt(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(once) = crate::config::fmt::format(text) else {
        return;
    };
    let twice = crate::config::fmt::format(&once)
        .unwrap_or_else(|e| panic!("formatted text does not parse: {e:?}\n{once}"));
    assert_eq!(once, twice, "not idempotent");
    let Ok(dir) = tempdir() else {
        return;
    };
    let original = dir.join("fuzz.conf");
    let formatted = dir.join("fuzz.fmt.conf");
    if std::fs::write(&original, text).is_err() || std::fs::write(&formatted, &once).is_err() {
        let _ = std::fs::remove_dir_all(&dir);
        return;
    }
    let (before, _) = crate::config::load(&original);
    if let Some(before) = before {
        let (after, report) = crate::config::load(&formatted);
        let after = after
            .unwrap_or_else(|| panic!("formatted text fails: {}\n{once}", report.render_text()));
        assert_eq!(
            serde_json::to_value(&before).ok(),
            serde_json::to_value(&after).ok(),
            "different table:\n{once}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// `webserv route`: the first line is a URL, the rest a configuration.
/// For a configuration that loads, `route` answers or refuses the URL with
/// a message, never panics; the server it names exists, the location it
/// names is one of that server's, and its text rendering works.
pub fn route(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (url, config) = text.split_once('\n').unwrap_or((text, ""));
    let Ok(dir) = tempdir() else {
        return;
    };
    let file = dir.join("fuzz.conf");
    if std::fs::write(&file, config).is_ok() {
        if let (Some(table), _) = crate::config::load(&file) {
            if let Ok(found) = crate::route::route(&table, url, "GET", &[]) {
                let index = found["server"]["index"].as_u64().expect("a server index");
                let server = &table.servers[usize::try_from(index).expect("index")];
                if let Some(uri) = found["location"]["uri"].as_str() {
                    let known = server.locations.iter().any(|l| l.uri == uri);
                    assert!(known, "location {uri} is not the server's");
                }
                let _ = crate::route::render_text(&found);
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A private directory under the system's temporary one.
fn tempdir() -> std::io::Result<std::path::PathBuf> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!(
        "webserv-props-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_hold() {
        request_head(b"GET /a/../b?x HTTP/1.1\r\nHost: a\r\nX_Y: z\r\n\r\n");
        chunked(b"\x035\r\nhello\r\n0\r\nT: v\r\n\r\n");
        multipart(b"--XyZ\r\nContent-Disposition: form-data; name=\"f\"\r\n\r\nv\r\n--XyZ--\r\n");
        path_normalize(b"/a/%2e%2e/b");
        range(b"\x10\x00bytes=0-5");
        cgi_head(b"Status: 404 Nope\r\nX: y\r\n\r\nbody");
        upstream_head(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
        config(b"server { listen 127.0.0.1:8080; root .; }\n");
        fmt(b"server {listen 127.0.0.1:8080;   root .;# here\n location / { } }\n");
    }
}
