//! One client connection: an explicit state machine moved forward by
//! readiness events and deadlines.
//!
//! mio is edge-triggered, so the connection remembers whether its socket
//! may still be readable or writable (`readable`, `writable`: cleared only
//! by `WouldBlock`) and [`Conn::drive`] steps the current [`Phase`] until
//! nothing more can happen without a new event.
//!
//! Phases, in the order a request goes through them:
//! 1. [`Phase::Head`]: read until a whole request head is buffered, parse
//!    it, route it, and pick what to do with the body;
//! 2. [`Phase::Body`]: decode the body (length or chunked) into a sink,
//!    within `client_max_body_size`;
//! 3. [`Phase::Write`]: write the response head and body (bytes, or a file
//!    with `sendfile`), then back to `Head` (keep-alive, pipelined requests
//!    are answered from what is already buffered), or close;
//! 4. [`Phase::Linger`]: after an error that closes while the client may
//!    still be sending, read and discard for a short while so the client
//!    sees the response rather than a reset (as nginx does).

use std::fs::File;
use std::io::{self, IoSlice, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use mio::net::TcpStream;

use crate::handlers::upload::Upload;
use crate::handlers::{self, error_page, Action};
use crate::http::body::BodyDecoder;
use crate::http::chunked::Chunk;
use crate::http::date::DateCache;
use crate::http::request::{Framing, Request};
use crate::http::response::{write_head, Body, Length, Reply};
use crate::routing::{Limits, RoutingTable, Server};
use crate::server::log::{AccessEntry, Logs};
use crate::server::sys;
use crate::server::timers::Deadline;

/// How long a closing connection reads and discards input.
const LINGER: Duration = Duration::from_secs(2);
/// The most body bytes buffered from the socket at once.
const BODY_BUFFER: usize = 64 * 1024;

/// What the event loop shares with a connection while it runs.
pub struct Cx<'a> {
    pub now: Instant,
    /// One read buffer for every connection: an idle connection owns none.
    pub scratch: &'a mut [u8],
    pub date: &'a mut DateCache,
    pub logs: &'a mut Logs,
}

/// Whether the connection stays after an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Keep,
    Close,
}

enum Step {
    Progress,
    Blocked,
    Close,
}

enum Phase {
    Head,
    Body(Box<BodyRead>),
    Write(Box<Outgoing>),
    Linger { until: Instant },
}

/// A request whose body is being read.
struct BodyRead {
    request: Request,
    decoder: BodyDecoder,
    received: u64,
    limit: Option<u64>,
    sink: Sink,
    /// Bytes of `100 Continue` still to write before the body is read.
    interim: &'static [u8],
}

/// Where body bytes go.
enum Sink {
    /// The handler does not need the body: read it, then send this reply.
    Discard(Reply),
    Upload(Upload),
}

/// A response being written.
struct Outgoing {
    head: Vec<u8>,
    written: usize,
    body: OutBody,
    after: After,
}

enum OutBody {
    None,
    Bytes {
        data: Vec<u8>,
        pos: usize,
    },
    File {
        file: File,
        offset: u64,
        remaining: u64,
    },
}

/// What follows a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum After {
    KeepAlive,
    Close,
    /// Close, after reading and discarding what the client still sends.
    Linger,
}

/// How a response ends the exchange, decided before its head is written.
#[derive(Debug, Clone, Copy)]
struct Ending {
    /// The exchange forbids keep-alive (an error, an unread body).
    close: bool,
    /// The client may still be sending: linger before closing.
    linger: bool,
}

/// Bytes read from the socket and not yet consumed.
#[derive(Default)]
struct InBuf {
    buf: Vec<u8>,
    start: usize,
}

pub struct Conn {
    socket: TcpStream,
    peer: SocketAddr,
    table: Arc<RoutingTable>,
    /// The listen socket (index in `table.sockets`) it was accepted on.
    socket_index: usize,
    /// The server of the current request (the socket's default until the
    /// head is parsed).
    server: usize,
    input: InBuf,
    readable: bool,
    writable: bool,
    peer_closed: bool,
    /// Shutting down: close after the response in flight.
    draining: bool,
    phase: Phase,
    requests: u64,
    accepted_at: Instant,
    /// When the first byte of the current request head arrived.
    head_started: Option<Instant>,
    /// The last read or write that moved data.
    last_activity: Instant,
    pub deadline: Deadline,
}

