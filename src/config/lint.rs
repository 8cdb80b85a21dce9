//! Warnings about configurations that load but do not do what their writer
//! meant, or that expose the site (SPEC §9.4, after gixy for nginx). Each
//! has a name that `# webserv: allow NAME` silences.
//!
//! They run on the built table, so they see effective (inherited) settings
//! and choose locations with the very [`Server::select_location`] the server
//! uses; the scopes give the positions to point at. Each directive is
//! warned about once, however many locations inherit it.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use super::diag::{Diagnostic, Report, Span};
use super::scope::{Context, Scope};
use crate::http::Method;
use crate::routing::{ListenSocket, Location, Server};

/// One server as built, with the blocks it came from.
pub struct Parts<'a> {
    pub scope: &'a Scope,
    pub server: &'a Server,
    /// The location blocks of `scope`, in the order of `server.locations`.
    pub locations: Vec<&'a Scope>,
}

impl<'a> Parts<'a> {
    pub fn new(scope: &'a Scope, server: &'a Server) -> Self {
        let locations = scope
            .blocks_of(Context::Location)
            .filter(|b| b.location.is_some())
            .collect();
        Parts {
            scope,
            server,
            locations,
        }
    }

    /// Each location with the blocks that hold its settings, innermost
    /// first; `None` stands for the server's fallback.
    fn each(&self) -> impl Iterator<Item = (&'a Location, Vec<&'a Scope>)> + '_ {
        let fallback = std::iter::once((&self.server.fallback, vec![self.scope]));
        let located = self
            .server
            .locations
            .iter()
            .zip(&self.locations)
            .map(|(l, scope)| (l, vec![*scope, self.scope]));
        fallback.chain(located)
    }
}

pub fn lint(main: &Scope, servers: &[Parts], sockets: &[ListenSocket], report: &mut Report) {
    let mut warned = HashSet::new();
    let mut found = Vec::new();
    let mut warn = |at: Span, name: &'static str, message: String| {
        if warned.insert((at, name)) {
            found.push(Diagnostic::warning(at, name, message));
        }
    };
    let lines: &Report = report;
    for parts in servers {
        for (location, scopes) in parts.each() {
            delete_static(location, &scopes, &mut warn);
            unlimited_body(location, &scopes, main, &mut warn);
        }
        for block in &parts.locations {
            alias_traversal(block, &mut warn);
        }
        unreachable_locations(parts, lines, &mut warn);
        server_name_port(parts.scope, &mut warn);
        executable_uploads(parts, &mut warn);
        error_page_loop(main, parts, &mut warn);
    }
    unreachable_servers(servers, sockets, &mut warn);
    each_scope(main, &mut |scope| {
        host_spoofing(scope, &mut warn);
        error_page_override(scope, lines, &mut warn);
    });
    report.diagnostics.extend(found);
}

type Warn<'w> = dyn FnMut(Span, &'static str, String) + 'w;

fn each_scope(scope: &Scope, f: &mut dyn FnMut(&Scope)) {
    f(scope);
    for block in &scope.blocks {
        each_scope(block, f);
    }
}

/// Where `name` is set for a location: its block, else its server, else
/// the top level (the first of `scopes`, then the next...).
fn set_at(scopes: &[&Scope], name: &str) -> Option<Span> {
    scopes.iter().find_map(|s| s.seen(name)).map(|(_, at)| at)
}

fn answers_itself(location: &Location) -> bool {
    location.ret.is_some() || location.proxy.is_some()
}

/// `location /pub { alias /data/pub/; }` serves `/pub../x` from
/// `/data/pub/../x`; `location /pub/ { alias /data/pub; }` serves `/pub/x`
/// from `/data/pubx`.
fn alias_traversal(block: &Scope, warn: &mut Warn) {
    let (Some(location), Some(alias)) = (&block.location, &block.settings.alias) else {
        return;
    };
    let written = &alias.value.written;
    if location.exact || location.uri.ends_with('/') == written.ends_with('/') {
        return;
    }
    let message = if written.ends_with('/') {
        format!(
            "location \"{}\" has no trailing \"/\" but its alias \"{written}\" has: \"{}../\" maps above the alias",
            location.uri, location.uri
        )
    } else {
        format!(
            "location \"{}\" ends with \"/\" but its alias \"{written}\" does not: \"{}x\" maps to \"{written}x\"",
            location.uri, location.uri
        )
    };
    warn(alias.arg, "alias-traversal", message);
}

