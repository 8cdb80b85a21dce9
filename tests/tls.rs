//! TLS against the real binary (SPEC §9.2, issue 12): a rustls client over
//! `std::net::TcpStream` that trusts the test's own rcgen certificate.
//! Certificates are generated per test into the server's temp dir; no key
//! is committed. Every wait is bounded (`TIMEOUT`, or a deadline of its own).

#[path = "common/certs.rs"]
mod certs;
mod common;

use std::fs;
use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::{mpsc, Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use certs::Pem;
use common::{Reader, Response, Server, TIMEOUT};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    ClientConfig, ClientConnection, DigitallySignedStruct, ProtocolVersion, RootCertStore,
    SignatureScheme, StreamOwned, SupportedProtocolVersion,
};

// --- the client ----------------------------------------------------------------

type Tls = StreamOwned<ClientConnection, TcpStream>;

const BOTH: &[&SupportedProtocolVersion] = &[&rustls::version::TLS13, &rustls::version::TLS12];

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn der(pem: &Pem) -> CertificateDer<'static> {
    CertificateDer::from_pem_slice(pem.cert.as_bytes()).expect("PEM certificate")
}

/// A verifying client that trusts exactly `trusted`, offering ALPN
/// `http/1.1` and the protocol `versions`.
fn client(trusted: &[&Pem], versions: &[&'static SupportedProtocolVersion]) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    for pem in trusted {
        roots.add(der(pem)).expect("trust anchor");
    }
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(versions)
        .expect("protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

/// A client that takes any certificate, to look at which one the server
/// chose (an unknown SNI gets a certificate that does not name it).
fn any_cert_client(sni: bool) -> Arc<ClientConfig> {
    let provider = provider();
    let mut config = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(BOTH)
        .expect("protocol versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCert(provider)))
        .with_no_client_auth();
    config.enable_sni = sni;
    Arc::new(config)
}

#[derive(Debug)]
struct AnyCert(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Connects to 127.0.0.1:`port` as `name` and completes the handshake.
fn handshake(port: u16, config: &Arc<ClientConfig>, name: &str) -> io::Result<Tls> {
    let socket = TcpStream::connect(("127.0.0.1", port))?;
    socket.set_read_timeout(Some(TIMEOUT))?;
    socket.set_write_timeout(Some(TIMEOUT))?;
    let name = ServerName::try_from(name.to_string()).expect("server name");
    let session = ClientConnection::new(Arc::clone(config), name).map_err(io::Error::other)?;
    let mut tls = StreamOwned::new(session, socket);
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock)?;
    }
    Ok(tls)
}

fn connect(port: u16, config: &Arc<ClientConfig>, name: &str) -> Tls {
    handshake(port, config, name).unwrap_or_else(|err| panic!("TLS handshake as {name}: {err}"))
}

/// The certificate the server showed.
fn peer_cert(tls: &Tls) -> CertificateDer<'static> {
    tls.conn
        .peer_certificates()
        .and_then(|chain| chain.first())
        .expect("a peer certificate")
        .clone()
        .into_owned()
}

// --- requests ---------------------------------------------------------------------

fn get(path: &str, host: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n")
}

fn get_close(path: &str, host: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")
}

/// One request on a new verified TLS connection.
fn fetch(port: u16, config: &Arc<ClientConfig>, name: &str, path: &str) -> Response {
    let mut tls = connect(port, config, name);
    tls.write_all(get_close(path, name).as_bytes())
        .expect("send");
    Reader::new(tls).response()
}

// --- a server with a certificate ---------------------------------------------------

const SIMPLE: &str = r#"
server {
    listen 127.0.0.1:{port} ssl;
    server_name localhost;
    ssl_certificate {dir}/tls/localhost.crt;
    ssl_certificate_key {dir}/tls/localhost.key;
    root {dir}/www;
}
"#;

/// [`SIMPLE`] with a short `client_header_timeout`, for clients that stall.
const STALL: &str = r#"
server {
    listen 127.0.0.1:{port} ssl;
    server_name localhost;
    ssl_certificate {dir}/tls/localhost.crt;
    ssl_certificate_key {dir}/tls/localhost.key;
    root {dir}/www;
    client_header_timeout 1s;
}
"#;

/// [`Server::start`], tried again if the port it picked was taken before
/// the server could bind it: the tests here hold hundreds of client
/// connections, whose local ports come from the same range as
/// `free_port`'s.
fn start(template: &str, files: &[(&str, &[u8])]) -> Server {
    for _ in 0..2 {
        let attempt = std::panic::catch_unwind(|| Server::start(template, files));
        if let Ok(server) = attempt {
            return server;
        }
    }
    Server::start(template, files)
}

/// Starts `template` with a fresh certificate for localhost at
/// `{dir}/tls/localhost.{crt,key}` and `www/index.html`.
fn start_tls(template: &str, files: &[(&str, &[u8])]) -> (Server, Pem) {
    let pem = certs::self_signed(&["localhost", "127.0.0.1"]);
    let mut all: Vec<(&str, &[u8])> = vec![
        ("tls/localhost.crt", pem.cert.as_bytes()),
        ("tls/localhost.key", pem.key.as_bytes()),
        ("www/index.html", b"hello over tls"),
    ];
    all.extend_from_slice(files);
    (start(template, &all), pem)
}

// --- 1. handshake, ALPN, keep-alive, pipelining -------------------------------------

#[test]
fn verified_get_with_alpn_keep_alive_and_pipelining() {
    let (server, pem) = start_tls(SIMPLE, &[("www/two.txt", b"second")]);
    let config = client(&[&pem], BOTH);
    let tls = connect(server.port, &config, "localhost");
    assert_eq!(tls.conn.alpn_protocol(), Some(&b"http/1.1"[..]));
    assert_eq!(tls.conn.protocol_version(), Some(ProtocolVersion::TLSv1_3));
    assert_eq!(peer_cert(&tls), der(&pem));

    let mut reader = Reader::new(tls);
    // Keep-alive: two requests, one after the other, on one connection.
    reader
        .stream
        .write_all(get("/", "localhost").as_bytes())
        .expect("send");
    let first = reader.response();
    assert_eq!(first.status, 200);
    assert_eq!(first.body, b"hello over tls");
    assert_eq!(first.header("content-length"), Some("14"));
    assert!(first.header("date").is_some() && first.header("server").is_some());
    reader
        .stream
        .write_all(get("/two.txt", "localhost").as_bytes())
        .expect("send");
    let second = reader.response();
    assert_eq!((second.status, second.text().as_str()), (200, "second"));

    // Pipelining: two requests in one write, answered in order; the
    // second asks to close, and the connection then ends.
    let both = format!(
        "{}{}",
        get("/two.txt", "localhost"),
        get_close("/", "localhost")
    );
    reader.stream.write_all(both.as_bytes()).expect("send");
    let a = reader.response();
    let b = reader.response();
    assert_eq!((a.status, a.text().as_str()), (200, "second"));
    assert_eq!((b.status, b.text().as_str()), (200, "hello over tls"));
    assert_eq!(b.header("connection"), Some("close"));
    assert!(
        reader.closes_within(TIMEOUT),
        "no close after Connection: close"
    );
    assert!(reader.buf.is_empty(), "bytes after the last response");
}

/// SPEC §9.5 over TLS: a file compressed on the fly goes through the TLS
/// write path too, chunk by chunk, on a kept-alive connection.
#[test]
fn gzip_over_tls_round_trips() {
    const GZIP: &str = r#"
server {
    listen 127.0.0.1:{port} ssl;
    server_name localhost;
    ssl_certificate {dir}/tls/localhost.crt;
    ssl_certificate_key {dir}/tls/localhost.key;
    root {dir}/www;
    gzip on;
}
"#;
    // Above the bound for compressing in one go (1 MiB): compressed as it
    // is sent, through TLS records, each time.
    let page: Vec<u8> = (0..50_000u32)
        .flat_map(|i| format!("<p>row {i} of the page</p>\n").into_bytes())
        .collect();
    // 100 KiB: compressed once, kept, and sent with its length.
    let kept: Vec<u8> = page[..100 * 1024].to_vec();
    let (server, pem) = start_tls(GZIP, &[("www/page.html", &page), ("www/kept.html", &kept)]);
    let config = client(&[&pem], BOTH);
    let mut reader = Reader::new(connect(server.port, &config, "localhost"));
    for (path, body, framing) in [
        ("/page.html", &page, "transfer-encoding"),
        ("/page.html", &page, "transfer-encoding"),
        ("/kept.html", &kept, "content-length"),
        ("/kept.html", &kept, "content-length"),
    ] {
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nAccept-Encoding: gzip\r\n\r\n");
        reader.stream.write_all(request.as_bytes()).expect("send");
        let r = reader.response();
        assert_eq!(r.status, 200);
        assert_eq!(r.header("content-encoding"), Some("gzip"));
        assert!(r.header(framing).is_some(), "{path}: no {framing}");
        let mut plain = Vec::new();
        flate2::read::GzDecoder::new(r.body.as_slice())
            .read_to_end(&mut plain)
            .expect("a valid gzip stream");
        assert!(plain == *body, "round trip over TLS");
    }
}

// --- 2. SNI ------------------------------------------------------------------------

const TWO_NAMES: &str = r#"
server {
    listen 127.0.0.1:{port} ssl default_server;
    server_name a.test;
    ssl_certificate {dir}/a.crt;
    ssl_certificate_key {dir}/a.key;
    root {dir}/a;
}
server {
    listen 127.0.0.1:{port} ssl;
    server_name b.test;
    ssl_certificate {dir}/b.crt;
    ssl_certificate_key {dir}/b.key;
    root {dir}/b;
}
"#;

#[test]
fn sni_chooses_the_certificate_and_the_default_answers_otherwise() {
    let a = certs::self_signed(&["a.test"]);
    let b = certs::self_signed(&["b.test"]);
    let server = start(
        TWO_NAMES,
        &[
            ("a.crt", a.cert.as_bytes()),
            ("a.key", a.key.as_bytes()),
            ("b.crt", b.cert.as_bytes()),
            ("b.key", b.key.as_bytes()),
            ("a/index.html", b"site A"),
            ("b/index.html", b"site B"),
        ],
    );
    let config = client(&[&a, &b], BOTH);
    for (name, pem, content) in [("a.test", &a, "site A"), ("b.test", &b, "site B")] {
        let mut tls = connect(server.port, &config, name);
        assert_eq!(peer_cert(&tls), der(pem), "certificate for {name}");
        tls.write_all(get_close("/", name).as_bytes())
            .expect("send");
        let response = Reader::new(tls).response();
        assert_eq!(response.status, 200, "{name}");
        assert_eq!(response.text(), content, "{name}");
    }

    // An unknown name gets the default server's certificate, which a
    // verifying client rejects (it does not name c.test).
    let err = handshake(server.port, &config, "c.test")
        .expect_err("c.test is not in a.test's certificate");
    assert!(
        err.to_string().contains("certificate"),
        "unexpected error: {err}"
    );
    let tls = connect(server.port, &any_cert_client(true), "c.test");
    assert_eq!(peer_cert(&tls), der(&a), "unknown SNI");

    // No SNI at all: the default server's certificate too.
    let mut tls = connect(server.port, &any_cert_client(false), "b.test");
    assert_eq!(peer_cert(&tls), der(&a), "no SNI");
    // The Host header still routes (SPEC §9.2: no 421).
    tls.write_all(get_close("/", "b.test").as_bytes())
        .expect("send");
    assert_eq!(Reader::new(tls).response().text(), "site B");
}

// --- 3. ssl_protocols ------------------------------------------------------------

fn only(protocols: &str) -> (Server, Pem) {
    start_tls(
        &SIMPLE.replace(
            "server_name localhost;",
            &format!("server_name localhost;\n    ssl_protocols {protocols};"),
        ),
        &[],
    )
}

#[test]
fn ssl_protocols_tls12_only() {
    let (server, pem) = only("TLSv1.2");
    let tls13 = client(&[&pem], &[&rustls::version::TLS13]);
    assert!(
        handshake(server.port, &tls13, "localhost").is_err(),
        "a TLS 1.3-only client must fail"
    );
    let tls12 = client(&[&pem], &[&rustls::version::TLS12]);
    let mut tls = connect(server.port, &tls12, "localhost");
    assert_eq!(tls.conn.protocol_version(), Some(ProtocolVersion::TLSv1_2));
    assert_eq!(tls.conn.alpn_protocol(), Some(&b"http/1.1"[..]));
    tls.write_all(get_close("/", "localhost").as_bytes())
        .expect("send");
    let response = Reader::new(tls).response();
    assert_eq!(
        (response.status, response.text().as_str()),
        (200, "hello over tls")
    );
    // A client offering both settles on 1.2.
    let tls = connect(server.port, &client(&[&pem], BOTH), "localhost");
    assert_eq!(tls.conn.protocol_version(), Some(ProtocolVersion::TLSv1_2));
}

#[test]
fn ssl_protocols_tls13_only() {
    let (server, pem) = only("TLSv1.3");
    let tls12 = client(&[&pem], &[&rustls::version::TLS12]);
    assert!(
        handshake(server.port, &tls12, "localhost").is_err(),
        "a TLS 1.2-only client must fail"
    );
    let tls13 = client(&[&pem], &[&rustls::version::TLS13]);
    let mut tls = connect(server.port, &tls13, "localhost");
    assert_eq!(tls.conn.protocol_version(), Some(ProtocolVersion::TLSv1_3));
    tls.write_all(get_close("/", "localhost").as_bytes())
        .expect("send");
    assert_eq!(Reader::new(tls).response().status, 200);
}

// --- 4. plain HTTP to the TLS port ------------------------------------------------

#[test]
fn plain_http_on_the_tls_port_gets_400_then_close() {
    let (server, pem) = start_tls(SIMPLE, &[]);
    let mut plain = server.connect();
    plain
        .write_all(get("/", "localhost").as_bytes())
        .expect("send");
    let mut reader = Reader::new(plain);
    let response = reader.response();
    assert_eq!(response.status, 400);
    assert!(response.text().contains("400"), "{}", response.text());
    assert_eq!(response.header("connection"), Some("close"));
    assert!(reader.closes_within(TIMEOUT), "no close after the 400");
    assert!(reader.buf.is_empty());
    // The port still speaks TLS.
    let response = fetch(server.port, &client(&[&pem], BOTH), "localhost", "/");
    assert_eq!(response.status, 200);
}

/// The first read of a TLS connection is also where a client that leaves
/// without a byte is seen: the server closes at once, not at
/// client_header_timeout (60s here).
#[test]
fn a_client_that_leaves_before_its_first_byte_is_closed_at_once() {
    let (server, pem) = start_tls(SIMPLE, &[]);
    let since = Instant::now();
    let quiet = server.connect();
    quiet
        .shutdown(std::net::Shutdown::Write)
        .expect("half-close");
    closed_between(quiet, since, Duration::ZERO, Duration::from_secs(5))
        .expect("a client that left");
    let response = fetch(server.port, &client(&[&pem], BOTH), "localhost", "/");
    assert_eq!(response.status, 200);
}

// --- 5. large bodies, bounded memory -------------------------------------------------

/// The size of the large transfers. 100 MiB runs in a few seconds in a
/// release build.
const BIG: u64 = 100 * 1024 * 1024;
/// How much the server's resident memory may grow during one.
const RSS_GROWTH: u64 = 64 * 1024 * 1024;

/// Byte `offset` of the pseudo-random test file (splitmix64 of its word).
fn pattern(offset: u64, out: &mut [u8]) {
    for (i, byte) in out.iter_mut().enumerate() {
        let at = offset + i as u64;
        let mut z = (at / 8).wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        *byte = (z >> (8 * (at % 8))) as u8;
    }
}

/// Writes the first `len` bytes of the pattern to `out`, 64 KiB at a time.
fn send_pattern(out: &mut impl Write, len: u64) -> io::Result<()> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut offset = 0;
    while offset < len {
        let n = (len - offset).min(buf.len() as u64) as usize;
        pattern(offset, &mut buf[..n]);
        out.write_all(&buf[..n])?;
        offset += n as u64;
    }
    Ok(())
}

