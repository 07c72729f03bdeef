//! Several reactors on one port: past one core without sharing a thing.
//!
//! The story says only one process can listen on a port. That was true until
//! `SO_REUSEPORT` (Linux 3.9): with it set, several sockets may listen on
//! the same address and port, and the kernel spreads new connections across
//! them by a hash of each connection's 4-tuple. `serve --workers N` uses it
//! to run N copies of the single-threaded reactor, one thread each, each
//! with its own listening socket, its own `Poll` and its own slab. No lock
//! and no shared counter sits on the path of a request: a connection lives
//! and dies on the worker whose socket the kernel gave it to.
//!
//! The hash is not a balancer. It spreads connections evenly on average,
//! but a handful of long-lived connections can land unevenly, and a worker
//! that is busy does not get fewer new ones. (nginx's `reuseport` has the
//! same property; its answer to unevenness is more connections, not fewer
//! workers.)
//!
//! The one thing the workers share is a [`Board`] where each posts a
//! snapshot of its connection table and its metrics' figures now and then
//! (every second, every 100 ms for a while after somebody asked), so that
//! `/_/conns?workers` can show every worker's table, and `/_/metrics`
//! count for the whole server, without stopping any of them. A worker that
//! has something new to post when it goes to sleep sets an alarm for when
//! the post is due, so what the board shows is never older than that, even
//! for a worker that has nothing else to do.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use mio::Waker;

use crate::error::{Error, Result};
use crate::live::metrics::Figures;
use crate::reactor::{Reactor, ServerConfig, Summary};
use crate::table::ConnTable;

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

/// The reactors of `serve`, bound and ready to run: one, or one per worker.
pub struct Pool {
    reactors: Vec<Reactor>,
    pin: bool,
}

impl Pool {
    /// Binds `workers` reactors to `config.listen.addr` (0: one per core).
    /// With more than one, each gets its own listening socket with
    /// SO_REUSEPORT on the address and real port the first one bound, a
    /// share of `max_conns`, and a seat on a shared [`Board`]. The UDP
    /// socket (`--udp`), if any, belongs to the first.
    pub fn bind(mut config: ServerConfig, workers: usize, pin: bool) -> Result<Pool> {
        let workers = match workers {
            0 => thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        if workers == 1 {
            return Ok(Pool {
                reactors: vec![Reactor::bind(config)?],
                pin,
            });
        }
        config.listen.reuse_port = true;
        config.max_conns = (config.max_conns / workers).max(1);
        let board = Arc::new(Board::new(workers));
        let mut reactors = Vec::with_capacity(workers);
        let mut first = Reactor::bind(config.clone())?;
        first.join_board(0, board.clone())?;
        config.listen.addr = first.local_addr();
        config.udp = false;
        reactors.push(first);
        for index in 1..workers {
            let mut reactor = Reactor::bind(config.clone())?;
            reactor.join_board(index, board.clone())?;
            reactors.push(reactor);
        }
        Ok(Pool { reactors, pin })
    }

    /// The address every worker listens on, with the real port.
    pub fn local_addr(&self) -> SocketAddr {
        self.reactors[0].local_addr()
    }

    pub fn serves_udp(&self) -> bool {
        self.reactors[0].serves_udp()
    }

    pub fn workers(&self) -> usize {
        self.reactors.len()
    }

    /// Runs every reactor until SIGINT or SIGTERM (each worker receives
    /// the signal through its own signal pipe), and adds up what they did.
    pub fn run(self) -> Result<Summary> {
        let mut reactors = self.reactors;
        if reactors.len() == 1 {
            if self.pin {
                pin_to_core(0);
            }
            return reactors.remove(0).run();
        }
        let pin = self.pin;
        let threads: Vec<thread::JoinHandle<Result<Summary>>> = reactors
            .into_iter()
            .enumerate()
            .map(|(index, reactor)| {
                thread::Builder::new()
                    .name(format!("worker-{index}"))
                    .spawn(move || {
                        if pin {
                            pin_to_core(index);
                        }
                        reactor.run()
                    })
                    .map_err(|e| Error::io("starting a worker thread", e))
            })
            .collect::<Result<_>>()?;
        let mut total = Summary::default();
        let mut failed = None;
        for thread in threads {
            match thread.join() {
                Ok(Ok(summary)) => {
                    total.accepted += summary.accepted;
                    total.served += summary.served;
                }
                Ok(Err(e)) => failed = failed.or(Some(e)),
                Err(_) => {
                    failed = failed.or(Some(Error::io(
                        "running a worker",
                        std::io::Error::other("the worker thread panicked"),
                    )))
                }
            }
        }
        match failed {
            Some(e) => Err(e),
            None => Ok(total),
        }
    }
}

/// Pins the calling thread to the `index`-th core this process may run on
/// (wrapping around), as the fastest servers do: a worker that stays on one
/// core keeps its caches warm. Best effort: a failure is logged, not fatal.
fn pin_to_core(index: usize) {
    use rustix::thread::{sched_getaffinity, sched_setaffinity, CpuSet};
    // `None`: the calling thread (pid 0), not the whole process.
    let Ok(allowed) = sched_getaffinity(None) else {
        return log::warn!("--pin: cannot read this process's cores");
    };
    let cores: Vec<usize> = (0..CpuSet::MAX_CPU)
        .filter(|&c| allowed.is_set(c))
        .collect();
    let Some(&core) = cores.get(index % cores.len().max(1)) else {
        return;
    };
    let mut one = CpuSet::new();
    one.set(core);
    if sched_setaffinity(None, &one).is_err() {
        return log::warn!("--pin: cannot pin worker {index} to core {core}");
    }
    log::debug!("worker {index} pinned to core {core}");
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
