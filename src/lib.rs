//! webserv: an nginx-style HTTP/1.1 server on one mio event loop.
//!
//! - [`config`] turns configuration files into a [`routing::RoutingTable`]
//!   and renders diagnostics (`webserv check`).
//! - [`http`] parses and writes HTTP/1.1 on plain bytes.
//! - [`handlers`] turn a routed request into a reply (files, listings,
//!   uploads, error pages) without touching sockets.
//! - [`route`] answers "where would this request go?" (`webserv route`)
//!   with the server's own routing and handler choice.
//! - [`server`] owns every socket and pipe: the event loop and the
//!   connection state machine.

pub mod cache;
pub mod config;
pub mod handlers;
pub mod http;
#[doc(hidden)]
pub mod props;
pub mod route;
pub mod routing;
pub mod server;
