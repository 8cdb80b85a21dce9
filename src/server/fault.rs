//! Test-only faults, compiled in only with the `fault-injection` cargo
//! feature (off by default, never in a shipped binary): the integration
//! tests build a binary with it to prove panic isolation and supervision.
//!
//! - A request with `X-Webserv-Fault: POINT` panics when it reaches POINT
//!   (`handle`: before routing; `cgi`: while its script runs).
//! - `WEBSERV_FAULT=worker-start` in the environment makes every worker
//!   panic as it starts (a worker that dies at start-up again and again).

use crate::http::request::Request;

/// Panics when `request` asks for a fault at `point`.
pub fn at(point: &str, request: &Request) {
    if request.header_str("x-webserv-fault") == Some(point) {
        panic!("injected fault at {point}");
    }
}

/// Panics when the environment asks for a fault at worker start.
pub fn worker_start() {
    if std::env::var_os("WEBSERV_FAULT").is_some_and(|v| v == "worker-start") {
        panic!("injected fault at worker start");
    }
}
