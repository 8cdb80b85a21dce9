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
pub mod output;
pub mod proxy;
pub mod static_file;
pub mod upload;

use crate::handlers::cgi::Script;
use crate::handlers::static_file::Files;
use crate::handlers::upload::{Upload, UploadError};
use crate::http::request::Request;
use crate::http::response::Reply;
use crate::http::vars;
use crate::http::Method;
use std::path::Path;

use crate::routing::{Location, MethodSet, ProxyPass, Return, Server};

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
/// What [`handle`] does with a request in its location, decided before
/// anything is read, written or run: `webserv route` shows the same plan,
/// so it can never disagree with the server.
#[derive(Debug)]
pub enum Plan<'a> {
    /// A method token the server does not implement: 501.
    NotImplemented,
    /// `return CODE [URL or TEXT]`.
    Return(&'a Return),
    /// The method is not in `methods` (or POST/PUT without a store): 405.
    MethodNotAllowed,
    /// `proxy_pass`.
    Proxy(&'a ProxyPass),
    /// A proxied location's own `methods` does not list the method: 405
    /// with these in `Allow`.
    ProxyMethodNotAllowed(&'a [String]),
    /// The path (or its directory's index) is a CGI script.
    Cgi(Script),
    /// Another upload's temporary file: 403.
    UploadInProgress,
    /// GET or HEAD of a file, a directory index or listing.
    Static,
    /// POST or PUT into `upload_store`.
    Upload { store: &'a Path, put: bool },
    /// DELETE of the mapped file.
    Delete,
}

/// SPEC §4 in nginx's order: `return` first, then the method check, then
/// the content handler. Only reads file metadata (to find a CGI script).
pub fn plan<'a>(request: &Request, location: &'a Location) -> Plan<'a> {
    // A location with `proxy_pass` forwards every method token unless it
    // sets `methods` itself (SPEC §9.3); a server-level `methods` does not
    // apply.
    if let Some(proxy) = &location.proxy {
        if let Some(ret) = &location.ret {
            return Plan::Return(ret);
        }
        return match &location.proxy_methods {
            Some(allowed) if !allowed.iter().any(|m| m == request.method_str()) => {
                Plan::ProxyMethodNotAllowed(allowed)
            }
            _ => Plan::Proxy(proxy),
        };
    }
    let Some(method) = request.method else {
        return Plan::NotImplemented;
    };
    if let Some(ret) = &location.ret {
        return Plan::Return(ret);
    }
    if !location.methods.contains(method) {
        return Plan::MethodNotAllowed;
    }
    if matches!(method, Method::Get | Method::Head | Method::Post) {
        if let Some(script) = cgi_script(request, location) {
            return Plan::Cgi(script);
        }
    }
    match method {
        // Another upload's file in progress is not there to be read (its
        // name is guessable); PUT and DELETE refuse it alike.
        Method::Get | Method::Head if upload::is_temp_name(&request.path) => Plan::UploadInProgress,
        Method::Get | Method::Head => Plan::Static,
        Method::Post | Method::Put => match &location.upload_store {
            Some(store) => Plan::Upload {
                store,
                put: method == Method::Put,
            },
            None => Plan::MethodNotAllowed,
        },
        Method::Delete => Plan::Delete,
    }
}

/// Routes `request` within `server` (SPEC §3, §4): [`plan`], then do it.
/// Files are read through `files` (the open-file cache).
pub fn handle(request: &Request, server: &Server, files: &mut Files) -> Action {
    let location = server.select_location(&request.path);
    match plan(request, location) {
        Plan::NotImplemented => Action::Reply(error_page::reply(501, location)),
        Plan::Return(ret) => Action::Reply(redirect_or_text(ret, request, location)),
        Plan::MethodNotAllowed => Action::Reply(method_not_allowed(location.methods, location)),
        Plan::Proxy(_) => Action::Proxy,
        Plan::ProxyMethodNotAllowed(allowed) => {
            let reply = error_page::reply(405, location);
            Action::Reply(reply.with_header("Allow", allowed.join(", ")))
        }
        Plan::Cgi(script) => Action::Cgi(script),
        Plan::UploadInProgress => Action::Reply(error_page::reply(403, location)),
        Plan::Static => Action::Reply(static_file::get(request, location, files)),
        Plan::Upload { store, put } => {
            let upload = if put {
                Upload::put(request, location, store)
            } else {
                Upload::post(request, location, store)
            };
            upload_action(upload, location)
        }
        Plan::Delete => Action::Reply(delete::delete(request, location)),
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

fn upload_action(upload: Result<Upload, UploadError>, location: &Location) -> Action {
    match upload {
        Ok(upload) => Action::Upload(upload),
        Err(err) => Action::Reply(error_page::reply(err.status(), location)),
    }
}

/// `return CODE [URL or TEXT]`: a redirect with `Location`, a text body, or
/// the code's error page (as nginx does for `return 404;`).
fn redirect_or_text(ret: &Return, request: &Request, location: &Location) -> Reply {
    let is_redirect = matches!(ret.code, 301 | 302 | 303 | 307 | 308);
    // `return 301 https://$host$request_uri;`: variables are expanded per
    // request; a value without any is used as written.
    let expanded = |value: &String| {
        if vars::has_variables(value) {
            vars::expand(value, Some(request), |_, _| false)
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
        None if ret.code >= 400 => error_page::reply(ret.code, location),
        None => error_page::builtin(ret.code),
    }
}

/// 405 with the `Allow` header listing what the location accepts.
pub fn method_not_allowed(methods: MethodSet, location: &Location) -> Reply {
    let allow = methods
        .iter()
        .map(Method::as_str)
        .collect::<Vec<_>>()
        .join(", ");
    error_page::reply(405, location).with_header("Allow", allow)
}
