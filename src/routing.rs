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
//! 2. the `Host` header picks one of them ([`RoutingTable::select_server`]);
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
}

/// One `server { }` block.
#[derive(Debug, Serialize)]
pub struct Server {
    /// Lower-cased `server_name` values.
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
}

#[derive(Debug, Serialize)]
pub struct UpstreamServer {
    pub addr: SocketAddr,
    /// 1..=100.
    pub weight: u32,
}

/// Where `access_log` and `error_log` write.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum LogTarget {
    Off,
    Stdout,
    Stderr,
    File(PathBuf),
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
    /// SPEC §3 step 2: the server of `socket` whose `server_name` lists
    /// `host` (already without port), else the socket's default server.
    pub fn select_server(&self, socket: usize, host: Option<&str>) -> &Server {
        &self.servers[self.server_for(socket, host)]
    }

    /// [`RoutingTable::select_server`], as an index into `servers`.
    pub fn server_for(&self, socket: usize, host: Option<&str>) -> usize {
        let listen = &self.sockets[socket];
        host.and_then(|host| {
            listen.servers.iter().copied().find(|&i| {
                self.servers[i]
                    .names
                    .iter()
                    .any(|n| n.eq_ignore_ascii_case(host))
            })
        })
        .unwrap_or(listen.default_server)
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
