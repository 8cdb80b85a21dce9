//! The socket-free half of `proxy_pass` (SPEC §4, §8): what to send to an
//! upstream, how to read its answer, which server to use and which idle
//! connection to reuse. The server (`src/server/`) owns the sockets and
//! drives these steps, in order, for each proxied request:
//!
//! 1. [`Balancer::pick`] chooses a server of the location's upstream group
//!    (smooth weighted round-robin, as nginx); after a failed connect,
//!    [`Balancer::failed`] marks it down for [`FAIL_TIMEOUT`] and
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

use std::collections::HashMap;
use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use crate::http::path;
use crate::http::request::Request;
use crate::http::response::write_header;
use crate::routing::{Location, ProxyPass, Upstream};

/// An upstream response head larger than this is a 502 (nginx's
/// `proxy_buffer_size` is one page; 16 KiB leaves room for big cookies).
pub const MAX_RESPONSE_HEAD: usize = 16 * 1024;

/// More response headers than this is a 502, as a head that is too large.
const MAX_RESPONSE_HEADERS: usize = 100;

/// nginx's defaults `max_fails=1 fail_timeout=10s`: one failure takes a
/// server out of rotation for this long.
pub const FAIL_TIMEOUT: Duration = Duration::from_secs(10);

/// Idle connections kept per upstream address (as nginx's `keepalive 32`).
pub const POOL_PER_ADDR: usize = 32;

