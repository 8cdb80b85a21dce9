//! SPEC §9.5 against the real binary: gzip on the fly (static files, CGI,
//! proxied responses), its negotiation and its limits (ranges, 304, HEAD,
//! HTTP/1.0, already encoded), `gzip_static`, `add_header` (inheritance,
//! `always`, variables), `expires` and `server_tokens`.
//!
//! The proxied location forwards to the same server's uncompressed
//! locations: one process, no helper upstream.

mod common;

use std::io::Read;

use common::{Response, Server};

const CONFIG: &str = r#"
server_tokens off;
server {
    listen 127.0.0.1:{port};
    server_name localhost;
    root {dir}/www;
    gzip on;
    gzip_types text/css application/json;
    add_header X-Server-Level yes;
    add_header X-Where "$host$uri" always;

    location /plain/ {
        gzip off;
        alias {dir}/www/;
    }
    location /cgi/ {
        cgi .sh /bin/sh;
    }
    location /raw-cgi/ {
        gzip off;
        alias {dir}/www/cgi/;
        cgi .sh /bin/sh;
    }
    location /proxied/ {
        proxy_pass http://127.0.0.1:{port}/plain/;
    }
    location /proxied-cgi/ {
        proxy_pass http://127.0.0.1:{port}/raw-cgi/;
    }
    location /static/ {
        gzip off;
        gzip_static on;
    }
    location /own/ {
        add_header X-Own 1;
    }
    location /e-hour/ { expires 1h; }
    location /e-neg/ { expires -1; }
    location /e-epoch/ { expires epoch; }
    location /e-max/ { expires max; }
    location /e-off/ { expires off; }
}
"#;

/// About 300 KiB of HTML: several compressed chunks.
fn big_html() -> Vec<u8> {
    let mut out = b"<!doctype html><html><body>\n".to_vec();
    let mut i = 0u32;
    while out.len() < 300 * 1024 {
        out.extend_from_slice(
            format!(
                "<p class=\"row-{}\">Row {i}: {}</p>\n",
                i % 9,
                i.wrapping_mul(2_654_435_761)
            )
            .as_bytes(),
        );
        i += 1;
    }
    out
}

/// `len` bytes of HTML rows, `seed` telling versions apart: gzip makes
/// some 30% of it.
fn page(len: usize, seed: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 64);
    let mut i = seed;
    while out.len() < len {
        let n = i.wrapping_mul(2_654_435_761);
        out.extend_from_slice(format!("<p class=\"r{}\">Row {i}: {n}</p>\n", i % 7).as_bytes());
        i += 1;
    }
    out.truncate(len);
    out
}

const CGI_HTML: &str = "printf 'Content-Type: text/html\\r\\n\\r\\n'\n\
    i=0; while [ $i -lt 3000 ]; do echo \"<li>item $i</li>\"; i=$((i+1)); done\n";
const CGI_ENCODED: &str =
    "printf 'Content-Type: text/html\\r\\nContent-Encoding: br\\r\\n\\r\\n'\n\
    i=0; while [ $i -lt 300 ]; do echo \"not really brotli $i\"; i=$((i+1)); done\n";

fn gz(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    e.write_all(data).expect("compress");
    e.finish().expect("compress")
}

fn gunzip(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(data)
        .read_to_end(&mut out)
        .expect("a valid gzip stream");
    out
}

fn cgi_html() -> Vec<u8> {
    (0..3000)
        .flat_map(|i| format!("<li>item {i}</li>\n").into_bytes())
        .collect()
}

