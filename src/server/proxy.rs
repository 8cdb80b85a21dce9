//! A request forwarded to an upstream inside the event loop (`proxy_pass`).
//!
//! Steps, each moving whatever can move without blocking:
//! 1. connect: an idle pooled connection to the chosen server if one is
//!    alive, else a non-blocking connect; a refused or timed-out connect
//!    marks the server failed and tries the next one of the group;
//! 2. send the rewritten request head, then the body as it arrives from the
//!    client (a chunked body is forwarded chunked);
//! 3. read the response head (1xx interim responses are dropped), then
//!    relay the body to the client as it comes: with its length, as chunks
//!    (passed through as they are), or until the upstream closes;
//! 4. a complete response on a keep-alive upstream connection returns the
//!    connection to the pool;
//! 5. a `101` answer to an upgrade turns the exchange into a [`Tunnel`]
//!    (bytes both ways until both sides end), and the client connection
//!    closes with it.
//!
//! A failure before the response head (connect error, reset, timeout, a
//! status `proxy_next_upstream` lists) is counted by the balancer and, when
//! `proxy_next_upstream` allows and the request is still whole, the next
//! server is tried.
//!
//! The upstream is read only while the client keeps up, and the client
//! only while the upstream keeps up, so memory stays bounded.

use std::io::{self, Write};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Interest, Registry, Token};
use slab::Slab;

use crate::handlers::output::{self, Candidate, Coding};
use crate::handlers::proxy::{
    parse_response_head, parse_switch_head, request_head, upgrade_of, Active, Balancer,
    BodyFraming, Pool, ResponseFraming, SwitchHead, UpstreamHead, POOL_IDLE_TIMEOUT,
};
use crate::http::chunked::{Chunk, ChunkedDecoder};
use crate::http::request::{Framing, Request};
use crate::http::response::{
    chunk_size_line, write_head_end, write_head_start, write_header, Length,
};
use crate::routing::{Location, NextUpstream, Output, ProxyPass, RoutingTable};
use crate::server::conn::{read_edge, BodyError, BodyIn, BodyStep, Client, Cx, Readiness};
use crate::server::relay::Relay;
use crate::server::tunnel::{Tunnel, TunnelStep};

/// The most request body bytes buffered on their way upstream.
const SEND_BUFFER: usize = 64 * 1024;
/// The most bytes of an upstream response head.
const HEAD_LIMIT: usize = 16 * 1024;
/// The largest relay buffer given back to the loop for the next response.
const SPARE_LIMIT: usize = 16 * 1024;

/// The first poll token of upstream connections; every token below it
/// belongs to the event loop's own layout (connection keys stay far below,
/// bounded by the descriptors a process may open).
pub const UPSTREAM_BASE: usize = usize::MAX / 2 + 1;

/// What the event loop keeps for every proxied request: the pool of idle
/// upstream connections, the owner of every open one, and the balancer's
/// state.
///
/// Each upstream connection is registered once, under a token of its own
/// (`UPSTREAM_BASE + slot`), and keeps it while it goes to the pool and
/// back: `owners` says which exchange's token its events go to, so taking
/// a pooled connection costs no `epoll_ctl` (nginx keeps its upstream
/// connections registered the same way).
pub struct Upstreams {
    pub pool: Pool<Pooled>,
    pub balancer: Balancer,
    /// Slot → the token of the exchange using the connection, `None`
    /// while it is idle in the pool (its events are then ignored: the
    /// probe in [`take_live`] finds what they announced).
    owners: Slab<Option<Token>>,
    /// Slots of closed connections, freed after the event batch: an event
    /// of the closed one later in the batch must not reach a new owner.
    closed: Vec<usize>,
}

/// An idle upstream connection and its slot in [`Upstreams`].
pub struct Pooled {
    stream: TcpStream,
    slot: usize,
}

impl Upstreams {
    pub fn new(balancer: Balancer) -> Upstreams {
        Upstreams {
            pool: Pool::default(),
            balancer,
            owners: Slab::new(),
            closed: Vec::new(),
        }
    }

    /// The exchange token an upstream connection's event goes to, if one
    /// uses that connection now.
    pub fn owner(&self, token: Token) -> Option<Token> {
        let slot = token.0.checked_sub(UPSTREAM_BASE)?;
        self.owners.get(slot).copied().flatten()
    }

    /// Closes `conn` (dropping its socket takes it out of the poll).
    fn close(&mut self, conn: Pooled) {
        self.release(conn.slot);
    }

    fn release(&mut self, slot: usize) {
        if let Some(owner) = self.owners.get_mut(slot) {
            *owner = None;
            self.closed.push(slot);
        }
    }

