//! Syntax: one file's text → a raw tree of directives with byte spans.
//!
//! Steps: refuse inputs that would make the recursive pest parser work too
//! hard (too large, nested too deeply), parse with `grammar/webserv.pest`,
//! then convert the pairs into [`RawDirective`]s, reporting the mistakes the
//! grammar tolerates on purpose (stray `}`, unclosed block, unterminated
//! string). Pest's own errors become our diagnostics; its formatting never
//! reaches the user.

use std::borrow::Cow;

use pest::error::{ErrorVariant, InputLocation};
use pest::iterators::Pair;
use pest::Parser;
use pest_derive::Parser;

use super::diag::{Diagnostic, FileId, Span};

/// Larger files are refused before parsing.
pub const MAX_FILE_BYTES: usize = 4 << 20;
/// Deeper `{` nesting is refused before parsing (the grammar recurses; only
/// three levels are meaningful: top level, server, location).
pub const MAX_DEPTH: usize = 16;

#[derive(Parser)]
#[grammar = "../grammar/webserv.pest"]
struct ConfParser;

/// A word or quoted string, unescaped, with where it was written. The text
/// borrows the file's unless unescaping changed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token<'a> {
    pub text: Cow<'a, str>,
    pub span: Span,
}

/// `name arg* ;` or `name arg* { ... }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawDirective<'a> {
    pub name: Token<'a>,
    pub args: Vec<Token<'a>>,
    pub block: Option<Vec<RawDirective<'a>>>,
}

/// Parses one file. Any syntax error makes the whole file fail: the caller
/// reports the diagnostics and uses none of its directives.
pub fn parse(text: &str, file: FileId) -> Result<Vec<RawDirective<'_>>, Vec<Diagnostic>> {
    let at = |start: usize, end: usize| Span { file, start, end };
    if text.len() > MAX_FILE_BYTES {
        let limit = MAX_FILE_BYTES >> 20;
        return Err(vec![Diagnostic::error(
            at(0, 0),
            "syntax",
            format!(
                "file too large ({} bytes, the limit is {limit} MiB)",
                text.len()
            ),
        )]);
    }
    if let Some(pos) = too_deep(text) {
        return Err(vec![Diagnostic::error(
            at(pos, pos + 1),
            "syntax",
            format!("blocks nested more than {MAX_DEPTH} levels deep"),
        )]);
    }
    let mut pairs =
        ConfParser::parse(Rule::file, text).map_err(|e| vec![from_pest(&e, text, file)])?;
    let mut converter = Converter {
        file,
        errors: Vec::new(),
    };
    let tree = pairs
        .next()
        .map(|p| converter.directives(p))
        .unwrap_or_default();
    if converter.errors.is_empty() {
        Ok(tree)
    } else {
        Err(converter.errors)
    }
}

struct Converter {
    file: FileId,
    errors: Vec<Diagnostic>,
}

impl Converter {
    fn span(&self, pair: &Pair<'_, Rule>) -> Span {
        let s = pair.as_span();
        Span {
            file: self.file,
            start: s.start(),
            end: s.end(),
        }
    }

    /// The directives directly inside `file` or `block`.
    /// Vectors are sized from the pairs' count (a close upper bound): a
    /// large file makes tens of thousands of them.
    fn directives<'a>(&mut self, parent: Pair<'a, Rule>) -> Vec<RawDirective<'a>> {
        let pairs = parent.into_inner();
        let mut out = Vec::with_capacity(pairs.len());
        for pair in pairs {
            match pair.as_rule() {
                Rule::directive => out.push(self.directive(pair)),
                // The first stray `}` is the one to fix; later ones are
                // usually its consequences.
                Rule::stray_close if self.errors.is_empty() => {
                    let span = self.span(&pair);
                    self.errors.push(Diagnostic::error(
                        span,
                        "syntax",
                        "unexpected \"}\" (no block is open here)",
                    ));
                }
                // Only the innermost unclosed block, and only when nothing
                // (an unterminated string) already explains the early end.
                Rule::unclosed if self.errors.is_empty() => {
                    let span = self.span(&pair);
                    self.errors.push(Diagnostic::error(
                        span,
                        "syntax",
                        "unexpected end of file: a block is not closed (missing \"}\")",
                    ));
                }
                _ => {}
            }
        }
        out
    }

    fn directive<'a>(&mut self, pair: Pair<'a, Rule>) -> RawDirective<'a> {
        let mut name = None;
        let parts = pair.into_inner();
        // All but the name, when the directive ends with `;`.
        let mut args = Vec::with_capacity(parts.len().saturating_sub(1));
        let mut block = None;
        for part in parts {
            let span = self.span(&part);
            match part.as_rule() {
                Rule::name => {
                    name = Some(Token {
                        text: unescape(part.as_str()),
                        span,
                    })
                }
                Rule::bare => args.push(Token {
                    text: unescape(part.as_str()),
                    span,
                }),
                Rule::dquoted | Rule::squoted => args.push(Token {
                    text: unescape(part.into_inner().as_str()),
                    span,
                }),
                Rule::unterminated => self.errors.push(Diagnostic::error(
                    span,
                    "syntax",
                    "unterminated string (missing closing quote)",
                )),
                Rule::block => block = Some(self.directives(part)),
                _ => {}
            }
        }
        RawDirective {
            name: name.unwrap_or(Token {
                text: Cow::Borrowed(""),
                span: Span {
                    file: self.file,
                    start: 0,
                    end: 0,
                },
            }),
            args,
            block,
        }
    }
}

