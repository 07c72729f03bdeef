//! The event loop: one thread, one `mio::Poll`, a slab of connections.
//!
//! ```text
//! Reactor
//!  ├─ poll: Poll                one epoll instance, one thread
//!  ├─ listener                  Token(LISTENER)  0.0.0.0:500        LISTEN
//!  ├─ shutdown                  Token(SIGNALS)   SIGINT, SIGTERM, SIGUSR1
//!  ├─ datagrams                 Token(UDP)       0.0.0.0:500 (udp)  --udp
//!  ├─ seat                      Token(WAKER)     the workers' board --workers N
//!  ├─ timers: Timers            every connection's next deadline
//!  └─ conns: Slab<Connection>   Token(key) = slab key
//!       [0] 127.0.0.1:500 <- 127.0.0.1:54240   ESTABLISHED
//!       [1] 127.0.0.1:500 <- 127.0.0.1:26813   ESTABLISHED
//! ```
//!
//! Every accepted connection shares the listener's port; what tells them
//! apart is the remote address and port, exactly as in the kernel's own
//! table. mio hands back a [`Token`] with each event, and the token *is* the
//! slab key, so finding the connection for an event is one array index.
//!
//! Each turn of the loop ([`Reactor::run`]) is a short list of steps:
//! 1. `wait`: sleep in `epoll_wait` until a socket is ready or the nearest
//!    alarm (`next_alarm`: each owner beside the loop names its own) passes,
//!    or not at all if the ready list has work;
//! 2. for each event: accept waiting connections (`accept_some`), obey a
//!    signal (`on_signals`), answer datagrams (`on_datagrams`, with `--udp`),
//!    or serve a connection (`on_connection_event`): read, answer, write;
//! 3. `run_ready`: give one more turn to whatever has work that no event
//!    will announce (the listener with connections still queued, a long
//!    pipeline, a file body still being sent, bytes left unread);
//! 4. `fire_timers`: tell connections whose deadline has passed;
//! 5. `tick`: each owner beside the loop gets its tick (the timer heap,
//!    a paused accept, the workers' board, the UDP flows, the shutdown grace);
//! 6. `publish`: tell whoever watches (the live page's event stream, the
//!    `--trace` printout; see [`crate::live`]). Nobody watching, it is one test.
//!
//! A connection decides its own life (see [`crate::connection::state`]):
//! the loop serves it and then acts on the [`Verdict`] it returns, in one
//! place, `act`: close it with a reason, let it linger, give it another
//! turn, or wait. Nothing else closes a connection that is being served.
//! The owners beside the loop live in their own files: `accept.rs` (the
//! budget and the cap), `reclaim.rs` (who makes room when the server is
//! full), `shutdown.rs` (the signals and the grace), `board.rs` (the
//! workers' board and the cadence of this worker's posts), `datagrams.rs`
//! (the UDP socket), `sockets.rs` (where the sockets come from: bound, or
//! given), `answer.rs` (lending the protocol a context) and `host.rs` (the
//! server as the protocol sees it, for `/_/conns` and `/_/metrics`).
//!
//! Two rules hold the loop together when clients are faster than the
//! server. **Every step does bounded work per turn**: at most
//! [`ACCEPTS_PER_TURN`] accepts, one buffer of input and
//! [`crate::http::TURN_OUTPUT`] of output per connection, and one `sendfile` of
//! [`crate::connection::FILE_PER_TURN`] for a file body; whatever is left goes on
//! the ready list, because edge-triggered epoll will not announce it again.
//! So a backlog that never empties, a client that never stops sending, or a
//! long pipeline cannot keep the others waiting. **What a closed connection
//! held is given back at once**: `close` removes it from the slab, which
//! closes its socket (and any file it was sending) there and then.
//!
//! Closing at once has one trap. The slab reuses keys, so a connection
//! accepted later in the same batch may take the key just freed, and an
//! event still queued in this batch for the *old* connection would then
//! reach the new one. Every event of a batch was queued before the batch
//! began, that is before any connection accepted during the batch was
//! registered; so an event whose key was freed during this turn can only
//! be for the old connection. The reactor remembers the turn in which each
//! key was last freed (`freed_in_turn`) and drops such events. Entries that
//! outlive a turn (the ready list, the timer heap) carry the connection's
//! never-reused serial number instead.