fn write_pattern(path: &Path, len: u64) {
    let mut file = io::BufWriter::new(fs::File::create(path).expect("create"));
    send_pattern(&mut file, len).expect("write");
    file.flush().expect("flush");
}

/// Whether `file` holds exactly the pattern of `len` bytes.
fn holds_pattern(path: &Path, len: u64) -> bool {
    let mut file = fs::File::open(path).expect("open");
    let mut got = vec![0u8; 1 << 20];
    let mut want = vec![0u8; 1 << 20];
    let mut offset = 0;
    loop {
        let n = file.read(&mut got).expect("read");
        if n == 0 {
            return offset == len;
        }
        pattern(offset, &mut want[..n]);
        if got[..n] != want[..n] {
            return false;
        }
        offset += n as u64;
    }
}

/// The server's resident set, in bytes.
fn rss(pid: u32) -> u64 {
    common::rss_kib(pid) * 1024
}

const LARGE: &str = r#"
server {
    listen 127.0.0.1:{port} ssl;
    server_name localhost;
    ssl_certificate {dir}/tls/localhost.crt;
    ssl_certificate_key {dir}/tls/localhost.key;
    root {dir}/www;
    location /up/ {
        alias {dir}/store/;
        upload_store {dir}/store;
        methods GET PUT;
        client_max_body_size 0;
    }
}
"#;

