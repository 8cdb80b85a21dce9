//! The socket-free half of `proxy_pass` (SPEC §4, §8): what to send to an
//! upstream, how to read its answer, which server to use and which idle
//! connection to reuse. The server (`src/server/`) owns the sockets and
//! drives these steps, in order, for each proxied request:
//!
//! 1. [`Balancer::pick`] chooses a server of the location's upstream group
//!    (smooth weighted round-robin, as nginx); after a failure,
//!    [`Balancer::failed`] counts it against `max_fails`/`fail_timeout` and
//!    [`Balancer::pick_excluding`] gives the next candidate for the same
//!    request; [`Balancer::succeeded`] clears the mark.
//! 2. [`Pool::take`] hands back an idle keep-alive connection to that
//!    server's address, if any (else the server connects).
//! 3. [`request_head`] writes the upstream request head: request line with
//!    the rewritten URI, client headers minus hop-by-hop ones,
//!    `proxy_set_header`, `X-Forwarded-*`, `Connection: keep-alive` and the
//!    body framing. The body follows as the server decides ([`BodyFraming`]).
//! 4. [`parse_response_head`] reads the upstream's status line and headers
//!    and decides the response framing (RFC 9112 §6.3); interim 1xx answers
//!    are returned too, for the server to drop before parsing again.
//! 5. When the response body is complete and [`UpstreamHead::keep_alive`]
//!    holds, [`Pool::put`] keeps the connection; [`Pool::expire`] closes
//!    connections idle for too long.

use std::borrow::Cow;
use std::cell::Cell;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::hash::{BuildHasherDefault, Hasher};
use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::http::parse_content_length;
use crate::http::path;
use crate::http::request::Request;
use crate::http::response::write_header;
use crate::http::trim_ows as trim;
use crate::http::vars;
use crate::routing::{Location, Policy, ProxyPass, Upstream};

/// An upstream response head larger than this is a 502 (nginx's
/// `proxy_buffer_size` is one page; 16 KiB leaves room for big cookies).
pub const MAX_RESPONSE_HEAD: usize = 16 * 1024;

/// More response headers than this is a 502, as a head that is too large.
const MAX_RESPONSE_HEADERS: usize = 100;

/// Idle connections kept per upstream address (nginx's `keepalive N`; more
/// than its usual 32, so 50-100 busy clients do not churn connections).
pub const POOL_PER_ADDR: usize = 128;

/// How long an idle upstream connection is kept (nginx's upstream
/// `keepalive_timeout` default).
pub const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Hop-by-hop fields (RFC 9110 §7.6.1, plus the obsolete `Keep-Alive` and
/// `Proxy-Connection`, and the proxy credentials of RFC 9110 §11.7, which
/// are meant for this proxy, not the next hop): they describe one
/// connection and are never forwarded, in either direction (SPEC §9.3).
/// Lower case.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

// ---------------------------------------------------------------------------
// 1. The upstream request head

/// How the server sends the request body upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    None,
    Length(u64),
    /// A chunked client body is forwarded chunked, as it arrives.
    Chunked,
}

/// What the upstream request head is built from, besides the location.
struct Context<'a> {
    request: &'a Request,
    proxy: &'a ProxyPass,
    client: SocketAddr,
    /// The field names the client's `Connection` header lists.
    listed: Vec<&'a [u8]>,
    /// The client's `X-Forwarded-For` values, joined, plus its address
    /// (nginx's `$proxy_add_x_forwarded_for`).
    forwarded_for: Vec<u8>,
    /// Where the client's address starts in `forwarded_for` (it ends it).
    ip_at: usize,
}

impl Context<'_> {
    /// The client's address, as text (nginx's `$remote_addr`).
    fn ip(&self) -> &[u8] {
        &self.forwarded_for[self.ip_at..]
    }
}

