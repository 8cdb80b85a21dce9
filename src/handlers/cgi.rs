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

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use crate::handlers::static_file;
use crate::http::parse_content_length;
use crate::http::path::map_under;
use crate::http::request::Request;
use crate::http::response::SERVER;
use crate::http::trim_ows as trim;
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
/// joined with `, ` (`; ` for `Cookie`, as nginx's `$http_cookie`). A
/// name with `_` never gets here (the parser drops it, SPEC §9.6). Bytes that are not
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
        var("REQUEST_URI", request.request_uri()),
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
    // As nginx's fastcgi_params: `REQUEST_SCHEME` always, `HTTPS` over TLS.
    env.push(var("REQUEST_SCHEME", request.scheme()));
    if request.via.https {
        env.push(var("HTTPS", "on"));
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
///   descriptor close-on-exec, and [`cloexec_inherited_fds`] marked those
///   the server inherited from its own parent at startup, so no `pre_exec`
///   hook is needed (std can then use `posix_spawn`).
/// - Signals start at their defaults: std empties the signal mask and sets
///   SIGPIPE back to `SIG_DFL` before `exec` (the unstable book's
///   "on-broken-pipe" table: not used → SIG_DFL before child `exec`);
///   handled signals (signal-hook's) reset on `exec` by POSIX.
pub fn spawn(script: &Script, env: &[(String, String)]) -> io::Result<CgiChild> {
    let mut command = match &script.interpreter {
        Some(interpreter) => {
            let mut command = Command::new(resolve_program(interpreter));
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
    // An absolute program, no pre_exec hook: std can use posix_spawn (a
    // vfork-like clone) instead of forking the whole server, and returns
    // without waiting on a child that must first copy our page tables.
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

/// An interpreter named without a `/`, found in PATH once and remembered:
/// PATH is searched by the server, not by every child (std would fork the
/// whole server to search it with the child's PATH). A program that moved
/// is looked up again.
fn resolve_program(name: &Path) -> PathBuf {
    thread_local! {
        static FOUND: RefCell<HashMap<PathBuf, PathBuf>> = RefCell::new(HashMap::new());
    }
    if name.components().count() != 1 || name.is_absolute() {
        return name.to_path_buf();
    }
    FOUND.with(|found| {
        let mut found = found.borrow_mut();
        if let Some(path) = found.get(name).filter(|p| p.is_file()) {
            return path.clone();
        }
        let path_var = std::env::var_os("PATH").unwrap_or(DEFAULT_PATH.into());
        let hit = std::env::split_paths(&path_var)
            .map(|dir| dir.join(name))
            .find(|candidate| is_executable(candidate));
        match hit {
            Some(path) => {
                found.insert(name.to_path_buf(), path.clone());
                path
            }
            None => name.to_path_buf(),
        }
    })
}

fn is_executable(path: &Path) -> bool {
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Marks every descriptor above stderr close-on-exec, once at startup: a
/// descriptor the server inherited from its own parent then never reaches
/// a script (everything the server opens itself is close-on-exec already).
/// An older kernel without `close_range` flags leaves only std's own
/// close-on-exec guarantee.
pub fn cloexec_inherited_fds() {
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
    /// A control character in a value, a value that is not UTF-8, or an
    /// empty `Location`.
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
            let length =
                parse_content_length(value.as_bytes()).ok_or(CgiHeadError::BadContentLength)?;
            return set_once(&mut self.content_length, length);
        }
        if SERVER_OWNED.iter().any(|owned| is(owned)) {
            return Ok(());
        }
        if is("location") {
            if value.is_empty() {
                return Err(CgiHeadError::BadValue);
            }
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::fs;
    use std::io::{Read, Write};
    use std::os::unix::fs::PermissionsExt;
    use std::process::ExitStatus;
    use std::time::{Duration, Instant};

    /// Every wait on a child in these tests is bounded by this.
    const DEADLINE: Duration = Duration::from_secs(10);

    fn location(uri: &str, root: Option<&Path>, alias: Option<&Path>, check: bool) -> Location {
        let handler = |ext: &str, interpreter: Option<&str>| CgiHandler {
            ext: ext.to_string(),
            interpreter: interpreter.map(PathBuf::from),
        };
        Location {
            uri: uri.to_string(),
            root: root.map(Into::into),
            alias: alias.map(Into::into),
            cgi: vec![
                handler(".py", Some("python3")),
                handler(".test.py", Some("/bin/sh")),
                handler(".cgi", None),
            ]
            .into(),
            cgi_timeout: Duration::from_secs(5),
            cgi_check_script: check,
            ..Location::default()
        }
    }

    /// A tree with scripts, a directory named like a script, and a file.
    fn site() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("cgi-bin");
        fs::create_dir_all(bin.join("dir.py")).unwrap();
        for name in ["env.py", "t.test.py", "x.cgi", "readme.txt"] {
            fs::write(bin.join(name), "").unwrap();
        }
        dir
    }

    #[test]
    fn find_script_table() {
        let site = site();
        let root = site.path();
        // (cgi_check_script, URL path, Some((script_name, path_info, interpreter)))
        type Case = (
            bool,
            &'static str,
            Option<(&'static str, &'static str, Option<&'static str>)>,
        );
        let cases: &[Case] = &[
            (
                true,
                "/cgi-bin/env.py",
                Some(("/cgi-bin/env.py", "", Some("python3"))),
            ),
            (
                true,
                "/cgi-bin/env.py/a/b",
                Some(("/cgi-bin/env.py", "/a/b", Some("python3"))),
            ),
            (
                true,
                "/cgi-bin/env.py/",
                Some(("/cgi-bin/env.py", "/", Some("python3"))),
            ),
            (
                true,
                "/cgi-bin/env.py/x.py",
                Some(("/cgi-bin/env.py", "/x.py", Some("python3"))),
            ),
            (
                true,
                "/cgi-bin/t.test.py/x",
                Some(("/cgi-bin/t.test.py", "/x", Some("/bin/sh"))),
            ),
            (true, "/cgi-bin/x.cgi", Some(("/cgi-bin/x.cgi", "", None))),
            (true, "/cgi-bin/missing.py", None),
            (true, "/cgi-bin/missing.py/a", None),
            (true, "/cgi-bin/dir.py", None),
            (true, "/cgi-bin/dir.py/", None),
            (true, "/cgi-bin/dir.py/env.py", None),
            (true, "/cgi-bin/readme.txt", None),
            (true, "/cgi-bin/", None),
            (true, "/.py", None),
            (true, "/", None),
            (true, "/cgi-bin/ENV.PY", None),
            (
                false,
                "/cgi-bin/missing.py/a",
                Some(("/cgi-bin/missing.py", "/a", Some("python3"))),
            ),
            (
                false,
                "/nowhere/youpla.py",
                Some(("/nowhere/youpla.py", "", Some("python3"))),
            ),
            (
                false,
                "/cgi-bin/env.py",
                Some(("/cgi-bin/env.py", "", Some("python3"))),
            ),
            (false, "/cgi-bin/dir.py", None),
        ];
        for &(check, path, expected) in cases {
            let loc = location("/", Some(root), None, check);
            let expected = expected.map(|(name, info, interpreter)| Script {
                path: root.join(&name[1..]),
                script_name: name.to_string(),
                path_info: info.to_string(),
                interpreter: interpreter.map(PathBuf::from),
                path_translated: (!info.is_empty()).then(|| map_under(root, info)),
            });
            assert_eq!(find_script(&loc, path), expected, "{path} (check {check})");
        }
    }

    #[test]
    fn find_script_through_alias() {
        let site = site();
        let alias = site.path().join("cgi-bin");
        let loc = location("/scripts/", None, Some(&alias), true);
        let script = find_script(&loc, "/scripts/env.py/z/y").unwrap();
        assert_eq!(script.path, alias.join("env.py"));
        assert_eq!(script.script_name, "/scripts/env.py");
        assert_eq!(script.path_info, "/z/y");
        assert_eq!(script.path_translated, Some(alias.join("z/y")));
        assert_eq!(find_script(&loc, "/scripts/nope.py"), None);
    }

    #[test]
    fn find_script_needs_a_root_or_alias() {
        let loc = location("/", None, None, false);
        assert_eq!(find_script(&loc, "/a.py"), None);
    }

    #[test]
    fn longest_extension_wins_whatever_the_order() {
        let mut handlers = vec![
            CgiHandler {
                ext: ".py".into(),
                interpreter: None,
            },
            CgiHandler {
                ext: ".test.py".into(),
                interpreter: Some("long".into()),
            },
            CgiHandler {
                ext: String::new(),
                interpreter: Some("empty".into()),
            },
        ];
        for _ in 0..2 {
            let handler = handler_for(&handlers, "a.test.py").unwrap();
            assert_eq!(handler.ext, ".test.py");
            assert_eq!(handler_for(&handlers, "a.txt").map(|h| &h.ext), None);
            handlers.reverse();
        }
    }

    fn request(raw: &[u8]) -> Request {
        Request::parse(raw, 8192).unwrap().unwrap().0
    }

    fn env_of(
        raw: &[u8],
        script: &Script,
        remote: &str,
        content_length: Option<u64>,
    ) -> Vec<(String, String)> {
        let request = request(raw);
        let remote = remote.parse().unwrap();
        environment(
            &request,
            script,
            "example.com",
            8080,
            remote,
            content_length,
        )
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn script_at(path: &Path, interpreter: Option<&str>) -> Script {
        Script {
            path: path.to_path_buf(),
            script_name: "/cgi-bin/env.py".into(),
            path_info: String::new(),
            interpreter: interpreter.map(PathBuf::from),
            path_translated: None,
        }
    }

    #[test]
    fn environment_has_every_variable() {
        let script = Script {
            path_info: "/a b".into(),
            path_translated: Some("/srv/www/a b".into()),
            ..script_at(Path::new("/srv/www/cgi-bin/env.py"), Some("python3"))
        };
        let raw = b"POST /cgi-bin/env.py/a%20b?x=1&y=%41 HTTP/1.1\r\n\
            Host: example.com:8080\r\n\
            Content-Type: text/plain\r\n\
            Content-Length: 5\r\n\
            X-Multi: a\r\n\
            Cookie: a=1\r\n\
            x-multi: b\r\n\
            X_Multi: c (dropped: a name with _)\r\n\
            Cookie: b=2\r\n\
            Proxy: http://evil.example/\r\n\
            X-Bin: a\xffb\r\n\
            User-Agent: test/1\r\n\r\n";
        let expected = pairs(&[
            ("GATEWAY_INTERFACE", "CGI/1.1"),
            ("SERVER_PROTOCOL", "HTTP/1.1"),
            ("SERVER_SOFTWARE", SERVER),
            ("SERVER_NAME", "example.com"),
            ("SERVER_PORT", "8080"),
            ("REQUEST_METHOD", "POST"),
            ("REQUEST_URI", "/cgi-bin/env.py/a%20b?x=1&y=%41"),
            ("QUERY_STRING", "x=1&y=%41"),
            ("SCRIPT_NAME", "/cgi-bin/env.py"),
            ("SCRIPT_FILENAME", "/srv/www/cgi-bin/env.py"),
            ("PATH_INFO", "/a b"),
            ("PATH_TRANSLATED", "/srv/www/a b"),
            ("CONTENT_LENGTH", "5"),
            ("CONTENT_TYPE", "text/plain"),
            ("REQUEST_SCHEME", "http"),
            ("REMOTE_ADDR", "10.0.0.7"),
            ("REMOTE_PORT", "4242"),
            ("REDIRECT_STATUS", "200"),
            ("HTTP_HOST", "example.com:8080"),
            ("HTTP_X_MULTI", "a, b"),
            ("HTTP_COOKIE", "a=1; b=2"),
            ("HTTP_X_BIN", "a\u{fffd}b"),
            ("HTTP_USER_AGENT", "test/1"),
        ]);
        let env = env_of(raw, &script, "[::ffff:10.0.0.7]:4242", Some(5));
        assert_eq!(env, expected);
    }

    #[test]
    fn environment_without_body_query_or_path_info() {
        let script = script_at(Path::new("/srv/env.py"), None);
        let env = env_of(
            b"GET /cgi-bin/env.py HTTP/1.0\r\n\r\n",
            &script,
            "[::1]:9",
            None,
        );
        let names: Vec<&str> = env.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            names,
            [
                "GATEWAY_INTERFACE",
                "SERVER_PROTOCOL",
                "SERVER_SOFTWARE",
                "SERVER_NAME",
                "SERVER_PORT",
                "REQUEST_METHOD",
                "REQUEST_URI",
                "QUERY_STRING",
                "SCRIPT_NAME",
                "SCRIPT_FILENAME",
                "PATH_INFO",
                "REQUEST_SCHEME",
                "REMOTE_ADDR",
                "REMOTE_PORT",
                "REDIRECT_STATUS",
            ]
        );
        let get = |name: &str| &env.iter().find(|(k, _)| k == name).unwrap().1;
        assert_eq!(get("SERVER_PROTOCOL"), "HTTP/1.0");
        assert_eq!(get("QUERY_STRING"), "");
        assert_eq!(get("PATH_INFO"), "");
        assert_eq!(get("REMOTE_ADDR"), "::1");
    }

    #[test]
    fn http_variable_names() {
        let cases = [
            ("Host", "HTTP_HOST"),
            ("x-forwarded-for", "HTTP_X_FORWARDED_FOR"),
            ("X_Under", "HTTP_X_UNDER"),
            ("A.b~c", "HTTP_A.B~C"),
        ];
        for (header, var) in cases {
            assert_eq!(http_variable_name(header), var);
        }
    }

    /// Writes an executable file.
    fn write_script(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        fs::write(&path, text).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    /// `spawn`, retrying ETXTBSY: another test thread may fork while this
    /// one still holds the just-written script open for writing.
    fn spawn_retrying(script: &Script, env: &[(String, String)]) -> CgiChild {
        for _ in 0..50 {
            match spawn(script, env) {
                Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                other => return other.unwrap(),
            }
        }
        panic!("script stayed busy");
    }

    fn wait_for(fd: &impl AsRawFd, events: libc::c_short, deadline: Instant) {
        let left = deadline
            .checked_duration_since(Instant::now())
            .expect("child too slow");
        let mut pollfd = libc::pollfd {
            fd: fd.as_raw_fd(),
            events,
            revents: 0,
        };
        let ms = libc::c_int::try_from(left.as_millis()).unwrap_or(libc::c_int::MAX);
        // SAFETY: one valid pollfd for the duration of the call.
        unsafe { libc::poll(&mut pollfd, 1, ms) };
    }

    /// Reads until EOF, or until `stop` says enough, within the deadline.
    fn read_until(
        out: &mut ChildStdout,
        deadline: Instant,
        stop: impl Fn(&[u8]) -> bool,
    ) -> Vec<u8> {
        let mut data = Vec::new();
        let mut buf = [0u8; 4096];
        while !stop(&data) {
            match out.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => data.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    wait_for(out, libc::POLLIN, deadline)
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => panic!("read: {e}"),
            }
        }
        data
    }

    fn reap(child: &mut Child, deadline: Instant) -> ExitStatus {
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                kill(child);
                panic!("child not reaped in time");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Feeds `input`, closes stdin, reads stdout to EOF and reaps.
    fn run(cgi: CgiChild, input: &[u8]) -> (String, ExitStatus) {
        let deadline = Instant::now() + DEADLINE;
        let CgiChild {
            mut child,
            mut stdin,
            mut stdout,
        } = cgi;
        let mut rest = input;
        while !rest.is_empty() {
            match stdin.write(rest) {
                Ok(n) => rest = &rest[n..],
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    wait_for(&stdin, libc::POLLOUT, deadline)
                }
                Err(e) => panic!("write: {e}"),
            }
        }
        drop(stdin);
        let out = read_until(&mut stdout, deadline, |_| false);
        let status = reap(&mut child, deadline);
        (String::from_utf8(out).unwrap(), status)
    }

    #[test]
    fn spawn_round_trip_with_argv_and_cwd() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("bin");
        fs::create_dir(&sub).unwrap();
        let text = "printf '%s|%s|%s\\n' \"$0\" \"$#\" \"$(pwd -P)\"\ntr a-z A-Z\n";
        let path = write_script(&sub, "up.sh", text);
        let script = script_at(&path, Some("/bin/sh"));
        let (out, status) = run(spawn_retrying(&script, &[]), b"hello\nworld");
        let cwd = sub.canonicalize().unwrap();
        assert_eq!(
            out,
            format!("{}|0|{}\nHELLO\nWORLD", path.display(), cwd.display())
        );
        assert!(status.success());
    }

    #[test]
    fn spawn_executes_a_script_without_interpreter() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_script(dir.path(), "x.cgi", "#!/bin/sh\necho \"$0 $#\"\nexit 3\n");
        let (out, status) = run(spawn_retrying(&script_at(&path, None), &[]), b"");
        assert_eq!(out, format!("{} 0\n", path.display()));
        assert_eq!(status.code(), Some(3));
    }

    #[test]
    fn spawn_finds_a_bare_interpreter_in_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_script(dir.path(), "a.sh", "echo ok\n");
        let (out, status) = run(spawn_retrying(&script_at(&path, Some("sh")), &[]), b"");
        assert_eq!((out.as_str(), status.success()), ("ok\n", true));
    }

    #[test]
    fn spawn_fails_for_a_missing_program() {
        let dir = tempfile::tempdir().unwrap();
        let script = script_at(&dir.path().join("none.cgi"), None);
        let err = spawn(&script, &[]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn the_child_gets_exactly_its_environment() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_script(dir.path(), "env.sh", "cat /proc/$$/environ\n");
        let script = script_at(&path, Some("/bin/sh"));
        let raw = b"GET /cgi-bin/env.py?q HTTP/1.1\r\nHost: h\r\nX-A: 1\r\n\r\n";
        let env = env_of(raw, &script, "127.0.0.1:5000", None);
        let (out, status) = run(spawn_retrying(&script, &env), b"");
        assert!(status.success());
        let got: BTreeMap<&str, &str> = out
            .split('\0')
            .filter(|kv| !kv.is_empty())
            .map(|kv| kv.split_once('=').unwrap())
            .collect();
        let mut expected: BTreeMap<&str, &str> =
            env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let path_var = std::env::var("PATH").unwrap_or(DEFAULT_PATH.into());
        expected.insert("PATH", &path_var);
        assert_eq!(got, expected);
        // The test process has variables of its own (cargo sets some); none
        // of them but PATH may reach the script.
        let leaked: Vec<String> = std::env::vars_os()
            .filter_map(|(k, _)| k.into_string().ok())
            .filter(|k| k != "PATH" && got.contains_key(k.as_str()))
            .collect();
        assert!(std::env::vars_os().count() > 1);
        assert_eq!(leaked, Vec::<String>::new());
    }

    #[test]
    fn the_child_starts_clean() {
        let dir = tempfile::tempdir().unwrap();
        // A descriptor without close-on-exec, as one inherited from the
        // server's parent would be; far above what sh uses for itself.
        // SAFETY: duplicating stderr; the copy is closed below.
        let stray = unsafe { libc::fcntl(2, libc::F_DUPFD, 200) };
        assert!(stray >= 200);
        // What the server does at startup.
        cloexec_inherited_fds();
        let text = format!(
            "while read -r k v; do case $k in SigIgn:|SigBlk:) echo \"$k $v\";; esac; done < /proc/$$/status\n\
             if [ -e /proc/$$/fd/{stray} ]; then echo leaked; else echo closed; fi\n"
        );
        let path = write_script(dir.path(), "s.sh", &text);
        let cgi = spawn_retrying(&script_at(&path, Some("/bin/sh")), &[]);
        // SAFETY: closing the descriptor this test opened.
        unsafe { libc::close(stray) };
        for fd in [cgi.stdin.as_raw_fd(), cgi.stdout.as_raw_fd()] {
            // SAFETY: F_GETFL on an open descriptor, no pointer.
            let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
            assert_ne!(flags & libc::O_NONBLOCK, 0);
        }
        let pid = libc::pid_t::try_from(cgi.child.id()).unwrap();
        // SAFETY: getpgid takes no pointer; the child is not reaped yet.
        assert_eq!(unsafe { libc::getpgid(pid) }, pid);
        let (out, status) = run(cgi, b"");
        assert!(status.success());
        let field = |key: &str| {
            let line = out.lines().find_map(|l| l.strip_prefix(key)).unwrap();
            u64::from_str_radix(line.trim(), 16).unwrap()
        };
        let sigpipe = 1 << (libc::SIGPIPE - 1);
        assert_eq!(field("SigIgn:") & sigpipe, 0, "SIGPIPE ignored");
        assert_eq!(field("SigBlk:"), 0, "signals blocked");
        assert_eq!(out.lines().last(), Some("closed"));
    }

    #[test]
    fn kill_ends_the_whole_group() {
        let dir = tempfile::tempdir().unwrap();
        // The grandchild keeps stdout open: EOF comes only if it dies too.
        let path = write_script(dir.path(), "k.sh", "sleep 30 &\necho started\nwait\n");
        let deadline = Instant::now() + DEADLINE;
        let CgiChild {
            mut child,
            stdin,
            mut stdout,
        } = spawn_retrying(&script_at(&path, Some("/bin/sh")), &[]);
        drop(stdin);
        let started = read_until(&mut stdout, deadline, |d| d.ends_with(b"\n"));
        assert_eq!(started, b"started\n");
        kill(&mut child);
        assert_eq!(read_until(&mut stdout, deadline, |_| false), b"");
        let status = reap(&mut child, deadline);
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(libc::SIGKILL)
        );
        kill(&mut child); // already gone: ESRCH is ignored
    }

    #[test]
    fn working_dir_is_the_nearest_existing_directory() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("a");
        fs::create_dir(&sub).unwrap();
        let cases = [
            (sub.join("x.py"), sub.clone()),
            (sub.join("no/deeper/x.py"), sub.clone()),
            (dir.path().join("gone/x.py"), dir.path().to_path_buf()),
        ];
        for (script, expected) in cases {
            assert_eq!(working_dir(&script), expected, "{}", script.display());
        }
        assert_eq!(working_dir(Path::new("/")), Path::new("/"));
    }

    type HeadResult = Result<Option<(CgiHead, usize)>, CgiHeadError>;

    fn head(
        status: u16,
        status_given: bool,
        headers: &[(&str, &str)],
        location: Option<&str>,
        content_length: Option<u64>,
    ) -> CgiHead {
        CgiHead {
            status,
            status_given,
            headers: pairs(headers),
            location: location.map(str::to_string),
            content_length,
        }
    }

    fn ok(head: CgiHead, len: usize) -> HeadResult {
        Ok(Some((head, len)))
    }

    fn head_cases() -> Vec<(Vec<u8>, HeadResult)> {
        use CgiHeadError::*;
        let ct = ("Content-Type", "text/html");
        let mut cases: Vec<(&[u8], HeadResult)> = vec![
            (b"Content-Type: text/html\r\n\r\nbody", ok(head(200, false, &[ct], None, None), 27)),
            (b"Content-Type: text/html\n\nbody", ok(head(200, false, &[ct], None, None), 25)),
            (b"Content-Type: text/html\r\n\nx", ok(head(200, false, &[ct], None, None), 26)),
            (
                b"Status: 404 Not Found\r\nContent-Type: text/html\r\n\r\n",
                ok(head(404, true, &[ct], None, None), 50),
            ),
            (b"status:404\ncontent-type:a/b\n\n", ok(head(404, true, &[("content-type", "a/b")], None, None), 29)),
            (b"Status: 599\nContent-Type: text/html\n\n", ok(head(599, true, &[ct], None, None), 37)),
            (
                b"Location: http://example.com/x\r\n\r\n",
                ok(head(302, false, &[("Location", "http://example.com/x")], Some("http://example.com/x"), None), 34),
            ),
            (
                b"Location: /other?q=1\n\n",
                ok(head(302, false, &[("Location", "/other?q=1")], Some("/other?q=1"), None), 22),
            ),
            (
                b"Status: 301 Moved\nLocation: /new\n\n",
                ok(head(301, true, &[("Location", "/new")], Some("/new"), None), 34),
            ),
            (
                b"Content-Type: a/b\nContent-Length: 5\n\nhello",
                ok(head(200, false, &[("Content-Type", "a/b")], None, Some(5)), 37),
            ),
            (
                b"Content-Type: a/b\nConnection: close\nTransfer-Encoding: chunked\n\
                  Keep-Alive: 5\nServer: evil\nDate: x\nX-Ok: 1\nSet-Cookie: a=1\nSet-Cookie: b=2\n\n",
                ok(
                    head(
                        200,
                        false,
                        &[("Content-Type", "a/b"), ("X-Ok", "1"), ("Set-Cookie", "a=1"), ("Set-Cookie", "b=2")],
                        None,
                        None,
                    ),
                    139,
                ),
            ),
            (
                b"Content-Type:\ttext/html  \nX-Empty:\nX-Utf8: \xc3\xa9 t\n\n",
                ok(head(200, false, &[ct, ("X-Empty", ""), ("X-Utf8", "\u{e9} t")], None, None), 49),
            ),
            (b"Status: 204\n\n", ok(head(204, true, &[], None, None), 13)),
            (b"Status: 304\r\n\r\n", ok(head(304, true, &[], None, None), 15)),
            (b"Content-Length: 0\n\n", ok(head(200, false, &[], None, Some(0)), 19)),
            (b"", Ok(None)),
            (b"Content-Type: a/b\r\n", Ok(None)),
            (b"Content-Type: a/b\r\n\r", Ok(None)),
            (b"\n", Err(NoContentType)),
            (b"\r\n", Err(NoContentType)),
            (b"Status: 404\n\n", Err(NoContentType)),
            (b"X-Only: 1\n\nbody", Err(NoContentType)),
            (b"Status: 99\nContent-Type: a/b\n\n", Err(BadStatus)),
            (b"Status: 100 Continue\nContent-Type: a/b\n\n", Err(BadStatus)),
            (b"Status: 600\nContent-Type: a/b\n\n", Err(BadStatus)),
            (b"Status: 20x\nContent-Type: a/b\n\n", Err(BadStatus)),
            (b"Status: 2000\nContent-Type: a/b\n\n", Err(BadStatus)),
            (b"Status: 200OK\nContent-Type: a/b\n\n", Err(BadStatus)),
            (b"Status: 200\tOK\nContent-Type: a/b\n\n", Err(BadStatus)),
            (b"Status:\nContent-Type: a/b\n\n", Err(BadStatus)),
            (b"Status: +20\nContent-Type: a/b\n\n", Err(BadStatus)),
            (b"HTTP/1.1 200 OK\r\nContent-Type: a/b\r\n\r\n", Err(NoColon)),
            (b"<html><body>oops</body></html>\n", Err(NoColon)),
            (b"Content-Type: a/b\n folded\n\n", Err(ObsFold)),
            (b"\tX: 1\n\n", Err(ObsFold)),
            (b"Bad Name: x\n\n", Err(BadName)),
            (b"Name : x\n\n", Err(BadName)),
            (b": x\n\n", Err(BadName)),
            (b"X(y): 1\n\n", Err(BadName)),
            (b"\xc3\xa9: 1\n\n", Err(BadName)),
            (b"X: a\x01b\n\n", Err(BadValue)),
            (b"X: a\rb\n\n", Err(BadValue)),
            (b"X: a\r\r\n\r\n", Err(BadValue)),
            (b"X: a\0b\n\n", Err(BadValue)),
            (b"X: a\x7f\n\n", Err(BadValue)),
            (b"X: \xff\n\n", Err(BadValue)),
            (b"Location:\n\n", Err(BadValue)),
            (b"Content-Type: a/b\nContent-Length: -1\n\n", Err(BadContentLength)),
            (b"Content-Type: a/b\nContent-Length: 5x\n\n", Err(BadContentLength)),
            (b"Content-Type: a/b\nContent-Length:\n\n", Err(BadContentLength)),
            (b"Content-Type: a/b\nContent-Length: 1, 1\n\n", Err(BadContentLength)),
            (b"Content-Type: a/b\nContent-Length: 99999999999999999999\n\n", Err(BadContentLength)),
            (b"Status: 200\nStatus: 200\nContent-Type: a/b\n\n", Err(Duplicate)),
            (b"Location: /a\nLocation: /b\n\n", Err(Duplicate)),
            (b"Content-Type: a/b\ncontent-type: a/b\n\n", Err(Duplicate)),
            (b"Content-Type: a/b\nContent-Length: 1\nContent-Length: 1\n\n", Err(Duplicate)),
        ];
        let mut owned: Vec<(Vec<u8>, HeadResult)> = cases
            .drain(..)
            .map(|(input, expected)| (input.to_vec(), expected))
            .collect();
        // The cap: a block of exactly MAX_HEAD bytes passes, one more fails.
        let fill = |len: usize| {
            let mut block = b"Content-Type: a/b\nX: ".to_vec();
            block.resize(len - 2, b'a');
            block.extend_from_slice(b"\n\n");
            block
        };
        let value = "a".repeat(MAX_HEAD - 23);
        owned.push((
            fill(MAX_HEAD),
            ok(
                head(
                    200,
                    false,
                    &[("Content-Type", "a/b"), ("X", &value)],
                    None,
                    None,
                ),
                MAX_HEAD,
            ),
        ));
        owned.push((fill(MAX_HEAD + 1), Err(TooLarge)));
        owned.push((vec![b'a'; MAX_HEAD], Err(TooLarge)));
        owned
    }

    #[test]
    fn parse_head_table() {
        for (input, expected) in head_cases() {
            assert_eq!(
                parse_head(&input),
                expected,
                "{:?}",
                String::from_utf8_lossy(&input)
            );
        }
    }

    /// Every prefix of a case is "read more" or already the final answer,
    /// and once the block is complete it is exactly the final answer.
    #[test]
    fn parse_head_at_every_split() {
        for (input, expected) in head_cases() {
            for cut in 0..input.len() {
                let got = parse_head(&input[..cut]);
                let complete = matches!(&expected, Ok(Some((_, len))) if cut >= *len);
                if complete {
                    assert_eq!(got, expected, "cut {cut} of {input:?}");
                } else {
                    assert!(
                        got == Ok(None) || (got == expected && expected.is_err()),
                        "cut {cut} of {input:?}: {got:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn local_redirects() {
        let cases: &[(&[u8], bool)] = &[
            (b"Location: /other\n\n", true),
            (b"Location: /\n\n", true),
            (b"Location: //evil.example/x\n\n", false),
            (b"Location: http://example.com/\n\n", false),
            (b"Status: 302\nLocation: /other\n\n", false),
            (b"Content-Type: a/b\n\n", false),
        ];
        for (input, expected) in cases {
            let (head, _) = parse_head(input).unwrap().unwrap();
            assert_eq!(is_local_redirect(&head), *expected, "{input:?}");
        }
    }

    #[test]
    fn parse_head_never_panics_on_noise() {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..2000 {
            let len = usize::try_from(state % 64).unwrap();
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    b"ab:\r\n \t\x00\xff5S"[usize::try_from(state % 11).unwrap()]
                })
                .collect();
            let _ = parse_head(&bytes);
        }
    }
}
