//! HTTP/1.1 on plain bytes: request heads, framing, chunked bodies, paths,
//! response heads. Nothing here touches a socket, so all of it is tested on
//! byte slices.

/// The methods the server implements. Any other valid token is 501.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    Get,
    Head,
    Post,
    Put,
    Delete,
}

impl Method {
    pub const ALL: [Method; 5] = [
        Method::Get,
        Method::Head,
        Method::Post,
        Method::Put,
        Method::Delete,
    ];

    /// Methods are case-sensitive (RFC 9110 §9.1): `get` is not GET.
    pub fn from_token(token: &str) -> Option<Method> {
        Method::ALL.into_iter().find(|m| m.as_str() == token)
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Delete => "DELETE",
        }
    }

    pub(crate) const fn bit(self) -> u8 {
        match self {
            Method::Get => 1,
            Method::Head => 2,
            Method::Post => 4,
            Method::Put => 8,
            Method::Delete => 16,
        }
    }
}

/// `bytes` without the optional whitespace (spaces and tabs, RFC 9110
/// §5.6.3) around a header value or list element.
pub fn trim_ows(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|b| !matches!(b, b' ' | b'\t'))
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !matches!(b, b' ' | b'\t'))
        .map_or(start, |e| e + 1);
    &bytes[start..end]
}

/// `Content-Length = 1*DIGIT` (RFC 9110 §8.6): no sign, no spaces, no
/// overflow. The one parser for requests, CGI header blocks and upstream
/// responses.
pub fn parse_content_length(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 19 {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &d| {
        d.is_ascii_digit()
            .then(|| n.checked_mul(10)?.checked_add(u64::from(d - b'0')))
            .flatten()
    })
}

pub mod body;
pub mod chunked;
pub mod conditional;
pub mod date;
pub mod gzip;
pub mod multipart;
pub mod path;
pub mod range;
pub mod request;
pub mod response;
pub mod status;
pub mod vars;
