//! Error replies: the location's `error_page` for the code, served through
//! the same server with the original status, else the built-in page made
//! from `errors/error.html` (embedded in the binary).
//!
//! An error page is served as a plain file only: if it is missing, or maps
//! to a location that cannot serve a file, the built-in page is used, so an
//! error page can never loop (nginx's `recursive_error_pages off`).

use crate::handlers::static_file::{map_path, open};
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;

use crate::http::response::{Body, Reply};
use crate::http::status::reason;
use crate::routing::{Location, Server};

const TEMPLATE: &str = include_str!("../../errors/error.html");

/// The reply for an error `status` met in `location` of `server`.
pub fn reply(status: u16, server: &Server, location: &Location) -> Reply {
    match location.error_pages.get(&status) {
        Some(uri) if uri.starts_with("http://") || uri.starts_with("https://") => {
            // As nginx: an error page on another site is a redirect to it.
            builtin(302).with_header("Location", uri.clone())
        }
        Some(uri) => custom(status, uri, server).unwrap_or_else(|| builtin(status)),
        None => builtin(status),
    }
}

/// The built-in page for `status`, rendered once per status and process
/// (a 404 flood renders nothing).
pub fn builtin(status: u16) -> Reply {
    thread_local! {
        static PAGES: RefCell<HashMap<u16, Arc<[u8]>>> = RefCell::new(HashMap::new());
    }
    let data = PAGES.with_borrow_mut(|pages| {
        Arc::clone(pages.entry(status).or_insert_with(|| {
            TEMPLATE
                .replace("{{code}}", &status.to_string())
                .replace("{{reason}}", reason(status))
                .into_bytes()
                .into()
        }))
    });
    let end = data.len();
    let mut reply = Reply::new(status).with_header("Content-Type", "text/html; charset=utf-8");
    reply.body = Body::Shared {
        data,
        start: 0,
        end,
    };
    reply
}

fn custom(status: u16, uri: &str, server: &Server) -> Option<Reply> {
    let path = uri.split('?').next().unwrap_or(uri);
    let location = server.select_location(path);
    if location.ret.is_some() || location.proxy.is_some() {
        return None;
    }
    let fs_path = map_path(location, path)?;
    let (file, meta) = open(&fs_path).ok()?;
    if !meta.is_file() {
        return None;
    }
    let content_type = mime_guess::from_path(&fs_path)
        .first_raw()
        .unwrap_or("text/html");
    Some(Reply {
        status,
        prepared: None,
        headers: vec![("Content-Type", content_type.to_owned())],
        body: Body::File {
            file: Arc::new(file),
            offset: 0,
            len: meta.len(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_page_names_code_and_reason() {
        let reply = builtin(404);
        assert_eq!(reply.status, 404);
        let Body::Shared { data, start, end } = reply.body else {
            panic!("built-in pages are shared bytes");
        };
        let body = String::from_utf8(data[start..end].to_vec()).unwrap();
        assert!(body.contains("404") && body.contains("Not Found"), "{body}");
        assert!(!body.contains("{{"));
    }
}
