//! The client's event loop: one thread, one `Poll`, a slab of probes.
//!
//! A *probe* is one socket the client opened (a TCP connection, or a UDP
//! socket) and what became of it. Its token is its slab key, as in the
//! server. Each probe goes through a few phases:
//!
//! ```text
//!  TCP:   Connecting ──> Open ────────────────> Done
//!            (--http)└─> Asking ──> Open ───┘
//!  UDP:   Asking (datagram sent) ──> Open ──> Done
//! ```
//!
//! *Asking* waits for the server's answer (`/_/whoami`, or the UDP reply);
//! *Open* holds the socket until the run ends. Each turn of the loop
//! ([`Client::run`]) is a list of named steps, as in the reactor:
//! 1. `launch`: open sockets until `--concurrency` are in their first
//!    phase (one at a time until an address of the target answers);
//! 2. `wait`: sleep in `epoll_wait` until a socket is ready, the nearest
//!    deadline passes, or the progress line is due;
//! 3. for each event: a signal ends the run (`on_signal`); a probe's event
//!    moves it on (`on_stream_event`, `on_datagram_event`);
//! 4. `run_ready`: read more from connections whose reads were cut short
//!    by the turn's budget;
//! 5. `fire_timers`: time out probes whose deadline has passed, from the
//!    same lazy heap of deadlines the server uses ([`Timers`]);
//! 6. `report_progress`: tell the observer how far the run is.

use std::fmt::Write as _;
use std::mem;
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use mio::event::Source;
use mio::net::{TcpStream, UdpSocket};
use mio::{Events, Interest, Registry, Token};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook_mio::v1_0::Signals;
use slab::Slab;

use crate::error::Result;
use crate::sys;
use crate::timer::Timers;

use super::answer::{first_line, judge_datagram, judge_whoami, shortened, Verdict};
use super::datagram;
use super::failure::Failure;
use super::plan::{Mode, Plan, Targets};
use super::report::{display_reply, Outcome};
use super::stream::{self, Reading};
use super::{Observer, Underway};

/// The token of the signal pipe; slab keys count up from 0 and never reach it.
const SIGNALS: Token = Token(usize::MAX - 1);

/// Size of the one read buffer every connection reads into.
const READ_BUFFER: usize = 64 * 1024;

/// Events taken from the kernel per `epoll_wait`.
const EVENTS_PER_POLL: usize = 1024;

/// Where a probe is in its life; see the module comment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Connecting,
    Asking,
    Open,
    Done,
}

/// A probe's socket: one kind or the other, registered in the same `Poll`.
enum Link {
    Stream(TcpStream),
    Datagram(UdpSocket),
}

impl Source for Link {
    fn register(
        &mut self,
        registry: &Registry,
        token: Token,
        interests: Interest,
    ) -> std::io::Result<()> {
        match self {
            Link::Stream(s) => s.register(registry, token, interests),
            Link::Datagram(d) => d.register(registry, token, interests),
        }
    }

    fn reregister(
        &mut self,
        registry: &Registry,
        token: Token,
        interests: Interest,
    ) -> std::io::Result<()> {
        match self {
            Link::Stream(s) => s.reregister(registry, token, interests),
            Link::Datagram(d) => d.reregister(registry, token, interests),
        }
    }

    fn deregister(&mut self, registry: &Registry) -> std::io::Result<()> {
        match self {
            Link::Stream(s) => s.deregister(registry),
            Link::Datagram(d) => d.deregister(registry),
        }
    }
}

/// One socket the client opened, and what became of it.
struct Probe {
    /// `None` once the probe is over (or if it never got a socket).
    link: Option<Link>,
    phase: Phase,
    /// The order it was opened in; tells a reused slab key apart in the
    /// timer heap and the ready list.
    serial: u64,
    /// When the connect (TCP) or the datagram (UDP) started.
    started: Instant,
    /// When the current phase times out, if it can.
    due: Option<Instant>,
    /// How much of the payload has been written (TCP).
    written: usize,
    reply: Vec<u8>,
    outcome: Outcome,
}

/// What an event says about a probe's socket.
#[derive(Debug, Clone, Copy)]
struct Readiness {
    readable: bool,
    writable: bool,
}

impl From<&mio::event::Event> for Readiness {
    fn from(event: &mio::event::Event) -> Readiness {
        // An error (a refused connect, an ICMP error on a UDP socket) is
        // read from the socket itself, by whichever call comes next.
        Readiness {
            readable: event.is_readable() || event.is_read_closed() || event.is_error(),
            writable: event.is_writable() || event.is_error(),
        }
    }
}

