//! The client's byte stream: a plain TCP socket, or TLS over one (rustls,
//! driven by the same edge-triggered readiness). The connection reads and
//! writes through [`Transport`] and never knows which it has, except that
//! `sendfile` and `MSG_MORE` exist only for the plain kind.
//!
//! TLS in an edge-triggered loop:
//! - plaintext that rustls has already decrypted can be read without the
//!   socket being readable ([`Transport::has_buffered`]);
//! - records rustls must send go out with the next write, and a response
//!   is only finished once they are all written ([`Transport::flush`]):
//!   plaintext is encrypted behind what rustls holds and the lot leaves in
//!   one `writev`, so the session tickets that follow the handshake ride
//!   with the first response instead of costing a write and a segment of
//!   their own; a handshake flight, which the peer waits for, goes out at
//!   once;
//! - a first byte that cannot start a TLS record is plain HTTP sent to a
//!   TLS port: the transport turns plain, and the connection answers 400.
//!   The first read is an ordinary `recv` into the caller's buffer, handed
//!   to rustls when it is TLS (no `MSG_PEEK` first: one system call less
//!   per connection);
//! - rustls reads the socket through [`Intake`], which keeps the rule of
//!   [`crate::server::conn::read_edge`] (a short read means the socket is
//!   drained, so no read is wasted on `WouldBlock`) and follows the record
//!   framing of what it passes on, to tell whether plaintext came out of
//!   the first record read from the socket ([`Transport::read_fresh`], for
//!   the open-file cache: see [`crate::cache`]).

use std::io::{self, IoSlice, Read, Write};
use std::net::Shutdown;
use std::sync::Arc;

use mio::net::TcpStream;
use rustls::{ProtocolVersion, ServerConfig, ServerConnection};

/// The first byte of a TLS handshake record (RFC 8446 §5.1).
const HANDSHAKE_RECORD: u8 = 0x16;
/// A TLS record's header: type, version, then the length of the fragment
/// behind it in its last two bytes (RFC 8446 §5.1, RFC 5246 §6.2.1).
const RECORD_HEADER: u8 = 5;
/// Encrypted bytes rustls may hold for the socket before writes wait.
const TLS_BUFFER: usize = 64 * 1024;
/// The first read of a connection: what rustls takes in one `read_tls`
/// (its read size), so the sniffed bytes are handed over in one call.
const FIRST_READ: usize = 4096;

pub enum Transport {
    Plain(TcpStream),
    Tls(Box<Tls>),
}

pub struct Tls {
    socket: TcpStream,
    session: ServerConnection,
    state: TlsState,
    /// rustls holds decrypted bytes not read yet.
    buffered: bool,
    /// What rustls holds includes records the peer waits for (a handshake
    /// flight, an alert): they go out before anything else is done.
    peer_waits: bool,
    /// The framing of every byte handed to rustls.
    records: Records,
    /// The plaintext the last read returned came out of the first record
    /// that read took from the socket, which began at a record boundary
    /// while rustls held no plaintext (see [`Transport::read_fresh`]).
    fresh: bool,
}

/// Follows the record framing of the bytes handed to rustls: rustls says
/// how much plaintext it holds, not which record it came from, nor whether
/// it holds part of a record.
#[derive(Debug, Default)]
struct Records {
    /// Header bytes of the current record seen so far; 0 at a boundary.
    header: u8,
    /// Fragment bytes of the current record still to come.
    left: usize,
    /// Records that ended since the count was last reset.
    ended: u32,
}

impl Records {
    fn at_boundary(&self) -> bool {
        self.header == 0
    }

    fn feed(&mut self, mut bytes: &[u8]) {
        while let Some((&byte, rest)) = bytes.split_first() {
            if self.header < RECORD_HEADER {
                match self.header {
                    3 => self.left = usize::from(byte) << 8,
                    4 => self.left |= usize::from(byte),
                    _ => {}
                }
                self.header += 1;
                bytes = rest;
            } else {
                let take = self.left.min(bytes.len());
                self.left -= take;
                bytes = &bytes[take..];
            }
            if self.header == RECORD_HEADER && self.left == 0 {
                self.header = 0;
                self.ended = self.ended.saturating_add(1);
            }
        }
    }
}

/// The socket as rustls reads it (one `recv` per `read_tls`).
struct Intake<'a> {
    socket: &'a mut TcpStream,
    records: &'a mut Records,
    /// The read returned less than asked: the socket is drained.
    short: bool,
}

impl Read for Intake<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.socket.read(buf)?;
        self.short = n < buf.len();
        self.records.feed(&buf[..n]);
        Ok(n)
    }
}