#[test]
fn large_download_and_upload_are_byte_identical_in_bounded_memory() {
    let (server, pem) = start_tls(LARGE, &[]);
    fs::create_dir_all(server.path("store")).expect("mkdir store");
    write_pattern(&server.path("www/big.bin"), BIG);
    let config = client(&[&pem], BOTH);
    // A first exchange, so the baseline includes what every connection has.
    assert_eq!(fetch(server.port, &config, "localhost", "/").status, 200);
    let baseline = rss(server.pid());
    let mut peak = baseline;

    // Download: compared with the pattern as it streams in.
    let started = Instant::now();
    let mut tls = connect(server.port, &config, "localhost");
    tls.write_all(get_close("/big.bin", "localhost").as_bytes())
        .expect("send");
    let mut reader = Reader::new(tls);
    let head = reader.until(b"\r\n\r\n");
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.contains(&format!("Content-Length: {BIG}")), "{head}");
    let mut offset = 0u64;
    let mut want = vec![0u8; 64 * 1024];
    let mut next_sample = 0u64;
    while offset < BIG {
        if reader.buf.is_empty() {
            assert!(reader.fill(), "closed at byte {offset} of {BIG}");
        }
        let n = reader
            .buf
            .len()
            .min(want.len())
            .min((BIG - offset) as usize);
        pattern(offset, &mut want[..n]);
        assert!(
            reader.buf[..n] == want[..n],
            "download differs near byte {offset}"
        );
        reader.buf.drain(..n);
        offset += n as u64;
        if offset >= next_sample {
            peak = peak.max(rss(server.pid()));
            next_sample += 4 << 20;
        }
    }
    assert!(reader.closes_within(TIMEOUT), "no close after the body");
    assert!(reader.buf.is_empty(), "bytes past Content-Length");
    let download = started.elapsed();
    assert!(
        peak - baseline < RSS_GROWTH,
        "server RSS grew by {} MiB during the download",
        (peak - baseline) >> 20
    );

    // Upload: one PUT, streamed from the pattern.
    let started = Instant::now();
    let mut tls = connect(server.port, &config, "localhost");
    let head = format!(
        "PUT /up/big.bin HTTP/1.1\r\nHost: localhost\r\nContent-Length: {BIG}\r\nConnection: close\r\n\r\n"
    );
    tls.write_all(head.as_bytes()).expect("send head");
    let mut buf = vec![0u8; 256 * 1024];
    let mut offset = 0u64;
    let mut next_sample = 0u64;
    while offset < BIG {
        let n = (BIG - offset).min(buf.len() as u64) as usize;
        pattern(offset, &mut buf[..n]);
        tls.write_all(&buf[..n]).expect("send body");
        offset += n as u64;
        if offset >= next_sample {
            peak = peak.max(rss(server.pid()));
            next_sample += 4 << 20;
        }
    }
    tls.flush().expect("flush");
    let response = Reader::new(tls).response();
    assert!(
        response.status == 201 || response.status == 204,
        "PUT status {}: {}",
        response.status,
        response.text()
    );
    assert!(
        holds_pattern(&server.path("store/big.bin"), BIG),
        "the stored upload differs"
    );
    let upload = started.elapsed();
    assert!(
        peak - baseline < RSS_GROWTH,
        "server RSS grew by {} MiB",
        (peak - baseline) >> 20
    );
    eprintln!(
        "{} MiB over TLS: download {download:?}, upload {upload:?}, RSS {} MiB -> peak {} MiB",
        BIG >> 20,
        baseline >> 20,
        peak >> 20
    );
}

// --- 6. stalled and garbage clients -----------------------------------------------

/// The first bytes a TLS 1.3 client sends (its ClientHello record).
fn client_hello(pem: &Pem) -> Vec<u8> {
    let name = ServerName::try_from("localhost").expect("name");
    let mut session = ClientConnection::new(client(&[pem], BOTH), name).expect("client");
    let mut hello = Vec::new();
    session.write_tls(&mut hello).expect("ClientHello");
    hello
}

/// Whether the server closes `stream` between `min` and `max` after
/// `since` (what it sends first, an alert, is read and dropped).
fn closed_between(
    stream: TcpStream,
    since: Instant,
    min: Duration,
    max: Duration,
) -> Result<Duration, String> {
    let started = since;
    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let mut stream = stream;
    let mut buf = [0u8; 4096];
    while started.elapsed() < max {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(_) => {}
            Err(err)
                if matches!(
                    err.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(_) => break,
        }
    }
    let elapsed = started.elapsed();
    if elapsed >= max {
        Err(format!("still open after {elapsed:?}"))
    } else if elapsed < min {
        Err(format!("closed after {elapsed:?}, before {min:?}"))
    } else {
        Ok(elapsed)
    }
}

#[test]
fn stalled_handshakes_close_at_client_header_timeout() {
    let (server, pem) = start_tls(STALL, &[]);
    let hello = client_hello(&pem);
    assert_eq!(hello[0], 0x16, "a handshake record");

    // Nothing at all, and half a ClientHello: both wait for more bytes
    // and are closed at client_header_timeout (1s).
    let since = Instant::now();
    let silent = server.connect();
    let mut partial = server.connect();
    partial
        .write_all(&hello[..hello.len() / 2])
        .expect("half a hello");
    // The deadline counts from the accept, which is after `since`.
    let min = Duration::from_millis(950);
    let max = Duration::from_secs(5);
    let partial = thread::spawn(move || closed_between(partial, since, min, max));
    closed_between(silent, since, min, max).expect("a silent client");
    partial
        .join()
        .expect("thread")
        .expect("a partial ClientHello");

    // A whole handshake, then silence: the request head has the same
    // deadline, counted from the accept.
    let since = Instant::now();
    let tls = connect(server.port, &client(&[&pem], BOTH), "localhost");
    closed_between(tls.sock, since, min, max).expect("a silent TLS client");

    assert_eq!(
        fetch(server.port, &client(&[&pem], BOTH), "localhost", "/").status,
        200
    );
}

