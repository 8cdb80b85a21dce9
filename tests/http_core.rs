//! The HTTP core against the real binary: SPEC §3, §4 (static rows) and §5,
//! over raw TCP.

mod common;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use common::{read_response, read_to_close, Response, Server};

const CONFIG: &str = r#"
server {
    listen 127.0.0.1:{port} default_server;
    server_name localhost;
    root {dir}/www;
    client_max_header_size 1k;
    client_max_body_size 100;
    error_page 404 /errors/404.html;

    location /files/ { autoindex on; }
    location /old { return 301 /new; }
    location /teapot { return 418 "short and stout"; }
    location /gone { return 410; }
    location = /exact { return 200 "exact"; }
    location /alias/ { alias {dir}/other/; }
    location /upload { methods GET POST; }
    location /head-ok { methods GET HEAD; }
    location /get-only { methods GET; }
}

server {
    listen 127.0.0.1:{port};
    server_name second.test;
    root {dir}/second;
}
"#;

fn files() -> Vec<(&'static str, &'static [u8])> {
    vec![
        ("www/index.html", b"<h1>home</h1>"),
        ("www/hello.txt", b"hello, world\n"),
        ("www/style.css", b"body{}"),
        ("www/blob.unknownext", b"\x00\x01"),
        ("www/errors/404.html", b"custom not found"),
        ("www/files/b.txt", b"bbb"),
        ("www/files/a <&>.txt", b"a"),
        ("www/files/sub/x.txt", b"x"),
        ("www/noindex/file.txt", b"n"),
        ("www/get-only/index.html", b"get only"),
        ("other/aliased.txt", b"from alias"),
        ("second/index.html", b"second site"),
    ]
}

fn server() -> Server {
    Server::start(CONFIG, &files())
}

fn get_with(server: &Server, path: &str, extra: &str) -> Response {
    server.send(
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n{extra}Connection: close\r\n\r\n")
            .as_bytes(),
    )
}

fn status_of(raw: &[u8]) -> u16 {
    let text = String::from_utf8_lossy(raw);
    text.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {text:?}"))
}

// --- SPEC §5 -----------------------------------------------------------------

#[test]
fn malformed_heads_are_400() {
    let s = server();
    let cases: &[&[u8]] = &[
        b"GARBAGE\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nno colon here\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n folded\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost : a\r\n\r\n",
        b"GET / HTTP/1.1\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        b"GET /../../etc/passwd HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET /%2e%2e/%2e%2e/etc/passwd HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET /a%00b HTTP/1.1\r\nHost: a\r\n\r\n",
    ];
    for case in cases {
        let raw = s.raw(case);
        assert_eq!(status_of(&raw), 400, "{:?}", String::from_utf8_lossy(case));
    }
}