fn server() -> Server {
    let html = big_html();
    let text = b"plain text ".repeat(100);
    let css = b"body { color: red }\n".repeat(50);
    let png = vec![7u8; 4000];
    let gz_text = gz(&text);
    let page_html = page(100 * 1024, 0);
    let long = page(400 * 1024, 0);
    let huge = page(2 * 1024 * 1024, 0);
    let files: Vec<(&str, &[u8])> = vec![
        ("www/big.html", &html),
        ("www/page.html", &page_html),
        ("www/long.html", &long),
        ("www/huge.html", &huge),
        ("www/small.css", b"a{}"),
        ("www/style.css", &css),
        ("www/text.txt", &text),
        ("www/image.png", &png),
        ("www/cgi/page.sh", CGI_HTML.as_bytes()),
        ("www/cgi/encoded.sh", CGI_ENCODED.as_bytes()),
        ("www/static/a.txt", &text),
        ("www/static/a.txt.gz", &gz_text),
        ("www/static/only.txt", &text),
        ("www/own/x.txt", b"own"),
        ("www/e-hour/x.txt", b"x"),
        ("www/e-neg/x.txt", b"x"),
        ("www/e-epoch/x.txt", b"x"),
        ("www/e-max/x.txt", b"x"),
        ("www/e-off/x.txt", b"x"),
    ];
    Server::start(CONFIG, &files)
}

fn get(server: &Server, path: &str, extra: &str) -> Response {
    server.send(
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n{extra}\r\n")
            .as_bytes(),
    )
}

fn gzipped(server: &Server, path: &str) -> Response {
    get(server, path, "Accept-Encoding: gzip, deflate\r\n")
}

/// A compressed response, as SPEC §9.5 says it looks.
fn assert_compressed(response: &Response, expected: &[u8]) {
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(response.header("content-encoding"), Some("gzip"));
    assert_eq!(response.header("vary"), Some("Accept-Encoding"));
    // Streamed in chunks, or (a cached file's compressed copy, or one made
    // in one go to keep) with its length.
    match response.header("content-length") {
        Some(n) => {
            assert_eq!(n.parse::<usize>().ok(), Some(response.body.len()));
            assert_eq!(response.header("transfer-encoding"), None);
        }
        None => assert_eq!(response.header("transfer-encoding"), Some("chunked")),
    }
    assert_eq!(response.header("accept-ranges"), None);
    assert!(
        response.body.len() < expected.len() / 2,
        "{} of {}",
        response.body.len(),
        expected.len()
    );
    assert!(gunzip(&response.body) == expected, "round trip");
}

#[test]
fn static_file_round_trip_with_weak_etag() {
    let server = server();
    let r = gzipped(&server, "/big.html");
    assert_compressed(&r, &big_html());
    let etag = r.header("etag").expect("an ETag");
    assert!(etag.starts_with("W/\""), "{etag}");
    let plain = get(&server, "/big.html", "");
    assert_eq!(plain.header("etag"), Some(&etag[2..]));
    // The weak tag still validates (weak comparison), the strong one too.
    for tag in [etag, &etag[2..]] {
        let r = get(
            &server,
            "/big.html",
            &format!("Accept-Encoding: gzip\r\nIf-None-Match: {tag}\r\n"),
        );
        assert_eq!(r.status, 304);
        assert!(r.body.is_empty());
    }
    // A listed type other than text/html.
    assert_compressed(
        &gzipped(&server, "/style.css"),
        &b"body { color: red }\n".repeat(50),
    );
}

#[test]
fn negotiation_types_and_min_length() {
    let server = server();
    let html = big_html();
    let identity = |r: &Response, vary: bool| {
        assert_eq!(r.status, 200);
        assert_eq!(r.header("content-encoding"), None);
        assert_eq!(r.header("vary"), vary.then_some("Accept-Encoding"));
    };
    // Absent, refused, and accepted through `*` or another spelling.
    let r = get(&server, "/big.html", "");
    identity(&r, true);
    assert_eq!(r.body, html);
    assert_eq!(
        r.header("content-length"),
        Some(html.len().to_string().as_str())
    );
    identity(
        &get(&server, "/big.html", "Accept-Encoding: gzip;q=0, br\r\n"),
        true,
    );
    identity(
        &get(&server, "/big.html", "Accept-Encoding: identity\r\n"),
        true,
    );
    assert_compressed(&get(&server, "/big.html", "Accept-Encoding: *\r\n"), &html);
    assert_compressed(
        &get(&server, "/big.html", "Accept-Encoding: GZIP;q=0.5\r\n"),
        &html,
    );
    // Not a listed type; text/plain is not in this server's list.
    identity(&gzipped(&server, "/image.png"), false);
    identity(&gzipped(&server, "/text.txt"), false);
    // Shorter than gzip_min_length.
    identity(&gzipped(&server, "/small.css"), false);
    // gzip off in the location.
    identity(&gzipped(&server, "/plain/big.html"), false);
}

