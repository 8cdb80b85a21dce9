//! A streaming, zero-copy `multipart/form-data` parser (RFC 7578, framing
//! from RFC 2046 §5.1.1), for uploads (SPEC §4).
//!
//! Steps:
//! 1. [`boundary`] takes the boundary out of the request's `Content-Type`.
//! 2. [`MultipartParser::step`] is fed the body as it arrives, with the same
//!    contract as [`super::chunked::ChunkedDecoder::step`]: it looks at the
//!    bytes not consumed so far and returns how many it consumed and an
//!    [`Event`]: a part's headers ([`PartInfo`]), a range of the input that
//!    is part data, the end of a part, the end of the body, or "need more".
//!    The caller keeps the unconsumed bytes and calls again with more
//!    appended. [`Event::NeedMore`] may leave bytes unconsumed: the tail
//!    that could be the start of a delimiter, or part headers not complete
//!    yet; nothing is ever copied or buffered here.
//! 3. [`sanitize_filename`] turns a part's `filename` into a safe name for
//!    the upload store.
//!
//! The delimiter is `CRLF--boundary` (the first one may also open the body
//! without its CRLF), searched with `memchr::memmem`. What follows a
//! delimiter must be `--` (the end) or optional whitespace and CRLF; since
//! the boundary cannot occur in the content (RFC 2046 §5.1.1), anything else
//! is an error. Part headers are read with `httparse`, at most
//! [`MAX_PART_HEADERS`] bytes and [`MAX_HEADER_COUNT`] fields. The preamble
//! and the epilogue are discarded.

use std::borrow::Cow;
use std::fmt;
use std::ops::Range;

use memchr::memmem;

/// Longest boundary (RFC 2046 §5.1.1).
pub const MAX_BOUNDARY: usize = 70;
/// Most bytes in one part's header block, final empty line included.
pub const MAX_PART_HEADERS: usize = 8192;
/// Most header fields in one part.
pub const MAX_HEADER_COUNT: usize = 16;
/// Longest file name [`sanitize_filename`] returns, in bytes.
pub const MAX_FILENAME: usize = 255;

/// What the headers of a part said. The filename is as sent: pass it
/// through [`sanitize_filename`] before using it as a path.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PartInfo {
    /// `Content-Disposition: form-data; name="..."`.
    pub name: Option<String>,
    /// `filename*=UTF-8''...` (RFC 5987) if present and valid, else
    /// `filename="..."`.
    pub filename: Option<String>,
    /// The part's `Content-Type`, trimmed.
    pub content_type: Option<String>,
}

/// What [`MultipartParser::step`] found in the bytes it consumed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A new part starts; its data follows.
    Part(PartInfo),
    /// `input[range]` is data of the current part (not empty; it ends the
    /// consumed prefix). A part's data may come in many pieces.
    Data(Range<usize>),
    /// The current part is complete.
    PartEnd,
    /// The close delimiter was consumed. Later calls consume everything
    /// (the epilogue) and return `Done` again.
    Done,
    /// More input is needed; keep the bytes not consumed.
    NeedMore,
}

/// Malformed multipart body: a 400.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MultipartError {
    /// A delimiter is followed by something other than `--` or CRLF.
    BadDelimiter,
    /// A part's header block exceeds [`MAX_PART_HEADERS`].
    HeadersTooLarge,
    /// A part has more than [`MAX_HEADER_COUNT`] header fields.
    TooManyHeaders,
    /// A part's header block is not valid header syntax.
    BadHeaders,
}

impl fmt::Display for MultipartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MultipartError::BadDelimiter => "invalid multipart delimiter line",
            MultipartError::HeadersTooLarge => "multipart part headers too large",
            MultipartError::TooManyHeaders => "too many multipart part headers",
            MultipartError::BadHeaders => "invalid multipart part headers",
        })
    }
}

impl std::error::Error for MultipartError {}