use std::cell::{Cell, RefCell};

use std::mem;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use log::{debug, info, trace, warn};

use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token};
use slab::Slab;

use crate::connection::{CloseReason, Connection, Expiry, ReadOutcome, Step, Verdict};
use crate::error::{Error, Result};
use crate::http::{response::Clock, AccessLog};

use crate::live::trace::{Alarm, Cause, Subject};
use crate::live::Live;

use crate::sys;
pub use crate::timer::Timeouts;
use crate::timer::{Fired, Timers};

mod accept;
mod answer;
pub mod board;
mod config;
mod datagrams;
mod host;
mod readiness;
mod reclaim;
mod shutdown;
mod sockets;

pub use accept::ACCEPTS_PER_TURN;
use accept::ACCEPT_RETRY;
pub use config::{ServerConfig, Summary};
use readiness::{subject, Readiness};
use reclaim::Reclaim;
pub use sockets::Given;

use board::{Board, Seat};
use datagrams::Datagrams;
use host::{SlabView, TableCache};
use shutdown::{Shutdown, Stop};

/// The listening socket's token. Slab keys count up from 0, so the fixed
/// tokens sit at the other end of the range, where no key will ever reach.
pub const LISTENER: Token = Token(usize::MAX - 1);
/// The token of the signal pipe (SIGINT and SIGTERM stop, SIGUSR1 logs the table).
pub const SIGNALS: Token = Token(usize::MAX - 2);
/// The token of the UDP socket (`--udp`), on the listener's port number.
pub const UDP: Token = Token(usize::MAX - 3);
/// The token of the waker through which other workers ask for this one's
/// table (`--workers N`); the turn it wakes posts the table.
pub const WAKER: Token = Token(usize::MAX - 4);

/// Size of the one read buffer that all connections share. 64 KiB takes a
/// pipelined burst in one `read`; per connection it would cost 1 GiB at
/// 15,000 connections, shared it costs 64 KiB.
const READ_BUFFER: usize = 64 * 1024;

/// Events taken from the kernel per `epoll_wait`.
const EVENTS_PER_POLL: usize = 1024;

/// Input read from one connection per turn, at most: one full buffer. A
/// client that sends without pause (a flood of bytes, a huge body) gets this
/// much parsed per turn, and then the others get theirs.
const TURN_INPUT: usize = READ_BUFFER;

/// Rows of a long connection table (or entries of a long directory
/// listing) that one turn makes, for all requesters together. Each costs
/// a few microseconds, so a turn spends a few milliseconds on such bodies
/// however many clients ask for them at once: 200 requests for a table of
/// 15,000 rows are 3 million rows, and they take their turns while
/// everyone else is served in between (see [`crate::http::body::Pieces`]).
const PIECES_PER_TURN: usize = 1024;

/// Deadlines handled per turn, at most. A wave of timeouts that fall due
/// together (2,000 clients that sent half a request at the same moment)
/// would otherwise be one long turn: each 408 is an answer, a write and a
/// close, a few microseconds. The rest stay due in the heap, so the next
/// `epoll_wait` does not sleep, and other clients are served in between.
const TIMEOUTS_PER_TURN: usize = 128;

