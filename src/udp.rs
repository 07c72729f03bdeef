//! UDP on the same port number as the TCP listener: the first element of
//! the 5-tuple made visible.
//!
//! `serve --udp` binds a UDP socket to the listener's address and port. The
//! two do not clash: the kernel keeps TCP and UDP ports in separate tables,
//! and a packet's protocol field says which table to look in. So port 500
//! can be two different sockets, `tcp 0.0.0.0:500` and `udp 0.0.0.0:500`.
//!
//! UDP has no accept and no connection. One socket serves every peer: each
//! datagram arrives with its sender's address (`recv_from`), and the answer
//! goes back to that address (`send_to`). The server tells peers apart by
//! the source address each datagram carries, which is exactly what a TCP
//! connection's remote address is, minus the connection. The table shows
//! each recent peer as a *flow* (as conntrack does): datagrams and bytes
//! each way, and when it was last heard from. Flows are forgotten after
//! [`FLOW_IDLE`], and at most [`MAX_FLOWS`] are kept, so a spray of source
//! ports cannot grow memory without bound.
//!
//! Each datagram is answered with one datagram that says what the server
//! saw: `udp 127.0.0.1:500 <- 127.0.0.1:54321, 14 bytes`. With a wildcard
//! bind (`0.0.0.0:500`) the local side reads `0.0.0.0:500`: the one socket
//! does not learn which of the machine's addresses a datagram was sent to,
//! where an accepted TCP socket does (its `getsockname`).

use std::collections::HashMap;
use std::io::{self, Write as _};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mio::net::UdpSocket;
use socket2::{Domain, Protocol, Socket, Type};

use crate::error::{Error, Result};
use crate::table::{ConnRow, Phase, RowState};

/// Datagrams read per turn of the loop, at most: like every other source of
/// work, a flood of datagrams gets a share of the turn, then the others get
/// theirs, and the socket waits on the ready list.
pub const DATAGRAMS_PER_TURN: usize = 64;

/// How long a peer is remembered after its last datagram. 30 s is the
/// kernel's conntrack timeout for a UDP flow seen in one direction
/// (`nf_conntrack_udp_timeout`).
pub const FLOW_IDLE: Duration = Duration::from_secs(30);

/// Peers remembered at most. One more evicts the one heard from longest
/// ago; a sprayer of source ports costs a fixed amount of memory.
pub const MAX_FLOWS: usize = 1024;

/// What the server knows about one UDP peer.
#[derive(Debug, Clone, Copy)]
struct Flow {
    first_seen: Instant,
    last_seen: Instant,
    datagrams_in: u64,
    datagrams_out: u64,
    bytes_in: u64,
    bytes_out: u64,
}

/// What the UDP socket has done, for the table and the log.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UdpStats {
    pub datagrams_in: u64,
    pub datagrams_out: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Answers dropped because the socket's send buffer was full: a UDP
    /// server never waits for room.
    pub dropped: u64,
    /// Flows forgotten to stay within `MAX_FLOWS`.
    pub evicted: u64,
}

/// The UDP socket and its recent peers.
#[derive(Debug)]
pub struct Udp {
    socket: UdpSocket,
    local: SocketAddr,
    bound_at: Instant,
    flows: HashMap<SocketAddr, Flow>,
    stats: UdpStats,
    /// The answer being written, reused so a datagram costs no allocation.
    reply: Vec<u8>,
}

/// What one turn of reading did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drained {
    /// The socket is empty: the next datagram brings an event.
    Empty,
    /// The turn's budget ran out: datagrams may still wait.
    Budget,
}

