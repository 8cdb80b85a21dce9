//! GET and HEAD of files and directories under a `root` or `alias`.
//!
//! Steps: map the URL path to a file system path (never outside the base),
//! open it through the open-file cache ([`crate::cache`]: a hit costs no
//! system call; a miss opens without following into a FIFO's blocking
//! open), then by kind:
//! - a directory without a trailing `/`: 301 to the path with `/`;
//! - a directory: its first existing `index` file, else the autoindex
//!   listing, else 403;
//! - a regular file: 304 when the validators match, 206/416 for a `Range`,
//!   else 200; the body is the cached bytes or the open file, streamed by
//!   the server, behind the cached file's prepared header lines.

use std::fs::{File, Metadata, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Instant;

use crate::cache::{Entry, FileCache, Kind, Stored};
use crate::handlers::{autoindex, error_page};
use crate::http::conditional;
use crate::http::gzip;
use crate::http::path::{map_under_into, percent_encode_path};
use crate::http::range::{parse_range, RangeOutcome};
use crate::http::request::Request;
use crate::http::response::write_header;
use crate::http::response::{Body, Reply};
use crate::routing::Location;

/// How the static handler reaches files: through the process's open-file
/// cache (SPEC §9.5).
pub struct Files<'a> {
    pub cache: &'a mut FileCache,
    /// A path buffer kept between requests: a mapped path allocates none.
    pub spare_path: &'a mut PathBuf,
    /// The cache's queue of changes was drained after this request
    /// arrived (see [`crate::cache`]).
    pub drained: bool,
    pub now: Instant,
}

impl Files<'_> {
    fn open(&mut self, path: &Path, location: &Location) -> io::Result<Rc<Entry>> {
        let settings = location.open_file_cache.as_ref();
        let entry = self.cache.open(path, settings, self.drained, self.now);
        // One drain per request is enough.
        self.drained = true;
        entry
    }
}

/// Serves `request.path` from `location`'s root or alias.
pub fn get(request: &Request, location: &Location, files: &mut Files) -> Reply {
    let mut fs_path = std::mem::take(files.spare_path);
    let reply = if map_path_into(location, &request.path, &mut fs_path) {
        serve(request, location, &fs_path, files)
    } else {
        error_page::reply(404, location)
    };
    *files.spare_path = fs_path;
    reply
}

fn serve(request: &Request, location: &Location, fs_path: &Path, files: &mut Files) -> Reply {
    match files.open(fs_path, location) {
        Ok(entry) if entry.kind == Kind::Dir => directory(request, location, fs_path, files),
        Ok(_) if request.path.ends_with('/') => error_page::reply(404, location),
        Ok(entry) if entry.kind == Kind::File => regular(request, location, &entry, fs_path, files),
        Ok(_) => error_page::reply(403, location),
        Err(err) => error_page::reply(io_status(&err), location),
    }
}

/// SPEC §3 mapping: `root R` maps P to R + P; `alias A` on location L maps
/// P to A + (P without L). `None` when the location has neither.
pub fn map_path(location: &Location, path: &str) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    map_path_into(location, path, &mut out).then_some(out)
}

/// [`map_path`] into `out`, whose allocation is reused; `false` for
/// `None`.
fn map_path_into(location: &Location, path: &str, out: &mut PathBuf) -> bool {
    if let Some(alias) = &location.alias {
        let rest = path.strip_prefix(location.uri.as_str()).unwrap_or(path);
        map_under_into(alias, rest, out);
        return true;
    }
    match location.root.as_deref() {
        Some(root) => {
            map_under_into(root, path, out);
            true
        }
        None => false,
    }
}

/// Opens for reading without blocking on a FIFO, and stats the open file,
/// so the kind checked is the kind served.
pub fn open(path: &Path) -> io::Result<(File, Metadata)> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    let meta = file.metadata()?;
    Ok((file, meta))
}

/// The status for a failed open: missing is 404, forbidden 403.
pub fn io_status(err: &io::Error) -> u16 {
    match err.kind() {
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory => 404,
        io::ErrorKind::PermissionDenied => 403,
        _ if err.raw_os_error() == Some(libc::ENAMETOOLONG) => 414,
        _ if err.raw_os_error() == Some(libc::ELOOP) => 403,
        _ => 500,
    }
}

