//! What the directives of one block set, before inheritance: every level
//! (top level, server, location, upstream) is a [`Scope`] whose settings are
//! `Option`s, so `build` can tell "not set here" from "set to the default".
//!
//! Values that later checks point at carry their position ([`At`]).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::diag::Span;
use super::values::ProxyUrl;
use crate::routing::{
    AddHeader, Expires, HealthCheck, LogLevel, LogTarget, MethodSet, NextUpstream, OpenFileCache,
    Policy, Return, TlsVersions, WorkerProcesses,
};

/// The four kinds of block a directive can appear in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Context {
    Main,
    Server,
    Location,
    Upstream,
}

impl Context {
    pub const fn bit(self) -> u8 {
        match self {
            Context::Main => 1,
            Context::Server => 2,
            Context::Location => 4,
            Context::Upstream => 8,
        }
    }

    pub const fn name(self) -> &'static str {
        match self {
            Context::Main => "the top level",
            Context::Server => "server",
            Context::Location => "location",
            Context::Upstream => "upstream",
        }
    }
}

/// A value and where it was set: the directive's name and its first argument.
#[derive(Debug, Clone)]
pub struct At<T> {
    pub value: T,
    pub name: Span,
    pub arg: Span,
}

/// A path argument: resolved against the naming file's directory, and as
/// written (for messages).
#[derive(Debug, Clone)]
pub struct PathArg {
    pub path: PathBuf,
    pub written: String,
    pub span: Span,
}

#[derive(Debug, Clone)]
pub struct ErrorPage {
    pub codes: Vec<u16>,
    pub uri: String,
}

#[derive(Debug, Clone)]
pub struct Cgi {
    pub ext: String,
    pub interpreter: Option<PathArg>,
}

#[derive(Debug, Clone)]
pub struct Listen {
    pub addr: SocketAddr,
    /// Where `default_server` was written, if it was.
    pub default_server: Option<Span>,
    /// Where `ssl` was written, if it was.
    pub ssl: Option<Span>,
}

/// One `server` of an `upstream` block, as the group will hold it.
pub use crate::routing::UpstreamServer as Member;

/// The inheritable settings of one level (SPEC §2 table). `build` merges them
/// top level → server → location in one step. There is one per location, so
/// the large values are boxed: ten thousand locations stay a few megabytes.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    pub root: Option<Box<At<PathArg>>>,
    pub alias: Option<Box<At<PathArg>>>,
    pub index: Option<Vec<String>>,
    pub autoindex: Option<bool>,
    pub methods: Option<MethodSet>,
    /// Tokens of this level's own `methods` that are none of [`MethodSet`]'s
    /// (allowed only beside `proxy_pass`); never inherited.
    pub other_methods: Vec<(String, Span)>,
    pub ret: Option<Return>,
    pub error_pages: Option<Vec<At<ErrorPage>>>,
    /// `Some(None)`: set to 0, unlimited.
    pub client_max_body_size: Option<Option<u64>>,
    pub client_max_header_size: Option<usize>,
    pub upload_store: Option<Box<At<PathArg>>>,
    pub cgi: Option<Vec<At<Cgi>>>,
    pub cgi_timeout: Option<Duration>,
    pub cgi_check_script: Option<bool>,
    /// `Some(None)`: `open_file_cache off`.
    pub open_file_cache: Option<Option<OpenFileCache>>,
    pub client_header_timeout: Option<Duration>,
    pub client_body_timeout: Option<Duration>,
    pub send_timeout: Option<Duration>,
    pub keepalive_timeout: Option<Duration>,
    pub max_connections: Option<usize>,
    pub worker_processes: Option<WorkerProcesses>,
    pub worker_shutdown_timeout: Option<Duration>,
    pub pid: Option<PathBuf>,
    pub access_log: Option<LogTarget>,
    pub error_log: Option<(LogTarget, LogLevel)>,
    pub proxy_pass: Option<Box<At<ProxyUrl>>>,
    pub proxy_set_header: Option<Vec<(String, String)>>,
    pub proxy_connect_timeout: Option<Duration>,
    pub proxy_read_timeout: Option<Duration>,
    pub proxy_next_upstream: Option<NextUpstream>,
    /// An `upstream` block's `least_conn` or `ip_hash`; never inherited.
    pub policy: Option<Policy>,
    /// An `upstream` block's `health_check`; never inherited.
    pub health_check: Option<HealthCheck>,
    pub ssl_certificate: Option<Box<At<PathArg>>>,
    pub ssl_certificate_key: Option<Box<At<PathArg>>>,
    pub ssl_protocols: Option<TlsVersions>,
    pub gzip: Option<bool>,
    pub gzip_types: Option<Vec<String>>,
    pub gzip_min_length: Option<u64>,
    pub gzip_static: Option<bool>,
    pub add_header: Option<Vec<AddHeader>>,
    pub expires: Option<Expires>,
    pub server_tokens: Option<bool>,
}

