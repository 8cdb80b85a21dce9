//! nginx-style variables in configured values: one expander for `return`
//! URLs and texts, `proxy_set_header` and `add_header` values.
//!
//! `$name` is replaced by the variable's value; an unknown or absent
//! variable is empty, as in nginx; a `$` not followed by a name stays as
//! written. The request variables are those of SPEC §9.5: `$host`,
//! `$scheme`, `$https`, `$request_uri`, `$uri`, `$args` (`$query_string`),
//! `$remote_addr`, `$remote_port`, `$server_port`, `$request_method` and
//! `$http_NAME` (a request header, `_` for `-`). Callers add their own
//! (the proxy's `$proxy_host`) in front of them.

use std::io::Write;

use crate::http::request::Request;

/// Whether `value` holds a variable to expand (so a plain value can be used
/// as it is).
pub fn has_variables(value: &str) -> bool {
    let bytes = value.as_bytes();
    bytes
        .iter()
        .enumerate()
        .any(|(i, &b)| b == b'$' && bytes.get(i + 1).is_some_and(|&c| is_name_byte(c)))
}

/// Expands every `$name` of `value`: `own` first (it returns false for a
/// name it does not know), then the request variables (empty without a
/// request: a head that could not be parsed).
pub fn expand(
    value: &str,
    request: Option<&Request>,
    mut own: impl FnMut(&str, &mut Vec<u8>) -> bool,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(value.len() + 32);
    let mut rest = value;
    while let Some(dollar) = rest.find('$') {
        out.extend_from_slice(&rest.as_bytes()[..dollar]);
        let after = &rest[dollar + 1..];
        let len = after.bytes().take_while(|&b| is_name_byte(b)).count();
        if len == 0 {
            out.push(b'$');
        } else {
            let name = &after[..len];
            if !own(name, &mut out) {
                if let Some(request) = request {
                    request_variable(name, request, &mut out);
                }
            }
        }
        rest = &after[len..];
    }
    out.extend_from_slice(rest.as_bytes());
    out
}

/// The request variables [`request_variable`] knows (and `$http_NAME`).
const REQUEST_VARIABLES: &[&str] = &[
    "host",
    "scheme",
    "https",
    "request_uri",
    "uri",
    "args",
    "query_string",
    "request_method",
    "remote_addr",
    "remote_port",
    "server_port",
];

/// The first variable of `value` that is neither a request variable nor
/// one of `own`: `check` refuses it, as nginx does.
pub fn unknown_variable<'a>(value: &'a str, own: &[&str]) -> Option<&'a str> {
    let mut rest = value;
    while let Some(dollar) = rest.find('$') {
        let after = &rest[dollar + 1..];
        let len = after.bytes().take_while(|&b| is_name_byte(b)).count();
        let name = &after[..len];
        let known = REQUEST_VARIABLES.contains(&name)
            || own.contains(&name)
            || name.strip_prefix("http_").is_some_and(|h| !h.is_empty());
        if len > 0 && !known {
            return Some(name);
        }
        rest = &after[len..];
    }
    None
}

fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// Appends the value of request variable `name`; nothing for an unknown one.
pub fn request_variable(name: &str, request: &Request, out: &mut Vec<u8>) {
    match name {
        "host" => out.extend_from_slice(request.host.as_deref().unwrap_or("").as_bytes()),
        "scheme" => out.extend_from_slice(request.scheme().as_bytes()),
        "https" if request.via.https => out.extend_from_slice(b"on"),
        "request_uri" => out.extend_from_slice(request.request_uri().as_bytes()),
        "uri" => out.extend_from_slice(request.path.as_bytes()),
        "args" | "query_string" => out.extend_from_slice(request.query().unwrap_or("").as_bytes()),
        "request_method" => out.extend_from_slice(request.method_str().as_bytes()),
        "remote_addr" => {
            if let Some(peer) = request.via.peer {
                let _ = write!(out, "{}", peer.ip().to_canonical());
            }
        }
        "remote_port" => {
            if let Some(peer) = request.via.peer {
                let _ = write!(out, "{}", peer.port());
            }
        }
        "server_port" => {
            let _ = write!(out, "{}", request.via.server_port);
        }
        _ => {
            if let Some(field) = name.strip_prefix("http_") {
                let wanted = field.replace('_', "-");
                if let Some(value) = request.header(&wanted) {
                    out.extend_from_slice(value);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::request::Via;

    #[test]
    fn request_variables_expand() {
        let head = "GET /a/b?x=1 HTTP/1.1\r\nHost: Example.com:8443\r\nUser-Agent: t/1\r\n\r\n";
        let (mut request, _) = Request::parse(head.as_bytes(), 8192).unwrap().unwrap();
        request.via = Via {
            https: true,
            peer: Some("10.0.0.7:4242".parse().unwrap()),
            server_port: 8443,
        };
        let cases = [
            ("https://$host$request_uri", "https://example.com/a/b?x=1"),
            ("$scheme $https $uri $args", "https on /a/b x=1"),
            (
                "$remote_addr:$remote_port on $server_port",
                "10.0.0.7:4242 on 8443",
            ),
            ("$http_user_agent|$http_absent|$nope|$|$1x", "t/1|||$|"),
            ("cost: 5$", "cost: 5$"),
        ];
        for (value, expected) in cases {
            let out = expand(value, Some(&request), |_, _| false);
            assert_eq!(String::from_utf8(out).unwrap(), expected, "{value}");
        }
        assert!(has_variables("a$host") && !has_variables("5$") && !has_variables("plain"));
    }

    #[test]
    fn unknown_variables_are_named() {
        let cases: &[(&str, Option<&str>)] = &[
            ("https://$host$request_uri", None),
            ("$http_x_forwarded_for $server_port $args", None),
            ("cost: 5$ or $", None),
            ("$proxy_host", Some("proxy_host")),
            ("a $nope b", Some("nope")),
            ("$http_", Some("http_")),
            ("$1", Some("1")),
        ];
        for (value, expected) in cases {
            assert_eq!(unknown_variable(value, &[]), *expected, "{value}");
        }
        assert_eq!(unknown_variable("$proxy_host", &["proxy_host"]), None);
    }
}
