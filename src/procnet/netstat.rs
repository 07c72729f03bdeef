//! The kernel's table written the way `netstat -atun` writes it: the same
//! header, the same columns, `0.0.0.0:*` where there is no other end. A
//! learner can then hold the two side by side and see the same rows.

use std::fmt::Write as _;
use std::net::SocketAddr;

use super::Socket;

/// netstat's order: TCP before UDP, listening sockets first, then by local
/// port and address, then remote.
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
/// `0.0.0.0:*` for "any".
pub fn netstat_addr(addr: Option<SocketAddr>, wildcard_v6: bool) -> String {
    match addr {
        Some(a) if a.port() == 0 && a.ip().is_unspecified() => format!("{}:*", a.ip()),
        Some(a) => format!("{}:{}", a.ip(), a.port()),
        None if wildcard_v6 => ":::*".to_string(),
        None => "0.0.0.0:*".to_string(),
    }
}

/// The table as `netstat -atun(p)` prints it, columns as wide as needed.
pub fn render(sockets: &[Socket], processes: bool) -> String {
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
    use super::super::parse::{parse_table, tests::*};
    use super::*;

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
    fn udp_rows_follow_tcp_ones_as_in_netstat() {
        let mut rows = parse_table(UDP6, "udp6");
        rows.extend(parse_table(UDP, "udp"));
        rows.extend(parse_table(TCP, "tcp"));
        sort_like_netstat(&mut rows);
        let text = render(&rows, false);
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
}
