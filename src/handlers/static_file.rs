//! GET and HEAD of files and directories under a `root` or `alias`.
//!
//! Steps: map the URL path to a file system path (never outside the base),
//! open it without following into a FIFO's blocking open, then by kind:
//! - a directory without a trailing `/`: 301 to the path with `/`;
//! - a directory: its first existing `index` file, else the autoindex
//!   listing, else 403;
//! - a regular file: 304 when the validators match, 206/416 for a `Range`,
//!   else 200; the body is the open file, streamed by the server.

use std::fs::{File, Metadata, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::handlers::{autoindex, error_page};
use crate::http::conditional;
use crate::http::date::fmt_http_date;
use crate::http::gzip;
use crate::http::path::{map_under, percent_encode_path};
use crate::http::range::{parse_range, RangeOutcome};
use crate::http::request::Request;
use crate::http::response::{Body, Reply};
use crate::routing::{Location, Server};

/// Serves `request.path` from `location`'s root or alias.
pub fn get(request: &Request, server: &Server, location: &Location) -> Reply {
    let Some(fs_path) = map_path(location, &request.path) else {
        return error_page::reply(404, server, location);
    };
    match open(&fs_path) {
        Ok((_, meta)) if meta.is_dir() => directory(request, server, location, &fs_path),
        Ok(_) if request.path.ends_with('/') => error_page::reply(404, server, location),
        Ok((file, meta)) if meta.is_file() => regular(request, location, file, &meta, &fs_path),
        Ok(_) => error_page::reply(403, server, location),
        Err(err) => error_page::reply(io_status(&err), server, location),
    }
}

/// SPEC §3 mapping: `root R` maps P to R + P; `alias A` on location L maps
/// P to A + (P without L). `None` when the location has neither.
pub fn map_path(location: &Location, path: &str) -> Option<PathBuf> {
    if let Some(alias) = &location.alias {
        let rest = path.strip_prefix(location.uri.as_str()).unwrap_or(path);
        return Some(map_under(alias, rest));
    }
    location.root.as_deref().map(|root| map_under(root, path))
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

fn directory(request: &Request, server: &Server, location: &Location, dir: &Path) -> Reply {
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
        if let Ok((file, meta)) = open(&dir.join(name)) {
            if meta.is_file() {
                return regular(request, location, file, &meta, &dir.join(name));
            }
        }
    }
    if location.autoindex {
        return match autoindex::render(&request.path, dir) {
            Ok(html) => Reply::new(200).with_body("text/html; charset=utf-8", html),
            Err(err) => error_page::reply(io_status(&err), server, location),
        };
    }
    error_page::reply(403, server, location)
}

/// A regular file, or with `gzip_static on` its `FILE.gz` (a regular file)
/// for a client that accepts gzip: with the original's type,
/// `Content-Encoding: gzip`, and its own validators and ranges (as nginx).
/// Both answers say `Vary: Accept-Encoding`, as either may be the other's.
fn regular(
    request: &Request,
    location: &Location,
    file: File,
    meta: &Metadata,
    path: &Path,
) -> Reply {
    if !location.output.gzip_static {
        return file_reply(request, file, meta, path);
    }
    let mut gz_path = path.as_os_str().to_owned();
    gz_path.push(".gz");
    let compressed = match open(Path::new(&gz_path)) {
        Ok((gz, gz_meta)) if gz_meta.is_file() => Some((gz, gz_meta)),
        _ => None,
    };
    let Some((gz, gz_meta)) = compressed else {
        return file_reply(request, file, meta, path);
    };
    if !gzip::accepts_gzip(request.header_str("accept-encoding")) {
        return file_reply(request, file, meta, path).with_header("Vary", "Accept-Encoding");
    }
    let reply = file_reply(request, gz, &gz_meta, path);
    match reply.status {
        200 | 206 | 304 => reply
            .with_header("Content-Encoding", "gzip")
            .with_header("Vary", "Accept-Encoding"),
        _ => reply,
    }
}

/// 200, 206, 304 or 416 for an open regular file; the type is `path`'s.
pub fn file_reply(request: &Request, file: File, meta: &Metadata, path: &Path) -> Reply {
    let len = meta.len();
    let mtime = meta.modified().unwrap_or(std::time::UNIX_EPOCH);
    let etag = conditional::etag(mtime, len);
    let last_modified = fmt_http_date(mtime);
    if conditional::not_modified(
        request.header_str("if-none-match"),
        request.header_str("if-modified-since"),
        &etag,
        mtime,
    ) {
        return Reply::new(304)
            .with_header("ETag", etag)
            .with_header("Last-Modified", last_modified);
    }
    let content_type = mime_guess::from_path(path)
        .first_raw()
        .unwrap_or("application/octet-stream");
    let reply = Reply::new(200)
        .with_header("Content-Type", content_type)
        .with_header("Last-Modified", last_modified)
        .with_header("ETag", etag.clone())
        .with_header("Accept-Ranges", "bytes");
    let range = request
        .header_str("range")
        .filter(|_| if_range_holds(request, &etag))
        .map_or(RangeOutcome::Full, |h| parse_range(h, len));
    match range {
        RangeOutcome::Full => Reply {
            body: Body::File {
                file,
                offset: 0,
                len,
            },
            ..reply
        },
        RangeOutcome::Partial { start, end } => Reply {
            status: 206,
            body: Body::File {
                file,
                offset: start,
                len: end - start + 1,
            },
            ..reply.with_header("Content-Range", format!("bytes {start}-{end}/{len}"))
        },
        RangeOutcome::Unsatisfiable => {
            error_page::builtin(416).with_header("Content-Range", format!("bytes */{len}"))
        }
    }
}

/// RFC 9110 §13.1.5: a `Range` counts only if `If-Range` (when present)
/// still names the current representation.
fn if_range_holds(request: &Request, etag: &str) -> bool {
    request
        .header_str("if-range")
        .is_none_or(|v| v.trim() == etag)
}
