//! `fivetuple conns`: the kernel's side of the story, read from `/proc`.
//!
//! The server's table (`/_/conns`) is what one process knows. The kernel
//! knows every socket on the machine and lists them in `/proc/net/tcp`,
//! `tcp6`, `udp` and `udp6`, one line each, which is where `netstat` gets
//! its rows ([`parse`] reads them). Each line names a socket by its two
//! ends and its state; the inode ties the socket to the process that holds
//! it: `/proc/PID/fd/N` links to `socket:[73611]` ([`socket_owners`]).
//!
//! The protocol is the first element of the 5-tuple, and the kernel keeps
//! one table per protocol: TCP port 500 and UDP port 500 are two unrelated
//! sockets that happen to share a number. `--tcp` (the default) and
//! `--udp` choose the tables, as `netstat -t -u` does.
//!
//! On one machine, a loopback connection appears twice: once as the
//! server's end (local port 500) and once as the client's (foreign port
//! 500). Both are real sockets; `--port 500` keeps both.
//!
//! [`run`] reads, filters and sorts; [`netstat::render`] writes the rows as
//! netstat does; the binary prints them, as text or JSON.

pub mod netstat;
pub mod parse;
pub mod state;

use std::collections::HashMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::{Error, Result};

pub use netstat::{netstat_addr, render, sort_like_netstat, Layout};
pub use parse::parse_table;
pub use state::{State, StateFilter, TcpState};

/// One socket from one of the kernel's tables.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Socket {
    /// `tcp`, `tcp6`, `udp` or `udp6`, after the file the row came from.
    pub proto: &'static str,
    pub local: std::net::SocketAddr,
    /// The other end; `None` for a listening socket or an unconnected UDP
    /// socket (netstat's `0.0.0.0:*`).
    pub remote: Option<std::net::SocketAddr>,
    pub state: State,
    /// Bytes received and not yet read by the process; for a listening
    /// socket, connections waiting in the accept queue. (`ss` shows the
    /// backlog limit as Send-Q of a listener; `/proc` does not carry it.)
    pub recv_q: u64,
    /// Bytes sent and not yet acknowledged by the peer (TCP), or not yet
    /// sent by the kernel (UDP).
    pub send_q: u64,
    pub uid: u32,
    /// 0 for sockets no process holds any more (TIME_WAIT, SYN_RECV).
    pub inode: u64,
    /// The process holding the socket, with `-p`.
    pub pid: Option<u32>,
    pub program: Option<String>,
}

impl Socket {
    pub fn is_udp(&self) -> bool {
        self.proto.starts_with("udp")
    }
}

/// Which of the kernel's tables to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Protocols {
    pub tcp: bool,
    pub udp: bool,
}

impl Protocols {
    /// What `conns` reads when asked for neither: TCP, the protocol of the
    /// story. (netstat without `-t` or `-u` lists every kind of socket it
    /// knows: UDP, raw and UNIX ones too.)
    pub const TCP: Protocols = Protocols {
        tcp: true,
        udp: false,
    };

    /// From `-t` and `-u`: either, both, or (neither) TCP.
    pub fn from_flags(tcp: bool, udp: bool) -> Protocols {
        if tcp || udp {
            Protocols { tcp, udp }
        } else {
            Protocols::TCP
        }
    }
}

/// What `fivetuple conns` is asked for.
#[derive(Debug, Clone)]
pub struct ConnsOptions {
    pub protocols: Protocols,
    /// Keep the rows whose local or foreign port is this one.
    pub port: Option<u16>,
    /// Keep listening sockets only (TCP LISTEN, UDP UNCONN).
    pub listening: bool,
    /// Keep the rows in this state.
    pub state: Option<StateFilter>,
    /// Find the process holding each socket.
    pub processes: bool,
    /// Where procfs is mounted (`/proc`).
    pub proc_root: PathBuf,
}