#[test]
fn ranges_head_and_http10_are_not_compressed() {
    let server = server();
    let html = big_html();
    let r = get(
        &server,
        "/big.html",
        "Accept-Encoding: gzip\r\nRange: bytes=0-99\r\n",
    );
    assert_eq!(r.status, 206);
    assert_eq!(r.header("content-encoding"), None);
    assert_eq!(r.body, &html[..100]);

    let head = server.send(b"HEAD /big.html HTTP/1.1\r\nHost: localhost\r\nAccept-Encoding: gzip\r\nConnection: close\r\n\r\n");
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-encoding"), Some("gzip"));
    assert_eq!(head.header("content-length"), None);
    assert!(head.body.is_empty());

    // HTTP/1.0 cannot take chunks: sent as it is (as nginx's default
    // gzip_http_version 1.1), the connection kept.
    let r = server.send(b"GET /big.html HTTP/1.0\r\nAccept-Encoding: gzip\r\n\r\n");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-encoding"), None);
    assert_eq!(r.header("vary"), Some("Accept-Encoding"));
    assert_eq!(r.body, html);
}

#[test]
fn error_pages_are_compressed_too_when_long_enough() {
    let server = server();
    let r = gzipped(&server, "/missing.html");
    assert_eq!(r.status, 404);
    // The built-in page is bytes in memory: compressed whole, with a length.
    assert_eq!(r.header("content-encoding"), Some("gzip"));
    let page = String::from_utf8(gunzip(&r.body)).expect("UTF-8 page");
    assert!(page.contains("404"), "{page}");
    assert_eq!(
        r.header("content-length"),
        Some(r.body.len().to_string().as_str())
    );
}

#[test]
fn cgi_and_proxied_responses_are_compressed() {
    let server = server();
    assert_compressed(&gzipped(&server, "/cgi/page.sh"), &cgi_html());
    // A length from the upstream, re-framed as chunks.
    assert_compressed(&gzipped(&server, "/proxied/big.html"), &big_html());
    // A chunked upstream body, taken apart and compressed.
    assert_compressed(&gzipped(&server, "/proxied-cgi/page.sh"), &cgi_html());
    // Without Accept-Encoding the proxy relays it as it came.
    let r = get(&server, "/proxied/big.html", "");
    assert_eq!(r.header("content-encoding"), None);
    assert_eq!(r.body, big_html());
    // HEAD through CGI: the same head, no body.
    let head = server.send(b"HEAD /cgi/page.sh HTTP/1.1\r\nHost: localhost\r\nAccept-Encoding: gzip\r\nConnection: close\r\n\r\n");
    assert_eq!(head.header("content-encoding"), Some("gzip"));
    assert!(head.body.is_empty());
}

#[test]
fn a_response_already_encoded_is_left_alone() {
    let server = server();
    let r = gzipped(&server, "/cgi/encoded.sh");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-encoding"), Some("br"));
    assert!(r.text().starts_with("not really brotli 0\n"));
}

#[test]
fn gzip_static_sends_the_gz_file() {
    let server = server();
    let text = b"plain text ".repeat(100);
    let r = gzipped(&server, "/static/a.txt");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-encoding"), Some("gzip"));
    assert_eq!(r.header("content-type"), Some("text/plain"));
    assert_eq!(r.header("vary"), Some("Accept-Encoding"));
    assert_eq!(r.body, gz(&text));
    // Ranges apply to the .gz file, as nginx.
    let r = get(
        &server,
        "/static/a.txt",
        "Accept-Encoding: gzip\r\nRange: bytes=0-1\r\n",
    );
    assert_eq!(r.status, 206);
    assert_eq!(r.body, [0x1f, 0x8b]);
    // A client that does not accept gzip gets the file itself.
    let r = get(&server, "/static/a.txt", "");
    assert_eq!(r.header("content-encoding"), None);
    assert_eq!(r.header("vary"), Some("Accept-Encoding"));
    assert_eq!(r.body, text);
    // No .gz beside it: the file (this location has gzip off).
    let r = gzipped(&server, "/static/only.txt");
    assert_eq!(r.header("content-encoding"), None);
    assert_eq!(r.body, text);
}