/// The single-threaded event loop and everything it owns.
pub struct Reactor {
    poll: Poll,
    /// `None` once shutdown has begun: no new connections.
    listener: Option<TcpListener>,
    local_addr: SocketAddr,
    started: Instant,
    /// The signals, and where the server is in stopping.
    shutdown: Shutdown,
    /// The UDP socket on the same port number, with `--udp`.
    datagrams: Option<Datagrams>,
    /// Every accepted connection; the key is the connection's mio token.
    conns: Slab<Connection>,
    /// Turns of the loop so far (one per `epoll_wait`).
    turn: u64,
    /// For each slab key, the turn in which it was last freed: an event of
    /// this turn for a key freed in this turn was meant for the connection
    /// that held it before (see the module comment).
    freed_in_turn: Vec<u64>,
    /// The listener may have connections queued that no event will
    /// announce (this turn's accept budget ran out): accept more next turn.
    listener_ready: bool,
    /// `accept` failed for lack of file descriptors; retry when one frees up.
    accept_paused: bool,
    /// Connections with work that no event will announce, served next turn
    /// (with the serial number that tells a reused key apart).
    ready: Vec<(usize, u64)>,
    /// The one read buffer every connection reads into.
    read_buf: Box<[u8]>,
    /// Responses produced for the connection being handled, before `write`.
    write_buf: Vec<u8>,
    clock: Clock,
    /// The time the last `epoll_wait` returned: one clock read per turn.
    now: Instant,
    /// Every connection's next deadline.
    timers: Timers,
    /// `/_/conns` renderings shared by the requesters of one turn.
    table_cache: RefCell<TableCache>,
    /// What is left of this turn's share of work for bodies made a piece
    /// at a time ([`PIECES_PER_TURN`]).
    pieces_left: Cell<usize>,
    config: ServerConfig,
    stats: Summary,
    /// With `--workers N`: this worker's place on the workers' board.
    seat: Option<Seat>,
    /// Metrics, the event stream's subscribers, the trace.
    live: Live,
    /// Descriptors this reactor's connections hold for their bodies (an
    /// open file, an open directory), which `--max-conns` counts too. Each
    /// reactor counts its own: with `--workers N` every worker has its
    /// share of the cap, and one worker's downloads are not another's.
    bodies_held: usize,
    /// This turn's access-log lines, handed to the access log's sink at
    /// the end of the turn (`None` with `--quiet`).
    access_log: Option<AccessLog>,
    /// An event-stream subscriber that gives its slot to a newcomer (all
    /// were taken), closed once the newcomer's answer is written.
    giving_way: Option<(usize, u64)>,
    /// While the server is full: the connections it may close to make room.
    reclaim: Reclaim,
}

impl Reactor {
    /// Binds the listening socket and registers it and the signal pipe.
    pub fn bind(config: ServerConfig) -> Result<Reactor> {
        Reactor::with_sockets(config, None)
    }

    /// Like [`Reactor::bind`], with sockets made before the server started
    /// when `given` (see `sockets::take_or_bind`).
    pub fn with_sockets(config: ServerConfig, given: Option<Given>) -> Result<Reactor> {
        let (mut listener, local_addr, udp) = sockets::take_or_bind(&config, given)?;
        let (poll, shutdown) = Shutdown::install(SIGNALS, config.shutdown_grace)?;
        let registry = poll.registry();
        registry
            .register(&mut listener, LISTENER, Interest::READABLE)
            .map_err(|e| Error::io("registering the listener", e))?;
        let datagrams = udp
            .map(|udp| Datagrams::register(udp, registry, UDP))
            .transpose()
            .map_err(|e| Error::io("registering the UDP socket", e))?;
        let mut live = Live::new(config.output.trace.clone(), config.max_conns);
        // With `--udp`, the UDP families are in `/_/metrics` from the start.
        if let Some(d) = &datagrams {
            live.udp_counted(d.udp().stats());
        }
        Ok(Reactor {
            poll,
            listener: Some(listener),
            local_addr,
            started: Instant::now(),
            shutdown,
            datagrams,
            conns: Slab::new(),
            turn: 0,
            freed_in_turn: Vec::new(),
            listener_ready: false,
            accept_paused: false,
            ready: Vec::new(),
            read_buf: vec![0; READ_BUFFER].into_boxed_slice(),
            write_buf: Vec::with_capacity(READ_BUFFER),
            clock: Clock::default(),
            now: Instant::now(),
            timers: Timers::default(),
            table_cache: RefCell::default(),
            pieces_left: Cell::new(PIECES_PER_TURN),
            live,
            access_log: config.output.access.as_ref().map(|_| AccessLog::default()),
            config,
            stats: Summary::default(),
            seat: None,
            bodies_held: 0,
            giving_way: None,
            reclaim: Reclaim::default(),
        })
    }

