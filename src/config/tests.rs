//! Tests of the whole load: inheritance, path resolution, directive
//! coverage of the shipped configs, and robustness against mangled input
//! (every result is a report, never a panic).

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::directives::DIRECTIVES;
use super::scope::{Context, Scope};
use super::{load, walk, Report};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn write(dir: &Path, name: &str, text: &[u8]) -> PathBuf {
    let path = dir.join(name);
    fs::write(&path, text).expect("write config");
    path
}

fn load_text(text: &str) -> (Option<crate::routing::RoutingTable>, Report) {
    let tmp = tempfile::tempdir().expect("tempdir");
    load(&write(tmp.path(), "t.conf", text.as_bytes()))
}

#[test]
fn inheritance_top_level_to_server_to_location() {
    let (table, report) = load_text(
        "client_max_body_size 2k;\nerror_page 404 /a.html;\ncgi_timeout 7s;\n\
         server {\n listen 127.0.0.1:9;\n root .;\n autoindex on;\n error_page 500 /b.html;\n\
         location /x/ { client_max_body_size 0; methods POST; }\n\
         location /y/ { error_page 403 /c.html; cgi .py python3; alias /tmp/; }\n}\n",
    );
    let table = table.unwrap_or_else(|| panic!("{}", report.render_text()));
    let server = &table.servers[0];
    let (fallback, x, y) = (&server.fallback, &server.locations[0], &server.locations[1]);
    // (setting, fallback, /x/, /y/)
    let cases: &[(&str, String, String, String)] = &[
        (
            "body",
            format!("{:?}", fallback.client_max_body_size),
            format!("{:?}", x.client_max_body_size),
            format!("{:?}", y.client_max_body_size),
        ),
        (
            "autoindex",
            fallback.autoindex.to_string(),
            x.autoindex.to_string(),
            y.autoindex.to_string(),
        ),
        (
            "error pages",
            sorted_keys(&fallback.error_pages),
            sorted_keys(&x.error_pages),
            sorted_keys(&y.error_pages),
        ),
        (
            "cgi_timeout",
            format!("{:?}", fallback.cgi_timeout),
            format!("{:?}", x.cgi_timeout),
            format!("{:?}", y.cgi_timeout),
        ),
        ("methods", methods(fallback), methods(x), methods(y)),
        (
            "root",
            fallback.root.is_some().to_string(),
            x.root.is_some().to_string(),
            y.root.is_some().to_string(),
        ),
        (
            "cgi",
            fallback.cgi.len().to_string(),
            x.cgi.len().to_string(),
            y.cgi.len().to_string(),
        ),
    ];
    let expected: &[(&str, &str, &str, &str)] = &[
        ("body", "Some(2048)", "None", "Some(2048)"),
        ("autoindex", "true", "true", "true"),
        ("error pages", "[500]", "[500]", "[403]"),
        ("cgi_timeout", "7s", "7s", "7s"),
        ("methods", "GET HEAD", "POST", "GET HEAD"),
        ("root", "true", "true", "false"),
        ("cgi", "0", "0", "1"),
    ];
    for ((name, f, x, y), (ename, ef, ex, ey)) in cases.iter().zip(expected) {
        assert_eq!(
            (*name, f.as_str(), x.as_str(), y.as_str()),
            (*ename, *ef, *ex, *ey)
        );
    }
    assert_eq!(server.limits.keepalive_timeout, Duration::from_secs(75));
    assert!(fallback.cgi_check_script);
}

