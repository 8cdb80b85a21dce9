//! The one event loop: a mio `Poll` over every listening socket, client
//! connection and signal, and the deadlines that bound them.
//!
//! Each turn: sleep until an event or the earliest deadline, dispatch the
//! events by token, fire due deadlines, then free the connections that
//! closed (after the batch, because the slab reuses a key at once).
//!
//! Tokens: `0` is the signal pipe, `1..HEALTH_BASE - 1` the listeners (slab
//! key plus 1), `HEALTH_BASE - 1` the open-file cache's inotify descriptor,
//! `HEALTH_BASE..CONN_BASE` the active health checks ([`HealthChecks`]), and
//! from `CONN_BASE` each connection owns one token per [`Source`] in a row,
//! so the sockets and pipes of a connection find it directly. Upstream
//! connections have tokens of their own from [`UPSTREAM_BASE`], which
//! [`Upstreams::owner`] maps to the token of the exchange using one.
//!
//! The open-file cache is drained of its queued changes when a wait
//! reports its inotify descriptor, before any request of that batch is read
//! (the freshness argument is in [`crate::cache`]).
//!
//! CGI children that outlive their exchange are kept in a reaper list and
//! collected with `try_wait` whenever SIGCHLD wakes the loop.
//!
//! Each connection event runs under `catch_unwind` ([`panic`]): a panic ends
//! that connection only. The loop runs alone ([`Role::Single`]: it binds and
//! reloads itself) or as one worker of the master ([`Role::Worker`]: it
//! serves inherited listeners and leaves SIGHUP to the master).

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use mio::net::TcpListener;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use signal_hook::consts::{SIGCHLD, SIGHUP, SIGINT, SIGTERM};
use signal_hook_mio::v1_0::Signals;
use slab::Slab;

use crate::cache::FileCache;
use crate::handlers::proxy::{Balancer, POOL_IDLE_TIMEOUT};
use crate::http::date::DateCache;
use crate::routing::RoutingTable;
use crate::server::conn::{Conn, Cx, Readiness, Source, Verdict};
use crate::server::health::HealthChecks;
use crate::server::log::{self, Logs};
use crate::server::panic;
use crate::server::proxy::{Upstreams, UPSTREAM_BASE};
use crate::server::reaper::Reaper;
use crate::server::timers::Timers;
use crate::server::transport::Transport;

const SIGNALS: Token = Token(0);
const LISTENER_BASE: usize = 1;
const HEALTH_BASE: usize = 1 << 15;
const CONN_BASE: usize = 1 << 16;
const INOTIFY: Token = Token(HEALTH_BASE - 1);

/// After `accept` fails for lack of file descriptors, try again after this
/// long at the latest (nginx waits its `accept_mutex_delay`, 500 ms); a
/// connection that closes resumes it at once.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);
/// Descriptors held in reserve (of `/dev/null`) while accepting, and given
/// up when `accept` runs out: the connections already open can then still
/// open a file, a CGI pipe or an upstream socket (SPEC §9.6).
const RESERVE_FDS: usize = 8;
const SCRATCH: usize = 64 * 1024;

struct Listener {
    socket: TcpListener,
    addr: SocketAddr,
    table: Arc<RoutingTable>,
    /// Index of this address in `table.sockets`.
    index: usize,
}

/// Why the listeners are not being accepted from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Paused {
    /// `max_connections` open: resumes when one closes.
    Full,
    /// `accept` ran out of descriptors (EMFILE, ENFILE) or memory: resumes
    /// at this instant, or at once when a connection closes, once the
    /// reserve could be taken back.
    Starved(Instant),
}

/// Whether the loop serves alone or as one worker of a master.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// `worker_processes 1`: it binds, and reloads itself on SIGHUP.
    Single,
    /// It serves listeners bound by the master, which handles SIGHUP.
    Worker,
}

/// A listening socket handed to a worker: the socket, the address it was
/// bound for, and that address's index in the table's `sockets`.
pub type Inherited = (TcpListener, SocketAddr, usize);

