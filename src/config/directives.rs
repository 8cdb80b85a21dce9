//! The one directive table: name, contexts, arity, what it does, and the
//! texts for `check` and the README. Context, block shape and arity are
//! checked once, from the table, before a directive's `apply` runs (as nginx's
//! `ngx_conf_handler` does); `apply` only parses values into the [`Scope`].

use std::path::{Component, Path, PathBuf};

use super::diag::Span;
use super::grammar::Token;
use super::scope::{At, Cgi, Context, ErrorPage, Listen, LocationUri, Member, PathArg, Scope};
use super::values;
use crate::http::vars;
use crate::http::Method;
use crate::routing::{
    AddHeader, HealthCheck, LogLevel, LogTarget, MethodSet, NamePattern, NextUpstream,
    OpenFileCache, Policy, Return, TlsVersions, WorkerProcesses,
};

/// A set of [`Context`]s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Contexts(u8);

const G: Contexts = Contexts(Context::Main.bit());
const S: Contexts = Contexts(Context::Server.bit());
const L: Contexts = Contexts(Context::Location.bit());
const U: Contexts = Contexts(Context::Upstream.bit());
const SL: Contexts = Contexts(S.0 | L.0);
const GS: Contexts = Contexts(G.0 | S.0);
const GSL: Contexts = Contexts(G.0 | S.0 | L.0);
const ANY: Contexts = Contexts(G.0 | S.0 | L.0 | U.0);

impl Contexts {
    pub fn contains(self, context: Context) -> bool {
        self.0 & context.bit() != 0
    }

    /// `G S L`-style letters, for the README.
    pub fn letters(self) -> String {
        let all = [
            (Context::Main, "G"),
            (Context::Server, "S"),
            (Context::Location, "L"),
            (Context::Upstream, "upstream"),
        ];
        let names: Vec<&str> = all
            .iter()
            .filter(|(c, _)| self.contains(*c))
            .map(|(_, l)| *l)
            .collect();
        names.join(" ")
    }

    /// `server, location`, for messages.
    pub fn names(self) -> String {
        let all = [
            Context::Main,
            Context::Server,
            Context::Location,
            Context::Upstream,
        ];
        let names: Vec<&str> = all
            .into_iter()
            .filter(|c| self.contains(*c))
            .map(Context::name)
            .collect();
        names.join(", ")
    }
}

/// How many arguments a directive takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arity {
    Exactly(usize),
    AtLeast(usize),
    Between(usize, usize),
}

impl Arity {
    pub fn accepts(self, n: usize) -> bool {
        match self {
            Arity::Exactly(k) => n == k,
            Arity::AtLeast(k) => n >= k,
            Arity::Between(lo, hi) => (lo..=hi).contains(&n),
        }
    }
}

/// The arguments of one directive, for `apply`.
pub struct Args<'a> {
    pub name: &'a Token<'a>,
    pub values: &'a [Token<'a>],
    /// Canonical directory of the file that holds the directive.
    pub dir: &'a Path,
}

impl Args<'_> {
    fn text(&self, i: usize) -> &str {
        self.values.get(i).map_or("", |t| &t.text)
    }

    fn span(&self, i: usize) -> Span {
        self.values.get(i).map_or(self.name.span, |t| t.span)
    }

    /// `value`, positioned at this directive.
    fn at<T>(&self, value: T) -> At<T> {
        At {
            value,
            name: self.name.span,
            arg: self.span(0),
        }
    }

    /// A path argument, resolved against the directory of its file.
    fn path(&self, i: usize) -> PathArg {
        let written = self.text(i).to_string();
        PathArg {
            path: lexical(&self.dir.join(&written)),
            written,
            span: self.span(i),
        }
    }

    /// Applies `parse` to argument `i`, blaming that argument on failure.
    fn parse<T>(&self, i: usize, parse: impl Fn(&str) -> Result<T, String>) -> Result<T, ArgError> {
        parse(self.text(i)).map_err(|message| ArgError { arg: i, message })
    }
}

/// A bad argument: which one, and why.
#[derive(Debug, PartialEq, Eq)]
pub struct ArgError {
    pub arg: usize,
    pub message: String,
}

type Apply = fn(&mut Scope, &Args) -> Result<(), ArgError>;

