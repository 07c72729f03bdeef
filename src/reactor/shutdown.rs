//! Stopping well: the signals the server obeys, and the grace it gives the
//! connections that are in the middle of something.
//!
//! A signal arrives as a readable event on a pipe in the same `Poll` as the
//! sockets (see [`crate::sys::poll_with_signals`]), so it is handled
//! between two batches of work, never in the middle of one. SIGINT or
//! SIGTERM begins a shutdown: the reactor stops accepting, closes the
//! connections that owe nothing, and lets the others finish the request
//! they are in, for at most the grace (`--shutdown-grace`); then it closes
//! what is left. A second stop signal closes everything at once. SIGUSR1
//! asks for the connection table in the log.
//!
//! A restart ends this process the same way, without a signal of its own:
//! when the new copy started by SIGHUP says it is ready, the restart
//! thread (see [`crate::restart`]) tells each reactor through its
//! [`Takeover`] line, which wakes the loop under the signal pipe's token.
//! The reactor then stops accepting and finishes its connections within
//! the same grace ([`Stop::HandedOver`]); the new copy accepts from the
//! same listening socket meanwhile.
//!
//! [`Shutdown`] is the whole of that as a small state of its own, as
//! mini-redis gives shutdown its own type: the loop asks it for its alarm
//! (the end of the grace) and whether the grace is over, and tells it what
//! the signal pipe said.

use std::time::{Duration, Instant};

use mio::Token;
use signal_hook::consts::{SIGINT, SIGTERM, SIGUSR1};
use signal_hook_mio::v1_0::Signals;

use crate::error::{Error, Result};
use crate::restart::Takeover;
use crate::sys;

/// What the signals that arrived ask the reactor to do.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Orders {
    /// SIGUSR1: write the connection table to the log.
    pub log_table: bool,
    /// SIGINT or SIGTERM.
    pub stop: Option<Stop>,
}

/// How to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// The first stop signal (its number): no more accepts; idle
    /// connections close, busy ones finish within the grace.
    Gracefully(i32),
    /// A second one: close everything now.
    Now,
    /// A new copy of the server (its pid) took over the listening sockets
    /// (SIGHUP): stop as for the first stop signal.
    HandedOver(u32),
}

/// The signal pipe and where the server is in stopping.
pub struct Shutdown {
    signals: Signals,
    grace: Duration,
    /// When the shutdown began; connections get `grace` from here.
    since: Option<Instant>,
    /// The line through which the restart thread says a new copy took over.
    takeover: Takeover,
}

impl Shutdown {
    /// A new `Poll` with the pipe for SIGINT, SIGTERM and SIGUSR1 in it under `token`.
    pub fn install(token: Token, grace: Duration) -> Result<(mio::Poll, Shutdown)> {
        let (poll, signals) = sys::poll_with_signals(&[SIGINT, SIGTERM, SIGUSR1], token)?;
        let takeover = Takeover::new(poll.registry(), token)
            .map_err(|e| Error::io("creating the restart's waker", e))?;
        let shutdown = Shutdown {
            signals,
            grace,
            since: None,
            takeover,
        };
        Ok((poll, shutdown))
    }

    /// Reads the signal pipe: what the signals that came ask for.
    pub fn on_signals(&mut self, now: Instant) -> Orders {
        let mut orders = Orders::default();
        for signal in self.signals.pending() {
            if signal == SIGUSR1 {
                orders.log_table = true;
            } else if self.since.is_some() {
                orders.stop = Some(Stop::Now);
            } else {
                orders.stop = Some(Stop::Gracefully(signal));
                self.since = Some(now);
            }
        }
        if let (Some(pid), None) = (self.takeover.successor(), self.since) {
            orders.stop = Some(Stop::HandedOver(pid));
            self.since = Some(now);
        }
        orders
    }

    /// The line the restart thread uses to say a new copy took over.
    pub fn takeover(&self) -> Takeover {
        self.takeover.clone()
    }

    /// Whether the server is stopping: no new connections, and answers say
    /// `Connection: close`.
    pub fn begun(&self) -> bool {
        self.since.is_some()
    }

    /// The grace.
    pub fn grace(&self) -> Duration {
        self.grace
    }

    /// When the loop must wake for the end of the grace, while stopping.
    pub fn alarm(&self) -> Option<Instant> {
        self.since.map(|since| since + self.grace)
    }

    /// The grace has run out: whatever is still open closes now.
    pub fn grace_over(&self, now: Instant) -> bool {
        self.since
            .is_some_and(|since| now.saturating_duration_since(since) >= self.grace)
    }
}
