//! Diagnostics: plain data (file, byte range, severity, message) and their
//! two renderings, caret text and JSON.
//!
//! Positions are byte ranges into a [`SourceFile`]; lines and columns are
//! computed only when rendering. Columns count characters, 1-based. The echoed
//! source line shows each tab or other control character as one space, so the
//! caret stays under the token.

use std::ops::Range;
use std::path::Path;
use std::rc::Rc;

use serde::Serialize;

/// Index of a file in [`Report::sources`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FileId(pub usize);

/// A byte range in one source file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Span {
    pub file: FileId,
    pub start: usize,
    pub end: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

impl Severity {
    fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        }
    }
}

/// One diagnostic name, what it means and how severe it is: the SARIF
/// `rules` of `check --format sarif` list all of them, whether or not they
/// occurred. A test keeps this list and the names the code uses equal.
#[derive(Debug, Clone, Copy)]
pub struct Rule {
    pub name: &'static str,
    pub severity: Severity,
    pub summary: &'static str,
}

const fn rule(name: &'static str, severity: Severity, summary: &'static str) -> Rule {
    Rule {
        name,
        severity,
        summary,
    }
}

/// Every diagnostic name, errors first, each group alphabetical.
pub const RULES: &[Rule] = &[
    rule(
        "block-shape",
        Severity::Error,
        "a directive that needs a block has none, or one that takes none has one",
    ),
    rule(
        "certificate-expired",
        Severity::Error,
        "a certificate past its end date",
    ),
    rule(
        "conflicting-directives",
        Severity::Error,
        "directives that cannot stand together in one block",
    ),
    rule(
        "duplicate-default-server",
        Severity::Error,
        "two default_server on one address",
    ),
    rule(
        "duplicate-directive",
        Severity::Error,
        "a directive that may appear once, given twice",
    ),
    rule(
        "duplicate-listen",
        Severity::Error,
        "the same listen address twice in one server",
    ),
    rule(
        "duplicate-location",
        Severity::Error,
        "two locations with the same URI in one server",
    ),
    rule(
        "duplicate-server-name",
        Severity::Error,
        "two servers with the same server_name on one address",
    ),
    rule(
        "duplicate-upstream",
        Severity::Error,
        "two upstream blocks with the same name",
    ),
    rule(
        "empty-upstream",
        Severity::Error,
        "an upstream block without a server",
    ),
    rule(
        "include-refused",
        Severity::Error,
        "an include that cannot be followed (a cycle, a directory)",
    ),
    rule(
        "invalid-argument",
        Severity::Error,
        "an argument of the wrong form or out of range",
    ),
    rule(
        "log-file",
        Severity::Error,
        "a log file that cannot be opened",
    ),
    rule(
        "missing-include",
        Severity::Error,
        "an include that matches no file",
    ),
    rule("no-listen", Severity::Error, "a server without listen"),
    rule(
        "no-server",
        Severity::Error,
        "a configuration without a server block",
    ),
    rule(
        "not-text",
        Severity::Error,
        "a configuration file that is not UTF-8 text",
    ),
    rule(
        "proxy-pass-address",
        Severity::Error,
        "a proxy_pass host that does not resolve",
    ),
    rule(
        "syntax",
        Severity::Error,
        "text the grammar does not accept",
    ),
    rule(
        "tls-bad-certificate",
        Severity::Error,
        "a certificate file that holds no usable certificate",
    ),
    rule(
        "tls-bad-key",
        Severity::Error,
        "a key file that holds no usable private key",
    ),
    rule(
        "tls-key-mismatch",
        Severity::Error,
        "a private key that does not belong to its certificate",
    ),
    rule(
        "tls-missing-certificate",
        Severity::Error,
        "an ssl address whose server has no certificate",
    ),
    rule(
        "tls-pair",
        Severity::Error,
        "ssl_certificate without ssl_certificate_key, or the other way round",
    ),
    rule(
        "tls-setup",
        Severity::Error,
        "TLS settings the TLS library refuses",
    ),
    rule(
        "tls-unreadable",
        Severity::Error,
        "a certificate or key file that cannot be read",
    ),
    rule(
        "too-many-diagnostics",
        Severity::Error,
        "more problems than are shown",
    ),
    rule(
        "unknown-directive",
        Severity::Error,
        "a directive name webserv does not know",
    ),
    rule(
        "unknown-upstream",
        Severity::Error,
        "a name that is neither an upstream block nor a host",
    ),
    rule(
        "unreadable-file",
        Severity::Error,
        "a configuration file that cannot be read",
    ),
    rule(
        "wrong-arity",
        Severity::Error,
        "a wrong number of arguments",
    ),
    rule(
        "wrong-context",
        Severity::Error,
        "a directive where it is not allowed",
    ),
    rule(
        "alias-traversal",
        Severity::Warning,
        "a prefix location and its alias disagree about a trailing /",
    ),
    rule(
        "certificate-expiring",
        Severity::Warning,
        "a certificate that ends within 30 days",
    ),
    rule(
        "certificate-name",
        Severity::Warning,
        "a certificate that names none of its server's server_name values",
    ),
    rule(
        "cgi-interpreter",
        Severity::Warning,
        "a CGI interpreter that is not an executable file",
    ),
    rule(
        "delete-static",
        Severity::Warning,
        "DELETE allowed in a location without upload_store",
    ),
    rule(
        "error-page-loop",
        Severity::Warning,
        "an error page whose own location answers that error",
    ),
    rule(
        "error-page-override",
        Severity::Warning,
        "the same code in two error_page directives of one block",
    ),
    rule(
        "executable-uploads",
        Severity::Warning,
        "an upload_store that a location with a cgi extension serves",
    ),
    rule(
        "host-spoofing",
        Severity::Warning,
        "proxy_set_header Host $http_host",
    ),
    rule(
        "missing-error-page",
        Severity::Warning,
        "an error page that no location of its server can serve",
    ),
    rule(
        "missing-path",
        Severity::Warning,
        "a root, alias or upload_store that does not exist",
    ),
    rule(
        "server-name-port",
        Severity::Warning,
        "a server_name holding a port, a scheme or a /",
    ),
    rule(
        "unlimited-body",
        Severity::Warning,
        "client_max_body_size 0 where POST or PUT is allowed",
    ),
    rule(
        "unreachable-location",
        Severity::Warning,
        "a location that a server-level return hides",
    ),
    rule(
        "unreachable-server",
        Severity::Warning,
        "a server that no request can select",
    ),
];

