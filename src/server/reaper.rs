//! CGI children that outlived their exchange, until their exit status is
//! collected: no zombie survives, and none runs forever.
//!
//! A child whose run was abandoned was killed already; one that finished
//! its output normally may still be running (a script that closed stdout
//! and lingers): it gets `cgi_timeout` to exit, then its process group is
//! killed. The loop calls [`Reaper::reap`] after every turn (SIGCHLD wakes
//! it) and sleeps no longer than [`Reaper::next_deadline`].

use std::process::Child;
use std::time::Instant;

use crate::handlers::cgi;

#[derive(Debug, Default)]
pub struct Reaper {
    /// Each child with the instant it is killed at (`None`: killed).
    children: Vec<(Child, Option<Instant>)>,
}

impl Reaper {
    /// Takes `child` to collect; it is killed at `kill_at` if still running.
    pub fn adopt(&mut self, mut child: Child, kill_at: Option<Instant>) {
        if !matches!(child.try_wait(), Ok(Some(_))) {
            self.children.push((child, kill_at));
        }
    }

    /// Collects the children that exited; kills those past their time.
    pub fn reap(&mut self, now: Instant) {
        self.children.retain_mut(|(child, kill_at)| {
            if matches!(child.try_wait(), Ok(Some(_)) | Err(_)) {
                return false;
            }
            if kill_at.is_some_and(|at| at <= now) {
                cgi::kill(child);
                *kill_at = None;
            }
            true
        });
    }

    /// The earliest instant a child is to be killed at.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.children.iter().filter_map(|(_, at)| *at).min()
    }

    pub fn len(&self) -> usize {
        self.children.len()
    }

    pub fn is_empty(&self) -> bool {
        self.children.is_empty()
    }

    /// At exit: every child still running is killed and collected.
    pub fn kill_all(&mut self) {
        for (mut child, _) in self.children.drain(..) {
            cgi::kill(&mut child);
            let _ = child.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::CommandExt;
    use std::process::Command;
    use std::time::Duration;

    fn sleeper() -> Child {
        Command::new("/bin/sleep")
            .arg("30")
            .process_group(0)
            .spawn()
            .expect("spawn sleep")
    }

    #[test]
    fn a_lingering_child_is_killed_at_its_deadline_then_collected() {
        let mut reaper = Reaper::default();
        let now = Instant::now();
        reaper.adopt(sleeper(), Some(now + Duration::from_secs(60)));
        reaper.reap(now);
        assert_eq!(reaper.len(), 1, "still within its time");
        assert_eq!(reaper.next_deadline(), Some(now + Duration::from_secs(60)));
        reaper.reap(now + Duration::from_secs(61));
        assert_eq!(reaper.next_deadline(), None, "killed");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !reaper.is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
            reaper.reap(Instant::now());
        }
        assert!(reaper.is_empty(), "the killed child was collected");
    }
}
