//! What the UDP socket has done (`serve --udp`), as the table and the
//! metrics show it: datagrams and bytes each way, and the datagrams left
//! unanswered, by reason ([`Refusal`]).
//!
//! These are plain counts, part of the table's snapshot like its rows, so
//! they live with the table, which anything may read. The socket that
//! counts them, and whose rules the reasons name, is `crate::udp`: it
//! builds on the table (its flows become the table's rows), and never the
//! other way round.

use serde::ser::SerializeMap;
use serde::Serialize;

/// Why a datagram got no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// From port 0, which no socket sends from: the source is forged.
    PortZero,
    /// From the socket's own port number: from itself (with a wildcard
    /// bind every address of the machine is its own), or from a twin
    /// server on the same port elsewhere, the pair that loops.
    OwnPort,
    /// From a port where a service that answers anything lives.
    ServicePort,
    /// From a broadcast or multicast address (or none at all): an answer
    /// would reach many hosts, or this one.
    NotUnicast,
    /// One of fivetuple's own answers: a loop between two servers, or a
    /// forged attempt at one.
    OwnAnswer,
    /// Shorter than its answer would be: answering would amplify.
    TooShort,
    /// The source used up its credit ([`crate::udp::SOURCE_RATE`]).
    SourceRate,
    /// The server used up its credit in all ([`crate::udp::TOTAL_RATE`]).
    TotalRate,
}

impl Refusal {
    pub const ALL: [Refusal; 8] = [
        Refusal::PortZero,
        Refusal::OwnPort,
        Refusal::ServicePort,
        Refusal::NotUnicast,
        Refusal::OwnAnswer,
        Refusal::TooShort,
        Refusal::SourceRate,
        Refusal::TotalRate,
    ];

    /// The name in `/_/metrics` and in the table's JSON.
    pub fn label(self) -> &'static str {
        match self {
            Refusal::PortZero => "port_zero",
            Refusal::OwnPort => "own_port",
            Refusal::ServicePort => "service_port",
            Refusal::NotUnicast => "not_unicast",
            Refusal::OwnAnswer => "own_answer",
            Refusal::TooShort => "too_short",
            Refusal::SourceRate => "source_rate",
            Refusal::TotalRate => "total_rate",
        }
    }

    /// A few words for the text table.
    pub fn describe(self) -> &'static str {
        match self {
            Refusal::PortZero => "from port 0",
            Refusal::OwnPort => "from our own port",
            Refusal::ServicePort => "from a service port",
            Refusal::NotUnicast => "from a broadcast or multicast address",
            Refusal::OwnAnswer => "looked like our answer",
            Refusal::TooShort => "shorter than the answer",
            Refusal::SourceRate => "over the source's rate",
            Refusal::TotalRate => "over the total rate",
        }
    }
}

/// Datagrams left unanswered, by [`Refusal`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Refused([u64; Refusal::ALL.len()]);

impl Refused {
    pub fn get(&self, why: Refusal) -> u64 {
        self.0[why as usize]
    }

    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    pub fn count(&mut self, why: Refusal) {
        self.0[why as usize] += 1;
    }
}

/// `{"port_zero": 0, "own_port": 1, ...}`: the reasons by name.
impl Serialize for Refused {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(Refusal::ALL.len()))?;
        for why in Refusal::ALL {
            map.serialize_entry(why.label(), &self.get(why))?;
        }
        map.end()
    }
}

/// What the UDP socket has done, for the table, the metrics and the log.
/// Every datagram read is answered, refused, dropped or failed:
/// `datagrams_in = datagrams_out + refused + dropped + failed`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct UdpStats {
    pub datagrams_in: u64,
    pub datagrams_out: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Datagrams left unanswered on purpose, by reason.
    pub refused: Refused,
    /// Answers dropped because the socket's send buffer was full: a UDP
    /// server never waits for room.
    pub dropped: u64,
    /// Answers the kernel would not send (no route, a firewall's rule).
    pub failed: u64,
    /// Peers remembered now.
    pub peers: usize,
    /// Flows forgotten to stay within `crate::udp::MAX_FLOWS`.
    pub evicted: u64,
}

impl UdpStats {
    /// Adds another worker's counts (only one worker has the UDP socket,
    /// but figures are added without knowing which).
    pub fn add(&mut self, other: &UdpStats) {
        self.datagrams_in += other.datagrams_in;
        self.datagrams_out += other.datagrams_out;
        self.bytes_in += other.bytes_in;
        self.bytes_out += other.bytes_out;
        for (mine, theirs) in self.refused.0.iter_mut().zip(other.refused.0) {
            *mine += theirs;
        }
        self.dropped += other.dropped;
        self.failed += other.failed;
        self.peers += other.peers;
        self.evicted += other.evicted;
    }
}
