//! Listening sockets that exist before the server does: socket activation.
//!
//! A listening socket is a kernel object; a process only holds a descriptor
//! to it, and descriptors survive `exec`. So another process can create the
//! socket, bind it (to port 500, as root) and start the server with the
//! socket already open. systemd does that (`fivetuple.socket` in
//! `contrib/`), and so does `systemd-socket-activate`:
//!
//! ```text
//! systemd-socket-activate -l 127.0.0.1:8500 fivetuple serve
//!   ├─ socket(), bind(127.0.0.1:8500), listen()          fd 3
//!   └─ exec fivetuple serve   LISTEN_FDS=1 LISTEN_PID=<its own pid>
//!        └─ fd 3 is the listener: no bind, no root needed
//! ```
//!
//! The protocol (sd_listen_fds(3)) is three environment variables:
//! `LISTEN_FDS` (how many descriptors, numbered from 3), `LISTEN_PID` (the
//! process they are meant for: a child that inherits the environment must
//! not take them too) and `LISTEN_FDNAMES` (their names, for logs). They
//! are read here at the very start of `main`, before any thread starts, and
//! removed from the environment, so nothing this process starts inherits
//! them by mistake.
//!
//! Every descriptor is checked before it is used: it must be open, a
//! socket, of the internet families, and either a *listening* TCP socket or
//! (for `--udp`) a UDP socket. Anything else is refused with one line that
//! says what the descriptor is instead.
//!
//! The server's own restart (see [`crate::restart`]) uses the same
//! protocol to hand its sockets to the new copy of itself. One detail
//! differs: `LISTEN_PID` must name the child, whose pid the parent learns
//! only after the child exists; `std::process::Command` sets the
//! environment before that. So the parent names itself in both
//! `LISTEN_PID` and [`HANDED_OVER_BY`], and the child accepts the
//! descriptors when both name its parent. That keeps the protocol's
//! guarantee (only the process they were started for takes them: a
//! grandchild has another parent, and finds the variables removed anyway).

use std::fmt;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

use rustix::net::sockopt;
use rustix::net::{AddressFamily, SocketType};

use crate::error::{Error, Result};

/// The first descriptor the protocol passes (0, 1, 2 are stdin, stdout, stderr).
pub const FIRST_FD: RawFd = 3;

/// The variable the server's restart sets beside `LISTEN_PID` (both name
/// the parent that hands its sockets over; see the module comment).
pub const HANDED_OVER_BY: &str = "FIVETUPLE_HANDED_OVER_BY";

/// Most descriptors taken: far more than one server with one listener per
/// worker and a UDP socket needs; a larger count is a mistake, not a plan.
const MOST_FDS: usize = 1024;

/// Who created the sockets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Creator {
    /// systemd, `systemd-socket-activate`, or anything else that speaks
    /// the protocol.
    Activator,
    /// The previous copy of this server (its pid), in a restart.
    Parent(u32),
}

impl fmt::Display for Creator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Creator::Activator => write!(f, "socket activation"),
            Creator::Parent(pid) => write!(f, "the previous server, pid {pid}"),
        }
    }
}

/// The sockets a process was started with.
#[derive(Debug)]
pub struct Inherited {
    /// Listening TCP sockets, all on one address: one, or one per worker.
    pub tcp: Vec<TcpListener>,
    /// The UDP socket on the same port number, for `--udp`.
    pub udp: Option<UdpSocket>,
    /// The address they listen on.
    pub addr: SocketAddr,
    pub creator: Creator,
}

/// What the environment said: the sockets, if any were for us, and lines
/// for the log (written once the log exists).
#[derive(Debug, Default)]
pub struct Activation {
    pub inherited: Option<Inherited>,
    pub notes: Vec<String>,
}

/// The protocol's variables as found, before any check.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Vars {
    pid: Option<String>,
    fds: Option<String>,
    names: Option<String>,
    handed_over_by: Option<String>,
}

impl Vars {
    /// Reads the variables and removes them from the environment. Must run
    /// before any thread starts (changing the environment is not
    /// thread-safe), which is why `main` calls [`take`] first.
    fn take_from_env() -> Vars {
        let take = |name: &str| {
            let value = std::env::var(name).ok();
            std::env::remove_var(name);
            value
        };
        Vars {
            pid: take("LISTEN_PID"),
            fds: take("LISTEN_FDS"),
            names: take("LISTEN_FDNAMES"),
            handed_over_by: take(HANDED_OVER_BY),
        }
    }
}

