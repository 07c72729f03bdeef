//! A UDP probe's socket calls: one socket per probe, bound to port 0 and
//! connected, one datagram out, one answer in.
//!
//! UDP has no handshake, so "connecting" a UDP socket sends nothing. It
//! does two things that matter here: the kernel fixes the socket's local
//! address and ephemeral port at once (so each probe has its own end to
//! print, as a TCP connection does), and the socket now accepts datagrams
//! from that one peer only and hears the ICMP errors about it. When nothing
//! listens on the server's UDP port, its kernel answers with ICMP "port
//! unreachable", and the next `recv` on a connected socket fails with
//! `ECONNREFUSED`; an unconnected socket would never know, and wait for
//! its timeout.
//!
//! The datagram is padded. `fivetuple serve --udp` never sends more bytes
//! than it received (anyone can forge a datagram's source, and a server
//! that answered a few bytes with many would amplify a forger's traffic
//! towards whoever he names), so a short payload alone would get no
//! answer. Zero bytes after the payload bring the datagram to the length
//! of the longest answer, as QUIC clients pad their first datagram to
//! 1,200 bytes so that a server may answer it. The server counts the
//! padding with the rest: it says what it saw, the whole datagram.

use mio::net::UdpSocket;
use rustix::io::Errno;
use rustix::net::RecvFlags;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::failure::Failure;
use crate::udp::LONGEST_ANSWER;

/// Bytes of an answer kept. A fivetuple answer is one line of at most
/// about 120 bytes (two IPv6 addresses and a length); anything longer is
/// not one, and is cut here (and the cut noticed: see [`receive`]).
pub(super) const ANSWER_LIMIT: usize = 2048;

/// The datagram to send for `payload`: the payload, then zero bytes up to
/// [`LONGEST_ANSWER`], so that the server may answer it in full (see the
/// module's comment). A payload that long already goes as it is.
pub(super) fn padded(payload: &[u8]) -> Vec<u8> {
    let mut datagram = payload.to_vec();
    if datagram.len() < LONGEST_ANSWER {
        datagram.resize(LONGEST_ANSWER, 0);
    }
    datagram
}

/// A UDP socket bound to port 0 of `source` (or of any address) and
/// connected to `target`, with the local end the kernel chose.
pub(super) fn open(
    target: SocketAddr,
    source: Option<IpAddr>,
) -> Result<(UdpSocket, SocketAddr), Failure> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(target),
        socket2::Type::DGRAM.nonblocking().cloexec(),
        Some(socket2::Protocol::UDP),
    )
    .map_err(|e| Failure::from_io(&e))?;
    let any: IpAddr = match target {
        SocketAddr::V4(_) => Ipv4Addr::UNSPECIFIED.into(),
        SocketAddr::V6(_) => Ipv6Addr::UNSPECIFIED.into(),
    };
    // Port 0: the kernel picks a free ephemeral port, as for TCP.
    socket
        .bind(&SocketAddr::new(source.unwrap_or(any), 0).into())
        .map_err(|e| Failure::from_bind(&e))?;
    socket
        .connect(&target.into())
        .map_err(|e| from_udp_error(&e))?;
    let local = socket
        .local_addr()
        .ok()
        .and_then(|a| a.as_socket())
        .ok_or_else(|| Failure::Other("the kernel did not say which local port".into()))?;
    Ok((UdpSocket::from_std(socket.into()), local))
}

/// Sends the payload as one datagram. A full send buffer is not waited
/// for: the datagram is dropped and the failure counted, as a UDP sender
/// that never blocks must (the loop has other sockets to serve).
pub(super) fn send(socket: &UdpSocket, payload: &[u8]) -> Result<usize, Failure> {
    loop {
        match socket.send(payload) {
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(from_udp_error(&e)),
        }
    }
}

/// What a UDP socket call's error means: `ECONNREFUSED` is an ICMP "port
/// unreachable" reported on the connected socket; `WouldBlock` on a send
/// is a full send buffer.
pub(super) fn from_udp_error(e: &io::Error) -> Failure {
    match e.raw_os_error() {
        Some(libc::ECONNREFUSED) => Failure::PortUnreachable,
        _ if e.kind() == io::ErrorKind::WouldBlock => Failure::SendBufferFull,
        _ => Failure::from_io(e),
    }
}

