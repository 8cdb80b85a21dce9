//! `webserv fmt [--check] [FILE...|-]`: the canonical layout of a
//! configuration file (SPEC §9.4), comments kept where they stand.
//!
//! Steps of [`format`], in order:
//! 1. the file must parse (`grammar::parse`): a file with a syntax error is
//!    refused with its diagnostics, never rewritten;
//! 2. a light tokenizer, with the grammar's notion of words (a backslash
//!    takes the next character in; `#` starts a comment only where a word
//!    could), quoted strings and comments, splits the text into tokens,
//!    each with the count of line breaks before it;
//! 3. tokens become a tree of directives and comments;
//! 4. the tree is written: 4-space indent, one directive per line, one
//!    space between arguments, quotes only where needed, escapes as
//!    written, a comment after a directive on its line stays there, at most
//!    one blank line in a row (none at the start or end of a block).
//!
//! The output parses to the same directives with the same arguments, so it
//! loads into the same routing table; formatting it again changes nothing.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use super::diag::{Diagnostic, FileId, Report, SourceFile};
use super::grammar;

const INDENT: &str = "    ";

#[derive(Debug)]
enum Tok {
    Word(String),
    Semi,
    Open,
    Close,
    /// The comment and its column (0-based, in characters).
    Comment(String, usize),
}

/// The tokens of `text` (which the grammar accepted), each with the number
/// of line breaks between it and the token before.
fn tokenize(text: &str) -> Vec<(Tok, usize)> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut newlines = 0;
    let mut i = 0;
    let stop = |b: u8| {
        matches!(
            b,
            b' ' | b'\t' | b'\r' | b'\n' | b';' | b'{' | b'}' | b'"' | b'\''
        )
    };
    while i < bytes.len() {
        let start = i;
        let tok = match bytes[i] {
            b'\n' => {
                newlines += 1;
                i += 1;
                continue;
            }
            b' ' | b'\t' | b'\r' => {
                i += 1;
                continue;
            }
            b';' => {
                i += 1;
                Tok::Semi
            }
            b'{' => {
                i += 1;
                Tok::Open
            }
            b'}' => {
                i += 1;
                Tok::Close
            }
            b'#' => {
                i = memchr::memchr(b'\n', &bytes[i..]).map_or(bytes.len(), |n| i + n);
                let line_start = text[..start].rfind('\n').map_or(0, |n| n + 1);
                let column = text[line_start..start].chars().count();
                Tok::Comment(text[start..i].trim_end().to_string(), column)
            }
            quote @ (b'"' | b'\'') => {
                i += 1;
                while i < bytes.len() && bytes[i] != quote {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
                i = (i + 1).min(bytes.len());
                Tok::Word(text[start..i].to_string())
            }
            _ => {
                while i < bytes.len() {
                    if bytes[i] == b'\\' {
                        i += 2;
                    } else if stop(bytes[i]) {
                        break;
                    } else {
                        i += 1;
                    }
                }
                i = i.min(bytes.len());
                Tok::Word(text[start..i].to_string())
            }
        };
        out.push((tok, newlines));
        newlines = 0;
    }
    out
}

/// A comment after code on its line, and the column it was written at.
type Trailing = (String, usize);

#[derive(Debug)]
enum Item {
    Comment {
        text: String,
        blank_before: bool,
    },
    Directive {
        words: Vec<String>,
        blank_before: bool,
        /// Comments between the name and the end: written on their own
        /// lines just before the directive.
        inside: Vec<String>,
        /// The comment after `;` or `{` on the same line.
        trailing: Option<Trailing>,
        /// `None` for `;`, else the block's items and the comment after its `}`.
        block: Option<(Vec<Item>, Option<Trailing>)>,
    },
}

struct Parser {
    toks: std::vec::IntoIter<(Tok, usize)>,
    peeked: Option<(Tok, usize)>,
    /// Whether a token was read yet: the first one starts a line.
    started: bool,
}

impl Parser {
    fn peek(&mut self) -> Option<&(Tok, usize)> {
        if self.peeked.is_none() {
            self.peeked = self.toks.next();
        }
        self.peeked.as_ref()
    }

    fn next(&mut self) -> Option<(Tok, usize)> {
        self.peek();
        let next = self.peeked.take();
        let first = !self.started;
        self.started = true;
        // The first token starts a line as if a line break came before it.
        next.map(|(tok, newlines)| (tok, if first { 1 } else { newlines }))
    }

