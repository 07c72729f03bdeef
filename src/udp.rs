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
//! A datagram is answered with one datagram that says what the server saw:
//! `udp 127.0.0.1:500 <- 127.0.0.1:54321, 138 bytes`. With a wildcard bind
//! (`0.0.0.0:500`) the local side reads `0.0.0.0:500`: the one socket does
//! not learn which of the machine's addresses a datagram was sent to, where
//! an accepted TCP socket does (its `getsockname`).
//!
//! # Nothing proves where a datagram came from
//!
//! Before a TCP server reads a byte of a request, the handshake has shown
//! that the client's address is real: the SYN-ACK went to that address,
//! and only whoever received it could finish the handshake. UDP has no
//! handshake. A datagram's source address is whatever its sender wrote
//! there, and the answer goes to it. So whoever can send one datagram with
//! a forged source can make a server that answers everything send to
//! anyone:
//!
//! - to itself: a datagram "from" the server's own address and port is
//!   answered to the server, which answers its own answer, forever (the
//!   "Loop DoS" of CVE-2024-2169, and the old echo and chargen loops);
//! - to another server that answers everything: one datagram forged from
//!   its port sets the two answering each other, forever;
//! - to a victim, with more bytes than the attacker sent (amplification).
//!
//! So a datagram is answered only when every rule holds, and what is not
//! answered is counted by reason ([`Refusal`]):
//!
//! 1. The source could be a client: a unicast address, not port 0, not the
//!    socket's own port number, not a port where services that answer
//!    anything live ([`is_service_port`]). Those are refused before they
//!    cost a flow.
//! 2. The datagram is not one of our own answers. Another fivetuple's
//!    answer is never a question, so two of them cannot keep a loop going.
//! 3. The answer is no longer than the datagram: never more bytes out than
//!    in, so the server amplifies nothing. `connect -m udp` pads its
//!    datagram to [`LONGEST_ANSWER`], as a QUIC client pads its first
//!    datagram to 1,200 bytes for the same reason.
//! 4. The source has credit ([`SOURCE_RATE`]), and so has the server in
//!    all ([`TOTAL_RATE`]): a loop with a peer that answers in ways these
//!    rules cannot recognise still runs at a trickle, and a flood of forged
//!    sources gets a bounded number of answers per second.
//!
//! Each rule costs a comparison or two; the credits live in the flow table
//! (one `Instant` per peer), so a datagram still costs no allocation once
//! the table has grown.

use std::collections::HashMap;
use std::io::{self, Write as _};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use mio::net::UdpSocket;
use socket2::{Domain, Protocol, Socket, Type};

use crate::error::{Error, Result};
use crate::table::{ConnRow, Phase, RowState};
// What this socket counts is part of the table's snapshot, and lives
// there (the table does not use this module); named here too, since it is
// this socket's doing.
pub use crate::table::{Refusal, Refused, UdpStats};

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

/// The longest address an answer can name, as `SocketAddr` writes it: a
/// full IPv6 address with a scope id, and a five-digit port.
const LONGEST_ADDRESS: usize = "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff%4294967295]:65535".len();

/// The longest answer the server can write: two longest addresses and a
/// five-digit length (a UDP payload is at most 65,527 bytes). A datagram at
/// least this long is always answered in full; `connect -m udp` pads to it.
pub const LONGEST_ANSWER: usize =
    "udp ".len() + LONGEST_ADDRESS + " <- ".len() + LONGEST_ADDRESS + ", 65527 bytes\n".len();

/// Answers to one source: 10 at once, then 10 a second. A client of this
/// server sends one datagram per socket (so per source address and port);
/// someone typing into `nc -u` sends a few a second. Keyed by address *and
/// port*, as the flows are: many clients behind one NAT share an address
/// but not a port, and must not share a limit.
pub const SOURCE_RATE: Rate = Rate::per_second(10, 10);

/// Answers in all: 20,000 at once, then 20,000 a second. Reads are already
/// bounded per turn ([`DATAGRAMS_PER_TURN`]), but turns follow each other
/// as fast as the CPU allows, so only a limit in time bounds what a spray
/// of forged sources, each with fresh credit, gets out of the server.
pub const TOTAL_RATE: Rate = Rate::per_second(20_000, 20_000);

