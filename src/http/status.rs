//! Reason phrases: the one copy of the text that follows a status code.
//!
//! The reason phrase is informational only (RFC 9112 §4: a client "SHOULD
//! ignore" it), but every response head, built-in error page and access log
//! line takes it from [`reason`], so they always agree.

/// The reason phrase for `code`, as registered by IANA (RFC 9110 §15, plus
/// RFC 2324 for 418). Any other code gets its class name (RFC 9110 §15:
/// a client treats an unknown code as the `x00` of its class), and anything
/// outside 100–599 gets `"Unknown"`.
pub fn reason(code: u16) -> &'static str {
    match code {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        203 => "Non-Authoritative Information",
        204 => "No Content",
        205 => "Reset Content",
        206 => "Partial Content",
        300 => "Multiple Choices",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length Required",
        412 => "Precondition Failed",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        416 => "Range Not Satisfiable",
        417 => "Expectation Failed",
        418 => "I'm a teapot",
        421 => "Misdirected Request",
        422 => "Unprocessable Content",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        507 => "Insufficient Storage",
        _ => class(code),
    }
}

fn class(code: u16) -> &'static str {
    match code {
        100..=199 => "Informational",
        200..=299 => "Success",
        300..=399 => "Redirection",
        400..=499 => "Client Error",
        500..=599 => "Server Error",
        _ => "Unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::reason;

    #[test]
    fn known_codes() {
        let table: &[(u16, &str)] = &[
            (100, "Continue"),
            (200, "OK"),
            (201, "Created"),
            (204, "No Content"),
            (206, "Partial Content"),
            (301, "Moved Permanently"),
            (302, "Found"),
            (303, "See Other"),
            (304, "Not Modified"),
            (307, "Temporary Redirect"),
            (308, "Permanent Redirect"),
            (400, "Bad Request"),
            (403, "Forbidden"),
            (404, "Not Found"),
            (405, "Method Not Allowed"),
            (408, "Request Timeout"),
            (411, "Length Required"),
            (413, "Content Too Large"),
            (414, "URI Too Long"),
            (416, "Range Not Satisfiable"),
            (418, "I'm a teapot"),
            (431, "Request Header Fields Too Large"),
            (500, "Internal Server Error"),
            (501, "Not Implemented"),
            (502, "Bad Gateway"),
            (503, "Service Unavailable"),
            (504, "Gateway Timeout"),
            (505, "HTTP Version Not Supported"),
        ];
        for &(code, want) in table {
            assert_eq!(reason(code), want, "{code}");
        }
    }

    #[test]
    fn fallbacks() {
        let table: &[(u16, &str)] = &[
            (199, "Informational"),
            (299, "Success"),
            (399, "Redirection"),
            (499, "Client Error"),
            (599, "Server Error"),
            (0, "Unknown"),
            (99, "Unknown"),
            (600, "Unknown"),
            (u16::MAX, "Unknown"),
        ];
        for &(code, want) in table {
            assert_eq!(reason(code), want, "{code}");
        }
    }

    #[test]
    fn every_phrase_is_valid_reason_text() {
        // RFC 9112 §4: reason-phrase = 1*( HTAB / SP / VCHAR / obs-text )
        for code in 0..=u16::MAX {
            let r = reason(code);
            assert!(!r.is_empty());
            assert!(r
                .bytes()
                .all(|b| b == b' ' || b == b'\t' || b.is_ascii_graphic()));
        }
    }
}
