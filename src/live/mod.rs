//! Watching the reactor: what the loop tells whoever looks.
//!
//! Three windows onto the same loop, each free when nobody looks through it:
//!
//! - [`metrics`]: counters, always kept (an increment each), written out at
//!   `/_/metrics` in the Prometheus text format;
//! - [`events`]: the event stream behind the live page (`/_/events`),
//!   which exists only while someone subscribes;
//! - [`trace`]: `serve --trace`, each turn of the loop as a block of text.
//!
//! The page itself, served at `/_/`, is one of the protocol's own pages
//! (`crate::http::pages`): it draws the connection table from
//! `/_/conns.json` and keeps it current from the event stream.
//!
//! The reactor owns one [`Live`] and calls it at a few places: a turn
//! begins ([`Live::woke`]) and ends ([`Live::end_turn`], [`Live::deliver`],
//! [`Live::finish_turn`]), a connection is accepted or closed, and around
//! serving a connection ([`Live::before`], [`Live::after`]). Each hook first
//! looks whether anyone watches; when nobody does, only the metrics'
//! increments remain.

pub mod events;
pub mod metrics;
pub mod trace;

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use slab::Slab;

use crate::connection::{CloseReason, Connection, Expiry};
use crate::http::{Progress, Subscribe};
use crate::sink::Sink;
use crate::udp::UdpStats;
use events::{Hub, Totals, MAX_SUBSCRIBERS};
use metrics::{AcceptError, Figures, Gauges, Metrics, Timeout};
use trace::{Alarm, Before, Cause, Subject, Trace};

/// The reactor's window onto itself.
#[derive(Debug)]
pub struct Live {
    pub metrics: Metrics,
    /// The event stream's subscribers; `None` while nobody subscribes.
    hub: Option<Box<Hub>>,
    totals: Totals,
    /// `None` unless `serve --trace`.
    trace: Option<Box<Trace>>,
    max_conns: usize,
    /// This reactor's worker number with `--workers N`, which the event
    /// stream's `counters` name: each worker's stream carries its own
    /// worker's events (see [`events`]).
    worker: Option<usize>,
}

impl Live {
    /// With `trace`, each turn is written to that sink (`serve --trace`).
    pub fn new(trace: Option<Sink>, max_conns: usize) -> Live {
        Live {
            metrics: Metrics::default(),
            hub: None,
            totals: Totals::default(),
            trace: trace.map(|sink| Box::new(Trace::new(sink))),
            max_conns,
            worker: None,
        }
    }

    /// This reactor is worker `index` of several.
    pub fn set_worker(&mut self, index: usize) {
        self.worker = Some(index);
    }

    /// Someone subscribes to the event stream or reads the trace.
    #[inline]
    pub fn watched(&self) -> bool {
        self.hub.is_some() || self.trace.is_some()
    }

    /// The loop woke from `epoll_wait` after `slept`, with `events` events.
    pub fn woke(&mut self, turn: u64, slept: Duration, events: usize, alarm: Option<Alarm>) {
        self.metrics.poll_events.observe(events as u64);
        if let Some(t) = &mut self.trace {
            t.woke(turn, slept, events, alarm);
        }
    }

    /// The last turn worked this long, from waking to sleeping again.
    pub fn turn_done(&mut self, worked: Duration) {
        self.metrics.turn_worked(worked);
    }

    /// The loop handles a subject for a cause: a new trace line (and a
    /// line of the `RUST_LOG=trace` log). They are only worked out if
    /// someone reads them.
    #[inline(always)]
    pub fn handling(&mut self, what: impl FnOnce() -> (Subject, Cause)) {
        if self.trace.is_some() || log::log_enabled!(log::Level::Trace) {
            let (subject, cause) = what();
            self.handling_seen(subject, cause);
        }
    }

    #[cold]
    #[inline(never)]
    fn handling_seen(&mut self, subject: Subject, cause: Cause) {
        if log::log_enabled!(log::Level::Trace) {
            log::trace!("{} {cause}", subject.to_string().trim_end());
        }
        if let Some(t) = &mut self.trace {
            t.line(subject, Some(cause));
        }
    }

    /// Something the loop did, on a line of its own in the trace (under the
    /// current one, unless that has nothing on it yet).
    pub fn note(&mut self, text: impl std::fmt::Display) {
        if let Some(t) = &mut self.trace {
            t.own_line(format_args!("{text}"));
        }
    }

