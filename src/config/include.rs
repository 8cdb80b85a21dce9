//! Reading configuration files: bytes → checked text → raw tree, and
//! `include PATTERN;` resolution.
//!
//! A pattern is relative to the directory of the file that names it. One
//! with wildcards (`*`, `?`, `[`) may match nothing (as nginx), and matches
//! a dot file only where the pattern writes the dot (as glob(3)); a plain
//! path must exist. Matches are spliced in sorted order. The files being
//! read form a stack: meeting one of them again is a cycle. Depth and the number of
//! files are capped so a hostile set of includes cannot explode.

use std::fs;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use super::diag::{Diagnostic, FileId, Report, SourceFile, Span};
use super::grammar::{self, RawDirective, Token};

const MAX_INCLUDE_DEPTH: usize = 16;
const MAX_FILES: usize = 256;

/// The text of a file being read, shared with the report that renders
/// diagnostics in it.
pub struct Source {
    pub file: FileId,
    pub text: Rc<str>,
}

/// A file an `include` matched.
pub struct Match {
    pub path: PathBuf,
    pub display: String,
}

/// The files being read, innermost last.
#[derive(Default)]
pub struct Includes {
    stack: Vec<PathBuf>,
    files: usize,
    /// Set once any file had a syntax error (or bytes that cannot be text),
    /// or the limits on includes were hit: later checks would only report
    /// consequences. An include that names nothing, or a file that cannot
    /// be read, does not set it: its directive is reported, and so is every
    /// other problem (SPEC §1).
    pub failed: bool,
}

impl Includes {
    /// Reads the top-level file; the caller [`parse`](Self::parse)s it,
    /// then must [`leave`](Self::leave) it.
    pub fn open_root(&mut self, path: &Path, report: &mut Report) -> Option<Source> {
        let display = path.display().to_string();
        let file = register(report, path, display);
        let source = self.read(path, file, None, report)?;
        self.stack.push(canonical(path));
        Some(source)
    }

    /// The files `token` (an include pattern in `file`) names, in order;
    /// `None` when it names none that it must (reported).
    pub fn resolve(&mut self, token: &Token, report: &mut Report) -> Option<Vec<Match>> {
        let source = &report.sources[token.span.file.0];
        let dir = source.dir.clone();
        let shown_dir = Path::new(&source.display)
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let written: &str = &token.text;
        let paths = if written.contains(['*', '?', '[']) {
            glob_sorted(&dir, written)
                .map_err(|e| format!("invalid include pattern \"{written}\": {e}"))
        } else {
            let path = dir.join(written);
            match path.metadata() {
                Ok(m) if m.is_file() => Ok(vec![path]),
                Ok(m) if m.is_dir() => Err(format!(
                    "included path \"{written}\" is a directory (to include its files, use a pattern such as \"{}/*.conf\")",
                    written.trim_end_matches('/')
                )),
                Ok(_) => Err(format!("included path \"{written}\" is not a regular file")),
                Err(_) => Err(format!("included file \"{written}\" not found")),
            }
        };
        match paths {
            Ok(paths) => Some(
                paths
                    .into_iter()
                    .map(|path| {
                        let shown = path.strip_prefix(&dir).unwrap_or(&path);
                        let display = shown_dir.join(shown).display().to_string();
                        Match { path, display }
                    })
                    .collect(),
            ),
            Err(message) => {
                report.push(Diagnostic::error(token.span, "missing-include", message));
                None
            }
        }
    }

    /// Reads an included file, unless that would loop or exceed the limits.
    /// On success the caller parses and walks it, then calls
    /// [`leave`](Self::leave).
    pub fn enter(&mut self, m: &Match, at: Span, report: &mut Report) -> Option<Source> {
        let canonical = canonical(&m.path);
        // A cycle is refused and reported; the file is being read anyway.
        // The limits stop the load: past them, a hostile set of files could
        // only make more of the same.
        let (refusal, limit) = if self.stack.contains(&canonical) {
            let message = format!("include cycle: \"{}\" is already being read", m.display);
            (Some(message), false)
        } else if self.stack.len() >= MAX_INCLUDE_DEPTH {
            let message = format!("includes nested more than {MAX_INCLUDE_DEPTH} deep");
            (Some(message), true)
        } else if self.files >= MAX_FILES {
            (Some(format!("more than {MAX_FILES} files included")), true)
        } else {
            (None, false)
        };
        if let Some(message) = refusal {
            self.failed |= limit;
            report.push(Diagnostic::error(at, "include-refused", message));
            return None;
        }
        let file = register(report, &m.path, m.display.clone());
        let source = self.read(&m.path, file, Some(at), report)?;
        self.stack.push(canonical);
        Some(source)
    }

