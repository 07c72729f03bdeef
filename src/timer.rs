//! Deadlines for the reactor, without a thread or a runtime.
//!
//! An event loop has one way to wait: the timeout of `epoll_wait`. So the
//! reactor keeps every connection's deadline in one place, asks it for the
//! nearest one before sleeping, and fires whatever is due when it wakes.
//!
//! The structure is a min-heap of `(when, key, serial)` with lazy updates,
//! the way many servers do it. A connection's real deadline lives on the
//! connection and moves forward on every request (idle timeout = last
//! activity + 60 s), but the heap is only touched when a deadline moves
//! *earlier* than the entry already in it. When an entry comes due and the
//! connection's deadline has moved on, the entry is pushed again for the new
//! time. A busy keep-alive connection thus costs no heap work per request,
//! and nothing is ever removed from the middle of the heap. The serial number
//! makes an entry for a closed connection harmless even after its slab key
//! has been given to a new one.
//!
//! Each connection's side of that bookkeeping is a [`Deadline`]: when it is
//! due, when its heap entry is, and the two moments its timeouts count from
//! (the first byte of the request in progress, the last time the kernel took
//! bytes from us). [`Timeouts`] holds the lengths.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

/// How long a connection may take at each stage; `None` waits forever.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// From the first byte of a request to its end (slowloris): 408 and close.
    pub header: Option<Duration>,
    /// A keep-alive connection with no request in progress: closed.
    pub idle: Option<Duration>,
    /// Output waiting while the client reads nothing: closed.
    pub send: Option<Duration>,
}

impl Default for Timeouts {
    fn default() -> Timeouts {
        Timeouts {
            header: Some(Duration::from_secs(20)),
            idle: Some(Duration::from_secs(60)),
            send: Some(Duration::from_secs(60)),
        }
    }
}

/// One connection's timing: when it times out, and what that is counted from.
#[derive(Debug, Clone, Copy)]
pub struct Deadline {
    /// When the connection times out if nothing happens.
    due: Option<Instant>,
    /// The earliest entry for this connection in the timer heap.
    armed: Option<Instant>,
    /// When the first byte of the request now in progress arrived.
    request_started: Option<Instant>,
    /// When the kernel last took bytes from us (or the connection began).
    last_progress: Instant,
}

/// What a heap entry that came due means for its connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fired {
    /// A duplicate, or superseded: nothing to do.
    Stale,
    /// The deadline moved on: push an entry for this time.
    Moved(Instant),
    /// The deadline has passed.
    Due,
}

impl Deadline {
    pub fn new(now: Instant) -> Deadline {
        Deadline {
            due: None,
            armed: None,
            request_started: None,
            last_progress: now,
        }
    }

    /// The kernel took bytes from us: the send timeout starts again.
    pub fn progress(&mut self, now: Instant) {
        self.last_progress = now;
    }

    pub fn last_progress(&self) -> Instant {
        self.last_progress
    }

    /// When the request in progress began, `now` if it begins now.
    pub fn request_started(&mut self, now: Instant) -> Instant {
        *self.request_started.get_or_insert(now)
    }

    /// A request was answered: the next one's clock starts at its first byte.
    pub fn request_done(&mut self) {
        self.request_started = None;
    }

    pub fn due(&self) -> Option<Instant> {
        self.due
    }

    /// Sets when the connection times out. Returns the time to push into the
    /// heap when that is earlier than the entry already there (a later
    /// deadline is found when the earlier entry comes due: see [`Deadline::fire`]).
    pub fn set(&mut self, due: Option<Instant>) -> Option<Instant> {
        self.due = due;
        let when = due?;
        if self.armed.is_none_or(|armed| when < armed) {
            self.armed = Some(when);
            return Some(when);
        }
        None
    }

    /// The heap entry for `when` came due at `now`.
    pub fn fire(&mut self, when: Instant, now: Instant) -> Fired {
        if self.armed != Some(when) {
            return Fired::Stale;
        }
        self.armed = None;
        match self.due {
            Some(due) if due > now => {
                self.armed = Some(due);
                Fired::Moved(due)
            }
            Some(_) => Fired::Due,
            None => Fired::Stale,
        }
    }

