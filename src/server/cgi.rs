//! A CGI script run inside the event loop (SPEC §6).
//!
//! The script's stdin and stdout are non-blocking pipes registered in the
//! one `Poll`. Each step moves whatever can move, in both directions at
//! once, so a script that writes before it has read all its input never
//! deadlocks against us:
//! 1. request body → stdin: from the client as it arrives (a
//!    `Content-Length` body), or from the spool file (a chunked body,
//!    de-chunked there first because `CONTENT_LENGTH` must be known);
//!    stdin is closed at the end of the body (EOF for the script);
//! 2. stdout → the CGI header block, parsed into a response head;
//! 3. stdout → the body, relayed to the client with its own length, or
//!    chunked (HTTP/1.1), or until close (HTTP/1.0); stdout is not read
//!    while the client is slow, so memory stays bounded.
//!
//! A script that ends before a valid header block is a 502. One that ends
//! abnormally after its output began (killed by a signal, or an exit
//! status other than 0) gets no valid end: no final chunk, the connection
//! closes (SPEC §9.6), so no client takes the truncated body for a whole
//! one. Its exit is known from a pidfd in the same `Poll`; if it still runs
//! [`EXIT_GRACE`] after closing its stdout, the body counts as whole. The
//! child is
//! killed (its whole process group) when the exchange is abandoned, and is
//! always handed to the event loop's reaper: no zombie survives.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::process::Child;
use std::time::{Duration, Instant};

use mio::unix::pipe::{Receiver, Sender};
use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};

use crate::handlers::cgi::{self, CgiHead};
use crate::handlers::output::{self, Candidate, Coding};
use crate::http::request::Request;
use crate::http::response::{write_head_end, write_head_start, Length};
use crate::routing::{Location, Output};
use crate::server::conn::{read_edge, BodyError, BodyIn, BodyStep, Client, Cx, ReadOutcome};
use crate::server::reaper::Reaper;
use crate::server::relay::Relay;
use crate::server::sys;

/// The most bytes buffered on their way to the script's stdin.
const STDIN_BUFFER: usize = 64 * 1024;
/// The most bytes of a CGI header block.
const HEAD_LIMIT: usize = 16 * 1024;
/// How long the end of a body waits for the script's exit status once its
/// output has ended.
const EXIT_GRACE: Duration = Duration::from_secs(1);

/// Where the script's stdin comes from.
pub enum Feed {
    /// The client's `Content-Length` body, as it arrives.
    Client(BodyIn),
    /// A spooled (de-chunked) body.
    File { file: File, remaining: u64 },
    /// Everything was fed.
    Done,
}

/// What a step of the run led to.
pub enum CgiStep {
    Progress,
    Blocked,
    /// The response is complete; `close` if the connection cannot go on.
    Done {
        close: bool,
    },
    /// Nothing was sent to the client yet: answer this status instead.
    Fail(u16),
    /// The client is gone or the response broke off: close.
    Abort,
    /// A local redirect (RFC 3875 §6.2.2): serve this path as a GET.
    Redirect(String),
}

pub struct CgiRun {
    pub request: Request,
    child: Option<Child>,
    stdin: Option<Sender>,
    stdin_ready: bool,
    stdout: Option<Receiver>,
    stdout_ready: bool,
    stdout_closed: bool,
    /// Readable when the child exits; `None` where pidfds do not exist.
    exit_fd: Option<OwnedFd>,
    exit_ready: bool,
    /// stdout ended after the response began: the body ends once the exit
    /// status says it is whole, or at this instant.
    exit_wait: Option<Instant>,
    feed: Feed,
    /// Bytes on their way to stdin.
    pending: Vec<u8>,
    pending_pos: usize,
    /// The header block read so far (until `relay` exists).
    head: Vec<u8>,
    relay: Option<Relay>,
    pub status: u16,
    pub body_bytes: u64,
    /// Serving an `error_page` URI: the original error status, which
    /// replaces the answer's own (as nginx does for a URI error page).
    pub error_status: Option<u16>,
    /// The response may keep the connection open.
    pub keep_alive: bool,
    pub last_progress: Instant,
    pub timeout: Duration,
    /// The location's rules for the response head and coding.
    output: Output,
    /// Bytes of `100 Continue` still to write.
    interim: &'static [u8],
}