/// One problem. `span` is `None` for problems with a whole file (unreadable,
/// no `server` block).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub severity: Severity,
    /// Stable, kebab-case: printed after the message (`[unknown-directive]`),
    /// the SARIF rule id, and what `# webserv: allow NAME` names.
    pub name: &'static str,
    pub file: FileId,
    pub span: Option<Range<usize>>,
    pub message: String,
}

impl Diagnostic {
    pub fn error(at: Span, name: &'static str, message: impl Into<String>) -> Self {
        Self::new(Severity::Error, at, name, message)
    }

    pub fn warning(at: Span, name: &'static str, message: impl Into<String>) -> Self {
        Self::new(Severity::Warning, at, name, message)
    }

    /// An error about a whole file.
    pub fn file_error(file: FileId, name: &'static str, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Error,
            name,
            file,
            span: None,
            message: message.into(),
        }
    }

    fn new(severity: Severity, at: Span, name: &'static str, message: impl Into<String>) -> Self {
        Diagnostic {
            severity,
            name,
            file: at.file,
            span: Some(at.start..at.end),
            message: message.into(),
        }
    }
}

/// A configuration file as read. `text` is empty when it could not be read;
/// invalid UTF-8 is replaced (the loader reports it) so rendering still works.
#[derive(Debug)]
pub struct SourceFile {
    /// The path as the user gave it; for an included file, the including
    /// file's shown directory joined with the path the `include` matched.
    pub display: String,
    /// Canonical directory of the file: the base of its relative paths
    /// (shared: every directive of the file borrows it while applied).
    pub dir: Rc<Path>,
    pub text: Rc<str>,
}

