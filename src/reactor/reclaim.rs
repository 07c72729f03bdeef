//! Which connection to close when the server is full: a queue of the
//! reclaimable ones, kept only while the server is full.
//!
//! At `--max-conns` a new client gets the place of the connection that owes
//! nothing and has waited longest (see
//! [`Connection::reclaim_order`](crate::connection::Connection::reclaim_order)):
//! lingering ones first, then kept-alive ones, nearest idle deadline first.
//! Finding it by looking at every connection costs a scan of the slab per
//! accept: with 15,000 connections held and clients arriving as fast as
//! they are served, that is most of what the server does. nginx keeps a
//! queue of reusable connections instead; so does this, as a heap ordered
//! the same way.
//!
//! The queue costs nothing while the server has room: it exists only from
//! the first time the server is full (built then by one scan) until it has
//! room again. Meanwhile each connection that becomes reclaimable joins it
//! ([`Reclaim::offer`], from the one place where the loop acts on what a
//! connection decided). An entry is not taken out when its connection gets
//! busy or closes: like the timer heap, it goes stale, and is dropped
//! when it comes up (its connection is gone, or no longer reclaimable in
//! the same order). So every step is O(log n), and stale entries are swept
//! before they outnumber the connections.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

use slab::Slab;

use crate::connection::Connection;

/// How eagerly a connection may be reclaimed (smaller first); see
/// `Connection::reclaim_order`.
type Order = (bool, Option<Instant>);

/// The reclaimable connections, in the order they are to be reclaimed,
/// while the server is full.
#[derive(Debug, Default)]
pub struct Reclaim {
    /// `None` while the server has room.
    queue: Option<BinaryHeap<Reverse<(Order, usize, u64)>>>,
}

impl Reclaim {
    /// The server is full: the connection to close to make room, if any
    /// owes nothing. The first call of a full spell builds the queue.
    pub fn pick(&mut self, conns: &Slab<Connection>) -> Option<usize> {
        let queue = self.queue.get_or_insert_with(|| {
            conns
                .iter()
                .filter_map(|(key, c)| Some(Reverse((c.reclaim_order()?, key, c.serial()))))
                .collect()
        });
        while let Some(Reverse((order, key, serial))) = queue.pop() {
            let still = conns
                .get(key)
                .is_some_and(|c| c.serial() == serial && c.reclaim_order() == Some(order));
            if still {
                return Some(key);
            }
        }
        None
    }

    /// A connection was served, or timed out, and now waits: while the
    /// server is full, it joins the queue if it may be reclaimed.
    #[inline]
    pub fn offer(&mut self, key: usize, conn: &Connection) {
        if let Some(queue) = &mut self.queue {
            if let Some(order) = conn.reclaim_order() {
                queue.push(Reverse((order, key, conn.serial())));
            }
        }
    }

    /// The end of a turn: with room again (below three quarters of the
    /// cap), the queue is let go; while full, stale entries are swept out
    /// once they outnumber the connections.
    pub fn tick(&mut self, conns: &Slab<Connection>, in_use: usize, max: usize) {
        let Some(queue) = &mut self.queue else {
            return;
        };
        if in_use < max - max / 4 {
            self.queue = None;
        } else if queue.len() > 2 * conns.len() + 1024 {
            queue.retain(|Reverse((order, key, serial))| {
                conns
                    .get(*key)
                    .is_some_and(|c| c.serial() == *serial && c.reclaim_order() == Some(*order))
            });
        }
    }

    /// Entries held, stale ones included (for the tests).
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.queue.as_ref().map_or(0, BinaryHeap::len)
    }
}