impl Conn {
    pub fn new(
        socket: TcpStream,
        peer: SocketAddr,
        table: Arc<RoutingTable>,
        socket_index: usize,
        now: Instant,
    ) -> Conn {
        let server = table.sockets[socket_index].default_server;
        let mut conn = Conn {
            socket,
            peer,
            table,
            socket_index,
            server,
            input: InBuf::default(),
            readable: false,
            writable: false,
            peer_closed: false,
            draining: false,
            phase: Phase::Head,
            requests: 0,
            accepted_at: now,
            head_started: None,
            last_activity: now,
            deadline: Deadline::default(),
        };
        conn.refresh_deadline();
        conn
    }

    pub fn socket(&mut self) -> &mut TcpStream {
        &mut self.socket
    }

    /// The socket reported readiness.
    pub fn on_ready(&mut self, readable: bool, writable: bool, cx: &mut Cx) -> Verdict {
        self.readable |= readable;
        self.writable |= writable;
        self.run(cx)
    }

    /// The connection's deadline passed.
    pub fn on_timeout(&mut self, cx: &mut Cx) -> Verdict {
        match &self.phase {
            // A request that started but did not finish in time gets 408;
            // an idle connection is simply closed.
            Phase::Head if self.head_started.is_some() => self.fail(408, false, cx),
            Phase::Body(_) => self.fail(408, false, cx),
            Phase::Head | Phase::Write(_) | Phase::Linger { .. } => return Verdict::Close,
        }
        self.run(cx)
    }

    /// The server is shutting down: finish what is in flight, then close.
    pub fn drain(&mut self, cx: &mut Cx) -> Verdict {
        self.draining = true;
        self.run(cx)
    }

    fn run(&mut self, cx: &mut Cx) -> Verdict {
        let verdict = self.drive(cx);
        self.refresh_deadline();
        verdict
    }

    fn drive(&mut self, cx: &mut Cx) -> Verdict {
        loop {
            let step = match self.phase {
                Phase::Head => self.step_head(cx),
                Phase::Body(_) => self.step_body(cx),
                Phase::Write(_) => self.step_write(cx),
                Phase::Linger { .. } => self.step_linger(cx),
            };
            match step {
                Step::Progress => {}
                Step::Blocked => return Verdict::Keep,
                Step::Close => return Verdict::Close,
            }
        }
    }

    fn limits(&self) -> &Limits {
        &self.table.servers[self.server].limits
    }

    fn refresh_deadline(&mut self) {
        let limits = self.limits();
        self.deadline.want = Some(match &self.phase {
            Phase::Head => match self.head_started {
                Some(at) => at + limits.client_header_timeout,
                None if self.requests == 0 => self.accepted_at + limits.client_header_timeout,
                None => self.last_activity + limits.keepalive_timeout,
            },
            Phase::Body(_) => self.last_activity + limits.client_body_timeout,
            Phase::Write(_) => self.last_activity + limits.send_timeout,
            Phase::Linger { until } => *until,
        });
    }

    // --- Phase::Head ----------------------------------------------------

    fn step_head(&mut self, cx: &mut Cx) -> Step {
        let max_head = self.limits().client_max_header_size;
        if !self.input.is_empty() {
            self.head_started.get_or_insert(cx.now);
            match Request::parse(self.input.data(), max_head) {
                Ok(Some((request, len))) => {
                    self.input.consume(len);
                    self.start_request(request, cx);
                    return Step::Progress;
                }
                Ok(None) => {}
                Err(err) => {
                    self.fail(err.status(), true, cx);
                    return Step::Progress;
                }
            }
        }
        if self.peer_closed || (self.draining && self.input.is_empty()) {
            return Step::Close;
        }
        let room = max_head.saturating_sub(self.input.len()).max(1);
        self.read(room, cx)
    }

