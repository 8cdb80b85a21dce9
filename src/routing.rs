//! The routing table: the immutable result of building a configuration.
//!
//! `config::load` produces a [`RoutingTable`]; the server reads it and never
//! changes it, so a reload (SIGHUP) swaps the whole table behind an `Arc`.
//! Every [`Location`] carries its *effective* settings: inheritance from the
//! top level through the server has already been applied, sizes are bytes,
//! times are `Duration`s and relative paths are absolute.
//!
//! Choosing where a request goes (SPEC §3), in order:
//! 1. the listening socket gives the candidate servers ([`ListenSocket`]);
//!    a wildcard socket that also takes a specific address's connections
//!    asks the connection's local address ([`RoutingTable::socket_for`]);
//! 2. the `Host` header picks one of them ([`RoutingTable::choose_server`]):
//!    exact name, longest `*.leading` wildcard, longest `trailing.*`
//!    wildcard ([`ServerNames`]), else the default server;
//! 3. in that server, an exact location, else the longest prefix, else the
//!    server's own settings ([`Server::select_location`]).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::http::Method;

/// Everything the server needs to serve, built from one configuration.
#[derive(Debug, Serialize)]
pub struct RoutingTable {
    /// One entry per distinct listen address, in order of first appearance.
    pub sockets: Vec<ListenSocket>,
    pub servers: Vec<Server>,
    pub upstreams: Vec<Upstream>,
    pub max_connections: usize,
    pub error_log: LogTarget,
    /// The least severe level `error_log` writes.
    pub error_log_level: LogLevel,
    pub worker_processes: WorkerProcesses,
    /// How long a stop or a reload lets requests in flight finish.
    pub worker_shutdown_timeout: Duration,
    /// Where the serving process writes its pid.
    pub pid: Option<PathBuf>,
}

/// `worker_processes`: a count, or one per CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum WorkerProcesses {
    Count(usize),
    Auto,
}

impl WorkerProcesses {
    /// How many workers to run (`auto`: the CPUs this process may use).
    pub fn resolve(self) -> usize {
        match self {
            WorkerProcesses::Count(n) => n,
            WorkerProcesses::Auto => std::thread::available_parallelism().map_or(1, usize::from),
        }
    }
}

/// A listening socket and the servers that share it.
#[derive(Debug, Serialize)]
pub struct ListenSocket {
    pub addr: SocketAddr,
    /// Indices into [`RoutingTable::servers`], in configuration order.
    pub servers: Vec<usize>,
    /// The `default_server` of this address, else the first server.
    pub default_server: usize,
    /// The largest `client_max_header_size` of these servers: how much of
    /// a head is read before `Host` says whose limit applies.
    pub max_header_size: usize,
    /// `listen ... ssl`: the TLS config its connections handshake with.
    #[serde(rename = "ssl", serialize_with = "ser_is_some")]
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Whether a `listen ... default_server` named it (else it is the first).
    pub explicit_default: bool,
    /// The `server_name`s of `servers`, indexed for the choice by `Host`.
    #[serde(skip)]
    pub names: ServerNames,
    /// The wildcard address of the same port and family (`listen P`,
    /// `*:P`, `0.0.0.0:P`, `[::]:P`) whose one socket also takes this
    /// address's connections: as nginx, only the wildcard is bound, and a
    /// connection's local address picks this entry (an index into
    /// [`RoutingTable::sockets`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bound_by: Option<usize>,
    /// For a wildcard: the specific addresses it takes connections for.
    #[serde(skip)]
    pub specific: Vec<usize>,
}

impl ListenSocket {
    /// Whether a socket of its own is bound for this address.
    pub fn is_bound(&self) -> bool {
        self.bound_by.is_none()
    }
}

/// Which rule chose the server for a request (SPEC §3 step 2, with nginx's
/// wildcard names), for tools that explain a choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum ServerMatch {
    /// `Host` is one of the server's names (`.example.com` also names
    /// `example.com` itself).
    ExactName,
    /// The longest `*.example.com` (or `.example.com`) that `Host` ends in.
    LeadingWildcard,
    /// The longest `www.example.*` that `Host` starts with.
    TrailingWildcard,
    /// No name matched: the address's `default_server`.
    DefaultServer,
    /// No name matched and the address has no `default_server`: the first
    /// server that listens there.
    FirstServer,
}

