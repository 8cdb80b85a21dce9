//! Value parsers shared by the directive table: sizes, times, switches,
//! listen addresses, status codes, `proxy_pass` URLs, `HOST:PORT`.
//!
//! Each returns the value or a message for the user; the caller attaches the
//! position. Arithmetic is checked: a size that overflows is an error, never
//! a wrap.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::time::Duration;

use crate::routing::Expires;

/// `123`, `8k`, `1m`, `2g` (powers of 1024).
pub fn size(text: &str) -> Result<u64, String> {
    let bad = || format!("invalid size \"{text}\" (a number of bytes, or with k, m or g)");
    let (digits, shift) = match text.as_bytes().last() {
        Some(b'k' | b'K') => (&text[..text.len() - 1], 10),
        Some(b'm' | b'M') => (&text[..text.len() - 1], 20),
        Some(b'g' | b'G') => (&text[..text.len() - 1], 30),
        _ => (text, 0),
    };
    number(digits)
        .ok_or_else(bad)?
        .checked_mul(1u64 << shift)
        .ok_or_else(|| format!("size \"{text}\" is too large"))
}

/// `500ms`, `30s`, `5m`, `1h`; a bare number is seconds.
pub fn time(text: &str) -> Result<Duration, String> {
    let bad = || format!("invalid time \"{text}\" (a number with ms, s, m or h; bare is seconds)");
    let (digits, millis_per_unit) = if let Some(d) = text.strip_suffix("ms") {
        (d, 1)
    } else if let Some(d) = text.strip_suffix('s') {
        (d, 1000)
    } else if let Some(d) = text.strip_suffix('m') {
        (d, 60_000)
    } else if let Some(d) = text.strip_suffix('h') {
        (d, 3_600_000)
    } else {
        (text, 1000)
    };
    let millis = number(digits)
        .ok_or_else(bad)?
        .checked_mul(millis_per_unit)
        .filter(|&ms| ms <= MAX_TIME_MS)
        .ok_or_else(|| format!("time \"{text}\" is too long (at most 24h)"))?;
    Ok(Duration::from_millis(millis))
}

const MAX_TIME_MS: u64 = 24 * 3_600_000;

/// `expires`: `off`, `epoch`, `max`, or a time with nginx's units (`ms`
/// `s` `m` `h` `d` `w` `M` `y`, bare is seconds), possibly negative.
pub fn expires(text: &str) -> Result<Expires, String> {
    match text {
        "off" => return Ok(Expires::Off),
        "epoch" => return Ok(Expires::Epoch),
        "max" => return Ok(Expires::Max),
        _ => {}
    }
    let bad =
        || format!("invalid expires \"{text}\" (off, epoch, max, or a time such as 1h, 30d, -1)");
    let (negative, rest) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    // Milliseconds are rounded down to seconds, as HTTP dates have none.
    let units: [(&str, u64, u64); 9] = [
        ("ms", 1, 1000),
        ("s", 1, 1),
        ("m", 60, 1),
        ("h", 3600, 1),
        ("d", 86_400, 1),
        ("w", 604_800, 1),
        ("M", 2_592_000, 1),
        ("y", 31_536_000, 1),
        ("", 1, 1),
    ];
    let (digits, mul, div) = units
        .iter()
        .find_map(|&(suffix, mul, div)| rest.strip_suffix(suffix).map(|d| (d, mul, div)))
        .ok_or_else(bad)?;
    let secs = number(digits)
        .ok_or_else(bad)?
        .checked_mul(mul)
        .map(|s| s / div)
        // Past a hundred years an `Expires` date means nothing more.
        .filter(|&s| s <= 100 * 31_536_000)
        .ok_or_else(|| format!("expires \"{text}\" is too long (at most 100y)"))?;
    let secs = i64::try_from(secs).map_err(|_| bad())?;
    Ok(Expires::Seconds(if negative { -secs } else { secs }))
}

/// ASCII digits only (no sign, no spaces), checked.
pub fn number(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// `on` or `off`.
pub fn switch(text: &str) -> Result<bool, String> {
    match text {
        "on" => Ok(true),
        "off" => Ok(false),
        _ => Err(format!("expected \"on\" or \"off\", found \"{text}\"")),
    }
}

/// An HTTP status code within `range`.
pub fn status(text: &str, range: std::ops::RangeInclusive<u16>) -> Result<u16, String> {
    let code = number(text)
        .and_then(|n| u16::try_from(n).ok())
        .ok_or_else(|| format!("invalid status code \"{text}\""))?;
    if range.contains(&code) {
        Ok(code)
    } else {
        Err(format!(
            "status code {code} out of range ({}-{})",
            range.start(),
            range.end()
        ))
    }
}

/// `listen`'s address: `PORT`, `ADDR:PORT` with ADDR an IPv4 address,
/// `[IPv6]`, `*` (all interfaces) or `localhost`.
pub fn listen_addr(text: &str) -> Result<SocketAddr, String> {
    let (host, port) = match text.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() => (Some(host), port),
        Some(_) => return Err(format!("invalid listen address \"{text}\"")),
        None => (None, text),
    };
    let port = port_number(port)?;
    let ip = match host {
        None | Some("*") => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        Some("localhost") => IpAddr::V4(Ipv4Addr::LOCALHOST),
        Some(h) => literal_ip(h).ok_or_else(|| {
            format!("invalid listen address \"{h}\" (an IPv4 address, [IPv6], * or localhost)")
        })?,
    };
    Ok(SocketAddr::new(ip, port))
}

