//! WebSocket echo benchmark pieces for `bench/ws.sh` (standard library only):
//!
//! - `ws_bench echo PORT`: an echo upstream (RFC 6455 handshake, then each
//!   masked client frame comes back unmasked), one thread per connection;
//! - `ws_bench client HOST:PORT PATH CONNS SECONDS SIZE`: CONNS connections
//!   upgrade through PATH, then each sends a SIZE-byte text message and waits
//!   for its echo, again and again for SECONDS. Prints messages/s and the
//!   round-trip percentiles (p50, p99) as one line of `key=value`.
//!
//! Both are plain blocking threads: on loopback with 64 connections they
//! are far from their own limit (run the client straight at the upstream to
//! see the ceiling), so the proxy in between is what is measured.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::ExitCode;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let result = match args.get(1).map(String::as_str) {
        Some("echo") if args.len() == 3 => echo(&args[2]),
        Some("client") if args.len() == 7 => client(&args[2..]),
        _ => {
            eprintln!(
                "usage: ws_bench echo PORT | ws_bench client HOST:PORT PATH CONNS SECONDS SIZE"
            );
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("ws_bench: {err}");
            ExitCode::FAILURE
        }
    }
}

// --- the echo upstream ---------------------------------------------------------

fn echo(port: &str) -> io::Result<()> {
    let listener = TcpListener::bind(format!("127.0.0.1:{port}"))?;
    println!("ws echo on {}", listener.local_addr()?);
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        thread::spawn(move || {
            let _ = serve(stream);
        });
    }
    Ok(())
}

fn serve(stream: TcpStream) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut writer = stream;
    let mut key = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("sec-websocket-key") {
                key = Some(value.trim().to_string());
            }
        }
    }
    let Some(key) = key else {
        return writer.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
    };
    let accept = base64(&sha1(
        format!("{key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11").as_bytes(),
    ));
    write!(
        writer,
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
    )?;
    let mut out = Vec::new();
    loop {
        let (opcode, payload) = read_frame(&mut reader)?;
        if opcode == 8 {
            frame(&mut out, 8, &payload, None);
            return writer.write_all(&out);
        }
        out.clear();
        frame(
            &mut out,
            if opcode == 9 { 10 } else { opcode },
            &payload,
            None,
        );
        writer.write_all(&out)?;
    }
}

/// One frame: (opcode, unmasked payload).
fn read_frame(r: &mut impl Read) -> io::Result<(u8, Vec<u8>)> {
    let mut h = [0u8; 2];
    r.read_exact(&mut h)?;
    let mut n = u64::from(h[1] & 0x7f);
    if n == 126 {
        let mut b = [0u8; 2];
        r.read_exact(&mut b)?;
        n = u64::from(u16::from_be_bytes(b));
    } else if n == 127 {
        let mut b = [0u8; 8];
        r.read_exact(&mut b)?;
        n = u64::from_be_bytes(b);
    }
    let mut mask = [0u8; 4];
    if h[1] & 0x80 != 0 {
        r.read_exact(&mut mask)?;
    }
    let len = usize::try_from(n).map_err(io::Error::other)?;
    let mut payload = vec![0u8; len];
    r.read_exact(&mut payload)?;
    for (i, b) in payload.iter_mut().enumerate() {
        *b ^= mask[i % 4];
    }
    Ok((h[0] & 0x0f, payload))
}