/// A directive's value when it is not set anywhere.
#[derive(Clone, Copy)]
pub enum DefaultValue {
    Unset,
    /// Arguments applied through the directive's own parser before the top
    /// level, so each default is written once, here.
    Value(&'static str),
    /// Documented behaviour that is not a value (built-in error pages).
    Note(&'static str),
}

/// What the walker does with a directive once its shape is checked.
#[derive(Clone, Copy)]
pub enum Action {
    /// Sets values in the current scope.
    Set(Apply),
    /// Opens a block of the given context; `Apply` reads the block's own
    /// arguments into the new scope.
    Open(Context, Apply),
    /// `include`: the walker splices the matching files in place.
    Include,
}

pub struct Directive {
    pub name: &'static str,
    pub contexts: Contexts,
    pub arity: Arity,
    /// May appear more than once in one block.
    pub repeatable: bool,
    pub action: Action,
    /// Arguments, as `check` and the README show them.
    pub usage: &'static str,
    pub default: DefaultValue,
    pub doc: &'static str,
}

impl Directive {
    pub fn opens_block(&self) -> bool {
        matches!(self.action, Action::Open(..))
    }
}

use Arity::{AtLeast, Between, Exactly};

pub const DIRECTIVES: &[Directive] = &[
    Directive {
        name: "server",
        contexts: G,
        arity: Exactly(0),
        repeatable: true,
        action: Action::Open(Context::Server, |_, _| Ok(())),
        usage: "{ ... }",
        default: DefaultValue::Unset,
        doc: "A virtual server: its `listen` addresses, names and locations.",
    },
    Directive {
        name: "location",
        contexts: S,
        arity: Between(1, 2),
        repeatable: true,
        action: Action::Open(Context::Location, location),
        usage: "[=] URI { ... }",
        default: DefaultValue::Unset,
        doc: "Settings for paths starting with URI (`=`: exactly URI). Locations do not nest.",
    },
    Directive {
        name: "upstream",
        contexts: G,
        arity: Exactly(1),
        repeatable: true,
        action: Action::Open(Context::Upstream, upstream),
        usage: "NAME { ... }",
        default: DefaultValue::Unset,
        doc: "A named group of backend servers for `proxy_pass http://NAME`.",
    },
    Directive {
        name: "server",
        contexts: U,
        arity: Between(1, 5),
        repeatable: true,
        action: Action::Set(member),
        usage: "HOST:PORT [weight=N] [max_fails=N] [fail_timeout=TIME] [backup]",
        default: DefaultValue::Unset,
        doc: "A backend of the upstream group; weight 1-100 (default 1); max_fails failures (0-1000, default 1, 0: never out) within fail_timeout (default 10s) take it out for fail_timeout; a backup server is used only while every other one is out.",
    },
    Directive {
        name: "least_conn",
        contexts: U,
        arity: Exactly(0),
        repeatable: false,
        action: Action::Set(|scope, _| {
            scope.settings.policy = Some(Policy::LeastConn);
            Ok(())
        }),
        usage: "(no arguments)",
        default: DefaultValue::Note("weighted round-robin"),
        doc: "Send each request to the server with the fewest active requests (weights respected, ties by round-robin).",
    },
    Directive {
        name: "ip_hash",
        contexts: U,
        arity: Exactly(0),
        repeatable: false,
        action: Action::Set(|scope, _| {
            scope.settings.policy = Some(Policy::IpHash);
            Ok(())
        }),
        usage: "(no arguments)",
        default: DefaultValue::Note("weighted round-robin"),
        doc: "Pick the server from the client's IPv4 /24 (IPv6 /64), stable while the servers are; not with backup.",
    },
    Directive {
        name: "health_check",
        contexts: U,
        arity: Between(1, 4),
        repeatable: false,
        action: Action::Set(health_check),
        usage: "URI [interval=TIME] [fails=N] [passes=N]",
        default: DefaultValue::Note("none; `interval=5s fails=1 passes=1`"),
        doc: "Active checks: each worker sends `GET URI` to every server of the group every interval; `fails` failed checks in a row (connect error, timeout, status outside 200-399) take a server out until it passes `passes` in a row.",
    },
    Directive {
        name: "include",
        contexts: ANY,
        arity: Exactly(1),
        repeatable: true,
        action: Action::Include,
        usage: "PATTERN",
        default: DefaultValue::Unset,
        doc: "Splices the matching files here (glob, sorted; wildcards skip dot files). A plain path must exist.",
    },
    Directive {
        name: "listen",
        contexts: S,
        arity: Between(1, 3),
        repeatable: true,
        action: Action::Set(listen),
        usage: "[ADDR:]PORT [ssl] [default_server]",
        default: DefaultValue::Unset,
        doc: "Required. ADDR is IPv4, `[IPv6]`, `*` or `localhost`; a bare PORT listens on all interfaces.",
    },
    Directive {
        name: "server_name",
        contexts: S,
        arity: AtLeast(1),
        repeatable: false,
        action: Action::Set(server_name),
        usage: "NAME...",
        default: DefaultValue::Unset,
        doc: "Host names this server answers (case-insensitive): exact, `*.example.com`, `www.example.*`, or `.example.com` (both `example.com` and `*.example.com`).",
    },
    Directive {
        name: "root",
        contexts: SL,
        arity: Exactly(1),
        repeatable: false,
        action: Action::Set(|scope, args| {
            scope.settings.root = Some(Box::new(args.at(args.path(0))));
            Ok(())
        }),
        usage: "PATH",
        default: DefaultValue::Unset,
        doc: "Files are served from PATH + request path.",
    },
    Directive {
        name: "alias",
        contexts: L,
        arity: Exactly(1),
        repeatable: false,
        action: Action::Set(|scope, args| {
            scope.settings.alias = Some(Box::new(args.at(args.path(0))));
            Ok(())
        }),
        usage: "PATH",
        default: DefaultValue::Unset,
        doc: "Files are served from PATH + the request path without the location URI.",
    },
    Directive {
        name: "index",
        contexts: SL,
        arity: AtLeast(1),
        repeatable: false,
        action: Action::Set(|scope, args| {
            scope.settings.index = Some(args.values.iter().map(|t| t.text.to_string()).collect());
            Ok(())
        }),
        usage: "FILE...",
        default: DefaultValue::Value("index.html"),
        doc: "Files tried, in order, for a request ending in `/`.",
    },
    Directive {
        name: "autoindex",
        contexts: SL,
        arity: Exactly(1),
        repeatable: false,
        action: Action::Set(|scope, args| {
            scope.settings.autoindex = Some(args.parse(0, values::switch)?);
            Ok(())
        }),
        usage: "on | off",
        default: DefaultValue::Value("off"),
        doc: "List a directory that has no index file.",
    },
    Directive {
        name: "methods",
        contexts: SL,
        arity: AtLeast(1),
        repeatable: false,
        action: Action::Set(methods),
        usage: "METHOD...",
        default: DefaultValue::Value("GET HEAD"),
        doc: "Allowed methods, from GET HEAD POST PUT DELETE (case-sensitive; any token in a location with proxy_pass); others get 405.",
    },
    Directive {
        name: "return",
        contexts: SL,
        arity: Between(1, 2),
        repeatable: false,
        action: Action::Set(|scope, args| {
            let code = args.parse(0, |t| values::status(t, 100..=599))?;
            if args.values.len() == 2 {
                args.parse(1, |t| known_variables(t, &[]))?;
            }
            let target = args.values.get(1).map(|t| t.text.to_string());
            scope.settings.ret = Some(Return { code, target });
            Ok(())
        }),
        usage: "CODE [URL | TEXT]",
        default: DefaultValue::Unset,
        doc: "Answer at once: a redirect to URL (3xx) or TEXT as the body.",
    },
    Directive {
        name: "error_page",
        contexts: GSL,
        arity: AtLeast(2),
        repeatable: true,
        action: Action::Set(error_page),
        usage: "CODE... URI",
        default: DefaultValue::Note("built-in pages"),
        doc: "Serve URI (through this server) for these codes (300-599).",
    },
    Directive {
        name: "client_max_body_size",
        contexts: GSL,
        arity: Exactly(1),
        repeatable: false,
        action: Action::Set(|scope, args| {
            let size = args.parse(0, values::size)?;
            scope.settings.client_max_body_size = Some((size > 0).then_some(size));
            Ok(())
        }),
        usage: "SIZE",
        default: DefaultValue::Value("1m"),
        doc: "Largest request body (`k`, `m`, `g`: powers of 1024); `0` is unlimited. Larger: 413.",
    },
    Directive {
        name: "client_max_header_size",
        contexts: GS,
        arity: Exactly(1),
        repeatable: false,
        action: Action::Set(|scope, args| {
            let size = args.parse(0, header_size)?;
            scope.settings.client_max_header_size = Some(size);
            Ok(())
        }),
        usage: "SIZE",
        default: DefaultValue::Value("8k"),
        doc: "Largest request line plus headers. Larger: 431 (414 for the request line).",
    },
    Directive {
        name: "upload_store",
        contexts: SL,
        arity: Exactly(1),
        repeatable: false,
        action: Action::Set(|scope, args| {
            scope.settings.upload_store = Some(Box::new(args.at(args.path(0))));
            Ok(())
        }),
        usage: "DIR",
        default: DefaultValue::Unset,
        doc: "Directory where POST and PUT bodies are stored.",
    },
    Directive {
        name: "cgi",
        contexts: SL,
        arity: Between(1, 2),
        repeatable: true,
        action: Action::Set(cgi),
        usage: ".EXT [INTERPRETER]",
        default: DefaultValue::Unset,
        doc: "Run files ending in .EXT through INTERPRETER (a name in PATH, or a path); without one, execute the file.",
    },
    Directive {
        name: "cgi_timeout",
        contexts: GSL,
        arity: Exactly(1),
        repeatable: false,
        action: Action::Set(|scope, args| {
            scope.settings.cgi_timeout = Some(args.parse(0, timeout)?);
            Ok(())
        }),
        usage: "TIME",
        default: DefaultValue::Value("30s"),
        doc: "Longest silence from a CGI script before 504 and kill.",
    },
    Directive {
        name: "cgi_check_script",
        contexts: GSL,
        arity: Exactly(1),
        repeatable: false,
        action: Action::Set(|scope, args| {
            scope.settings.cgi_check_script = Some(args.parse(0, values::switch)?);
            Ok(())
        }),
        usage: "on | off",
        default: DefaultValue::Value("on"),
        doc: "Extension: `off` runs the CGI even when the script file does not exist (as nginx's fastcgi_pass).",
    },
    Directive {
        name: "open_file_cache",
        contexts: GSL,
        arity: Between(1, 4),
        repeatable: false,
        action: Action::Set(open_file_cache),
        usage: "off | max=N [inactive=TIME] [memory=SIZE] [small=SIZE]",
        default: DefaultValue::Value("max=10000 inactive=60s memory=64m small=64k"),
        doc: "Keep served files' descriptors, metadata and prepared heads, the bytes of files up to `small`, gzipped copies up to `small` (with `gzip`), and 404 answers, per process: at most `max` entries and `memory` bytes, copies included (least recently used first out), each dropped after `inactive` unused. Never stale: directories are watched with inotify; a path that cannot be watched is not cached.",
    },
    Directive {
        name: "client_header_timeout",
        contexts: GS,
        arity: Exactly(1),
        repeatable: false,
        action: Action::Set(|scope, args| {
            scope.settings.client_header_timeout = Some(args.parse(0, timeout)?);
            Ok(())
        }),
        usage: "TIME",
        default: DefaultValue::Value("60s"),
        doc: "Time to receive the whole request head. Slower: 408.",
    },
    Directive {
        name: "client_body_timeout",
        contexts: GS,
        arity: Exactly(1),
        repeatable: false,
        action: Action::Set(|scope, args| {
            scope.settings.client_body_timeout = Some(args.parse(0, timeout)?);
            Ok(())
        }),
        usage: "TIME",
        default: DefaultValue::Value("60s"),
        doc: "Longest gap between two reads of the body. Slower: 408.",
    },
    Directive {
        name: "send_timeout",
        contexts: GS,
        arity: Exactly(1),
        repeatable: false,
        action: Action::Set(|scope, args| {
            scope.settings.send_timeout = Some(args.parse(0, timeout)?);
            Ok(())
        }),
        usage: "TIME",
        default: DefaultValue::Value("60s"),
        doc: "Longest gap between two writes to the client before closing.",
    },
    Directive {
        name: "keepalive_timeout",
        contexts: GS,
        arity: Exactly(1),
        repeatable: false,
        action: Action::Set(|scope, args| {
            scope.settings.keepalive_timeout = Some(args.parse(0, values::time)?);
            Ok(())
        }),
        usage: "TIME",
        default: DefaultValue::Value("75s"),
        doc: "How long an idle connection is kept; `0` disables keep-alive.",
    },
    Directive {
        name: "max_connections",
        contexts: G,
        arity: Exactly(1),
        repeatable: false,
        action: Action::Set(|scope, args| {
            scope.settings.max_connections = Some(args.parse(0, max_connections)?);
            Ok(())
        }),
        usage: "N",
        default: DefaultValue::Value("10000"),
        doc: "Open client connections at most (1-1000000); more wait in the backlog.",
    },
    Directive {
        name: "worker_processes",
        contexts: G,
        arity: Exactly(1),
        repeatable: false,
        action: Action::Set(|scope, args| {
            scope.settings.worker_processes = Some(args.parse(0, worker_processes)?);
            Ok(())
        }),
        usage: "N | auto",
        default: DefaultValue::Value("1"),
        doc: "Worker processes (1-512; `auto`: one per CPU). 1 is one process with one event loop; more run under a master that binds the listeners and replaces a worker that dies.",
    },
    Directive {
        name: "worker_shutdown_timeout",
        contexts: G,
        arity: Exactly(1),
        repeatable: false,
        action: Action::Set(|scope, args| {
            scope.settings.worker_shutdown_timeout = Some(args.parse(0, values::time)?);
            Ok(())
        }),
        usage: "TIME",
        default: DefaultValue::Value("10s"),
        doc: "How long requests in flight may take to finish after a stop or a reload.",
    },
    Directive {
        name: "pid",
        contexts: G,
        arity: Exactly(1),
        repeatable: false,
        action: Action::Set(|scope, args| {
            scope.settings.pid = Some(args.path(0).path);
            Ok(())
        }),
        usage: "PATH",
        default: DefaultValue::Unset,
        doc: "File the serving process (the master, with workers) writes its pid to, for `webserv -s reload|stop`.",
    },
    Directive {
        name: "access_log",
        contexts: GS,
        arity: Exactly(1),
        repeatable: false,
        action: Action::Set(|scope, args| {
            let target = match args.text(0) {
                "off" => LogTarget::Off,
                "stdout" => LogTarget::Stdout,
                _ => log_file(scope, args, "access_log"),
            };
            scope.settings.access_log = Some(target);
            Ok(())
        }),
        usage: "PATH | stdout | off",
        default: DefaultValue::Value("off"),
        doc: "Where requests are logged, in the combined log format.",
    },
    Directive {
        name: "error_log",
        contexts: G,
        arity: Between(1, 2),
        repeatable: false,
        action: Action::Set(|scope, args| {
            let target = match args.text(0) {
                "stderr" => LogTarget::Stderr,
                _ => log_file(scope, args, "error_log"),
            };
            let level = match args.values.len() {
                2 => args.parse(1, |t| {
                    LogLevel::from_name(t).ok_or_else(|| {
                        format!("unknown log level \"{t}\" (one of debug info notice warn error)")
                    })
                })?,
                _ => LogLevel::Notice,
            };
            scope.settings.error_log = Some((target, level));
            Ok(())
        }),
        usage: "PATH | stderr [LEVEL]",
        default: DefaultValue::Value("stderr"),
        doc: "Where the server reports its own problems, from LEVEL up (debug, info, notice, warn, error; default notice).",
    },
    Directive {
        name: "proxy_pass",
        contexts: L,
        arity: Exactly(1),
        repeatable: false,
        action: Action::Set(|scope, args| {
            let url = args.parse(0, values::proxy_url)?;
            scope.settings.proxy_pass = Some(Box::new(args.at(url)));
            Ok(())
        }),
        usage: "http://HOST:PORT[/PREFIX] | http://UPSTREAM[/PREFIX]",
        default: DefaultValue::Unset,
        doc: "Forward requests to a backend; PREFIX replaces the location URI.",
    },
    Directive {
        name: "proxy_set_header",
        contexts: SL,
        arity: Exactly(2),
        repeatable: true,
        action: Action::Set(|scope, args| {
            args.parse(1, |t| known_variables(t, PROXY_VARIABLES))?;
            let header = (args.text(0).to_string(), args.text(1).to_string());
            scope.settings.proxy_set_header.get_or_insert_with(Vec::new).push(header);
            Ok(())
        }),
        usage: "NAME VALUE",
        default: DefaultValue::Note("`Host` is the upstream's"),
        doc: "A header sent upstream; a level that sets any replaces the inherited list.",
    },
    Directive {
        name: "proxy_connect_timeout",
        contexts: GSL,
        arity: Exactly(1),
        repeatable: false,
        action: Action::Set(|scope, args| {
            scope.settings.proxy_connect_timeout = Some(args.parse(0, timeout)?);
            Ok(())
        }),
        usage: "TIME",
        default: DefaultValue::Value("5s"),
        doc: "Time to connect to a backend. Slower: 504.",
    },
    Directive {
        name: "proxy_read_timeout",
        contexts: GSL,
        arity: Exactly(1),
        repeatable: false,
        action: Action::Set(|scope, args| {
            scope.settings.proxy_read_timeout = Some(args.parse(0, timeout)?);
            Ok(())
        }),
        usage: "TIME",
        default: DefaultValue::Value("60s"),
        doc: "Longest gap between two reads from a backend. Slower: 504.",
    },
    Directive {
        name: "proxy_next_upstream",
        contexts: GSL,
        arity: AtLeast(1),
        repeatable: false,
        action: Action::Set(proxy_next_upstream),
        usage: "error | timeout | http_502 | http_503 | http_504 ... | off",
        default: DefaultValue::Value("error timeout"),
        doc: "When to try the next server of the group: never after response bytes reached the client or a request body that was not fully buffered was sent.",
    },
    Directive {
        name: "ssl_certificate",
        contexts: S,
        arity: Exactly(1),
        repeatable: false,
        action: Action::Set(|scope, args| {
            scope.settings.ssl_certificate = Some(Box::new(args.at(args.path(0))));
            Ok(())
        }),
        usage: "PATH",
        default: DefaultValue::Unset,
        doc: "PEM certificate chain (leaf first) for this server's `ssl` listen addresses.",
    },
    Directive {
        name: "ssl_certificate_key",
        contexts: S,
        arity: Exactly(1),
        repeatable: false,
        action: Action::Set(|scope, args| {
            scope.settings.ssl_certificate_key = Some(Box::new(args.at(args.path(0))));
            Ok(())
        }),
        usage: "PATH",
        default: DefaultValue::Unset,
        doc: "PEM private key (PKCS#8, PKCS#1 or SEC1) of `ssl_certificate`.",
    },
    Directive {
        name: "ssl_protocols",
        contexts: GS,
        arity: Between(1, 2),
        repeatable: false,
        action: Action::Set(|scope, args| {
            let mut versions = TlsVersions {
                tls12: false,
                tls13: false,
            };
            for i in 0..args.values.len() {
                match args.text(i) {
                    "TLSv1.2" => versions.tls12 = true,
                    "TLSv1.3" => versions.tls13 = true,
                    other => {
                        return Err(ArgError {
                            arg: i,
                            message: format!(
                                "unsupported protocol \"{other}\" (TLSv1.2 and/or TLSv1.3)"
                            ),
                        })
                    }
                }
            }
            scope.settings.ssl_protocols = Some(versions);
            Ok(())
        }),
        usage: "TLSv1.2 | TLSv1.3 ...",
        default: DefaultValue::Value("TLSv1.2 TLSv1.3"),
        doc: "TLS versions offered on `ssl` addresses (the address's default server decides).",
    },
    Directive {
        name: "gzip",
        contexts: GSL,
        arity: Exactly(1),
        repeatable: false,
        action: Action::Set(|scope, args| {
            scope.settings.gzip = Some(args.parse(0, values::switch)?);
            Ok(())
        }),
        usage: "on | off",
        default: DefaultValue::Value("off"),
        doc: "Compress responses on the fly (static files, CGI, proxied) for clients that accept gzip; HTTP/1.1 clients only (as nginx's gzip_http_version 1.1).",
    },
    Directive {
        name: "gzip_types",
        contexts: GSL,
        arity: AtLeast(1),
        repeatable: false,
        action: Action::Set(gzip_types),
        usage: "MIME... | *",
        default: DefaultValue::Value(
            "text/html text/css text/plain text/javascript application/javascript application/json image/svg+xml",
        ),
        doc: "Media types `gzip` compresses (`text/html` always; `*`: any).",
    },
    Directive {
        name: "gzip_min_length",
        contexts: GSL,
        arity: Exactly(1),
        repeatable: false,
        action: Action::Set(|scope, args| {
            scope.settings.gzip_min_length = Some(args.parse(0, values::size)?);
            Ok(())
        }),
        usage: "SIZE",
        default: DefaultValue::Value("256"),
        doc: "Bodies known to be shorter are sent uncompressed (an unknown length counts as long enough).",
    },
    Directive {
        name: "gzip_static",
        contexts: GSL,
        arity: Exactly(1),
        repeatable: false,
        action: Action::Set(|scope, args| {
            scope.settings.gzip_static = Some(args.parse(0, values::switch)?);
            Ok(())
        }),
        usage: "on | off",
        default: DefaultValue::Value("off"),
        doc: "Send the regular file `FILE.gz`, when present, instead of `FILE` to clients that accept gzip.",
    },
    Directive {
        name: "add_header",
        contexts: SL,
        arity: Between(2, 3),
        repeatable: true,
        action: Action::Set(add_header),
        usage: "NAME VALUE [always]",
        default: DefaultValue::Unset,
        doc: "A response header for 200, 201, 204, 206, 301, 302, 303, 304, 307 and 308 (every status with `always`); VALUE may hold variables; a level that sets any replaces the inherited list.",
    },
    Directive {
        name: "expires",
        contexts: SL,
        arity: Exactly(1),
        repeatable: false,
        action: Action::Set(|scope, args| {
            scope.settings.expires = Some(args.parse(0, values::expires)?);
            Ok(())
        }),
        usage: "TIME | epoch | max | off",
        default: DefaultValue::Value("off"),
        doc: "`Expires` and `Cache-Control: max-age` on the statuses `add_header` uses; TIME may be negative (`no-cache`); units ms s m h d w M y.",
    },
    Directive {
        name: "server_tokens",
        contexts: GS,
        arity: Exactly(1),
        repeatable: false,
        action: Action::Set(|scope, args| {
            scope.settings.server_tokens = Some(args.parse(0, values::switch)?);
            Ok(())
        }),
        usage: "on | off",
        default: DefaultValue::Value("on"),
        doc: "Name the version in the `Server` header (`off`: `Server: webserv`).",
    },
];

/// The directive called `name` allowed in `context`, else any called `name`
/// (the walker then reports the context).
pub fn lookup(name: &str, context: Context) -> Option<&'static Directive> {
    let mut named = DIRECTIVES.iter().filter(|d| d.name == name);
    let first = named.clone().next()?;
    Some(
        named
            .find(|d| d.contexts.contains(context))
            .unwrap_or(first),
    )
}

/// Every context some directive called `name` is allowed in.
pub fn contexts_of(name: &str) -> Contexts {
    Contexts(
        DIRECTIVES
            .iter()
            .filter(|d| d.name == name)
            .fold(0, |all, d| all | d.contexts.0),
    )
}

/// The known name closest to `name`, if it is close enough to be a typo.
pub fn did_you_mean(name: &str) -> Option<&'static str> {
    let limit = (name.chars().count() / 3).clamp(1, 3);
    DIRECTIVES
        .iter()
        .map(|d| (values::edit_distance(name, d.name), d.name))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, n)| n)
}

