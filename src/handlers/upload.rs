//! Uploads into an `upload_store`: POST (multipart or raw) and PUT.
//!
//! Every file is written to a temporary name in its target directory and
//! only takes its real name when the whole request body has arrived:
//! - POST links it under a name that does not exist yet (`link(2)` never
//!   overwrites; a numeric suffix is added until a name is free);
//! - PUT renames it over the target (201 if new, 204 if replaced).
//!
//! A [`TempFile`] that is dropped before it is committed removes itself, so
//! an aborted, refused or failed upload leaves nothing behind.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::http::multipart::{self, Event, MultipartParser, MAX_FILENAME};
use crate::http::path::{html_escape, map_under, percent_encode_path};
use crate::http::request::Request;
use crate::http::response::Reply;
use crate::routing::Location;

/// The most bytes the multipart parser may hold back between reads.
const MULTIPART_PENDING: usize = 64 * 1024;
/// The most names of ignored (non-file) fields kept for the reply: memory
/// must not grow with the number of parts (SPEC §7).
const MAX_LISTED_FIELDS: usize = 100;

/// Why an upload failed, as a status.
#[derive(Debug)]
pub enum UploadError {
    /// A malformed multipart body.
    BadBody,
    /// The target is a directory, or its directory does not exist.
    Conflict,
    /// A path component longer than the file system allows (as
    /// [`crate::handlers::static_file::io_status`] answers for GET).
    NameTooLong,
    /// The name of another upload's temporary file.
    Forbidden,
    /// Writing failed: disk full, file size limit or quota (507), anything
    /// else (500). The error names the file where it can.
    Io(io::Error),
}

/// Temporary upload files start with this: no request may name one.
pub const TEMP_PREFIX: &str = ".webserv-";

/// Whether a URL path names a temporary upload file (in any segment).
pub fn is_temp_name(path: &str) -> bool {
    // On bytes: a `char` pattern costs several times more, on every GET.
    path.as_bytes()
        .split(|&b| b == b'/')
        .any(|segment| segment.starts_with(TEMP_PREFIX.as_bytes()))
}

impl UploadError {
    pub fn status(&self) -> u16 {
        match self {
            UploadError::BadBody => 400,
            UploadError::Conflict => 409,
            UploadError::NameTooLong => 414,
            UploadError::Forbidden => 403,
            UploadError::Io(err) if is_storage_full(err) => 507,
            UploadError::Io(_) => 500,
        }
    }

    /// What the error log should say, for failures that are the server's.
    pub fn log_message(&self) -> Option<String> {
        match self {
            UploadError::Io(err) => Some(format!("upload failed: {err}")),
            _ => None,
        }
    }
}

/// Out of room: disk or inodes full, `RLIMIT_FSIZE` reached (EFBIG, with
/// SIGXFSZ caught), or a quota (SPEC §9.6: 507).
fn is_storage_full(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::StorageFull | io::ErrorKind::FileTooLarge | io::ErrorKind::QuotaExceeded
    )
}

impl From<io::Error> for UploadError {
    fn from(err: io::Error) -> Self {
        match err.kind() {
            io::ErrorKind::NotFound
            | io::ErrorKind::NotADirectory
            | io::ErrorKind::IsADirectory => UploadError::Conflict,
            _ if err.raw_os_error() == Some(libc::ENAMETOOLONG) => UploadError::NameTooLong,
            _ => UploadError::Io(err),
        }
    }
}

/// A file being written under a temporary name.
#[derive(Debug)]
pub struct TempFile {
    path: PathBuf,
    /// Open while it is written; closed by [`TempFile::close`] so that a
    /// multipart body with many files holds one descriptor, not one per file.
    file: Option<File>,
    committed: bool,
}

