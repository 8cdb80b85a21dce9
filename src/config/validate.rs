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
use super::scope::{At, Context, PathArg, Scope};

/// Directives that make a location answer by itself.
const ANSWERS: &[&str] = &["return", "proxy_pass"];
/// Directives that only matter when a location serves content.
const CONTENT: &[&str] = &["root", "alias", "index", "autoindex", "upload_store", "cgi"];

pub fn validate(main: &Scope, report: &mut Report) {
    if main.seen("server").is_none() {
        report.push(Diagnostic::file_error(
            main.at.file,
            "no \"server\" block: nothing to serve",
        ));
    }
    for server in main.blocks_of(Context::Server) {
        server_checks(server, report);
    }
    upstream_names(main, report);
    warn_paths(main, &mut Seen::default(), report);
}

fn server_checks(server: &Scope, report: &mut Report) {
    if server.seen("listen").is_none() {
        report.push(Diagnostic::error(
            server.at,
            "server has no \"listen\" directive",
        ));
    }
    let mut uris: HashMap<(&str, bool), Span> = HashMap::with_capacity(server.blocks.len());
    for location in server.blocks_of(Context::Location) {
        let Some(loc) = &location.location else {
            continue;
        };
        if let Some(first) = uris.insert((&loc.uri, loc.exact), loc.span) {
            let first = report.where_is(first, loc.span);
            let eq = if loc.exact { "= " } else { "" };
            report.push(Diagnostic::error(
                loc.span,
                format!("duplicate location \"{eq}{}\" (first at {first})", loc.uri),
            ));
        }
        conflicts(location, report);
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
                format!("duplicate upstream \"{}\" (first at {first})", name.value),
            ));
        }
        if upstream.seen("server").is_none() {
            report.push(Diagnostic::error(
                name.arg,
                format!("upstream \"{}\" has no servers", name.value),
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
                report.push(Diagnostic::warning(interpreter.span, problem.clone()));
            }
        }
    }
    for block in &scope.blocks {
        warn_paths(block, seen, report);
    }
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
    report.push(Diagnostic::warning(at.arg, problem));
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