/// Takes the sockets passed by socket activation, or by the previous copy
/// of the server: `Ok` with no sockets when none were passed (or they were
/// meant for another process, which the notes say), `Err` with one line
/// when they were meant for us and are not what a server can use.
pub fn take() -> Result<Activation> {
    let vars = Vars::take_from_env();
    let me = std::process::id();
    let parent = rustix::process::getppid().map_or(0, |p| p.as_raw_nonzero().get() as u32);
    let Some(plan) = plan(&vars, me, parent)? else {
        return Ok(Activation::default());
    };
    match plan {
        Plan::NotOurs(note) => Ok(Activation {
            inherited: None,
            notes: vec![note],
        }),
        Plan::Take { count, creator } => {
            let inherited = adopt(count, creator)?;
            let names = vars.names.map(|n| format!(" ({n})")).unwrap_or_default();
            let note = format!(
                "{} listening {} from {creator}{names}: {}; not binding --listen",
                inherited.tcp.len() + usize::from(inherited.udp.is_some()),
                if inherited.udp.is_some() || inherited.tcp.len() > 1 {
                    "sockets"
                } else {
                    "socket"
                },
                describe(&inherited)
            );
            Ok(Activation {
                inherited: Some(inherited),
                notes: vec![note],
            })
        }
    }
}

fn describe(inherited: &Inherited) -> String {
    let mut text = format!("tcp {}", inherited.addr);
    if inherited.tcp.len() > 1 {
        text.push_str(&format!(" ×{}", inherited.tcp.len()));
    }
    if inherited.udp.is_some() {
        text.push_str(" and udp");
    }
    text
}

/// What to do with the variables.
#[derive(Debug, PartialEq, Eq)]
enum Plan {
    /// They name another process: leave the descriptors alone, say so.
    NotOurs(String),
    /// Descriptors `3 .. 3 + count` are ours.
    Take { count: usize, creator: Creator },
}

/// Decides from the variables alone (no descriptor is touched): `None`
/// when there are none.
fn plan(vars: &Vars, me: u32, parent: u32) -> Result<Option<Plan>> {
    let (pid, fds) = match (&vars.pid, &vars.fds) {
        (None, None) => return Ok(None),
        (Some(pid), Some(fds)) => (pid, fds),
        (Some(_), None) => {
            return Err(Error::usage(
                "LISTEN_PID is set but LISTEN_FDS is not: socket activation needs both \
                 (unset LISTEN_PID to bind --listen instead)",
            ))
        }
        (None, Some(_)) => {
            return Err(Error::usage(
                "LISTEN_FDS is set but LISTEN_PID is not: socket activation needs both \
                 (unset LISTEN_FDS to bind --listen instead)",
            ))
        }
    };
    let pid: u32 = pid
        .trim()
        .parse()
        .map_err(|_| Error::usage(format!("LISTEN_PID={pid:?} is not a process id")))?;
    let count: usize = fds
        .trim()
        .parse()
        .map_err(|_| Error::usage(format!("LISTEN_FDS={fds:?} is not a number of descriptors")))?;
    let handed_over_by = vars.handed_over_by.as_deref().map(str::trim);
    let creator = if pid == me {
        Creator::Activator
    } else if pid == parent && handed_over_by == Some(pid.to_string().as_str()) {
        Creator::Parent(pid)
    } else {
        return Ok(Some(Plan::NotOurs(format!(
            "LISTEN_PID={pid} is not this process ({me}): the {count} descriptors from fd 3 \
             were passed to another process; leaving them alone and binding --listen"
        ))));
    };
    if count == 0 {
        return Err(Error::usage(
            "LISTEN_FDS=0: socket activation passed no socket; \
             a .socket unit needs a ListenStream= line",
        ));
    }
    if count > MOST_FDS {
        return Err(Error::usage(format!(
            "LISTEN_FDS={count}: more descriptors than a server takes (at most {MOST_FDS})"
        )));
    }
    if let Some(names) = &vars.names {
        let named = names.split(':').count();
        if named != count {
            return Err(Error::usage(format!(
                "LISTEN_FDS={count} but LISTEN_FDNAMES={names:?} names {named}: \
                 the variables disagree, so neither can be trusted"
            )));
        }
    }
    Ok(Some(Plan::Take { count, creator }))
}