    /// A comment on the same line as what was just read.
    fn trailing(&mut self) -> Option<Trailing> {
        match self.peek() {
            Some((Tok::Comment(..), 0)) => match self.next() {
                Some((Tok::Comment(text, column), _)) => Some((text, column)),
                _ => None,
            },
            _ => None,
        }
    }

    /// Items up to the end of the file or of the block (its `}` is left).
    fn items(&mut self) -> Vec<Item> {
        let mut items = Vec::new();
        while let Some((tok, _)) = self.peek() {
            if matches!(tok, Tok::Close) {
                break;
            }
            let Some((tok, newlines)) = self.next() else {
                break;
            };
            let blank_before = newlines >= 2;
            match tok {
                Tok::Comment(text, _) => items.push(Item::Comment { text, blank_before }),
                Tok::Word(name) => items.push(self.directive(name, blank_before, newlines > 0)),
                // The grammar refuses these where a directive should start.
                Tok::Semi | Tok::Open | Tok::Close => {}
            }
        }
        items
    }

    /// `own_line`: the directive starts its line. Its trailing comment then
    /// keeps its column if the directive also ends there.
    fn directive(&mut self, name: String, blank_before: bool, own_line: bool) -> Item {
        let mut words = vec![name];
        let mut inside = Vec::new();
        let mut one_line = own_line;
        while let Some((tok, newlines)) = self.next() {
            one_line &= newlines == 0;
            match tok {
                Tok::Word(w) => words.push(canonical_word(w)),
                Tok::Comment(c, _) => inside.push(c),
                Tok::Semi => break,
                Tok::Open => {
                    let trailing = self.trailing();
                    let children = self.items();
                    self.next(); // the `}`
                    let close = self.trailing();
                    return Item::Directive {
                        words,
                        blank_before,
                        inside,
                        trailing,
                        block: Some((children, close)),
                    };
                }
                Tok::Close => break,
            }
        }
        // Column 0: one space after the code (the line it was aligned on
        // held other code, or was not this one).
        let trailing = self
            .trailing()
            .map(|(text, column)| (text, if one_line { column } else { 0 }));
        Item::Directive {
            words,
            blank_before,
            inside,
            trailing,
            block: None,
        }
    }
}

/// A quoted argument whose text is a plain word loses its quotes; any
/// other word is kept as written (escapes included).
fn canonical_word(word: String) -> String {
    let quoted = word.len() >= 2
        && (word.starts_with('"') && word.ends_with('"')
            || word.starts_with('\'') && word.ends_with('\''));
    if !quoted {
        return word;
    }
    let inner = &word[1..word.len() - 1];
    let plain = !inner.is_empty()
        && !inner.starts_with('#')
        && !inner.contains([' ', '\t', '\r', '\n', ';', '{', '}', '"', '\'', '\\']);
    if plain {
        inner.to_string()
    } else {
        word
    }
}

fn write_items(items: &[Item], depth: usize, out: &mut String) {
    let indent = INDENT.repeat(depth);
    for (k, item) in items.iter().enumerate() {
        let blank = match item {
            Item::Comment { blank_before, .. } | Item::Directive { blank_before, .. } => {
                *blank_before
            }
        };
        if blank && k > 0 {
            out.push('\n');
        }
        match item {
            Item::Comment { text, .. } => {
                out.push_str(&indent);
                out.push_str(text);
                out.push('\n');
            }
            Item::Directive {
                words,
                inside,
                trailing,
                block,
                ..
            } => {
                for c in inside {
                    out.push_str(&indent);
                    out.push_str(c);
                    out.push('\n');
                }
                out.push_str(&indent);
                out.push_str(&words.join(" "));
                out.push_str(if block.is_some() { " {" } else { ";" });
                push_trailing(out, trailing.as_ref(), block.is_none());
                if let Some((children, close)) = block {
                    write_items(children, depth + 1, out);
                    out.push_str(&indent);
                    out.push('}');
                    push_trailing(out, close.as_ref(), false);
                }
            }
        }
    }
}

/// Ends the line with its comment, one space after the code; after a `;`
/// (`align`), at the column it was written at when that is further right,
/// so that comments aligned down a block stay aligned.
fn push_trailing(out: &mut String, trailing: Option<&Trailing>, align: bool) {
    if let Some((text, column)) = trailing {
        let line_start = out.rfind('\n').map_or(0, |n| n + 1);
        let used = out[line_start..].chars().count();
        let pad = if align {
            column.saturating_sub(used).max(1)
        } else {
            1
        };
        out.extend(std::iter::repeat_n(' ', pad));
        out.push_str(text);
    }
    out.push('\n');
}