impl Udp {
    /// Binds a UDP socket to `addr` (the TCP listener's address and real
    /// port), dual-stack for `[::]` as the listener is.
    pub fn bind(addr: SocketAddr, ipv6_only: bool) -> Result<Udp> {
        let fail = |what: &'static str| move |e| Error::io(what, e);
        let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))
            .map_err(fail("creating the UDP socket"))?;
        if addr.is_ipv6() {
            socket
                .set_only_v6(ipv6_only)
                .map_err(fail("setting IPV6_V6ONLY on the UDP socket"))?;
        }
        socket
            .set_nonblocking(true)
            .map_err(fail("making the UDP socket non-blocking"))?;
        socket
            .bind(&addr.into())
            .map_err(|e| Error::io("binding the UDP socket to the listener's port", e))?;
        let socket = UdpSocket::from_std(socket.into());
        let local = socket
            .local_addr()
            .map_err(fail("reading the UDP socket's address"))?;
        Ok(Udp {
            socket,
            local,
            bound_at: Instant::now(),
            flows: HashMap::new(),
            stats: UdpStats::default(),
            reply: Vec::with_capacity(128),
        })
    }

    pub fn socket_mut(&mut self) -> &mut UdpSocket {
        &mut self.socket
    }

    pub fn stats(&self) -> UdpStats {
        self.stats
    }

    /// Peers remembered now.
    pub fn flows(&self) -> usize {
        self.flows.len()
    }

    /// Reads datagrams (into the reactor's shared buffer; 64 KiB holds the
    /// largest UDP payload, so none is cut short) and answers each, at most
    /// [`DATAGRAMS_PER_TURN`] of them.
    pub fn on_readable(&mut self, buf: &mut [u8], now: Instant) -> Drained {
        for _ in 0..DATAGRAMS_PER_TURN {
            let (n, peer) = match self.socket.recv_from(buf) {
                Ok(got) => got,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Drained::Empty,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // An ICMP error for an earlier answer, reported on the
                    // socket (ECONNREFUSED and friends): nothing to answer.
                    log::debug!("udp {}: {e}", self.local);
                    continue;
                }
            };
            log::trace!("udp {}: {n} bytes from {peer}", self.local);
            self.answer(peer, n, now);
        }
        Drained::Budget
    }

    /// Books a datagram of `n` bytes from `peer` and sends the answer.
    fn answer(&mut self, peer: SocketAddr, n: usize, now: Instant) {
        self.reply.clear();
        let unit = if n == 1 { "byte" } else { "bytes" };
        let _ = writeln!(self.reply, "udp {} <- {peer}, {n} {unit}", self.local);
        let sent = match self.socket.send_to(&self.reply, peer) {
            Ok(sent) => Some(sent),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                self.stats.dropped += 1;
                None
            }
            Err(e) => {
                log::debug!("udp {}: answering {peer}: {e}", self.local);
                None
            }
        };
        self.stats.datagrams_in += 1;
        self.stats.bytes_in += n as u64;
        if let Some(sent) = sent {
            self.stats.datagrams_out += 1;
            self.stats.bytes_out += sent as u64;
        }
        if !self.flows.contains_key(&peer) && self.flows.len() >= MAX_FLOWS {
            self.evict_oldest();
        }
        let flow = self.flows.entry(peer).or_insert(Flow {
            first_seen: now,
            last_seen: now,
            datagrams_in: 0,
            datagrams_out: 0,
            bytes_in: 0,
            bytes_out: 0,
        });
        flow.last_seen = now;
        flow.datagrams_in += 1;
        flow.bytes_in += n as u64;
        if let Some(sent) = sent {
            flow.datagrams_out += 1;
            flow.bytes_out += sent as u64;
        }
    }

    /// Forgets the peer heard from longest ago. A scan of at most
    /// `MAX_FLOWS` entries, only when the table is full.
    fn evict_oldest(&mut self) {
        let oldest = self
            .flows
            .iter()
            .min_by_key(|(_, f)| f.last_seen)
            .map(|(peer, _)| *peer);
        if let Some(peer) = oldest {
            self.flows.remove(&peer);
            self.stats.evicted += 1;
        }
    }

    /// Forgets the peers not heard from for [`FLOW_IDLE`].
    pub fn expire(&mut self, now: Instant) {
        self.flows
            .retain(|_, f| now.saturating_duration_since(f.last_seen) < FLOW_IDLE);
    }

    /// The socket's row: netstat calls an unconnected UDP socket UNCONN.
    pub fn socket_row(&self, now: Instant) -> ConnRow {
        ConnRow {
            token: None,
            proto: "udp",
            local: self.local,
            remote: None,
            state: RowState::Unconnected,
            phase: Phase::Receive,
            age_ms: now.duration_since(self.bound_at).as_millis() as u64,
            bytes_in: self.stats.bytes_in,
            bytes_out: self.stats.bytes_out,
            requests: Some(self.stats.datagrams_out),
            you: false,
            client: None,
        }
    }

    /// One row per recent peer, most recently heard first, at most `rows`.
    pub fn flow_rows(&self, now: Instant, rows: usize) -> Vec<ConnRow> {
        let mut flows: Vec<(&SocketAddr, &Flow)> = self.flows.iter().collect();
        flows.sort_by_key(|(peer, f)| (std::cmp::Reverse(f.last_seen), **peer));
        flows
            .into_iter()
            .take(rows)
            .map(|(peer, f)| ConnRow {
                token: None,
                proto: "udp",
                local: self.local,
                remote: Some(*peer),
                state: RowState::Unconnected,
                phase: Phase::Flow,
                age_ms: now.duration_since(f.first_seen).as_millis() as u64,
                bytes_in: f.bytes_in,
                bytes_out: f.bytes_out,
                requests: Some(f.datagrams_out),
                you: false,
                client: None,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket as StdUdp;

    fn udp() -> Udp {
        Udp::bind("127.0.0.1:0".parse().unwrap(), false).unwrap()
    }

    /// Reads until `want` datagrams have been answered (they may take a
    /// moment to reach the socket), within a deadline.
    fn drain_until(u: &mut Udp, want: u64) {
        let mut buf = vec![0; 64 * 1024];
        let deadline = Instant::now() + Duration::from_secs(10);
        while u.stats().datagrams_in < want {
            assert!(Instant::now() < deadline, "datagrams did not arrive");
            u.on_readable(&mut buf, Instant::now());
        }
    }

    #[test]
    fn each_peer_is_answered_with_what_the_server_saw() {
        let mut u = udp();
        let a = StdUdp::bind("127.0.0.1:0").unwrap();
        let b = StdUdp::bind("127.0.0.1:0").unwrap();
        a.send_to(b"Test payload.", u.local).unwrap();
        b.send_to(b"hi", u.local).unwrap();
        drain_until(&mut u, 2);
        let mut reply = [0u8; 128];
        for (client, n) in [(&a, 13), (&b, 2)] {
            client
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            let got = client.recv(&mut reply).unwrap();
            let text = std::str::from_utf8(&reply[..got]).unwrap();
            let want = format!(
                "udp {} <- {}, {n} bytes\n",
                u.local,
                client.local_addr().unwrap()
            );
            assert_eq!(text, want);
        }
        assert_eq!(u.flows(), 2);
        let rows = u.flow_rows(Instant::now(), 10);
        assert_eq!(rows.len(), 2);
        assert!(rows.iter().all(|r| r.local == u.local && r.proto == "udp"));
    }

    #[test]
    fn a_spray_of_source_ports_keeps_the_flow_table_bounded() {
        let mut u = udp();
        let sprayers: Vec<StdUdp> = (0..MAX_FLOWS + 200)
            .map(|_| StdUdp::bind("127.0.0.1:0").unwrap())
            .collect();
        for (i, s) in sprayers.iter().enumerate() {
            s.send_to(b"x", u.local).unwrap();
            if i % 128 == 127 {
                drain_until(&mut u, i as u64 + 1); // keep the receive buffer from overflowing
            }
        }
        drain_until(&mut u, sprayers.len() as u64);
        assert_eq!(u.flows(), MAX_FLOWS);
        assert_eq!(u.stats().evicted, 200);
        // The newest peers are the ones kept.
        let last = sprayers.last().unwrap().local_addr().unwrap();
        assert!(u.flows.contains_key(&last));
        u.expire(Instant::now() + FLOW_IDLE);
        assert_eq!(u.flows(), 0, "idle flows are forgotten");
    }

    #[test]
    fn a_turn_reads_at_most_its_budget() {
        let mut u = udp();
        let s = StdUdp::bind("127.0.0.1:0").unwrap();
        for _ in 0..DATAGRAMS_PER_TURN + 10 {
            s.send_to(b"x", u.local).unwrap();
        }
        let mut buf = vec![0; 64 * 1024];
        let deadline = Instant::now() + Duration::from_secs(10);
        // Wait until the first turn finds a full budget's worth waiting.
        loop {
            assert!(Instant::now() < deadline);
            if u.on_readable(&mut buf, Instant::now()) == Drained::Budget {
                break;
            }
        }
        assert!(u.stats().datagrams_in >= DATAGRAMS_PER_TURN as u64);
    }
}
