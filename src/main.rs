//! Command line: `webserv [CONFIG]` serves, `webserv check [CONFIG...]` lints.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(name = "webserv", version, about = "An nginx-style HTTP/1.1 server")]
#[command(args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Configuration file to serve.
    #[arg(default_value = "conf.d/default.conf")]
    config: PathBuf,
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
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Text,
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Check { configs, format }) => {
            webserv::config::check_command(&configs, matches!(format, Format::Json))
        }
        None => match webserv::server::run(&cli.config) {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("webserv: {err:#}");
                ExitCode::FAILURE
            }
        },
    }
}
