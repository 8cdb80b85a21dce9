//! Faults of the environment (SPEC §9.6): a file-size limit and a full
//! filesystem while storing uploads and PUTs. Each answers 507, leaves
//! nothing in the store, says in the error log which file and why, and the
//! server goes on serving. Also: binding what the kernel could refuse
//! (IPv6 and IPv4 wildcards on one port).

mod common;

use std::fs;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

use common::{Response, Server};

const CONFIG: &str = r#"
error_log {dir}/error.log;
server {
    listen 127.0.0.1:{port};
    server_name localhost;
    root {dir}/www;
    client_max_body_size 0;
    location /up/ { methods GET POST PUT DELETE; upload_store {dir}/store; }
}
"#;

fn put(s: &Server, path: &str, body: &[u8]) -> Response {
    let mut request = format!(
        "PUT {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body);
    s.send(&request)
}

fn post_multipart(s: &Server, name: &str, body: &[u8]) -> Response {
    let mut payload = format!(
        "--XyZ\r\nContent-Disposition: form-data; name=\"f\"; filename=\"{name}\"\r\n\
         Content-Type: application/octet-stream\r\n\r\n"
    )
    .into_bytes();
    payload.extend_from_slice(body);
    payload.extend_from_slice(b"\r\n--XyZ--\r\n");
    let mut request = format!(
        "POST /up/ HTTP/1.1\r\nHost: localhost\r\nContent-Type: multipart/form-data; boundary=XyZ\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        payload.len()
    )
    .into_bytes();
    request.extend_from_slice(&payload);
    s.send(&request)
}

/// Names in `dir`, temporary files included.
fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

fn error_log(s: &Server) -> String {
    fs::read_to_string(s.path("error.log")).unwrap_or_default()
}

/// The store, and the server, after a refused upload: nothing left behind,
/// the log says which file and why, small uploads still work.
fn assert_refused_cleanly(s: &Server, store: &Path, why: &str) {
    assert_eq!(entries(store), Vec::<String>::new(), "left in the store");
    let log = error_log(s);
    assert!(
        log.contains("upload failed: writing ") && log.contains(".webserv-") && log.contains(why),
        "error log does not say which file and why:\n{log}"
    );
    let r = put(s, "/up/small.txt", b"small");
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(fs::read(store.join("small.txt")).expect("stored"), b"small");
    assert_eq!(s.get("/").status, 200);
}

#[test]
fn a_file_size_limit_gives_507_and_the_server_survives() {
    const LIMIT: u64 = 1024 * 1024;
    let s = Server::start_with(
        CONFIG,
        &[("www/index.html", b"home"), ("store/.keep", b"")],
        |c| {
            // SAFETY: setrlimit is async-signal-safe and touches no memory of
            // the parent.
            unsafe {
                c.pre_exec(|| {
                    let limit = libc::rlimit {
                        rlim_cur: LIMIT,
                        rlim_max: LIMIT,
                    };
                    if libc::setrlimit(libc::RLIMIT_FSIZE, &limit) == 0 {
                        Ok(())
                    } else {
                        Err(std::io::Error::last_os_error())
                    }
                });
            }
        },
    );
    let store = s.path("store");
    fs::remove_file(store.join(".keep")).expect("rm");
    let big = vec![b'x'; 2 * 1024 * 1024];
    let r = put(&s, "/up/big.bin", &big);
    assert_eq!(r.status, 507, "{}", r.text());
    assert!(
        r.text().contains("507 Insufficient Storage"),
        "{}",
        r.text()
    );
    assert_refused_cleanly(&s, &store, "File too large");
    fs::remove_file(store.join("small.txt")).expect("rm");

    let r = post_multipart(&s, "big.bin", &big);
    assert_eq!(r.status, 507, "{}", r.text());
    assert_refused_cleanly(&s, &store, "File too large");
}

/// A 1 MiB tmpfs as the store. Mounting needs privileges: without them the
/// test says why and passes without running.
struct Tmpfs<'a>(&'a Path);

impl<'a> Tmpfs<'a> {
    fn mount(dir: &'a Path) -> Option<Tmpfs<'a>> {
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
            .arg(dir)
            .output();
        match out {
            Ok(out) if out.status.success() => Some(Tmpfs(dir)),
            Ok(out) => {
                eprintln!(
                    "SKIPPED: cannot mount a tmpfs: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                );
                None
            }
            Err(err) => {
                eprintln!("SKIPPED: cannot run mount: {err}");
                None
            }
        }
    }
}

impl Drop for Tmpfs<'_> {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.0).status();
    }
}

#[test]
fn a_full_filesystem_gives_507_and_the_server_survives() {
    let s = Server::start(CONFIG, &[("www/index.html", b"home"), ("store/.keep", b"")]);
    let store = s.path("store");
    fs::remove_file(store.join(".keep")).expect("rm");
    let Some(_tmpfs) = Tmpfs::mount(&store) else {
        return;
    };
    let big = vec![b'x'; 2 * 1024 * 1024];
    let r = put(&s, "/up/big.bin", &big);
    assert_eq!(r.status, 507, "{}", r.text());
    assert_refused_cleanly(&s, &store, "No space left on device");
    fs::remove_file(store.join("small.txt")).expect("rm");

    let r = post_multipart(&s, "big.bin", &big);
    assert_eq!(r.status, 507, "{}", r.text());
    assert_refused_cleanly(&s, &store, "No space left on device");
}

/// `listen [::]:P` beside `listen P` binds both (IPv6 sockets are
/// IPv6-only, as nginx's). Wildcard addresses are bound only inside a
/// network namespace of the test's own (`unshare -n`), which reaches no
/// other host; where one cannot be made, the test says why and passes.
#[test]
fn ipv6_and_ipv4_wildcards_on_one_port_both_listen() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    use std::sync::mpsc;
    use std::thread;

    if !Command::new("unshare")
        .args(["-n", "true"])
        .status()
        .is_ok_and(|s| s.success())
    {
        eprintln!("SKIPPED: cannot make a network namespace (unshare -n)");
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("dual.conf");
    fs::write(
        &config,
        "server { listen [::]:8080; listen 8080; return 200 ok; }\n",
    )
    .expect("write config");
    let mut child = Command::new("unshare")
        .args(["-n", "--"])
        .arg(common::binary())
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = std::time::Instant::now() + common::TIMEOUT;
    let mut lines = Vec::new();
    while lines.len() < 2 {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => lines.push(line),
            Err(_) => break,
        }
    }
    let _ = child.kill();
    let status = child.wait().expect("wait");
    let mut err = String::new();
    if let Some(mut stderr) = child.stderr.take() {
        use std::io::Read;
        let _ = stderr.read_to_string(&mut err);
    }
    assert!(
        lines
            .iter()
            .any(|l| l.contains("listening on http://[::]:8080"))
            && lines
                .iter()
                .any(|l| l.contains("listening on http://0.0.0.0:8080")),
        "not both listening: {lines:?}, {status}, stderr: {err}"
    );
}
