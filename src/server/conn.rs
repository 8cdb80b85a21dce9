//! One client connection: an explicit state machine moved forward by
//! readiness events and deadlines.
//!
//! mio is edge-triggered, so the connection remembers whether each of its
//! sources may still be readable or writable (cleared only by
//! `WouldBlock`), and [`Conn::drive`] steps the current [`Phase`] until
//! nothing more can happen without a new event.
//!
//! Phases, in the order a request goes through them:
//! 1. [`Phase::Head`]: read until a whole request head is buffered, parse
//!    it, route it, and pick what to do with the body;
//! 2. [`Phase::Body`]: decode the body (length or chunked) into a sink (an
//!    upload, a spool file for CGI, or nowhere), within
//!    `client_max_body_size`;
//! 3. [`Phase::Cgi`]: a script runs, fed and relayed both ways at once;
//! 4. [`Phase::Write`]: write the response head and body (bytes, a file
//!    with `sendfile`, or a file compressed on the way), then back to
//!    `Head` (keep-alive; pipelined requests are answered from what is
//!    already buffered), or close;
//! 5. [`Phase::Linger`]: after an error that closes while the client may
//!    still be sending, read and discard for a short while so the client
//!    sees the response rather than a reset (as nginx does).

use std::fs::{File, OpenOptions};
use std::io::{self, IoSlice, Read, Seek, Write};
use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use mio::{Registry, Token};

use crate::cache::FileCache;
use crate::handlers::cgi::{self, Script};
use crate::handlers::output::{self, Candidate, Coding};
use crate::handlers::static_file::Files;
use crate::handlers::upload::Upload;
use crate::handlers::{self, error_page, Action};
use crate::http::body::BodyDecoder;
use crate::http::chunked::Chunk;
use crate::http::date::DateCache;
use crate::http::gzip;
use crate::http::request::{Framing, Request, Via};
use crate::http::response::{
    chunk_size_line, write_head_end, write_head_start, Body, Length, Reply,
};
use crate::routing::{Limits, LogLevel, LogTarget, RoutingTable, Server};
use crate::server::cgi::{CgiRun, CgiStep, Feed};
use crate::server::log::{AccessEntry, Logs};
use crate::server::proxy::{ProxyRun, ProxyStep, Upstreams};
use crate::server::reaper::Reaper;
use crate::server::relay::Relay;
use crate::server::sys;
use crate::server::timers::Deadline;
use crate::server::transport::Transport;

/// How long a closing connection reads and discards input.
const LINGER: Duration = Duration::from_secs(2);
/// The most body bytes buffered from the socket at once.
const BODY_BUFFER: usize = 64 * 1024;
/// How long a connection that has sent nothing yet may take to send its
/// first request once the server drains (it was accepted just before).
const FIRST_REQUEST_GRACE: Duration = Duration::from_millis(500);
/// How many CGI local redirects one request may follow.
const MAX_REDIRECTS: u8 = 5;
/// How much of a file one write reads when it goes through TLS.
const TLS_FILE_CHUNK: usize = 16 * 1024;

/// Which of a connection's sources an event is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Client,
    CgiStdin,
    CgiStdout,
    Upstream,
    /// The CGI child's exit (a pidfd).
    CgiExit,
}

impl Source {
    pub const COUNT: usize = 5;

    pub fn from_index(i: usize) -> Option<Source> {
        [
            Source::Client,
            Source::CgiStdin,
            Source::CgiStdout,
            Source::Upstream,
            Source::CgiExit,
        ]
        .get(i)
        .copied()
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

/// What the event loop shares with a connection while it runs.
pub struct Cx<'a> {
    pub now: Instant,
    /// One read buffer for every connection: an idle connection owns none.
    pub scratch: &'a mut [u8],
    pub date: &'a mut DateCache,
    pub logs: &'a mut Logs,
    pub registry: &'a Registry,
    /// Children whose exit is still to be collected.
    pub reaper: &'a mut Reaper,
    /// The token of `source` of connection `key`.
    pub token: fn(usize, Source) -> Token,
    pub upstreams: &'a mut Upstreams,
    /// The process's open-file cache.
    pub cache: &'a mut FileCache,
    /// Counts the loop's waits: which readiness reports are new.
    pub wait: u64,
    /// A response head buffer between responses: heads are written into it
    /// and it comes back when the head is sent, so no response allocates
    /// one and no idle connection keeps one.
    pub spare_head: &'a mut Vec<u8>,
    /// A file system path buffer for the static handler, kept between
    /// requests for the same reason.
    pub spare_path: &'a mut PathBuf,
}

/// What an event says about one source.
#[derive(Debug, Clone, Copy)]
pub struct Readiness {
    pub readable: bool,
    pub writable: bool,
    /// The peer closed its side: an end of file waits behind any data, and
    /// no further event will announce it.
    pub read_closed: bool,
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
    Cgi(Box<CgiRun>),
    Proxy(Box<ProxyRun>),
    /// Not boxed: every response passes through it.
    Write(Outgoing),
    Linger {
        until: Instant,
    },
}

/// A request whose body is being read.
struct BodyRead {
    request: Request,
    input: BodyIn,
    sink: Sink,
    /// Bytes of `100 Continue` still to write before the body is read.
    interim: &'static [u8],
}

/// Where body bytes go.
enum Sink {
    /// The handler does not need the body: read it, then send this reply.
    Discard(Reply),
    Upload(Upload),
    /// A chunked body for a CGI script, de-chunked into an unnamed file.
    Spool {
        file: File,
        script: Script,
    },
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
    /// `data[pos..end]`, shared with the open-file cache.
    Shared {
        data: Arc<[u8]>,
        pos: usize,
        end: usize,
    },
    File {
        file: Arc<File>,
        offset: u64,
        remaining: u64,
    },
    /// A file compressed as it is sent, in chunks.
    Gzip(Box<GzipFile>),
}

/// A file read in bounded pieces, each compressed and framed as a chunk
/// when what was made before has been written: memory does not grow with
/// the file, and the socket's back-pressure stops the reading.
struct GzipFile {
    file: Arc<File>,
    offset: u64,
    remaining: u64,
    encoder: gzip::Encoder,
    /// Framed output not yet written, from `pos`.
    out: Vec<u8>,
    pos: usize,
    /// The last chunk is in `out`.
    ended: bool,
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

const KEEP: Ending = Ending {
    close: false,
    linger: false,
};
const CLOSE: Ending = Ending {
    close: true,
    linger: false,
};
const LINGER_CLOSE: Ending = Ending {
    close: true,
    linger: true,
};

/// Bytes read from the socket and not yet consumed.
#[derive(Default)]
pub struct InBuf {
    buf: Vec<u8>,
    start: usize,
}

/// The client's side of a connection: its socket, what was read from it,
/// and what its readiness is known to be.
pub struct Client {
    pub transport: Transport,
    pub peer: SocketAddr,
    pub input: InBuf,
    pub readable: bool,
    pub writable: bool,
    /// A read returned end of file (or failed).
    pub peer_closed: bool,
    /// An event said the peer closed its side (the end of file may still
    /// be behind unread data).
    pub read_closed: bool,
    /// The last read or write that moved data.
    pub last_activity: Instant,
    /// Response bytes written so far, on every exchange.
    pub written: u64,
    /// Where Nagle's algorithm stands (see [`Client::before_write`]).
    pub nagle: Nagle,
    /// A wait reported the socket readable and no read followed yet: the
    /// bytes at the head of its queue were there before that wait ended.
    pub edge: bool,
    /// The wait ([`Cx::wait`]) of the last read.
    pub read_in_wait: u64,
    /// The first byte of `input` was read at such an edge, so it arrived
    /// before the open-file cache last drained its changes.
    pub input_at_edge: bool,
}

/// Nagle's algorithm on a client socket: on until a second write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nagle {
    /// Nothing written yet.
    Unused,
    /// One write went out with it on.
    Used,
    /// `TCP_NODELAY` is set.
    Off,
}

/// The outcome of one read from the client.
pub enum ReadOutcome {
    Data,
    Blocked,
    Closed,
}

/// A request body as it arrives from the client: decoded (length or
/// chunked) and counted against `client_max_body_size`. Uploads, CGI stdin
/// and proxied requests all read their bodies through it.
pub struct BodyIn {
    decoder: BodyDecoder,
    received: u64,
    limit: Option<u64>,
}

/// What one [`BodyIn::step`] did.
pub enum BodyStep {
    /// A piece of body was taken.
    Data,
    /// The body ended.
    Done,
    /// More bytes arrived from the client.
    Read,
    /// Nothing to do until the client sends more.
    Blocked,
}

/// Why a body cannot be read to its end.
pub enum BodyError {
    /// 400 (bad chunked framing), 413 (over the limit), or the status the
    /// taker failed with.
    Status(u16),
    /// The client left in the middle of its body.
    Closed,
}

impl BodyIn {
    pub fn new(framing: Framing, limit: Option<u64>) -> Self {
        BodyIn {
            decoder: BodyDecoder::new(framing),
            received: 0,
            limit,
        }
    }