fn location(scope: &mut Scope, args: &Args) -> Result<(), ArgError> {
    let exact = args.values.len() == 2;
    if exact && args.text(0) != "=" {
        return Err(ArgError {
            arg: 0,
            message: format!("expected \"=\" or a URI, found \"{}\"", args.text(0)),
        });
    }
    let i = usize::from(exact);
    let uri = args.text(i);
    if !uri.starts_with('/') {
        return Err(ArgError {
            arg: i,
            message: format!("location URI \"{uri}\" must start with \"/\""),
        });
    }
    scope.location = Some(LocationUri {
        uri: uri.to_string(),
        exact,
        span: args.span(i),
    });
    Ok(())
}

fn upstream(scope: &mut Scope, args: &Args) -> Result<(), ArgError> {
    let name = args.text(0);
    if name.is_empty() || name.contains([':', '/', '[', ']']) {
        return Err(ArgError {
            arg: 0,
            message: format!("invalid upstream name \"{name}\""),
        });
    }
    scope.upstream_name = Some(args.at(name.to_string()));
    Ok(())
}

fn member(scope: &mut Scope, args: &Args) -> Result<(), ArgError> {
    let mut member = Member::new(args.parse(0, values::host_port)?);
    for i in 1..args.values.len() {
        let text = args.text(i);
        let (key, _) = text.split_once('=').unwrap_or((text, ""));
        match key {
            "weight" => member.weight = args.parse(i, values::weight)?,
            "max_fails" => member.max_fails = args.parse(i, values::max_fails)?,
            "fail_timeout" => member.fail_timeout = args.parse(i, values::fail_timeout)?,
            "backup" if text == "backup" => member.backup = true,
            _ => {
                return Err(ArgError {
                    arg: i,
                    message: format!(
                    "expected weight=N, max_fails=N, fail_timeout=TIME or backup, found \"{text}\""
                ),
                })
            }
        }
    }
    scope.members.push(args.at(member));
    Ok(())
}

