//! Request bodies against the real binary (SPEC §4 upload, PUT, POST and
//! DELETE rows, §5 body rows, §7): multipart and raw POST, PUT, DELETE,
//! chunked and length framing, limits, aborted uploads, keep-alive and
//! pipelining, `Expect: 100-continue`, large bodies. Every check looks at
//! what matters to a user: the status, the headers and the bytes on disk.

mod common;

use std::fs;
use std::io::Write;
use std::net::TcpStream;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use common::{read_response, read_to_close, Response, Server, TIMEOUT};

const CONFIG: &str = r#"
server {
    listen 127.0.0.1:{port};
    server_name localhost;
    root {dir}/www;
    methods GET HEAD DELETE;
    client_max_body_size 20m;

    location /uploads/ {
        alias {dir}/store/;
        upload_store {dir}/store;
        methods GET HEAD POST PUT DELETE;
    }
    location /small/ {
        alias {dir}/small/;
        upload_store {dir}/small;
        methods GET POST PUT DELETE;
        client_max_body_size 100;
    }
}
"#;

const BOUNDARY: &str = "XyZboundary42";

/// A server with an empty `store` (20 MiB limit) and `small` (100 bytes),
/// and a file `secret` next to them that nothing may reach.
fn server() -> Server {
    let s = Server::start(
        CONFIG,
        &[("www/index.html", b"home"), ("secret", b"top secret")],
    );
    fs::create_dir_all(s.path("store")).expect("mkdir store");
    fs::create_dir_all(s.path("small")).expect("mkdir small");
    s
}

/// Every name in `dir`, hidden ones too, sorted.
fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Polls until `dir` lists exactly `want`, or fails after a bounded wait.
fn wait_listing(dir: &Path, want: &[&str]) {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let names = listing(dir);
        if names == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{} holds {names:?}, want {want:?}",
            dir.display()
        );
        thread::sleep(Duration::from_millis(20));
    }
}

fn has_temp_file(dir: &Path) -> bool {
    listing(dir)
        .iter()
        .any(|n| n.starts_with(".webserv-") && n.ends_with(".part"))
}

/// Deterministic pseudo-random bytes (xorshift64*).
fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Bytes that try to confuse a multipart parser: CRLFs, dashes, every
/// prefix of the delimiter, the boundary without its CRLF, and all 256
/// byte values.
fn tricky_bytes() -> Vec<u8> {
    let mut data = Vec::new();
    data.extend_from_slice(b"\r\n\r\n--\r\n--\r\n-");
    let delimiter = format!("\r\n--{BOUNDARY}");
    for k in 1..delimiter.len() {
        data.extend_from_slice(&delimiter.as_bytes()[..k]);
        data.push(b'x');
    }
    data.extend_from_slice(format!("--{BOUNDARY}--").as_bytes());
    data.extend_from_slice(format!("\n--{BOUNDARY}\r\n").as_bytes());
    data.extend((0..=255u8).collect::<Vec<_>>());
    data.extend_from_slice(b"\r\n--");
    data.extend_from_slice(&delimiter.as_bytes()[..delimiter.len() - 1]);
    data
}

/// One multipart part: `(field name, file name or None for a plain field,
/// content)`.
type Part<'a> = (&'a str, Option<&'a str>, &'a [u8]);