    /// Frees the slots of the connections closed during the batch.
    pub fn sweep(&mut self) {
        for slot in self.closed.drain(..) {
            self.owners.try_remove(slot);
        }
    }

    /// Closes the connections idle for too long.
    pub fn expire(&mut self, now: Instant) {
        for conn in self.pool.expire(now, POOL_IDLE_TIMEOUT) {
            self.close(conn);
        }
    }
}

/// What a step of the exchange led to.
pub enum ProxyStep {
    Progress,
    Blocked,
    /// The response is complete; `close` if the client connection cannot
    /// go on.
    Done {
        close: bool,
    },
    /// Nothing was sent to the client yet: answer this status instead.
    Fail(u16),
    /// The client is gone or the response broke off: close.
    Abort,
}

/// How the upstream's response body ends.
enum UpBody {
    Length(u64),
    Chunked(ChunkedDecoder),
    UntilClose,
}

pub struct ProxyRun {
    pub request: Request,
    group: usize,
    tried: Vec<usize>,
    server: usize,
    addr: SocketAddr,
    token: Token,
    upstream: Option<TcpStream>,
    /// The upstream connection's slot in [`Upstreams`] (while `upstream`
    /// is `Some`).
    slot: usize,
    connected: bool,
    /// The connection came from the pool: if it turns out dead before any
    /// response byte, one fresh connection is tried.
    reused: bool,
    readable: bool,
    writable: bool,
    /// The upstream closed its side (an end of file may wait behind data).
    read_closed: bool,
    /// The request head and body bytes on their way upstream.
    out: Vec<u8>,
    out_pos: usize,
    /// Bytes `out` held before the first body byte: what a retry resends.
    head_len: usize,
    /// `out` still holds the whole request (head and any body): it can be
    /// sent again to another server.
    out_whole: bool,
    next_upstream: NextUpstream,
    /// The client's address, for `ip_hash`.
    client_ip: IpAddr,
    /// Counts this request on its server, for `least_conn`.
    active: Option<Active>,
    /// The client's body still to read, counted against its limit.
    feed: Option<BodyIn>,
    body_framing: BodyFraming,
    /// The response head read so far (until `relay` exists).
    head: Vec<u8>,
    relay: Option<Relay>,
    /// The client asked for an upgrade (`Connection: upgrade`, `Upgrade`).
    upgrade: bool,
    /// After a 101: the connection is a two-way byte tunnel.
    tunnel: Option<Box<Tunnel>>,
    up_body: Option<UpBody>,
    /// The client is HTTP/1.0 and the upstream body chunked: de-chunk.
    dechunk: bool,
    upstream_keep_alive: bool,
    pub keep_alive: bool,
    pub status: u16,
    pub body_bytes: u64,
    /// Serving an `error_page` URI: the original error status, which
    /// replaces the answer's own (as nginx does for a URI error page).
    pub error_status: Option<u16>,
    pub last_progress: Instant,
    connect_timeout: Duration,
    read_timeout: Duration,
    /// The location's rules for the response head and coding.
    output: Output,
    interim: &'static [u8],
}

impl ProxyRun {
    /// Prepares the exchange for `proxy`, the `proxy_pass` of `location`;
    /// [`ProxyRun::connect`] starts it.
    pub fn new(
        request: Request,
        location: &Location,
        proxy: &ProxyPass,
        peer: SocketAddr,
        token: Token,
        now: Instant,
    ) -> Box<ProxyRun> {
        let body_framing = match request.framing {
            Framing::None | Framing::Length(0) => BodyFraming::None,
            Framing::Length(n) => BodyFraming::Length(n),
            Framing::Chunked => BodyFraming::Chunked,
        };
        let out = request_head(&request, location, proxy, peer, body_framing);
        let feed = (!matches!(body_framing, BodyFraming::None))
            .then(|| BodyIn::new(request.framing, location.client_max_body_size));
        Box::new(ProxyRun {
            interim: if request.expect_continue && feed.is_some() {
                b"HTTP/1.1 100 Continue\r\n\r\n"
            } else {
                b""
            },
            group: proxy.upstream,
            tried: Vec::new(),
            server: 0,
            addr: SocketAddr::from(([0, 0, 0, 0], 0)),
            token,
            upstream: None,
            slot: 0,
            connected: false,
            reused: false,
            readable: false,
            writable: false,
            read_closed: false,
            head_len: out.len(),
            out_whole: true,
            next_upstream: location.proxy_next_upstream,
            client_ip: peer.ip(),
            active: None,
            out,
            out_pos: 0,
            feed,
            body_framing,
            head: Vec::new(),
            relay: None,
            upgrade: upgrade_of(&request).is_some(),
            tunnel: None,
            up_body: None,
            dechunk: false,
            upstream_keep_alive: false,
            keep_alive: true,
            status: 0,
            error_status: None,
            body_bytes: 0,
            last_progress: now,
            connect_timeout: location.proxy_connect_timeout,
            read_timeout: location.proxy_read_timeout,
            output: location.output.clone(),
            request,
        })
    }

