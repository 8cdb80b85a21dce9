//! The master of `worker_processes N` (N > 1, SPEC §9.1): it binds every
//! listener, forks N workers that each run the one event loop
//! ([`EventLoop`], role [`Role::Worker`]) on those inherited sockets, and
//! does no client I/O itself.
//!
//! Each address is N `SO_REUSEPORT` sockets, one per worker slot, all
//! bound and kept by the master: the kernel spreads new connections over
//! them, the worker of slot i accepts from socket i only, and the worker
//! that replaces it (after a death or a reload) takes the same socket,
//! with whatever connections wait in its queue. Only a reload that lowers
//! N closes sockets (the surplus slots'), and with them what waits there.
//!
//! Its loop, one signal at a time (SIGCHLD, SIGHUP, SIGINT and SIGTERM
//! stay blocked and are taken with `sigtimedwait`, so the master needs no
//! handler, no pipe and no thread, and a forked worker inherits none):
//! 1. SIGCHLD: collect every exited worker. A worker of the current
//!    generation that died is logged and replaced at once; one that keeps
//!    dying at start-up is retried with a growing delay.
//! 2. SIGHUP: load the configuration again. One that fails `check` is
//!    refused and logged, and the old workers keep serving. Otherwise bind
//!    the addresses that appear, fork the new workers, then send SIGTERM to
//!    the old ones (they stop accepting, close idle connections and finish
//!    what is in flight within `worker_shutdown_timeout`), and close the
//!    addresses that vanished.
//! 3. SIGINT/SIGTERM: every worker drains the same way; the master exits 0
//!    once all are collected.
//!
//! A worker that outlives its `worker_shutdown_timeout` (and a second) is
//! killed. Every worker asks the kernel for SIGTERM when the master dies,
//! so none is left serving on its own.

use std::io;
use std::mem;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use mio::net::TcpListener;

use crate::routing::RoutingTable;
use crate::server::event_loop::{EventLoop, Inherited};
use crate::server::log::{self, Logs};
use crate::server::panic;
use crate::server::pidfile::PidFile;

/// A worker that dies sooner than this after its start died "at start-up".
const START_UP: Duration = Duration::from_secs(2);
/// The longest delay between two tries of a worker that dies at start-up.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Past its `worker_shutdown_timeout`, a draining worker gets this long to
/// exit on its own before it is killed.
const KILL_MARGIN: Duration = Duration::from_secs(1);
/// The master wakes at least this often (a SIGCHLD is never missed, but
/// a wake-up is cheap).
const TICK: Duration = Duration::from_secs(1);

/// The signals the master takes synchronously.
const SIGNALS: [libc::c_int; 4] = [libc::SIGCHLD, libc::SIGHUP, libc::SIGINT, libc::SIGTERM];

struct Listener {
    /// One per worker slot, on the same address (`SO_REUSEPORT`).
    sockets: Vec<TcpListener>,
    addr: SocketAddr,
}

impl Listener {
    /// `count` sockets on `addr` (a port 0 is chosen once, for all).
    fn bind(addr: SocketAddr, count: usize) -> anyhow::Result<Listener> {
        let first = bind_shared(addr)?;
        let mut listener = Listener {
            addr,
            sockets: vec![first],
        };
        listener.grow(count)?;
        Ok(listener)
    }

    /// Adds sockets up to `count`.
    fn grow(&mut self, count: usize) -> anyhow::Result<()> {
        let bound = self
            .sockets
            .first()
            .and_then(|s| s.local_addr().ok())
            .unwrap_or(self.addr);
        while self.sockets.len() < count {
            self.sockets.push(bind_shared(bound)?);
        }
        Ok(())
    }
}

fn bind_shared(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    crate::server::sys::listen_on_shared(addr)
        .map(TcpListener::from_std)
        .with_context(|| format!("listening on {addr}"))
}

struct Worker {
    pid: libc::pid_t,
    /// Its slot in the current generation, `None` once it was told to drain.
    slot: Option<usize>,
    started: Instant,
    /// When it is killed if it has not exited (set when it drains).
    kill_at: Option<Instant>,
}

/// One worker position of the current generation.
#[derive(Default)]
struct Slot {
    /// Deaths at start-up in a row.
    failures: u32,
    /// When to start its next worker (a slot without a live worker).
    restart_at: Option<Instant>,
}

struct Master {
    config_path: PathBuf,
    table: Arc<RoutingTable>,
    listeners: Vec<Listener>,
    workers: Vec<Worker>,
    slots: Vec<Slot>,
    logs: Logs,
    /// Set by SIGINT/SIGTERM.
    stopping: bool,
    pid: libc::pid_t,
}

