//! Semantic checks on the scopes, before merging: what one block or the set
//! of blocks must not do (SPEC §2 "check rejects"), and warnings about paths
//! that do not exist and CGI interpreters that cannot run.
//!
//! Checks that need the merged result (listen addresses shared by servers,
//! upstream names, error page files) live in `build`.

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::diag::{Diagnostic, Report, Span};
use super::directives::unknown_method;
use super::scope::{At, Context, PathArg, Scope};

/// Directives that make a location answer by itself.
const ANSWERS: &[&str] = &["return", "proxy_pass"];
/// Directives that only matter when a location serves content.
const CONTENT: &[&str] = &["root", "alias", "index", "autoindex", "upload_store", "cgi"];

pub fn validate(main: &Scope, report: &mut Report) {
    if main.seen("server").is_none() && !main.incomplete {
        report.push(Diagnostic::file_error(
            main.at.file,
            "no-server",
            "no \"server\" block: nothing to serve",
        ));
    }
    method_tokens(main, report);
    for server in main.blocks_of(Context::Server) {
        method_tokens(server, report);
        server_checks(server, report);
    }
    upstream_names(main, report);
    warn_paths(main, &mut Seen::default(), report);
}

fn server_checks(server: &Scope, report: &mut Report) {
    if server.seen("listen").is_none() && !server.incomplete {
        report.push(Diagnostic::error(
            server.at,
            "no-listen",
            "server has no \"listen\" directive",
        ));
    }
    let mut uris: HashMap<(&str, bool), Span> = HashMap::with_capacity(server.blocks.len());
    for location in server.blocks_of(Context::Location) {
        conflicts(location, report);
        if location.seen("proxy_pass").is_none() {
            method_tokens(location, report);
        }
        // A location whose URI was refused (reported) has none to compare.
        let Some(loc) = &location.location else {
            continue;
        };
        if let Some(first) = uris.insert((&loc.uri, loc.exact), loc.span) {
            let first = report.where_is(first, loc.span);
            let eq = if loc.exact { "= " } else { "" };
            report.push(Diagnostic::error(
                loc.span,
                "duplicate-location",
                format!("duplicate location \"{eq}{}\" (first at {first})", loc.uri),
            ));
        }
    }
}

/// A `methods` token other than GET HEAD POST PUT DELETE outside a location
/// with `proxy_pass`: nothing there could answer it.
fn method_tokens(scope: &Scope, report: &mut Report) {
    for (token, span) in &scope.settings.other_methods {
        report.push(Diagnostic::error(
            *span,
            "invalid-argument",
            unknown_method(token),
        ));
    }
}

/// `root` with `alias`, and `return`/`proxy_pass` with each other or with a
/// content directive: the error points at whichever came later.
fn conflicts(location: &Scope, report: &mut Report) {
    let answer_vs_content = ANSWERS
        .iter()
        .flat_map(|answer| CONTENT.iter().map(move |content| (*answer, *content)));
    let pairs = [("root", "alias"), ("return", "proxy_pass")]
        .into_iter()
        .chain(answer_vs_content);
    for (a, b) in pairs {
        let (Some(first_a), Some(first_b)) = (location.seen(a), location.seen(b)) else {
            continue;
        };
        let ((_, earlier, earlier_at), (_, later, later_at)) = if first_a.0 < first_b.0 {
            ((first_a.0, a, first_a.1), (first_b.0, b, first_b.1))
        } else {
            ((first_b.0, b, first_b.1), (first_a.0, a, first_a.1))
        };
        let line = report.where_is(earlier_at, later_at);
        report.push(Diagnostic::error(
            later_at,
            "conflicting-directives",
            format!("\"{later}\" cannot be used with \"{earlier}\" ({line}) in one location"),
        ));
    }
}

fn upstream_names(main: &Scope, report: &mut Report) {
    let mut names: HashMap<&str, Span> = HashMap::new();
    for upstream in main.blocks_of(Context::Upstream) {
        let Some(name) = &upstream.upstream_name else {
            continue;
        };
        if let Some(first) = names.insert(&name.value, name.arg) {
            let first = report.where_is(first, name.arg);
            report.push(Diagnostic::error(
                name.arg,
                "duplicate-upstream",
                format!("duplicate upstream \"{}\" (first at {first})", name.value),
            ));
        }
        policies(upstream, report);
        if upstream.seen("server").is_none() && !upstream.incomplete {
            report.push(Diagnostic::error(
                name.arg,
                "empty-upstream",
                format!("upstream \"{}\" has no servers", name.value),
            ));
        }
    }
}

/// One policy per `upstream`, and no `backup` server with `ip_hash` (the
/// hash, not the health of the others, decides).
fn policies(upstream: &Scope, report: &mut Report) {
    if let (Some(a), Some(b)) = (upstream.seen("least_conn"), upstream.seen("ip_hash")) {
        let ((_, first), (_, later)) = if a.0 < b.0 { (a, b) } else { (b, a) };
        let line = report.where_is(first, later);
        report.push(Diagnostic::error(
            later,
            "conflicting-directives",
            format!("an upstream has one balancing policy (\"least_conn\" or \"ip_hash\"); the other is at {line}"),
        ));
    }
    if upstream.seen("ip_hash").is_some() {
        for member in upstream.members.iter().filter(|m| m.value.backup) {
            report.push(Diagnostic::error(
                member.arg,
                "conflicting-directives",
                "a \"backup\" server cannot be used with \"ip_hash\"",
            ));
        }
    }
}