/// What the first read of a connection found.
enum Sniffed {
    /// Nothing arrived yet.
    Nothing,
    /// A TLS record, now handed to rustls.
    Tls,
    /// The read's final result: plain HTTP (these many bytes, already in
    /// the caller's buffer), or 0 for a peer that left before a byte.
    Done(usize),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TlsState {
    /// No byte seen yet.
    Sniffing,
    Tls,
    /// Plain HTTP arrived: the socket is used as it is, to answer 400.
    PlainOnTlsPort,
}

impl Transport {
    /// A TLS session on `socket`, with `TCP_NODELAY` set: a handshake is
    /// several flights, none of which may wait for an acknowledgement (a
    /// plain socket sets it lazily, see `Client::before_write`).
    pub fn tls(socket: TcpStream, config: &Arc<ServerConfig>) -> io::Result<Transport> {
        socket.set_nodelay(true)?;
        let mut session = ServerConnection::new(Arc::clone(config)).map_err(io::Error::other)?;
        session.set_buffer_limit(Some(TLS_BUFFER));
        Ok(Transport::Tls(Box::new(Tls {
            socket,
            session,
            state: TlsState::Sniffing,
            buffered: false,
            peer_waits: false,
            records: Records::default(),
            fresh: false,
        })))
    }

    pub fn socket(&self) -> &TcpStream {
        match self {
            Transport::Plain(socket) => socket,
            Transport::Tls(tls) => &tls.socket,
        }
    }

    pub fn socket_mut(&mut self) -> &mut TcpStream {
        match self {
            Transport::Plain(socket) => socket,
            Transport::Tls(tls) => &mut tls.socket,
        }
    }

    /// Whether the bytes go through TLS (not plain, and not plain HTTP that
    /// arrived on a TLS port).
    pub fn is_tls(&self) -> bool {
        matches!(self, Transport::Tls(tls) if tls.state != TlsState::PlainOnTlsPort)
    }

    /// Plain HTTP arrived on a TLS port.
    pub fn plain_on_tls_port(&self) -> bool {
        matches!(self, Transport::Tls(tls) if tls.state == TlsState::PlainOnTlsPort)
    }

    /// The plain socket, where the kernel may copy a file to it directly.
    pub fn raw_socket(&mut self) -> Option<&mut TcpStream> {
        match self {
            Transport::Plain(socket) => Some(socket),
            Transport::Tls(tls) if tls.state == TlsState::PlainOnTlsPort => Some(&mut tls.socket),
            Transport::Tls(_) => None,
        }
    }

    /// Decrypted bytes wait in rustls: a read needs no readiness.
    pub fn has_buffered(&self) -> bool {
        matches!(self, Transport::Tls(tls) if tls.buffered)
    }

    /// The bytes the last [`Transport::read_edge`] returned were at the head
    /// of the socket's queue when that read began: always for a plain
    /// socket; over TLS, when they are plaintext of the first record that
    /// read took from the socket, and that record began at a record
    /// boundary while rustls held no plaintext and no part of a record.
    /// (A record read before it, even one without plaintext such as a
    /// key update or an empty fragment, may have been sent earlier than
    /// the request; then the answer is no.)
    pub fn read_fresh(&self) -> bool {
        match self {
            Transport::Plain(_) => true,
            Transport::Tls(tls) => tls.fresh,
        }
    }

    /// Encrypted bytes wait for the socket.
    pub fn wants_write(&self) -> bool {
        matches!(self, Transport::Tls(tls) if tls.session.wants_write())
    }

    /// Records the peer waits for (a handshake flight that filled the
    /// socket) are still held: they go out before a read. Records queued
    /// once the handshake is over (TLS 1.3 session tickets) wait for the
    /// next response instead.
    pub fn owes_peer(&self) -> bool {
        matches!(self, Transport::Tls(tls) if tls.peer_waits && tls.session.wants_write())
    }

    /// Writes what rustls holds for the socket. `Ok(true)` when nothing is
    /// left; `Ok(false)` when the socket is full.
    pub fn flush(&mut self) -> io::Result<bool> {
        match self {
            Transport::Plain(_) => Ok(true),
            Transport::Tls(tls) => tls.flush(),
        }
    }

    /// One edge-triggered read into `buf` (see [`crate::server::conn::read_edge`]).
    pub fn read_edge(
        &mut self,
        buf: &mut [u8],
        ready: &mut bool,
        closed: bool,
    ) -> io::Result<Option<usize>> {
        match self {
            Transport::Plain(socket) => crate::server::conn::read_edge(socket, buf, ready, closed),
            Transport::Tls(tls) => tls.read_edge(buf, ready, closed),
        }
    }

