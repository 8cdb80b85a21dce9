//! Merging scopes into the [`RoutingTable`]: defaults (from the directive
//! table) → top level → server → location, as one `inherit` step per level;
//! then the checks that need the whole picture: upstream names behind
//! `proxy_pass`, servers sharing a listen address (`default_server`,
//! `server_name`), and error page files.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use super::diag::{Diagnostic, FileId, Report, Span};
use super::directives::{Action, Args, DefaultValue, DIRECTIVES};
use super::grammar::Token;
use super::lint;
use super::scope::{At, Cgi, Context, Effective, ErrorPage, PathArg, Scope, Settings};
use super::values::{self, ProxyUrl};
use crate::handlers::{self, Plan};
use crate::http::request::Request;
use crate::routing::{
    AddHeader, CgiHandler, Limits, ListenSocket, Location, NamePattern, Output, Policy, ProxyPass,
    RoutingTable, Server, ServerNames, Upstream, UpstreamServer,
};

const HAS_DEFAULT: &str = "the directive table gives this setting a default";

pub fn build(main: &Scope, report: &mut Report) -> RoutingTable {
    let mut top = main.settings.clone();
    top.inherit(&table_defaults());
    let mut upstreams = Upstreams::named(main, &top);
    let mut servers = Vec::new();
    let mut merged = Vec::new();
    let server_scopes: Vec<&Scope> = main.blocks_of(Context::Server).collect();
    for scope in &server_scopes {
        let (server, settings) = build_server(scope, &top, &mut upstreams, report);
        servers.push(server);
        merged.push(settings);
    }
    let mut sockets = group_sockets(&server_scopes, report);
    for socket in &mut sockets {
        socket.max_header_size = socket
            .servers
            .iter()
            .map(|&i| servers[i].limits.client_max_header_size)
            .max()
            .unwrap_or(0);
    }
    super::tls::attach(&server_scopes, &mut servers, &mut sockets, report);
    warn_error_pages(&servers, &merged, report);
    let parts: Vec<lint::Parts> = server_scopes
        .iter()
        .zip(&servers)
        .map(|(scope, server)| lint::Parts::new(scope, server))
        .collect();
    // The lints reason about the table the server would run: with an
    // error there is none, and they would only add noise.
    if !report.has_errors() {
        lint::lint(main, &parts, &sockets, report);
    }
    RoutingTable {
        sockets,
        servers,
        upstreams: upstreams.list,
        max_connections: top.max_connections.expect(HAS_DEFAULT),
        error_log: top.error_log.as_ref().expect(HAS_DEFAULT).0.clone(),
        error_log_level: top.error_log.expect(HAS_DEFAULT).1,
        worker_processes: top.worker_processes.expect(HAS_DEFAULT),
        worker_shutdown_timeout: top.worker_shutdown_timeout.expect(HAS_DEFAULT),
        pid: top.pid,
    }
}

/// Every `DefaultValue::Value` of the table, applied through the
/// directive's own parser: each default is written once, in the table.
fn table_defaults() -> Settings {
    let span = Span {
        file: FileId(0),
        start: 0,
        end: 0,
    };
    let token = |text: &'static str| Token {
        text: text.into(),
        span,
    };
    let mut scope = Scope::new(Context::Main, span);
    for d in DIRECTIVES {
        if let (DefaultValue::Value(text), Action::Set(apply)) = (d.default, d.action) {
            let values: Vec<Token> = text.split_whitespace().map(token).collect();
            let args = Args {
                name: &token(d.name),
                values: &values,
                dir: Path::new("/"),
            };
            apply(&mut scope, &args).expect("defaults in the directive table parse");
        }
    }
    scope.settings
}

/// Settings of one server, merged with the top level, and what each of its
/// locations sets itself (in the order of `Server::locations`).
struct Merged<'a> {
    server: Settings,
    locations: Vec<&'a Settings>,
}

impl Merged<'_> {
    /// The effective settings of `server.locations[i]`, or of the server's
    /// fallback for `None`.
    fn effective(&self, i: Option<usize>) -> Effective<'_> {
        match i {
            Some(i) => Effective {
                own: self.locations[i],
                parent: &self.server,
            },
            None => Effective::of(&self.server),
        }
    }
}