    /// A connection was accepted (it is in the slab under its key).
    #[inline]
    pub fn accepted(&mut self, conn: &Connection, now: Instant) {
        if self.watched() {
            self.tell_accepted(conn, now);
        }
    }

    #[cold]
    #[inline(never)]
    fn tell_accepted(&mut self, conn: &Connection, now: Instant) {
        if let Some(hub) = &mut self.hub {
            hub.accepted(conn, now, &mut self.totals);
        }
        if let Some(t) = &mut self.trace {
            let (key, remote) = (conn.peer().token, conn.peer().remote);
            t.own_line(format_args!("accepted token {key} from {remote}"));
        }
    }

    /// A connection is being closed (it is out of the slab, not yet dropped).
    #[inline]
    pub fn closed(&mut self, key: usize, conn: &Connection, why: &CloseReason) {
        let (bytes_in, bytes_out, _) = conn.counters();
        self.metrics.count_close(why, bytes_in, bytes_out);
        if self.watched() {
            self.tell_closed(key, conn, why);
        }
    }

    #[cold]
    #[inline(never)]
    fn tell_closed(&mut self, key: usize, conn: &Connection, why: &CloseReason) {
        // The words of the reason, once, for the stream and the trace.
        let why = &why.to_string();
        if let Some(hub) = &mut self.hub {
            hub.closed(key, conn, why, &mut self.totals);
            if hub.is_empty() {
                // The last subscriber left: nothing is kept for nobody.
                self.hub = None;
            }
        }
        if let Some(t) = &mut self.trace {
            t.closed(key, conn, why);
        }
    }

    /// `accept` failed: the client gave up between its handshake and our
    /// accept, or the server ran out of descriptors or memory.
    pub fn accept_failed(&mut self, e: &io::Error) {
        let kind = AcceptError::of(e);
        self.metrics.accept_error(kind);
        if kind != AcceptError::Aborted {
            self.note(format_args!("accept failed: {e}"));
        }
    }

    /// A client was refused with a 503: the server is full (`--max-conns`).
    pub fn refused(&mut self, remote: SocketAddr) {
        self.metrics.refused += 1;
        self.note(format_args!(
            "refused {remote} with a 503: the server is full"
        ));
    }

    /// A connection began a lingering close.
    pub fn lingering(&mut self) {
        self.metrics.lingering += 1;
    }

    /// A connection's deadline passed (see [`Expiry`]).
    pub fn expired(&mut self, expiry: &Expiry) {
        self.metrics.timeout(Timeout::of(expiry));
    }

    /// A session step produced answers.
    #[inline]
    pub fn answered(&mut self, progress: &Progress) {
        self.metrics
            .answered(progress.responses, &progress.statuses);
    }

    /// The UDP socket's counters, as it reports them.
    pub fn udp_counted(&mut self, stats: UdpStats) {
        self.metrics.udp = Some(stats);
    }

    /// The reactor is about to serve `conn`; give the result to [`Live::after`].
    #[inline(always)]
    pub fn before(&mut self, conn: &Connection) -> Option<Before> {
        if !self.watched() {
            return None;
        }
        self.look_before(conn)
    }

    #[cold]
    #[inline(never)]
    fn look_before(&mut self, conn: &Connection) -> Option<Before> {
        let Some(t) = &mut self.trace else {
            return Some(Before::key_only(conn)); // the hub needs no more
        };
        let before = Before::of(conn);
        t.serving(&before);
        Some(before)
    }

    /// The reactor has served the connection `before` describes.
    #[inline(always)]
    pub fn after(&mut self, before: Option<Before>, conns: &Slab<Connection>) {
        if let Some(before) = before {
            self.look_after(before, conns);
        }
    }

    #[cold]
    #[inline(never)]
    fn look_after(&mut self, before: Before, conns: &Slab<Connection>) {
        let conn = conns.get(before.key());
        if let (Some(hub), Some(conn)) = (&mut self.hub, conn) {
            hub.touch(conn.peer().token, conn.serial());
        }
        if let Some(t) = &mut self.trace {
            t.served(&before, conn);
        }
    }

    /// For the protocol: may a connection become an event-stream
    /// subscriber? Only a hub with every slot taken and no one to give way
    /// says no (see `Hub::give_way`).
    pub fn subscribe(&self) -> Subscribe {
        match &self.hub {
            Some(hub) if hub.len() >= MAX_SUBSCRIBERS && hub.give_way().is_none() => {
                Subscribe::Full
            }
            _ => Subscribe::Yes,
        }
    }

