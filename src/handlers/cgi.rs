//! CGI/1.1 (RFC 3875, SPEC §6) without sockets: which file is the script,
//! what it is told, how it is started, and what its header block means.
//! The server (`server/conn.rs`) owns the pipes, the timeout and reaping.
//!
//! Steps, in order:
//! 1. [`find_script`] walks the URL path for the first segment with a `cgi`
//!    extension: that is the script ([`Script`]), the rest is `PATH_INFO`.
//! 2. [`environment`] builds exactly the variables of SPEC §6.
//! 3. [`spawn`] starts it in its own directory and process group, with a
//!    clean environment and non-blocking stdin/stdout pipes ([`CgiChild`]);
//!    [`kill`] ends the whole group on timeout.
//! 4. [`parse_head`] reads the CGI header block from the script's output
//!    ([`CgiHead`]); [`is_local_redirect`] tells when the server must serve
//!    another path instead (RFC 3875 §6.2.2).

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use crate::handlers::static_file;
use crate::http::path::map_under;
use crate::http::request::Request;
use crate::http::response::SERVER;
use crate::routing::{CgiHandler, Location};

/// The CGI header block may not be longer than this (blank line included).
pub const MAX_HEAD: usize = 16 * 1024;

/// `PATH` for the script when the server itself has none.
const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// A script found in a URL path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Script {
    /// Absolute file system path of the script (`SCRIPT_FILENAME`).
    pub path: PathBuf,
    /// URL path of the script (`SCRIPT_NAME`).
    pub script_name: String,
    /// URL path after the script name (`PATH_INFO`), `""` if none.
    pub path_info: String,
    /// `None`: the script is executed itself.
    pub interpreter: Option<PathBuf>,
    /// `PATH_INFO` mapped onto the location's `root` or `alias` directory,
    /// as nginx's `$document_root$fastcgi_path_info`; `None` when
    /// `path_info` is empty (RFC 3875 §4.1.6: then it is unset).
    pub path_translated: Option<PathBuf>,
}

/// Finds the script in `path` (decoded and normalised) for `location`.
///
/// The first segment whose name ends with one of the location's `cgi`
/// extensions (the longest one, if several match) is the script:
/// `/cgi-bin/env.py/a/b` is the script `/cgi-bin/env.py` with path info
/// `/a/b`. A segment that is only the extension (`/.py`) does not count.
///
/// `None` when no segment matches, the location has neither `root` nor
/// `alias`, or the script is not a regular file. With `cgi_check_script off`
/// a missing script is still run (the interpreter gets its path, as for the
/// 42 tester's `youpla.bla`); a directory or a special file never is.
pub fn find_script(location: &Location, path: &str) -> Option<Script> {
    let (end, handler) = script_segment(&location.cgi, path)?;
    let (script_name, path_info) = path.split_at(end);
    let fs_path = std::path::absolute(static_file::map_path(location, script_name)?).ok()?;
    if !runnable(&fs_path, location.cgi_check_script) {
        return None;
    }
    Some(Script {
        path: fs_path,
        script_name: script_name.to_string(),
        path_info: path_info.to_string(),
        interpreter: handler.interpreter.clone(),
        path_translated: translate(location, path_info),
    })
}

/// Byte offset where the script's segment ends, and its handler.
fn script_segment<'a>(handlers: &'a [CgiHandler], path: &str) -> Option<(usize, &'a CgiHandler)> {
    let mut start = 0;
    for segment in path.split('/') {
        let end = start + segment.len();
        if let Some(handler) = handler_for(handlers, segment) {
            return Some((end, handler));
        }
        start = end + 1;
    }
    None
}

/// The handler with the longest extension that ends `name` (the first one
/// listed on a tie).
fn handler_for<'a>(handlers: &'a [CgiHandler], name: &str) -> Option<&'a CgiHandler> {
    handlers
        .iter()
        .filter(|h| !h.ext.is_empty() && name.len() > h.ext.len() && name.ends_with(&h.ext))
        .min_by_key(|h| std::cmp::Reverse(h.ext.len()))
}

/// A regular file is runnable; a missing one only without the check.
fn runnable(path: &Path, check_script: bool) -> bool {
    match std::fs::metadata(path) {
        Ok(meta) => meta.is_file(),
        Err(_) => !check_script,
    }
}