    /// The address the server listens on, with the real port.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Makes this reactor worker `index` of several sharing `board`, with a
    /// waker in its `Poll` through which the others can ask for its table.
    pub fn join_board(&mut self, index: usize, board: Arc<Board>) -> Result<()> {
        let waker = mio::Waker::new(self.poll.registry(), WAKER)
            .map_err(|e| Error::io("creating a worker's waker", e))?;
        board.set_waker(index, Arc::new(waker));
        self.live.set_worker(index);
        self.seat = Some(Seat::new(index, board, self.started));
        Ok(())
    }

    /// Copies of the listening sockets (the listener, then the UDP socket
    /// if any) for a restart to hand to the new copy; see [`crate::restart`].
    pub fn sockets_to_pass(&self) -> std::io::Result<Vec<(std::os::fd::OwnedFd, &'static str)>> {
        use std::os::fd::AsFd;
        let mut sockets = Vec::new();
        if let Some(listener) = &self.listener {
            sockets.push((listener.as_fd().try_clone_to_owned()?, "tcp"));
        }
        if let Some(d) = &self.datagrams {
            sockets.push((d.udp().socket().as_fd().try_clone_to_owned()?, "udp"));
        }
        Ok(sockets)
    }

    /// The line through which a restart says a new copy took over.
    pub fn takeover(&self) -> crate::restart::Takeover {
        self.shutdown.takeover()
    }

    /// Whether a UDP socket shares the listener's port number (`--udp`).
    pub fn serves_udp(&self) -> bool {
        self.datagrams.is_some()
    }

    /// Runs until SIGINT or SIGTERM, then finishes in-flight requests.
    pub fn run(mut self) -> Result<Summary> {
        let mut events = Events::with_capacity(EVENTS_PER_POLL);
        while !self.finished() {
            self.wait(&mut events)?;
            for event in events.iter() {
                let (token, readiness) = (event.token(), Readiness::from(event));
                self.live.handling(|| (subject(token), readiness.cause()));
                match token {
                    LISTENER => self.accept_some(),
                    SIGNALS => self.on_signals(),
                    UDP => self.on_datagrams(),
                    WAKER => {} // `tick` posts the table that was asked for
                    Token(key) => self.on_connection_event(key, readiness),
                }
            }
            self.run_ready();
            self.fire_timers();
            self.tick();
            self.publish();
        }
        Ok(self.stats)
    }

    /// Step 1: sleep in `epoll_wait` until something is ready or the nearest
    /// alarm passes (a signal interrupting the wait is not an error: see
    /// `sys::poll_until`), then start a new turn.
    fn wait(&mut self, events: &mut Events) -> Result<()> {
        self.table_cache.get_mut().renderings.clear();
        self.pieces_left.set(PIECES_PER_TURN);
        let alarm = self.next_alarm();
        let asleep = Instant::now();
        if self.turn > 0 {
            self.live
                .turn_done(asleep.saturating_duration_since(self.now));
        }
        sys::poll_until(&mut self.poll, events, alarm.map(|(d, _)| d), asleep)?;
        self.turn += 1;
        self.now = Instant::now();
        self.clock.refresh_at(self.now);
        let count = events.iter().count();
        let slept = self.now.saturating_duration_since(asleep);
        self.live
            .woke(self.turn, slept, count, alarm.map(|(_, why)| why));
        trace!(
            "turn {}: {count} events, {} on the ready list, {} connections open",
            self.turn,
            self.ready.len() + usize::from(self.listener_ready),
            self.conns.len()
        );
        Ok(())
    }

