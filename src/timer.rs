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

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

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
    /// superseded deadlines). The reactor calls it when stale entries
    /// outnumber live ones, so the heap stays proportional to the number of
    /// connections however many come and go.
    pub fn retain(&mut self, mut live: impl FnMut(&Entry) -> bool) {
        self.heap.retain(|Reverse(entry)| live(entry));
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
        timers.retain(|&(_, key, _)| key != 3);
        assert!(timers.is_empty());
    }
}
