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
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

use common::{read_response, Server, TIMEOUT};

/// webserv built with `--features fault-injection`, once per test run.
fn fault_binary() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let target = Path::new(env!("CARGO_TARGET_TMPDIR")).join("fault-injection");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
        let status = Command::new(cargo)
            .args(["build", "--quiet", "--bin", "webserv"])
            .args(["--features", "fault-injection", "--target-dir"])
            .arg(&target)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("run cargo build");
        assert!(status.success(), "building the fault-injection binary");
        target.join("debug").join("webserv")
    })
}

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