/// One `server_name` value, as nginx reads it. Anything else with a `*` is
/// refused by [`NamePattern::parse`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NamePattern<'a> {
    /// `example.com`.
    Exact(&'a str),
    /// `*.example.com`, holding `example.com`.
    Leading(&'a str),
    /// `.example.com`, holding `example.com`: both `example.com` and
    /// `*.example.com`.
    ExactAndLeading(&'a str),
    /// `www.example.*`, holding `www.example`.
    Trailing(&'a str),
}

impl<'a> NamePattern<'a> {
    /// Classifies a (lower-cased) `server_name` value. A wildcard is a whole
    /// label at the start or the end, as nginx requires.
    pub fn parse(name: &'a str) -> Result<Self, String> {
        let pattern = if let Some(rest) = name.strip_prefix("*.") {
            NamePattern::Leading(rest)
        } else if let Some(rest) = name.strip_suffix(".*") {
            NamePattern::Trailing(rest)
        } else if let Some(rest) = name.strip_prefix('.') {
            NamePattern::ExactAndLeading(rest)
        } else {
            NamePattern::Exact(name)
        };
        let inner = match pattern {
            NamePattern::Exact(inner)
            | NamePattern::Leading(inner)
            | NamePattern::ExactAndLeading(inner)
            | NamePattern::Trailing(inner) => inner,
        };
        let wildcard = !matches!(pattern, NamePattern::Exact(_));
        let bad_wildcard =
            wildcard && (inner.is_empty() || inner.starts_with('.') || inner.ends_with('.'));
        if inner.contains('*') || bad_wildcard {
            return Err(format!(
                "invalid server name \"{name}\" (a wildcard is \"*.\" at the start or \".*\" at the end, as in \"*.example.com\" or \"www.example.*\")"
            ));
        }
        Ok(pattern)
    }
}

/// The names of the servers sharing one address, looked up by `Host` with
/// a few hash probes (one per label at most), however many names there are.
#[derive(Debug, Clone, Default)]
pub struct ServerNames {
    exact: HashMap<Box<str>, usize>,
    /// `*.example.com` by `example.com`.
    leading: HashMap<Box<str>, usize>,
    /// `www.example.*` by `www.example`.
    trailing: HashMap<Box<str>, usize>,
}

impl ServerNames {
    /// Adds `pattern` for `server`; a key already taken keeps its first
    /// server (the configuration check reports the conflict).
    pub fn insert(&mut self, pattern: NamePattern, server: usize) {
        let add = |map: &mut HashMap<Box<str>, usize>, key: &str| {
            map.entry(key.into()).or_insert(server);
        };
        match pattern {
            NamePattern::Exact(name) => add(&mut self.exact, name),
            NamePattern::Leading(suffix) => add(&mut self.leading, suffix),
            NamePattern::ExactAndLeading(name) => {
                add(&mut self.exact, name);
                add(&mut self.leading, name);
            }
            NamePattern::Trailing(prefix) => add(&mut self.trailing, prefix),
        }
    }

    /// nginx's order: the exact name, then the longest leading wildcard,
    /// then the longest trailing wildcard. `host` is lower-case without a
    /// trailing dot, as [`crate::http::Request`] gives it.
    pub fn find(&self, host: &str) -> Option<(usize, ServerMatch)> {
        if let Some(&i) = self.exact.get(host) {
            return Some((i, ServerMatch::ExactName));
        }
        if !self.leading.is_empty() {
            // `a.b.example.com`: try `b.example.com`, then `example.com`, ...
            let mut rest = host;
            while let Some(dot) = rest.find('.') {
                rest = &rest[dot + 1..];
                if let Some(&i) = self.leading.get(rest) {
                    return Some((i, ServerMatch::LeadingWildcard));
                }
            }
        }
        if !self.trailing.is_empty() {
            // `www.example.co.uk`: try `www.example.co`, then `www.example`, ...
            let mut head = host;
            while let Some(dot) = head.rfind('.') {
                head = &head[..dot];
                if let Some(&i) = self.trailing.get(head) {
                    return Some((i, ServerMatch::TrailingWildcard));
                }
            }
        }
        None
    }
}

/// One `server { }` block.
#[derive(Debug, Serialize)]
pub struct Server {
    /// Lower-cased `server_name` values, each once, in order.
    pub names: Vec<String>,
    pub listen: Vec<SocketAddr>,
    /// `location = URI` blocks, by URI.
    pub exact: HashMap<String, usize>,
    /// Prefix locations as indices into `locations`, longest URI first.
    pub prefixes: Vec<usize>,
    /// Every location, in configuration order.
    pub locations: Vec<Location>,
    /// The server's own settings, used when no location matches
    /// (as if `location /` held them).
    pub fallback: Location,
    pub limits: Limits,
    pub access_log: LogTarget,
    /// `ssl_certificate` and its key, loaded.
    #[serde(skip)]
    pub tls: Option<Arc<rustls::sign::CertifiedKey>>,
    pub tls_versions: TlsVersions,
}

/// Limits that apply per connection, before a location is known.
#[derive(Debug, Clone, Serialize)]
pub struct Limits {
    pub client_max_header_size: usize,
    #[serde(serialize_with = "ser_duration")]
    pub client_header_timeout: Duration,
    #[serde(serialize_with = "ser_duration")]
    pub client_body_timeout: Duration,
    #[serde(serialize_with = "ser_duration")]
    pub send_timeout: Duration,
    /// `Duration::ZERO` disables keep-alive.
    #[serde(serialize_with = "ser_duration")]
    pub keepalive_timeout: Duration,
}

/// One `location` block with its effective settings. Paths and lists a
/// location inherits are shared with its server (`Arc`), not copied.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(test, derive(Default))]
pub struct Location {
    /// The location's URI; `/` for a server's fallback.
    pub uri: String,
    /// `location = URI`.
    pub exact: bool,
    pub root: Option<Arc<Path>>,
    pub alias: Option<Arc<Path>>,
    pub index: Arc<[String]>,
    pub autoindex: bool,
    pub methods: MethodSet,
    /// With `proxy_pass`: the location's own `methods`, any tokens; `None`
    /// forwards every method (SPEC §9.3).
    pub proxy_methods: Option<Arc<[String]>>,
    #[serde(rename = "return")]
    pub ret: Option<Return>,
    /// Status code → URI of the page, served through the same server.
    pub error_pages: Arc<HashMap<u16, String>>,
    /// `None` is unlimited (`client_max_body_size 0`).
    pub client_max_body_size: Option<u64>,
    pub upload_store: Option<Arc<Path>>,
    pub cgi: Arc<[CgiHandler]>,
    #[serde(serialize_with = "ser_duration")]
    pub cgi_timeout: Duration,
    /// `cgi_check_script off`: run the CGI even when the script file does
    /// not exist (as nginx's fastcgi_pass does).
    pub cgi_check_script: bool,
    pub proxy: Option<ProxyPass>,
    pub proxy_set_header: Arc<[(String, String)]>,
    #[serde(serialize_with = "ser_duration")]
    pub proxy_connect_timeout: Duration,
    #[serde(serialize_with = "ser_duration")]
    pub proxy_read_timeout: Duration,
    pub proxy_next_upstream: NextUpstream,
    /// `open_file_cache`; `None` is `off`.
    pub open_file_cache: Option<OpenFileCache>,
    /// What its responses get on the way out (SPEC §9.5).
    #[serde(flatten)]
    pub output: Output,
}

/// `open_file_cache max=N [inactive=TIME] [memory=SIZE] [small=SIZE]`
/// (SPEC §9.5): the bounds of one process's cache of served files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct OpenFileCache {
    /// The most entries (files, directories and 404 answers) kept.
    pub max: usize,
    /// An entry unused this long is dropped.
    #[serde(serialize_with = "ser_duration")]
    pub inactive: Duration,
    /// The most bytes the entries hold (file bytes, heads, paths).
    pub memory: u64,
    /// Files up to this size are kept in memory; larger ones as an open
    /// descriptor.
    pub small: u64,
}

impl Default for OpenFileCache {
    fn default() -> Self {
        OpenFileCache {
            max: 10_000,
            inactive: Duration::from_secs(60),
            memory: 64 << 20,
            small: 64 << 10,
        }
    }
}

/// A location's rules for the responses it sends, whoever makes them (a
/// file, a script, an upstream, an error page): shared pieces are behind
/// `Arc`s, so a CGI or proxy run keeps a copy cheaply.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(test, derive(Default))]
pub struct Output {
    /// Compress responses on the fly.
    pub gzip: bool,
    /// Media types compressed (`text/html` always; `*` any).
    pub gzip_types: Arc<[String]>,
    /// Shorter known bodies are sent as they are.
    pub gzip_min_length: u64,
    /// Send `FILE.gz` instead of `FILE` to a client that accepts gzip.
    pub gzip_static: bool,
    /// `add_header`, in order: this level's list, or the inherited one.
    pub add_header: Arc<[AddHeader]>,
    pub expires: Expires,
    /// `server_tokens`: the version in `Server`.
    pub server_tokens: bool,
}

/// `add_header NAME VALUE [always]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AddHeader {
    pub name: String,
    /// May hold variables, expanded per response.
    pub value: String,
    /// Also on error responses, not only the success and redirect codes.
    pub always: bool,
}

/// `expires`: what `Expires` and `Cache-Control` say.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(test, derive(Default))]
#[serde(rename_all = "lowercase")]
pub enum Expires {
    #[cfg_attr(test, default)]
    Off,
    /// `Expires` in 1970, `Cache-Control: no-cache`.
    Epoch,
    /// `Expires` in 2037, `Cache-Control: max-age` of ten years.
    Max,
    /// Seconds from now; negative: in the past, `no-cache`.
    Seconds(i64),
}

/// `proxy_next_upstream`: when a request goes on to the next server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NextUpstream(u8);

impl NextUpstream {
    pub const OFF: NextUpstream = NextUpstream(0);
    pub const ERROR: NextUpstream = NextUpstream(1);
    pub const TIMEOUT: NextUpstream = NextUpstream(2);
    const NAMES: [(&'static str, u8); 5] = [
        ("error", 1),
        ("timeout", 2),
        ("http_502", 4),
        ("http_503", 8),
        ("http_504", 16),
    ];

    pub fn from_name(name: &str) -> Option<NextUpstream> {
        Self::NAMES
            .iter()
            .find(|(n, _)| *n == name)
            .map(|&(_, bit)| NextUpstream(bit))
    }

    pub const fn with(self, other: NextUpstream) -> NextUpstream {
        NextUpstream(self.0 | other.0)
    }

    pub const fn has(self, flag: NextUpstream) -> bool {
        self.0 & flag.0 != 0
    }

    /// Whether an upstream answer with `status` is a failure to retry.
    pub fn has_status(self, status: u16) -> bool {
        let name = match status {
            502 => "http_502",
            503 => "http_503",
            504 => "http_504",
            _ => return false,
        };
        Self::from_name(name).is_some_and(|flag| self.has(flag))
    }
}

impl Serialize for NextUpstream {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let names = Self::NAMES
            .iter()
            .filter(|(_, bit)| self.0 & bit != 0)
            .map(|(n, _)| *n);
        s.collect_seq(names)
    }
}

/// `return CODE [URL or TEXT]`.
#[derive(Debug, Clone, Serialize)]
pub struct Return {
    pub code: u16,
    pub target: Option<String>,
}

/// `cgi .EXT [INTERPRETER]`.
#[derive(Debug, Clone, Serialize)]
pub struct CgiHandler {
    /// The extension with its dot, e.g. `.py`.
    pub ext: String,
    /// `None`: execute the script itself.
    pub interpreter: Option<PathBuf>,
}

/// `proxy_pass http://HOST:PORT[/PREFIX]` or `http://UPSTREAM[/PREFIX]`.
#[derive(Debug, Clone, Serialize)]
pub struct ProxyPass {
    /// Index into [`RoutingTable::upstreams`]; a direct address gets a group
    /// of its own, so every upstream connection is pooled the same way.
    pub upstream: usize,
    /// The host part of the URL (the group's name for a group): the default
    /// `Host` sent upstream.
    pub host: String,
    /// The URI part of the URL, if given: it replaces the location prefix.
    pub prefix: Option<String>,
}

/// An `upstream NAME { }` block, or the implicit group of a direct address.
#[derive(Debug, Serialize)]
pub struct Upstream {
    pub name: String,
    pub servers: Vec<UpstreamServer>,
    pub policy: Policy,
    /// `health_check`: active checks of every server, from each worker.
    pub health_check: Option<HealthCheck>,
}

/// `health_check URI [interval=TIME] [fails=N] [passes=N]` (SPEC §9.3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HealthCheck {
    /// Sent as `GET URI`.
    pub uri: String,
    /// From the start of one check to the start of the next.
    #[serde(serialize_with = "ser_duration")]
    pub interval: Duration,
    /// Failed checks in a row that take a server out.
    pub fails: u32,
    /// Passed checks in a row that bring it back.
    pub passes: u32,
    /// How long one check may take: the interval, or the top level's
    /// `proxy_connect_timeout` or `proxy_read_timeout` if shorter (set
    /// when the table is built).
    #[serde(serialize_with = "ser_duration")]
    pub timeout: Duration,
}