    /// Ends the write side: a TLS `close_notify` (best effort), then FIN.
    pub fn shutdown_write(&mut self) {
        if let Transport::Tls(tls) = self {
            if tls.state == TlsState::Tls {
                tls.session.send_close_notify();
                let _ = tls.flush();
            }
        }
        let _ = self.socket().shutdown(Shutdown::Write);
    }

    /// Queues a TLS `close_notify` before the connection closes, to go out
    /// with the last flush.
    pub fn close_notify(&mut self) {
        if let Transport::Tls(tls) = self {
            if tls.state == TlsState::Tls {
                tls.session.send_close_notify();
            }
        }
    }

    /// [`Write::write_vectored`] of the last bytes before the connection
    /// closes: when they are all taken, the TLS `close_notify` follows them
    /// in the same `writev` (one segment, not two).
    pub fn write_vectored_closing(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Transport::Plain(socket) => socket.write_vectored(bufs),
            Transport::Tls(tls) => tls.write_vectored_then(bufs, true),
        }
    }
}

impl Write for Transport {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Transport::Plain(socket) => socket.write(buf),
            Transport::Tls(tls) => tls.write_vectored_then(&[IoSlice::new(buf)], false),
        }
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Transport::Plain(socket) => socket.write_vectored(bufs),
            Transport::Tls(tls) => tls.write_vectored_then(bufs, false),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Tls {
    fn flush(&mut self) -> io::Result<bool> {
        if self.state == TlsState::PlainOnTlsPort {
            return Ok(true);
        }
        while self.session.wants_write() {
            match self.session.write_tls(&mut self.socket) {
                Ok(_) => {}
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return Err(err),
            }
        }
        self.peer_waits = false;
        Ok(true)
    }

    /// Encrypts what it can of `bufs` behind the records rustls already
    /// holds (its buffer limit is the back-pressure), then writes them all
    /// in one go; `close`: a `close_notify` follows when all of `bufs` was
    /// taken.
    fn write_vectored_then(&mut self, bufs: &[IoSlice<'_>], close: bool) -> io::Result<usize> {
        if self.state == TlsState::PlainOnTlsPort {
            return self.socket.write_vectored(bufs);
        }
        let wanted: usize = bufs.iter().map(|b| b.len()).sum();
        let mut n = self.session.writer().write_vectored(bufs)?;
        if n == 0 && wanted > 0 {
            // rustls's buffer is full: make room first.
            if !self.flush()? {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            n = self.session.writer().write_vectored(bufs)?;
            if n == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
        }
        if close && n == wanted {
            self.session.send_close_notify();
        }
        // A full socket keeps the rest for the next flush.
        self.flush()?;
        Ok(n)
    }

    fn read_edge(
        &mut self,
        buf: &mut [u8],
        ready: &mut bool,
        closed: bool,
    ) -> io::Result<Option<usize>> {
        self.fresh = false;
        let mut sniffed = false;
        if self.state == TlsState::Sniffing {
            match self.sniff(buf, ready, closed)? {
                Sniffed::Nothing => return Ok(None),
                Sniffed::Done(n) => {
                    self.fresh = true;
                    return Ok(Some(n));
                }
                Sniffed::Tls => sniffed = true,
            }
        }
        if self.state == TlsState::PlainOnTlsPort {
            self.fresh = true;
            return crate::server::conn::read_edge(&mut self.socket, buf, ready, closed);
        }
        // Set at this call's first read of the socket: that read began at
        // the head of its queue, at a record boundary, rustls holding no
        // plaintext.
        let mut clean = None;
        loop {
            match self.session.reader().read(buf) {
                Ok(n) => {
                    // 0: the peer's close_notify, a clean end of stream.
                    self.buffered = n > 0;
                    self.fresh = clean == Some(true) && self.records.ended == 1;
                    return Ok(Some(n));
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => self.buffered = false,
                // Closed without close_notify: a truncation attack or a
                // client that just left; either way, the end.
                Err(err) => return Err(err),
            }
            if !*ready {
                return Ok(None);
            }
            if clean.is_none() {
                clean = Some(!sniffed && self.records.at_boundary());
                self.records.ended = 0;
            }
            let mut intake = Intake {
                socket: &mut self.socket,
                records: &mut self.records,
                short: false,
            };
            match self.session.read_tls(&mut intake) {
                Ok(0) => {
                    *ready = false;
                    return Ok(Some(0));
                }
                Ok(_) => {
                    // As `conn::read_edge`: an end of file already
                    // announced raises no new edge, so it is read at once.
                    *ready = !intake.short || closed;
                    self.process()?;
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                    *ready = false;
                    return Ok(None);
                }
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return Err(err),
            }
        }
    }

    /// Runs what rustls just read through the handshake or the record
    /// layer. A handshake flight and an alert go out at once (the peer
    /// waits for them), and so does TLS 1.2's last flight (its Finished);
    /// what TLS 1.3 queues once the handshake is over (the session
    /// tickets) waits for the next write.
    fn process(&mut self) -> io::Result<()> {
        let was_handshaking = self.session.is_handshaking();
        let processed = self.session.process_new_packets();
        let tls13 = self.session.protocol_version() == Some(ProtocolVersion::TLSv1_3);
        if processed.is_err() || self.session.is_handshaking() || (was_handshaking && !tls13) {
            self.peer_waits = true;
        }
        let flushed = if self.peer_waits {
            self.flush().map(drop)
        } else {
            Ok(())
        };
        match processed {
            Ok(state) => self.buffered = state.plaintext_bytes_to_read() > 0,
            Err(err) => return Err(io::Error::new(io::ErrorKind::InvalidData, err)),
        }
        flushed
    }

    /// The first read of a connection, into `buf`: a TLS record goes on to
    /// rustls, anything else is plain HTTP on a TLS port.
    fn sniff(&mut self, buf: &mut [u8], ready: &mut bool, closed: bool) -> io::Result<Sniffed> {
        if !*ready || buf.is_empty() {
            return Ok(Sniffed::Nothing);
        }
        let size = buf.len().min(FIRST_READ);
        let n = loop {
            match self.socket.read(&mut buf[..size]) {
                Ok(n) => break n,
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                    *ready = false;
                    return Ok(Sniffed::Nothing);
                }
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return Err(err),
            }
        };
        if n == 0 {
            // Closed before a byte.
            *ready = false;
            self.state = TlsState::Tls;
            return Ok(Sniffed::Done(0));
        }
        if buf[0] != HANDSHAKE_RECORD {
            self.state = TlsState::PlainOnTlsPort;
            return Ok(Sniffed::Done(n));
        }
        self.state = TlsState::Tls;
        let mut first = &buf[..n];
        // rustls takes up to FIRST_READ bytes in one call, from an empty
        // buffer: the loop ends at once, and would anyway on a short take.
        while !first.is_empty() {
            if self.session.read_tls(&mut first)? == 0 {
                break;
            }
        }
        let taken = n - first.len();
        self.records.feed(&buf[..taken]);
        // A ClientHello waits for our answer: no read is wasted on it.
        *ready = n == size || closed;
        self.process()?;
        Ok(Sniffed::Tls)
    }
}

#[cfg(test)]
mod tests {
    use super::Records;

    /// Records of these fragment lengths, header and fragment.
    fn records(lengths: &[usize]) -> Vec<u8> {
        let mut bytes = Vec::new();
        for &len in lengths {
            let len16 = u16::try_from(len).expect("a record's length fits 16 bits");
            bytes.extend_from_slice(&[0x17, 0x03, 0x03]);
            bytes.extend_from_slice(&len16.to_be_bytes());
            bytes.resize(bytes.len() + len, 0xaa);
        }
        bytes
    }

    #[test]
    fn records_are_counted_across_every_split() {
        let cases: &[(&[usize], u32)] = &[
            (&[], 0),
            (&[0], 1),
            (&[1], 1),
            (&[1100], 1),
            (&[300, 0, 16_401], 3),
            (&[255, 256, 65_535], 3),
        ];
        for &(lengths, count) in cases {
            let bytes = records(lengths);
            for split in 0..=bytes.len() {
                let mut framing = Records::default();
                framing.feed(&bytes[..split]);
                assert_eq!(
                    framing.at_boundary(),
                    split == 0 || records_end_at(lengths, split),
                    "{lengths:?} split at {split}"
                );
                framing.feed(&bytes[split..]);
                assert!(framing.at_boundary(), "{lengths:?} split at {split}");
                assert_eq!(framing.ended, count, "{lengths:?} split at {split}");
            }
        }
    }

    /// Whether a record of `lengths` ends exactly `at` bytes in.
    fn records_end_at(lengths: &[usize], at: usize) -> bool {
        let mut end = 0;
        lengths.iter().any(|len| {
            end += 5 + len;
            end == at
        })
    }
}
