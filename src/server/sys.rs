//! The few system calls std does not offer: `send` with `MSG_MORE` and
//! `sendfile`. Both work on non-blocking sockets and report `WouldBlock`
//! like any other write.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

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