/// The head of the request sent upstream, as nginx builds it.
///
/// Headers, in order: `Host` (the `proxy_pass` host), `X-Forwarded-For`,
/// `X-Real-IP`, `X-Forwarded-Proto` (each unless `proxy_set_header` names
/// it), then the `proxy_set_header` entries, then the client's headers
/// that are neither hop-by-hop, nor named in its `Connection`, nor one of
/// the above, nor `Content-Length` or `Expect` (the server answers
/// `100-continue` itself); last `Connection: keep-alive` (upstream
/// connections are pooled) and the framing header for `body`.
///
/// `Proxy-Authorization` is not forwarded (SPEC §9.3; nginx does forward
/// it): credentials for a proxy would leak to the application behind it.
///
/// `proxy_set_header` values may use nginx's common variables (`$host`,
/// `$http_NAME`, `$remote_addr`, `$remote_port`, `$proxy_host`,
/// `$proxy_add_x_forwarded_for`, `$scheme`, `$request_uri`,
/// `$request_method`); an empty result removes the header, as in nginx. Entries
/// for the fields the server owns (hop-by-hop ones and `Content-Length`)
/// are ignored, since they would break framing or pooling.
pub fn request_head(
    request: &Request,
    location: &Location,
    proxy: &ProxyPass,
    client: SocketAddr,
    body: BodyFraming,
) -> Vec<u8> {
    let listed = connection_tokens(request.headers());
    let (forwarded_for, ip_at) = forwarded_for(request, &listed, client);
    let ctx = Context {
        request,
        proxy,
        client,
        listed,
        forwarded_for,
        ip_at,
    };
    let mut out = Vec::with_capacity(512);
    out.extend_from_slice(request.method_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(upstream_uri(request, location, proxy).as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    write_default_headers(&mut out, &ctx, location);
    write_configured_headers(&mut out, &ctx, location);
    write_client_headers(&mut out, &ctx, location);
    match upgrade_of(request) {
        // SPEC §9.3: an upgrade is forwarded with both headers; on 101 the
        // connection becomes a tunnel and is never pooled.
        Some(protocol) => {
            write_header(&mut out, "Upgrade", protocol);
            out.extend_from_slice(b"Connection: upgrade\r\n");
        }
        None => out.extend_from_slice(b"Connection: keep-alive\r\n"),
    }
    match body {
        BodyFraming::None => {}
        BodyFraming::Length(n) => {
            let _ = write!(out, "Content-Length: {n}\r\n");
        }
        BodyFraming::Chunked => out.extend_from_slice(b"Transfer-Encoding: chunked\r\n"),
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// The request target sent upstream.
///
/// With a URI part in `proxy_pass`, the part of the normalised path that
/// matched the location is replaced by it (the whole path for an exact
/// location), the rest percent-encoded, and the query appended as sent:
/// `location /api/ { proxy_pass http://b/v1/; }` maps `/api/x?q` to
/// `/v1/x?q`. Without one, the target goes as the client sent it, in
/// origin form (nginx sends the unparsed URI).
pub fn upstream_uri(request: &Request, location: &Location, proxy: &ProxyPass) -> String {
    let Some(prefix) = &proxy.prefix else {
        return request.request_uri().into_owned();
    };
    let rest = if location.exact {
        ""
    } else {
        // The location was chosen because its URI prefixes the path; the
        // whole path is the fallback should a caller pass another one.
        request
            .path
            .strip_prefix(location.uri.as_str())
            .unwrap_or(&request.path)
    };
    let mut uri = escape_unsafe(prefix);
    uri.push_str(&path::percent_encode_path(rest));
    if let Some(query) = request.query() {
        uri.push('?');
        uri.push_str(query);
    }
    uri
}

/// Percent-encodes what cannot stand in a request line (space, controls,
/// non-ASCII) in a configured URI prefix; the rest goes as written.
fn escape_unsafe(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_graphic() {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// The client's `X-Forwarded-For` values plus its address, and where the
/// address starts; values the client marked hop-by-hop (named in
/// `Connection`) are not forwarded.
fn forwarded_for(request: &Request, listed: &[&[u8]], client: SocketAddr) -> (Vec<u8>, usize) {
    const NAME: &str = "x-forwarded-for";
    let mut out = Vec::with_capacity(64);
    let hop = listed
        .iter()
        .any(|l| l.eq_ignore_ascii_case(NAME.as_bytes()));
    for (name, value) in request.headers() {
        if !hop && name.eq_ignore_ascii_case(NAME) && !value.is_empty() {
            out.extend_from_slice(value);
            out.extend_from_slice(b", ");
        }
    }
    let ip_at = out.len();
    write_ip(&mut out, client_ip(client));
    (out, ip_at)
}

/// Writes `ip` as text. IPv4 digit by digit: `Ipv4Addr`'s `Display` goes
/// through the formatting machinery and costs some 1,300 instructions, a
/// tenth of a proxied request's own work.
fn write_ip(out: &mut Vec<u8>, ip: IpAddr) {
    let IpAddr::V4(v4) = ip else {
        let _ = write!(out, "{ip}");
        return;
    };
    for (i, octet) in v4.octets().into_iter().enumerate() {
        if i > 0 {
            out.push(b'.');
        }
        if octet >= 100 {
            out.push(b'0' + octet / 100);
        }
        if octet >= 10 {
            out.push(b'0' + octet / 10 % 10);
        }
        out.push(b'0' + octet % 10);
    }
}

/// An IPv4 client on a dual-stack socket shows as IPv4.
fn client_ip(client: SocketAddr) -> IpAddr {
    client.ip().to_canonical()
}

fn write_default_headers(out: &mut Vec<u8>, ctx: &Context<'_>, location: &Location) {
    let defaults: [(&str, &[u8]); 4] = [
        ("Host", ctx.proxy.host.as_bytes()),
        ("X-Forwarded-For", &ctx.forwarded_for),
        ("X-Real-IP", ctx.ip()),
        ("X-Forwarded-Proto", ctx.request.scheme().as_bytes()),
    ];
    for (name, value) in defaults {
        if !is_configured(location, name) {
            write_header(out, name, value);
        }
    }
}

fn write_configured_headers(out: &mut Vec<u8>, ctx: &Context<'_>, location: &Location) {
    for (name, value) in location.proxy_set_header.iter() {
        if is_server_owned(name) || !is_token(name) {
            continue;
        }
        let value = expand(value, ctx);
        // A value that could end the header early is never sent.
        if !value.is_empty() && !value.iter().any(|&b| matches!(b, b'\r' | b'\n' | 0)) {
            write_header(out, name, &value);
        }
    }
}

/// Client fields the server replaces with its own, or drops (`Expect`:
/// the server answers `100-continue` itself).
const REPLACED: &[&str] = &[
    "host",
    "content-length",
    "expect",
    "x-forwarded-for",
    "x-real-ip",
    "x-forwarded-proto",
];

fn write_client_headers(out: &mut Vec<u8>, ctx: &Context<'_>, location: &Location) {
    for (name, value) in ctx.request.headers() {
        if REPLACED.iter().any(|n| name.eq_ignore_ascii_case(n))
            || is_hop_by_hop(name)
            || ctx
                .listed
                .iter()
                .any(|l| l.eq_ignore_ascii_case(name.as_bytes()))
            || is_configured(location, name)
        {
            continue;
        }
        write_header(out, name, value);
    }
}

fn is_configured(location: &Location, name: &str) -> bool {
    location
        .proxy_set_header
        .iter()
        .any(|(n, _)| n.eq_ignore_ascii_case(name) && !is_server_owned(n))
}

/// Fields whose `proxy_set_header` entries are ignored: the server writes
/// them itself, for framing and connection reuse.
fn is_server_owned(name: &str) -> bool {
    is_hop_by_hop(name) || name.eq_ignore_ascii_case("content-length")
}

fn is_hop_by_hop(name: &str) -> bool {
    HOP_BY_HOP.iter().any(|h| name.eq_ignore_ascii_case(h))
}

/// RFC 9110 §5.6.2 token characters.
fn is_token(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// The field names listed in `Connection` headers (RFC 9110 §7.6.1), as
/// sent; `close` and `keep-alive` are options, harmless to include.
fn connection_tokens<'a>(headers: impl Iterator<Item = (&'a str, &'a [u8])>) -> Vec<&'a [u8]> {
    headers
        .filter(|(name, _)| name.eq_ignore_ascii_case("connection"))
        .flat_map(|(_, value)| value.split(|&b| b == b','))
        .map(trim)
        .filter(|token| !token.is_empty())
        .collect()
}

/// The protocol an HTTP/1.1 request asks to switch to: its `Upgrade`
/// value, when its `Connection` lists `upgrade` (RFC 9110 §7.8).
pub fn upgrade_of(request: &Request) -> Option<&[u8]> {
    if request.minor_version == 0 {
        return None;
    }
    let mut values = request
        .headers()
        .filter(|(n, _)| n.eq_ignore_ascii_case("upgrade"))
        .map(|(_, v)| trim(v));
    // Most requests have no `Upgrade`: `Connection` is not even read.
    let protocol = values.next().filter(|v| !v.is_empty())?;
    if values.next().is_some() {
        return None;
    }
    let asked = connection_tokens(request.headers())
        .iter()
        .any(|t| t.eq_ignore_ascii_case(b"upgrade"));
    asked.then_some(protocol)
}

/// A `101 Switching Protocols` answer to an upgrade: the headers to relay
/// (hop-by-hop ones left out) and the protocol the upstream switched to.
#[derive(Debug)]
pub struct SwitchHead {
    pub headers: Vec<(String, Vec<u8>)>,
    pub upgrade: Vec<u8>,
}

/// `Ok(Some((head, len)))` when `buf` starts with a complete 101 head that
/// names its protocol; `Ok(None)` when it is incomplete or another status
/// (for [`parse_response_head`]); `Err` for a 101 without `Upgrade`.
pub fn parse_switch_head(buf: &[u8]) -> Result<Option<(SwitchHead, usize)>, UpstreamError> {
    let window = &buf[..buf.len().min(MAX_RESPONSE_HEAD)];
    let mut slots = [httparse::EMPTY_HEADER; MAX_RESPONSE_HEADERS];
    let mut raw = httparse::Response::new(&mut slots);
    let Ok(httparse::Status::Complete(len)) = raw.parse(window) else {
        return Ok(None);
    };
    if raw.code != Some(101) {
        return Ok(None);
    }
    let fields: Vec<(&str, &[u8])> = raw.headers.iter().map(|h| (h.name, h.value)).collect();
    let listed = connection_tokens(fields.iter().copied());
    let upgrade = values(&fields, "upgrade")
        .next()
        .map(trim)
        .filter(|v| !v.is_empty())
        .ok_or(UpstreamError::UnexpectedSwitch)?;
    let head = SwitchHead {
        upgrade: upgrade.to_vec(),
        headers: relayed_headers(&fields, &listed, false)
            .into_iter()
            .map(|(name, value)| (name.to_owned(), value.into_owned()))
            .collect(),
    };
    Ok(Some((head, len)))
}

/// Expands the variables of a `proxy_set_header` value: the proxy's own
/// (`$proxy_host`, `$proxy_add_x_forwarded_for`, and `$remote_addr` /
/// `$remote_port` of the client this request came from), then the request
/// variables every configured value knows ([`vars`]).
fn expand(value: &str, ctx: &Context<'_>) -> Vec<u8> {
    vars::expand(value, Some(ctx.request), |name, out| {
        match name {
            "proxy_host" => out.extend_from_slice(ctx.proxy.host.as_bytes()),
            "proxy_add_x_forwarded_for" => out.extend_from_slice(&ctx.forwarded_for),
            "remote_addr" => out.extend_from_slice(ctx.ip()),
            "remote_port" => {
                let _ = write!(out, "{}", ctx.client.port());
            }
            _ => return false,
        }
        true
    })
}

// ---------------------------------------------------------------------------
// 2. The upstream response head

/// A parsed upstream response head, borrowing the bytes it was parsed
/// from (no copy per header: the server writes them straight into the
/// client's head).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamHead<'a> {
    pub status: u16,
    /// The headers to relay, in order, names as sent. Left out: hop-by-hop
    /// fields and those named in `Connection`, `Transfer-Encoding`,
    /// `Server` and `Date` (the server writes its own, as nginx does), and
    /// `Content-Length` except when [`ResponseFraming::Empty`] answers a
    /// HEAD or is a 304: there it describes the representation, not this
    /// message, so it stays (normalised) and the server adds no framing
    /// header of its own.
    pub headers: Vec<(&'a str, Cow<'a, [u8]>)>,
    pub framing: ResponseFraming,
    /// Whether the upstream connection may be pooled once the body is read.
    pub keep_alive: bool,
}

impl UpstreamHead<'_> {
    /// A 1xx interim response (never 101, which is an error): the caller
    /// drops it and parses what follows as the real head.
    pub fn is_interim(&self) -> bool {
        self.status < 200
    }
}

/// How the upstream response body ends (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseFraming {
    /// No body: a HEAD request, 1xx, 204 or 304, whatever the headers say.
    Empty,
    Length(u64),
    Chunked,
    /// The body ends when the upstream closes the connection.
    UntilClose,
}

/// Why an upstream answer is refused. Each is a 502, and the upstream
/// connection is closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamError {
    /// Not an `HTTP/1.x` status line with a status from 100 to 599 and
    /// well-formed headers (HTTP/0.9 bodies, garbage, obs-fold).
    Malformed,
    /// A head over [`MAX_RESPONSE_HEAD`] or with too many headers.
    HeadTooLarge,
    /// A bad or conflicting `Content-Length`, `Content-Length` together
    /// with `Transfer-Encoding`, or a transfer coding other than a single
    /// `chunked` (as nginx: another coding cannot be relayed, since
    /// `Transfer-Encoding` is hop-by-hop).
    BadFraming,
    /// 101 Switching Protocols, though no upgrade was asked for (`Upgrade`
    /// is never forwarded).
    UnexpectedSwitch,
}

impl UpstreamError {
    /// SPEC §8: an answer that is not a valid HTTP/1.x head is 502.
    pub fn status(self) -> u16 {
        match self {
            UpstreamError::Malformed
            | UpstreamError::HeadTooLarge
            | UpstreamError::BadFraming
            | UpstreamError::UnexpectedSwitch => 502,
        }
    }
}

/// Parses the upstream response head at the start of `buf`.
///
/// `Ok(None)`: incomplete, read more. `Ok(Some((head, len)))`: the head
/// was `buf[..len]`; the body (or the next head) starts at `len`. When
/// [`UpstreamHead::is_interim`] holds (100, 102, 103...), the caller drops
/// `buf[..len]` and calls again: nginx does not relay interim responses.
pub fn parse_response_head(
    buf: &[u8],
    request_method_is_head: bool,
) -> Result<Option<(UpstreamHead<'_>, usize)>, UpstreamError> {
    let window = &buf[..buf.len().min(MAX_RESPONSE_HEAD)];
    let mut slots = [httparse::EMPTY_HEADER; MAX_RESPONSE_HEADERS];
    let mut raw = httparse::Response::new(&mut slots);
    let len = match raw.parse(window) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() >= MAX_RESPONSE_HEAD => {
            return Err(UpstreamError::HeadTooLarge)
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(UpstreamError::HeadTooLarge),
        Err(_) => return Err(UpstreamError::Malformed),
    };
    let minor_version = raw.version.ok_or(UpstreamError::Malformed)?;
    let status = raw.code.ok_or(UpstreamError::Malformed)?;
    if !(100..=599).contains(&status) {
        return Err(UpstreamError::Malformed);
    }
    if status == 101 {
        return Err(UpstreamError::UnexpectedSwitch);
    }
    let fields: Vec<(&str, &[u8])> = raw.headers.iter().map(|h| (h.name, h.value)).collect();
    let no_body = request_method_is_head || status < 200 || status == 204 || status == 304;
    let framing = if no_body {
        ResponseFraming::Empty
    } else {
        response_framing(&fields)?
    };
    let listed = connection_tokens(fields.iter().copied());
    let keep_alive = framing != ResponseFraming::UntilClose && persists(&listed, minor_version);
    let keep_length = no_body && (request_method_is_head || status == 304);
    let head = UpstreamHead {
        status,
        headers: relayed_headers(&fields, &listed, keep_length),
        framing,
        keep_alive,
    };
    Ok(Some((head, len)))
}

/// RFC 9112 §6.3 rules 3 to 8 for a response that may have a body.
fn response_framing(fields: &[(&str, &[u8])]) -> Result<ResponseFraming, UpstreamError> {
    let codings: Vec<&[u8]> = values(fields, "transfer-encoding")
        .flat_map(|v| v.split(|&b| b == b','))
        .map(trim)
        .collect();
    let length = content_length(fields)?;
    if codings.is_empty() {
        return Ok(match length {
            Some(n) => ResponseFraming::Length(n),
            None => ResponseFraming::UntilClose,
        });
    }
    match (codings.as_slice(), length) {
        ([only], None) if only.eq_ignore_ascii_case(b"chunked") => Ok(ResponseFraming::Chunked),
        _ => Err(UpstreamError::BadFraming),
    }
}

/// The `Content-Length`, if any: one value, or a list of equal ones.
fn content_length(fields: &[(&str, &[u8])]) -> Result<Option<u64>, UpstreamError> {
    let mut length = None;
    for value in values(fields, "content-length").flat_map(|v| v.split(|&b| b == b',')) {
        let n = parse_content_length(trim(value)).ok_or(UpstreamError::BadFraming)?;
        if length.is_some_and(|l| l != n) {
            return Err(UpstreamError::BadFraming);
        }
        length = Some(n);
    }
    Ok(length)
}

/// HTTP/1.1 persists unless `close`; HTTP/1.0 only with `keep-alive`.
/// `tokens`: the response's `Connection` tokens.
fn persists(tokens: &[&[u8]], minor_version: u8) -> bool {
    let has = |t: &[u8]| tokens.iter().any(|x| x.eq_ignore_ascii_case(t));
    !has(b"close") && (minor_version >= 1 || has(b"keep-alive"))
}

/// `listed`: the field names the response's `Connection` names.
fn relayed_headers<'a>(
    fields: &[(&'a str, &'a [u8])],
    listed: &[&[u8]],
    keep_length: bool,
) -> Vec<(&'a str, Cow<'a, [u8]>)> {
    let mut out: Vec<(&'a str, Cow<'a, [u8]>)> = fields
        .iter()
        .filter(|(name, _)| {
            !is_hop_by_hop(name)
                && !["content-length", "server", "date"]
                    .iter()
                    .any(|n| name.eq_ignore_ascii_case(n))
                && !listed
                    .iter()
                    .any(|l| l.eq_ignore_ascii_case(name.as_bytes()))
        })
        .map(|&(name, value)| (name, Cow::Borrowed(value)))
        .collect();
    if keep_length {
        if let Ok(Some(n)) = content_length(fields) {
            out.push(("Content-Length", Cow::Owned(n.to_string().into_bytes())));
        }
    }
    out
}

fn values<'a>(
    fields: &'a [(&'a str, &'a [u8])],
    name: &'a str,
) -> impl Iterator<Item = &'a [u8]> + 'a {
    fields
        .iter()
        .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| *v)
}

