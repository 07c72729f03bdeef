//! The workers' board: where each reactor of `serve --workers N` posts
//! its connection table and its metrics for the others.
//!
//! The workers share nothing on the way of a request (see
//! [`crate::workers`]). The one thing they share is this board: now and
//! then (every second, every 100 ms for a while after somebody asked),
//! each posts a snapshot of its table and its figures, so that
//! `/_/conns?workers` can show every worker's table and `/_/metrics` count
//! for the whole server, without stopping any of them.
//!
//! A reactor's place on the board is its [`Seat`], which owns the cadence:
//! the loop asks the seat for its alarm (when the next post is due) and
//! gives it a tick at the end of each turn, and the seat decides whether
//! to post. A worker that has something new to post when it goes to sleep
//! sets an alarm for when the post is due, so what the board shows is
//! never older than that, even for a worker that has nothing else to do.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use mio::Waker;

use crate::live::metrics::Figures;
use crate::table::ConnTable;
use crate::table::DEFAULT_ROWS;

/// How often a worker posts its table when nobody has asked lately.
pub const PUBLISH_QUIET: Duration = Duration::from_secs(1);
/// How often, for [`ASKED_RECENTLY`] after a request for every table: the
/// next request then sees tables at most this old.
pub const PUBLISH_ASKED: Duration = Duration::from_millis(100);
/// How long a request for every table keeps the workers posting often.
pub const ASKED_RECENTLY: Duration = Duration::from_secs(5);

/// Where workers post their tables for each other.
#[derive(Debug)]
pub struct Board {
    started: Instant,
    /// When every table was last asked for, in ms since `started` (0: never).
    asked_ms: AtomicU64,
    /// What each worker posted last. The lock is taken by a worker posting
    /// (at most ten times a second, and once per scrape it answers) and by
    /// a request for every table or for the metrics, never on the way of an
    /// ordinary request.
    posts: Vec<Mutex<Posted>>,
    /// Each worker's waker: a request for every table wakes the others, so
    /// that a worker asleep in `epoll_wait` posts its table too.
    wakers: Vec<OnceLock<Arc<Waker>>>,
}

impl Board {
    pub fn new(workers: usize) -> Board {
        Board {
            started: Instant::now(),
            asked_ms: AtomicU64::new(0),
            posts: (0..workers).map(|_| Mutex::default()).collect(),
            wakers: (0..workers).map(|_| OnceLock::new()).collect(),
        }
    }

    /// Worker `index`'s waker, registered in its own `Poll`.
    pub fn set_waker(&self, index: usize, waker: Arc<Waker>) {
        if let Some(slot) = self.wakers.get(index) {
            let _ = slot.set(waker);
        }
    }

    /// Workers on the board.
    pub fn len(&self) -> usize {
        self.posts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.posts.is_empty()
    }

    /// Somebody asked worker `from` for every table: the others post more
    /// often for a while, starting now.
    pub fn ask(&self, from: usize, now: Instant) {
        let ms = now.saturating_duration_since(self.started).as_millis() as u64;
        self.asked_ms.store(ms.max(1), Ordering::Relaxed);
        for (index, waker) in self.wakers.iter().enumerate() {
            if let (true, Some(waker)) = (index != from, waker.get()) {
                let _ = waker.wake();
            }
        }
    }

    /// How often workers post now: often while somebody has asked lately.
    pub fn interval(&self, now: Instant) -> Duration {
        let asked = self.asked_ms.load(Ordering::Relaxed);
        let since_asked =
            now.saturating_duration_since(self.started + Duration::from_millis(asked));
        if asked > 0 && since_asked < ASKED_RECENTLY {
            PUBLISH_ASKED
        } else {
            PUBLISH_QUIET
        }
    }

    /// Whether a worker that last posted at `last` should post again now.
    pub fn post_due(&self, last: Instant, now: Instant) -> bool {
        now.saturating_duration_since(last) >= self.interval(now)
    }

    /// Posts worker `index`'s table and figures, taken at `now`.
    pub fn post(&self, index: usize, table: ConnTable, figures: Figures, now: Instant) {
        self.with_slot(index, |slot| {
            slot.table = Some((now, table));
            slot.figures = Some((now, figures));
        });
    }

    /// Posts worker `index`'s figures alone: the ones it is about to report
    /// in a scrape, so that no later scrape reports older ones.
    pub fn post_figures(&self, index: usize, figures: Figures, now: Instant) {
        self.with_slot(index, |slot| slot.figures = Some((now, figures)));
    }

