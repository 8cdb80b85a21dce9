//! Handlers turn a routed request into a reply without touching sockets.
//!
//! [`handle`] applies a location's rules in nginx's order: `return` first,
//! then the method check, then the content handler (static file, directory
//! index or listing). Every error reply goes through [`error_page::reply`],
//! so `error_page` and the built-in pages apply everywhere alike.

pub mod autoindex;
pub mod cgi;
pub mod delete;
pub mod error_page;
pub mod proxy;
pub mod static_file;
pub mod upload;

use crate::handlers::cgi::Script;
use crate::handlers::upload::{Upload, UploadError};
use crate::http::request::Request;
use crate::http::response::Reply;
use crate::http::vars;
use crate::http::Method;
use crate::routing::{Location, MethodSet, Return, Server};

/// What the server must do next for a request.
#[derive(Debug)]
pub enum Action {
    /// Send this reply (after reading and discarding any request body).
    Reply(Reply),
    /// Read the body into this upload, then send what it answers.
    Upload(Upload),
    /// Run this CGI script.
    Cgi(Script),
    /// Forward the request to the location's `proxy_pass` upstream.
    Proxy,
}
/// Routes `request` within `server` (SPEC §3, §4).
pub fn handle(request: &Request, server: &Server) -> Action {
    let location = server.select_location(&request.path);
    if location.proxy.is_some() {
        return proxied(request, server, location);
    }
    let Some(method) = request.method else {
        return Action::Reply(error_page::reply(501, server, location));
    };
    if let Some(ret) = &location.ret {
        return Action::Reply(redirect_or_text(ret, request, server, location));
    }
    if !location.methods.contains(method) {
        return Action::Reply(method_not_allowed(location.methods, server, location));
    }
    if matches!(method, Method::Get | Method::Head | Method::Post) {
        if let Some(script) = cgi_script(request, location) {
            return Action::Cgi(script);
        }
    }
    match method {
        // Another upload's file in progress is not there to be read (its
        // name is guessable); PUT and DELETE refuse it alike.
        Method::Get | Method::Head if upload::is_temp_name(&request.path) => {
            Action::Reply(error_page::reply(403, server, location))
        }
        Method::Get | Method::Head => Action::Reply(static_file::get(request, server, location)),
        Method::Post | Method::Put => match &location.upload_store {
            Some(store) => {
                let upload = if method == Method::Put {
                    Upload::put(request, location, store)
                } else {
                    Upload::post(request, location, store)
                };
                upload_action(upload, server, location)
            }
            None => Action::Reply(method_not_allowed(location.methods, server, location)),
        },
        Method::Delete => Action::Reply(delete::delete(request, server, location)),
    }
}

/// A location with `proxy_pass` forwards every method token unless it sets
/// `methods` itself (SPEC §9.3); a server-level `methods` does not apply.
fn proxied(request: &Request, server: &Server, location: &Location) -> Action {
    if let Some(ret) = &location.ret {
        return Action::Reply(redirect_or_text(ret, request, server, location));
    }
    match &location.proxy_methods {
        Some(allowed) if !allowed.iter().any(|m| m == request.method_str()) => {
            let reply = error_page::reply(405, server, location);
            Action::Reply(reply.with_header("Allow", allowed.join(", ")))
        }
        _ => Action::Proxy,
    }
}

/// The CGI script `request` names: the path itself, or for a directory
/// the first existing `index` file, when its extension has a `cgi` handler.
fn cgi_script(request: &Request, location: &Location) -> Option<Script> {
    if location.cgi.is_empty() {
        return None;
    }
    if !request.path.ends_with('/') {
        return cgi::find_script(location, &request.path);
    }
    let dir = static_file::map_path(location, &request.path)?;
    let index = location
        .index
        .iter()
        .find(|name| dir.join(name).is_file())?;
    cgi::find_script(location, &format!("{}{index}", request.path))
}

fn upload_action(
    upload: Result<Upload, UploadError>,
    server: &Server,
    location: &Location,
) -> Action {
    match upload {
        Ok(upload) => Action::Upload(upload),
        Err(err) => Action::Reply(error_page::reply(err.status(), server, location)),
    }
}

/// `return CODE [URL or TEXT]`: a redirect with `Location`, a text body, or
/// the code's error page (as nginx does for `return 404;`).
fn redirect_or_text(
    ret: &Return,
    request: &Request,
    server: &Server,
    location: &Location,
) -> Reply {
    let is_redirect = matches!(ret.code, 301 | 302 | 303 | 307 | 308);
    // `return 301 https://$host$request_uri;`: variables are expanded per
    // request; a value without any is used as written.
    let expanded = |value: &String| {
        if vars::has_variables(value) {
            vars::expand(value, request, |_, _| false)
        } else {
            value.clone().into_bytes()
        }
    };
    match &ret.target {
        Some(url) if is_redirect => {
            // A byte that could end the header early never reaches it.
            let mut url = expanded(url);
            url.retain(|&b| !matches!(b, b'\r' | b'\n' | 0));
            let url = String::from_utf8_lossy(&url).into_owned();
            error_page::builtin(ret.code).with_header("Location", url)
        }
        Some(text) => Reply::new(ret.code).with_body("text/plain", expanded(text)),
        None if ret.code >= 400 => error_page::reply(ret.code, server, location),
        None => error_page::builtin(ret.code),
    }
}

/// 405 with the `Allow` header listing what the location accepts.
pub fn method_not_allowed(methods: MethodSet, server: &Server, location: &Location) -> Reply {
    let allow = methods
        .iter()
        .map(Method::as_str)
        .collect::<Vec<_>>()
        .join(", ");
    error_page::reply(405, server, location).with_header("Allow", allow)
}
