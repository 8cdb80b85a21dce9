//! Request paths: from the raw request target to a safe filesystem path.
//!
//! In order:
//! 1. [`split_target`] cuts the request target into path and query, taking
//!    the path out of an absolute-form target (RFC 9112 §3.2.2);
//!    [`absolute_form_authority`] gives that form's host.
//! 2. [`normalize`] percent-decodes the path and resolves `.`, `..` and
//!    repeated `/` (RFC 3986 §5.2.4), as nginx does: it decodes first, so
//!    `%2F` is a separator and `%2e%2e` is `..`. Climbing above `/` is an
//!    error (400), as is a NUL byte or anything that is not UTF-8.
//! 3. [`map_under`] joins the normalised path onto a `root`, `alias` or
//!    `upload_store` directory, rebuilt from plain names only, so the
//!    result never leaves that directory (SPEC §3).
//!
//! [`percent_encode_path`] and [`html_escape`] go the other way, for
//! `Location` headers and autoindex listings.

use std::ffi::OsStr;
use std::fmt;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Why a request path was refused. Every case is a 400.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    /// Empty, or does not start with `/` (e.g. `*` or `a/b`).
    NotAbsolute,
    /// A `%` not followed by two hex digits.
    BadEscape,
    /// A NUL byte, raw or as `%00`.
    Nul,
    /// The decoded bytes are not UTF-8.
    NotUtf8,
    /// A `..` segment would climb above `/`.
    AboveRoot,
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PathError::NotAbsolute => "request path does not start with '/'",
            PathError::BadEscape => "invalid percent escape in request path",
            PathError::Nul => "NUL byte in request path",
            PathError::NotUtf8 => "request path is not UTF-8",
            PathError::AboveRoot => "request path climbs above '/'",
        })
    }
}

impl std::error::Error for PathError {}

/// Splits a request target into its path and its query (without the `?`).
///
/// An absolute-form target (`http://host:port/path?q`, RFC 9112 §3.2.2)
/// gives its path, or `/` when it has none (RFC 9112 §3.2.1: an empty path
/// is `/`). Origin-form and anything else is split as it is; [`normalize`]
/// rejects what is not a path.
pub fn split_target(target: &[u8]) -> (&[u8], Option<&[u8]>) {
    let rest = match authority_end(target) {
        Some(end) => &target[end..],
        None => target,
    };
    let (path, query) = match memchr::memchr(b'?', rest) {
        Some(q) => (&rest[..q], Some(&rest[q + 1..])),
        None => (rest, None),
    };
    if path.is_empty() && rest.len() != target.len() {
        (b"/", query)
    } else {
        (path, query)
    }
}

/// The authority (`[userinfo@]host[:port]`) of an absolute-form target;
/// `None` for any other form. RFC 9112 §3.2.2: a server uses it instead of
/// the `Host` header. A `userinfo@` is left in for the caller to refuse
/// (RFC 9110 §4.2.4: a sender must not generate one).
pub fn absolute_form_authority(target: &[u8]) -> Option<&[u8]> {
    let end = authority_end(target)?;
    let start = scheme_len(target)?;
    Some(&target[start..end])
}

/// The target without the scheme and authority of an absolute-form target
/// (`http://host/p?q` gives `/p?q`, `http://host` gives ``); any other
/// target as it is.
pub fn origin_form(target: &[u8]) -> &[u8] {
    match authority_end(target) {
        Some(end) => &target[end..],
        None => target,
    }
}

/// Length of `http://` or `https://` (scheme case-insensitive, RFC 3986
/// §3.1) at the start of `target`.
fn scheme_len(target: &[u8]) -> Option<usize> {
    [&b"http://"[..], &b"https://"[..]]
        .into_iter()
        .find(|s| target.len() >= s.len() && target[..s.len()].eq_ignore_ascii_case(s))
        .map(<[u8]>::len)
}

/// Where the authority of an absolute-form target ends.
fn authority_end(target: &[u8]) -> Option<usize> {
    let start = scheme_len(target)?;
    let len = target[start..]
        .iter()
        .position(|&b| b == b'/' || b == b'?')
        .unwrap_or(target.len() - start);
    Some(start + len)
}