#[test]
fn garbage_records_close_the_connection_and_the_server_keeps_serving() {
    let (server, pem) = start_tls(SIMPLE, &[]);
    let config = client(&[&pem], BOTH);
    // Well before any timeout (SIMPLE keeps the default 60s).
    let quick = Duration::from_secs(5);

    // A handshake record that holds no valid handshake message.
    let mut garbage = vec![0x16, 0x03, 0x01, 0x00, 0x20];
    garbage.extend([0xFF; 0x20]);
    let mut socket = server.connect();
    socket.write_all(&garbage).expect("send");
    closed_between(socket, Instant::now(), Duration::ZERO, quick)
        .expect("a garbage handshake record");

    // A record header announcing more than TLS allows.
    let mut socket = server.connect();
    socket
        .write_all(&[0x16, 0x03, 0x03, 0xFF, 0xFF, 0x01, 0x02])
        .expect("send");
    closed_between(socket, Instant::now(), Duration::ZERO, quick).expect("an oversized record");

    // After a good handshake, an application record that does not decrypt.
    let mut tls = connect(server.port, &config, "localhost");
    let mut record = vec![0x17, 0x03, 0x03, 0x00, 0x40];
    record.extend([0xA5; 0x40]);
    tls.sock.write_all(&record).expect("send");
    closed_between(tls.sock, Instant::now(), Duration::ZERO, quick)
        .expect("a record that does not decrypt");

    // A few of each at once; then the server still answers.
    let clients: Vec<_> = (0..20)
        .map(|i| {
            let mut socket = server.connect();
            socket
                .write_all(if i % 2 == 0 { &garbage } else { &record })
                .expect("send");
            socket
        })
        .collect();
    for socket in clients {
        closed_between(socket, Instant::now(), Duration::ZERO, quick).expect("garbage client");
    }
    let response = fetch(server.port, &config, "localhost", "/");
    assert_eq!(
        (response.status, response.text().as_str()),
        (200, "hello over tls")
    );
}

// --- 7. many clients at once --------------------------------------------------------

#[test]
fn two_hundred_concurrent_tls_clients() {
    const CLIENTS: usize = 200;
    let (server, pem) = start_tls(SIMPLE, &[]);
    let config = client(&[&pem], BOTH);
    let port = server.port;
    let barrier = Arc::new(Barrier::new(CLIENTS));
    let threads: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let config = Arc::clone(&config);
            let barrier = Arc::clone(&barrier);
            thread::spawn(move || -> Result<(), String> {
                barrier.wait();
                let mut tls = handshake(port, &config, "localhost")
                    .map_err(|e| format!("client {i}: handshake: {e}"))?;
                tls.write_all(get_close("/", "localhost").as_bytes())
                    .map_err(|e| format!("client {i}: send: {e}"))?;
                let response = Reader::new(tls).response();
                if response.status != 200 || response.body != b"hello over tls" {
                    return Err(format!(
                        "client {i}: {} {}",
                        response.status,
                        response.text()
                    ));
                }
                Ok(())
            })
        })
        .collect();
    let failures: Vec<String> = threads
        .into_iter()
        .filter_map(|t| t.join().unwrap_or_else(|_| Err("panicked".into())).err())
        .collect();
    assert!(
        failures.is_empty(),
        "{} failed: {failures:?}",
        failures.len()
    );
}

// --- 8. what the application sees ---------------------------------------------------

const APPS: &str = r#"
server {
    listen 127.0.0.1:{port} ssl;
    server_name localhost;
    ssl_certificate {dir}/tls/localhost.crt;
    ssl_certificate_key {dir}/tls/localhost.key;
    root {dir}/www;
    location /cgi-bin/ {
        cgi .sh /bin/sh;
    }
    location /app/ {
        proxy_pass http://127.0.0.1:{upstream};
    }
    location /where {
        return 200 "$scheme://$host$request_uri";
    }
}
"#;

const ENV_SCRIPT: &[u8] = b"printf 'Content-Type: text/plain\\r\\n\\r\\n'\nenv\n";

/// An upstream that answers one request and hands its head over.
fn one_shot_upstream() -> (u16, mpsc::Receiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind upstream");
    let port = listener.local_addr().expect("addr").port();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let Ok((mut socket, _)) = listener.accept() else {
            return;
        };
        socket.set_read_timeout(Some(TIMEOUT)).expect("timeout");
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            match socket.read(&mut byte) {
                Ok(1) => head.push(byte[0]),
                _ => return,
            }
        }
        let _ = socket.write_all(
            b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\nConnection: close\r\n\r\nupstream",
        );
        let _ = tx.send(String::from_utf8_lossy(&head).into_owned());
    });
    (port, rx)
}

#[test]
fn cgi_proxy_and_return_know_the_scheme() {
    let (upstream, heads) = one_shot_upstream();
    let (server, pem) = start_tls(
        &APPS.replace("{upstream}", &upstream.to_string()),
        &[("www/cgi-bin/env.sh", ENV_SCRIPT)],
    );
    let config = client(&[&pem], BOTH);

    let cgi = fetch(server.port, &config, "localhost", "/cgi-bin/env.sh");
    assert_eq!(cgi.status, 200, "{}", cgi.text());
    let env = cgi.text();
    assert!(env.lines().any(|l| l == "HTTPS=on"), "{env}");
    assert!(env.lines().any(|l| l == "REQUEST_SCHEME=https"), "{env}");

    let proxied = fetch(server.port, &config, "localhost", "/app/x?y=1");
    assert_eq!((proxied.status, proxied.text().as_str()), (200, "upstream"));
    let head = heads
        .recv_timeout(TIMEOUT)
        .expect("the upstream saw a request");
    assert!(head.starts_with("GET /app/x?y=1 HTTP/1.1\r\n"), "{head}");
    assert!(
        head.lines()
            .any(|l| l.eq_ignore_ascii_case("x-forwarded-proto: https")),
        "{head}"
    );

    let here = fetch(server.port, &config, "localhost", "/where?q=1");
    assert_eq!(
        (here.status, here.text().as_str()),
        (200, "https://localhost/where?q=1")
    );
}

#[test]
fn return_301_to_https_from_a_plain_server() {
    let server = start(
        "server { listen 127.0.0.1:{port}; server_name localhost; return 301 https://$host$request_uri; }",
        &[],
    );
    let response = server.send(
        b"GET /a/b?x=1&y=%20 HTTP/1.1\r\nHost: Example.test:8080\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(response.status, 301);
    assert_eq!(
        response.header("location"),
        Some("https://example.test/a/b?x=1&y=%20")
    );
}

// --- 9. certificates reload on SIGHUP -------------------------------------------------

#[test]
fn sighup_reloads_certificates_and_open_connections_keep_theirs() {
    let (server, old) = start_tls(SIMPLE, &[]);
    let config = client(&[&old], BOTH);
    let mut before = Reader::new(connect(server.port, &config, "localhost"));
    before
        .stream
        .write_all(get("/", "localhost").as_bytes())
        .expect("send");
    assert_eq!(before.response().status, 200);

    let new = certs::self_signed(&["localhost", "127.0.0.1"]);
    assert_ne!(der(&new), der(&old));
    fs::write(server.path("tls/localhost.crt"), &new.cert).expect("new certificate");
    fs::write(server.path("tls/localhost.key"), &new.key).expect("new key");
    server.signal(libc::SIGHUP);

    let deadline = Instant::now() + TIMEOUT;
    let any = any_cert_client(true);
    loop {
        let tls = connect(server.port, &any, "localhost");
        if peer_cert(&tls) == der(&new) {
            break;
        }
        assert_eq!(peer_cert(&tls), der(&old), "neither certificate");
        assert!(Instant::now() < deadline, "still the old certificate");
        thread::sleep(Duration::from_millis(50));
    }
    // A verifying client that trusts only the new certificate gets in.
    let response = fetch(server.port, &client(&[&new], BOTH), "localhost", "/");
    assert_eq!(response.status, 200);

    // The connection from before the reload still works, with its
    // certificate.
    assert_eq!(peer_cert(&before.stream), der(&old));
    before
        .stream
        .write_all(get_close("/", "localhost").as_bytes())
        .expect("send");
    let response = before.response();
    assert_eq!(
        (response.status, response.text().as_str()),
        (200, "hello over tls")
    );
}

// --- 10. check ------------------------------------------------------------------

/// `webserv check` on `config` (written to a temp dir with `files`):
/// exit code and stderr, with the config's path replaced by `CONF`.
fn check(config: &str, files: &[(&str, &[u8])]) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    fs::create_dir_all(dir.path().join("www")).expect("www");
    for (path, content) in files {
        fs::write(dir.path().join(path), content).expect("write");
    }
    let path = dir.path().join("tls.conf");
    fs::write(&path, config).expect("write config");
    let out = Command::new(common::binary())
        .arg("check")
        .arg(&path)
        .output()
        .expect("run check");
    let stderr =
        String::from_utf8_lossy(&out.stderr).replace(path.to_str().expect("UTF-8"), "CONF");
    (out.status.code(), stderr)
}