fn build_server<'a>(
    scope: &'a Scope,
    top: &Settings,
    upstreams: &mut Upstreams,
    report: &mut Report,
) -> (Server, Merged<'a>) {
    let mut own = scope.settings.clone();
    own.inherit(top);
    let shared = Shared::of(&own);
    let mut locations = Vec::with_capacity(scope.blocks.len());
    let mut merged = Vec::with_capacity(scope.blocks.len());
    for block in scope.blocks_of(Context::Location) {
        let Some(uri) = &block.location else {
            continue;
        };
        let settings = Effective {
            own: &block.settings,
            parent: &own,
        };
        let proxy = settings
            .get(|s| &s.proxy_pass)
            .and_then(|p| upstreams.resolve(p, report));
        locations.push(location(&uri.uri, uri.exact, settings, &shared, proxy));
        merged.push(&block.settings);
    }
    let mut exact = HashMap::new();
    for (i, l) in locations.iter().enumerate().filter(|(_, l)| l.exact) {
        exact.entry(l.uri.clone()).or_insert(i);
    }
    let mut prefixes: Vec<usize> = (0..locations.len())
        .filter(|&i| !locations[i].exact)
        .collect();
    prefixes.sort_by_key(|&i| std::cmp::Reverse(locations[i].uri.len()));
    // A set, not `Vec::contains`: 200,000 names must not cost 200,000².
    let mut seen_names = HashSet::with_capacity(scope.server_names.len());
    let names: Vec<String> = scope
        .server_names
        .iter()
        .filter(|name| seen_names.insert(name.value.as_str()))
        .map(|name| name.value.clone())
        .collect();
    let server = Server {
        names,
        listen: scope.listen.iter().map(|l| l.value.addr).collect(),
        exact,
        prefixes,
        // The server's own settings: a location that sets nothing.
        fallback: location(
            "/",
            false,
            Effective {
                own: &Settings::default(),
                parent: &own,
            },
            &shared,
            None,
        ),
        locations,
        limits: limits(&own),
        access_log: own.access_log.clone().expect(HAS_DEFAULT),
        tls: None,
        tls_versions: own.ssl_protocols.expect(HAS_DEFAULT),
    };
    let merged = Merged {
        server: own,
        locations: merged,
    };
    (server, merged)
}

fn limits(s: &Settings) -> Limits {
    Limits {
        client_max_header_size: s.client_max_header_size.expect(HAS_DEFAULT),
        client_header_timeout: s.client_header_timeout.expect(HAS_DEFAULT),
        client_body_timeout: s.client_body_timeout.expect(HAS_DEFAULT),
        send_timeout: s.send_timeout.expect(HAS_DEFAULT),
        keepalive_timeout: s.keepalive_timeout.expect(HAS_DEFAULT),
    }
}

/// A server's paths and lists in the routing table's form, made once: every
/// location that does not set its own shares them.
struct Shared {
    root: Option<Arc<Path>>,
    alias: Option<Arc<Path>>,
    upload_store: Option<Arc<Path>>,
    index: Arc<[String]>,
    error_pages: Arc<HashMap<u16, String>>,
    cgi: Arc<[CgiHandler]>,
    proxy_set_header: Arc<[(String, String)]>,
    gzip_types: Arc<[String]>,
    add_header: Arc<[AddHeader]>,
}

impl Shared {
    fn of(server: &Settings) -> Self {
        Shared {
            root: server.root.as_deref().map(path),
            alias: server.alias.as_deref().map(path),
            upload_store: server.upload_store.as_deref().map(path),
            index: server.index.as_deref().expect(HAS_DEFAULT).into(),
            error_pages: error_pages(server.error_pages.as_deref().unwrap_or_default()),
            cgi: cgi(server.cgi.as_deref().unwrap_or_default()),
            proxy_set_header: server
                .proxy_set_header
                .as_deref()
                .unwrap_or_default()
                .into(),
            gzip_types: server.gzip_types.as_deref().expect(HAS_DEFAULT).into(),
            add_header: server.add_header.as_deref().unwrap_or_default().into(),
        }
    }
}

/// The location's own value of a field, converted, when it sets one; else the
/// server's, shared.
fn own_or<S, T: ?Sized>(
    own: &Option<S>,
    server: &Arc<T>,
    convert: impl Fn(&S) -> Arc<T>,
) -> Arc<T> {
    own.as_ref().map_or_else(|| Arc::clone(server), convert)
}

fn own_path_or(own: &Option<Box<At<PathArg>>>, server: &Option<Arc<Path>>) -> Option<Arc<Path>> {
    own.as_deref().map(path).or_else(|| server.clone())
}

fn path(p: &At<PathArg>) -> Arc<Path> {
    p.value.path.as_path().into()
}

fn error_pages(pages: &[At<ErrorPage>]) -> Arc<HashMap<u16, String>> {
    let map = pages
        .iter()
        .flat_map(|p| p.value.codes.iter().map(|&c| (c, p.value.uri.clone())))
        .collect();
    Arc::new(map)
}