fn translate(location: &Location, path_info: &str) -> Option<PathBuf> {
    if path_info.is_empty() {
        return None;
    }
    let base = location.alias.as_deref().or(location.root.as_deref())?;
    std::path::absolute(map_under(base, path_info)).ok()
}

/// The request headers that have variables of their own (RFC 3875
/// §4.1.18 allows leaving them out of `HTTP_*`), and `Proxy`: a client's
/// `Proxy` header would become `HTTP_PROXY`, which many HTTP libraries
/// read as their outgoing proxy ("httpoxy", CVE-2016-5385).
const NOT_HTTP_VARIABLES: &[&str] = &["content-length", "content-type", "proxy"];

/// The script's environment (SPEC §6), without `PATH` ([`spawn`] adds it).
///
/// `content_length` is the final body length, `None` without a body.
/// `PATH_INFO` is always set (`""` when there is none); `PATH_TRANSLATED`
/// only when `PATH_INFO` is not empty. Every request header becomes
/// `HTTP_` + its name upper-cased with `-` as `_`; repeated names are
/// joined with `, ` (`; ` for `Cookie`, as nginx's `$http_cookie`), and
/// names that map alike (`X-A`, `X_A`) are joined too. Bytes that are not
/// UTF-8 in a header value become U+FFFD (lossy): a value is never dropped.
pub fn environment(
    request: &Request,
    script: &Script,
    server_name: &str,
    server_port: u16,
    remote: SocketAddr,
    content_length: Option<u64>,
) -> Vec<(String, String)> {
    let mut env = vec![
        var("GATEWAY_INTERFACE", "CGI/1.1"),
        var(
            "SERVER_PROTOCOL",
            format!("HTTP/1.{}", request.minor_version),
        ),
        var("SERVER_SOFTWARE", SERVER),
        var("SERVER_NAME", server_name),
        var("SERVER_PORT", server_port.to_string()),
        var("REQUEST_METHOD", request.method_str()),
        var("REQUEST_URI", request.target()),
        var("QUERY_STRING", request.query().unwrap_or("")),
        var("SCRIPT_NAME", script.script_name.as_str()),
        var("SCRIPT_FILENAME", script.path.to_string_lossy()),
        var("PATH_INFO", script.path_info.as_str()),
    ];
    if let Some(translated) = &script.path_translated {
        env.push(var("PATH_TRANSLATED", translated.to_string_lossy()));
    }
    if let Some(length) = content_length {
        env.push(var("CONTENT_LENGTH", length.to_string()));
    }
    if let Some(content_type) = request.header("content-type") {
        env.push(var("CONTENT_TYPE", String::from_utf8_lossy(content_type)));
    }
    env.extend([
        var("REMOTE_ADDR", remote.ip().to_canonical().to_string()),
        var("REMOTE_PORT", remote.port().to_string()),
        var("REDIRECT_STATUS", "200"),
    ]);
    env.extend(http_variables(request));
    env
}

fn var(name: &str, value: impl Into<String>) -> (String, String) {
    (name.to_string(), value.into())
}

/// `HTTP_*` variables, in the order their headers first appear.
fn http_variables(request: &Request) -> Vec<(String, String)> {
    let mut vars: Vec<(String, String)> = Vec::new();
    for (name, value) in request.headers() {
        if NOT_HTTP_VARIABLES
            .iter()
            .any(|skip| name.eq_ignore_ascii_case(skip))
        {
            continue;
        }
        let key = http_variable_name(name);
        let value = String::from_utf8_lossy(value);
        match vars.iter_mut().find(|(k, _)| *k == key) {
            Some((_, joined)) => {
                joined.push_str(if key == "HTTP_COOKIE" { "; " } else { ", " });
                joined.push_str(&value);
            }
            None => vars.push((key, value.into_owned())),
        }
    }
    vars
}

/// `X-Forwarded-For` is `HTTP_X_FORWARDED_FOR`. A header name is a token,
/// so the result never holds `=` or NUL, the two bytes `execve` forbids.
fn http_variable_name(header: &str) -> String {
    let mut name = String::with_capacity(5 + header.len());
    name.push_str("HTTP_");
    name.extend(header.chars().map(|c| {
        if c == '-' {
            '_'
        } else {
            c.to_ascii_uppercase()
        }
    }));
    name
}

