//! `proxy_pass` against the real binary (SPEC §4, §8): webserv in front of
//! a second webserv, and in front of small upstreams written here (std
//! `TcpListener` threads) where the exact bytes on the wire matter.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::{free_port, read_response, read_to_close, rss_kib, Server, TIMEOUT};

// --- a scripted upstream -------------------------------------------------------

/// One request as an upstream received it: the head as text, the body
/// bytes exactly as they came on the wire (chunked framing included).
#[derive(Debug, Clone)]
struct Seen {
    head: String,
    body: Vec<u8>,
}

impl Seen {
    fn request_line(&self) -> &str {
        self.head.split("\r\n").next().unwrap_or("")
    }

    /// Every value of header `name` (case-insensitive), in order.
    fn values(&self, name: &str) -> Vec<&str> {
        self.head
            .split("\r\n")
            .skip(1)
            .filter_map(|l| l.split_once(':'))
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim())
            .collect()
    }
}

/// What a scripted upstream does with each request of a connection:
/// `Some(bytes)` to write back (then read the next request), `None` to
/// close the connection.
type Script = dyn Fn(&Seen, &mut TcpStream) -> bool + Send + Sync;

/// A plain TCP server on a free 127.0.0.1 port: each accepted connection
/// runs in its own thread, reads requests and lets `script` answer them.
/// Requests and accepts are counted; every read has a timeout.
struct Upstream {
    port: u16,
    accepts: Arc<AtomicUsize>,
    seen: Receiver<Seen>,
    /// Fires once per connection when the proxy closes it.
    closed: Receiver<()>,
}

impl Upstream {
    fn start(script: impl Fn(&Seen, &mut TcpStream) -> bool + Send + Sync + 'static) -> Upstream {
        Upstream::start_reading(Reading::Strict, script)
    }

    /// An upstream as many CGI- and WSGI-style servers are: it reads `_` in
    /// a header name as `-`, and lets `Transfer-Encoding` win over
    /// `Content-Length`.
    fn lenient(script: impl Fn(&Seen, &mut TcpStream) -> bool + Send + Sync + 'static) -> Upstream {
        Upstream::start_reading(Reading::Lenient, script)
    }

    fn start_reading(
        reading: Reading,
        script: impl Fn(&Seen, &mut TcpStream) -> bool + Send + Sync + 'static,
    ) -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind upstream");
        let port = listener.local_addr().expect("local addr").port();
        let accepts = Arc::new(AtomicUsize::new(0));
        let (seen_tx, seen) = mpsc::channel();
        let (closed_tx, closed) = mpsc::channel();
        let script: Arc<Script> = Arc::new(script);
        let counter = Arc::clone(&accepts);
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { break };
                counter.fetch_add(1, Ordering::SeqCst);
                let script = Arc::clone(&script);
                let seen_tx = seen_tx.clone();
                let closed_tx = closed_tx.clone();
                thread::spawn(move || serve(stream, reading, &*script, &seen_tx, &closed_tx));
            }
        });
        Upstream {
            port,
            accepts,
            seen,
            closed,
        }
    }

    fn accepts(&self) -> usize {
        self.accepts.load(Ordering::SeqCst)
    }

    /// The next request this upstream received (bounded wait).
    fn next_seen(&self) -> Seen {
        self.seen
            .recv_timeout(TIMEOUT)
            .expect("the upstream received a request")
    }
}

/// How an upstream frames the requests it reads.
#[derive(Clone, Copy)]
enum Reading {
    Strict,
    Lenient,
}

fn serve(
    mut stream: TcpStream,
    reading: Reading,
    script: &Script,
    seen: &Sender<Seen>,
    closed: &Sender<()>,
) {
    stream.set_read_timeout(Some(TIMEOUT)).expect("timeout");
    let mut buf = Vec::new();
    loop {
        match read_request(&mut stream, &mut buf, reading) {
            Some(request) => {
                let _ = seen.send(request.clone());
                if !script(&request, &mut stream) {
                    return;
                }
            }
            None => {
                let _ = closed.send(());
                return;
            }
        }
    }
}

