//! Workers, supervision and control (SPEC §9.1), on the real binary: panic
//! isolation in both modes, load spread, a killed worker replaced, reload
//! and stop, `-s reload|stop`, the pid file, and no zombie left anywhere.
//!
//! The panic tests need a binary built with the test-only
//! `fault-injection` feature: [`fault_binary`] builds it once (dev
//! profile, its own target directory), so plain `cargo test` covers them.

mod common;

use std::collections::HashSet;
use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use common::{fault_binary, read_response, Server, TIMEOUT};

/// Polls `done` every 20 ms until it holds or `limit` passes.
fn eventually(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if done() {
            return true;
        }
        if start.elapsed() > limit {
            return false;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// `(pid, state)` of every child of `parent`, from `/proc/*/stat`.
fn children(parent: u32) -> Vec<(u32, String)> {
    let mut found = Vec::new();
    let Ok(entries) = fs::read_dir("/proc") else {
        return found;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // "pid (comm) state ppid ...": comm may hold anything.
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
            continue;
        };
        let mut fields = rest.split_whitespace();
        let state = fields.next().unwrap_or("?").to_owned();
        if fields.next().and_then(|p| p.parse::<u32>().ok()) == Some(parent) {
            found.push((pid, state));
        }
    }
    found
}

/// The live (not zombie) children of `parent`.
fn live_children(parent: u32) -> HashSet<u32> {
    children(parent)
        .into_iter()
        .filter(|(_, state)| state != "Z")
        .map(|(pid, _)| pid)
        .collect()
}

fn zombies(parent: u32) -> Vec<u32> {
    children(parent)
        .into_iter()
        .filter(|(_, state)| state == "Z")
        .map(|(pid, _)| pid)
        .collect()
}

/// Every descendant of `root` (children, their children, ...).
fn descendants(root: u32) -> Vec<u32> {
    let mut all = Vec::new();
    let mut todo = vec![root];
    while let Some(pid) = todo.pop() {
        for (child, _) in children(pid) {
            all.push(child);
            todo.push(child);
        }
    }
    all
}

fn alive(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rfind(')')
            .is_some_and(|i| !stat[i + 1..].starts_with(" Z"))
    })
}

fn kill(pid: u32, signal: i32) {
    // SAFETY: kill(2) on a pid the test started (or its worker).
    unsafe { libc::kill(pid as i32, signal) };
}

fn get(server: &Server, path: &str, extra: &str) -> common::Response {
    server.send(
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n{extra}Connection: close\r\n\r\n")
            .as_bytes(),
    )
}

/// The error log's text (empty while it does not exist).
fn log_text(server: &Server, name: &str) -> String {
    fs::read_to_string(server.path(name)).unwrap_or_default()
}

fn wait_log(server: &Server, name: &str, needle: &str) -> String {
    let mut text = String::new();
    let found = eventually(TIMEOUT, || {
        text = log_text(server, name);
        text.contains(needle)
    });
    assert!(found, "{name} never said {needle:?}:\n{text}");
    text
}

const SITE: &[(&str, &[u8])] = &[
    ("www/index.html", b"hello\n"),
    (
        "www/slow.sh",
        b"echo 'Content-Type: text/plain'\necho\nsleep 30\necho late\n",
    ),
    (
        "www/ppid.sh",
        b"echo 'Content-Type: text/plain'\necho\ngrep PPid /proc/$$/status | tr -dc 0-9\n",
    ),
];

const SITE_WITH_RUN: &[(&str, &[u8])] = &[("www/index.html", b"hello\n"), ("run/.keep", b"")];

/// A site with CGI and logs; `workers` empty leaves `worker_processes` at
/// its default.
fn config(workers: &str, extra: &str) -> String {
    let workers = match workers {
        "" => String::new(),
        n => format!("worker_processes {n};"),
    };
    format!(
        "{workers}\nerror_log error.log;\n{extra}\n\
         server {{\n    listen 127.0.0.1:{{port}};\n    root www;\n    access_log access.log;\n    cgi .sh /bin/sh;\n}}\n"
    )
}