fn health_check(scope: &mut Scope, args: &Args) -> Result<(), ArgError> {
    let uri = args.text(0);
    if !uri.starts_with('/') || uri.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Err(ArgError {
            arg: 0,
            message: format!("invalid health check URI \"{uri}\" (a path starting with /)"),
        });
    }
    let mut check = HealthCheck::new(uri.to_string());
    let mut given = [false; 3];
    for i in 1..args.values.len() {
        let text = args.text(i);
        let (key, _) = text.split_once('=').unwrap_or((text, ""));
        let slot = match key {
            "interval" => {
                check.interval = args.parse(i, values::check_interval)?;
                0
            }
            "fails" => {
                check.fails = args.parse(i, |t| values::check_count(t, "fails"))?;
                1
            }
            "passes" => {
                check.passes = args.parse(i, |t| values::check_count(t, "passes"))?;
                2
            }
            _ => {
                return Err(ArgError {
                    arg: i,
                    message: format!(
                        "expected interval=TIME, fails=N or passes=N, found \"{text}\""
                    ),
                })
            }
        };
        if std::mem::replace(&mut given[slot], true) {
            return Err(ArgError {
                arg: i,
                message: format!("\"{key}\" given twice"),
            });
        }
    }
    scope.settings.health_check = Some(check);
    Ok(())
}