impl HealthCheck {
    /// `health_check URI` alone: nginx Plus's `interval=5s fails=1 passes=1`.
    pub fn new(uri: String) -> HealthCheck {
        HealthCheck {
            uri,
            interval: Duration::from_secs(5),
            fails: 1,
            passes: 1,
            timeout: Duration::from_secs(5),
        }
    }
}

/// How an upstream group picks a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Policy {
    /// Smooth weighted round-robin (nginx's default).
    #[default]
    RoundRobin,
    /// The fewest active requests per weight; ties by round-robin.
    LeastConn,
    /// The client's IPv4 /24 or IPv6 /64 picks the server.
    IpHash,
}

/// `server HOST:PORT [weight=N] [max_fails=N] [fail_timeout=TIME] [backup]`.
#[derive(Debug, Clone, Serialize)]
pub struct UpstreamServer {
    pub addr: SocketAddr,
    /// 1..=100.
    pub weight: u32,
    /// Failures within `fail_timeout` that take the server out; 0: never.
    pub max_fails: u32,
    /// The window failures are counted in, and how long the server is out.
    #[serde(serialize_with = "ser_duration")]
    pub fail_timeout: Duration,
    /// Used only while every other server is out.
    pub backup: bool,
}

impl UpstreamServer {
    /// nginx's defaults: `weight=1 max_fails=1 fail_timeout=10s`.
    pub fn new(addr: SocketAddr) -> UpstreamServer {
        UpstreamServer {
            addr,
            weight: 1,
            max_fails: 1,
            fail_timeout: Duration::from_secs(10),
            backup: false,
        }
    }
}