    /// Starts connecting to the first server of the group; `Err` is the
    /// status to answer when none can be tried.
    pub fn connect(&mut self, table: &RoutingTable, cx: &mut Cx) -> Result<(), u16> {
        self.connect_next(table, cx, false)
    }

    pub fn upstream_ready(&mut self, ready: Readiness) {
        self.readable |= ready.readable;
        self.writable |= ready.writable;
        self.read_closed |= ready.read_closed;
    }

    pub fn responded(&self) -> bool {
        self.relay.is_some() || self.tunnel.is_some()
    }

    /// The relay (or the tunnel's way to the client) is full: the exchange
    /// waits for the client to read (`send_timeout` applies, not the
    /// upstream's timeouts).
    pub fn waiting_on_client(&self) -> bool {
        self.relay.as_ref().is_some_and(|r| !r.has_room())
            || self.tunnel.as_ref().is_some_and(|t| t.waiting_on_client())
    }

    /// How long the current wait may last.
    pub fn timeout(&self) -> Duration {
        if self.connected {
            self.read_timeout
        } else {
            self.connect_timeout
        }
    }

    /// The deadline passed before the response head: a failure of this
    /// server, and with `proxy_next_upstream timeout` the next one is
    /// tried (the request must still be whole once it was sent); otherwise
    /// the upstream is too slow (504).
    pub fn on_timeout(&mut self, table: &RoutingTable, cx: &mut Cx) -> Result<(), u16> {
        if self.relay.is_some() {
            return Err(504);
        }
        cx.upstreams
            .balancer
            .failed(self.group, self.server, cx.now);
        let again = !self.connected || self.replayable();
        if !again || !self.next_upstream.has(NextUpstream::TIMEOUT) {
            return Err(504);
        }
        self.drop_upstream(cx.upstreams);
        self.connect_next(table, cx, true).map_err(|_| 504)
    }

    /// Whether the request can go to another server: no response byte
    /// reached the client and the request is still whole in `out` (a body
    /// larger than the buffer was consumed on the way).
    fn replayable(&self) -> bool {
        self.relay.is_none() && self.feed.is_none() && self.out_whole
    }

    /// Opens a connection to the next server of the group that was not
    /// tried yet: a live pooled one, else a new one.
    fn connect_next(
        &mut self,
        table: &RoutingTable,
        cx: &mut Cx,
        after_failure: bool,
    ) -> Result<(), u16> {
        let servers = table
            .upstreams
            .get(self.group)
            .map_or(&[][..], |u| &u.servers[..]);
        loop {
            let Some(index) =
                cx.upstreams
                    .balancer
                    .choose(self.group, &self.tried, self.client_ip, cx.now)
            else {
                return Err(if after_failure { 502 } else { 503 });
            };
            self.tried.push(index);
            let Some(server) = servers.get(index) else {
                continue;
            };
            self.active = cx.upstreams.balancer.active(self.group, index);
            self.server = index;
            self.addr = server.addr;
            if let Some(pooled) = take_live(cx.upstreams, server.addr) {
                self.attach_pooled(pooled, cx.upstreams);
                return Ok(());
            }
            let attached = TcpStream::connect(server.addr)
                .is_ok_and(|stream| self.attach(stream, cx.registry, cx.upstreams));
            if attached {
                // The connect timeout runs from here, not from the request.
                self.last_progress = cx.now;
                return Ok(());
            }
            cx.upstreams.balancer.failed(self.group, index, cx.now);
            if !self.next_upstream.has(NextUpstream::ERROR) {
                return Err(502);
            }
        }
    }

    /// Takes a new connection (its connect under way) as this exchange's
    /// upstream, registered under a slot of its own.
    fn attach(
        &mut self,
        mut stream: TcpStream,
        registry: &Registry,
        upstreams: &mut Upstreams,
    ) -> bool {
        let slot = upstreams.owners.insert(Some(self.token));
        let interest = Interest::READABLE | Interest::WRITABLE;
        if registry
            .register(&mut stream, Token(UPSTREAM_BASE + slot), interest)
            .is_err()
        {
            upstreams.owners.remove(slot);
            return false;
        }
        let _ = stream.set_nodelay(true);
        self.take_stream(stream, slot, false);
        true
    }