pub struct EventLoop {
    poll: Poll,
    role: Role,
    config_path: PathBuf,
    table: Arc<RoutingTable>,
    listeners: Slab<Listener>,
    conns: Slab<Conn>,
    timers: Timers,
    signals: Signals,
    scratch: Vec<u8>,
    date: DateCache,
    logs: Logs,
    /// Set by SIGINT/SIGTERM: when the loop ends at the latest.
    shutdown_at: Option<Instant>,
    /// Why accepting stopped, if it did.
    accept_paused: Option<Paused>,
    /// Out of descriptors since the last accept that succeeded (logged
    /// once, not at every retry).
    out_of_fds: bool,
    /// [`RESERVE_FDS`] descriptors, empty while accepting is paused for
    /// lack of them.
    reserve: Vec<std::fs::File>,
    closing: Vec<usize>,
    /// CGI children that ended their exchange but not yet their process.
    reaper: Reaper,
    /// Idle upstream connections and the balancer's state.
    upstreams: Upstreams,
    /// The active health checks of the current configuration.
    health: HealthChecks,
    /// This process's open-file cache (each worker has its own).
    cache: FileCache,
    /// How many times the loop has waited.
    wait: u64,
    /// The response head buffer between responses.
    spare_head: Vec<u8>,
    /// The static handler's path buffer between requests.
    spare_path: PathBuf,
}

/// The token of `source` of connection `key`.
fn token_of(key: usize, source: Source) -> Token {
    Token(CONN_BASE + key * Source::COUNT + source.index())
}

/// Splits a connection token into its connection key and source.
fn split_token(token: usize) -> Option<(usize, Source)> {
    let n = token.checked_sub(CONN_BASE)?;
    Some((n / Source::COUNT, Source::from_index(n % Source::COUNT)?))
}

/// The context a connection runs with, borrowed from the loop's fields.
macro_rules! cx {
    ($self:ident, $now:expr) => {
        Cx {
            now: $now,
            scratch: &mut $self.scratch,
            date: &mut $self.date,
            logs: &mut $self.logs,
            registry: $self.poll.registry(),
            reaper: &mut $self.reaper,
            token: token_of,
            upstreams: &mut $self.upstreams,
            cache: &mut $self.cache,
            wait: $self.wait,
            spare_head: &mut $self.spare_head,
            spare_path: &mut $self.spare_path,
        }
    };
}
impl EventLoop {
    /// Binds every listen address of `table`.
    pub fn new(config_path: PathBuf, table: RoutingTable) -> anyhow::Result<EventLoop> {
        let table = Arc::new(table);
        let mut event_loop = EventLoop::empty(config_path, Arc::clone(&table), Role::Single)?;
        for (index, socket) in table.sockets.iter().enumerate() {
            if !socket.is_bound() {
                continue;
            }
            let listener =
                bind(socket.addr).with_context(|| format!("listening on {}", socket.addr))?;
            event_loop.add_listener(listener, socket.addr, &table, index)?;
        }
        Ok(event_loop)
    }

    /// A worker serving `listeners`, bound by the master for `table`.
    pub fn worker(
        config_path: PathBuf,
        table: Arc<RoutingTable>,
        listeners: Vec<Inherited>,
    ) -> anyhow::Result<EventLoop> {
        let mut event_loop = EventLoop::empty(config_path, Arc::clone(&table), Role::Worker)?;
        for (listener, addr, index) in listeners {
            event_loop.add_listener(listener, addr, &table, index)?;
        }
        Ok(event_loop)
    }

    fn empty(
        config_path: PathBuf,
        table: Arc<RoutingTable>,
        role: Role,
    ) -> anyhow::Result<EventLoop> {
        let poll = Poll::new().context("creating the poll")?;
        let mut signals = Signals::new([SIGINT, SIGTERM, SIGHUP, SIGCHLD])
            .context("installing signal handlers")?;
        poll.registry()
            .register(&mut signals, SIGNALS, Interest::READABLE)
            .context("registering signals")?;
        let mut logs = Logs::open(&table).context("opening logs")?;
        let balancer = Balancer::new(&table.upstreams);
        let health = health_checks(&table, &mut logs);
        let cache = FileCache::new();
        register_cache(&poll, &cache)?;
        Ok(EventLoop {
            poll,
            role,
            config_path,
            table,
            listeners: Slab::new(),
            conns: Slab::new(),
            timers: Timers::default(),
            signals,
            scratch: vec![0; SCRATCH],
            date: DateCache::new(),
            logs,
            shutdown_at: None,
            accept_paused: None,
            out_of_fds: false,
            reserve: open_reserve(),
            closing: Vec::new(),
            reaper: Reaper::default(),
            upstreams: Upstreams::new(balancer),
            health,
            cache,
            wait: 0,
            spare_head: Vec::new(),
            spare_path: PathBuf::new(),
        })
    }

