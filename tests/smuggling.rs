//! Request smuggling (SPEC §5, §9.6): the published vectors (CL.TE, TE.CL,
//! obfuscated `Transfer-Encoding`, conflicting lengths, bare line ends,
//! control bytes, obs-fold, chunk-size tricks) as one table. Each row is
//! sent, followed at once by a second request on the same connection, (a)
//! straight to webserv and (b) through webserv's proxy to an upstream
//! written here that records every request it receives.
//!
//! A rejected row gets exactly one response (its status, `Connection:
//! close`), then the connection closes: the pipelined request is never
//! answered, and the upstream receives nothing at all. An accepted row is
//! answered, the pipelined request too, and the upstream receives the body
//! the table says, framed its own way, then the pipelined request.
//!
//! `RELIABILITY.md` lists the same table; `vectors_are_listed_in_reliability_md`
//! keeps the two in step.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc::{self, Receiver, Sender};
use std::thread;
use std::time::Duration;

use common::{read_to_close, Server, TIMEOUT};

/// What a vector must get.
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// This status, `Connection: close`, nothing after; nothing upstream.
    Reject(u16),
    /// 200; the body as read (and as the upstream receives it).
    Accept(&'static [u8]),
}

use Expect::{Accept, Reject};

/// One vector: a name (listed in RELIABILITY.md), the request bytes, the
/// outcome. Every request targets `/s`; the pipelined one is `GET /next`.
type Vector = (&'static str, &'static [u8], Expect);

