//! `webserv route CONFIG URL [-X METHOD] [-H 'Name: value']... [--format json]`:
//! where a request would go, and what it would get, without running it.
//!
//! Steps, each the server's own code:
//! 1. [`config::load`] the configuration (a bad one prints its diagnostics);
//! 2. the listener: the address on the URL's port that is the URL's host
//!    (`localhost` is 127.0.0.1; any other name is not resolved), else the
//!    wildcard one, else the first; for an address that a wildcard's socket
//!    takes (`listen P` beside `listen 127.0.0.1:P`), that socket too;
//! 3. a request head is synthesized and parsed with [`Request::parse`];
//! 4. [`RoutingTable::choose_server`], then [`Server::select_location`];
//! 5. [`handlers::plan`], described: the mapped file, the index or listing,
//!    the CGI script, the store, the return, the upstream and the URI
//!    [`proxy::upstream_uri`] sends;
//! 6. for an error that has an `error_page`, the internal redirect: the
//!    page's location and what it gets (step 5 again).
//!
//! Nothing is bound, run, written or deleted; only metadata is read.

use std::fs::Metadata;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use serde_json::{json, Value};

use crate::cache::FileCache;
use crate::config;
use crate::handlers::{self, proxy, static_file, Plan};
use crate::http::request::{Request, Via};
use crate::routing::{Location, RoutingTable, Server, ServerMatch};

/// The parts of the URL given on the command line.
struct Url {
    https: bool,
    /// As written, with its port if any: the default `Host` header.
    authority: String,
    host: String,
    port: u16,
    /// Path and query, as sent in the request line.
    target: String,
}

fn parse_url(url: &str) -> Result<Url, String> {
    let (https, rest) = if let Some(rest) = url.strip_prefix("http://") {
        (false, rest)
    } else if let Some(rest) = url.strip_prefix("https://") {
        (true, rest)
    } else {
        return Err(format!("URL \"{url}\" must start with http:// or https://"));
    };
    let (authority, target) = match rest.find(['/', '?']) {
        Some(i) if rest[i..].starts_with('/') => (&rest[..i], rest[i..].to_string()),
        Some(i) => (&rest[..i], format!("/{}", &rest[i..])),
        None => (rest, "/".to_string()),
    };
    let default_port = if https { 443 } else { 80 };
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) if !port.contains(']') => {
            let port = port
                .parse::<u16>()
                .map_err(|_| format!("bad port in URL \"{url}\""))?;
            (host, port)
        }
        _ => (authority, default_port),
    };
    if host.is_empty() {
        return Err(format!("no host in URL \"{url}\""));
    }
    Ok(Url {
        https,
        authority: authority.to_string(),
        host: host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string(),
        port,
        target,
    })
}

/// The socket a connection to `url` would arrive on: the one bound to the
/// URL's address, else a wildcard one on its port, else the first on it.
fn listener(table: &RoutingTable, url: &Url) -> Result<(usize, &'static str), String> {
    let on_port: Vec<usize> = (0..table.sockets.len())
        .filter(|&i| table.sockets[i].addr.port() == url.port)
        .collect();
    let ip =
        url.host.parse::<IpAddr>().ok().or_else(|| {
            (url.host == "localhost").then_some(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST))
        });
    let exact = on_port
        .iter()
        .copied()
        .find(|&i| Some(table.sockets[i].addr.ip()) == ip);
    let wildcard = on_port
        .iter()
        .copied()
        .find(|&i| table.sockets[i].addr.ip().is_unspecified());
    match (exact, wildcard, on_port.first()) {
        (Some(i), _, _) => Ok((i, "the URL's address")),
        (None, Some(i), _) => Ok((i, "the wildcard address on the URL's port")),
        (None, None, Some(&i)) => Ok((i, "the first listener on the URL's port")),
        (None, None, None) => Err(format!("no listen address on port {}", url.port)),
    }
}