    /// Routes a parsed head and moves to the phase its handler needs.
    fn start_request(&mut self, request: Request, cx: &mut Cx) {
        self.requests += 1;
        let table = Arc::clone(&self.table);
        self.server = table.server_for(self.socket_index, request.host.as_deref());
        let server = &table.servers[self.server];
        let location = server.select_location(&request.path);
        let limit = location.client_max_body_size;
        if let Framing::Length(n) = request.framing {
            if limit.is_some_and(|max| n > max) {
                let reply = error_page::reply(413, server, location);
                return self.respond(
                    Some(&request),
                    reply,
                    Ending {
                        close: true,
                        linger: true,
                    },
                    cx,
                );
            }
        }
        match handlers::handle(&request, server) {
            Action::Reply(reply) => self.reply_after_body(request, reply, limit, cx),
            Action::Upload(upload) => self.read_body(request, Sink::Upload(upload), limit),
        }
    }

    fn read_body(&mut self, request: Request, sink: Sink, limit: Option<u64>) {
        let interim: &[u8] = if request.expect_continue {
            b"HTTP/1.1 100 Continue\r\n\r\n"
        } else {
            b""
        };
        self.phase = Phase::Body(Box::new(BodyRead {
            decoder: BodyDecoder::new(request.framing),
            request,
            received: 0,
            limit,
            sink,
            interim,
        }));
    }

    /// Sends `reply` once the request's body, if any, has been discarded.
    fn reply_after_body(
        &mut self,
        request: Request,
        reply: Reply,
        limit: Option<u64>,
        cx: &mut Cx,
    ) {
        match request.framing {
            Framing::None | Framing::Length(0) => self.respond(
                Some(&request),
                reply,
                Ending {
                    close: false,
                    linger: false,
                },
                cx,
            ),
            // The client waits for 100 Continue before sending the body: it
            // gets the final answer at once and will not send it. The
            // connection cannot know, so it closes.
            _ if request.expect_continue => self.respond(
                Some(&request),
                reply,
                Ending {
                    close: true,
                    linger: true,
                },
                cx,
            ),
            Framing::Length(_) | Framing::Chunked => {
                self.read_body(request, Sink::Discard(reply), limit);
            }
        }
    }

    // --- Phase::Body ----------------------------------------------------