/// DELETE where there is no upload store: the site's own files go.
fn delete_static(location: &Location, scopes: &[&Scope], warn: &mut Warn) {
    if !location.methods.contains(Method::Delete)
        || location.upload_store.is_some()
        || answers_itself(location)
    {
        return;
    }
    if let Some(at) = set_at(scopes, "methods") {
        warn(
            at,
            "delete-static",
            format!(
                "DELETE is allowed in location \"{}\", which has no upload_store: anyone may delete the site's own files",
                location.uri
            ),
        );
    }
}

/// `client_max_body_size 0` where bodies are accepted.
fn unlimited_body(location: &Location, scopes: &[&Scope], main: &Scope, warn: &mut Warn) {
    let accepts = location.methods.contains(Method::Post) || location.methods.contains(Method::Put);
    if location.client_max_body_size.is_some() || !accepts || location.ret.is_some() {
        return;
    }
    let mut all = scopes.to_vec();
    all.push(main);
    if let Some(at) = set_at(&all, "client_max_body_size") {
        warn(
            at,
            "unlimited-body",
            format!(
                "client_max_body_size 0 (unlimited) where POST or PUT is allowed (location \"{}\"): one request can fill the disk",
                location.uri
            ),
        );
    }
}

/// `proxy_set_header Host $http_host`: the client picks the Host the
/// application trusts (password-reset links, virtual hosts).
fn host_spoofing(scope: &Scope, warn: &mut Warn) {
    let Some(headers) = &scope.settings.proxy_set_header else {
        return;
    };
    let spans: Vec<Span> = scope
        .seen
        .iter()
        .filter(|(n, _)| *n == "proxy_set_header")
        .map(|(_, at)| *at)
        .collect();
    for (i, (name, value)) in headers.iter().enumerate() {
        if name.eq_ignore_ascii_case("host") && value.eq_ignore_ascii_case("$http_host") {
            // One span per directive, in order, when every one applied.
            let at = if spans.len() == headers.len() {
                spans[i]
            } else {
                spans.first().copied().unwrap_or(scope.at)
            };
            warn(
                at,
                "host-spoofing",
                "proxy_set_header Host $http_host passes the client's Host header as is: use $host, or leave Host to the upstream".to_string(),
            );
        }
    }
}

/// A server-level `return` answers every request before any location.
fn unreachable_locations(parts: &Parts, lines: &Report, warn: &mut Warn) {
    let Some((_, ret)) = parts.scope.seen("return") else {
        return;
    };
    for block in &parts.locations {
        if let Some(location) = &block.location {
            let eq = if location.exact { "= " } else { "" };
            warn(
                location.span,
                "unreachable-location",
                format!(
                    "location \"{eq}{}\" is unreachable: the server's \"return\" ({}) answers every request first",
                    location.uri,
                    lines.where_is(ret, location.span)
                ),
            );
        }
    }
}

/// A server with no `server_name` that is neither the first nor the
/// `default_server` on any of its addresses: no request selects it.
fn unreachable_servers(servers: &[Parts], sockets: &[ListenSocket], warn: &mut Warn) {
    for (i, parts) in servers.iter().enumerate() {
        if !parts.server.names.is_empty() {
            continue;
        }
        let mine: Vec<&ListenSocket> = sockets.iter().filter(|s| s.servers.contains(&i)).collect();
        if mine.is_empty() {
            continue;
        }
        let reachable = mine
            .iter()
            .any(|s| s.servers.first() == Some(&i) || s.default_server == i);
        if !reachable {
            let addrs: Vec<String> = mine.iter().map(|s| s.addr.to_string()).collect();
            warn(
                parts.scope.at,
                "unreachable-server",
                format!(
                    "this server is unreachable: it has no server_name, and on {} it is neither the first server nor the default_server",
                    addrs.join(", ")
                ),
            );
        }
    }
}

/// The same code twice at one level: the later page wins.
fn error_page_override(scope: &Scope, lines: &Report, warn: &mut Warn) {
    let Some(pages) = &scope.settings.error_pages else {
        return;
    };
    let mut first: HashMap<u16, Span> = HashMap::new();
    for page in pages {
        for &code in &page.value.codes {
            if let Some(earlier) = first.insert(code, page.arg) {
                let place = lines.where_is(earlier, page.arg);
                warn(
                    page.arg,
                    "error-page-override",
                    format!(
                        "error_page {code} is given again at this level (first at {place}): this one replaces it"
                    ),
                );
            }
        }
    }
}