macro_rules! inherit_fields {
    ($child:expr, $parent:expr; $($field:ident),* $(,)?) => {
        $(if $child.$field.is_none() {
            $child.$field = $parent.$field.clone();
        })*
    };
}

impl Settings {
    /// Whether an unset `root` comes from the parent: not when this level
    /// sets an `alias`, which hides it.
    pub fn inherits_root(&self) -> bool {
        self.alias.is_none()
    }

    /// Fills what this level leaves unset from `parent`. Lists (`error_page`,
    /// `cgi`, `proxy_set_header`, `add_header`) are replaced as a whole, not merged; an
    /// `alias` here hides an inherited `root`.
    pub fn inherit(&mut self, parent: &Settings) {
        if self.inherits_root() {
            inherit_fields!(self, parent; root);
        }
        inherit_fields!(self, parent;
            alias, index, autoindex, methods, ret, error_pages, client_max_body_size,
            client_max_header_size, upload_store, cgi, cgi_timeout, cgi_check_script, open_file_cache,
            client_header_timeout, client_body_timeout, send_timeout, keepalive_timeout,
            max_connections, access_log, error_log, proxy_pass, proxy_set_header,
            proxy_connect_timeout, proxy_read_timeout, proxy_next_upstream, ssl_protocols, worker_processes,
            worker_shutdown_timeout, pid, gzip, gzip_types, gzip_min_length, gzip_static,
            add_header, expires, server_tokens,
        );
    }
}

/// A location's effective settings, read through instead of copied: its own
/// value where it sets one, else its parent's (the server's, already merged
/// with the top level and the defaults). The rules are those of
/// [`Settings::inherit`]; `build` uses this so that ten thousand locations do
/// not each copy the server's paths and lists.
#[derive(Clone, Copy)]
pub struct Effective<'a> {
    pub own: &'a Settings,
    pub parent: &'a Settings,
}

impl<'a> Effective<'a> {
    /// Settings that have no parent to read through.
    pub fn of(settings: &'a Settings) -> Self {
        Effective {
            own: settings,
            parent: settings,
        }
    }

    pub fn get<T>(self, field: impl Fn(&'a Settings) -> &'a Option<T>) -> Option<&'a T> {
        field(self.own).as_ref().or(field(self.parent).as_ref())
    }

    /// The `return` in force: the server's own comes first, since nginx runs
    /// a server-level `return` before choosing a location at all; a
    /// location's `return` answers only where its server has none.
    pub fn ret(self) -> Option<&'a Return> {
        self.parent.ret.as_ref().or(self.own.ret.as_ref())
    }

    pub fn root(self) -> Option<&'a At<PathArg>> {
        if self.own.inherits_root() {
            self.get(|s| &s.root).map(|r| &**r)
        } else {
            self.own.root.as_deref()
        }
    }
}

/// `location [=] URI`.
#[derive(Debug, Clone)]
pub struct LocationUri {
    pub uri: String,
    pub exact: bool,
    pub span: Span,
}

/// One block (or the top level) with what its directives set.
#[derive(Debug)]
pub struct Scope {
    pub context: Context,
    /// The block's name token (`server`, `location`, `upstream`).
    pub at: Span,
    pub location: Option<LocationUri>,
    pub upstream_name: Option<At<String>>,
    pub listen: Vec<At<Listen>>,
    pub server_names: Vec<At<String>>,
    pub members: Vec<At<Member>>,
    /// The files `access_log` and `error_log` name here, to check that the
    /// server will be able to open them.
    pub log_files: Vec<(&'static str, At<PathArg>)>,
    pub settings: Settings,
    /// Every directive applied in this block, in order: duplicates and
    /// "which came later" are decided from it.
    pub seen: Vec<(&'static str, Span)>,
    /// An `include` here named no file it had to, or one that could not be
    /// read (reported): what the block lacks may be in it, so checks for a
    /// missing directive are skipped.
    pub incomplete: bool,
    pub blocks: Vec<Scope>,
}

impl Scope {
    pub fn new(context: Context, at: Span) -> Self {
        Scope {
            context,
            at,
            location: None,
            upstream_name: None,
            listen: Vec::new(),
            server_names: Vec::new(),
            members: Vec::new(),
            log_files: Vec::new(),
            settings: Settings::default(),
            seen: Vec::new(),
            incomplete: false,
            blocks: Vec::new(),
        }
    }

    /// Where `name` was first set in this block.
    pub fn seen(&self, name: &str) -> Option<(usize, Span)> {
        self.seen
            .iter()
            .enumerate()
            .find(|(_, (n, _))| *n == name)
            .map(|(i, (_, span))| (i, *span))
    }

    pub fn blocks_of(&self, context: Context) -> impl Iterator<Item = &Scope> {
        self.blocks.iter().filter(move |b| b.context == context)
    }
}
