//! The event stream behind the live page: `/_/events`.
//!
//! A subscriber is an ordinary connection whose answer never ends. After
//! the head (`Content-Type: text/event-stream`, written by the route), the
//! reactor keeps writing Server-Sent Events to it as connections come and
//! go: the same thread, the same loop, one more long-lived connection among
//! short-lived ones. Each event is a name and one line of JSON:
//!
//! | event | when | data |
//! |---|---|---|
//! | `hello` | first, from the route | the subscriber's own token and addresses |
//! | `accept` | a connection was accepted | its row, as in `/_/conns.json` |
//! | `state` | a connection's TCP state or phase changed | its row |
//! | `close` | a connection was closed | its token, why, its last counters |
//! | `counters` | every [`TICK`] | totals, and the counters of rows that moved |
//! | `resync` | events were dropped for this subscriber | how many: fetch a fresh snapshot |
//!
//! Three rules keep it cheap and bounded:
//!
//! - **Nothing when nobody watches.** The [`Hub`] exists only while someone
//!   subscribes; every hook the reactor calls looks for it first.
//! - **Written once per turn.** A turn's events are encoded once into one
//!   batch, and each subscriber gets a copy in one `write`, the way
//!   `/_/conns` shares one rendering among its requesters.
//! - **A slow reader is told, not buffered for.** A subscriber's unsent
//!   bytes are bounded ([`QUEUE_LIMIT`]). Past that, its events are dropped
//!   and counted, and once it has caught up it gets a `resync` event: fetch
//!   a fresh snapshot (`/_/conns.json`) and carry on from there. The events
//!   are written so that replaying them over a newer snapshot is harmless
//!   (each `accept` and `state` carries the whole row), which is what makes
//!   "drop and re-sync" correct.
//!
//! With several workers (`serve --workers N`), each worker has its own hub,
//! and a stream carries the events of the worker that accepted the
//! subscriber's connection, no other's. A connection lives and dies on one
//! worker, so one worker's stream is one consistent table as it changes;
//! carrying every worker's events would put a channel between threads on
//! every accept and close, the very sharing the workers exist to avoid.
//! The stream says whose it is: `hello` and every `counters` carry
//! `"worker": i` (and `counters`' totals are that worker's), and the live
//! page fetches that worker's table (`/_/conns.json?worker=i`) to sync
//! from. `/_/conns?workers` and `/_/metrics` cover every worker.

use std::time::{Duration, Instant};

use slab::Slab;

use crate::connection::Connection;
use crate::procnet::TcpState;
use crate::table::{ConnRow, Phase};

/// Most subscribers at once. Each costs a copy of every turn's events and
/// one `write` per turn: 32 watchers of one teaching server is plenty, and
/// keeps that cost small. A new viewer when all are taken does not get a
/// 503: the longest-held slot of the address holding the most gives way
/// (see [`Hub::give_way`]), so a few clients that subscribe and never
/// read cannot keep everyone else out.
pub const MAX_SUBSCRIBERS: usize = 32;

/// Unsent bytes a subscriber may have before its events are dropped: about
/// a thousand events, several seconds of a busy server. A reader further
/// behind than that is better served by a fresh snapshot than by a backlog.
pub const QUEUE_LIMIT: usize = 256 * 1024;

/// A turn's batch of events stops growing here. A storm of closes (a
/// benchmark ending, a shutdown) would otherwise format thousands of events
/// in one turn; past this, the rest of the turn is summed up as a `resync`.
pub const BATCH_LIMIT: usize = 64 * 1024;

/// How often the `counters` event goes out: often enough for a rate to look
/// live, rarely enough to cost nothing.
pub const TICK: Duration = Duration::from_secs(1);

/// Rows whose counters a `counters` event carries, at most; the others wait
/// for the next tick. Bounds the event to about 20 KB however busy the server.
pub const ROWS_PER_TICK: usize = 500;