    /// Body bytes taken so far.
    pub fn received(&self) -> u64 {
        self.received
    }

    /// Decodes what the client sent: hands the next piece of body to `take`
    /// (then drops it from the input), notes the end, or reads up to `room`
    /// more bytes. A chunk announced past the limit is refused before its
    /// data (a chunk size may be anything up to `u64::MAX`: saturate).
    pub fn step(
        &mut self,
        client: &mut Client,
        room: usize,
        cx: &mut Cx,
        take: impl FnOnce(&[u8]) -> Result<(), u16>,
    ) -> Result<BodyStep, BodyError> {
        let decoded = self.decoder.step(client.input.data());
        let announced = self.received.saturating_add(self.decoder.announced());
        if self.limit.is_some_and(|max| announced > max) {
            return Err(BodyError::Status(413));
        }
        match decoded {
            Ok((used, Chunk::Data(range))) => {
                self.received += range.len() as u64;
                if self.limit.is_some_and(|max| self.received > max) {
                    return Err(BodyError::Status(413));
                }
                take(&client.input.data()[range]).map_err(BodyError::Status)?;
                client.input.consume(used);
                Ok(BodyStep::Data)
            }
            Ok((used, Chunk::Done)) => {
                client.input.consume(used);
                Ok(BodyStep::Done)
            }
            Ok((used, Chunk::NeedMore)) => {
                client.input.consume(used);
                match client.read(room, cx) {
                    ReadOutcome::Data => Ok(BodyStep::Read),
                    ReadOutcome::Blocked => Ok(BodyStep::Blocked),
                    ReadOutcome::Closed => Err(BodyError::Closed),
                }
            }
            Err(_) => Err(BodyError::Status(400)),
        }
    }
}

pub struct Conn {
    key: usize,
    client: Client,
    table: Arc<RoutingTable>,
    /// The listen socket (index in `table.sockets`) it was accepted on.
    socket_index: usize,
    /// The server of the current request (the socket's default until the
    /// head is parsed).
    server: usize,
    /// Shutting down: close after the response in flight.
    draining: bool,
    /// Draining, and no request came yet: wait for one until then.
    first_request_by: Option<Instant>,
    /// The current request left the input out of step (an unread body):
    /// close after its response.
    close_after: bool,
    phase: Phase,
    requests: u64,
    /// `keepalive_timeout` of the server that answered the last request.
    idle_timeout: Duration,
    redirects: u8,
    /// Serving an `error_page` URI (an internal redirect) for this status:
    /// what the page is sent with, and that no second redirect is made.
    error_status: Option<u16>,
    /// The request an error page is served for: the access log names it,
    /// not the page's URI (as nginx's `$request`).
    error_origin: Option<Origin>,
    accepted_at: Instant,
    /// When the first byte of the current request head arrived.
    head_started: Option<Instant>,
    /// The current request's line, for the error log should it panic (a
    /// buffer reused from request to request; checked as UTF-8 only then).
    request_line: Vec<u8>,
    /// `client.written` when the current request arrived: more means its
    /// response has begun.
    response_from: u64,
    pub deadline: Deadline,
}

impl Conn {
    pub fn new(
        key: usize,
        transport: Transport,
        peer: SocketAddr,
        table: Arc<RoutingTable>,
        socket_index: usize,
        now: Instant,
    ) -> Conn {
        let server = table.sockets[socket_index].default_server;
        // A TLS handshake is several flights: no waiting between them.
        let nagle = match &transport {
            Transport::Tls(_) => Nagle::Off,
            Transport::Plain(_) => Nagle::Unused,
        };
        let mut conn = Conn {
            key,
            client: Client {
                transport,
                peer,
                input: InBuf::default(),
                readable: false,
                writable: false,
                peer_closed: false,
                read_closed: false,
                last_activity: now,
                written: 0,
                nagle,
                edge: false,
                read_in_wait: 0,
                input_at_edge: false,
            },
            table,
            socket_index,
            server,
            draining: false,
            first_request_by: None,
            close_after: false,
            phase: Phase::Head,
            requests: 0,
            idle_timeout: Duration::ZERO,
            redirects: 0,
            error_status: None,
            error_origin: None,
            accepted_at: now,
            head_started: None,
            request_line: Vec::new(),
            response_from: 0,
            deadline: Deadline::default(),
        };
        conn.refresh_deadline();
        conn
    }

    /// One of the connection's sources reported readiness.
    pub fn on_ready(&mut self, source: Source, ready: Readiness, cx: &mut Cx) -> Verdict {
        match (source, &mut self.phase) {
            (Source::Client, _) => {
                // A read earlier in this wait's batch may already have
                // taken what this report is about.
                if ready.readable && self.client.read_in_wait != cx.wait {
                    self.client.edge = true;
                }
                self.client.readable |= ready.readable;
                self.client.writable |= ready.writable;
                self.client.read_closed |= ready.read_closed;
            }
            (Source::CgiStdin, Phase::Cgi(run)) => run.stdin_ready(),
            (Source::CgiStdout, Phase::Cgi(run)) => run.stdout_ready(ready.read_closed),
            (Source::CgiExit, Phase::Cgi(run)) => run.exit_ready(),
            (Source::Upstream, Phase::Proxy(run)) => run.upstream_ready(ready),
            // A pipe or socket of an exchange that already ended.
            (Source::CgiStdin | Source::CgiStdout | Source::CgiExit | Source::Upstream, _) => {
                return Verdict::Keep
            }
        }
        self.run(cx)
    }

    /// The connection's deadline passed.
    pub fn on_timeout(&mut self, cx: &mut Cx) -> Verdict {
        match &mut self.phase {
            // A request that started but did not finish in time gets 408;
            // an idle connection is simply closed.
            Phase::Head if self.head_started.is_some() => self.fail(408, CLOSE, cx),
            Phase::Body(_) => self.fail(408, CLOSE, cx),
            Phase::Cgi(run) if !run.responded() => self.fail(504, CLOSE, cx),
            // The output ended and the script still runs after the grace:
            // the body is whole as far as anyone can tell.
            Phase::Cgi(run) if run.awaiting_exit() => run.stop_awaiting_exit(),
            Phase::Proxy(run) if !run.responded() => {
                let table = Arc::clone(&self.table);
                let bodyless = run.request.framing == Framing::None;
                if let Err(status) = run.on_timeout(&table, cx) {
                    self.fail(status, if bodyless { KEEP } else { CLOSE }, cx);
                }
            }
            Phase::Head
            | Phase::Cgi(_)
            | Phase::Proxy(_)
            | Phase::Write(_)
            | Phase::Linger { .. } => {
                self.release(cx);
                return Verdict::Close;
            }
        }
        self.run(cx)
    }