/// Reads one request (head, then a body by `Content-Length` or chunked,
/// kept as sent). `None` when the peer closes or times out first.
fn read_request(stream: &mut TcpStream, buf: &mut Vec<u8>, reading: Reading) -> Option<Seen> {
    let head_end = loop {
        if let Some(i) = find(buf, b"\r\n\r\n") {
            break i + 4;
        }
        fill(stream, buf)?;
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    buf.drain(..head_end);
    let mut seen = Seen {
        head,
        body: Vec::new(),
    };
    let framing = match reading {
        Reading::Strict => seen.clone(),
        Reading::Lenient => Seen {
            head: seen
                .head
                .split("\r\n")
                .map(|line| match line.split_once(':') {
                    Some((name, value)) => format!("{}:{value}", name.replace('_', "-")),
                    None => line.to_string(),
                })
                .collect::<Vec<_>>()
                .join("\r\n"),
            body: Vec::new(),
        },
    };
    let chunked = framing
        .values("transfer-encoding")
        .iter()
        .any(|v| v.eq_ignore_ascii_case("chunked"));
    let lenient_chunked = matches!(reading, Reading::Lenient) && chunked;
    if let Some(len) = framing
        .values("content-length")
        .first()
        .filter(|_| !lenient_chunked)
    {
        let len: usize = len.parse().expect("numeric Content-Length");
        while buf.len() < len {
            fill(stream, buf)?;
        }
        seen.body = buf.drain(..len).collect();
    } else if chunked {
        // The body ends with the last chunk and an empty trailer section.
        let end = loop {
            if let Some(i) = find(buf, b"\r\n0\r\n\r\n") {
                break i + 7;
            }
            if buf.starts_with(b"0\r\n\r\n") {
                break 5;
            }
            fill(stream, buf)?;
        };
        seen.body = buf.drain(..end).collect();
    }
    Some(seen)
}

fn fill(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<()> {
    let mut chunk = [0u8; 16 * 1024];
    match stream.read(&mut chunk) {
        Ok(0) | Err(_) => None,
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            Some(())
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// An upstream that answers every request with `response`, keeping the
/// connection open.
fn fixed(response: &'static [u8]) -> Upstream {
    Upstream::start(move |_, s| s.write_all(response).is_ok())
}

/// An upstream that answers `response` and closes.
fn fixed_then_close(response: &'static [u8]) -> Upstream {
    Upstream::start(move |_, s| {
        let _ = s.write_all(response);
        false
    })
}

/// A webserv proxying `/` (and `/api/`, with a prefix) to `port`.
fn front(port: u16, extra: &str) -> Server {
    // Bounded, unless the test sets its own.
    let timeout = if extra.contains("proxy_read_timeout") {
        ""
    } else {
        "proxy_read_timeout 5s;"
    };
    let config = format!(
        r#"
server {{
    listen 127.0.0.1:{{port}};
    server_name localhost;
    {timeout}
    {extra}
    methods GET HEAD POST PUT DELETE;
    location / {{ proxy_pass http://127.0.0.1:{port}; }}
    location /api/ {{ proxy_pass http://127.0.0.1:{port}/v1/; }}
}}
"#
    );
    Server::start(&config, &[])
}

fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").into_bytes()
}

fn get_close(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").into_bytes()
}

/// The head of a raw response, and what follows it.
fn split_head(raw: &[u8]) -> (String, Vec<u8>) {
    let end = find(raw, b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no head in {:?}", String::from_utf8_lossy(raw)));
    (
        String::from_utf8_lossy(&raw[..end + 4]).into_owned(),
        raw[end + 4..].to_vec(),
    )
}

fn has_header(head: &str, name: &str) -> bool {
    head.split("\r\n")
        .filter_map(|l| l.split_once(':'))
        .any(|(n, _)| n.eq_ignore_ascii_case(name))
}

/// A 127.0.0.1 port with nothing listening on it.
fn refused_port() -> u16 {
    let port = free_port();
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "port {port} should refuse"
    );
    port
}

// --- in front of a second webserv ----------------------------------------------

const BACK: &str = r#"
server {
    listen 127.0.0.1:{port};
    server_name back;
    root {dir}/www;
    location /up/ { methods GET POST PUT; upload_store {dir}/store; client_max_body_size 0; }
}
"#;

/// The front config for a back webserv on `back`: everything proxied.
fn front_of(back: u16) -> String {
    format!(
        r#"
server {{
    listen 127.0.0.1:{{port}};
    server_name front;
    client_max_body_size 0;
    methods GET HEAD POST PUT;
    location / {{ proxy_pass http://127.0.0.1:{back}; }}
}}
"#
    )
}

fn back_files() -> Vec<(&'static str, &'static [u8])> {
    vec![
        ("www/hello.txt", b"hello from the back\n"),
        ("www/index.html", b"<h1>back</h1>"),
        ("store/.keep", b""),
    ]
}

#[test]
fn static_files_through_a_second_webserv() {
    let back = Server::start(BACK, &back_files());
    let front = Server::start(&front_of(back.port), &[]);

    let direct = back.get("/hello.txt");
    let r = front.get("/hello.txt");
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"hello from the back\n");
    assert_eq!(r.header("content-type"), Some("text/plain"));
    assert_eq!(r.header("etag"), direct.header("etag"));
    assert_eq!(r.header("last-modified"), direct.header("last-modified"));
    assert_eq!(r.header("content-length"), Some("20"));

    // Errors of the upstream are relayed as they are (SPEC §8).
    let missing = front.get("/nope");
    assert_eq!(missing.status, 404);
    assert_eq!(missing.body, back.get("/nope").body);
    // A conditional request goes through: 304 from the back.
    let etag = direct.header("etag").expect("an ETag");
    let not_modified = front.send(
        format!(
            "GET /hello.txt HTTP/1.1\r\nHost: x\r\nIf-None-Match: {etag}\r\nConnection: close\r\n\r\n"
        )
        .as_bytes(),
    );
    assert_eq!(not_modified.status, 304);

    // Keep-alive with the client: several requests, one connection.
    let mut stream = front.connect();
    for path in ["/hello.txt", "/", "/hello.txt"] {
        stream.write_all(&get(path)).expect("send");
        let r = read_response(&mut stream, false);
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(r.header("connection"), Some("keep-alive"));
    }
}

#[test]
fn head_through_a_second_webserv() {
    let back = Server::start(BACK, &back_files());
    let front = Server::start(&front_of(back.port), &[]);
    let mut stream = front.connect();
    stream
        .write_all(b"HEAD /hello.txt HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("send");
    let head = read_response(&mut stream, true);
    assert_eq!(head.status, 200);
    // The representation's length, though no body follows.
    assert_eq!(head.header("content-length"), Some("20"));
    assert!(head.body.is_empty());
    // No stray body bytes: the next response on the connection parses.
    stream.write_all(&get_close("/hello.txt")).expect("send");
    let next = read_response(&mut stream, false);
    assert_eq!(next.body, b"hello from the back\n");
}

#[test]
fn post_and_put_bodies_reach_a_second_webserv() {
    let back = Server::start(BACK, &back_files());
    let front = Server::start(&front_of(back.port), &[]);
    let body: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();

    let mut request = format!(
        "PUT /up/blob.bin HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(&body);
    let r = front.send(&request);
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(
        std::fs::read(back.path("store/blob.bin")).expect("stored"),
        body
    );

    // A chunked request body, re-chunked by the front, de-chunked by the back.
    let mut request =
        b"PUT /up/chunked.bin HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
            .to_vec();
    for piece in body.chunks(70_000) {
        request.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        request.extend_from_slice(piece);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");
    let r = front.send(&request);
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(
        std::fs::read(back.path("store/chunked.bin")).expect("stored"),
        body
    );
}

#[test]
fn a_100_mib_response_streams_with_bounded_memory() {
    const SIZE: usize = 100 * 1024 * 1024;
    let data: Vec<u8> = (0..SIZE).map(|i| (i % 251) as u8).collect();
    let back = Server::start(BACK, &[("www/big.bin", &data)]);
    drop(data);
    let front = Server::start(&front_of(back.port), &[]);

    let mut stream = front.connect();
    stream.write_all(&get_close("/big.bin")).expect("send");
    // A slow reader: small reads with pauses, so the front must hold back
    // the upstream instead of buffering what the client has not taken.
    let mut buf = vec![0u8; 32 * 1024];
    let mut head = Vec::new();
    let mut received = 0usize;
    let mut max_rss = 0u64;
    let mut reads = 0u64;
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut in_body = false;
    loop {
        assert!(Instant::now() < deadline, "took too long: {received} bytes");
        let n = stream.read(&mut buf).expect("read");
        if n == 0 {
            break;
        }
        let mut piece = &buf[..n];
        if !in_body {
            head.extend_from_slice(piece);
            let Some(end) = find(&head, b"\r\n\r\n") else {
                continue;
            };
            in_body = true;
            let text = String::from_utf8_lossy(&head[..end]).into_owned();
            assert!(text.starts_with("HTTP/1.1 200"), "{text}");
            assert!(text.contains(&format!("Content-Length: {SIZE}")), "{text}");
            let rest = head.split_off(end + 4);
            head.clear();
            head.extend_from_slice(&rest);
            piece = &[];
            check_pattern(&head, received);
            received += head.len();
        }
        check_pattern(piece, received);
        received += piece.len();
        reads += 1;
        if reads.is_multiple_of(64) {
            max_rss = max_rss.max(rss_kib(front.pid()));
            thread::sleep(Duration::from_millis(20));
        }
    }
    assert_eq!(received, SIZE);
    max_rss = max_rss.max(rss_kib(front.pid()));
    assert!(max_rss < 64 * 1024, "front VmRSS reached {max_rss} KiB");
}

/// An upstream that sends a whole body and closes while the client still
/// has much of it to take: the close ends nothing but the upstream side
/// (once, a 502 page was written into the body here).
#[test]
fn an_upstream_that_closes_behind_a_whole_body_loses_nothing() {
    const SIZE: usize = 4 << 20;
    let up = Upstream::start(|_, s| {
        let body: Vec<u8> = (0..SIZE).map(|i| (i % 251) as u8).collect();
        let _ =
            s.write_all(format!("HTTP/1.1 200 OK\r\nContent-Length: {SIZE}\r\n\r\n").as_bytes());
        let _ = s.write_all(&body);
        false
    });
    let s = front(up.port, "");
    for round in 0..3 {
        let mut stream = small_window_connect(s.port);
        stream.write_all(&get_close("/big")).expect("send");
        // Slower than the upstream, through a small window: its close
        // comes while the front still holds body bytes for the client.
        let mut raw = Vec::new();
        let mut buf = vec![0u8; 16 * 1024];
        let deadline = Instant::now() + TIMEOUT * 4;
        loop {
            assert!(Instant::now() < deadline, "round {round}: too slow");
            let n = stream.read(&mut buf).expect("read");
            if n == 0 {
                break;
            }
            raw.extend_from_slice(&buf[..n]);
            thread::sleep(Duration::from_micros(300));
        }
        let (head, body) = split_head(&raw);
        assert!(head.starts_with("HTTP/1.1 200"), "round {round}: {head}");
        assert_eq!(body.len(), SIZE, "round {round}: body length");
        check_pattern(&body, 0);
    }
}

/// A client socket with a small receive buffer (set before connecting, so
/// the window it offers stays small): what the server sends it waits in
/// the server.
fn small_window_connect(port: u16) -> TcpStream {
    use std::os::fd::FromRawFd;
    // SAFETY: a fresh socket of ours; the option value outlives the call;
    // the address is a valid sockaddr_in; the descriptor goes to the
    // TcpStream, which owns it from then on.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0, "socket");
        let size: libc::c_int = 4096;
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&size as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
        let addr = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: port.to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from(std::net::Ipv4Addr::LOCALHOST).to_be(),
            },
            sin_zero: [0; 8],
        };
        let rc = libc::connect(
            fd,
            (&addr as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        );
        let stream = TcpStream::from_raw_fd(fd);
        assert_eq!(rc, 0, "connect: {}", std::io::Error::last_os_error());
        stream.set_read_timeout(Some(TIMEOUT)).expect("timeout");
        stream
    }
}

fn check_pattern(piece: &[u8], offset: usize) {
    for (i, &b) in piece.iter().enumerate() {
        if b != ((offset + i) % 251) as u8 {
            panic!("byte {} is {b}", offset + i);
        }
    }
}

// --- in front of scripted upstreams ------------------------------------------

#[test]
fn garbage_from_the_upstream_is_502() {
    for answer in [
        &b"this is not http\r\n\r\n"[..],
        b"HTTP/1.1 abc OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nxx",
        b"",
    ] {
        let up = fixed_then_close(answer);
        let s = front(up.port, "");
        let r = s.send(&get_close("/x"));
        assert_eq!(r.status, 502, "{:?}", String::from_utf8_lossy(answer));
        assert!(r.text().contains("502"));
    }
}

#[test]
fn slow_upstream_is_504_after_proxy_read_timeout() {
    let up = Upstream::start(|_, s| {
        // Longer than the timeout, then answer (the proxy is gone by then).
        thread::sleep(Duration::from_secs(3));
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nlate");
        false
    });
    let s = front(up.port, "proxy_read_timeout 500ms;");
    let start = Instant::now();
    let r = s.send(&get_close("/slow"));
    let took = start.elapsed();
    assert_eq!(r.status, 504);
    assert!(took >= Duration::from_millis(450), "{took:?}");
    assert!(took < Duration::from_millis(2500), "{took:?}");
}

#[test]
fn chunked_response_with_trailers_is_passed_through() {
    const BODY: &[u8] = b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Sum: 42\r\n\r\n";
    let up = fixed(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Sum: 42\r\n\r\n",
    );
    let s = front(up.port, "");
    let raw = s.raw(&get_close("/c"));
    let (head, body) = split_head(&raw);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.contains("Transfer-Encoding: chunked\r\n"), "{head}");
    assert!(!has_header(&head, "trailer"), "hop-by-hop: {head}");
    assert_eq!(body, BODY, "{:?}", String::from_utf8_lossy(&body));

    // An HTTP/1.0 client gets it de-chunked, delimited by the close.
    let raw = s.raw(b"GET /c HTTP/1.0\r\n\r\n");
    let (head, body) = split_head(&raw);
    assert!(!has_header(&head, "transfer-encoding"), "{head}");
    assert_eq!(body, b"hello world");
}

#[test]
fn interim_1xx_is_dropped() {
    let up = fixed(
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\nX-Final: yes\r\n\r\nok",
    );
    let s = front(up.port, "");
    let raw = s.raw(&get_close("/i"));
    let text = String::from_utf8_lossy(&raw);
    assert!(text.starts_with("HTTP/1.1 201"), "{text}");
    assert!(!text.contains(" 100 ") && !text.contains(" 103 "), "{text}");
    let (head, body) = split_head(&raw);
    assert!(head.contains("X-Final: yes"), "{head}");
    assert_eq!(body, b"ok");
}

#[test]
fn close_delimited_response_reaches_the_client_chunked() {
    let payload: Vec<u8> = (0..200_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    let expected = payload.clone();
    let up = Upstream::start(move |_, s| {
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n");
        let _ = s.write_all(&payload);
        false
    });
    let s = front(up.port, "");
    let mut stream = s.connect();
    stream.write_all(&get("/u")).expect("send");
    let r = read_response(&mut stream, false);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("transfer-encoding"), Some("chunked"));
    assert_eq!(r.header("content-length"), None);
    assert_eq!(r.body, expected);
    // The client connection survives: the chunked framing ended the body.
    stream.write_all(&get_close("/u")).expect("send");
    assert_eq!(read_response(&mut stream, false).body, expected);
}

#[test]
fn chunked_request_body_reaches_the_upstream_chunked() {
    let up = fixed(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    let s = front(up.port, "");
    let pieces: [&[u8]; 3] = [b"first piece,", &[b'x'; 5000], b"\r\n\0last"];
    let mut request =
        b"POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
            .to_vec();
    for piece in pieces {
        request.extend_from_slice(format!("{:X};name=v\r\n", piece.len()).as_bytes());
        request.extend_from_slice(piece);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\nX-Trailer: t\r\n\r\n");
    let r = s.send(&request);
    assert_eq!(r.status, 200);
    let seen = up.next_seen();
    assert_eq!(seen.values("transfer-encoding"), ["chunked"]);
    assert!(seen.values("content-length").is_empty());
    assert_eq!(dechunk(&seen.body), pieces.concat());
}

/// Decodes a complete chunked body, checking its framing strictly.
fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let eol = find(raw, b"\r\n").expect("size line");
        let line = std::str::from_utf8(&raw[..eol]).expect("ASCII size line");
        let size = usize::from_str_radix(line.split(';').next().expect("size"), 16)
            .unwrap_or_else(|_| panic!("bad size line {line:?}"));
        raw = &raw[eol + 2..];
        if size == 0 {
            assert_eq!(raw, b"\r\n", "last chunk, no trailers");
            return out;
        }
        out.extend_from_slice(&raw[..size]);
        assert_eq!(&raw[size..size + 2], b"\r\n");
        raw = &raw[size + 2..];
    }
}

#[test]
fn hop_by_hop_headers_are_stripped_both_ways() {
    let up = fixed(
        b"HTTP/1.1 200 OK\r\nConnection: keep-alive, X-Up-Secret\r\nX-Up-Secret: 1\r\nKeep-Alive: timeout=5\r\nUpgrade: h2c\r\nProxy-Connection: keep-alive\r\nProxy-Authenticate: Basic realm=x\r\nX-Up-Keep: yes\r\nContent-Length: 2\r\n\r\nok",
    );
    let s = front(up.port, "");
    let raw = s.raw(
        b"GET /h HTTP/1.1\r\nHost: x\r\nConnection: close, X-Secret\r\nX-Secret: s\r\nKeep-Alive: 300\r\nTE: trailers\r\nUpgrade: websocket\r\nProxy-Connection: keep-alive\r\nProxy-Authorization: Basic eA==\r\nProxy-Authenticate: x\r\nTrailer: X-T\r\nX-Keep: 1\r\n\r\n",
    );
    let seen = up.next_seen();
    for name in [
        "x-secret",
        "keep-alive",
        "te",
        "upgrade",
        "proxy-connection",
        "proxy-authorization",
        "proxy-authenticate",
        "trailer",
    ] {
        assert!(
            seen.values(name).is_empty(),
            "{name} sent upstream:\n{}",
            seen.head
        );
    }
    assert_eq!(seen.values("connection"), ["keep-alive"]);
    assert_eq!(seen.values("x-keep"), ["1"]);

    let (head, body) = split_head(&raw);
    for name in [
        "x-up-secret",
        "keep-alive",
        "upgrade",
        "proxy-connection",
        "proxy-authenticate",
    ] {
        assert!(
            !has_header(&head, name),
            "{name} sent to the client:\n{head}"
        );
    }
    assert!(head.contains("X-Up-Keep: yes\r\n"), "{head}");
    assert!(head.contains("Connection: close\r\n"), "{head}");
    assert_eq!(body, b"ok");
}

/// SPEC §9.6: `Transfer_Encoding: chunked` framed by `Content-Length` here
/// but read as chunked by a lenient upstream would end client A's body
/// early and make the rest a request of its own, answered to client B on
/// the pooled connection. Headers with `_` are dropped, so B gets its own
/// answer and the upstream never sees such a header.
#[test]
fn underscore_headers_cannot_smuggle_a_request_through_the_pool() {
    let up = Upstream::lenient(|seen, s| {
        let body = format!("answer to {}", seen.request_line());
        let response = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        s.write_all(response.as_bytes()).is_ok()
    });
    let s = front(up.port, "");
    let smuggled = b"0\r\n\r\nGET /smuggled HTTP/1.1\r\nX-Ignore: x";
    let mut a = format!(
        "PUT /up/smuggle.txt HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer_Encoding: chunked\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        smuggled.len()
    )
    .into_bytes();
    a.extend_from_slice(smuggled);
    let ra = s.send(&a);
    assert_eq!(ra.status, 200, "{}", ra.text());
    let rb = s.send(&get_close("/victim"));
    assert_eq!(rb.status, 200);
    assert_eq!(rb.text(), "answer to GET /victim HTTP/1.1");
    assert_eq!(
        up.accepts(),
        1,
        "both requests went on one pooled connection"
    );
    for seen in [up.next_seen(), up.next_seen()] {
        assert!(
            !seen.head.contains('_'),
            "underscore header upstream:\n{}",
            seen.head
        );
    }
}

/// `$request_uri` is path and query as sent, also for an absolute-form
/// target (as nginx's), and so is the request line sent upstream.
#[test]
fn request_uri_of_an_absolute_form_target_is_path_and_query() {
    let up = fixed(b"HTTP/1.1 204 No Content\r\n\r\n");
    let s = front(up.port, "proxy_set_header X-Uri $request_uri;");
    let r =
        s.send(b"GET http://front.test/a/b?q=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert_eq!(r.status, 204);
    let seen = up.next_seen();
    assert_eq!(seen.request_line(), "GET /a/b?q=1 HTTP/1.1");
    assert_eq!(seen.values("x-uri"), ["/a/b?q=1"]);
}

#[test]
fn forwarded_headers_host_and_prefix_rewriting() {
    let up = fixed(b"HTTP/1.1 204 No Content\r\n\r\n");
    let s = front(up.port, "");
    let r = s.send(b"GET /api/x/y?q=1 HTTP/1.1\r\nHost: front.test\r\nX-Forwarded-For: 9.9.9.9\r\nConnection: close\r\n\r\n");
    assert_eq!(r.status, 204);
    let seen = up.next_seen();
    assert_eq!(seen.request_line(), "GET /v1/x/y?q=1 HTTP/1.1");
    assert_eq!(seen.values("host"), [format!("127.0.0.1:{}", up.port)]);
    assert_eq!(seen.values("x-forwarded-for"), ["9.9.9.9, 127.0.0.1"]);
    assert_eq!(seen.values("x-real-ip"), ["127.0.0.1"]);
    assert_eq!(seen.values("x-forwarded-proto"), ["http"]);
}

#[test]
fn connection_close_from_the_upstream_then_a_new_connection() {
    let up =
        fixed_then_close(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 3\r\n\r\none");
    let s = front(up.port, "");
    let mut stream = s.connect();
    for _ in 0..3 {
        stream.write_all(&get("/k")).expect("send");
        let r = read_response(&mut stream, false);
        assert_eq!(r.status, 200);
        assert_eq!(r.body, b"one");
        // The upstream's close is its own: the client keeps its connection.
        assert_eq!(r.header("connection"), Some("keep-alive"));
    }
    assert_eq!(up.accepts(), 3);
}

#[test]
fn upstream_connections_are_reused() {
    let up = fixed(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nreuse");
    let s = front(up.port, "");
    // Sequential requests, each on its own client connection.
    for _ in 0..10 {
        let r = s.send(&get_close("/r"));
        assert_eq!((r.status, r.body.as_slice()), (200, &b"reuse"[..]));
    }
    // And some on one client connection, with a chunked answer too.
    let mut stream = s.connect();
    for _ in 0..5 {
        stream.write_all(&get("/r")).expect("send");
        assert_eq!(read_response(&mut stream, false).status, 200);
    }
    assert_eq!(up.accepts(), 1);
}

#[test]
fn a_pooled_connection_closed_by_the_upstream_is_replaced() {
    // Answers once per connection, then closes it (without saying so).
    let up = fixed_then_close(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    let s = front(up.port, "");
    for i in 0..4 {
        let r = s.send(&get_close("/p"));
        assert_eq!(r.status, 200, "request {i}");
        // Let the close reach the proxy's idle connection (bounded).
        let deadline = Instant::now() + TIMEOUT;
        while up.closed.try_recv().is_err() && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(5));
        }
    }
    assert_eq!(up.accepts(), 4);
}

fn group_front(servers: &[(u16, u32)]) -> Server {
    let list: String = servers
        .iter()
        .map(|(port, weight)| format!("server 127.0.0.1:{port} weight={weight};\n"))
        .collect();
    let config = format!(
        r#"
proxy_connect_timeout 2s;
upstream pool {{
    {list}
}}
server {{
    listen 127.0.0.1:{{port}};
    location / {{ proxy_pass http://pool; }}
}}
"#
    );
    Server::start(&config, &[])
}

#[test]
fn failover_when_one_server_is_down() {
    let up = fixed(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nlive");
    let dead = refused_port();
    let s = group_front(&[(dead, 1), (up.port, 1)]);
    for i in 0..6 {
        let r = s.send(&get_close("/f"));
        assert_eq!((r.status, r.body.as_slice()), (200, &b"live"[..]), "{i}");
    }
    let seen: Vec<Seen> = (0..6).map(|_| up.next_seen()).collect();
    assert_eq!(seen.len(), 6);
    // Failover, then skipped: the live one's connection is reused.
    assert_eq!(up.accepts(), 1);
}

#[test]
fn all_servers_down_is_502() {
    let s = group_front(&[(refused_port(), 1), (refused_port(), 2)]);
    for _ in 0..3 {
        assert_eq!(s.send(&get_close("/d")).status, 502);
    }
    let direct = front(refused_port(), "");
    let r = direct.send(&get_close("/d"));
    assert_eq!(r.status, 502);
}

#[test]
fn a_502_after_a_failed_connect_keeps_the_client_connection() {
    // A connect that fails at once and one that fails later (the usual
    // case on loopback: EINPROGRESS, then an error) both answer 502 and,
    // for a request without a body, keep the client connection.
    let direct = front(refused_port(), "");
    let mut stream = direct.connect();
    stream.write_all(&get("/d")).expect("send");
    assert_eq!(read_response(&mut stream, false).status, 502);
    stream.write_all(&get_close("/d")).expect("send");
    assert_eq!(read_response(&mut stream, false).status, 502);
}

#[test]
fn weighted_round_robin_over_two_upstreams() {
    let a = fixed(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\na");
    let b = fixed(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nb");
    let s = group_front(&[(a.port, 3), (b.port, 1)]);
    let answers: String = (0..8).map(|_| s.send(&get_close("/w")).text()).collect();
    // nginx's smooth weighted round-robin.
    assert_eq!(answers, "aabaaaba");
}

#[test]
fn the_client_leaving_aborts_the_upstream_request() {
    let up = Upstream::start(|_, _| {
        // Never answers: waits for the proxy to give up (read times out
        // after TIMEOUT at worst).
        true
    });
    let s = front(up.port, "proxy_read_timeout 30s;");
    let mut stream = s.connect();
    stream.write_all(&get("/wait")).expect("send");
    up.next_seen();
    let start = Instant::now();
    drop(stream);
    up.closed
        .recv_timeout(Duration::from_secs(5))
        .expect("the upstream connection was closed after the client left");
    assert!(start.elapsed() < Duration::from_secs(5));
}

#[test]
fn the_client_leaving_mid_body_aborts_the_upstream_request() {
    let up = Upstream::start(|_, _| true);
    let s = front(up.port, "proxy_read_timeout 30s;");
    let mut stream = s.connect();
    stream
        .write_all(b"POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\npartial")
        .expect("send");
    // The head reached the upstream; the body never will.
    let deadline = Instant::now() + TIMEOUT;
    while up.accepts() == 0 && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(up.accepts(), 1);
    let _ = stream.shutdown(Shutdown::Both);
    drop(stream);
    up.closed
        .recv_timeout(Duration::from_secs(5))
        .expect("the upstream connection was closed after the client left");
}

/// A one-connection upstream that `handler` drives by hand (bytes as
/// they come, not whole requests). The accept waits at most `TIMEOUT`.
fn raw_upstream(handler: impl FnOnce(TcpStream) + Send + 'static) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind upstream");
    let port = listener.local_addr().expect("local addr").port();
    listener.set_nonblocking(true).expect("nonblocking");
    thread::spawn(move || {
        let deadline = Instant::now() + TIMEOUT;
        while Instant::now() < deadline {
            match listener.accept() {
                Ok((stream, _)) => {
                    stream.set_nonblocking(false).expect("blocking");
                    stream.set_read_timeout(Some(TIMEOUT)).expect("timeout");
                    return handler(stream);
                }
                Err(_) => thread::sleep(Duration::from_millis(5)),
            }
        }
    });
    port
}

/// Reads from `stream` until `needle` has arrived (bounded by its timeout).
fn read_until(stream: &mut TcpStream, needle: &[u8]) -> Vec<u8> {
    let mut buf = Vec::new();
    while find(&buf, needle).is_none() {
        if fill(stream, &mut buf).is_none() {
            panic!(
                "closed before {:?}: {:?}",
                String::from_utf8_lossy(needle),
                String::from_utf8_lossy(&buf)
            );
        }
    }
    buf
}

/// The upstream answers as soon as it has the head (as an upstream that
/// refuses a body may) and keeps its body open; then the client's body
/// goes wrong with `bad`.
fn body_error_after_response_started(bad: &[u8]) {
    let port = raw_upstream(|mut s| {
        read_until(&mut s, b"\r\n\r\n");
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello");
        let mut sink = Vec::new();
        while fill(&mut s, &mut sink).is_some() {}
    });
    let s = front(port, "client_max_body_size 100;");
    let mut stream = s.connect();
    stream
        .write_all(
            b"POST /e HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n",
        )
        .expect("send");
    let mut got = read_until(&mut stream, b"hello");
    let _ = stream.write_all(bad);
    got.extend(read_to_close(&mut stream));
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    // The response already began: the only way to tell the client is to
    // close, never a second response inside the first one's body.
    assert_eq!(
        text.matches("HTTP/1.1").count(),
        1,
        "a second response: {text}"
    );
}

#[test]
fn client_body_over_the_limit_after_the_response_started_closes() {
    let mut bad = b"64\r\n".to_vec();
    bad.extend_from_slice(&[b'y'; 100]);
    bad.extend_from_slice(b"\r\n0\r\n\r\n");
    body_error_after_response_started(&bad);
}

#[test]
fn a_chunk_announced_over_the_limit_is_refused_before_its_data() {
    // The upstream never answers: only the front can end this exchange.
    let port = raw_upstream(|mut s| {
        let mut sink = Vec::new();
        while fill(&mut s, &mut sink).is_some() {}
    });
    let s = front(port, "client_max_body_size 100;");
    let mut stream = s.connect();
    // 0x1000 bytes announced, 3 sent; the client then waits.
    stream
        .write_all(b"POST /e HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1000\r\nabc")
        .expect("send");
    let got = read_until(&mut stream, b"\r\n\r\n");
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
}

#[test]
fn malformed_client_body_after_the_response_started_closes() {
    body_error_after_response_started(b"zz\r\nyy\r\n0\r\n\r\n");
}

#[test]
fn a_pooled_connection_that_dies_on_reuse_is_retried_once() {
    // Answers the first request of each connection; at the second, closes
    // without a word (the race an upstream's idle-timeout close can win).
    let served = std::sync::Mutex::new(std::collections::HashSet::new());
    let up = Upstream::start(move |_, s| {
        let peer = s.peer_addr().expect("peer");
        if !served.lock().expect("lock").insert(peer) {
            return false;
        }
        s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            .is_ok()
    });
    let s = front(up.port, "");
    assert_eq!(s.send(&get_close("/first")).status, 200);
    // The pooled connection looks alive, is reused, and dies before any
    // answer: the request goes again on a fresh connection.
    let r = s.send(&get_close("/second"));
    assert_eq!((r.status, r.body.as_slice()), (200, &b"ok"[..]));
    assert_eq!(up.accepts(), 2);
    let lines: Vec<String> = (0..3)
        .map(|_| up.next_seen().request_line().to_owned())
        .collect();
    assert_eq!(
        lines,
        [
            "GET /first HTTP/1.1",
            "GET /second HTTP/1.1",
            "GET /second HTTP/1.1"
        ]
    );
}

#[test]
fn a_body_cut_short_by_the_upstream_closes_the_client_connection() {
    let up = fixed_then_close(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly part");
    let s = front(up.port, "");
    let mut stream = s.connect();
    stream.write_all(&get("/short")).expect("send");
    let raw = read_to_close(&mut stream);
    let (head, body) = split_head(&raw);
    assert!(head.contains("Content-Length: 100\r\n"), "{head}");
    assert_eq!(body, b"only part");
}

/// SPEC §9.6: a chunked upstream body that stops before its last chunk,
/// by a close or by a reset, reaches the client without the last chunk,
/// and the client's connection closes: never a valid end.
#[test]
fn a_chunked_body_cut_short_by_the_upstream_has_no_last_chunk() {
    for reset in [false, true] {
        let port = raw_upstream(move |mut s| {
            read_until(&mut s, b"\r\n\r\n");
            let _ = s.write_all(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n",
            );
            if reset {
                // SO_LINGER 0: close sends a reset, as a killed process's
                // socket may.
                let linger = libc::linger {
                    l_onoff: 1,
                    l_linger: 0,
                };
                // SAFETY: setsockopt on a socket we own, with a valid struct.
                unsafe {
                    libc::setsockopt(
                        std::os::fd::AsRawFd::as_raw_fd(&s),
                        libc::SOL_SOCKET,
                        libc::SO_LINGER,
                        (&linger as *const libc::linger).cast(),
                        std::mem::size_of::<libc::linger>() as libc::socklen_t,
                    );
                }
            }
        });
        let s = front(port, "");
        let mut stream = s.connect();
        stream.write_all(&get("/cut")).expect("send");
        let raw = read_to_close(&mut stream);
        let (head, body) = split_head(&raw);
        assert!(head.contains("Transfer-Encoding: chunked\r\n"), "{head}");
        let body = String::from_utf8_lossy(&body);
        assert!(body.contains("hello"), "reset {reset}: {body:?}");
        assert!(
            !body.contains("\r\n0\r\n"),
            "reset {reset}: a last chunk: {body:?}"
        );
        assert!(!body.starts_with("0\r\n"), "reset {reset}: {body:?}");
    }
}

#[test]
fn expect_100_continue_is_answered_by_the_proxy() {
    let up = fixed(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    let s = front(up.port, "");
    let mut stream = s.connect();
    stream
        .write_all(
            b"POST /e HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n",
        )
        .expect("send");
    let interim = read_until(&mut stream, b"\r\n\r\n");
    assert_eq!(interim, b"HTTP/1.1 100 Continue\r\n\r\n");
    stream.write_all(b"hello").expect("send");
    let r = read_response(&mut stream, false);
    assert_eq!((r.status, r.body.as_slice()), (200, &b"ok"[..]));
    let seen = up.next_seen();
    assert!(seen.values("expect").is_empty(), "{}", seen.head);
    assert_eq!(seen.body, b"hello");
}

#[test]
fn http_1_0_client_through_the_proxy() {
    let up = fixed(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    let s = front(up.port, "");
    let raw = s.raw(b"GET /old HTTP/1.0\r\n\r\n");
    let (head, body) = split_head(&raw);
    assert!(head.contains("Connection: close\r\n"), "{head}");
    assert_eq!(body, b"ok");
    // The upstream still speaks HTTP/1.1 with the proxy.
    assert!(up.next_seen().request_line().ends_with("HTTP/1.1"));
}

// --- every method (SPEC §9.3) ----------------------------------------------------

/// An upstream that answers every request with its request line.
fn echo_line() -> Upstream {
    Upstream::start(|seen, s| {
        let body = seen.request_line().to_string();
        let response = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        s.write_all(response.as_bytes()).is_ok()
    })
}

#[test]
fn every_method_token_is_forwarded_despite_server_methods() {
    let up = echo_line();
    // `front` sets a server-level `methods`: it does not restrict a
    // proxied location.
    let s = front(up.port, "");
    for method in ["PATCH", "OPTIONS", "BREW", "get", "PROPFIND", "DELETE"] {
        let r = s.send(
            format!("{method} /m HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi")
                .as_bytes(),
        );
        assert_eq!(r.status, 200, "{method}");
        assert_eq!(r.text(), format!("{method} /m HTTP/1.1"));
        let seen = up.next_seen();
        assert_eq!(seen.body, b"hi", "{method}");
    }
}

#[test]
fn a_proxied_location_with_methods_answers_405_with_allow() {
    let up = echo_line();
    let config = format!(
        r#"
server {{
    listen 127.0.0.1:{{port}};
    methods GET;
    location / {{ methods GET PATCH BREW; proxy_pass http://127.0.0.1:{}; }}
}}
"#,
        up.port
    );
    let s = Server::start(&config, &[]);
    for method in ["PATCH", "BREW", "GET"] {
        let r = s.send(
            format!("{method} /x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        );
        assert_eq!(r.status, 200, "{method}");
    }
    for method in ["POST", "OPTIONS", "brew"] {
        let r = s.send(
            format!("{method} /x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        );
        assert_eq!(r.status, 405, "{method}");
        assert_eq!(r.header("allow"), Some("GET, PATCH, BREW"), "{method}");
    }
}

#[test]
fn an_absolute_form_target_with_userinfo_is_400() {
    let up = echo_line();
    let s = front(up.port, "");
    for target in ["http://user@front.test/", "http://u:p@front.test:80/a?q"] {
        let r = s.send(
            format!("GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        );
        assert_eq!(r.status, 400, "{target}");
    }
    let r = s.send(b"GET http://front.test/ok HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert_eq!((r.status, r.text().as_str()), (200, "GET /ok HTTP/1.1"));
    assert_eq!(up.accepts(), 1);
}

// --- passive health and proxy_next_upstream (SPEC §9.3) ------------------------

/// A webserv proxying `/` to an `upstream pool` of `servers` (whole
/// `server` lines without `;`), with `extra` at server level.
fn pool_front(servers: &[String], extra: &str) -> Server {
    let list: String = servers.iter().map(|s| format!("    {s};\n")).collect();
    let config = format!(
        r#"
proxy_connect_timeout 2s;
upstream pool {{
{list}}}
server {{
    listen 127.0.0.1:{{port}};
    client_max_body_size 0;
    {extra}
    location / {{ proxy_pass http://pool; }}
}}
"#
    );
    Server::start(&config, &[])
}

/// An upstream that answers `status` with its port as the body.
fn answering(status: u16) -> Upstream {
    let port = Arc::new(AtomicUsize::new(0));
    let seen_port = Arc::clone(&port);
    let up = Upstream::start(move |_, s| {
        let body = seen_port.load(Ordering::SeqCst).to_string();
        let response = format!(
            "HTTP/1.1 {status} X\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        s.write_all(response.as_bytes()).is_ok()
    });
    port.store(usize::from(up.port), Ordering::SeqCst);
    up
}

/// An upstream that reads each request and closes without answering.
fn hanging_up() -> Upstream {
    Upstream::start(|_, _| false)
}

#[test]
fn next_upstream_on_a_listed_status_only() {
    let bad = answering(503);
    let good = answering(200);
    let servers = [
        format!("server 127.0.0.1:{}", bad.port),
        format!("server 127.0.0.1:{} max_fails=0", good.port),
    ];
    let s = pool_front(&servers, "proxy_next_upstream error timeout http_503;");
    for i in 0..4 {
        let r = s.send(&get_close("/n"));
        assert_eq!((r.status, r.text()), (200, good.port.to_string()), "{i}");
    }
    // The 503 counted as a failure: out for fail_timeout after one.
    assert_eq!(bad.accepts(), 1);
    // Not listed (the default): the 503 is relayed.
    let bad = answering(503);
    let good = answering(200);
    let servers = [
        format!("server 127.0.0.1:{}", bad.port),
        format!("server 127.0.0.1:{}", good.port),
    ];
    let s = pool_front(&servers, "");
    let statuses: Vec<u16> = (0..4).map(|_| s.send(&get_close("/n")).status).collect();
    assert_eq!(statuses, [503, 200, 503, 200]);
    // Every server answered 503: the last answer is relayed.
    let a = answering(503);
    let b = answering(503);
    let servers = [
        format!("server 127.0.0.1:{}", a.port),
        format!("server 127.0.0.1:{}", b.port),
    ];
    let s = pool_front(&servers, "proxy_next_upstream http_503;");
    assert_eq!(s.send(&get_close("/n")).status, 503);
}

#[test]
fn next_upstream_after_a_close_and_a_timeout() {
    let bad = hanging_up();
    let good = answering(200);
    let servers = [
        format!("server 127.0.0.1:{} max_fails=0", bad.port),
        format!("server 127.0.0.1:{}", good.port),
    ];
    let s = pool_front(&servers, "");
    for _ in 0..4 {
        assert_eq!(s.send(&get_close("/c")).status, 200);
    }
    assert_eq!(
        bad.accepts(),
        2,
        "max_fails=0: tried in its turn every time"
    );

    // A server that never answers: next after proxy_read_timeout.
    let silent = TcpListener::bind("127.0.0.1:0").expect("bind");
    let silent_port = silent.local_addr().expect("addr").port();
    let good = answering(200);
    let servers = [
        format!("server 127.0.0.1:{silent_port}"),
        format!("server 127.0.0.1:{}", good.port),
    ];
    let s = pool_front(&servers, "proxy_read_timeout 1s;");
    let started = Instant::now();
    let r = s.send(&get_close("/t"));
    assert_eq!((r.status, r.text()), (200, good.port.to_string()));
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );
    // proxy_next_upstream error: a timeout is 504.
    let s = pool_front(
        &servers,
        "proxy_read_timeout 1s; proxy_next_upstream error;",
    );
    let r = s.send(&get_close("/t"));
    assert_eq!(r.status, 504);
    drop(silent);
}

#[test]
fn next_upstream_off_answers_502_at_once() {
    let good = answering(200);
    let servers = [
        format!("server 127.0.0.1:{}", refused_port()),
        format!("server 127.0.0.1:{}", good.port),
    ];
    let s = pool_front(&servers, "proxy_next_upstream off;");
    let statuses: Vec<u16> = (0..2).map(|_| s.send(&get_close("/o")).status).collect();
    assert_eq!(statuses, [502, 200]);
}

#[test]
fn a_consumed_body_is_not_replayed_a_buffered_one_is() {
    let bad = hanging_up();
    let good = Upstream::start(|seen, s| {
        let body = format!("got {}", seen.body.len());
        let response = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        s.write_all(response.as_bytes()).is_ok()
    });
    let servers = [
        format!("server 127.0.0.1:{} max_fails=0", bad.port),
        format!("server 127.0.0.1:{}", good.port),
    ];
    let s = pool_front(&servers, "");
    let post = |len: usize| {
        let mut req = format!(
            "POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n"
        )
        .into_bytes();
        req.extend(std::iter::repeat_n(b'x', len));
        s.send(&req)
    };
    // Round-robin: the first request goes to `bad`, which closes; a small
    // body is still whole in the proxy and goes to `good`.
    let r = post(1000);
    assert_eq!((r.status, r.text().as_str()), (200, "got 1000"));
    assert_eq!(good.next_seen().body.len(), 1000);
    // `good`'s turn, then `bad`'s with a body larger than the proxy keeps.
    assert_eq!(post(10).status, 200);
    let _ = good.next_seen();
    let r = post(4 << 20);
    assert_eq!(r.status, 502);
    assert!(
        good.seen.recv_timeout(Duration::from_millis(300)).is_err(),
        "replayed"
    );
}

#[test]
fn max_fails_and_fail_timeout_and_backup() {
    let flaky = hanging_up();
    let good = answering(200);
    let spare = answering(200);
    let servers = [
        format!(
            "server 127.0.0.1:{} max_fails=2 fail_timeout=1s",
            flaky.port
        ),
        format!("server 127.0.0.1:{} max_fails=1 fail_timeout=1s", good.port),
        format!("server 127.0.0.1:{} backup", spare.port),
    ];
    let s = pool_front(&servers, "");
    for _ in 0..10 {
        let r = s.send(&get_close("/h"));
        assert_eq!((r.status, r.text()), (200, good.port.to_string()));
    }
    assert_eq!(flaky.accepts(), 2, "out after max_fails=2");
    assert_eq!(spare.accepts(), 0, "a backup waits while a primary is up");
    thread::sleep(Duration::from_millis(1100));
    for _ in 0..4 {
        assert_eq!(s.send(&get_close("/h")).status, 200);
    }
    assert_eq!(
        flaky.accepts(),
        4,
        "back after fail_timeout, out again after 2"
    );
    drop(good);
}

// --- upgrade tunnels (SPEC §9.3) -----------------------------------------------

const UPGRADE: &[u8] = b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

const SWITCH: &[u8] = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";

/// A masked WebSocket text frame (client to server), RFC 6455 §5.2.
fn client_frame(text: &[u8]) -> Vec<u8> {
    let mask = [1u8, 2, 3, 4];
    let mut frame = vec![0x81, 0x80 | text.len() as u8];
    frame.extend_from_slice(&mask);
    frame.extend(text.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    frame
}

/// An unmasked text frame (server to client).
fn server_frame(text: &[u8]) -> Vec<u8> {
    let mut frame = vec![0x81, text.len() as u8];
    frame.extend_from_slice(text);
    frame
}

/// Reads exactly `n` bytes (bounded by the stream's timeout).
fn read_n(stream: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    stream.read_exact(&mut buf).expect("read");
    buf
}

fn tunnel_front(port: u16, extra: &str) -> Server {
    Server::start(
        &format!(
            "server {{\n listen 127.0.0.1:{{port}};\n {extra}\n location / {{ proxy_pass http://127.0.0.1:{port}; }}\n}}\n"
        ),
        &[],
    )
}

#[test]
fn websocket_frames_both_ways_and_a_close_from_the_client() {
    let (tx, rx) = mpsc::channel();
    let port = raw_upstream(move |mut s| {
        let head = read_until(&mut s, b"\r\n\r\n");
        let _ = tx.send(String::from_utf8_lossy(&head).into_owned());
        s.write_all(SWITCH).expect("101");
        s.write_all(&server_frame(b"hello")).expect("hello");
        // Echo each masked frame back unmasked, until the client's end.
        let mut buf = Vec::new();
        loop {
            if fill(&mut s, &mut buf).is_none() {
                break;
            }
            while buf.len() >= 6 && buf.len() >= 6 + usize::from(buf[1] & 0x7f) {
                let len = usize::from(buf[1] & 0x7f);
                let mask = [buf[2], buf[3], buf[4], buf[5]];
                let text: Vec<u8> = buf[6..6 + len]
                    .iter()
                    .enumerate()
                    .map(|(i, b)| b ^ mask[i % 4])
                    .collect();
                s.write_all(&server_frame(&text)).expect("echo");
                buf.drain(..6 + len);
            }
        }
        // The client's half-close arrived; this side still talks.
        s.write_all(&server_frame(b"bye")).expect("bye");
    });
    let front = tunnel_front(port, "");
    let mut c = front.connect();
    // A frame right behind the request reaches the upstream too.
    let mut first = UPGRADE.to_vec();
    first.extend_from_slice(&client_frame(b"early"));
    c.write_all(&first).expect("send");
    let head = read_until(&mut c, b"\r\n\r\n");
    let (head, rest) = split_head(&head);
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    assert!(head.contains("Upgrade: websocket\r\n"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("connection: upgrade\r\n"),
        "{head}"
    );
    assert!(
        head.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"),
        "{head}"
    );
    let sent = rx.recv_timeout(TIMEOUT).expect("upstream got the request");
    assert!(sent.contains("\r\nUpgrade: websocket\r\n"), "{sent}");
    assert!(sent.contains("\r\nConnection: upgrade\r\n"), "{sent}");
    assert!(
        sent.contains("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"),
        "{sent}"
    );
    let mut got = rest;
    let want = [server_frame(b"hello"), server_frame(b"early")].concat();
    got.extend(read_n(&mut c, want.len() - got.len()));
    assert_eq!(got, want);
    for msg in [&b"ping"[..], b"a longer message", b"x"] {
        c.write_all(&client_frame(msg)).expect("frame");
        assert_eq!(read_n(&mut c, msg.len() + 2), server_frame(msg));
    }
    c.shutdown(Shutdown::Write).expect("half-close");
    assert_eq!(read_to_close(&mut c), server_frame(b"bye"));
}

#[test]
fn the_upstream_closing_ends_the_tunnel() {
    let port = raw_upstream(|mut s| {
        let _ = read_until(&mut s, b"\r\n\r\n");
        s.write_all(SWITCH).expect("101");
        s.write_all(b"any protocol at all").expect("bytes");
    });
    let front = tunnel_front(port, "");
    let mut c = front.connect();
    c.write_all(UPGRADE).expect("send");
    let raw = read_to_close(&mut c);
    let (head, body) = split_head(&raw);
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    assert_eq!(body, b"any protocol at all");
}

#[test]
fn an_idle_tunnel_closes_after_proxy_read_timeout() {
    let port = raw_upstream(|mut s| {
        let _ = read_until(&mut s, b"\r\n\r\n");
        s.write_all(SWITCH).expect("101");
        let mut buf = [0u8; 16];
        // Waits for the proxy to close (bounded by the read timeout).
        let _ = s.read(&mut buf);
    });
    let front = tunnel_front(port, "proxy_read_timeout 1s;");
    let mut c = front.connect();
    c.write_all(UPGRADE).expect("send");
    let started = Instant::now();
    let raw = read_to_close(&mut c);
    assert!(raw.starts_with(b"HTTP/1.1 101 "));
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(5),
        "{took:?}"
    );
}

#[test]
fn a_refused_upgrade_is_relayed_as_usual() {
    let up = fixed(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 2\r\n\r\nno");
    let s = tunnel_front(up.port, "");
    let r = s.send(UPGRADE);
    assert_eq!((r.status, r.text().as_str()), (400, "no"));
    let seen = up.next_seen();
    assert_eq!(seen.values("upgrade"), ["websocket"]);
    assert_eq!(seen.values("connection"), ["upgrade"]);
}

#[test]
fn a_50_mib_tunnel_stream_to_a_slow_reader_keeps_memory_bounded() {
    const SIZE: usize = 50 * 1024 * 1024;
    let port = raw_upstream(|mut s| {
        let _ = read_until(&mut s, b"\r\n\r\n");
        s.write_all(SWITCH).expect("101");
        let block: Vec<u8> = (0..251 * 1024).map(|i| (i % 251) as u8).collect();
        let mut sent = 0;
        while sent < SIZE {
            let n = block.len().min(SIZE - sent);
            if s.write_all(&block[..n]).is_err() {
                return;
            }
            sent += n;
        }
    });
    let front = tunnel_front(port, "");
    let mut c = front.connect();
    c.write_all(UPGRADE).expect("send");
    let head = read_until(&mut c, b"\r\n\r\n");
    let (_, rest) = split_head(&head);
    check_pattern(&rest, 0);
    let mut received = rest.len();
    let mut buf = vec![0u8; 32 * 1024];
    let mut max_rss = 0u64;
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut reads = 0u64;
    while received < SIZE {
        assert!(Instant::now() < deadline, "took too long: {received} bytes");
        let n = c.read(&mut buf).expect("read");
        assert!(n > 0, "closed after {received} bytes");
        check_pattern(&buf[..n], received);
        received += n;
        reads += 1;
        if reads.is_multiple_of(64) {
            max_rss = max_rss.max(rss_kib(front.pid()));
            thread::sleep(Duration::from_millis(10));
        }
    }
    assert_eq!(received, SIZE);
    assert!(max_rss < 64 * 1024, "front VmRSS reached {max_rss} KiB");
}

// --- balancing policies (SPEC §9.3) --------------------------------------------

#[test]
fn least_conn_sends_around_a_slow_server() {
    let slow = Upstream::start(|_, s| {
        thread::sleep(Duration::from_millis(1500));
        s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nslow")
            .is_ok()
    });
    let fast = fixed(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nfast");
    let servers = [
        format!("server 127.0.0.1:{}", slow.port),
        format!("server 127.0.0.1:{}", fast.port),
    ];
    let list: String = servers.iter().map(|s| format!("    {s};\n")).collect();
    let config = format!(
        "upstream pool {{\n    least_conn;\n{list}}}\nserver {{\n    listen 127.0.0.1:{{port}};\n    location / {{ proxy_pass http://pool; }}\n}}\n"
    );
    let s = Arc::new(Server::start(&config, &[]));
    // Idle servers tie: round-robin gives the first request to `slow`.
    let background = {
        let s = Arc::clone(&s);
        thread::spawn(move || s.send(&get_close("/1")).text())
    };
    let deadline = Instant::now() + TIMEOUT;
    while slow.accepts() == 0 && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(5));
    }
    let answers: Vec<String> = (0..6).map(|_| s.send(&get_close("/n")).text()).collect();
    assert!(answers.iter().all(|a| a == "fast"), "{answers:?}");
    assert_eq!(background.join().expect("slow request"), "slow");
}

#[test]
fn ip_hash_keeps_a_client_on_one_server() {
    let ups: Vec<Upstream> = (0..3).map(|_| answering(200)).collect();
    let list: String = ups
        .iter()
        .map(|u| format!("    server 127.0.0.1:{};\n", u.port))
        .collect();
    let config = format!(
        "upstream pool {{\n    ip_hash;\n{list}}}\nserver {{\n    listen 127.0.0.1:{{port}};\n    location / {{ proxy_pass http://pool; }}\n}}\n"
    );
    let s = Server::start(&config, &[]);
    let answers: std::collections::HashSet<String> =
        (0..9).map(|_| s.send(&get_close("/i")).text()).collect();
    assert_eq!(answers.len(), 1, "{answers:?}");
}