/// The request head the client would send.
fn head(method: &str, url: &Url, headers: &[String]) -> Result<Vec<u8>, String> {
    let mut head = format!("{method} {} HTTP/1.1\r\n", url.target);
    let has_host = headers.iter().any(|h| {
        h.split_once(':')
            .is_some_and(|(n, _)| n.trim().eq_ignore_ascii_case("host"))
    });
    if !has_host {
        head.push_str(&format!("Host: {}\r\n", url.authority));
    }
    for h in headers {
        if !h.contains(':') || h.contains(['\r', '\n']) {
            return Err(format!("bad header \"{h}\" (expected 'Name: value')"));
        }
        head.push_str(h);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    Ok(head.into_bytes())
}

/// What `route` found, as JSON; the text output is read from it.
pub fn route(
    table: &RoutingTable,
    url: &str,
    method: &str,
    headers: &[String],
) -> Result<Value, String> {
    let url = parse_url(url)?;
    let (socket, why_socket) = listener(table, &url)?;
    let listen = &table.sockets[socket];
    let bytes = head(method, &url, headers)?;
    let mut request = match Request::parse(&bytes, bytes.len()) {
        Ok(Some((request, _))) => request,
        Ok(None) => return Err("incomplete request head".to_string()),
        Err(e) => {
            return Err(format!(
                "the server would answer {} to this request ({e:?})",
                e.status()
            ))
        }
    };
    request.via = Via {
        https: url.https,
        peer: None,
        server_port: url.port,
    };
    let (index, why) = table.choose_server(socket, request.host.as_deref());
    let server = &table.servers[index];
    let location = server.select_location(&request.path);
    let exact_candidate = server.exact.contains_key(&request.path);
    let candidates: Vec<String> = server
        .exact
        .get(&request.path)
        .map(|&i| format!("= {}", server.locations[i].uri))
        .into_iter()
        .chain(
            server
                .prefixes
                .iter()
                .map(|&i| &server.locations[i])
                .filter(|l| request.path.starts_with(l.uri.as_str()))
                .map(|l| l.uri.clone()),
        )
        .collect();
    let location_why = if std::ptr::eq(location, &server.fallback) {
        "no location matches: the server's own settings"
    } else if exact_candidate {
        "exact match"
    } else {
        "longest prefix"
    };
    let outcome = outcome(&request, table, location);
    let error_page = error_page(&outcome, &request, table, server, location);
    let mut value = json!({
        "request": {
            "method": method,
            "target": url.target,
            "path": request.path,
            "host": request.host,
        },
        "listener": {
            "addr": listen.addr.to_string(),
            "why": why_socket,
            "bound": table.sockets[listen.bound_by.unwrap_or(socket)].addr.to_string(),
        },
        "server": {
            "index": index,
            "names": server.names,
            "listen": server.listen.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
            "why": why_text(why),
            "match": why,
        },
        "location": {
            "uri": if std::ptr::eq(location, &server.fallback) { None } else { Some(&location.uri) },
            "exact": location.exact,
            "why": location_why,
            "candidates": candidates,
        },
        "outcome": outcome,
        "methods": location.methods.iter().map(|m| m.as_str()).collect::<Vec<_>>(),
        "client_max_body_size": location.client_max_body_size,
        "limits": server.limits,
        "output": location.output,
    });
    if !error_page.is_null() {
        value["error_page"] = error_page;
    }
    Ok(value)
}

/// An error outcome (`found`) whose code has an `error_page`: where the internal
/// redirect goes (a GET of the URI, HEAD kept, location choice again) and
/// what it gets; the page is sent with the original status. `Null` when
/// the code has no page.
fn error_page(
    found: &Value,
    request: &Request,
    table: &RoutingTable,
    server: &Server,
    location: &Location,
) -> Value {
    let status = found["status"].as_u64().and_then(|s| u16::try_from(s).ok());
    let Some(status) = status.filter(|&s| s >= 400) else {
        return Value::Null;
    };
    // `return CODE TEXT` answers with its text, not a page.
    if found["kind"] == "return" && !found["target"].is_null() {
        return Value::Null;
    }
    let Some(uri) = location.error_pages.get(&status) else {
        return Value::Null;
    };
    if uri.starts_with("http://") || uri.starts_with("https://") {
        return json!({ "uri": uri, "status": 302 });
    }
    let method = if request.is_head() { "HEAD" } else { "GET" };
    let head = format!("{method} {uri} HTTP/1.0\r\n\r\n");
    let Ok(Some((page, _))) = Request::parse(head.as_bytes(), head.len()) else {
        return json!({ "uri": uri, "status": status });
    };
    let target = server.select_location(&page.path);
    let target_uri = (!std::ptr::eq(target, &server.fallback)).then_some(&target.uri);
    json!({
        "uri": uri,
        "status": status,
        "location": target_uri,
        "outcome": outcome(&page, table, target),
    })
}

fn why_text(why: ServerMatch) -> &'static str {
    match why {
        ServerMatch::ExactName => "Host matches its server_name",
        ServerMatch::LeadingWildcard => "Host matches its *.name wildcard",
        ServerMatch::TrailingWildcard => "Host matches its name.* wildcard",
        ServerMatch::DefaultServer => "no server_name matches Host: the default_server",
        ServerMatch::FirstServer => "no server_name matches Host: the first server on this address",
    }
}