    /// Whether the heap entry for `when` is this connection's live one.
    pub fn is_armed_at(&self, when: Instant) -> bool {
        self.armed == Some(when)
    }
}

/// One entry: at `when`, look at the connection `key` if it is still `serial`.
pub type Entry = (Instant, usize, u64);

/// The reactor's deadlines, nearest first.
#[derive(Debug, Default)]
pub struct Timers {
    heap: BinaryHeap<Reverse<Entry>>,
}

impl Timers {
    /// Adds an entry.
    pub fn push(&mut self, when: Instant, key: usize, serial: u64) {
        self.heap.push(Reverse((when, key, serial)));
    }

    /// The nearest deadline, for the poll timeout.
    pub fn next(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((when, _, _))| *when)
    }

    /// Takes the nearest entry if it is due at `now`.
    pub fn pop_due(&mut self, now: Instant) -> Option<Entry> {
        match self.heap.peek() {
            Some(Reverse((when, _, _))) if *when <= now => self.heap.pop().map(|Reverse(e)| e),
            _ => None,
        }
    }

    /// Drops the entries for which `live` says no (closed connections,
    /// deadlines that moved), once they outnumber the open connections
    /// (`open`) by far: closed connections leave their entries behind, and
    /// sweeping them out now and then, amortised over many closes, keeps
    /// the heap proportional to the connections that are open.
    pub fn sweep(&mut self, open: usize, mut live: impl FnMut(usize, u64, Instant) -> bool) {
        if self.heap.len() > 2 * open + 1024 {
            self.heap
                .retain(|Reverse((when, key, serial))| live(*key, *serial, *when));
        }
    }

    /// Entries held, stale ones included.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_deadline_touches_the_heap_only_when_it_moves_earlier() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut d = Deadline::new(t0);
        assert_eq!(d.set(Some(t0 + 10 * s)), Some(t0 + 10 * s));
        assert_eq!(d.set(Some(t0 + 20 * s)), None, "later: no push");
        assert_eq!(d.set(Some(t0 + 5 * s)), Some(t0 + 5 * s), "earlier: push");
        // The old entry for +10 s is now a duplicate; the +5 s one finds the
        // deadline moved on to +20 s and asks to be pushed again for it.
        assert_eq!(d.fire(t0 + 10 * s, t0 + 10 * s), Fired::Stale);
        d.set(Some(t0 + 20 * s));
        assert_eq!(d.fire(t0 + 5 * s, t0 + 5 * s), Fired::Moved(t0 + 20 * s));
        assert_eq!(d.fire(t0 + 20 * s, t0 + 20 * s), Fired::Due);
    }

    #[test]
    fn entries_come_due_in_order() {
        let t0 = Instant::now();
        let mut timers = Timers::default();
        timers.push(t0 + Duration::from_secs(3), 3, 1);
        timers.push(t0 + Duration::from_secs(1), 1, 1);
        timers.push(t0 + Duration::from_secs(2), 2, 1);
        assert_eq!(timers.next(), Some(t0 + Duration::from_secs(1)));
        assert_eq!(timers.pop_due(t0), None);
        let due: Vec<usize> = std::iter::from_fn(|| timers.pop_due(t0 + Duration::from_secs(2)))
            .map(|(_, key, _)| key)
            .collect();
        assert_eq!(due, [1, 2]);
        assert_eq!(timers.len(), 1);
    }

    #[test]
    fn a_sweep_waits_until_stale_entries_outnumber_the_open_connections() {
        let t0 = Instant::now();
        let mut timers = Timers::default();
        for key in 0..1100 {
            timers.push(t0, key, 1);
        }
        timers.sweep(100, |key, _, _| key < 10);
        assert_eq!(
            timers.len(),
            1100,
            "a sweep this early is not worth its cost"
        );
        timers.sweep(10, |key, _, _| key < 10);
        assert_eq!(timers.len(), 10, "only the living are kept");
    }
}