/// Source ports above 1023 where well-known services answer datagrams
/// from anyone (below 1024 every port counts: echo 7, daytime 13, qotd
/// 17, chargen 19, DNS 53, TFTP 69, NTP 123, SNMP 161...). A datagram from
/// one of them is a forged one aimed at that service, or that service
/// answering one of ours: answering it starts a loop. Ports inside Linux's
/// ephemeral range (32768-60999, where Jenkins 33848 and some DVRs 37810
/// answer) are left out: real clients draw their ports from it, and
/// refusing one would refuse clients at random. The rate limits bound a
/// loop with those.
const SERVICE_PORTS: [u16; 12] = [
    1194,  // OpenVPN
    1434,  // SQL Server browser
    1900,  // SSDP (UPnP discovery)
    3283,  // Apple Remote Desktop
    3478,  // STUN
    3702,  // WS-Discovery
    5060,  // SIP
    5353,  // multicast DNS
    5683,  // CoAP
    11211, // memcached
    27015, // Source engine game servers
    27960, // Quake III servers
];

/// Whether `port` is one where services that answer anything live: the
/// system ports below 1024, and [`SERVICE_PORTS`].
pub fn is_service_port(port: u16) -> bool {
    (1..1024).contains(&port) || SERVICE_PORTS.contains(&port)
}

/// A rate of answers with a burst: see [`Credit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// What one answer costs: the time the credit takes to come back.
    per_answer: Duration,
    /// How far ahead of the clock the credit may be spent: `burst` answers' worth.
    window: Duration,
}

impl Rate {
    /// `per_second` answers a second on average, `burst` of them at once.
    pub const fn per_second(per_second: u64, burst: u64) -> Rate {
        let nanos = 1_000_000_000 / per_second;
        Rate {
            per_answer: Duration::from_nanos(nanos),
            window: Duration::from_nanos(nanos * burst),
        }
    }
}

/// What is left of a [`Rate`], kept as one instant (the "generic cell rate
/// algorithm" of ATM networks: a token bucket with no tokens to refill).
/// Each answer moves `spent_until` forward by the cost of one answer; an
/// answer is allowed while that stays within the rate's window of now. A
/// quiet source's `spent_until` falls behind the clock, which is its credit
/// coming back: no timer, no refill, one `Instant` per peer.
#[derive(Debug, Clone, Copy)]
struct Credit {
    spent_until: Instant,
}

impl Credit {
    fn full(now: Instant) -> Credit {
        Credit { spent_until: now }
    }

    /// The credit after one more answer at `now`, if `rate` allows one.
    fn after_one(self, now: Instant, rate: Rate) -> Option<Credit> {
        let spent_until = self.spent_until.max(now) + rate.per_answer;
        (spent_until.duration_since(now) <= rate.window).then_some(Credit { spent_until })
    }
}

/// What the server knows about one UDP peer.
#[derive(Debug, Clone, Copy)]
struct Flow {
    first_seen: Instant,
    last_seen: Instant,
    datagrams_in: u64,
    datagrams_out: u64,
    bytes_in: u64,
    bytes_out: u64,
    /// What is left of the peer's [`SOURCE_RATE`].
    credit: Credit,
}

