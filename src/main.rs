//! Command line: `webserv [CONFIG]` serves, `webserv check [CONFIG...]`
//! lints, `webserv -s reload|stop [CONFIG]` signals the running server.

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
