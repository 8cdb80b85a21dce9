//! Error replies: the built-in page made from `errors/error.html`
//! (embedded in the binary), marked with the location's `error_page` URI
//! for the code when it has one.
//!
//! The URI is an internal redirect (SPEC §9.4, as nginx): the connection
//! serves it as a GET (HEAD stays HEAD) through location choice again, so
//! a file, a directory's index, a CGI script or a proxied location can be
//! the page, sent with the original status. At most one redirect: an error
//! while serving the page sends the built-in page of the original error.

use std::cell::RefCell;
use std::sync::Arc;

use crate::http::response::{Body, Reply};
use crate::http::status::reason;
use crate::routing::Location;

const TEMPLATE: &str = include_str!("../../errors/error.html");

/// The reply for an error `status` met in `location` of `server`.
pub fn reply(status: u16, location: &Location) -> Reply {
    match location.error_pages.get(&status) {
        Some(uri) if uri.starts_with("http://") || uri.starts_with("https://") => {
            // As nginx: an error page on another site is a redirect to it.
            builtin(302).with_header("Location", uri.clone())
        }
        Some(uri) => Reply {
            error_page: Some(uri.clone()),
            ..builtin(status)
        },
        None => builtin(status),
    }
}

/// The built-in page for `status`, rendered once per status and process
/// (a 404 flood renders nothing). The pages are few, so a list searched
/// in order finds one sooner than a hashed map.
pub fn builtin(status: u16) -> Reply {
    thread_local! {
        static PAGES: RefCell<Vec<(u16, Arc<[u8]>)>> = const { RefCell::new(Vec::new()) };
        /// Every page's one header, as prepared lines (a cached file's
        /// are kept so): a reply allocates no header list for it.
        static HEAD: Arc<[u8]> = Arc::from(&b"Content-Type: text/html; charset=utf-8\r\n"[..]);
    }
    let data = PAGES.with_borrow_mut(|pages| {
        if let Some((_, page)) = pages.iter().find(|(code, _)| *code == status) {
            return Arc::clone(page);
        }
        let page: Arc<[u8]> = TEMPLATE
            .replace("{{code}}", &status.to_string())
            .replace("{{reason}}", reason(status))
            .into_bytes()
            .into();
        pages.push((status, Arc::clone(&page)));
        page
    });
    let end = data.len();
    let mut reply = Reply::new(status);
    reply.prepared = Some(HEAD.with(Arc::clone));
    reply.body = Body::Shared {
        data,
        start: 0,
        end,
        gzipped: None,
    };
    reply
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_page_names_code_and_reason() {
        let reply = builtin(404);
        assert_eq!(reply.status, 404);
        assert_eq!(
            reply.header("content-type"),
            Some("text/html; charset=utf-8")
        );
        let Body::Shared {
            data, start, end, ..
        } = reply.body
        else {
            panic!("built-in pages are shared bytes");
        };
        let body = String::from_utf8(data[start..end].to_vec()).unwrap();
        assert!(body.contains("404") && body.contains("Not Found"), "{body}");
        assert!(!body.contains("{{"));
    }
}
