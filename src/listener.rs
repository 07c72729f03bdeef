//! The listening socket, built by hand.
//!
//! `std::net::TcpListener::bind` makes every choice for you. Here each one is
//! visible, because each one matters to a server with many connections:
//!
//! - `SO_REUSEADDR`, so a restarted server can bind while old connections
//!   of its previous run still sit in TIME_WAIT on the same port;
//! - the backlog, the queue of connections the kernel has completed (the
//!   three-way handshake is done) that the server has not `accept`ed yet;
//! - `IPV6_V6ONLY` off for `[::]`, so one IPv6 socket also takes IPv4
//!   clients (they appear as `::ffff:a.b.c.d`), unless asked otherwise;
//! - non-blocking mode, without which one `accept` could stall the whole loop.
//!
//! The socket is built with socket2 and then handed to mio. This file also
//! raises the process's open-files limit: every connection is a file
//! descriptor, and the usual soft limit of 1024 would cap the server there.

use std::io;
use std::net::SocketAddr;

use socket2::{Domain, Protocol, Socket, Type};

use crate::error::{Error, Result};

/// How to build the listening socket.
#[derive(Debug, Clone)]
pub struct ListenOptions {
    pub addr: SocketAddr,
    /// Length of the kernel's accept queue (capped by `net.core.somaxconn`).
    pub backlog: i32,
    /// For an IPv6 address: refuse IPv4 clients instead of taking them as
    /// IPv4-mapped addresses.
    pub ipv6_only: bool,
}

/// Binds and listens, turning the two errors a user meets most into
/// messages that say how to fix them.
pub fn bind(opts: &ListenOptions) -> Result<mio::net::TcpListener> {
    let socket = build(opts).map_err(|e| explain_bind_error(opts.addr, e))?;
    Ok(mio::net::TcpListener::from_std(socket.into()))
}

fn build(opts: &ListenOptions) -> io::Result<Socket> {
    let socket = Socket::new(
        Domain::for_address(opts.addr),
        Type::STREAM.nonblocking().cloexec(),
        Some(Protocol::TCP),
    )?;
    socket.set_reuse_address(true)?;
    if opts.addr.is_ipv6() {
        socket.set_only_v6(opts.ipv6_only)?;
    }
    socket.bind(&opts.addr.into())?;
    socket.listen(opts.backlog)?;
    Ok(socket)
}

fn explain_bind_error(addr: SocketAddr, e: io::Error) -> Error {
    let port = addr.port();
    match e.kind() {
        io::ErrorKind::PermissionDenied if port < 1024 => Error::usage(format!(
            "cannot listen on {addr}: ports below 1024 need privileges; run as root, \
             or allow this binary with `sudo setcap cap_net_bind_service=+ep {}`, \
             or pick a higher port: --listen 0.0.0.0:8500",
            binary_path()
        )),
        io::ErrorKind::AddrInUse => Error::usage(format!(
            "cannot listen on {addr}: port {port} is already in use by another socket; \
             see who holds it with `fivetuple conns --port {port} -p`, or pick another port with --listen"
        )),
        io::ErrorKind::AddrNotAvailable => Error::usage(format!(
            "cannot listen on {addr}: that address is not one of this machine's; \
             use 0.0.0.0 (all IPv4 addresses), [::] (all addresses) or 127.0.0.1 (this machine only)"
        )),
        _ => Error::io(format!("cannot listen on {addr}"), e),
    }
}

fn binary_path() -> String {
    std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "fivetuple".to_string())
}

/// Raises the soft limit on open files to the hard limit, and returns the
/// new soft limit. Each connection uses one descriptor.
pub fn raise_fd_limit() -> io::Result<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we pass and reads nothing else.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: setrlimit only reads the struct we pass.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
            return Err(io::Error::last_os_error());
        }
        limit = raised;
    }
    Ok(limit.rlim_cur)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(addr: &str) -> ListenOptions {
        ListenOptions {
            addr: addr.parse().unwrap(),
            backlog: 16,
            ipv6_only: false,
        }
    }

    #[test]
    fn port_zero_gets_a_real_port() {
        let listener = bind(&opts("127.0.0.1:0")).unwrap();
        assert_ne!(listener.local_addr().unwrap().port(), 0);
    }

    #[test]
    fn address_in_use_names_the_port_and_the_fix() {
        let first = bind(&opts("127.0.0.1:0")).unwrap();
        let addr = first.local_addr().unwrap();
        let err = bind(&opts(&addr.to_string())).unwrap_err();
        let text = err.to_string();
        assert_eq!(err.exit_code(), 2);
        assert!(text.contains("already in use"), "{text}");
        assert!(
            text.contains(&format!("fivetuple conns --port {}", addr.port())),
            "{text}"
        );
    }

    #[test]
    fn the_fd_limit_is_raised_to_the_hard_limit() {
        let soft = raise_fd_limit().unwrap();
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
        assert_eq!(soft, limit.rlim_max);
    }
}
