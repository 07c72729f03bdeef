//! `serve --trace`: each turn of the event loop, printed as a block.
//!
//! The loop is easiest to understand by watching it. With `--trace`, every
//! turn prints what woke it (and how long it slept), then one line per
//! thing it handled, token by token, with what it did: accepted, read,
//! answered, wrote, would block, closed. A turn looks like this:
//!
//! ```text
//! turn 3 · slept 1.52 s · woke for 1 event
//!   token 0    readable+writable: read 38 bytes, answered 1 request, wrote 147 bytes, now idle
//! ```
//!
//! The lines are not written by the code that does the work: the reactor
//! marks the start and end of serving a connection, and this module tells
//! what happened from the connection's counters and state before and after
//! (bytes in and out, answers written, output left waiting, phase). So the
//! trace cannot drift from what the reactor really did, and the reactor
//! keeps one hook per step instead of a print per line. When `--trace` is
//! off there is no [`Trace`] at all and each hook is one test of an `Option`.
//!
//! A block is handed to the trace's [`Sink`] at the end of its turn, and
//! written to stdout from there in one `write`; a reader of stdout that
//! falls behind loses whole blocks (counted in `/_/metrics`), and the loop
//! never waits for it.

use std::fmt::{self, Write as _};
use std::time::Duration;

use crate::connection::{Connection, Step};
use crate::procnet::TcpState;
use crate::sink::Sink;
use crate::table::Phase;

/// Width of the label column (`LISTENER`, `token 12`).
const LABEL: usize = 10;

/// What a line is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subject {
    Listener,
    Signals,
    /// A connection, by token.
    Conn(usize),
    /// The event stream's subscribers.
    Events,
    /// The UDP socket (`--udp`).
    Udp,
    /// The waker other workers ask for this one's table through.
    Waker,
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Subject::Listener => f.pad("LISTENER"),
            Subject::Signals => f.pad("SIGNALS"),
            Subject::Conn(key) => f.pad(&format!("token {key}")),
            Subject::Events => f.pad("events"),
            Subject::Udp => f.pad("UDP"),
            Subject::Waker => f.pad("WAKER"),
        }
    }
}

/// Why the loop handles something: what the readiness event said, or that
/// it came from the ready list or the timer heap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    Event {
        readable: bool,
        writable: bool,
        hangup: bool,
        error: bool,
    },
    ReadyList,
    Timer,
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Cause::Event {
                readable,
                writable,
                hangup,
                error,
            } => {
                let words = [
                    (readable, "readable"),
                    (writable, "writable"),
                    (hangup, "hangup"),
                    (error, "error"),
                ];
                let mut first = true;
                for (_, word) in words.iter().filter(|(on, _)| *on) {
                    f.write_str(if first { "" } else { "+" })?;
                    f.write_str(word)?;
                    first = false;
                }
                if first {
                    f.write_str("no readiness")?;
                }
                Ok(())
            }
            Cause::ReadyList => f.write_str("ready list"),
            Cause::Timer => f.write_str("timer"),
        }
    }
}

/// What the loop set its alarm for before it slept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alarm {
    /// Work waits on the ready list: poll without sleeping.
    ReadyList,
    /// A connection's deadline (the timer heap's nearest entry).
    Deadline,
    /// Retry a paused `accept`.
    AcceptRetry,
    /// The end of the shutdown grace.
    Grace,
    /// The next `counters` event of the event stream.
    Tick,
    /// A worker's post on the board is due (`--workers N`).
    Post,
}

/// A connection as it was when the reactor began serving it.
#[derive(Debug, Clone, Copy)]
pub struct Before {
    key: usize,
    serial: u64,
    counters: (u64, u64, u64),
    step: Step,
    phase: Phase,
    state: TcpState,
}

impl Before {
    /// The connection's key in the slab.
    pub fn key(&self) -> usize {
        self.key
    }

    /// Only which connection it is: all the event stream needs.
    pub fn key_only(conn: &Connection) -> Before {
        Before {
            key: conn.peer().token,
            serial: conn.serial(),
            counters: (0, 0, 0),
            step: Step::Wait,
            phase: Phase::Idle,
            state: TcpState::Established,
        }
    }

    pub fn of(conn: &Connection) -> Before {
        let (state, phase) = conn.state_and_phase();
        Before {
            key: conn.peer().token,
            serial: conn.serial(),
            counters: conn.counters(),
            step: conn.next_step(),
            phase,
            state,
        }
    }
}