fn multipart_body(parts: &[Part]) -> Vec<u8> {
    let mut body = Vec::new();
    for (name, filename, content) in parts {
        body.extend_from_slice(format!("--{BOUNDARY}\r\n").as_bytes());
        let disposition = match filename {
            Some(f) => format!("form-data; name=\"{name}\"; filename=\"{f}\""),
            None => format!("form-data; name=\"{name}\""),
        };
        body.extend_from_slice(format!("Content-Disposition: {disposition}\r\n").as_bytes());
        if filename.is_some() {
            body.extend_from_slice(b"Content-Type: application/octet-stream\r\n");
        }
        body.extend_from_slice(b"\r\n");
        body.extend_from_slice(content);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    body
}

fn request(method: &str, path: &str, headers: &str, body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\n{headers}Content-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

fn post_multipart(s: &Server, path: &str, parts: &[Part]) -> Response {
    let body = multipart_body(parts);
    let headers =
        format!("Content-Type: multipart/form-data; boundary={BOUNDARY}\r\nConnection: close\r\n");
    s.send(&request("POST", path, &headers, &body))
}

fn put(s: &Server, path: &str, body: &[u8]) -> Response {
    s.send(&request("PUT", path, "Connection: close\r\n", body))
}

fn delete(s: &Server, path: &str) -> Response {
    s.send(
        format!("DELETE {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    )
}

/// Chunked encoding of `data` in chunks of growing, uneven sizes.
fn chunked(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = data;
    let mut size = 1;
    while !rest.is_empty() {
        let n = size.min(rest.len());
        out.extend_from_slice(format!("{n:x}\r\n").as_bytes());
        out.extend_from_slice(&rest[..n]);
        out.extend_from_slice(b"\r\n");
        rest = &rest[n..];
        size = size * 3 + 1;
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

/// Writes `bytes` one at a time, each in its own segment.
fn write_bytewise(stream: &mut TcpStream, bytes: &[u8]) {
    stream.set_nodelay(true).expect("nodelay");
    for b in bytes {
        stream
            .write_all(std::slice::from_ref(b))
            .expect("send a byte");
    }
}

fn assert_created_at(r: &Response, location: &str) {
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.header("location"), Some(location), "{:?}", r.headers);
}

// --- POST multipart ------------------------------------------------------------

#[test]
fn multipart_one_file_is_stored_byte_identical() {
    let s = server();
    let data = tricky_bytes();
    let r = post_multipart(&s, "/uploads/", &[("file", Some("tricky.bin"), &data)]);
    assert_created_at(&r, "/uploads/tricky.bin");
    assert!(r.text().contains("tricky.bin"), "{}", r.text());
    assert_eq!(listing(&s.path("store")), ["tricky.bin"]);
    assert_eq!(fs::read(s.path("store/tricky.bin")).unwrap(), data);
    let back = s.get("/uploads/tricky.bin");
    assert_eq!(back.status, 200);
    assert_eq!(back.body, data);
}

#[test]
fn multipart_several_files_and_a_field() {
    let s = server();
    let one = pseudo_random(3000, 1);
    let two = tricky_bytes();
    let r = post_multipart(
        &s,
        "/uploads/",
        &[
            ("first", Some("one.bin"), &one),
            ("note", None, b"just a field, not a file"),
            ("second", Some("two.dat"), &two),
            ("empty", Some("empty.txt"), b""),
        ],
    );
    assert_created_at(&r, "/uploads/one.bin");
    let page = r.text();
    for name in ["one.bin", "two.dat", "empty.txt", "note"] {
        assert!(page.contains(name), "{name} missing from {page}");
    }
    assert_eq!(
        listing(&s.path("store")),
        ["empty.txt", "one.bin", "two.dat"]
    );
    assert_eq!(fs::read(s.path("store/one.bin")).unwrap(), one);
    assert_eq!(fs::read(s.path("store/two.dat")).unwrap(), two);
    assert_eq!(fs::read(s.path("store/empty.txt")).unwrap(), b"");
}

#[test]
fn multipart_same_name_twice_keeps_both() {
    let s = server();
    let r = post_multipart(&s, "/uploads/", &[("f", Some("a.txt"), b"first")]);
    assert_created_at(&r, "/uploads/a.txt");
    let r = post_multipart(&s, "/uploads/", &[("f", Some("a.txt"), b"second")]);
    assert_created_at(&r, "/uploads/a-1.txt");
    // Twice in one request, too.
    let r = post_multipart(
        &s,
        "/uploads/",
        &[
            ("f", Some("a.txt"), b"third"),
            ("g", Some("a.txt"), b"fourth"),
        ],
    );
    assert_created_at(&r, "/uploads/a-2.txt");
    assert_eq!(
        listing(&s.path("store")),
        ["a-1.txt", "a-2.txt", "a-3.txt", "a.txt"]
    );
    assert_eq!(fs::read(s.path("store/a.txt")).unwrap(), b"first");
    assert_eq!(fs::read(s.path("store/a-1.txt")).unwrap(), b"second");
    assert_eq!(fs::read(s.path("store/a-2.txt")).unwrap(), b"third");
    assert_eq!(fs::read(s.path("store/a-3.txt")).unwrap(), b"fourth");
}

#[test]
fn multipart_file_names_stay_inside_the_store() {
    let s = server();
    let cases: &[(&str, &str)] = &[
        ("../escape1.txt", "escape1.txt"),
        ("..\\\\escape2.txt", "escape2.txt"),
        ("../../../../../../tmp/escape3.txt", "escape3.txt"),
        ("/etc/escape4.txt", "escape4.txt"),
        ("C:\\\\Windows\\\\escape5.txt", "escape5.txt"),
        ("..\\\\..\\\\secret", "secret"),
        ("..\\escape6.txt", "escape6.txt"),
    ];
    for (sent, stored) in cases {
        let content = format!("content of {sent}");
        let r = post_multipart(&s, "/uploads/", &[("f", Some(sent), content.as_bytes())]);
        assert_created_at(&r, &format!("/uploads/{stored}"));
        assert_eq!(
            fs::read(s.path("store").join(stored)).unwrap(),
            content.as_bytes(),
            "{sent}"
        );
    }
    // Nothing appeared next to the store, and the secret is intact.
    assert_eq!(
        listing(s.dir.path()),
        ["secret", "small", "store", "test.conf", "www"]
    );
    assert_eq!(fs::read(s.path("secret")).unwrap(), b"top secret");
    assert_eq!(listing(&s.path("store")).len(), cases.len());
}

/// A client cannot claim the name of a temporary file: it would be stored,
/// then hidden from listings and refused to DELETE.
#[test]
fn multipart_file_name_with_the_reserved_prefix_is_renamed() {
    let s = server();
    let r = post_multipart(
        &s,
        "/uploads/",
        &[("f", Some(".webserv-1-99.part"), b"claimed")],
    );
    assert_created_at(&r, "/uploads/webserv-1-99.part");
    assert_eq!(listing(&s.path("store")), ["webserv-1-99.part"]);
    assert_eq!(delete(&s, "/uploads/webserv-1-99.part").status, 204);
    assert_eq!(listing(&s.path("store")), Vec::<String>::new());
}

/// Another client's upload in progress cannot be read by its (guessable)
/// temporary name.
#[test]
fn an_upload_in_progress_cannot_be_read() {
    let s = server();
    let mut uploader = s.connect();
    uploader
        .write_all(
            b"PUT /uploads/big.bin HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1000\r\n\r\npartial-secret",
        )
        .expect("send");
    let store = s.path("store");
    let deadline = Instant::now() + TIMEOUT;
    let temp = loop {
        if let Some(name) = listing(&store)
            .into_iter()
            .find(|n| n.starts_with(".webserv-"))
        {
            if fs::metadata(store.join(&name)).map_or(0, |m| m.len()) > 0 {
                break name;
            }
        }
        assert!(Instant::now() < deadline, "no temporary file appeared");
        thread::sleep(Duration::from_millis(10));
    };
    for method in ["GET", "HEAD"] {
        let r = s.send(
            format!(
                "{method} /uploads/{temp} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
            )
            .as_bytes(),
        );
        assert_eq!(r.status, 403, "{method} {temp}");
        assert!(!r.text().contains("partial-secret"));
    }
    drop(uploader);
    wait_listing(&store, &[]);
}

#[test]
fn multipart_name_needing_percent_encoding_round_trips() {
    let s = server();
    let r = post_multipart(&s, "/uploads/", &[("f", Some("my file é%#.txt"), b"odd")]);
    assert_created_at(&r, "/uploads/my%20file%20%C3%A9%25%23.txt");
    assert_eq!(fs::read(s.path("store/my file é%#.txt")).unwrap(), b"odd");
    let back = s.get("/uploads/my%20file%20%C3%A9%25%23.txt");
    assert_eq!((back.status, back.body.as_slice()), (200, &b"odd"[..]));
}

#[test]
fn malformed_or_truncated_multipart_is_400_and_stores_nothing() {
    let s = server();
    let whole = multipart_body(&[
        ("f", Some("a.txt"), b"complete"),
        ("g", Some("b.txt"), b"cut"),
    ]);
    // The Content-Length is honest, but the close delimiter never comes.
    let cut = &whole[..whole.len() - 30];
    let ct =
        format!("Content-Type: multipart/form-data; boundary={BOUNDARY}\r\nConnection: close\r\n");
    let r = s.send(&request("POST", "/uploads/", &ct, cut));
    assert_eq!(r.status, 400, "{}", r.text());
    // A delimiter followed by junk.
    let junk = format!("--{BOUNDARY}\r\n\r\ndata\r\n--{BOUNDARY}junk\r\n");
    let r = s.send(&request("POST", "/uploads/", &ct, junk.as_bytes()));
    assert_eq!(r.status, 400, "{}", r.text());
    // multipart/form-data without a boundary.
    let r = s.send(&request(
        "POST",
        "/uploads/",
        "Content-Type: multipart/form-data\r\nConnection: close\r\n",
        b"--x\r\n\r\n--x--\r\n",
    ));
    assert_eq!(r.status, 400, "{}", r.text());
    wait_listing(&s.path("store"), &[]);
}

// --- POST raw ------------------------------------------------------------------

#[test]
fn raw_post_gets_a_new_name_and_location() {
    let s = server();
    let data = pseudo_random(5000, 7);
    let r = s.send(&request(
        "POST",
        "/uploads/",
        "Content-Type: application/octet-stream\r\nConnection: close\r\n",
        &data,
    ));
    assert_eq!(r.status, 201, "{}", r.text());
    let location = r.header("location").expect("Location").to_owned();
    assert!(location.starts_with("/uploads/"), "{location}");
    let names = listing(&s.path("store"));
    assert_eq!(names.len(), 1, "{names:?}");
    assert_eq!(location, format!("/uploads/{}", names[0]));
    let back = s.get(&location);
    assert_eq!(back.status, 200);
    assert_eq!(back.body, data);

    // A second one never takes the first one's name.
    let r = s.send(&request(
        "POST",
        "/uploads/",
        "Connection: close\r\n",
        b"two",
    ));
    assert_eq!(r.status, 201);
    assert_ne!(r.header("location"), Some(location.as_str()));
    assert_eq!(listing(&s.path("store")).len(), 2);
    assert_eq!(s.get(r.header("location").unwrap()).body, b"two");
}

#[test]
fn raw_post_of_text_keeps_its_type() {
    let s = server();
    let r = s.send(&request(
        "POST",
        "/uploads/",
        "Content-Type: text/plain; charset=utf-8\r\nConnection: close\r\n",
        b"plain text",
    ));
    assert_eq!(r.status, 201, "{}", r.text());
    let location = r.header("location").expect("Location").to_owned();
    assert!(location.ends_with(".txt"), "{location}");
    let back = s.get(&location);
    assert_eq!(back.body, b"plain text");
    assert!(
        back.header("content-type")
            .is_some_and(|t| t.starts_with("text/plain")),
        "{:?}",
        back.headers
    );
}

// --- PUT -----------------------------------------------------------------------

#[test]
fn put_creates_then_replaces() {
    let s = server();
    let r = put(&s, "/uploads/doc.txt", b"version one");
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(fs::read(s.path("store/doc.txt")).unwrap(), b"version one");
    let r = put(&s, "/uploads/doc.txt", b"v2");
    assert_eq!(r.status, 204);
    assert!(r.body.is_empty());
    assert_eq!(fs::read(s.path("store/doc.txt")).unwrap(), b"v2");
    assert_eq!(s.get("/uploads/doc.txt").body, b"v2");
    assert_eq!(listing(&s.path("store")), ["doc.txt"]);
}

#[test]
fn put_into_an_existing_subdirectory() {
    let s = server();
    fs::create_dir_all(s.path("store/sub")).unwrap();
    let r = put(&s, "/uploads/sub/x.bin", b"deep");
    assert_eq!(r.status, 201);
    assert_eq!(fs::read(s.path("store/sub/x.bin")).unwrap(), b"deep");
}

#[test]
fn put_into_a_missing_directory_or_onto_a_directory_is_409() {
    let s = server();
    let r = put(&s, "/uploads/missing/dir/x.txt", b"nowhere");
    assert_eq!(r.status, 409, "{}", r.text());
    fs::create_dir_all(s.path("store/adir")).unwrap();
    let r = put(&s, "/uploads/adir", b"onto a dir");
    assert_eq!(r.status, 409, "{}", r.text());
    assert!(s.path("store/adir").is_dir());
    wait_listing(&s.path("store"), &["adir"]);
    assert_eq!(listing(&s.path("store/adir")), Vec::<String>::new());
}

#[test]
fn put_with_dot_dot_cannot_escape() {
    let s = server();
    for path in [
        "/uploads/../secret",
        "/uploads/%2e%2e/secret",
        "/uploads/../../secret",
    ] {
        let r = put(&s, path, b"overwritten!");
        assert!(matches!(r.status, 400 | 404 | 405), "{path}: {}", r.status);
    }
    assert_eq!(fs::read(s.path("secret")).unwrap(), b"top secret");
    assert_eq!(listing(&s.path("store")), Vec::<String>::new());
}

// --- DELETE --------------------------------------------------------------------

#[test]
fn delete_removes_a_file_then_404() {
    let s = server();
    assert_eq!(put(&s, "/uploads/gone.txt", b"bye").status, 201);
    let r = delete(&s, "/uploads/gone.txt");
    assert_eq!(r.status, 204);
    assert!(r.body.is_empty());
    assert!(!s.path("store/gone.txt").exists());
    assert_eq!(delete(&s, "/uploads/gone.txt").status, 404);
    assert_eq!(delete(&s, "/uploads/never-was.txt").status, 404);
}

#[test]
fn delete_of_a_directory_is_403() {
    let s = server();
    fs::create_dir_all(s.path("store/dir")).unwrap();
    fs::write(s.path("store/dir/inner.txt"), b"inner").unwrap();
    fs::create_dir_all(s.path("store/emptydir")).unwrap();
    for path in [
        "/uploads/dir",
        "/uploads/dir/",
        "/uploads/emptydir",
        "/uploads/",
    ] {
        assert_eq!(delete(&s, path).status, 403, "{path}");
    }
    assert_eq!(fs::read(s.path("store/dir/inner.txt")).unwrap(), b"inner");
    assert!(s.path("store/emptydir").is_dir());
}

#[test]
fn delete_cannot_escape_the_store() {
    let s = server();
    let cases = [
        "/uploads/../secret",
        "/uploads/%2e%2e/secret",
        "/uploads/..%2fsecret",
        "/uploads/..%5csecret",
        "/uploads/../../secret",
        "/uploads/%2e%2e/%2e%2e/secret",
    ];
    for path in cases {
        let r = delete(&s, path);
        assert!(matches!(r.status, 400 | 404), "{path}: {}", r.status);
        assert_eq!(fs::read(s.path("secret")).unwrap(), b"top secret", "{path}");
    }
}

// --- chunked bodies ------------------------------------------------------------

#[test]
fn chunked_put_in_one_byte_writes_is_byte_identical() {
    let s = server();
    let data = tricky_bytes();
    let mut stream = s.connect();
    let mut bytes =
        b"PUT /uploads/bytewise.bin HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
            .to_vec();
    bytes.extend(chunked(&data));
    write_bytewise(&mut stream, &bytes);
    let r = read_response(&mut stream, false);
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(fs::read(s.path("store/bytewise.bin")).unwrap(), data);
}

#[test]
fn chunked_multipart_post_in_one_byte_writes_is_byte_identical() {
    let s = server();
    let one = tricky_bytes();
    let two = pseudo_random(700, 3);
    let body = multipart_body(&[("a", Some("one.bin"), &one), ("b", Some("two.bin"), &two)]);
    let mut bytes = format!(
        "POST /uploads/ HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\
         Content-Type: multipart/form-data; boundary={BOUNDARY}\r\nConnection: close\r\n\r\n"
    )
    .into_bytes();
    bytes.extend(chunked(&body));
    let mut stream = s.connect();
    write_bytewise(&mut stream, &bytes);
    let r = read_response(&mut stream, false);
    assert_created_at(&r, "/uploads/one.bin");
    assert_eq!(fs::read(s.path("store/one.bin")).unwrap(), one);
    assert_eq!(fs::read(s.path("store/two.bin")).unwrap(), two);
}

#[test]
fn chunked_body_with_extensions_and_trailers() {
    let s = server();
    let body = b"5;name=value\r\nhello\r\n6;a;b=\"c d\"\r\n world\r\n\
                 0;last=yes\r\nX-Checksum: abc\r\nX-Other: 1\r\n\r\n";
    let mut req =
        b"PUT /uploads/ext.txt HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n"
            .to_vec();
    req.extend_from_slice(body);
    // The same connection serves a GET afterwards: the trailers were
    // consumed exactly.
    req.extend_from_slice(
        b"GET /uploads/ext.txt HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    );
    let mut stream = s.connect();
    stream.write_all(&req).unwrap();
    let r = read_response(&mut stream, false);
    assert_eq!(r.status, 201, "{}", r.text());
    let r = read_response(&mut stream, false);
    assert_eq!((r.status, r.body.as_slice()), (200, &b"hello world"[..]));
    assert_eq!(fs::read(s.path("store/ext.txt")).unwrap(), b"hello world");
}

#[test]
fn malformed_chunked_upload_is_400_and_stores_nothing() {
    let s = server();
    let req =
        b"PUT /uploads/bad.txt HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n\
                5\r\nhello\r\nZZ\r\nmore\r\n0\r\n\r\n";
    let r = s.send(req);
    assert_eq!(r.status, 400);
    assert_eq!(r.header("connection"), Some("close"));
    wait_listing(&s.path("store"), &[]);
}

// --- limits --------------------------------------------------------------------

#[test]
fn declared_body_over_the_limit_is_413_and_stores_nothing() {
    let s = server();
    let data = vec![b'x'; 101];
    for (method, path) in [("PUT", "/small/big.txt"), ("POST", "/small/")] {
        let r = s.send(&request(method, path, "", &data));
        assert_eq!(r.status, 413, "{method}");
        assert_eq!(r.header("connection"), Some("close"), "{method}");
    }
    let body = multipart_body(&[("f", Some("big.txt"), &data)]);
    let ct = format!("Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n");
    assert_eq!(s.send(&request("POST", "/small/", &ct, &body)).status, 413);
    // Exactly at the limit is fine.
    assert_eq!(put(&s, "/small/fits.txt", &data[..100]).status, 201);
    wait_listing(&s.path("small"), &["fits.txt"]);
}

#[test]
fn chunked_body_over_the_limit_is_413_and_stores_nothing() {
    let s = server();
    let data = pseudo_random(250, 9);
    for (method, path, extra) in [
        ("PUT", "/small/big.bin", String::new()),
        ("POST", "/small/", String::new()),
        (
            "POST",
            "/small/",
            format!("Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n"),
        ),
    ] {
        let payload = if extra.is_empty() {
            data.clone()
        } else {
            multipart_body(&[("f", Some("big.bin"), &data)])
        };
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: localhost\r\n{extra}Transfer-Encoding: chunked\r\n\r\n"
        )
        .into_bytes();
        req.extend(chunked(&payload));
        let r = s.send(&req);
        assert_eq!(r.status, 413, "{method} {extra}");
        assert_eq!(r.header("connection"), Some("close"));
        wait_listing(&s.path("small"), &[]);
    }
}

#[test]
fn over_limit_chunked_body_answers_while_the_client_still_sends() {
    // The client streams far more than the limit; the server must answer
    // 413 (lingering close), not hang or reset, and keep nothing.
    let s = server();
    let mut stream = s.connect();
    stream
        .write_all(b"PUT /small/flood.bin HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n")
        .unwrap();
    let chunk = chunked(&[b'z'; 1000]);
    let chunk = &chunk[..chunk.len() - 5]; // without the last chunk
    let deadline = Instant::now() + TIMEOUT;
    stream
        .set_write_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    // Send until the server has stopped reading (or closed), bounded.
    for _ in 0..50 {
        if Instant::now() > deadline || stream.write_all(chunk).is_err() {
            break;
        }
    }
    let raw = read_to_close(&mut stream);
    let text = String::from_utf8_lossy(&raw);
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    assert!(text.contains("Connection: close"), "{text}");
    wait_listing(&s.path("small"), &[]);
}

#[test]
fn expect_continue_over_the_limit_gets_413_without_100() {
    let s = server();
    let mut stream = s.connect();
    stream
        .write_all(b"PUT /small/x HTTP/1.1\r\nHost: localhost\r\nExpect: 100-continue\r\nContent-Length: 1000\r\n\r\n")
        .unwrap();
    let r = read_response(&mut stream, false);
    assert_eq!(r.status, 413);
    assert_eq!(r.header("connection"), Some("close"));
    wait_listing(&s.path("small"), &[]);
}

// --- aborted uploads -----------------------------------------------------------

/// Sends `head` and half of a body of `len` bytes, waits (bounded) until the
/// server holds a temporary file, closes, and waits until the store is
/// empty again.
fn abort_halfway(s: &Server, store: &str, head: &[u8], body: &[u8]) {
    let mut stream = s.connect();
    stream.write_all(head).unwrap();
    stream.write_all(&body[..body.len() / 2]).unwrap();
    let dir = s.path(store);
    let deadline = Instant::now() + TIMEOUT;
    while !has_temp_file(&dir) {
        assert!(
            Instant::now() < deadline,
            "no temp file: {:?}",
            listing(&dir)
        );
        thread::sleep(Duration::from_millis(20));
    }
    drop(stream);
    wait_listing(&dir, &[]);
}

#[test]
fn aborted_put_leaves_nothing() {
    let s = server();
    let body = pseudo_random(200_000, 11);
    let head = format!(
        "PUT /uploads/half.bin HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    abort_halfway(&s, "store", head.as_bytes(), &body);
}

#[test]
fn aborted_multipart_post_leaves_nothing() {
    let s = server();
    let data = pseudo_random(200_000, 12);
    let body = multipart_body(&[
        ("a", Some("whole.bin"), b"small and complete"),
        ("b", Some("half.bin"), &data),
    ]);
    let head = format!(
        "POST /uploads/ HTTP/1.1\r\nHost: localhost\r\nContent-Type: multipart/form-data; boundary={BOUNDARY}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    abort_halfway(&s, "store", head.as_bytes(), &body);
}

#[test]
fn aborted_chunked_raw_post_leaves_nothing() {
    let s = server();
    let body = chunked(&pseudo_random(100_000, 13));
    abort_halfway(
        &s,
        "store",
        b"POST /uploads/ HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n",
        &body,
    );
}

// --- connections ---------------------------------------------------------------

#[test]
fn keep_alive_put_then_get_on_one_connection() {
    let s = server();
    let mut stream = s.connect();
    stream
        .write_all(&request("PUT", "/uploads/ka.txt", "", b"kept alive"))
        .unwrap();
    let r = read_response(&mut stream, false);
    assert_eq!(r.status, 201);
    assert_ne!(r.header("connection"), Some("close"));
    stream
        .write_all(b"GET /uploads/ka.txt HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let r = read_response(&mut stream, false);
    assert_eq!((r.status, r.body.as_slice()), (200, &b"kept alive"[..]));
    stream
        .write_all(&request(
            "DELETE",
            "/uploads/ka.txt",
            "Connection: close\r\n",
            b"",
        ))
        .unwrap();
    assert_eq!(read_response(&mut stream, false).status, 204);
    assert!(read_to_close(&mut stream).is_empty());
    assert_eq!(listing(&s.path("store")), Vec::<String>::new());
}

#[test]
fn pipelined_puts_in_one_write() {
    let s = server();
    let one = pseudo_random(1000, 21);
    let two = tricky_bytes();
    let mut bytes = request("PUT", "/uploads/p1.bin", "", &one);
    bytes.extend(request("PUT", "/uploads/p2.bin", "", &two));
    bytes.extend(request(
        "PUT",
        "/uploads/p1.bin",
        "Connection: close\r\n",
        b"replaced",
    ));
    let mut stream = s.connect();
    stream.write_all(&bytes).unwrap();
    assert_eq!(read_response(&mut stream, false).status, 201);
    assert_eq!(read_response(&mut stream, false).status, 201);
    assert_eq!(read_response(&mut stream, false).status, 204);
    assert!(read_to_close(&mut stream).is_empty());
    assert_eq!(fs::read(s.path("store/p1.bin")).unwrap(), b"replaced");
    assert_eq!(fs::read(s.path("store/p2.bin")).unwrap(), two);
}

#[test]
fn pipelined_chunked_and_multipart_then_get() {
    let s = server();
    let mut bytes =
        b"PUT /uploads/c.txt HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n"
            .to_vec();
    bytes.extend(chunked(b"chunked then more"));
    let body = multipart_body(&[("f", Some("m.txt"), b"multipart")]);
    bytes.extend(request(
        "POST",
        "/uploads/",
        &format!("Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n"),
        &body,
    ));
    bytes.extend_from_slice(
        b"GET /uploads/c.txt HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    );
    let mut stream = s.connect();
    stream.write_all(&bytes).unwrap();
    assert_eq!(read_response(&mut stream, false).status, 201);
    let r = read_response(&mut stream, false);
    assert_created_at(&r, "/uploads/m.txt");
    let r = read_response(&mut stream, false);
    assert_eq!(r.body, b"chunked then more");
    assert_eq!(fs::read(s.path("store/m.txt")).unwrap(), b"multipart");
}

#[test]
fn expect_continue_gets_100_before_the_body() {
    let s = server();
    for (method, path, extra) in [
        ("PUT", "/uploads/cont.txt", String::new()),
        (
            "POST",
            "/uploads/",
            format!("Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n"),
        ),
    ] {
        let body = if extra.is_empty() {
            b"after continue".to_vec()
        } else {
            multipart_body(&[("f", Some("cont.bin"), b"after continue")])
        };
        let mut stream = s.connect();
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: localhost\r\n{extra}Expect: 100-continue\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        stream.write_all(head.as_bytes()).unwrap();
        let interim = read_response(&mut stream, false);
        assert_eq!(interim.status, 100, "{method}");
        stream.write_all(&body).unwrap();
        let r = read_response(&mut stream, false);
        assert_eq!(r.status, 201, "{method}: {}", r.text());
    }
    assert_eq!(
        fs::read(s.path("store/cont.txt")).unwrap(),
        b"after continue"
    );
    assert_eq!(
        fs::read(s.path("store/cont.bin")).unwrap(),
        b"after continue"
    );
}

// --- large bodies --------------------------------------------------------------

const BIG: usize = 10 * 1024 * 1024;

#[test]
fn ten_mib_put_is_byte_identical() {
    let s = server();
    let data = pseudo_random(BIG, 42);
    let r = put(&s, "/uploads/big.bin", &data);
    assert_eq!(r.status, 201);
    assert!(
        fs::read(s.path("store/big.bin")).unwrap() == data,
        "content differs"
    );
    assert_eq!(listing(&s.path("store")), ["big.bin"]);
}

#[test]
fn ten_mib_multipart_post_is_byte_identical() {
    let s = server();
    let data = pseudo_random(BIG, 43);
    let r = post_multipart(
        &s,
        "/uploads/",
        &[("note", None, b"hi"), ("f", Some("big.bin"), &data)],
    );
    assert_created_at(&r, "/uploads/big.bin");
    assert!(
        fs::read(s.path("store/big.bin")).unwrap() == data,
        "content differs"
    );
    assert_eq!(listing(&s.path("store")), ["big.bin"]);
}

#[test]
fn ten_mib_chunked_put_is_byte_identical() {
    let s = server();
    let data = pseudo_random(BIG, 44);
    let mut req = b"PUT /uploads/bigc.bin HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n".to_vec();
    for piece in data.chunks(100_000) {
        req.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        req.extend_from_slice(piece);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"0\r\n\r\n");
    let r = s.send(&req);
    assert_eq!(r.status, 201);
    assert!(
        fs::read(s.path("store/bigc.bin")).unwrap() == data,
        "content differs"
    );
}

// --- edge cases found while testing -------------------------------------------

#[test]
fn longest_file_name_uploaded_twice_keeps_both() {
    // A 255-byte name taken already: the suffixed name must still fit.
    let s = server();
    let name = format!("{}.txt", "n".repeat(251));
    let r = post_multipart(&s, "/uploads/", &[("f", Some(&name), b"one")]);
    assert_created_at(&r, &format!("/uploads/{name}"));
    let r = post_multipart(&s, "/uploads/", &[("f", Some(&name), b"two")]);
    assert_eq!(r.status, 201, "{}", r.text());
    let second = format!("{}-1.txt", "n".repeat(249));
    assert_eq!(
        r.header("location"),
        Some(format!("/uploads/{second}").as_str())
    );
    assert_eq!(fs::read(s.path("store").join(&second)).unwrap(), b"two");
    assert_eq!(listing(&s.path("store")).len(), 2);
}

#[test]
fn many_small_file_parts_are_all_stored() {
    let s = server();
    let contents: Vec<String> = (0..500).map(|i| format!("part {i}")).collect();
    let names: Vec<String> = (0..500).map(|i| format!("f{i:03}.txt")).collect();
    let parts: Vec<Part> = names
        .iter()
        .zip(&contents)
        .map(|(n, c)| ("f", Some(n.as_str()), c.as_bytes()))
        .collect();
    let r = post_multipart(&s, "/uploads/", &parts);
    assert_created_at(&r, "/uploads/f000.txt");
    assert_eq!(listing(&s.path("store")), names);
    assert_eq!(fs::read(s.path("store/f499.txt")).unwrap(), b"part 499");
}

#[test]
fn half_closed_client_still_gets_its_answer() {
    // `nc -N` style: the whole request, then shutdown(SHUT_WR).
    let s = server();
    let mut stream = s.connect();
    stream
        .write_all(&request(
            "PUT",
            "/uploads/half-closed.txt",
            "",
            b"sent, then FIN",
        ))
        .unwrap();
    stream.shutdown(std::net::Shutdown::Write).unwrap();
    let r = read_response(&mut stream, false);
    assert_eq!(r.status, 201);
    assert_eq!(
        fs::read(s.path("store/half-closed.txt")).unwrap(),
        b"sent, then FIN"
    );
}

#[test]
fn expect_continue_on_a_failing_upload_gets_the_error_at_once() {
    let s = server();
    let mut stream = s.connect();
    stream
        .write_all(b"PUT /uploads/missing/x.txt HTTP/1.1\r\nHost: localhost\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
        .unwrap();
    let r = read_response(&mut stream, false);
    assert_eq!(r.status, 409);
    assert_eq!(listing(&s.path("store")), Vec::<String>::new());
}

#[test]
fn http10_put_is_stored_and_closed() {
    let s = server();
    let mut stream = s.connect();
    stream
        .write_all(b"PUT /uploads/old.txt HTTP/1.0\r\nContent-Length: 3\r\n\r\nold")
        .unwrap();
    let r = read_response(&mut stream, false);
    assert_eq!(r.status, 201);
    assert!(read_to_close(&mut stream).is_empty());
    assert_eq!(fs::read(s.path("store/old.txt")).unwrap(), b"old");
}

#[test]
fn stalled_body_gets_408_and_leaves_nothing() {
    let s = Server::start(
        &CONFIG.replace(
            "client_max_body_size 20m;",
            "client_max_body_size 20m;\n    client_body_timeout 1s;",
        ),
        &[],
    );
    fs::create_dir_all(s.path("store")).unwrap();
    let mut stream = s.connect();
    stream
        .write_all(b"PUT /uploads/slow.txt HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100\r\n\r\nonly a few bytes")
        .unwrap();
    let r = read_response(&mut stream, false);
    assert_eq!(r.status, 408);
    assert_eq!(r.header("connection"), Some("close"));
    wait_listing(&s.path("store"), &[]);
}

#[test]
fn put_with_a_too_long_name_is_414_before_the_body() {
    let s = server();
    let long = "l".repeat(300);
    let r = put(&s, &format!("/uploads/{long}"), b"x");
    assert_eq!(r.status, 414, "{}", r.text());
    let r = put(&s, &format!("/uploads/{long}/x.txt"), b"x");
    assert_eq!(r.status, 414, "{}", r.text());
    // With Expect, the answer comes without 100 Continue.
    let mut stream = s.connect();
    stream
        .write_all(format!("PUT /uploads/{long} HTTP/1.1\r\nHost: localhost\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n").as_bytes())
        .unwrap();
    assert_eq!(read_response(&mut stream, false).status, 414);
    assert_eq!(listing(&s.path("store")), Vec::<String>::new());
}

#[test]
fn put_below_a_file_is_409() {
    let s = server();
    assert_eq!(put(&s, "/uploads/plain.txt", b"file").status, 201);
    let r = put(&s, "/uploads/plain.txt/child.txt", b"x");
    assert_eq!(r.status, 409, "{}", r.text());
    assert_eq!(listing(&s.path("store")), ["plain.txt"]);
    assert_eq!(fs::read(s.path("store/plain.txt")).unwrap(), b"file");
}

#[test]
fn reset_during_upload_leaves_nothing() {
    use std::os::unix::io::AsRawFd;
    let s = server();
    let body = pseudo_random(200_000, 14);
    let mut stream = s.connect();
    let head = format!(
        "PUT /uploads/reset.bin HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(&body[..50_000]).unwrap();
    let dir = s.path("store");
    let deadline = Instant::now() + TIMEOUT;
    while !has_temp_file(&dir) {
        assert!(Instant::now() < deadline, "no temp file");
        thread::sleep(Duration::from_millis(20));
    }
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt on our own open socket with a correctly sized
    // `linger`; closing then sends RST instead of FIN.
    let rc = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0);
    drop(stream);
    wait_listing(&dir, &[]);
}

#[test]
fn expect_continue_uploads_on_one_keep_alive_connection() {
    let s = server();
    let mut stream = s.connect();
    for i in 0..3 {
        let body = format!("body {i}");
        let head = format!(
            "PUT /uploads/e{i}.txt HTTP/1.1\r\nHost: localhost\r\nExpect: 100-continue\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        stream.write_all(head.as_bytes()).unwrap();
        assert_eq!(read_response(&mut stream, false).status, 100);
        stream.write_all(body.as_bytes()).unwrap();
        assert_eq!(read_response(&mut stream, false).status, 201);
    }
    assert_eq!(listing(&s.path("store")), ["e0.txt", "e1.txt", "e2.txt"]);
}

#[test]
fn temporary_upload_files_cannot_be_named() {
    let s = server();
    let temp = format!(".webserv-{}-0.part", s.pid());
    std::fs::write(s.path("store").join(&temp), b"in progress").unwrap();
    assert_eq!(put(&s, &format!("/uploads/{temp}"), b"hijack").status, 403);
    assert_eq!(delete(&s, &format!("/uploads/{temp}")).status, 403);
    assert_eq!(
        std::fs::read(s.path("store").join(&temp)).unwrap(),
        b"in progress"
    );
}

#[test]
fn a_chunk_announced_past_the_limit_is_413_before_its_data() {
    let s = server();
    let mut stream = s.connect();
    // The size line alone says 0x1000 bytes: no need to wait for them.
    stream
        .write_all(b"PUT /small/big.bin HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n1000\r\nabc")
        .unwrap();
    let r = read_response(&mut stream, false);
    assert_eq!(r.status, 413);
    assert!(!has_temp_file(&s.path("small")));
}