#[test]
fn locations_share_what_they_inherit() {
    use std::sync::Arc;
    let (table, report) = load_text(
        "error_page 404 /a.html;\n\
         server {\n listen 127.0.0.1:9;\n root .;\n index a.html;\n\
         location /x/ { autoindex on; }\n\
         location /y/ { methods GET; }\n\
         location /z/ { index z.html; root /tmp; error_page 500 /b.html; }\n}\n",
    );
    let table = table.unwrap_or_else(|| panic!("{}", report.render_text()));
    let server = &table.servers[0];
    let (x, y, z) = (
        &server.locations[0],
        &server.locations[1],
        &server.locations[2],
    );
    let (xr, yr, zr) = (x.root.as_ref(), y.root.as_ref(), z.root.as_ref());
    let shared = [
        ("index x y", Arc::ptr_eq(&x.index, &y.index)),
        (
            "index x server",
            Arc::ptr_eq(&x.index, &server.fallback.index),
        ),
        ("index z", Arc::ptr_eq(&x.index, &z.index)),
        (
            "error pages x y",
            Arc::ptr_eq(&x.error_pages, &y.error_pages),
        ),
        ("error pages z", Arc::ptr_eq(&x.error_pages, &z.error_pages)),
        (
            "root x y",
            Arc::ptr_eq(xr.expect("root"), yr.expect("root")),
        ),
        ("root z", Arc::ptr_eq(xr.expect("root"), zr.expect("root"))),
    ];
    let expected = [
        ("index x y", true),
        ("index x server", true),
        ("index z", false),
        ("error pages x y", true),
        ("error pages z", false),
        ("root x y", true),
        ("root z", false),
    ];
    assert_eq!(shared, expected);
    assert_eq!(&*z.index, ["z.html"]);
    assert_eq!(z.root.as_deref(), Some(Path::new("/tmp")));
}

#[test]
fn each_missing_error_page_is_warned_once_where_it_is_written() {
    let tmp = tempfile::tempdir().expect("tempdir");
    fs::create_dir(tmp.path().join("pages")).expect("mkdir");
    write(&tmp.path().join("pages"), "ok.html", b"ok");
    // The top-level page is missing under `.` and inherited by 50
    // locations; the location-level one exists under its own root; the
    // other location-level one is missing.
    let mut text =
        String::from("error_page 404 /gone.html;\nserver {\n listen 127.0.0.1:9;\n root .;\n");
    for i in 0..50 {
        text.push_str(&format!(" location /l{i}/ {{ }}\n"));
    }
    text.push_str(" location /pages/ { root .; error_page 500 /pages/ok.html; }\n");
    text.push_str(" location /x/ { error_page 502 /x/none.html; }\n}\n");
    let (table, report) = load(&write(tmp.path(), "t.conf", text.as_bytes()));
    assert!(table.is_some(), "{}", report.render_text());
    let warnings: Vec<(Option<usize>, &str)> = report
        .located()
        .iter()
        .map(|d| (d.line, d.message.split(" (").next().unwrap_or("")))
        .collect();
    assert_eq!(
        warnings,
        [
            (Some(1), "error page \"/gone.html\" not found"),
            (Some(56), "error page \"/x/none.html\" not found"),
        ]
    );
}

fn sorted_keys(map: &std::collections::HashMap<u16, String>) -> String {
    let mut keys: Vec<u16> = map.keys().copied().collect();
    keys.sort();
    format!("{keys:?}")
}