/// What [`run`] found.
#[derive(Debug, Clone, Default)]
pub struct Found {
    /// The sockets asked for, in the order [`sort_like_netstat`] gives.
    pub sockets: Vec<Socket>,
    /// With `processes`: how many processes' descriptors could not be read
    /// (another user's, for anyone but root), so that their sockets show no
    /// owner. netstat warns about the same thing: "Not all processes could
    /// be identified".
    pub unreadable_processes: usize,
}

impl Found {
    /// Whether a row shown has an owner we could not see: a socket still
    /// held by some process (inode not 0) whose owner was not found, while
    /// some processes could not be read. Without unreadable processes an
    /// ownerless row is one that closed while we looked.
    pub fn owners_hidden(&self) -> bool {
        self.unreadable_processes > 0
            && self.sockets.iter().any(|s| s.inode != 0 && s.pid.is_none())
    }
}

/// Runs `fivetuple conns`: the sockets asked for, in netstat's order, with
/// their processes if asked. The binary prints them.
pub fn run(opts: &ConnsOptions) -> Result<Found> {
    let mut sockets = read(&opts.proc_root, opts.protocols)?;
    sockets.retain(|s| {
        opts.port
            .is_none_or(|p| s.local.port() == p || s.remote.is_some_and(|r| r.port() == p))
            && (!opts.listening || s.state.is_listening())
            && opts.state.is_none_or(|wanted| wanted.matches(s.state))
    });
    let mut unreadable_processes = 0;
    if opts.processes {
        let owners = socket_owners(&opts.proc_root);
        for s in &mut sockets {
            if let Some((pid, program)) = owners.by_inode.get(&s.inode).filter(|_| s.inode != 0) {
                s.pid = Some(*pid);
                s.program = Some(program.clone());
            }
        }
        unreadable_processes = owners.unreadable;
    }
    sort_like_netstat(&mut sockets);
    Ok(Found {
        sockets,
        unreadable_processes,
    })
}

/// The TCP sockets (both tables) under `proc_root`.
pub fn read_sockets(proc_root: &Path) -> Result<Vec<Socket>> {
    read(proc_root, Protocols::TCP)
}

/// The sockets of the chosen protocols under `proc_root`. Without
/// `net/tcp` (or `net/udp`) this is not Linux, or /proc is not mounted: a
/// failure of the machine, not of the command line (exit code 1). A missing
/// `tcp6` or `udp6` only means IPv6 is off.
pub fn read(proc_root: &Path, protocols: Protocols) -> Result<Vec<Socket>> {
    let mut sockets = Vec::new();
    let tables: [(bool, &'static str, &'static str); 2] = [
        (protocols.tcp, "tcp", "tcp6"),
        (protocols.udp, "udp", "udp6"),
    ];
    for (wanted, v4, v6) in tables {
        if !wanted {
            continue;
        }
        let path = proc_root.join("net").join(v4);
        let text = fs::read_to_string(&path).map_err(|e| {
            let message = format!(
                "cannot read {}: {e} (fivetuple conns reads Linux's /proc/net/{v4}; is /proc mounted?)",
                path.display()
            );
            Error::explained(message, e)
        })?;
        sockets.extend(parse_table(&text, v4));
        match fs::read_to_string(proc_root.join("net").join(v6)) {
            Ok(text) => sockets.extend(parse_table(&text, v6)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(format!("reading /proc/net/{v6}"), e)),
        }
    }
    Ok(sockets)
}

/// Who holds which socket, as far as we may look.
#[derive(Debug, Clone, Default)]
pub struct Owners {
    /// Socket inode to (pid, program).
    pub by_inode: HashMap<u64, (u32, String)>,
    /// Processes whose descriptors we were not allowed to read.
    pub unreadable: usize,
}

