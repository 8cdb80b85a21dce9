//! Command line: `webserv [CONFIG]` serves, `webserv check [CONFIG...]`
//! lints, `webserv route CONFIG URL` explains routing, `webserv fmt` lays
//! files out, `webserv -s reload|stop [CONFIG]` signals the running server.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use webserv::config::CheckFormat;
use webserv::server::pidfile::{self, Control};

#[derive(Parser)]
#[command(name = "webserv", version, about = "An nginx-style HTTP/1.1 server")]
#[command(args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Configuration file to serve.
    #[arg(default_value = "conf.d/default.conf")]
    config: PathBuf,
    /// Signal the server whose pid is in CONFIG's `pid` file, as `nginx -s`.
    #[arg(short = 's', value_enum, value_name = "SIGNAL")]
    signal: Option<Signal>,
}

#[derive(Clone, Copy, ValueEnum)]
enum Signal {
    /// SIGHUP: load the configuration again.
    Reload,
    /// SIGTERM: finish the requests in flight, then exit.
    Stop,
}

#[derive(Subcommand)]
enum Command {
    /// Parse and validate configuration files, print every diagnostic (like `nginx -t`).
    Check {
        /// Configuration files to check.
        #[arg(default_value = "conf.d/default.conf")]
        configs: Vec<PathBuf>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
        /// Fail (exit 1) when there is a warning, as for an error.
        #[arg(long)]
        deny_warnings: bool,
    },
    /// Show which listener, server and location a request would reach, and
    /// what it would get. Runs nothing, binds nothing.
    Route {
        /// Configuration file.
        config: PathBuf,
        /// The request URL, e.g. http://127.0.0.1:8080/images/a.png
        url: String,
        /// Request method.
        #[arg(short = 'X', default_value = "GET")]
        method: String,
        /// A request header, 'Name: value' (repeatable).
        #[arg(short = 'H', value_name = "HEADER")]
        headers: Vec<String>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = RouteFormat::Text)]
        format: RouteFormat,
    },
    /// Rewrite configuration files in the canonical layout (`-`: stdin to stdout).
    Fmt {
        /// Write nothing; list the files that would change, exit 1 if any.
        #[arg(long)]
        check: bool,
        /// Files to format, or `-`.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum RouteFormat {
    Text,
    Json,
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Text,
    Json,
    /// SARIF 2.1.0, for code-scanning tools.
    Sarif,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Check {
            configs,
            format,
            deny_warnings,
        }) => {
            let format = match format {
                Format::Text => CheckFormat::Text,
                Format::Json => CheckFormat::Json,
                Format::Sarif => CheckFormat::Sarif,
            };
            webserv::config::check_command(&configs, format, deny_warnings)
        }
        Some(Command::Route {
            config,
            url,
            method,
            headers,
            format,
        }) => webserv::route::command(
            &config,
            &url,
            &method,
            &headers,
            matches!(format, RouteFormat::Json),
        ),
        Some(Command::Fmt { check, files }) => webserv::config::fmt::command(&files, check),
        None => {
            let outcome = match cli.signal {
                None => webserv::server::run(&cli.config),
                Some(signal) => {
                    let control = match signal {
                        Signal::Reload => Control::Reload,
                        Signal::Stop => Control::Stop,
                    };
                    pidfile::send(&cli.config, control)
                }
            };
            match outcome {
                Ok(()) => ExitCode::SUCCESS,
                Err(err) => {
                    eprintln!("webserv: {err:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