/// A diagnostic with its line and column resolved, as `--format json` shows it.
#[derive(Debug, Serialize)]
pub struct Located<'a> {
    pub file: &'a str,
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub severity: Severity,
    pub name: &'a str,
    pub message: &'a str,
}

/// Every diagnostic of one load, with the sources needed to render them.
#[derive(Debug, Default)]
pub struct Report {
    pub sources: Vec<SourceFile>,
    pub diagnostics: Vec<Diagnostic>,
}

impl Report {
    /// True when at least one diagnostic is an error.
    pub fn has_errors(&self) -> bool {
        self.count(Severity::Error) > 0
    }

    pub fn count(&self, severity: Severity) -> usize {
        self.diagnostics
            .iter()
            .filter(|d| d.severity == severity)
            .count()
    }

    pub fn push(&mut self, diagnostic: Diagnostic) {
        self.diagnostics.push(diagnostic);
    }

    /// Orders diagnostics by file (in load order), then position. Stable, so
    /// problems found at one position keep the order they were found in.
    pub fn sort(&mut self) {
        self.diagnostics
            .sort_by_key(|d| (d.file, d.span.as_ref().map(|s| s.start)));
    }

    /// Drops each warning that a `# webserv: allow NAME` comment silences:
    /// on the line where the warning points, or alone on the line before.
    /// Errors cannot be silenced: the server would refuse the file anyway.
    pub fn apply_allows(&mut self) {
        let sources = &self.sources;
        self.diagnostics
            .retain(|d| d.severity == Severity::Error || !allowed(sources, d));
    }

    /// Keeps the first `max` diagnostics, noting how many were dropped.
    pub fn truncate(&mut self, max: usize) {
        let total = self.diagnostics.len();
        if total > max {
            let dropped = total - max;
            let file = self.diagnostics[max].file;
            self.diagnostics.truncate(max);
            let severity = match self.has_errors() {
                true => Severity::Error,
                false => Severity::Warning,
            };
            self.diagnostics.push(Diagnostic {
                severity,
                name: "too-many-diagnostics",
                file,
                span: None,
                message: format!("{dropped} more problems not shown"),
            });
        }
    }

    /// Every diagnostic as `path:line:col: severity: message`, the source
    /// line and a caret under the span, in file order.
    pub fn render_text(&self) -> String {
        self.diagnostics
            .iter()
            .map(|d| self.render_one(d))
            .collect()
    }

    /// Every diagnostic with its line and column, for `--format json`.
    pub fn located(&self) -> Vec<Located<'_>> {
        self.diagnostics
            .iter()
            .map(|d| {
                let display = self.display(d.file);
                let pos = self.position(d);
                Located {
                    file: display,
                    line: pos.as_ref().map(|p| p.line),
                    column: pos.as_ref().map(|p| p.column),
                    severity: d.severity,
                    name: d.name,
                    message: &d.message,
                }
            })
            .collect()
    }

    /// `line N` when `span` is in the same file as `from`, else `path:N`:
    /// how a message refers to an earlier directive.
    pub fn where_is(&self, span: Span, from: Span) -> String {
        let line = self
            .sources
            .get(span.file.0)
            .map_or(0, |s| Position::find(&s.text, &(span.start..span.end)).line);
        if span.file == from.file {
            format!("line {line}")
        } else {
            format!("{}:{line}", self.display(span.file))
        }
    }

    fn display(&self, file: FileId) -> &str {
        self.sources.get(file.0).map_or("?", |s| s.display.as_str())
    }

    fn position(&self, d: &Diagnostic) -> Option<Position> {
        let text = &self.sources.get(d.file.0)?.text;
        d.span.as_ref().map(|span| Position::find(text, span))
    }

    fn render_one(&self, d: &Diagnostic) -> String {
        let display = self.display(d.file);
        let severity = d.severity.as_str();
        let Some(pos) = self.position(d) else {
            return format!("{display}: {severity}: {} [{}]\n", d.message, d.name);
        };
        let pad = " ".repeat(pos.column - 1);
        let carets = "^".repeat(pos.width);
        format!(
            "{display}:{}:{}: {severity}: {} [{}]\n{:>5} | {}\n{:>5} | {pad}{carets}\n",
            pos.line, pos.column, d.message, d.name, pos.line, pos.echo, ""
        )
    }
}

