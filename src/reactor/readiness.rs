//! What an epoll event says, in the words the loop and the trace use.

use mio::event::Event;
use mio::Token;

use super::{LISTENER, SIGNALS, UDP, WAKER};
use crate::live::trace::{Cause, Subject};

/// What an event says about a connection: the two facts the reactor uses,
/// and what the trace shows.
#[derive(Debug, Clone, Copy)]
pub struct Readiness {
    /// There may be bytes to read.
    pub readable: bool,
    /// The client closed its side, or the socket failed: read until the end.
    pub hangup: bool,
    /// Room in the send buffer (only for the trace: the reactor writes
    /// whenever it has output, and a full buffer keeps it in `out`).
    pub writable: bool,
    /// The socket failed (only for the trace: `hangup` covers it).
    pub error: bool,
}

impl Readiness {
    pub fn cause(self) -> Cause {
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
pub fn subject(token: Token) -> Subject {
    match token {
        LISTENER => Subject::Listener,
        SIGNALS => Subject::Signals,
        UDP => Subject::Udp,
        WAKER => Subject::Waker,
        Token(key) => Subject::Conn(key),
    }
}