/// One datagram received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Datagram {
    /// Bytes in the buffer.
    pub kept: usize,
    /// The datagram's real length: more than `kept` when it did not fit.
    pub len: usize,
}

/// Takes one datagram, `None` if there is none (`WouldBlock`, a spurious
/// wake-up). `recv` cuts a datagram longer than the buffer and says
/// nothing; with `MSG_TRUNC` Linux returns its real length instead, so a
/// cut is seen.
pub(super) fn receive(socket: &UdpSocket, buf: &mut [u8]) -> io::Result<Option<Datagram>> {
    loop {
        match rustix::net::recv(socket, &mut *buf, RecvFlags::TRUNC) {
            Ok((kept, len)) => return Ok(Some(Datagram { kept, len })),
            Err(Errno::INTR) => continue,
            Err(Errno::WOULDBLOCK) => return Ok(None),
            Err(e) => return Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    /// Receives on `socket` once a datagram or an error is there (epoll
    /// says so), within a deadline.
    fn wait_receive(socket: &mut UdpSocket, buf: &mut [u8]) -> io::Result<Datagram> {
        let mut poll = mio::Poll::new().unwrap();
        let token = mio::Token(0);
        poll.registry()
            .register(socket, token, mio::Interest::READABLE)
            .unwrap();
        let mut events = mio::Events::with_capacity(4);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(d) = receive(socket, buf)? {
                return Ok(d);
            }
            assert!(Instant::now() < deadline, "nothing arrived");
            crate::sys::poll_until(&mut poll, &mut events, Some(deadline), Instant::now()).unwrap();
        }
    }

    #[test]
    fn each_socket_has_its_own_port_and_a_datagram_too_long_is_noticed() {
        let server = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let target = server.local_addr().unwrap();
        let (mut a, a_end) = open(target, None).unwrap();
        let (_b, b_end) = open(target, None).unwrap();
        assert_ne!(a_end.port(), b_end.port());
        assert_eq!(
            a_end.ip(),
            target.ip(),
            "connect chose the loopback address"
        );
        assert_eq!(send(&a, b"hello").unwrap(), 5);
        let mut got = [0u8; 16];
        let (n, from) = server.recv_from(&mut got).unwrap();
        assert_eq!((&got[..n], from), (&b"hello"[..], a_end));
        server.send_to(&[b'x'; 3000], a_end).unwrap();
        let mut buf = [0u8; 100];
        let d = wait_receive(&mut a, &mut buf).unwrap();
        assert_eq!(
            d,
            Datagram {
                kept: 100,
                len: 3000
            }
        );
    }

    #[test]
    fn nothing_listening_is_port_unreachable() {
        let closed = std::net::UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let (mut socket, _) = open(closed, None).unwrap();
        send(&socket, b"anyone?").unwrap();
        let mut buf = [0u8; 16];
        let err = wait_receive(&mut socket, &mut buf).unwrap_err();
        assert_eq!(from_udp_error(&err), Failure::PortUnreachable);
    }

    #[test]
    fn a_short_payload_is_padded_to_the_longest_answer_and_a_long_one_is_not() {
        let short = padded(b"Test payload.");
        assert_eq!(short.len(), LONGEST_ANSWER);
        assert!(short.starts_with(b"Test payload.\0"));
        assert!(short[13..].iter().all(|&b| b == 0));
        assert!(!crate::udp::looks_like_an_answer(&short));
        let long = vec![b'x'; LONGEST_ANSWER + 1];
        assert_eq!(padded(&long), long);
        assert_eq!(padded(b"").len(), LONGEST_ANSWER);
    }

    #[test]
    fn a_full_send_buffer_is_a_failure_not_a_wait() {
        let full = io::Error::from(io::ErrorKind::WouldBlock);
        assert_eq!(from_udp_error(&full), Failure::SendBufferFull);
    }
}