#[test]
fn framing_errors_are_400_and_close() {
    let s = server();
    let cases: &[&[u8]] = &[
        b"POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\nabc",
        b"POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
        b"POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: x\r\n\r\n",
        b"POST /upload HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nZZ\r\nab\r\n0\r\n\r\n",
        // SPEC §9.6: a bare LF in chunked framing (found by fuzzing).
        b"POST /upload HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\n0\r\n\r\n",
        // RFC 9112 §6.1: Transfer-Encoding in an HTTP/1.0 request is faulty
        // framing, whatever the connection asks for.
        b"POST /upload HTTP/1.0\r\nTransfer-Encoding: chunked\r\nConnection: keep-alive\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    ];
    for case in cases {
        let raw = s.raw(case);
        let text = String::from_utf8_lossy(&raw);
        assert_eq!(status_of(&raw), 400, "{text}");
        assert!(text.contains("Connection: close"), "{text}");
    }
}

#[test]
fn unsupported_coding_version_and_method() {
    let s = server();
    let cases: &[(&[u8], u16)] = &[
        (
            b"POST /upload HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n",
            501,
        ),
        (b"GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505),
        (
            b"BREW / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
            501,
        ),
        (
            b"get / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
            501,
        ),
    ];
    for (case, expected) in cases {
        assert_eq!(
            status_of(&s.raw(case)),
            *expected,
            "{:?}",
            String::from_utf8_lossy(case)
        );
    }
}

#[test]
fn head_limits_give_414_and_431() {
    let s = server();
    let long_target = format!("GET /{} HTTP/1.1\r\nHost: a\r\n\r\n", "a".repeat(2000));
    assert_eq!(status_of(&s.raw(long_target.as_bytes())), 414);
    let big_header = format!(
        "GET / HTTP/1.1\r\nHost: a\r\nX-Big: {}\r\n\r\n",
        "b".repeat(2000)
    );
    assert_eq!(status_of(&s.raw(big_header.as_bytes())), 431);
}

#[test]
fn body_over_limit_is_413_and_close() {
    let s = server();
    let declared = s.raw(b"POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 101\r\n\r\n");
    assert_eq!(status_of(&declared), 413);
    let mut chunked =
        b"POST /upload HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    chunked.extend_from_slice(b"40\r\n");
    chunked.extend_from_slice(&[b'x'; 64]);
    chunked.extend_from_slice(b"\r\n40\r\n");
    chunked.extend_from_slice(&[b'x'; 64]);
    chunked.extend_from_slice(b"\r\n0\r\n\r\n");
    let raw = s.raw(&chunked);
    assert_eq!(status_of(&raw), 413);
    assert!(String::from_utf8_lossy(&raw).contains("Connection: close"));
}

#[test]
fn expect_continue_gets_the_final_error_at_once() {
    let s = server();
    let mut stream = s.connect();
    stream
        .write_all(b"POST /get-only/ HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\nExpect: 100-continue\r\n\r\n")
        .unwrap();
    let response = read_response(&mut stream, false);
    assert_eq!(response.status, 405);
}

#[test]
fn every_response_has_date_server_and_length() {
    let s = server();
    for path in ["/hello.txt", "/missing", "/old", "/teapot", "/files/"] {
        let r = s.get(path);
        assert!(
            r.header("date").is_some_and(|d| d.ends_with("GMT")),
            "{path}: {r:?}"
        );
        assert!(
            r.header("server").is_some_and(|v| v.starts_with("webserv")),
            "{path}"
        );
        assert!(r.header("content-length").is_some(), "{path}");
    }
}

#[test]
fn head_gets_get_headers_without_body() {
    let s = server();
    let get = s.get("/hello.txt");
    let head = s.send(b"HEAD /hello.txt HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    for name in ["content-length", "content-type", "etag", "last-modified"] {
        assert_eq!(head.header(name), get.header(name), "{name}");
    }
    // Nothing follows the head: the server closes right after it.
    let raw = s.raw(b"HEAD /hello.txt HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
    assert!(raw.ends_with(b"\r\n\r\n"));
}

#[test]
fn keep_alive_and_http10_rules() {
    let s = server();
    let mut stream = s.connect();
    for _ in 0..3 {
        stream
            .write_all(b"GET /hello.txt HTTP/1.1\r\nHost: a\r\n\r\n")
            .unwrap();
        let r = read_response(&mut stream, false);
        assert_eq!(r.status, 200);
        assert_eq!(r.header("connection"), Some("keep-alive"));
    }
    // HTTP/1.0 closes unless asked.
    let raw = s.raw(b"GET /hello.txt HTTP/1.0\r\n\r\n");
    assert!(String::from_utf8_lossy(&raw).contains("Connection: close"));
    let mut stream = s.connect();
    for _ in 0..2 {
        stream
            .write_all(b"GET /hello.txt HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            .unwrap();
        assert_eq!(read_response(&mut stream, false).status, 200);
    }
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let s = server();
    let mut stream = s.connect();
    stream
        .write_all(b"GET /hello.txt HTTP/1.1\r\nHost: a\r\n\r\nGET /missing HTTP/1.1\r\nHost: a\r\n\r\nGET /exact HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        .unwrap();
    let raw = String::from_utf8_lossy(&read_to_close(&mut stream)).into_owned();
    let statuses: Vec<&str> = raw
        .match_indices("HTTP/1.1 ")
        .map(|(i, _)| &raw[i + 9..i + 12])
        .collect();
    assert_eq!(statuses, ["200", "404", "200"], "{raw}");
    assert!(raw.ends_with("exact"));
}

#[test]
fn a_body_on_a_keep_alive_connection_is_skipped_before_the_next_request() {
    let s = server();
    let mut stream = s.connect();
    stream
        .write_all(b"GET /hello.txt HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nXXXXXGET /exact HTTP/1.1\r\nHost: a\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut stream, false).status, 200);
    let second = read_response(&mut stream, false);
    assert_eq!(second.text(), "exact");
    stream
        .write_all(b"GET /hello.txt HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\nGET /exact HTTP/1.1\r\nHost: a\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut stream, false).status, 200);
    assert_eq!(read_response(&mut stream, false).text(), "exact");
}

#[test]
fn slow_head_gets_408() {
    let s = Server::start(
        "server { listen 127.0.0.1:{port}; root {dir}; client_header_timeout 300ms; }",
        &[("index.html", b"x")],
    );
    let mut stream = s.connect();
    stream.write_all(b"GET / HTTP/1.1\r\nHo").unwrap();
    let started = Instant::now();
    let raw = read_to_close(&mut stream);
    assert_eq!(status_of(&raw), 408);
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn idle_keep_alive_connection_is_closed() {
    let s = Server::start(
        "server { listen 127.0.0.1:{port}; root {dir}; keepalive_timeout 300ms; }",
        &[("index.html", b"x")],
    );
    let mut stream = s.connect();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut stream, false).status, 200);
    let mut buf = [0u8; 16];
    assert_eq!(stream.read(&mut buf).expect("closed, not timed out"), 0);
}

/// Two servers on one address with different limits: the one `Host`
/// chooses sets the idle wait after its response (nginx does the same).
const TWO_LIMITS: &str = r#"
server {
    listen 127.0.0.1:{port};
    server_name a.test;
    root {dir};
    keepalive_timeout 60s;
    client_max_header_size 1k;
}
server {
    listen 127.0.0.1:{port};
    server_name b.test;
    root {dir};
    keepalive_timeout 300ms;
    client_max_header_size 8k;
}
server {
    listen 127.0.0.1:{port};
    server_name c.test;
    root {dir};
    client_max_header_size 1k;
}
"#;

#[test]
fn keepalive_timeout_is_the_chosen_servers() {
    let s = Server::start(TWO_LIMITS, &[("index.html", b"x")]);
    let mut stream = s.connect();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: b.test\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut stream, false).status, 200);
    // b.test idles 300 ms; the default server (a.test) would wait 60 s.
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 16];
    assert_eq!(stream.read(&mut buf).expect("closed well before 5 s"), 0);
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn client_max_header_size_is_the_chosen_servers() {
    let s = Server::start(TWO_LIMITS, &[("index.html", b"x")]);
    let big = "v".repeat(4000);
    let ask = |host: &str| {
        s.send(
            format!("GET / HTTP/1.1\r\nHost: {host}\r\nX-Big: {big}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .status
    };
    // 4 kB of head: within b.test's 8k, over a.test's (default) and c.test's 1k.
    assert_eq!(ask("b.test"), 200);
    assert_eq!(ask("a.test"), 431);
    assert_eq!(ask("c.test"), 431);
    assert_eq!(ask("unknown.test"), 431);
    let long_target = format!("/{}", "t".repeat(2000));
    let r = s.send(
        format!("GET {long_target} HTTP/1.1\r\nHost: c.test\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    );
    assert_eq!(r.status, 414);
}

#[test]
fn keepalive_zero_disables_keep_alive() {
    let s = Server::start(
        "server { listen 127.0.0.1:{port}; root {dir}; keepalive_timeout 0; }",
        &[("index.html", b"x")],
    );
    let raw = s.raw(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    assert!(String::from_utf8_lossy(&raw).contains("Connection: close"));
}

// --- SPEC §3 and §4 ------------------------------------------------------------

#[test]
fn static_file_has_type_length_and_validators() {
    let s = server();
    let r = s.get("/hello.txt");
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"hello, world\n");
    assert_eq!(r.header("content-type"), Some("text/plain"));
    assert_eq!(r.header("content-length"), Some("13"));
    assert!(r
        .header("last-modified")
        .is_some_and(|v| v.ends_with("GMT")));
    assert!(r.header("etag").is_some_and(|v| v.starts_with('"')));
    assert_eq!(s.get("/style.css").header("content-type"), Some("text/css"));
    assert_eq!(
        s.get("/blob.unknownext").header("content-type"),
        Some("application/octet-stream")
    );
}

#[test]
fn conditional_requests_get_304() {
    let s = server();
    let r = s.get("/hello.txt");
    let etag = r.header("etag").unwrap();
    let modified = r.header("last-modified").unwrap();
    let not_modified = get_with(&s, "/hello.txt", &format!("If-None-Match: {etag}\r\n"));
    assert_eq!(not_modified.status, 304);
    assert!(not_modified.body.is_empty());
    assert_eq!(
        get_with(
            &s,
            "/hello.txt",
            &format!("If-Modified-Since: {modified}\r\n")
        )
        .status,
        304
    );
    assert_eq!(
        get_with(&s, "/hello.txt", "If-None-Match: \"other\"\r\n").status,
        200
    );
    // If-None-Match wins over If-Modified-Since.
    let both = format!("If-None-Match: \"other\"\r\nIf-Modified-Since: {modified}\r\n");
    assert_eq!(get_with(&s, "/hello.txt", &both).status, 200);
}

#[test]
fn ranges_give_206_and_416() {
    let s = server();
    let r = get_with(&s, "/hello.txt", "Range: bytes=0-4\r\n");
    assert_eq!(r.status, 206);
    assert_eq!(r.body, b"hello");
    assert_eq!(r.header("content-range"), Some("bytes 0-4/13"));
    let suffix = get_with(&s, "/hello.txt", "Range: bytes=-6\r\n");
    assert_eq!(suffix.body, b"world\n");
    let bad = get_with(&s, "/hello.txt", "Range: bytes=100-200\r\n");
    assert_eq!(bad.status, 416);
    assert_eq!(bad.header("content-range"), Some("bytes */13"));
}

#[test]
fn directories_redirect_index_list_or_forbid() {
    let s = server();
    let redirect = s.get("/files?x=1");
    assert_eq!(redirect.status, 301);
    assert_eq!(redirect.header("location"), Some("/files/?x=1"));
    assert_eq!(s.get("/").text(), "<h1>home</h1>");
    let listing = s.get("/files/");
    assert_eq!(listing.status, 200);
    let html = listing.text();
    assert!(html.contains("a &lt;&amp;&gt;.txt"), "{html}");
    assert!(
        html.find("sub/").unwrap() < html.find("b.txt").unwrap(),
        "directories first"
    );
    assert_eq!(s.get("/noindex/").status, 403);
}

#[test]
fn missing_files_and_custom_error_pages() {
    let s = server();
    let r = s.get("/nope.txt");
    assert_eq!(r.status, 404);
    assert_eq!(r.text(), "custom not found");
    assert_eq!(s.get("/hello.txt/").status, 404);
    // No error_page for 403: the built-in page.
    let forbidden = s.get("/noindex/");
    assert!(forbidden.text().contains("403"));
}

#[test]
fn return_redirects_text_and_codes() {
    let s = server();
    let r = s.get("/old");
    assert_eq!(r.status, 301);
    assert_eq!(r.header("location"), Some("/new"));
    let t = s.get("/teapot");
    assert_eq!((t.status, t.text().as_str()), (418, "short and stout"));
    assert_eq!(s.get("/gone").status, 410);
    assert_eq!(s.get("/exact").text(), "exact");
}

#[test]
fn methods_give_405_with_allow() {
    let s = server();
    let r = s.send(b"DELETE /hello.txt HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("GET, HEAD"));
    let head = s.send(b"HEAD /get-only/ HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
    assert_eq!(head.status, 405);
    assert_eq!(head.header("allow"), Some("GET"));
    let post = s.send(
        b"POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi",
    );
    assert_eq!(post.status, 405, "POST without upload_store or CGI");
}

#[test]
fn alias_and_virtual_hosts() {
    let s = server();
    assert_eq!(s.get("/alias/aliased.txt").text(), "from alias");
    let second = s.send(b"GET / HTTP/1.1\r\nHost: SECOND.test:1234\r\nConnection: close\r\n\r\n");
    assert_eq!(second.text(), "second site");
    let unknown = s.send(b"GET / HTTP/1.1\r\nHost: unknown\r\nConnection: close\r\n\r\n");
    assert_eq!(unknown.text(), "<h1>home</h1>");
}

#[test]
fn garbage_then_a_valid_request_on_a_new_connection() {
    let s = server();
    let raw = s.raw(b"\x00\x01\x02\xff\xfe garbage\r\n\r\n");
    assert_eq!(status_of(&raw), 400);
    assert_eq!(s.get("/hello.txt").status, 200);
}

#[test]
fn sigterm_exits_zero() {
    let mut s = server();
    s.signal(libc::SIGTERM);
    assert_eq!(s.wait_exit(), Some(0));
}

#[test]
fn max_connections_pauses_accepting_until_one_closes() {
    let s = Server::start(
        "max_connections 2;\nserver { listen 127.0.0.1:{port}; root {dir}; }",
        &[("index.html", b"x")],
    );
    let first = s.connect();
    let mut second = s.connect();
    second
        .write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut second, false).status, 200);
    // The kernel completes the third handshake, but the server does not
    // take the connection while two are open.
    let mut third = s.connect();
    third
        .write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        .unwrap();
    third
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut buf = [0u8; 1];
    assert!(third.read(&mut buf).is_err(), "served past max_connections");
    drop(first);
    third.set_read_timeout(Some(common::TIMEOUT)).unwrap();
    assert_eq!(read_response(&mut third, false).status, 200);
}

#[test]
fn a_request_followed_by_end_of_file_is_answered_then_closed_at_once() {
    let s = server();
    let mut stream = s.connect();
    // The request and the FIN arrive together: one event announces both.
    stream
        .write_all(b"GET /hello.txt HTTP/1.1\r\nHost: a\r\n\r\n")
        .unwrap();
    stream.shutdown(std::net::Shutdown::Write).unwrap();
    let started = Instant::now();
    let raw = read_to_close(&mut stream);
    assert_eq!(status_of(&raw), 200);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "closed only at a timeout"
    );
}