/// A `server_name` is a host name: no port, scheme or path.
fn server_name_port(scope: &Scope, warn: &mut Warn) {
    for name in &scope.server_names {
        let value = &name.value;
        let what = if value.contains("://") {
            "a scheme"
        } else if value.contains('/') {
            "a \"/\""
        } else if value.contains(':') && !value.starts_with('[') {
            "a port"
        } else {
            continue;
        };
        warn(
            name.arg,
            "server-name-port",
            format!(
                "server_name \"{value}\" holds {what}: it is compared with the Host header without its port, and never matches"
            ),
        );
    }
}

/// An error page whose own URI answers with that error. A page set at the
/// top level is checked in each server, through which it is served.
fn error_page_loop(main: &Scope, parts: &Parts, warn: &mut Warn) {
    let mut scopes: Vec<&Scope> = vec![main, parts.scope];
    scopes.extend(parts.locations.iter().copied());
    for scope in scopes {
        for page in scope.settings.error_pages.iter().flatten() {
            let target = parts.server.select_location(&page.value.uri);
            for &code in &page.value.codes {
                let returns = target.ret.as_ref().is_some_and(|r| r.code == code);
                let refuses = code == 405 && !target.methods.contains(Method::Get);
                if returns || refuses {
                    warn(
                        page.arg,
                        "error-page-loop",
                        format!(
                            "error page \"{}\" for {code} is answered by location \"{}\" with {code} itself",
                            page.value.uri, target.uri
                        ),
                    );
                }
            }
        }
    }
}

/// An upload store whose files a location with a `cgi` extension serves:
/// an uploaded script could then be run. The URL where a stored file would
/// appear is chosen with [`Server::select_location`], as a request would.
fn executable_uploads(parts: &Parts, warn: &mut Warn) {
    let server = parts.server;
    let cgi_roots: HashSet<&Path> = server
        .locations
        .iter()
        .chain([&server.fallback])
        .filter(|l| !l.cgi.is_empty() && l.alias.is_none())
        .filter_map(|l| l.root.as_deref())
        .collect();
    let mut cgi_aliases: HashMap<&Path, Vec<&Location>> = HashMap::new();
    for l in server.locations.iter().filter(|l| !l.cgi.is_empty()) {
        if let Some(alias) = &l.alias {
            cgi_aliases.entry(alias).or_default().push(l);
        }
    }
    if cgi_roots.is_empty() && cgi_aliases.is_empty() {
        return;
    }
    let mut verdict: HashMap<&Path, Option<String>> = HashMap::new();
    for (location, scopes) in parts.each() {
        let Some(store) = location.upload_store.as_deref() else {
            continue;
        };
        let served = verdict
            .entry(store)
            .or_insert_with(|| served_by_cgi(server, store, &cgi_roots, &cgi_aliases))
            .clone();
        if let (Some(uri), Some(at)) = (served, set_at(&scopes, "upload_store")) {
            warn(
                at,
                "executable-uploads",
                format!(
                    "files uploaded here are served by location \"{uri}\", which runs CGI scripts: an uploaded script could be run"
                ),
            );
        }
    }
}

/// The URI of the location with CGI that would serve a file stored in
/// `store`, if one would.
fn served_by_cgi(
    server: &Server,
    store: &Path,
    roots: &HashSet<&Path>,
    aliases: &HashMap<&Path, Vec<&Location>>,
) -> Option<String> {
    let probe = |prefix: String, rel: &Path| -> String {
        let rel = rel.to_string_lossy();
        let mut url = prefix;
        if !rel.is_empty() {
            if !url.ends_with('/') {
                url.push('/');
            }
            url.push_str(&rel);
        }
        if !url.ends_with('/') {
            url.push('/');
        }
        url.push_str("upload");
        url
    };
    for root in roots {
        if let Ok(rel) = store.strip_prefix(root) {
            let target = server.select_location(&probe("/".to_string(), rel));
            if !target.cgi.is_empty()
                && target.alias.is_none()
                && target.root.as_deref() == Some(*root)
            {
                return Some(target.uri.clone());
            }
        }
    }
    for ancestor in store.ancestors() {
        for l in aliases.get(ancestor).into_iter().flatten() {
            let rel = store.strip_prefix(ancestor).unwrap_or(Path::new(""));
            let target = server.select_location(&probe(l.uri.clone(), rel));
            if std::ptr::eq(target, *l) {
                return Some(l.uri.clone());
            }
        }
    }
    None
}