/// A kept-alive connection still answers after another one panicked, the
/// panicking request got a 500 and its line is in the error log, and a
/// script running when its connection panicked is killed and reaped.
fn panic_ends_one_connection_only(server: &Server) {
    let mut idle = server.connect();
    idle.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .expect("send");
    assert_eq!(read_response(&mut idle, false).status, 200);

    let boom = get(server, "/boom", "X-Webserv-Fault: handle\r\n");
    assert_eq!(boom.status, 500);
    assert_eq!(boom.header("connection"), Some("close"));
    let log = wait_log(server, "error.log", "injected fault at handle");
    assert!(
        log.contains("panic while handling \"GET /boom HTTP/1.1\""),
        "{log}"
    );

    let during_cgi = get(server, "/slow.sh", "X-Webserv-Fault: cgi\r\n");
    assert_eq!(during_cgi.status, 500);
    wait_log(server, "error.log", "injected fault at cgi");
    assert!(
        eventually(TIMEOUT, || {
            let pids = descendants(server.pid());
            // Workers (if any) stay; no script and no zombie.
            pids.iter().all(|pid| {
                fs::read_to_string(format!("/proc/{pid}/cmdline"))
                    .is_ok_and(|c| !c.contains("slow.sh"))
            }) && pids.iter().all(|pid| alive(*pid))
        }),
        "the script of the panicked connection was not killed and reaped"
    );

    idle.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .expect("send on the kept-alive connection");
    let again = read_response(&mut idle, false);
    assert_eq!((again.status, again.text().as_str()), (200, "hello\n"));
    assert_eq!(get(server, "/", "").status, 200);
}

#[test]
fn a_panic_ends_one_connection_only_in_a_single_process() {
    let mut server = Server::start_program(fault_binary(), &config("", ""), SITE, &[]);
    panic_ends_one_connection_only(&server);
    assert!(
        live_children(server.pid()).is_empty(),
        "one process: no worker"
    );
    assert!(zombies(server.pid()).is_empty());
    kill(server.pid(), libc::SIGTERM);
    assert_eq!(server.wait_exit(), Some(0));
}
#[test]
fn a_panic_ends_one_connection_only_in_a_worker() {
    let server = Server::start_program(fault_binary(), &config("2", ""), SITE, &[]);
    let workers = workers_started(&server, 2);
    panic_ends_one_connection_only(&server);
    assert_eq!(
        live_children(server.pid()),
        workers,
        "no worker died of the panics"
    );
}