/// Percent-decodes and normalises the path of a request target.
///
/// `/a//b/./c/../d` is `/a/b/d`; a trailing slash stays (`/a/b/`), and a
/// final `.` or `..` segment leaves one (`/a/.` is `/a/`, `/a/..` is `/`).
/// The result starts with `/`, has no empty, `.` or `..` segment and no NUL.
pub fn normalize(raw: &[u8]) -> Result<String, PathError> {
    if raw.first() != Some(&b'/') {
        return Err(PathError::NotAbsolute);
    }
    if is_normal(raw) {
        return std::str::from_utf8(raw)
            .map(str::to_owned)
            .map_err(|_| PathError::NotUtf8);
    }
    let decoded = String::from_utf8(percent_decode(raw)?).map_err(|_| PathError::NotUtf8)?;

    let mut out = String::with_capacity(decoded.len());
    let mut trailing_slash = false;
    for segment in decoded[1..].split('/') {
        trailing_slash = matches!(segment, "" | "." | "..");
        match segment {
            "" | "." => {}
            ".." => {
                let parent = out.rfind('/').ok_or(PathError::AboveRoot)?;
                out.truncate(parent);
            }
            name => {
                out.push('/');
                out.push_str(name);
            }
        }
    }
    if trailing_slash || out.is_empty() {
        out.push('/');
    }
    Ok(out)
}

/// [`normalize`] of a path that is text already (a request target, which
/// httparse checked): a normal one is copied without checking it again.
pub fn normalize_text(raw: &str) -> Result<String, PathError> {
    if raw.starts_with('/') && is_normal(raw.as_bytes()) {
        Ok(raw.to_owned())
    } else {
        normalize(raw.as_bytes())
    }
}

/// Most paths are normal already: no escape, no NUL, and no empty, `.` or
/// `..` segment (a name starting with a dot takes the long way).
fn is_normal(raw: &[u8]) -> bool {
    !raw.contains(&b'%') && !raw.contains(&0) && !raw.windows(2).any(|w| w == b"//" || w == b"/.")
}

fn percent_decode(raw: &[u8]) -> Result<Vec<u8>, PathError> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let b = match raw[i] {
            b'%' => {
                let hi = raw.get(i + 1).and_then(|&c| hex_val(c));
                let lo = raw.get(i + 2).and_then(|&c| hex_val(c));
                match (hi, lo) {
                    (Some(hi), Some(lo)) => {
                        i += 3;
                        hi << 4 | lo
                    }
                    _ => return Err(PathError::BadEscape),
                }
            }
            b => {
                i += 1;
                b
            }
        };
        if b == 0 {
            return Err(PathError::Nul);
        }
        out.push(b);
    }
    Ok(out)
}

pub(crate) fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Joins `rel`, a URL path, onto `base`, keeping only its plain names.
///
/// Root, `.` and `..` components are dropped rather than followed
/// (static-web-server's `fs/path.rs` does the same), so whatever `rel`
/// holds, the result is `base` or below it. Symbolic links inside `base`
/// are the administrator's business, as in nginx.
pub fn map_under(base: &Path, rel: &str) -> PathBuf {
    let mut out = PathBuf::new();
    map_under_into(base, rel, &mut out);
    out
}

/// [`map_under`] into `out`, whose allocation is reused.
pub fn map_under_into(base: &Path, rel: &str, out: &mut PathBuf) {
    out.clear();
    // Room for it all at once: growing as names are pushed reallocates.
    out.reserve(base.as_os_str().len() + rel.len() + 1);
    out.push(base);
    // The names `Path::components` calls `Normal`, found by splitting the
    // bytes on `/` (a test keeps them equal): the component walk, or a
    // `char` pattern, cost more than the rest of the mapping.
    for name in rel.as_bytes().split(|&b| b == b'/') {
        if !matches!(name, b"" | b"." | b"..") {
            out.push(OsStr::from_bytes(name));
        }
    }
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

/// Percent-encodes a path for a URL: every byte but the unreserved
/// characters of RFC 3986 §2.3 and `/` becomes `%XX` (upper-case hex, as
/// §2.1 recommends). Encoding `%` too makes the result decode back to
/// exactly `path`.
pub fn percent_encode_path(path: &str) -> String {
    let keep = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'/');
    let extra = path.bytes().filter(|&b| !keep(b)).count();
    let mut out = String::with_capacity(path.len() + 2 * extra);
    for b in path.bytes() {
        if keep(b) {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(HEX[usize::from(b >> 4)] as char);
            out.push(HEX[usize::from(b & 15)] as char);
        }
    }
    out
}

