//! Faults of the environment (SPEC §9.6): a file-size limit and a full
//! filesystem while storing uploads and PUTs. Each answers 507, leaves
//! nothing in the store, says in the error log which file and why, and the
//! server goes on serving. Also: binding what the kernel could refuse
//! (IPv6 and IPv4 wildcards on one port), running out of descriptors, and
//! peers that vanish mid-transfer (SIGPIPE must never kill the server).

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

/// Starts the server under `resource` limited to `limit` (soft and hard).
fn with_rlimit(command: &mut Command, resource: libc::__rlimit_resource_t, limit: u64) {
    // SAFETY: setrlimit is async-signal-safe and touches no memory of the
    // parent.
    unsafe {
        command.pre_exec(move || {
            let limit = libc::rlimit {
                rlim_cur: limit,
                rlim_max: limit,
            };
            if libc::setrlimit(resource, &limit) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
}

#[test]
fn a_file_size_limit_gives_507_and_the_server_survives() {
    const LIMIT: u64 = 1024 * 1024;
    let s = Server::start_with(
        CONFIG,
        &[("www/index.html", b"home"), ("store/.keep", b"")],
        |c| with_rlimit(c, libc::RLIMIT_FSIZE, LIMIT),
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

/// The server's CPU time so far (user + system), in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).expect("read stat");
    // After the command name in parentheses: fields 3.. ; utime and stime
    // are fields 14 and 15.
    let rest = &stat[stat.rfind(')').expect("comm") + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime")
}

/// How many of the server's descriptors are sockets.
fn sockets(pid: u32) -> usize {
    fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("fd dir")
        .filter_map(Result::ok)
        .filter(|e| {
            fs::read_link(e.path()).is_ok_and(|l| l.to_string_lossy().starts_with("socket:"))
        })
        .count()
}

/// Waits (bounded) until `check` holds.
fn wait_until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + common::TIMEOUT;
    while !check() {
        assert!(std::time::Instant::now() < deadline, "timed out: {what}");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// SPEC §9.6: out of descriptors (a low RLIMIT_NOFILE, more clients than
/// it allows), accepting pauses without spinning and without a log line
/// per retry; the connections already open are still served, files
/// included (the server gave up its reserve of descriptors for them); and
/// once clients leave, the waiting ones are accepted and served.
#[test]
fn out_of_descriptors_accepting_pauses_without_spinning_and_resumes() {
    use std::io::Write;
    const NOFILE: u64 = 64;
    const CLIENTS: usize = 90;
    let s = Server::start_with(
        r#"
error_log {dir}/error.log;
server {
    listen 127.0.0.1:{port};
    server_name localhost;
    root {dir}/www;
    access_log off;
}
"#,
        &[("www/index.html", b"home")],
        |c| with_rlimit(c, libc::RLIMIT_NOFILE, NOFILE),
    );
    let pid = s.pid();
    let base = sockets(pid);
    // Connected one after the other: the kernel's accept queue is FIFO, so
    // the server takes them in this order.
    let mut clients: Vec<Option<std::net::TcpStream>> = (0..CLIENTS)
        .map(|_| {
            let mut c = s.connect();
            c.write_all(b"GET /index.html HTTP/1.1\r\nHost: localhost\r\n\r\n")
                .expect("send");
            Some(c)
        })
        .collect();
    wait_until("accept runs out of descriptors", || {
        error_log(&s).contains("Too many open files")
    });
    let accepted = sockets(pid) - base;
    assert!(
        (10..CLIENTS).contains(&accepted),
        "{accepted} of {CLIENTS} accepted"
    );
    // The accepted ones are answered, and answered again (a file each
    // time: the descriptors it takes come from the reserve).
    for c in clients[..accepted].iter_mut().flatten() {
        let r = common::read_response(c, false);
        assert_eq!((r.status, r.body.as_slice()), (200, &b"home"[..]));
    }
    let window = std::time::Duration::from_secs(1);
    let (ticks_before, log_before) = (cpu_ticks(pid), error_log(&s).lines().count());
    std::thread::sleep(window);
    for c in clients[..accepted].iter_mut().flatten() {
        c.write_all(b"GET /index.html HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .expect("send");
        let r = common::read_response(c, false);
        assert_eq!((r.status, r.body.as_slice()), (200, &b"home"[..]));
    }
    let ticks = cpu_ticks(pid) - ticks_before;
    // SAFETY: sysconf has no preconditions.
    let hz = u64::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) }).unwrap_or(100);
    assert!(
        ticks * 5 <= hz,
        "{ticks} ticks of CPU ({hz}/s) in a {window:?} window while paused: spinning"
    );
    let log = error_log(&s);
    assert!(
        log.lines().count() <= log_before + 1,
        "a log line per retry:\n{log}"
    );
    // Those served leave; every waiting client is accepted and answered in
    // turn (each leaves once answered, making room for the next).
    for c in &mut clients[..accepted] {
        drop(c.take());
    }
    for c in &mut clients[accepted..] {
        let mut stream = c.take().expect("a waiting client");
        let r = common::read_response(&mut stream, false);
        assert_eq!((r.status, r.body.as_slice()), (200, &b"home"[..]));
    }
    assert!(
        error_log(&s).contains("accepting again"),
        "{}",
        error_log(&s)
    );
}

/// Closes `stream` with a reset (SO_LINGER 0), as a client that crashes.
fn reset(stream: std::net::TcpStream) {
    use std::os::fd::AsRawFd;
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt on a socket we own, with a valid struct.
    let rc = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "SO_LINGER");
    drop(stream);
}

/// Sends `head` and then as much of a `len`-byte body as the server takes,
/// from a thread; returns what the client read back (if anything).
fn post_body(s: &Server, head: String, len: usize) -> Vec<u8> {
    use std::io::{Read, Write};
    let mut stream = s.connect();
    let mut writer = stream.try_clone().expect("clone");
    let sender = std::thread::spawn(move || {
        if writer.write_all(head.as_bytes()).is_err() {
            return;
        }
        let block = vec![b'b'; 64 * 1024];
        let mut sent = 0;
        while sent < len {
            let n = block.len().min(len - sent);
            if writer.write_all(&block[..n]).is_err() {
                return;
            }
            sent += n;
        }
    });
    let mut got = Vec::new();
    let _ = stream.read_to_end(&mut got);
    drop(stream);
    let _ = sender.join();
    got
}

/// The server answers a plain request: it is alive (SIGPIPE kills a
/// process that does not ignore it).
fn assert_alive(s: &Server, what: &str) {
    let r = s.get("/index.html");
    assert_eq!((r.status, r.body.as_slice()), (200, &b"home"[..]), "{what}");
}

/// SIGPIPE never kills the server: a client that resets mid-response of a
/// large file, a CGI script that exits without reading the body piped to
/// it, an upstream that closes while a request body is being forwarded.
#[test]
fn peers_that_vanish_mid_transfer_never_kill_the_server() {
    use std::io::{Read, Write};
    let upstream = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let upstream_port = upstream.local_addr().expect("addr").port();
    // Reads the head and a little of the body, then hangs up (a reset,
    // with unread input), for each connection.
    std::thread::spawn(move || {
        for stream in upstream.incoming() {
            let Ok(mut stream) = stream else { break };
            let _ = stream.set_read_timeout(Some(common::TIMEOUT));
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf);
            drop(stream);
        }
    });
    let config = r#"
error_log {dir}/error.log;
server {
    listen 127.0.0.1:{port};
    server_name localhost;
    root {dir}/www;
    client_max_body_size 0;
    location /cgi/ { methods GET POST; cgi .sh /bin/sh; }
    location /up/ { methods POST; proxy_pass http://127.0.0.1:UPSTREAM; }
}
"#
    .replace("UPSTREAM", &upstream_port.to_string());
    let big = vec![b'z'; 32 * 1024 * 1024];
    let s = Server::start(
        &config,
        &[
            ("www/index.html", b"home"),
            ("www/big.bin", &big),
            (
                "www/cgi/early.sh",
                b"head -c 10 >/dev/null\nprintf 'Content-Type: text/plain\\r\\n\\r\\nearly\\n'\n",
            ),
        ],
    );
    drop(big);

    for _ in 0..3 {
        let mut stream = s.connect();
        stream
            .write_all(b"GET /big.bin HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .expect("send");
        let mut first = [0u8; 64 * 1024];
        stream
            .read_exact(&mut first)
            .expect("the start of the file");
        reset(stream);
        assert_alive(&s, "after a client reset mid-file");
    }

    for _ in 0..3 {
        let len = 8 * 1024 * 1024;
        let got = post_body(
            &s,
            format!("POST /cgi/early.sh HTTP/1.1\r\nHost: localhost\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n"),
            len,
        );
        let text = String::from_utf8_lossy(&got);
        assert!(got.is_empty() || text.starts_with("HTTP/1.1 "), "{text}");
        assert_alive(&s, "after a CGI script left its stdin unread");
    }

    for _ in 0..3 {
        let len = 8 * 1024 * 1024;
        let got = post_body(
            &s,
            format!("POST /up/x HTTP/1.1\r\nHost: localhost\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n"),
            len,
        );
        let text = String::from_utf8_lossy(&got);
        assert!(got.is_empty() || text.starts_with("HTTP/1.1 5"), "{text}");
        assert_alive(&s, "after an upstream closed mid-body");
    }
}