impl CgiRun {
    /// Registers the child's pipes with tokens `stdin_token` and
    /// `stdout_token`.
    pub fn start(
        request: Request,
        child: cgi::CgiChild,
        feed: Feed,
        registry: &Registry,
        tokens: (Token, Token, Token),
        location: &Location,
        now: Instant,
    ) -> io::Result<CgiRun> {
        let cgi::CgiChild {
            child,
            stdin,
            stdout,
        } = child;
        let mut stdin = Sender::from(stdin);
        let mut stdout = Receiver::from(stdout);
        let exit_fd = sys::pidfd_open(child.id()).ok();
        let mut run = CgiRun {
            interim: if request.expect_continue && matches!(feed, Feed::Client(_)) {
                b"HTTP/1.1 100 Continue\r\n\r\n"
            } else {
                b""
            },
            request,
            child: Some(child),
            stdin: None,
            stdin_ready: false,
            stdout: None,
            stdout_ready: false,
            stdout_closed: false,
            exit_fd,
            exit_ready: false,
            exit_wait: None,
            feed,
            pending: Vec::new(),
            pending_pos: 0,
            head: Vec::new(),
            relay: None,
            status: 0,
            error_status: None,
            body_bytes: 0,
            keep_alive: true,
            last_progress: now,
            timeout: location.cgi_timeout,
            output: location.output.clone(),
        };
        // Registered before they are stored, so a failure still kills the
        // child (through `run`'s owner, who reaps it).
        let registered = registry
            .register(&mut stdin, tokens.0, Interest::WRITABLE)
            .and_then(|()| registry.register(&mut stdout, tokens.1, Interest::READABLE))
            .and_then(|()| match &run.exit_fd {
                Some(fd) => {
                    registry.register(&mut SourceFd(&fd.as_raw_fd()), tokens.2, Interest::READABLE)
                }
                None => Ok(()),
            });
        run.stdin = Some(stdin);
        run.stdout = Some(stdout);
        match registered {
            Ok(()) => Ok(run),
            Err(err) => {
                run.abandon(registry, &mut Reaper::default());
                Err(err)
            }
        }
    }

    pub fn stdin_ready(&mut self) {
        self.stdin_ready = true;
    }

    /// `closed`: the script closed its stdout; the end of file may be
    /// behind data not read yet.
    pub fn stdout_ready(&mut self, closed: bool) {
        self.stdout_ready = true;
        self.stdout_closed |= closed;
    }

    pub fn exit_ready(&mut self) {
        self.exit_ready = true;
    }

    /// The output ended and the run waits for the script's exit status.
    pub fn awaiting_exit(&self) -> bool {
        self.exit_wait.is_some()
    }

    /// The script outlived [`EXIT_GRACE`] after its output: the body ends
    /// as it is (the reaper kills the script at `cgi_timeout`).
    pub fn stop_awaiting_exit(&mut self) {
        self.exit_wait = None;
        if let Some(relay) = &mut self.relay {
            relay.end();
        }
    }

    /// When the run gives up: `cgi_timeout` after the last progress, or the
    /// end of the wait for the exit status.
    pub fn deadline(&self) -> Instant {
        self.exit_wait.unwrap_or(self.last_progress + self.timeout)
    }

    /// Whether a response head has gone out (then a failure can only close).
    pub fn responded(&self) -> bool {
        self.relay.is_some()
    }

    /// The relay is full: the run waits for the client to read, and the
    /// script waits for the run (`send_timeout` applies, not `cgi_timeout`).
    pub fn waiting_on_client(&self) -> bool {
        self.relay.as_ref().is_some_and(|r| !r.has_room())
    }