fn outcome(request: &Request, table: &RoutingTable, location: &Location) -> Value {
    match handlers::plan(request, location) {
        Plan::NotImplemented => json!({ "kind": "status", "status": 501 }),
        Plan::Return(ret) => json!({ "kind": "return", "status": ret.code, "target": ret.target }),
        Plan::MethodNotAllowed => json!({ "kind": "status", "status": 405 }),
        Plan::ProxyMethodNotAllowed(allowed) => {
            json!({ "kind": "status", "status": 405, "allow": allowed })
        }
        Plan::Proxy(pass) => {
            let upstream = &table.upstreams[pass.upstream];
            let mut plan = json!({
                "kind": "proxy",
                "upstream": upstream.name,
                "servers": upstream.servers.iter().map(|s| s.addr.to_string()).collect::<Vec<_>>(),
                "uri": proxy::upstream_uri(request, location, pass),
            });
            if let Some(check) = &upstream.health_check {
                plan["health_check"] = json!(check);
            }
            plan
        }
        Plan::Cgi(script) => json!({
            "kind": "cgi",
            "script": script.path,
            "interpreter": script.interpreter,
            "script_name": script.script_name,
            "path_info": script.path_info,
        }),
        Plan::UploadInProgress => json!({ "kind": "status", "status": 403 }),
        Plan::Static => static_outcome(request, location),
        Plan::Upload { store, put } => {
            let mut value = json!({ "kind": if put { "put" } else { "post" }, "store": store });
            if put {
                let rest = request
                    .path
                    .strip_prefix(location.uri.as_str())
                    .unwrap_or(&request.path);
                let file = crate::http::path::map_under(store, rest);
                value["exists"] = file.exists().into();
                value["file"] = json!(file);
            }
            value
        }
        Plan::Delete => {
            let file = match &location.upload_store {
                Some(store) => {
                    let rest = request
                        .path
                        .strip_prefix(location.uri.as_str())
                        .unwrap_or(&request.path);
                    Some(crate::http::path::map_under(store, rest))
                }
                None => static_file::map_path(location, &request.path),
            };
            let exists = file.as_deref().is_some_and(Path::exists);
            json!({ "kind": "delete", "file": file, "exists": exists })
        }
    }
}

/// GET or HEAD: the file, or the directory's index or listing.
fn static_outcome(request: &Request, location: &Location) -> Value {
    let Some(file) = static_file::map_path(location, &request.path) else {
        return json!({ "kind": "file", "file": null, "status": 404 });
    };
    let meta: Option<Metadata> = file.metadata().ok();
    let mut value = json!({ "kind": "file", "file": file, "exists": meta.is_some() });
    let status = match &meta {
        None => 404,
        Some(m) if m.is_dir() && !request.path.ends_with('/') => 301,
        Some(m) if m.is_dir() => {
            let index: Option<PathBuf> = location
                .index
                .iter()
                .map(|name| file.join(name))
                .find(|p| p.is_file());
            value["index"] = json!(index);
            value["autoindex"] = location.autoindex.into();
            if index.is_some() || location.autoindex {
                200
            } else {
                403
            }
        }
        Some(_) if request.path.ends_with('/') => 404,
        Some(m) if m.is_file() => 200,
        Some(_) => 403,
    };
    value["status"] = status.into();
    let served = match (&meta, value["index"].as_str()) {
        (Some(m), Some(index)) if m.is_dir() => {
            (PathBuf::from(index), Path::new(index).metadata().ok())
        }
        _ => (file, meta),
    };
    value["open_file_cache"] = cache_outcome(&served.0, served.1.as_ref(), location).into();
    value
}