    fn step_body(&mut self, cx: &mut Cx) -> Step {
        let Phase::Body(body) = &mut self.phase else {
            unreachable!("step_body runs in Phase::Body");
        };
        if !body.interim.is_empty() {
            return match write_interim(&mut self.socket, &mut body.interim) {
                Ok(()) => Step::Progress,
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                    self.writable = false;
                    Step::Blocked
                }
                Err(_) => Step::Close,
            };
        }
        match body.decoder.step(self.input.data()) {
            Ok((used, Chunk::Data(range))) => {
                body.received += range.len() as u64;
                if body.limit.is_some_and(|max| body.received > max) {
                    self.fail(413, true, cx);
                    return Step::Progress;
                }
                let stored = match &mut body.sink {
                    Sink::Discard(_) => Ok(()),
                    Sink::Upload(upload) => upload.write(&self.input.data()[range]),
                };
                if let Err(err) = stored {
                    self.fail(err.status(), true, cx);
                    return Step::Progress;
                }
                self.input.consume(used);
                Step::Progress
            }
            Ok((used, Chunk::Done)) => {
                self.input.consume(used);
                self.finish_body(cx);
                Step::Progress
            }
            Ok((used, Chunk::NeedMore)) => {
                self.input.consume(used);
                if self.peer_closed {
                    return Step::Close;
                }
                self.read(BODY_BUFFER, cx)
            }
            Err(_) => {
                self.fail(400, true, cx);
                Step::Progress
            }
        }
    }

    fn finish_body(&mut self, cx: &mut Cx) {
        let Phase::Body(body) = std::mem::replace(&mut self.phase, Phase::Head) else {
            unreachable!("finish_body runs in Phase::Body");
        };
        let BodyRead { request, sink, .. } = *body;
        let table = Arc::clone(&self.table);
        let server = &table.servers[self.server];
        let reply = match sink {
            Sink::Discard(reply) => reply,
            Sink::Upload(upload) => upload.finish().unwrap_or_else(|err| {
                error_page::reply(err.status(), server, server.select_location(&request.path))
            }),
        };
        self.respond(
            Some(&request),
            reply,
            Ending {
                close: false,
                linger: false,
            },
            cx,
        )
    }

    // --- responses ------------------------------------------------------

    /// An error found by the connection itself (bad head, timeout, body
    /// too large or malformed): the error page, then close.
    fn fail(&mut self, status: u16, linger: bool, cx: &mut Cx) {
        let table = Arc::clone(&self.table);
        let server: &Server = &table.servers[self.server];
        let request = match std::mem::replace(&mut self.phase, Phase::Head) {
            Phase::Body(body) => Some(body.request),
            Phase::Head | Phase::Write(_) | Phase::Linger { .. } => None,
        };
        let location = match &request {
            Some(r) => server.select_location(&r.path),
            None => &server.fallback,
        };
        let reply = error_page::reply(status, server, location);
        self.respond(
            request.as_ref(),
            reply,
            Ending {
                close: true,
                linger,
            },
            cx,
        );
    }

    /// Writes the head of `reply` and moves to [`Phase::Write`].
    fn respond(&mut self, request: Option<&Request>, reply: Reply, ending: Ending, cx: &mut Cx) {
        let server = &self.table.servers[self.server];
        let keep_alive = !ending.close
            && request.is_some_and(|r| r.keep_alive)
            && !server.limits.keepalive_timeout.is_zero()
            && !self.draining
            && (!self.peer_closed || !self.input.is_empty());
        let length = (!reply.has_no_body()).then(|| Length::Known(reply.body.len()));
        let mut head = Vec::with_capacity(256);
        let date = cx.date.get(SystemTime::now());
        write_head(
            &mut head,
            reply.status,
            &reply.headers,
            length,
            date,
            keep_alive,
        );
        let head_only = reply.has_no_body() || request.is_some_and(Request::is_head);
        cx.logs.access(
            &server.access_log,
            &AccessEntry {
                peer: self.peer,
                request_line: request.map_or("-", Request::request_line),
                status: reply.status,
                bytes: if head_only { 0 } else { reply.body.len() },
                referer: request.and_then(|r| r.header_str("referer")),
                user_agent: request.and_then(|r| r.header_str("user-agent")),
            },
        );
        let body = match reply.body {
            _ if head_only => OutBody::None,
            Body::Empty => OutBody::None,
            Body::Bytes(data) => OutBody::Bytes { data, pos: 0 },
            Body::File { file, offset, len } => OutBody::File {
                file,
                offset,
                remaining: len,
            },
        };
        let after = match (keep_alive, ending.linger) {
            (true, _) => After::KeepAlive,
            (false, true) => After::Linger,
            (false, false) => After::Close,
        };
        self.phase = Phase::Write(Box::new(Outgoing {
            head,
            written: 0,
            body,
            after,
        }));
    }

    // --- Phase::Write ---------------------------------------------------

    fn step_write(&mut self, cx: &mut Cx) -> Step {
        if !self.writable {
            return Step::Blocked;
        }
        let Phase::Write(out) = &mut self.phase else {
            unreachable!("step_write runs in Phase::Write");
        };
        if out.is_done() {
            let after = out.after;
            return self.finish_response(after, cx);
        }
        match write_some(&mut self.socket, out) {
            Ok(_) => {
                self.last_activity = cx.now;
                Step::Progress
            }
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                self.writable = false;
                Step::Blocked
            }
            Err(err) if err.kind() == io::ErrorKind::Interrupted => Step::Progress,
            Err(_) => Step::Close,
        }
    }

    fn finish_response(&mut self, after: After, cx: &mut Cx) -> Step {
        match after {
            After::KeepAlive => {
                self.phase = Phase::Head;
                self.server = self.table.sockets[self.socket_index].default_server;
                self.head_started = (!self.input.is_empty()).then_some(cx.now);
                self.last_activity = cx.now;
                self.input.release_if_empty();
                Step::Progress
            }
            After::Close => Step::Close,
            After::Linger => {
                let _ = self.socket.shutdown(Shutdown::Write);
                self.input = InBuf::default();
                self.phase = Phase::Linger {
                    until: cx.now + LINGER,
                };
                Step::Progress
            }
        }
    }

    // --- Phase::Linger --------------------------------------------------

    fn step_linger(&mut self, cx: &mut Cx) -> Step {
        if self.peer_closed {
            return Step::Close;
        }
        let step = self.read(cx.scratch.len(), cx);
        self.input = InBuf::default();
        step
    }

    // --- reading --------------------------------------------------------

    /// Reads at most `room` bytes into the input buffer. `Blocked` when the
    /// socket has nothing more for now.
    fn read(&mut self, room: usize, cx: &mut Cx) -> Step {
        if !self.readable {
            return Step::Blocked;
        }
        let n = room.min(cx.scratch.len());
        match self.socket.read(&mut cx.scratch[..n]) {
            Ok(0) => {
                self.peer_closed = true;
                self.readable = false;
                Step::Progress
            }
            Ok(k) => {
                self.input.extend(&cx.scratch[..k]);
                self.last_activity = cx.now;
                Step::Progress
            }
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                self.readable = false;
                Step::Blocked
            }
            Err(err) if err.kind() == io::ErrorKind::Interrupted => Step::Progress,
            Err(_) => Step::Close,
        }
    }
}