// ---------------------------------------------------------------------------
// 3. The balancer

/// Smooth weighted round-robin over each upstream group, with passive
/// health (SPEC §9.3): `max_fails` failures within `fail_timeout` take a
/// server out for `fail_timeout`; `backup` servers stand in only while
/// every other one is out (or was tried by this request).
#[derive(Debug)]
pub struct Balancer {
    groups: Vec<Vec<Peer>>,
    policies: Vec<Policy>,
}

/// One request in progress on a server, for `least_conn`: counted while
/// this lives (a request that ends any way at all drops it).
#[derive(Debug)]
pub struct Active(Rc<Cell<u32>>);

impl Drop for Active {
    fn drop(&mut self) {
        self.0.set(self.0.get().saturating_sub(1));
    }
}

#[derive(Debug)]
struct Peer {
    weight: i64,
    current: i64,
    max_fails: u32,
    fail_timeout: Duration,
    backup: bool,
    /// Failures counted since `window_start`.
    fails: u32,
    window_start: Option<Instant>,
    /// Out of rotation until then.
    down_until: Option<Instant>,
    /// Out of rotation by active health checks until they pass again.
    check_down: bool,
    /// Requests in progress on this server.
    active: Rc<Cell<u32>>,
}

impl Peer {
    fn is_live(&self, now: Instant) -> bool {
        !self.check_down && self.down_until.is_none_or(|t| now >= t)
    }
}

impl Balancer {
    /// One state per group, in the order of `upstreams` (so a
    /// [`ProxyPass::upstream`] index is a group index).
    pub fn new(upstreams: &[Upstream]) -> Balancer {
        let groups = upstreams
            .iter()
            .map(|u| {
                u.servers
                    .iter()
                    .map(|s| Peer {
                        weight: i64::from(s.weight),
                        current: 0,
                        max_fails: s.max_fails,
                        fail_timeout: s.fail_timeout,
                        backup: s.backup,
                        fails: 0,
                        window_start: None,
                        down_until: None,
                        check_down: false,
                        active: Rc::default(),
                    })
                    .collect()
            })
            .collect();
        let policies = upstreams.iter().map(|u| u.policy).collect();
        Balancer { groups, policies }
    }

    /// Counts a request on `server` until the returned guard is dropped.
    pub fn active(&self, group: usize, server: usize) -> Option<Active> {
        let peer = self.groups.get(group)?.get(server)?;
        peer.active.set(peer.active.get().saturating_add(1));
        Some(Active(Rc::clone(&peer.active)))
    }

    /// The next server of `group`, as an index into its `servers`.
    pub fn pick(&mut self, group: usize, now: Instant) -> Option<usize> {
        self.pick_excluding(group, &[], now)
    }

    /// The next server of `group` not in `tried` (the servers this request
    /// already failed on): a live primary server; else, when every primary
    /// is out or tried, a live backup; else, when every untried server is
    /// out, the first untried one in the order of the configuration (nginx
    /// would answer 502 at once; we prefer a chance, and a recovered server
    /// is found at once). `None` when every server was tried, or the group
    /// is unknown or empty.
    pub fn pick_excluding(&mut self, group: usize, tried: &[usize], now: Instant) -> Option<usize> {
        self.choose(group, tried, IpAddr::from([0, 0, 0, 0]), now)
    }

    /// [`Balancer::pick_excluding`] for a request from `client`, under the
    /// group's policy.
    pub fn choose(
        &mut self,
        group: usize,
        tried: &[usize],
        client: IpAddr,
        now: Instant,
    ) -> Option<usize> {
        let policy = *self.policies.get(group)?;
        let peers = self.groups.get_mut(group)?;
        let untried = |i: usize| !tried.contains(&i);
        let primary = |i: usize, p: &Peer| untried(i) && !p.backup && p.is_live(now);
        let chosen = match policy {
            Policy::RoundRobin => smooth_pick(peers, primary),
            Policy::LeastConn => least_conn(peers, primary),
            Policy::IpHash => {
                ip_hash(peers, client, primary).or_else(|| smooth_pick(peers, primary))
            }
        };
        chosen
            .or_else(|| smooth_pick(peers, |i, p| untried(i) && p.backup && p.is_live(now)))
            .or_else(|| (0..peers.len()).find(|&i| untried(i)))
    }

    /// Whether `group` has a server that `tried` does not hold.
    pub fn has_untried(&self, group: usize, tried: &[usize]) -> bool {
        self.groups
            .get(group)
            .is_some_and(|peers| (0..peers.len()).any(|i| !tried.contains(&i)))
    }

    /// An exchange with `server` failed (connect error, reset or close
    /// before the response head, timeout, or a status `proxy_next_upstream`
    /// lists): the `max_fails`-th failure within `fail_timeout` takes it
    /// out for `fail_timeout`. A group of one is never taken out.
    pub fn failed(&mut self, group: usize, server: usize, now: Instant) {
        let Some(peers) = self.groups.get_mut(group) else {
            return;
        };
        if peers.len() < 2 {
            return;
        }
        let Some(peer) = peers.get_mut(server) else {
            return;
        };
        if peer.max_fails == 0 {
            return;
        }
        let window_over = peer
            .window_start
            .is_none_or(|start| now.saturating_duration_since(start) >= peer.fail_timeout);
        if window_over {
            peer.fails = 0;
            peer.window_start = Some(now);
        }
        peer.fails += 1;
        if peer.fails >= peer.max_fails {
            peer.down_until = Some(now.checked_add(peer.fail_timeout).unwrap_or(now));
            peer.fails = 0;
            peer.window_start = None;
        }
    }

