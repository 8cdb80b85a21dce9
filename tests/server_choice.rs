//! Choosing the server and the answer (SPEC §3) against the real binary:
//! a server-level `return` answers before any location, and wildcard
//! `server_name`s pick the server by nginx's rules.

mod common;

use common::{Response, Server};

fn get(server: &Server, host: &str, path: &str) -> Response {
    server.send(
        format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
}

#[test]
fn a_server_return_beats_a_location_return() {
    let server = Server::start(
        r#"
server {
    listen 127.0.0.1:{port};
    return 200 "server";
    location /loc { return 200 "location"; }
}
"#,
        &[],
    );
    for path in ["/loc", "/loc/x", "/"] {
        let response = get(&server, "localhost", path);
        assert_eq!(
            (response.status, response.text()),
            (200, "server".into()),
            "{path}"
        );
    }
}

#[test]
fn wildcard_server_names_choose_the_server() {
    let server = Server::start(
        r#"
server { listen 127.0.0.1:{port}; return 200 "first"; }
server { listen 127.0.0.1:{port}; server_name *.example.com; return 200 "leading"; }
server { listen 127.0.0.1:{port}; server_name *.www.example.com; return 200 "longer leading"; }
server { listen 127.0.0.1:{port}; server_name www.example.*; return 200 "trailing"; }
server { listen 127.0.0.1:{port}; server_name .example.org; return 200 "dot"; }
server { listen 127.0.0.1:{port}; server_name exact.example.com; return 200 "exact"; }
"#,
        &[],
    );
    let cases = [
        ("exact.example.com", "exact"),
        ("a.example.com", "leading"),
        ("www.example.com", "leading"),
        ("a.www.example.com", "longer leading"),
        ("www.example.net:8080", "trailing"),
        ("example.org", "dot"),
        ("sub.example.org", "dot"),
        ("example.com", "first"),
        ("unknown.test", "first"),
    ];
    for (host, expected) in cases {
        let response = get(&server, host, "/");
        assert_eq!(
            (response.status, response.text()),
            (200, expected.into()),
            "{host}"
        );
    }
}