/// The UDP socket and its recent peers.
#[derive(Debug)]
pub struct Udp {
    socket: UdpSocket,
    local: SocketAddr,
    bound_at: Instant,
    flows: HashMap<SocketAddr, Flow>,
    stats: UdpStats,
    /// The limits in force: [`SOURCE_RATE`] and [`TOTAL_RATE`] (tests use
    /// others, to see a limit without sending 20,000 datagrams).
    source_rate: Rate,
    total_rate: Rate,
    /// What is left of `total_rate`.
    total_credit: Credit,
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
        Udp::from_socket(socket.into())
    }

    /// A UDP socket bound elsewhere (socket activation, or the previous
    /// copy of the server in a restart), non-blocking.
    pub fn from_socket(socket: std::net::UdpSocket) -> Result<Udp> {
        let fail = |what: &'static str| move |e| Error::io(what, e);
        socket
            .set_nonblocking(true)
            .map_err(fail("making the UDP socket non-blocking"))?;
        let socket = UdpSocket::from_std(socket);
        let local = socket
            .local_addr()
            .map_err(fail("reading the UDP socket's address"))?;
        let now = Instant::now();
        Ok(Udp {
            socket,
            local,
            bound_at: now,
            flows: HashMap::new(),
            stats: UdpStats::default(),
            source_rate: SOURCE_RATE,
            total_rate: TOTAL_RATE,
            total_credit: Credit::full(now),
            reply: Vec::with_capacity(LONGEST_ANSWER),
        })
    }

    pub fn socket(&self) -> &UdpSocket {
        &self.socket
    }

    pub fn socket_mut(&mut self) -> &mut UdpSocket {
        &mut self.socket
    }

    pub fn stats(&self) -> UdpStats {
        UdpStats {
            peers: self.flows.len(),
            ..self.stats
        }
    }

    /// Peers remembered now.
    pub fn flows(&self) -> usize {
        self.flows.len()
    }

    /// Reads datagrams (into the reactor's shared buffer; 64 KiB holds the
    /// largest UDP payload, so none is cut short) and answers those that
    /// may be answered, at most [`DATAGRAMS_PER_TURN`] of them.
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
            self.on_datagram(peer, &buf[..n], now);
        }
        Drained::Budget
    }

    /// One datagram: answered, or counted as refused, dropped or failed.
    fn on_datagram(&mut self, peer: SocketAddr, datagram: &[u8], now: Instant) {
        self.stats.datagrams_in += 1;
        self.stats.bytes_in += datagram.len() as u64;
        match self.admit(peer, datagram, now) {
            Ok(()) => self.send_reply(peer),
            Err(why) => {
                log::debug!(
                    "udp {}: {peer} not answered: {}",
                    self.local,
                    why.describe()
                );
                self.stats.refused.count(why);
            }
        }
    }

    /// Checks the rules of the module's comment in order, booking the
    /// datagram on its flow once the source could be a client; on `Ok` the
    /// answer is in `self.reply` and the credits are spent.
    fn admit(
        &mut self,
        peer: SocketAddr,
        datagram: &[u8],
        now: Instant,
    ) -> std::result::Result<(), Refusal> {
        if let Some(why) = self.refuse_source(peer) {
            return Err(why);
        }
        if looks_like_an_answer(datagram) {
            return Err(Refusal::OwnAnswer);
        }
        // The answer is written first, to know its length; it goes out
        // only if every rule holds.
        self.reply.clear();
        let n = datagram.len();
        let unit = if n == 1 { "byte" } else { "bytes" };
        let _ = writeln!(self.reply, "udp {} <- {peer}, {n} {unit}", self.local);
        let too_short = self.reply.len() > n;
        let (source_rate, total_rate, total_credit) =
            (self.source_rate, self.total_rate, self.total_credit);
        let flow = self.book(peer, n, now);
        if too_short {
            return Err(Refusal::TooShort);
        }
        let source = flow
            .credit
            .after_one(now, source_rate)
            .ok_or(Refusal::SourceRate)?;
        let total = total_credit
            .after_one(now, total_rate)
            .ok_or(Refusal::TotalRate)?;
        // Both allow it: only now is either spent, so that a source is not
        // charged for an answer the total refused.
        flow.credit = source;
        self.total_credit = total;
        Ok(())
    }

    /// Rule 1: whether `peer` cannot be a client, and why.
    fn refuse_source(&self, peer: SocketAddr) -> Option<Refusal> {
        let port = peer.port();
        if port == 0 {
            Some(Refusal::PortZero)
        } else if port == self.local.port() {
            Some(Refusal::OwnPort)
        } else if is_service_port(port) {
            Some(Refusal::ServicePort)
        } else if !is_unicast(peer.ip()) {
            Some(Refusal::NotUnicast)
        } else {
            None
        }
    }

    /// Books a datagram of `n` bytes on `peer`'s flow, making one (and room
    /// for it) if the peer is new.
    fn book(&mut self, peer: SocketAddr, n: usize, now: Instant) -> &mut Flow {
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
            credit: Credit::full(now),
        });
        flow.last_seen = now;
        flow.datagrams_in += 1;
        flow.bytes_in += n as u64;
        flow
    }

    /// Sends `self.reply` to `peer`, never waiting for room.
    fn send_reply(&mut self, peer: SocketAddr) {
        match self.socket.send_to(&self.reply, peer) {
            Ok(sent) => {
                self.stats.datagrams_out += 1;
                self.stats.bytes_out += sent as u64;
                if let Some(flow) = self.flows.get_mut(&peer) {
                    flow.datagrams_out += 1;
                    flow.bytes_out += sent as u64;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.stats.dropped += 1,
            Err(e) => {
                log::debug!("udp {}: answering {peer}: {e}", self.local);
                self.stats.failed += 1;
            }
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

/// Rule 2: whether `datagram` has the shape of a fivetuple answer,
/// `udp A <- B, N bytes\n`. The prefix, the suffix and the length are
/// enough: a real request never looks like this, because `connect -m udp`
/// pads with zero bytes, so a padded datagram never ends in a newline, and
/// an unpadded one is longer than any answer.
pub fn looks_like_an_answer(datagram: &[u8]) -> bool {
    datagram.len() <= LONGEST_ANSWER
        && datagram.starts_with(b"udp ")
        && (datagram.ends_with(b" bytes\n") || datagram.ends_with(b" byte\n"))
}

/// Whether an answer to `ip` reaches one host, and not this one by way of
/// the unspecified address. An IPv4 peer of a dual-stack socket arrives as
/// `::ffff:a.b.c.d`, and is judged as the IPv4 address it is.
fn is_unicast(ip: IpAddr) -> bool {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    };
    match ip {
        IpAddr::V4(v4) => !(v4.is_unspecified() || v4.is_broadcast() || v4.is_multicast()),
        IpAddr::V6(v6) => !(v6.is_unspecified() || v6.is_multicast()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket as StdUdp;

    fn udp() -> Udp {
        Udp::bind("127.0.0.1:0".parse().unwrap(), false).unwrap()
    }

    /// A datagram a padded client would send.
    const PADDED: [u8; LONGEST_ANSWER] = [0; LONGEST_ANSWER];

    /// Reads until `want` datagrams have been read (they may take a moment
    /// to reach the socket), within a deadline.
    fn drain_until(u: &mut Udp, want: u64) {
        let mut buf = vec![0; 64 * 1024];
        let deadline = Instant::now() + Duration::from_secs(10);
        while u.stats().datagrams_in < want {
            assert!(Instant::now() < deadline, "datagrams did not arrive");
            u.on_readable(&mut buf, Instant::now());
        }
    }

    fn peer(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    /// A client's address with `port`, or another if the server's socket
    /// happens to have that port (the kernel chose it).
    fn client(u: &Udp, port: u16) -> SocketAddr {
        match port == u.local.port() {
            true => peer(port.wrapping_add(10_000)),
            false => peer(port),
        }
    }

    #[test]
    fn each_peer_is_answered_with_what_the_server_saw() {
        let mut u = udp();
        let a = StdUdp::bind("127.0.0.1:0").unwrap();
        let b = StdUdp::bind("127.0.0.1:0").unwrap();
        let mut asked = b"Test payload.".to_vec();
        asked.resize(LONGEST_ANSWER, 0);
        a.send_to(&asked, u.local).unwrap();
        b.send_to(&[b'x'; 200], u.local).unwrap();
        drain_until(&mut u, 2);
        let mut reply = [0u8; 256];
        for (client, n) in [(&a, LONGEST_ANSWER), (&b, 200)] {
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
    fn the_longest_answer_is_as_long_as_promised() {
        let longest: SocketAddr = "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff%4294967295]:65535"
            .parse()
            .unwrap();
        let answer = format!("udp {longest} <- {longest}, 65527 bytes\n");
        assert_eq!(answer.len(), LONGEST_ANSWER);
        assert!(looks_like_an_answer(answer.as_bytes()));
        // A padded request never looks like one, whatever its payload.
        let mut padded = answer.clone().into_bytes();
        padded.truncate(40);
        padded.resize(LONGEST_ANSWER, 0);
        assert!(!looks_like_an_answer(&padded));
        assert!(!looks_like_an_answer(&PADDED));
        let mut long = answer.into_bytes();
        long.insert(4, b' ');
        assert!(!looks_like_an_answer(&long), "longer than any answer");
    }

    #[test]
    fn sources_that_cannot_be_clients_are_refused_before_they_cost_a_flow() {
        let mut u = udp();
        let now = Instant::now();
        let own = u.local.port();
        let cases = [
            (peer(0), Refusal::PortZero),
            (peer(own), Refusal::OwnPort),
            (SocketAddr::from(([10, 9, 8, 7], own)), Refusal::OwnPort),
            (peer(7), Refusal::ServicePort),
            (peer(53), Refusal::ServicePort),
            (peer(1023), Refusal::ServicePort),
            (peer(5353), Refusal::ServicePort),
            (
                SocketAddr::from(([255, 255, 255, 255], 40000)),
                Refusal::NotUnicast,
            ),
            (
                SocketAddr::from(([224, 0, 0, 1], 40000)),
                Refusal::NotUnicast,
            ),
            (SocketAddr::from(([0, 0, 0, 0], 40000)), Refusal::NotUnicast),
            (
                "[::ffff:224.0.0.1]:40000".parse().unwrap(),
                Refusal::NotUnicast,
            ),
            ("[ff02::1]:40000".parse().unwrap(), Refusal::NotUnicast),
        ];
        for (from, why) in cases {
            assert_eq!(u.admit(from, &PADDED, now), Err(why), "{from}");
        }
        assert_eq!(u.flows(), 0);
        for port in [1024, 40000] {
            let from = client(&u, port);
            assert_eq!(u.admit(from, &PADDED, now), Ok(()));
        }
        assert_eq!(u.flows(), 2);
    }

    #[test]
    fn an_answer_is_never_longer_than_its_question() {
        let mut u = udp();
        let now = Instant::now();
        let from = client(&u, 40000);
        for n in [0, 1, 10, 40] {
            assert_eq!(u.admit(from, &vec![b'x'; n], now), Err(Refusal::TooShort));
        }
        // Exactly as long as its answer: answered.
        let answer_len = format!("udp {} <- {from}, 46 bytes\n", u.local).len();
        assert_eq!(u.admit(from, &vec![b'x'; answer_len], now), Ok(()));
        assert_eq!(u.reply.len(), answer_len);
        // Another server's answer is no question, even when long enough.
        let theirs = format!("udp 127.0.0.1:9999 <- {}, {answer_len} bytes\n", u.local);
        assert_eq!(
            u.admit(from, theirs.as_bytes(), now),
            Err(Refusal::OwnAnswer)
        );
    }

    #[test]
    fn each_source_has_its_credit_and_the_server_its_total() {
        let mut u = udp();
        let start = Instant::now();
        let (a, b) = (client(&u, 40000), client(&u, 40001));
        let answered = |u: &mut Udp, from: SocketAddr, at: Instant| {
            (0..100)
                .filter(|_| u.admit(from, &PADDED, at).is_ok())
                .count()
        };
        assert_eq!(answered(&mut u, a, start), 10, "a burst of 10");
        assert_eq!(u.admit(a, &PADDED, start), Err(Refusal::SourceRate));
        // Another port of the same address (another client behind one NAT)
        // has its own credit.
        assert_eq!(answered(&mut u, b, start), 10);
        // The credit comes back at 10 a second.
        let later = start + Duration::from_millis(500);
        assert_eq!(answered(&mut u, a, later), 5);

        // In all: with a total of 4 at once, the fifth source waits.
        u.total_rate = Rate::per_second(4, 4);
        u.total_credit = Credit::full(start);
        for port in 41000..41004 {
            let from = client(&u, port);
            assert_eq!(u.admit(from, &PADDED, start), Ok(()));
        }
        let fifth = client(&u, 41004);
        assert_eq!(u.admit(fifth, &PADDED, start), Err(Refusal::TotalRate));
        // The source refused by the total kept its own credit.
        let next = start + Duration::from_millis(250);
        assert_eq!(answered(&mut u, fifth, next), 1);
    }

    #[test]
    fn every_datagram_is_counted_once() {
        let mut u = udp();
        let client = StdUdp::bind("127.0.0.1:0").unwrap();
        client.send_to(&PADDED, u.local).unwrap();
        client.send_to(b"short", u.local).unwrap();
        drain_until(&mut u, 2);
        let s = u.stats();
        assert_eq!(s.datagrams_out, 1);
        assert_eq!(s.refused.get(Refusal::TooShort), 1);
        assert_eq!(
            s.datagrams_in,
            s.datagrams_out + s.refused.total() + s.dropped + s.failed
        );
        assert_eq!(s.bytes_in, (LONGEST_ANSWER + 5) as u64);
        let json = serde_json::to_value(s).unwrap();
        assert_eq!(json["refused"]["too_short"], 1);
        assert_eq!(json["peers"], 1);
    }

    #[test]
    fn a_spray_of_source_ports_keeps_the_flow_table_bounded() {
        let mut u = udp();
        let now = Instant::now();
        for port in 0..MAX_FLOWS + 200 {
            let from = client(&u, 20_000 + port as u16);
            assert_eq!(u.admit(from, &PADDED, now), Ok(()));
        }
        assert_eq!(u.flows(), MAX_FLOWS);
        assert_eq!(u.stats().evicted, 200);
        u.expire(now + FLOW_IDLE);
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