    /// When the loop must wake up even if no socket is ready, and why: the
    /// nearest of the alarms that each owner beside the loop names.
    fn next_alarm(&self) -> Option<(Instant, Alarm)> {
        let udp_work = self.datagrams.as_ref().is_some_and(Datagrams::has_work);
        if !self.ready.is_empty() || self.listener_ready || udp_work {
            // Work is waiting: just look for new events.
            return Some((self.now, Alarm::ReadyList));
        }
        let board = self.seat.as_ref();
        [
            (
                self.accept_paused.then(|| self.now + ACCEPT_RETRY),
                Alarm::AcceptRetry,
            ),
            (self.shutdown.alarm(), Alarm::Grace),
            (
                board.and_then(|s| s.alarm(self.news(), self.now)),
                Alarm::Post,
            ),
            (self.timers.next(), Alarm::Deadline),
            (self.live.next_tick(), Alarm::Tick),
        ]
        .into_iter()
        .filter_map(|(when, why)| Some((when?, why)))
        .min_by_key(|(when, _)| *when)
    }

    /// Reads and answers the datagrams waiting on the UDP socket (see
    /// [`Datagrams::on_readable`]).
    fn on_datagrams(&mut self) {
        if let Some(d) = &mut self.datagrams {
            let stats = d.on_readable(&mut self.read_buf, self.now);
            self.live.udp_counted(stats);
        }
    }

    /// Step 2 for a connection: note what the event says, then serve it.
    fn on_connection_event(&mut self, key: usize, event: Readiness) {
        if self.freed_in_turn.get(key) == Some(&self.turn) {
            // Queued before the connection that held this key was closed
            // this turn; the key may already belong to a newer connection.
            return trace!("event for token {key}, closed earlier in this turn: ignored");
        }
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        conn.on_event(event.readable, event.hangup);
        self.serve(key);
    }

    /// Moves one connection as far as one turn allows and acts on its
    /// verdict, with a look at it before and after for whoever watches (the
    /// event stream, the trace; nothing when nobody does).
    fn serve(&mut self, key: usize) {
        let before = self.live.before(&self.conns[key]);
        let verdict = self.advance(key).unwrap_or_else(Verdict::Close);
        self.act(key, verdict);
        self.live.after(before, &self.conns);
        // A new subscriber to the event stream took a slot from another
        // (all were taken): that one closes now, once the newcomer's answer
        // has left the shared output buffer.
        if let Some((victim, serial)) = self.giving_way.take() {
            if self.conns.get(victim).is_some_and(|c| c.serial() == serial) {
                self.close(victim, CloseReason::GaveWayToViewer);
            }
        }
    }

    /// Moves one connection as far as one turn allows: continue what the
    /// last turn left, or read and answer new requests; write; then ask the
    /// connection what comes next. Closes nothing itself: a failure is the
    /// `Err` that `serve` turns into a verdict to close.
    fn advance(&mut self, key: usize) -> std::result::Result<Verdict, CloseReason> {
        match self.conns[key].next_step() {
            Step::Resume => self.resume(key),
            Step::SendFile => {} // `flush` sends it, after anything buffered
            Step::Read => self.read_and_answer(key)?,
            Step::Discard => return Ok(self.conns[key].discard(&mut self.read_buf, self.now)),
            Step::Wait => {}
        }
        self.flush(key)?;
        Ok(self.conns[key].after_serving(&mut self.read_buf, self.now))
    }

    /// Acts on what a connection decided: the one place where a connection
    /// that was served closes, lingers, waits or takes another turn.
    #[inline]
    fn act(&mut self, key: usize, verdict: Verdict) {
        match verdict {
            Verdict::Close(why) => return self.close(key, why),
            Verdict::AnotherTurn => self.schedule(key),
            Verdict::Wait => {}
            Verdict::Linger => {
                self.live.lingering();
                if self.conns[key].next_step() == Step::Discard {
                    self.schedule(key); // the client is still sending: read more next turn
                }
            }
        }
        // What it holds (its body may have opened a file or a directory, or
        // let it go), when it is due, and whether it may make room.
        let conn = &mut self.conns[key];
        let change = conn.recount_descriptor();
        self.bodies_held = self.bodies_held.saturating_add_signed(change);
        if let Some(when) = conn.rearm(self.now, &self.config.timeouts) {
            self.timers.push(when, key, conn.serial());
        }
        self.reclaim.offer(key, conn);
    }

