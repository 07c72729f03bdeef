//! A TCP probe's socket calls: connecting without blocking, writing the
//! payload, reading the reply.
//!
//! Connecting without blocking takes three steps: `connect` returns at once
//! (`EINPROGRESS`); the socket becomes writable when the handshake is over;
//! then `take_error` tells success from failure, and `peer_addr` confirms
//! the connection (a spurious wake-up says `ENOTCONN`). Only then does
//! `local_addr` name the ephemeral port the kernel chose for this end.

use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr};

use mio::net::TcpStream;

use super::failure::Failure;
use super::plan::set_bind_address_no_port;

/// Reads from one connection per turn of the loop, at most (of the loop's
/// 64 KiB buffer: 1 MiB). A server that streams without pause gets this
/// much, then the other connections and the signal pipe get their turn,
/// and this one waits on the ready list: under edge triggering no event
/// would announce the bytes left unread.
pub(super) const READS_PER_TURN: usize = 16;

/// Reply bytes kept per connection (the rest is counted, not kept).
pub(super) const REPLY_LIMIT: usize = 64 * 1024;

/// A non-blocking connect from `source` (port chosen by the kernel). The
/// same errno means different things at `bind` and at `connect`, so each
/// step classifies its own.
pub(super) fn start(target: SocketAddr, source: Option<IpAddr>) -> Result<TcpStream, Failure> {
    let domain = socket2::Domain::for_address(target);
    let socket = socket2::Socket::new(domain, socket2::Type::STREAM.nonblocking().cloexec(), None)
        .map_err(|e| Failure::from_io(&e))?;
    if let Some(ip) = source {
        if ip.is_ipv4() {
            set_bind_address_no_port(&socket);
        }
        socket
            .bind(&SocketAddr::new(ip, 0).into())
            .map_err(|e| Failure::from_bind(&e))?;
    }
    match socket.connect(&target.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(Failure::from_io(&e)),
    }
    Ok(TcpStream::from_std(std::net::TcpStream::from(socket)))
}

/// After a writable event on a connecting socket: `Ok(Some(local))` when
/// connected, `Ok(None)` when not yet, `Err` when the handshake failed.
pub(super) fn connect_result(stream: &TcpStream) -> io::Result<Option<SocketAddr>> {
    if let Some(e) = stream.take_error()? {
        return Err(e);
    }
    match stream.peer_addr() {
        Ok(_) => stream.local_addr().map(Some),
        Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(None),
        Err(e) => Err(e),
    }
}

/// Writes as much of `payload[*written..]` as the socket takes, counting
/// it in `sent`. What does not fit waits for the next writable event.
pub(super) fn write_payload(
    stream: &mut TcpStream,
    payload: &[u8],
    written: &mut usize,
    sent: &mut u64,
) -> io::Result<()> {
    while *written < payload.len() {
        match stream.write(&payload[*written..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                *written += n;
                *sent += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// How a turn of reading ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Reading {
    /// Nothing more to read now (`WouldBlock`): the next bytes bring an event.
    Drained,
    /// The turn's budget ran out first: read again next turn.
    Budget,
    /// The server closed its side (`read` returned 0).
    Closed,
}

/// Reads at most [`READS_PER_TURN`] buffers, keeping the first
/// [`REPLY_LIMIT`] bytes of the reply and counting all of them.
pub(super) fn read_reply(
    stream: &mut TcpStream,
    buf: &mut [u8],
    reply: &mut Vec<u8>,
    received: &mut u64,
) -> io::Result<Reading> {
    let mut reads = 0;
    while reads < READS_PER_TURN {
        match stream.read(buf) {
            Ok(0) => return Ok(Reading::Closed),
            Ok(n) => {
                reads += 1;
                *received += n as u64;
                let room = REPLY_LIMIT.saturating_sub(reply.len());
                reply.extend_from_slice(&buf[..n.min(room)]);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Reading::Drained),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(Reading::Budget)
}