    /// The server is shutting down: finish what is in flight, then close.
    pub fn drain(&mut self, cx: &mut Cx) -> Verdict {
        self.draining = true;
        // A connection accepted just before the drain may not have sent its
        // first request yet (or no event announced it): it is not an idle
        // keep-alive connection, so it gets a short while to send one.
        if self.requests == 0 && self.client.input.is_empty() {
            self.client.readable = true;
            self.first_request_by = Some(cx.now + FIRST_REQUEST_GRACE);
        }
        self.run(cx)
    }

    /// The connection is closing: kill and hand over what it still runs.
    pub fn release(&mut self, cx: &mut Cx) {
        match &mut self.phase {
            Phase::Cgi(run) => run.abandon(cx.registry, cx.reaper),
            Phase::Proxy(run) => run.abandon(cx.upstreams),
            Phase::Head | Phase::Body(_) | Phase::Write(_) | Phase::Linger { .. } => {}
        }
        self.phase = Phase::Head;
    }

    /// A panic interrupted this connection (SPEC §9.1): log it with the
    /// request line, kill and drop what the exchange ran (script, upstream
    /// socket, temporary files), then answer 500 and close if no byte of
    /// the response was sent yet, else just close.
    pub fn on_panic(&mut self, message: &str, cx: &mut Cx) -> Verdict {
        let line = match std::str::from_utf8(&self.request_line) {
            Ok(line) if !line.is_empty() => line,
            _ => "-",
        };
        cx.logs.error(format_args!(
            "panic while handling \"{}\" from {}: {message}",
            line.escape_debug(),
            self.client.peer
        ));
        self.release(cx);
        if self.client.written > self.response_from || self.client.peer_closed {
            return Verdict::Close;
        }
        self.close_after = true;
        self.fail(500, CLOSE, cx);
        self.run(cx)
    }

    fn run(&mut self, cx: &mut Cx) -> Verdict {
        let verdict = self.drive(cx);
        if verdict == Verdict::Close {
            self.release(cx);
        }
        self.refresh_deadline();
        verdict
    }

