//! The inotify descriptor the open-file cache watches directories with
//! (libc, non-blocking, close-on-exec), and the parsing of its events.
//!
//! A directory is watched once, with the union of the masks asked for
//! (`IN_MASK_ADD`): the parent of a cached path for every change to its
//! entries, each further ancestor for renames, deletions and attribute
//! changes only (so busy directories such as `/tmp` wake the loop less).

use std::collections::HashMap;
use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::rc::Rc;

/// What an ancestor directory of a cached path is watched for.
pub const ANCESTOR: u32 = libc::IN_ATTRIB
    | libc::IN_CREATE
    | libc::IN_DELETE
    | libc::IN_MOVED_FROM
    | libc::IN_MOVED_TO
    | libc::IN_DELETE_SELF
    | libc::IN_MOVE_SELF;
/// What the parent directory of a cached path is watched for: also writes.
pub const PARENT: u32 = ANCESTOR | libc::IN_MODIFY | libc::IN_CLOSE_WRITE;

/// One inotify instance and the directories it watches.
pub struct Inotify {
    fd: OwnedFd,
    by_wd: HashMap<i32, Watch>,
    by_path: HashMap<Rc<Path>, i32>,
    /// The most directories watched at once: the kernel's own limit, or a
    /// smaller one for tests (`fault-injection`).
    limit: usize,
}

struct Watch {
    dir: Rc<Path>,
    mask: u32,
}

/// One event, as read from the descriptor.
#[derive(Debug)]
pub struct Event<'a> {
    pub wd: i32,
    pub mask: u32,
    /// The entry of the watched directory it is about; empty when about
    /// the directory itself.
    pub name: &'a [u8],
}

impl Inotify {
    pub fn new() -> io::Result<Inotify> {
        // SAFETY: plain system call; the result is checked before use.
        let fd = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just returned by inotify_init1 and is owned here.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Inotify {
            fd,
            by_wd: HashMap::new(),
            by_path: HashMap::new(),
            limit: watch_limit(),
        })
    }

    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Watches every directory from `/` down to the parent of `path` (an
    /// absolute path without symbolic links). Fails, watching what it
    /// could, when one cannot be watched.
    pub fn watch_ancestors(&mut self, path: &Path) -> io::Result<()> {
        let Some(parent) = path.parent() else {
            return Err(io::ErrorKind::InvalidInput.into());
        };
        let mut ancestors: Vec<&Path> = parent.ancestors().skip(1).collect();
        ancestors.reverse();
        for dir in ancestors {
            self.watch(dir, ANCESTOR)?;
        }
        self.watch(parent, PARENT)
    }

    fn watch(&mut self, dir: &Path, mask: u32) -> io::Result<()> {
        if let Some(watch) = self.by_path.get(dir).and_then(|wd| self.by_wd.get(wd)) {
            if watch.mask & mask == mask {
                return Ok(());
            }
        } else if self.by_wd.len() >= self.limit {
            return Err(io::Error::from_raw_os_error(libc::ENOSPC));
        }
        let cpath = CString::new(dir.as_os_str().as_bytes())
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        let flags = mask | libc::IN_MASK_ADD | libc::IN_ONLYDIR | libc::IN_DONT_FOLLOW;
        // SAFETY: `cpath` is a live NUL-terminated string; the fd is ours.
        let wd = unsafe { libc::inotify_add_watch(self.fd.as_raw_fd(), cpath.as_ptr(), flags) };
        if wd < 0 {
            return Err(io::Error::last_os_error());
        }
        let dir: Rc<Path> = Rc::from(dir);
        let old_mask = self.by_wd.get(&wd).map_or(0, |w| w.mask);
        if let Some(old) = self.by_wd.get(&wd) {
            // The same directory under another name (a bind mount): its
            // events now name the newer path only.
            if old.dir != dir {
                self.by_path.remove(&old.dir);
            }
        }
        self.by_path.insert(Rc::clone(&dir), wd);
        self.by_wd.insert(
            wd,
            Watch {
                dir,
                mask: old_mask | mask,
            },
        );
        Ok(())
    }

    /// The directory a watch descriptor stands for.
    pub fn dir(&self, wd: i32) -> Option<&Rc<Path>> {
        self.by_wd.get(&wd).map(|w| &w.dir)
    }

    /// Forgets the watch of `wd` (the kernel dropped it: `IN_IGNORED`).
    pub fn forget(&mut self, wd: i32) {
        if let Some(watch) = self.by_wd.remove(&wd) {
            if self.by_path.get(&watch.dir) == Some(&wd) {
                self.by_path.remove(&watch.dir);
            }
        }
    }

    /// Stops watching `dir` and every directory under it: they moved or
    /// vanished, so their paths no longer name them. The next cached path
    /// there watches them again under their new identity.
    pub fn unwatch_under(&mut self, dir: &Path) {
        let gone: Vec<i32> = self
            .by_wd
            .iter()
            .filter(|(_, w)| w.dir.starts_with(dir))
            .map(|(wd, _)| *wd)
            .collect();
        for wd in gone {
            // SAFETY: plain system call on our own descriptor; a watch the
            // kernel already dropped gives EINVAL, which changes nothing.
            unsafe { libc::inotify_rm_watch(self.fd.as_raw_fd(), wd) };
            self.forget(wd);
        }
    }

    /// Reads what the kernel queued into `buf`: `Ok(0)` when nothing is.
    pub fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            // SAFETY: `buf` is a live, exclusively borrowed buffer of the
            // given length; the fd is ours.
            let n = unsafe { libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if n >= 0 {
                return Ok(n as usize);
            }
            let err = io::Error::last_os_error();
            match err.kind() {
                io::ErrorKind::WouldBlock => return Ok(0),
                io::ErrorKind::Interrupted => {}
                _ => return Err(err),
            }
        }
    }
}