fn cgi(handlers: &[At<Cgi>]) -> Arc<[CgiHandler]> {
    handlers
        .iter()
        .map(|c| CgiHandler {
            ext: c.value.ext.clone(),
            interpreter: c.value.interpreter.as_ref().map(|i| i.path.clone()),
        })
        .collect()
}

fn location(
    uri: &str,
    exact: bool,
    s: Effective,
    shared: &Shared,
    proxy: Option<ProxyPass>,
) -> Location {
    let own = s.own;
    let root = if own.inherits_root() {
        own_path_or(&own.root, &shared.root)
    } else {
        own.root.as_deref().map(path)
    };
    Location {
        uri: uri.to_string(),
        exact,
        root,
        alias: own_path_or(&own.alias, &shared.alias),
        index: own_or(&own.index, &shared.index, |i| i.as_slice().into()),
        autoindex: *s.get(|s| &s.autoindex).expect(HAS_DEFAULT),
        methods: *s.get(|s| &s.methods).expect(HAS_DEFAULT),
        proxy_methods: proxy_methods(own, proxy.is_some()),
        ret: s.ret().cloned(),
        error_pages: own_or(&own.error_pages, &shared.error_pages, |p| error_pages(p)),
        client_max_body_size: *s.get(|s| &s.client_max_body_size).expect(HAS_DEFAULT),
        upload_store: own_path_or(&own.upload_store, &shared.upload_store),
        cgi: own_or(&own.cgi, &shared.cgi, |c| cgi(c)),
        cgi_timeout: *s.get(|s| &s.cgi_timeout).expect(HAS_DEFAULT),
        cgi_check_script: *s.get(|s| &s.cgi_check_script).expect(HAS_DEFAULT),
        open_file_cache: *s.get(|s| &s.open_file_cache).expect(HAS_DEFAULT),
        proxy,
        proxy_set_header: own_or(&own.proxy_set_header, &shared.proxy_set_header, |h| {
            h.as_slice().into()
        }),
        proxy_connect_timeout: *s.get(|s| &s.proxy_connect_timeout).expect(HAS_DEFAULT),
        proxy_read_timeout: *s.get(|s| &s.proxy_read_timeout).expect(HAS_DEFAULT),
        proxy_next_upstream: *s.get(|s| &s.proxy_next_upstream).expect(HAS_DEFAULT),
        output: Output {
            gzip: *s.get(|s| &s.gzip).expect(HAS_DEFAULT),
            gzip_types: own_or(&own.gzip_types, &shared.gzip_types, |t| t.as_slice().into()),
            gzip_min_length: *s.get(|s| &s.gzip_min_length).expect(HAS_DEFAULT),
            gzip_static: *s.get(|s| &s.gzip_static).expect(HAS_DEFAULT),
            add_header: own_or(&own.add_header, &shared.add_header, |h| h.as_slice().into()),
            expires: *s.get(|s| &s.expires).expect(HAS_DEFAULT),
            server_tokens: *s.get(|s| &s.server_tokens).expect(HAS_DEFAULT),
        },
    }
}

/// A proxied location's own `methods`, known and other tokens alike.
fn proxy_methods(own: &Settings, proxied: bool) -> Option<Arc<[String]>> {
    let set = own.methods.filter(|_| proxied)?;
    let known = set.iter().map(|m| m.as_str().to_string());
    let other = own.other_methods.iter().map(|(t, _)| t.clone());
    Some(known.chain(other).collect())
}

/// Named `upstream` groups, then one implicit group per distinct direct
/// `proxy_pass` address (so every upstream connection is pooled alike).
struct Upstreams {
    list: Vec<Upstream>,
    by_name: HashMap<String, usize>,
    direct: HashMap<String, usize>,
    /// A top-level include failed (reported): an unknown name may be
    /// declared in the missing file, so it is not reported again.
    incomplete: bool,
}

impl Upstreams {
    fn named(main: &Scope, top: &Settings) -> Self {
        // A check lasts at most its interval, and no longer than a proxied
        // request may wait to connect or for an answer.
        let limit = [top.proxy_connect_timeout, top.proxy_read_timeout]
            .into_iter()
            .flatten()
            .min();
        let mut upstreams = Upstreams {
            list: Vec::new(),
            by_name: HashMap::new(),
            direct: HashMap::new(),
            incomplete: main.incomplete,
        };
        for block in main.blocks_of(Context::Upstream) {
            let Some(name) = &block.upstream_name else {
                continue;
            };
            let servers = block.members.iter().map(|m| m.value.clone()).collect();
            upstreams
                .by_name
                .entry(name.value.clone())
                .or_insert(upstreams.list.len());
            upstreams.list.push(Upstream {
                name: name.value.clone(),
                servers,
                policy: block.settings.policy.unwrap_or_default(),
                health_check: block.settings.health_check.clone().map(|mut check| {
                    check.timeout = limit.map_or(check.interval, |l| l.min(check.interval));
                    check
                }),
            });
        }
        upstreams
    }