/// The boundary of a `multipart/form-data` content type, e.g. from
/// `multipart/form-data; boundary="----x"`. The type and parameter names
/// are case-insensitive (RFC 9110 §8.3.1); the value may be quoted. `None`
/// for another type, no boundary, or a boundary RFC 2046 §5.1.1 does not
/// allow (1–70 `bchars`, not ending in a space).
pub fn boundary(content_type: &str) -> Option<String> {
    let (media_type, params) = content_type.split_once(';').unwrap_or((content_type, ""));
    if !media_type
        .trim()
        .eq_ignore_ascii_case("multipart/form-data")
    {
        return None;
    }
    let (_, value) = Params::new(params).find(|(name, _)| name.eq_ignore_ascii_case("boundary"))?;
    let valid = (1..=MAX_BOUNDARY).contains(&value.len())
        && !value.ends_with(' ')
        && value.bytes().all(is_bchar);
    valid.then(|| value.into_owned())
}

/// `bchars` of RFC 2046 §5.1.1.
fn is_bchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"'()+_,-./:=? ".contains(&b)
}

/// Where the parser is in the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// At the very start: the first delimiter may come without its CRLF.
    Start,
    /// Skipping the preamble up to the first delimiter.
    Preamble,
    /// Just after a delimiter: `--`, or padding and CRLF.
    AfterDelimiter,
    /// At the start of a part's header block.
    Headers,
    /// In a part's data.
    Data,
    /// After the close delimiter.
    Epilogue,
}

/// Parses one `multipart/form-data` body. Create one per request.
#[derive(Debug, Clone)]
pub struct MultipartParser {
    state: State,
    /// `\r\n--boundary`.
    delimiter: Vec<u8>,
    finder: memmem::Finder<'static>,
}

impl MultipartParser {
    /// A parser for `boundary`, as [`boundary`] returns it.
    pub fn new(boundary: &str) -> Self {
        let delimiter = [b"\r\n--", boundary.as_bytes()].concat();
        let finder = memmem::Finder::new(&delimiter).into_owned();
        MultipartParser {
            state: State::Start,
            delimiter,
            finder,
        }
    }

    /// Parses from the start of `input`, the bytes not consumed so far;
    /// returns how many bytes were consumed and what they held.
    pub fn step(&mut self, input: &[u8]) -> Result<(usize, Event), MultipartError> {
        let mut pos = 0;
        loop {
            let rest = &input[pos..];
            match self.state {
                State::Start => {
                    let dash_boundary = &self.delimiter[2..];
                    if rest.len() < dash_boundary.len() && dash_boundary.starts_with(rest) {
                        return Ok((pos, Event::NeedMore));
                    }
                    if rest.starts_with(dash_boundary) {
                        pos += dash_boundary.len();
                        self.state = State::AfterDelimiter;
                    } else {
                        self.state = State::Preamble;
                    }
                }
                State::Preamble => match self.finder.find(rest) {
                    Some(at) => {
                        pos += at + self.delimiter.len();
                        self.state = State::AfterDelimiter;
                    }
                    None => {
                        let skip = rest.len() - self.held_back(rest);
                        return Ok((pos + skip, Event::NeedMore));
                    }
                },
                State::AfterDelimiter => match rest {
                    [b'-', b'-', ..] => {
                        self.state = State::Epilogue;
                        return Ok((pos + 2, Event::Done));
                    }
                    // RFC 2046 §5.1.1: transport padding before the CRLF.
                    [b' ' | b'\t', ..] => pos += 1,
                    [b'\r', b'\n', ..] => {
                        pos += 2;
                        self.state = State::Headers;
                    }
                    [] | [b'-'] | [b'\r'] => return Ok((pos, Event::NeedMore)),
                    _ => return Err(MultipartError::BadDelimiter),
                },
                State::Headers => {
                    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADER_COUNT];
                    return match httparse::parse_headers(rest, &mut headers) {
                        Ok(httparse::Status::Complete((n, fields))) => {
                            if n > MAX_PART_HEADERS {
                                return Err(MultipartError::HeadersTooLarge);
                            }
                            self.state = State::Data;
                            Ok((pos + n, Event::Part(part_info(fields))))
                        }
                        Ok(httparse::Status::Partial) if rest.len() >= MAX_PART_HEADERS => {
                            Err(MultipartError::HeadersTooLarge)
                        }
                        Ok(httparse::Status::Partial) => Ok((pos, Event::NeedMore)),
                        Err(httparse::Error::TooManyHeaders) => Err(MultipartError::TooManyHeaders),
                        Err(_) => Err(MultipartError::BadHeaders),
                    };
                }
                State::Data => {
                    let data_len = match self.finder.find(rest) {
                        Some(0) => {
                            self.state = State::AfterDelimiter;
                            return Ok((pos + self.delimiter.len(), Event::PartEnd));
                        }
                        Some(at) => at,
                        None => rest.len() - self.held_back(rest),
                    };
                    if data_len == 0 {
                        return Ok((pos, Event::NeedMore));
                    }
                    return Ok((pos + data_len, Event::Data(pos..pos + data_len)));
                }
                State::Epilogue => return Ok((input.len(), Event::Done)),
            }
        }
    }

    /// The longest tail of `rest` that could begin a delimiter: it must
    /// stay unconsumed until more input tells.
    fn held_back(&self, rest: &[u8]) -> usize {
        let from = rest.len().saturating_sub(self.delimiter.len() - 1);
        memchr::memchr_iter(b'\r', &rest[from..])
            .map(|i| &rest[from + i..])
            .find(|tail| self.delimiter.starts_with(tail))
            .map_or(0, <[u8]>::len)
    }
}

