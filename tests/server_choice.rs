//! Choosing the server and the answer (SPEC §3) against the real binary:
//! a server-level `return` answers before any location, and wildcard
//! `server_name`s pick the server by nginx's rules, and the connection's
//! local address picks between `listen 127.0.0.1:P` and `listen P`.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Instant;

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

/// Set in the copy of this test binary that runs inside its own network
/// namespace.
const IN_NETNS: &str = "WEBSERV_TEST_IN_NETNS";

/// `listen 127.0.0.1:P` (server A) beside `listen P` (server B): both
/// work, as in nginx. One socket is bound, to the wildcard, and the
/// connection's local address picks the servers: 127.0.0.1 gets A, any
/// other local address (127.0.0.2: Linux routes all of 127/8 to `lo`)
/// gets B. With one process and with two workers.
///
/// A wildcard is bound only inside a network namespace of the test's own,
/// which reaches no other host: the test runs itself again under
/// `unshare -n` (with `lo` up there); where no namespace can be made, it
/// says why and passes.
#[test]
fn local_address_picks_specific_listen_before_wildcard() {
    if std::env::var_os(IN_NETNS).is_some() {
        for workers in [1, 2] {
            specific_and_wildcard_inside_namespace(workers);
        }
        return;
    }
    if !Command::new("unshare")
        .args(["-n", "true"])
        .status()
        .is_ok_and(|s| s.success())
    {
        eprintln!("SKIPPED: cannot make a network namespace (unshare -n)");
        return;
    }
    let exe = std::env::current_exe().expect("test binary");
    let mut child = Command::new("unshare")
        .args(["-n", "--"])
        .arg(exe)
        .args([
            "local_address_picks_specific_listen_before_wildcard",
            "--exact",
            "--nocapture",
        ])
        .env(IN_NETNS, "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the test in a namespace");
    let deadline = Instant::now() + 6 * common::TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let output = child.wait_with_output().expect("output");
    assert!(
        status.is_some_and(|s| s.success()),
        "inside the namespace ({status:?}):\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn specific_and_wildcard_inside_namespace(workers: usize) {
    let up = Command::new("ip")
        .args(["link", "set", "lo", "up"])
        .status()
        .expect("run ip");
    assert!(up.success(), "ip link set lo up");
    let server = Server::start(
        &format!(
            r#"
worker_processes {workers};
server {{ listen 127.0.0.1:{{port}}; return 200 "A"; }}
server {{ listen {{port}}; return 200 "B"; }}
"#
        ),
        &[],
    );
    for (addr, expected) in [("127.0.0.1", "A"), ("127.0.0.2", "B"), ("127.0.0.1", "A")] {
        let mut stream = TcpStream::connect((addr, server.port)).expect("connect");
        stream
            .set_read_timeout(Some(common::TIMEOUT))
            .expect("timeout");
        stream
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .expect("send");
        let response = common::read_response(&mut stream, false);
        assert_eq!(
            (response.status, response.text()),
            (200, expected.to_string()),
            "{addr}, {workers} worker(s)"
        );
    }
}
