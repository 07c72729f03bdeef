//! The event loop: one thread, one `mio::Poll`, a slab of connections.
//!
//! ```text
//! Reactor
//!  ├─ poll: Poll                one epoll instance, one thread
//!  ├─ listener                  Token(LISTENER)  0.0.0.0:500        LISTEN
//!  ├─ shutdown                  Token(SIGNALS)   SIGINT, SIGTERM, SIGUSR1
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
//! The owners beside the loop live in their own files: [`shutdown`] (the
//! signals and the grace), [`board`] (the workers' board and the cadence
//! of this worker's posts), [`datagrams`] (the UDP socket), [`sockets`]
//! (where the sockets come from) and [`host`] (the server as the protocol
//! sees it, for `/_/conns` and `/_/metrics`).
//!
//! Two rules hold the loop together when clients are faster than the
//! server. **Every step does bounded work per turn**: at most
//! [`ACCEPTS_PER_TURN`] accepts, one buffer of input and
//! [`http::TURN_OUTPUT`] of output per connection, and one `sendfile` of
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
use std::io::{self, Read, Write};
use std::mem;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::{debug, info, trace, warn};
use mio::event::Event;
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use slab::Slab;

use crate::connection::{CloseReason, Connection, Expiry, Preface, ReadOutcome, Step, Verdict};
use crate::error::{Error, Result};
use crate::http::{self, response::Clock, AccessLog, Ctx, Endpoints, Progress};
use crate::listener::ListenOptions;
use crate::live::trace::{Alarm, Cause, Subject};
use crate::live::Live;
use crate::sink::Output;
use crate::sys;
use crate::table::DEFAULT_ROWS;
pub use crate::timer::Timeouts;
use crate::timer::{Fired, Timers};

pub mod board;
mod datagrams;
mod host;
mod shutdown;
mod sockets;

use board::{Board, News, Seat};
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

/// Connections accepted per turn of the loop, at most. Accepting "until
/// `WouldBlock`" never ends when clients reconnect as fast as they are
/// served: the backlog refills while we drain it, and every connection
/// already open waits behind it. 32 keeps a turn short (each accept also
/// reads and often answers its request at once, a few microseconds each)
/// while costing one extra `epoll_wait` per 32 connections. nginx takes one
/// per event unless `multi_accept`; h2o caps accepts per wake-up the same way.
pub const ACCEPTS_PER_TURN: usize = 32;

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

/// How long to wait before trying `accept` again after running out of file
/// descriptors, if no connection has closed meanwhile.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);

/// Everything `fivetuple serve` can be told.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: ListenOptions,
    pub http: http::Config,
    /// Most connections held at once; one more is closed as soon as accepted.
    pub max_conns: usize,
    /// After SIGINT/SIGTERM, how long in-flight requests get to finish.
    pub shutdown_grace: Duration,
    pub timeouts: Timeouts,
    /// Also serve UDP on the listener's address and port number (`--udp`).
    pub udp: bool,
    /// Every connection starts with a PROXY protocol header from a load
    /// balancer (`--proxy-protocol`).
    pub proxy_protocol: bool,
    /// Where the log, the access log and the trace go (`crate::sink`):
    /// never written from the loop, only handed over.
    pub output: Output,
}

/// What a run of the server did, printed when it stops.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    pub accepted: u64,
    pub served: u64,
}

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
}