    /// `proxy_pass http://NAME` (a declared group) or `http://HOST:PORT`.
    fn resolve(&mut self, url: &At<ProxyUrl>, report: &mut Report) -> Option<ProxyPass> {
        let ProxyUrl { authority, prefix } = &url.value;
        let upstream = if let Some(&i) = self.by_name.get(authority) {
            i
        } else if authority.contains(':') {
            match self.direct(authority) {
                Ok(i) => i,
                Err(message) => {
                    report.push(Diagnostic::error(url.arg, "proxy-pass-address", message));
                    return None;
                }
            }
        } else {
            if !self.incomplete {
                report.push(Diagnostic::error(
                    url.arg,
                    "unknown-upstream",
                    format!("unknown upstream \"{authority}\" (declare it with \"upstream {authority} {{ ... }}\" or give HOST:PORT)"),
                ));
            }
            return None;
        };
        Some(ProxyPass {
            upstream,
            host: authority.clone(),
            prefix: prefix.clone(),
        })
    }

    fn direct(&mut self, authority: &str) -> Result<usize, String> {
        if let Some(&i) = self.direct.get(authority) {
            return Ok(i);
        }
        let addr = values::host_port(authority)?;
        self.list.push(Upstream {
            name: authority.to_string(),
            servers: vec![UpstreamServer::new(addr)],
            policy: Policy::RoundRobin,
            health_check: None,
        });
        self.direct
            .insert(authority.to_string(), self.list.len() - 1);
        Ok(self.list.len() - 1)
    }
}

/// One [`ListenSocket`] per distinct address, in order of first appearance,
/// checking what servers sharing an address must not share.
fn group_sockets(servers: &[&Scope], report: &mut Report) -> Vec<ListenSocket> {
    let mut sockets: Vec<ListenSocket> = Vec::new();
    let mut by_addr: HashMap<SocketAddr, usize> = HashMap::new();
    let mut explicit_default: Vec<Option<Span>> = Vec::new();
    let mut names: Vec<HashMap<String, Span>> = Vec::new();
    for (i, server) in servers.iter().enumerate() {
        for listen in &server.listen {
            let addr = listen.value.addr;
            let s = *by_addr.entry(addr).or_insert_with(|| {
                sockets.push(ListenSocket {
                    addr,
                    servers: Vec::new(),
                    default_server: i,
                    explicit_default: false,
                    names: ServerNames::default(),
                    max_header_size: 0,
                    tls: None,
                    bound_by: None,
                    specific: Vec::new(),
                });
                explicit_default.push(None);
                names.push(HashMap::new());
                sockets.len() - 1
            });
            if sockets[s].servers.contains(&i) {
                report.push(Diagnostic::error(
                    listen.arg,
                    "duplicate-listen",
                    format!("duplicate listen address {addr} in one server"),
                ));
                continue;
            }
            sockets[s].servers.push(i);
            if let Some(at) = listen.value.default_server {
                match explicit_default[s] {
                    Some(first) => {
                        let first = report.where_is(first, at);
                        report.push(Diagnostic::error(
                            at,
                            "duplicate-default-server",
                            format!("{addr} already has a default server (set at {first})"),
                        ));
                    }
                    None => {
                        explicit_default[s] = Some(at);
                        sockets[s].default_server = i;
                        sockets[s].explicit_default = true;
                    }
                }
            }
            claim_names(server, i, &mut sockets[s], &mut names[s], report);
        }
    }
    share_wildcards(&mut sockets);
    sockets
}

/// nginx's way with `listen P` beside `listen 127.0.0.1:P`: only the
/// wildcard is bound (binding both would fail), and a connection's local
/// address picks the specific address's servers, else the wildcard's.
/// An IPv6 wildcard is IPv6-only, so it takes only IPv6 addresses.
fn share_wildcards(sockets: &mut [ListenSocket]) {
    for i in 0..sockets.len() {
        let addr = sockets[i].addr;
        if addr.ip().is_unspecified() {
            continue;
        }
        let wildcard = sockets.iter().position(|s| {
            s.addr.ip().is_unspecified()
                && s.addr.port() == addr.port()
                && s.addr.is_ipv4() == addr.is_ipv4()
        });
        if let Some(w) = wildcard {
            sockets[i].bound_by = Some(w);
            sockets[w].specific.push(i);
        }
    }
}