fn part_info(fields: &[httparse::Header<'_>]) -> PartInfo {
    let mut info = PartInfo::default();
    for field in fields {
        let value = String::from_utf8_lossy(field.value);
        if field.name.eq_ignore_ascii_case("content-type") {
            info.content_type = Some(value.trim().to_owned());
        } else if field.name.eq_ignore_ascii_case("content-disposition") {
            let params = value.split_once(';').map_or("", |(_, p)| p);
            let mut extended = None;
            for (name, v) in Params::new(params) {
                if name.eq_ignore_ascii_case("name") {
                    info.name = Some(v.into_owned());
                } else if name.eq_ignore_ascii_case("filename") {
                    info.filename = Some(v.into_owned());
                } else if name.eq_ignore_ascii_case("filename*") {
                    extended = decode_ext_value(&v);
                }
            }
            // RFC 6266 §4.3: filename* wins over filename.
            if extended.is_some() {
                info.filename = extended;
            }
        }
    }
    info
}

/// `UTF-8''%e2%82%ac.txt` (RFC 8187 §3.2), UTF-8 only.
fn decode_ext_value(v: &str) -> Option<String> {
    let (charset, rest) = v.split_once('\'')?;
    let (_language, encoded) = rest.split_once('\'')?;
    if !charset.eq_ignore_ascii_case("utf-8") {
        return None;
    }
    let bytes = encoded.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hi = super::path::hex_val(*bytes.get(i + 1)?)?;
            let lo = super::path::hex_val(*bytes.get(i + 2)?)?;
            out.push(hi << 4 | lo);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The `; name=value` parameters of a header value (RFC 9110 §5.6.6),
/// values unquoted. Inside quotes only `\"` and `\\` are escapes: browsers
/// do not escape backslashes in file names, and old ones sent whole Windows
/// paths (`C:\dir\a.txt`), which must survive for [`sanitize_filename`].
struct Params<'a> {
    rest: &'a str,
}

impl<'a> Params<'a> {
    fn new(s: &'a str) -> Self {
        Params { rest: s }
    }
}

impl<'a> Iterator for Params<'a> {
    type Item = (&'a str, Cow<'a, str>);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let s = self.rest.trim_start_matches([' ', '\t', ';']);
            if s.is_empty() {
                self.rest = s;
                return None;
            }
            let name_end = s.find(['=', ';']).unwrap_or(s.len());
            let name = s[..name_end].trim_end_matches([' ', '\t']);
            let Some(after_eq) = s[name_end..].strip_prefix('=') else {
                // A parameter without a value: skip it.
                self.rest = &s[name_end..];
                continue;
            };
            let v = after_eq.trim_start_matches([' ', '\t']);
            let (value, rest) = match v.strip_prefix('"') {
                Some(quoted) => unquote(quoted),
                None => {
                    let end = v.find(';').unwrap_or(v.len());
                    (
                        Cow::Borrowed(v[..end].trim_end_matches([' ', '\t'])),
                        &v[end..],
                    )
                }
            };
            self.rest = rest;
            if !name.is_empty() {
                return Some((name, value));
            }
        }
    }
}

