//! The open-file cache (SPEC §9.5) on the real binary: never stale under
//! every kind of change on disk, for small (in memory) and large (kept
//! descriptor) files, seen by the very next request with no sleep in
//! between, on one keep-alive connection, on new connections and
//! pipelined, and over TLS; bounded memory; and plain correct answers when
//! inotify cannot watch (a test knob of the `fault-injection` build).

#[path = "common/certs.rs"]
mod certs;
mod common;

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;

use common::{fault_binary, read_response, rss_kib, Response, Server, TIMEOUT};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

const CONFIG: &str = "
server {
    listen 127.0.0.1:{port};
    root {dir}/www;
    access_log off;
}
";

const BIG: usize = 200 * 1024;

fn get(stream: &mut (impl Read + Write), path: &str) -> Response {
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n");
    stream.write_all(request.as_bytes()).expect("send");
    read_response(stream, false)
}

fn running_as_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Each change, then at once a request on the same keep-alive connection,
/// one on a new connection, and two pipelined: all see the change.
fn check_changes(server: &Server, name: &str, size: usize) {
    let www = server.path("www");
    let file = www.join(name);
    let url = format!("/{name}");
    let content = |tag: u8| vec![tag; size];
    let mut conn = server.connect();
    let expect = |conn: &mut TcpStream, status: u16, body: Option<&[u8]>, what: &str| {
        for response in [get(conn, &url), server.get(&url)] {
            assert_eq!(response.status, status, "{what}");
            if let Some(body) = body {
                assert!(response.body == body, "{what}: stale body");
            }
        }
        let pipelined = format!("GET {url} HTTP/1.1\r\nHost: x\r\n\r\n").repeat(2);
        conn.write_all(pipelined.as_bytes()).expect("send");
        for _ in 0..2 {
            let response = read_response(conn, false);
            assert_eq!(response.status, status, "{what} (pipelined)");
            if let Some(body) = body {
                assert!(response.body == body, "{what}: stale pipelined body");
            }
        }
    };

    fs::write(&file, content(b'a')).unwrap();
    expect(&mut conn, 200, Some(&content(b'a')), "first");
    // Written in place: same inode, same length, new bytes.
    fs::OpenOptions::new()
        .write(true)
        .open(&file)
        .unwrap()
        .write_all(&content(b'b'))
        .unwrap();
    expect(&mut conn, 200, Some(&content(b'b')), "written in place");
    // Truncated.
    fs::File::create(&file).unwrap();
    expect(&mut conn, 200, Some(b""), "truncated");
    // Renamed over.
    let other = www.join(format!("{name}.new"));
    fs::write(&other, content(b'c')).unwrap();
    fs::rename(&other, &file).unwrap();
    expect(&mut conn, 200, Some(&content(b'c')), "renamed over");
    // Deleted: 404, cached as such; then created again.
    fs::remove_file(&file).unwrap();
    expect(&mut conn, 404, None, "deleted");
    fs::write(&file, content(b'd')).unwrap();
    expect(&mut conn, 200, Some(&content(b'd')), "created after a 404");
    // Made unreadable (root reads anything: the unit tests show the entry
    // dropped on chmod).
    if !running_as_root() {
        fs::set_permissions(&file, fs::Permissions::from_mode(0o000)).unwrap();
        expect(&mut conn, 403, None, "chmod 000");
        fs::set_permissions(&file, fs::Permissions::from_mode(0o644)).unwrap();
        expect(&mut conn, 200, Some(&content(b'd')), "chmod 644");
    }
}

#[test]
fn small_files_are_never_stale() {
    let server = Server::start(CONFIG, &[("www/.keep", b"")]);
    check_changes(&server, "small.txt", 1000);
}

#[test]
fn large_files_are_never_stale() {
    let server = Server::start(CONFIG, &[("www/.keep", b"")]);
    check_changes(&server, "large.bin", BIG);
}

const TLS_CONFIG: &str = "
server {
    listen 127.0.0.1:{port} ssl;
    ssl_certificate {dir}/tls/localhost.crt;
    ssl_certificate_key {dir}/tls/localhost.key;
    root {dir}/www;
    access_log off;
}
";

/// A verified TLS 1.3 or 1.2 connection to `server`, handshake done.
fn tls_connect(server: &Server, pem: &certs::Pem) -> StreamOwned<ClientConnection, TcpStream> {
    let mut roots = RootCertStore::empty();
    let cert = CertificateDer::from_pem_slice(pem.cert.as_bytes()).expect("PEM certificate");
    roots.add(cert).expect("trust anchor");
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = ServerName::try_from("localhost").expect("server name");
    let session = ClientConnection::new(Arc::new(config), name).expect("client session");
    let socket = server.connect();
    socket.set_write_timeout(Some(TIMEOUT)).expect("timeout");
    let mut tls = StreamOwned::new(session, socket);
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock).expect("TLS handshake");
    }
    tls
}