/// Adds the names of `server` (index `i`) to `socket`, reporting a name that
/// another server on that address already has. Claims are keyed by what
/// they match: `.example.com` claims both `example.com` and `*.example.com`.
fn claim_names(
    server: &Scope,
    i: usize,
    socket: &mut ListenSocket,
    taken: &mut HashMap<String, Span>,
    report: &mut Report,
) {
    let mut own = HashSet::with_capacity(server.server_names.len());
    for name in &server.server_names {
        // Refused (and reported) by the `server_name` directive.
        let Ok(pattern) = NamePattern::parse(&name.value) else {
            continue;
        };
        let claims = match pattern {
            NamePattern::Exact(n) => [Some(n.to_string()), None],
            NamePattern::Leading(n) => [Some(format!("*.{n}")), None],
            NamePattern::ExactAndLeading(n) => [Some(n.to_string()), Some(format!("*.{n}"))],
            NamePattern::Trailing(n) => [Some(format!("{n}.*")), None],
        };
        let mut conflict = None;
        for claim in claims.into_iter().flatten() {
            if !own.insert(claim.clone()) {
                continue;
            }
            match taken.get(&claim) {
                Some(&first) => conflict = conflict.or(Some(first)),
                None => {
                    taken.insert(claim, name.arg);
                }
            }
        }
        match conflict {
            Some(first) => {
                let first = report.where_is(first, name.arg);
                report.push(Diagnostic::error(
                    name.arg,
                    "duplicate-server-name",
                    format!(
                        "server name \"{}\" is already used on {} (at {first})",
                        name.value, socket.addr
                    ),
                ));
            }
            None => socket.names.insert(pattern, i),
        }
    }
}

/// Warns once per `error_page` directive whose page, served through the
/// server as the internal redirect would (a GET of its URI, planned by
/// [`handlers::plan`]), is a missing file: a CGI script, a proxied location
/// or a directory with an index (or a listing) serve it. Each directive is
/// checked once per server: the server's list (its own or inherited) and
/// the lists locations set.
fn warn_error_pages(servers: &[Server], merged: &[Merged], report: &mut Report) {
    let mut warned = HashSet::new();
    for (server, merged) in servers.iter().zip(merged) {
        let mut checked = HashSet::new();
        let lists = std::iter::once(&merged.server).chain(merged.locations.iter().copied());
        for page in lists.flat_map(|s| s.error_pages.iter().flatten()) {
            if warned.contains(&page.arg) || !checked.insert(page.arg) {
                continue;
            }
            if let Some(problem) = missing_page(server, merged, &page.value) {
                warned.insert(page.arg);
                report.push(Diagnostic::warning(page.arg, "missing-error-page", problem));
            }
        }
    }
}

fn missing_page(server: &Server, merged: &Merged, page: &ErrorPage) -> Option<String> {
    let head = format!("GET {} HTTP/1.0\r\n\r\n", page.uri);
    // A URI no request can have is refused by the directive itself.
    let Ok(Some((request, _))) = Request::parse(head.as_bytes(), head.len()) else {
        return None;
    };
    let chosen = server.select_location(&request.path);
    // A return or a refused GET is error-page-loop's business; a script or
    // an upstream answers whatever the file system holds.
    if !matches!(handlers::plan(&request, chosen), Plan::Static) {
        return None;
    }
    let index = server
        .locations
        .iter()
        .position(|l| std::ptr::eq(l, chosen));
    let settings = merged.effective(index);
    let (base, rest) = match (settings.get(|s| &s.alias), settings.root()) {
        (Some(alias), _) => (
            &alias.value,
            request.path.get(chosen.uri.len()..).unwrap_or(""),
        ),
        (None, Some(root)) => (&root.value, request.path.as_str()),
        (None, None) => return None,
    };
    let file = base.path.join(rest.trim_start_matches('/'));
    let directory_page = request.path.ends_with('/')
        && file.is_dir()
        && (chosen.autoindex || chosen.index.iter().any(|name| file.join(name).is_file()));
    if file.is_file() || directory_page {
        return None;
    }
    let written = format!(
        "{}/{}",
        base.written.trim_end_matches('/'),
        rest.trim_start_matches('/')
    );
    let looked = if request.path.ends_with('/') {
        format!("an index file in \"{written}\"")
    } else {
        format!("\"{written}\"")
    };
    Some(format!(
        "error page \"{}\" not found (looked for {looked})",
        page.uri
    ))
}