/// Where `access_log` and `error_log` write.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum LogTarget {
    Off,
    Stdout,
    Stderr,
    File(PathBuf),
}

/// The severity of an error log line, least severe first (nginx's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Debug,
    Info,
    Notice,
    Warn,
    Error,
}

impl LogLevel {
    pub fn from_name(name: &str) -> Option<LogLevel> {
        Some(match name {
            "debug" => LogLevel::Debug,
            "info" => LogLevel::Info,
            "notice" => LogLevel::Notice,
            "warn" => LogLevel::Warn,
            "error" => LogLevel::Error,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Notice => "notice",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
        }
    }
}

/// A small set of methods, as allowed by `methods`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MethodSet(u8);

impl MethodSet {
    pub const fn empty() -> Self {
        MethodSet(0)
    }

    pub fn insert(&mut self, method: Method) {
        self.0 |= method.bit();
    }

    pub fn contains(self, method: Method) -> bool {
        self.0 & method.bit() != 0
    }

    pub fn iter(self) -> impl Iterator<Item = Method> {
        Method::ALL.into_iter().filter(move |m| self.contains(*m))
    }
}

impl Serialize for MethodSet {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.iter().map(Method::as_str))
    }
}

fn ser_duration<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u128(d.as_millis())
}

impl RoutingTable {
    /// The entry of [`RoutingTable::sockets`] a connection accepted on the
    /// bound socket `bound` belongs to: the specific address it was made
    /// to (`local`, from getsockname), else `bound` itself (nginx's
    /// choice, SPEC §3 step 1).
    pub fn socket_for(&self, bound: usize, local: Option<SocketAddr>) -> usize {
        let specific = &self.sockets[bound].specific;
        local
            .and_then(|local| {
                specific
                    .iter()
                    .copied()
                    .find(|&i| self.sockets[i].addr == local)
            })
            .unwrap_or(bound)
    }

