//! What the `st` column of `/proc/net/{tcp,udp}` means.
//!
//! TCP sockets move through the states of RFC 793 (LISTEN, ESTABLISHED,
//! TIME_WAIT...), numbered by the kernel in `include/net/tcp_states.h`. UDP
//! has no states of its own, and the kernel reuses two of TCP's numbers for
//! it: 07 (CLOSE) for a socket with no fixed peer, which ss calls UNCONN
//! (netstat leaves its State column blank; we use ss's word, so that the
//! column always says something), and 01 (ESTABLISHED) for a socket that
//! has called `connect`, so that it talks to one peer only and hears ICMP
//! errors from it.

use std::fmt;

use serde::{Serialize, Serializer};

use crate::error::{Error, Result};

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
    pub(crate) const ALL: [TcpState; 12] = [
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

/// The state of any socket in the kernel's tables, by its netstat name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum State {
    /// A TCP socket.
    Tcp(TcpState),
    /// A UDP socket with no fixed peer (st 07): it takes datagrams from
    /// anyone. ss calls it UNCONN; netstat leaves the State column blank.
    Unconnected,
    /// A UDP socket that called `connect` (st 01): it sends to and hears
    /// from one peer only. netstat shows it ESTABLISHED, though no
    /// handshake ever happened.
    Connected,
}

/// The name `Unconnected` goes by.
const UNCONN: &str = "UNCONN";

impl State {
    /// From the `st` column of a UDP table; `None` for codes UDP never uses.
    pub fn udp_from_code(code: u8) -> Option<State> {
        match TcpState::from_code(code)? {
            TcpState::Established => Some(State::Connected),
            TcpState::Close => Some(State::Unconnected),
            _ => None,
        }
    }

    /// netstat's name (ss's `UNCONN` for an unconnected UDP socket).
    pub fn name(self) -> &'static str {
        match self {
            State::Tcp(state) => state.name(),
            State::Unconnected => UNCONN,
            State::Connected => TcpState::Established.name(),
        }
    }

    /// A socket that waits for peers rather than talking to one: a TCP
    /// listener, or an unconnected UDP socket (what `netstat -l` and
    /// `ss -l` list).
    pub fn is_listening(self) -> bool {
        matches!(self, State::Tcp(TcpState::Listen) | State::Unconnected)
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

impl Serialize for State {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

/// So that `socket.state == TcpState::Established` reads as it should.
impl PartialEq<TcpState> for State {
    fn eq(&self, other: &TcpState) -> bool {
        *self == State::Tcp(*other)
    }
}

/// `--state NAME`: the rows whose State column reads NAME. ESTABLISHED
/// matches connected UDP sockets too, as the column shows them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StateFilter(&'static str);

impl StateFilter {
    /// netstat's and ss's names, any case; `UNCONN` for UDP.
    pub fn parse(name: &str) -> Result<StateFilter> {
        if name.trim().eq_ignore_ascii_case(UNCONN) {
            return Ok(StateFilter(UNCONN));
        }
        match TcpState::parse(name) {
            Some(state) => Ok(StateFilter(state.name())),
            None => Err(Error::usage(format!(
                "unknown TCP state {name:?}; one of: {}, or {UNCONN} for UDP sockets",
                TcpState::ALL.map(TcpState::name).join(", ")
            ))),
        }
    }

    pub fn matches(self, state: State) -> bool {
        state.name() == self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn udp_borrows_two_tcp_codes() {
        assert_eq!(State::udp_from_code(0x07), Some(State::Unconnected));
        assert_eq!(State::udp_from_code(0x01), Some(State::Connected));
        assert_eq!(State::udp_from_code(0x0A), None);
        assert_eq!(State::Unconnected.name(), "UNCONN");
        assert_eq!(State::Connected.name(), "ESTABLISHED");
        assert!(State::Unconnected.is_listening());
        assert!(!State::Connected.is_listening());
        assert!(State::Tcp(TcpState::Established) == TcpState::Established);
        assert!(State::Connected != TcpState::Established);
    }

    #[test]
    fn state_filters_go_by_the_name_shown() {
        let established = StateFilter::parse("estab").unwrap();
        assert!(established.matches(State::Tcp(TcpState::Established)));
        assert!(established.matches(State::Connected));
        assert!(!established.matches(State::Unconnected));
        assert!(StateFilter::parse("unconn")
            .unwrap()
            .matches(State::Unconnected));
        let err = StateFilter::parse("sideways").unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains("unknown TCP state"));
        assert!(err.to_string().contains("UNCONN"));
    }
}