    /// `server` answered: its failures are forgotten and it is back in
    /// rotation at once.
    pub fn succeeded(&mut self, group: usize, server: usize) {
        if let Some(peer) = self.peer(group, server) {
            peer.down_until = None;
            peer.fails = 0;
            peer.window_start = None;
        }
    }

    /// Active health checks found `server` down (`false`) or up again
    /// (`true`). Only the checks bring it back: a request that reaches it
    /// while every server is out does not.
    pub fn set_checked(&mut self, group: usize, server: usize, up: bool) {
        if let Some(peer) = self.peer(group, server) {
            peer.check_down = !up;
        }
    }

    fn peer(&mut self, group: usize, server: usize) -> Option<&mut Peer> {
        self.groups.get_mut(group)?.get_mut(server)
    }
}

/// The eligible peer with the fewest active requests per weight; ties go
/// round-robin among the tied.
fn least_conn(peers: &mut [Peer], eligible: impl Fn(usize, &Peer) -> bool) -> Option<usize> {
    // a/wa < b/wb without division: a*wb < b*wa.
    let load = |p: &Peer| (i64::from(p.active.get()), p.weight);
    let best = (0..peers.len())
        .filter(|&i| eligible(i, &peers[i]))
        .map(|i| load(&peers[i]))
        .reduce(|(a, wa), (b, wb)| if b * wa < a * wb { (b, wb) } else { (a, wa) })?;
    let (a, wa) = best;
    smooth_pick(peers, |i, p| {
        let (b, wb) = load(p);
        eligible(i, p) && b * wa == a * wb
    })
}

/// nginx's `ip_hash`: the first three octets of an IPv4 address (the
/// first eight bytes of an IPv6 one) hash to a point on the weights; a
/// peer that cannot take the request is rehashed, up to 20 times.
fn ip_hash(
    peers: &[Peer],
    client: IpAddr,
    eligible: impl Fn(usize, &Peer) -> bool,
) -> Option<usize> {
    let key: Vec<u8> = match client {
        IpAddr::V4(v4) => v4.octets()[..3].to_vec(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.octets()[..3].to_vec(),
            None => v6.octets()[..8].to_vec(),
        },
    };
    let total: i64 = peers.iter().map(|p| p.weight).sum();
    if total <= 0 {
        return None;
    }
    let mut hash: u64 = 89;
    for _ in 0..20 {
        for &b in &key {
            hash = (hash * 113 + u64::from(b)) % 6271;
        }
        let mut point = (hash % total as u64) as i64;
        let index = peers.iter().position(|p| {
            point -= p.weight;
            point < 0
        })?;
        if eligible(index, &peers[index]) {
            return Some(index);
        }
    }
    None
}

/// nginx's `ngx_http_upstream_get_peer`: every eligible peer gains its
/// weight, the one with the most current weight wins (the first on a tie)
/// and pays back the total. Weights 5, 1, 1 give `a a b a c a a`.
fn smooth_pick(peers: &mut [Peer], eligible: impl Fn(usize, &Peer) -> bool) -> Option<usize> {
    let mut total = 0i64;
    let mut best: Option<usize> = None;
    for i in 0..peers.len() {
        if !eligible(i, &peers[i]) {
            continue;
        }
        let weight = peers[i].weight;
        peers[i].current = peers[i].current.saturating_add(weight);
        total = total.saturating_add(weight);
        if best.is_none_or(|b| peers[i].current > peers[b].current) {
            best = Some(i);
        }
    }
    let chosen = &mut peers[best?];
    chosen.current = chosen.current.saturating_sub(total);
    best
}

// ---------------------------------------------------------------------------
// 4. The connection pool

/// Idle keep-alive connections to upstream addresses. The server stores
/// its sockets here; everything it gets back (evicted, expired) is for it
/// to close.
#[derive(Debug)]
pub struct Pool<T> {
    per_addr: usize,
    /// Per address, oldest first: connections are parked with the loop's
    /// clock, which only moves on, so the ones to expire lead each list.
    /// A list that empties stays, for the next `put` (usually right after
    /// the `take`) to find without allocating.
    idle: HashMap<SocketAddr, Vec<Idle<T>>, BuildHasherDefault<AddrHasher>>,
}

/// FNV-1a for the pool's keys. They are the configured servers'
/// addresses, not chosen by clients, so SipHash's defence against chosen
/// keys buys nothing there, and it cost some 350 instructions per lookup,
/// two lookups per proxied request.
struct AddrHasher(u64);