/// How the open-file cache would keep what the request reads (SPEC §9.5).
fn cache_outcome(path: &Path, meta: Option<&Metadata>, location: &Location) -> &'static str {
    let Some(settings) = &location.open_file_cache else {
        return "off";
    };
    if !FileCache::new().would_cache(path, Some(settings)) {
        return "not cached (cannot be watched)";
    }
    match meta {
        None => "the 404 answer",
        Some(m) if m.is_file() && m.len() <= settings.small => "in memory",
        Some(m) if m.is_file() => "an open descriptor",
        Some(_) => "the directory entry",
    }
}

/// The text rendering: one line per step.
pub fn render_text(v: &Value) -> String {
    let s = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".to_string(),
        other => other.to_string(),
    };
    let mut out = String::new();
    let r = &v["request"];
    out.push_str(&format!(
        "request   {} {} (path {}, host {})\n",
        s(&r["method"]),
        s(&r["target"]),
        s(&r["path"]),
        s(&r["host"])
    ));
    let listener = &v["listener"];
    let bound = if listener["bound"] == listener["addr"] {
        String::new()
    } else {
        format!(
            "; it arrives on the socket bound to {}, and its local address picks {}",
            s(&listener["bound"]),
            s(&listener["addr"])
        )
    };
    out.push_str(&format!(
        "listener  {} ({}{bound})\n",
        s(&listener["addr"]),
        s(&listener["why"])
    ));
    let server = &v["server"];
    let names: Vec<String> = server["names"]
        .as_array()
        .into_iter()
        .flatten()
        .map(s)
        .collect();
    let names = if names.is_empty() {
        "no server_name".to_string()
    } else {
        format!("server_name {}", names.join(" "))
    };
    out.push_str(&format!(
        "server    #{} ({names}): {}\n",
        s(&server["index"]),
        s(&server["why"])
    ));
    let location = &v["location"];
    let candidates: Vec<String> = location["candidates"]
        .as_array()
        .into_iter()
        .flatten()
        .map(s)
        .collect();
    let uri = match &location["uri"] {
        Value::Null => "(none)".to_string(),
        uri if location["exact"] == true => format!("= {}", s(uri)),
        uri => s(uri),
    };
    out.push_str(&format!(
        "location  {uri}: {} (candidates: {})\n",
        s(&location["why"]),
        if candidates.is_empty() {
            "none".to_string()
        } else {
            candidates.join(", ")
        }
    ));
    out.push_str(&format!("outcome   {}\n", outcome_text(&v["outcome"], &s)));
    let page = &v["error_page"];
    if page["status"] == 302 {
        out.push_str(&format!(
            "error     page {}: a 302 to it\n",
            s(&page["uri"])
        ));
    } else if !page.is_null() {
        let target = match &page["location"] {
            Value::Null => "the server's own settings".to_string(),
            uri => format!("location {}", s(uri)),
        };
        out.push_str(&format!(
            "error     page {} (an internal redirect, sent with {}): {target}, {}\n",
            s(&page["uri"]),
            s(&page["status"]),
            outcome_text(&page["outcome"], &s)
        ));
    }
    let methods: Vec<String> = v["methods"]
        .as_array()
        .into_iter()
        .flatten()
        .map(s)
        .collect();
    let body = match &v["client_max_body_size"] {
        Value::Null => "unlimited".to_string(),
        n => format!("{} bytes", s(n)),
    };
    out.push_str(&format!(
        "methods   {}; client_max_body_size {body}\n",
        methods.join(" ")
    ));
    if let Some(line) = output_text(&v["output"], &s) {
        out.push_str(&format!("response  {line}\n"));
    }
    out
}

/// `; health check GET /health every 5000 ms (fails=1 passes=1)`, or
/// nothing for a group without one.
fn health_check_text(check: &Value) -> String {
    let Some(uri) = check["uri"].as_str() else {
        return String::new();
    };
    format!(
        "; health check GET {uri} every {} ms (fails={} passes={}, timeout {} ms)",
        check["interval"], check["fails"], check["passes"], check["timeout"]
    )
}