fn open_file_cache(scope: &mut Scope, args: &Args) -> Result<(), ArgError> {
    if args.text(0) == "off" {
        if args.values.len() > 1 {
            return Err(ArgError {
                arg: 1,
                message: "nothing may follow \"off\"".to_string(),
            });
        }
        scope.settings.open_file_cache = Some(None);
        return Ok(());
    }
    let mut cache = OpenFileCache::default();
    let mut max = None;
    for (i, t) in args.values.iter().enumerate() {
        let text = t.text.as_ref();
        let fail = |message: String| ArgError { arg: i, message };
        match text.split_once('=') {
            Some(("max", n)) => {
                let n = values::number(n)
                    .filter(|&n| (1..=10_000_000).contains(&n))
                    .ok_or_else(|| {
                        fail(format!(
                            "max must be a number from 1 to 10000000, found \"{n}\""
                        ))
                    })?;
                max = Some(n as usize);
            }
            Some(("inactive", v)) => cache.inactive = values::time(v).map_err(fail)?,
            Some(("memory", v)) => cache.memory = values::size(v).map_err(fail)?,
            Some(("small", v)) => cache.small = values::size(v).map_err(fail)?,
            _ => {
                return Err(fail(format!(
                "expected off, max=N, inactive=TIME, memory=SIZE or small=SIZE, found \"{text}\""
            )))
            }
        }
    }
    let Some(max) = max else {
        return Err(ArgError {
            arg: 0,
            message: "max=N is required (or off)".to_string(),
        });
    };
    cache.max = max;
    scope.settings.open_file_cache = Some(Some(cache));
    Ok(())
}

