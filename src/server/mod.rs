//! Everything that touches sockets and pipes: the event loop
//! ([`event_loop`]), the connection state machine ([`conn`]), deadlines,
//! logs and the few raw system calls; the master of several workers
//! ([`master`]), panic isolation ([`panic`]) and the pid file ([`pidfile`]).

pub mod cgi;
pub mod conn;
pub mod event_loop;
#[cfg(feature = "fault-injection")]
pub mod fault;
pub mod health;
pub mod log;
pub mod master;
pub mod panic;
pub mod pidfile;
pub mod proxy;
pub mod reaper;
pub mod relay;
pub mod sys;
pub mod timers;
pub mod transport;
pub mod tunnel;

use std::path::Path;

use anyhow::bail;

use crate::config;
use crate::server::pidfile::PidFile;

/// Loads `config` and serves it until SIGINT/SIGTERM: in this process
/// with `worker_processes 1`, else as the master of that many workers. A
/// configuration with errors prints the same diagnostics as `check` and
/// fails.
pub fn run(config: &Path) -> anyhow::Result<()> {
    crate::handlers::cgi::cloexec_inherited_fds();
    sys::survive_file_size_limit()?;
    panic::install_hook();
    let (table, report) = config::load(config);
    eprint!("{}", report.render_text());
    let Some(table) = table else {
        bail!("{}: configuration has errors", config.display());
    };
    let pid = table.pid.clone();
    match table.worker_processes.resolve() {
        1 => {
            let _pid_file = pid.as_deref().map(PidFile::create).transpose()?;
            let mut event_loop = event_loop::EventLoop::new(config.to_path_buf(), table)?;
            event_loop.run()
        }
        count => master::run(config, table, count, pid.as_deref()),
    }
}

/// SIGHUP's first step, for the single process and the master alike: load
/// `config` again, show its diagnostics, and refuse it (logged; the running
/// configuration stays) when it has errors.
fn reload_table(config: &Path, logs: &mut log::Logs) -> Option<crate::routing::RoutingTable> {
    let (table, report) = config::load(config);
    let diagnostics = report.render_text();
    if !diagnostics.is_empty() {
        log::console_err(&diagnostics);
    }
    if table.is_none() {
        logs.error(format_args!(
            "reload refused: {} has errors; the running configuration stays",
            config.display()
        ));
    }
    table
}