impl Default for AddrHasher {
    fn default() -> AddrHasher {
        AddrHasher(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for AddrHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
}

#[derive(Debug)]
struct Idle<T> {
    conn: T,
    since: Instant,
}

impl<T> Pool<T> {
    /// A pool keeping at most `per_addr` idle connections per address.
    pub fn new(per_addr: usize) -> Pool<T> {
        Pool {
            per_addr,
            idle: HashMap::default(),
        }
    }

    /// Keeps `conn` idle from `now` (never earlier than the `now` of the
    /// previous call). When `addr` already has `per_addr`
    /// idle connections, the oldest one is returned, to be closed.
    pub fn put(&mut self, addr: SocketAddr, conn: T, now: Instant) -> Option<T> {
        if self.per_addr == 0 {
            return Some(conn);
        }
        let list = self.idle.entry(addr).or_default();
        let evicted = (list.len() >= self.per_addr).then(|| list.remove(0).conn);
        list.push(Idle { conn, since: now });
        evicted
    }

    /// The most recently parked connection to `addr` (LIFO: the warmest,
    /// the least likely to have been closed by the upstream).
    pub fn take(&mut self, addr: SocketAddr) -> Option<T> {
        self.idle.get_mut(&addr)?.pop().map(|i| i.conn)
    }

    /// Takes out the idle connection to `addr` that `is` picks, e.g. one
    /// the upstream closed or wrote to while idle, to be closed.
    pub fn remove(&mut self, addr: SocketAddr, mut is: impl FnMut(&T) -> bool) -> Option<T> {
        let list = self.idle.get_mut(&addr)?;
        let at = list.iter().position(|i| is(&i.conn))?;
        let conn = list.remove(at).conn;
        if list.is_empty() {
            self.idle.remove(&addr);
        }
        Some(conn)
    }

    /// Takes out every connection idle for `idle_timeout` or more.
    /// Runs once per turn of the event loop: without work, it allocates
    /// nothing.
    pub fn expire(&mut self, now: Instant, idle_timeout: Duration) -> Vec<T> {
        let mut expired = Vec::new();
        for list in self.idle.values_mut() {
            let old =
                list.partition_point(|i| now.saturating_duration_since(i.since) >= idle_timeout);
            expired.extend(list.drain(..old).map(|i| i.conn));
        }
        if !expired.is_empty() {
            self.idle.retain(|_, list| !list.is_empty());
        }
        expired
    }

    /// When [`Pool::expire`] next has work, for the event loop's timeout.
    pub fn next_expiry(&self, idle_timeout: Duration) -> Option<Instant> {
        self.idle
            .values()
            .filter_map(|list| list.first())
            .filter_map(|i| i.since.checked_add(idle_timeout))
            .min()
    }

    /// Idle connections, over all addresses.
    pub fn len(&self) -> usize {
        self.idle.values().map(Vec::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.idle.values().all(Vec::is_empty)
    }
}

impl<T> Default for Pool<T> {
    fn default() -> Pool<T> {
        Pool::new(POOL_PER_ADDR)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routing::UpstreamServer;

    const CLIENT: &str = "10.0.0.1:5555";

    fn location(uri: &str, exact: bool, set: &[(&str, &str)]) -> Location {
        Location {
            uri: uri.to_owned(),
            exact,
            proxy_set_header: set
                .iter()
                .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
                .collect(),
            proxy_connect_timeout: Duration::from_secs(5),
            proxy_read_timeout: Duration::from_secs(60),
            ..Location::default()
        }
    }

    fn proxy(prefix: Option<&str>) -> ProxyPass {
        ProxyPass {
            upstream: 0,
            host: "backend".to_owned(),
            prefix: prefix.map(str::to_owned),
        }
    }

    fn request(head: &str) -> Request {
        match Request::parse(head.as_bytes(), 8192) {
            Ok(Some((request, _))) => request,
            other => panic!("bad test request {head:?}: {other:?}"),
        }
    }

    fn get(target: &str, headers: &str) -> Request {
        request(&format!(
            "GET {target} HTTP/1.1\r\nHost: front\r\n{headers}\r\n"
        ))
    }

    fn client() -> SocketAddr {
        CLIENT.parse().expect("valid address")
    }

    // -- URI rewriting ------------------------------------------------------

    #[test]
    fn upstream_uri_table() {
        // (location URI, exact, proxy_pass URI part, client target, sent)
        #[rustfmt::skip]
        let cases: &[(&str, bool, Option<&str>, &str, &str)] = &[
            ("/api/", false, Some("/v1/"), "/api/x?q", "/v1/x?q"),
            ("/api/", false, Some("/v1/"), "/api/", "/v1/"),
            ("/api/", false, Some("/"), "/api/a/b", "/a/b"),
            ("/api", false, Some("/v1/"), "/api/x", "/v1//x"),
            ("/api", false, Some("/v1"), "/apix", "/v1x"),
            ("/", false, Some("/base"), "/a?b=c&d", "/basea?b=c&d"),
            ("/", false, Some("/base/"), "/a?b=c&d", "/base/a?b=c&d"),
            ("/x", true, Some("/y/z"), "/x?k=v", "/y/z?k=v"),
            ("/x", true, Some("/"), "/x", "/"),
            ("/api/", false, Some("/v1/"), "/api/../api/./x//y", "/v1/x/y"),
            ("/api/", false, Some("/v1/"), "/api/a%20b", "/v1/a%20b"),
            ("/api/", false, Some("/v1/"), "/api/a%2Fb%3Fc", "/v1/a/b%3Fc"),
            ("/api/", false, Some("/v1/"), "/api/%C3%A9", "/v1/%C3%A9"),
            ("/api/", false, Some("/v1/"), "/api/x?", "/v1/x?"),
            ("/api/", false, Some("/v1/"), "/api/x?a=%20b", "/v1/x?a=%20b"),
            ("/api/", false, Some("/a b/"), "/api/x", "/a%20b/x"),
            ("/api/", false, None, "/api/./x//y?q=%20", "/api/./x//y?q=%20"),
            ("/api/", false, None, "/api/a%2Fb", "/api/a%2Fb"),
            ("/", false, None, "http://other:81/p?q", "/p?q"),
            ("/", false, None, "http://other", "/"),
        ];
        for (uri, exact, prefix, target, expected) in cases {
            let loc = location(uri, *exact, &[]);
            let sent = upstream_uri(&get(target, ""), &loc, &proxy(*prefix));
            assert_eq!(&sent, expected, "{uri} {prefix:?} {target}");
        }
    }

    // -- Request head -------------------------------------------------------

    fn head_with(head: &str, loc: &Location, body: BodyFraming) -> String {
        let bytes = request_head(&request(head), loc, &proxy(None), client(), body);
        String::from_utf8(bytes).expect("ASCII test head")
    }

    /// The header lines of a head, without the request line.
    fn lines(head: &str) -> Vec<&str> {
        let body = head
            .strip_suffix("\r\n\r\n")
            .expect("head ends with a blank line");
        body.split("\r\n").skip(1).collect()
    }

    fn values_of<'a>(head: &'a str, name: &str) -> Vec<&'a str> {
        lines(head)
            .into_iter()
            .filter_map(|l| l.split_once(": "))
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
            .collect()
    }

    #[test]
    fn typical_head_in_full() {
        let head = head_with(
            "POST /up?x HTTP/1.1\r\nHost: front\r\nUser-Agent: t\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n",
            &location("/", false, &[]),
            BodyFraming::Length(3),
        );
        assert_eq!(
            head,
            "POST /up?x HTTP/1.1\r\nHost: backend\r\nX-Forwarded-For: 10.0.0.1\r\n\
             X-Real-IP: 10.0.0.1\r\nX-Forwarded-Proto: http\r\nUser-Agent: t\r\n\
             Connection: keep-alive\r\nContent-Length: 3\r\n\r\n"
        );
    }

    #[test]
    fn request_line_keeps_method_and_speaks_http_1_1() {
        let head = head_with(
            "BREW /pot HTTP/1.0\r\n\r\n",
            &location("/", false, &[]),
            BodyFraming::None,
        );
        assert!(head.starts_with("BREW /pot HTTP/1.1\r\n"), "{head}");
    }

    #[test]
    fn header_filtering_table() {
        // (client headers, proxy_set_header, body, header name, values sent)
        type Case<'a> = (
            &'a str,
            &'a [(&'a str, &'a str)],
            BodyFraming,
            &'a str,
            &'a [&'a str],
        );
        let none: &[(&str, &str)] = &[];
        #[rustfmt::skip]
        let cases: &[Case] = &[
            // hop-by-hop, and what the client's Connection names
            ("Connection: keep-alive, X-Secret\r\nX-Secret: s\r\n", none, BodyFraming::None, "x-secret", &[]),
            ("Connection: close\r\n", none, BodyFraming::None, "connection", &["keep-alive"]),
            ("Keep-Alive: timeout=5\r\n", none, BodyFraming::None, "keep-alive", &[]),
            ("Proxy-Connection: keep-alive\r\n", none, BodyFraming::None, "proxy-connection", &[]),
            ("TE: trailers\r\n", none, BodyFraming::None, "te", &[]),
            ("Trailer: X\r\n", none, BodyFraming::None, "trailer", &[]),
            ("Upgrade: websocket\r\n", none, BodyFraming::None, "upgrade", &[]),
            ("Proxy-Authorization: Basic eA==\r\n", none, BodyFraming::None, "proxy-authorization", &[]),
            ("Proxy-Authenticate: Basic\r\n", none, BodyFraming::None, "proxy-authenticate", &[]),
            ("X-Other: 1\r\nX-Other: 2\r\n", none, BodyFraming::None, "x-other", &["1", "2"]),
            // framing and Expect are the server's
            ("Expect: 100-continue\r\n", none, BodyFraming::None, "expect", &[]),
            ("Transfer-Encoding: chunked\r\n", none, BodyFraming::Chunked, "transfer-encoding", &["chunked"]),
            ("Transfer-Encoding: chunked\r\n", none, BodyFraming::Chunked, "content-length", &[]),
            ("Content-Length: 7\r\n", none, BodyFraming::Length(7), "content-length", &["7"]),
            ("Content-Length: 0\r\n", none, BodyFraming::None, "content-length", &[]),
            ("", &[("Content-Length", "9"), ("Connection", "close")], BodyFraming::None, "content-length", &[]),
            ("", &[("Connection", "")], BodyFraming::None, "connection", &["keep-alive"]),
            // Host
            ("", none, BodyFraming::None, "host", &["backend"]),
            ("", &[("Host", "h.example")], BodyFraming::None, "host", &["h.example"]),
            ("", &[("host", "$host:8080")], BodyFraming::None, "host", &["front:8080"]),
            ("", &[("Host", "$http_host")], BodyFraming::None, "host", &["front"]),
            ("", &[("Host", "$proxy_host")], BodyFraming::None, "host", &["backend"]),
            // proxy_set_header replaces or removes client headers
            ("Accept: a/b\r\n", &[("accept", "text/plain")], BodyFraming::None, "accept", &["text/plain"]),
            ("X-Drop: 1\r\n", &[("X-Drop", "")], BodyFraming::None, "x-drop", &[]),
            ("", &[("X-A", "1"), ("X-A", "2")], BodyFraming::None, "x-a", &["1", "2"]),
            ("", &[("X-Bad", "a\r\nInjected: 1")], BodyFraming::None, "injected", &[]),
            ("", &[("X-Bad", "a\r\nInjected: 1")], BodyFraming::None, "x-bad", &[]),
            ("", &[("Bad Name", "v")], BodyFraming::None, "bad name", &[]),
            // variables
            ("User-Agent: curl\r\n", &[("X-UA", "ua=$http_user_agent")], BodyFraming::None, "x-ua", &["ua=curl"]),
            ("", &[("X-Addr", "$remote_addr:$remote_port")], BodyFraming::None, "x-addr", &["10.0.0.1:5555"]),
            ("", &[("X-Line", "$request_method $request_uri $scheme")], BodyFraming::None, "x-line", &["GET /p?q http"]),
            ("", &[("X-Cost", "$ 5 and a$")], BodyFraming::None, "x-cost", &["$ 5 and a$"]),
            ("", &[("X-Unknown", "$nope")], BodyFraming::None, "x-unknown", &[]),
            ("", &[("X-Absent", "$http_x_absent")], BodyFraming::None, "x-absent", &[]),
            // X-Forwarded-*
            ("", none, BodyFraming::None, "x-forwarded-for", &["10.0.0.1"]),
            ("X-Forwarded-For: 1.2.3.4\r\n", none, BodyFraming::None, "x-forwarded-for", &["1.2.3.4, 10.0.0.1"]),
            ("X-Forwarded-For: 1.1.1.1\r\nX-Forwarded-For: 2.2.2.2\r\n", none, BodyFraming::None, "x-forwarded-for", &["1.1.1.1, 2.2.2.2, 10.0.0.1"]),
            ("Connection: X-Forwarded-For\r\nX-Forwarded-For: 1.2.3.4\r\n", none, BodyFraming::None, "x-forwarded-for", &["10.0.0.1"]),
            ("X-Forwarded-For: 1.2.3.4\r\n", &[("X-Forwarded-For", "$remote_addr")], BodyFraming::None, "x-forwarded-for", &["10.0.0.1"]),
            ("X-Forwarded-For: 1.2.3.4\r\n", &[("X-Chain", "$proxy_add_x_forwarded_for")], BodyFraming::None, "x-chain", &["1.2.3.4, 10.0.0.1"]),
            ("X-Real-IP: 6.6.6.6\r\n", none, BodyFraming::None, "x-real-ip", &["10.0.0.1"]),
            ("", &[("X-Real-IP", "")], BodyFraming::None, "x-real-ip", &[]),
            ("X-Forwarded-Proto: https\r\n", none, BodyFraming::None, "x-forwarded-proto", &["http"]),
        ];
        for (client_headers, set, body, name, expected) in cases {
            let head = head_with(
                &format!("GET /p?q HTTP/1.1\r\nHost: front\r\n{client_headers}\r\n"),
                &location("/", false, set),
                *body,
            );
            assert_eq!(&values_of(&head, name), expected, "{name} in\n{head}");
        }
    }