    /// Whether connections on the bound socket `bound` need their local
    /// address to find their entry (a getsockname per accept).
    pub fn needs_local_addr(&self, bound: usize) -> bool {
        !self.sockets[bound].specific.is_empty()
    }

    /// SPEC §3 step 2: the server of `socket` whose `server_name` matches
    /// `host` (already without port), else the socket's default server.
    pub fn select_server(&self, socket: usize, host: Option<&str>) -> &Server {
        &self.servers[self.server_for(socket, host)]
    }

    /// [`RoutingTable::select_server`], as an index into `servers`.
    pub fn server_for(&self, socket: usize, host: Option<&str>) -> usize {
        self.choose_server(socket, host).0
    }

    /// The server for a request to `socket` with `host`, as an index into
    /// `servers`, and the rule that chose it.
    pub fn choose_server(&self, socket: usize, host: Option<&str>) -> (usize, ServerMatch) {
        let listen = &self.sockets[socket];
        let found = host.and_then(|host| {
            if host.bytes().any(|b| b.is_ascii_uppercase()) {
                listen.names.find(&host.to_ascii_lowercase())
            } else {
                listen.names.find(host)
            }
        });
        found.unwrap_or_else(|| {
            let rule = if listen.explicit_default {
                ServerMatch::DefaultServer
            } else {
                ServerMatch::FirstServer
            };
            (listen.default_server, rule)
        })
    }
}

