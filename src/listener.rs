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
//! reads what `--listen` asks for ([`ListenSpec`]: an address, a host name,
//! or `:PORT` for every address) and raises the process's open-files limit:
//! every connection is a file descriptor, and the usual soft limit of 1024
//! would cap the server there.

use std::fmt;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};

use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
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
    /// SO_REUSEPORT: several sockets listen on the same address and port,
    /// and the kernel spreads new connections across them by a hash of
    /// the 4-tuple (`serve --workers N`: one socket per worker).
    pub reuse_port: bool,
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
    if opts.reuse_port {
        socket.set_reuse_port(true)?;
    }
    if opts.addr.is_ipv6() {
        socket.set_only_v6(opts.ipv6_only)?;
    }
    socket.bind(&opts.addr.into())?;
    socket.listen(opts.backlog)?;
    Ok(socket)
}

/// A bind that failed is a failure at run time (exit code 1), not a typing
/// mistake: the same command works as root, or once the port is free. The
/// three errors a user meets most get a message that names the fix.
fn explain_bind_error(addr: SocketAddr, e: io::Error) -> Error {
    let port = addr.port();
    let message = match e.kind() {
        io::ErrorKind::PermissionDenied if port < 1024 => format!(
            "cannot listen on {addr}: ports below 1024 need privileges; run as root, \
             or allow this binary with `sudo setcap cap_net_bind_service=+ep {}`, \
             or pick a higher port: --listen 0.0.0.0:8500",
            binary_path()
        ),
        io::ErrorKind::AddrInUse => format!(
            "cannot listen on {addr}: port {port} is already in use by another socket; \
             see who holds it with `fivetuple conns --port {port} -p`, or pick another port with --listen"
        ),
        io::ErrorKind::AddrNotAvailable => format!(
            "cannot listen on {addr}: that address is not one of this machine's; \
             use 0.0.0.0 (all IPv4 addresses), [::] (all addresses) or 127.0.0.1 (this machine only)"
        ),
        _ if e.raw_os_error() == Some(libc::EAFNOSUPPORT) => format!(
            "cannot listen on {addr}: this machine has no {} networking; use an address of the other kind",
            if addr.is_ipv6() { "IPv6" } else { "IPv4" }
        ),
        _ => return Error::io(format!("cannot listen on {addr}"), e),
    };
    Error::explained(message, e)
}

/// What `--listen` asks for, before any name is looked up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenSpec {
    /// `0.0.0.0:500`, `127.0.0.1:0`, `[::1]:8500`: exactly this address.
    Addr(SocketAddr),
    /// `:8500`: every address of this machine, IPv4 and IPv6.
    AnyAddress(u16),
    /// `localhost:8500`: a name, looked up when the server starts.
    Host { host: String, port: u16 },
}