const VECTORS: &[Vector] = &[
    // --- Content-Length and Transfer-Encoding together -------------------
    (
        "CL.TE",
        b"POST /s HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nG",
        Reject(400),
    ),
    (
        "TE.CL",
        b"POST /s HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n8\r\nSMUGGLED\r\n0\r\n\r\n",
        Reject(400),
    ),
    (
        "TE.CL, HTTP/1.0",
        b"POST /s HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\nabc",
        Reject(400),
    ),
    // --- obfuscated Transfer-Encoding ------------------------------------
    (
        "TE: xchunked",
        b"POST /s HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n",
        Reject(400),
    ),
    (
        "TE: chunkedx",
        b"POST /s HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunkedx\r\n\r\n0\r\n\r\n",
        Reject(400),
    ),
    (
        "TE: chunked, identity",
        b"POST /s HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n",
        Reject(400),
    ),
    (
        "TE: identity, chunked",
        b"POST /s HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: identity, chunked\r\n\r\n0\r\n\r\n",
        Reject(400),
    ),
    (
        "TE: chunked, chunked",
        b"POST /s HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n",
        Reject(400),
    ),
    (
        "TE: chunked, (empty element)",
        b"POST /s HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked,\r\n\r\n0\r\n\r\n",
        Reject(400),
    ),
    (
        "TE: (empty)",
        b"POST /s HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: \r\n\r\n",
        Reject(400),
    ),
    (
        "two TE headers: chunked twice",
        b"POST /s HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        Reject(400),
    ),
    (
        "two TE headers: chunked, then x",
        b"POST /s HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: x\r\n\r\n0\r\n\r\n",
        Reject(400),
    ),
    (
        "TE: chunked;q=1 (a parameter)",
        b"POST /s HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked;q=1\r\n\r\n0\r\n\r\n",
        Reject(400),
    ),
    (
        "TE : chunked (space before the colon)",
        b"POST /s HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n",
        Reject(400),
    ),
    (
        "TE with a tab before the colon",
        b"POST /s HTTP/1.1\r\nHost: x\r\nTransfer-Encoding\t: chunked\r\n\r\n0\r\n\r\n",
        Reject(400),
    ),
    (
        "TE: vertical tab before chunked",
        b"POST /s HTTP/1.1\r\nHost: x\r\nTransfer-Encoding:\x0bchunked\r\n\r\n0\r\n\r\n",
        Reject(400),
    ),
    (
        "TE: form feed before chunked",
        b"POST /s HTTP/1.1\r\nHost: x\r\nTransfer-Encoding:\x0cchunked\r\n\r\n0\r\n\r\n",
        Reject(400),
    ),
    (
        "TE: chunked then a vertical tab",
        b"POST /s HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\x0b\r\n\r\n0\r\n\r\n",
        Reject(400),
    ),
    (
        "TE folded onto the next line (obs-fold)",
        b"POST /s HTTP/1.1\r\nHost: x\r\nTransfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n",
        Reject(400),
    ),
    (
        "TE as a continuation line (leading space)",
        b"POST /s HTTP/1.1\r\nHost: x\r\nX: y\r\n Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        Reject(400),
    ),
    (
        "TE as a continuation line (leading tab)",
        b"POST /s HTTP/1.1\r\nHost: x\r\nX: y\r\n\tTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        Reject(400),
    ),
    (
        "TE: gzip (a coding we do not decode)",
        b"POST /s HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n",
        Reject(501),
    ),
    (
        "TE: gzip, chunked",
        b"POST /s HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
        Reject(501),
    ),
    (
        "TE in HTTP/1.0",
        b"POST /s HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        Reject(400),
    ),
    // --- Content-Length --------------------------------------------------
    (
        "two CL headers that differ",
        b"POST /s HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
        Reject(400),
    ),
    (
        "CL: 5, 6",
        b"POST /s HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 6\r\n\r\nhello!",
        Reject(400),
    ),
    (
        "CL: +5",
        b"POST /s HTTP/1.1\r\nHost: x\r\nContent-Length: +5\r\n\r\nhello",
        Reject(400),
    ),
    (
        "CL: -1",
        b"POST /s HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
        Reject(400),
    ),
    (
        "CL: 0x5",
        b"POST /s HTTP/1.1\r\nHost: x\r\nContent-Length: 0x5\r\n\r\nhello",
        Reject(400),
    ),
    (
        "CL: 5 5 (space inside)",
        b"POST /s HTTP/1.1\r\nHost: x\r\nContent-Length: 5 5\r\n\r\nhello",
        Reject(400),
    ),
    (
        "CL: (empty)",
        b"POST /s HTTP/1.1\r\nHost: x\r\nContent-Length: \r\n\r\n",
        Reject(400),
    ),
    (
        "CL: 20 digits (overflows u64)",
        b"POST /s HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999\r\n\r\n",
        Reject(400),
    ),
    (
        "CL: 5 behind 20 leading zeros",
        b"POST /s HTTP/1.1\r\nHost: x\r\nContent-Length: 000000000000000000005\r\n\r\nhello",
        Reject(400),
    ),
    (
        "CL : 5 (space before the colon)",
        b"POST /s HTTP/1.1\r\nHost: x\r\nContent-Length : 5\r\n\r\nhello",
        Reject(400),
    ),
    (
        "CL: vertical tab before the digits",
        b"POST /s HTTP/1.1\r\nHost: x\r\nContent-Length:\x0b5\r\n\r\nhello",
        Reject(400),
    ),
    // --- line ends and control bytes in the head -------------------------
    (
        "bare CR inside a header value",
        b"POST /s HTTP/1.1\r\nHost: x\r\nX: a\rContent-Length: 5\r\n\r\nhello",
        Reject(400),
    ),
    (
        "bare CR as a line end",
        b"POST /s HTTP/1.1\rHost: x\rContent-Length: 5\r\r",
        Reject(400),
    ),
    (
        "NUL in a header name",
        b"POST /s HTTP/1.1\r\nHost: x\r\nTransfer\0Encoding: chunked\r\n\r\n0\r\n\r\n",
        Reject(400),
    ),
    (
        "NUL in a header value",
        b"POST /s HTTP/1.1\r\nHost: x\r\nX: a\0b\r\n\r\n",
        Reject(400),
    ),
    (
        "control byte 0x01 in a header value",
        b"POST /s HTTP/1.1\r\nHost: x\r\nX: a\x01b\r\n\r\n",
        Reject(400),
    ),
    (
        "DEL in a header value",
        b"POST /s HTTP/1.1\r\nHost: x\r\nX: a\x7fb\r\n\r\n",
        Reject(400),
    ),
    (
        "control byte 0x01 in a header name",
        b"POST /s HTTP/1.1\r\nHost: x\r\nX\x01Y: z\r\n\r\n",
        Reject(400),
    ),
    (
        "obs-fold of an ordinary header",
        b"POST /s HTTP/1.1\r\nHost: x\r\nX: a\r\n b\r\nContent-Length: 0\r\n\r\n",
        Reject(400),
    ),
    (
        "two Host headers",
        b"POST /s HTTP/1.1\r\nHost: x\r\nHost: y\r\nContent-Length: 0\r\n\r\n",
        Reject(400),
    ),
    // --- chunked framing -------------------------------------------------
    (
        "bare LF after a chunk size",
        b"POST /s HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n",
        Reject(400),
    ),
    (
        "bare LF after chunk data",
        b"POST /s HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\n0\r\n\r\n",
        Reject(400),
    ),
    (
        "bare LF after the last chunk",
        b"POST /s HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\n\r\n",
        Reject(400),
    ),
    (
        "bare LF as the final line end",
        b"POST /s HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\n",
        Reject(400),
    ),
    (
        "bare LF after a trailer field",
        b"POST /s HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nT: v\n\r\n",
        Reject(400),
    ),
    (
        "bare CR after a chunk size",
        b"POST /s HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\rhello\r\n0\r\n\r\n",
        Reject(400),
    ),
    (
        "chunk data longer than its size",
        b"POST /s HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello!\r\n0\r\n\r\n",
        Reject(400),
    ),
    (
        "chunk size of 18 hex digits (overflows u64)",
        b"POST /s HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\nhello\r\n0\r\n\r\n",
        Reject(400),
    ),
    (
        "chunk size 0x5",
        b"POST /s HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n",
        Reject(400),
    ),
    (
        "chunk size -5",
        b"POST /s HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n-5\r\nhello\r\n0\r\n\r\n",
        Reject(400),
    ),
    (
        "chunk size +5",
        b"POST /s HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n+5\r\nhello\r\n0\r\n\r\n",
        Reject(400),
    ),
    (
        "chunk size after a space",
        b"POST /s HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n 5\r\nhello\r\n0\r\n\r\n",
        Reject(400),
    ),
    (
        "empty chunk size",
        b"POST /s HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n\r\nhello\r\n0\r\n\r\n",
        Reject(400),
    ),
    (
        "chunk extension of 5000 bytes",
        LONG_EXTENSION,
        Reject(400),
    ),
    (
        "control byte in a chunk extension",
        b"POST /s HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5;a=\x01\r\nhello\r\n0\r\n\r\n",
        Reject(400),
    ),
    // --- accepted, and how ----------------------------------------------
    (
        "TE: chunked with a leading space",
        b"POST /s HTTP/1.1\r\nHost: x\r\nTransfer-Encoding:  chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        Accept(b"hello"),
    ),
    (
        "TE: chunked with a leading tab",
        b"POST /s HTTP/1.1\r\nHost: x\r\nTransfer-Encoding:\tchunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        Accept(b"hello"),
    ),
    (
        "Transfer-encoding: CHUNKED (case)",
        b"POST /s HTTP/1.1\r\nHost: x\r\nTransfer-encoding: CHUNKED\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        Accept(b"hello"),
    ),
    (
        "two CL headers that agree",
        b"POST /s HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
        Accept(b"hello"),
    ),
    (
        "CL: 5, 5",
        b"POST /s HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 5\r\n\r\nhello",
        Accept(b"hello"),
    ),
    (
        "CL: 05 (a leading zero)",
        b"POST /s HTTP/1.1\r\nHost: x\r\nContent-Length: 05\r\n\r\nhello",
        Accept(b"hello"),
    ),
    (
        "bare LF line ends in the head",
        b"POST /s HTTP/1.1\nHost: x\nContent-Length: 5\n\nhello",
        Accept(b"hello"),
    ),
    (
        "chunk size with leading zeros",
        b"POST /s HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n00000000000000000005\r\nhello\r\n0\r\n\r\n",
        Accept(b"hello"),
    ),
    (
        "chunk extension and trailer (dropped)",
        b"POST /s HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5;a=b\r\nhello\r\n0\r\nX-T: v\r\n\r\n",
        Accept(b"hello"),
    ),
    (
        "Transfer_Encoding: chunked beside CL (dropped)",
        b"POST /s HTTP/1.1\r\nHost: x\r\nTransfer_Encoding: chunked\r\nContent-Length: 5\r\n\r\nhello",
        Accept(b"hello"),
    ),
    (
        "Content_Length beside TE (dropped)",
        b"POST /s HTTP/1.1\r\nHost: x\r\nContent_Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        Accept(b"hello"),
    ),
];