/// The canonical layout of `text`, or the syntax errors that forbid it.
pub fn format(text: &str) -> Result<String, Vec<Diagnostic>> {
    grammar::parse(text, FileId(0))?;
    let mut parser = Parser {
        toks: tokenize(text).into_iter(),
        peeked: None,
        started: false,
    };
    let items = parser.items();
    let mut out = String::with_capacity(text.len());
    write_items(&items, 0, &mut out);
    Ok(out)
}

/// The command. Exit 1 when a file cannot be read or parsed, or, with
/// `check`, when one would change.
pub fn command(files: &[PathBuf], check: bool) -> ExitCode {
    let mut failed = false;
    for file in files {
        match format_one(file, check) {
            Ok(changed) => {
                if changed && check {
                    println!("{}", file.display());
                    failed = true;
                }
            }
            Err(message) => {
                eprint!("{message}");
                failed = true;
            }
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// Formats one file (`-`: stdin to stdout). True when the text changes.
fn format_one(file: &Path, check: bool) -> Result<bool, String> {
    let stdin = file == Path::new("-");
    let text = if stdin {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| format!("webserv fmt: stdin: {e}\n"))?;
        text
    } else {
        std::fs::read_to_string(file)
            .map_err(|e| format!("webserv fmt: {}: {e}\n", file.display()))?
    };
    let formatted = format(&text).map_err(|diagnostics| {
        let report = Report {
            sources: vec![SourceFile {
                display: file.display().to_string(),
                dir: Path::new(".").into(),
                text: text.as_str().into(),
            }],
            diagnostics,
        };
        report.render_text()
    })?;
    let changed = formatted != text;
    if stdin && !check {
        std::io::stdout()
            .write_all(formatted.as_bytes())
            .map_err(|e| format!("webserv fmt: stdout: {e}\n"))?;
    } else if changed && !check {
        write_atomically(file, &formatted)
            .map_err(|e| format!("webserv fmt: {}: {e}\n", file.display()))?;
    }
    Ok(changed)
}

/// Writes beside `file`, then renames over it: a reader sees the old text
/// or the new one, never half of it. The file keeps its permissions.
fn write_atomically(file: &Path, text: &str) -> std::io::Result<()> {
    let dir = match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let permissions = std::fs::metadata(file)?.permissions();
    let name = file.file_name().unwrap_or_default().to_string_lossy();
    let tmp = dir.join(format!(".{name}.webserv-fmt.{}", std::process::id()));
    let written = (|| {
        let mut out = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        out.write_all(text.as_bytes())?;
        out.sync_all()?;
        out.set_permissions(permissions)?;
        std::fs::rename(&tmp, file)
    })();
    if written.is_err() {
        // Nothing half-written is left behind; the original is untouched.
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts() {
        let cases: &[(&str, &str)] = &[
            ("a;", "a;\n"),
            ("a  b\n  c ;b;", "a b c;\nb;\n"),
            (
                "server{listen 80;# port\nlocation / {root \"www\";}}",
                "server {\n    listen 80; # port\n    location / {\n        root www;\n    }\n}\n",
            ),
            ("# top\n\n\n\na;\n\n\n# end\n", "# top\n\na;\n\n# end\n"),
            ("s {\n\n  a;\n\n}\n", "s {\n    a;\n}\n"),
            (
                "r 200 \"a b\" 'c' \"\" \"x\\\"y\" z\\;w \"#h\";",
                "r 200 \"a b\" c \"\" \"x\\\"y\" z\\;w \"#h\";\n",
            ),
            ("s { # open\n} # close\n", "s { # open\n} # close\n"),
            ("a b # why\n c;", "# why\na b c;\n"),
            ("a b#c;", "a b#c;\n"),
            // Aligned comments keep their column; a crowded one moves.
            (
                "a 1;      # x\nbb  2 ;   # y\nc\n 3 3 3 3 3 3 3; # z\n",
                "a 1;      # x\nbb 2;     # y\nc 3 3 3 3 3 3 3; # z\n",
            ),
        ];
        for (input, expected) in cases {
            let got = format(input).expect(input);
            assert_eq!(&got, expected, "{input:?}");
            assert_eq!(format(&got).expect("again"), got, "idempotent: {input:?}");
        }
        assert!(format("a {").is_err());
    }
}