/// Appends a final frame; masked when `mask` is given (client to server).
fn frame(out: &mut Vec<u8>, opcode: u8, payload: &[u8], mask: Option<[u8; 4]>) {
    out.push(0x80 | opcode);
    let bit = if mask.is_some() { 0x80 } else { 0 };
    match payload.len() {
        n if n < 126 => out.push(bit | n as u8),
        n if n < 65536 => {
            out.push(bit | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(bit | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    match mask {
        Some(m) => {
            out.extend_from_slice(&m);
            out.extend(payload.iter().enumerate().map(|(i, b)| b ^ m[i % 4]));
        }
        None => out.extend_from_slice(payload),
    }
}

// --- the load client -------------------------------------------------------------

fn client(args: &[String]) -> io::Result<()> {
    let addr = args[0].clone();
    let path = args[1].clone();
    let parse = |s: &str| s.parse::<u64>().map_err(io::Error::other);
    let conns = parse(&args[2])? as usize;
    let seconds = parse(&args[3])?;
    let size = parse(&args[4])? as usize;
    let start = Arc::new(Barrier::new(conns + 1));
    let mut workers = Vec::new();
    for i in 0..conns {
        let (addr, path, start) = (addr.clone(), path.clone(), Arc::clone(&start));
        workers.push(thread::spawn(move || -> io::Result<Vec<u32>> {
            let opened = open(&addr, &path, i);
            start.wait();
            let (mut reader, mut writer) = opened?;
            let message = vec![b'x'; size];
            let mut out = Vec::new();
            frame(&mut out, 1, &message, Some([7, 1, 3, i as u8]));
            let mut rtts = Vec::with_capacity(1 << 16);
            let end = Instant::now() + Duration::from_secs(seconds);
            while Instant::now() < end {
                let sent = Instant::now();
                writer.write_all(&out)?;
                let (opcode, payload) = read_frame(&mut reader)?;
                if opcode != 1 || payload.len() != size {
                    return Err(io::Error::other("wrong echo"));
                }
                rtts.push(sent.elapsed().as_micros().min(u128::from(u32::MAX)) as u32);
            }
            Ok(rtts)
        }));
    }
    start.wait();
    let began = Instant::now();
    let mut all = Vec::new();
    let mut failed = 0;
    for w in workers {
        match w.join() {
            Ok(Ok(rtts)) => all.extend(rtts),
            Ok(Err(err)) => {
                failed += 1;
                eprintln!("ws_bench: a connection failed: {err}");
            }
            Err(_) => failed += 1,
        }
    }
    let elapsed = began.elapsed().as_secs_f64();
    all.sort_unstable();
    let pct = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0)
    };
    println!(
        "messages={} msgs_per_s={:.0} p50_us={} p99_us={} failed_conns={failed}",
        all.len(),
        all.len() as f64 / elapsed,
        pct(0.50),
        pct(0.99)
    );
    Ok(())
}

/// Connects and upgrades; the reader keeps what came behind the 101 head.
fn open(addr: &str, path: &str, i: usize) -> io::Result<(BufReader<TcpStream>, TcpStream)> {
    let stream = TcpStream::connect(addr)?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut writer = stream.try_clone()?;
    write!(
        writer,
        "GET {path} HTTP/1.1\r\nHost: bench\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {}\r\nSec-WebSocket-Version: 13\r\n\r\n",
        base64(format!("webserv-bench-{i:03}").as_bytes())
    )?;
    let mut reader = BufReader::new(stream);
    let mut status = String::new();
    reader.read_line(&mut status)?;
    if !status.starts_with("HTTP/1.1 101") {
        return Err(io::Error::other(format!("no upgrade: {}", status.trim())));
    }
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" {
            break;
        }
    }
    Ok((reader, writer))
}

// --- SHA-1 and base64, for the handshake only ------------------------------------

fn sha1(data: &[u8]) -> [u8; 20] {
    let mut h: [u32; 5] = [0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0];
    let mut msg = data.to_vec();
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&((data.len() as u64) * 8).to_be_bytes());
    for block in msg.chunks(64) {
        let mut w = [0u32; 80];
        for (i, word) in block.chunks(4).enumerate() {
            w[i] = u32::from_be_bytes([word[0], word[1], word[2], word[3]]);
        }
        for i in 16..80 {
            w[i] = (w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16]).rotate_left(1);
        }
        let [mut a, mut b, mut c, mut d, mut e] = h;
        for (i, &wi) in w.iter().enumerate() {
            let (f, k) = match i {
                0..=19 => ((b & c) | (!b & d), 0x5A827999),
                20..=39 => (b ^ c ^ d, 0x6ED9EBA1),
                40..=59 => ((b & c) | (b & d) | (c & d), 0x8F1BBCDC),
                _ => (b ^ c ^ d, 0xCA62C1D6),
            };
            let t = a
                .rotate_left(5)
                .wrapping_add(f)
                .wrapping_add(e)
                .wrapping_add(k)
                .wrapping_add(wi);
            e = d;
            d = c;
            c = b.rotate_left(30);
            b = a;
            a = t;
        }
        for (x, y) in h.iter_mut().zip([a, b, c, d, e]) {
            *x = x.wrapping_add(y);
        }
    }
    let mut out = [0u8; 20];
    for (i, x) in h.iter().enumerate() {
        out[i * 4..i * 4 + 4].copy_from_slice(&x.to_be_bytes());
    }
    out
}

fn base64(data: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ABC[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handshake_accept_of_rfc_6455() {
        let accept = base64(&sha1(
            b"dGhlIHNhbXBsZSBub25jZQ==258EAFA5-E914-47DA-95CA-C5AB0DC85B11",
        ));
        assert_eq!(accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }
}
