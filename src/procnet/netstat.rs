//! The kernel's table written the way `netstat` writes it: the same
//! header, the same columns, `0.0.0.0:*` where there is no other end, an
//! IPv4 client of an IPv6 socket as plain `127.0.0.1`. A learner can then
//! hold the two side by side and see the same rows, and the story's
//! `netstat -atnp | grep -i ":500 "` works with `fivetuple conns` in place
//! of `netstat`.
//!
//! Two differences remain, both on purpose: a UDP socket without a peer
//! reads `UNCONN` (ss's word; netstat leaves the State column blank), and
//! the address columns grow to fit, where netstat cuts long IPv6 addresses
//! short unless given `-W`.

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};

use super::Socket;

/// What the table shows besides the rows: which heading, which extra
/// columns.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Layout {
    /// The rows are listening sockets only (`-l`): netstat then heads the
    /// table "(only servers)".
    pub only_servers: bool,
    /// The User and Inode columns (`-e`).
    pub extend: bool,
    /// The PID/Program name column (`-p`).
    pub processes: bool,
}

/// Our order: TCP before UDP, listening sockets first, then by local port
/// and address, then remote. netstat prints each table in the kernel's own
/// order (`tcp`, then `tcp6`: listeners first, then connections in the
/// order of the kernel's hash table, which changes from run to run); a
/// sorted table is easier to read and to compare.
pub fn sort_like_netstat(sockets: &mut [Socket]) {
    sockets.sort_by_key(|s| {
        (
            s.is_udp(),
            !s.state.is_listening(),
            s.local.port(),
            s.local.ip(),
            s.remote,
        )
    });
}

/// netstat's way of writing an address: `127.0.0.1:500`, `::1:500`,
/// `0.0.0.0:*` for "any". An IPv4 client of a listener on `[::]` has an
/// IPv4-mapped address on an IPv6 socket, `::ffff:127.0.0.1`; netstat
/// writes it as the IPv4 address it stands for, and so do we (the row's
/// Proto, `tcp6`, still says which kind of socket it is; `--json` and ss
/// keep `::ffff:`).
pub fn netstat_addr(addr: Option<SocketAddr>, wildcard_v6: bool) -> String {
    match addr {
        Some(a) if a.port() == 0 && a.ip().is_unspecified() => format!("{}:*", a.ip()),
        Some(a) => format!("{}:{}", shown_ip(a.ip()), a.port()),
        None if wildcard_v6 => ":::*".to_string(),
        None => "0.0.0.0:*".to_string(),
    }
}

/// `::ffff:a.b.c.d` as `a.b.c.d`; any other address as it is.
fn shown_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

/// The table as netstat prints it (`netstat -atun`, with `-e` and `-p` as
/// `layout` says), columns as wide as needed.
pub fn render(sockets: &[Socket], layout: Layout) -> String {
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
    let mut out = String::from(if layout.only_servers {
        "Active Internet connections (only servers)\n"
    } else {
        "Active Internet connections (servers and established)\n"
    });
    let mut header = format!(
        "Proto Recv-Q Send-Q {:<lw$} {:<rw$} {:<11}",
        "Local Address", "Foreign Address", "State"
    );
    if layout.extend {
        let _ = write!(header, " {:<10} {:<10}", "User", "Inode");
    }
    if layout.processes {
        header.push_str(" PID/Program name");
    }
    out.push_str(header.trim_end());
    out.push('\n');
    for ((s, local), remote) in sockets.iter().zip(&locals).zip(&remotes) {
        let mut line = format!(
            "{:<5} {:>6} {:>6} {:<lw$} {:<rw$} {:<11}",
            s.proto, s.recv_q, s.send_q, local, remote, s.state
        );
        if layout.extend {
            let _ = write!(line, " {:<10} {:<10}", s.uid, s.inode);
        }
        if layout.processes {
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
    use super::super::parse::{parse_table, tests::*};
    use super::*;

    #[test]
    fn rendering_looks_like_netstat() {
        let mut rows = parse_table(TCP, "tcp");
        rows.extend(parse_table(TCP6, "tcp6"));
        sort_like_netstat(&mut rows);
        rows[0].pid = Some(42);
        rows[0].program = Some("fivetuple".into());
        let text = render(
            &rows,
            Layout {
                processes: true,
                ..Layout::default()
            },
        );
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
        // netstat writes an IPv4-mapped address as the IPv4 one, on a tcp6 row.
        assert!(!text.contains("::ffff:"), "{text}");
        let mapped = lines.iter().find(|l| l.contains("CLOSE_WAIT")).unwrap();
        assert!(
            mapped.starts_with("tcp6       1      0 127.0.0.1:500 ")
                && mapped.contains(" 127.0.0.1:54242 "),
            "{mapped}"
        );
        assert!(lines.iter().skip(4).all(|l| l.ends_with(" -")));
    }

    #[test]
    fn udp_rows_follow_tcp_ones_as_in_netstat() {
        let mut rows = parse_table(UDP6, "udp6");
        rows.extend(parse_table(UDP, "udp"));
        rows.extend(parse_table(TCP, "tcp"));
        sort_like_netstat(&mut rows);
        let text = render(&rows, Layout::default());
        let lines: Vec<&str> = text.lines().skip(2).collect();
        let protos: Vec<&str> = lines.iter().map(|l| &l[..5]).collect();
        assert_eq!(
            protos,
            ["tcp  ", "tcp  ", "tcp  ", "tcp  ", "tcp  ", "udp  ", "udp6 ", "udp  "]
        );
        assert!(
            lines[5].starts_with("udp       13      0 0.0.0.0:500")
                && lines[5].contains("0.0.0.0:*")
                && lines[5].ends_with("UNCONN"),
            "{text}"
        );
        assert!(
            lines[6].contains(":::*") && lines[6].ends_with("UNCONN"),
            "{text}"
        );
        assert!(
            lines[7].contains("127.0.0.1:54321") && lines[7].ends_with("ESTABLISHED"),
            "{text}"
        );
    }

    #[test]
    fn extended_columns_and_the_heading_of_servers_only() {
        let mut rows = parse_table(TCP, "tcp");
        rows.truncate(1);
        rows[0].pid = Some(42);
        rows[0].program = Some("fivetuple".into());
        let layout = Layout {
            only_servers: true,
            extend: true,
            processes: true,
        };
        let text = render(&rows, layout);
        let lines: Vec<&str> = text.lines().collect();
        // netstat -tulpen, to the space.
        assert_eq!(lines[0], "Active Internet connections (only servers)");
        assert_eq!(
            lines[1],
            "Proto Recv-Q Send-Q Local Address           Foreign Address         \
             State       User       Inode      PID/Program name"
        );
        assert_eq!(
            lines[2],
            "tcp        2      0 0.0.0.0:500             0.0.0.0:*               \
             LISTEN      0          73611      42/fivetuple"
        );
    }
}