    /// Moves everything that can move.
    pub fn step(&mut self, client: &mut Client, cx: &mut Cx) -> CgiStep {
        let mut progress = false;
        if !self.interim.is_empty() {
            match client.write_all_now(&mut self.interim) {
                Ok(true) => progress = true,
                Ok(false) => return CgiStep::Blocked,
                Err(_) => return CgiStep::Abort,
            }
        }
        match self.feed_stdin(client, cx) {
            Ok(moved) => progress |= moved,
            Err(step) => return step,
        }
        // Bytes of a pipelined request are not the script's progress: they
        // must not put off `cgi_timeout` (SPEC §8).
        let watched = match self.watch_client(client, cx) {
            Ok(moved) => moved,
            Err(step) => return step,
        };
        match self.read_stdout(cx) {
            Ok(moved) => progress |= moved,
            Err(step) => return step,
        }
        if self.exit_wait.is_some() {
            match self.settle_exit(cx) {
                Ok(moved) => progress |= moved,
                Err(step) => return step,
            }
        }
        if let Some(relay) = &mut self.relay {
            match client.flush(relay, cx.now) {
                Ok(moved) => progress |= moved,
                Err(_) => return CgiStep::Abort,
            }
            if relay.is_done() {
                let fed = matches!(self.feed, Feed::Done);
                return CgiStep::Done {
                    close: relay.must_close() || !self.keep_alive || !fed,
                };
            }
        }
        if progress {
            self.last_progress = cx.now;
        }
        if progress || watched {
            CgiStep::Progress
        } else {
            CgiStep::Blocked
        }
    }

    /// Request body → stdin. `Err` ends the run.
    fn feed_stdin(&mut self, client: &mut Client, cx: &mut Cx) -> Result<bool, CgiStep> {
        let mut progress = false;
        if self.pending_pos == self.pending.len() {
            self.pending.clear();
            self.pending_pos = 0;
            progress |= self.fill_pending(client, cx)?;
        }
        if self.pending_pos < self.pending.len() && self.stdin_ready {
            if let Some(stdin) = &mut self.stdin {
                match stdin.write(&self.pending[self.pending_pos..]) {
                    Ok(n) => {
                        self.pending_pos += n;
                        progress = true;
                    }
                    Err(err) if err.kind() == io::ErrorKind::WouldBlock => self.stdin_ready = false,
                    Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                    // The script closed its stdin: it wants no more input.
                    Err(_) => self.close_stdin(cx.registry),
                }
            } else {
                // Nobody reads any more: drop what was meant for stdin.
                self.pending_pos = self.pending.len();
            }
        }
        if matches!(self.feed, Feed::Done)
            && self.pending_pos == self.pending.len()
            && self.stdin.is_some()
        {
            self.close_stdin(cx.registry);
            progress = true;
        }
        Ok(progress)
    }

    /// Once the body is read, the client socket is only watched for its
    /// end: a client that leaves must not leave its script running until
    /// `cgi_timeout` (a silent script gives no write to fail). As nginx
    /// does for upstreams (`ngx_http_upstream_check_broken_connection`),
    /// end of file from the client aborts the run. Bytes that arrive (a
    /// pipelined request) stay buffered for the next request, up to
    /// [`STDIN_BUFFER`]; past that the socket is left unread.
    fn watch_client(&mut self, client: &mut Client, cx: &mut Cx) -> Result<bool, CgiStep> {
        if matches!(self.feed, Feed::Client(_)) || client.input.len() >= STDIN_BUFFER {
            return Ok(false);
        }
        match client.read(STDIN_BUFFER - client.input.len(), cx) {
            ReadOutcome::Data => Ok(true),
            ReadOutcome::Blocked => Ok(false),
            ReadOutcome::Closed => Err(CgiStep::Abort),
        }
    }

