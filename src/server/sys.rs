//! The few system calls std does not offer: `send` with `MSG_MORE`,
//! `sendfile` (both work on non-blocking sockets and report `WouldBlock`
//! like any other write), a listening socket with `IPV6_V6ONLY`, and
//! `pidfd_open` (a child's exit as a readable
//! descriptor for the event loop).

use std::fs::File;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// `writev` with `MSG_MORE`: the kernel holds a last partial segment until
/// more data or a FIN pushes it, so a head and the first bytes of a file
/// body (`sendfile` next), or the last bytes and the FIN, leave in one
/// segment.
pub fn send_more(socket: &impl AsRawFd, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
    // SAFETY: an `IoSlice` is ABI-compatible with `iovec`; the header points
    // at `bufs`, live for the call, and the fd is owned by `socket`.
    let n = unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = bufs.as_ptr().cast_mut().cast();
        msg.msg_iovlen = bufs.len() as _;
        libc::sendmsg(
            socket.as_raw_fd(),
            &msg,
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

/// A non-blocking, close-on-exec listening socket on `addr`, with
/// `SO_REUSEADDR` and a backlog of 1024. An IPv6 socket is `IPV6_V6ONLY`
/// (as nginx's default `ipv6only=on`), so `listen [::]:P` and `listen P`
/// can stand side by side.
pub fn listen_on(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    listen_with(addr, false)
}

/// [`listen_on`] with `SO_REUSEPORT`: one of a group of sockets on the same
/// address (all of them `SO_REUSEPORT`, same user), among which the kernel
/// spreads new connections by a hash of their addresses and ports.
pub fn listen_on_shared(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    listen_with(addr, true)
}

fn listen_with(addr: SocketAddr, reuse_port: bool) -> io::Result<std::net::TcpListener> {
    let domain = match addr {
        SocketAddr::V4(_) => libc::AF_INET,
        SocketAddr::V6(_) => libc::AF_INET6,
    };
    // SAFETY: socket takes integers and returns a new descriptor or -1.
    let fd = unsafe {
        libc::socket(
            domain,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this descriptor; nothing else owns it.
    let socket = unsafe { OwnedFd::from_raw_fd(fd) };
    set_flag(&socket, libc::SOL_SOCKET, libc::SO_REUSEADDR)?;
    if reuse_port {
        set_flag(&socket, libc::SOL_SOCKET, libc::SO_REUSEPORT)?;
    }
    if domain == libc::AF_INET6 {
        set_flag(&socket, libc::IPPROTO_IPV6, libc::IPV6_V6ONLY)?;
    }
    let (storage, len) = sockaddr(addr);
    // SAFETY: `storage` holds a valid sockaddr of `len` bytes for `addr`'s
    // family, alive for the call.
    if unsafe { libc::bind(socket.as_raw_fd(), (&raw const storage).cast(), len) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: listen takes integers only.
    if unsafe { libc::listen(socket.as_raw_fd(), 1024) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(std::net::TcpListener::from(socket))
}

/// Sets the boolean socket option `name` at `level` to 1.
fn set_flag(socket: &OwnedFd, level: libc::c_int, name: libc::c_int) -> io::Result<()> {
    let on: libc::c_int = 1;
    // SAFETY: the value pointer and size describe a live c_int.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            name,
            (&raw const on).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// `addr` as a `sockaddr_storage` and its length.
fn sockaddr(addr: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: all-zero bytes are a valid sockaddr_storage.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match addr {
        SocketAddr::V4(v4) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: v4.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(v4.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than and aligned for
            // sockaddr_in.
            unsafe { std::ptr::write((&raw mut storage).cast(), sin) };
            std::mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(v6) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: v6.port().to_be(),
                sin6_flowinfo: v6.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: v6.ip().octets(),
                },
                sin6_scope_id: v6.scope_id(),
            };
            // SAFETY: sockaddr_storage is larger than and aligned for
            // sockaddr_in6.
            unsafe { std::ptr::write((&raw mut storage).cast(), sin6) };
            std::mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (storage, len as libc::socklen_t)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flag(socket: &impl AsRawFd, level: libc::c_int, name: libc::c_int) -> libc::c_int {
        let mut value: libc::c_int = -1;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: the pointers describe a live c_int and its size.
        let rc = unsafe {
            libc::getsockopt(
                socket.as_raw_fd(),
                level,
                name,
                (&raw mut value).cast(),
                &mut len,
            )
        };
        assert_eq!(rc, 0, "{}", io::Error::last_os_error());
        value
    }

    /// `listen [::]:P` beside `listen P` must both bind, as in nginx: IPv6
    /// sockets are IPv6-only. Checked on loopback (tests bind nothing else).
    #[test]
    fn ipv6_listeners_are_v6only_and_both_families_listen() {
        let v4 = listen_on("127.0.0.1:0".parse().unwrap()).expect("IPv4 listener");
        assert_eq!(flag(&v4, libc::SOL_SOCKET, libc::SO_REUSEADDR), 1);
        assert_eq!(flag(&v4, libc::SOL_SOCKET, libc::SO_ACCEPTCONN), 1);
        let port = v4.local_addr().unwrap().port();
        match listen_on(format!("[::1]:{port}").parse().unwrap()) {
            Ok(v6) => {
                assert_eq!(flag(&v6, libc::IPPROTO_IPV6, libc::IPV6_V6ONLY), 1);
                assert_eq!(v6.local_addr().unwrap().port(), port);
            }
            // A machine without IPv6 cannot show it.
            Err(err) if err.raw_os_error() == Some(libc::EADDRNOTAVAIL) => {}
            Err(err) if err.raw_os_error() == Some(libc::EAFNOSUPPORT) => {}
            Err(err) => panic!("IPv6 listener: {err}"),
        }
    }
}