/// A connection closed while it was being served: its last figures.
#[derive(Debug, Clone)]
struct Closed {
    counters: (u64, u64, u64),
    state: TcpState,
    why: String,
}

/// The block of the turn being traced.
#[derive(Debug, Default)]
pub struct Trace {
    block: String,
    /// The connection being served, whose close is told at the end of its line.
    serving: Option<usize>,
    closed_while_serving: Option<Closed>,
    /// The current line has notes already (the next one needs a comma).
    noted: bool,
    /// The first note on the current line is its cause (a colon follows).
    caused: bool,
    /// Connections closed this turn.
    reaped: Vec<usize>,
    /// Lines in this turn's block so far.
    lines: usize,
    /// What the loop's alarm was set for when it slept.
    alarm: Option<Alarm>,
    /// Where each turn's block goes (stdout, through a thread that never
    /// lets a slow reader stop the loop); `None` in tests.
    sink: Option<Sink>,
}

impl Trace {
    /// A trace whose blocks go to `sink`.
    pub fn new(sink: Sink) -> Trace {
        Trace {
            sink: Some(sink),
            ..Trace::default()
        }
    }

    /// A turn begins: how long the loop slept and what woke it.
    pub fn woke(&mut self, turn: u64, slept: Duration, events: usize, alarm: Option<Alarm>) {
        self.block.clear();
        self.reaped.clear();
        self.lines = 0;
        self.alarm = alarm;
        let _ = write!(self.block, "turn {turn} · ");
        if alarm == Some(Alarm::ReadyList) {
            self.block
                .push_str("did not sleep: the ready list has work");
        } else {
            let _ = write!(self.block, "slept {}", human(slept));
        }
        match events {
            0 if alarm == Some(Alarm::ReadyList) => {}
            0 => {
                let why = match alarm {
                    Some(Alarm::Deadline) => "a connection's deadline",
                    Some(Alarm::AcceptRetry) => "retrying accept",
                    Some(Alarm::Grace) => "the end of the shutdown grace",
                    Some(Alarm::Tick) => "the event stream's tick",
                    Some(Alarm::Post) => "its post on the workers' board",
                    Some(Alarm::ReadyList) | None => "nothing (a spurious wake-up)",
                };
                let _ = write!(self.block, " · woke for {why}");
            }
            1 => self.block.push_str(" · woke for 1 event"),
            n => {
                let _ = write!(self.block, " · woke for {n} events");
            }
        }
    }

    /// A new line about `subject`, beginning with its cause.
    pub fn line(&mut self, subject: Subject, cause: Option<Cause>) {
        let _ = write!(self.block, "\n  {subject:<LABEL$} ");
        self.lines += 1;
        self.noted = false;
        self.caused = false;
        if let Some(cause) = cause {
            let _ = write!(self.block, "{cause}");
            self.caused = true;
        }
    }

    /// A line under the last one, with no label of its own.
    pub fn continued(&mut self) {
        let _ = write!(self.block, "\n  {:<LABEL$} ", "");
        self.noted = false;
        self.caused = false;
    }

    /// Appends one note to the current line.
    pub fn note(&mut self, text: fmt::Arguments<'_>) {
        let sep = match (self.caused, self.noted) {
            (true, false) => ": ",
            (_, true) => ", ",
            (false, false) => "",
        };
        self.block.push_str(sep);
        let _ = self.block.write_fmt(text);
        self.noted = true;
    }

    /// A note that starts a line of its own under the current one, unless
    /// the current one has none yet (each accept gets its own line).
    pub fn own_line(&mut self, text: fmt::Arguments<'_>) {
        if self.noted {
            self.continued();
        }
        self.note(text);
    }

    /// A connection was closed. While it is being served the close is told
    /// at the end of its line (after what it read and wrote); otherwise now.
    pub fn closed(&mut self, key: usize, conn: &Connection, why: &str) {
        self.reaped.push(key);
        if self.serving == Some(key) {
            self.closed_while_serving = Some(Closed {
                counters: conn.counters(),
                state: conn.state_and_phase().0,
                why: why.to_string(),
            });
        } else {
            self.note(format_args!("closed token {key} ({why})"));
        }
    }

    /// The reactor is about to serve the connection `before` describes.
    pub fn serving(&mut self, before: &Before) {
        self.serving = Some(before.key);
        self.closed_while_serving = None;
    }

