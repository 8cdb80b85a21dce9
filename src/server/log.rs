//! The access log (combined format, per server) and the error log.
//!
//! Log files are opened once per configuration, in append mode, and
//! written with one `write` per line, as nginx does.

use std::collections::HashMap;
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::net::SocketAddr;
use std::path::PathBuf;

use chrono::Local;

use crate::routing::{LogLevel, LogTarget, RoutingTable};

#[derive(Debug)]
pub struct Logs {
    error: LogTarget,
    level: LogLevel,
    files: HashMap<PathBuf, File>,
}

/// What the access log says about one response.
pub struct AccessEntry<'a> {
    pub peer: SocketAddr,
    pub request_line: &'a str,
    pub status: u16,
    pub bytes: u64,
    pub referer: Option<&'a str>,
    pub user_agent: Option<&'a str>,
}

impl Logs {
    /// Opens every log file `table` names.
    pub fn open(table: &RoutingTable) -> io::Result<Logs> {
        let mut files = HashMap::new();
        let targets = table
            .servers
            .iter()
            .map(|s| &s.access_log)
            .chain(std::iter::once(&table.error_log));
        for target in targets {
            if let LogTarget::File(path) = target {
                if !files.contains_key(path) {
                    let file = OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(path)
                        .map_err(|e| {
                            io::Error::new(e.kind(), format!("{}: {e}", path.display()))
                        })?;
                    files.insert(path.clone(), file);
                }
            }
        }
        Ok(Logs {
            error: table.error_log.clone(),
            level: table.error_log_level,
            files,
        })
    }

    /// Logs to stderr only, before a configuration is loaded.
    pub fn stderr() -> Logs {
        Logs {
            error: LogTarget::Stderr,
            level: LogLevel::Notice,
            files: HashMap::new(),
        }
    }

    pub fn error(&mut self, message: fmt::Arguments) {
        self.error_log(LogLevel::Error, message);
    }

    /// Something went wrong outside the server that it works around (an
    /// upstream server failing its health checks).
    pub fn warn(&mut self, message: fmt::Arguments) {
        self.error_log(LogLevel::Warn, message);
    }

    /// Something a client did that the server refused or repaired (a
    /// dropped header): not the server's problem, so below `notice`.
    pub fn info(&mut self, message: fmt::Arguments) {
        self.error_log(LogLevel::Info, message);
    }

    /// Whether lines of `level` are written (so callers can skip building
    /// a message nobody reads).
    pub fn enabled(&self, level: LogLevel) -> bool {
        level >= self.level
    }

    /// What the operator asked for happened (shutdown, reload), as nginx
    /// logs it: not an error.
    pub fn notice(&mut self, message: fmt::Arguments) {
        self.error_log(LogLevel::Notice, message);
    }

    fn error_log(&mut self, level: LogLevel, message: fmt::Arguments) {
        if !self.enabled(level) {
            return;
        }
        let level = level.name();
        let line = format!(
            "{} [{level}] {message}\n",
            Local::now().format("%Y/%m/%d %H:%M:%S")
        );
        let target = self.error.clone();
        self.write(&target, line.as_bytes());
    }

    pub fn access(&mut self, target: &LogTarget, entry: &AccessEntry) {
        if *target == LogTarget::Off {
            return;
        }
        let line = format!(
            "{} - - [{}] \"{}\" {} {} \"{}\" \"{}\"\n",
            entry.peer.ip(),
            Local::now().format("%d/%b/%Y:%H:%M:%S %z"),
            entry.request_line.escape_debug(),
            entry.status,
            entry.bytes,
            entry.referer.unwrap_or("-").escape_debug(),
            entry.user_agent.unwrap_or("-").escape_debug(),
        );
        self.write(target, line.as_bytes());
    }

    fn write(&mut self, target: &LogTarget, line: &[u8]) {
        // A log that cannot be written must not take the server down.
        let _ = match target {
            LogTarget::Off => Ok(()),
            LogTarget::Stdout => io::stdout().write_all(line),
            LogTarget::Stderr => io::stderr().write_all(line),
            LogTarget::File(path) => match self.files.get_mut(path) {
                Some(file) => file.write_all(line),
                None => io::stderr().write_all(line),
            },
        };
    }
}

/// A line on stdout (the listening addresses). A closed or full pipe must
/// not take the server down, as `println!` would by panicking.
pub fn console(message: fmt::Arguments) {
    let line = format!("{message}\n");
    let _ = io::stdout().lock().write_all(line.as_bytes());
    let _ = io::stdout().flush();
}

/// Text on stderr (diagnostics of a reload), with the same care.
pub fn console_err(text: &str) {
    let _ = io::stderr().write_all(text.as_bytes());
}