/// Escapes `& < > " '` for HTML text and quoted attribute values.
pub fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut last = 0;
    for (i, b) in s.bytes().enumerate() {
        let entity = match b {
            b'&' => "&amp;",
            b'<' => "&lt;",
            b'>' => "&gt;",
            b'"' => "&quot;",
            b'\'' => "&#39;",
            _ => continue,
        };
        out.push_str(&s[last..i]);
        out.push_str(entity);
        last = i + 1;
    }
    out.push_str(&s[last..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::path::Component;

    #[test]
    fn normalizes() {
        use PathError::*;
        let table: &[(&[u8], Result<&str, PathError>)] = &[
            (b"/", Ok("/")),
            (b"/a/b", Ok("/a/b")),
            (b"/a/b/", Ok("/a/b/")),
            (b"//a///b//", Ok("/a/b/")),
            (b"//", Ok("/")),
            (b"/./", Ok("/")),
            (b"/.", Ok("/")),
            (b"/a/.", Ok("/a/")),
            (b"/a/..", Ok("/")),
            (b"/a/../", Ok("/")),
            (b"/a/b/..", Ok("/a/")),
            (b"/a/./b/../c", Ok("/a/c")),
            (b"/a/b/../../c/", Ok("/c/")),
            (b"/a/.../b", Ok("/a/.../b")),
            (b"/a/..b/.c", Ok("/a/..b/.c")),
            (b"/%61%62", Ok("/ab")),
            (b"/a%2Fb", Ok("/a/b")),
            (b"/a%2fb%2F..%2F..%2Fc", Ok("/c")),
            (b"/a/%2e%2E/b", Ok("/b")),
            (b"/a/%2e/b", Ok("/a/b")),
            (b"/a%20b", Ok("/a b")),
            (b"/a+b", Ok("/a+b")),
            (b"/%25", Ok("/%")),
            (b"/%C3%A9t%C3%A9", Ok("/été")),
            ("/été".as_bytes(), Ok("/été")),
            (b"/a\\..\\b", Ok("/a\\..\\b")),
            (b"", Err(NotAbsolute)),
            (b"a/b", Err(NotAbsolute)),
            (b"*", Err(NotAbsolute)),
            (b"%2Fa", Err(NotAbsolute)),
            (b"/..", Err(AboveRoot)),
            (b"/../a", Err(AboveRoot)),
            (b"/a/../..", Err(AboveRoot)),
            (b"/a/../../b/", Err(AboveRoot)),
            (b"/%2e%2e/etc/passwd", Err(AboveRoot)),
            (b"/a%2F..%2F..%2Fetc", Err(AboveRoot)),
            (b"/a\0b", Err(Nul)),
            (b"/a%00b", Err(Nul)),
            (b"/a%", Err(BadEscape)),
            (b"/a%4", Err(BadEscape)),
            (b"/a%zz", Err(BadEscape)),
            (b"/a%4g", Err(BadEscape)),
            (b"/a%%41", Err(BadEscape)),
            (b"/\xff", Err(NotUtf8)),
            (b"/%C3", Err(NotUtf8)),
            (b"/%C0%AF", Err(NotUtf8)),
        ];
        for &(raw, want) in table {
            let got = normalize(raw);
            assert_eq!(
                got.as_deref().map_err(|e| *e),
                want,
                "{:?}",
                String::from_utf8_lossy(raw)
            );
        }
    }

    #[test]
    fn splits_targets() {
        type Want<'a> = (&'a [u8], Option<&'a [u8]>, Option<&'a [u8]>);
        let table: &[(&[u8], Want)] = &[
            (b"/a/b", (b"/a/b", None, None)),
            (b"/a?x=1", (b"/a", Some(b"x=1"), None)),
            (b"/a?", (b"/a", Some(b""), None)),
            (b"/a?x?y", (b"/a", Some(b"x?y"), None)),
            (b"/%3F?q", (b"/%3F", Some(b"q"), None)),
            (b"*", (b"*", None, None)),
            (b"", (b"", None, None)),
            (b"http://h/p?q", (b"/p", Some(b"q"), Some(b"h"))),
            (b"HTTP://h:8080/a/b", (b"/a/b", None, Some(b"h:8080"))),
            (b"https://[::1]:8443/", (b"/", None, Some(b"[::1]:8443"))),
            (b"http://h", (b"/", None, Some(b"h"))),
            (b"http://h?q", (b"/", Some(b"q"), Some(b"h"))),
            (b"http://u:p@h/x", (b"/x", None, Some(b"u:p@h"))),
            (b"http://", (b"/", None, Some(b""))),
            (b"ftp://h/p", (b"ftp://h/p", None, None)),
            (b"/http://h/p", (b"/http://h/p", None, None)),
        ];
        for &(target, (path, query, authority)) in table {
            let name = String::from_utf8_lossy(target);
            assert_eq!(split_target(target), (path, query), "{name}");
            assert_eq!(absolute_form_authority(target), authority, "{name}");
        }
    }

    #[test]
    fn maps_under_base() {
        let base = Path::new("/srv/www");
        let table: &[(&str, &str)] = &[
            ("/", "/srv/www"),
            ("/a/b.html", "/srv/www/a/b.html"),
            ("/a/b/", "/srv/www/a/b"),
            ("a", "/srv/www/a"),
            ("", "/srv/www"),
            ("/../../etc/passwd", "/srv/www/etc/passwd"),
            ("/a/../../b", "/srv/www/a/b"),
            ("//etc", "/srv/www/etc"),
            ("/./a/./b", "/srv/www/a/b"),
        ];
        for &(rel, want) in table {
            assert_eq!(map_under(base, rel), Path::new(want), "{rel}");
        }
    }

    #[test]
    fn encodes_paths() {
        let table: &[(&str, &str)] = &[
            ("/a/b.html", "/a/b.html"),
            ("/a b", "/a%20b"),
            ("/100%", "/100%25"),
            ("/a?b#c", "/a%3Fb%23c"),
            ("/été", "/%C3%A9t%C3%A9"),
            ("/A-z_0.9~", "/A-z_0.9~"),
            ("/<\"'>&+;=", "/%3C%22%27%3E%26%2B%3B%3D"),
            ("", ""),
        ];
        for &(path, want) in table {
            let got = percent_encode_path(path);
            assert_eq!(got, want, "{path}");
            if path.starts_with('/') {
                assert_eq!(normalize(got.as_bytes()).unwrap(), path);
            }
        }
    }

    #[test]
    fn escapes_html() {
        let table: &[(&str, &str)] = &[
            ("plain", "plain"),
            ("", ""),
            ("a&b", "a&amp;b"),
            (
                "<script>\"x\"</script>",
                "&lt;script&gt;&quot;x&quot;&lt;/script&gt;",
            ),
            ("it's", "it&#39;s"),
            ("&&", "&amp;&amp;"),
            ("é<", "é&lt;"),
        ];
        for &(s, want) in table {
            assert_eq!(html_escape(s), want, "{s}");
        }
    }

    /// Byte strings rich in the pieces that matter: separators, dots and
    /// their encodings, NULs and bad escapes.
    fn pathlike() -> impl Strategy<Value = Vec<u8>> {
        let piece = prop_oneof![
            Just(b"/".to_vec()),
            Just(b".".to_vec()),
            Just(b"..".to_vec()),
            Just(b"%2e".to_vec()),
            Just(b"%2E%2e".to_vec()),
            Just(b"%2f".to_vec()),
            Just(b"%2F".to_vec()),
            Just(b"%00".to_vec()),
            Just(b"%".to_vec()),
            Just(b"\\".to_vec()),
            "[a-z]{1,3}".prop_map(String::into_bytes),
            any::<u8>().prop_map(|b| vec![b]),
        ];
        proptest::collection::vec(piece, 0..24).prop_map(|v| v.concat())
    }

    fn check_safe(raw: &[u8]) -> Result<(), TestCaseError> {
        let base = Path::new("/srv/root");
        if let Ok(p) = normalize(raw) {
            prop_assert!(p.starts_with('/'));
            prop_assert!(!p.contains('\0'));
            prop_assert!(!p.contains("//"));
            let inner = p.trim_end_matches('/');
            for seg in inner.split('/').skip(1) {
                prop_assert!(seg != ".." && seg != "." && !seg.is_empty(), "{p:?}");
            }
            prop_assert_eq!(normalize(p.as_bytes()), Ok(p.clone()));
            let mapped = map_under(base, &p);
            prop_assert!(mapped.starts_with(base));
            let rest = mapped.strip_prefix(base).unwrap();
            for c in rest.components() {
                prop_assert!(matches!(c, Component::Normal(_)), "{mapped:?}");
            }
        }
        Ok(())
    }

    proptest! {
        #[test]
        fn normalized_paths_never_escape(raw in pathlike()) {
            check_safe(&raw)?;
            let mut rooted = b"/".to_vec();
            rooted.extend_from_slice(&raw);
            check_safe(&rooted)?;
        }

        #[test]
        fn arbitrary_bytes_never_escape(raw in proptest::collection::vec(any::<u8>(), 0..64)) {
            check_safe(&raw)?;
            let _ = split_target(&raw);
            let _ = absolute_form_authority(&raw);
        }

        #[test]
        fn text_normalizes_as_its_bytes(raw in "[/.a%0-9]{0,16}|\\PC{0,40}") {
            prop_assert_eq!(normalize_text(&raw), normalize(raw.as_bytes()));
        }

        #[test]
        fn map_under_keeps_any_string_below_base(rel in "\\PC{0,40}") {
            let base = Path::new("/srv/root");
            prop_assert!(map_under(base, &rel).starts_with(base));
        }

        #[test]
        fn map_under_keeps_the_normal_components(rel in "[/.ab]{0,12}|\\PC{0,40}") {
            let base = Path::new("/srv/root");
            let mut want = base.to_path_buf();
            for component in Path::new(&rel).components() {
                if let Component::Normal(name) = component {
                    want.push(name);
                }
            }
            let mapped = map_under(base, &rel);
            prop_assert_eq!(mapped.as_os_str(), want.as_os_str());
        }
    }
}