    /// The reactor has served the connection: tells what changed. `conn`
    /// is `None` if it was closed meanwhile.
    pub fn served(&mut self, before: &Before, conn: Option<&Connection>) {
        self.serving = None;
        let conn = conn.filter(|c| c.serial() == before.serial);
        let closed = self.closed_while_serving.take();
        let (counters, state, phase, unsent) = match (conn, &closed) {
            (Some(c), _) => {
                let (state, phase) = c.state_and_phase();
                (c.counters(), state, Some(phase), c.unsent())
            }
            (None, Some(closed)) => (closed.counters, closed.state, None, 0),
            (None, None) => return,
        };
        let read = counters.0 - before.counters.0;
        let answered = counters.2 - before.counters.2;
        let wrote = counters.1 - before.counters.1;
        let fin = state == TcpState::CloseWait && before.state != TcpState::CloseWait;
        let start = self.block.len();
        match before.step {
            Step::Discard if read > 0 => self.note(format_args!("discarded {read} bytes")),
            _ if read > 0 => self.note(format_args!("read {read} bytes")),
            Step::Read if !fin => self.note(format_args!("nothing to read (would block)")),
            _ => {}
        }
        if fin {
            self.note(format_args!("read the client's FIN"));
        }
        if answered > 0 {
            let s = if answered == 1 { "" } else { "s" };
            self.note(format_args!("answered {answered} request{s}"));
        }
        if wrote > 0 {
            self.note(format_args!("wrote {wrote} bytes"));
        }
        if unsent > 0 {
            self.note(format_args!(
                "would block: {unsent} bytes wait for a writable event"
            ));
        }
        let moved = read > 0 || wrote > 0 || fin;
        match (closed, phase) {
            (Some(closed), _) => self.note(format_args!("closed ({})", closed.why)),
            (None, Some(phase)) if moved || phase != before.phase => {
                self.note(format_args!("now {}", phase_words(phase)))
            }
            _ => {}
        }
        if self.block.len() == start {
            self.note(format_args!("nothing to do"));
        }
    }

    /// Ends the turn: the closed connections, then the block goes out in one write.
    pub fn end(&mut self, open: usize) {
        if self.lines == 0 && self.alarm == Some(Alarm::Deadline) {
            // Timer entries are lazy (see src/timer.rs): a deadline that
            // moved later, or a connection that closed, leaves its entry.
            let _ = write!(
                self.block,
                "\n  {:<LABEL$} nothing was due: a stale entry (its deadline moved, or its connection closed)",
                "timers"
            );
        }
        if !self.reaped.is_empty() {
            let _ = write!(self.block, "\n  {:<LABEL$} ", "reaped");
            for (i, key) in self.reaped.iter().enumerate() {
                let sep = if i == 0 { "" } else { ", " };
                let _ = write!(self.block, "{sep}token {key}");
            }
            let _ = write!(self.block, " · {open} open");
        }
        self.block.push_str("\n\n");
        if let Some(sink) = &self.sink {
            sink.write(self.block.as_bytes());
        }
        self.block.clear();
    }
}

fn phase_words(phase: Phase) -> &'static str {
    match phase {
        Phase::Idle => "idle",
        Phase::Reading => "reading (a request has begun)",
        Phase::Writing => "writing",
        Phase::Closing => "closing",
        Phase::Linger => "lingering (the client is still sending)",
        Phase::Stream => "an event stream",
        Phase::Accept => "accepting",
        Phase::Receive => "receiving datagrams",
        Phase::Flow => "a UDP peer",
    }
}

/// A short duration for a person: `35 µs`, `1.2 ms`, `1.52 s`.
pub fn human(d: Duration) -> String {
    let us = d.as_micros();
    match us {
        0..=999 => format!("{us} µs"),
        1_000..=999_999 => format!("{:.1} ms", d.as_secs_f64() * 1e3),
        _ => format!("{:.2} s", d.as_secs_f64()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_at_a_glance() {
        assert_eq!(human(Duration::from_micros(35)), "35 µs");
        assert_eq!(human(Duration::from_micros(1234)), "1.2 ms");
        assert_eq!(human(Duration::from_millis(1520)), "1.52 s");
    }

    #[test]
    fn a_line_is_a_label_a_cause_and_notes() {
        let mut t = Trace::default();
        t.woke(3, Duration::from_millis(1520), 1, Some(Alarm::Deadline));
        t.line(
            Subject::Conn(0),
            Some(Cause::Event {
                readable: true,
                writable: true,
                hangup: false,
                error: false,
            }),
        );
        t.note(format_args!("read 38 bytes"));
        t.note(format_args!("now idle"));
        assert_eq!(
            t.block,
            "turn 3 · slept 1.52 s · woke for 1 event\n  token 0    readable+writable: read 38 bytes, now idle"
        );
    }
}