/// Maps socket inodes to (pid, program) by reading every `/proc/PID/fd`, as
/// netstat does. Processes that vanish while we look are skipped; those we
/// may not read (another user's, unless we are root) are counted.
pub fn socket_owners(proc_root: &Path) -> Owners {
    let mut owners = Owners::default();
    let Ok(entries) = fs::read_dir(proc_root) else {
        return owners;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let fds = match fs::read_dir(entry.path().join("fd")) {
            Ok(fds) => fds,
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                owners.unreadable += 1;
                continue;
            }
            Err(_) => continue,
        };
        let mut program = None;
        for fd in fds.flatten() {
            let Ok(target) = fs::read_link(fd.path()) else {
                continue;
            };
            let inode = target
                .to_str()
                .and_then(|t| t.strip_prefix("socket:["))
                .and_then(|t| t.strip_suffix(']'))
                .and_then(|t| t.parse::<u64>().ok());
            if let Some(inode) = inode {
                let name = program.get_or_insert_with(|| program_name(&entry.path()));
                owners
                    .by_inode
                    .entry(inode)
                    .or_insert_with(|| (pid, name.clone()));
            }
        }
    }
    owners
}

/// The program's name as netstat finds it: the first word of its command
/// line without the directory (`/usr/bin/python3 -m http.server` is
/// `python3`), or, for a process without one, the kernel's short name
/// (`comm`, cut at 15 characters, which would turn `fivetuple-debug-build`
/// into `fivetuple-debug`). netstat strips only an absolute path's
/// directory, and cuts the column at 19 characters; we do neither.
fn program_name(process: &Path) -> String {
    let from_cmdline = fs::read(process.join("cmdline")).ok().and_then(|line| {
        let first = line.split(|&b| b == 0).next()?;
        let name = first.rsplit(|&b| b == b'/').next()?;
        (!name.is_empty()).then(|| String::from_utf8_lossy(name).into_owned())
    });
    from_cmdline.unwrap_or_else(|| {
        fs::read_to_string(process.join("comm"))
            .map(|c| c.trim_end().to_string())
            .unwrap_or_default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unreadable_proc_is_a_failure_at_run_time() {
        let err = read_sockets(Path::new("/nonexistent-proc")).unwrap_err();
        assert_eq!(err.exit_code(), 1);
        assert!(err.to_string().contains("/nonexistent-proc/net/tcp"));
        let udp = Protocols::from_flags(false, true);
        let err = read(Path::new("/nonexistent-proc"), udp).unwrap_err();
        assert!(err.to_string().contains("/nonexistent-proc/net/udp"));
    }

    #[test]
    fn neither_flag_means_tcp() {
        assert_eq!(Protocols::from_flags(false, false), Protocols::TCP);
        assert_eq!(
            Protocols::from_flags(true, true),
            Protocols {
                tcp: true,
                udp: true
            }
        );
    }

    #[test]
    fn a_fake_proc_is_filtered_by_protocol_port_and_state() {
        let root = std::env::temp_dir().join(format!("fivetuple-proc-{}", std::process::id()));
        fs::create_dir_all(root.join("net")).unwrap();
        fs::write(root.join("net/tcp"), parse::tests::TCP).unwrap();
        fs::write(root.join("net/udp"), parse::tests::UDP).unwrap();
        let opts = |tcp, udp, state: Option<&str>, listening| ConnsOptions {
            protocols: Protocols::from_flags(tcp, udp),
            port: Some(500),
            listening,
            state: state.map(|s| StateFilter::parse(s).unwrap()),
            processes: false,
            proc_root: root.clone(),
        };
        let both = run(&opts(true, true, None, false)).unwrap().sockets;
        assert_eq!(both.iter().filter(|s| s.is_udp()).count(), 2);
        assert_eq!(both.iter().filter(|s| !s.is_udp()).count(), 5);
        let udp_only = run(&opts(false, true, None, false)).unwrap().sockets;
        assert!(udp_only.iter().all(Socket::is_udp));
        let unconn = run(&opts(true, true, Some("unconn"), false))
            .unwrap()
            .sockets;
        assert_eq!(unconn.len(), 1);
        let listening = run(&opts(true, true, None, true)).unwrap().sockets;
        let states: Vec<&str> = listening.iter().map(|s| s.state.name()).collect();
        assert_eq!(states, ["LISTEN", "UNCONN"]);
        fs::remove_dir_all(&root).unwrap();
    }
}
