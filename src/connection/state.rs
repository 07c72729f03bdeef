//! A connection's life as two small states, one per direction, and the
//! verdicts the reactor acts on.
//!
//! A TCP connection is two byte streams, and each side closes its own.
//! So a connection's state here is two fields, one per direction, rather
//! than one list of stages that mixes them:
//!
//! ```text
//!  what it reads                              what it writes
//!
//!  ProxyHeader ─► Requests ─► Nothing ─► Leftovers    Answers ─────► Shut
//!                              │  ▲                     │  ▲
//!                   the stream ▼  │ shutdown            ▼  │ shutdown
//!                            Goodbye                  Events
//! ```
//!
//! - **Reading.** With `--proxy-protocol` a connection first reads the
//!   PROXY header, then requests, one after another. When the last answer
//!   says `Connection: close`, the client closes its side, the server shuts
//!   down or a timeout answers 408, it reads `Nothing` more. An event
//!   stream reads only to see its client leave (`Goodbye`). After our FIN,
//!   what the client still sends is read and thrown away (`Leftovers`), so
//!   that closing does not become a reset that destroys our last answers.
//! - **Writing.** Answers, in order, each perhaps with a file body; or the
//!   event stream's events, as they happen; or nothing more (`Shut`).
//!
//! Both change only through the connection's `set_reading` and
//! `set_writing`, which log every change
//! at trace level (`RUST_LOG=fivetuple=trace`), as smoltcp's `set_state`
//! does. Everything else the reactor or the table wants to know (what the
//! connection waits for, its next step, the table's Phase column) is
//! derived from these two fields and a few facts about the socket, in one
//! place: the connection's own methods.
//!
//! The reactor does not decide a connection's life: it tells the
//! connection what happened (a read, a write, a timeout, the protocol's
//! answer) and acts on the [`Verdict`] it returns: close, with a reason,
//! or wait for an event, or take another turn.

use std::fmt;
use std::time::{Duration, Instant};

/// Lingering close: how long, at most, to keep reading and discarding what a
/// client still sends after our last answer (nginx's `lingering_time`).
pub const LINGER_TIME: Duration = Duration::from_secs(30);
/// Lingering close: how long the client may stay silent before we close
/// anyway (nginx's `lingering_timeout`).
pub const LINGER_QUIET: Duration = Duration::from_secs(5);
/// Lingering close: the most bytes thrown away before we close anyway. It
/// bounds the CPU one lingering client can cost; a client that sends more
/// than this after being told to go away is not waiting for an answer.
pub const LINGER_BYTES: u64 = 64 * 1024 * 1024;

/// What a connection reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reading {
    /// A PROXY protocol header from a load balancer (`--proxy-protocol`),
    /// before anything else: its bytes so far, when it came in pieces.
    ProxyHeader(Vec<u8>),
    /// Requests, one after another on a kept-alive connection.
    Requests,
    /// Nothing more: the last answers go out, then the connection closes.
    Nothing,
    /// Only the client's goodbye: an event stream reads what the client
    /// sends and throws it away, to see it leave.
    Goodbye,
    /// What the client still sends after our FIN, thrown away until it
    /// closes too or a limit is reached (a lingering close).
    Leftovers(Linger),
}

/// A lingering close under way: the limits it counts against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Linger {
    /// When lingering began: it lasts at most [`LINGER_TIME`] from here.
    pub since: Instant,
    /// When the client last sent something: [`LINGER_QUIET`] from here.
    pub last_input: Instant,
    /// Bytes thrown away so far, at most [`LINGER_BYTES`].
    pub discarded: u64,
}

impl Linger {
    /// When lingering ends, unless the client leaves first.
    pub fn deadline(&self) -> Instant {
        (self.since + LINGER_TIME).min(self.last_input + LINGER_QUIET)
    }
}

/// What a connection writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Writing {
    /// Answers to its requests, in order (a file body after its head).
    Answers,
    /// The event stream (`/_/events`): events as they happen, for as long
    /// as the client stays. Neither idle nor late while it waits for the
    /// next event, so no idle timeout applies and it is never reclaimed;
    /// the send timeout still closes a client that stops reading.
    Events,
    /// Nothing more: our FIN is sent.
    Shut,
}

impl fmt::Display for Reading {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Reading::ProxyHeader(_) => "the PROXY header",
            Reading::Requests => "requests",
            Reading::Nothing => "nothing",
            Reading::Goodbye => "only the client's goodbye",
            Reading::Leftovers(_) => "leftovers, to throw away",
        })
    }
}

impl fmt::Display for Writing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Writing::Answers => "answers",
            Writing::Events => "events",
            Writing::Shut => "nothing (FIN sent)",
        })
    }
}