/// `\"`, `\'` and `\\` stand for the character; any other backslash is kept
/// (`x\;y` is `x\;y`), in quoted strings and bare words alike, as nginx does.
fn unescape(raw: &str) -> Cow<'_, str> {
    if !raw.contains('\\') {
        return Cow::Borrowed(raw);
    }
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some(e @ ('"' | '\'' | '\\')) => out.push(e),
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    Cow::Owned(out)
}

/// The offset of the first `{` nested deeper than [`MAX_DEPTH`], skipping
/// comments and quoted strings the way the grammar does.
fn too_deep(text: &str) -> Option<usize> {
    let bytes = text.as_bytes();
    let separator = |b: u8| {
        matches!(
            b,
            b' ' | b'\t' | b'\r' | b'\n' | b';' | b'{' | b'}' | b'"' | b'\''
        )
    };
    let special = |b: &u8| matches!(b, b'#' | b'"' | b'\'' | b'{' | b'}' | b'\\');
    let mut depth = 0usize;
    let mut i = 0;
    // Only six bytes matter: jump from one to the next.
    while let Some(skip) = bytes[i..].iter().position(special) {
        i += skip;
        match bytes[i] {
            // Escapes the next byte, whatever it is (in a word, as nginx).
            b'\\' if i + 1 < bytes.len() => i += 1,
            // `#` starts a comment only where a word could start.
            b'#' if i == 0 || separator(bytes[i - 1]) => {
                i += memchr::memchr(b'\n', &bytes[i..]).unwrap_or(bytes.len() - i);
                continue;
            }
            b'"' | b'\'' => i = skip_string(bytes, i),
            b'{' => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Some(i);
                }
            }
            b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        i += 1;
    }
    None
}

/// Index of the closing quote of the string opening at `start` (or the end).
fn skip_string(bytes: &[u8], start: usize) -> usize {
    let quote = bytes[start];
    let mut i = start + 1;
    while i < bytes.len() && bytes[i] != quote {
        i += if bytes[i] == b'\\' { 2 } else { 1 };
    }
    i.min(bytes.len().saturating_sub(1))
}

/// Our wording for pest's "expected ..." errors.
fn from_pest(error: &pest::error::Error<Rule>, text: &str, file: FileId) -> Diagnostic {
    let pos = match error.location {
        InputLocation::Pos(p) => p,
        InputLocation::Span((s, _)) => s,
    };
    let found = describe_found(text, pos);
    let message = match &error.variant {
        ErrorVariant::ParsingError { positives, .. } => {
            let described: Vec<&str> = positives.iter().filter_map(|r| describe_rule(*r)).collect();
            // After a directive's arguments, "an argument" is true but not
            // what the user is missing.
            let mut wanted: Vec<&str> = EXPECTED_ORDER
                .iter()
                .copied()
                .filter(|w| described.contains(w))
                .filter(|w| *w != ARGUMENT || !described.contains(&SEMICOLON))
                .collect();
            wanted.dedup();
            match wanted.as_slice() {
                [] => format!("unexpected {found}"),
                [one] => format!("unexpected {found}, expected {one}"),
                [init @ .., last] => {
                    format!("unexpected {found}, expected {} or {last}", init.join(", "))
                }
            }
        }
        ErrorVariant::CustomError { message } => message.clone(),
    };
    let end = pos + text[pos..].chars().next().map_or(0, char::len_utf8);
    Diagnostic::error(
        Span {
            file,
            start: pos,
            end,
        },
        "syntax",
        message,
    )
}

