//! `fivetuple conns`: the kernel's side of the story, read from `/proc`.
//!
//! The server's table (`/_/conns`) is what one process knows. The kernel
//! knows every TCP socket on the machine and lists them in `/proc/net/tcp`
//! and `/proc/net/tcp6`, one line each, which is where `netstat` gets its
//! rows. Each line names a socket by its two ends, in hex:
//!
//! ```text
//!   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
//!    0: 0100007F:01F4 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 73611
//! ```
//!
//! `0100007F:01F4` is 127.0.0.1:500: the address is the 32-bit word exactly as
//! it sits in memory (network byte order) printed as a host-order integer, so
//! on a little-endian machine the bytes come out reversed; IPv6 addresses are
//! four such words. `0A` is the state (LISTEN). The inode ties the socket to
//! the process that holds it: `/proc/PID/fd/N` links to `socket:[73611]`.
//!
//! On one machine, a loopback connection appears twice: once as the
//! server's end (local port 500) and once as the client's (foreign port 500).
//! Both are real sockets; `--port 500` keeps both.

use std::collections::HashMap;
use std::fmt::{self, Write as _};
use std::fs;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use serde::Serialize;

use crate::error::{Error, Result};

/// Options of `fivetuple conns`.
#[derive(Debug, Clone, clap::Args)]
#[command(after_help = "\
Exit code: 0 when the table was printed (also when its reader stopped early, as in `| head`), \
1 when /proc/net/tcp cannot be read, 2 for bad arguments.")]
pub struct ConnsArgs {
    /// Keep the rows whose local or foreign port is PORT (both ends of a loopback connection).
    #[arg(long, value_name = "PORT")]
    pub port: Option<u16>,
    /// Add the PID/Program name column (sockets of other users' processes need root).
    #[arg(short = 'p', long)]
    pub processes: bool,
    /// Keep listening sockets only.
    #[arg(short = 'l', long)]
    pub listening: bool,
    /// Keep the rows in this state (ESTABLISHED, TIME_WAIT, LISTEN, ...).
    #[arg(long, value_name = "STATE")]
    pub state: Option<String>,
    /// Print JSON instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Where procfs is mounted.
    #[arg(long, default_value = "/proc", value_name = "DIR", hide = true)]
    pub proc_root: PathBuf,
}

/// TCP states as the kernel numbers them (include/net/tcp_states.h) and
/// netstat names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TcpState {
    Established,
    SynSent,
    SynRecv,
    FinWait1,
    FinWait2,
    TimeWait,
    Close,
    CloseWait,
    LastAck,
    Listen,
    Closing,
    NewSynRecv,
}

impl TcpState {
    const ALL: [TcpState; 12] = [
        TcpState::Established,
        TcpState::SynSent,
        TcpState::SynRecv,
        TcpState::FinWait1,
        TcpState::FinWait2,
        TcpState::TimeWait,
        TcpState::Close,
        TcpState::CloseWait,
        TcpState::LastAck,
        TcpState::Listen,
        TcpState::Closing,
        TcpState::NewSynRecv,
    ];

    /// From the `st` column: 01 is ESTABLISHED ... 0B is CLOSING, 0C NEW_SYN_RECV.
    pub fn from_code(code: u8) -> Option<TcpState> {
        TcpState::ALL
            .get(usize::from(code).checked_sub(1)?)
            .copied()
    }

    /// netstat's name.
    pub fn name(self) -> &'static str {
        match self {
            TcpState::Established => "ESTABLISHED",
            TcpState::SynSent => "SYN_SENT",
            TcpState::SynRecv => "SYN_RECV",
            TcpState::FinWait1 => "FIN_WAIT1",
            TcpState::FinWait2 => "FIN_WAIT2",
            TcpState::TimeWait => "TIME_WAIT",
            TcpState::Close => "CLOSE",
            TcpState::CloseWait => "CLOSE_WAIT",
            TcpState::LastAck => "LAST_ACK",
            TcpState::Listen => "LISTEN",
            TcpState::Closing => "CLOSING",
            TcpState::NewSynRecv => "NEW_SYN_RECV",
        }
    }

    /// Accepts netstat's names, ss's (`ESTAB`, `TIME-WAIT`), any case.
    pub fn parse(name: &str) -> Option<TcpState> {
        let wanted = name.trim().to_ascii_uppercase().replace('-', "_");
        if wanted == "ESTAB" {
            return Some(TcpState::Established);
        }
        TcpState::ALL
            .into_iter()
            .find(|s| s.name() == wanted || s.name().replace('_', "") == wanted.replace('_', ""))
    }
}

impl fmt::Display for TcpState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

