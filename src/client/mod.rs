//! `fivetuple connect`: the client's side of the story.
//!
//! A client never chooses its own port. When it connects, the kernel picks
//! an unused ephemeral port (from `ip_local_port_range`) for its end, and
//! that port is what keeps this connection apart from every other one
//! reaching the same server port. This command opens sockets, sends a
//! payload, holds them, and prints each one's own 5-tuple, so the choice is
//! there to see.
//!
//! It speaks like the story's client, in three modes ([`Mode`]):
//!
//! - **tcp**: connect, send the payload, hold the connection open;
//! - **http**: connect and ask `GET /_/whoami`, so the server says how *it*
//!   sees the connection (`tcp A <- B, token N`), beside the client's view;
//! - **udp**: from each of `-n` sockets (each bound to port 0, so each gets
//!   its own ephemeral port, and connected, so that "nothing listens there"
//!   comes back as `ECONNREFUSED`), send the payload as one datagram and
//!   wait for the answer of `fivetuple serve --udp`: `udp A <- B, N bytes`.
//!   Same port number as TCP, different protocol: a different socket.
//!
//! An answer that is not fivetuple's is reported as what it is, never
//! shown as the server's view.
//!
//! The pieces:
//! - [`plan`]: the options checked and resolved before any socket opens;
//! - `event_loop`: one thread, one `Poll`, a slab of probes (one per
//!   socket), deadlines in the server's timer heap, bounded turns;
//! - `stream` and `datagram`: the socket calls of TCP and of UDP;
//! - [`answer`]: recognising what the server says it saw;
//! - [`failure`]: why a socket failed, in kinds a user can act on;
//! - [`report`]: the outcomes, and the words for them.
//!
//! The library prints nothing: [`run`] returns a [`Report`], and the binary
//! writes it as text or JSON. A live progress line is the binary's too,
//! through an [`Observer`].

pub mod answer;
mod datagram;
mod event_loop;
pub mod failure;
pub mod plan;
pub mod report;
mod stream;

use std::fs;
use std::time::Duration;

use crate::error::Result;

pub use failure::Failure;
pub use plan::{unescape, ConnectOptions, Mode};
pub use report::{duration_text, summarize, Outcome, Report, TextStyle, Totals};

/// How a run is going, for a progress line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Underway {
    /// Sockets asked for (`-n`).
    pub total: usize,
    /// Connected (TCP) or answered (UDP), and still open.
    pub up: usize,
    /// What `up` counts: "connected" or "answered".
    pub what: &'static str,
    pub failed: usize,
    /// Once all are up: how much of the hold is left.
    pub hold_left: Option<Duration>,
}

/// Told how a run is going, between turns of the loop. The binary's live
/// line on a terminal is one; `()` is the observer that watches nothing.
pub trait Observer {
    /// How often to be told, if at all; the loop wakes up for it.
    fn interval(&self) -> Option<Duration>;
    /// The run so far.
    fn update(&mut self, now: &Underway);
    /// The run is over (before the report is printed).
    fn finish(&mut self);
}

impl Observer for () {
    fn interval(&self) -> Option<Duration> {
        None
    }
    fn update(&mut self, _: &Underway) {}
    fn finish(&mut self) {}
}

/// Runs `fivetuple connect`: opens the sockets, exchanges, holds, and
/// returns what became of each.
pub fn run(opts: &ConnectOptions, observer: &mut dyn Observer) -> Result<Report> {
    let plan = plan::Plan::new(opts)?;
    let outcomes = event_loop::Client::new(&plan, observer)?.run()?;
    let out_of_ports = outcomes.iter().any(|o| o.error == Some(Failure::NoPorts));
    Ok(Report {
        mode: plan.mode,
        target: plan.target_text.clone(),
        first_target: plan.targets[0],
        sources: plan.sources.clone(),
        outcomes,
        port_range: out_of_ports.then(ephemeral_port_range).flatten(),
    })
}

/// The kernel's range of ephemeral ports (`32768 60999` on most machines).
fn ephemeral_port_range() -> Option<(u32, u32)> {
    let text = fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok()?;
    let mut it = text
        .split_whitespace()
        .filter_map(|v| v.parse::<u32>().ok());
    Some((it.next()?, it.next()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;

    fn options(target: String, mode: Mode, count: usize) -> ConnectOptions {
        ConnectOptions {
            target,
            mode,
            payload: b"Test payload.".to_vec(),
            count,
            sources: Vec::new(),
            hold: Duration::ZERO,
            timeout: Some(Duration::from_secs(5)),
            concurrency: 256,
        }
    }

    /// A port nothing listens on: bound, then released.
    fn closed_port() -> SocketAddr {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
    }

    fn run_plan(plan: &plan::Plan) -> Vec<Outcome> {
        event_loop::Client::new(plan, &mut ())
            .unwrap()
            .run()
            .unwrap()
    }

    fn plan_for(targets: Vec<SocketAddr>, mode: Mode, count: usize) -> plan::Plan {
        let mut plan = plan::Plan::new(&options(targets[0].to_string(), mode, count)).unwrap();
        plan.targets = targets;
        plan
    }

    #[test]
    fn a_refused_address_of_a_name_gives_way_to_the_next() {
        // Like `localhost` as ::1 then 127.0.0.1, with the server on 127.0.0.1 only.
        let server = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let listening = server.local_addr().unwrap();
        let outcomes = run_plan(&plan_for(vec![closed_port(), listening], Mode::Tcp, 5));
        assert_eq!(outcomes.len(), 5, "the refused attempt is not counted");
        for o in &outcomes {
            assert_eq!(o.remote, listening);
            assert!(o.error.is_none(), "{o:?}");
        }
    }

    #[test]
    fn when_every_address_refuses_each_connection_says_so() {
        let last = closed_port();
        let outcomes = run_plan(&plan_for(vec![closed_port(), last], Mode::Tcp, 3));
        assert_eq!(outcomes.len(), 3);
        for o in &outcomes {
            assert_eq!(o.remote, last);
            assert_eq!(o.error, Some(Failure::Refused));
        }
    }

    #[test]
    fn an_unanswered_datagram_times_out_in_time() {
        // A UDP socket that reads nothing and answers nothing.
        let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut opts = options(silent.local_addr().unwrap().to_string(), Mode::Udp, 3);
        opts.timeout = Some(Duration::from_millis(200));
        let started = std::time::Instant::now();
        let report = run(&opts, &mut ()).unwrap();
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(report.outcomes.len(), 3);
        for o in &report.outcomes {
            assert_eq!(o.error, Some(Failure::Unanswered));
            // 13 bytes of payload, padded to the longest answer.
            assert_eq!(o.sent, crate::udp::LONGEST_ANSWER as u64);
            assert_eq!(o.padding, o.sent - 13);
            assert!(
                o.local.is_some(),
                "a UDP socket has its end before any answer"
            );
        }
    }

    #[test]
    fn a_refused_udp_address_gives_way_to_the_next() {
        let closed = std::net::UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut plan = plan_for(vec![closed, silent.local_addr().unwrap()], Mode::Udp, 2);
        plan.timeout = Some(Duration::from_millis(100));
        let outcomes = run_plan(&plan);
        assert_eq!(outcomes.len(), 2);
        for o in &outcomes {
            assert_eq!(o.remote, silent.local_addr().unwrap());
            assert_eq!(o.error, Some(Failure::Unanswered));
        }
    }
}