    pub fn leave(&mut self) {
        self.stack.pop();
    }

    /// The raw tree of `source`, which borrows its text; `None` after a
    /// syntax error (reported).
    pub fn parse<'t>(
        &mut self,
        source: &'t Source,
        report: &mut Report,
    ) -> Option<Vec<RawDirective<'t>>> {
        grammar::parse(&source.text, source.file)
            .map_err(|diagnostics| self.fail(diagnostics, report))
            .ok()
    }

    /// Reads and decodes `path`, already registered as `file`.
    fn read(
        &mut self,
        path: &Path,
        file: FileId,
        at: Option<Span>,
        report: &mut Report,
    ) -> Option<Source> {
        self.files += 1;
        let bytes = match fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) => {
                report.push(read_error(file, at, path, &e));
                return None;
            }
        };
        decode(bytes, file, report)
            .map_err(|diagnostics| self.fail(diagnostics, report))
            .ok()?;
        Some(Source {
            file,
            text: Rc::clone(&report.sources[file.0].text),
        })
    }

    fn fail(&mut self, diagnostics: Vec<Diagnostic>, report: &mut Report) {
        self.failed = true;
        report.diagnostics.extend(diagnostics);
    }
}

fn register(report: &mut Report, path: &Path, display: String) -> FileId {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    report.sources.push(SourceFile {
        display,
        dir: canonical(parent).into(),
        text: "".into(),
    });
    FileId(report.sources.len() - 1)
}

fn canonical(path: &Path) -> PathBuf {
    fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}

fn read_error(file: FileId, at: Option<Span>, path: &Path, e: &std::io::Error) -> Diagnostic {
    match at {
        Some(span) => Diagnostic::error(
            span,
            "unreadable-file",
            format!("cannot read included file \"{}\": {e}", path.display()),
        ),
        None => Diagnostic::file_error(
            file,
            "unreadable-file",
            format!("cannot read configuration file: {e}"),
        ),
    }
}

/// Stores the text of `file`; invalid UTF-8 and NUL bytes are errors (the
/// text is kept, lossily, so the error can be shown in context).
fn decode(bytes: Vec<u8>, file: FileId, report: &mut Report) -> Result<(), Vec<Diagnostic>> {
    let at = |pos: usize| Span {
        file,
        start: pos,
        end: pos + 1,
    };
    let (text, problem) = match String::from_utf8(bytes) {
        Ok(text) => {
            let nul = text.find('\0').map(|pos| {
                Diagnostic::error(at(pos), "not-text", "NUL byte in configuration file")
            });
            (text, nul)
        }
        Err(e) => {
            let pos = e.utf8_error().valid_up_to();
            let text = String::from_utf8_lossy(e.as_bytes()).into_owned();
            (
                text,
                Some(Diagnostic::error(
                    at(pos),
                    "not-text",
                    "invalid UTF-8 in configuration file",
                )),
            )
        }
    };
    report.sources[file.0].text = text.into();
    problem.map_or(Ok(()), |d| Err(vec![d]))
}