#[test]
fn add_header_inheritance_always_and_variables() {
    let server = server();
    let r = get(&server, "/text.txt", "");
    assert_eq!(r.header("x-server-level"), Some("yes"));
    assert_eq!(r.header("x-where"), Some("localhost/text.txt"));
    // A level that sets add_header replaces the outer list.
    let r = get(&server, "/own/x.txt", "");
    assert_eq!(r.header("x-own"), Some("1"));
    assert_eq!(r.header("x-server-level"), None);
    assert_eq!(r.header("x-where"), None);
    // Error pages get only the `always` headers.
    let r = get(&server, "/nothing-here", "");
    assert_eq!(r.status, 404);
    assert_eq!(r.header("x-server-level"), None);
    assert_eq!(r.header("x-where"), Some("localhost/nothing-here"));
    // 304 is one of the listed statuses.
    let etag = get(&server, "/text.txt", "").headers["etag"].clone();
    let r = get(&server, "/text.txt", &format!("If-None-Match: {etag}\r\n"));
    assert_eq!(r.status, 304);
    assert_eq!(r.header("x-server-level"), Some("yes"));
}

#[test]
fn expires_values() {
    let server = server();
    let cases = [
        ("/e-hour/x.txt", Some("max-age=3600")),
        ("/e-neg/x.txt", Some("no-cache")),
        ("/e-epoch/x.txt", Some("no-cache")),
        ("/e-max/x.txt", Some("max-age=315360000")),
        ("/e-off/x.txt", None),
    ];
    for (path, cache_control) in cases {
        let r = get(&server, path, "");
        assert_eq!(r.header("cache-control"), cache_control, "{path}");
        assert_eq!(
            r.header("expires").is_some(),
            cache_control.is_some(),
            "{path}"
        );
    }
    let epoch = get(&server, "/e-epoch/x.txt", "");
    assert_eq!(
        epoch.header("expires"),
        Some("Thu, 01 Jan 1970 00:00:01 GMT")
    );
    let max = get(&server, "/e-max/x.txt", "");
    assert_eq!(max.header("expires"), Some("Thu, 31 Dec 2037 23:55:55 GMT"));
    // Not on an error.
    let missing = get(&server, "/e-hour/missing", "");
    assert_eq!(missing.status, 404);
    assert_eq!(missing.header("cache-control"), None);
}

#[test]
fn server_tokens_off_hides_the_version_on_every_response() {
    let server = server();
    for path in ["/text.txt", "/missing", "/cgi/page.sh", "/proxied/text.txt"] {
        let r = get(&server, path, "");
        assert_eq!(r.header("server"), Some("webserv"), "{path}");
    }
    let page = get(&server, "/missing", "").text();
    assert!(page.contains("<small>webserv</small>"), "{page}");
    assert!(!page.contains(env!("CARGO_PKG_VERSION")));
    // A head the server could not parse gets it too.
    let r = server.send(b"BAD\r\n\r\n");
    assert_eq!(r.status, 400);
    assert_eq!(r.header("server"), Some("webserv"));
}