/// A running script: the server writes the body to `stdin` and reads the
/// output from `stdout`, both non-blocking, and reaps `child`.
#[derive(Debug)]
pub struct CgiChild {
    pub child: Child,
    pub stdin: ChildStdin,
    pub stdout: ChildStdout,
}

/// Starts `script` with exactly `env` plus `PATH` (the server's, else
/// `/usr/local/bin:/usr/bin:/bin`).
///
/// - argv is `[interpreter] script_path`; a bare interpreter name is looked
///   up in that `PATH`.
/// - The working directory is the script's directory; for a missing script
///   (`cgi_check_script off`) the nearest existing ancestor of its path,
///   which is at most the location's `root` or `alias`.
/// - stdin and stdout are pipes, set non-blocking here, ready for
///   `mio::unix::pipe::{Sender, Receiver}::from`; stderr is the server's
///   (its error log).
/// - The child leads a process group of its own, so [`kill`] also ends
///   whatever it started.
/// - No descriptor of the server leaks: std, mio and signal-hook open every
///   descriptor close-on-exec, and before `exec` the child also marks every
///   descriptor above 2 close-on-exec (`close_range`, Linux 5.11), which
///   catches any the server inherited from its own parent.
/// - Signals start at their defaults: std empties the signal mask and sets
///   SIGPIPE back to `SIG_DFL` before `exec` (the unstable book's
///   "on-broken-pipe" table: not used → SIG_DFL before child `exec`);
///   handled signals (signal-hook's) reset on `exec` by POSIX.
pub fn spawn(script: &Script, env: &[(String, String)]) -> io::Result<CgiChild> {
    let mut command = match &script.interpreter {
        Some(interpreter) => {
            let mut command = Command::new(interpreter);
            command.arg(&script.path);
            command
        }
        None => Command::new(&script.path),
    };
    command
        .current_dir(working_dir(&script.path))
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .env(
            "PATH",
            std::env::var_os("PATH").unwrap_or(DEFAULT_PATH.into()),
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .process_group(0);
    // SAFETY: the hook runs in the forked child before exec and makes one
    // raw system call, which is async-signal-safe; it touches no memory and
    // takes no lock.
    unsafe {
        command.pre_exec(|| {
            cloexec_above_stderr();
            Ok(())
        });
    }
    let mut child = command.spawn()?;
    let stdin = child.stdin.take().expect("stdin was set to piped");
    let stdout = child.stdout.take().expect("stdout was set to piped");
    if let Err(err) = set_nonblocking(&stdin).and_then(|()| set_nonblocking(&stdout)) {
        kill(&mut child);
        // Cannot block for long: SIGKILL was just sent.
        let _ = child.wait();
        return Err(err);
    }
    Ok(CgiChild {
        child,
        stdin,
        stdout,
    })
}

/// The script's directory, or the nearest ancestor that exists.
fn working_dir(script: &Path) -> &Path {
    script
        .ancestors()
        .skip(1)
        .find(|dir| dir.is_dir())
        .unwrap_or(Path::new("/"))
}

/// Runs in the child between fork and exec. An older kernel without
/// `close_range` flags leaves only std's own close-on-exec guarantee.
fn cloexec_above_stderr() {
    // SAFETY: close_range with CLOSE_RANGE_CLOEXEC only sets a flag on this
    // process's own descriptors (std's close-on-exec error pipe stays open
    // until exec); no pointer is passed.
    unsafe {
        libc::syscall(
            libc::SYS_close_range,
            3 as libc::c_uint,
            libc::c_uint::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        );
    }
}

fn set_nonblocking(fd: &impl AsRawFd) -> io::Result<()> {
    let fd = fd.as_raw_fd();
    // SAFETY: `fd` is an open descriptor owned by the caller for the whole
    // call; F_GETFL and F_SETFL take no pointer.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: as above.
    if unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// SIGKILL to the script's whole process group (it leads one, see
/// [`spawn`]). A group that is already gone (ESRCH) is fine; any other
/// failure falls back to killing the child alone. Reaping stays with the
/// caller (`try_wait`).
pub fn kill(child: &mut Child) {
    let pid = match libc::pid_t::try_from(child.id()) {
        Ok(pid) if pid > 0 => pid,
        // Never `kill(0)` or `kill(-0)`: that would be the server's group.
        _ => return,
    };
    // SAFETY: kill takes no pointer; `-pid` names the group that `spawn`
    // created with `process_group(0)`, whose id is the child's pid.
    if unsafe { libc::kill(-pid, libc::SIGKILL) } == 0 {
        return;
    }
    if io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH) {
        let _ = child.kill();
    }
}

/// The script's header block (RFC 3875 §6.2–6.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgiHead {
    /// From `Status`, else 302 with a `Location`, else 200.
    pub status: u16,
    /// Whether the script sent `Status` (see [`is_local_redirect`]).
    pub status_given: bool,
    /// Header fields to send, in order, names as sent. Left out: `Status`,
    /// `Content-Length` (see `content_length`), and the fields the server
    /// writes itself or that belong to its connection: `Connection`,
    /// `Transfer-Encoding`, `Keep-Alive`, `Server`, `Date`. `Location` stays
    /// here (and is also in `location`).
    pub headers: Vec<(String, String)>,
    pub location: Option<String>,
    /// From `Content-Length`: the body's length; `None` means until EOF.
    pub content_length: Option<u64>,
}