/// Over TLS a request skips draining the queue of changes only when its
/// record was the first one read after a wait: each change, written in
/// place or renamed over, is seen by a request sent at once on the same
/// kept-alive connection, alone, behind a request already in flight, or
/// behind a record without plaintext (a TLS 1.3 key update).
#[test]
fn over_tls_the_next_request_on_a_kept_alive_connection_sees_each_change() {
    let pem = certs::self_signed(&["localhost"]);
    let server = Server::start(
        TLS_CONFIG,
        &[
            ("tls/localhost.crt", pem.cert.as_bytes()),
            ("tls/localhost.key", pem.key.as_bytes()),
            ("www/other.txt", b"other"),
        ],
    );
    let file = server.path("www/small.txt");
    let renamed = server.path("www/small.txt.new");
    let mut tls = tls_connect(&server, &pem);
    for round in 0..300u32 {
        let body = format!("{round:08}").repeat(128);
        let behind = round % 3 == 2;
        if behind {
            tls.write_all(b"GET /other.txt HTTP/1.1\r\nHost: localhost\r\n\r\n")
                .expect("send");
        }
        if round % 5 == 4 {
            // A record without plaintext, sent before the change.
            tls.conn.refresh_traffic_keys().expect("key update");
            tls.flush().expect("send the key update");
        }
        if round % 2 == 0 {
            // In place: same inode, same length, new bytes.
            fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .open(&file)
                .and_then(|mut f| f.write_all(body.as_bytes()))
                .expect("write in place");
        } else {
            fs::write(&renamed, &body).expect("write");
            fs::rename(&renamed, &file).expect("rename over");
        }
        tls.write_all(b"GET /small.txt HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .expect("send");
        if behind {
            let response = read_response(&mut tls, false);
            assert_eq!(response.body, b"other", "round {round}");
        }
        let response = read_response(&mut tls, false);
        assert_eq!(response.status, 200, "round {round}");
        assert!(
            response.body == body.as_bytes(),
            "round {round}: stale body"
        );
    }
}

#[test]
fn each_worker_keeps_its_own_fresh_cache() {
    let config = "
        worker_processes 2;
        server {
            listen 127.0.0.1:{port};
            root {dir}/www;
            access_log off;
        }";
    let server = Server::start(config, &[("www/.keep", b"")]);
    check_changes(&server, "small.txt", 1000);
    check_changes(&server, "large.bin", BIG);
}

#[test]
fn a_directory_index_appears_and_disappears() {
    let server = Server::start(CONFIG, &[("www/d/.keep", b"")]);
    let mut conn = server.connect();
    assert_eq!(get(&mut conn, "/d/").status, 403);
    assert_eq!(get(&mut conn, "/d/").status, 403);
    fs::write(server.path("www/d/index.html"), b"index").unwrap();
    let response = get(&mut conn, "/d/");
    assert_eq!((response.status, response.text().as_str()), (200, "index"));
    fs::remove_file(server.path("www/d/index.html")).unwrap();
    assert_eq!(get(&mut conn, "/d/").status, 403);
}

#[test]
fn a_renamed_directory_is_seen() {
    let server = Server::start(CONFIG, &[("www/a/b/c.txt", b"old")]);
    let mut conn = server.connect();
    assert_eq!(get(&mut conn, "/a/b/c.txt").text(), "old");
    fs::rename(server.path("www/a"), server.path("www/x")).unwrap();
    assert_eq!(get(&mut conn, "/a/b/c.txt").status, 404);
    assert_eq!(get(&mut conn, "/x/b/c.txt").text(), "old");
    fs::create_dir_all(server.path("www/a/b")).unwrap();
    fs::write(server.path("www/a/b/c.txt"), b"new").unwrap();
    assert_eq!(get(&mut conn, "/a/b/c.txt").text(), "new");
    // The root itself renamed away and back with other content.
    fs::rename(server.path("www"), server.path("old-www")).unwrap();
    assert_eq!(get(&mut conn, "/a/b/c.txt").status, 404);
    fs::create_dir_all(server.path("www/a/b")).unwrap();
    fs::write(server.path("www/a/b/c.txt"), b"newest").unwrap();
    assert_eq!(get(&mut conn, "/a/b/c.txt").text(), "newest");
}

#[test]
fn ranges_and_validators_come_from_the_cache_alike() {
    let server = Server::start(CONFIG, &[("www/f.txt", b"0123456789")]);
    let mut conn = server.connect();
    let first = get(&mut conn, "/f.txt");
    let etag = first.header("etag").unwrap().to_owned();
    for _ in 0..2 {
        let request = "GET /f.txt HTTP/1.1\r\nHost: x\r\nRange: bytes=2-4\r\n\r\n";
        conn.write_all(request.as_bytes()).unwrap();
        let response = read_response(&mut conn, false);
        assert_eq!((response.status, response.text().as_str()), (206, "234"));
        assert_eq!(response.header("content-range"), Some("bytes 2-4/10"));
        let request = format!("GET /f.txt HTTP/1.1\r\nHost: x\r\nIf-None-Match: {etag}\r\n\r\n");
        conn.write_all(request.as_bytes()).unwrap();
        assert_eq!(read_response(&mut conn, false).status, 304);
    }
    fs::write(server.path("www/f.txt"), b"abcdefghijklmnop").unwrap();
    let request = format!("GET /f.txt HTTP/1.1\r\nHost: x\r\nIf-None-Match: {etag}\r\n\r\n");
    conn.write_all(request.as_bytes()).unwrap();
    let response = read_response(&mut conn, false);
    assert_eq!(
        (response.status, response.text().as_str()),
        (200, "abcdefghijklmnop")
    );
    assert_ne!(response.header("etag"), Some(etag.as_str()));
}

/// How many directories the process's inotify descriptors watch.
fn inotify_watches(pid: u32) -> usize {
    let Ok(entries) = fs::read_dir(format!("/proc/{pid}/fdinfo")) else {
        return 0;
    };
    entries
        .flatten()
        .filter_map(|e| fs::read_to_string(e.path()).ok())
        .map(|info| {
            info.lines()
                .filter(|l| l.starts_with("inotify wd:"))
                .count()
        })
        .sum()
}

#[test]
fn more_files_than_max_and_memory_stay_bounded() {
    let config = "
        server {
            listen 127.0.0.1:{port};
            root {dir}/www;
            access_log off;
            open_file_cache max=100 memory=1m small=64k;
        }";
    let server = Server::start(config, &[("www/.keep", b"")]);
    let files = 1500;
    for i in 0..files {
        fs::write(server.path(&format!("www/{i}.bin")), vec![b'x'; 32 * 1024]).unwrap();
    }
    let mut conn = server.connect();
    // Warm up the allocator with a pass, then measure a second one.
    for i in 0..200 {
        assert_eq!(get(&mut conn, &format!("/{i}.bin")).status, 200);
    }
    let before = rss_kib(server.pid());
    for i in 0..files {
        assert_eq!(get(&mut conn, &format!("/{i}.bin")).body.len(), 32 * 1024);
    }
    let after = rss_kib(server.pid());
    // 47 MiB went through a cache of 1 MiB.
    assert!(
        after < before + 8 * 1024,
        "RSS grew from {before} to {after} KiB"
    );
    let fds = fs::read_dir(format!("/proc/{}/fd", server.pid()))
        .unwrap()
        .count();
    assert!(fds < 64, "{fds} descriptors open");
}

/// Compressed copies count against `memory`: some 18 MiB of copies made
/// through a cache of 1 MiB leave the RSS where it was.
#[test]
fn compressed_copies_stay_within_memory() {
    let config = "
        server {
            listen 127.0.0.1:{port};
            root {dir}/www;
            access_log off;
            gzip on;
            open_file_cache max=10000 memory=1m small=64k;
        }";
    let server = Server::start(config, &[("www/.keep", b"")]);
    let files = 500u32;
    // 120 KiB of HTML rows each, different per file: a copy of some 36 KiB,
    // kept (at most `small`) and counted.
    for i in 0..files {
        let mut page = Vec::with_capacity(130 * 1024);
        let mut n = i * 10_000;
        while page.len() < 120 * 1024 {
            let row = format!(
                "<p class=\"r{}\">Row {n}: {}</p>\n",
                n % 7,
                n.wrapping_mul(2_654_435_761)
            );
            page.extend_from_slice(row.as_bytes());
            n += 1;
        }
        fs::write(server.path(&format!("www/{i}.html")), page).unwrap();
    }
    let mut conn = server.connect();
    let fetch = |conn: &mut TcpStream, i: u32| {
        let request =
            format!("GET /{i}.html HTTP/1.1\r\nHost: localhost\r\nAccept-Encoding: gzip\r\n\r\n");
        conn.write_all(request.as_bytes()).expect("send");
        let response = read_response(conn, false);
        assert_eq!(response.status, 200);
        assert_eq!(response.header("content-encoding"), Some("gzip"));
        assert!(
            response.header("content-length").is_some(),
            "/{i}.html: chunked"
        );
    };
    // Warm up the allocator with a pass, then measure a second one.
    for i in 0..100 {
        fetch(&mut conn, i);
    }
    let before = rss_kib(server.pid());
    for i in 0..files {
        fetch(&mut conn, i);
    }
    let after = rss_kib(server.pid());
    assert!(
        after < before + 8 * 1024,
        "RSS grew from {before} to {after} KiB"
    );
}

#[test]
fn off_caches_nothing() {
    let config = "
        server {
            listen 127.0.0.1:{port};
            root {dir}/www;
            open_file_cache off;
        }";
    let server = Server::start(config, &[("www/f.txt", b"one")]);
    let mut conn = server.connect();
    assert_eq!(get(&mut conn, "/f.txt").text(), "one");
    assert_eq!(inotify_watches(server.pid()), 0);
}

#[test]
fn without_inotify_answers_stay_right_and_nothing_is_cached() {
    for (watches, cached) in [("0", false), ("1000000", true)] {
        let env = [("WEBSERV_INOTIFY_WATCHES", watches)];
        let server = Server::start_program(fault_binary(), CONFIG, &[("www/.keep", b"")], &env);
        check_changes(&server, "small.txt", 100);
        check_changes(&server, "large.bin", BIG);
        assert_eq!(
            inotify_watches(server.pid()) > 0,
            cached,
            "watches={watches}"
        );
    }
}