/// A server at line 2 whose `ssl_certificate` is at 5:21 and whose
/// `ssl_certificate_key` is at 6:25.
fn tls_server(cert: &str, key: &str) -> String {
    format!(
        "\nserver {{\n    listen 127.0.0.1:8443 ssl;\n    server_name localhost;\n    ssl_certificate {cert};\n    ssl_certificate_key {key};\n    root www;\n}}\n"
    )
}

fn files(cert: &Pem) -> [(&'static str, &[u8]); 2] {
    [
        ("c.crt", cert.cert.as_bytes()),
        ("c.key", cert.key.as_bytes()),
    ]
}

#[test]
fn check_reports_an_ssl_listen_without_certificate() {
    let (code, stderr) = check(
        "server {\n    listen 127.0.0.1:8443 ssl;\n    root www;\n}\n",
        &[],
    );
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains(
            "CONF:2:27: error: \"ssl\" listen address without \"ssl_certificate\" and \"ssl_certificate_key\" in its server"
        ),
        "{stderr}"
    );

    let pem = certs::self_signed(&["localhost"]);
    let (code, stderr) = check(
        "server {\n    listen 127.0.0.1:8443 ssl;\n    ssl_certificate c.crt;\n    root www;\n}\n",
        &files(&pem),
    );
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("CONF:3:5: error: \"ssl_certificate\" without \"ssl_certificate_key\""),
        "{stderr}"
    );
}

#[test]
fn check_reports_unreadable_and_unparsable_certificates() {
    let pem = certs::self_signed(&["localhost"]);
    let (code, stderr) = check(&tls_server("missing.crt", "c.key"), &files(&pem));
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("CONF:5:21: error: cannot read certificate \"missing.crt\""),
        "{stderr}"
    );

    let (code, stderr) = check(&tls_server("c.crt", "missing.key"), &files(&pem));
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("CONF:6:25: error: cannot read key \"missing.key\""),
        "{stderr}"
    );

    let bad: &[u8] =
        b"-----BEGIN CERTIFICATE-----\nnot base64 at all!\n-----END CERTIFICATE-----\n";
    let mut with_bad = files(&pem).to_vec();
    with_bad.push(("bad.crt", bad));
    with_bad.push(("none.crt", b"just text\n"));
    let (code, stderr) = check(&tls_server("bad.crt", "c.key"), &with_bad);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("CONF:5:21: error: unparsable certificate \"bad.crt\""),
        "{stderr}"
    );
    let (code, stderr) = check(&tls_server("none.crt", "c.key"), &with_bad);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("CONF:5:21: error: no PEM certificate in \"none.crt\""),
        "{stderr}"
    );

    // A key file with no key in it.
    let (code, stderr) = check(&tls_server("c.crt", "c.crt"), &files(&pem));
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("CONF:6:25: error: no usable PEM private key"),
        "{stderr}"
    );
}

#[test]
fn check_reports_a_key_that_does_not_match() {
    let one = certs::self_signed(&["localhost"]);
    let other = certs::self_signed(&["localhost"]);
    let (code, stderr) = check(
        &tls_server("c.crt", "other.key"),
        &[
            ("c.crt", one.cert.as_bytes()),
            ("other.key", other.key.as_bytes()),
        ],
    );
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains(
            "CONF:6:25: error: the key in \"other.key\" does not match the certificate in \"c.crt\""
        ),
        "{stderr}"
    );
}

#[test]
fn check_reports_expired_and_expiring_certificates() {
    let expired = certs::self_signed_between(&["localhost"], (2020, 1, 1), (2021, 1, 1));
    let (code, stderr) = check(&tls_server("c.crt", "c.key"), &files(&expired));
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("CONF:5:21: error: certificate \"c.crt\" expired on"),
        "{stderr}"
    );

    let soon = chrono::Utc::now().date_naive() + chrono::Days::new(10);
    let (y, m, d) = {
        use chrono::Datelike;
        (soon.year(), soon.month() as u8, soon.day() as u8)
    };
    let expiring = certs::self_signed_between(&["localhost"], (2020, 1, 1), (y, m, d));
    let (code, stderr) = check(&tls_server("c.crt", "c.key"), &files(&expiring));
    assert_eq!(code, Some(0), "a warning only: {stderr}");
    assert!(
        stderr.contains("CONF:5:21: warning: certificate \"c.crt\" expires on")
            && stderr.contains("within 30 days"),
        "{stderr}"
    );
    assert!(!stderr.contains("error"), "{stderr}");
}

#[test]
fn check_warns_about_names_the_certificate_does_not_cover() {
    let pem = certs::self_signed(&["other.test", "*.example.test"]);
    let config = tls_server("c.crt", "c.key").replace(
        "server_name localhost;",
        "server_name localhost www.example.test;",
    );
    let (code, stderr) = check(&config, &files(&pem));
    assert_eq!(code, Some(0), "a warning only: {stderr}");
    assert!(
        stderr.contains(
            "CONF:5:21: warning: certificate \"c.crt\" does not cover server_name localhost (it names other.test, *.example.test)"
        ),
        "{stderr}"
    );
    assert!(!stderr.contains("error"), "{stderr}");

    // Covered names: no diagnostic at all. Nor for nginx's catch-all `_`
    // and `""` (requests without Host): no client asks for them, no
    // certificate can name them.
    let pem = certs::self_signed(&["localhost"]);
    for names in ["localhost", "localhost _", "_", "\"\" localhost"] {
        let config = tls_server("c.crt", "c.key")
            .replace("server_name localhost;", &format!("server_name {names};"));
        let (code, stderr) = check(&config, &files(&pem));
        assert_eq!(code, Some(0), "{names}: {stderr}");
        assert!(
            !stderr.contains("warning") && !stderr.contains("error"),
            "{names}: {stderr}"
        );
    }
}

// --- 11. everything else over TLS -----------------------------------------------------

const BODIES: &str = r#"
server {
    listen 127.0.0.1:{port} ssl;
    server_name localhost;
    ssl_certificate {dir}/tls/localhost.crt;
    ssl_certificate_key {dir}/tls/localhost.key;
    root {dir}/www;
    client_header_timeout 3s;
    location /up/ {
        alias {dir}/store/;
        upload_store {dir}/store;
        methods GET PUT POST;
    }
    location /small/ {
        upload_store {dir}/store;
        methods PUT;
        client_max_body_size 1k;
    }
    location /cgi-bin/ {
        cgi .sh /bin/sh;
    }
    location /app/ {
        proxy_pass http://127.0.0.1:{upstream};
    }
}
"#;