/// One socket from `/proc/net/tcp` or `/proc/net/tcp6`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TcpSocket {
    /// `tcp` or `tcp6`, after the file the row came from.
    pub proto: &'static str,
    pub local: SocketAddr,
    /// The other end; `None` for a listening socket (netstat's `0.0.0.0:*`).
    pub remote: Option<SocketAddr>,
    pub state: TcpState,
    /// Bytes received and not yet read by the process; for a listening
    /// socket, connections waiting in the accept queue. (`ss` shows the
    /// backlog limit as Send-Q of a listener; `/proc` does not carry it.)
    pub recv_q: u64,
    /// Bytes sent and not yet acknowledged by the peer.
    pub send_q: u64,
    pub uid: u32,
    /// 0 for sockets no process holds any more (TIME_WAIT, SYN_RECV).
    pub inode: u64,
    /// The process holding the socket, with `-p`.
    pub pid: Option<u32>,
    pub program: Option<String>,
}

/// Parses the text of `/proc/net/tcp` (or `tcp6`, with `proto = "tcp6"`).
/// Lines that do not parse are skipped: the kernel's format has been stable
/// for decades, and one odd line must not hide the others.
pub fn parse_table(text: &str, proto: &'static str) -> Vec<TcpSocket> {
    text.lines()
        .skip(1)
        .filter_map(|line| parse_line(line, proto))
        .collect()
}

fn parse_line(line: &str, proto: &'static str) -> Option<TcpSocket> {
    let mut fields = line.split_whitespace();
    let _slot = fields.next()?.strip_suffix(':')?;
    let local = parse_endpoint(fields.next()?)?;
    let remote = parse_endpoint(fields.next()?)?;
    let state = TcpState::from_code(u8::from_str_radix(fields.next()?, 16).ok()?)?;
    let (tx, rx) = fields.next()?.split_once(':')?;
    let _timer = fields.next()?;
    let _retransmits = fields.next()?;
    let uid = fields.next()?.parse().ok()?;
    let _timeout = fields.next()?;
    let inode = fields.next()?.parse().ok()?;
    Some(TcpSocket {
        proto,
        local,
        remote: (state != TcpState::Listen).then_some(remote),
        state,
        recv_q: u64::from_str_radix(rx, 16).ok()?,
        send_q: u64::from_str_radix(tx, 16).ok()?,
        uid,
        inode,
        pid: None,
        program: None,
    })
}

/// `0100007F:01F4` → 127.0.0.1:500; 32 hex digits for IPv6.
fn parse_endpoint(text: &str) -> Option<SocketAddr> {
    let (addr, port) = text.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let ip = match addr.len() {
        8 => IpAddr::V4(Ipv4Addr::from(word(addr)?)),
        32 => {
            let mut bytes = [0u8; 16];
            for (i, chunk) in bytes.chunks_mut(4).enumerate() {
                chunk.copy_from_slice(&word(&addr[i * 8..i * 8 + 8])?);
            }
            IpAddr::V6(Ipv6Addr::from(bytes))
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

/// One 32-bit word as the kernel printed it: the in-memory bytes of a
/// network-order value, printed as a native integer. Reading it back as a
/// native integer and taking its native bytes restores network order.
fn word(hex: &str) -> Option<[u8; 4]> {
    u32::from_str_radix(hex, 16).ok().map(u32::to_ne_bytes)
}

/// Reads both tables under `proc_root`. Without `net/tcp` this is not
/// Linux (or /proc is not mounted): a failure of the machine, not of the
/// command line (exit code 1). A missing `net/tcp6` only means IPv6 is off.
pub fn read_sockets(proc_root: &Path) -> Result<Vec<TcpSocket>> {
    let tcp = proc_root.join("net/tcp");
    let text = fs::read_to_string(&tcp).map_err(|e| {
        let message = format!(
            "cannot read {}: {e} (fivetuple conns reads Linux's /proc/net/tcp; is /proc mounted?)",
            tcp.display()
        );
        Error::explained(message, e)
    })?;
    let mut sockets = parse_table(&text, "tcp");
    match fs::read_to_string(proc_root.join("net/tcp6")) {
        Ok(text) => sockets.extend(parse_table(&text, "tcp6")),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io("reading /proc/net/tcp6", e)),
    }
    Ok(sockets)
}

/// Maps socket inodes to (pid, program) by reading every `/proc/PID/fd`.
/// Processes that vanish or cannot be read are skipped.
pub fn socket_owners(proc_root: &Path) -> HashMap<u64, (u32, String)> {
    let mut owners = HashMap::new();
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
        let Ok(fds) = fs::read_dir(entry.path().join("fd")) else {
            continue;
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
                let name = program.get_or_insert_with(|| {
                    fs::read_to_string(entry.path().join("comm"))
                        .map(|c| c.trim_end().to_string())
                        .unwrap_or_default()
                });
                owners.entry(inode).or_insert_with(|| (pid, name.clone()));
            }
        }
    }
    owners
}

