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
//!
//! Sockets made before the server started (socket activation, or a
//! restart: see [`crate::activation`]) are shared differently. systemd
//! passes *one* listening socket, without SO_REUSEPORT, and a server that
//! runs as an unprivileged user could not bind port 500 beside it anyway.
//! So each worker gets a duplicate descriptor of that one socket: one
//! accept queue, N epoll instances watching it. A new connection then
//! wakes every worker (edge-triggered, each `Poll` gets the edge); one
//! `accept` wins and the others find the queue empty. That is the
//! thundering herd, bounded here by N, and the price of a queue that no
//! restart can lose (docs/restarts.md measures both ways). A restart
//! passes every worker's socket on, whichever way they were made, so the
//! new copy takes over exactly the queues the old one had.

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread;

use crate::activation::Inherited;
use crate::error::{Error, Result};
use crate::reactor::board::Board;
use crate::reactor::{Given, Reactor, ServerConfig, Summary};
use crate::restart::{Sockets, Takeover};

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
    pub fn bind(config: ServerConfig, workers: usize, pin: bool) -> Result<Pool> {
        Pool::bind_or_take(config, workers, pin, None)
    }

    /// Like [`Pool::bind`], but with `inherited` sockets, when there are
    /// some, in place of binding: worker `i` takes the `i`-th listener
    /// given, or a duplicate of the first when fewer were given (see the
    /// module comment); the first takes the UDP socket.
    pub fn bind_or_take(
        mut config: ServerConfig,
        workers: usize,
        pin: bool,
        inherited: Option<Inherited>,
    ) -> Result<Pool> {
        let workers = match workers {
            0 => thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        if let Some(inherited) = inherited {
            return Pool::take(config, workers, pin, inherited);
        }
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

    fn take(
        mut config: ServerConfig,
        workers: usize,
        pin: bool,
        inherited: Inherited,
    ) -> Result<Pool> {
        let Inherited { tcp, udp, addr, .. } = inherited;
        if tcp.len() > workers {
            return Err(Error::usage(format!(
                "{} listening sockets were passed, and --workers {workers} uses {workers}: \
                 give --workers {} (one socket per worker)",
                tcp.len(),
                tcp.len()
            )));
        }
        if udp.is_some() && !config.udp {
            return Err(Error::usage(
                "a UDP socket was passed (ListenDatagram=), but --udp is not given: \
                 add --udp, or remove the socket",
            ));
        }
        config.listen.addr = addr;
        config.max_conns = (config.max_conns / workers).max(1);
        let board = (workers > 1).then(|| Arc::new(Board::new(workers)));
        let mut listeners = tcp.into_iter();
        let mut udp = udp;
        let mut first: Option<std::net::TcpListener> = None;
        let mut reactors = Vec::with_capacity(workers);
        for index in 0..workers {
            let listener = match listeners.next() {
                Some(listener) => listener,
                None => first
                    .as_ref()
                    .map(std::net::TcpListener::try_clone)
                    .transpose()
                    .map_err(|e| Error::io("duplicating the inherited listener", e))?
                    .ok_or_else(|| Error::usage("no listening socket was passed"))?,
            };
            if index == 0 {
                first = Some(
                    listener
                        .try_clone()
                        .map_err(|e| Error::io("duplicating the inherited listener", e))?,
                );
            }
            let given = Given {
                listener,
                udp: udp.take(),
            };
            let mut reactor = Reactor::with_sockets(config.clone(), Some(given))?;
            if let Some(board) = &board {
                reactor.join_board(index, board.clone())?;
            }
            // The UDP socket (given or bound) is the first worker's.
            config.udp = false;
            reactors.push(reactor);
        }
        Ok(Pool { reactors, pin })
    }

    /// Copies of every listening socket, in the order a restart passes
    /// them on (each worker's listener, then the UDP socket), and a line
    /// to each reactor to tell it that the new copy took over.
    pub fn handover(&self) -> std::io::Result<(Sockets, Vec<Takeover>)> {
        let mut tcp = Vec::new();
        let mut udp = Vec::new();
        for reactor in &self.reactors {
            for (fd, kind) in reactor.sockets_to_pass()? {
                match kind {
                    "udp" => udp.push((fd, kind)),
                    _ => tcp.push((fd, kind)),
                }
            }
        }
        tcp.extend(udp);
        let takeovers = self.reactors.iter().map(Reactor::takeover).collect();
        Ok((tcp, takeovers))
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
                    total.handed_over_to = total.handed_over_to.or(summary.handed_over_to);
                    total.open_at_handover += summary.open_at_handover;
                    total.cut_after_handover += summary.cut_after_handover;
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