/// Whether a `# webserv: allow` comment silences `d` (see [`Report::apply_allows`]).
fn allowed(sources: &[SourceFile], d: &Diagnostic) -> bool {
    let (Some(span), Some(source)) = (&d.span, sources.get(d.file.0)) else {
        return false;
    };
    let text = &source.text;
    let start = floor_char_boundary(text, span.start);
    let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
    let line_end = text[start..].find('\n').map_or(text.len(), |i| start + i);
    if allows(&text[line_start..line_end], d.name) {
        return true;
    }
    let Some(prev_end) = line_start.checked_sub(1) else {
        return false;
    };
    let prev_start = text[..prev_end].rfind('\n').map_or(0, |i| i + 1);
    let prev = text[prev_start..prev_end].trim_start();
    prev.starts_with('#') && allows(prev, d.name)
}

/// Whether `line` holds `# webserv: allow A B,C` naming `name`.
fn allows(line: &str, name: &str) -> bool {
    const MARK: &str = "webserv: allow";
    line.match_indices(MARK).any(|(i, _)| {
        line[..i].trim_end().ends_with('#')
            && line[i + MARK.len()..]
                .split(|c: char| c.is_whitespace() || c == ',')
                .any(|word| word == name)
    })
}

/// Where a span starts, and what to echo under it.
#[derive(Debug, PartialEq, Eq)]
struct Position {
    line: usize,
    column: usize,
    /// The source line, control characters shown as spaces.
    echo: String,
    /// Caret count: the span's characters on its first line, at least 1.
    width: usize,
}

impl Position {
    fn find(text: &str, span: &Range<usize>) -> Position {
        let start = floor_char_boundary(text, span.start);
        let end = floor_char_boundary(text, span.end.max(start));
        let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
        let line_end = text[start..].find('\n').map_or(text.len(), |i| start + i);
        let line = text[..start].matches('\n').count() + 1;
        let column = text[line_start..start].chars().count() + 1;
        let echo = text[line_start..line_end]
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect::<String>()
            .trim_end()
            .to_string();
        let width = text[start..end.min(line_end).max(start)].chars().count();
        Position {
            line,
            column,
            echo,
            width: width.max(1),
        }
    }
}

