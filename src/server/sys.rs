//! The few system calls std does not offer: `send` with `MSG_MORE`,
//! `sendfile` (both work on non-blocking sockets and report `WouldBlock`
//! like any other write) and `pidfd_open` (a child's exit as a readable
//! descriptor for the event loop).

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// Sends `buf`, telling the kernel more data follows at once (a file body),
/// so the head and the first bytes of the body leave in one segment.
pub fn send_more(socket: &impl AsRawFd, buf: &[u8]) -> io::Result<usize> {
    // SAFETY: the pointer and length come from a live slice, and the fd is
    // owned by `socket` for the duration of the call.
    let n = unsafe {
        libc::send(
            socket.as_raw_fd(),
            buf.as_ptr().cast(),
            buf.len(),
            libc::MSG_MORE | libc::MSG_NOSIGNAL,
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// Copies up to `count` bytes of `file` from `*offset` to `socket` in the
/// kernel, advancing `*offset` by what was sent.
pub fn sendfile(
    socket: &impl AsRawFd,
    file: &File,
    offset: &mut u64,
    count: u64,
) -> io::Result<usize> {
    let mut off =
        libc::off_t::try_from(*offset).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // Linux sends at most 0x7ffff000 bytes per call anyway.
    let count = count.min(0x7fff_f000) as usize;
    // SAFETY: both fds are owned by live objects for the duration of the
    // call, and `off` is a valid, exclusively borrowed off_t.
    let n = unsafe { libc::sendfile(socket.as_raw_fd(), file.as_raw_fd(), &mut off, count) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    *offset = off as u64;
    Ok(n as usize)
}

/// A descriptor that becomes readable when process `pid` exits (Linux 5.3+;
/// `Err` on older kernels, where callers do without). Close-on-exec.
pub fn pidfd_open(pid: u32) -> io::Result<OwnedFd> {
    let pid =
        libc::pid_t::try_from(pid).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: pidfd_open takes two integers and returns a new descriptor
    // (close-on-exec by definition) or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = i32::try_from(fd).map_err(|_| io::Error::from(io::ErrorKind::InvalidData))?;
    // SAFETY: the kernel just returned this descriptor; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Catches SIGXFSZ with a handler that does nothing: a write past
/// `RLIMIT_FSIZE` then fails with EFBIG (an upload answered 507) instead of
/// killing the server. A caught signal, unlike an ignored one, is back to
/// its default in the programs the server executes (CGI scripts).
pub fn survive_file_size_limit() -> io::Result<()> {
    let flag = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    signal_hook::flag::register(libc::SIGXFSZ, flag).map(drop)
}
