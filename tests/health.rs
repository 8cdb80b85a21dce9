//! Active health checks (`health_check`, SPEC §9.3) against the real
//! binary, with upstreams written here: a server whose checks fail leaves
//! the rotation and comes back when they pass; a check that hangs times
//! out without holding up requests or descriptors; a reload replaces the
//! checks. Every wait polls what a client can see, with a bound.

mod common;

use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::{Server, TIMEOUT};

/// How an upstream answers its health checks (`GET /health`).
const PASS: u16 = 200;
const FAIL: u16 = 500;
/// Accept the check and never answer it.
const HANG: u16 = 0;

/// A small upstream on a fixed 127.0.0.1 port: every request gets a body
/// of its `tag`; `/health` gets the status in `health` (or no answer).
/// `listening` false closes the listening socket (connects are refused)
/// until it is set again.
struct Backend {
    addr: SocketAddr,
    health: Arc<AtomicU16>,
    listening: Arc<AtomicBool>,
    checks: Arc<AtomicUsize>,
    /// The head of the last health check received.
    last_check: Arc<Mutex<String>>,
    stop: Arc<AtomicBool>,
}

impl Backend {
    fn start(tag: &'static str) -> Backend {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind backend");
        let addr = listener.local_addr().expect("local addr");
        let backend = Backend {
            addr,
            health: Arc::new(AtomicU16::new(PASS)),
            listening: Arc::new(AtomicBool::new(true)),
            checks: Arc::new(AtomicUsize::new(0)),
            last_check: Arc::new(Mutex::new(String::new())),
            stop: Arc::new(AtomicBool::new(false)),
        };
        let health = Arc::clone(&backend.health);
        let listening = Arc::clone(&backend.listening);
        let checks = Arc::clone(&backend.checks);
        let last_check = Arc::clone(&backend.last_check);
        let stop = Arc::clone(&backend.stop);
        thread::spawn(move || {
            let mut listener = Some(listener);
            while !stop.load(Ordering::SeqCst) {
                let want = listening.load(Ordering::SeqCst);
                if !want {
                    listener = None;
                } else if listener.is_none() {
                    // std sets SO_REUSEADDR: the port is ours again at once.
                    listener = TcpListener::bind(addr).ok();
                }
                let Some(l) = &listener else {
                    thread::sleep(Duration::from_millis(5));
                    continue;
                };
                l.set_nonblocking(true).expect("nonblocking");
                match l.accept() {
                    Ok((stream, _)) => {
                        let health = Arc::clone(&health);
                        let checks = Arc::clone(&checks);
                        let last_check = Arc::clone(&last_check);
                        thread::spawn(move || answer(stream, tag, &health, &checks, &last_check));
                    }
                    Err(_) => thread::sleep(Duration::from_millis(2)),
                }
            }
        });
        backend
    }

    fn port(&self) -> u16 {
        self.addr.port()
    }

    fn checks(&self) -> usize {
        self.checks.load(Ordering::SeqCst)
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn answer(
    mut stream: TcpStream,
    tag: &str,
    health: &AtomicU16,
    checks: &AtomicUsize,
    last_check: &Mutex<String>,
) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(TIMEOUT));
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let status = if head.starts_with("GET /health ") {
        *last_check.lock().expect("not poisoned") = head;
        checks.fetch_add(1, Ordering::SeqCst);
        health.load(Ordering::SeqCst)
    } else {
        200
    };
    if status == HANG {
        // Holds the connection until webserv gives up on it.
        let _ = stream.read(&mut buf);
        return;
    }
    let response = format!(
        "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{tag}",
        tag.len()
    );
    let _ = stream.write_all(response.as_bytes());
}

/// A webserv proxying `/` to `upstream pool` of `a` and `b` with `check`
/// (a whole `health_check` line, or nothing) and `extra` at the top level.
fn front(a: &Backend, b: &Backend, check: &str, extra: &str) -> Server {
    Server::start(&config(a, b, check, extra), &[])
}