fn methods(l: &crate::routing::Location) -> String {
    l.methods
        .iter()
        .map(|m| m.as_str())
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn locations_are_indexed_for_selection() {
    let (table, report) = load_text(
        "server {\n listen 9;\n location / {}\n location /a/ {}\n location /a/b/ {}\n location = /a/x {}\n}\n",
    );
    let table = table.unwrap_or_else(|| panic!("{}", report.render_text()));
    let server = &table.servers[0];
    let uris: Vec<&str> = server
        .prefixes
        .iter()
        .map(|&i| server.locations[i].uri.as_str())
        .collect();
    assert_eq!(uris, ["/a/b/", "/a/", "/"]);
    let cases = [
        ("/a/x", "/a/x"),
        ("/a/b/c", "/a/b/"),
        ("/a/xy", "/a/"),
        ("/z", "/"),
    ];
    for (path, uri) in cases {
        assert_eq!(server.select_location(path).uri, uri, "{path}");
    }
}

#[test]
fn sockets_group_servers_by_address() {
    let (table, report) = load_text(
        "server { listen 127.0.0.1:9; }\nserver { listen 127.0.0.1:10; listen 127.0.0.1:9 default_server; server_name B; }\nserver { listen 9; }\n",
    );
    let table = table.unwrap_or_else(|| panic!("{}", report.render_text()));
    let sockets: Vec<(String, Vec<usize>, usize)> = table
        .sockets
        .iter()
        .map(|s| (s.addr.to_string(), s.servers.clone(), s.default_server))
        .collect();
    assert_eq!(
        sockets,
        [
            ("127.0.0.1:9".to_string(), vec![0, 1], 1),
            ("127.0.0.1:10".to_string(), vec![1], 1),
            ("0.0.0.0:9".to_string(), vec![2], 2),
        ]
    );
    assert_eq!(table.select_server(0, Some("b")).names, ["b"]);
}

/// nginx: `listen P` is the one socket bound for port P; the specific
/// addresses on P are chosen by the connection's local address. An IPv6
/// wildcard takes only IPv6 addresses (it is IPv6-only).
#[test]
fn a_wildcard_socket_takes_the_specific_addresses_of_its_port() {
    let (table, report) = load_text(
        "server { listen 127.0.0.1:9; listen 127.0.0.1:10; listen [::1]:9; }\n\
         server { listen 9; listen [::]:11; }\n",
    );
    let table = table.unwrap_or_else(|| panic!("{}", report.render_text()));
    let bound: Vec<(String, Option<usize>, Vec<usize>)> = table
        .sockets
        .iter()
        .map(|s| (s.addr.to_string(), s.bound_by, s.specific.clone()))
        .collect();
    assert_eq!(
        bound,
        [
            ("127.0.0.1:9".to_string(), Some(3), vec![]),
            ("127.0.0.1:10".to_string(), None, vec![]),
            ("[::1]:9".to_string(), None, vec![]),
            ("0.0.0.0:9".to_string(), None, vec![0]),
            ("[::]:11".to_string(), None, vec![]),
        ]
    );
    let local = |a: &str| Some(a.parse().expect("address"));
    assert_eq!(table.socket_for(3, local("127.0.0.1:9")), 0);
    assert_eq!(table.socket_for(3, local("127.0.0.2:9")), 3);
    assert_eq!(table.socket_for(3, None), 3);
    assert_eq!(table.socket_for(1, local("127.0.0.1:10")), 1);
    assert!(table.needs_local_addr(3) && !table.needs_local_addr(1));
}

#[test]
fn relative_paths_resolve_against_the_naming_file() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let base = fs::canonicalize(tmp.path()).expect("canonical");
    fs::create_dir_all(base.join("conf/sub")).expect("mkdir");
    write(
        &base.join("conf"),
        "main.conf",
        b"server {\n listen 9;\n root www;\n include sub/*.conf;\n}\n",
    );
    write(
        &base.join("conf/sub"),
        "loc.conf",
        b"location /u/ { upload_store store; cgi .x bin/run; cgi .y python3; }\n",
    );
    let (table, report) = load(&base.join("conf/main.conf"));
    let table = table.unwrap_or_else(|| panic!("{}", report.render_text()));
    let server = &table.servers[0];
    let location = &server.locations[0];
    assert_eq!(
        server.fallback.root.as_deref(),
        Some(base.join("conf/www").as_path())
    );
    assert_eq!(
        location.upload_store.as_deref(),
        Some(base.join("conf/sub/store").as_path())
    );
    assert_eq!(
        location.cgi[0].interpreter.as_deref(),
        Some(base.join("conf/sub/bin/run").as_path())
    );
    assert_eq!(
        location.cgi[1].interpreter.as_deref(),
        Some(Path::new("python3"))
    );
    let shown: Vec<&str> = report.sources.iter().map(|s| s.display.as_str()).collect();
    assert_eq!(shown[1], format!("{}/conf/sub/loc.conf", base.display()));
}

#[test]
fn include_order_is_sorted_and_spliced_in_place() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    write(
        dir,
        "main.conf",
        b"server {\n listen 9;\n location /0/ {}\n include parts/*.conf;\n location /9/ {}\n}\n",
    );
    fs::create_dir(dir.join("parts")).expect("mkdir");
    write(&dir.join("parts"), "b.conf", b"location /2/ {}\n");
    write(&dir.join("parts"), "a.conf", b"location /1/ {}\n");
    let (table, report) = load(&dir.join("main.conf"));
    let table = table.unwrap_or_else(|| panic!("{}", report.render_text()));
    let uris: Vec<&str> = table.servers[0]
        .locations
        .iter()
        .map(|l| l.uri.as_str())
        .collect();
    assert_eq!(uris, ["/0/", "/1/", "/2/", "/9/"]);
}

