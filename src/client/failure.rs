//! Why a socket failed, in the few kinds a user can act on.
//!
//! The kernel answers a failed `connect`, `send` or `recv` with an error
//! number; [`Failure`] sorts those numbers (and what the server said, when
//! it was not a fivetuple answer) into kinds, each with the same few words
//! for every socket that failed that way. The socket calls (`stream`,
//! `datagram`) make them, the plan reads them to decide whether the next
//! address of a name is worth a try, and the report counts them.

use std::io;

use serde::Serialize;

/// Why a connection (or a UDP exchange) failed, grouped for the summary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Failure {
    Refused,
    TimedOut,
    Reset,
    /// No ephemeral port left for this (source, destination) pair.
    NoPorts,
    /// The `--source` address is not one of this machine's (bind said
    /// `EADDRNOTAVAIL`).
    NotLocal,
    Unreachable,
    /// With `--http`: the server answered, but not as `fivetuple serve`
    /// answers `/_/whoami`; what it said instead.
    NotWhoami(String),
    /// With `--http`: the server closed the connection without an answer.
    NoAnswer,
    /// UDP: an ICMP "port unreachable" came back, which a connected UDP
    /// socket reports as `ECONNREFUSED`: nothing listens on that UDP port.
    PortUnreachable,
    /// UDP: no answer within `--timeout`. (UDP never says "no": a lost
    /// datagram and a silent server look the same.)
    Unanswered,
    /// UDP: a datagram came back, but not `udp A <- B, N bytes`; what it
    /// was instead.
    NotUdpAnswer(String),
    /// UDP: the socket's send buffer was full, so the datagram was dropped
    /// rather than waited for (the loop never blocks).
    SendBufferFull,
    Other(String),
}

impl Failure {
    /// What an error of a socket call means for the user.
    pub fn from_io(e: &io::Error) -> Failure {
        match e.raw_os_error() {
            Some(libc::ECONNREFUSED) => Failure::Refused,
            Some(libc::ETIMEDOUT) => Failure::TimedOut,
            Some(libc::ECONNRESET) | Some(libc::EPIPE) => Failure::Reset,
            Some(libc::EADDRNOTAVAIL) | Some(libc::EADDRINUSE) => Failure::NoPorts,
            Some(libc::ENETUNREACH) | Some(libc::EHOSTUNREACH) => Failure::Unreachable,
            _ => Failure::Other(e.to_string()),
        }
    }

    /// A failure of `bind`, before any packet: there `EADDRNOTAVAIL` means
    /// the address is not this machine's (at `connect` it means no free
    /// port), and `EADDRINUSE` that every port of the address is taken.
    pub fn from_bind(e: &io::Error) -> Failure {
        match e.raw_os_error() {
            Some(libc::EADDRNOTAVAIL) => Failure::NotLocal,
            _ => Failure::from_io(e),
        }
    }

    /// A few words, the same for every socket that failed this way (the
    /// summary counts sockets by them).
    pub fn describe(&self) -> String {
        match self {
            Failure::Refused => "connection refused".into(),
            Failure::TimedOut => "timed out".into(),
            Failure::Reset => "reset by the server".into(),
            Failure::NoPorts => "no free local port".into(),
            Failure::NotLocal => "source address not on this machine".into(),
            Failure::Unreachable => "unreachable".into(),
            Failure::NotWhoami(_) | Failure::NotUdpAnswer(_) => "not a fivetuple answer".into(),
            Failure::NoAnswer => "closed by the server without an answer".into(),
            Failure::PortUnreachable => "refused (nothing listens on that UDP port)".into(),
            Failure::Unanswered => "no answer in time (--timeout)".into(),
            Failure::SendBufferFull => "not sent: the send buffer was full".into(),
            Failure::Other(e) => e.clone(),
        }
    }
}
