//! The client's byte stream: a plain TCP socket, or TLS over one (rustls,
//! driven by the same edge-triggered readiness). The connection reads and
//! writes through [`Transport`] and never knows which it has, except that
//! `sendfile` and `MSG_MORE` exist only for the plain kind.
//!
//! TLS in an edge-triggered loop:
//! - plaintext that rustls has already decrypted can be read without the
//!   socket being readable ([`Transport::has_buffered`]);
//! - records rustls must send (handshake, alerts, encrypted data) go out
//!   before anything new is taken, and a response is only finished once
//!   they are all written ([`Transport::flush`]);
//! - a first byte that cannot start a TLS record is plain HTTP sent to a
//!   TLS port: the transport turns plain, and the connection answers 400.

use std::io::{self, IoSlice, Read, Write};
use std::net::Shutdown;
use std::sync::Arc;

use mio::net::TcpStream;
use rustls::{ServerConfig, ServerConnection};

/// The first byte of a TLS handshake record (RFC 8446 §5.1).
const HANDSHAKE_RECORD: u8 = 0x16;
/// Encrypted bytes rustls may hold for the socket before writes wait.
const TLS_BUFFER: usize = 64 * 1024;

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
    pub fn tls(socket: TcpStream, config: &Arc<ServerConfig>) -> io::Result<Transport> {
        let mut session = ServerConnection::new(Arc::clone(config)).map_err(io::Error::other)?;
        session.set_buffer_limit(Some(TLS_BUFFER));
        Ok(Transport::Tls(Box::new(Tls {
            socket,
            session,
            state: TlsState::Sniffing,
            buffered: false,
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

    /// Encrypted bytes wait for the socket.
    pub fn wants_write(&self) -> bool {
        matches!(self, Transport::Tls(tls) if tls.session.wants_write())
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
            Transport::Tls(tls) => tls.read_edge(buf, ready),
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
}

impl Write for Transport {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Transport::Plain(socket) => socket.write(buf),
            Transport::Tls(tls) => tls.write_vectored(&[IoSlice::new(buf)]),
        }
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Transport::Plain(socket) => socket.write_vectored(bufs),
            Transport::Tls(tls) => tls.write_vectored(bufs),
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
        Ok(true)
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        if self.state == TlsState::PlainOnTlsPort {
            return self.socket.write_vectored(bufs);
        }
        // What rustls holds goes first: its buffer is the back-pressure.
        if !self.flush()? {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = self.session.writer().write_vectored(bufs)?;
        if n == 0 && bufs.iter().any(|b| !b.is_empty()) {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        // Encrypted now; a full socket keeps the rest for the next flush.
        self.flush()?;
        Ok(n)
    }

    fn read_edge(&mut self, buf: &mut [u8], ready: &mut bool) -> io::Result<Option<usize>> {
        if self.state == TlsState::Sniffing && !self.sniff(ready)? {
            return Ok(None);
        }
        if self.state == TlsState::PlainOnTlsPort {
            return crate::server::conn::read_edge(&mut self.socket, buf, ready, false);
        }
        loop {
            match self.session.reader().read(buf) {
                Ok(n) => {
                    // 0: the peer's close_notify, a clean end of stream.
                    self.buffered = n > 0;
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
            match self.session.read_tls(&mut self.socket) {
                Ok(0) => {
                    *ready = false;
                    return Ok(Some(0));
                }
                Ok(_) => {
                    let processed = self.session.process_new_packets();
                    // Handshake answers and alerts go out as soon as they can.
                    let flushed = self.flush();
                    match processed {
                        Ok(state) => self.buffered = state.plaintext_bytes_to_read() > 0,
                        Err(err) => return Err(io::Error::new(io::ErrorKind::InvalidData, err)),
                    }
                    flushed?;
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

    /// Looks at the first byte: a TLS record, or plain HTTP on a TLS port.
    /// `Ok(false)`: nothing arrived yet.
    fn sniff(&mut self, ready: &mut bool) -> io::Result<bool> {
        if !*ready {
            return Ok(false);
        }
        let mut first = [0u8; 1];
        loop {
            match self.socket.peek(&mut first) {
                Ok(0) => {
                    // Closed before a byte: let the TLS path see the end.
                    self.state = TlsState::Tls;
                    return Ok(true);
                }
                Ok(_) => {
                    self.state = if first[0] == HANDSHAKE_RECORD {
                        TlsState::Tls
                    } else {
                        TlsState::PlainOnTlsPort
                    };
                    return Ok(true);
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                    *ready = false;
                    return Ok(false);
                }
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return Err(err),
            }
        }
    }
}
