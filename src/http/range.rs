//! `Range: bytes=...` for static files (RFC 9110 §14).
//!
//! The server serves one range; anything it will not serve as a range is
//! served whole, which RFC 9110 §14.2 allows ("a server MAY ignore the
//! Range header field"). So [`parse_range`] says [`RangeOutcome::Full`] for:
//! another unit, a malformed range set, several ranges (nginx would send
//! `multipart/byteranges`; we don't), and an invalid range such as `5-3`
//! (RFC 9110 §14.1.1 makes it invalid, nginx answers 416; ignoring it is
//! the RFC's choice).
//!
//! Satisfiability follows RFC 9110 §14.1.1: a range is satisfiable when its
//! first-pos is below the length, or it is a suffix range of non-zero
//! length. Hence, for an empty file: `bytes=0-` is 416 (as nginx), `bytes=-0`
//! is 416 (as everywhere), and `bytes=-5` is "satisfiable" yet selects no
//! byte; no `206` can describe an empty range, so that one is served whole
//! (200 with an empty body).

/// How to answer a request with a `Range` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeOutcome {
    /// Ignore the header: 200 with the whole representation.
    Full,
    /// 206 with bytes `start..=end` (`Content-Range: bytes start-end/len`).
    Partial { start: u64, end: u64 },
    /// 416 with `Content-Range: bytes */len`.
    Unsatisfiable,
}

/// Decides what one `Range` header value asks of a representation of `len`
/// bytes.
pub fn parse_range(header: &str, len: u64) -> RangeOutcome {
    let Some((unit, set)) = header.trim().split_once('=') else {
        return RangeOutcome::Full;
    };
    // RFC 9110 §14.1: range units are case-insensitive.
    if !unit.eq_ignore_ascii_case("bytes") {
        return RangeOutcome::Full;
    }
    // RFC 9110 §5.6.1: a list may hold empty elements, which do not count.
    let mut specs = set
        .split(',')
        .map(|s| s.trim_matches(|c| c == ' ' || c == '\t'))
        .filter(|s| !s.is_empty());
    let (Some(spec), None) = (specs.next(), specs.next()) else {
        return RangeOutcome::Full;
    };
    let Some((first, last)) = spec.split_once('-') else {
        return RangeOutcome::Full;
    };

    if first.is_empty() {
        // suffix-range: the last `n` bytes.
        return match number(last) {
            None => RangeOutcome::Full,
            Some(0) => RangeOutcome::Unsatisfiable,
            Some(_) if len == 0 => RangeOutcome::Full,
            Some(n) => RangeOutcome::Partial {
                start: len.saturating_sub(n),
                end: len - 1,
            },
        };
    }
    let Some(start) = number(first) else {
        return RangeOutcome::Full;
    };
    let end = if last.is_empty() {
        u64::MAX
    } else {
        match number(last) {
            Some(end) if end >= start => end,
            _ => return RangeOutcome::Full,
        }
    };
    if start >= len {
        return RangeOutcome::Unsatisfiable;
    }
    RangeOutcome::Partial {
        start,
        end: end.min(len - 1),
    }
}

/// `1*DIGIT`, saturating at `u64::MAX`: a position past any file is as good
/// as the largest one (a huge first-pos is unsatisfiable, a huge last-pos
/// or suffix means "to the end").
fn number(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(s.bytes().fold(0u64, |n, b| {
        n.saturating_mul(10).saturating_add(u64::from(b - b'0'))
    }))
}

#[cfg(test)]
mod tests {
    use super::RangeOutcome::{self, *};
    use super::*;

    fn p(start: u64, end: u64) -> RangeOutcome {
        Partial { start, end }
    }

    #[test]
    fn ranges() {
        let table: &[(&str, u64, RangeOutcome)] = &[
            ("bytes=0-0", 10, p(0, 0)),
            ("bytes=0-9", 10, p(0, 9)),
            ("bytes=2-5", 10, p(2, 5)),
            ("bytes=2-", 10, p(2, 9)),
            ("bytes=0-", 10, p(0, 9)),
            ("bytes=9-", 10, p(9, 9)),
            ("bytes=5-100", 10, p(5, 9)),
            ("bytes=5-99999999999999999999999", 10, p(5, 9)),
            ("bytes=-3", 10, p(7, 9)),
            ("bytes=-10", 10, p(0, 9)),
            ("bytes=-100", 10, p(0, 9)),
            ("bytes=-99999999999999999999999", 10, p(0, 9)),
            ("BYTES=1-2", 10, p(1, 2)),
            ("Bytes=1-2", 10, p(1, 2)),
            (" bytes=1-2 ", 10, p(1, 2)),
            ("bytes= 1-2", 10, p(1, 2)),
            ("bytes=1-2,", 10, p(1, 2)),
            ("bytes=, 1-2 ,", 10, p(1, 2)),
            ("bytes=007-008", 10, p(7, 8)),
            // unsatisfiable
            ("bytes=10-", 10, Unsatisfiable),
            ("bytes=10-20", 10, Unsatisfiable),
            ("bytes=99999999999999999999999-", 10, Unsatisfiable),
            ("bytes=-0", 10, Unsatisfiable),
            ("bytes=0-", 0, Unsatisfiable),
            ("bytes=0-0", 0, Unsatisfiable),
            ("bytes=-0", 0, Unsatisfiable),
            // an empty file has no byte for a suffix range to select
            ("bytes=-5", 0, Full),
            // ignored: another unit, malformed, invalid, several ranges
            ("items=0-5", 10, Full),
            ("bytes 0-5", 10, Full),
            ("bytes=", 10, Full),
            ("bytes=,", 10, Full),
            ("bytes=-", 10, Full),
            ("bytes=5", 10, Full),
            ("bytes=a-b", 10, Full),
            ("bytes=1-b", 10, Full),
            ("bytes=+1-2", 10, Full),
            ("bytes=1-+2", 10, Full),
            ("bytes=-+2", 10, Full),
            ("bytes=--2", 10, Full),
            ("bytes=1--2", 10, Full),
            ("bytes=1 -2", 10, Full),
            ("bytes=5-3", 10, Full),
            ("bytes=0-1,3-4", 10, Full),
            ("bytes=0-1,0-1", 10, Full),
            ("bytes=0-1;x", 10, Full),
            ("bytes==0-1", 10, Full),
            ("", 10, Full),
            ("bytes=１-2", 10, Full),
        ];
        for &(header, len, want) in table {
            assert_eq!(parse_range(header, len), want, "{header:?} of {len}");
        }
    }

    proptest::proptest! {
        #[test]
        fn partial_ranges_lie_within_the_file(header in "(bytes|x)=[0-9 ,-]{0,12}", len in 0u64..50) {
            if let Partial { start, end } = parse_range(&header, len) {
                proptest::prop_assert!(start <= end && end < len);
            }
        }

        #[test]
        fn never_panics(header in "\\PC{0,30}", len: u64) {
            let _ = parse_range(&header, len);
        }
    }
}