/// Totals that outlive the hub (the metrics keep counting after the last
/// subscriber leaves).
#[derive(Debug, Clone, Copy, Default)]
pub struct Totals {
    /// Events published (formatted into a batch).
    pub events: u64,
    /// Events a subscriber missed, summed over subscribers.
    pub dropped: u64,
    /// `resync` events sent.
    pub resyncs: u64,
}

/// One subscriber: a connection in the slab, known by key and serial.
#[derive(Debug)]
struct Subscriber {
    key: usize,
    serial: u64,
    /// The client's address: slots are taken back from whoever holds most.
    ip: std::net::IpAddr,
    /// Where its events begin in this turn's batch (it joined mid-turn).
    from: usize,
    /// Events dropped since it was last told to re-sync.
    missed: u64,
}

/// What the subscribers were last told about one connection.
#[derive(Debug, Clone, Copy)]
struct Told {
    serial: u64,
    state: TcpState,
    phase: Phase,
    counters: (u64, u64, u64),
    /// Waiting in `dirty` for a tick.
    dirty: bool,
    /// In `touched` already this turn.
    touched: bool,
}

/// The subscribers and this turn's events.
#[derive(Debug)]
pub struct Hub {
    subscribers: Vec<Subscriber>,
    /// This turn's events, encoded once for every subscriber.
    batch: Vec<u8>,
    /// Events in `batch`.
    batch_events: u64,
    /// Events of this turn left out because the batch was full.
    lost: u64,
    /// Per slab key, what the subscribers were told last.
    told: Vec<Option<Told>>,
    /// Connections served this turn: their state may have changed.
    touched: Vec<(usize, u64)>,
    /// Connections whose counters moved, for the next ticks.
    dirty: Vec<(usize, u64)>,
    next_tick: Instant,
}

impl Hub {
    pub fn new(now: Instant) -> Hub {
        Hub {
            subscribers: Vec::new(),
            batch: Vec::new(),
            batch_events: 0,
            lost: 0,
            told: Vec::new(),
            touched: Vec::new(),
            dirty: Vec::new(),
            next_tick: now + TICK,
        }
    }

    pub fn len(&self) -> usize {
        self.subscribers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.subscribers.is_empty()
    }

    /// Events of this turn: in the batch, or left out of it.
    pub fn pending_events(&self) -> u64 {
        self.batch_events + self.lost
    }

    pub fn next_tick(&self) -> Instant {
        self.next_tick
    }

    /// A connection becomes a subscriber; it gets the events of this turn
    /// from now on.
    pub fn join(&mut self, key: usize, serial: u64, ip: std::net::IpAddr) {
        self.subscribers.push(Subscriber {
            key,
            serial,
            ip,
            from: self.batch.len(),
            missed: 0,
        });
    }

    /// The subscriber that gives its slot to a new viewer when all are
    /// taken: of the address that holds the most slots, the one that has
    /// held its slot longest. The server cannot see whether a subscriber
    /// reads (the kernels' buffers take a quiet stream's events for many
    /// minutes), so it does not guess: a client that opens many streams
    /// loses them first, and among equals the oldest goes, which a real
    /// viewer survives (the page's EventSource reconnects in 2 s) and a
    /// client that holds slots without reading does not.
    pub fn give_way(&self) -> Option<(usize, u64)> {
        let held_by = |ip| self.subscribers.iter().filter(|s| s.ip == ip).count();
        let most = self.subscribers.iter().map(|s| held_by(s.ip)).max()?;
        // `subscribers` is in the order they joined: the first is the oldest.
        self.subscribers
            .iter()
            .find(|s| held_by(s.ip) == most)
            .map(|s| (s.key, s.serial))
    }