    /// `conn` now streams events (its answer was the event stream's head):
    /// it becomes a subscriber. If every slot was taken, the subscriber
    /// that gives its slot up is returned, for the reactor to close once
    /// the newcomer's answer is out.
    #[cold]
    #[inline(never)]
    pub fn join(&mut self, conn: &Connection, now: Instant) -> Option<(usize, u64)> {
        let hub = self.hub.get_or_insert_with(|| Box::new(Hub::new(now)));
        let victim = (hub.len() >= MAX_SUBSCRIBERS)
            .then(|| hub.give_way())
            .flatten();
        hub.join(
            conn.peer().token,
            conn.serial(),
            conn.http_peer().remote.ip(),
        );
        victim
    }

    /// When the event stream's next tick is due, if anyone subscribes.
    pub fn next_tick(&self) -> Option<Instant> {
        self.hub.as_ref().map(|h| h.next_tick())
    }

    /// End of a turn, first part: this turn's events are written into one
    /// batch. Returns the subscribers to deliver it to (none if nobody
    /// subscribes: then this costs one test).
    pub fn end_turn(
        &mut self,
        conns: &Slab<Connection>,
        accepted: u64,
        served: u64,
        now: Instant,
    ) -> Vec<(usize, u64)> {
        let Some(hub) = &mut self.hub else {
            return Vec::new();
        };
        // The totals take a scan of the slab: only when the tick is due.
        let counters = (now >= hub.next_tick()).then(|| {
            let gauges = gauges(conns, accepted, served);
            events::Counters {
                open: conns.len(),
                accepted,
                served,
                bytes_in: self.metrics.closed_bytes_in + gauges.open_bytes_in,
                bytes_out: self.metrics.closed_bytes_out + gauges.open_bytes_out,
                dropped: self.totals.dropped,
                worker: self.worker,
            }
        });
        hub.end_turn(conns, counters, now, &mut self.totals);
        if let Some(t) = &mut self.trace {
            let n = hub.pending_events();
            if n > 0 {
                t.line(Subject::Events, None);
                let s = if hub.len() == 1 { "" } else { "s" };
                t.note(format_args!("{n} for {} subscriber{s}", hub.len()));
            }
        }
        hub.subscribers().collect()
    }

    /// Appends to `out` what the subscriber on `key` gets this turn (see
    /// [`Hub::deliver`]); `unsent`: its bytes the kernel has not taken yet.
    pub fn deliver(&mut self, key: usize, serial: u64, unsent: usize, out: &mut Vec<u8>) {
        if let Some(hub) = &mut self.hub {
            hub.deliver(key, unsent, out, &mut self.totals);
            hub.touch(key, serial); // its own counters moved
        }
    }

    /// End of a turn, last part: the batch is emptied and the trace printed.
    pub fn finish_turn(&mut self, open: usize) {
        if let Some(hub) = &mut self.hub {
            hub.clear_batch();
        }
        if let Some(t) = &mut self.trace {
            t.end(open);
        }
    }

    /// `/_/metrics` of a server with one reactor.
    pub fn write_metrics(
        &self,
        conns: &Slab<Connection>,
        accepted: u64,
        served: u64,
        out: &mut Vec<u8>,
    ) {
        let f = self.figures(conns, accepted, served);
        metrics::render(&f.metrics, &f.gauges, out);
    }

    /// Everything `/_/metrics` shows of this reactor, read now: what a
    /// worker posts for the others (a scan of the slab and a copy of the
    /// counters, about a kilobyte).
    pub fn figures(&self, conns: &Slab<Connection>, accepted: u64, served: u64) -> Figures {
        Figures {
            metrics: self.metrics.clone(),
            gauges: Gauges {
                max_conns: self.max_conns,
                subscribers: self.hub.as_ref().map_or(0, |h| h.len()),
                events: self.totals.events,
                events_dropped: self.totals.dropped,
                resyncs: self.totals.resyncs,
                ..gauges(conns, accepted, served)
            },
        }
    }
}

/// The figures read from the slab when asked: a scan of the open
/// connections, done per scrape or per tick, never per request.
fn gauges(conns: &Slab<Connection>, accepted: u64, served: u64) -> Gauges {
    let (open_bytes_in, open_bytes_out) = conns.iter().fold((0, 0), |(i, o), (_, c)| {
        let (bytes_in, bytes_out, _) = c.counters();
        (i + bytes_in, o + bytes_out)
    });
    Gauges {
        open: conns.len(),
        accepted,
        served,
        open_bytes_in,
        open_bytes_out,
        ..Gauges::default()
    }
}
