//! Active health checks (`health_check`, SPEC §9.3), run by each event
//! loop for every server of every group that asks for them.
//!
//! Steps of one check, none of which blocks:
//! 1. at its instant, a non-blocking connect to the server, registered
//!    with the loop under the probe's own token;
//! 2. once connected, `GET URI` with the `Host` a proxied request sends
//!    (the group's name) and `Connection: close`;
//! 3. read up to the end of the status line: 200-399 passes; a connect
//!    error, a close before the status line, another status, or no answer
//!    within the check's timeout fails;
//! 4. the socket is closed at once, and the next check starts `interval`
//!    after this one started.
//!
//! `fails` failures in a row take the server out of the balancer's
//! rotation until `passes` passes in a row bring it back; every change is
//! logged. A server counts as up until its first check. The whole set is
//! dropped (sockets deregistered and closed) when the loop shuts down or
//! loads another configuration, which builds a new one.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Interest, Registry, Token};

use crate::handlers::proxy::Balancer;
use crate::routing::RoutingTable;
use crate::server::log::Logs;

/// The most bytes read while looking for the end of the status line.
const STATUS_LINE_LIMIT: usize = 1024;

/// Every probe of one configuration; probe `i` owns token `base + i`.
pub struct HealthChecks {
    base: usize,
    probes: Vec<Probe>,
}

/// One server of one group, and its checks.
struct Probe {
    group: usize,
    server: usize,
    /// The group's name, for the log.
    name: String,
    addr: SocketAddr,
    request: Vec<u8>,
    interval: Duration,
    timeout: Duration,
    fails_needed: u32,
    passes_needed: u32,
    /// Checks failed, or passed, in a row.
    fails: u32,
    passes: u32,
    up: bool,
    /// When the next check starts (while none is running).
    next_at: Instant,
    run: Option<Check>,
}

/// A check in flight.
struct Check {
    stream: TcpStream,
    deadline: Instant,
    connected: bool,
    written: usize,
    head: Vec<u8>,
}

/// What a step of a check came to.
enum Outcome {
    Pending,
    Pass,
    Fail(String),
}

impl HealthChecks {
    /// One probe per server of each group with `health_check`, probe `i`
    /// on token `base + i` (at most `room` of them; the rest are logged
    /// and left unchecked). The first checks start at once.
    pub fn new(
        table: &RoutingTable,
        base: usize,
        room: usize,
        now: Instant,
        logs: &mut Logs,
    ) -> HealthChecks {
        let mut probes = Vec::new();
        for (group, upstream) in table.upstreams.iter().enumerate() {
            let Some(check) = &upstream.health_check else {
                continue;
            };
            let request = format!(
                "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: webserv health check\r\nConnection: close\r\n\r\n",
                check.uri, upstream.name
            )
            .into_bytes();
            for (server, member) in upstream.servers.iter().enumerate() {
                if probes.len() >= room {
                    logs.error(format_args!(
                        "too many health-checked servers: upstream {} server {} is not checked",
                        upstream.name, member.addr
                    ));
                    continue;
                }
                probes.push(Probe {
                    group,
                    server,
                    name: upstream.name.clone(),
                    addr: member.addr,
                    request: request.clone(),
                    interval: check.interval,
                    timeout: check.timeout,
                    fails_needed: check.fails,
                    passes_needed: check.passes,
                    fails: 0,
                    passes: 0,
                    up: true,
                    next_at: now,
                    run: None,
                });
            }
        }
        HealthChecks { base, probes }
    }

    /// The earliest instant a check starts or times out.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.probes
            .iter()
            .map(|p| p.run.as_ref().map_or(p.next_at, |run| run.deadline))
            .min()
    }

    /// The probe of `token` may move: connect, write or read what it can.
    pub fn on_ready(
        &mut self,
        token: Token,
        registry: &Registry,
        balancer: &mut Balancer,
        logs: &mut Logs,
    ) {
        let Some(probe) = token
            .0
            .checked_sub(self.base)
            .and_then(|i| self.probes.get_mut(i))
        else {
            return;
        };
        let Some(run) = probe.run.as_mut() else {
            return;
        };
        match run.step(&probe.request) {
            Outcome::Pending => {}
            Outcome::Pass => probe.finish(Ok(()), registry, balancer, logs),
            Outcome::Fail(why) => probe.finish(Err(why), registry, balancer, logs),
        }
    }

    /// Ends the checks past their timeout and starts those that are due.
    pub fn fire(
        &mut self,
        now: Instant,
        registry: &Registry,
        balancer: &mut Balancer,
        logs: &mut Logs,
    ) {
        for (i, probe) in self.probes.iter_mut().enumerate() {
            if probe.run.as_ref().is_some_and(|run| now >= run.deadline) {
                let why = format!("no answer within {:?}", probe.timeout);
                probe.finish(Err(why), registry, balancer, logs);
            }
            if probe.run.is_none() && now >= probe.next_at {
                probe.next_at = now.checked_add(probe.interval).unwrap_or(now);
                if let Err(err) = probe.start(Token(self.base + i), now, registry) {
                    probe.finish(Err(err.to_string()), registry, balancer, logs);
                }
            }
        }
    }

    /// Closes every check in flight; nothing is checked any more.
    pub fn stop(&mut self, registry: &Registry) {
        for probe in &mut self.probes {
            if let Some(mut run) = probe.run.take() {
                let _ = registry.deregister(&mut run.stream);
            }
        }
        self.probes.clear();
    }
}