/// The content of a quoted string whose opening quote was removed, and
/// what follows its closing quote. An unterminated string runs to the end.
fn unquote(s: &str) -> (Cow<'_, str>, &str) {
    let bytes = s.as_bytes();
    let mut owned: Option<String> = None;
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                let value = match owned {
                    Some(mut o) => {
                        o.push_str(&s[start..i]);
                        Cow::Owned(o)
                    }
                    None => Cow::Borrowed(&s[..i]),
                };
                return (value, &s[i + 1..]);
            }
            b'\\' if matches!(bytes.get(i + 1), Some(b'"' | b'\\')) => {
                let o = owned.get_or_insert_with(String::new);
                o.push_str(&s[start..i]);
                start = i + 1;
                i += 2;
            }
            _ => i += 1,
        }
    }
    match owned {
        Some(mut o) => {
            o.push_str(&s[start..]);
            (Cow::Owned(o), "")
        }
        None => (Cow::Borrowed(s), ""),
    }
}

/// A file name safe to create in the upload store, from a part's
/// `filename`: its last path component (split on `/` and `\`), without
/// control characters, trimmed of whitespace, at most [`MAX_FILENAME`]
/// bytes (cut on a character boundary). `None` when nothing usable is left
/// (empty, `.` or `..`).
pub fn sanitize_filename(name: &str) -> Option<String> {
    let last = name.rsplit(['/', '\\']).next().unwrap_or(name);
    let mut out: String = last.chars().filter(|c| !c.is_control()).collect();
    let trimmed = out.trim();
    if trimmed.len() != out.len() {
        out = trimmed.to_owned();
    }
    if out.len() > MAX_FILENAME {
        let mut cut = MAX_FILENAME;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
    }
    match out.as_str() {
        "" | "." | ".." => None,
        _ => Some(out),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Parts with their whole data, and the bytes consumed up to `Done`.
    type Parsed = (Vec<(PartInfo, Vec<u8>)>, Option<usize>);

    /// Feeds `pieces` one after the other, keeping unconsumed bytes as a
    /// connection would, and checks the event order.
    fn feed(boundary: &str, pieces: &[&[u8]]) -> Result<Parsed, MultipartError> {
        let mut parser = MultipartParser::new(boundary);
        let mut buf = Vec::new();
        let mut parts: Vec<(PartInfo, Vec<u8>)> = Vec::new();
        let mut in_part = false;
        let mut consumed = 0;
        for piece in pieces {
            buf.extend_from_slice(piece);
            loop {
                let (n, event) = parser.step(&buf)?;
                assert!(n <= buf.len());
                let need_more = event == Event::NeedMore;
                consumed += n;
                match event {
                    Event::Part(info) => {
                        assert!(!in_part, "part inside a part");
                        in_part = true;
                        parts.push((info, Vec::new()));
                    }
                    Event::Data(r) => {
                        assert!(in_part && !r.is_empty() && r.end == n, "{r:?} of {n}");
                        parts.last_mut().unwrap().1.extend_from_slice(&buf[r]);
                    }
                    Event::PartEnd => {
                        assert!(in_part, "end outside a part");
                        in_part = false;
                    }
                    Event::Done => {
                        assert!(!in_part, "done inside a part");
                        let rest = buf.len() - n;
                        assert_eq!(parser.step(&buf[n..]).unwrap(), (rest, Event::Done));
                        return Ok((parts, Some(consumed)));
                    }
                    Event::NeedMore => {}
                }
                buf.drain(..n);
                if need_more {
                    break;
                }
            }
        }
        Ok((parts, None))
    }

    /// Whole, split in two at every position, and byte by byte: all alike.
    fn feed_every_way(boundary: &str, input: &[u8]) -> Result<Parsed, MultipartError> {
        let whole = feed(boundary, &[input]);
        for k in 0..=input.len() {
            assert_eq!(
                feed(boundary, &[&input[..k], &input[k..]]),
                whole,
                "split at {k}"
            );
        }
        let bytes: Vec<&[u8]> = input.chunks(1).collect();
        assert_eq!(feed(boundary, &bytes), whole, "byte by byte");
        whole
    }

    fn info(name: Option<&str>, filename: Option<&str>, content_type: Option<&str>) -> PartInfo {
        PartInfo {
            name: name.map(str::to_owned),
            filename: filename.map(str::to_owned),
            content_type: content_type.map(str::to_owned),
        }
    }

    fn file(name: &str, filename: &str, data: &[u8]) -> (PartInfo, Vec<u8>) {
        let ct = Some("application/octet-stream");
        (info(Some(name), Some(filename), ct), data.to_vec())
    }

    /// A body with boundary `XyZ` holding `parts` as file parts.
    fn body(parts: &[(&str, &[u8])], preamble: &[u8], epilogue: &[u8]) -> Vec<u8> {
        let mut out = preamble.to_vec();
        for (filename, data) in parts {
            if !out.is_empty() {
                out.extend_from_slice(b"\r\n");
            }
            out.extend_from_slice(b"--XyZ\r\n");
            out.extend(
                format!(
                    "Content-Disposition: form-data; name=\"f\"; filename=\"{filename}\"\r\n\
                     Content-Type: application/octet-stream\r\n\r\n"
                )
                .bytes(),
            );
            out.extend_from_slice(data);
        }
        out.extend_from_slice(b"\r\n--XyZ--");
        out.extend_from_slice(epilogue);
        out
    }

    #[test]
    fn parses_one_file() {
        let input = b"--XyZ\r\n\
            Content-Disposition: form-data; name=\"file\"; filename=\"a.txt\"\r\n\
            Content-Type: text/plain\r\n\
            \r\n\
            hello\r\n\
            --XyZ--\r\n";
        let want = vec![(
            info(Some("file"), Some("a.txt"), Some("text/plain")),
            b"hello".to_vec(),
        )];
        assert_eq!(
            feed_every_way("XyZ", input),
            Ok((want, Some(input.len() - 2)))
        );
    }

    #[test]
    fn parses_fields_and_files() {
        let input = b"preamble, ignored\r\n\
            --XyZ\r\n\
            Content-Disposition: form-data; name=\"title\"\r\n\
            \r\n\
            My files\r\n\
            --XyZ\r\n\
            content-disposition: form-data; name=\"a\"; filename=\"one.bin\"\r\n\
            CONTENT-TYPE:  image/png \r\n\
            \r\n\
            \x00\x01\x02\r\n\
            --XyZ\r\n\
            Content-Disposition: form-data; name=\"b\"; filename=\"\"\r\n\
            \r\n\
            \r\n\
            --XyZ  \t\r\n\
            \r\n\
            no headers at all\r\n\
            --XyZ--\r\nepilogue --XyZ\r\n--XyZ\r\n";
        let want = vec![
            (info(Some("title"), None, None), b"My files".to_vec()),
            (
                info(Some("a"), Some("one.bin"), Some("image/png")),
                b"\x00\x01\x02".to_vec(),
            ),
            (info(Some("b"), Some(""), None), b"".to_vec()),
            (info(None, None, None), b"no headers at all".to_vec()),
        ];
        let end = input.len() - b"\r\nepilogue --XyZ\r\n--XyZ\r\n".len();
        assert_eq!(feed_every_way("XyZ", input), Ok((want, Some(end))));
    }

    #[test]
    fn content_that_looks_like_a_boundary() {
        let tricky: &[&[u8]] = &[
            b"",
            b"\r",
            b"\r\n",
            b"\r\n-",
            b"\r\n--",
            b"\r\n--X",
            b"\r\n--Xy",
            b"--XyZ",
            b"a--XyZ--b",
            b"\r\r\n--Xy\r\n-\r\n--X\r\n",
            b"\n--XyZ\n--XyZ--",
            b"line one\r\n\r\nline two\r\n",
            b"ends with CR\r",
            b"ends with partial\r\n--Xy",
            b"\r\n\r\n--\r\n--\r",
            &[0xff, 0x00, b'\r', 0x80, b'\n', b'-', b'-', b'X', b'y', b'z'],
        ];
        for &data in tricky {
            let input = body(&[("t.bin", data), ("u.bin", data)], b"", b"");
            let want = vec![file("f", "t.bin", data), file("f", "u.bin", data)];
            let name = String::from_utf8_lossy(data);
            assert_eq!(
                feed_every_way("XyZ", &input),
                Ok((want, Some(input.len()))),
                "{name:?}"
            );
        }
    }

    #[test]
    fn preambles_and_epilogues() {
        let table: &[(&[u8], &[u8])] = &[
            (b"", b""),
            (b"\r\n", b""),
            (b"junk", b"\r\n"),
            (b"--XyX\r\n--Xy", b"more junk\r\n--XyZ\r\n"),
            (b"-", b"--"),
        ];
        for &(preamble, epilogue) in table {
            let input = body(&[("a", b"data")], preamble, epilogue);
            let want = vec![file("f", "a", b"data")];
            let end = input.len() - epilogue.len();
            let name = String::from_utf8_lossy(preamble);
            assert_eq!(
                feed_every_way("XyZ", &input),
                Ok((want, Some(end))),
                "{name:?}"
            );
        }
    }

    #[test]
    fn incomplete_bodies_need_more() {
        let table: &[&[u8]] = &[
            b"",
            b"--Xy",
            b"--XyZ",
            b"--XyZ-",
            b"--XyZ\r",
            b"--XyZ\r\n",
            b"--XyZ\r\nContent-Type: a",
            b"--XyZ\r\n\r\nsome data",
            b"--XyZ\r\n\r\nsome data\r\n--XyZ",
            b"--XyZ\r\n\r\nsome data\r\n--XyZ\r\n",
            b"--XyZ\r\n\r\nsome data\r\n--XyZ-",
            b"just a preamble",
        ];
        for &input in table {
            let name = String::from_utf8_lossy(input);
            let (_, done) = feed_every_way("XyZ", input).unwrap();
            assert_eq!(done, None, "{name:?}");
        }
    }

    #[test]
    fn rejects_malformed_bodies() {
        use MultipartError::*;
        let many: String = (0..MAX_HEADER_COUNT + 1)
            .map(|i| format!("X-{i}: v\r\n"))
            .collect();
        let many = format!("--XyZ\r\n{many}\r\n");
        let huge = format!("--XyZ\r\nX: {}\r\n\r\n", "a".repeat(MAX_PART_HEADERS));
        let endless = format!("--XyZ\r\nX: {}", "a".repeat(MAX_PART_HEADERS));
        let table: &[(&[u8], MultipartError)] = &[
            (b"--XyZx\r\n", BadDelimiter),
            (b"--XyZ\n\r\n", BadDelimiter),
            (b"--XyZ\rX", BadDelimiter),
            (b"--XyZ-x", BadDelimiter),
            (b"--XyZ \r ", BadDelimiter),
            (b"pre\r\n--XyZZ\r\n", BadDelimiter),
            (b"--XyZ\r\n\r\ndata\r\n--XyZjunk", BadDelimiter),
            (
                b"--XyZ\r\nContent-Disposition form-data\r\n\r\n",
                BadHeaders,
            ),
            (b"--XyZ\r\nName : v\r\n\r\n", BadHeaders),
            (b"--XyZ\r\n: v\r\n\r\n", BadHeaders),
            (b"--XyZ\r\nA: \x01\r\n\r\n", BadHeaders),
            (many.as_bytes(), TooManyHeaders),
            (huge.as_bytes(), HeadersTooLarge),
            (endless.as_bytes(), HeadersTooLarge),
        ];
        for &(input, err) in table {
            let name = String::from_utf8_lossy(&input[..input.len().min(40)]);
            assert_eq!(feed_every_way("XyZ", input), Err(err), "{name:?}");
        }
    }

    #[test]
    fn content_disposition_parameters() {
        let table: &[(&str, Option<&str>, Option<&str>)] = &[
            ("form-data; name=\"a\"", Some("a"), None),
            (
                "form-data; name=a; filename=b.txt",
                Some("a"),
                Some("b.txt"),
            ),
            (
                "form-data;name=\"a\";filename=\"b c.txt\"",
                Some("a"),
                Some("b c.txt"),
            ),
            (
                "FORM-DATA; NAME = \"a\" ; FileName= \"b\"",
                Some("a"),
                Some("b"),
            ),
            (
                "form-data; name=\"a;b\"; filename=\"x=y;z\"",
                Some("a;b"),
                Some("x=y;z"),
            ),
            ("form-data; name=\"q\\\"uote\"", Some("q\"uote"), None),
            (
                "form-data; filename=\"C:\\dir\\a.txt\"",
                None,
                Some("C:\\dir\\a.txt"),
            ),
            ("form-data; filename=\"a\\\\b\"", None, Some("a\\b")),
            ("form-data; filename=\"été.txt\"", None, Some("été.txt")),
            (
                "form-data; filename=\"euro.txt\"; filename*=UTF-8''%e2%82%ac.txt",
                None,
                Some("€.txt"),
            ),
            ("form-data; filename*=utf-8'en'a%20b", None, Some("a b")),
            (
                "form-data; filename=\"x\"; filename*=latin1''a",
                None,
                Some("x"),
            ),
            (
                "form-data; filename=\"x\"; filename*=UTF-8''%zz",
                None,
                Some("x"),
            ),
            (
                "form-data; filename=\"unterminated",
                None,
                Some("unterminated"),
            ),
            ("form-data; flag; name=a", Some("a"), None),
            ("form-data; =x; name=a", Some("a"), None),
            ("form-data", None, None),
            ("", None, None),
        ];
        for &(cd, name, filename) in table {
            let head = format!("Content-Disposition: {cd}\r\n\r\n");
            let mut headers = [httparse::EMPTY_HEADER; 4];
            let fields = match httparse::parse_headers(head.as_bytes(), &mut headers) {
                Ok(httparse::Status::Complete((_, fields))) => fields,
                other => panic!("{cd:?}: {other:?}"),
            };
            assert_eq!(part_info(fields), info(name, filename, None), "{cd:?}");
        }
    }

    #[test]
    fn boundaries() {
        let long = "b".repeat(MAX_BOUNDARY);
        let too_long = "b".repeat(MAX_BOUNDARY + 1);
        let table: &[(&str, Option<&str>)] = &[
            ("multipart/form-data; boundary=XyZ", Some("XyZ")),
            ("multipart/form-data;boundary=XyZ", Some("XyZ")),
            ("Multipart/Form-Data; BOUNDARY=XyZ", Some("XyZ")),
            (
                "multipart/form-data; charset=utf-8; boundary=\"a b:c\"",
                Some("a b:c"),
            ),
            (
                "multipart/form-data; boundary=\"XyZ\"; charset=x",
                Some("XyZ"),
            ),
            (
                "multipart/form-data; boundary=----WebKitFormBoundary7MA4",
                Some("----WebKitFormBoundary7MA4"),
            ),
            (
                "multipart/form-data; boundary=XyZ; boundary=other",
                Some("XyZ"),
            ),
            (
                &format!("multipart/form-data; boundary={long}"),
                Some(&long),
            ),
            (&format!("multipart/form-data; boundary={too_long}"), None),
            ("multipart/form-data; boundary=", None),
            ("multipart/form-data; boundary=\"\"", None),
            ("multipart/form-data; boundary=\"ends \"", None),
            ("multipart/form-data; boundary=\"a\\\"b\"", None),
            ("multipart/form-data; boundary=a@b", None),
            ("multipart/form-data; boundary=é", None),
            ("multipart/form-data", None),
            ("multipart/mixed; boundary=XyZ", None),
            ("text/plain; boundary=XyZ", None),
            ("", None),
        ];
        for &(ct, want) in table {
            assert_eq!(boundary(ct).as_deref(), want, "{ct:?}");
        }
    }

    #[test]
    fn sanitizes_filenames() {
        let long = "é".repeat(200);
        let cut = "é".repeat(127);
        let table: &[(&str, Option<&str>)] = &[
            ("a.txt", Some("a.txt")),
            ("photo 1.JPG", Some("photo 1.JPG")),
            ("../../etc/passwd", Some("passwd")),
            ("C:\\Users\\x\\report.pdf", Some("report.pdf")),
            ("/abs/path/", None),
            ("dir\\", None),
            ("", None),
            (".", None),
            ("..", None),
            ("a/..", None),
            ("a\\.", None),
            ("  ", None),
            (" x ", Some("x")),
            ("a\0b", Some("ab")),
            ("a\r\nb\tc\x7f", Some("abc")),
            ("\0", None),
            (".\0.", None),
            (".hidden", Some(".hidden")),
            ("...", Some("...")),
            ("été", Some("été")),
            (&long, Some(&cut)),
        ];
        for &(name, want) in table {
            assert_eq!(sanitize_filename(name).as_deref(), want, "{name:?}");
        }
        let exact = "a".repeat(MAX_FILENAME + 10);
        assert_eq!(sanitize_filename(&exact).unwrap().len(), MAX_FILENAME);
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(input in proptest::collection::vec(any::<u8>(), 0..200), k in 0usize..200) {
            let k = k.min(input.len());
            let whole = feed("XyZ", &[&input]);
            prop_assert_eq!(feed("XyZ", &[&input[..k], &input[k..]]), whole);
        }

        #[test]
        fn boundary_like_bytes_never_panic(pieces in proptest::collection::vec(
            prop_oneof![Just("--XyZ"), Just("\r\n"), Just("--"), Just("\r"), Just("X: v"), Just("a")], 0..30),
            k in 0usize..200,
        ) {
            let input = pieces.concat().into_bytes();
            let k = k.min(input.len());
            let whole = feed("XyZ", &[&input]);
            prop_assert_eq!(feed("XyZ", &[&input[..k], &input[k..]]), whole);
        }

        #[test]
        fn round_trips_any_content(
            datas in proptest::collection::vec(proptest::collection::vec(
                prop_oneof![Just(b'\r'), Just(b'\n'), Just(b'-'), Just(b'X'), Just(b'y'), Just(b'Z'), any::<u8>()], 0..40), 1..4),
            k in 0usize..400,
        ) {
            // Content may hold anything but the delimiter itself.
            prop_assume!(datas.iter().all(|d| memmem::find(d, b"\r\n--XyZ").is_none()));
            let parts: Vec<(&str, &[u8])> = datas.iter().map(|d| ("n", d.as_slice())).collect();
            let input = body(&parts, b"", b"");
            let want: Vec<_> = datas.iter().map(|d| file("f", "n", d)).collect();
            let k = k.min(input.len());
            prop_assert_eq!(feed("XyZ", &[&input[..k], &input[k..]]), Ok((want, Some(input.len()))));
        }

        #[test]
        fn sanitized_names_are_plain(name in "\\PC{0,300}|[./\\\\a\\x00]{0,8}") {
            if let Some(s) = sanitize_filename(&name) {
                prop_assert!(!s.is_empty() && s != "." && s != "..");
                prop_assert!(s.len() <= MAX_FILENAME);
                prop_assert!(!s.contains(['/', '\\', '\0']));
                prop_assert!(!s.chars().any(char::is_control));
            }
        }
    }
}