    /// The addresses actually listened on (a port 0 gets a real one).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.listeners
            .iter()
            .filter_map(|(_, l)| l.socket.local_addr().ok())
            .collect()
    }

    /// Serves until SIGINT/SIGTERM and the end of the responses in flight.
    pub fn run(&mut self) -> anyhow::Result<()> {
        let mut events = Events::with_capacity(1024);
        // Read after each batch's work, for that work and for the next
        // wait's timeout: nothing waits in between.
        let mut now = Instant::now();
        loop {
            if let Some(at) = self.shutdown_at {
                if self.conns.is_empty() || now >= at {
                    self.reaper.kill_all();
                    return Ok(());
                }
            }
            let timeout = [
                self.timers.timeout(now),
                self.shutdown_at.map(|at| at - now),
                self.accept_retry_in(now),
                self.reaper
                    .next_deadline()
                    .map(|at| at.saturating_duration_since(now)),
                self.upstreams
                    .pool
                    .next_expiry(POOL_IDLE_TIMEOUT)
                    .map(|at| at.saturating_duration_since(now)),
                self.health
                    .next_deadline()
                    .map(|at| at.saturating_duration_since(now)),
            ]
            .into_iter()
            .flatten()
            .min();
            match self.poll.poll(&mut events, timeout) {
                Ok(()) => {}
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {
                    now = Instant::now();
                    continue;
                }
                Err(err) => return Err(err).context("polling"),
            }
            self.wait += 1;
            // Changes on disk first, before any request of the batch is
            // read (the argument is in `crate::cache`).
            if events.iter().any(|event| event.token() == INOTIFY) {
                self.cache.refresh();
            }
            // Each event reads the clock (vDSO, tens of nanoseconds): a
            // handshake or a large write earlier in the batch must not make
            // the deadlines of later connections start in the past.
            for event in events.iter() {
                if event.token() != INOTIFY {
                    self.dispatch(event, Instant::now());
                }
            }
            now = Instant::now();
            self.health.fire(
                now,
                self.poll.registry(),
                &mut self.upstreams.balancer,
                &mut self.logs,
            );
            self.fire_deadlines(now);
            self.close_finished(now);
            self.resume_accepting(now);
            self.reaper.reap(now);
            // Idle upstream connections past their time are closed.
            self.upstreams.expire(now);
            self.upstreams.sweep();
            self.cache.expire(now);
        }
    }

    fn dispatch(&mut self, event: &mio::event::Event, now: Instant) {
        match event.token() {
            SIGNALS => self.on_signals(now),
            Token(t) if t < HEALTH_BASE => self.accept_all(t - LISTENER_BASE, now),
            token @ Token(t) if t < CONN_BASE => self.health.on_ready(
                token,
                self.poll.registry(),
                &mut self.upstreams.balancer,
                &mut self.logs,
            ),
            token @ Token(t) if t >= UPSTREAM_BASE => {
                // An idle pooled connection has no owner.
                if let Some(Token(owner)) = self.upstreams.owner(token) {
                    self.dispatch_conn(owner, event, now);
                }
            }
            Token(t) => self.dispatch_conn(t, event, now),
        }
    }

    /// An event for a connection's own token `t`.
    fn dispatch_conn(&mut self, t: usize, event: &mio::event::Event, now: Instant) {
        let Some((key, source)) = split_token(t) else {
            return;
        };
        let ready = Readiness {
            readable: event.is_readable() || event.is_read_closed() || event.is_error(),
            writable: event.is_writable() || event.is_write_closed() || event.is_error(),
            read_closed: event.is_read_closed() || event.is_error(),
        };
        // None: closed earlier in this batch.
        if let Some(verdict) = self.guarded(key, now, |conn, cx| conn.on_ready(source, ready, cx)) {
            self.settle(key, verdict);
        }
    }

    /// Runs `step` on connection `key`, if it is still open. A panic in it
    /// ends that connection only (SPEC §9.1): [`Conn::on_panic`] logs it
    /// and answers 500 when it can; a second panic there closes it as is.
    fn guarded(
        &mut self,
        key: usize,
        now: Instant,
        step: impl FnOnce(&mut Conn, &mut Cx) -> Verdict,
    ) -> Option<Verdict> {
        let conn = self.conns.get_mut(key)?;
        let mut cx = cx!(self, now);
        let verdict = match panic::catch(|| step(&mut *conn, &mut cx)) {
            Ok(verdict) => verdict,
            Err(message) => {
                panic::catch(|| conn.on_panic(&message, &mut cx)).unwrap_or_else(|again| {
                    cx.logs.error(format_args!(
                        "panic while answering a panic: {again}; connection dropped"
                    ));
                    Verdict::Close
                })
            }
        };
        Some(verdict)
    }

    /// Records a connection's verdict: its deadline, or its end.
    fn settle(&mut self, key: usize, verdict: Verdict) {
        let conn = &mut self.conns[key];
        match verdict {
            Verdict::Keep => self.timers.sync(key, &mut conn.deadline),
            Verdict::Close => {
                self.timers.cancel(key, &mut conn.deadline);
                self.closing.push(key);
            }
        }
    }

    fn fire_deadlines(&mut self, now: Instant) {
        while let Some(key) = self.timers.pop_due(now) {
            let Some(conn) = self.conns.get_mut(key) else {
                continue;
            };
            conn.deadline.fired();
            let verdict = if conn.deadline.is_due(now) {
                self.guarded(key, now, Conn::on_timeout)
            } else {
                Some(Verdict::Keep)
            };
            if let Some(verdict) = verdict {
                self.settle(key, verdict);
            }
        }
    }

    fn close_finished(&mut self, now: Instant) {
        if !self.closing.is_empty() && matches!(self.accept_paused, Some(Paused::Starved(_))) {
            // A descriptor comes free: try again now rather than later.
            self.accept_paused = Some(Paused::Starved(now));
        }
        for key in std::mem::take(&mut self.closing) {
            if let Some(mut conn) = self.conns.try_remove(key) {
                let mut cx = cx!(self, now);
                if let Err(message) = panic::catch(|| conn.release(&mut cx)) {
                    // Dropping the connection still kills its script.
                    cx.logs
                        .error(format_args!("panic while closing a connection: {message}"));
                }
                // Closing the socket takes it out of the poll: no
                // `epoll_ctl` (nothing else holds the descriptor, as CGI
                // children get none of ours once they run their script).
                drop(conn);
            }
        }
    }

    // --- accepting ------------------------------------------------------

    fn accept_all(&mut self, listener_key: usize, now: Instant) {
        if self.accept_paused.is_some() {
            return;
        }
        let max = self.table.max_connections;
        let Some(listener) = self.listeners.get(listener_key) else {
            return;
        };
        loop {
            if self.conns.len() >= max {
                self.accept_paused = Some(Paused::Full);
                return;
            }
            let (stream, peer) = match listener.socket.accept() {
                Ok(pair) => pair,
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return,
                // The peer gave up before we took it: take the next one.
                Err(err)
                    if matches!(
                        err.raw_os_error(),
                        Some(libc::ECONNABORTED | libc::EINTR | libc::EPROTO)
                    ) =>
                {
                    continue
                }
                // Out of descriptors or memory (EMFILE, ENFILE, ENOBUFS,
                // ENOMEM), or anything else that may persist: the listener
                // stays readable, so accepting again at once would spin.
                Err(err) => {
                    if !self.out_of_fds {
                        self.logs.error(format_args!(
                            "accept: {err}; paused until a connection closes (retried every {} ms)",
                            ACCEPT_RETRY.as_millis()
                        ));
                    }
                    self.out_of_fds = true;
                    // What the open connections may need meanwhile.
                    self.reserve.clear();
                    self.accept_paused = Some(Paused::Starved(now + ACCEPT_RETRY));
                    return;
                }
            };
            if std::mem::take(&mut self.out_of_fds) {
                self.logs.notice(format_args!("accept: accepting again"));
            }
            let table = &listener.table;
            let index = if table.needs_local_addr(listener.index) {
                table.socket_for(listener.index, stream.local_addr().ok())
            } else {
                listener.index
            };
            let tls = table.sockets[index].tls.as_ref();
            let mut transport = match tls {
                None => Transport::Plain(stream),
                Some(config) => match Transport::tls(stream, config) {
                    Ok(transport) => transport,
                    Err(err) => {
                        self.logs.error(format_args!("TLS session: {err}"));
                        continue;
                    }
                },
            };
            let entry = self.conns.vacant_entry();
            let key = entry.key();
            let token = token_of(key, Source::Client);
            if let Err(err) = self.poll.registry().register(
                transport.socket_mut(),
                token,
                Interest::READABLE | Interest::WRITABLE,
            ) {
                self.logs
                    .error(format_args!("registering a connection: {err}"));
                continue;
            }
            let conn = entry.insert(Conn::new(
                key,
                transport,
                peer,
                Arc::clone(&listener.table),
                index,
                now,
            ));
            self.timers.sync(key, &mut conn.deadline);
        }
    }

    fn accept_retry_in(&self, now: Instant) -> Option<Duration> {
        match self.accept_paused? {
            Paused::Full => None,
            Paused::Starved(at) => Some(at.saturating_duration_since(now)),
        }
    }

    /// Accepts again once below `max_connections`, or once descriptors
    /// may have come free (the reserve is taken back first, whichever the
    /// pause: if it cannot be, accepting stays paused until the next retry).
    fn resume_accepting(&mut self, now: Instant) {
        let Some(paused) = self.accept_paused else {
            return;
        };
        if self.shutdown_at.is_some() {
            return;
        }
        if self.conns.len() >= self.table.max_connections {
            // Full (a reload may have lowered the limit while starved): a
            // connection that closes resumes it; no timer, so no spinning.
            self.accept_paused = Some(Paused::Full);
            return;
        }
        if matches!(paused, Paused::Starved(at) if now < at) {
            return;
        }
        if !refill_reserve(&mut self.reserve) {
            self.reserve.clear();
            self.accept_paused = Some(Paused::Starved(now + ACCEPT_RETRY));
            return;
        }
        self.accept_paused = None;
        let keys: Vec<usize> = self.listeners.iter().map(|(k, _)| k).collect();
        for key in keys {
            self.accept_all(key, now);
        }
    }

    fn add_listener(
        &mut self,
        mut socket: TcpListener,
        addr: SocketAddr,
        table: &Arc<RoutingTable>,
        index: usize,
    ) -> anyhow::Result<()> {
        let entry = self.listeners.vacant_entry();
        let token = Token(LISTENER_BASE + entry.key());
        anyhow::ensure!(token < INOTIFY, "too many listen addresses");
        self.poll
            .registry()
            .register(&mut socket, token, Interest::READABLE)
            .with_context(|| format!("registering {addr}"))?;
        if self.role == Role::Single {
            let scheme = if table.sockets[index].tls.is_some() {
                "https"
            } else {
                "http"
            };
            log::console(format_args!(
                "webserv: listening on {scheme}://{}",
                socket.local_addr().unwrap_or(addr)
            ));
        }
        entry.insert(Listener {
            socket,
            addr,
            table: Arc::clone(table),
            index,
        });
        Ok(())
    }

    // --- signals --------------------------------------------------------

    fn on_signals(&mut self, now: Instant) {
        let pending: Vec<i32> = self.signals.pending().collect();
        for signal in pending {
            match signal {
                // A worker's master reloads by starting new workers.
                SIGHUP if self.role == Role::Single => self.reload(),
                SIGINT | SIGTERM if self.shutdown_at.is_none() => self.shut_down(now),
                _ => {}
            }
        }
    }

    /// Stops accepting and lets every connection finish what is in flight.
    fn shut_down(&mut self, now: Instant) {
        match self.role {
            Role::Single => self.logs.notice(format_args!("shutting down")),
            Role::Worker => self
                .logs
                .notice(format_args!("worker {} shutting down", std::process::id())),
        }
        for mut listener in self.listeners.drain() {
            let _ = self.poll.registry().deregister(&mut listener.socket);
        }
        self.health.stop(self.poll.registry());
        self.shutdown_at = Some(now + self.table.worker_shutdown_timeout);
        // The listeners are gone: no retry may wake the loop any more.
        self.accept_paused = None;
        let keys: Vec<usize> = self.conns.iter().map(|(k, _)| k).collect();
        for key in keys {
            if let Some(verdict) = self.guarded(key, now, Conn::drain) {
                self.settle(key, verdict);
            }
        }
        self.close_finished(now);
    }

    /// SIGHUP: load the configuration again; if it is valid, swap it in,
    /// opening the listen addresses that appear and closing those that
    /// vanish. Established connections keep the table they started with.
    fn reload(&mut self) {
        let Some(table) = super::reload_table(&self.config_path, &mut self.logs) else {
            return;
        };
        if table.worker_processes.resolve() != 1 {
            self.logs.notice(format_args!(
                "worker_processes changed: it takes effect when webserv is restarted"
            ));
        }
        match self.swap(table) {
            Ok(()) => self.logs.notice(format_args!("configuration reloaded")),
            Err(err) => self.logs.error(format_args!("reload refused: {err:#}")),
        }
    }

    fn swap(&mut self, table: RoutingTable) -> anyhow::Result<()> {
        let logs = Logs::open(&table).context("opening logs")?;
        let table = Arc::new(table);
        // Bind every new address first, so a failure changes nothing.
        let mut fresh = Vec::new();
        for (index, socket) in table.sockets.iter().enumerate() {
            if socket.is_bound() && !self.listeners.iter().any(|(_, l)| l.addr == socket.addr) {
                let listener =
                    bind(socket.addr).with_context(|| format!("listening on {}", socket.addr))?;
                fresh.push((listener, socket.addr, index));
            }
        }
        let gone: Vec<usize> = self
            .listeners
            .iter()
            .filter(|(_, l)| {
                !table
                    .sockets
                    .iter()
                    .any(|s| s.addr == l.addr && s.is_bound())
            })
            .map(|(k, _)| k)
            .collect();
        for key in gone {
            let mut listener = self.listeners.remove(key);
            let _ = self.poll.registry().deregister(&mut listener.socket);
            log::console(format_args!(
                "webserv: stopped listening on http://{}",
                listener.addr
            ));
        }
        for (_, listener) in self.listeners.iter_mut() {
            listener.index = table
                .sockets
                .iter()
                .position(|s| s.addr == listener.addr)
                .expect("addresses that vanished were removed above");
            listener.table = Arc::clone(&table);
        }
        for (socket, addr, index) in fresh {
            self.add_listener(socket, addr, &table, index)?;
        }
        self.upstreams.balancer = Balancer::new(&table.upstreams);
        self.health.stop(self.poll.registry());
        // A new configuration starts with an empty cache (the old one's
        // descriptor leaves the poll as it closes).
        let cache = FileCache::new();
        register_cache(&self.poll, &cache)?;
        self.cache = cache;
        self.table = table;
        self.logs = logs;
        self.health = health_checks(&self.table, &mut self.logs);
        Ok(())
    }
}