/// What one descriptor turned out to be.
enum Socket {
    Tcp(TcpListener, SocketAddr),
    Udp(UdpSocket, SocketAddr),
}

/// Takes descriptors 3 .. 3 + count, checking each.
fn adopt(count: usize, creator: Creator) -> Result<Inherited> {
    let mut tcp = Vec::new();
    let mut udp = None;
    let mut addr: Option<SocketAddr> = None;
    for fd in (FIRST_FD..).take(count) {
        let socket = check(fd, count, owned(fd, count)?)?;
        let (kind, here) = match socket {
            Socket::Tcp(listener, here) => {
                tcp.push(listener);
                ("tcp", here)
            }
            Socket::Udp(socket, here) => {
                if udp.is_some() {
                    return Err(refused(
                        fd,
                        count,
                        "a second UDP socket; fivetuple serves one",
                    ));
                }
                udp = Some(socket);
                ("udp", here)
            }
        };
        match addr {
            None => addr = Some(here),
            Some(first) if first.port() != here.port() || (kind == "tcp" && first != here) => {
                return Err(refused(
                    fd,
                    count,
                    &format!(
                        "{kind} on {here}, where the first is on {first}; \
                         fivetuple serves one address and port"
                    ),
                ))
            }
            Some(_) => {}
        }
    }
    let Some(first) = tcp.first() else {
        return Err(Error::usage(format!(
            "LISTEN_FDS={count}: no listening TCP socket among them; \
             fivetuple needs one (ListenStream= in the .socket unit)"
        )));
    };
    let addr = first
        .local_addr()
        .map_err(|e| Error::io("reading the inherited listener's address", e))?;
    Ok(Inherited {
        tcp,
        udp,
        addr,
        creator,
    })
}

fn refused(fd: RawFd, count: usize, what: &str) -> Error {
    Error::usage(format!(
        "LISTEN_FDS={count}: descriptor {fd} is {what}; \
         fivetuple takes listening TCP sockets and one UDP socket"
    ))
}

/// Takes ownership of descriptor `fd`, once /proc says it is an open socket.
fn owned(fd: RawFd, count: usize) -> Result<OwnedFd> {
    let link = std::fs::read_link(format!("/proc/self/fd/{fd}"));
    match link {
        Err(_) => {
            return Err(refused(
                fd,
                count,
                "not open (LISTEN_FDS counts more than were passed)",
            ))
        }
        Ok(target) if !target.to_string_lossy().starts_with("socket:") => {
            return Err(refused(
                fd,
                count,
                &format!("not a socket but {}", target.display()),
            ))
        }
        Ok(_) => {}
    }
    // SAFETY: `fd` is open (its /proc entry exists, just read) and is a
    // socket. The protocol gives descriptors 3 .. 3 + LISTEN_FDS to this
    // process, and LISTEN_PID says they are ours; this runs at the start
    // of `main`, before anything in the process has opened a descriptor
    // that could have taken those numbers, and each is taken once. So
    // nothing else owns it, which is what `OwnedFd` requires.
    #[allow(unsafe_code)]
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    Ok(fd)
}

/// Checks what the socket is: a listening TCP socket or a UDP socket, of
/// the internet families; it is made close-on-exec (the protocol passes
/// descriptors without, and a restart passes them on explicitly) and
/// non-blocking, as the reactor needs.
fn check(fd: RawFd, count: usize, socket: OwnedFd) -> Result<Socket> {
    let refuse = |what: &str| refused(fd, count, what);
    let io =
        |e: rustix::io::Errno| Error::io(format!("checking inherited descriptor {fd}"), e.into());
    let family = sockopt::socket_domain(&socket).map_err(io)?;
    if family != AddressFamily::INET && family != AddressFamily::INET6 {
        let name = if family == AddressFamily::UNIX {
            "a unix socket".to_string()
        } else {
            format!("a socket of address family {}", family.as_raw())
        };
        return Err(refuse(&format!("{name}, not TCP/IP")));
    }
    let kind = sockopt::socket_type(&socket).map_err(io)?;
    rustix::io::fcntl_setfd(&socket, rustix::io::FdFlags::CLOEXEC).map_err(io)?;
    rustix::io::ioctl_fionbio(&socket, true).map_err(io)?;
    if kind == SocketType::STREAM {
        if !sockopt::socket_acceptconn(&socket).map_err(io)? {
            return Err(refuse(
                "a TCP socket that is not listening (a connection, or one never given listen())",
            ));
        }
        let listener = TcpListener::from(socket);
        let addr = listener
            .local_addr()
            .map_err(|e| Error::io(format!("reading descriptor {fd}'s address"), e))?;
        return Ok(Socket::Tcp(listener, addr));
    }
    if kind == SocketType::DGRAM {
        let udp = UdpSocket::from(socket);
        let addr = udp
            .local_addr()
            .map_err(|e| Error::io(format!("reading descriptor {fd}'s address"), e))?;
        return Ok(Socket::Udp(udp, addr));
    }
    Err(refuse(&format!(
        "a socket of type {} (neither a TCP stream nor UDP datagrams)",
        kind.as_raw()
    )))
}