    /// Reads until the socket is empty or this turn's share of input
    /// ([`TURN_INPUT`]) is used, answering each chunk as it comes.
    fn read_and_answer(&mut self, key: usize) -> std::result::Result<(), CloseReason> {
        let mut budget = TURN_INPUT;
        loop {
            match self.conns[key].read_chunk(&mut self.read_buf) {
                ReadOutcome::Data(n) => {
                    self.answer(key, n)?;
                    budget = budget.saturating_sub(n);
                    // Stop at an empty socket, a spent budget, or when the
                    // protocol stops taking input; what is left is noted by
                    // the connection and gets the ready list.
                    if budget == 0 || self.conns[key].next_step() != Step::Read {
                        return Ok(());
                    }
                }
                ReadOutcome::WouldBlock => return Ok(()),
                ReadOutcome::Eof => {
                    self.on_peer_closed(key);
                    return Ok(());
                }
                ReadOutcome::Failed(e) => return Err(CloseReason::Failed(e.to_string())),
            }
        }
    }

    /// Writes what was produced (and anything left from before), and counts
    /// the answers that are now wholly with the kernel.
    fn flush(&mut self, key: usize) -> std::result::Result<(), CloseReason> {
        let served = self.conns[key]
            .send(&mut self.write_buf, self.now)
            .map_err(|e| CloseReason::Failed(e.to_string()))?;
        self.stats.served += served;
        Ok(())
    }

    /// Puts a connection on the ready list: it has work that needs no event
    /// (a file body, waiting requests, unread bytes), and gets it next turn.
    fn schedule(&mut self, key: usize) {
        let conn = &mut self.conns[key];
        if conn.schedule() {
            self.ready.push((key, conn.serial()));
        }
    }

    /// Step 3: gives the listener, the UDP socket and each connection on
    /// the ready list one more turn. The serial number guards against a key
    /// that was closed and reused meanwhile.
    fn run_ready(&mut self) {
        if self.listener_ready {
            self.live.handling(|| (Subject::Listener, Cause::ReadyList));
            self.accept_some();
        }
        if self.datagrams.as_ref().is_some_and(Datagrams::has_work) {
            self.on_datagrams();
        }
        let mut ready = mem::take(&mut self.ready);
        for &(key, serial) in &ready {
            match self.conns.get_mut(key) {
                Some(conn) if conn.serial() == serial => {
                    conn.unschedule();
                    self.live
                        .handling(|| (Subject::Conn(key), Cause::ReadyList));
                    self.serve(key);
                }
                _ => {}
            }
        }
        ready.clear();
        if self.ready.is_empty() {
            self.ready = ready; // keep the allocation
        }
    }

    /// Sets the connection's deadline from what it waits for now (see
    /// [`Connection::rearm`]), pushing a heap entry only when it moved earlier.
    fn rearm(&mut self, key: usize) {
        let conn = &mut self.conns[key];
        if let Some(when) = conn.rearm(self.now, &self.config.timeouts) {
            self.timers.push(when, key, conn.serial());
        }
    }

    /// Step 4: tells the connections whose deadline has come, at most
    /// [`TIMEOUTS_PER_TURN`] (the rest are still due next turn). An entry
    /// whose connection has moved its deadline on is pushed again for the
    /// new time.
    fn fire_timers(&mut self) {
        // Stale entries cost a pop each; they get a larger share.
        let mut budget = TIMEOUTS_PER_TURN * 8;
        while budget > 0 {
            let Some((when, key, serial)) = self.timers.pop_due(self.now) else {
                return;
            };
            budget -= 1;
            let Some(conn) = self.conns.get_mut(key).filter(|c| c.serial() == serial) else {
                continue; // a closed connection's entry
            };
            match conn.on_timer(when, self.now) {
                Fired::Stale => {}
                Fired::Moved(later) => self.timers.push(later, key, serial),
                Fired::Due => {
                    budget = budget.saturating_sub(7);
                    self.live.handling(|| (Subject::Conn(key), Cause::Timer));
                    let before = self.live.before(&self.conns[key]);
                    self.on_deadline(key);
                    self.live.after(before, &self.conns);
                }
            }
        }
    }