/// Writes what is left of an interim response (`100 Continue`).
fn write_interim(socket: &mut TcpStream, interim: &mut &'static [u8]) -> io::Result<()> {
    while !interim.is_empty() {
        match socket.write(interim) {
            Ok(n) => *interim = &interim[n..],
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
    Ok(())
}

impl Outgoing {
    fn is_done(&self) -> bool {
        self.written == self.head.len()
            && match &self.body {
                OutBody::None => true,
                OutBody::Bytes { data, pos } => *pos == data.len(),
                OutBody::File { remaining, .. } => *remaining == 0,
            }
    }
}

/// One write of what is left of `out` (not done yet): the head together
/// with the first body bytes when it can.
fn write_some(socket: &mut TcpStream, out: &mut Outgoing) -> io::Result<usize> {
    let head = &out.head[out.written..];
    match &mut out.body {
        OutBody::Bytes { data, pos } => {
            let n = if head.is_empty() {
                socket.write(&data[*pos..])?
            } else {
                socket.write_vectored(&[IoSlice::new(head), IoSlice::new(&data[*pos..])])?
            };
            let from_head = n.min(head.len());
            out.written += from_head;
            *pos += n - from_head;
            Ok(n)
        }
        OutBody::File { .. } | OutBody::None if !head.is_empty() => {
            let more = matches!(&out.body, OutBody::File { remaining, .. } if *remaining > 0);
            let n = if more {
                sys::send_more(socket, head)?
            } else {
                socket.write(head)?
            };
            out.written += n;
            Ok(n)
        }
        OutBody::File {
            file,
            offset,
            remaining,
        } if *remaining > 0 => {
            let n = sys::sendfile(socket, file, offset, *remaining)?;
            if n == 0 {
                // The file shrank under us: the promised length cannot be
                // kept, so the connection must end.
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            *remaining -= n as u64;
            Ok(n)
        }
        OutBody::File { .. } | OutBody::None => Ok(0),
    }
}

impl InBuf {
    fn data(&self) -> &[u8] {
        &self.buf[self.start..]
    }

    fn len(&self) -> usize {
        self.buf.len() - self.start
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn consume(&mut self, n: usize) {
        self.start += n;
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        }
    }

    fn extend(&mut self, bytes: &[u8]) {
        if self.start > 0 && self.buf.len() + bytes.len() > self.buf.capacity() {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// An idle connection keeps no buffer.
    fn release_if_empty(&mut self) {
        if self.is_empty() {
            self.buf = Vec::new();
            self.start = 0;
        }
    }
}