fn describe_found(text: &str, pos: usize) -> String {
    match text.get(pos..).and_then(|t| t.chars().next()) {
        None => "end of file".to_string(),
        Some(c) => format!("{:?}", c.to_string()),
    }
}

const SEMICOLON: &str = "\";\"";
const ARGUMENT: &str = "an argument";
const EXPECTED_ORDER: &[&str] = &[
    SEMICOLON,
    "\"{\"",
    "\"}\"",
    "a directive",
    ARGUMENT,
    "end of file",
];

fn describe_rule(rule: Rule) -> Option<&'static str> {
    Some(match rule {
        Rule::semicolon => SEMICOLON,
        Rule::block => "\"{\"",
        Rule::close => "\"}\"",
        Rule::file | Rule::directive | Rule::name => "a directive",
        Rule::bare | Rule::dquoted | Rule::squoted | Rule::unterminated => ARGUMENT,
        Rule::EOI => "end of file",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(tree: &[RawDirective]) -> Vec<String> {
        tree.iter()
            .map(|d| {
                let args: Vec<&str> = d.args.iter().map(|a| a.text.as_ref()).collect();
                match &d.block {
                    Some(b) => format!("{} {:?} {{{}}}", d.name.text, args, names(b).join(" ")),
                    None => format!("{} {:?}", d.name.text, args),
                }
            })
            .collect()
    }

    #[test]
    fn parses() {
        let cases: &[(&str, &[&str])] = &[
            ("", &[]),
            ("a;", &["a []"]),
            ("a b c;", &["a [\"b\", \"c\"]"]),
            (
                "# c\na 'x y' \"q\\\"z\\\\\";",
                &["a [\"x y\", \"q\\\"z\\\\\"]"],
            ),
            ("s { l / { r x; } }", &["s [] {l [\"/\"] {r [\"x\"]}}"]),
            ("a b#c;", &["a [\"b#c\"]"]),
            ("a \"\\n\";", &["a [\"\\\\n\"]"]),
            ("a\t\r\nb\n;", &["a [\"b\"]"]),
            // A backslash in a bare word takes the next character in, as
            // nginx: unescaped like quoted strings.
            ("return 200 a\\\"b;", &["return [\"200\", \"a\\\"b\"]"]),
            ("a x\\;y;", &["a [\"x\\\\;y\"]"]),
            ("a x\\ y\\{z\\};", &["a [\"x\\\\ y\\\\{z\\\\}\"]"]),
            ("a \\'q\\\\ \\#c;", &["a [\"'q\\\\\", \"\\\\#c\"]"]),
            ("s { a b\\}; }", &["s [] {a [\"b\\\\}\"]}"]),
            ("n\\;x y;", &["n\\;x [\"y\"]"]),
        ];
        for (text, expected) in cases {
            let tree = parse(text, FileId(0)).expect(text);
            assert_eq!(names(&tree), *expected, "{text:?}");
        }
    }

    #[test]
    fn rejects() {
        let cases: &[(&str, usize, &str)] = &[
            ("a", 1, "unexpected end of file, expected \";\" or \"{\""),
            ("s { a 1 }", 8, "unexpected \"}\", expected \";\" or \"{\""),
            ("}", 0, "unexpected \"}\" (no block is open here)"),
            (
                "s {",
                3,
                "unexpected end of file: a block is not closed (missing \"}\")",
            ),
            ("a \"x;", 2, "unterminated string (missing closing quote)"),
            ("a 'x;", 2, "unterminated string (missing closing quote)"),
            (";", 0, "unexpected \";\", expected a directive"),
        ];
        for (text, at, message) in cases {
            let errors = parse(text, FileId(0)).expect_err(text);
            assert_eq!(
                errors[0].span.as_ref().map(|s| s.start),
                Some(*at),
                "{text:?}"
            );
            assert_eq!(errors[0].message, *message, "{text:?}");
        }
    }

    #[test]
    fn refuses_deep_nesting_without_recursing() {
        let deep = "a {".repeat(100_000);
        let errors = parse(&deep, FileId(0)).expect_err("too deep");
        assert!(errors[0].message.contains("nested"));
        let ok = format!("{}{}", "a {".repeat(MAX_DEPTH), "}".repeat(MAX_DEPTH));
        assert!(parse(&ok, FileId(0)).is_ok());
        let quoted = format!("a \"{}\";", "{".repeat(100));
        assert!(parse(&quoted, FileId(0)).is_ok());
        let escaped = format!("a {};", "\\{".repeat(100));
        assert!(parse(&escaped, FileId(0)).is_ok());
        assert!(parse("a \\", FileId(0)).is_err());
    }
}
