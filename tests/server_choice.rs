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