impl Probe {
    fn start(&mut self, token: Token, now: Instant, registry: &Registry) -> io::Result<()> {
        let mut stream = TcpStream::connect(self.addr)?;
        registry.register(&mut stream, token, Interest::READABLE | Interest::WRITABLE)?;
        self.run = Some(Check {
            stream,
            deadline: now.checked_add(self.timeout).unwrap_or(now),
            connected: false,
            written: 0,
            head: Vec::new(),
        });
        Ok(())
    }

    /// Closes the check in flight and counts its result.
    fn finish(
        &mut self,
        result: Result<(), String>,
        registry: &Registry,
        balancer: &mut Balancer,
        logs: &mut Logs,
    ) {
        if let Some(mut run) = self.run.take() {
            let _ = registry.deregister(&mut run.stream);
        }
        match result {
            Ok(()) => {
                self.fails = 0;
                self.passes = self.passes.saturating_add(1);
                if !self.up && self.passes >= self.passes_needed {
                    self.up = true;
                    balancer.set_checked(self.group, self.server, true);
                    logs.notice(format_args!(
                        "upstream {} server {} is up: {} health check(s) passed",
                        self.name, self.addr, self.passes
                    ));
                }
            }
            Err(why) => {
                self.passes = 0;
                self.fails = self.fails.saturating_add(1);
                if self.up && self.fails >= self.fails_needed {
                    self.up = false;
                    balancer.set_checked(self.group, self.server, false);
                    logs.warn(format_args!(
                        "upstream {} server {} is down: {} health check(s) failed, the last: {why}",
                        self.name, self.addr, self.fails
                    ));
                }
            }
        }
    }
}

impl Check {
    /// Moves the check as far as the socket allows (mio is edge-triggered:
    /// each step runs until it would block).
    fn step(&mut self, request: &[u8]) -> Outcome {
        if !self.connected {
            match self.stream.take_error() {
                Ok(None) => {}
                Ok(Some(err)) | Err(err) => return Outcome::Fail(format!("connect: {err}")),
            }
            match self.stream.peer_addr() {
                Ok(_) => self.connected = true,
                Err(err)
                    if err.kind() == io::ErrorKind::NotConnected
                        || err.raw_os_error() == Some(libc::EINPROGRESS) =>
                {
                    return Outcome::Pending
                }
                Err(err) => return Outcome::Fail(format!("connect: {err}")),
            }
        }
        while self.written < request.len() {
            match self.stream.write(&request[self.written..]) {
                Ok(0) => return Outcome::Fail("the connection closed".to_string()),
                Ok(n) => self.written += n,
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return Outcome::Pending,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return Outcome::Fail(format!("send: {err}")),
            }
        }
        let mut buf = [0u8; 512];
        loop {
            match self.stream.read(&mut buf) {
                Ok(0) => return Outcome::Fail("closed before the status line".to_string()),
                Ok(n) => {
                    self.head.extend_from_slice(&buf[..n]);
                    if let Some(end) = self.head.windows(2).position(|w| w == b"\r\n") {
                        return judge(&self.head[..end]);
                    }
                    if self.head.len() > STATUS_LINE_LIMIT {
                        return Outcome::Fail("no status line".to_string());
                    }
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return Outcome::Pending,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return Outcome::Fail(format!("receive: {err}")),
            }
        }
    }
}

/// `HTTP/1.x SSS reason`: 200-399 passes.
fn judge(line: &[u8]) -> Outcome {
    let status = line
        .strip_prefix(b"HTTP/1.")
        .filter(|rest| rest.get(1) == Some(&b' '))
        .and_then(|rest| rest.get(2..5))
        .and_then(|digits| std::str::from_utf8(digits).ok())
        .and_then(|digits| digits.parse::<u16>().ok());
    match status {
        Some(200..=399) => Outcome::Pass,
        Some(code) => Outcome::Fail(format!("status {code}")),
        None => Outcome::Fail(format!(
            "not an HTTP status line: {:?}",
            String::from_utf8_lossy(line)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines() {
        let cases: &[(&[u8], bool)] = &[
            (b"HTTP/1.1 200 OK", true),
            (b"HTTP/1.0 204 No Content", true),
            (b"HTTP/1.1 399 x", true),
            (b"HTTP/1.1 301 Moved", true),
            (b"HTTP/1.1 199 x", false),
            (b"HTTP/1.1 400 Bad", false),
            (b"HTTP/1.1 500 Oops", false),
            (b"HTTP/2 200", false),
            (b"SSH-2.0-OpenSSH", false),
            (b"HTTP/1.1 2x0", false),
            (b"", false),
        ];
        for (line, pass) in cases {
            let got = matches!(judge(line), Outcome::Pass);
            assert_eq!(got, *pass, "{}", String::from_utf8_lossy(line));
        }
    }
}