/// Serves `table` with `count` workers until SIGINT/SIGTERM; the master's
/// pid is in `pid_path` meanwhile.
pub fn run(
    config_path: &Path,
    table: RoutingTable,
    count: usize,
    pid_path: Option<&Path>,
) -> anyhow::Result<()> {
    let mut listeners = Vec::new();
    for socket in table.sockets.iter().filter(|s| s.is_bound()) {
        listeners.push(Listener::bind(socket.addr, count)?);
    }
    let logs = Logs::open(&table).context("opening logs")?;
    let _pid_file = pid_path.map(PidFile::create).transpose()?;
    block_signals(libc::SIG_BLOCK)?;
    let mut master = Master {
        config_path: config_path.to_path_buf(),
        table: Arc::new(table),
        listeners,
        workers: Vec::new(),
        slots: (0..count).map(|_| Slot::default()).collect(),
        logs,
        stopping: false,
        // SAFETY: getpid(2) cannot fail.
        pid: unsafe { libc::getpid() },
    };
    for listener in &master.listeners {
        announce("listening on", listener, &master.table);
    }
    master
        .logs
        .notice(format_args!("master {} starts {count} workers", master.pid));
    for slot in 0..count {
        master.spawn(slot, Instant::now());
    }
    master.run()
}

impl Master {
    fn run(&mut self) -> anyhow::Result<()> {
        loop {
            let now = Instant::now();
            self.restart_due(now);
            self.kill_overdue(now);
            if self.stopping && self.workers.is_empty() {
                self.logs.notice(format_args!("master exits"));
                return Ok(());
            }
            match wait_signal(self.next_wake(now)) {
                Some(libc::SIGCHLD) | None => {}
                Some(libc::SIGHUP) if !self.stopping => self.reload(),
                Some(libc::SIGINT | libc::SIGTERM) if !self.stopping => self.stop(),
                Some(_) => {}
            }
            self.collect(Instant::now());
        }
    }

    fn next_wake(&self, now: Instant) -> Duration {
        let restarts = self.slots.iter().filter_map(|s| s.restart_at);
        let kills = self.workers.iter().filter_map(|w| w.kill_at);
        restarts
            .chain(kills)
            .map(|at| at.saturating_duration_since(now))
            .chain([TICK])
            .min()
            .unwrap_or(TICK)
    }

    /// Forks the worker of `slot` on the current table and listeners.
    fn spawn(&mut self, slot: usize, now: Instant) {
        // SAFETY: the master is single-threaded, so the child may run any
        // code; it never returns from `worker_main`.
        match unsafe { libc::fork() } {
            0 => self.worker_main(slot),
            -1 => {
                let err = io::Error::last_os_error();
                self.logs
                    .error(format_args!("fork: {err}; retrying in a second"));
                self.slots[slot].restart_at = Some(now + TICK);
            }
            pid => {
                self.slots[slot].restart_at = None;
                self.workers.push(Worker {
                    pid,
                    slot: Some(slot),
                    started: now,
                    kill_at: None,
                });
            }
        }
    }