const LONG_EXTENSION: &[u8] = {
    const HEAD: &[u8] = b"POST /s HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5;a=";
    const TAIL: &[u8] = b"\r\nhello\r\n0\r\n\r\n";
    const N: usize = 5000;
    const LEN: usize = HEAD.len() + N + TAIL.len();
    const BYTES: [u8; LEN] = {
        let mut out = [b'b'; LEN];
        let mut i = 0;
        while i < HEAD.len() {
            out[i] = HEAD[i];
            i += 1;
        }
        let mut j = 0;
        while j < TAIL.len() {
            out[HEAD.len() + N + j] = TAIL[j];
            j += 1;
        }
        out
    };
    &BYTES
};

const NEXT: &[u8] = b"GET /next HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";

/// One response read from raw bytes: status, whether it says `Connection:
/// close`, and the bytes after it.
fn split_response(raw: &[u8]) -> Option<(u16, bool, &[u8])> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = std::str::from_utf8(&raw[..end]).ok()?;
    let status = head.split(' ').nth(1)?.parse().ok()?;
    let mut length = 0;
    let mut close = false;
    for line in head.split("\r\n").skip(1) {
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().ok()?;
            }
            close |= name.eq_ignore_ascii_case("connection") && value.trim() == "close";
        }
    }
    Some((status, close, raw.get(end + length..)?))
}

