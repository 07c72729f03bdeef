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
//! The one thing the workers share is a [`Board`] (see
//! [`crate::reactor::board`]) where each posts a snapshot of its connection
//! table and its metrics' figures now and then, so that `/_/conns?workers`
//! can show every worker's table, and `/_/metrics` count for the whole
//! server. This file is the pool above the reactors: it binds them, seats
//! them on the board and runs each on a thread of its own.

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread;

use crate::error::{Error, Result};
use crate::reactor::board::Board;
use crate::reactor::{Reactor, ServerConfig, Summary};

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
