//! One line of `/proc/net/{tcp,tcp6,udp,udp6}` into a [`Socket`].
//!
//! The four files share one layout (the UDP ones add a `drops` column at
//! the end, which we do not read):
//!
//! ```text
//!   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
//!    0: 0100007F:01F4 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 73611
//! ```
//!
//! `0100007F:01F4` is 127.0.0.1:500: the address is the 32-bit word exactly
//! as it sits in memory (network byte order) printed as a host-order
//! integer, so on a little-endian machine the bytes come out reversed; IPv6
//! addresses are four such words. The port is plain hex.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::state::{State, TcpState};
use super::Socket;

/// Parses the text of one table; `proto` is the file's name (`tcp`,
/// `tcp6`, `udp`, `udp6`), which is also what netstat's Proto column shows.
/// Lines that do not parse are skipped: the kernel's format has been stable
/// for decades, and one odd line must not hide the others.
pub fn parse_table(text: &str, proto: &'static str) -> Vec<Socket> {
    text.lines()
        .skip(1)
        .filter_map(|line| parse_line(line, proto))
        .collect()
}

fn parse_line(line: &str, proto: &'static str) -> Option<Socket> {
    let mut fields = line.split_whitespace();
    let _slot = fields.next()?.strip_suffix(':')?;
    let local = parse_endpoint(fields.next()?)?;
    let remote = parse_endpoint(fields.next()?)?;
    let code = u8::from_str_radix(fields.next()?, 16).ok()?;
    let state = if proto.starts_with("udp") {
        State::udp_from_code(code)?
    } else {
        State::Tcp(TcpState::from_code(code)?)
    };
    let (tx, rx) = fields.next()?.split_once(':')?;
    let _timer = fields.next()?;
    let _retransmits = fields.next()?;
    let uid = fields.next()?.parse().ok()?;
    let _timeout = fields.next()?;
    let inode = fields.next()?.parse().ok()?;
    Some(Socket {
        proto,
        local,
        // A listener, or a UDP socket without a peer: nothing at the other end.
        remote: (!state.is_listening()).then_some(remote),
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
                chunk.copy_from_slice(&word(addr.get(i * 8..i * 8 + 8)?)?);
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

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    // Captured on a Linux machine (x86_64, little-endian), trimmed to the
    // columns this module reads plus the tail the kernel prints.
    pub const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:01F4 00000000:0000 0A 00000000:00000002 00:00000000 00000000     0        0 73611 1 0000000000000000 100 0 0 10 0
   1: 0100007F:01F4 0100007F:D3E0 01 00000000:00000000 00:00000000 00000000     0        0 73620 1 0000000000000000 20 4 30 10 -1
   2: 0100007F:D3E0 0100007F:01F4 01 0000000D:00000000 00:00000000 00000000  1000        0 73619 1 0000000000000000 20 4 30 10 -1
   3: 0100007F:01F4 0100007F:68BD 06 00000000:00000000 03:00000F9E 00000000     0        0 0 3 0000000000000000
   4: 0A01020A:01F4 0301020A:D3E0 01 00000000:00000000 00:00000000 00000000     0        0 1 1
   5: garbage line
";
    pub const TCP6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:01F4 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 81234 1 0000000000000000 100 0 0 10 0
   1: 00000000000000000000000001000000:01F4 00000000000000000000000001000000:C350 01 00000000:00000000 00:00000000 00000000     0        0 81240 1
   2: 0000000000000000FFFF00000100007F:01F4 0000000000000000FFFF00000100007F:D3E2 08 00000000:00000001 00:00000000 00000000     0        0 81241 1
";
    // /proc/net/udp: the server's socket on port 500 (st 07, unconnected),
    // a client that connected its socket to it (st 01), and one waiting
    // datagram of 13 bytes in the server's receive queue.
    pub const UDP: &str = "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  120: 00000000:01F4 00000000:0000 07 00000000:0000000D 00:00000000 00000000     0        0 90210 2 0000000000000000 0
  300: 0100007F:D431 0100007F:01F4 01 00000000:00000000 00:00000000 00000000  1000        0 90211 2 0000000000000000 0
";
    pub const UDP6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  120: 00000000000000000000000000000000:01F4 00000000000000000000000000000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 90212 2 0000000000000000 0
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
    fn udp_lines_parse_unconnected_and_connected() {
        let rows = parse_table(UDP, "udp");
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].local, "0.0.0.0:500".parse().unwrap());
        assert_eq!(rows[0].state, State::Unconnected);
        assert_eq!(rows[0].remote, None, "no peer: shown as 0.0.0.0:*");
        assert_eq!(rows[0].recv_q, 13);
        assert_eq!(rows[1].state, State::Connected);
        assert_eq!(rows[1].local, "127.0.0.1:54321".parse().unwrap());
        assert_eq!(rows[1].remote, Some("127.0.0.1:500".parse().unwrap()));
        let rows = parse_table(UDP6, "udp6");
        assert_eq!(rows[0].local, "[::]:500".parse().unwrap());
        assert_eq!(rows[0].proto, "udp6");
    }
}