/// What the location does to its responses (SPEC §9.5), when it does
/// anything beyond the defaults.
fn output_text(o: &Value, s: &dyn Fn(&Value) -> String) -> Option<String> {
    let mut parts = Vec::new();
    if o["gzip"] == true {
        let types: Vec<String> = o["gzip_types"]
            .as_array()
            .into_iter()
            .flatten()
            .map(s)
            .collect();
        parts.push(format!(
            "gzip on (types {}; min length {})",
            types.join(" "),
            s(&o["gzip_min_length"])
        ));
    }
    if o["gzip_static"] == true {
        parts.push("gzip_static on".to_string());
    }
    match &o["expires"] {
        Value::String(off) if off == "off" => {}
        Value::Object(secs) => {
            let n = secs.get("seconds").map(s).unwrap_or_default();
            parts.push(format!("expires {n}s"));
        }
        other => parts.push(format!("expires {}", s(other))),
    }
    for h in o["add_header"].as_array().into_iter().flatten() {
        let always = if h["always"] == true { " always" } else { "" };
        parts.push(format!(
            "add_header {} \"{}\"{always}",
            s(&h["name"]),
            s(&h["value"])
        ));
    }
    if o["server_tokens"] == false {
        parts.push("server_tokens off".to_string());
    }
    (!parts.is_empty()).then(|| parts.join("; "))
}

fn outcome_text(o: &Value, s: &dyn Fn(&Value) -> String) -> String {
    match o["kind"].as_str().unwrap_or_default() {
        "status" => {
            let code = o["status"].as_u64().unwrap_or_default();
            let reason = u16::try_from(code).map_or("", crate::http::status::reason);
            format!("{code} {reason}")
        }
        "return" => format!("return {} {}", s(&o["status"]), s(&o["target"])),
        "proxy" => {
            format!(
                "proxy to upstream {} ({}) as {}",
                s(&o["upstream"]),
                o["servers"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(s)
                    .collect::<Vec<_>>()
                    .join(", "),
                s(&o["uri"])
            ) + &health_check_text(&o["health_check"])
        }
        "cgi" => format!(
            "CGI: {} {} (SCRIPT_NAME {}, PATH_INFO \"{}\")",
            match &o["interpreter"] {
                Value::Null => "(executed itself)".to_string(),
                i => s(i),
            },
            s(&o["script"]),
            s(&o["script_name"]),
            s(&o["path_info"])
        ),
        "post" => format!("POST stored as a new file in {}", s(&o["store"])),
        "put" => format!(
            "PUT written to {} ({})",
            s(&o["file"]),
            if o["exists"] == true {
                "exists: 204"
            } else {
                "new: 201"
            }
        ),
        "delete" => format!(
            "DELETE {} ({})",
            s(&o["file"]),
            if o["exists"] == true {
                "exists"
            } else {
                "missing: 404"
            }
        ),
        _ => {
            let mut text = format!(
                "{} file {} ({})",
                s(&o["status"]),
                s(&o["file"]),
                if o["exists"] == true {
                    "exists"
                } else {
                    "missing"
                }
            );
            if o.get("autoindex").is_some() {
                text.push_str(&format!(
                    "; index {}, autoindex {}",
                    s(&o["index"]),
                    if o["autoindex"] == true { "on" } else { "off" }
                ));
            }
            if let Some(cache) = o.get("open_file_cache") {
                text.push_str(&format!("; open_file_cache: {}", s(cache)));
            }
            text
        }
    }
}

/// The command: load, route, print. Exit 1 on a bad config or URL.
pub fn command(
    config_path: &Path,
    url: &str,
    method: &str,
    headers: &[String],
    json: bool,
) -> ExitCode {
    let (table, report) = config::load(config_path);
    let Some(table) = table else {
        eprint!("{}", report.render_text());
        eprintln!("{}: failed", config_path.display());
        return ExitCode::FAILURE;
    };
    match route(&table, url, method, headers) {
        Ok(value) if json => {
            println!("{value:#}");
            ExitCode::SUCCESS
        }
        Ok(value) => {
            print!("{}", render_text(&value));
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("webserv route: {message}");
            ExitCode::FAILURE
        }
    }
}