fn config(a: &Backend, b: &Backend, check: &str, extra: &str) -> String {
    format!(
        r#"
error_log {{dir}}/error.log info;
proxy_connect_timeout 2s;
proxy_read_timeout 5s;
{extra}
upstream pool {{
    server 127.0.0.1:{} max_fails=0;
    server 127.0.0.1:{} max_fails=0;
    {check}
}}
server {{
    listen 127.0.0.1:{{port}};
    location / {{ proxy_pass http://pool; }}
}}
"#,
        a.port(),
        b.port()
    )
}

/// The bodies of `n` requests, one connection each.
fn answers(s: &Server, n: usize) -> Vec<String> {
    (0..n)
        .map(|_| {
            let r = s.get("/x");
            if r.status == 200 {
                r.text()
            } else {
                format!("{}", r.status)
            }
        })
        .collect()
}

/// Polls (bounded) until `n` requests in a row all satisfy `ok`.
fn until(s: &Server, n: usize, what: &str, ok: impl Fn(&[String]) -> bool) {
    let start = Instant::now();
    loop {
        let got = answers(s, n);
        if ok(&got) {
            return;
        }
        assert!(start.elapsed() < TIMEOUT, "never {what}: last {got:?}");
        thread::sleep(Duration::from_millis(20));
    }
}

fn all_b(got: &[String]) -> bool {
    got.iter().all(|t| t == "b")
}

fn some_a(got: &[String]) -> bool {
    got.iter().any(|t| t == "a")
}

fn error_log(s: &Server) -> String {
    fs::read_to_string(s.path("error.log")).unwrap_or_default()
}

/// Polls (bounded) until the error log holds `needle`.
fn until_logged(s: &Server, needle: &str) {
    let start = Instant::now();
    while !error_log(s).contains(needle) {
        assert!(
            start.elapsed() < TIMEOUT,
            "never logged {needle:?}: {}",
            error_log(s)
        );
        thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_server_failing_its_checks_is_out_until_it_passes_again() {
    let a = Backend::start("a");
    let b = Backend::start("b");
    let s = front(
        &a,
        &b,
        "health_check /health interval=100ms fails=2 passes=2;",
        "",
    );
    // Up before and after its first checks: both share the requests.
    until(&s, 4, "round-robin over a and b", some_a);
    let start = Instant::now();
    while a.checks() < 1 || b.checks() < 1 {
        assert!(start.elapsed() < TIMEOUT, "no health check arrived");
        thread::sleep(Duration::from_millis(10));
    }
    let check = a.last_check.lock().expect("not poisoned").clone();
    assert!(check.starts_with("GET /health HTTP/1.1\r\n"), "{check}");
    assert!(check.contains("\r\nHost: pool\r\n"), "{check}");

    a.health.store(FAIL, Ordering::SeqCst);
    until(&s, 6, "only b", all_b);
    // Out means out: a stays out while its checks fail.
    assert!(all_b(&answers(&s, 10)));
    until_logged(
        &s,
        &format!("[warn] upstream pool server {} is down", a.addr),
    );
    assert!(error_log(&s).contains("status 500"), "{}", error_log(&s));

    a.health.store(PASS, Ordering::SeqCst);
    until(&s, 4, "a back in rotation", some_a);
    until_logged(
        &s,
        &format!("[notice] upstream pool server {} is up", a.addr),
    );
}

#[test]
fn a_server_that_stops_listening_is_out_until_it_listens_again() {
    let a = Backend::start("a");
    let b = Backend::start("b");
    // Without retries a refused server would be a 502: every 200 from b
    // shows that the balancer skipped a.
    let s = front(
        &a,
        &b,
        "health_check /health interval=100ms;",
        "proxy_next_upstream off;",
    );
    until(&s, 4, "round-robin over a and b", some_a);
    a.listening.store(false, Ordering::SeqCst);
    until(&s, 6, "only b", all_b);
    assert!(all_b(&answers(&s, 10)));
    until_logged(&s, "connect: Connection refused");

    a.listening.store(true, Ordering::SeqCst);
    until(&s, 4, "a back in rotation", some_a);
}

/// The descriptors `pid` holds.
fn fds(pid: u32) -> usize {
    fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

#[test]
fn a_check_that_hangs_times_out_without_stalling_requests_or_leaking() {
    let a = Backend::start("a");
    let b = Backend::start("b");
    let s = front(&a, &b, "health_check /health interval=1s;", "");
    until(&s, 4, "round-robin over a and b", some_a);
    let baseline = fds(s.pid());
    a.health.store(HANG, Ordering::SeqCst);
    // The check gives up after its interval: a is out.
    until(&s, 6, "only b", all_b);
    until_logged(&s, "no answer within 1s");
    // Meanwhile requests are answered at once, hanging checks or not.
    for _ in 0..20 {
        let start = Instant::now();
        assert_eq!(s.get("/x").text(), "b");
        assert!(
            start.elapsed() < Duration::from_millis(500),
            "a request waited {:?}",
            start.elapsed()
        );
    }
    // Each hanging check's socket is closed when it times out.
    let checks = a.checks();
    let start = Instant::now();
    while a.checks() < checks + 3 {
        assert!(start.elapsed() < TIMEOUT, "checks stopped");
        thread::sleep(Duration::from_millis(20));
    }
    let now = fds(s.pid());
    assert!(now <= baseline + 3, "descriptors: {baseline} then {now}");
}

#[test]
fn a_reload_replaces_the_checks() {
    let a = Backend::start("a");
    let b = Backend::start("b");
    let s = front(&a, &b, "health_check /health interval=100ms;", "");
    a.health.store(FAIL, Ordering::SeqCst);
    until(&s, 6, "only b", all_b);

    let fill = |template: String| {
        template
            .replace("{port}", &s.port.to_string())
            .replace("{dir}", s.dir.path().to_str().expect("UTF-8 temp dir"))
    };
    // Without health_check: a is back at once and no longer checked.
    fs::write(&s.config, fill(config(&a, &b, "", ""))).expect("rewrite config");
    s.signal(libc::SIGHUP);
    until(&s, 4, "a back after the reload", some_a);
    let checks = a.checks();
    thread::sleep(Duration::from_millis(400));
    assert!(a.checks() <= checks + 1, "old checks go on");

    // With it again: checks start over and take a out.
    fs::write(
        &s.config,
        fill(config(&a, &b, "health_check /health interval=100ms;", "")),
    )
    .expect("rewrite config");
    s.signal(libc::SIGHUP);
    until(&s, 6, "only b again", all_b);
}

#[test]
fn every_worker_checks_and_skips() {
    let a = Backend::start("a");
    let b = Backend::start("b");
    let s = front(
        &a,
        &b,
        "health_check /health interval=100ms;",
        "worker_processes 2;",
    );
    until(&s, 4, "round-robin over a and b", some_a);
    a.health.store(FAIL, Ordering::SeqCst);
    // Both workers take a out (a request may reach either).
    until(&s, 12, "only b", all_b);
    a.health.store(PASS, Ordering::SeqCst);
    until(&s, 8, "a back", some_a);
}