    /// The subscribers, for the reactor to deliver to.
    pub fn subscribers(&self) -> impl Iterator<Item = (usize, u64)> + '_ {
        self.subscribers.iter().map(|s| (s.key, s.serial))
    }

    /// A connection was accepted.
    pub fn accepted(&mut self, conn: &Connection, now: Instant, totals: &mut Totals) {
        let row = conn.row(now, false);
        self.remember(conn, &row);
        self.event("accept", totals, |out| json(out, &row));
    }

    /// A connection was closed (a subscriber among them leaves).
    pub fn closed(&mut self, key: usize, conn: &Connection, why: &str, totals: &mut Totals) {
        let serial = conn.serial();
        self.subscribers
            .retain(|s| !(s.key == key && s.serial == serial));
        if let Some(told) = self.told.get_mut(key) {
            *told = None;
        }
        let (bytes_in, bytes_out, requests) = conn.counters();
        self.event("close", totals, |out| {
            let close = Close {
                token: key,
                why,
                bytes_in,
                bytes_out,
                requests,
            };
            json(out, &close);
        });
    }

    /// A connection was served this turn; its row is compared with what the
    /// subscribers were told at the end of the turn.
    pub fn touch(&mut self, key: usize, serial: u64) {
        if let Some(Some(told)) = self.told.get_mut(key) {
            if told.serial == serial {
                if told.touched {
                    return; // once per turn is enough
                }
                told.touched = true;
            }
        }
        // One the subscribers were never told about may come twice; the
        // second finds nothing new.
        self.touched.push((key, serial));
    }

    /// End of a turn: a `state` event for every touched connection whose
    /// state or phase changed, and the `counters` event if `counters` are
    /// given (the tick is due: see [`Hub::next_tick`]).
    pub fn end_turn(
        &mut self,
        conns: &Slab<Connection>,
        counters: Option<Counters>,
        now: Instant,
        totals: &mut Totals,
    ) {
        let mut touched = std::mem::take(&mut self.touched);
        for &(key, serial) in &touched {
            let Some(conn) = conns.get(key).filter(|c| c.serial() == serial) else {
                continue;
            };
            let status = conn.state_and_phase();
            match self.told.get_mut(key).and_then(Option::as_mut) {
                Some(told) if told.serial == serial && (told.state, told.phase) == status => {
                    told.touched = false;
                    if told.counters != conn.counters() && !told.dirty {
                        told.dirty = true;
                        self.dirty.push((key, serial));
                    }
                }
                _ => {
                    let row = conn.row(now, false);
                    self.remember(conn, &row);
                    self.event("state", totals, |out| json(out, &row));
                }
            }
        }
        touched.clear();
        self.touched = touched; // keep the allocation
        if let Some(counters) = counters {
            self.next_tick = now + TICK;
            self.tick(conns, counters, totals);
        }
    }

    /// Hands this turn's events to the subscriber on `key`, whose connection
    /// has `unsent` bytes not yet taken by the kernel: appends to `out` what
    /// to write, or nothing if it is too far behind (its events are dropped
    /// and counted; it gets a `resync` once it has caught up).
    pub fn deliver(&mut self, key: usize, unsent: usize, out: &mut Vec<u8>, totals: &mut Totals) {
        let lost = self.lost;
        let Some(sub) = self.subscribers.iter_mut().find(|s| s.key == key) else {
            return;
        };
        let fresh = &self.batch[sub.from.min(self.batch.len())..];
        let fresh_events = if sub.from == 0 {
            self.batch_events
        } else {
            fresh.windows(2).filter(|w| w == b"\n\n").count() as u64
        };
        sub.from = 0;
        if fresh.is_empty() && lost == 0 && sub.missed == 0 {
            return;
        }
        // Once behind, it must catch up further before it is fed again, so
        // that a reader just at the limit does not flap between the two.
        let limit = if sub.missed > 0 {
            QUEUE_LIMIT / 2
        } else {
            QUEUE_LIMIT
        };
        if unsent + fresh.len() > limit {
            sub.missed += fresh_events + lost;
            totals.dropped += fresh_events + lost;
            return;
        }
        // A resync goes where the gap is: before this turn's events if the
        // missed ones came earlier, after them if the batch itself overflowed.
        if sub.missed > 0 {
            resync(out, sub.missed, totals);
            sub.missed = 0;
        }
        out.extend_from_slice(fresh);
        if lost > 0 {
            totals.dropped += lost;
            resync(out, lost, totals);
        }
    }

    /// After every subscriber had its share: the next turn starts a new batch.
    pub fn clear_batch(&mut self) {
        self.batch.clear();
        self.batch_events = 0;
        self.lost = 0;
        if self.batch.capacity() > 2 * BATCH_LIMIT {
            self.batch = Vec::new();
        }
    }

    fn remember(&mut self, conn: &Connection, row: &ConnRow) {
        let key = conn.peer().token;
        if self.told.len() <= key {
            self.told.resize(key + 1, None);
        }
        self.told[key] = Some(Told {
            serial: conn.serial(),
            state: conn.state_and_phase().0,
            phase: row.phase,
            counters: conn.counters(),
            dirty: false,
            touched: false,
        });
    }

    fn tick(&mut self, conns: &Slab<Connection>, counters: Counters, totals: &mut Totals) {
        let take = self.dirty.len().min(ROWS_PER_TICK);
        let mut rows = Vec::with_capacity(take);
        for (key, serial) in self.dirty.drain(..take) {
            let Some(conn) = conns.get(key).filter(|c| c.serial() == serial) else {
                continue;
            };
            if let Some(told) = self.told.get_mut(key).and_then(Option::as_mut) {
                told.counters = conn.counters();
                told.dirty = false;
            }
            let (bytes_in, bytes_out, requests) = conn.counters();
            rows.push((key, bytes_in, bytes_out, requests));
        }
        let event = Tick {
            counters,
            subscribers: self.subscribers.len(),
            rows,
            more: self.dirty.len(),
        };
        self.event("counters", totals, |out| json(out, &event));
    }

    /// Appends one event to the batch, unless the batch is full.
    fn event(&mut self, name: &str, totals: &mut Totals, data: impl FnOnce(&mut Vec<u8>)) {
        if self.batch.len() >= BATCH_LIMIT {
            self.lost += 1;
            return;
        }
        self.batch.extend_from_slice(b"event: ");
        self.batch.extend_from_slice(name.as_bytes());
        self.batch.extend_from_slice(b"\ndata: ");
        data(&mut self.batch);
        self.batch.extend_from_slice(b"\n\n");
        self.batch_events += 1;
        totals.events += 1;
    }
}