/// What the reactor should do with a connection after serving it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing more this turn: an event or its deadline brings it back.
    Wait,
    /// It has work that no event will announce (the rest of a file body,
    /// requests waiting their turn, bytes left unread): the ready list.
    AnotherTurn,
    /// Everything owed is written and our FIN is sent, but the client may
    /// still be sending: it lingers (and counts as lingering).
    Linger,
    /// Close it now.
    Close(CloseReason),
}

impl From<CloseReason> for Verdict {
    fn from(why: CloseReason) -> Verdict {
        Verdict::Close(why)
    }
}

/// What a deadline that passed does (see [`Connection::on_deadline`](super::Connection::on_deadline)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expiry {
    /// The request did not arrive in time: answer 408, then close.
    RequestTimeout,
    /// Close, for this reason (idle, send or lingering timeout, or the
    /// PROXY header that never came).
    Close(CloseReason),
}

/// Why a connection was closed. The reactor names the reason when it
/// closes; the debug log, the trace and the event stream's `close` event
/// all say it in the words of its `Display`, so the three cannot drift
/// apart, and a new reason is one more variant, not one more string. The
/// metrics count some reasons too (see `crate::live::metrics`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseReason {
    /// Everything owed was written, and the client had nothing more to say.
    Done,
    /// Everything owed was written, and the client left while we lingered.
    DoneAfterLingering,
    /// Lingering: the client sent more than `LINGER_BYTES` after our FIN.
    LingerByteLimit,
    /// Lingering: `LINGER_TIME` or `LINGER_QUIET` passed.
    LingerTimeUp,
    /// The subscriber of an event stream went away.
    LeftEventStream,
    /// An event-stream subscriber gave its slot to a new viewer.
    GaveWayToViewer,
    /// Idle, and closed to make room at `--max-conns`.
    Reclaimed,
    /// The client did not read its answers in time (`--send-timeout`).
    SendTimeout,
    /// No next request in time (`--idle-timeout`).
    IdleTimeout,
    /// The PROXY header did not arrive in time.
    ProxyHeaderTimeout,
    /// What came first was not a PROXY header.
    ProxyHeaderInvalid(&'static str),
    /// The server is shutting down and the connection owed nothing.
    Shutdown,
    /// The shutdown grace ran out.
    ShutdownGraceOver,
    /// A second stop signal: everything closes at once.
    SecondSignal,
    /// The socket failed (a reset, most often), or a file body could not
    /// be sent: the system's words.
    Failed(String),
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CloseReason::Done => "done",
            CloseReason::DoneAfterLingering => "done, after lingering",
            CloseReason::LingerByteLimit => "lingering close: byte limit reached",
            CloseReason::LingerTimeUp => "lingering close: time is up",
            CloseReason::LeftEventStream => "the client left the event stream",
            CloseReason::GaveWayToViewer => "gave its event-stream slot to a new viewer",
            CloseReason::Reclaimed => "idle, reclaimed for a new connection (--max-conns)",
            CloseReason::SendTimeout => "send timeout",
            CloseReason::IdleTimeout => "idle timeout",
            CloseReason::ProxyHeaderTimeout => "PROXY header timeout",
            CloseReason::ProxyHeaderInvalid(why) => why,
            CloseReason::Shutdown => "shutdown",
            CloseReason::ShutdownGraceOver => "shutdown grace over",
            CloseReason::SecondSignal => "second signal",
            CloseReason::Failed(e) => e,
        })
    }
}

/// What a connection waits for. It decides the connection's deadline, and
/// what happens when that passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Waiting {
    /// The client to read the answers already written, or being written
    /// (send timeout: closed).
    ClientToRead,
    /// The rest of a request that has begun, or the PROXY header (header
    /// timeout: 408, or closed for a missing PROXY header).
    RestOfRequest,
    /// The next request on a kept-alive connection (idle timeout: closed).
    NextRequest,
    /// The client to close after our FIN (lingering limits: closed).
    ClientToLeave,
    /// An event stream, all written: the server's next event (no deadline:
    /// nobody is late).
    NextEvent,
}

/// What the reactor should do for a connection now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Give the protocol its next turn without reading: requests that
    /// wait for their turn.
    Resume,
    /// Send the next piece of the file body (the write that ends every
    /// step does it): the send buffer had room last time.
    SendFile,
    /// Read from the socket and answer what arrives.
    Read,
    /// Read and throw away: the connection is lingering, or streaming
    /// events (where reading is how the server sees the client leave).
    Discard,
    /// Nothing until an event: output (buffered, or a file body whose last
    /// `sendfile` found the send buffer full) waits for the client to read
    /// it, or the socket is empty.
    Wait,
}