/// Reads a `len`-byte body of the pattern from `reader`, sleeping `stall`
/// once after the first MiB (the server must wait for the window, then
/// resume on its own).
fn read_pattern_body<S: Read>(reader: &mut Reader<S>, len: u64, stall: Duration) {
    let mut offset = 0u64;
    let mut want = vec![0u8; 64 * 1024];
    let mut stalled = false;
    while offset < len {
        if !stalled && offset >= 1 << 20 {
            thread::sleep(stall);
            stalled = true;
        }
        if reader.buf.is_empty() {
            assert!(reader.fill(), "closed at byte {offset} of {len}");
        }
        let n = reader
            .buf
            .len()
            .min(want.len())
            .min((len - offset) as usize);
        pattern(offset, &mut want[..n]);
        if reader.buf[..n] != want[..n] {
            // Say what came instead: a stray response head is readable.
            let first = (0..n).find(|&i| reader.buf[i] != want[i]).unwrap_or(0);
            let seen = &reader.buf[first..(first + 80).min(n)];
            panic!(
                "body differs at byte {}: {:?}",
                offset + first as u64,
                String::from_utf8_lossy(seen)
            );
        }
        reader.buf.drain(..n);
        offset += n as u64;
    }
}

/// An upstream that answers every request with `len` bytes of the pattern.
fn pattern_upstream(len: u64) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind upstream");
    let port = listener.local_addr().expect("addr").port();
    thread::spawn(move || {
        while let Ok((mut socket, _)) = listener.accept() {
            thread::spawn(move || {
                socket.set_read_timeout(Some(TIMEOUT)).expect("timeout");
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    match socket.read(&mut byte) {
                        Ok(1) => head.push(byte[0]),
                        _ => return,
                    }
                }
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n"
                );
                if socket.write_all(head.as_bytes()).is_err() {
                    return;
                }
                let _ = send_pattern(&mut socket, len);
            });
        }
    });
    port
}

fn bodies_server(upstream_len: u64) -> (Server, Arc<ClientConfig>) {
    let upstream = pattern_upstream(upstream_len);
    let (server, pem) = start_tls(&BODIES.replace("{upstream}", &upstream.to_string()), &[]);
    fs::create_dir_all(server.path("store")).expect("mkdir store");
    (server, client(&[&pem], BOTH))
}

#[test]
fn a_reader_that_stalls_gets_every_byte_of_files_cgi_and_proxy() {
    const LEN: u64 = 16 << 20;
    let (server, config) = bodies_server(LEN);
    write_pattern(&server.path("www/big.bin"), LEN);
    let script = format!(
        "printf 'Content-Type: application/octet-stream\\r\\n\\r\\n'\ncat '{}'\n",
        server.path("www/big.bin").display()
    );
    fs::create_dir_all(server.path("www/cgi-bin")).expect("mkdir");
    fs::write(server.path("www/cgi-bin/big.sh"), script).expect("script");

    for path in ["/big.bin", "/cgi-bin/big.sh", "/app/big"] {
        let mut tls = connect(server.port, &config, "localhost");
        tls.write_all(get_close(path, "localhost").as_bytes())
            .expect("send");
        let mut reader = Reader::new(tls);
        let head = String::from_utf8(reader.until(b"\r\n\r\n")).expect("head");
        assert!(head.starts_with("HTTP/1.1 200"), "{path}: {head}");
        if head.contains("Transfer-Encoding: chunked") {
            // CGI output without a length: dechunk into a fresh reader.
            let mut body = Vec::new();
            loop {
                let line = String::from_utf8(reader.until(b"\r\n")).expect("size line");
                let size = usize::from_str_radix(line.trim(), 16).expect("hex size");
                if size == 0 {
                    break;
                }
                body.extend(reader.exactly(size));
                assert_eq!(reader.exactly(2), b"\r\n");
                if body.len() == 1 << 20 {
                    thread::sleep(Duration::from_millis(1500));
                }
            }
            assert_eq!(body.len() as u64, LEN, "{path}");
            let mut want = vec![0u8; body.len()];
            pattern(0, &mut want);
            assert!(body == want, "{path}: body differs");
        } else {
            assert!(
                head.contains(&format!("Content-Length: {LEN}")),
                "{path}: {head}"
            );
            read_pattern_body(&mut reader, LEN, Duration::from_millis(1500));
        }
    }
}

#[test]
fn expect_100_continue_and_chunked_upload_over_tls() {
    let (server, config) = bodies_server(0);
    let mut reader = Reader::new(connect(server.port, &config, "localhost"));
    reader
        .stream
        .write_all(
            b"PUT /up/c.txt HTTP/1.1\r\nHost: localhost\r\nExpect: 100-continue\r\nTransfer-Encoding: chunked\r\n\r\n",
        )
        .expect("send head");
    let interim = reader.until(b"\r\n\r\n");
    assert_eq!(interim, b"HTTP/1.1 100 Continue");
    reader
        .stream
        .write_all(b"5\r\nhello\r\n7\r\n, world\r\n0\r\n\r\n")
        .expect("send body");
    let response = reader.response();
    assert_eq!(response.status, 201, "{}", response.text());
    assert_eq!(
        fs::read(server.path("store/c.txt")).expect("stored"),
        b"hello, world"
    );
    // The same connection carries on.
    reader
        .stream
        .write_all(get_close("/up/c.txt", "localhost").as_bytes())
        .expect("send");
    let response = reader.response();
    assert_eq!(
        (response.status, response.text().as_str()),
        (200, "hello, world")
    );
}

#[test]
fn a_head_in_one_byte_records_and_a_long_pipeline() {
    let (server, config) = bodies_server(0);
    fs::write(server.path("www/x.txt"), b"x").expect("file");

    // Every byte its own TLS record.
    let mut reader = Reader::new(connect(server.port, &config, "localhost"));
    for byte in get("/x.txt", "localhost").bytes() {
        reader.stream.write_all(&[byte]).expect("one byte");
    }
    let response = reader.response();
    assert_eq!((response.status, response.text().as_str()), (200, "x"));

    // More pipelined requests than the head limit (8k) holds at once.
    const COUNT: usize = 400;
    let mut batch = String::new();
    for i in 0..COUNT {
        batch.push_str(&get(&format!("/x.txt?{i}"), "localhost"));
    }
    assert!(batch.len() > 16 * 1024);
    reader.stream.write_all(batch.as_bytes()).expect("send");
    for i in 0..COUNT {
        let response = reader.response();
        assert_eq!(response.status, 200, "response {i}");
        assert_eq!(response.body, b"x", "response {i}");
    }
    reader
        .stream
        .write_all(get_close("/x.txt", "localhost").as_bytes())
        .expect("send");
    assert_eq!(reader.response().status, 200);
}

#[test]
fn errors_over_tls_408_and_413_are_delivered_before_the_close() {
    let (server, config) = bodies_server(0);

    // A head that never ends: 408 at client_header_timeout, over TLS.
    let mut reader = Reader::new(connect(server.port, &config, "localhost"));
    reader
        .stream
        .write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n")
        .expect("send");
    let started = Instant::now();
    let response = reader.response();
    assert_eq!(response.status, 408);
    assert!(started.elapsed() < Duration::from_secs(8));
    assert!(reader.closes_within(TIMEOUT));

    // A body over the limit while the client keeps sending: 413, then the
    // server lingers so that the client reads the answer, not a reset.
    let mut tls = connect(server.port, &config, "localhost");
    tls.write_all(b"PUT /small/x HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1048576\r\n\r\n")
        .expect("send head");
    let chunk = vec![b'z'; 64 * 1024];
    for _ in 0..4 {
        if tls.write_all(&chunk).is_err() {
            break;
        }
    }
    let mut reader = Reader::new(tls);
    let response = reader.response();
    assert_eq!(response.status, 413);
    assert_eq!(response.header("connection"), Some("close"));
    assert!(reader.closes_within(TIMEOUT));
    assert!(
        !server.path("store/x").exists(),
        "a refused body must not be stored"
    );
}

