//! `error_page URI` as an internal redirect (SPEC §9.4), against the real
//! binary: the URI goes through location choice again, so a directory's
//! index, a CGI script or a proxied location can be the page; it is sent
//! with the original status, as a GET (HEAD stays HEAD); an error while
//! serving it gets the built-in page of the original error.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc;
use std::thread;

use common::{read_response, Response, Server, TIMEOUT};

const SCRIPT: &[u8] = b"#!/bin/sh\n\
printf 'Status: 200 OK\\r\\nContent-Type: text/plain\\r\\n\\r\\n'\n\
printf 'script page %s %s' \"$REQUEST_METHOD\" \"$REQUEST_URI\"\n";

/// An upstream that answers each connection's one request with `body`
/// (status 200) and reports the request line it got.
fn upstream(body: &'static str) -> (u16, mpsc::Receiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind upstream");
    let port = listener.local_addr().expect("addr").port();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { break };
            stream.set_read_timeout(Some(TIMEOUT)).expect("timeout");
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                match stream.read(&mut byte) {
                    Ok(1) => head.push(byte[0]),
                    _ => break,
                }
            }
            let text = String::from_utf8_lossy(&head);
            let line = text.split("\r\n").next().unwrap_or_default().to_string();
            let _ = tx.send(line);
            let answer = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(answer.as_bytes());
        }
    });
    (port, rx)
}

fn start(upstream_port: u16) -> Server {
    let config = r#"
server {
    listen 127.0.0.1:{port};
    root {dir}/www;
    access_log {dir}/access.log;
    error_page 404 /errors/;
    error_page 405 /cgi/page.sh;
    error_page 410 /up/page;
    error_page 403 /nowhere.html;
    error_page 418 /loop/;

    location /errors/ { index page.html; }
    location /cgi/ { cgi .sh /bin/sh; }
    location /up/ { proxy_pass http://127.0.0.1:UPSTREAM/pages/; }
    location /api/ { methods GET POST; }
    location = /gone { return 410; }
    location = /teapot { return 418; }
    location /loop/ { return 418; }
    location /broken/ {
        error_page 404 /cgi/missing.sh;
    }
}
"#
    .replace("UPSTREAM", &upstream_port.to_string());
    Server::start(
        &config,
        &[
            ("www/errors/page.html", b"index page"),
            ("www/cgi/page.sh", SCRIPT),
            ("www/noindex/x.txt", b"x"),
        ],
    )
}

fn request(server: &Server, head: &str) -> Response {
    let mut stream = server.connect();
    stream.write_all(head.as_bytes()).expect("send");
    read_response(&mut stream, head.starts_with("HEAD"))
}

#[test]
fn a_directory_index_is_the_error_page_with_the_original_status() {
    let (port, _) = upstream("unused");
    let server = start(port);
    let r = server.get("/missing.html");
    assert_eq!((r.status, r.text().as_str()), (404, "index page"));
    assert_eq!(r.header("content-type"), Some("text/html"));
    // HEAD stays HEAD: the page's length, no body.
    let r = request(
        &server,
        "HEAD /missing.html HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(r.status, 404);
    assert_eq!(r.header("content-length"), Some("10"));
    assert!(r.body.is_empty());
}

#[test]
fn a_cgi_script_is_the_error_page_run_as_get() {
    let (port, _) = upstream("unused");
    let server = start(port);
    // POST without an upload store: 405, whose page is a script, run as a
    // GET of the page's URI, sent with 405.
    let r = request(
        &server,
        "POST /api/x HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc",
    );
    assert_eq!(r.status, 405);
    assert_eq!(r.text(), "script page GET /cgi/page.sh");
}

#[test]
fn a_proxied_location_is_the_error_page() {
    let (port, seen) = upstream("upstream page");
    let server = start(port);
    let r = server.get("/gone");
    assert_eq!((r.status, r.text().as_str()), (410, "upstream page"));
    let line = seen.recv_timeout(TIMEOUT).expect("the upstream was asked");
    assert_eq!(line, "GET /pages/page HTTP/1.1");
}

#[test]
fn a_second_error_gets_the_built_in_page_of_the_first() {
    let (port, _) = upstream("unused");
    let server = start(port);
    // The page is missing: the built-in 403, not a 404.
    let r = server.get("/noindex/");
    assert_eq!(r.status, 403);
    assert!(r.text().contains("403 Forbidden"), "{}", r.text());
    // The page's location answers the same error: one redirect only.
    let r = server.get("/teapot");
    assert_eq!(r.status, 418);
    assert!(r.text().contains("418"), "{}", r.text());
    // The page is a script that does not exist.
    let r = server.get("/broken/nothing");
    assert_eq!(r.status, 404);
    assert!(r.text().contains("404 Not Found"), "{}", r.text());
}

#[test]
fn the_connection_stays_usable_after_an_error_page() {
    let (port, _) = upstream("unused");
    let server = start(port);
    let mut stream = TcpStream::connect(("127.0.0.1", server.port)).expect("connect");
    stream.set_read_timeout(Some(TIMEOUT)).expect("timeout");
    for _ in 0..2 {
        stream
            .write_all(b"GET /missing HTTP/1.1\r\nHost: x\r\n\r\n")
            .expect("send");
        let r = read_response(&mut stream, false);
        assert_eq!((r.status, r.text().as_str()), (404, "index page"));
    }
}

/// The access log names the request the client made, not the error page's
/// URI (as nginx's `$request`), with the status sent.
#[test]
fn the_access_log_names_the_original_request() {
    let (port, _) = upstream("upstream page");
    let server = start(port);
    assert_eq!(server.get("/missing.html").status, 404);
    let r = request(
        &server,
        "POST /api/x HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc",
    );
    assert_eq!(r.status, 405);
    assert_eq!(server.get("/gone").status, 410);
    // The CGI and proxied pages are logged when their run ends, which may
    // be just after the client has the last byte.
    let deadline = std::time::Instant::now() + TIMEOUT;
    let log = loop {
        let log = std::fs::read_to_string(server.path("access.log")).unwrap_or_default();
        if log.lines().count() >= 3 || std::time::Instant::now() > deadline {
            break log;
        }
        thread::sleep(std::time::Duration::from_millis(20));
    };
    assert!(log.contains("\"GET /missing.html HTTP/1.1\" 404 "), "{log}");
    assert!(log.contains("\"POST /api/x HTTP/1.1\" 405 "), "{log}");
    assert!(log.contains("\"GET /gone HTTP/1.1\" 410 "), "{log}");
    for page in ["/errors/", "/cgi/page.sh", "/up/page"] {
        assert!(!log.contains(page), "{page} in {log}");
    }
}