impl TempFile {
    /// A new, empty, hidden file in `dir`.
    pub fn create_in(dir: &Path) -> io::Result<TempFile> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        loop {
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let path = dir.join(format!("{TEMP_PREFIX}{}-{n}.part", std::process::id()));
            match OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o644)
                .custom_flags(libc::O_CLOEXEC)
                .open(&path)
            {
                Ok(file) => {
                    return Ok(TempFile {
                        path,
                        file: Some(file),
                        committed: false,
                    })
                }
                Err(err) if err.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(err) => return Err(err),
            }
        }
    }

    /// Appends `data`; an error names the file.
    pub fn write(&mut self, data: &[u8]) -> io::Result<()> {
        let result = match &mut self.file {
            Some(file) => file.write_all(data),
            None => Err(io::Error::other("write to a closed temporary file")),
        };
        result.map_err(|err| {
            io::Error::new(
                err.kind(),
                format!("writing {}: {err}", self.path.display()),
            )
        })
    }

    /// Closes the descriptor; the file stays until committed or dropped.
    pub fn close(&mut self) {
        self.file = None;
    }

    /// Gives the file `name` in `dir`, or `name-1`, `name-2`... before the
    /// extension, whichever is free first. Returns the name used.
    pub fn commit_new(mut self, dir: &Path, name: &str) -> io::Result<String> {
        for n in 0u32.. {
            let candidate = match n {
                0 => name.to_owned(),
                n => suffixed(name, n),
            };
            match fs::hard_link(&self.path, dir.join(&candidate)) {
                Ok(()) => {
                    let _ = fs::remove_file(&self.path);
                    self.committed = true;
                    return Ok(candidate);
                }
                Err(err) if err.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(err) => return Err(err),
            }
        }
        unreachable!("u32 suffixes outnumber the files a directory can hold")
    }

    /// Renames the file over `target`; true if `target` existed.
    pub fn commit_replace(mut self, target: &Path) -> io::Result<bool> {
        let existed = target.symlink_metadata().is_ok();
        fs::rename(&self.path, target)?;
        self.committed = true;
        Ok(existed)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.committed {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// `name` with `-n` before its extension, cut so that it still fits in
/// [`MAX_FILENAME`] bytes (a longer name is `ENAMETOOLONG`, and the upload
/// would fail only because a file of that name already exists).
fn suffixed(name: &str, n: u32) -> String {
    let suffix = format!("-{n}");
    let budget = MAX_FILENAME - suffix.len();
    let (mut stem, mut ext) = split_extension(name);
    if ext.len() > budget / 2 {
        // Not an extension worth keeping: cut the name as a whole.
        (stem, ext) = (name, "");
    }
    let mut cut = stem.len().min(budget - ext.len());
    while !stem.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}{suffix}{ext}", &stem[..cut])
}

/// `report.txt` → (`report`, `.txt`); a leading dot is not an extension.
fn split_extension(name: &str) -> (&str, &str) {
    match name.rfind('.') {
        Some(i) if i > 0 => name.split_at(i),
        _ => (name, ""),
    }
}

/// An upload in progress: the body's bytes go in with [`Upload::write`],
/// and [`Upload::finish`] commits and answers.
#[derive(Debug)]
pub struct Upload {
    kind: Kind,
    /// The URL prefix the stored names are reachable under.
    url_prefix: String,
}

#[derive(Debug)]
enum Kind {
    /// PUT: the body replaces `target`.
    Put {
        file: TempFile,
        target: PathBuf,
    },
    /// POST of a non-multipart body: stored under a new name.
    Raw {
        file: TempFile,
        dir: PathBuf,
        name: String,
    },
    Multipart(Box<MultipartUpload>),
}

#[derive(Debug)]
struct MultipartUpload {
    parser: MultipartParser,
    dir: PathBuf,
    /// Decoded body bytes the parser has not consumed yet.
    pending: Vec<u8>,
    current: Option<(TempFile, String)>,
    done_parts: Vec<(TempFile, String)>,
    fields: Vec<String>,
    finished: bool,
}

impl Upload {
    /// PUT `request.path` into `store`.
    pub fn put(
        request: &Request,
        location: &Location,
        store: &Path,
    ) -> Result<Upload, UploadError> {
        let rest = request
            .path
            .strip_prefix(location.uri.as_str())
            .unwrap_or(&request.path);
        if rest.trim_matches('/').is_empty() || rest.ends_with('/') {
            return Err(UploadError::Conflict);
        }
        if is_temp_name(rest) {
            return Err(UploadError::Forbidden);
        }
        let target = map_under(store, rest);
        // Refused before the body is read, not when renaming after it.
        if target
            .file_name()
            .is_some_and(|name| name.len() > MAX_FILENAME)
        {
            return Err(UploadError::NameTooLong);
        }
        if target.is_dir() {
            return Err(UploadError::Conflict);
        }
        let dir = target.parent().ok_or(UploadError::Conflict)?;
        let file = TempFile::create_in(dir)?;
        Ok(Upload {
            kind: Kind::Put { file, target },
            url_prefix: String::new(),
        })
    }

    /// POST into `store`: multipart parts by their file names, anything
    /// else under a new unique name.
    pub fn post(
        request: &Request,
        location: &Location,
        store: &Path,
    ) -> Result<Upload, UploadError> {
        let url_prefix = format!("{}/", location.uri.trim_end_matches('/'));
        let content_type = request.header_str("content-type").unwrap_or("");
        let kind = match multipart::boundary(content_type) {
            Some(boundary) => Kind::Multipart(Box::new(MultipartUpload::new(&boundary, store))),
            None if content_type.starts_with("multipart/form-data") => {
                return Err(UploadError::BadBody)
            }
            None => Kind::Raw {
                file: TempFile::create_in(store)?,
                dir: store.to_path_buf(),
                name: unique_name(content_type),
            },
        };
        Ok(Upload { kind, url_prefix })
    }

    /// The next piece of the (decoded) body.
    pub fn write(&mut self, data: &[u8]) -> Result<(), UploadError> {
        match &mut self.kind {
            Kind::Put { file, .. } | Kind::Raw { file, .. } => Ok(file.write(data)?),
            Kind::Multipart(upload) => upload.write(data),
        }
    }

    /// The whole body has arrived: commit every file and answer.
    pub fn finish(self) -> Result<Reply, UploadError> {
        match self.kind {
            Kind::Put { file, target } => {
                let replaced = file.commit_replace(&target)?;
                Ok(if replaced {
                    Reply::new(204)
                } else {
                    Reply::new(201).with_body("text/plain; charset=utf-8", b"created\n".to_vec())
                })
            }
            Kind::Raw { file, dir, name } => {
                let stored = file.commit_new(&dir, &name)?;
                Ok(created(&self.url_prefix, &[stored], &[]))
            }
            Kind::Multipart(upload) => {
                if !upload.finished {
                    return Err(UploadError::BadBody);
                }
                let MultipartUpload {
                    done_parts,
                    dir,
                    fields,
                    ..
                } = *upload;
                let mut stored = Vec::new();
                for (file, name) in done_parts {
                    stored.push(file.commit_new(&dir, &name)?);
                }
                Ok(created(&self.url_prefix, &stored, &fields))
            }
        }
    }
}

impl MultipartUpload {
    fn new(boundary: &str, dir: &Path) -> MultipartUpload {
        MultipartUpload {
            parser: MultipartParser::new(boundary),
            dir: dir.to_path_buf(),
            pending: Vec::new(),
            current: None,
            done_parts: Vec::new(),
            fields: Vec::new(),
            finished: false,
        }
    }

    fn write(&mut self, data: &[u8]) -> Result<(), UploadError> {
        self.pending.extend_from_slice(data);
        let mut used = 0;
        loop {
            let (n, event) = self
                .parser
                .step(&self.pending[used..])
                .map_err(|_| UploadError::BadBody)?;
            let start = used;
            used += n;
            match event {
                Event::Part(info) => {
                    let name = info
                        .filename
                        .as_deref()
                        .and_then(multipart::sanitize_filename)
                        .map(unreserved);
                    match name {
                        Some(name) => self.current = Some((TempFile::create_in(&self.dir)?, name)),
                        None if self.fields.len() < MAX_LISTED_FIELDS => {
                            self.fields.push(info.name.unwrap_or_default());
                        }
                        None => {}
                    }
                }
                Event::Data(range) => {
                    if let Some((file, _)) = &mut self.current {
                        file.write(&self.pending[start + range.start..start + range.end])?;
                    }
                }
                Event::PartEnd => {
                    if let Some((mut file, name)) = self.current.take() {
                        file.close();
                        self.done_parts.push((file, name));
                    }
                }
                Event::Done => {
                    self.finished = true;
                    break;
                }
                Event::NeedMore => break,
            }
        }
        self.pending.drain(..used);
        if self.pending.len() > MULTIPART_PENDING {
            return Err(UploadError::BadBody);
        }
        Ok(())
    }
}

/// A client's file name that claims the prefix of temporary files would be
/// stored, then hidden and undeletable: it loses its leading dot
/// (`.webserv-1-2.part` is stored as `webserv-1-2.part`).
fn unreserved(name: String) -> String {
    match name.strip_prefix('.') {
        Some(rest) if name.starts_with(TEMP_PREFIX) => rest.to_owned(),
        _ => name,
    }
}

/// A name for a non-multipart POST body: time, a counter, and an
/// extension from the content type.
fn unique_name(content_type: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mime = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    format!("upload-{millis}-{n}.{}", extension_for(&mime))
}

/// The usual extension of a media type, so that the stored file is served
/// back with the same type. mime_guess lists a type's extensions in
/// alphabetical order (`text/plain` starts with `asm`), so the common
/// types with many extensions are named here; otherwise an extension equal
/// to the subtype (`json`, `png`), else mime_guess's first, else `bin`.
fn extension_for(mime: &str) -> &'static str {
    let preferred = match mime {
        "text/plain" => Some("txt"),
        "text/html" => Some("html"),
        "application/octet-stream" => Some("bin"),
        "application/xml" | "text/xml" => Some("xml"),
        "image/jpeg" => Some("jpg"),
        "audio/mpeg" => Some("mp3"),
        "video/mpeg" => Some("mpg"),
        "application/javascript" | "text/javascript" => Some("js"),
        _ => None,
    };
    if let Some(ext) = preferred {
        return ext;
    }
    let Some(exts) = mime_guess::get_mime_extensions_str(mime) else {
        return "bin";
    };
    let subtype = mime.split_once('/').map_or("", |(_, sub)| sub);
    let subtype = subtype.strip_prefix("x-").unwrap_or(subtype);
    exts.iter()
        .find(|ext| **ext == subtype)
        .or_else(|| exts.first())
        .copied()
        .unwrap_or("bin")
}

