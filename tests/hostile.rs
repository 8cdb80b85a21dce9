//! Hostile and unusual input found in review: each test pins one fix.
//! Every wait is bounded (`common::TIMEOUT`, or a short read timeout).

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::thread;
use std::time::{Duration, Instant};

use common::{read_response, Server, TIMEOUT};

const CONFIG: &str = r#"
server {
    listen 127.0.0.1:{port};
    server_name localhost;
    root {dir}/www;
    methods GET HEAD;
}
"#;

/// A chunk size near `u64::MAX` after some data must not overflow the
/// body-limit arithmetic (a panic would take the whole server down).
#[test]
fn huge_chunk_size_after_data_is_413_and_the_server_lives() {
    let s = Server::start(CONFIG, &[("www/index.html", b"home")]);
    let mut stream = s.connect();
    stream
        .write_all(
            b"POST / HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n\
              1\r\na\r\nFFFFFFFFFFFFFFFF\r\n",
        )
        .expect("send");
    let r = read_response(&mut stream, false);
    assert_eq!(r.status, 413);
    let r = s.get("/");
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"home");
}

/// A listener whose accept queue is full: a connect to it stays in
/// progress (Linux drops the SYN) until the connector gives up.
fn unanswering_listener() -> (TcpListener, Vec<TcpStream>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    // SAFETY: listen(2) on a socket we own; a second call only changes the
    // backlog.
    assert_eq!(unsafe { libc::listen(listener.as_raw_fd(), 0) }, 0);
    let addr = listener.local_addr().expect("addr");
    let fillers = (0..3)
        .filter_map(|_| TcpStream::connect_timeout(&addr, Duration::from_millis(200)).ok())
        .collect();
    (listener, fillers)
}

/// An upstream that answers one keep-alive request, then closes the
/// connection after `linger`.
fn closing_upstream(linger: Duration) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    thread::spawn(move || {
        let Ok((mut stream, _)) = listener.accept() else {
            return;
        };
        let _ = stream.set_read_timeout(Some(TIMEOUT));
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).is_ok_and(|n| n == 1) {
            head.push(byte[0]);
        }
        let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
        thread::sleep(linger);
    });
    port
}

/// A pooled upstream connection stays registered under the token of the
/// client connection that pooled it. When that upstream closes it, the
/// event (readable and writable) must not be taken for the end of another
/// connect of the same client connection still in progress: that gave a
/// 502 at once, and marked a healthy server down.
#[test]
fn a_pooled_upstream_closing_does_not_fail_a_connect_in_progress() {
    let a = closing_upstream(Duration::from_millis(300));
    let (b, _fillers) = unanswering_listener();
    let b = b.local_addr().expect("addr").port();
    let config = r#"
server {
    listen 127.0.0.1:{port};
    location /a/ { proxy_pass http://127.0.0.1:APORT; }
    location /b/ {
        proxy_pass http://127.0.0.1:BPORT;
        proxy_connect_timeout 1500ms;
    }
}
"#
    .replace("APORT", &a.to_string())
    .replace("BPORT", &b.to_string());
    let s = Server::start(&config, &[]);
    let mut stream = s.connect();
    stream
        .write_all(b"GET /a/ HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .expect("send");
    let r = read_response(&mut stream, false);
    assert_eq!((r.status, r.body.as_slice()), (200, &b"ok"[..]));
    let start = Instant::now();
    stream
        .write_all(b"GET /b/ HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .expect("send");
    let r = read_response(&mut stream, false);
    assert_eq!(r.status, 504, "after {:?}", start.elapsed());
    assert!(start.elapsed() >= Duration::from_millis(1400));
}

/// `cgi_timeout` bounds the script's silence: bytes the client sends after
/// its request (the start of a pipelined one) are not the script's progress
/// and must not keep a hung script alive past it.
#[test]
fn a_trickling_client_does_not_extend_cgi_timeout() {
    let config = r#"
server {
    listen 127.0.0.1:{port};
    root {dir}/www;
    location /slow/ {
        cgi .sh /bin/sh;
        cgi_timeout 1s;
    }
}
"#;
    let s = Server::start(config, &[("www/slow/hang.sh", b"sleep 30\n")]);
    let mut stream = s.connect();
    stream
        .write_all(b"GET /slow/hang.sh HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .expect("send");
    let mut writer = stream.try_clone().expect("clone");
    let trickle = thread::spawn(move || {
        for &b in b"GET / HTTP/1.1\r\nHost: localhost\r\n" {
            thread::sleep(Duration::from_millis(200));
            if writer.write_all(&[b]).is_err() {
                break;
            }
        }
    });
    let start = Instant::now();
    stream
        .set_read_timeout(Some(Duration::from_secs(4)))
        .expect("timeout");
    let mut first = [0u8; 12];
    let got = stream.read_exact(&mut first);
    let elapsed = start.elapsed();
    drop(stream);
    let _ = trickle.join();
    assert!(got.is_ok(), "no answer after {elapsed:?}: {got:?}");
    assert_eq!(&first, b"HTTP/1.1 504");
    assert!(elapsed < Duration::from_secs(3), "504 after {elapsed:?}");
}