    /// Takes a pooled connection: it is still registered under its slot,
    /// whose events now come here.
    fn attach_pooled(&mut self, pooled: Pooled, upstreams: &mut Upstreams) {
        upstreams.owners[pooled.slot] = Some(self.token);
        self.take_stream(pooled.stream, pooled.slot, true);
    }

    fn take_stream(&mut self, stream: TcpStream, slot: usize, reused: bool) {
        self.upstream = Some(stream);
        self.slot = slot;
        self.connected = reused;
        self.reused = reused;
        self.readable = false;
        self.read_closed = false;
        self.writable = reused;
        self.out_pos = 0;
        self.head.clear();
    }

    /// Closes the upstream connection; closing its socket takes it out of
    /// the poll (no `epoll_ctl`: nothing else holds the descriptor).
    fn drop_upstream(&mut self, upstreams: &mut Upstreams) {
        if self.upstream.take().is_some() {
            upstreams.release(self.slot);
        }
        self.connected = false;
    }

    /// Moves everything that can move.
    pub fn step(&mut self, client: &mut Client, table: &RoutingTable, cx: &mut Cx) -> ProxyStep {
        if self.tunnel.is_some() {
            return self.step_tunnel(client, cx);
        }
        let mut progress = false;
        let body_read = self.feed.is_none();
        if body_read && !self.relay.as_ref().is_some_and(Relay::is_done) && client_gone(client) {
            return ProxyStep::Abort;
        }
        if !self.interim.is_empty() {
            match client.write_all_now(&mut self.interim) {
                Ok(true) => progress = true,
                Ok(false) => return ProxyStep::Blocked,
                Err(_) => return ProxyStep::Abort,
            }
        }
        // Once the response has begun, an upstream that is gone (it closed
        // behind a whole body the client has not taken yet) needs no
        // connecting: what is left is the relay's.
        if !self.connected && self.relay.is_none() {
            match self.check_connect(table, cx) {
                Ok(true) => progress = true,
                Ok(false) => return ProxyStep::Blocked,
                Err(status) => return ProxyStep::Fail(status),
            }
        }
        match self.send(client, table, cx) {
            Ok(moved) => progress |= moved,
            Err(step) => return step,
        }
        match self.receive(table, cx) {
            Ok(moved) => progress |= moved,
            Err(step) => return step,
        }
        if let Some(relay) = &mut self.relay {
            match client.flush(relay, cx.now) {
                Ok(moved) => progress |= moved,
                Err(_) => return ProxyStep::Abort,
            }
            if relay.is_done() {
                return self.complete(cx);
            }
        }
        if progress {
            self.last_progress = cx.now;
            ProxyStep::Progress
        } else {
            ProxyStep::Blocked
        }
    }

    /// Bytes both ways through the tunnel; its end ends the exchange and
    /// the client connection.
    fn step_tunnel(&mut self, client: &mut Client, cx: &mut Cx) -> ProxyStep {
        let (Some(tunnel), Some(upstream)) = (&mut self.tunnel, &mut self.upstream) else {
            return ProxyStep::Abort;
        };
        if !client.input.is_empty() {
            // What the client sent right behind its request belongs to the
            // new protocol.
            tunnel.push_early(client.input.data());
            let n = client.input.len();
            client.input.consume(n);
        }
        match tunnel.step(client, upstream, &mut self.readable, self.read_closed, cx) {
            TunnelStep::Progress => {
                self.last_progress = cx.now;
                self.body_bytes = tunnel.body_bytes;
                ProxyStep::Progress
            }
            TunnelStep::Blocked => ProxyStep::Blocked,
            TunnelStep::Closed => {
                self.body_bytes = tunnel.body_bytes;
                self.drop_upstream(cx.upstreams);
                ProxyStep::Done { close: true }
            }
        }
    }

    /// The upstream switched protocols: the 101 head (and whatever came
    /// behind it) goes to the client through a new tunnel.
    fn start_tunnel(&mut self, head: &SwitchHead, len: usize, cx: &mut Cx) {
        cx.upstreams.balancer.succeeded(self.group, self.server);
        self.status = 101;
        self.keep_alive = false;
        let mut out = Vec::with_capacity(256);
        let tokens = self.output.server_tokens;
        write_head_start(
            &mut out,
            101,
            cx.date.get(std::time::SystemTime::now()),
            tokens,
        );
        for (name, value) in &head.headers {
            write_header(&mut out, name, value);
        }
        write_header(&mut out, "Upgrade", &head.upgrade);
        out.extend_from_slice(b"Connection: upgrade\r\n\r\n");
        let head_len = out.len();
        out.extend_from_slice(&self.head[len..]);
        self.head = Vec::new();
        self.tunnel = Some(Box::new(Tunnel::new(out, head_len)));
    }