fn floor_char_boundary(text: &str, mut i: usize) -> usize {
    i = i.min(text.len());
    while !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(text: &str, span: Range<usize>, message: &str) -> Report {
        Report {
            sources: vec![SourceFile {
                display: "conf.d/bad.conf".into(),
                dir: Path::new("/").into(),
                text: text.into(),
            }],
            diagnostics: vec![Diagnostic {
                severity: Severity::Error,
                name: "unknown-directive",
                file: FileId(0),
                span: Some(span),
                message: message.into(),
            }],
        }
    }

    #[test]
    fn renders_caret_under_token() {
        let text = "server {\n    lisen 8080;\n}\n";
        let r = report(text, 13..18, "unknown directive \"lisen\"");
        assert_eq!(
            r.render_text(),
            "conf.d/bad.conf:2:5: error: unknown directive \"lisen\" [unknown-directive]\n    2 |     lisen 8080;\n      |     ^^^^^\n"
        );
    }

    #[test]
    fn allow_comments() {
        let cases: &[(&str, bool)] = &[
            ("    x y; # webserv: allow some-name\n", true),
            ("    x y; # webserv: allow other, some-name\n", true),
            ("    # webserv: allow some-name\n    x y;\n", true),
            ("    # webserv: allow other\n    x y;\n", false),
            ("    z; # webserv: allow some-name\n    x y;\n", false),
            ("    x y; # webserv: allow some-names\n", false),
            ("    x \"webserv: allow some-name\";\n", false),
        ];
        for (text, silenced) in cases {
            let at = text.rfind("x ").expect("x");
            let d = Diagnostic {
                severity: Severity::Warning,
                name: "some-name",
                file: FileId(0),
                span: Some(at..at + 1),
                message: String::new(),
            };
            let mut r = report(text, 0..1, "e");
            r.diagnostics.push(d);
            r.apply_allows();
            assert_eq!(r.diagnostics.len() == 1, *silenced, "{text:?}");
        }
    }

    #[test]
    fn positions() {
        /// (text, span, (line, column, echo, caret width))
        type Case = (
            &'static str,
            Range<usize>,
            (usize, usize, &'static str, usize),
        );
        let cases: &[Case] = &[
            ("abc", 0..3, (1, 1, "abc", 3)),
            ("a\n\tb c", 3..4, (2, 2, " b c", 1)),
            ("é x", 3..4, (1, 3, "é x", 1)),
            ("x\n", 2..2, (2, 1, "", 1)),
            ("ab\ncd", 0..5, (1, 1, "ab", 2)),
            ("ab", 9..12, (1, 3, "ab", 1)),
        ];
        for (text, span, (line, column, echo, width)) in cases {
            let p = Position::find(text, span);
            assert_eq!(
                (p.line, p.column, p.echo.as_str(), p.width),
                (*line, *column, *echo, *width),
                "{text:?} {span:?}"
            );
        }
    }
}

/// [`RULES`] against the code: every name a diagnostic is made with is
/// listed (with the severity it is made with), and every listed name is
/// made somewhere. The names are read from the source of `config/`, as the
/// first string argument of each constructor.
#[cfg(test)]
mod rules_tests {
    use super::{Severity, RULES};
    use std::collections::BTreeMap;

    /// Constructor call → the severity it makes (`None`: either).
    const MAKERS: &[(&str, Option<Severity>)] = &[
        ("Diagnostic::error(", Some(Severity::Error)),
        ("Diagnostic::warning(", Some(Severity::Warning)),
        ("Diagnostic::file_error(", Some(Severity::Error)),
        ("self.fail(", Some(Severity::Error)),
        ("self.fail_known(", Some(Severity::Error)),
        ("warn(", Some(Severity::Warning)),
        ("name: \"", None),
    ];

    fn is_name(s: &str) -> bool {
        !s.is_empty()
            && s.split('-')
                .all(|w| !w.is_empty() && w.bytes().all(|b| b.is_ascii_lowercase()))
    }

    /// The first string literal of `call` (up to its `;`), if it is a name.
    fn first_name(call: &str) -> Option<&str> {
        let call = call.split(';').next()?;
        let start = call.find('"')? + 1;
        let len = call[start..].find('"')?;
        let literal = &call[start..start + len];
        is_name(literal).then_some(literal)
    }

    fn names_in_code() -> BTreeMap<String, Option<Severity>> {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src/config");
        let mut found = BTreeMap::new();
        for entry in std::fs::read_dir(dir).expect("src/config") {
            let path = entry.expect("entry").path();
            // The directive table's `name: "..."` are directive names.
            if path.file_name().is_some_and(|n| n == "directives.rs") {
                continue;
            }
            let text = std::fs::read_to_string(&path).expect("source");
            let code = text.split("#[cfg(test)]").next().unwrap_or_default();
            for (maker, severity) in MAKERS {
                for (at, _) in code.match_indices(maker) {
                    let from = if maker.ends_with('"') {
                        at + maker.len() - 1
                    } else {
                        at + maker.len()
                    };
                    if let Some(name) = first_name(&code[from..]) {
                        found.insert(name.to_string(), *severity);
                    }
                }
            }
        }
        found
    }

    #[test]
    fn every_name_is_a_rule_and_every_rule_is_used() {
        let code = names_in_code();
        for (name, severity) in &code {
            let rule = RULES.iter().find(|r| r.name == name);
            let rule = rule.unwrap_or_else(|| panic!("{name} is missing from RULES"));
            if let Some(severity) = severity {
                assert_eq!(rule.severity, *severity, "{name}");
            }
        }
        for rule in RULES {
            assert!(code.contains_key(rule.name), "{} is never used", rule.name);
            assert!(is_name(rule.name), "{}", rule.name);
        }
        let mut names: Vec<&str> = RULES.iter().map(|r| r.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), RULES.len(), "a name is listed twice");
    }
}