/// The events in the first `len` bytes a read returned.
pub fn events(buf: &[u8]) -> impl Iterator<Item = Event<'_>> {
    const HEAD: usize = std::mem::size_of::<libc::inotify_event>();
    let mut at = 0;
    std::iter::from_fn(move || {
        let head = buf.get(at..at + HEAD)?;
        let word = |i: usize| u32::from_ne_bytes([head[i], head[i + 1], head[i + 2], head[i + 3]]);
        let (wd, mask, len) = (word(0) as i32, word(4), word(12) as usize);
        let name = buf.get(at + HEAD..at + HEAD + len)?;
        at += HEAD + len;
        let end = name.iter().position(|&b| b == 0).unwrap_or(name.len());
        Some(Event {
            wd,
            mask,
            name: &name[..end],
        })
    })
}

#[cfg(not(feature = "fault-injection"))]
fn watch_limit() -> usize {
    usize::MAX
}

/// Tests stand in for a full `fs.inotify.max_user_watches` with
/// `WEBSERV_INOTIFY_WATCHES=N`.
#[cfg(feature = "fault-injection")]
fn watch_limit() -> usize {
    std::env::var("WEBSERV_INOTIFY_WATCHES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(usize::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_events_with_and_without_names() {
        let mut buf = Vec::new();
        let mut push = |wd: i32, mask: u32, name: &[u8], len: u32| {
            buf.extend_from_slice(&wd.to_ne_bytes());
            buf.extend_from_slice(&mask.to_ne_bytes());
            buf.extend_from_slice(&0u32.to_ne_bytes());
            buf.extend_from_slice(&len.to_ne_bytes());
            let mut padded = name.to_vec();
            padded.resize(len as usize, 0);
            buf.extend_from_slice(&padded);
        };
        push(3, libc::IN_MODIFY, b"a.html", 16);
        push(4, libc::IN_DELETE_SELF, b"", 0);
        let got: Vec<(i32, u32, Vec<u8>)> = events(&buf)
            .map(|e| (e.wd, e.mask, e.name.to_vec()))
            .collect();
        assert_eq!(
            got,
            vec![
                (3, libc::IN_MODIFY, b"a.html".to_vec()),
                (4, libc::IN_DELETE_SELF, Vec::new())
            ]
        );
        // A truncated event is not read past.
        assert_eq!(events(&buf[..20]).count(), 0);
    }

    #[test]
    fn a_change_is_queued_when_its_call_returns() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, b"1").unwrap();
        let mut inotify = Inotify::new().unwrap();
        inotify.watch_ancestors(&file).unwrap();
        let mut buf = [0u8; 4096];
        while inotify.read(&mut buf).unwrap() > 0 {}
        std::fs::write(&file, b"2").unwrap();
        let n = inotify.read(&mut buf).unwrap();
        assert!(events(&buf[..n]).any(|e| e.name == b"f"));
    }
}