impl ListenSpec {
    /// Reads `--listen`; anything else gets one line with examples of the
    /// forms that work.
    pub fn parse(text: &str) -> Result<ListenSpec> {
        if let Ok(addr) = text.parse::<SocketAddr>() {
            return Ok(ListenSpec::Addr(addr));
        }
        let wrong = |why: &str| {
            Error::usage(format!(
                "--listen {text:?}: {why}; for example 0.0.0.0:8500 (every IPv4 address), \
                 [::]:8500 (every address), 127.0.0.1:8500 (this machine only), \
                 localhost:8500 (a host name) or :8500 (every address)"
            ))
        };
        let Some((host, port)) = text.rsplit_once(':') else {
            return Err(
                if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
                    wrong(&format!("a port needs a colon before it (:{text})"))
                } else {
                    wrong("expected ADDRESS:PORT, HOST:PORT or :PORT")
                },
            );
        };
        let port: u16 = port
            .parse()
            .map_err(|_| wrong(&format!("{port:?} is not a port (0 to 65535)")))?;
        if host.is_empty() {
            return Ok(ListenSpec::AnyAddress(port));
        }
        if host.contains(':') || host.starts_with('[') {
            return Err(wrong("an IPv6 address goes in brackets, as in [::1]:8500"));
        }
        Ok(ListenSpec::Host {
            host: host.to_string(),
            port,
        })
    }

    /// The addresses to try, in order; the server listens on the first one
    /// that binds.
    ///
    /// For `:PORT` that is `[::]` first: one IPv6 socket with `IPV6_V6ONLY`
    /// off takes IPv4 clients too (as `::ffff:a.b.c.d`), so one listener
    /// covers every address; `0.0.0.0` follows for machines without IPv6.
    /// A host name may stand for several addresses (`localhost` is often
    /// both `127.0.0.1` and `::1`); they are tried in the resolver's order.
    pub fn candidates(&self) -> Result<Vec<SocketAddr>> {
        match self {
            ListenSpec::Addr(addr) => Ok(vec![*addr]),
            ListenSpec::AnyAddress(port) => Ok(vec![
                SocketAddr::from((Ipv6Addr::UNSPECIFIED, *port)),
                SocketAddr::from((Ipv4Addr::UNSPECIFIED, *port)),
            ]),
            ListenSpec::Host { host, port } => {
                let addrs: Vec<SocketAddr> = (host.as_str(), *port)
                    .to_socket_addrs()
                    .map_err(|e| {
                        Error::usage(format!(
                            "--listen {self}: cannot resolve {host:?} ({e}); \
                             give an address instead, such as 127.0.0.1:{port} or :{port}"
                        ))
                    })?
                    .collect();
                if addrs.is_empty() {
                    return Err(Error::usage(format!(
                        "--listen {self}: {host:?} resolves to no address"
                    )));
                }
                Ok(addrs)
            }
        }
    }
}

impl fmt::Display for ListenSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListenSpec::Addr(addr) => write!(f, "{addr}"),
            ListenSpec::AnyAddress(port) => write!(f, ":{port}"),
            ListenSpec::Host { host, port } => write!(f, "{host}:{port}"),
        }
    }
}

/// Of the errors met while trying several addresses, the one worth showing:
/// the first that is not just "this machine has no such address (family)",
/// since that one says least about what went wrong.
pub fn most_telling(errors: Vec<Error>) -> Option<Error> {
    let uninformative = |e: &Error| match std::error::Error::source(e)
        .and_then(|s| s.downcast_ref::<io::Error>())
    {
        Some(io) => {
            io.kind() == io::ErrorKind::AddrNotAvailable
                || io.raw_os_error() == Some(libc::EAFNOSUPPORT)
        }
        None => false,
    };
    let pick = errors.iter().position(|e| !uninformative(e)).unwrap_or(0);
    errors.into_iter().nth(pick)
}

fn binary_path() -> String {
    std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "fivetuple".to_string())
}

/// Descriptors the server keeps for itself when `--max-conns` is not given:
/// the listener, epoll, the signal pipe, logs and served files. A quarter of
/// the limit at most, so that a small limit still leaves room for clients,
/// but never less than [`FD_OWN`] (or half the limit).
pub const FD_RESERVE: u64 = 64;

/// What the server holds whatever its clients do, counted at about 15 with
/// one worker: the standard streams, each reactor's epoll, signal pipe and
/// listener, and the restart thread's epoll, signal pipe, wakers and
/// copies of the listening sockets (see `crate::restart`); and room for a
/// served file being opened.
pub const FD_OWN: u64 = 24;

/// The default `--max-conns`: the open-files limit (as [`raise_fd_limit`]
/// left it; 1024, the usual soft limit, when it could not be read) less
/// [`FD_RESERVE`]. Each connection, and each file body being sent, is one
/// descriptor, so the server refuses clients before the kernel says
/// `EMFILE`.
pub fn default_max_conns(fd_limit: Option<u64>) -> usize {
    let limit = fd_limit.unwrap_or(1024);
    let reserve = FD_RESERVE.min(limit / 4).max(FD_OWN.min(limit / 2));
    usize::try_from(limit.saturating_sub(reserve))
        .unwrap_or(usize::MAX)
        .max(1)
}