    /// The forked child: serve, then exit; a panic or an error is logged
    /// and ends the process, never returns into the master's code.
    fn worker_main(&mut self, slot: usize) -> ! {
        // The kernel sends SIGTERM (drain) if the master dies; if it died
        // before this line, drain at once.
        // SAFETY: prctl(2) with PR_SET_PDEATHSIG and a signal number.
        unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) };
        // SAFETY: getppid(2) cannot fail.
        let orphan = unsafe { libc::getppid() } != self.pid;
        // The worker opens the logs again itself.
        drop(mem::replace(&mut self.logs, Logs::stderr()));
        // The other slots' sockets are closed here (the master keeps them).
        let listeners: Vec<Inherited> = mem::take(&mut self.listeners)
            .into_iter()
            .filter_map(|l| {
                let index = self.table.sockets.iter().position(|s| s.addr == l.addr)?;
                let socket = l.sockets.into_iter().nth(slot)?;
                Some((socket, l.addr, index))
            })
            .collect();
        let config_path = mem::take(&mut self.config_path);
        let table = Arc::clone(&self.table);
        crate::config::tls::warm_up_after_fork(&table);
        let outcome = panic::catch(move || -> anyhow::Result<()> {
            #[cfg(feature = "fault-injection")]
            crate::server::fault::worker_start();
            let mut event_loop = EventLoop::worker(config_path, table, listeners)?;
            // Handlers are in place: the signals blocked since the master
            // started may now arrive, through the loop's own pipe.
            block_signals(libc::SIG_UNBLOCK)?;
            if orphan {
                // SAFETY: raise(3) with a valid signal number.
                unsafe { libc::raise(libc::SIGTERM) };
            }
            event_loop.run()
        });
        let mut logs = Logs::open(&self.table).unwrap_or_else(|_| Logs::stderr());
        // SAFETY: getpid(2) cannot fail.
        let pid = unsafe { libc::getpid() };
        let code = match outcome {
            Ok(Ok(())) => 0,
            Ok(Err(err)) => {
                logs.error(format_args!("worker {pid}: {err:#}"));
                1
            }
            Err(message) => {
                logs.error(format_args!("worker {pid} panicked: {message}"));
                101
            }
        };
        std::process::exit(code)
    }

    /// Collects every worker that exited; replaces those of the current
    /// generation.
    fn collect(&mut self, now: Instant) {
        loop {
            let mut status = 0;
            // SAFETY: waitpid(2) with a valid out pointer, without blocking.
            let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
            if pid <= 0 {
                return;
            }
            let Some(i) = self.workers.iter().position(|w| w.pid == pid) else {
                continue;
            };
            let worker = self.workers.swap_remove(i);
            let how = describe(status);
            match worker.slot {
                _ if self.stopping => self.logs.notice(format_args!("worker {pid} {how}")),
                None => self.logs.notice(format_args!("old worker {pid} {how}")),
                Some(slot) => self.replace(slot, pid, &how, now - worker.started < START_UP, now),
            }
        }
    }

    /// The worker of `slot` died: start another now, or later if it keeps
    /// dying at start-up.
    fn replace(&mut self, slot: usize, pid: libc::pid_t, how: &str, early: bool, now: Instant) {
        let state = &mut self.slots[slot];
        state.failures = if early { state.failures + 1 } else { 0 };
        if state.failures <= 1 {
            self.logs
                .error(format_args!("worker {pid} {how}; starting a new one"));
            return self.spawn(slot, now);
        }
        let delay = backoff(state.failures);
        state.restart_at = Some(now + delay);
        self.logs.error(format_args!(
            "worker {pid} {how}: {} deaths at start-up in a row; next try in {delay:?}",
            state.failures
        ));
    }

    fn restart_due(&mut self, now: Instant) {
        if self.stopping {
            return;
        }
        for slot in 0..self.slots.len() {
            if self.slots[slot].restart_at.is_some_and(|at| at <= now) {
                self.spawn(slot, now);
            }
        }
    }

    fn kill_overdue(&mut self, now: Instant) {
        for worker in &mut self.workers {
            if worker.kill_at.is_some_and(|at| at <= now) {
                self.logs.error(format_args!(
                    "worker {} did not finish within worker_shutdown_timeout; killing it",
                    worker.pid
                ));
                // SAFETY: kill(2) on our own child.
                unsafe { libc::kill(worker.pid, libc::SIGKILL) };
                worker.kill_at = None;
            }
        }
    }

    /// Tells every current worker to drain, bounded by the current
    /// table's `worker_shutdown_timeout`.
    fn retire_workers(&mut self, now: Instant) {
        let kill_at = now + self.table.worker_shutdown_timeout + KILL_MARGIN;
        for worker in &mut self.workers {
            if worker.slot.take().is_some() {
                // SAFETY: kill(2) on our own child.
                unsafe { libc::kill(worker.pid, libc::SIGTERM) };
                worker.kill_at = Some(kill_at);
            }
        }
    }

    fn stop(&mut self) {
        self.logs.notice(format_args!("shutting down"));
        self.stopping = true;
        self.retire_workers(Instant::now());
        for slot in &mut self.slots {
            slot.restart_at = None;
        }
        // Nothing new is accepted: the workers close theirs too.
        self.listeners.clear();
    }

    /// SIGHUP: a valid configuration gets new workers, the old ones drain.
    fn reload(&mut self) {
        let Some(table) = super::reload_table(&self.config_path, &mut self.logs) else {
            return;
        };
        if let Err(err) = self.swap(table) {
            self.logs.error(format_args!("reload refused: {err:#}"));
        }
    }

    fn swap(&mut self, table: RoutingTable) -> anyhow::Result<()> {
        let logs = Logs::open(&table).context("opening logs")?;
        let count = table.worker_processes.resolve();
        // Bind every new address and socket first, so a failure changes
        // nothing (sockets added to a kept address are closed again).
        let mut listeners = Vec::new();
        for socket in table.sockets.iter().filter(|s| s.is_bound()) {
            let kept = self.listeners.iter().position(|l| l.addr == socket.addr);
            if kept.is_none() {
                listeners.push(Listener::bind(socket.addr, count)?);
            }
        }
        let sizes: Vec<usize> = self.listeners.iter().map(|l| l.sockets.len()).collect();
        let grown = self.listeners.iter_mut().try_for_each(|l| l.grow(count));
        if let Err(err) = grown {
            for (listener, size) in self.listeners.iter_mut().zip(sizes) {
                listener.sockets.truncate(size);
            }
            return Err(err);
        }
        for listener in &listeners {
            announce("listening on", listener, &table);
        }
        let old = mem::take(&mut self.listeners);
        for mut listener in old {
            if table
                .sockets
                .iter()
                .any(|s| s.addr == listener.addr && s.is_bound())
            {
                // Fewer workers: the surplus slots' sockets close (here,
                // and in their old workers as these drain).
                listener.sockets.truncate(count);
                listeners.push(listener);
            } else {
                // Closed here now, and in each old worker as it drains.
                announce("stopped listening on", &listener, &self.table);
            }
        }
        self.listeners = listeners;
        let now = Instant::now();
        // The old workers drain within the old table's bound.
        self.retire_workers(now);
        self.table = Arc::new(table);
        self.logs = logs;
        self.slots = (0..count).map(|_| Slot::default()).collect();
        for slot in 0..count {
            self.spawn(slot, now);
        }
        self.logs.notice(format_args!(
            "configuration reloaded: {count} new workers, the old ones drain"
        ));
        Ok(())
    }
}