/// A cached small file's compressed copy is made once and kept with the
/// cache entry (SPEC §9.5), so it goes with a length, the same bytes each
/// time, and never outlives a change to the file.
#[test]
fn a_cached_small_files_compressed_copy_is_kept_and_never_stale() {
    let server = server();
    let first = gzipped(&server, "/style.css");
    assert_compressed(&first, &b"body { color: red }\n".repeat(50));
    assert!(first.header("content-length").is_some(), "{first:?}");
    let again = gzipped(&server, "/style.css");
    assert_eq!(again.body, first.body);
    let changed = b"p { margin: 0 }\n".repeat(80);
    std::fs::write(server.path("www/style.css"), &changed).unwrap();
    let after = gzipped(&server, "/style.css");
    assert_compressed(&after, &changed);
    assert_ne!(after.header("etag"), first.header("etag"));
    // A range of it is never compressed.
    let range = get(
        &server,
        "/style.css",
        "Accept-Encoding: gzip\r\nRange: bytes=0-9\r\n",
    );
    assert_eq!(range.status, 206);
    assert_eq!(range.header("content-encoding"), None);
    assert_eq!(range.body, &changed[..10]);
}

/// A cached file above `small` whose compressed copy fits in `small` (a
/// 100 KiB page): compressed once, in one go, then sent from memory with
/// its length like a small file's; never stale across changes.
#[test]
fn a_cached_large_files_compressed_copy_is_kept_and_never_stale() {
    let server = server();
    let content = page(100 * 1024, 0);
    let first = gzipped(&server, "/page.html");
    assert_compressed(&first, &content);
    assert!(first.header("content-length").is_some(), "{first:?}");
    let again = gzipped(&server, "/page.html");
    assert_compressed(&again, &content);
    assert!(again.header("content-length").is_some(), "{again:?}");
    assert_eq!(again.body, first.body);
    let mut etags = vec![first.header("etag").map(str::to_owned)];
    for version in 1..=4u32 {
        let changed = page(100 * 1024 + version as usize, version * 1000);
        std::fs::write(server.path("www/page.html"), &changed).unwrap();
        for _ in 0..2 {
            let after = gzipped(&server, "/page.html");
            assert_compressed(&after, &changed);
            assert!(after.header("content-length").is_some(), "{after:?}");
            assert!(!etags.contains(&after.header("etag").map(str::to_owned)));
        }
        etags.push(
            gzipped(&server, "/page.html")
                .header("etag")
                .map(str::to_owned),
        );
    }
    let current = page(100 * 1024 + 4, 4000);
    // A range, a HEAD and a revalidation behave as for any file.
    let range = get(
        &server,
        "/page.html",
        "Accept-Encoding: gzip\r\nRange: bytes=10-19\r\n",
    );
    assert_eq!(range.status, 206);
    assert_eq!(range.header("content-encoding"), None);
    assert_eq!(range.body, &current[10..20]);
    let head = server.send(
        b"HEAD /page.html HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\
          Accept-Encoding: gzip\r\n\r\n",
    );
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-encoding"), Some("gzip"));
    assert!(head.body.is_empty());
    let etag = etags.last().cloned().flatten().expect("an ETag");
    let not_modified = get(
        &server,
        "/page.html",
        &format!("Accept-Encoding: gzip\r\nIf-None-Match: {etag}\r\n"),
    );
    assert_eq!(not_modified.status, 304, "{not_modified:?}");
    assert!(not_modified.body.is_empty());
}

/// A copy larger than `small` is sent by the response that made it and
/// not kept: later responses are compressed as they go, in chunks; a file
/// above the one-go bound always is.
#[test]
fn copies_larger_than_small_and_huge_files_still_round_trip() {
    let server = server();
    // Some 115 KiB once compressed.
    let long = page(400 * 1024, 0);
    let first = gzipped(&server, "/long.html");
    assert_compressed(&first, &long);
    assert!(first.body.len() > 64 * 1024, "{}", first.body.len());
    for _ in 0..2 {
        let later = gzipped(&server, "/long.html");
        assert_compressed(&later, &long);
        assert_eq!(later.header("transfer-encoding"), Some("chunked"));
    }
    let huge = page(2 * 1024 * 1024, 0);
    for _ in 0..2 {
        let response = gzipped(&server, "/huge.html");
        assert_compressed(&response, &huge);
        assert_eq!(response.header("transfer-encoding"), Some("chunked"));
    }
}