/// Sends `vector` and the pipelined `GET /next` in one write; checks what
/// comes back until the server closes.
fn check_answer(port: u16, (name, bytes, expect): &Vector) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream.set_read_timeout(Some(TIMEOUT)).expect("timeout");
    let mut request = bytes.to_vec();
    request.extend_from_slice(NEXT);
    stream.write_all(&request).expect("send");
    let raw = read_to_close(&mut stream);
    let text = String::from_utf8_lossy(&raw);
    let (status, close, rest) =
        split_response(&raw).unwrap_or_else(|| panic!("{name}: no response: {text:?}"));
    match expect {
        Reject(expected) => {
            assert_eq!(status, *expected, "{name}: {text}");
            assert!(close, "{name}: no Connection: close: {text}");
            assert!(
                rest.is_empty(),
                "{name}: the next request was answered: {text}"
            );
        }
        Accept(_) => {
            assert_eq!(status, 200, "{name}: {text}");
            let (next, _, rest) = split_response(rest)
                .unwrap_or_else(|| panic!("{name}: the next request was not answered: {text}"));
            assert_eq!(next, 200, "{name}: {text}");
            assert!(rest.is_empty(), "{name}: more than two responses: {text}");
        }
    }
}

#[test]
fn every_vector_straight_to_the_server() {
    let s = Server::start(
        r#"
server {
    listen 127.0.0.1:{port};
    server_name x;
    client_max_body_size 1m;
    location / { methods GET POST; return 200 "ok"; }
}
"#,
        &[],
    );
    for vector in VECTORS {
        check_answer(s.port, vector);
    }
}

