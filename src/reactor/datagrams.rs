//! The UDP socket as one more source of the loop (`serve --udp`).
//!
//! UDP has no connections to accept: one socket receives every client's
//! datagrams, and the kernel tells the clients apart only by the address
//! each datagram came from (see [`crate::udp`]). For the loop it is one
//! token with its own readiness and its own tick: a turn reads at most a
//! budget of datagrams and, if the socket may hold more, takes the ready
//! list like a connection does; once a second the flows that went quiet
//! are forgotten.

use std::io;
use std::time::{Duration, Instant};

use mio::{Interest, Registry, Token};

use crate::udp::{Drained, Udp, UdpStats};

/// How often flows that went quiet are looked for and forgotten.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// The UDP socket and what the loop must remember about it.
#[derive(Debug)]
pub struct Datagrams {
    udp: Udp,
    /// The socket may hold datagrams no event will announce (the last
    /// turn's budget ran out): read more next turn.
    ready: bool,
    /// When idle flows were last forgotten.
    swept: Instant,
}

impl Datagrams {
    /// Registers the socket in the loop's `Poll` under `token`.
    pub fn register(mut udp: Udp, registry: &Registry, token: Token) -> io::Result<Datagrams> {
        registry.register(udp.socket_mut(), token, Interest::READABLE)?;
        Ok(Datagrams {
            udp,
            ready: false,
            swept: Instant::now(),
        })
    }

    /// Reads and answers the datagrams waiting, at most a turn's budget
    /// (see [`Udp::on_readable`]); the rest waits on the ready list.
    /// Returns the socket's counters, for the metrics.
    pub fn on_readable(&mut self, buf: &mut [u8], now: Instant) -> UdpStats {
        self.ready = self.udp.on_readable(buf, now) == Drained::Budget;
        self.udp.stats()
    }

    /// Whether it has work that no event will announce.
    pub fn has_work(&self) -> bool {
        self.ready
    }

    /// The end of a turn: once a second, forget the flows that went quiet.
    /// Returns the counters when that changed them.
    pub fn tick(&mut self, now: Instant) -> Option<UdpStats> {
        if now.saturating_duration_since(self.swept) < SWEEP_EVERY {
            return None;
        }
        self.udp.expire(now);
        self.swept = now;
        Some(self.udp.stats())
    }

    /// The socket, for the connection table.
    pub fn udp(&self) -> &Udp {
        &self.udp
    }

    /// Takes the socket out of the loop (the server is stopping); it
    /// closes when dropped.
    pub fn deregister(mut self, registry: &Registry) {
        let _ = registry.deregister(self.udp.socket_mut());
    }
}