/// The pid each request's CGI script saw as its parent: the worker that
/// served it. `threads` clients send `each` requests, a new connection each.
fn serving_workers(server: &Server, threads: usize, each: usize) -> Vec<u32> {
    let port = server.port;
    let clients: Vec<_> = (0..threads)
        .map(|_| {
            thread::spawn(move || {
                (0..each)
                    .map(|_| {
                        let mut stream =
                            std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
                        stream.set_read_timeout(Some(TIMEOUT)).expect("timeout");
                        stream
                            .write_all(
                                b"GET /ppid.sh HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                            )
                            .expect("send");
                        let response = read_response(&mut stream, false);
                        assert_eq!(response.status, 200, "{}", response.text());
                        response.text().trim().parse::<u32>().expect("a pid")
                    })
                    .collect::<Vec<u32>>()
            })
        })
        .collect();
    clients
        .into_iter()
        .flat_map(|c| c.join().expect("client thread"))
        .collect()
}

fn workers_started(server: &Server, count: usize) -> HashSet<u32> {
    let mut workers = HashSet::new();
    assert!(
        eventually(TIMEOUT, || {
            workers = live_children(server.pid());
            workers.len() == count
        }),
        "expected {count} workers, found {workers:?}"
    );
    workers
}

#[test]
fn load_spreads_over_several_workers_and_log_lines_stay_whole() {
    for count in [2, 3] {
        let server = Server::start(&config(&count.to_string(), ""), SITE);
        let workers = workers_started(&server, count);
        let served: HashSet<u32> = serving_workers(&server, 8, 25).into_iter().collect();
        assert!(
            served.len() >= 2,
            "{count} workers, all requests served by {served:?}"
        );
        assert!(served.is_subset(&workers), "{served:?} not in {workers:?}");
        // Many workers append to one access log: every line is whole.
        let agent = "a".repeat(3000);
        let port = server.port;
        let writers: Vec<_> = (0..4)
            .map(|_| {
                let agent = agent.clone();
                thread::spawn(move || {
                    for _ in 0..50 {
                        let mut stream =
                            std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
                        stream.set_read_timeout(Some(TIMEOUT)).expect("timeout");
                        let head = format!(
                            "GET / HTTP/1.1\r\nHost: x\r\nUser-Agent: {agent}\r\nConnection: close\r\n\r\n"
                        );
                        stream.write_all(head.as_bytes()).expect("send");
                        assert_eq!(read_response(&mut stream, false).status, 200);
                    }
                })
            })
            .collect();
        for writer in writers {
            writer.join().expect("client thread");
        }
        let ends = format!("\"{agent}\"");
        let mut log = String::new();
        assert!(eventually(TIMEOUT, || {
            log = log_text(&server, "access.log");
            log.lines().filter(|l| l.ends_with(&ends)).count() == 200
        }));
        for line in log.lines() {
            assert!(
                line.starts_with("127.0.0.1 - - ["),
                "a torn line: {line:.80}"
            );
            assert!(line.ends_with('"'), "a torn line: {line:.80}");
        }
    }
}

#[test]
fn a_killed_worker_is_replaced_within_a_second_and_later_requests_succeed() {
    let server = Server::start(&config("2", ""), SITE);
    let first = workers_started(&server, 2);
    // Load all along: requests in flight on a killed worker may fail.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let port = server.port;
    let load = {
        let stop = std::sync::Arc::clone(&stop);
        thread::spawn(move || {
            let mut served = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
                    continue;
                };
                let _ = stream.set_read_timeout(Some(TIMEOUT));
                let _ = stream.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
                let mut answer = Vec::new();
                let _ = std::io::Read::read_to_end(&mut stream, &mut answer);
                served += usize::from(answer.starts_with(b"HTTP/1.1 200"));
            }
            served
        })
    };
    // One original worker each: a replacement dying young again would
    // count as dying at start-up (retried after a delay).
    for (signal, victim) in [libc::SIGKILL, libc::SIGSEGV].into_iter().zip(first) {
        kill(victim, signal);
        if signal == libc::SIGSEGV {
            // Rust's stack-overflow handler takes the first SIGSEGV that is
            // no fault and restores the default action: the second kills.
            thread::sleep(Duration::from_millis(50));
            kill(victim, signal);
        }
        let killed = Instant::now();
        let mut now = HashSet::new();
        // One second, with room for a loaded machine.
        assert!(
            eventually(Duration::from_secs(2), || {
                now = live_children(server.pid());
                now.len() == 2 && !now.contains(&victim)
            }),
            "no replacement for {victim}: {now:?}"
        );
        eprintln!("replaced after {:?}", killed.elapsed());
        for _ in 0..20 {
            assert_eq!(get(&server, "/", "").status, 200);
        }
        wait_log(
            &server,
            "error.log",
            &format!("worker {victim} was killed by signal {signal}; starting a new one"),
        );
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(load.join().expect("load thread") > 0);
    assert!(zombies(server.pid()).is_empty());
}

#[test]
fn a_worker_that_dies_at_start_up_is_retried_with_back_off() {
    let server = Server::start_program(
        fault_binary(),
        &config("2", ""),
        SITE,
        &[("WEBSERV_FAULT", "worker-start")],
    );
    wait_log(
        &server,
        "error.log",
        "deaths at start-up in a row; next try in",
    );
    thread::sleep(Duration::from_secs(2));
    let log = log_text(&server, "error.log");
    let tries = log.matches("injected fault at worker start").count();
    // Without back-off, two slots would have made thousands of tries.
    assert!((4..=20).contains(&tries), "{tries} tries in ~2 s:\n{log}");
    assert!(zombies(server.pid()).is_empty());
}

/// Writes `text` as the server's configuration.
fn rewrite_config(server: &Server, text: &str) {
    let text = text
        .replace("{port}", &server.port.to_string())
        .replace("{dir}", server.dir.path().to_str().expect("utf-8"));
    fs::write(&server.config, text).expect("write config");
}