/// 201 with `Location` of the first stored file and a page listing them.
fn created(url_prefix: &str, stored: &[String], fields: &[String]) -> Reply {
    let links: String = stored
        .iter()
        .map(|name| {
            let url = format!("{url_prefix}{}", percent_encode_path(name));
            format!(
                "<li><a href=\"{}\">{}</a></li>\n",
                html_escape(&url),
                html_escape(name)
            )
        })
        .collect();
    let ignored = if fields.is_empty() {
        String::new()
    } else {
        let names: Vec<String> = fields.iter().map(|f| html_escape(f)).collect();
        format!(
            "<p>Fields that are not files (ignored): {}</p>\n",
            names.join(", ")
        )
    };
    // The store's own URL: where its listing is, when autoindex is on.
    let store = html_escape(url_prefix);
    let body = format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Stored</title>\n\
         <style>body{{font-family:system-ui,sans-serif;margin:2em auto;max-width:40em}}</style></head>\n\
         <body><h1>Stored {} file(s)</h1>\n<ul>\n{links}</ul>\n{ignored}\
         <p><a href=\"{store}\">All files in {store}</a> · <a href=\"javascript:history.back()\">Back</a></p>\n\
         </body></html>\n",
        stored.len()
    );
    let reply = Reply::new(201).with_body("text/html; charset=utf-8", body.into_bytes());
    match stored.first() {
        Some(first) => reply.with_header(
            "Location",
            format!("{url_prefix}{}", percent_encode_path(first)),
        ),
        None => reply,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_file_vanishes_unless_committed() {
        let dir = tempfile::tempdir().unwrap();
        let mut t = TempFile::create_in(dir.path()).unwrap();
        t.write(b"partial").unwrap();
        drop(t);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn commit_new_never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        let names: Vec<String> = (0..3)
            .map(|i| {
                let mut t = TempFile::create_in(dir.path()).unwrap();
                t.write(format!("v{i}").as_bytes()).unwrap();
                t.commit_new(dir.path(), "a.txt").unwrap()
            })
            .collect();
        assert_eq!(names, ["a.txt", "a-1.txt", "a-2.txt"]);
        assert_eq!(fs::read(dir.path().join("a.txt")).unwrap(), b"v0");
        assert_eq!(fs::read(dir.path().join("a-2.txt")).unwrap(), b"v2");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 3);
    }

    #[test]
    fn commit_replace_reports_replacement() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("f");
        let t = TempFile::create_in(dir.path()).unwrap();
        assert!(!t.commit_replace(&target).unwrap());
        let t = TempFile::create_in(dir.path()).unwrap();
        assert!(t.commit_replace(&target).unwrap());
    }

    #[test]
    fn raw_posts_are_named_after_their_type() {
        let table: &[(&str, &str)] = &[
            ("text/plain", "txt"),
            ("Text/Plain; charset=utf-8", "txt"),
            ("application/octet-stream", "bin"),
            ("text/html", "html"),
            ("image/jpeg", "jpg"),
            ("application/json", "json"),
            ("image/png", "png"),
            ("application/pdf", "pdf"),
            ("text/csv", "csv"),
            ("application/x-no-such-type", "bin"),
            ("", "bin"),
        ];
        for &(content_type, ext) in table {
            let name = unique_name(content_type);
            assert!(
                name.ends_with(&format!(".{ext}")),
                "{content_type:?}: {name}"
            );
            let guessed = mime_guess::from_path(&name).first_or_octet_stream();
            if ext != "bin" {
                assert!(
                    content_type
                        .to_ascii_lowercase()
                        .starts_with(guessed.essence_str()),
                    "{content_type:?} is served back as {guessed}"
                );
            }
        }
    }

    #[test]
    fn io_errors_map_to_statuses() {
        let table: Vec<(io::Error, u16)> = vec![
            (io::ErrorKind::NotFound.into(), 409),
            (io::ErrorKind::NotADirectory.into(), 409),
            (io::ErrorKind::IsADirectory.into(), 409),
            (io::Error::from_raw_os_error(libc::ENAMETOOLONG), 414),
            (io::Error::from_raw_os_error(libc::ENOSPC), 507),
            (io::Error::from_raw_os_error(libc::EFBIG), 507),
            (io::Error::from_raw_os_error(libc::EDQUOT), 507),
            (io::ErrorKind::PermissionDenied.into(), 500),
        ];
        for (err, status) in table {
            let name = err.to_string();
            assert_eq!(UploadError::from(err).status(), status, "{name}");
        }
    }

    #[test]
    fn suffixed_names_fit_in_a_file_name() {
        let long = "a".repeat(MAX_FILENAME);
        let long_ext = format!("{}.txt", "b".repeat(MAX_FILENAME - 4));
        let huge_ext = format!("x.{}", "c".repeat(MAX_FILENAME - 2));
        let wide = format!("{}.txt", "é".repeat(125));
        let table: &[(&str, u32, String)] = &[
            ("a.txt", 1, "a-1.txt".into()),
            ("a.tar.gz", 12, "a.tar-12.gz".into()),
            (".profile", 2, ".profile-2".into()),
            (&long, 1, format!("{}-1", "a".repeat(MAX_FILENAME - 2))),
            (
                &long_ext,
                1,
                format!("{}-1.txt", "b".repeat(MAX_FILENAME - 6)),
            ),
            (
                &huge_ext,
                3,
                format!("x.{}-3", "c".repeat(MAX_FILENAME - 4)),
            ),
            (&wide, 1, format!("{}-1.txt", "é".repeat(124))),
        ];
        for (name, n, want) in table {
            let got = suffixed(name, *n);
            assert_eq!(&got, want, "{name:?}");
            assert!(got.len() <= MAX_FILENAME, "{}", got.len());
        }
    }

    #[test]
    fn commit_new_of_a_longest_name_twice() {
        let dir = tempfile::tempdir().unwrap();
        let name = format!("{}.bin", "n".repeat(MAX_FILENAME - 4));
        let first = TempFile::create_in(dir.path()).unwrap();
        assert_eq!(first.commit_new(dir.path(), &name).unwrap(), name);
        let second = TempFile::create_in(dir.path()).unwrap();
        let stored = second.commit_new(dir.path(), &name).unwrap();
        assert_eq!(stored.len(), MAX_FILENAME);
        assert!(stored.ends_with("-1.bin"), "{stored}");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 2);
    }

    fn open_fds() -> usize {
        fs::read_dir("/proc/self/fd").unwrap().count()
    }

    #[test]
    fn many_file_parts_do_not_hold_a_descriptor_each() {
        let dir = tempfile::tempdir().unwrap();
        let mut upload = MultipartUpload::new("B", dir.path());
        let before = open_fds();
        let parts = 300;
        for i in 0..parts {
            let part = format!(
                "--B\r\nContent-Disposition: form-data; name=f; filename=f{i}\r\n\r\n{i}\r\n"
            );
            upload.write(part.as_bytes()).unwrap();
        }
        upload.write(b"--B--\r\n").unwrap();
        assert!(upload.finished);
        // Other tests run meanwhile: allow some slack, far below `parts`.
        assert!(open_fds() < before + 50, "{} fds open", open_fds());
        assert_eq!(upload.done_parts.len(), parts);
        let reply = Upload {
            kind: Kind::Multipart(Box::new(upload)),
            url_prefix: "/u/".into(),
        }
        .finish()
        .unwrap();
        assert_eq!(reply.status, 201);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), parts);
        assert_eq!(fs::read(dir.path().join("f123")).unwrap(), b"123");
    }

    #[test]
    fn memory_for_ignored_fields_does_not_grow_with_their_number() {
        let dir = tempfile::tempdir().unwrap();
        let mut upload = MultipartUpload::new("B", dir.path());
        for i in 0..10 * MAX_LISTED_FIELDS {
            let part = format!("--B\r\nContent-Disposition: form-data; name=field{i}\r\n\r\nv\r\n");
            upload.write(part.as_bytes()).unwrap();
        }
        assert_eq!(upload.fields.len(), MAX_LISTED_FIELDS);
        assert_eq!(upload.fields[0], "field0");
    }

    #[test]
    fn extensions_split_before_the_last_dot() {
        assert_eq!(split_extension("a.tar.gz"), ("a.tar", ".gz"));
        assert_eq!(split_extension(".profile"), (".profile", ""));
        assert_eq!(split_extension("noext"), ("noext", ""));
    }
}
