//! Starts the real `webserv` binary on a temporary configuration and a free
//! 127.0.0.1 port, and speaks raw HTTP to it. The server is killed by PID
//! when the handle drops; every wait is bounded.

#![allow(dead_code)] // each test file uses a different part of this kit

use std::collections::HashMap;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

pub const TIMEOUT: Duration = Duration::from_secs(10);

pub struct Server {
    child: Child,
    pub port: u16,
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
}

/// A free port on 127.0.0.1 (the kernel's pick, released at once).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl Server {
    /// Writes `files` (path relative to a temp dir → content) and a config
    /// from `template`, where `{port}` is a free port and `{dir}` the temp
    /// dir, then starts the server and waits until it listens.
    pub fn start(template: &str, files: &[(&str, &[u8])]) -> Server {
        Server::start_with_env(template, files, &[])
    }

    /// Like [`Server::start`], with extra variables in the server's own
    /// environment (to prove they do not reach a CGI script).
    pub fn start_with_env(template: &str, files: &[(&str, &[u8])], env: &[(&str, &str)]) -> Server {
        Server::start_with(template, files, |command| {
            command.envs(env.iter().copied());
        })
    }

    /// Like [`Server::start_with_env`], running `program` (a build of
    /// webserv with other features).
    pub fn start_program(
        program: &Path,
        template: &str,
        files: &[(&str, &[u8])],
        env: &[(&str, &str)],
    ) -> Server {
        Server::start_command(Command::new(program), template, files, |command| {
            command.envs(env.iter().copied());
        })
    }

    /// Like [`Server::start`], with the command adjusted before it runs (a
    /// resource limit, variables).
    pub fn start_with(
        template: &str,
        files: &[(&str, &[u8])],
        configure: impl FnOnce(&mut Command),
    ) -> Server {
        Server::start_command(Command::new(binary()), template, files, configure)
    }

    fn start_command(
        mut command: Command,
        template: &str,
        files: &[(&str, &[u8])],
        configure: impl FnOnce(&mut Command),
    ) -> Server {
        let dir = tempfile::tempdir().expect("temp dir");
        for (path, content) in files {
            let path = dir.path().join(path);
            fs::create_dir_all(path.parent().expect("has a parent")).expect("mkdir");
            fs::write(&path, content).expect("write fixture");
        }
        let port = free_port();
        let config = dir.path().join("test.conf");
        let text = template
            .replace("{port}", &port.to_string())
            .replace("{dir}", dir.path().to_str().expect("utf-8 temp dir"));
        fs::write(&config, text).expect("write config");
        command
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        configure(&mut command);
        let child = command.spawn().expect("spawn webserv");
        let mut server = Server {
            child,
            port,
            dir,
            config,
        };
        server.wait_listening();
        server
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn wait_listening(&mut self) {
        let stdout = self.child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.contains("listening on") && tx.send(()).is_err() {
                    break;
                }
            }
        });
        if rx.recv_timeout(TIMEOUT).is_err() {
            let _ = self.child.kill();
            let mut err = String::new();
            if let Some(mut stderr) = self.child.stderr.take() {
                let _ = stderr.read_to_string(&mut err);
            }
            panic!("webserv did not start listening: {err}");
        }
    }

    pub fn connect(&self) -> TcpStream {
        let stream = TcpStream::connect(("127.0.0.1", self.port)).expect("connect");
        stream.set_read_timeout(Some(TIMEOUT)).expect("timeout");
        stream
    }

    /// Sends `bytes` on a new connection and reads until the server closes.
    pub fn raw(&self, bytes: &[u8]) -> Vec<u8> {
        let mut stream = self.connect();
        stream.write_all(bytes).expect("send");
        read_to_close(&mut stream)
    }

    /// One request on a new connection; the response parsed.
    pub fn send(&self, bytes: &[u8]) -> Response {
        let mut stream = self.connect();
        stream.write_all(bytes).expect("send");
        read_response(&mut stream, bytes.starts_with(b"HEAD"))
    }

    pub fn get(&self, path: &str) -> Response {
        self.send(
            format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
    }

    /// Waits (bounded) for the process to exit and returns its status code.
    pub fn wait_exit(&mut self) -> Option<i32> {
        let start = Instant::now();
        while start.elapsed() < TIMEOUT {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            thread::sleep(Duration::from_millis(20));
        }
        None
    }

    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on the PID of our own child.
        let rc = unsafe { libc::kill(self.child.id() as i32, signal) };
        assert_eq!(rc, 0, "kill failed");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn spawn(config: &Path) -> Child {
    spawn_with_env(config, &[])
}

/// The binary under test: this build's, or `WEBSERV_TEST_BIN` (to show that
/// a new test fails on an older build).
pub fn binary() -> PathBuf {
    std::env::var_os("WEBSERV_TEST_BIN").map_or_else(
        || PathBuf::from(env!("CARGO_BIN_EXE_webserv")),
        PathBuf::from,
    )
}

pub fn spawn_with_env(config: &Path, env: &[(&str, &str)]) -> Child {
    command_for(config)
        .envs(env.iter().copied())
        .spawn()
        .expect("spawn webserv")
}

pub fn spawn_program(program: &Path, config: &Path, env: &[(&str, &str)]) -> Child {
    let mut command = Command::new(program);
    command
        .arg(config)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command.spawn().expect("spawn webserv")
}

/// `webserv CONFIG`, stdout and stderr piped, nothing on stdin.
pub fn command_for(config: &Path) -> Command {
    let mut command = Command::new(binary());
    command
        .arg(config)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

pub fn read_to_close(stream: &mut impl Read) -> Vec<u8> {
    let mut out = Vec::new();
    let deadline = Instant::now() + TIMEOUT;
    let mut buf = [0u8; 8192];
    while Instant::now() < deadline {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!("read: {e}"),
        }
    }
    out
}

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Reads one response: head, then a body framed by `Content-Length`,
/// chunked, or the end of the connection. Not a byte past it is taken from
/// `stream`: tests that pipeline, or go on with raw reads, read one at a time.
pub fn read_response(stream: &mut impl Read, head_only: bool) -> Response {
    let mut reader = Reader::bytewise(stream);
    let response = reader.read(head_only);
    assert!(
        reader.buf.is_empty(),
        "bytes after the response: {:?}",
        String::from_utf8_lossy(&reader.buf)
    );
    response
}

/// Reads responses from any byte stream (a socket, a TLS stream), keeping
/// what it read past one response for the next.
pub struct Reader<S: Read> {
    /// The stream itself, for writing requests on it.
    pub stream: S,
    /// Read from the stream, not handed out yet.
    pub buf: Vec<u8>,
    /// The most one read takes.
    chunk: usize,
}

impl<S: Read> Reader<S> {
    /// Reads in chunks of 16 KiB: what follows a response waits in `buf`.
    pub fn new(stream: S) -> Self {
        Reader {
            stream,
            buf: Vec::new(),
            chunk: 16 * 1024,
        }
    }

    /// Reads a byte at a time: never takes a byte past what it returns.
    pub fn bytewise(stream: S) -> Self {
        Reader {
            chunk: 1,
            ..Reader::new(stream)
        }
    }

    /// One read into `buf`; `false` at the end of the stream (a close, a
    /// reset, or a TLS peer that left without close_notify).
    pub fn fill(&mut self) -> bool {
        let mut chunk = vec![0u8; self.chunk];
        match self.stream.read(&mut chunk) {
            Ok(0) => false,
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
            Err(err) if err.kind() == std::io::ErrorKind::UnexpectedEof => false,
            Err(err) if err.kind() == std::io::ErrorKind::ConnectionReset => false,
            Err(err) => panic!("read: {err}"),
        }
    }

    /// The bytes up to `delim`, which is consumed too.
    pub fn until(&mut self, delim: &[u8]) -> Vec<u8> {
        loop {
            if let Some(i) = self.buf.windows(delim.len()).position(|w| w == delim) {
                let out = self.buf[..i].to_vec();
                self.buf.drain(..i + delim.len());
                return out;
            }
            assert!(
                self.fill(),
                "closed before {delim:?}: {:?}",
                String::from_utf8_lossy(&self.buf)
            );
        }
    }

    /// The next `n` bytes.
    pub fn exactly(&mut self, n: usize) -> Vec<u8> {
        if self.buf.len() < n && self.chunk == 1 {
            // A known length: one read_exact, still nothing past it.
            let mut rest = vec![0u8; n - self.buf.len()];
            self.stream.read_exact(&mut rest).expect("body");
            self.buf.extend_from_slice(&rest);
        }
        while self.buf.len() < n {
            assert!(self.fill(), "closed {} bytes into {n}", self.buf.len());
        }
        self.buf.drain(..n).collect()
    }

    /// A response to anything but `HEAD`.
    pub fn response(&mut self) -> Response {
        self.read(false)
    }

    /// A response; `head_only`: it answers a `HEAD` (no body follows).
    pub fn read(&mut self, head_only: bool) -> Response {
        let head = String::from_utf8(self.until(b"\r\n\r\n")).expect("utf-8 head");
        let mut lines = head.split("\r\n");
        let status_line = lines.next().expect("status line");
        let status = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
        let headers: HashMap<String, String> = lines
            .filter(|l| !l.is_empty())
            .map(|l| {
                let (n, v) = l.split_once(':').expect("header colon");
                (n.to_ascii_lowercase(), v.trim().to_owned())
            })
            .collect();
        let body = if head_only || status == 204 || status == 304 || status < 200 {
            Vec::new()
        } else if let Some(len) = headers.get("content-length") {
            self.exactly(len.parse().expect("numeric length"))
        } else if headers
            .get("transfer-encoding")
            .is_some_and(|v| v == "chunked")
        {
            self.chunked()
        } else {
            self.rest()
        };
        Response {
            status,
            headers,
            body,
        }
    }

    fn chunked(&mut self) -> Vec<u8> {
        let mut body = Vec::new();
        loop {
            let line = String::from_utf8(self.until(b"\r\n")).expect("size line");
            let size = usize::from_str_radix(line.split(';').next().unwrap_or("").trim(), 16)
                .expect("hex size");
            if size == 0 {
                self.until(b"\r\n");
                return body;
            }
            body.extend(self.exactly(size));
            assert!(self.exactly(2) == b"\r\n", "chunk data must end with CRLF");
        }
    }

    /// Whether the peer closes within `within` (a read timeout counts as
    /// not closing).
    pub fn closes_within(&mut self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            let mut chunk = vec![0u8; self.chunk];
            match self.stream.read(&mut chunk) {
                Ok(0) => return true,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(err) if err.kind() == std::io::ErrorKind::UnexpectedEof => return true,
                Err(err) if err.kind() == std::io::ErrorKind::ConnectionReset => return true,
                Err(_) => return false,
            }
        }
        false
    }

    /// Everything up to the end of the stream.
    fn rest(&mut self) -> Vec<u8> {
        let deadline = Instant::now() + TIMEOUT;
        while Instant::now() < deadline && self.fill() {}
        std::mem::take(&mut self.buf)
    }
}

/// The resident set of `pid` in KiB (`VmRSS` of `/proc/PID/status`).
pub fn rss_kib(pid: u32) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS line")
}

/// webserv built with `--features fault-injection` (a debug build in a
/// target directory of its own), once per test binary.
pub fn fault_binary() -> &'static Path {
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
