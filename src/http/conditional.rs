//! Validators and conditional GET (RFC 9110 §8.8, §13): the `ETag` of a
//! file and whether a request gets `304 Not Modified` (SPEC §4).
//!
//! The entity tag is nginx's: `"<mtime seconds in hex>-<length in hex>"`,
//! so a file served by either server keeps its validator.

use std::time::SystemTime;

use super::date::{parse_http_date, unix_secs};

/// The strong entity tag of a file, quotes included: `"5f3e2a10-1a2b"`.
/// An mtime before 1970 counts as 0.
pub fn etag(mtime: SystemTime, len: u64) -> String {
    format!("\"{:x}-{:x}\"", unix_secs(mtime).max(0), len)
}

/// Whether an `If-None-Match` value matches `etag` (RFC 9110 §13.1.2):
/// `*`, or a list of entity tags one of which equals `etag` by the weak
/// comparison (`W/` prefixes ignored on both sides, §8.8.3.2).
///
/// A malformed list matches nothing, so the full response is sent.
pub fn none_match(header: &str, etag: &str) -> bool {
    let header = header.trim_matches(|c| c == ' ' || c == '\t');
    if header == "*" {
        return true;
    }
    let Some(ours) = opaque_tag(etag) else {
        return false;
    };
    let mut rest = header;
    loop {
        rest = rest.trim_start_matches([' ', '\t', ',']);
        if rest.is_empty() {
            return false;
        }
        let Some((tag, after)) = split_entity_tag(rest) else {
            return false;
        };
        if tag == ours {
            return true;
        }
        // Entity tags are separated by commas (with optional whitespace).
        let after = after.trim_start_matches([' ', '\t']);
        if !(after.is_empty() || after.starts_with(',')) {
            return false;
        }
        rest = after;
    }
}

/// Whether a GET or HEAD gets 304 (SPEC §4, RFC 9110 §13.2.2): when
/// `If-None-Match` is present it alone decides; otherwise `If-Modified-Since`
/// at or after the file's mtime, to the second (HTTP dates have no
/// fractions). An unparseable `If-Modified-Since` is ignored (§13.1.3).
pub fn not_modified(
    if_none_match: Option<&str>,
    if_modified_since: Option<&str>,
    etag: &str,
    mtime: SystemTime,
) -> bool {
    if let Some(inm) = if_none_match {
        return none_match(inm, etag);
    }
    match if_modified_since.and_then(parse_http_date) {
        Some(since) => unix_secs(mtime) <= unix_secs(since),
        None => false,
    }
}

/// The quoted part of an entity tag, without any `W/`: `W/"x"` → `"x"`.
fn opaque_tag(tag: &str) -> Option<&str> {
    match split_entity_tag(tag) {
        Some((opaque, "")) => Some(opaque),
        _ => None,
    }
}

/// Splits one `[W/]"etagc*"` off the front of `s` (RFC 9110 §8.8.3):
/// returns the opaque tag, quotes included, and what follows.
fn split_entity_tag(s: &str) -> Option<(&str, &str)> {
    let s = s.strip_prefix("W/").unwrap_or(s);
    let body = s.strip_prefix('"')?;
    let close = body.find('"')?;
    // etagc = %x21 / %x23-7E / obs-text: no controls, space or DEL.
    if body[..close].bytes().any(|b| b <= b' ' || b == 0x7f) {
        return None;
    }
    Some(s.split_at(close + 2))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn etags() {
        let table: &[(u64, u64, &str)] = &[
            (0, 0, "\"0-0\""),
            (0x5f3e2a10, 0x1a2b, "\"5f3e2a10-1a2b\""),
            (1_700_000_000, 1234, "\"6553f100-4d2\""),
        ];
        for &(secs, len, want) in table {
            let mtime = UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_millis(700);
            assert_eq!(etag(mtime, len), want);
        }
        assert_eq!(etag(UNIX_EPOCH - Duration::from_secs(5), 1), "\"0-1\"");
    }

    #[test]
    fn none_match_lists() {
        let e = "\"5f-1a\"";
        let table: &[(&str, bool)] = &[
            ("*", true),
            (" * ", true),
            ("\"5f-1a\"", true),
            ("W/\"5f-1a\"", true),
            ("\"x\", \"5f-1a\"", true),
            ("\"x\",\"5f-1a\"", true),
            ("\"x\" ,\t\"5f-1a\" , \"y\"", true),
            (", ,\"5f-1a\",", true),
            ("\"a,b\", \"5f-1a\"", true),
            ("\"5f-1b\"", false),
            ("\"5f-1a", false),
            ("5f-1a", false),
            ("w/\"5f-1a\"", false),
            ("\"5F-1A\"", false),
            ("\"x\" \"5f-1a\"", false),
            ("\"x\"junk, \"5f-1a\"", false),
            ("\"a b\", \"5f-1a\"", false),
            ("**", false),
            ("*, \"x\"", false),
            ("", false),
        ];
        for &(header, want) in table {
            assert_eq!(none_match(header, e), want, "{header:?}");
        }
        assert!(none_match("\"5f-1a\"", "W/\"5f-1a\""));
        assert!(!none_match("\"5f-1a\"", "not-quoted"));
    }

    #[test]
    fn conditional_get() {
        let mtime = UNIX_EPOCH + Duration::from_secs(784_111_777) + Duration::from_millis(500);
        let e = "\"2ebc3fa1-a\"";
        let at = "Sun, 06 Nov 1994 08:49:37 GMT";
        let before = "Sun, 06 Nov 1994 08:49:36 GMT";
        let after = "Sun, 06 Nov 1994 08:49:38 GMT";
        let table: &[(Option<&str>, Option<&str>, bool)] = &[
            (None, None, false),
            (None, Some(at), true),
            (None, Some(after), true),
            (None, Some("Sunday, 06-Nov-94 08:49:37 GMT"), true),
            (None, Some(before), false),
            (None, Some("yesterday"), false),
            (Some(e), None, true),
            (Some("*"), None, true),
            (Some("\"other\""), None, false),
            // If-None-Match wins over If-Modified-Since
            (Some("\"other\""), Some(after), false),
            (Some(e), Some(before), true),
            (Some(""), Some(at), false),
        ];
        for &(inm, ims, want) in table {
            assert_eq!(not_modified(inm, ims, e, mtime), want, "{inm:?} {ims:?}");
        }
    }

    proptest::proptest! {
        #[test]
        fn never_panics(header in "\\PC{0,30}", tag in "\\PC{0,10}") {
            let _ = none_match(&header, &tag);
            let _ = not_modified(None, Some(&header), &tag, UNIX_EPOCH);
        }
    }
}