/// Raises the soft limit on open files to the hard limit, and returns the
/// new soft limit. Each connection uses one descriptor.
pub fn raise_fd_limit() -> io::Result<u64> {
    // `None` is RLIM_INFINITY, all ones, as the kernel writes it.
    let limit = getrlimit(Resource::Nofile);
    let soft = limit.current.unwrap_or(u64::MAX);
    let hard = limit.maximum.unwrap_or(u64::MAX);
    if soft < hard {
        let raised = Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        };
        setrlimit(Resource::Nofile, raised)?;
        return Ok(hard);
    }
    Ok(soft)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(addr: &str) -> ListenOptions {
        ListenOptions {
            addr: addr.parse().unwrap(),
            backlog: 16,
            ipv6_only: false,
            reuse_port: false,
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
        assert_eq!(err.exit_code(), 1, "a busy port is a failure at run time");
        assert!(text.contains("already in use"), "{text}");
        assert!(
            text.contains(&format!("fivetuple conns --port {}", addr.port())),
            "{text}"
        );
    }

    #[test]
    fn listen_takes_addresses_names_and_bare_ports() {
        assert_eq!(
            ListenSpec::parse("0.0.0.0:500").unwrap(),
            ListenSpec::Addr("0.0.0.0:500".parse().unwrap())
        );
        assert_eq!(
            ListenSpec::parse("[::1]:8500").unwrap(),
            ListenSpec::Addr("[::1]:8500".parse().unwrap())
        );
        assert_eq!(
            ListenSpec::parse(":8500").unwrap(),
            ListenSpec::AnyAddress(8500)
        );
        let host = ListenSpec::parse("localhost:8500").unwrap();
        assert_eq!(
            host,
            ListenSpec::Host {
                host: "localhost".into(),
                port: 8500
            }
        );
        assert!(host.candidates().unwrap().iter().all(|a| a.port() == 8500));
        let any = ListenSpec::AnyAddress(8500).candidates().unwrap();
        assert_eq!(any[0], "[::]:8500".parse().unwrap());
        assert_eq!(any[1], "0.0.0.0:8500".parse().unwrap());
    }

    #[test]
    fn a_wrong_listen_shows_the_right_forms() {
        for (text, hint) in [
            ("nonsense", "ADDRESS:PORT"),
            ("8500", "(:8500)"),
            ("localhost:http", "is not a port"),
            ("host:70000", "is not a port"),
            ("::1:8500", "brackets"),
            ("", "ADDRESS:PORT"),
        ] {
            let err = ListenSpec::parse(text).unwrap_err();
            let message = err.to_string();
            assert_eq!(err.exit_code(), 2, "{text:?}");
            assert!(message.contains(hint), "{text:?}: {message}");
            assert!(message.contains("localhost:8500"), "{message}");
            assert_eq!(message.lines().count(), 1);
        }
    }

    #[test]
    fn the_telling_error_wins() {
        let no_such =
            || Error::explained("not here", io::Error::from(io::ErrorKind::AddrNotAvailable));
        let busy = Error::explained("busy", io::Error::from(io::ErrorKind::AddrInUse));
        let picked = most_telling(vec![no_such(), busy]).unwrap();
        assert_eq!(picked.to_string(), "busy");
        assert_eq!(
            most_telling(vec![no_such()]).unwrap().to_string(),
            "not here"
        );
    }

    #[test]
    fn the_default_cap_leaves_a_reserve() {
        assert_eq!(default_max_conns(Some(1_048_576)), 1_048_512);
        assert_eq!(default_max_conns(None), 960);
        assert_eq!(
            default_max_conns(Some(100)),
            75,
            "a quarter of a small limit"
        );
        assert_eq!(
            default_max_conns(Some(64)),
            40,
            "never less than the server's own descriptors"
        );
        assert_eq!(default_max_conns(Some(0)), 1);
    }

    #[test]
    fn the_fd_limit_is_raised_to_the_hard_limit() {
        let soft = raise_fd_limit().unwrap();
        let hard = getrlimit(Resource::Nofile).maximum.unwrap_or(u64::MAX);
        assert_eq!(soft, hard);
    }
}