    #[test]
    fn ipv4_mapped_client_shows_as_ipv4() {
        let req = get("/", "");
        let mapped: SocketAddr = "[::ffff:1.2.3.4]:80".parse().expect("valid address");
        let v6: SocketAddr = "[2001:db8::1]:80".parse().expect("valid address");
        let loc = location("/", false, &[]);
        for (addr, ip) in [(mapped, "1.2.3.4"), (v6, "2001:db8::1")] {
            let head = request_head(&req, &loc, &proxy(None), addr, BodyFraming::None);
            let head = String::from_utf8(head).expect("ASCII");
            assert_eq!(values_of(&head, "x-real-ip"), [ip]);
        }
    }

    // -- Response head ------------------------------------------------------

    type Expected = Result<(u16, ResponseFraming, bool), UpstreamError>;

    fn parse(input: &str, head: bool) -> Expected {
        match parse_response_head(input.as_bytes(), head) {
            Ok(Some((h, len))) => {
                assert_eq!(len, input.len(), "{input:?}");
                Ok((h.status, h.framing, h.keep_alive))
            }
            Ok(None) => panic!("incomplete: {input:?}"),
            Err(e) => Err(e),
        }
    }

    #[test]
    fn response_framing_table() {
        use ResponseFraming::*;
        use UpstreamError::*;
        #[rustfmt::skip]
        let cases: &[(&str, bool, Expected)] = &[
            ("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", false, Ok((200, Length(5), true))),
            ("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", false, Ok((200, Length(0), true))),
            ("HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\n\r\n", false, Ok((200, Length(5), true))),
            ("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n", false, Ok((200, Length(5), true))),
            ("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", false, Ok((200, Chunked, true))),
            ("HTTP/1.1 200 OK\r\nTransfer-Encoding: Chunked \r\n\r\n", false, Ok((200, Chunked, true))),
            ("HTTP/1.1 200 OK\r\n\r\n", false, Ok((200, UntilClose, false))),
            ("HTTP/1.1 404 Not Found\r\nContent-Type: text/html\r\n\r\n", false, Ok((404, UntilClose, false))),
            ("HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n", false, Ok((204, Empty, true))),
            ("HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n", false, Ok((304, Empty, true))),
            ("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", true, Ok((200, Empty, true))),
            ("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", true, Ok((200, Empty, true))),
            ("HTTP/1.1 200 OK\r\n\r\n", true, Ok((200, Empty, true))),
            ("HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", true, Ok((200, Empty, true))),
            ("HTTP/1.1 500 Oops\r\nContent-Length: 2\r\n\r\n", false, Ok((500, Length(2), true))),
            ("HTTP/1.1 599 X\r\nContent-Length: 2\r\n\r\n", false, Ok((599, Length(2), true))),
            ("HTTP/1.1 200\r\nContent-Length: 2\r\n\r\n", false, Ok((200, Length(2), true))),
            // keep-alive
            ("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\n", false, Ok((200, Length(1), false))),
            ("HTTP/1.1 200 OK\r\nConnection: Keep-Alive, Close\r\nContent-Length: 1\r\n\r\n", false, Ok((200, Length(1), false))),
            ("HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n", false, Ok((200, Length(1), false))),
            ("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\n", false, Ok((200, Length(1), true))),
            ("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n\r\n", false, Ok((200, UntilClose, false))),
            ("HTTP/1.0 204 No Content\r\n\r\n", false, Ok((204, Empty, false))),
            // interim
            ("HTTP/1.1 100 Continue\r\n\r\n", false, Ok((100, Empty, true))),
            ("HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n", false, Ok((103, Empty, true))),
            ("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n", false, Err(UnexpectedSwitch)),
            // framing errors
            ("HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", false, Err(BadFraming)),
            ("HTTP/1.1 200 OK\r\nContent-Length: 1, 2\r\n\r\n", false, Err(BadFraming)),
            ("HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", false, Err(BadFraming)),
            ("HTTP/1.1 200 OK\r\nContent-Length: +1\r\n\r\n", false, Err(BadFraming)),
            ("HTTP/1.1 200 OK\r\nContent-Length: \r\n\r\n", false, Err(BadFraming)),
            ("HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n", false, Err(BadFraming)),
            ("HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", false, Err(BadFraming)),
            ("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", false, Err(BadFraming)),
            ("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", false, Err(BadFraming)),
            ("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", false, Err(BadFraming)),
            // not an HTTP/1.x head
            ("<html>hello</html>\r\n\r\n", false, Err(Malformed)),
            ("hello\n\n", false, Err(Malformed)),
            ("ICY 200 OK\r\n\r\n", false, Err(Malformed)),
            ("HTTP/2 200\r\n\r\n", false, Err(Malformed)),
            ("HTTP/2.0 200 OK\r\n\r\n", false, Err(Malformed)),
            ("HTTP/1.1 20 OK\r\n\r\n", false, Err(Malformed)),
            ("HTTP/1.1 2000 OK\r\n\r\n", false, Err(Malformed)),
            ("HTTP/1.1 099 Low\r\n\r\n", false, Err(Malformed)),
            ("HTTP/1.1 600 High\r\n\r\n", false, Err(Malformed)),
            ("HTTP/1.1 abc OK\r\n\r\n", false, Err(Malformed)),
            ("HTTP/1.1 200 OK\r\nX: a\r\n folded\r\n\r\n", false, Err(Malformed)),
            ("HTTP/1.1 200 OK\r\nBad Header\r\n\r\n", false, Err(Malformed)),
            ("HTTP/1.1 200 OK\r\nX\0: a\r\n\r\n", false, Err(Malformed)),
        ];
        for (input, head, expected) in cases {
            assert_eq!(&parse(input, *head), expected, "{input:?} head={head}");
            assert_eq!(
                parse(input, *head).err().map(UpstreamError::status),
                expected.err().map(|_| 502)
            );
        }
    }

    #[test]
    fn ip_text() {
        let cases: &[&str] = &[
            "0.0.0.0",
            "127.0.0.1",
            "10.20.30.40",
            "192.168.100.255",
            "9.99.100.199",
            "::1",
            "2001:db8::8a2e:370:7334",
        ];
        for text in cases {
            let mut out = Vec::new();
            write_ip(&mut out, text.parse().expect("an address"));
            assert_eq!(out, text.as_bytes());
        }
    }

    #[test]
    fn relayed_headers_table() {
        // (input, HEAD request, headers relayed)
        type Case<'a> = (&'a str, bool, &'a [(&'a str, &'a str)]);
        #[rustfmt::skip]
        let cases: &[Case] = &[
            ("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\nServer: up\r\nDate: x\r\n\r\n", false, &[("Content-Type", "text/plain")]),
            ("HTTP/1.1 200 OK\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\nKeep-Alive: timeout=5\r\nTransfer-Encoding: chunked\r\nTrailer: X-T\r\nUpgrade: h2c\r\nProxy-Connection: x\r\nProxy-Authenticate: Basic\r\nProxy-Authorization: x\r\nTE: trailers\r\nX-Keep: 2\r\n\r\n", false, &[("X-Keep", "2")]),
            ("HTTP/1.1 200 OK\r\nSet-Cookie: a=1\r\nset-cookie: b=2\r\nContent-Length: 0\r\n\r\n", false, &[("Set-Cookie", "a=1"), ("set-cookie", "b=2")]),
            ("HTTP/1.1 200 OK\r\nETag: \"e\"\r\nContent-Length: 5, 5\r\n\r\n", true, &[("ETag", "\"e\""), ("Content-Length", "5")]),
            ("HTTP/1.1 200 OK\r\nContent-Length: bogus\r\n\r\n", true, &[]),
            ("HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n", false, &[("Content-Length", "5")]),
            ("HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n", false, &[]),
            ("HTTP/1.1 200 OK\r\nX-Empty:\r\n\r\n", false, &[("X-Empty", "")]),
        ];
        for (input, head, expected) in cases {
            let (parsed, _) = parse_response_head(input.as_bytes(), *head)
                .expect("valid")
                .expect("complete");
            let got: Vec<(&str, &[u8])> = parsed.headers.iter().map(|(n, v)| (*n, &**v)).collect();
            let want: Vec<(&str, &[u8])> =
                expected.iter().map(|(n, v)| (*n, v.as_bytes())).collect();
            assert_eq!(got, want, "{input:?}");
        }
    }