/// The client's event loop and everything it owns.
pub(super) struct Client<'a> {
    plan: &'a Plan,
    observer: &'a mut dyn Observer,
    poll: mio::Poll,
    signals: Signals,
    probes: Slab<Probe>,
    timers: Timers,
    /// Connections whose reads were cut short by the turn's budget, with
    /// their serial numbers.
    ready: Vec<(usize, u64)>,
    targets: Targets,
    /// Probes started (serial numbers come from here too).
    launched: usize,
    next_serial: u64,
    connecting: usize,
    asking: usize,
    open: usize,
    failed: usize,
    /// When every probe had been started and every connect had ended:
    /// the hold starts.
    all_up: Option<Instant>,
    interrupted: bool,
    read_buf: Vec<u8>,
    /// When the observer is next told how the run goes.
    next_report: Option<Instant>,
}

impl<'a> Client<'a> {
    pub fn new(plan: &'a Plan, observer: &'a mut dyn Observer) -> Result<Client<'a>> {
        let (poll, signals) = sys::poll_with_signals(&[SIGINT, SIGTERM], SIGNALS)?;
        let next_report = observer.interval().map(|every| Instant::now() + every);
        Ok(Client {
            plan,
            observer,
            poll,
            signals,
            probes: Slab::with_capacity(plan.count),
            timers: Timers::default(),
            ready: Vec::new(),
            targets: Targets::new(plan.targets.clone()),
            launched: 0,
            next_serial: 0,
            connecting: 0,
            asking: 0,
            open: 0,
            failed: 0,
            all_up: None,
            interrupted: false,
            read_buf: vec![0; READ_BUFFER],
            next_report,
        })
    }

    /// Runs until every probe is done, or held for `--hold` once all are
    /// up, or Ctrl-C; returns one outcome per probe, in the order they
    /// were opened.
    pub fn run(mut self) -> Result<Vec<Outcome>> {
        let mut events = Events::with_capacity(EVENTS_PER_POLL);
        loop {
            self.launch();
            if self.finished() {
                break;
            }
            let deadline = self.next_deadline();
            sys::poll_until(&mut self.poll, &mut events, deadline, Instant::now())?;
            for event in events.iter() {
                match event.token() {
                    SIGNALS => self.on_signal(),
                    Token(key) => self.on_event(key, Readiness::from(event)),
                }
            }
            self.run_ready();
            self.fire_timers();
            self.report_progress();
        }
        self.observer.finish();
        Ok(self.outcomes())
    }

    /// Step 1: starts probes until `--concurrency` are in their first
    /// phase (one, until the address is settled).
    fn launch(&mut self) {
        while self.launched < self.plan.count && self.in_flight() < self.concurrency() {
            let source = self.plan.source(self.launched);
            let target = self.targets.current();
            self.launched += 1;
            if let Err(failure) = self.start(target, source) {
                if self.targets.try_next(&failure) {
                    self.launched -= 1;
                    continue;
                }
                // Failed before any exchange (no free port, say): a record
                // without a socket.
                self.failed += 1;
                let serial = self.serial();
                self.probes.insert(Probe {
                    link: None,
                    phase: Phase::Done,
                    serial,
                    started: Instant::now(),
                    due: None,
                    written: 0,
                    reply: Vec::new(),
                    outcome: Outcome {
                        error: Some(failure),
                        ..Outcome::new(self.plan.mode.proto(), target, source)
                    },
                });
            }
        }
        if self.all_up.is_none() && self.launched == self.plan.count && self.connecting == 0 {
            self.all_up = Some(Instant::now());
        }
    }

    /// Probes allowed in their first phase at once: `--concurrency`, or one
    /// while the target's address is not settled.
    fn concurrency(&self) -> usize {
        if self.targets.is_settled() {
            self.plan.concurrency
        } else {
            1
        }
    }

    /// Probes in their first phase, which `--concurrency` bounds.
    fn in_flight(&self) -> usize {
        match self.plan.mode {
            Mode::Udp => self.asking,
            Mode::Tcp | Mode::Http => self.connecting,
        }
    }

    fn serial(&mut self) -> u64 {
        self.next_serial += 1;
        self.next_serial
    }

    /// Opens one probe's socket and puts it in the slab; or says why it
    /// could not (the record then has no local end: nothing left from it).
    fn start(
        &mut self,
        target: SocketAddr,
        source: Option<IpAddr>,
    ) -> std::result::Result<(), Failure> {
        let outcome = Outcome::new(self.plan.mode.proto(), target, source);
        // Before the connect call: on loopback the handshake is often over
        // by the time it returns.
        let started = Instant::now();
        let mut link = match self.plan.mode {
            Mode::Tcp | Mode::Http => Link::Stream(stream::start(target, source)?),
            Mode::Udp => Link::Datagram(datagram::open(target, source)?.0),
        };
        let serial = self.serial();
        let entry = self.probes.vacant_entry();
        let key = entry.key();
        let interest = match link {
            Link::Stream(_) => Interest::READABLE | Interest::WRITABLE,
            Link::Datagram(_) => Interest::READABLE,
        };
        if let Err(e) = self
            .poll
            .registry()
            .register(&mut link, Token(key), interest)
        {
            return Err(Failure::Other(format!("registering the socket: {e}")));
        }
        entry.insert(Probe {
            link: Some(link),
            phase: Phase::Connecting,
            serial,
            started,
            due: None,
            written: 0,
            reply: Vec::new(),
            outcome,
        });
        match self.plan.mode {
            Mode::Tcp | Mode::Http => {
                self.connecting += 1;
                self.set_due(key, self.plan.timeout.map(|t| started + t));
                Ok(())
            }
            Mode::Udp => self.send_datagram(key),
        }
    }

    /// A UDP probe's one datagram. The socket is registered first, so that
    /// an answer (or an ICMP error) is announced however fast it comes.
    fn send_datagram(&mut self, key: usize) -> std::result::Result<(), Failure> {
        let probe = &mut self.probes[key];
        let Some(Link::Datagram(socket)) = &probe.link else {
            return Ok(());
        };
        probe.outcome.local = socket.local_addr().ok();
        probe.started = Instant::now();
        match datagram::send(socket, &self.plan.payload) {
            Ok(n) => {
                probe.outcome.sent = n as u64;
                probe.outcome.padding = self.plan.padding as u64;
                probe.phase = Phase::Asking;
                self.asking += 1;
                let due = self.plan.timeout.map(|t| self.probes[key].started + t);
                self.set_due(key, due);
                Ok(())
            }
            Err(failure) => {
                // Dropped here: the socket closes. `launch` tries the next
                // address or records the failure.
                self.probes.remove(key);
                Err(failure)
            }
        }
    }

    /// Records when the probe's current phase times out and tells the
    /// timer heap; `None` clears it (the heap's entry is then stale, and
    /// skipped when it comes due).
    fn set_due(&mut self, key: usize, due: Option<Instant>) {
        let probe = &mut self.probes[key];
        probe.due = due;
        if let Some(when) = due {
            self.timers.push(when, key, probe.serial);
        }
    }

    /// Step 3 for the signal pipe: SIGINT or SIGTERM ends the run (and the
    /// hold) now; the report is still printed.
    fn on_signal(&mut self) {
        if self.signals.pending().next().is_some() {
            self.interrupted = true;
        }
    }

    /// Step 3 for a probe.
    fn on_event(&mut self, key: usize, readiness: Readiness) {
        match self.probes.get(key).and_then(|p| p.link.as_ref()) {
            Some(Link::Stream(_)) => self.on_stream_event(key, readiness),
            Some(Link::Datagram(_)) if readiness.readable => self.on_datagram_event(key),
            // Over already (an event of this batch for a probe closed
            // earlier in it), or nothing to read.
            _ => {}
        }
    }

    /// A TCP probe: the end of its handshake, then payload out, reply in.
    fn on_stream_event(&mut self, key: usize, readiness: Readiness) {
        let probe = &mut self.probes[key];
        if probe.phase == Phase::Connecting {
            let Some(Link::Stream(stream)) = &probe.link else {
                return;
            };
            if !readiness.writable {
                return;
            }
            match stream::connect_result(stream) {
                Ok(None) => return, // a spurious wake-up: still connecting
                Ok(Some(local)) => self.connected(key, local),
                Err(e) => return self.attempt_failed(key, Failure::from_io(&e)),
            }
        }
        self.exchange(key, readiness.readable);
    }

    /// The handshake is over: the kernel has chosen this end's port.
    fn connected(&mut self, key: usize, local: SocketAddr) {
        self.targets.settle();
        self.connecting -= 1;
        let probe = &mut self.probes[key];
        probe.outcome.local = Some(local);
        probe.outcome.connect_ms = Some(probe.started.elapsed().as_secs_f64() * 1e3);
        if self.plan.mode == Mode::Http {
            probe.phase = Phase::Asking;
            self.asking += 1;
            // The answer gets a timeout of its own after the connect's.
            let due = self.plan.timeout.map(|t| probe.started + t * 2);
            self.set_due(key, due);
        } else {
            probe.phase = Phase::Open;
            self.open += 1;
            self.set_due(key, None);
        }
    }

    /// Writes what is left of the payload, reads what has come (at most a
    /// turn's budget), and judges the answer to `--http`. The answer is
    /// judged before a close is handled: a server that answers and closes
    /// at once sends both in one event.
    fn exchange(&mut self, key: usize, readable: bool) {
        let probe = &mut self.probes[key];
        let Some(Link::Stream(stream)) = probe.link.as_mut() else {
            return;
        };
        let plan = self.plan;
        if let Err(e) = stream::write_payload(
            stream,
            &plan.payload,
            &mut probe.written,
            &mut probe.outcome.sent,
        ) {
            return self.fail(key, Failure::from_io(&e));
        }
        let mut reading = Reading::Drained;
        if readable {
            let got = stream::read_reply(
                stream,
                &mut self.read_buf,
                &mut probe.reply,
                &mut probe.outcome.received,
            );
            match got {
                Ok(r) => reading = r,
                Err(e) => return self.fail(key, Failure::from_io(&e)),
            }
        }
        let closed = reading == Reading::Closed;
        if probe.phase == Phase::Asking {
            match judge_whoami(&probe.reply, closed) {
                Verdict::Pending if closed => {
                    let failure = if probe.reply.is_empty() {
                        Failure::NoAnswer
                    } else {
                        Failure::NotWhoami(format!(
                            "\"{}\", then closed mid-answer",
                            first_line(&probe.reply)
                        ))
                    };
                    return self.fail(key, failure);
                }
                Verdict::Pending => {}
                Verdict::Whoami(view) => self.answered(key, view),
                Verdict::NotWhoami(what) => return self.fail(key, Failure::NotWhoami(what)),
            }
        }
        if closed {
            self.finish(key);
        } else if reading == Reading::Budget {
            let serial = self.probes[key].serial;
            self.ready.push((key, serial));
        }
    }

    /// A UDP probe: its one answer, or the ICMP error in its place. Once
    /// answered, a probe reads nothing more (later datagrams stay unread
    /// until the socket closes).
    fn on_datagram_event(&mut self, key: usize) {
        let probe = &mut self.probes[key];
        let Some(Link::Datagram(socket)) = &probe.link else {
            return;
        };
        if probe.phase != Phase::Asking {
            return;
        }
        let buf = &mut self.read_buf[..datagram::ANSWER_LIMIT];
        match datagram::receive(socket, buf) {
            Ok(None) => {} // a spurious wake-up
            Ok(Some(got)) => {
                probe.outcome.received += got.len as u64;
                probe.outcome.answer_ms = Some(probe.started.elapsed().as_secs_f64() * 1e3);
                probe.reply = buf[..got.kept].to_vec();
                if got.len > got.kept {
                    let what = format!(
                        "a datagram of {} bytes, longer than any fivetuple answer (its first {} kept)",
                        got.len, got.kept
                    );
                    return self.fail(key, Failure::NotUdpAnswer(what));
                }
                if probe.reply == self.plan.payload {
                    // An echo server sends the datagram back, padding and
                    // all: name it, and show the payload without the zeros.
                    probe
                        .reply
                        .truncate(self.plan.payload.len() - self.plan.padding);
                    let mut what =
                        format!("our own datagram back: \"{}\"", shortened(&probe.reply));
                    if self.plan.padding > 0 {
                        let _ = write!(what, " and {} bytes of padding", self.plan.padding);
                    }
                    return self.fail(key, Failure::NotUdpAnswer(what));
                }
                match judge_datagram(&probe.reply) {
                    Ok(view) => {
                        self.targets.settle();
                        self.answered(key, view);
                    }
                    Err(what) => self.fail(key, Failure::NotUdpAnswer(what)),
                }
            }
            Err(e) => self.attempt_failed(key, datagram::from_udp_error(&e)),
        }
    }

    /// The server said what it saw: the question is answered.
    fn answered(&mut self, key: usize, view: String) {
        let probe = &mut self.probes[key];
        probe.outcome.server_view = Some(view);
        probe
            .outcome
            .answer_ms
            .get_or_insert(probe.started.elapsed().as_secs_f64() * 1e3);
        probe.phase = Phase::Open;
        self.asking -= 1;
        self.open += 1;
        self.set_due(key, None);
    }

    /// A probe's first step failed: try the target's next address if that
    /// may help (forgetting this attempt; `launch` makes it again), or
    /// record the failure.
    ///
    /// No probe is started while a batch of events is handled, so no later
    /// event of this batch can reach a new owner of the freed key; the
    /// timer heap and the ready list carry the probe's serial number.
    fn attempt_failed(&mut self, key: usize, failure: Failure) {
        if !self.targets.try_next(&failure) {
            return self.fail(key, failure);
        }
        let probe = self.probes.remove(key);
        match probe.phase {
            Phase::Connecting => self.connecting -= 1,
            Phase::Asking => self.asking -= 1,
            Phase::Open | Phase::Done => {}
        }
        self.launched -= 1;
        self.all_up = None;
    }

    fn fail(&mut self, key: usize, failure: Failure) {
        self.probes[key].outcome.error = Some(failure);
        self.finish(key);
    }

    /// Ends a probe: closes its socket, keeps its record.
    fn finish(&mut self, key: usize) {
        let probe = &mut self.probes[key];
        match probe.phase {
            Phase::Connecting => self.connecting -= 1,
            Phase::Asking => self.asking -= 1,
            Phase::Open => self.open -= 1,
            Phase::Done => return,
        }
        probe.phase = Phase::Done;
        probe.due = None;
        if probe.outcome.error.is_some() {
            self.failed += 1;
        }
        if let Some(mut link) = probe.link.take() {
            let _ = self.poll.registry().deregister(&mut link);
            // Dropped here: the socket closes, its descriptor is free again.
        }
    }

    /// Step 4: reads cut short by the budget get another turn.
    fn run_ready(&mut self) {
        for (key, serial) in mem::take(&mut self.ready) {
            let live = self
                .probes
                .get(key)
                .is_some_and(|p| p.serial == serial && p.phase != Phase::Done);
            if live {
                self.exchange(key, true);
            }
        }
    }

    /// Step 5: the probes whose deadline has passed time out. An entry is
    /// stale when its probe is gone (the serial differs) or its deadline
    /// has changed since (connected, answered).
    fn fire_timers(&mut self) {
        let now = Instant::now();
        while let Some((when, key, serial)) = self.timers.pop_due(now) {
            let Some(probe) = self.probes.get(key) else {
                continue;
            };
            if probe.serial != serial || probe.due != Some(when) {
                continue;
            }
            let failure = match (probe.phase, self.plan.mode) {
                (Phase::Asking, Mode::Udp) => Failure::Unanswered,
                (Phase::Connecting | Phase::Asking, _) => Failure::TimedOut,
                (Phase::Open | Phase::Done, _) => continue,
            };
            self.fail(key, failure);
        }
    }

    /// Step 6: the observer's progress line, at the pace it asked for.
    fn report_progress(&mut self) {
        let (Some(at), Some(every)) = (self.next_report, self.observer.interval()) else {
            return;
        };
        let now = Instant::now();
        if now < at {
            return;
        }
        self.next_report = Some(now + every);
        let (up, what) = match self.plan.mode {
            Mode::Udp => (self.open, "answered"),
            Mode::Tcp | Mode::Http => (self.open + self.asking, "connected"),
        };
        let underway = Underway {
            total: self.plan.count,
            up,
            what,
            failed: self.failed,
            hold_left: self
                .hold_end()
                .map(|end| end.saturating_duration_since(now)),
        };
        self.observer.update(&underway);
    }

    fn hold_end(&self) -> Option<Instant> {
        self.all_up.map(|up| up + self.plan.hold)
    }

    /// Done when interrupted, or once all are up and either none is left
    /// open or the answers are in and the hold is over.
    fn finished(&self) -> bool {
        if self.interrupted {
            return true;
        }
        let Some(end) = self.hold_end() else {
            return false;
        };
        self.open + self.asking == 0 || (self.asking == 0 && Instant::now() >= end)
    }

    /// When to wake up if nothing happens: at once if reads are waiting;
    /// else the nearest of the probes' deadlines, the end of the hold (once
    /// no answer is awaited: until then the answers decide), and the
    /// progress line.
    fn next_deadline(&self) -> Option<Instant> {
        if !self.ready.is_empty() {
            return Some(Instant::now());
        }
        let hold_end = self.hold_end().filter(|_| self.asking == 0);
        [self.timers.next(), hold_end, self.next_report]
            .into_iter()
            .flatten()
            .min()
    }

    /// Every probe's record, in the order they were opened.
    fn outcomes(self) -> Vec<Outcome> {
        let mut probes: Vec<Probe> = self.probes.into_iter().map(|(_, p)| p).collect();
        probes.sort_by_key(|p| p.serial);
        probes
            .into_iter()
            .map(|p| Outcome {
                reply: display_reply(&p.reply),
                ..p.outcome
            })
            .collect()
    }
}