#[test]
fn every_directive_is_used_by_the_shipped_configs() {
    let mut used = Vec::new();
    let mut files = vec![repo().join("conf.d/default.conf")];
    files.extend(conf_files(&repo().join("conf.d/examples")));
    for file in &files {
        let mut report = Report::default();
        let walked = walk::walk(file, &mut report);
        let main = walked.main.expect("shipped config parses");
        collect_used(&main, &mut used);
    }
    for d in DIRECTIVES {
        let covered = used
            .iter()
            .any(|(name, context)| *name == d.name && d.contexts.contains(*context));
        assert!(covered, "no shipped config uses \"{} {}\"", d.name, d.usage);
    }
}

fn collect_used(scope: &Scope, used: &mut Vec<(&'static str, Context)>) {
    used.extend(scope.seen.iter().map(|(name, _)| (*name, scope.context)));
    for block in &scope.blocks {
        collect_used(block, used);
    }
}

fn conf_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .expect("directory")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "conf"))
        .collect();
    files.sort();
    files
}

/// Mangles every shipped config many ways and loads each result: the load
/// must return (errors are fine) quickly, never panic.
#[test]
fn mangled_configs_never_panic() {
    let started = Instant::now();
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut files = vec![repo().join("conf.d/default.conf")];
    files.extend(conf_files(&repo().join("conf.d/examples")));
    let mut loads = 0;
    for file in &files {
        let text = fs::read(file).expect("read config");
        for variant in mangle(&text) {
            let path = write(tmp.path(), "m.conf", &variant);
            let one = Instant::now();
            let (table, report) = load(&path);
            assert!(
                one.elapsed() < Duration::from_secs(2),
                "slow load of {variant:?}"
            );
            assert_eq!(table.is_some(), !report.has_errors());
            let _ = report.render_text();
            loads += 1;
        }
    }
    for variant in pathological() {
        let (_, report) = load(&write(tmp.path(), "p.conf", &variant));
        assert!(report.has_errors());
        let _ = report.render_text();
    }
    assert!(loads > 500, "only {loads} variants");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "took {:?}",
        started.elapsed()
    );
}

/// Truncations, token drops and duplications, byte flips, invalid UTF-8
/// and NUL bytes, sampled so each file gives a few hundred variants.
fn mangle(text: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let step = (text.len() / 50).max(1);
    for i in (0..text.len()).step_by(step) {
        out.push(text[..i].to_vec());
        for replacement in [&b"\xff"[..], b"\0", b"{", b"}", b";", b"\""] {
            let mut v = text.to_vec();
            v.splice(i..i + 1, replacement.iter().copied());
            out.push(v);
        }
        let mut flipped = text.to_vec();
        flipped[i] ^= 0x20;
        out.push(flipped);
    }
    let tokens = token_ranges(text);
    let step = (tokens.len() / 40).max(1);
    for &(start, end) in tokens.iter().step_by(step) {
        let mut dropped = text.to_vec();
        dropped.drain(start..end);
        out.push(dropped);
        let mut doubled = text.to_vec();
        doubled.splice(end..end, text[start..end].iter().chain(b" ").copied());
        out.push(doubled);
    }
    out
}

fn token_ranges(text: &[u8]) -> Vec<(usize, usize)> {
    let mut ranges = Vec::new();
    let mut start = None;
    for (i, b) in text.iter().enumerate() {
        match (b.is_ascii_whitespace(), start) {
            (true, Some(s)) => {
                ranges.push((s, i));
                start = None;
            }
            (false, None) => start = Some(i),
            _ => {}
        }
    }
    ranges
}

fn pathological() -> Vec<Vec<u8>> {
    let big = "location /x/ { root /tmp; }\n".repeat(10 << 20 >> 5);
    vec![
        big.into_bytes(),
        "server {".repeat(200_000).into_bytes(),
        "}".repeat(100_000).into_bytes(),
        format!("server {{ listen 9; return 200 \"{}", "\\".repeat(100_000)).into_bytes(),
        vec![0xff; 1000],
        vec![0; 1000],
    ]
}

/// nginx runs a server-level `return` before it chooses a location: a
/// location's own `return` never answers in such a server.
#[test]
fn a_server_return_answers_before_any_location() {
    let (table, report) = load_text(
        "server {\n listen 127.0.0.1:9;\n return 200 server;\n\
         location /loc { return 200 location; }\n location /other { root .; }\n}\n\
         server {\n listen 127.0.0.1:10;\n location /loc { return 200 location; }\n}\n",
    );
    let table = table.unwrap_or_else(|| panic!("{}", report.render_text()));
    let target = |server: usize, path: &str| {
        let location = table.servers[server].select_location(path);
        location.ret.as_ref().and_then(|r| r.target.clone())
    };
    let cases: &[(usize, &str, Option<&str>)] = &[
        (0, "/loc", Some("server")),
        (0, "/other", Some("server")),
        (0, "/", Some("server")),
        (1, "/loc", Some("location")),
        (1, "/", None),
    ];
    for &(server, path, expected) in cases {
        assert_eq!(target(server, path).as_deref(), expected, "{server} {path}");
    }
}