/// A request to `/slow.sh` (its script answers after `secs`) on a thread.
fn slow_request(server: &Server, secs: u32) -> thread::JoinHandle<common::Response> {
    fs::write(
        server.path("www/slow.sh"),
        format!("sleep {secs}\necho 'Content-Type: text/plain'\necho\necho done\n"),
    )
    .expect("write script");
    let port = server.port;
    thread::spawn(move || {
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
        stream.set_read_timeout(Some(TIMEOUT)).expect("timeout");
        stream
            .write_all(b"GET /slow.sh HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .expect("send");
        read_response(&mut stream, false)
    })
}

/// Waits until a CGI script runs under `server`.
fn wait_script(server: &Server) {
    assert!(
        eventually(TIMEOUT, || descendants(server.pid()).iter().any(|pid| {
            fs::read_to_string(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c.contains("slow.sh"))
        })),
        "the slow script never started"
    );
}

#[test]
fn reload_starts_new_workers_and_drains_the_old_ones() {
    let server = Server::start(&config("2", ""), SITE);
    let old = workers_started(&server, 2);
    let slow = slow_request(&server, 1);
    wait_script(&server);
    let second = common::free_port();
    rewrite_config(
        &server,
        &format!(
            "worker_processes 3;\nerror_log error.log;\n\
             server {{ listen 127.0.0.1:{{port}}; listen 127.0.0.1:{second}; root www; \
             cgi .sh /bin/sh; location = /version {{ return 200 v2; }} }}\n"
        ),
    );
    // Requests keep coming while the workers change: none may fail.
    let port = server.port;
    let load = thread::spawn(move || {
        let start = Instant::now();
        let mut served = 0;
        while start.elapsed() < Duration::from_millis(1500) {
            let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
            stream.set_read_timeout(Some(TIMEOUT)).expect("timeout");
            stream
                .write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .expect("send");
            assert_eq!(read_response(&mut stream, false).status, 200);
            served += 1;
        }
        served
    });
    kill(server.pid(), libc::SIGHUP);
    let mut now = HashSet::new();
    assert!(
        eventually(TIMEOUT, || {
            now = live_children(server.pid());
            now.len() == 3 && now.is_disjoint(&old)
        }),
        "old workers {old:?} still there or new ones missing: {now:?}"
    );
    assert_eq!(get(&server, "/version", "").text(), "v2");
    let mut other = std::net::TcpStream::connect(("127.0.0.1", second)).expect("new address");
    other
        .write_all(b"GET /version HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .expect("send");
    assert_eq!(read_response(&mut other, false).text(), "v2");
    let slow = slow.join().expect("slow client");
    assert_eq!((slow.status, slow.text().as_str()), (200, "done\n"));
    assert!(load.join().expect("load thread") > 0);
    wait_log(&server, "error.log", "configuration reloaded");
    assert!(zombies(server.pid()).is_empty());

    // The second address vanishes again: it is closed.
    rewrite_config(&server, &config("2", ""));
    kill(server.pid(), libc::SIGHUP);
    assert!(
        eventually(TIMEOUT, || std::net::TcpStream::connect((
            "127.0.0.1",
            second
        ))
        .is_err()),
        "the vanished address still accepts"
    );
    assert_eq!(get(&server, "/", "").status, 200);
}

#[test]
fn a_reload_with_a_bad_configuration_is_refused_and_the_workers_stay() {
    let server = Server::start(&config("2", ""), SITE);
    let workers = workers_started(&server, 2);
    rewrite_config(
        &server,
        "worker_processes 2;\nerror_log error.log;\nserver { lisen 80; }\n",
    );
    kill(server.pid(), libc::SIGHUP);
    wait_log(&server, "error.log", "reload refused");
    assert_eq!(live_children(server.pid()), workers);
    assert_eq!(get(&server, "/", "").status, 200);
}

#[test]
fn sigterm_lets_the_request_in_flight_finish_then_everything_exits() {
    let mut server = Server::start(&config("2", ""), SITE);
    workers_started(&server, 2);
    let slow = slow_request(&server, 1);
    wait_script(&server);
    kill(server.pid(), libc::SIGTERM);
    let slow = slow.join().expect("slow client");
    assert_eq!((slow.status, slow.text().as_str()), (200, "done\n"));
    assert_eq!(server.wait_exit(), Some(0));
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", server.port)).is_err(),
        "still listening after exit"
    );
}

#[test]
fn a_thousand_cgi_runs_across_workers_leave_no_zombie() {
    let server = Server::start(&config("3", ""), SITE);
    let workers = workers_started(&server, 3);
    let served = serving_workers(&server, 8, 125);
    assert_eq!(served.len(), 1000);
    assert!(
        eventually(TIMEOUT, || workers.iter().all(|w| children(*w).is_empty())),
        "CGI children left behind"
    );
    assert!(zombies(server.pid()).is_empty());
}

fn control(config: &Path, signal: &str) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_webserv"))
        .args(["-s", signal])
        .arg(config)
        .output()
        .expect("run webserv -s")
}

