//! `pid PATH` and `webserv -s reload|stop` (SPEC §9.1).
//!
//! The serving process (the master, when there is one) writes its pid when
//! it starts serving and removes the file when it exits; `-s` reads the
//! configuration for the path, the file for the pid, and signals it, as
//! `nginx -s` does.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

use crate::config;

/// The pid file of the running process, removed when dropped.
#[derive(Debug)]
pub struct PidFile {
    path: PathBuf,
}

impl PidFile {
    /// Writes this process's pid to `path` (whole, or not at all).
    pub fn create(path: &Path) -> anyhow::Result<PidFile> {
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        fs::write(&tmp, format!("{}\n", std::process::id()))
            .and_then(|()| fs::rename(&tmp, path))
            .with_context(|| format!("writing the pid file {}", path.display()))?;
        Ok(PidFile {
            path: path.to_path_buf(),
        })
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        // Only our own pid is removed: a newer server may own the file now.
        let ours = fs::read_to_string(&self.path)
            .is_ok_and(|text| text.trim() == std::process::id().to_string());
        if ours {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// What `-s` asks the running server to do.
#[derive(Debug, Clone, Copy)]
pub enum Control {
    Reload,
    Stop,
}

/// `webserv -s reload|stop CONFIG`: signals the pid written in the file the
/// `pid` directive of `config` names.
pub fn send(config: &Path, control: Control) -> anyhow::Result<()> {
    let (table, report) = config::load(config);
    eprint!("{}", report.render_text());
    let Some(table) = table else {
        bail!("{}: configuration has errors", config.display());
    };
    let Some(path) = table.pid else {
        bail!(
            "{} has no \"pid\" directive: no running server to signal",
            config.display()
        );
    };
    let text = match fs::read_to_string(&path) {
        Ok(text) => text,
        Err(err) if err.kind() == io::ErrorKind::NotFound => {
            bail!(
                "pid file {} does not exist: is webserv running?",
                path.display()
            )
        }
        Err(err) => bail!("reading pid file {}: {err}", path.display()),
    };
    let pid: libc::pid_t = match text.trim().parse() {
        Ok(pid) if pid > 0 => pid,
        _ => bail!(
            "pid file {} holds no pid: {:?}",
            path.display(),
            text.trim()
        ),
    };
    let signal = match control {
        Control::Reload => libc::SIGHUP,
        Control::Stop => libc::SIGTERM,
    };
    // SAFETY: kill(2) with a positive pid and a valid signal number.
    if unsafe { libc::kill(pid, signal) } != 0 {
        let err = io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::ESRCH) {
            bail!(
                "no process {pid} (stale pid file {}): is webserv running?",
                path.display()
            );
        }
        bail!("signalling process {pid}: {err}");
    }
    Ok(())
}