/// Why a header block was refused; the server answers 502 for each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgiHeadError {
    /// No blank line within [`MAX_HEAD`] bytes.
    TooLarge,
    /// A line without `:`.
    NoColon,
    /// A line starting with a space or tab (obs-fold, RFC 9112 §5.2).
    ObsFold,
    /// A field name that is empty or not a token.
    BadName,
    /// A control character in a value, or a value that is not UTF-8.
    BadValue,
    /// `Status` that is not `DDD [reason]` with DDD in 200–599.
    BadStatus,
    /// `Content-Length` that is not a decimal number.
    BadContentLength,
    /// `Status`, `Location`, `Content-Type` or `Content-Length` twice.
    Duplicate,
    /// A document response without `Content-Type`.
    NoContentType,
}

impl fmt::Display for CgiHeadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CgiHeadError::TooLarge => "CGI header block too large",
            CgiHeadError::NoColon => "CGI header line without ':'",
            CgiHeadError::ObsFold => "folded CGI header line",
            CgiHeadError::BadName => "invalid CGI header name",
            CgiHeadError::BadValue => "invalid CGI header value",
            CgiHeadError::BadStatus => "invalid CGI Status",
            CgiHeadError::BadContentLength => "invalid CGI Content-Length",
            CgiHeadError::Duplicate => "repeated CGI header field",
            CgiHeadError::NoContentType => "CGI document response without Content-Type",
        })
    }
}

impl std::error::Error for CgiHeadError {}

/// Fields the server owns: it writes its own `Server` and `Date`, and
/// decides the framing and persistence of its connection.
const SERVER_OWNED: &[&str] = &[
    "connection",
    "transfer-encoding",
    "keep-alive",
    "server",
    "date",
];

/// Parses the header block at the start of `buf`, the script's output so
/// far. `Ok(None)`: incomplete, read more. `Ok(Some((head, len)))`: the
/// block, blank line included, was `buf[..len]`; the body follows.
///
/// Lines end with LF or CRLF. Each complete line is checked as it comes,
/// so garbage output fails early. `Content-Type` may be left out with a
/// `Location`, with status 204 or 304, or with `Content-Length: 0`, as no
/// body follows then (RFC 3875 §6.3.1 asks for it only with a body).
/// `Status` 1xx is refused: it would be sent as a final response.
pub fn parse_head(buf: &[u8]) -> Result<Option<(CgiHead, usize)>, CgiHeadError> {
    let window = &buf[..buf.len().min(MAX_HEAD)];
    let mut fields = Fields::default();
    let mut pos = 0;
    while let Some(newline) = memchr::memchr(b'\n', &window[pos..]) {
        let line = &window[pos..pos + newline];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        pos += newline + 1;
        if line.is_empty() {
            return fields.finish().map(|head| Some((head, pos)));
        }
        fields.add(line)?;
    }
    if buf.len() >= MAX_HEAD {
        Err(CgiHeadError::TooLarge)
    } else {
        Ok(None)
    }
}

/// RFC 3875 §6.2.2: `Location` with a path and no `Status` asks the server
/// to answer the request as if that path (a GET) had been asked for.
pub fn is_local_redirect(head: &CgiHead) -> bool {
    !head.status_given
        && head
            .location
            .as_deref()
            .is_some_and(|l| l.starts_with('/') && !l.starts_with("//"))
}