fn listen(scope: &mut Scope, args: &Args) -> Result<(), ArgError> {
    let addr = args.parse(0, values::listen_addr)?;
    let mut default_server = None;
    let mut ssl = None;
    for (i, t) in args.values.iter().enumerate().skip(1) {
        let slot = match t.text.as_ref() {
            "default_server" => &mut default_server,
            "ssl" => &mut ssl,
            _ => {
                return Err(ArgError {
                    arg: i,
                    message: format!(
                        "expected \"ssl\" or \"default_server\", found \"{}\"",
                        t.text
                    ),
                })
            }
        };
        if slot.is_some() {
            return Err(ArgError {
                arg: i,
                message: format!("\"{}\" given twice", t.text),
            });
        }
        *slot = Some(t.span);
    }
    scope.listen.push(args.at(Listen {
        addr,
        default_server,
        ssl,
    }));
    Ok(())
}

fn server_name(scope: &mut Scope, args: &Args) -> Result<(), ArgError> {
    scope.server_names.reserve_exact(args.values.len());
    for (i, token) in args.values.iter().enumerate() {
        let value = token.text.to_ascii_lowercase();
        NamePattern::parse(&value).map_err(|message| ArgError { arg: i, message })?;
        scope.server_names.push(At {
            value,
            name: args.name.span,
            arg: args.span(i),
        });
    }
    Ok(())
}