    /// Refills `pending` from the feed.
    fn fill_pending(&mut self, client: &mut Client, cx: &mut Cx) -> Result<bool, CgiStep> {
        match &mut self.feed {
            Feed::Done => Ok(false),
            Feed::File { file, remaining } => {
                let want = STDIN_BUFFER.min(usize::try_from(*remaining).unwrap_or(STDIN_BUFFER));
                self.pending.resize(want, 0);
                let n = file
                    .read(&mut self.pending)
                    .map_err(|_| CgiStep::Fail(500))?;
                self.pending.truncate(n);
                *remaining -= n as u64;
                if n == 0 || *remaining == 0 {
                    self.feed = Feed::Done;
                }
                Ok(true)
            }
            Feed::Client(body) => {
                let pending = &mut self.pending;
                let step = body.step(client, STDIN_BUFFER, cx, |data| {
                    pending.extend_from_slice(data);
                    Ok(())
                });
                match step {
                    Ok(BodyStep::Data | BodyStep::Read) => Ok(true),
                    Ok(BodyStep::Done) => {
                        self.feed = Feed::Done;
                        Ok(true)
                    }
                    Ok(BodyStep::Blocked) => Ok(false),
                    Err(BodyError::Status(status)) => Err(CgiStep::Fail(status)),
                    Err(BodyError::Closed) => Err(CgiStep::Abort),
                }
            }
        }
    }

    /// stdout → header block, then → relay. `Err` ends the run.
    fn read_stdout(&mut self, cx: &mut Cx) -> Result<bool, CgiStep> {
        let room = self.relay.as_ref().is_none_or(Relay::has_room);
        if !self.stdout_ready || !room {
            return Ok(false);
        }
        let Some(stdout) = &mut self.stdout else {
            return Ok(false);
        };
        let n = match read_edge(
            stdout,
            cx.scratch,
            &mut self.stdout_ready,
            self.stdout_closed,
        ) {
            Ok(Some(n)) => n,
            Ok(None) => return Ok(false),
            // A broken pipe ends the output like an end of file.
            Err(_) => 0,
        };
        if n == 0 {
            if let Some(mut stdout) = self.stdout.take() {
                let _ = cx.registry.deregister(&mut stdout);
            }
            return match &self.relay {
                Some(_) => {
                    self.exit_wait = Some(cx.now + EXIT_GRACE);
                    self.settle_exit(cx).map(|_| true)
                }
                None => Err(CgiStep::Fail(502)),
            };
        }
        match &mut self.relay {
            Some(relay) => {
                relay.push(&cx.scratch[..n]);
                self.body_bytes += n as u64;
            }
            None => {
                self.head.extend_from_slice(&cx.scratch[..n]);
                self.parse_head(cx)?;
            }
        }
        Ok(true)
    }

    /// The output has ended: end the body if the script exited with 0,
    /// abort (no valid end, close) if it failed, wait if it still runs.
    fn settle_exit(&mut self, cx: &mut Cx) -> Result<bool, CgiStep> {
        let status = match self.child.as_mut().map(Child::try_wait) {
            Some(Ok(Some(status))) => status,
            // Still running: the pidfd (or the grace deadline) wakes us.
            Some(Ok(None)) if self.exit_fd.is_some() => return Ok(false),
            // No way to learn the exit: the body ends with the output.
            Some(Ok(None) | Err(_)) | None => {
                self.stop_awaiting_exit();
                return Ok(true);
            }
        };
        self.exit_wait = None;
        if status.success() {
            if let Some(relay) = &mut self.relay {
                relay.end();
            }
            return Ok(true);
        }
        cx.logs.error(format_args!(
            "cgi script for \"{}\" ended abnormally ({status}) after its output began; \
             the response is cut off",
            self.request.request_line().escape_debug()
        ));
        Err(CgiStep::Abort)
    }