    fn with_slot(&self, index: usize, write: impl FnOnce(&mut Posted)) {
        if let Some(slot) = self.posts.get(index) {
            // A poisoned lock only means a reader panicked mid-clone; what
            // is written replaces the old entry whole either way.
            write(&mut slot.lock().unwrap_or_else(|e| e.into_inner()));
        }
    }

    /// Worker `index`'s latest table and when it was taken.
    pub fn latest(&self, index: usize) -> Option<(Instant, ConnTable)> {
        let slot = self.posts.get(index)?;
        let slot = slot.lock().unwrap_or_else(|e| e.into_inner());
        slot.table.clone()
    }

    /// Worker `index`'s latest figures and when they were read.
    pub fn latest_figures(&self, index: usize) -> Option<(Instant, Figures)> {
        let slot = self.posts.get(index)?;
        let slot = slot.lock().unwrap_or_else(|e| e.into_inner());
        slot.figures.clone()
    }
}

/// What one worker last posted, each with when it was taken.
#[derive(Debug, Default)]
struct Posted {
    table: Option<(Instant, ConnTable)>,
    figures: Option<(Instant, Figures)>,
}

/// A reactor's place on the board (`serve --workers N`), and the cadence
/// of its posts.
#[derive(Debug)]
pub struct Seat {
    pub index: usize,
    pub board: Arc<Board>,
    /// When this worker last posted its table on the board.
    posted_at: Instant,
    /// The [`News`] it posted then; `None` before its first post.
    posted: Option<News>,
}

/// What changes when a worker has news for the board: connections
/// accepted and closed, answers produced and served, datagrams read.
/// (Bytes of a body still streaming are left out: such a connection keeps
/// the worker awake, and its turns post on time anyway.)
pub type News = [u64; 5];

impl Seat {
    pub fn new(index: usize, board: Arc<Board>, now: Instant) -> Seat {
        Seat {
            index,
            board,
            posted_at: now,
            posted: None,
        }
    }

    /// When the loop must wake for this seat: a worker with news wakes
    /// when its post is due, so that what the others read of it is never
    /// older than that; a new one posts at once, so that the board has
    /// every worker from the start.
    pub fn alarm(&self, news: News, now: Instant) -> Option<Instant> {
        match self.posted {
            None => Some(now),
            Some(posted) if posted != news => Some(self.posted_at + self.board.interval(now)),
            Some(_) => None,
        }
    }

    /// The end of a turn: whether a post is due now.
    pub fn post_due(&self, now: Instant) -> bool {
        self.posted.is_none() || self.board.post_due(self.posted_at, now)
    }

    /// Posts this worker's table and figures, read at `now`, with `news`.
    pub fn post(&mut self, table: ConnTable, figures: Figures, news: News, now: Instant) {
        self.board.post(self.index, table, figures, now);
        self.posted_at = now;
        self.posted = Some(news);
    }
}

/// The reactor's side of its seat: what it posts, and what counts as news.
impl super::Reactor {
    /// This worker's post on the board: its table and its figures.
    pub(super) fn post_on_board(&mut self) {
        let table = self.view().snapshot(DEFAULT_ROWS);
        let (accepted, served) = (self.stats.accepted, self.stats.served);
        let figures = self.live.figures(&self.conns, accepted, served);
        let news = self.news();
        if let Some(seat) = &mut self.seat {
            seat.post(table, figures, news, self.now);
        }
    }

    /// What changes when this worker has news for the board (see [`News`]).
    pub(super) fn news(&self) -> News {
        let m = &self.live.metrics;
        [
            self.stats.accepted,
            m.closed,
            m.responses,
            self.stats.served,
            m.udp.map_or(0, |u| u.datagrams_in),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workers_post_often_only_while_somebody_is_asking() {
        let board = Board::new(2);
        let t0 = Instant::now();
        let t = |ms| t0 + Duration::from_millis(ms);
        assert!(!board.post_due(t(0), t(500)), "quiet: once a second");
        assert!(board.post_due(t(0), t(1000)));
        board.ask(0, t(2000));
        assert!(board.post_due(t(2000), t(2100)), "asked: every 100 ms");
        assert!(!board.post_due(t(2000), t(2050)));
        assert!(!board.post_due(t(8000), t(8500)), "the ask has gone stale");
    }
}