#[test]
fn close_notify_both_ways() {
    let (server, pem) = start_tls(SIMPLE, &[]);
    let config = client(&[&pem], BOTH);

    // The server ends a `Connection: close` exchange with close_notify: a
    // clean end of stream, not a truncation.
    let mut tls = connect(server.port, &config, "localhost");
    tls.write_all(get_close("/", "localhost").as_bytes())
        .expect("send");
    let mut reader = Reader::new(tls);
    assert_eq!(reader.response().status, 200);
    let mut rest = Vec::new();
    let end = reader.stream.read_to_end(&mut rest);
    assert!(
        matches!(end, Ok(0)) && rest.is_empty(),
        "expected close_notify, got {end:?} after {rest:?}"
    );

    // A client that sends its request, then close_notify, still gets the
    // answer (as a half-closed TCP client would).
    let mut tls = connect(server.port, &config, "localhost");
    tls.write_all(get("/", "localhost").as_bytes())
        .expect("send");
    tls.conn.send_close_notify();
    tls.flush().expect("close_notify");
    let mut reader = Reader::new(tls);
    let response = reader.response();
    assert_eq!(
        (response.status, response.text().as_str()),
        (200, "hello over tls")
    );
    assert!(reader.closes_within(TIMEOUT));
}

#[test]
fn sighup_with_a_broken_certificate_keeps_the_old_one() {
    let (server, pem) = start_tls(SIMPLE, &[]);
    let config = client(&[&pem], BOTH);
    assert_eq!(fetch(server.port, &config, "localhost", "/").status, 200);
    let other = certs::self_signed(&["localhost"]);
    // A key that does not match: the reload must be refused.
    fs::write(server.path("tls/localhost.key"), &other.key).expect("wrong key");
    server.signal(libc::SIGHUP);
    thread::sleep(Duration::from_millis(500));
    for _ in 0..3 {
        let response = fetch(server.port, &config, "localhost", "/");
        assert_eq!(
            (response.status, response.text().as_str()),
            (200, "hello over tls")
        );
    }
}

/// An upstream that reads each request body slowly (so the server must
/// hold the client back), then answers with the byte count and whether
/// the body was the pattern.
fn slow_reading_upstream() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind upstream");
    let port = listener.local_addr().expect("addr").port();
    thread::spawn(move || {
        while let Ok((mut socket, _)) = listener.accept() {
            thread::spawn(move || {
                socket.set_read_timeout(Some(TIMEOUT)).expect("timeout");
                let mut reader = Reader::new(&mut socket);
                let head = String::from_utf8(reader.until(b"\r\n\r\n")).expect("head");
                let len: u64 = head
                    .lines()
                    .find_map(|l| {
                        let (name, value) = l.split_once(':')?;
                        name.eq_ignore_ascii_case("content-length")
                            .then(|| value.trim().parse().ok())?
                    })
                    .expect("a Content-Length upstream");
                thread::sleep(Duration::from_millis(800));
                let mut offset = 0u64;
                let mut same = true;
                let mut want = vec![0u8; 64 * 1024];
                while offset < len {
                    if reader.buf.is_empty() && !reader.fill() {
                        break;
                    }
                    let n = reader
                        .buf
                        .len()
                        .min(want.len())
                        .min((len - offset) as usize);
                    pattern(offset, &mut want[..n]);
                    same &= reader.buf[..n] == want[..n];
                    reader.buf.drain(..n);
                    offset += n as u64;
                    thread::sleep(Duration::from_micros(200));
                }
                let body = format!("{offset} {same}");
                let answer = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(answer.as_bytes());
            });
        }
    });
    port
}

const SINKS: &str = r#"
server {
    listen 127.0.0.1:{port} ssl;
    server_name localhost;
    ssl_certificate {dir}/tls/localhost.crt;
    ssl_certificate_key {dir}/tls/localhost.key;
    root {dir}/www;
    client_max_body_size 0;
    keepalive_timeout 500ms;
    location /cgi-bin/ {
        cgi .sh /bin/sh;
        methods GET POST;
    }
    location /app/ {
        proxy_pass http://127.0.0.1:{upstream};
        methods GET POST;
    }
}
"#;

/// A script that reads stdin late, then says how many bytes and which.
const COUNT_SH: &[u8] =
    b"sleep 1\nprintf 'Content-Type: text/plain\\r\\n\\r\\n'\ncksum | tr -s ' ' ' '\n";

#[test]
fn request_bodies_held_back_by_a_slow_cgi_and_a_slow_upstream() {
    const LEN: u64 = 24 << 20;
    let upstream = slow_reading_upstream();
    let (server, pem) = start_tls(
        &SINKS.replace("{upstream}", &upstream.to_string()),
        &[("www/cgi-bin/count.sh", COUNT_SH)],
    );
    let config = client(&[&pem], BOTH);
    write_pattern(&server.path("body.bin"), LEN);
    let expected = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "cksum < '{}' | tr -s ' ' ' '",
            server.path("body.bin").display()
        ))
        .output()
        .expect("cksum");
    let expected = String::from_utf8(expected.stdout).expect("cksum output");

    for (path, want) in [
        ("/cgi-bin/count.sh", expected.clone()),
        ("/app/sink", format!("{LEN} true")),
    ] {
        let mut tls = connect(server.port, &config, "localhost");
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: {LEN}\r\nConnection: close\r\n\r\n"
        );
        tls.write_all(head.as_bytes()).expect("send head");
        send_pattern(&mut tls, LEN).unwrap_or_else(|err| panic!("{path}: send: {err}"));
        let response = Reader::new(tls).response();
        assert_eq!(response.status, 200, "{path}: {}", response.text());
        assert_eq!(response.text().trim(), want.trim(), "{path}");
    }
}

#[test]
fn an_idle_tls_connection_closes_at_keepalive_timeout() {
    let (server, pem) = start_tls(&SINKS.replace("{upstream}", "9"), &[]);
    let mut reader = Reader::new(connect(server.port, &client(&[&pem], BOTH), "localhost"));
    // The idle time counts from the response, which is after `sent`.
    let sent = Instant::now();
    reader
        .stream
        .write_all(get("/", "localhost").as_bytes())
        .expect("send");
    assert_eq!(reader.response().status, 200);
    assert!(reader.closes_within(TIMEOUT), "still open");
    let idle = sent.elapsed();
    assert!(
        idle >= Duration::from_millis(450) && idle < Duration::from_secs(5),
        "closed {idle:?} after the request"
    );
}

#[test]
fn sigterm_lets_a_tls_download_in_flight_finish() {
    const LEN: u64 = 8 << 20;
    let (mut server, pem) = start_tls(SIMPLE, &[]);
    write_pattern(&server.path("www/big.bin"), LEN);
    let config = client(&[&pem], BOTH);
    let idle = connect(server.port, &config, "localhost");
    let mut tls = connect(server.port, &config, "localhost");
    tls.write_all(get("/big.bin", "localhost").as_bytes())
        .expect("send");
    let mut reader = Reader::new(tls);
    let head = String::from_utf8(reader.until(b"\r\n\r\n")).expect("head");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    server.signal(libc::SIGTERM);
    read_pattern_body(&mut reader, LEN, Duration::from_millis(300));
    assert!(
        reader.closes_within(TIMEOUT),
        "no close after the drained response"
    );
    assert_eq!(server.wait_exit(), Some(0));
    drop(idle);
}

/// Memory per idle TLS connection (SPEC §9.2: "stays small"): 400
/// connections that each made one request, then wait.
#[test]
fn idle_tls_connections_stay_small() {
    const CONNS: u64 = 400;
    let (server, pem) = start_tls(SIMPLE, &[]);
    let config = client(&[&pem], BOTH);
    // Warm up the allocator with a few exchanges first.
    for _ in 0..20 {
        assert_eq!(fetch(server.port, &config, "localhost", "/").status, 200);
    }
    let before = rss(server.pid());
    let mut idle = Vec::new();
    for _ in 0..CONNS {
        let mut reader = Reader::new(connect(server.port, &config, "localhost"));
        reader
            .stream
            .write_all(get("/", "localhost").as_bytes())
            .expect("send");
        assert_eq!(reader.response().status, 200);
        idle.push(reader);
    }
    thread::sleep(Duration::from_millis(200));
    let per_connection = rss(server.pid()).saturating_sub(before) / CONNS;
    eprintln!("idle TLS connection: {per_connection} bytes of server RSS");
    assert!(
        per_connection < 32 * 1024,
        "{per_connection} bytes per idle TLS connection"
    );
    // They are all still usable.
    for reader in idle.iter_mut().take(5) {
        reader
            .stream
            .write_all(get("/", "localhost").as_bytes())
            .expect("send");
        assert_eq!(reader.response().status, 200);
    }
}