/// How long an idle upstream connection is kept (nginx's upstream
/// `keepalive_timeout` default).
pub const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Hop-by-hop fields (RFC 9110 §7.6.1, plus the obsolete `Keep-Alive` and
/// `Proxy-Connection`): they describe one connection and are never
/// forwarded, in either direction. Lower case.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
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
    /// The client's `X-Forwarded-For` values, joined, plus its address
    /// (nginx's `$proxy_add_x_forwarded_for`).
    forwarded_for: Vec<u8>,
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
/// `Proxy-Authorization` is forwarded, as nginx does: RFC 9110 §7.6.1 does
/// not list it as hop-by-hop, and §11.7.2 lets it pass a proxy that did
/// not ask for it; this server never sends 407, so the credentials are the
/// upstream's business.
///
/// `proxy_set_header` values may use nginx's common variables (see
/// [`expand`]); an empty result removes the header, as in nginx. Entries
/// for the fields the server owns (hop-by-hop ones and `Content-Length`)
/// are ignored, since they would break framing or pooling.
pub fn request_head(
    request: &Request,
    location: &Location,
    proxy: &ProxyPass,
    client: SocketAddr,
    body: BodyFraming,
) -> Vec<u8> {
    let ctx = Context {
        request,
        proxy,
        client,
        forwarded_for: forwarded_for(request, client),
    };
    let mut out = Vec::with_capacity(512);
    out.extend_from_slice(request.method_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(upstream_uri(request, location, proxy).as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    write_default_headers(&mut out, &ctx, location);
    write_configured_headers(&mut out, &ctx, location);
    write_client_headers(&mut out, &ctx, location);
    out.extend_from_slice(b"Connection: keep-alive\r\n");
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
        return original_uri(request.target());
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

/// The target without the scheme and authority of an absolute-form
/// target (RFC 9112 §3.2.2), which is for proxies, not origin servers.
fn original_uri(target: &str) -> String {
    let (path, query) = path::split_target(target.as_bytes());
    let mut uri = String::from_utf8_lossy(path).into_owned();
    if let Some(query) = query {
        uri.push('?');
        uri.push_str(&String::from_utf8_lossy(query));
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
            let _ = std::fmt::Write::write_fmt(&mut out, format_args!("%{b:02X}"));
        }
    }
    out
}

/// The client's `X-Forwarded-For` values plus its address.
fn forwarded_for(request: &Request, client: SocketAddr) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in request.headers() {
        if name.eq_ignore_ascii_case("x-forwarded-for") && !value.is_empty() {
            out.extend_from_slice(value);
            out.extend_from_slice(b", ");
        }
    }
    out.extend_from_slice(client_ip(client).to_string().as_bytes());
    out
}

/// An IPv4 client on a dual-stack socket shows as IPv4.
fn client_ip(client: SocketAddr) -> IpAddr {
    client.ip().to_canonical()
}

fn write_default_headers(out: &mut Vec<u8>, ctx: &Context<'_>, location: &Location) {
    let ip = client_ip(ctx.client).to_string();
    let defaults: [(&str, &[u8]); 4] = [
        ("Host", ctx.proxy.host.as_bytes()),
        ("X-Forwarded-For", &ctx.forwarded_for),
        ("X-Real-IP", ip.as_bytes()),
        ("X-Forwarded-Proto", b"http"),
    ];
    for (name, value) in defaults {
        if !is_configured(location, name) {
            write_header(out, name, value);
        }
    }
}

fn write_configured_headers(out: &mut Vec<u8>, ctx: &Context<'_>, location: &Location) {
    for (name, value) in &location.proxy_set_header {
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

fn write_client_headers(out: &mut Vec<u8>, ctx: &Context<'_>, location: &Location) {
    let listed = connection_tokens(ctx.request.headers());
    for (name, value) in ctx.request.headers() {
        let replaced = ["host", "content-length", "expect"]
            .iter()
            .chain(&["x-forwarded-for", "x-real-ip", "x-forwarded-proto"])
            .any(|n| name.eq_ignore_ascii_case(n));
        if replaced
            || is_hop_by_hop(name)
            || listed
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

/// Expands nginx variables in a `proxy_set_header` value: `$host`,
/// `$http_NAME` (a client header, `_` for `-`), `$remote_addr`,
/// `$remote_port`, `$proxy_host`, `$proxy_add_x_forwarded_for`, `$scheme`,
/// `$request_uri` and `$request_method`. An unknown or absent variable is
/// empty, as in nginx; a `$` not followed by a name stays as written.
fn expand(value: &str, ctx: &Context<'_>) -> Vec<u8> {
    let mut out = Vec::with_capacity(value.len());
    let mut rest = value;
    while let Some(dollar) = rest.find('$') {
        out.extend_from_slice(&rest.as_bytes()[..dollar]);
        let after = &rest[dollar + 1..];
        let len = after
            .bytes()
            .take_while(|b| b.is_ascii_alphanumeric() || *b == b'_')
            .count();
        if len == 0 {
            out.push(b'$');
        } else {
            variable(&after[..len], ctx, &mut out);
        }
        rest = &after[len..];
    }
    out.extend_from_slice(rest.as_bytes());
    out
}

fn variable(name: &str, ctx: &Context<'_>, out: &mut Vec<u8>) {
    let request = ctx.request;
    match name {
        "host" => out.extend_from_slice(request.host.as_deref().unwrap_or("").as_bytes()),
        "remote_addr" => {
            let _ = write!(out, "{}", client_ip(ctx.client));
        }
        "remote_port" => {
            let _ = write!(out, "{}", ctx.client.port());
        }
        "proxy_host" => out.extend_from_slice(ctx.proxy.host.as_bytes()),
        "proxy_add_x_forwarded_for" => out.extend_from_slice(&ctx.forwarded_for),
        "scheme" => out.extend_from_slice(b"http"),
        "request_uri" => out.extend_from_slice(request.target().as_bytes()),
        "request_method" => out.extend_from_slice(request.method_str().as_bytes()),
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

fn trim(bytes: &[u8]) -> &[u8] {
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

// ---------------------------------------------------------------------------
// 2. The upstream response head

/// A parsed upstream response head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamHead {
    pub status: u16,
    /// The headers to relay, in order, names as sent. Left out: hop-by-hop
    /// fields and those named in `Connection`, `Transfer-Encoding`,
    /// `Server` and `Date` (the server writes its own, as nginx does), and
    /// `Content-Length` except when [`ResponseFraming::Empty`] answers a
    /// HEAD or is a 304: there it describes the representation, not this
    /// message, so it stays (normalised) and the server adds no framing
    /// header of its own.
    pub headers: Vec<(String, Vec<u8>)>,
    pub framing: ResponseFraming,
    /// Whether the upstream connection may be pooled once the body is read.
    pub keep_alive: bool,
}

impl UpstreamHead {
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
) -> Result<Option<(UpstreamHead, usize)>, UpstreamError> {
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
    let keep_alive = framing != ResponseFraming::UntilClose && persists(&fields, minor_version);
    let keep_length = no_body && (request_method_is_head || status == 304);
    let head = UpstreamHead {
        status,
        headers: relayed_headers(&fields, keep_length),
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
        let n = parse_length(trim(value)).ok_or(UpstreamError::BadFraming)?;
        if length.is_some_and(|l| l != n) {
            return Err(UpstreamError::BadFraming);
        }
        length = Some(n);
    }
    Ok(length)
}

/// `Content-Length = 1*DIGIT`, no sign, no overflow.
fn parse_length(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 19 {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &d| {
        d.is_ascii_digit()
            .then(|| n.checked_mul(10)?.checked_add(u64::from(d - b'0')))
            .flatten()
    })
}

/// HTTP/1.1 persists unless `close`; HTTP/1.0 only with `keep-alive`.
fn persists(fields: &[(&str, &[u8])], minor_version: u8) -> bool {
    let tokens = connection_tokens(fields.iter().copied());
    let has = |t: &[u8]| tokens.iter().any(|x| x.eq_ignore_ascii_case(t));
    !has(b"close") && (minor_version >= 1 || has(b"keep-alive"))
}

fn relayed_headers(fields: &[(&str, &[u8])], keep_length: bool) -> Vec<(String, Vec<u8>)> {
    let listed = connection_tokens(fields.iter().copied());
    let mut out: Vec<(String, Vec<u8>)> = fields
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
        .map(|(name, value)| ((*name).to_owned(), value.to_vec()))
        .collect();
    if keep_length {
        if let Ok(Some(n)) = content_length(fields) {
            out.push(("Content-Length".to_owned(), n.to_string().into_bytes()));
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

/// Smooth weighted round-robin over each upstream group, with nginx's
/// failure accounting (`max_fails=1`, `fail_timeout=10s`).
#[derive(Debug)]
pub struct Balancer {
    groups: Vec<Vec<Peer>>,
}

#[derive(Debug)]
struct Peer {
    weight: i64,
    current: i64,
    /// Out of rotation until then, after a failure.
    down_until: Option<Instant>,
}

impl Peer {
    fn is_live(&self, now: Instant) -> bool {
        self.down_until.is_none_or(|t| now >= t)
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
                        down_until: None,
                    })
                    .collect()
            })
            .collect();
        Balancer { groups }
    }

    /// The next server of `group`, as an index into its `servers`.
    pub fn pick(&mut self, group: usize, now: Instant) -> Option<usize> {
        self.pick_excluding(group, &[], now)
    }

    /// The next server of `group` not in `tried` (the servers this request
    /// already failed to reach). Servers marked down are skipped until
    /// their [`FAIL_TIMEOUT`] is over; when every untried server is down,
    /// one is tried anyway, so a recovered server is found at once (nginx
    /// never refuses its only server, either). `None` when every server
    /// was tried, or the group is unknown or empty.
    pub fn pick_excluding(&mut self, group: usize, tried: &[usize], now: Instant) -> Option<usize> {
        let peers = self.groups.get_mut(group)?;
        let untried = |i: usize| !tried.contains(&i);
        smooth_pick(peers, |i, p| untried(i) && p.is_live(now))
            .or_else(|| smooth_pick(peers, |i, _| untried(i)))
    }

    /// A connect or exchange with `server` failed: out for [`FAIL_TIMEOUT`].
    pub fn failed(&mut self, group: usize, server: usize, now: Instant) {
        if let Some(peer) = self.peer(group, server) {
            peer.down_until = Some(now + FAIL_TIMEOUT);
        }
    }

    /// `server` answered: back in rotation at once.
    pub fn succeeded(&mut self, group: usize, server: usize) {
        if let Some(peer) = self.peer(group, server) {
            peer.down_until = None;
        }
    }

    fn peer(&mut self, group: usize, server: usize) -> Option<&mut Peer> {
        self.groups.get_mut(group)?.get_mut(server)
    }
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
    idle: HashMap<SocketAddr, Vec<Idle<T>>>,
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
            idle: HashMap::new(),
        }
    }

    /// Keeps `conn` idle from `now`. When `addr` already has `per_addr`
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
        let list = self.idle.get_mut(&addr)?;
        let conn = list.pop().map(|i| i.conn);
        if list.is_empty() {
            self.idle.remove(&addr);
        }
        conn
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
    pub fn expire(&mut self, now: Instant, idle_timeout: Duration) -> Vec<T> {
        let mut expired = Vec::new();
        for list in self.idle.values_mut() {
            let (old, keep): (Vec<_>, Vec<_>) = std::mem::take(list)
                .into_iter()
                .partition(|i| now.saturating_duration_since(i.since) >= idle_timeout);
            expired.extend(old.into_iter().map(|i| i.conn));
            *list = keep;
        }
        self.idle.retain(|_, list| !list.is_empty());
        expired
    }

    /// When [`Pool::expire`] next has work, for the event loop's timeout.
    pub fn next_expiry(&self, idle_timeout: Duration) -> Option<Instant> {
        self.idle
            .values()
            .flatten()
            .map(|i| i.since + idle_timeout)
            .min()
    }

    /// Idle connections, over all addresses.
    pub fn len(&self) -> usize {
        self.idle.values().map(Vec::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.idle.is_empty()
    }
}

impl<T> Default for Pool<T> {
    fn default() -> Pool<T> {
        Pool::new(POOL_PER_ADDR)
    }
}