    /// A connection's deadline passed: it says what that means (see
    /// [`Connection::on_deadline`]), and the loop acts on it.
    fn on_deadline(&mut self, key: usize) {
        let Some(expiry) = self.conns[key].on_deadline() else {
            return; // it waits for nothing that can be late
        };
        self.live.expired(&expiry);
        let remote = self.conns[key].peer().remote;
        let verdict = match expiry {
            Expiry::Close(why) => {
                if why != CloseReason::IdleTimeout && why != CloseReason::LingerTimeUp {
                    info!("{remote}: {why}; closing");
                }
                Verdict::Close(why)
            }
            Expiry::RequestTimeout => {
                info!("{remote}: header timeout, the request did not arrive in time: 408");
                self.with_session(key, |session, ctx, _, out| session.on_timeout(ctx, out));
                self.conns[key].stop_reading();
                match self.flush(key) {
                    Ok(()) => self.conns[key].after_serving(&mut self.read_buf, self.now),
                    Err(why) => Verdict::Close(why),
                }
            }
        };
        self.act(key, verdict);
    }

    /// Closes a connection now: removing it from the slab closes its socket
    /// and drops whatever it held (a file body being sent, its buffers). Its
    /// timer entry and ready-list entry go stale (their serial no longer
    /// matches); events still queued in this turn for its key are dropped
    /// by `on_connection_event`.
    fn close(&mut self, key: usize, why: CloseReason) {
        let conn = self.conns.remove(key);
        if conn.counted_descriptor() {
            self.bodies_held -= 1; // closed with the connection, below
        }
        // Only the connection being served has output in the shared buffer
        // (a read failed after some answers were produced): it goes with the
        // connection, or the next one to write would send it.
        self.write_buf.clear();
        if self.freed_in_turn.len() <= key {
            self.freed_in_turn.resize(key + 1, 0);
        }
        self.freed_in_turn[key] = self.turn;
        self.live.closed(key, &conn, &why);
        let (bytes_in, bytes_out, requests) = conn.counters();
        debug!(
            "close {}, token {key} ({why}): {bytes_in} in, {bytes_out} out, {requests} {}; {} open",
            conn.peer(),
            if requests == 1 { "request" } else { "requests" },
            self.conns.len()
        );
        drop(conn);
        if self.accept_paused {
            // A descriptor was freed: take the connections waiting in the backlog.
            self.listener_ready = true;
        }
    }

    /// Step 5: each owner beside the loop gets its tick.
    fn tick(&mut self) {
        let conns = &self.conns;
        self.timers.sweep(conns.len(), |key, serial, when| {
            conns
                .get(key)
                .is_some_and(|c| c.serial() == serial && c.is_armed_at(when))
        });
        let in_use = self.descriptors_in_use();
        self.reclaim
            .tick(&self.conns, in_use, self.config.max_conns);
        if self.accept_paused && !self.listener_ready {
            self.live.handling(|| (Subject::Listener, Cause::Timer));
            self.accept_some();
        }
        if self.seat.as_ref().is_some_and(|s| s.post_due(self.now)) {
            self.post_on_board();
        }
        if let Some(stats) = self.datagrams.as_mut().and_then(|d| d.tick(self.now)) {
            self.live.udp_counted(stats);
        }
        if self.shutdown.grace_over(self.now) && !self.conns.is_empty() {
            if self.stats.handed_over_to.is_some() {
                self.stats.cut_after_handover += self.conns.len() as u64;
            }
            warn!(
                "shutdown grace of {:?} is over: closing {} connections",
                self.shutdown.grace(),
                self.conns.len()
            );
            self.close_all(CloseReason::ShutdownGraceOver);
        }
        if self.write_buf.capacity() > 4 * READ_BUFFER {
            // A huge response (a big /_/conns) grew the shared buffer; give it back.
            self.write_buf = Vec::with_capacity(READ_BUFFER);
        }
    }