fn glob_sorted(dir: &Path, pattern: &str) -> Result<Vec<PathBuf>, glob::PatternError> {
    let full = if Path::new(pattern).is_absolute() {
        pattern.to_string()
    } else {
        format!(
            "{}/{pattern}",
            glob::Pattern::escape(&dir.to_string_lossy())
        )
    };
    // As glob(3) and nginx: a wildcard does not match a leading dot, so
    // `sites/*.conf` skips `sites/.disabled.conf` (`sites/.*.conf` takes it).
    // Filtered after the walk: the glob crate's own `require_literal_leading_dot`
    // (0.3.4) also drops the dot files a pattern names with a literal dot.
    let strict = glob::MatchOptions {
        require_literal_separator: true,
        require_literal_leading_dot: true,
        ..glob::MatchOptions::new()
    };
    let compiled = glob::Pattern::new(&full)?;
    let mut paths: Vec<PathBuf> = glob::glob(&full)?
        .filter_map(Result::ok)
        .filter(|p| compiled.matches_path_with(p, strict))
        .filter(|p| p.is_file())
        .collect();
    paths.sort();
    Ok(paths)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::diag::Severity;

    fn token<'a>(report: &mut Report, dir: &Path, display: &str, text: &'a str) -> Token<'a> {
        report.sources.push(SourceFile {
            display: display.into(),
            dir: dir.into(),
            text: "".into(),
        });
        let file = FileId(report.sources.len() - 1);
        Token {
            text: text.into(),
            span: Span {
                file,
                start: 0,
                end: 0,
            },
        }
    }

    #[test]
    fn resolves_sorted_relative_to_the_file() {
        let tmp = tempfile::tempdir().expect("tempdir");
        fs::create_dir(tmp.path().join("sites")).expect("mkdir");
        for name in ["b.conf", "a.conf", "c.txt", ".hidden.conf"] {
            fs::write(tmp.path().join("sites").join(name), "").expect("write");
        }
        let dir = canonical(tmp.path());
        let cases: &[(&str, &[&str], bool)] = &[
            (
                "sites/*.conf",
                &["conf.d/sites/a.conf", "conf.d/sites/b.conf"],
                false,
            ),
            ("sites/*.none", &[], false),
            ("sites/.*.conf", &["conf.d/sites/.hidden.conf"], false),
            (
                "./sites/*.conf",
                &["conf.d/sites/a.conf", "conf.d/sites/b.conf"],
                false,
            ),
            ("sites/?hidden.conf", &[], false),
            ("sites/.hidden.conf", &["conf.d/sites/.hidden.conf"], false),
            ("sites/c.txt", &["conf.d/sites/c.txt"], false),
            ("sites/missing.conf", &[], true),
            ("sites", &[], true),
            ("sites/[", &[], true),
        ];
        for (pattern, expected, fails) in cases {
            let mut report = Report::default();
            let t = token(&mut report, &dir, "conf.d/main.conf", pattern);
            let got: Vec<String> = Includes::default()
                .resolve(&t, &mut report)
                .into_iter()
                .flatten()
                .map(|m| m.display)
                .collect();
            assert_eq!(got, *expected, "{pattern}");
            assert_eq!(report.has_errors(), *fails, "{pattern}");
        }
    }

    #[test]
    fn refuses_a_cycle() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let a = tmp.path().join("a.conf");
        fs::write(&a, "include a.conf;").expect("write");
        let mut report = Report::default();
        let mut includes = Includes::default();
        includes.open_root(&a, &mut report).expect("readable");
        let t = token(&mut report, &canonical(tmp.path()), "a.conf", "a.conf");
        let matches = includes.resolve(&t, &mut report).expect("a.conf exists");
        assert_eq!(matches.len(), 1);
        assert!(includes.enter(&matches[0], t.span, &mut report).is_none());
        let d = &report.diagnostics[0];
        assert_eq!(
            (d.severity, d.message.as_str()),
            (
                Severity::Error,
                "include cycle: \"a.conf\" is already being read"
            )
        );
    }

    #[test]
    fn decodes() {
        /// (bytes, the problem's offset and message)
        type Case = (&'static [u8], Option<(usize, &'static str)>);
        let cases: &[Case] = &[
            (b"a;", None),
            (b"a;\0", Some((2, "NUL byte in configuration file"))),
            (b"ab\xff;", Some((2, "invalid UTF-8 in configuration file"))),
        ];
        for (bytes, expected) in cases {
            let mut report = Report::default();
            let file = register(&mut report, Path::new("x.conf"), "x.conf".into());
            let got = decode(bytes.to_vec(), file, &mut report).err().map(|d| {
                let d = &d[0];
                (d.span.as_ref().map_or(0, |s| s.start), d.message.clone())
            });
            assert_eq!(got.as_ref().map(|(p, m)| (*p, m.as_str())), *expected);
        }
    }
}