/// What the file system said about each path and interpreter checked so
/// far: thousands of locations often name the same few, and a `stat` (or a
/// PATH search) per location adds up.
#[derive(Default)]
struct Seen {
    /// Path → `None` if missing, else whether it is a directory.
    paths: HashMap<PathBuf, Option<bool>>,
    interpreters: HashMap<PathBuf, Option<String>>,
}

/// Warnings about `root`, `alias` and `upload_store` paths that do not
/// exist, and CGI interpreters that cannot run, in every block.
fn warn_paths(scope: &Scope, seen: &mut Seen, report: &mut Report) {
    let s = &scope.settings;
    for (name, arg, must_be_dir) in [
        ("root", &s.root, true),
        ("alias", &s.alias, false),
        ("upload_store", &s.upload_store, true),
    ] {
        if let Some(at) = arg {
            let path = &at.value.path;
            let kind = match seen.paths.get(path) {
                Some(&kind) => kind,
                None => {
                    let kind = path.metadata().ok().map(|m| m.is_dir());
                    seen.paths.insert(path.clone(), kind);
                    kind
                }
            };
            warn_missing(name, at, kind, must_be_dir, report);
        }
    }
    for cgi in s.cgi.iter().flatten() {
        if let Some(interpreter) = &cgi.value.interpreter {
            if !seen.interpreters.contains_key(&interpreter.path) {
                let problem = interpreter_problem(interpreter);
                seen.interpreters.insert(interpreter.path.clone(), problem);
            }
            if let Some(problem) = &seen.interpreters[&interpreter.path] {
                report.push(Diagnostic::warning(
                    interpreter.span,
                    "cgi-interpreter",
                    problem.clone(),
                ));
            }
        }
    }
    for (directive, log) in &scope.log_files {
        if let Some(problem) = log_file_problem(&log.value.path) {
            report.push(Diagnostic::error(
                log.arg,
                "log-file",
                format!(
                    "cannot open {directive} \"{}\": {problem}",
                    log.value.written
                ),
            ));
        }
    }
    for block in &scope.blocks {
        warn_paths(block, seen, report);
    }
}

/// Why the server could not open `path` to append to it, if it could not,
/// found without creating the file (`nginx -t` opens it; `check` should
/// leave no trace): the file is writable, or it does not exist and its
/// directory is writable.
fn log_file_problem(path: &Path) -> Option<String> {
    match path.metadata() {
        Ok(m) if m.is_dir() => Some("it is a directory".to_string()),
        Ok(_) => (!accessible(path, libc::W_OK)).then(|| "it is not writable".to_string()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let dir = match path.parent() {
                Some(p) if !p.as_os_str().is_empty() => p,
                _ => Path::new("."),
            };
            // A file on the way would have made `metadata` fail with
            // ENOTDIR above: `dir` is a directory when it exists.
            match dir.metadata() {
                Ok(_) if !accessible(dir, libc::W_OK | libc::X_OK) => {
                    Some("its directory is not writable".to_string())
                }
                Ok(_) => None,
                Err(_) => Some("its directory does not exist".to_string()),
            }
        }
        Err(e) => Some(e.to_string()),
    }
}

/// access(2): whether this process may use `path` in `mode`.
fn accessible(path: &Path, mode: libc::c_int) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c_path) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: `c_path` is a valid NUL-terminated string that outlives the call.
    unsafe { libc::access(c_path.as_ptr(), mode) == 0 }
}

/// `is_dir`: `None` when the path does not exist.
fn warn_missing(
    name: &str,
    at: &At<PathArg>,
    is_dir: Option<bool>,
    must_be_dir: bool,
    report: &mut Report,
) {
    let written = &at.value.written;
    let problem = match is_dir {
        None => format!("{name} \"{written}\" does not exist"),
        Some(false) if must_be_dir => format!("{name} \"{written}\" is not a directory"),
        Some(_) => return,
    };
    report.push(Diagnostic::warning(at.arg, "missing-path", problem));
}

/// Why `interpreter` cannot run, if it cannot: a name without `/` is looked
/// up in PATH, as the server will when it runs it.
fn interpreter_problem(interpreter: &PathArg) -> Option<String> {
    let written = &interpreter.written;
    if written.contains('/') {
        return match is_executable(&interpreter.path) {
            true => None,
            false if interpreter.path.exists() => {
                Some(format!("CGI interpreter \"{written}\" is not executable"))
            }
            false => Some(format!("CGI interpreter \"{written}\" does not exist")),
        };
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&path).any(|dir| is_executable(&dir.join(written)));
    (!found).then(|| format!("CGI interpreter \"{written}\" not found in PATH"))
}

fn is_executable(path: &Path) -> bool {
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_files_are_checked_without_being_created() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path();
        std::fs::write(dir.join("old.log"), "").expect("write");
        let cases: &[(&str, Option<&str>)] = &[
            ("old.log", None),
            ("new.log", None),
            ("", Some("it is a directory")),
            ("no-dir/new.log", Some("its directory does not exist")),
            ("old.log/x.log", Some("Not a directory (os error 20)")),
        ];
        for (name, expected) in cases {
            let got = log_file_problem(&dir.join(name));
            assert_eq!(got.as_deref(), *expected, "{name:?}");
        }
        assert!(!dir.join("new.log").exists(), "check created a log file");
    }
}