/// Runs `fivetuple conns`.
pub fn run(args: &ConnsArgs) -> Result<ExitCode> {
    let state = match &args.state {
        Some(name) => Some(TcpState::parse(name).ok_or_else(|| {
            Error::usage(format!(
                "unknown TCP state {name:?}; one of: {}",
                TcpState::ALL.map(TcpState::name).join(", ")
            ))
        })?),
        None => None,
    };
    let mut sockets = read_sockets(&args.proc_root)?;
    sockets.retain(|s| {
        args.port
            .is_none_or(|p| s.local.port() == p || s.remote.is_some_and(|r| r.port() == p))
            && (!args.listening || s.state == TcpState::Listen)
            && state.is_none_or(|wanted| s.state == wanted)
    });
    if args.processes {
        let owners = socket_owners(&args.proc_root);
        for s in &mut sockets {
            if let Some((pid, program)) = owners.get(&s.inode).filter(|_| s.inode != 0) {
                s.pid = Some(*pid);
                s.program = Some(program.clone());
            }
        }
    }
    sort_like_netstat(&mut sockets);
    let out = if args.json {
        serde_json::to_string_pretty(&sockets)
            .map_err(|e| Error::io("writing JSON", io::Error::other(e)))?
            + "\n"
    } else {
        render(&sockets, args.processes)
    };
    crate::error::write_stdout(&out)?;
    Ok(ExitCode::SUCCESS)
}

/// Listening sockets first, then by local port and address, then remote.
pub fn sort_like_netstat(sockets: &mut [TcpSocket]) {
    sockets.sort_by_key(|s| {
        (
            s.state != TcpState::Listen,
            s.local.port(),
            s.local.ip(),
            s.remote,
        )
    });
}

/// netstat's way of writing an address: `127.0.0.1:500`, `::1:500`,
/// `0.0.0.0:*` for "any".
pub fn netstat_addr(addr: Option<SocketAddr>, wildcard_v6: bool) -> String {
    match addr {
        Some(a) if a.port() == 0 && a.ip().is_unspecified() => format!("{}:*", a.ip()),
        Some(a) => format!("{}:{}", a.ip(), a.port()),
        None if wildcard_v6 => ":::*".to_string(),
        None => "0.0.0.0:*".to_string(),
    }
}