/// `1.2.3.4` or `[::1]` (an IPv6 address must be bracketed).
fn literal_ip(host: &str) -> Option<IpAddr> {
    if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return inner.parse::<std::net::Ipv6Addr>().ok().map(IpAddr::V6);
    }
    host.parse::<Ipv4Addr>().ok().map(IpAddr::V4)
}

pub fn port_number(text: &str) -> Result<u16, String> {
    match number(text) {
        Some(p @ 1..=65535) => Ok(p as u16),
        Some(_) => Err(format!("port {text} out of range (1-65535)")),
        None => Err(format!("invalid port \"{text}\"")),
    }
}

/// `HOST:PORT` of an upstream server, resolved now (`localhost` works).
/// Only addresses without a hostname skip the resolver.
pub fn host_port(text: &str) -> Result<SocketAddr, String> {
    let (host, port) = text
        .rsplit_once(':')
        .filter(|(h, _)| !h.is_empty())
        .ok_or_else(|| format!("expected HOST:PORT, found \"{text}\""))?;
    let port = port_number(port)?;
    if let Some(ip) = literal_ip(host) {
        return Ok(SocketAddr::new(ip, port));
    }
    if host.contains(['[', ']', '/', ' ']) {
        return Err(format!("invalid host \"{host}\""));
    }
    (host, port)
        .to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.next())
        .ok_or_else(|| format!("cannot resolve host \"{host}\""))
}

/// `proxy_pass http://AUTHORITY[/PREFIX]`, split but not yet resolved:
/// whether AUTHORITY is an upstream name depends on the whole file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyUrl {
    /// `HOST:PORT` or an upstream name, as written.
    pub authority: String,
    pub prefix: Option<String>,
}

pub fn proxy_url(text: &str) -> Result<ProxyUrl, String> {
    let rest = text.strip_prefix("http://").ok_or_else(|| {
        format!("invalid proxy_pass URL \"{text}\" (http://HOST:PORT[/PREFIX] or http://UPSTREAM[/PREFIX])")
    })?;
    let (authority, prefix) = match rest.find('/') {
        Some(i) => (&rest[..i], Some(rest[i..].to_string())),
        None => (rest, None),
    };
    if authority.is_empty() {
        return Err(format!("proxy_pass URL \"{text}\" has no host"));
    }
    Ok(ProxyUrl {
        authority: authority.to_string(),
        prefix,
    })
}

/// `weight=N`, N from 1 to 100.
pub fn weight(text: &str) -> Result<u32, String> {
    let n = text
        .strip_prefix("weight=")
        .ok_or_else(|| format!("expected weight=N, found \"{text}\""))?;
    match number(n) {
        Some(w @ 1..=100) => Ok(w as u32),
        _ => Err(format!("invalid weight \"{n}\" (1-100)")),
    }
}

/// `max_fails=N`, 0-1000 (0 turns failure accounting off).
pub fn max_fails(text: &str) -> Result<u32, String> {
    let n = text
        .strip_prefix("max_fails=")
        .ok_or_else(|| format!("expected max_fails=N, found \"{text}\""))?;
    match number(n) {
        Some(m @ 0..=1000) => Ok(m as u32),
        _ => Err(format!("invalid max_fails \"{n}\" (0-1000)")),
    }
}

/// `fail_timeout=TIME`.
pub fn fail_timeout(text: &str) -> Result<Duration, String> {
    let t = text
        .strip_prefix("fail_timeout=")
        .ok_or_else(|| format!("expected fail_timeout=TIME, found \"{text}\""))?;
    time(t)
}

/// `KEY=N` for `health_check`'s `fails` and `passes`: 1-1000.
pub fn check_count(text: &str, key: &str) -> Result<u32, String> {
    let n = text
        .strip_prefix(key)
        .and_then(|t| t.strip_prefix('='))
        .ok_or_else(|| format!("expected {key}=N, found \"{text}\""))?;
    match number(n) {
        Some(c @ 1..=1000) => Ok(c as u32),
        _ => Err(format!("invalid {key} \"{n}\" (1-1000)")),
    }
}

