//! Configuration: files → diagnostics and a [`RoutingTable`].
//!
//! Steps of [`load`], in order:
//! 1. `include` + `grammar`: read each file (UTF-8, no NUL, size and depth
//!    caps), parse it with `grammar/webserv.pest` into a raw tree;
//! 2. `walk`: apply the one directive table (`directives`) to the tree,
//!    checking name, context, block, arity and duplicates, splicing
//!    `include`s in place, producing one `scope` per block;
//! 3. `validate`: per-block semantic checks and path warnings;
//! 4. `build`: merge defaults → top level → server → location into the
//!    routing table, with the checks that need the whole picture.
//!
//! A syntax error (or a file that is not text) stops after step 2: later
//! checks would only report its consequences. Otherwise every problem of
//! every step is reported together, sorted by file and position: a missing
//! include, or a block with a bad header (`location nos { ... }`), is one
//! error among the others, and the directives inside that block are still
//! checked. A block whose include failed skips only the checks for what is
//! absent (no `listen`, no `server`), which the missing file may have held.

mod build;
mod diag;
pub mod directives;
pub mod fmt;
mod grammar;
mod include;
mod lint;
mod readme;
mod scope;
#[cfg(test)]
mod tests;
pub mod tls;
mod validate;
mod values;
mod walk;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

pub use diag::{Diagnostic, FileId, Located, Report, Severity, SourceFile};
pub use readme::directive_reference;

use crate::routing::RoutingTable;

/// More diagnostics than this are cut (with a note): past that point they
/// are consequences, and rendering each costs a scan of its file.
const MAX_DIAGNOSTICS: usize = 100;

/// Parse, validate and build `path`. The table is `Some` exactly when the
/// report has no error (it may hold warnings).
pub fn load(path: &Path) -> (Option<RoutingTable>, Report) {
    let mut report = Report::default();
    let walked = walk::walk(path, &mut report);
    let table = match walked.main {
        Some(main) if !walked.failed => {
            validate::validate(&main, &mut report);
            Some(build::build(&main, &mut report))
        }
        _ => None,
    };
    report.apply_allows();
    report.sort();
    report.truncate(MAX_DIAGNOSTICS);
    let table = table.filter(|_| !report.has_errors());
    (table, report)
}

/// How `check` prints its findings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckFormat {
    /// Caret text on stderr, the summary on stdout.
    Text,
    /// One object per file and per line on stdout.
    Json,
    /// One SARIF 2.1.0 log for all files on stdout, for code-scanning tools.
    Sarif,
}

/// `webserv check [CONFIG...] [--format text|json|sarif] [--deny-warnings]`:
/// print, exit 0 or 1.
///
/// Text: diagnostics on stderr; then, for a valid file, the one-line summary
/// on stdout, else a count of problems on stderr. With `deny_warnings`, a
/// file with a warning fails like one with an error.
pub fn check_command(paths: &[PathBuf], format: CheckFormat, deny_warnings: bool) -> ExitCode {
    keep_freed_memory();
    let mut all_valid = true;
    let mut sarif = Vec::new();
    for path in paths {
        let (table, report) = load(path);
        let denied = deny_warnings && report.count(Severity::Warning) > 0;
        all_valid &= table.is_some() && !denied;
        match format {
            CheckFormat::Json => println!("{}", json_report(path, table.as_ref(), &report)),
            CheckFormat::Sarif => sarif.extend(report.located().iter().map(sarif_result)),
            CheckFormat::Text => {
                eprint!("{}", report.render_text());
                match &table {
                    Some(_) if denied => eprintln!(
                        "{}: failed: {} (--deny-warnings)",
                        path.display(),
                        counts(&report)
                    ),
                    Some(table) => println!("{}: ok: {}", path.display(), summary(table)),
                    None => eprintln!("{}: failed: {}", path.display(), counts(&report)),
                }
            }
        }
    }
    if format == CheckFormat::Sarif {
        println!("{:#}", sarif_log(sarif));
    }
    if all_valid {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// One SARIF `result`; its `ruleIndex` is filled in by [`sarif_log`].
fn sarif_result(d: &Located<'_>) -> serde_json::Value {
    let mut location = serde_json::json!({
        "physicalLocation": { "artifactLocation": { "uri": d.file } }
    });
    if let (Some(line), Some(column)) = (d.line, d.column) {
        location["physicalLocation"]["region"] =
            serde_json::json!({ "startLine": line, "startColumn": column });
    }
    let level = match d.severity {
        Severity::Error => "error",
        Severity::Warning => "warning",
    };
    serde_json::json!({
        "ruleId": d.name,
        "level": level,
        "message": { "text": d.message },
        "locations": [location],
    })
}

/// A SARIF 2.1.0 log: one run of the `webserv` tool whose rules are every
/// diagnostic name ([`diag::RULES`]), so a code-scanning tool knows each
/// rule before it first fires; each result points at its rule by index.
fn sarif_log(mut results: Vec<serde_json::Value>) -> serde_json::Value {
    for result in &mut results {
        let id = result["ruleId"].as_str().unwrap_or_default();
        if let Some(index) = diag::RULES.iter().position(|r| r.name == id) {
            result["ruleIndex"] = index.into();
        }
    }
    let rules: Vec<serde_json::Value> = diag::RULES
        .iter()
        .map(|rule| {
            let level = match rule.severity {
                Severity::Error => "error",
                Severity::Warning => "warning",
            };
            serde_json::json!({
                "id": rule.name,
                "name": rule.name,
                "shortDescription": { "text": rule.summary },
                "defaultConfiguration": { "level": level },
            })
        })
        .collect();
    serde_json::json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": { "driver": {
                "name": "webserv",
                "version": env!("CARGO_PKG_VERSION"),
                "rules": rules,
            } },
            "results": results,
        }],
    })
}

/// `webserv check` runs once and exits: let malloc keep what a load frees
/// (pest's token queue, the raw tree) and hand it out again for the routing
/// table, rather than return it to the kernel and fault fresh pages in. On
/// the 10,000-location bench file: 6,500 page faults become 4,400, about a
/// tenth of the run. The server keeps glibc's defaults: it lives long, and
/// memory it frees should go back.
fn keep_freed_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only adjusts malloc's thresholds; nothing else runs yet.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 64 << 20);
    }
}

fn json_report(path: &Path, table: Option<&RoutingTable>, report: &Report) -> serde_json::Value {
    let mut value = serde_json::json!({
        "config": path.display().to_string(),
        "diagnostics": report.located(),
        "valid": table.is_some(),
    });
    if let Some(table) = table {
        value["routing_table"] = serde_json::to_value(table).unwrap_or(serde_json::Value::Null);
    }
    value
}

/// `2 servers, 9 locations, listening on 127.0.0.1:8080, 127.0.0.1:8081`.
pub fn summary(table: &RoutingTable) -> String {
    let locations = table.servers.iter().map(|s| s.locations.len()).sum();
    let addrs: Vec<String> = table.sockets.iter().map(|s| s.addr.to_string()).collect();
    format!(
        "{}, {}, listening on {}",
        plural(table.servers.len(), "server"),
        plural(locations, "location"),
        addrs.join(", ")
    )
}

fn counts(report: &Report) -> String {
    format!(
        "{}, {}",
        plural(report.count(Severity::Error), "error"),
        plural(report.count(Severity::Warning), "warning")
    )
}

fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("1 {word}")
    } else {
        format!("{n} {word}s")
    }
}