/// The table as `netstat -atn(p)` prints it, columns as wide as needed.
pub fn render(sockets: &[TcpSocket], processes: bool) -> String {
    let locals: Vec<String> = sockets
        .iter()
        .map(|s| netstat_addr(Some(s.local), false))
        .collect();
    let remotes: Vec<String> = sockets
        .iter()
        .map(|s| netstat_addr(s.remote, s.local.is_ipv6()))
        .collect();
    let lw = locals.iter().map(String::len).max().unwrap_or(0).max(23);
    let rw = remotes.iter().map(String::len).max().unwrap_or(0).max(23);
    let mut out = String::from("Active Internet connections (servers and established)\n");
    let _ = write!(
        out,
        "Proto Recv-Q Send-Q {:<lw$} {:<rw$} {:<11}",
        "Local Address", "Foreign Address", "State"
    );
    if processes {
        out.push_str(" PID/Program name");
    }
    out = out.trim_end().to_string();
    out.push('\n');
    for ((s, local), remote) in sockets.iter().zip(&locals).zip(&remotes) {
        let mut line = format!(
            "{:<5} {:>6} {:>6} {:<lw$} {:<rw$} {:<11}",
            s.proto, s.recv_q, s.send_q, local, remote, s.state
        );
        if processes {
            match (&s.pid, &s.program) {
                (Some(pid), Some(program)) => {
                    let _ = write!(line, " {pid}/{program}");
                }
                _ => line.push_str(" -"),
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    // Captured on a Linux machine (x86_64, little-endian), trimmed to the
    // columns this module reads plus the tail the kernel prints.
    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:01F4 00000000:0000 0A 00000000:00000002 00:00000000 00000000     0        0 73611 1 0000000000000000 100 0 0 10 0
   1: 0100007F:01F4 0100007F:D3E0 01 00000000:00000000 00:00000000 00000000     0        0 73620 1 0000000000000000 20 4 30 10 -1
   2: 0100007F:D3E0 0100007F:01F4 01 0000000D:00000000 00:00000000 00000000  1000        0 73619 1 0000000000000000 20 4 30 10 -1
   3: 0100007F:01F4 0100007F:68BD 06 00000000:00000000 03:00000F9E 00000000     0        0 0 3 0000000000000000
   4: 0A01020A:01F4 0301020A:D3E0 01 00000000:00000000 00:00000000 00000000     0        0 1 1
   5: garbage line
";
    const TCP6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:01F4 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 81234 1 0000000000000000 100 0 0 10 0
   1: 00000000000000000000000001000000:01F4 00000000000000000000000001000000:C350 01 00000000:00000000 00:00000000 00000000     0        0 81240 1
   2: 0000000000000000FFFF00000100007F:01F4 0000000000000000FFFF00000100007F:D3E2 08 00000000:00000001 00:00000000 00000000     0        0 81241 1
";

    #[test]
    fn ipv4_lines_parse() {
        let rows = parse_table(TCP, "tcp");
        assert_eq!(rows.len(), 5, "the garbage line is skipped");
        assert_eq!(rows[0].local, "0.0.0.0:500".parse().unwrap());
        assert_eq!(rows[0].remote, None);
        assert_eq!(rows[0].state, TcpState::Listen);
        assert_eq!(rows[0].recv_q, 2);
        assert_eq!(rows[0].inode, 73611);
        assert_eq!(rows[1].local, "127.0.0.1:500".parse().unwrap());
        assert_eq!(rows[1].remote, Some("127.0.0.1:54240".parse().unwrap()));
        assert_eq!(rows[2].send_q, 13);
        assert_eq!(rows[2].uid, 1000);
        assert_eq!(rows[3].state, TcpState::TimeWait);
        assert_eq!(rows[3].inode, 0);
        assert_eq!(rows[4].local, "10.2.1.10:500".parse().unwrap());
        assert_eq!(rows[4].remote, Some("10.2.1.3:54240".parse().unwrap()));
    }

    #[test]
    fn ipv6_lines_parse_including_mapped_ipv4() {
        let rows = parse_table(TCP6, "tcp6");
        assert_eq!(rows[0].local, "[::]:500".parse().unwrap());
        assert_eq!(rows[1].local, "[::1]:500".parse().unwrap());
        assert_eq!(rows[1].remote, Some("[::1]:50000".parse().unwrap()));
        assert_eq!(rows[2].local, "[::ffff:127.0.0.1]:500".parse().unwrap());
        assert_eq!(rows[2].state, TcpState::CloseWait);
        assert_eq!(rows[2].proto, "tcp6");
    }

    #[test]
    fn every_state_code_has_its_netstat_name() {
        let names: Vec<&str> = (1..=11)
            .map(|c| TcpState::from_code(c).unwrap().name())
            .collect();
        assert_eq!(
            names,
            [
                "ESTABLISHED",
                "SYN_SENT",
                "SYN_RECV",
                "FIN_WAIT1",
                "FIN_WAIT2",
                "TIME_WAIT",
                "CLOSE",
                "CLOSE_WAIT",
                "LAST_ACK",
                "LISTEN",
                "CLOSING"
            ]
        );
        assert_eq!(TcpState::from_code(0), None);
        assert_eq!(TcpState::from_code(0x0D), None);
        assert_eq!(TcpState::parse("estab"), Some(TcpState::Established));
        assert_eq!(TcpState::parse("time-wait"), Some(TcpState::TimeWait));
        assert_eq!(TcpState::parse("FIN_WAIT1"), Some(TcpState::FinWait1));
        assert_eq!(TcpState::parse("nope"), None);
    }

    #[test]
    fn rendering_looks_like_netstat() {
        let mut rows = parse_table(TCP, "tcp");
        rows.extend(parse_table(TCP6, "tcp6"));
        sort_like_netstat(&mut rows);
        rows[0].pid = Some(42);
        rows[0].program = Some("fivetuple".into());
        let text = render(&rows, true);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[1].starts_with("Proto Recv-Q Send-Q Local Address"));
        assert!(lines[1].ends_with("PID/Program name"));
        assert!(
            lines[2].starts_with("tcp        2      0 0.0.0.0:500"),
            "{}",
            lines[2]
        );
        assert!(
            lines[2].contains("0.0.0.0:*") && lines[2].ends_with("LISTEN      42/fivetuple"),
            "{text}"
        );
        assert!(text.contains(":::*"));
        assert!(text.contains("::ffff:127.0.0.1:500"));
        assert!(lines.iter().skip(4).all(|l| l.ends_with(" -")));
    }

    #[test]
    fn an_unreadable_proc_is_a_failure_at_run_time() {
        let err = read_sockets(Path::new("/nonexistent-proc")).unwrap_err();
        assert_eq!(err.exit_code(), 1);
        assert!(err.to_string().contains("/nonexistent-proc/net/tcp"));
    }
}