#[test]
fn a_range_of_a_file_over_tls() {
    const LEN: u64 = 3 << 20;
    let (server, pem) = start_tls(SIMPLE, &[]);
    write_pattern(&server.path("www/big.bin"), LEN);
    let mut tls = connect(server.port, &client(&[&pem], BOTH), "localhost");
    tls.write_all(
        b"GET /big.bin HTTP/1.1\r\nHost: localhost\r\nRange: bytes=1000000-2099999\r\nConnection: close\r\n\r\n",
    )
    .expect("send");
    let response = Reader::new(tls).response();
    assert_eq!(response.status, 206);
    assert_eq!(
        response.header("content-range"),
        Some(format!("bytes 1000000-2099999/{LEN}").as_str())
    );
    let mut want = vec![0u8; 1_100_000];
    pattern(1_000_000, &mut want);
    assert!(response.body == want, "the range differs");
}

#[test]
fn sighup_turns_a_plain_address_into_tls_and_back() {
    let plain = "server {\n    listen 127.0.0.1:{port};\n    server_name localhost;\n    root {dir}/www;\n}\n";
    let (server, pem) = start_tls(plain, &[]);
    assert_eq!(server.get("/").status, 200);
    let port = server.port.to_string();
    let dir = server.dir.path().to_str().expect("UTF-8").to_string();
    let fill = |t: &str| t.replace("{port}", &port).replace("{dir}", &dir);
    fs::write(&server.config, fill(SIMPLE)).expect("ssl config");
    server.signal(libc::SIGHUP);
    let config = client(&[&pem], BOTH);
    let deadline = Instant::now() + TIMEOUT;
    while handshake(server.port, &config, "localhost").is_err() {
        assert!(Instant::now() < deadline, "no TLS after the reload");
        thread::sleep(Duration::from_millis(50));
    }
    let response = fetch(server.port, &config, "localhost", "/");
    assert_eq!(
        (response.status, response.text().as_str()),
        (200, "hello over tls")
    );

    fs::write(&server.config, fill(plain)).expect("plain config");
    server.signal(libc::SIGHUP);
    let deadline = Instant::now() + TIMEOUT;
    while handshake(server.port, &config, "localhost").is_ok() {
        assert!(Instant::now() < deadline, "still TLS after the reload");
        thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(server.get("/").text(), "hello over tls");
}

// --- 12. upgrade tunnels through an ssl listener (SPEC §9.3) -------------------------

const UPGRADE: &str = "GET /ws HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

const SWITCH: &[u8] = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";

/// A plain upstream for one connection: it reads the upgrade request,
/// answers 101, then runs `then` on the socket.
fn switching_upstream(then: impl FnOnce(TcpStream) + Send + 'static) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind upstream");
    let port = listener.local_addr().expect("addr").port();
    thread::spawn(move || {
        let Ok((mut socket, _)) = listener.accept() else {
            return;
        };
        socket.set_read_timeout(Some(TIMEOUT)).expect("timeout");
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            match socket.read(&mut byte) {
                Ok(1) => head.push(byte[0]),
                _ => return,
            }
        }
        if socket.write_all(SWITCH).is_ok() {
            then(socket);
        }
    });
    port
}

/// A TLS front proxying `/` to the plain `upstream`, and a client for it.
fn tunnel_server(upstream: u16) -> (Server, Arc<ClientConfig>) {
    let template = format!(
        "server {{\n    listen 127.0.0.1:{{port}} ssl;\n    ssl_certificate {{dir}}/tls/localhost.crt;\n    ssl_certificate_key {{dir}}/tls/localhost.key;\n    location / {{ proxy_pass http://127.0.0.1:{upstream}; }}\n}}\n"
    );
    let (server, pem) = start_tls(&template, &[]);
    (server, client(&[&pem], BOTH))
}

/// Opens the tunnel: the upgrade request over TLS, then the 101 head.
fn open_tunnel(server: &Server, config: &Arc<ClientConfig>) -> Reader<Tls> {
    let mut tls = connect(server.port, config, "localhost");
    tls.write_all(UPGRADE.as_bytes()).expect("send");
    let mut reader = Reader::new(tls);
    let head = String::from_utf8(reader.until(b"\r\n\r\n")).expect("UTF-8 head");
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    assert!(head.contains("\r\nUpgrade: websocket"), "{head}");
    reader
}

#[test]
fn a_tunnel_through_tls_echoes_both_ways_and_half_closes() {
    // Echoes every byte until the client's end, then says goodbye.
    let port = switching_upstream(|mut s| {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if s.write_all(&buf[..n]).is_err() {
                        return;
                    }
                }
            }
        }
        let _ = s.write_all(b"bye");
    });
    let (server, config) = tunnel_server(port);
    let mut reader = open_tunnel(&server, &config);
    for msg in [&b"\x81\x05hello"[..], b"x", &[7u8; 3000]] {
        reader.stream.write_all(msg).expect("send");
        assert_eq!(reader.exactly(msg.len()), msg);
    }
    // 8 MiB in 64 KiB pieces, each echoed before the next (many records,
    // partial writes on both sides).
    let mut piece = vec![0u8; 64 * 1024];
    for i in 0..128u64 {
        pattern(i * piece.len() as u64, &mut piece);
        reader.stream.write_all(&piece).expect("send");
        assert!(reader.exactly(piece.len()) == piece, "piece {i} differs");
    }
    // close_notify is the client's half-close: the upstream still talks.
    reader.stream.conn.send_close_notify();
    reader.stream.flush().expect("close_notify");
    assert_eq!(reader.exactly(3), b"bye");
    assert!(reader.closes_within(TIMEOUT));
}

#[test]
fn a_tunnel_through_tls_to_a_stalled_reader_resumes_with_bounded_memory() {
    const LEN: u64 = 32 << 20;
    let port = switching_upstream(|mut s| {
        let _ = send_pattern(&mut s, LEN);
    });
    let (server, config) = tunnel_server(port);
    let mut reader = open_tunnel(&server, &config);
    // Stalls after the first MiB: every window fills, then it must resume
    // on its own (encrypted bytes rustls held go out when the socket is
    // writable again).
    read_pattern_body(&mut reader, LEN, Duration::from_millis(1500));
    let rss = rss(server.pid());
    assert!(rss < 64 << 20, "front VmRSS {rss} bytes");
    assert!(reader.closes_within(TIMEOUT));
}

#[test]
fn the_tail_of_a_burst_reaches_a_stalled_tls_reader_while_the_upstream_waits() {
    // The upstream sends a burst, then waits (the tunnel stays open), so
    // the last bytes rustls took are not followed by any more: they must
    // still go out once the reader takes what is before them.
    const LEN: u64 = 4 << 20;
    let port = switching_upstream(|mut s| {
        if send_pattern(&mut s, LEN).is_err() {
            return;
        }
        // Until the client's end (bounded by the read timeout).
        let _ = s.read(&mut [0u8; 1]);
    });
    let (server, config) = tunnel_server(port);
    let mut reader = open_tunnel(&server, &config);
    read_pattern_body(&mut reader, LEN, Duration::from_millis(1500));
    reader.stream.conn.send_close_notify();
    reader.stream.flush().expect("close_notify");
    assert!(reader.closes_within(TIMEOUT));
}