/// The health checks of `table`, on the loop's token range for them.
fn health_checks(table: &RoutingTable, logs: &mut Logs) -> HealthChecks {
    HealthChecks::new(
        table,
        HEALTH_BASE,
        CONN_BASE - HEALTH_BASE,
        Instant::now(),
        logs,
    )
}

/// Polls the cache's inotify descriptor, when it has one.
fn register_cache(poll: &Poll, cache: &FileCache) -> anyhow::Result<()> {
    if let Some(fd) = cache.fd() {
        poll.registry()
            .register(&mut SourceFd(&fd), INOTIFY, Interest::READABLE)
            .context("registering the open-file cache's inotify descriptor")?;
    }
    Ok(())
}

/// The descriptors kept in reserve (as many as can be opened).
fn open_reserve() -> Vec<std::fs::File> {
    let mut reserve = Vec::with_capacity(RESERVE_FDS);
    refill_reserve(&mut reserve);
    reserve
}

/// Opens reserve descriptors up to [`RESERVE_FDS`]; false if one failed.
fn refill_reserve(reserve: &mut Vec<std::fs::File>) -> bool {
    while reserve.len() < RESERVE_FDS {
        match std::fs::File::open("/dev/null") {
            Ok(file) => reserve.push(file),
            Err(_) => return false,
        }
    }
    true
}

pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    crate::server::sys::listen_on(addr).map(TcpListener::from_std)
}