/// The figures a `counters` event carries: the server's, or with
/// `--workers N` the stream's worker's.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Counters {
    pub open: usize,
    pub accepted: u64,
    pub served: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Events dropped for slow subscribers since start.
    pub dropped: u64,
    /// With `--workers N`, the worker whose figures these are (and whose
    /// events this stream carries); absent with one reactor.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub worker: Option<usize>,
}

#[derive(serde::Serialize)]
struct Close<'a> {
    token: usize,
    why: &'a str,
    bytes_in: u64,
    bytes_out: u64,
    requests: u64,
}

#[derive(serde::Serialize)]
struct Tick {
    #[serde(flatten)]
    counters: Counters,
    subscribers: usize,
    /// `[token, bytes in, bytes out, requests]` of rows whose counters moved.
    rows: Vec<(usize, u64, u64, u64)>,
    /// Rows whose counters moved and wait for a later tick.
    more: usize,
}

fn resync(out: &mut Vec<u8>, missed: u64, totals: &mut Totals) {
    out.extend_from_slice(b"event: resync\ndata: {\"missed\":");
    out.extend_from_slice(itoa::Buffer::new().format(missed).as_bytes());
    out.extend_from_slice(b"}\n\n");
    totals.resyncs += 1;
}

/// One line of JSON. Serializing plain strings and numbers cannot fail, and
/// JSON escapes every newline, so the event stays on its one `data:` line.
fn json(out: &mut Vec<u8>, value: &impl serde::Serialize) {
    if serde_json::to_writer(&mut *out, value).is_err() {
        out.extend_from_slice(b"{}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hub_with(subscribers: &[usize]) -> (Hub, Totals) {
        let mut hub = Hub::new(Instant::now());
        for &key in subscribers {
            hub.join(key, key as u64, std::net::Ipv4Addr::LOCALHOST.into());
        }
        (hub, Totals::default())
    }

    fn events(hub: &mut Hub, totals: &mut Totals, n: usize) {
        for i in 0..n {
            hub.event("close", totals, |out| json(out, &i));
        }
    }

    fn names(bytes: &[u8]) -> Vec<String> {
        String::from_utf8_lossy(bytes)
            .lines()
            .filter_map(|l| l.strip_prefix("event: "))
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn a_turn_is_encoded_once_and_copied_to_each_subscriber() {
        let (mut hub, mut totals) = hub_with(&[1, 2]);
        events(&mut hub, &mut totals, 3);
        let (mut a, mut b) = (Vec::new(), Vec::new());
        hub.deliver(1, 0, &mut a, &mut totals);
        hub.deliver(2, 0, &mut b, &mut totals);
        assert_eq!(a, b);
        assert_eq!(names(&a), ["close", "close", "close"]);
        assert_eq!(totals.events, 3);
    }

    #[test]
    fn a_subscriber_joining_mid_turn_gets_only_what_follows() {
        let (mut hub, mut totals) = hub_with(&[1]);
        events(&mut hub, &mut totals, 2);
        hub.join(2, 2, std::net::Ipv4Addr::LOCALHOST.into());
        hub.event("accept", &mut totals, |out| json(out, &0));
        let mut out = Vec::new();
        hub.deliver(2, 0, &mut out, &mut totals);
        assert_eq!(names(&out), ["accept"]);
    }

    #[test]
    fn when_full_the_oldest_slot_of_the_address_holding_most_gives_way() {
        let mut hub = Hub::new(Instant::now());
        let a: std::net::IpAddr = "10.0.0.1".parse().unwrap();
        let b: std::net::IpAddr = "10.0.0.2".parse().unwrap();
        hub.join(1, 1, b);
        hub.join(2, 2, a);
        hub.join(3, 3, a);
        assert_eq!(hub.give_way(), Some((2, 2)), "a holds two: its oldest goes");
        let empty = Hub::new(Instant::now());
        assert_eq!(empty.give_way(), None);
    }

    #[test]
    fn a_reader_too_far_behind_gets_nothing_then_a_resync_before_the_rest() {
        let (mut hub, mut totals) = hub_with(&[1]);
        events(&mut hub, &mut totals, 4);
        let mut out = Vec::new();
        hub.deliver(1, QUEUE_LIMIT, &mut out, &mut totals);
        assert!(out.is_empty(), "nothing more for a full queue");
        assert_eq!(totals.dropped, 4);
        hub.clear_batch();
        // Still more than half full: it must catch up further first.
        events(&mut hub, &mut totals, 1);
        hub.deliver(1, QUEUE_LIMIT / 2 + 1, &mut out, &mut totals);
        assert!(out.is_empty());
        hub.clear_batch();
        events(&mut hub, &mut totals, 1);
        hub.deliver(1, 0, &mut out, &mut totals);
        assert_eq!(names(&out), ["resync", "close"]);
        assert!(String::from_utf8_lossy(&out).contains("{\"missed\":5}"));
        assert_eq!(totals.resyncs, 1);
    }

    #[test]
    fn an_overflowing_batch_is_summed_up_by_a_resync_after_it() {
        let (mut hub, mut totals) = hub_with(&[1]);
        let n = BATCH_LIMIT / 10; // more than fit: every event is over 10 bytes
        events(&mut hub, &mut totals, n);
        assert!(hub.batch.len() < BATCH_LIMIT + 64);
        let mut out = Vec::new();
        hub.deliver(1, 0, &mut out, &mut totals);
        let names = names(&out);
        assert_eq!(names.last().map(String::as_str), Some("resync"));
        assert_eq!(names.len() as u64 - 1 + hub.lost, n as u64);
    }
}