fn directory(request: &Request, location: &Location, dir: &Path, files: &mut Files) -> Reply {
    if !request.path.ends_with('/') {
        let mut target = percent_encode_path(&request.path);
        target.push('/');
        if let Some(query) = request.query() {
            target.push('?');
            target.push_str(query);
        }
        return error_page::builtin(301).with_header("Location", target);
    }
    for name in location.index.iter() {
        let path = dir.join(name);
        if let Ok(entry) = files.open(&path, location) {
            if entry.kind == Kind::File {
                return regular(request, location, &entry, &path, files);
            }
        }
    }
    if location.autoindex {
        return match autoindex::render(&request.path, dir) {
            Ok(html) => Reply::new(200).with_body("text/html; charset=utf-8", html),
            Err(err) => error_page::reply(io_status(&err), location),
        };
    }
    error_page::reply(403, location)
}

/// A regular file, or with `gzip_static on` its `FILE.gz` (a regular file)
/// for a client that accepts gzip: with the original's type,
/// `Content-Encoding: gzip`, and its own validators and ranges (as nginx).
/// Both answers say `Vary: Accept-Encoding`, as either may be the other's.
/// The `.gz` goes through the open-file cache like any file.
fn regular(
    request: &Request,
    location: &Location,
    entry: &Entry,
    path: &Path,
    files: &mut Files,
) -> Reply {
    if !location.output.gzip_static {
        return file_reply(request, entry);
    }
    let mut gz_path = path.as_os_str().to_owned();
    gz_path.push(".gz");
    let gz = match files.open(Path::new(&gz_path), location) {
        Ok(gz) if gz.kind == Kind::File => gz,
        _ => return file_reply(request, entry),
    };
    if !gzip::accepts_gzip(request.header_str("accept-encoding")) {
        return file_reply(request, entry).with_header("Vary", "Accept-Encoding");
    }
    let mut reply = file_reply(request, &gz);
    // A 200 or 206 carries the `.gz`'s own lines, which name its type; the
    // original's is sent (a 304 has none, a 416 the built-in page's).
    if matches!(reply.status, 200 | 206) {
        let content_type = mime_guess::from_path(path)
            .first_raw()
            .unwrap_or("application/octet-stream");
        let mut head = Vec::with_capacity(160);
        write_header(&mut head, "Content-Type", content_type.as_bytes());
        write_header(&mut head, "Last-Modified", gz.last_modified.as_bytes());
        write_header(&mut head, "ETag", gz.etag.as_bytes());
        write_header(&mut head, "Accept-Ranges", b"bytes");
        reply.prepared = Some(head.into());
    }
    match reply.status {
        200 | 206 | 304 => reply
            .with_header("Content-Encoding", "gzip")
            .with_header("Vary", "Accept-Encoding"),
        _ => reply,
    }
}

/// 200, 206, 304 or 416 for an opened regular file.
pub fn file_reply(request: &Request, entry: &Entry) -> Reply {
    let len = entry.len;
    if conditional::not_modified(
        request.header_str("if-none-match"),
        request.header_str("if-modified-since"),
        &entry.etag,
        entry.mtime,
    ) {
        return Reply::new(304)
            .with_header("ETag", entry.etag.clone())
            .with_header("Last-Modified", entry.last_modified.clone());
    }
    let range = request
        .header_str("range")
        .filter(|_| if_range_holds(request, &entry.etag))
        .map_or(RangeOutcome::Full, |h| parse_range(h, len));
    let (status, start, end) = match range {
        RangeOutcome::Full => (200, 0, len),
        RangeOutcome::Partial { start, end } => (206, start, end + 1),
        RangeOutcome::Unsatisfiable => {
            return error_page::builtin(416).with_header("Content-Range", format!("bytes */{len}"))
        }
    };
    let body = match &entry.body {
        Stored::Bytes(data) => Body::Shared {
            data: data.clone(),
            start: usize::try_from(start).unwrap_or(usize::MAX),
            end: usize::try_from(end).unwrap_or(usize::MAX),
            gzipped: (status == 200).then(|| entry.gzipped.clone()),
        },
        Stored::File(file) => Body::File {
            file: file.clone(),
            offset: start,
            len: end - start,
            gzipped: (status == 200).then(|| entry.gzipped.clone()),
        },
        Stored::None => Body::Empty,
    };
    let reply = Reply {
        status,
        prepared: Some(entry.head.clone()),
        headers: Vec::new(),
        body,
        error_page: None,
    };
    match status {
        206 => reply.with_header("Content-Range", format!("bytes {start}-{}/{len}", end - 1)),
        _ => reply,
    }
}
/// RFC 9110 §13.1.5: a `Range` counts only if `If-Range` (when present)
/// still names the current representation.
fn if_range_holds(request: &Request, etag: &str) -> bool {
    request
        .header_str("if-range")
        .is_none_or(|v| v.trim() == etag)
}