    /// A non-blocking connect finished when the socket turns writable.
    fn check_connect(&mut self, table: &RoutingTable, cx: &mut Cx) -> Result<bool, u16> {
        if !self.writable {
            return Ok(false);
        }
        let Some(stream) = &self.upstream else {
            return Err(502);
        };
        // A writable event may be spurious: one a pooled connection had
        // waiting when it was taken goes to its new owner. A connect still
        // in progress has no error and no peer yet (mio's
        // `TcpStream::connect`).
        let failed = match stream.take_error() {
            Ok(Some(_)) | Err(_) => true,
            Ok(None) => match stream.peer_addr() {
                Ok(_) => false,
                Err(err) if err.kind() == io::ErrorKind::NotConnected => {
                    self.writable = false;
                    return Ok(false);
                }
                Err(_) => true,
            },
        };
        if failed {
            cx.upstreams
                .balancer
                .failed(self.group, self.server, cx.now);
            self.drop_upstream(cx.upstreams);
            if !self.next_upstream.has(NextUpstream::ERROR) {
                return Err(502);
            }
            self.connect_next(table, cx, true)?;
            return Ok(true);
        }
        self.connected = true;
        self.last_progress = cx.now;
        Ok(true)
    }

    /// Request bytes → upstream, refilled from the client's body.
    fn send(
        &mut self,
        client: &mut Client,
        table: &RoutingTable,
        cx: &mut Cx,
    ) -> Result<bool, ProxyStep> {
        let mut progress = self.fill_out(client, cx)?;
        let Some(stream) = &mut self.upstream else {
            return Ok(progress);
        };
        while self.writable && self.out_pos < self.out.len() {
            match stream.write(&self.out[self.out_pos..]) {
                Ok(n) => {
                    self.out_pos += n;
                    progress = true;
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => self.writable = false,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(_) if self.relay.is_none() && self.reused => {
                    return Err(self.retry_or_fail(table, cx))
                }
                Err(_) => return Err(self.upstream_broke(cx)),
            }
        }
        // A body still arriving is sent and forgotten; one that is whole in
        // `out` stays there, for another server should this one fail.
        if self.out_pos == self.out.len() && self.out_pos > self.head_len && self.feed.is_some() {
            self.out_whole = false;
            self.out.clear();
            self.out_pos = 0;
            self.head_len = 0;
        }
        Ok(progress)
    }

    /// Moves decoded body bytes from the client into `out`.
    fn fill_out(&mut self, client: &mut Client, cx: &mut Cx) -> Result<bool, ProxyStep> {
        let mut progress = false;
        while let Some(body) = &mut self.feed {
            if self.out.len() - self.out_pos >= SEND_BUFFER {
                break;
            }
            let chunked = matches!(self.body_framing, BodyFraming::Chunked);
            let out = &mut self.out;
            let step = body.step(client, SEND_BUFFER, cx, |data| {
                if chunked {
                    chunk_size_line(data.len(), out);
                    out.extend_from_slice(data);
                    out.extend_from_slice(b"\r\n");
                } else {
                    out.extend_from_slice(data);
                }
                Ok(())
            });
            match step {
                Ok(BodyStep::Data | BodyStep::Read) => progress = true,
                Ok(BodyStep::Done) => {
                    if chunked {
                        self.out.extend_from_slice(b"0\r\n\r\n");
                    }
                    self.feed = None;
                    progress = true;
                }
                Ok(BodyStep::Blocked) => break,
                Err(BodyError::Status(status)) => return Err(refuse(self.relay.is_some(), status)),
                Err(BodyError::Closed) => return Err(ProxyStep::Abort),
            }
        }
        Ok(progress)
    }

    /// Upstream → response head, then → relay.
    fn receive(&mut self, table: &RoutingTable, cx: &mut Cx) -> Result<bool, ProxyStep> {
        let room = self.relay.as_ref().is_none_or(Relay::has_room);
        if !self.readable || !room {
            return Ok(false);
        }
        let Some(stream) = &mut self.upstream else {
            return Ok(false);
        };
        let n = match read_edge(stream, cx.scratch, &mut self.readable, self.read_closed) {
            Ok(Some(n)) => n,
            Ok(None) => return Ok(false),
            Err(_) if self.relay.is_none() => return Err(self.retry_or_fail(table, cx)),
            Err(_) => return Err(ProxyStep::Abort),
        };
        if n == 0 {
            return self.upstream_eof(table, cx).map(|()| true);
        }
        self.reused = false;
        if self.relay.is_some() {
            self.relay_body(&cx.scratch[..n])?;
        } else if self.head.is_empty() && !self.upgrade {
            // Out of `cx` while it is parsed (the head borrows it).
            let scratch = std::mem::take(&mut cx.scratch);
            let parsed = self.parse_whole_head(&scratch[..n], table, cx);
            cx.scratch = scratch;
            if !parsed? {
                self.head.extend_from_slice(&cx.scratch[..n]);
                self.parse_head(table, cx)?;
            }
        } else {
            self.head.extend_from_slice(&cx.scratch[..n]);
            self.parse_head(table, cx)?;
        }
        Ok(true)
    }

    fn upstream_eof(&mut self, table: &RoutingTable, cx: &mut Cx) -> Result<(), ProxyStep> {
        self.upstream_keep_alive = false;
        if self.relay.is_none() {
            return Err(self.retry_or_fail(table, cx));
        }
        self.drop_upstream(cx.upstreams);
        match self.up_body {
            Some(UpBody::UntilClose) | None => {
                if let Some(relay) = &mut self.relay {
                    relay.end();
                }
                Ok(())
            }
            // A body cut short: the client can only learn it from a close.
            Some(UpBody::Length(_) | UpBody::Chunked(_)) => Err(ProxyStep::Abort),
        }
    }

    /// The upstream failed before the whole response head: a dead pooled
    /// connection gets one fresh try on the same server (not a failure of
    /// the server); otherwise the server failed, and with
    /// `proxy_next_upstream error` the next one is tried while the request
    /// can be sent again whole; anything else is 502.
    fn retry_or_fail(&mut self, table: &RoutingTable, cx: &mut Cx) -> ProxyStep {
        self.drop_upstream(cx.upstreams);
        if self.reused && self.head.is_empty() && self.replayable() {
            if let Ok(stream) = TcpStream::connect(self.addr) {
                if self.attach(stream, cx.registry, cx.upstreams) {
                    return ProxyStep::Progress;
                }
            }
        }
        cx.upstreams
            .balancer
            .failed(self.group, self.server, cx.now);
        if self.next_upstream.has(NextUpstream::ERROR) && self.replayable() {
            return match self.connect_next(table, cx, true) {
                Ok(()) => ProxyStep::Progress,
                Err(status) => ProxyStep::Fail(status),
            };
        }
        ProxyStep::Fail(502)
    }

    fn upstream_broke(&mut self, cx: &mut Cx) -> ProxyStep {
        self.drop_upstream(cx.upstreams);
        if self.relay.is_some() {
            ProxyStep::Abort
        } else {
            cx.upstreams
                .balancer
                .failed(self.group, self.server, cx.now);
            ProxyStep::Fail(502)
        }
    }

    fn parse_head(&mut self, table: &RoutingTable, cx: &mut Cx) -> Result<(), ProxyStep> {
        loop {
            if self.upgrade {
                match parse_switch_head(&self.head) {
                    Ok(Some((head, len))) => {
                        self.start_tunnel(&head, len, cx);
                        return Ok(());
                    }
                    Ok(None) => {}
                    Err(_) => return Err(self.upstream_broke(cx)),
                }
            }
            // Out of `self` while the parsed head borrows it.
            let buf = std::mem::take(&mut self.head);
            let (head, len) = match parse_response_head(&buf, self.request.is_head()) {
                Ok(Some(parsed)) => parsed,
                Ok(None) if buf.len() < HEAD_LIMIT => {
                    self.head = buf;
                    return Ok(());
                }
                Ok(None) | Err(_) => return Err(self.upstream_broke(cx)),
            };
            if head.is_interim() {
                self.head = buf[len..].to_vec();
                continue;
            }
            return self.on_head(&head, &buf[len..], table, cx);
        }
    }

    /// The first read usually holds the whole head (and the start of the
    /// body, or all of it): then it is parsed where it was read, without
    /// a copy into `head`. `Ok(false)` leaves anything else (a partial
    /// head, an interim one, an error) to [`ProxyRun::parse_head`].
    fn parse_whole_head(
        &mut self,
        data: &[u8],
        table: &RoutingTable,
        cx: &mut Cx,
    ) -> Result<bool, ProxyStep> {
        match parse_response_head(data, self.request.is_head()) {
            Ok(Some((head, len))) if !head.is_interim() => {
                self.on_head(&head, &data[len..], table, cx).map(|()| true)
            }
            Ok(_) | Err(_) => Ok(false),
        }
    }

    /// The final response head arrived, `rest` behind it: the client's
    /// head and the body's first bytes go to a new relay, unless the
    /// status sends the request to the next server.
    fn on_head(
        &mut self,
        head: &UpstreamHead<'_>,
        rest: &[u8],
        table: &RoutingTable,
        cx: &mut Cx,
    ) -> Result<(), ProxyStep> {
        if self.next_upstream.has_status(head.status) {
            cx.upstreams
                .balancer
                .failed(self.group, self.server, cx.now);
            let others = cx.upstreams.balancer.has_untried(self.group, &self.tried);
            if others && self.replayable() {
                // The answer is dropped unread, and its connection with it.
                self.drop_upstream(cx.upstreams);
                return self.connect_next(table, cx, true).map_err(ProxyStep::Fail);
            }
        } else {
            cx.upstreams.balancer.succeeded(self.group, self.server);
        }
        self.relay = Some(self.response_head(head, cx));
        if !rest.is_empty() {
            self.relay_body(rest)?;
        } else if matches!(self.up_body, Some(UpBody::Length(0))) || self.up_body.is_none() {
            self.finish_upstream_body();
        }
        Ok(())
    }

    /// The client's response head from the upstream's, with what the
    /// location adds; the body is compressed on the way when the location
    /// and the client want gzip (SPEC §9.5).
    fn response_head(&mut self, head: &UpstreamHead<'_>, cx: &mut Cx) -> Relay {
        let status = self.error_status.unwrap_or(head.status);
        self.status = status;
        self.upstream_keep_alive = head.keep_alive;
        let http10 = self.request.minor_version == 0;
        let field = |name: &str| {
            head.headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| String::from_utf8_lossy(v))
        };
        let content_type = field("content-type");
        let coding = output::coding(
            &self.output,
            Some(&self.request),
            Candidate {
                status: head.status,
                content_type: content_type.as_deref(),
                encoded: field("content-encoding").is_some(),
                length: match head.framing {
                    ResponseFraming::Length(n) => Some(n),
                    // A HEAD's or 304's length describes the representation.
                    ResponseFraming::Empty => {
                        field("content-length").and_then(|v| v.trim().parse().ok())
                    }
                    ResponseFraming::Chunked | ResponseFraming::UntilClose => None,
                },
            },
        );
        // `coding` gzips for HTTP/1.1 clients only: the body is chunked.
        let gzip = coding == Coding::Gzip;
        let (up_body, length) = match head.framing {
            ResponseFraming::Empty => (None, None),
            ResponseFraming::Length(n) if gzip => (Some(UpBody::Length(n)), Some(Length::Chunked)),
            ResponseFraming::Length(n) => (Some(UpBody::Length(n)), Some(Length::Known(n))),
            ResponseFraming::Chunked if http10 => (
                Some(UpBody::Chunked(ChunkedDecoder::new())),
                Some(Length::UntilClose),
            ),
            ResponseFraming::Chunked => (
                Some(UpBody::Chunked(ChunkedDecoder::new())),
                Some(Length::Chunked),
            ),
            ResponseFraming::UntilClose if http10 => {
                (Some(UpBody::UntilClose), Some(Length::UntilClose))
            }
            ResponseFraming::UntilClose => (Some(UpBody::UntilClose), Some(Length::Chunked)),
        };
        // Compressed pieces are framed anew, so the upstream's chunks are
        // taken apart.
        self.dechunk = (http10 || gzip) && matches!(head.framing, ResponseFraming::Chunked);
        if length == Some(Length::UntilClose) {
            self.keep_alive = false;
        }
        self.up_body = up_body;
        // The loop's spare head buffer: the last relay's, given back when
        // it completed, already large enough for a head and a small body.
        let mut out = std::mem::take(cx.spare_head);
        out.clear();
        let now = std::time::SystemTime::now();
        let output = &self.output;
        write_head_start(&mut out, status, cx.date.get(now), output.server_tokens);
        for (name, value) in &head.headers {
            output::write_own_header(&mut out, output, status, coding, name, value);
        }
        output::write_added(&mut out, output, status, coding, Some(&self.request), now);
        let framing = if gzip && self.request.is_head() {
            None
        } else {
            length
        };
        write_head_end(&mut out, framing, self.keep_alive);
        let passthrough = matches!(head.framing, ResponseFraming::Chunked) && !self.dechunk;
        match length {
            _ if self.request.is_head() => Relay::new(out, None),
            _ if gzip => Relay::new(out, length).gzip(),
            Some(Length::Chunked) if passthrough => Relay::pre_chunked(out),
            length => Relay::new(out, length),
        }
    }

