//! A connection switched to another protocol (SPEC §9.3): after the
//! upstream's `101 Switching Protocols`, bytes flow both ways as they
//! are, in the same event loop, through two bounded buffers.
//!
//! Steps, each moving whatever can move without blocking:
//! 1. client → buffer → upstream, then upstream → buffer → client; a side
//!    is read only while its buffer has room (back-pressure both ways);
//! 2. a side's end of file is passed on as a half-close (`shutdown` of the
//!    write side, after a TLS client's `close_notify`) once its buffer is
//!    drained (and, for TLS, the records rustls holds are written), so each
//!    direction ends on its own;
//! 3. the tunnel is over when both directions ended, or either side
//!    fails. Idle and stuck sides are the connection's deadlines
//!    (`proxy_read_timeout`, `send_timeout`).

use std::io::{self, Write};
use std::net::Shutdown;

use mio::net::TcpStream;

use crate::server::conn::{read_edge, Client, Cx};

/// Bytes buffered per direction; a side is not read past this.
const TUNNEL_BUFFER: usize = 64 * 1024;

/// One direction's bytes in flight.
#[derive(Debug, Default)]
struct Pipe {
    buf: Vec<u8>,
    pos: usize,
    /// The sending side's end of file was read.
    eof: bool,
    /// The end of file was passed on.
    shut: bool,
}

impl Pipe {
    fn room(&self) -> usize {
        TUNNEL_BUFFER.saturating_sub(self.buf.len() - self.pos)
    }

    fn pending(&self) -> &[u8] {
        &self.buf[self.pos..]
    }

    fn sent(&mut self, n: usize) {
        self.pos += n;
        if self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        }
    }

    fn done(&self) -> bool {
        self.eof && self.pending().is_empty()
    }
}

/// What a step of the tunnel led to.
pub enum TunnelStep {
    Progress,
    Blocked,
    /// Both directions ended, or a side failed: close both.
    Closed,
}

#[derive(Debug)]
pub struct Tunnel {
    /// Client → upstream.
    up: Pipe,
    /// Upstream → client, starting with the 101 head.
    down: Pipe,
    /// Bytes moved to the client (after the head), for the access log.
    pub body_bytes: u64,
    head_len: usize,
}

impl Tunnel {
    /// A tunnel whose first bytes to the client are `head`: the 101 head
    /// (`head_len` bytes) and whatever the upstream sent behind it.
    pub fn new(head: Vec<u8>, head_len: usize) -> Tunnel {
        Tunnel {
            up: Pipe::default(),
            down: Pipe {
                buf: head,
                ..Pipe::default()
            },
            body_bytes: 0,
            head_len,
        }
    }

    /// Bytes the client sent before the tunnel began (they were read with
    /// its request); bounded by the request head limit.
    pub fn push_early(&mut self, bytes: &[u8]) {
        self.up.buf.extend_from_slice(bytes);
    }

    /// The client does not take the bytes waiting for it.
    pub fn waiting_on_client(&self) -> bool {
        self.down.room() == 0
    }

    /// Moves everything that can move. `up_ready` and `up_closed` are the
    /// upstream's readiness (as [`read_edge`] keeps it).
    pub fn step(
        &mut self,
        client: &mut Client,
        upstream: &mut TcpStream,
        up_ready: &mut bool,
        up_closed: bool,
        cx: &mut Cx,
    ) -> TunnelStep {
        match self.move_all(client, upstream, up_ready, up_closed, cx) {
            Ok(_) if self.up.shut && self.down.shut => TunnelStep::Closed,
            Ok(true) => TunnelStep::Progress,
            Ok(false) => TunnelStep::Blocked,
            Err(_) => TunnelStep::Closed,
        }
    }

    fn move_all(
        &mut self,
        client: &mut Client,
        upstream: &mut TcpStream,
        up_ready: &mut bool,
        up_closed: bool,
        cx: &mut Cx,
    ) -> io::Result<bool> {
        let mut progress = false;
        // Client → upstream.
        if !self.up.eof
            && self.up.room() > 0
            && (client.readable || client.transport.has_buffered())
        {
            let n = self.up.room().min(cx.scratch.len());
            match client.transport.read_edge(
                &mut cx.scratch[..n],
                &mut client.readable,
                client.read_closed,
            )? {
                Some(0) => {
                    self.up.eof = true;
                    client.peer_closed = true;
                    progress = true;
                }
                Some(k) => {
                    self.up.buf.extend_from_slice(&cx.scratch[..k]);
                    client.last_activity = cx.now;
                    progress = true;
                }
                None => {}
            }
        }
        progress |= write_pending(&mut self.up, upstream)?;
        if self.up.done() && !self.up.shut {
            let _ = upstream.shutdown(Shutdown::Write);
            self.up.shut = true;
            progress = true;
        }
        // Upstream → client.
        if !self.down.eof && self.down.room() > 0 && *up_ready {
            let n = self.down.room().min(cx.scratch.len());
            match read_edge(upstream, &mut cx.scratch[..n], up_ready, up_closed)? {
                Some(0) => {
                    self.down.eof = true;
                    progress = true;
                }
                Some(k) => {
                    self.down.buf.extend_from_slice(&cx.scratch[..k]);
                    progress = true;
                }
                None => {}
            }
        }
        // What TLS already encrypted goes out before anything new (its
        // buffer is the back-pressure): also when the pipe is empty, or it
        // would wait there for a write that never comes.
        if client.writable && client.transport.wants_write() {
            match client.transport.flush() {
                Ok(true) => progress = true,
                Ok(false) => client.writable = false,
                Err(err) => return Err(err),
            }
        }
        if client.writable && !self.down.pending().is_empty() {
            client.before_write();
            match client.transport.write(self.down.pending()) {
                Ok(n) => {
                    let body = n.saturating_sub(self.head_len);
                    self.head_len = self.head_len.saturating_sub(n);
                    self.body_bytes += body as u64;
                    client.written += n as u64;
                    client.last_activity = cx.now;
                    self.down.sent(n);
                    progress |= n > 0;
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => client.writable = false,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return Err(err),
            }
        }
        // The half-close waits for the last encrypted bytes.
        if self.down.done() && !self.down.shut && !client.transport.wants_write() {
            client.transport.shutdown_write();
            self.down.shut = true;
            progress = true;
        }
        Ok(progress)
    }
}

/// Writes what `pipe` holds to `upstream` until it would block.
fn write_pending(pipe: &mut Pipe, upstream: &mut TcpStream) -> io::Result<bool> {
    let mut progress = false;
    while !pipe.pending().is_empty() {
        match upstream.write(pipe.pending()) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                pipe.sent(n);
                progress = true;
            }
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => break,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
    Ok(progress)
}