fn announce(what: &str, listener: &Listener, table: &RoutingTable) {
    let tls = table
        .sockets
        .iter()
        .any(|s| s.addr == listener.addr && s.tls.is_some());
    let scheme = if tls { "https" } else { "http" };
    log::console(format_args!(
        "webserv: {what} {scheme}://{}",
        listener
            .sockets
            .first()
            .and_then(|s| s.local_addr().ok())
            .unwrap_or(listener.addr)
    ));
}

/// The delay before the next try after `failures` deaths at start-up in a
/// row (the first is retried at once): 250 ms, doubling, at most 30 s.
fn backoff(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(2).min(8);
    (Duration::from_millis(250) * (1 << doublings)).min(MAX_BACKOFF)
}

/// "exited with code N" or "was killed by signal N".
fn describe(status: libc::c_int) -> String {
    if libc::WIFSIGNALED(status) {
        format!("was killed by signal {}", libc::WTERMSIG(status))
    } else {
        format!("exited with code {}", libc::WEXITSTATUS(status))
    }
}

/// Blocks (`SIG_BLOCK`) or unblocks (`SIG_UNBLOCK`) the master's signals.
fn block_signals(how: libc::c_int) -> io::Result<()> {
    // SAFETY: the set is initialised by sigemptyset before use, and
    // sigprocmask gets valid pointers.
    let rc = unsafe {
        let mut set: libc::sigset_t = mem::zeroed();
        libc::sigemptyset(&mut set);
        for signal in SIGNALS {
            libc::sigaddset(&mut set, signal);
        }
        libc::sigprocmask(how, &set, std::ptr::null_mut())
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The next of the master's signals, waiting at most `timeout`.
fn wait_signal(timeout: Duration) -> Option<libc::c_int> {
    let timeout = libc::timespec {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_nsec: libc::c_long::from(timeout.subsec_nanos()),
    };
    // SAFETY: as in `block_signals`; `info` is a valid out pointer.
    let signal = unsafe {
        let mut set: libc::sigset_t = mem::zeroed();
        libc::sigemptyset(&mut set);
        for signal in SIGNALS {
            libc::sigaddset(&mut set, signal);
        }
        let mut info: libc::siginfo_t = mem::zeroed();
        libc::sigtimedwait(&set, &mut info, &timeout)
    };
    (signal > 0).then_some(signal)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_from_a_quarter_second_to_thirty() {
        let cases: &[(u32, u64)] = &[
            (2, 250),
            (3, 500),
            (4, 1000),
            (7, 8000),
            (9, 30_000),
            (50, 30_000),
        ];
        for &(failures, millis) in cases {
            assert_eq!(
                backoff(failures),
                Duration::from_millis(millis),
                "{failures}"
            );
        }
    }
}