/// Lets a borrowed socket be checked by the same rules (for tests).
#[cfg(test)]
fn check_borrowed(socket: &impl std::os::fd::AsFd) -> Result<Socket> {
    let fd = socket
        .as_fd()
        .try_clone_to_owned()
        .map_err(|e| Error::io("dup", e))?;
    check(FIRST_FD, 1, fd)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pid: &str, fds: &str) -> Vars {
        Vars {
            pid: Some(pid.into()),
            fds: Some(fds.into()),
            ..Vars::default()
        }
    }

    #[test]
    fn no_variables_no_sockets() {
        assert_eq!(plan(&Vars::default(), 10, 1).unwrap(), None);
    }

    #[test]
    fn our_pid_takes_the_descriptors() {
        let got = plan(&vars("10", "2"), 10, 1).unwrap();
        assert_eq!(
            got,
            Some(Plan::Take {
                count: 2,
                creator: Creator::Activator
            })
        );
    }

    #[test]
    fn another_pid_leaves_them_alone_and_says_so() {
        let Some(Plan::NotOurs(note)) = plan(&vars("11", "1"), 10, 1).unwrap() else {
            panic!("taken");
        };
        assert!(
            note.contains("LISTEN_PID=11 is not this process (10)"),
            "{note}"
        );
    }

    #[test]
    fn the_parent_pid_counts_only_when_the_parent_handed_them_over() {
        let alone = plan(&vars("7", "1"), 10, 7).unwrap();
        assert!(matches!(alone, Some(Plan::NotOurs(_))), "{alone:?}");
        let mut handed = vars("7", "1");
        handed.handed_over_by = Some("7".into());
        assert_eq!(
            plan(&handed, 10, 7).unwrap(),
            Some(Plan::Take {
                count: 1,
                creator: Creator::Parent(7)
            })
        );
        // Named by a grandparent, not by the parent: not ours.
        assert!(matches!(
            plan(&handed, 10, 8).unwrap(),
            Some(Plan::NotOurs(_))
        ));
    }

    #[test]
    fn counts_and_names_that_disagree_are_refused() {
        for (v, needle) in [
            (vars("10", "0"), "LISTEN_FDS=0"),
            (vars("10", "two"), "not a number"),
            (vars("ten", "1"), "not a process id"),
            (
                Vars {
                    names: Some("http:udp".into()),
                    ..vars("10", "3")
                },
                "names 2",
            ),
            (
                Vars {
                    pid: Some("10".into()),
                    ..Vars::default()
                },
                "LISTEN_FDS is not",
            ),
        ] {
            let err = plan(&v, 10, 1).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{err}");
            assert!(err.to_string().contains(needle), "{err}");
        }
    }

    #[test]
    fn a_listener_and_a_udp_socket_pass_and_a_connection_does_not() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        assert!(matches!(check_borrowed(&listener), Ok(Socket::Tcp(..))));
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        assert!(matches!(check_borrowed(&udp), Ok(Socket::Udp(..))));
        let conn = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let Err(err) = check_borrowed(&conn) else {
            panic!("a connection passed as a listener");
        };
        assert!(err.to_string().contains("not listening"), "{err}");
        let (unix, _) = std::os::unix::net::UnixStream::pair().unwrap();
        let Err(err) = check_borrowed(&unix) else {
            panic!("a unix socket passed");
        };
        assert!(err.to_string().contains("a unix socket"), "{err}");
    }
}