fn stderr_of(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn signal_commands_reload_and_stop_through_the_pid_file() {
    for workers in ["", "2"] {
        let mut server = Server::start(&config(workers, "pid run/webserv.pid;"), SITE_WITH_RUN);
        // Relative to the configuration's directory, not the working one.
        let pid_file = server.path("run/webserv.pid");
        let text = fs::read_to_string(&pid_file).expect("pid file written");
        assert_eq!(text.trim(), server.pid().to_string());

        rewrite_config(
            &server,
            &config(workers, "pid run/webserv.pid;").replace(
                "root www;",
                "root www; location = /version { return 200 v2; }",
            ),
        );
        let out = control(&server.config, "reload");
        assert!(out.status.success(), "{}", stderr_of(&out));
        assert!(
            eventually(TIMEOUT, || get(&server, "/version", "").text() == "v2"),
            "reload not seen"
        );

        let out = control(&server.config, "stop");
        assert!(out.status.success(), "{}", stderr_of(&out));
        assert_eq!(server.wait_exit(), Some(0));
        assert!(!pid_file.exists(), "pid file left behind");

        // Now nothing runs: the file is gone.
        let out = control(&server.config, "stop");
        assert_eq!(out.status.code(), Some(1));
        assert!(
            stderr_of(&out).contains("does not exist"),
            "{}",
            stderr_of(&out)
        );
    }
}

#[test]
fn signal_commands_say_why_they_cannot_signal() {
    let dir = tempfile::tempdir().expect("temp dir");
    let without = dir.path().join("without.conf");
    fs::write(&without, "server { listen 127.0.0.1:1; }\n").expect("write");
    let out = control(&without, "reload");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr_of(&out).contains("no \"pid\" directive"),
        "{}",
        stderr_of(&out)
    );

    // A pid file naming a process that exited: stale.
    let mut gone = Command::new("true").spawn().expect("spawn true");
    let pid = gone.id();
    gone.wait().expect("wait true");
    let stale = dir.path().join("stale.conf");
    fs::write(&stale, "pid stale.pid;\nserver { listen 127.0.0.1:1; }\n").expect("write");
    fs::write(dir.path().join("stale.pid"), format!("{pid}\n")).expect("write");
    let out = control(&stale, "stop");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr_of(&out).contains(&format!("no process {pid}")),
        "{}",
        stderr_of(&out)
    );
}

#[test]
fn a_stop_cuts_what_outlives_worker_shutdown_timeout_and_leaves_no_script() {
    let mut server = Server::start(&config("2", "worker_shutdown_timeout 1s;"), SITE);
    workers_started(&server, 2);
    let slow = slow_request(&server, 30);
    wait_script(&server);
    let stopped = Instant::now();
    kill(server.pid(), libc::SIGINT);
    assert_eq!(server.wait_exit(), Some(0));
    assert!(
        stopped.elapsed() < Duration::from_secs(4),
        "stopped after {:?}",
        stopped.elapsed()
    );
    // The cut response is not a whole 200.
    assert!(slow.join().map_or(true, |r| r.status != 200));
    let dir = server.dir.path().to_str().expect("utf-8").to_owned();
    let scripts = || {
        fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| {
                fs::read_to_string(e.path().join("cmdline")).is_ok_and(|c| c.contains(&dir))
            })
            .count()
    };
    assert!(
        eventually(TIMEOUT, || scripts() == 0),
        "a script outlived the server"
    );
}

fn open_fds(pid: u32) -> usize {
    fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

#[test]
fn a_connection_accepted_just_before_a_stop_still_gets_its_first_request_answered() {
    let mut server = Server::start(&config("", ""), SITE);
    let before = open_fds(server.pid());
    let mut stream = server.connect();
    assert!(
        eventually(TIMEOUT, || open_fds(server.pid()) > before),
        "the connection was never accepted"
    );
    kill(server.pid(), libc::SIGTERM);
    // The request follows the stop by a moment (within the 500 ms grace).
    thread::sleep(Duration::from_millis(150));
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("send");
    let response = read_response(&mut stream, false);
    assert_eq!(
        (response.status, response.text().as_str()),
        (200, "hello\n")
    );
    assert_eq!(response.header("connection"), Some("close"));
    assert_eq!(server.wait_exit(), Some(0));
}