/// 200,000 `server_name`s load in well under a second: names are
/// deduplicated and claimed through sets (the old `Vec::contains` took
/// about 19 s here), and the chosen server is found by hashing.
#[test]
fn many_server_names_load_and_match() {
    const N: usize = 200_000;
    let mut text = String::with_capacity(N * 16);
    text.push_str("server {\n listen 127.0.0.1:9;\n server_name");
    for i in 0..N {
        text.push_str(&format!(" h{i}.test"));
    }
    // One repeated name: kept once.
    text.push_str(" h0.test;\n}\nserver {\n listen 127.0.0.1:9;\n server_name other.test;\n}\n");
    let (table, report) = load_text(&text);
    let table = table.unwrap_or_else(|| panic!("{}", report.render_text()));
    assert_eq!(table.servers[0].names.len(), N);
    let cases = [
        ("h0.test", 0),
        ("h199999.test", 0),
        ("other.test", 1),
        ("nope.test", 0),
    ];
    for (host, server) in cases {
        assert_eq!(table.server_for(0, Some(host)), server, "{host}");
    }
}

/// Wildcard names are matched by nginx's rules, and the rule that chose the
/// server is reported; a conflicting or malformed wildcard is refused.
#[test]
fn wildcard_server_names() {
    use crate::routing::ServerMatch::{
        DefaultServer, ExactName, FirstServer, LeadingWildcard, TrailingWildcard,
    };
    let (table, report) = load_text(
        "server { listen 127.0.0.1:9; server_name first.test; }\n\
         server { listen 127.0.0.1:9; server_name *.example.com; }\n\
         server { listen 127.0.0.1:9; server_name www.example.*; }\n\
         server { listen 127.0.0.1:9; server_name .example.org WWW.Example.com; }\n\
         server { listen 127.0.0.1:10; listen 127.0.0.1:9; server_name www.example.org; }\n\
         server { listen 127.0.0.1:10 default_server; }\n",
    );
    let table = table.unwrap_or_else(|| panic!("{}", report.render_text()));
    let cases: &[(usize, Option<&str>, (usize, crate::routing::ServerMatch))] = &[
        (0, Some("first.test"), (0, ExactName)),
        (0, Some("a.example.com"), (1, LeadingWildcard)),
        (0, Some("a.b.example.com"), (1, LeadingWildcard)),
        (0, Some("www.example.com"), (3, ExactName)),
        (0, Some("WWW.EXAMPLE.NET"), (2, TrailingWildcard)),
        (0, Some("example.org"), (3, ExactName)),
        (0, Some("x.example.org"), (3, LeadingWildcard)),
        (0, Some("www.example.org"), (4, ExactName)),
        (0, Some("example.com"), (0, FirstServer)),
        (0, None, (0, FirstServer)),
        (1, Some("www.example.org"), (4, ExactName)),
        (1, Some("x.example.org"), (5, DefaultServer)),
    ];
    for &(socket, host, expected) in cases {
        assert_eq!(table.choose_server(socket, host), expected, "{host:?}");
    }

    let (table, report) = load_text(
        "server { listen 9; server_name example.org *.x.test; }\n\
         server { listen 9; server_name .example.org www.*.test; }\n\
         server { listen 9; server_name *.x.test; }\n",
    );
    assert!(table.is_none());
    let errors: Vec<(Option<usize>, Option<usize>, &str)> = report
        .located()
        .iter()
        .map(|d| (d.line, d.column, d.message.split(" (").next().unwrap_or("")))
        .collect();
    assert_eq!(
        errors,
        [
            (
                Some(2),
                Some(32),
                "server name \".example.org\" is already used on 0.0.0.0:9"
            ),
            (Some(2), Some(45), "invalid server name \"www.*.test\""),
            (
                Some(3),
                Some(32),
                "server name \"*.x.test\" is already used on 0.0.0.0:9"
            ),
        ]
    );
}