impl Reactor {
    /// Binds the listening socket and registers it and the signal pipe.
    pub fn bind(config: ServerConfig) -> Result<Reactor> {
        let (mut listener, local_addr, udp) = sockets::bind(&config)?;
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
        sys::poll_until(&mut self.poll, events, alarm.map(|(d, _)| d))?;
        self.turn += 1;
        self.now = Instant::now();
        self.clock.refresh();
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

    /// Accepts connections waiting in the backlog, at most
    /// [`ACCEPTS_PER_TURN`]. Edge-triggered: one readable event may stand
    /// for many connections and no other event comes for those already
    /// waiting, so if the budget runs out before `WouldBlock`, the listener
    /// goes on the ready list and gets another turn after everyone else.
    fn accept_some(&mut self) {
        self.listener_ready = false;
        for _ in 0..ACCEPTS_PER_TURN {
            let Some(listener) = &self.listener else {
                return;
            };
            match listener.accept() {
                Ok((stream, remote)) => self.admit(stream, remote),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    return self.live.note("accept would block: the backlog is empty");
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // The client gave up between its handshake and our accept.
                Err(e) if e.kind() == io::ErrorKind::ConnectionAborted => {
                    self.live.accept_failed(&e);
                    continue;
                }
                Err(e) => {
                    self.live.accept_failed(&e);
                    // Out of descriptors (EMFILE, ENFILE) or kernel memory:
                    // retry when a connection closes or after ACCEPT_RETRY.
                    if !self.accept_paused {
                        warn!(
                            "accept: {e}; {} connections open; pausing accept until one closes",
                            self.conns.len()
                        );
                    }
                    self.accept_paused = true;
                    return;
                }
            }
        }
        self.live
            .note("accept budget spent: the listener waits on the ready list");
        trace!("accept budget of {ACCEPTS_PER_TURN} spent: the listener waits on the ready list");
        self.listener_ready = true;
    }

    /// Reads and answers the datagrams waiting on the UDP socket (see
    /// [`Datagrams::on_readable`]).
    fn on_datagrams(&mut self) {
        if let Some(d) = &mut self.datagrams {
            let stats = d.on_readable(&mut self.read_buf, self.now);
            self.live.udp_counted(stats);
        }
    }

    /// Descriptors the server holds for clients: one socket per connection,
    /// plus one per file body being sent. `--max-conns` caps this sum, so the
    /// server refuses or reclaims before the kernel says EMFILE.
    fn descriptors_in_use(&self) -> usize {
        self.conns.len() + self.bodies_held
    }

    /// Puts a newly accepted stream in the slab and registers it under its key.
    fn admit(&mut self, mut stream: TcpStream, remote: SocketAddr) {
        self.accept_paused = false;
        let in_use = self.descriptors_in_use();
        if in_use >= self.config.max_conns {
            // At the cap: make room by closing the connection that owes
            // nothing and has waited longest; never one in the middle of something.
            match self.idlest_reclaimable() {
                Some(key) => self.close(key, CloseReason::Reclaimed),
                None => {
                    self.live.refused(remote);
                    info!(
                        "refusing {remote}: {in_use} descriptors in use, all connections busy (--max-conns)"
                    );
                    return self.refuse(stream);
                }
            }
        }
        // The local address of an accepted socket is the address the client
        // reached. A listener bound to one address (127.0.0.1:500) is only
        // reached there; on the wildcard (0.0.0.0, ::) it can be any of the
        // machine's addresses, and only the kernel knows which (getsockname).
        let local = if self.local_addr.ip().is_unspecified() {
            match stream.local_addr() {
                Ok(local) => local,
                Err(e) => return debug!("dropping {remote}: getsockname: {e}"),
            }
        } else {
            self.local_addr
        };
        // Responses leave in one write each; don't let Nagle hold them back.
        let _ = stream.set_nodelay(true);
        let open = self.conns.len() + 1;
        let entry = self.conns.vacant_entry();
        let key = entry.key();
        // Interested in both directions, once, for the connection's whole
        // life: with edge triggering a writable event only comes after a
        // write found the buffer full, so there is no need to re-register.
        if let Err(e) = self.poll.registry().register(
            &mut stream,
            Token(key),
            Interest::READABLE | Interest::WRITABLE,
        ) {
            return warn!("dropping {remote}: register: {e}");
        }
        self.stats.accepted += 1;
        let peer = Endpoints {
            token: key,
            local,
            remote,
        };
        debug!("accept {peer}, token {key}; {open} open");
        let conn = entry.insert(Connection::new(
            stream,
            peer,
            self.stats.accepted,
            self.now,
            self.config.proxy_protocol,
        ));
        self.live.accepted(conn, self.now);
        // An HTTP client sends its request as soon as it is connected, so
        // the request is often here before we accept. Try a read now rather
        // than one turn of the loop later; if nothing has come, it costs
        // one `WouldBlock`, and the registration reports the data when it comes.
        trace!("token {key}: reading its request right at accept");
        self.serve(key);
    }

    /// Tells a client the server is full, instead of leaving it to wait in
    /// silence: one read to take the request that is usually there already
    /// (so the close is not a reset that destroys the answer, and a HEAD
    /// gets no body), a 503 written straight into the empty send buffer (it
    /// always fits), our FIN, and the socket is closed when `stream` is
    /// dropped.
    fn refuse(&mut self, mut stream: TcpStream) {
        let n = stream.read(&mut self.read_buf).unwrap_or_default();
        let mut page = Vec::new();
        http::session::write_full(&self.read_buf[..n], self.clock.http_date(), &mut page);
        let _ = stream.write(&page);
        let _ = stream.shutdown(std::net::Shutdown::Write);
    }

    /// The connection to close when the server is full (see
    /// [`Connection::reclaim_order`]). A scan, but it runs only when the
    /// server is full.
    fn idlest_reclaimable(&self) -> Option<usize> {
        self.conns
            .iter()
            .filter_map(|(key, c)| c.reclaim_order().map(|order| (order, key)))
            .min()
            .map(|(_, key)| key)
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
        if let Some((victim, serial)) = self.live.take_giving_way() {
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
    fn act(&mut self, key: usize, verdict: Verdict) {
        match verdict {
            Verdict::Close(why) => return self.close(key, why),
            Verdict::Linger => self.live.lingering(),
            Verdict::AnotherTurn => self.schedule(key),
            Verdict::Wait => {}
        }
        if verdict == Verdict::Linger && self.conns[key].next_step() == Step::Discard {
            self.schedule(key); // the client is still sending: read more next turn
        }
        self.recount_descriptor(key);
        self.rearm(key);
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

    /// Hands `n` bytes from the read buffer to the connection's HTTP
    /// session, which appends the responses to `write_buf`; with
    /// `--proxy-protocol`, only what follows the PROXY header.
    fn answer(&mut self, key: usize, n: usize) -> std::result::Result<(), CloseReason> {
        let start = match self.conns[key].take_preface(&self.read_buf[..n]) {
            Preface::Waiting => return Ok(()),
            Preface::Done(start) => start,
            Preface::Invalid(why) => {
                info!("{}: {why}; closing", self.conns[key].peer().remote);
                return Err(CloseReason::ProxyHeaderInvalid(why));
            }
        };
        if start < n {
            self.with_session(key, |session, ctx, read_buf, write_buf| {
                session.feed(&read_buf[start..n], ctx, write_buf)
            });
        }
        Ok(())
    }

    /// Gives the connection's session its next turn without reading.
    fn resume(&mut self, key: usize) {
        self.with_session(key, |session, ctx, _, write_buf| {
            session.resume(ctx, write_buf)
        });
    }

    /// Runs `step` on a connection's HTTP session with a context built from
    /// the reactor, then books the responses it produced.
    fn with_session(
        &mut self,
        key: usize,
        step: impl FnOnce(&mut http::Session, &Ctx<'_>, &[u8], &mut Vec<u8>) -> Progress,
    ) {
        // The session is taken out of the slab for the call, so that
        // `/_/conns` can look at the whole slab while this entry is in use.
        let conn = &mut self.conns[key];
        let mut session = conn.take_session();
        let peer = conn.http_peer();
        // The output buffer is taken out too (an empty Vec costs nothing),
        // so that the rest of the reactor can be lent to the context whole.
        let mut out = mem::take(&mut self.write_buf);
        let view = self.view();
        let ctx = Ctx {
            peer,
            host: &view,
            date: self.clock.http_date(),
            config: &self.config.http,
            shutting_down: self.shutdown.begun(),
            access: self.access_log.as_ref(),
        };
        let progress = step(&mut session, &ctx, &self.read_buf, &mut out);
        self.write_buf = out;
        self.live.answered(&progress);
        let conn = &mut self.conns[key];
        conn.put_session(session, progress);
        if self.live.join(conn, self.now) {
            debug!(
                "{}, token {key}: subscribed to the event stream",
                conn.peer()
            );
        }
    }

    /// The client closed its side: answer what it sent, then close.
    fn on_peer_closed(&mut self, key: usize) {
        self.with_session(key, |session, ctx, _, _| {
            session.on_eof(ctx);
            Progress::default()
        });
        self.conns[key].on_peer_closed();
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

    /// Keeps [`Reactor::bodies_held`] true after a connection was served:
    /// its body may have opened a file or a directory, or let it go.
    fn recount_descriptor(&mut self, key: usize) {
        let change = self.conns[key].recount_descriptor();
        self.bodies_held = self.bodies_held.saturating_add_signed(change);
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
            Some(Stop::Gracefully(signal)) => self.stop_gracefully(signal),
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
    fn stop_gracefully(&mut self, signal: i32) {
        info!(
            "signal {signal}: shutting down; {} connections open",
            self.conns.len()
        );
        self.live.note(format_args!(
            "signal {signal}: no more accepts; idle connections close, busy ones finish"
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
            if self.conns[key].on_shutdown() {
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

    /// This worker's post on the board: its table and its figures.
    fn post_on_board(&mut self) {
        let table = self.view().snapshot(DEFAULT_ROWS);
        let (accepted, served) = (self.stats.accepted, self.stats.served);
        let figures = self.live.figures(&self.conns, accepted, served);
        let news = self.news();
        if let Some(seat) = &mut self.seat {
            seat.post(table, figures, news, self.now);
        }
    }

    /// What changes when this worker has news for the board (see [`News`]).
    fn news(&self) -> News {
        let m = &self.live.metrics;
        [
            self.stats.accepted,
            m.closed,
            m.responses,
            self.stats.served,
            m.udp.map_or(0, |u| u.datagrams_in),
        ]
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

/// What an event says about a connection: the two facts the reactor uses,
/// and what the trace shows.
#[derive(Debug, Clone, Copy)]
struct Readiness {
    /// There may be bytes to read.
    readable: bool,
    /// The client closed its side, or the socket failed: read until the end.
    hangup: bool,
    /// Room in the send buffer (only for the trace: the reactor writes
    /// whenever it has output, and a full buffer keeps it in `out`).
    writable: bool,
    /// The socket failed (only for the trace: `hangup` covers it).
    error: bool,
}

impl Readiness {
    fn cause(self) -> Cause {
        Cause::Event {
            readable: self.readable,
            writable: self.writable,
            hangup: self.hangup && !self.error,
            error: self.error,
        }
    }
}

impl From<&Event> for Readiness {
    fn from(event: &Event) -> Readiness {
        Readiness {
            readable: event.is_readable(),
            hangup: event.is_read_closed() || event.is_error(),
            writable: event.is_writable(),
            error: event.is_error(),
        }
    }
}

/// What a token names, for the trace.
fn subject(token: Token) -> Subject {
    match token {
        LISTENER => Subject::Listener,
        SIGNALS => Subject::Signals,
        UDP => Subject::Udp,
        WAKER => Subject::Waker,
        Token(key) => Subject::Conn(key),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn reactor() -> Reactor {
        Reactor::bind(ServerConfig {
            listen: ListenOptions {
                addr: "127.0.0.1:0".parse().unwrap(),
                backlog: 128,
                ipv6_only: false,
                reuse_port: false,
            },
            http: http::Config::default(),
            max_conns: 100,
            shutdown_grace: Duration::from_secs(1),
            timeouts: Timeouts::default(),
            udp: false,
            proxy_protocol: false,
            output: Output::default(),
        })
        .unwrap()
    }

    /// Accepts until the slab holds `n` entries (the client's connect may
    /// return a moment before the kernel queues the connection for accept).
    fn accept_until(r: &mut Reactor, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while r.conns.len() < n {
            assert!(Instant::now() < deadline, "connection not accepted");
            r.accept_some();
        }
    }

    fn key_of(r: &Reactor, client: &std::net::TcpStream) -> usize {
        let me = client.local_addr().unwrap();
        r.conns
            .iter()
            .find(|(_, c)| c.peer().remote == me)
            .map(|(k, _)| k)
            .unwrap()
    }

    /// What `wait` does between two batches of events, without waiting.
    fn next_turn(r: &mut Reactor) {
        r.turn += 1;
        r.now = Instant::now();
    }

    #[test]
    fn an_event_for_a_closed_token_never_reaches_the_connection_after_it() {
        let mut r = reactor();
        let a = std::net::TcpStream::connect(r.local_addr()).unwrap();
        accept_until(&mut r, 1);
        let key_a = key_of(&r, &a);
        // Something earlier in this turn closed A, which frees its key at once...
        r.close(key_a, CloseReason::Done);
        assert!(
            r.conns.get(key_a).is_none(),
            "closing releases the slot now"
        );
        // ...and then the listener's event accepted B in the same turn.
        let mut b = std::net::TcpStream::connect(r.local_addr()).unwrap();
        accept_until(&mut r, 1);
        let key_b = key_of(&r, &b);
        assert_eq!(key_a, key_b, "the slab hands the freed key to B");
        // B's request is in B's socket, waiting for B's own event.
        b.write_all(b"GET /_/hello HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
        // A's event, still queued in this turn, arrives now: it must not touch B.
        let stale = Readiness {
            readable: true,
            hangup: true,
            writable: true,
            error: false,
        };
        r.on_connection_event(key_a, stale);
        assert_eq!(
            r.conns[key_b].counters(),
            (0, 0, 0),
            "a stale event read B's socket"
        );
        // In the next turn, events for that key are B's own, and reach B.
        next_turn(&mut r);
        let deadline = Instant::now() + Duration::from_secs(10);
        while r.conns[key_b].counters().2 == 0 {
            assert!(Instant::now() < deadline, "B's request was not answered");
            r.on_connection_event(
                key_b,
                Readiness {
                    readable: true,
                    hangup: false,
                    writable: false,
                    error: false,
                },
            );
        }
        assert_eq!(r.conns[key_b].counters().2, 1);
        drop(a);
    }

    #[test]
    fn the_ready_list_skips_a_key_reused_by_a_newer_connection() {
        let mut r = reactor();
        let a = std::net::TcpStream::connect(r.local_addr()).unwrap();
        accept_until(&mut r, 1);
        let key = key_of(&r, &a);
        r.schedule(key);
        r.close(key, CloseReason::Done);
        let b = std::net::TcpStream::connect(r.local_addr()).unwrap();
        accept_until(&mut r, 1);
        assert_eq!(key_of(&r, &b), key);
        r.run_ready();
        assert!(
            r.ready.is_empty(),
            "A's entry was dropped, and B was never scheduled"
        );
        assert!(r.conns[key].schedule(), "B was not on the ready list");
    }

    #[test]
    fn accepts_stop_at_the_budget_and_the_listener_waits_on_the_ready_list() {
        let mut r = reactor();
        let clients: Vec<_> = (0..ACCEPTS_PER_TURN + 5)
            .map(|_| std::net::TcpStream::connect(r.local_addr()).unwrap())
            .collect();
        // A connect returns once the handshake is done, and the kernel has
        // then queued the connection for accept: all of them wait now.
        let deadline = Instant::now() + Duration::from_secs(10);
        r.accept_some();
        assert_eq!(
            r.conns.len(),
            ACCEPTS_PER_TURN,
            "one turn took more (or less) than its budget"
        );
        assert!(r.listener_ready, "the rest must wait on the ready list");
        while r.conns.len() < clients.len() {
            assert!(
                Instant::now() < deadline,
                "the ready list did not accept the rest"
            );
            r.run_ready();
        }
    }

    #[test]
    fn with_nobody_watching_connections_come_and_go_without_the_event_machinery() {
        let mut r = reactor();
        for _ in 0..100 {
            let c = std::net::TcpStream::connect(r.local_addr()).unwrap();
            accept_until(&mut r, 1);
            let key = key_of(&r, &c);
            r.close(key, CloseReason::Done);
            r.publish();
        }
        assert!(
            !r.live.watched(),
            "an event hub or a trace exists for nobody"
        );
        assert_eq!(r.live.next_tick(), None, "the loop wakes for nobody");
    }

    #[test]
    fn the_timer_heap_stays_proportional_to_the_open_connections() {
        let mut r = reactor();
        for _ in 0..3000 {
            let c = std::net::TcpStream::connect(r.local_addr()).unwrap();
            accept_until(&mut r, 1);
            let key = key_of(&r, &c);
            r.close(key, CloseReason::Done);
            r.tick();
        }
        assert!(
            r.timers.len() <= 1024 + 1,
            "{} timer entries for no connection",
            r.timers.len()
        );
    }
}