/// A log file, also kept in the scope so `validate` can check that the
/// server will be able to open it.
fn log_file(scope: &mut Scope, args: &Args, directive: &'static str) -> LogTarget {
    let path = args.path(0);
    let target = LogTarget::File(path.path.clone());
    scope.log_files.push((directive, args.at(path)));
    target
}

fn methods(scope: &mut Scope, args: &Args) -> Result<(), ArgError> {
    let mut set = MethodSet::empty();
    let mut other = Vec::new();
    for i in 0..args.values.len() {
        let token = args.text(i);
        match Method::from_token(token) {
            Some(method) => set.insert(method),
            // Any token may be forwarded by `proxy_pass`; `validate` refuses
            // one anywhere else, where it could never be served.
            None if is_method_token(token) => other.push((token.to_string(), args.span(i))),
            None => {
                return Err(ArgError {
                    arg: i,
                    message: unknown_method(token),
                })
            }
        }
    }
    scope.settings.methods = Some(set);
    scope.settings.other_methods = other;
    Ok(())
}

/// `method = token` (RFC 9110 §9.1, §5.6.2).
fn is_method_token(t: &str) -> bool {
    !t.is_empty()
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

pub fn unknown_method(token: &str) -> String {
    format!("unknown method \"{token}\" (one of GET HEAD POST PUT DELETE, case-sensitive)")
}

fn proxy_next_upstream(scope: &mut Scope, args: &Args) -> Result<(), ArgError> {
    let mut set = NextUpstream::OFF;
    for i in 0..args.values.len() {
        let text = args.text(i);
        let flag = match text {
            "off" if args.values.len() == 1 => NextUpstream::OFF,
            _ => NextUpstream::from_name(text).ok_or_else(|| ArgError {
                arg: i,
                message: format!(
                    "expected error, timeout, http_502, http_503, http_504 or off alone, found \"{text}\""
                ),
            })?,
        };
        set = set.with(flag);
    }
    scope.settings.proxy_next_upstream = Some(set);
    Ok(())
}

/// The variables `proxy_set_header` knows besides the request's.
const PROXY_VARIABLES: &[&str] = &["proxy_host", "proxy_add_x_forwarded_for"];

/// A value whose variables are all known (nginx refuses an unknown one
/// when it loads the configuration, rather than sending it empty).
fn known_variables(value: &str, own: &[&str]) -> Result<(), String> {
    match vars::unknown_variable(value, own) {
        Some(name) => Err(format!("unknown variable \"${name}\"")),
        None => Ok(()),
    }
}

fn gzip_types(scope: &mut Scope, args: &Args) -> Result<(), ArgError> {
    let mut types = Vec::with_capacity(args.values.len());
    for i in 0..args.values.len() {
        let mime = args.parse(i, |t| {
            let valid = t == "*"
                || t.split_once('/').is_some_and(|(a, b)| {
                    is_method_token(a) && is_method_token(b) && !b.contains('/')
                });
            match valid {
                true => Ok(t.to_ascii_lowercase()),
                false => Err(format!(
                    "invalid media type \"{t}\" (expected type/subtype, or *)"
                )),
            }
        })?;
        types.push(mime);
    }
    scope.settings.gzip_types = Some(types);
    Ok(())
}

fn add_header(scope: &mut Scope, args: &Args) -> Result<(), ArgError> {
    let name = args.parse(0, |t| match is_method_token(t) {
        true => Ok(t.to_string()),
        false => Err(format!("invalid header name \"{t}\"")),
    })?;
    let value = args.parse(1, |t| {
        if t.bytes().any(|b| matches!(b, b'\r' | b'\n' | 0)) {
            return Err("a header value cannot hold a line break".to_string());
        }
        known_variables(t, &[])?;
        Ok(t.to_string())
    })?;
    let always = match args.values.len() {
        3 => args.parse(2, |t| match t {
            "always" => Ok(true),
            _ => Err(format!("expected \"always\", found \"{t}\"")),
        })?,
        _ => false,
    };
    scope
        .settings
        .add_header
        .get_or_insert_with(Vec::new)
        .push(AddHeader {
            name,
            value,
            always,
        });
    Ok(())
}

fn error_page(scope: &mut Scope, args: &Args) -> Result<(), ArgError> {
    let last = args.values.len() - 1;
    let codes = (0..last)
        .map(|i| args.parse(i, |t| values::status(t, 300..=599)))
        .collect::<Result<Vec<u16>, ArgError>>()?;
    let uri = args.text(last);
    if !uri.starts_with('/') {
        return Err(ArgError {
            arg: last,
            message: format!("error page URI \"{uri}\" must start with \"/\""),
        });
    }
    let page = At {
        value: ErrorPage {
            codes,
            uri: uri.to_string(),
        },
        name: args.name.span,
        arg: args.span(last),
    };
    scope
        .settings
        .error_pages
        .get_or_insert_with(Vec::new)
        .push(page);
    Ok(())
}

fn cgi(scope: &mut Scope, args: &Args) -> Result<(), ArgError> {
    let ext = args.text(0);
    let valid = ext.len() > 1 && ext.starts_with('.') && !ext[1..].contains(['.', '/']);
    if !valid {
        return Err(ArgError {
            arg: 0,
            message: format!(
                "invalid CGI extension \"{ext}\" (expected a dot and a name, like .py)"
            ),
        });
    }
    let list = scope.settings.cgi.get_or_insert_with(Vec::new);
    if list.iter().any(|c| c.value.ext == ext) {
        return Err(ArgError {
            arg: 0,
            message: format!("CGI extension \"{ext}\" is already handled in this block"),
        });
    }
    // A bare name (`python3`) is looked up in PATH when run; a name with a
    // `/` is a path relative to this file.
    let interpreter = args.values.get(1).map(|t| match t.text.contains('/') {
        true => args.path(1),
        false => PathArg {
            path: PathBuf::from(&*t.text),
            written: t.text.to_string(),
            span: t.span,
        },
    });
    list.push(args.at(Cgi {
        ext: ext.to_string(),
        interpreter,
    }));
    Ok(())
}

fn timeout(text: &str) -> Result<std::time::Duration, String> {
    let time = values::time(text)?;
    if time.is_zero() {
        return Err("this timeout must be greater than 0".to_string());
    }
    Ok(time)
}

fn header_size(text: &str) -> Result<usize, String> {
    let size = values::size(text)?;
    if size < 1024 {
        return Err(format!(
            "client_max_header_size \"{text}\" is too small (at least 1k)"
        ));
    }
    usize::try_from(size).map_err(|_| format!("size \"{text}\" is too large"))
}

fn worker_processes(text: &str) -> Result<WorkerProcesses, String> {
    match (text, values::number(text)) {
        ("auto", _) => Ok(WorkerProcesses::Auto),
        (_, Some(n @ 1..=512)) => Ok(WorkerProcesses::Count(n as usize)),
        _ => Err(format!(
            "invalid worker_processes \"{text}\" (1-512 or auto)"
        )),
    }
}

fn max_connections(text: &str) -> Result<usize, String> {
    match values::number(text) {
        Some(n @ 1..=1_000_000) => Ok(n as usize),
        _ => Err(format!("invalid max_connections \"{text}\" (1-1000000)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions() {
        let cases: &[(&str, Option<&str>)] = &[
            ("lisen", Some("listen")),
            ("roots", Some("root")),
            ("autoindx", Some("autoindex")),
            ("server_nmae", Some("server_name")),
            ("client_max_body", None),
            ("proxy_pas", Some("proxy_pass")),
            ("xyz", None),
            ("r", None),
        ];
        for (name, expected) in cases {
            assert_eq!(did_you_mean(name), *expected, "{name}");
        }
    }

    #[test]
    fn server_is_chosen_by_context() {
        let block = lookup("server", Context::Main).expect("known");
        assert!(block.opens_block());
        let member = lookup("server", Context::Upstream).expect("known");
        assert!(!member.opens_block());
        let wrong = lookup("server", Context::Location).expect("known");
        assert!(!wrong.contexts.contains(Context::Location));
    }

    #[test]
    fn table_is_consistent() {
        for d in DIRECTIVES {
            assert!(!d.usage.is_empty() && !d.doc.is_empty(), "{}", d.name);
            let twins = DIRECTIVES
                .iter()
                .filter(|o| o.name == d.name && o.contexts.0 & d.contexts.0 != 0)
                .count();
            assert_eq!(twins, 1, "{} has overlapping entries", d.name);
        }
    }

    #[test]
    fn arity() {
        assert!(Exactly(1).accepts(1) && !Exactly(1).accepts(2));
        assert!(AtLeast(2).accepts(9) && !AtLeast(2).accepts(1));
        assert!(Between(1, 2).accepts(2) && !Between(1, 2).accepts(0) && !Between(1, 2).accepts(3));
    }
}

/// `path` with `.` and `..` resolved by name, without touching the file
/// system: `conf.d/../www` is `www`. Scripts see clean paths in
/// `SCRIPT_FILENAME` (php-cgi refuses one with `..`), and logs read better.
fn lexical(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            Component::CurDir => {}
            Component::ParentDir => match out.components().next_back() {
                Some(Component::Normal(_)) => {
                    out.pop();
                }
                // Nothing is above the root.
                Some(Component::RootDir | Component::Prefix(_)) => {}
                Some(Component::CurDir | Component::ParentDir) | None => out.push(part),
            },
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod lexical_tests {
    use super::*;

    #[test]
    fn dots_resolve_by_name() {
        let cases = [
            ("/etc/webserv/conf.d/../www", "/etc/webserv/www"),
            ("/a/./b/../../c", "/c"),
            ("/a/b/", "/a/b"),
            ("/..", "/"),
            ("rel/../../x", "../x"),
        ];
        for (input, expected) in cases {
            assert_eq!(lexical(Path::new(input)), Path::new(expected), "{input}");
        }
    }
}
