//! DELETE: removes one file, mapped like GET through `root`/`alias`, or,
//! in a location with `upload_store`, like PUT (store + path without the
//! location prefix). Never a directory, never outside the mapped base.

use std::fs;

use crate::handlers::error_page;
use crate::handlers::static_file::{io_status, map_path};
use crate::handlers::upload::is_temp_name;
use crate::http::path::map_under;
use crate::http::request::Request;
use crate::http::response::Reply;
use crate::routing::Location;

pub fn delete(request: &Request, location: &Location) -> Reply {
    let target = match &location.upload_store {
        Some(store) => {
            let rest = request
                .path
                .strip_prefix(location.uri.as_str())
                .unwrap_or(&request.path);
            Some(map_under(store, rest))
        }
        None => map_path(location, &request.path),
    };
    let Some(target) = target else {
        return error_page::reply(404, location);
    };
    // Another upload's file in progress is not there to be removed.
    if location.upload_store.is_some() && is_temp_name(&request.path) {
        return error_page::reply(403, location);
    }
    let status = match fs::symlink_metadata(&target) {
        Ok(meta) if meta.is_dir() || request.path.ends_with('/') => 403,
        Ok(_) => match fs::remove_file(&target) {
            Ok(()) => 204,
            Err(err) => io_status(&err),
        },
        Err(err) => io_status(&err),
    };
    match status {
        204 => Reply::new(204),
        status => error_page::reply(status, location),
    }
}