    /// `data`: upstream body bytes.
    fn relay_body(&mut self, data: &[u8]) -> Result<(), ProxyStep> {
        let Some(relay) = &mut self.relay else {
            return Ok(());
        };
        let n = data.len();
        match &mut self.up_body {
            None => {}
            Some(UpBody::UntilClose) => {
                relay.push(data);
                self.body_bytes += n as u64;
            }
            Some(UpBody::Length(remaining)) => {
                let take = (*remaining).min(n as u64) as usize;
                relay.push(&data[..take]);
                *remaining -= take as u64;
                self.body_bytes += take as u64;
                if *remaining == 0 {
                    // Bytes past the length would be a broken upstream.
                    self.upstream_keep_alive &= take == n;
                    self.finish_upstream_body();
                }
            }
            Some(UpBody::Chunked(decoder)) => {
                let mut pos = 0;
                loop {
                    let (used, chunk) = decoder.step(&data[pos..]).map_err(|_| ProxyStep::Abort)?;
                    let piece = &data[pos..pos + used];
                    match chunk {
                        Chunk::Data(range) => {
                            self.body_bytes += range.len() as u64;
                            if self.dechunk {
                                relay.push(&piece[range]);
                            } else {
                                relay.push(piece);
                            }
                            pos += used;
                        }
                        Chunk::NeedMore => {
                            if !self.dechunk {
                                relay.push(piece);
                            }
                            break;
                        }
                        Chunk::Done => {
                            if !self.dechunk {
                                relay.push(piece);
                            }
                            self.upstream_keep_alive &= pos + used == n;
                            self.finish_upstream_body();
                            break;
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn finish_upstream_body(&mut self) {
        if let Some(relay) = &mut self.relay {
            relay.end();
        }
        self.up_body = None;
    }

    /// The response is relayed whole: pool the upstream connection if it
    /// can serve again.
    fn complete(&mut self, cx: &mut Cx) -> ProxyStep {
        let reusable =
            self.upstream_keep_alive && self.feed.is_none() && self.out_pos == self.out.len();
        if reusable {
            if let Some(stream) = self.upstream.take() {
                // It stays registered under its slot, which has no owner
                // while it is idle. An evicted one is closed.
                let upstreams = &mut *cx.upstreams;
                upstreams.owners[self.slot] = None;
                let pooled = Pooled {
                    stream,
                    slot: self.slot,
                };
                if let Some(evicted) = upstreams.pool.put(self.addr, pooled, cx.now) {
                    upstreams.close(evicted);
                }
            }
        } else {
            self.drop_upstream(cx.upstreams);
        }
        let close = self.relay.as_ref().is_none_or(Relay::must_close)
            || !self.keep_alive
            || self.feed.is_some();
        if let Some(relay) = &mut self.relay {
            let buf = relay.take_buf();
            // A large body's buffer is not kept for the small ones.
            if buf.capacity() <= SPARE_LIMIT && buf.capacity() > cx.spare_head.capacity() {
                *cx.spare_head = buf;
            }
        }
        ProxyStep::Done { close }
    }

    /// The exchange is over early: the upstream connection is closed.
    pub fn abandon(&mut self, upstreams: &mut Upstreams) {
        self.drop_upstream(upstreams);
    }
}

/// The client's body went wrong (too large, malformed): its own error
/// response, unless the upstream's has begun, when closing is the only way
/// left to tell the client (a second response would land inside the first
/// one's body).
fn refuse(responded: bool, status: u16) -> ProxyStep {
    if responded {
        ProxyStep::Abort
    } else {
        ProxyStep::Fail(status)
    }
}

/// Whether the client closed its connection. Once its body is read the
/// client is not read any more, so without this peek its leaving would go
/// unnoticed until the upstream answers (or `proxy_read_timeout`), and the
/// upstream would keep working for nobody. Bytes waiting are a pipelined
/// request: they stay for the next one. As nginx's
/// `ngx_http_upstream_check_broken_connection`.
fn client_gone(client: &mut Client) -> bool {
    if client.peer_closed {
        return true;
    }
    if !client.readable {
        return false;
    }
    let mut probe = [0u8; 1];
    match client.transport.socket().peek(&mut probe) {
        Ok(0) => true,
        Ok(_) => false,
        Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
            client.readable = false;
            false
        }
        Err(err) if err.kind() == io::ErrorKind::Interrupted => false,
        Err(_) => true,
    }
}

/// A pooled connection that is still open and quiet, if any.
///
/// The probe costs one system call, but bytes an upstream sent after a
/// complete response must never be read as the next request's response.
fn take_live(upstreams: &mut Upstreams, addr: SocketAddr) -> Option<Pooled> {
    while let Some(conn) = upstreams.pool.take(addr) {
        let mut probe = [0u8; 1];
        // An idle upstream connection has nothing to read: EOF or stray
        // bytes mean it cannot carry a new request.
        if matches!(conn.stream.peek(&mut probe), Err(ref e) if e.kind() == io::ErrorKind::WouldBlock)
        {
            return Some(conn);
        }
        upstreams.close(conn);
    }
    None
}