impl Server {
    /// SPEC §3 step 3: exact match, else longest prefix, else the fallback.
    /// `path` is already percent-decoded and normalised.
    pub fn select_location(&self, path: &str) -> &Location {
        if let Some(&i) = self.exact.get(path) {
            return &self.locations[i];
        }
        self.prefixes
            .iter()
            .map(|&i| &self.locations[i])
            .find(|l| path.starts_with(l.uri.as_str()))
            .unwrap_or(&self.fallback)
    }
}

/// `ssl_protocols`: which TLS versions a server offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct TlsVersions {
    pub tls12: bool,
    pub tls13: bool,
}

impl Default for TlsVersions {
    fn default() -> Self {
        TlsVersions {
            tls12: true,
            tls13: true,
        }
    }
}

fn ser_is_some<T, S: serde::Serializer>(value: &Option<T>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_bool(value.is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_patterns() {
        let cases: &[(&str, Result<NamePattern, ()>)] = &[
            ("example.com", Ok(NamePattern::Exact("example.com"))),
            ("*.example.com", Ok(NamePattern::Leading("example.com"))),
            (
                ".example.com",
                Ok(NamePattern::ExactAndLeading("example.com")),
            ),
            ("www.example.*", Ok(NamePattern::Trailing("www.example"))),
            ("", Ok(NamePattern::Exact(""))),
            ("*", Err(())),
            ("*.", Err(())),
            (".*", Err(())),
            (".", Err(())),
            ("*.*", Err(())),
            ("www.*.com", Err(())),
            ("*example.com", Err(())),
            ("www.example*", Err(())),
            ("*..example.com", Err(())),
            ("www..*", Err(())),
        ];
        for (name, expected) in cases {
            assert_eq!(
                NamePattern::parse(name).map_err(|_| ()),
                *expected,
                "{name:?}"
            );
        }
    }

    /// nginx's order: exact, longest leading wildcard, longest trailing one.
    #[test]
    fn names_match_exact_then_leading_then_trailing() {
        let mut names = ServerNames::default();
        let patterns = [
            ("example.com", 0),
            ("*.example.com", 1),
            ("*.a.example.com", 2),
            (".example.org", 3),
            ("www.example.*", 4),
            ("www.example.co.*", 5),
            ("*.com", 6),
            ("mail.*", 7),
        ];
        for (name, server) in patterns {
            names.insert(NamePattern::parse(name).expect("valid"), server);
        }
        use ServerMatch::{ExactName, LeadingWildcard, TrailingWildcard};
        let cases: &[(&str, Option<(usize, ServerMatch)>)] = &[
            ("example.com", Some((0, ExactName))),
            ("www.example.com", Some((1, LeadingWildcard))),
            ("x.y.example.com", Some((1, LeadingWildcard))),
            ("b.a.example.com", Some((2, LeadingWildcard))),
            ("a.example.com", Some((1, LeadingWildcard))),
            ("example.org", Some((3, ExactName))),
            ("www.example.org", Some((3, LeadingWildcard))),
            ("www.example.net", Some((4, TrailingWildcard))),
            ("www.example.co.uk", Some((5, TrailingWildcard))),
            ("www.example", None),
            ("other.com", Some((6, LeadingWildcard))),
            ("com", None),
            ("mail.example.net", Some((7, TrailingWildcard))),
            ("mail", None),
            ("xexample.org", None),
            ("", None),
        ];
        for (host, expected) in cases {
            assert_eq!(names.find(host), *expected, "{host:?}");
        }
    }
}