    fn drive(&mut self, cx: &mut Cx) -> Verdict {
        loop {
            let step = match self.phase {
                Phase::Head => self.step_head(cx),
                Phase::Body(_) => self.step_body(cx),
                Phase::Cgi(_) => self.step_cgi(cx),
                Phase::Proxy(_) => self.step_proxy(cx),
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

    /// How this connection's requests arrive.
    fn via(&self) -> Via {
        Via {
            https: self.client.transport.is_tls(),
            peer: Some(self.client.peer),
            // The listen address's port: no system call per request.
            server_port: self.table.sockets[self.socket_index].addr.port(),
        }
    }

    fn limits(&self) -> &Limits {
        &self.table.servers[self.server].limits
    }

    fn refresh_deadline(&mut self) {
        let limits = self.limits();
        let last = self.client.last_activity;
        self.deadline.want = Some(match &self.phase {
            Phase::Head => match self.head_started {
                Some(at) => at + limits.client_header_timeout,
                None if self.requests == 0 => {
                    let by = self.accepted_at + limits.client_header_timeout;
                    self.first_request_by.map_or(by, |grace| grace.min(by))
                }
                None => last + self.idle_timeout,
            },
            Phase::Body(_) => last + limits.client_body_timeout,
            Phase::Cgi(run) if run.waiting_on_client() => last + limits.send_timeout,
            Phase::Cgi(run) => run.deadline(),
            Phase::Proxy(run) if run.waiting_on_client() => last + limits.send_timeout,
            Phase::Proxy(run) => run.last_progress.max(last) + run.timeout(),
            Phase::Write(_) => last + limits.send_timeout,
            Phase::Linger { until } => *until,
        });
    }

    // --- Phase::Head ----------------------------------------------------

    fn step_head(&mut self, cx: &mut Cx) -> Step {
        if self.client.transport.plain_on_tls_port() && !self.client.input.is_empty() {
            // SPEC §9.2: a plain 400 page, then close (nginx's 497 case).
            self.client.input = InBuf::default();
            self.fail(400, LINGER_CLOSE, cx);
            return Step::Progress;
        }
        // The head is read up to the largest limit of the servers on this
        // address; once `Host` has chosen one, its own limit applies.
        let max_head = self.table.sockets[self.socket_index].max_header_size;
        if !self.client.input.is_empty() {
            self.head_started.get_or_insert(cx.now);
            // The head is taken out of the input, not copied from it.
            let parsed = match Request::locate(self.client.input.data(), max_head) {
                Ok(Some(layout)) => {
                    let len = layout.len;
                    let head = self.client.input.take(len);
                    Request::from_head(head, layout).map(|request| Some((request, len)))
                }
                Ok(None) => Ok(None),
                Err(err) => Err(err),
            };
            match parsed {
                Ok(Some((mut request, len))) => {
                    // What follows in the buffer was not at the edge.
                    let at_edge = std::mem::take(&mut self.client.input_at_edge);
                    request.via = self.via();
                    self.server = self
                        .table
                        .server_for(self.socket_index, request.host.as_deref());
                    if let Some(err) = request.over_limit(len, self.limits().client_max_header_size)
                    {
                        self.fail_request(err.status(), request, LINGER_CLOSE, cx);
                        return Step::Progress;
                    }
                    if cx.logs.enabled(LogLevel::Info) {
                        for name in request.dropped_headers() {
                            cx.logs.info(format_args!(
                                "client {} sent a header with \"_\" in its name, dropped: \"{}\"",
                                self.client.peer,
                                name.escape_debug()
                            ));
                        }
                    }
                    self.request_line.clear();
                    self.request_line
                        .extend_from_slice(request.request_line_bytes());
                    self.response_from = self.client.written;
                    self.requests += 1;
                    self.redirects = 0;
                    self.error_status = None;
                    self.error_origin = None;
                    self.close_after = false;
                    self.start_request(request, at_edge, cx);
                    return Step::Progress;
                }
                Ok(None) => {}
                Err(err) => {
                    self.fail(err.status(), LINGER_CLOSE, cx);
                    return Step::Progress;
                }
            }
        }
        let idle = self.client.input.is_empty()
            && !self.client.readable
            && self.first_request_by.is_none_or(|by| cx.now >= by);
        if self.client.peer_closed || (self.draining && idle) {
            return Step::Close;
        }
        let room = max_head.saturating_sub(self.client.input.len()).max(1);
        match self.client.read(room, cx) {
            ReadOutcome::Data | ReadOutcome::Closed => Step::Progress,
            ReadOutcome::Blocked => Step::Blocked,
        }
    }

    /// Routes a parsed head, whose server is chosen already, and moves to
    /// the phase its handler needs. `at_edge`: the request arrived before
    /// the cache last drained its changes.
    fn start_request(&mut self, request: Request, at_edge: bool, cx: &mut Cx) {
        #[cfg(feature = "fault-injection")]
        crate::server::fault::at("handle", &request);
        let table = Arc::clone(&self.table);
        let server = &table.servers[self.server];
        let location = server.select_location(&request.path);
        let limit = location.client_max_body_size;
        if let Framing::Length(n) = request.framing {
            if limit.is_some_and(|max| n > max) {
                let reply = error_page::reply(413, location);
                return self.respond(Some(&request), reply, LINGER_CLOSE, cx);
            }
        }
        let mut files = Files {
            cache: cx.cache,
            spare_path: cx.spare_path,
            drained: at_edge,
            now: cx.now,
        };
        match handlers::handle(&request, server, &mut files) {
            Action::Reply(reply) => self.reply_after_body(request, reply, limit, cx),
            Action::Upload(upload) => self.read_body(request, Sink::Upload(upload), limit),
            Action::Cgi(script) => self.start_cgi(request, script, limit, cx),
            Action::Proxy => self.start_proxy(request, cx),
        }
    }

    fn read_body(&mut self, request: Request, sink: Sink, limit: Option<u64>) {
        let interim: &[u8] = if request.expect_continue {
            b"HTTP/1.1 100 Continue\r\n\r\n"
        } else {
            b""
        };
        self.phase = Phase::Body(Box::new(BodyRead {
            input: BodyIn::new(request.framing, limit),
            request,
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
            Framing::None | Framing::Length(0) => self.respond(Some(&request), reply, KEEP, cx),
            // The client waits for 100 Continue before sending the body: it
            // gets the final answer at once and will not send it. The
            // connection cannot know, so it closes.
            _ if request.expect_continue => self.respond(Some(&request), reply, LINGER_CLOSE, cx),
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
            return match self.client.write_all_now(&mut body.interim) {
                Ok(true) => Step::Progress,
                Ok(false) => Step::Blocked,
                Err(_) => Step::Close,
            };
        }
        let sink = &mut body.sink;
        let mut failure = None;
        let step = body
            .input
            .step(&mut self.client, BODY_BUFFER, cx, |data| match sink {
                Sink::Discard(_) => Ok(()),
                Sink::Upload(upload) => upload.write(data).map_err(|err| {
                    let status = err.status();
                    failure = err.log_message();
                    status
                }),
                Sink::Spool { file, .. } => file.write_all(data).map_err(|err| {
                    failure = Some(format!("spooling a chunked CGI body: {err}"));
                    500
                }),
            });
        if let Some(message) = failure {
            cx.logs.error(format_args!("{message}"));
        }
        match step {
            Ok(BodyStep::Data | BodyStep::Read) => Step::Progress,
            Ok(BodyStep::Done) => {
                self.finish_body(cx);
                Step::Progress
            }
            Ok(BodyStep::Blocked) => Step::Blocked,
            Err(BodyError::Status(status)) => {
                self.fail(status, LINGER_CLOSE, cx);
                Step::Progress
            }
            // An aborted body: the sink is dropped, and with it any
            // temporary file.
            Err(BodyError::Closed) => Step::Close,
        }
    }

    fn finish_body(&mut self, cx: &mut Cx) {
        let Phase::Body(body) = std::mem::replace(&mut self.phase, Phase::Head) else {
            unreachable!("finish_body runs in Phase::Body");
        };
        let BodyRead {
            request,
            sink,
            input,
            ..
        } = *body;
        let received = input.received();
        let reply = match sink {
            Sink::Discard(reply) => reply,
            Sink::Upload(upload) => upload.finish().unwrap_or_else(|err| {
                if let Some(message) = err.log_message() {
                    cx.logs.error(format_args!("{message}"));
                }
                let server = &self.table.servers[self.server];
                error_page::reply(err.status(), server.select_location(&request.path))
            }),
            Sink::Spool { mut file, script } => {
                return match file.rewind() {
                    Ok(()) => {
                        let feed = Feed::File {
                            file,
                            remaining: received,
                        };
                        self.spawn_cgi(request, &script, feed, Some(received), cx)
                    }
                    Err(_) => self.fail_request(500, request, CLOSE, cx),
                };
            }
        };
        self.respond(Some(&request), reply, KEEP, cx)
    }

    // --- Phase::Cgi -----------------------------------------------------

    /// Runs `script` for `request`: at once for a body of known length
    /// (streamed to stdin as it arrives), after spooling a chunked one.
    fn start_cgi(&mut self, request: Request, script: Script, limit: Option<u64>, cx: &mut Cx) {
        match request.framing {
            Framing::Chunked => match spool_file() {
                Ok(file) => self.read_body(request, Sink::Spool { file, script }, limit),
                Err(_) => self.fail_request(500, request, LINGER_CLOSE, cx),
            },
            Framing::Length(n) if n > 0 => {
                let feed = Feed::Client(BodyIn::new(request.framing, limit));
                self.spawn_cgi(request, &script, feed, Some(n), cx);
            }
            Framing::None | Framing::Length(_) => {
                self.spawn_cgi(request, &script, Feed::Done, None, cx)
            }
        }
    }

    fn spawn_cgi(
        &mut self,
        request: Request,
        script: &Script,
        feed: Feed,
        length: Option<u64>,
        cx: &mut Cx,
    ) {
        let table = Arc::clone(&self.table);
        let server = &table.servers[self.server];
        let location = server.select_location(&request.path);
        let local_port = request.via.server_port;
        let server_name = server
            .names
            .first()
            .cloned()
            .or_else(|| request.host.clone())
            .unwrap_or_else(|| "localhost".to_owned());
        let env = cgi::environment(
            &request,
            script,
            &server_name,
            local_port,
            self.client.peer,
            length,
        );
        let child = match cgi::spawn(script, &env) {
            Ok(child) => child,
            Err(err) => {
                cx.logs
                    .error(format_args!("cgi {}: {err}", script.path.display()));
                let status = if err.kind() == io::ErrorKind::NotFound {
                    404
                } else {
                    502
                };
                let ending = if matches!(feed, Feed::Client(_)) {
                    LINGER_CLOSE
                } else {
                    KEEP
                };
                return self.fail_request(status, request, ending, cx);
            }
        };
        let tokens = (
            (cx.token)(self.key, Source::CgiStdin),
            (cx.token)(self.key, Source::CgiStdout),
            (cx.token)(self.key, Source::CgiExit),
        );
        match CgiRun::start(request, child, feed, cx.registry, tokens, location, cx.now) {
            Ok(mut run) => {
                run.keep_alive = self.may_keep_alive(Some(&run.request), KEEP);
                run.error_status = self.error_status;
                self.phase = Phase::Cgi(Box::new(run));
            }
            Err(err) => {
                cx.logs.error(format_args!("cgi pipes: {err}"));
                self.fail(502, CLOSE, cx);
            }
        }
    }

    fn step_cgi(&mut self, cx: &mut Cx) -> Step {
        let Phase::Cgi(run) = &mut self.phase else {
            unreachable!("step_cgi runs in Phase::Cgi");
        };
        #[cfg(feature = "fault-injection")]
        crate::server::fault::at("cgi", &run.request);
        let outcome = run.step(&mut self.client, cx);
        match outcome {
            CgiStep::Progress => return Step::Progress,
            CgiStep::Blocked => return Step::Blocked,
            CgiStep::Done { .. } | CgiStep::Fail(_) | CgiStep::Abort | CgiStep::Redirect(_) => {}
        }
        let Phase::Cgi(mut run) = std::mem::replace(&mut self.phase, Phase::Head) else {
            unreachable!("checked above");
        };
        match outcome {
            CgiStep::Done { close } => {
                self.log(Some(&run.request), run.status, run.body_bytes, cx);
                run.finish(cx.registry, cx.reaper, cx.now);
                let after = if close {
                    After::Close
                } else {
                    After::KeepAlive
                };
                self.finish_response(after, cx)
            }
            CgiStep::Fail(status) => {
                run.abandon(cx.registry, cx.reaper);
                let request = std::mem::replace(&mut run.request, placeholder_request());
                self.fail_request(status, request, LINGER_CLOSE, cx);
                Step::Progress
            }
            CgiStep::Redirect(path) => {
                run.abandon(cx.registry, cx.reaper);
                self.local_redirect(&run.request, &path, cx);
                Step::Progress
            }
            CgiStep::Abort | CgiStep::Progress | CgiStep::Blocked => {
                run.abandon(cx.registry, cx.reaper);
                Step::Close
            }
        }
    }

    /// RFC 3875 §6.2.2: the script named another local resource; serve it
    /// as a GET of that path, through the same server.
    fn local_redirect(&mut self, original: &Request, path: &str, cx: &mut Cx) {
        self.redirects += 1;
        // The body may not have been read to its end: nothing after it can
        // be trusted as the next request.
        self.close_after = true;
        let host = original.host.as_deref().unwrap_or("localhost");
        let head = format!(
            "GET {path} HTTP/1.{}\r\nHost: {host}\r\n\r\n",
            original.minor_version
        );
        match Request::parse(head.as_bytes(), head.len()) {
            Ok(Some((mut request, _))) if self.redirects <= MAX_REDIRECTS => {
                request.via = original.via;
                self.server = self
                    .table
                    .server_for(self.socket_index, request.host.as_deref());
                self.start_request(request, false, cx)
            }
            _ => self.fail(500, CLOSE, cx),
        }
    }

    /// One access log line for a response to `request` (none for a head
    /// that could not be parsed).
    fn log(&self, request: Option<&Request>, status: u16, bytes: u64, cx: &mut Cx) {
        let server = &self.table.servers[self.server];
        // With `access_log off`, the entry (the request line and two
        // headers looked up) is not even built.
        if server.access_log == LogTarget::Off {
            return;
        }
        let entry = match &self.error_origin {
            Some(origin) => AccessEntry {
                peer: self.client.peer,
                request_line: &origin.request_line,
                status,
                bytes,
                referer: origin.referer.as_deref(),
                user_agent: origin.user_agent.as_deref(),
            },
            None => access_entry(self.client.peer, request, status, bytes),
        };
        cx.logs.access(&server.access_log, &entry);
    }

    // --- Phase::Proxy ---------------------------------------------------

    fn start_proxy(&mut self, request: Request, cx: &mut Cx) {
        let table = Arc::clone(&self.table);
        let location = table.servers[self.server].select_location(&request.path);
        let Some(proxy) = &location.proxy else {
            return self.fail_request(500, request, CLOSE, cx);
        };
        let token = (cx.token)(self.key, Source::Upstream);
        let mut run = ProxyRun::new(request, location, proxy, self.client.peer, token, cx.now);
        match run.connect(&table, cx) {
            Ok(()) => {
                run.keep_alive = self.may_keep_alive(Some(&run.request), KEEP);
                run.error_status = self.error_status;
                self.phase = Phase::Proxy(run);
            }
            Err(status) => {
                let ending = if run.request.framing == Framing::None {
                    KEEP
                } else {
                    LINGER_CLOSE
                };
                self.fail_request(status, run.request, ending, cx);
            }
        }
    }

    fn step_proxy(&mut self, cx: &mut Cx) -> Step {
        let Phase::Proxy(run) = &mut self.phase else {
            unreachable!("step_proxy runs in Phase::Proxy");
        };
        let table = Arc::clone(&self.table);
        let outcome = run.step(&mut self.client, &table, cx);
        match outcome {
            ProxyStep::Progress => return Step::Progress,
            ProxyStep::Blocked => return Step::Blocked,
            ProxyStep::Done { .. } | ProxyStep::Fail(_) | ProxyStep::Abort => {}
        }
        let Phase::Proxy(mut run) = std::mem::replace(&mut self.phase, Phase::Head) else {
            unreachable!("checked above");
        };
        match outcome {
            ProxyStep::Done { close } => {
                self.log(Some(&run.request), run.status, run.body_bytes, cx);
                run.abandon(cx.upstreams);
                let after = if close {
                    After::Close
                } else {
                    After::KeepAlive
                };
                self.finish_response(after, cx)
            }
            ProxyStep::Fail(status) => {
                run.abandon(cx.upstreams);
                let request = std::mem::replace(&mut run.request, placeholder_request());
                // Without a body the connection is still in step: keep it.
                let ending = if request.framing == Framing::None {
                    KEEP
                } else {
                    LINGER_CLOSE
                };
                self.fail_request(status, request, ending, cx);
                Step::Progress
            }
            ProxyStep::Abort | ProxyStep::Progress | ProxyStep::Blocked => {
                run.abandon(cx.upstreams);
                Step::Close
            }
        }
    }

    // --- responses ------------------------------------------------------

    /// An error found by the connection itself (bad head, timeout, body
    /// too large or malformed): the error page, then close.
    fn fail(&mut self, status: u16, ending: Ending, cx: &mut Cx) {
        let request = match std::mem::replace(&mut self.phase, Phase::Head) {
            Phase::Body(body) => Some(body.request),
            Phase::Cgi(mut run) => {
                run.abandon(cx.registry, cx.reaper);
                Some(std::mem::replace(&mut run.request, placeholder_request()))
            }
            Phase::Proxy(mut run) => {
                run.abandon(cx.upstreams);
                Some(std::mem::replace(&mut run.request, placeholder_request()))
            }
            Phase::Head | Phase::Write(_) | Phase::Linger { .. } => None,
        };
        match request {
            Some(request) => self.fail_request(status, request, ending, cx),
            None => {
                let server = &self.table.servers[self.server];
                let reply = error_page::reply(status, &server.fallback);
                self.respond(None, reply, ending, cx);
            }
        }
    }

    fn fail_request(&mut self, status: u16, request: Request, ending: Ending, cx: &mut Cx) {
        let table = Arc::clone(&self.table);
        let server: &Server = &table.servers[self.server];
        let reply = error_page::reply(status, server.select_location(&request.path));
        self.respond(Some(&request), reply, ending, cx);
    }

    fn may_keep_alive(&self, request: Option<&Request>, ending: Ending) -> bool {
        !ending.close
            && !self.close_after
            && request.is_some_and(|r| r.keep_alive)
            && !self.limits().keepalive_timeout.is_zero()
            && !self.draining
            && (!self.client.peer_closed || !self.client.input.is_empty())
    }

    /// Writes the head of `reply` and moves to [`Phase::Write`], unless
    /// the reply is an error whose `error_page` URI is served instead: the
    /// reply's headers (a cached file's prepared lines first), then what
    /// its location adds (SPEC §9.5), with the body compressed when the
    /// location and the client want gzip.
    fn respond(
        &mut self,
        request: Option<&Request>,
        mut reply: Reply,
        ending: Ending,
        cx: &mut Cx,
    ) {
        if let Some(status) = self.error_status {
            // The error page goes out with the original status (as nginx);
            // an error while serving it gets the built-in page of the
            // original error: at most one redirect.
            reply = if (200..300).contains(&reply.status) {
                Reply { status, ..reply }
            } else {
                error_page::builtin(status)
            };
        } else if let Some(uri) = reply.error_page.take() {
            if let Some(redirected) = error_page_request(request, &uri) {
                self.error_status = Some(reply.status);
                self.error_origin = Some(Origin {
                    request_line: request.map_or("-", Request::request_line).to_owned(),
                    referer: request
                        .and_then(|r| r.header_str("referer"))
                        .map(str::to_owned),
                    user_agent: request
                        .and_then(|r| r.header_str("user-agent"))
                        .map(str::to_owned),
                });
                // A body left unread makes the input untrustworthy.
                self.close_after |= ending.close;
                self.server = self
                    .table
                    .server_for(self.socket_index, redirected.host.as_deref());
                // Drained again before it reads the cache.
                return self.start_request(redirected, false, cx);
            }
        }
        let keep_alive = self.may_keep_alive(request, ending);
        let table = Arc::clone(&self.table);
        let server = &table.servers[self.server];
        let location = request.map_or(&server.fallback, |r| server.select_location(&r.path));
        let output = &location.output;
        let head_only = reply.has_no_body() || request.is_some_and(Request::is_head);
        // Without `gzip` nothing is compressed and no `Vary` added (a
        // `gzip_static` answer carries its own): the types are not looked up.
        let coding = if output.gzip {
            match output::coding(
                output,
                request,
                Candidate {
                    status: reply.status,
                    content_type: reply.header("content-type"),
                    encoded: reply.header("content-encoding").is_some(),
                    length: Some(reply.body.len()),
                },
            ) {
                // `gzip_static` said it already.
                Coding::IdentityVary if reply.header("vary").is_some() => Coding::Identity,
                coding => coding,
            }
        } else {
            Coding::Identity
        };
        // A compressed body in memory is compressed at once and keeps a
        // length, and so does a cached file's compressed copy; any other
        // file is compressed as it is sent, in chunks.
        let (body, length) = match (coding, reply.body) {
            _ if reply.status < 200 || matches!(reply.status, 204 | 304) => (OutBody::None, None),
            (Coding::Gzip, _) if head_only => (OutBody::None, None),
            (
                Coding::Gzip,
                Body::File {
                    file,
                    offset,
                    len,
                    gzipped,
                },
            ) => match gzipped.and_then(|copy| cx.cache.gzipped(&copy)) {
                Some(data) => {
                    let end = data.len();
                    (
                        OutBody::Shared { data, pos: 0, end },
                        Some(Length::Known(end as u64)),
                    )
                }
                None => (
                    OutBody::Gzip(Box::new(GzipFile {
                        file,
                        offset,
                        remaining: len,
                        encoder: gzip::Encoder::new(),
                        out: Vec::new(),
                        pos: 0,
                        ended: false,
                    })),
                    Some(Length::Chunked),
                ),
            },
            (Coding::Gzip, Body::Bytes(data)) => {
                let data = gzip::compress(&data);
                let len = data.len() as u64;
                (OutBody::Bytes { data, pos: 0 }, Some(Length::Known(len)))
            }
            (
                Coding::Gzip,
                Body::Shared {
                    data,
                    start,
                    end,
                    gzipped,
                },
            ) => {
                let whole = start == 0 && end == data.len();
                // A cached small file: compressed once, then from memory.
                let kept = gzipped
                    .filter(|_| whole)
                    .and_then(|copy| cx.cache.gzipped(&copy));
                let data: Arc<[u8]> = match kept {
                    Some(data) => data,
                    None => gzip::compress(&data[start.min(end)..end.min(data.len())]).into(),
                };
                let end = data.len();
                (
                    OutBody::Shared { data, pos: 0, end },
                    Some(Length::Known(end as u64)),
                )
            }
            (Coding::Gzip, Body::Empty) => {
                let data = gzip::compress(b"");
                let len = data.len() as u64;
                (OutBody::Bytes { data, pos: 0 }, Some(Length::Known(len)))
            }
            (_, body) => {
                let length = Some(Length::Known(body.len()));
                match body {
                    _ if head_only => (OutBody::None, length),
                    Body::Empty => (OutBody::None, length),
                    Body::Bytes(data) => (OutBody::Bytes { data, pos: 0 }, length),
                    Body::Shared {
                        data, start, end, ..
                    } => (
                        OutBody::Shared {
                            end: end.min(data.len()),
                            pos: start.min(end),
                            data,
                        },
                        length,
                    ),
                    Body::File {
                        file, offset, len, ..
                    } => (
                        OutBody::File {
                            file,
                            offset,
                            remaining: len,
                        },
                        length,
                    ),
                }
            }
        };
        let mut head = std::mem::take(cx.spare_head);
        head.clear();
        let now = SystemTime::now();
        write_head_start(
            &mut head,
            reply.status,
            cx.date.get(now),
            output.server_tokens,
        );
        if let Some(prepared) = reply.prepared.as_deref() {
            if coding == Coding::Gzip {
                // The prepared lines describe the file as it is on disk.
                for (name, value) in header_lines(prepared) {
                    output::write_own_header(&mut head, output, reply.status, coding, name, value);
                }
            } else {
                head.extend_from_slice(prepared);
            }
        }
        for (name, value) in &reply.headers {
            output::write_own_header(
                &mut head,
                output,
                reply.status,
                coding,
                name,
                value.as_bytes(),
            );
        }
        output::write_added(&mut head, output, reply.status, coding, request, now);
        write_head_end(&mut head, length, keep_alive);
        // A body compressed as it goes is logged with its length on disk.
        let bytes = match &body {
            OutBody::None => 0,
            OutBody::Bytes { data, .. } => data.len() as u64,
            OutBody::Shared { pos, end, .. } => (end - pos) as u64,
            OutBody::File { remaining, .. } => *remaining,
            OutBody::Gzip(gz) => gz.remaining,
        };
        self.log(request, reply.status, bytes, cx);
        // An exchange that left the input out of step (an unread body)
        // lingers too: the client may still be sending it.
        let after = match (keep_alive, ending.linger || self.close_after) {
            (true, _) => After::KeepAlive,
            (false, true) => After::Linger,
            (false, false) => After::Close,
        };
        self.phase = Phase::Write(Outgoing {
            head,
            written: 0,
            body,
            after,
        });
    }

    // --- Phase::Write ---------------------------------------------------

    fn step_write(&mut self, cx: &mut Cx) -> Step {
        if !self.client.writable {
            return Step::Blocked;
        }
        let Phase::Write(out) = &mut self.phase else {
            unreachable!("step_write runs in Phase::Write");
        };
        if out.is_done() {
            let after = out.after;
            if cx.spare_head.capacity() < out.head.capacity() {
                *cx.spare_head = std::mem::take(&mut out.head);
            }
            return self.finish_response(after, cx);
        }
        self.client.before_write();
        match write_some(&mut self.client.transport, out, cx.scratch) {
            Ok(n) => {
                self.client.written += n as u64;
                self.client.last_activity = cx.now;
                Step::Progress
            }
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                self.client.writable = false;
                Step::Blocked
            }
            Err(err) if err.kind() == io::ErrorKind::Interrupted => Step::Progress,
            Err(_) => Step::Close,
        }
    }

    fn finish_response(&mut self, after: After, cx: &mut Cx) -> Step {
        if after == After::Close {
            self.client.transport.close_notify();
        }
        // Encrypted bytes still held for the socket must reach it before
        // the connection ends or waits for the next request.
        if self.client.transport.wants_write() {
            match self.client.transport.flush() {
                Ok(true) => {}
                Ok(false) => {
                    self.client.writable = false;
                    self.phase = Phase::Write(Outgoing {
                        head: Vec::new(),
                        written: 0,
                        body: OutBody::None,
                        after,
                    });
                    return Step::Blocked;
                }
                Err(_) => return Step::Close,
            }
        }
        match after {
            After::KeepAlive => {
                self.phase = Phase::Head;
                // The server that answered sets how long the connection
                // may idle; the next head then starts from the default.
                self.idle_timeout = self.limits().keepalive_timeout;
                self.request_line.clear();
                self.response_from = self.client.written;
                self.server = self.table.sockets[self.socket_index].default_server;
                self.head_started = (!self.client.input.is_empty()).then_some(cx.now);
                self.client.last_activity = cx.now;
                self.client.input.release_if_empty();
                Step::Progress
            }
            After::Close => {
                // The last segment was held back (`write_some`): the FIN
                // leaves with it, one segment fewer for both sides (nginx
                // gets the same from TCP_CORK). The socket closes after
                // the batch.
                if let Some(socket) = self.client.transport.raw_socket() {
                    let _ = socket.shutdown(std::net::Shutdown::Write);
                }
                Step::Close
            }
            After::Linger => {
                self.client.transport.shutdown_write();
                self.client.input = InBuf::default();
                self.phase = Phase::Linger {
                    until: cx.now + LINGER,
                };
                Step::Progress
            }
        }
    }

    // --- Phase::Linger --------------------------------------------------

    fn step_linger(&mut self, cx: &mut Cx) -> Step {
        if self.client.peer_closed {
            return Step::Close;
        }
        let outcome = self.client.read(cx.scratch.len(), cx);
        self.client.input = InBuf::default();
        match outcome {
            ReadOutcome::Data | ReadOutcome::Closed => Step::Progress,
            ReadOutcome::Blocked => Step::Blocked,
        }
    }
}

impl Client {
    /// Turns Nagle's algorithm off before any write but the connection's
    /// first. The kernel may hold a small write back while an earlier small
    /// segment is unacknowledged, and the peer may delay that
    /// acknowledgement: a second response on the connection, or a body
    /// written in pieces, would wait for it. A response written in one call
    /// never waits, so a connection that answers once and closes costs no
    /// `setsockopt` (nginx sets it when a connection is kept alive).
    pub fn before_write(&mut self) {
        match self.nagle {
            Nagle::Unused => self.nagle = Nagle::Used,
            Nagle::Used => {
                self.nagle = Nagle::Off;
                // It fails only on a socket the peer reset: the write says so.
                let _ = self.transport.socket().set_nodelay(true);
            }
            Nagle::Off => {}
        }
    }

    /// Reads at most `room` bytes into the input buffer.
    pub fn read(&mut self, room: usize, cx: &mut Cx) -> ReadOutcome {
        if self.peer_closed {
            return ReadOutcome::Closed;
        }
        // A handshake answer still to send goes out first.
        if self.writable && self.transport.owes_peer() {
            match self.transport.flush() {
                Ok(true) => {}
                Ok(false) => self.writable = false,
                Err(_) => {
                    self.peer_closed = true;
                    return ReadOutcome::Closed;
                }
            }
        }
        if !self.readable && !self.transport.has_buffered() {
            return ReadOutcome::Blocked;
        }
        let at_edge = self.edge && self.input.is_empty();
        self.edge = false;
        self.read_in_wait = cx.wait;
        let n = room.min(cx.scratch.len());
        let buf = &mut cx.scratch[..n];
        let read = self
            .transport
            .read_edge(buf, &mut self.readable, self.read_closed);
        if self.transport.is_tls() {
            // A TLS read may have run a handshake step (key exchange,
            // signature; a process's first one also seeds the random
            // generator, tens of milliseconds), and the event batch may hold
            // many: the batch's clock is stale by then. The times set from it
            // next (last activity, head start) would make deadlines such as
            // keepalive_timeout fire early.
            cx.now = Instant::now();
        }
        match read {
            Ok(None) => ReadOutcome::Blocked,
            Ok(Some(k)) if k > 0 => {
                if self.input.is_empty() {
                    // Over TLS, only when the bytes came out of the first
                    // record this read took from the socket.
                    self.input_at_edge = at_edge && self.transport.read_fresh();
                }
                self.input.extend(&buf[..k]);
                self.last_activity = cx.now;
                ReadOutcome::Data
            }
            Ok(Some(_)) | Err(_) => {
                self.peer_closed = true;
                self.readable = false;
                ReadOutcome::Closed
            }
        }
    }

    /// Writes what `relay` holds while the socket takes it. `Ok(true)` when
    /// bytes moved.
    pub fn flush(&mut self, relay: &mut Relay, now: Instant) -> io::Result<bool> {
        if !self.writable || !relay.has_pending() {
            return Ok(false);
        }
        self.before_write();
        match relay.write_to(&mut self.transport) {
            Ok(n) => {
                self.written += n as u64;
                self.last_activity = now;
                Ok(n > 0)
            }
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                self.writable = false;
                Ok(false)
            }
            Err(err) => Err(err),
        }
    }

    /// Writes what is left of a small interim response (`100 Continue`).
    /// `Ok(false)`: the socket is full; wait for it.
    pub fn write_all_now(&mut self, bytes: &mut &'static [u8]) -> io::Result<bool> {
        self.before_write();
        while !bytes.is_empty() {
            match self.transport.write(bytes) {
                Ok(n) => *bytes = &bytes[n..],
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                    self.writable = false;
                    return Ok(false);
                }
                Err(err) => return Err(err),
            }
        }
        Ok(true)
    }
}

/// One read from an edge-triggered source into `buf`. `Ok(None)`: nothing
/// for now (`ready` is cleared). A short read clears `ready` too, so no read
/// is wasted on `WouldBlock` (as nginx does): whatever arrives next raises a
/// new edge. An end of file already announced (`closed`) raises none, so
/// then `ready` stays set until the end of file is read.
pub fn read_edge(
    source: &mut impl Read,
    buf: &mut [u8],
    ready: &mut bool,
    closed: bool,
) -> io::Result<Option<usize>> {
    loop {
        match source.read(buf) {
            Ok(n) => {
                *ready = n == buf.len() || closed;
                return Ok(Some(n));
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

/// What the access log keeps of a request whose error page is served.
struct Origin {
    request_line: String,
    referer: Option<String>,
    user_agent: Option<String>,
}

fn access_entry<'a>(
    peer: SocketAddr,
    request: Option<&'a Request>,
    status: u16,
    bytes: u64,
) -> AccessEntry<'a> {
    AccessEntry {
        peer,
        request_line: request.map_or("-", Request::request_line),
        status,
        bytes,
        referer: request.and_then(|r| r.header_str("referer")),
        user_agent: request.and_then(|r| r.header_str("user-agent")),
    }
}

/// The request an `error_page` URI is served as: GET (HEAD stays HEAD, as
/// nginx) of `uri`, with the original's `Host`, version and connection
/// preference, so the same server answers it. `None` if it does not parse
/// (the built-in page is sent then).
fn error_page_request(original: Option<&Request>, uri: &str) -> Option<Request> {
    let method = match original {
        Some(r) if r.is_head() => "HEAD",
        _ => "GET",
    };
    let mut head = match original {
        Some(r) => format!("{method} {uri} HTTP/1.{}\r\n", r.minor_version),
        None => format!("{method} {uri} HTTP/1.0\r\n"),
    };
    if let Some(host) = original.and_then(|r| r.host.as_deref()) {
        head.push_str(&format!("Host: {host}\r\n"));
    }
    if !original.is_some_and(|r| r.keep_alive) {
        head.push_str("Connection: close\r\n");
    }
    head.push_str("\r\n");
    let (mut request, _) = Request::parse(head.as_bytes(), head.len()).ok()??;
    if let Some(original) = original {
        request.via = original.via;
    }
    Some(request)
}

/// A stand-in left behind when a request is moved out of a finished run.
fn placeholder_request() -> Request {
    let head = b"GET / HTTP/1.0\r\n\r\n";
    match Request::parse(head, head.len()) {
        Ok(Some((request, _))) => request,
        _ => unreachable!("a constant valid head parses"),
    }
}

/// An unnamed temporary file (`O_TMPFILE`, or created then unlinked at
/// once), so a spooled body vanishes with its last descriptor whatever
/// happens.
fn spool_file() -> io::Result<File> {
    let dir = std::env::temp_dir();
    let mut options = OpenOptions::new();
    options.read(true).write(true).mode(0o600);
    match options.clone().custom_flags(libc::O_TMPFILE).open(&dir) {
        Ok(file) => Ok(file),
        Err(_) => {
            let path = dir.join(format!(
                ".webserv-spool-{}-{:?}",
                std::process::id(),
                Instant::now()
            ));
            let file = options.create_new(true).open(&path)?;
            std::fs::remove_file(&path)?;
            Ok(file)
        }
    }
}

impl Outgoing {
    fn is_done(&self) -> bool {
        self.written == self.head.len()
            && match &self.body {
                OutBody::None => true,
                OutBody::Bytes { data, pos } => *pos == data.len(),
                OutBody::Shared { pos, end, .. } => pos == end,
                OutBody::File { remaining, .. } => *remaining == 0,
                OutBody::Gzip(gz) => gz.ended && gz.pos == gz.out.len(),
            }
    }
}

/// One write of what is left of `out` (not done yet): the head together
/// with the first body bytes when it can. `scratch`: room to read a file
/// into when it goes through TLS or gzip.
fn write_some(
    transport: &mut Transport,
    out: &mut Outgoing,
    scratch: &mut [u8],
) -> io::Result<usize> {
    if let OutBody::Gzip(gz) = &mut out.body {
        return write_gzip(transport, &out.head, &mut out.written, gz, scratch);
    }
    let Some(socket) = transport.raw_socket() else {
        return write_some_tls(transport, out, scratch);
    };
    let head = &out.head[out.written..];
    if let Some(bytes) = out.body.bytes_left() {
        let n = if out.after != After::KeepAlive {
            // The connection ends after this: the last partial segment
            // waits for the FIN (sent by `finish_response`) to go with it.
            sys::send_more(socket, &[IoSlice::new(head), IoSlice::new(bytes)])?
        } else if head.is_empty() {
            socket.write(bytes)?
        } else {
            socket.write_vectored(&[IoSlice::new(head), IoSlice::new(bytes)])?
        };
        let from_head = n.min(head.len());
        out.written += from_head;
        out.body.advance(n - from_head);
        return Ok(n);
    }
    match &mut out.body {
        OutBody::Bytes { .. } | OutBody::Shared { .. } => Ok(0),
        OutBody::File { .. } | OutBody::None if !head.is_empty() => {
            // A body follows, or the FIN does (see above).
            let more = matches!(&out.body, OutBody::File { remaining, .. } if *remaining > 0)
                || out.after != After::KeepAlive;
            let n = if more {
                sys::send_more(socket, &[IoSlice::new(head)])?
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
        // A compressed file went to `write_gzip` before.
        OutBody::File { .. } | OutBody::None | OutBody::Gzip(_) => Ok(0),
    }
}

/// [`write_some`] of a file compressed on the way, plain or TLS alike:
/// what is left of the head and of the framed output in one write, the
/// next piece of the file compressed only once that output is written.
fn write_gzip(
    transport: &mut Transport,
    head: &[u8],
    written: &mut usize,
    gz: &mut GzipFile,
    scratch: &mut [u8],
) -> io::Result<usize> {
    gz.fill(scratch)?;
    let head = &head[*written..];
    let body = &gz.out[gz.pos..];
    if head.is_empty() && body.is_empty() {
        return Ok(0);
    }
    let n = transport.write_vectored(&[IoSlice::new(head), IoSlice::new(body)])?;
    let from_head = n.min(head.len());
    *written += from_head;
    gz.pos += n - from_head;
    Ok(n)
}

impl GzipFile {
    /// When the framed output is all written, makes the next: reads and
    /// compresses pieces of the file until the compressor yields bytes (it
    /// keeps a window), or the file ends and the stream is finished.
    /// `scratch`: room for the pieces read.
    fn fill(&mut self, scratch: &mut [u8]) -> io::Result<()> {
        if self.pos < self.out.len() || self.ended {
            return Ok(());
        }
        self.out.clear();
        self.pos = 0;
        let chunk = scratch.len().min(TLS_FILE_CHUNK);
        let buf = &mut scratch[..chunk];
        let mut piece = Vec::new();
        while piece.is_empty() && self.remaining > 0 {
            let want = usize::try_from(self.remaining).map_or(buf.len(), |r| r.min(buf.len()));
            let got =
                std::os::unix::fs::FileExt::read_at(&*self.file, &mut buf[..want], self.offset)?;
            if got == 0 {
                // The file shrank under us: the body cannot end validly.
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            self.offset += got as u64;
            self.remaining -= got as u64;
            self.encoder.write(&buf[..got], &mut piece);
        }
        if self.remaining == 0 {
            self.encoder.finish(&mut piece);
            self.ended = true;
        }
        if !piece.is_empty() {
            chunk_size_line(piece.len(), &mut self.out);
            self.out.extend_from_slice(&piece);
            self.out.extend_from_slice(b"\r\n");
        }
        if self.ended {
            self.out.extend_from_slice(b"0\r\n\r\n");
        }
        Ok(())
    }
}

/// [`write_some`] through TLS: no `sendfile`; a file goes through a
/// bounded buffer, read at its offset, so memory does not grow with it.
/// What is left of the head and the next body bytes go in one record and
/// one write.
fn write_some_tls(
    transport: &mut Transport,
    out: &mut Outgoing,
    scratch: &mut [u8],
) -> io::Result<usize> {
    let head = &out.head[out.written..];
    // The event loop's scratch buffer, not one on the stack: zeroing 16
    // KiB on every write cost more than encrypting a small response.
    let chunk = scratch.len().min(TLS_FILE_CHUNK);
    let buf = &mut scratch[..chunk];
    let body: &[u8] = match &out.body {
        OutBody::Bytes { data, pos } => &data[*pos..],
        OutBody::Shared { data, pos, end } => &data[*pos..*end],
        OutBody::File {
            file,
            offset,
            remaining,
        } if *remaining > 0 => {
            let room = chunk - head.len().min(chunk / 2);
            let want = usize::try_from(*remaining).map_or(room, |r| r.min(room));
            let got = std::os::unix::fs::FileExt::read_at(&**file, &mut buf[..want], *offset)?;
            if got == 0 {
                // The file shrank under us: the promised length cannot be
                // kept, so the connection must end.
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            &buf[..got]
        }
        OutBody::File { .. } | OutBody::None | OutBody::Gzip(_) => &[],
    };
    if head.is_empty() && body.is_empty() {
        return Ok(0);
    }
    let last = match &out.body {
        OutBody::Bytes { .. } | OutBody::Shared { .. } | OutBody::None => true,
        OutBody::File { remaining, .. } => *remaining == body.len() as u64,
        OutBody::Gzip(_) => false,
    };
    let slices = [IoSlice::new(head), IoSlice::new(body)];
    // The close_notify of a connection that ends here rides with the last
    // record.
    let n = if last && out.after == After::Close {
        transport.write_vectored_closing(&slices)?
    } else {
        transport.write_vectored(&slices)?
    };
    let from_head = n.min(head.len());
    let from_body = n - from_head;
    out.written += from_head;
    out.body.advance(from_body);
    Ok(n)
}

impl OutBody {
    /// What is left of a body held in memory.
    fn bytes_left(&self) -> Option<&[u8]> {
        match self {
            OutBody::Bytes { data, pos } => Some(&data[*pos..]),
            OutBody::Shared { data, pos, end } => Some(&data[*pos..*end]),
            OutBody::File { .. } | OutBody::None | OutBody::Gzip(_) => None,
        }
    }

    /// Notes that `n` more body bytes were written.
    fn advance(&mut self, n: usize) {
        match self {
            OutBody::Bytes { pos, .. } | OutBody::Shared { pos, .. } => *pos += n,
            OutBody::File {
                offset, remaining, ..
            } => {
                *offset += n as u64;
                *remaining -= n as u64;
            }
            OutBody::None | OutBody::Gzip(_) => {}
        }
    }
}

/// The `Name: value` lines of a prepared head fragment.
fn header_lines(prepared: &[u8]) -> impl Iterator<Item = (&str, &[u8])> {
    prepared.split(|&b| b == b'\n').filter_map(|line| {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let colon = line.iter().position(|&b| b == b':')?;
        let name = std::str::from_utf8(&line[..colon]).ok()?;
        Some((name, line[colon + 1..].trim_ascii_start()))
    })
}

impl InBuf {
    pub fn data(&self) -> &[u8] {
        &self.buf[self.start..]
    }

    pub fn len(&self) -> usize {
        self.buf.len() - self.start
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The first `len` bytes, consumed: the buffer itself when they are
    /// all it holds (a request head alone, the common case), so nothing
    /// is allocated or copied.
    pub fn take(&mut self, len: usize) -> Vec<u8> {
        if self.start == 0 && len == self.buf.len() {
            return std::mem::take(&mut self.buf);
        }
        let taken = self.data()[..len].to_vec();
        self.consume(len);
        taken
    }

    pub fn consume(&mut self, n: usize) {
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