    fn parse_head(&mut self, cx: &mut Cx) -> Result<(), CgiStep> {
        let (head, len) = match cgi::parse_head(&self.head) {
            Ok(Some(parsed)) => parsed,
            Ok(None) if self.head.len() < HEAD_LIMIT => return Ok(()),
            Ok(None) | Err(_) => return Err(CgiStep::Fail(502)),
        };
        if cgi::is_local_redirect(&head) {
            let location = head.location.unwrap_or_default();
            return Err(CgiStep::Redirect(location));
        }
        let rest = self.head.split_off(len);
        self.head = Vec::new();
        let mut relay = self.response_head(&head, cx);
        relay.push(&rest);
        self.body_bytes = rest.len() as u64;
        self.relay = Some(relay);
        Ok(())
    }

    /// Builds the client's response head from the script's header block,
    /// with what the location adds; the body is compressed on the way when
    /// the location and the client want gzip (SPEC §9.5).
    fn response_head(&mut self, head: &CgiHead, cx: &mut Cx) -> Relay {
        let status = self.error_status.unwrap_or(head.status);
        self.status = status;
        let no_body = crate::http::response::status_has_no_body(status);
        let field = |name: &str| {
            head.headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        };
        let coding = output::coding(
            &self.output,
            Some(&self.request),
            Candidate {
                status: head.status,
                content_type: field("content-type"),
                encoded: field("content-encoding").is_some(),
                length: head.content_length,
            },
        );
        let gzip = coding == Coding::Gzip;
        let length = match head.content_length {
            _ if no_body => None,
            _ if gzip && self.request.is_head() => None,
            // `coding` gzips for HTTP/1.1 clients only.
            _ if gzip => Some(Length::Chunked),
            Some(n) => Some(Length::Known(n)),
            None if self.request.minor_version == 1 => Some(Length::Chunked),
            None => Some(Length::UntilClose),
        };
        if length == Some(Length::UntilClose) {
            self.keep_alive = false;
        }
        let mut out = Vec::with_capacity(512);
        let now = std::time::SystemTime::now();
        let output = &self.output;
        write_head_start(&mut out, status, cx.date.get(now), output.server_tokens);
        for (name, value) in &head.headers {
            output::write_own_header(&mut out, output, status, coding, name, value.as_bytes());
        }
        output::write_added(&mut out, output, status, coding, Some(&self.request), now);
        write_head_end(&mut out, length, self.keep_alive);
        let body = if self.request.is_head() { None } else { length };
        let relay = Relay::new(out, body);
        if gzip {
            relay.gzip()
        } else {
            relay
        }
    }

    fn close_stdin(&mut self, registry: &Registry) {
        if let Some(mut stdin) = self.stdin.take() {
            let _ = registry.deregister(&mut stdin);
        }
        self.stdin_ready = false;
    }

    /// The run is over: close the pipes and hand the child to the reaper.
    /// A script that finished its output but still runs gets `cgi_timeout`
    /// more to exit.
    pub fn finish(mut self, registry: &Registry, reaper: &mut Reaper, now: Instant) {
        let kill_at = now + self.timeout;
        self.release(registry, reaper, Some(kill_at));
    }

    /// The run is abandoned: kill the script.
    pub fn abandon(&mut self, registry: &Registry, reaper: &mut Reaper) {
        self.release(registry, reaper, None);
    }

    fn release(&mut self, registry: &Registry, reaper: &mut Reaper, kill_at: Option<Instant>) {
        self.close_stdin(registry);
        if let Some(fd) = self.exit_fd.take() {
            let _ = registry.deregister(&mut SourceFd(&fd.as_raw_fd()));
        }
        if let Some(mut stdout) = self.stdout.take() {
            let _ = registry.deregister(&mut stdout);
        }
        if let Some(mut child) = self.child.take() {
            if kill_at.is_none() {
                cgi::kill(&mut child);
            }
            reaper.adopt(child, kill_at);
        }
    }
}

impl Drop for CgiRun {
    fn drop(&mut self) {
        // Every path should have called finish or abandon; if not, never
        // leave a script running unwatched: kill it and wait for it here.
        if let Some(mut child) = self.child.take() {
            if !matches!(child.try_wait(), Ok(Some(_))) {
                cgi::kill(&mut child);
                let _ = child.wait();
            }
        }
    }
}