/// The header block as it is read, line by line.
#[derive(Default)]
struct Fields {
    status: Option<u16>,
    location: Option<String>,
    content_type: bool,
    content_length: Option<u64>,
    headers: Vec<(String, String)>,
}

impl Fields {
    fn add(&mut self, line: &[u8]) -> Result<(), CgiHeadError> {
        let (name, value) = split_field(line)?;
        let is = |n: &str| name.eq_ignore_ascii_case(n);
        if is("status") {
            return set_once(&mut self.status, parse_status(value)?);
        }
        if is("content-length") {
            let length = parse_length(value).ok_or(CgiHeadError::BadContentLength)?;
            return set_once(&mut self.content_length, length);
        }
        if SERVER_OWNED.iter().any(|owned| is(owned)) {
            return Ok(());
        }
        if is("location") {
            set_once(&mut self.location, value.to_string())?;
        } else if is("content-type") {
            if self.content_type {
                return Err(CgiHeadError::Duplicate);
            }
            self.content_type = true;
        }
        self.headers.push((name.to_string(), value.to_string()));
        Ok(())
    }

    fn finish(self) -> Result<CgiHead, CgiHeadError> {
        let status = match (self.status, &self.location) {
            (Some(status), _) => status,
            (None, Some(_)) => 302,
            (None, None) => 200,
        };
        let no_body = matches!(status, 204 | 304) || self.content_length == Some(0);
        if !self.content_type && self.location.is_none() && !no_body {
            return Err(CgiHeadError::NoContentType);
        }
        Ok(CgiHead {
            status,
            status_given: self.status.is_some(),
            headers: self.headers,
            location: self.location,
            content_length: self.content_length,
        })
    }
}

fn set_once<T>(slot: &mut Option<T>, value: T) -> Result<(), CgiHeadError> {
    if slot.is_some() {
        return Err(CgiHeadError::Duplicate);
    }
    *slot = Some(value);
    Ok(())
}

/// `name: value` with the value trimmed of spaces and tabs.
fn split_field(line: &[u8]) -> Result<(&str, &str), CgiHeadError> {
    if matches!(line.first(), Some(b' ' | b'\t')) {
        return Err(CgiHeadError::ObsFold);
    }
    let colon = memchr::memchr(b':', line).ok_or(CgiHeadError::NoColon)?;
    let (name, value) = (&line[..colon], trim(&line[colon + 1..]));
    if name.is_empty() || !name.iter().all(|&b| is_token_char(b)) {
        return Err(CgiHeadError::BadName);
    }
    // Visible ASCII, space, tab, and UTF-8 text; no control bytes, so no
    // CR or NUL can reach the response head.
    if value.iter().any(|&b| b != b'\t' && (b < 0x20 || b == 0x7f)) {
        return Err(CgiHeadError::BadValue);
    }
    let value = std::str::from_utf8(value).map_err(|_| CgiHeadError::BadValue)?;
    let name = std::str::from_utf8(name).map_err(|_| CgiHeadError::BadName)?;
    Ok((name, value))
}

/// RFC 9110 §5.6.2 `tchar`.
fn is_token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// `Status: 404` or `Status: 404 Not Found`; the reason is not kept, the
/// server writes its own.
fn parse_status(value: &str) -> Result<u16, CgiHeadError> {
    let bytes = value.as_bytes();
    let digits = bytes.get(..3).ok_or(CgiHeadError::BadStatus)?;
    let reason_ok = matches!(bytes.get(3), None | Some(b' '));
    if !reason_ok || !digits.iter().all(u8::is_ascii_digit) {
        return Err(CgiHeadError::BadStatus);
    }
    let status = digits
        .iter()
        .fold(0u16, |n, &d| n * 10 + u16::from(d - b'0'));
    if (200..=599).contains(&status) {
        Ok(status)
    } else {
        Err(CgiHeadError::BadStatus)
    }
}

/// `1*DIGIT`, no sign, no overflow.
fn parse_length(value: &str) -> Option<u64> {
    if value.is_empty() || value.len() > 19 || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    value.parse().ok()
}

fn trim(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|b| !matches!(b, b' ' | b'\t'))
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !matches!(b, b' ' | b'\t'))
        .map_or(start, |e| e + 1);
    &bytes[start..end]
}