// --- an upstream that records everything ---------------------------------

/// What the upstream read: a request (head, de-chunked body), or bytes it
/// could not frame.
enum Seen {
    Request { head: String, body: Vec<u8> },
    Garbage(Vec<u8>),
}

impl Seen {
    /// For a failure message.
    fn describe(&self) -> String {
        match self {
            Seen::Request { head, body } => format!("{head}{}", String::from_utf8_lossy(body)),
            Seen::Garbage(bytes) => format!("unframed bytes {:?}", String::from_utf8_lossy(bytes)),
        }
    }
}

/// An upstream on a free port: every connection is read strictly, each
/// request recorded and answered `200 ok`.
fn recording_upstream() -> (u16, Receiver<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { break };
            let tx = tx.clone();
            thread::spawn(move || record(stream, &tx));
        }
    });
    (port, rx)
}

fn record(mut stream: TcpStream, tx: &Sender<Seen>) {
    let _ = stream.set_read_timeout(Some(TIMEOUT));
    let mut buf = Vec::new();
    loop {
        match read_one(&mut stream, &mut buf) {
            Some(Ok(seen)) => {
                let _ = tx.send(seen);
                if stream
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                    .is_err()
                {
                    return;
                }
            }
            Some(Err(garbage)) => {
                let _ = tx.send(Seen::Garbage(garbage));
                return;
            }
            None => {
                if !buf.is_empty() {
                    let _ = tx.send(Seen::Garbage(buf));
                }
                return;
            }
        }
    }
}

fn fill(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<()> {
    let mut chunk = [0u8; 8192];
    match stream.read(&mut chunk) {
        Ok(0) | Err(_) => None,
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            Some(())
        }
    }
}

/// One request, read strictly (CRLF only, one framing); `None` at the end
/// of the input, `Err` with the bytes when they are not a request.
fn read_one(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<Result<Seen, Vec<u8>>> {
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        fill(stream, buf)?;
    };
    let Ok(head) = String::from_utf8(buf[..head_end].to_vec()) else {
        return Some(Err(std::mem::take(buf)));
    };
    buf.drain(..head_end);
    let values = |name: &str| -> Vec<String> {
        head.split("\r\n")
            .skip(1)
            .filter_map(|l| l.split_once(':'))
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim().to_owned())
            .collect()
    };
    let lengths = values("content-length");
    let codings = values("transfer-encoding");
    let body = match (lengths.as_slice(), codings.as_slice()) {
        ([], []) => Vec::new(),
        ([len], []) => {
            let Ok(len) = len.parse::<usize>() else {
                return Some(Err(head.into_bytes()));
            };
            while buf.len() < len {
                fill(stream, buf)?;
            }
            buf.drain(..len).collect()
        }
        ([], [coding]) if coding == "chunked" => match dechunk(stream, buf) {
            Some(Ok(body)) => body,
            Some(Err(())) => return Some(Err(head.into_bytes())),
            None => return None,
        },
        _ => return Some(Err(head.into_bytes())),
    };
    Some(Ok(Seen::Request { head, body }))
}