    /// Step 6: tells whoever watches. The event stream's subscribers get
    /// this turn's events, each in one write (a subscriber too far behind
    /// gets nothing and is told to re-sync later; see
    /// [`crate::live::events`]), and the trace prints the turn.
    fn publish(&mut self) {
        let (accepted, served) = (self.stats.accepted, self.stats.served);
        let subscribers = self.live.end_turn(&self.conns, accepted, served, self.now);
        for (key, serial) in subscribers {
            let Some(conn) = self.conns.get(key) else {
                continue;
            };
            if conn.serial() != serial || !conn.is_streaming() {
                continue;
            }
            self.live
                .deliver(key, serial, conn.unsent(), &mut self.write_buf);
            if !self.write_buf.is_empty() {
                match self.flush(key) {
                    Ok(()) => self.rearm(key),
                    Err(why) => self.close(key, why),
                }
            }
        }
        self.live.finish_turn(self.conns.len());
        if let (Some(lines), Some(sink)) = (&self.access_log, &self.config.output.access) {
            lines.hand_over(|lines| sink.write(lines));
        }
    }

    /// What the signal pipe says: SIGUSR1 writes the connection table to the
    /// log; SIGINT or SIGTERM stops (see [`shutdown`]).
    fn on_signals(&mut self) {
        let orders = self.shutdown.on_signals(self.now);
        if orders.log_table {
            let table = self.view().snapshot(usize::MAX).render_text();
            info!("connection table (SIGUSR1):\n{table}");
        }
        match orders.stop {
            None => {}
            Some(Stop::Gracefully(signal)) => self.stop_gracefully(&format!("signal {signal}")),
            Some(Stop::HandedOver(pid)) => {
                self.stats.handed_over_to = Some(pid);
                self.stats.open_at_handover = self.conns.len() as u64;
                self.stop_gracefully(&format!("handed over to pid {pid}"));
            }
            Some(Stop::Now) => {
                info!(
                    "second signal: closing {} connections now",
                    self.conns.len()
                );
                self.close_all(CloseReason::SecondSignal);
            }
        }
    }

    /// Stops accepting, closes idle connections, lets the others finish the
    /// request they are in.
    fn stop_gracefully(&mut self, why: &str) {
        info!(
            "{why}: shutting down; {} connections open",
            self.conns.len()
        );
        self.live.note(format_args!(
            "{why}: no more accepts; idle connections close, busy ones finish"
        ));
        self.listener_ready = false;
        if let Some(mut listener) = self.listener.take() {
            let _ = self.poll.registry().deregister(&mut listener);
        }
        if let Some(datagrams) = self.datagrams.take() {
            datagrams.deregister(self.poll.registry());
        }
        // Closing connections while iterating over their keys is safe here:
        // this runs between events, and any event of this turn still to come
        // for a key closed now is dropped (see `freed_in_turn`).
        let keys: Vec<usize> = self.conns.iter().map(|(key, _)| key).collect();
        for key in keys {
            // In a handover no connection is closed here, not even an idle
            // one: its client may be sending its next request this very
            // moment, and a close would turn the restart into a reset for
            // it. Each gets its next answer, marked `Connection: close`,
            // and closes after it; what is still idle when the grace ends
            // is closed then.
            let handing_over = self.stats.handed_over_to.is_some();
            if self.conns[key].on_shutdown() && !handing_over {
                self.close(key, CloseReason::Shutdown);
            }
        }
    }

    fn close_all(&mut self, why: CloseReason) {
        let keys: Vec<usize> = self.conns.iter().map(|(key, _)| key).collect();
        for key in keys {
            self.close(key, why.clone());
        }
    }

    /// The slab as the HTTP code sees it.
    fn view(&self) -> SlabView<'_> {
        SlabView {
            conns: &self.conns,
            udp: self.datagrams.as_ref().map(Datagrams::udp),
            seat: self.seat.as_ref(),
            listen: self.local_addr,
            started: self.started,
            stats: self.stats,
            cache: &self.table_cache,
            pieces_left: &self.pieces_left,
            live: &self.live,
            output: &self.config.output,
        }
    }

    fn finished(&self) -> bool {
        self.shutdown.begun() && self.conns.is_empty()
    }
}

#[cfg(test)]
mod tests;