/// `interval=TIME` for `health_check`: at least a millisecond.
pub fn check_interval(text: &str) -> Result<Duration, String> {
    let t = text
        .strip_prefix("interval=")
        .ok_or_else(|| format!("expected interval=TIME, found \"{text}\""))?;
    let d = time(t)?;
    if d < Duration::from_millis(1) {
        return Err(format!("invalid interval \"{t}\" (at least 1ms)"));
    }
    Ok(d)
}

/// Optimal string alignment distance, for "did you mean".
pub fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut rows = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in rows.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in rows[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut d = (rows[i - 1][j] + 1)
                .min(rows[i][j - 1] + 1)
                .min(rows[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d = d.min(rows[i - 2][j - 2] + 1);
            }
            rows[i][j] = d;
        }
    }
    rows[a.len()][b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        let cases: &[(&str, Option<u64>)] = &[
            ("0", Some(0)),
            ("100", Some(100)),
            ("8k", Some(8192)),
            ("8K", Some(8192)),
            ("1m", Some(1 << 20)),
            ("2g", Some(2 << 30)),
            ("17179869183g", Some(17179869183 << 30)),
            ("17179869184g", None),
            ("99999999999999999999", None),
            ("", None),
            ("k", None),
            ("1.5m", None),
            ("-1", None),
            ("1 m", None),
            ("1mb", None),
        ];
        for (text, expected) in cases {
            assert_eq!(size(text).ok(), *expected, "{text:?}");
        }
    }

    #[test]
    fn times() {
        let cases: &[(&str, Option<u64>)] = &[
            ("0", Some(0)),
            ("30", Some(30_000)),
            ("30s", Some(30_000)),
            ("500ms", Some(500)),
            ("5m", Some(300_000)),
            ("1h", Some(3_600_000)),
            ("24h", Some(86_400_000)),
            ("25h", None),
            ("1d", None),
            ("ms", None),
            ("1.5s", None),
            ("18446744073709551615h", None),
        ];
        for (text, expected) in cases {
            let got = time(text).ok().map(|d| d.as_millis() as u64);
            assert_eq!(got, *expected, "{text:?}");
        }
    }

    #[test]
    fn listen_forms() {
        let cases: &[(&str, Option<&str>)] = &[
            ("8080", Some("0.0.0.0:8080")),
            ("127.0.0.1:8080", Some("127.0.0.1:8080")),
            ("*:80", Some("0.0.0.0:80")),
            ("localhost:81", Some("127.0.0.1:81")),
            ("[::1]:8080", Some("[::1]:8080")),
            ("[::]:1", Some("[::]:1")),
            ("65535", Some("0.0.0.0:65535")),
            ("0", None),
            ("65536", None),
            ("::1:80", None),
            (":80", None),
            ("127.0.0.1:", None),
            ("example.com:80", None),
            ("1.2.3:80", None),
            ("http", None),
        ];
        for (text, expected) in cases {
            let got = listen_addr(text).ok().map(|a| a.to_string());
            assert_eq!(got.as_deref(), *expected, "{text:?}");
        }
    }

    #[test]
    fn statuses() {
        assert_eq!(status("404", 300..=599), Ok(404));
        assert!(status("200", 300..=599).is_err());
        assert!(status("600", 100..=599).is_err());
        assert!(status("99", 100..=599).is_err());
        assert!(status("70000", 100..=599).is_err());
        assert!(status("abc", 100..=599).is_err());
    }

    #[test]
    fn proxy_urls() {
        let url = proxy_url("http://backend/api").expect("valid");
        assert_eq!(url.authority, "backend");
        assert_eq!(url.prefix.as_deref(), Some("/api"));
        let url = proxy_url("http://127.0.0.1:9000").expect("valid");
        assert_eq!(
            (url.authority.as_str(), url.prefix),
            ("127.0.0.1:9000", None)
        );
        assert!(proxy_url("https://x").is_err());
        assert!(proxy_url("http:///x").is_err());
    }

    #[test]
    fn host_ports() {
        assert_eq!(
            host_port("127.0.0.1:9000").map(|a| a.to_string()),
            Ok("127.0.0.1:9000".into())
        );
        assert!(host_port("localhost:9000").is_ok());
        assert!(host_port("9000").is_err());
        assert!(host_port("127.0.0.1:0").is_err());
        assert!(host_port("no-such-host.invalid:80").is_err());
    }

    #[test]
    fn weights() {
        assert_eq!(weight("weight=1"), Ok(1));
        assert_eq!(weight("weight=100"), Ok(100));
        assert!(weight("weight=0").is_err());
        assert!(weight("weight=101").is_err());
        assert!(weight("w=3").is_err());
    }

    #[test]
    fn distances() {
        let cases: &[(&str, &str, usize)] = &[
            ("lisen", "listen", 1),
            ("listne", "listen", 1),
            ("root", "root", 0),
            ("", "abc", 3),
            ("autoindx", "autoindex", 1),
            ("server_nmae", "server_name", 1),
        ];
        for (a, b, d) in cases {
            assert_eq!(edit_distance(a, b), *d, "{a} {b}");
        }
    }
}