/// A chunked body, strictly: hex size, CRLF, data, CRLF; no trailers.
fn dechunk(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<Result<Vec<u8>, ()>> {
    let mut body = Vec::new();
    loop {
        let line_end = loop {
            if let Some(i) = buf.windows(2).position(|w| w == b"\r\n") {
                break i;
            }
            fill(stream, buf)?;
        };
        let Some(size) = std::str::from_utf8(&buf[..line_end])
            .ok()
            .and_then(|s| usize::from_str_radix(s, 16).ok())
        else {
            return Some(Err(()));
        };
        buf.drain(..line_end + 2);
        while buf.len() < size + 2 {
            fill(stream, buf)?;
        }
        if buf[size..size + 2] != *b"\r\n" {
            return Some(Err(()));
        }
        body.extend(buf.drain(..size));
        buf.drain(..2);
        if size == 0 {
            return Some(Ok(body));
        }
    }
}

/// The next thing the upstream saw, if any arrives within `wait`.
fn seen_within(rx: &Receiver<Seen>, wait: Duration) -> Option<Seen> {
    rx.recv_timeout(wait).ok()
}

#[test]
fn every_vector_through_the_proxy() {
    let (upstream, seen) = recording_upstream();
    let s = Server::start(
        &r#"
server {
    listen 127.0.0.1:{port};
    server_name x;
    client_max_body_size 1m;
    proxy_read_timeout 5s;
    location / { proxy_pass http://127.0.0.1:UPSTREAM; }
}
"#
        .replace("UPSTREAM", &upstream.to_string()),
        &[],
    );
    for vector @ (name, _, expect) in VECTORS {
        check_answer(s.port, vector);
        match expect {
            // Anything forwarded would have been before the answer; the
            // accepted rows and the barrier below catch a late one.
            Reject(_) => {
                if let Ok(extra) = seen.try_recv() {
                    panic!("{name}: the upstream received {}", extra.describe());
                }
            }
            Accept(body) => {
                let got = seen_within(&seen, TIMEOUT);
                match got {
                    Some(Seen::Request { head, body: got }) => {
                        assert!(head.starts_with("POST /s HTTP/1.1\r\n"), "{name}: {head}");
                        assert_eq!(got, *body, "{name}: {head}");
                        assert!(!head.contains('_'), "{name}: a `_` header went up: {head}");
                    }
                    other => panic!("{name}: the upstream saw {:?}", other.map(|s| s.describe())),
                }
                match seen_within(&seen, TIMEOUT) {
                    Some(Seen::Request { head, .. }) => {
                        assert!(head.starts_with("GET /next HTTP/1.1\r\n"), "{name}: {head}")
                    }
                    other => panic!("{name}: the upstream saw {:?}", other.map(|s| s.describe())),
                }
            }
        }
    }
    // A barrier: once it arrives, anything a rejected row let through
    // would have arrived too.
    let r = s.get("/barrier");
    assert_eq!(r.status, 200);
    match seen_within(&seen, TIMEOUT) {
        Some(Seen::Request { head, .. }) => assert!(head.starts_with("GET /barrier "), "{head}"),
        other => panic!("the upstream saw {:?}", other.map(|s| s.describe())),
    }
    assert!(
        seen_within(&seen, Duration::from_millis(50)).is_none(),
        "the upstream received more"
    );
}

/// Every vector's name appears in RELIABILITY.md's table, with its outcome,
/// and the table has no row that is not here.
#[test]
fn vectors_are_listed_in_reliability_md() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/RELIABILITY.md"))
        .expect("read RELIABILITY.md");
    let rows: Vec<&str> = doc
        .lines()
        .skip_while(|l| !l.starts_with("<!-- smuggling table -->"))
        .skip(3)
        .take_while(|l| l.starts_with('|'))
        .collect();
    let expected: Vec<String> = VECTORS.iter().map(table_row).collect();
    assert_eq!(
        rows,
        expected.iter().map(String::as_str).collect::<Vec<_>>(),
        "RELIABILITY.md's smuggling table is out of date; the rows should be:\n{}",
        expected.join("\n")
    );
}

/// A vector as a row of RELIABILITY.md's table.
fn table_row((name, _, expect): &Vector) -> String {
    let outcome = match expect {
        Reject(status) => format!("{status}, close; nothing upstream"),
        Accept(body) => format!(
            "200; body `{}` (re-framed upstream)",
            String::from_utf8_lossy(body)
        ),
    };
    format!("| {} | {outcome} |", name.replace('|', "\\|"))
}