    #[test]
    fn upgrade_requests_and_switch_heads() {
        #[rustfmt::skip]
        let cases: &[(&str, Option<&str>)] = &[
            ("Connection: Upgrade\r\nUpgrade: websocket\r\n", Some("websocket")),
            ("Connection: keep-alive, upgrade\r\nUpgrade: h2c, foo\r\n", Some("h2c, foo")),
            ("Upgrade: websocket\r\n", None),
            ("Connection: upgrade\r\n", None),
            ("Connection: upgrade\r\nUpgrade: a\r\nUpgrade: b\r\n", None),
        ];
        for (headers, want) in cases {
            let r = get("/", headers);
            assert_eq!(upgrade_of(&r), want.map(str::as_bytes), "{headers:?}");
        }
        let old = request("GET / HTTP/1.0\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: x\r\n\r\n");
        assert_eq!(upgrade_of(&old), None);

        let raw = b"HTTP/1.1 101 Switching\r\nUpgrade: websocket\r\nConnection: upgrade, X-A\r\nX-A: 1\r\nX-B: 2\r\n\r\nframes";
        let (head, len) = parse_switch_head(raw).expect("valid").expect("a 101");
        assert_eq!(&raw[len..], b"frames");
        assert_eq!(head.upgrade, b"websocket");
        let names: Vec<&str> = head.headers.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["X-B"]);
        assert!(parse_switch_head(b"HTTP/1.1 101 S\r\n\r\n").is_err());
        assert!(parse_switch_head(b"HTTP/1.1 200 OK\r\n\r\n")
            .expect("ok")
            .is_none());
        assert!(parse_switch_head(b"HTTP/1.1 101 S\r\nUpg")
            .expect("ok")
            .is_none());
    }

    #[test]
    fn interim_responses_are_dropped_by_looping() {
        let input = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: <x>\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok";
        let mut at = 0;
        let mut seen = Vec::new();
        let final_head = loop {
            let (head, len) = parse_response_head(&input[at..], false)
                .expect("valid")
                .expect("complete");
            at += len;
            seen.push(head.status);
            if !head.is_interim() {
                break head;
            }
        };
        assert_eq!(seen, [100, 103, 201]);
        assert_eq!(final_head.framing, ResponseFraming::Length(2));
        assert_eq!(&input[at..], b"ok");
    }

    #[test]
    fn every_split_is_partial_until_complete() {
        let input =
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello";
        let head_len = input.len() - 5;
        for cut in 0..head_len {
            assert_eq!(
                parse_response_head(&input[..cut], false),
                Ok(None),
                "cut {cut}"
            );
        }
        for end in head_len..=input.len() {
            let (head, len) = parse_response_head(&input[..end], false)
                .expect("valid")
                .expect("complete");
            assert_eq!((head.status, len), (200, head_len));
        }
    }

    #[test]
    fn head_size_is_capped() {
        let filler = "a".repeat(MAX_RESPONSE_HEAD);
        let partial = format!("HTTP/1.1 200 OK\r\nX: {filler}");
        assert_eq!(
            parse_response_head(partial.as_bytes(), false),
            Err(UpstreamError::HeadTooLarge)
        );
        let complete = format!("HTTP/1.1 200 OK\r\nX: {filler}\r\n\r\n");
        assert_eq!(
            parse_response_head(complete.as_bytes(), false),
            Err(UpstreamError::HeadTooLarge)
        );
        let many: String = (0..=MAX_RESPONSE_HEADERS)
            .map(|i| format!("X{i}: y\r\n"))
            .collect();
        let input = format!("HTTP/1.1 200 OK\r\n{many}\r\n");
        assert_eq!(
            parse_response_head(input.as_bytes(), false),
            Err(UpstreamError::HeadTooLarge)
        );
        // A small head followed by a large body is fine.
        let body = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: 20000\r\n\r\n{}",
            "b".repeat(20000)
        );
        let (head, len) = parse_response_head(body.as_bytes(), false)
            .expect("valid")
            .expect("complete");
        assert_eq!((head.framing, len), (ResponseFraming::Length(20000), 42));
        // Just under the cap and still partial: read more.
        let under = format!(
            "HTTP/1.1 200 OK\r\nX: {}",
            "a".repeat(MAX_RESPONSE_HEAD - 30)
        );
        assert_eq!(parse_response_head(under.as_bytes(), false), Ok(None));
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        const ALPHABET: &[u8] = b"HTTP/1.0 2045 \r\n:Content-Length,chunked\t\0\xff";
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..2000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let len = (seed % 64) as usize;
            let bytes: Vec<u8> = (0..len)
                .map(|i| ALPHABET[(seed as usize >> (i % 40)) % ALPHABET.len()])
                .collect();
            let _ = parse_response_head(&bytes, seed.is_multiple_of(2));
        }
    }

    // -- Balancer -----------------------------------------------------------

    fn group(weights: &[u32]) -> Upstream {
        Upstream {
            name: "g".to_owned(),
            servers: weights
                .iter()
                .enumerate()
                .map(|(i, &weight)| UpstreamServer {
                    weight,
                    ..UpstreamServer::new(SocketAddr::from(([127, 0, 0, 1], 9000 + i as u16)))
                })
                .collect(),
            policy: Policy::RoundRobin,
            health_check: None,
        }
    }

    /// The default `fail_timeout`.
    const FAIL_TIMEOUT: Duration = Duration::from_secs(10);

    fn with(servers: &[(u32, u32, u64, bool)]) -> Upstream {
        // (weight, max_fails, fail_timeout seconds, backup)
        Upstream {
            name: "g".to_owned(),
            servers: servers
                .iter()
                .enumerate()
                .map(|(i, &(weight, max_fails, secs, backup))| UpstreamServer {
                    addr: SocketAddr::from(([127, 0, 0, 1], 9000 + i as u16)),
                    weight,
                    max_fails,
                    fail_timeout: Duration::from_secs(secs),
                    backup,
                })
                .collect(),
            policy: Policy::RoundRobin,
            health_check: None,
        }
    }

    #[test]
    fn actively_down_servers_are_skipped_like_passively_out_ones() {
        let t0 = Instant::now();
        let g = with(&[(1, 0, 10, false), (1, 0, 10, false), (1, 0, 10, true)]);
        let mut b = Balancer::new(std::slice::from_ref(&g));
        b.set_checked(0, 0, false);
        let picks: Vec<usize> = (0..4).filter_map(|_| b.pick(0, t0)).collect();
        assert_eq!(picks, [1, 1, 1, 1]);
        // Every primary out: the backup.
        b.set_checked(0, 1, false);
        assert_eq!(b.pick(0, t0), Some(2));
        // Every server out: still tried, in order.
        b.set_checked(0, 2, false);
        assert_eq!(b.pick_excluding(0, &[], t0), Some(0));
        assert_eq!(b.pick_excluding(0, &[0], t0), Some(1));
        // A request that succeeds does not bring a server back; a check does.
        b.set_checked(0, 2, true);
        b.succeeded(0, 1);
        assert_eq!(b.pick(0, t0), Some(2));
        b.set_checked(0, 1, true);
        assert_eq!(b.pick(0, t0), Some(1));
        assert_eq!(b.pick(0, t0), Some(1));
    }

    #[test]
    fn least_conn_prefers_the_idle_server_weights_respected() {
        let t0 = Instant::now();
        let mut g = group(&[1, 1, 2]);
        g.policy = Policy::LeastConn;
        let mut b = Balancer::new(&[g]);
        // All idle: round-robin among the tied, weights respected.
        let first = b.pick(0, t0).expect("one");
        let held = b.active(0, first).expect("counted");
        let second = b.pick(0, t0).expect("two");
        assert_ne!(first, second);
        drop(held);
        let busy = b.active(0, 0).expect("counted");
        // c has weight 2: one request there weighs half of one on b.
        let _c = b.active(0, 2).expect("counted");
        assert_eq!(b.pick(0, t0), Some(1));
        let _b = b.active(0, 1).expect("counted");
        assert_eq!(b.pick(0, t0), Some(2));
        drop(busy);
        assert_eq!(b.pick(0, t0), Some(0));
    }

    #[test]
    fn ip_hash_is_stable_per_network() {
        let t0 = Instant::now();
        let mut g = group(&[1, 1, 1, 1]);
        g.policy = Policy::IpHash;
        let mut b = Balancer::new(&[g]);
        let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
        let a = b.choose(0, &[], ip("10.1.2.3"), t0);
        for other in ["10.1.2.200", "10.1.2.3", "::ffff:10.1.2.9"] {
            assert_eq!(b.choose(0, &[], ip(other), t0), a, "{other}");
        }
        let spread: std::collections::HashSet<_> = (0..64)
            .map(|n| b.choose(0, &[], ip(&format!("10.{n}.7.1")), t0))
            .collect();
        assert!(spread.len() > 1, "{spread:?}");
        let v6 = b.choose(0, &[], ip("2001:db8:1:2::1"), t0);
        assert_eq!(b.choose(0, &[], ip("2001:db8:1:2:ffff::9"), t0), v6);
        // Its server tried: another one, by rehash.
        let first = a.expect("a server");
        let next = b.choose(0, &[first], ip("10.1.2.3"), t0).expect("another");
        assert_ne!(next, first);
    }

    #[test]
    fn max_fails_within_fail_timeout_take_a_server_out() {
        let t0 = Instant::now();
        let mut b = Balancer::new(&[with(&[(1, 3, 10, false), (1, 1, 10, false)])]);
        b.failed(0, 0, t0);
        b.failed(0, 0, t0 + Duration::from_secs(5));
        assert_eq!(sequence(&mut b, 0, 2, t0 + Duration::from_secs(6)), "ab");
        // The window restarts after fail_timeout: a third failure later
        // counts as the first.
        b.failed(0, 0, t0 + Duration::from_secs(11));
        assert_eq!(sequence(&mut b, 0, 2, t0 + Duration::from_secs(11)), "ab");
        b.failed(0, 0, t0 + Duration::from_secs(12));
        b.failed(0, 0, t0 + Duration::from_secs(13));
        assert_eq!(sequence(&mut b, 0, 3, t0 + Duration::from_secs(14)), "bbb");
        // Out for fail_timeout from the last failure.
        assert_eq!(
            sequence(&mut b, 0, 2, t0 + Duration::from_secs(23))
                .matches('a')
                .count(),
            1
        );
    }

    #[test]
    fn max_fails_zero_never_takes_a_server_out() {
        let t0 = Instant::now();
        let mut b = Balancer::new(&[with(&[(1, 0, 10, false), (1, 1, 10, false)])]);
        for _ in 0..5 {
            b.failed(0, 0, t0);
        }
        assert_eq!(sequence(&mut b, 0, 4, t0), "abab");
    }

    #[test]
    fn backup_only_while_every_other_server_is_out() {
        let t0 = Instant::now();
        let mut b = Balancer::new(&[with(&[
            (1, 1, 10, false),
            (1, 1, 10, false),
            (1, 1, 10, true),
        ])]);
        assert_eq!(sequence(&mut b, 0, 4, t0), "abab");
        b.failed(0, 0, t0);
        assert_eq!(sequence(&mut b, 0, 2, t0), "bb");
        b.failed(0, 1, t0);
        assert_eq!(sequence(&mut b, 0, 2, t0), "cc");
        // Tried by this request counts as out.
        assert_eq!(
            b.pick_excluding(0, &[], t0 + FAIL_TIMEOUT).map(|i| i < 2),
            Some(true)
        );
        let mut b = Balancer::new(&[with(&[(1, 1, 10, false), (1, 1, 10, true)])]);
        assert_eq!(b.pick_excluding(0, &[0], t0), Some(1));
        // Everything out: still tried, in order.
        b.failed(0, 0, t0);
        b.failed(0, 1, t0);
        assert_eq!(b.pick_excluding(0, &[], t0), Some(0));
        assert_eq!(b.pick_excluding(0, &[0], t0), Some(1));
        assert_eq!(b.pick_excluding(0, &[0, 1], t0), None);
    }

    fn sequence(balancer: &mut Balancer, group: usize, n: usize, now: Instant) -> String {
        (0..n)
            .map(|_| match balancer.pick(group, now) {
                Some(i) => char::from(b'a' + i as u8),
                None => '-',
            })
            .collect()
    }

    #[test]
    fn smooth_weighted_round_robin_table() {
        let now = Instant::now();
        #[rustfmt::skip]
        let cases: &[(&[u32], &str)] = &[
            (&[5, 1, 1], "aabacaaaabacaa"),
            (&[1, 1, 1], "abcabc"),
            (&[2, 1], "abaaba"),
            (&[1], "aaa"),
            (&[3, 2], "ababaababa"),
        ];
        for (weights, expected) in cases {
            let mut balancer = Balancer::new(&[group(weights)]);
            assert_eq!(
                sequence(&mut balancer, 0, expected.len(), now),
                *expected,
                "{weights:?}"
            );
        }
    }

    #[test]
    fn groups_are_independent() {
        let now = Instant::now();
        let mut balancer = Balancer::new(&[group(&[1, 1]), group(&[1, 1, 1])]);
        assert_eq!(sequence(&mut balancer, 0, 1, now), "a");
        assert_eq!(sequence(&mut balancer, 1, 2, now), "ab");
        assert_eq!(sequence(&mut balancer, 0, 1, now), "b");
    }

    #[test]
    fn failed_server_is_skipped_until_fail_timeout() {
        let t0 = Instant::now();
        let mut balancer = Balancer::new(&[group(&[1, 1, 1])]);
        balancer.failed(0, 0, t0);
        let just_before = t0 + FAIL_TIMEOUT - Duration::from_millis(1);
        assert_eq!(
            sequence(&mut balancer, 0, 4, t0 + Duration::from_secs(1)),
            "bcbc"
        );
        assert_eq!(sequence(&mut balancer, 0, 2, just_before), "bc");
        let back = sequence(&mut balancer, 0, 6, t0 + FAIL_TIMEOUT);
        assert_eq!(back.matches('a').count(), 2, "{back}");
    }

    #[test]
    fn success_clears_a_failure() {
        let t0 = Instant::now();
        let mut balancer = Balancer::new(&[group(&[1, 1])]);
        balancer.failed(0, 1, t0);
        assert_eq!(sequence(&mut balancer, 0, 2, t0), "aa");
        balancer.succeeded(0, 1);
        assert_eq!(sequence(&mut balancer, 0, 4, t0).matches('b').count(), 2);
    }

    #[test]
    fn all_down_still_tries_one() {
        let t0 = Instant::now();
        let mut balancer = Balancer::new(&[group(&[1]), group(&[1, 1])]);
        balancer.failed(0, 0, t0);
        assert_eq!(balancer.pick(0, t0), Some(0));
        balancer.failed(1, 0, t0);
        balancer.failed(1, 1, t0);
        assert!(balancer.pick(1, t0).is_some());
        // The recovered one is found by the next request.
        balancer.succeeded(1, 1);
        assert_eq!(sequence(&mut balancer, 1, 3, t0), "bbb");
    }

    #[test]
    fn next_candidate_for_the_same_request() {
        let t0 = Instant::now();
        let mut balancer = Balancer::new(&[group(&[5, 1, 1])]);
        let first = balancer.pick(0, t0).expect("a server");
        balancer.failed(0, first, t0);
        let second = balancer.pick_excluding(0, &[first], t0).expect("another");
        assert_ne!(first, second);
        balancer.failed(0, second, t0);
        let third = balancer
            .pick_excluding(0, &[first, second], t0)
            .expect("the last one");
        assert!(![first, second].contains(&third));
        // Every server down but untried ones are tried anyway; none is left.
        balancer.failed(0, third, t0);
        assert_eq!(
            balancer.pick_excluding(0, &[first, second, third], t0),
            None
        );
        let mut fresh = Balancer::new(&[group(&[1, 1])]);
        fresh.failed(0, 1, t0);
        assert_eq!(fresh.pick_excluding(0, &[0], t0), Some(1));
    }

    #[test]
    fn unknown_indices_are_harmless() {
        let now = Instant::now();
        let mut balancer = Balancer::new(&[group(&[]), group(&[1])]);
        assert_eq!(balancer.pick(0, now), None);
        assert_eq!(balancer.pick(7, now), None);
        balancer.failed(7, 0, now);
        balancer.failed(1, 9, now);
        balancer.succeeded(7, 7);
        assert_eq!(balancer.pick(1, now), Some(0));
    }

    // -- Pool ---------------------------------------------------------------

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn pool_is_lifo_per_address() {
        let now = Instant::now();
        let mut pool: Pool<u32> = Pool::default();
        for conn in [1, 2, 3] {
            assert_eq!(pool.put(addr(1), conn, now), None);
        }
        assert_eq!(pool.put(addr(2), 20, now), None);
        assert_eq!(pool.len(), 4);
        let taken: Vec<Option<u32>> = (0..4).map(|_| pool.take(addr(1))).collect();
        assert_eq!(taken, [Some(3), Some(2), Some(1), None]);
        assert_eq!(pool.take(addr(2)), Some(20));
        assert!(pool.is_empty());
    }

    #[test]
    fn pool_cap_evicts_the_oldest() {
        let now = Instant::now();
        let mut pool: Pool<u32> = Pool::new(2);
        assert_eq!(pool.put(addr(1), 1, now), None);
        assert_eq!(pool.put(addr(1), 2, now), None);
        assert_eq!(pool.put(addr(1), 3, now), Some(1));
        assert_eq!(pool.put(addr(2), 4, now), None);
        assert_eq!(pool.len(), 3);
        assert_eq!(pool.take(addr(1)), Some(3));
        assert_eq!(pool.take(addr(1)), Some(2));
        let mut none: Pool<u32> = Pool::new(0);
        assert_eq!(none.put(addr(1), 9, now), Some(9));
        assert!(none.is_empty());
        let mut default: Pool<u32> = Pool::default();
        let evicted: Vec<u32> = (0..=POOL_PER_ADDR as u32)
            .filter_map(|c| default.put(addr(1), c, now))
            .collect();
        assert_eq!(evicted, [0]);
    }

    #[test]
    fn pool_expires_idle_connections() {
        let t0 = Instant::now();
        let idle = Duration::from_secs(60);
        let mut pool: Pool<u32> = Pool::default();
        pool.put(addr(1), 1, t0);
        pool.put(addr(2), 2, t0 + Duration::from_secs(10));
        pool.put(addr(1), 3, t0 + Duration::from_secs(30));
        assert_eq!(pool.next_expiry(idle), Some(t0 + idle));
        assert!(pool.expire(t0 + Duration::from_secs(59), idle).is_empty());
        assert_eq!(pool.expire(t0 + idle, idle), [1]);
        assert_eq!(pool.next_expiry(idle), Some(t0 + Duration::from_secs(70)));
        let mut rest = pool.expire(t0 + Duration::from_secs(90), idle);
        rest.sort_unstable();
        assert_eq!(rest, [2, 3]);
        assert!(pool.is_empty());
        assert_eq!(pool.next_expiry(idle), None);
        // A clock that went backwards expires nothing.
        pool.put(addr(1), 4, t0 + Duration::from_secs(100));
        assert!(pool.expire(t0, idle).is_empty());
    }

    #[test]
    fn pool_removes_a_chosen_connection() {
        let now = Instant::now();
        let mut pool: Pool<u32> = Pool::default();
        for conn in [1, 2, 3] {
            pool.put(addr(1), conn, now);
        }
        assert_eq!(pool.remove(addr(1), |&c| c == 2), Some(2));
        assert_eq!(pool.remove(addr(1), |&c| c == 2), None);
        assert_eq!(pool.remove(addr(9), |_| true), None);
        assert_eq!(pool.take(addr(1)), Some(3));
        assert_eq!(pool.remove(addr(1), |_| true), Some(1));
        assert!(pool.is_empty());
    }
}
