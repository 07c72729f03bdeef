//! HTTP/1.1 without sockets ("sans-IO").
//!
//! This module turns bytes that arrived on a connection into the bytes of
//! the responses. It never touches a socket, polls or sleeps: the reactor
//! owns the sockets and hands bytes in; a [`Session`] keeps what one
//! connection has said so far and appends each answer to an output buffer.
//! Because no socket is in here, the same code runs under the mio reactor,
//! under the tokio version in the benchmarks, in unit tests that split a
//! request at every byte, and in a fuzzer.
//!
//! Files are the one thing it does read, and on purpose. With `--dir`,
//! the route table asks a [`FileService`] to answer for the served
//! directory, and the service opens files and reads directories while the
//! protocol runs (short calls for local files). It lives outside, behind
//! that trait (`crate::files`, which builds on this module), so nothing
//! here depends on a module that depends on it. What the answer for an
//! open file says is protocol, and is written here ([`file_answer`],
//! [`conditional`], [`range`]): a small body is read (`pread`, with
//! [`FileRange::copy_into`]) and copied behind its head; a large one does
//! not pass through the output buffer at all: the answer names it as a
//! [`FileRange`], an open file that the I/O layer sends itself.
//!
//! - [`session`]: one connection's protocol state machine, [`Session`].
//! - [`parse`]: where a request head ends, what frames its body, and the limits.
//! - [`decode`]: a chunked body, byte by byte.
//! - [`response`]: status lines and headers written into a reused buffer.
//! - [`reply`]: what answering one request produced, [`Reply`].
//! - [`routes`]: what each URL answers.
//! - [`pages`]: the server's own documents (the live page, the about page,
//!   `robots.txt`).
//! - [`file_answer`]: the answer for a file the file service opened:
//!   validators, conditions, a range, the body copied or named.
//! - [`conditional`]: `If-None-Match`, `If-Modified-Since`, `If-Match`,
//!   `If-Unmodified-Since` and `If-Range`, in RFC 9110's order.
//! - [`range`]: `Range: bytes=…`, a part of a file.
//! - [`access`]: the access log (Combined Log Format, gathered per turn),
//!   and bytes shown safely in a log line.
//! - [`body`]: a body that is not in the output buffer, [`FileRange`]: a
//!   range of an open file, which the I/O layer sends itself (sendfile).
//!
//! This file holds what they share: the settings, the context a request
//! sees, and the traits through which the protocol reaches outside itself
//! ([`Host`] for the connection table, [`FileService`] for a served
//! directory).

pub mod access;
pub mod body;
pub mod conditional;
pub mod decode;
pub mod file_answer;
pub mod pages;
pub mod parse;
pub mod range;
pub mod reply;
pub mod response;
pub mod routes;
pub mod session;

use std::fmt;
use std::net::SocketAddr;

pub use access::{AccessLog, Escaped};
pub use body::{FileRange, Piece, Pieces, Streamed};
pub use reply::Reply;
pub use session::Session;

use parse::Limits;
use response::Answer;

use crate::table::{ConnTable, Format, TableCursor};

/// Settings of the protocol that do not change while the server runs.
#[derive(Debug, Clone, Default)]
pub struct Config {
    pub limits: Limits,
    /// The directory served at `/` (`--dir`), if any.
    pub files: Option<std::sync::Arc<dyn FileService>>,
}

/// Both ends of one connection, which with the protocol (always TCP here)
/// make its 5-tuple, and the token the reactor knows it by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Endpoints {
    /// The reactor's name for the connection: its slab key and mio token.
    pub token: usize,
    /// The server's end: the listening port, on the address the client reached.
    pub local: SocketAddr,
    /// The client's end: its address and its ephemeral source port.
    pub remote: SocketAddr,
}

impl fmt::Display for Endpoints {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "tcp {} <- {}", self.local, self.remote)
    }
}

/// What the protocol may ask of the server around it.
pub trait Host {
    /// Appends the connection table to `out`, written as `format`, with at
    /// most `rows` connection rows and `me`'s own row always shown and
    /// marked. A server answering many requesters at once may share one
    /// rendering among them (see [`crate::table::Rendered`]).
    fn write_table(&self, me: usize, format: Format, rows: usize, out: &mut Vec<u8>);

    /// Every worker's table (`serve --workers N`); a server with one
    /// reactor has one table.
    fn write_all_workers(&self, me: usize, format: Format, rows: usize, out: &mut Vec<u8>) {
        self.write_table(me, format, rows, out);
    }

    /// Worker `worker`'s table (`/_/conns?worker=I`): live if it is the
    /// one answering, else as it last posted it; a server with one reactor,
    /// or a worker number out of range, gets the answering one's.
    fn write_worker_table(
        &self,
        me: usize,
        _worker: usize,
        format: Format,
        rows: usize,
        out: &mut Vec<u8>,
    ) {
        self.write_table(me, format, rows, out);
    }

    /// The connection table as a body made a slice of rows per turn, when
    /// it may be too long to write in one turn (see [`body::Pieces`]);
    /// `None`: write it at once, with [`Host::write_table`].
    fn table_pieces(&self, _me: usize, _format: Format, _rows: usize) -> Option<Box<dyn Pieces>> {
        None
    }

    /// The next slice of a table begun by [`Host::table_pieces`].
    fn write_table_piece(&self, _cursor: &mut TableCursor, _out: &mut Vec<u8>) -> Piece {
        Piece::Done
    }

    /// Takes up to `want` units of this turn's work for bodies made a
    /// piece at a time (a table row, a directory entry), and says how many
    /// may be done now. However many clients ask for such bodies at once,
    /// a turn does a bounded amount of it, and the rest waits for the next
    /// turn; a host that does not share out its turns grants everything.
    fn turn_budget(&self, want: usize) -> usize {
        want
    }

    /// Which worker (reactor thread) holds the connection, when there are
    /// several.
    fn worker(&self) -> Option<usize> {
        None
    }

    /// Which copy of the server this is: 1, and one more at each restart
    /// (SIGHUP hands the listening sockets to a new copy).
    fn generation(&self) -> u32 {
        1
    }

    /// Appends the server's metrics in the Prometheus text format; false if
    /// this host keeps none (the route then answers 404).
    fn write_metrics(&self, _out: &mut Vec<u8>) -> bool {
        false
    }

    /// May a connection become a subscriber of the event stream
    /// (`/_/events`)? Only a question: the answer that says yes comes back
    /// in [`Progress::events`], and the server makes the connection a
    /// subscriber then (as hyper hands an upgrade back to its caller).
    fn subscribe(&self) -> Subscribe {
        Subscribe::NotHere
    }
}

/// A connection table sent a slice per turn: each piece asks the host for
/// the next rows (see [`Host::write_table_piece`]).
#[derive(Debug)]
pub struct TablePieces(pub TableCursor);

impl Pieces for TablePieces {
    fn next_piece(&mut self, host: &dyn Host, out: &mut Vec<u8>, _budget: usize) -> Piece {
        host.write_table_piece(&mut self.0, out)
    }
}

/// The server's answer to a request for the event stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subscribe {
    /// This server has no event stream (the protocol run alone, the tokio
    /// version in the benchmarks): 404.
    NotHere,
    /// As many subscribers as the server takes: 503.
    Full,
    Yes,
}

/// What answers for a served directory (`--dir`, see `crate::files`). The
/// route table names it through this trait rather than the files module
/// itself, which builds on this module's types: the dependency runs one way.
pub trait FileService: fmt::Debug + Send + Sync {
    /// Answers a GET or HEAD for `req`.
    fn respond(&self, req: &FileRequest, answer: &Answer, date: &str, out: &mut Vec<u8>) -> Reply;
}

/// The parts of a file request that are kept from its head.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FileRequest {
    /// The request target's path, still percent-encoded.
    pub path: String,
    /// The query string (without `?`), kept for redirects.
    pub query: Option<String>,
    /// The conditional headers (RFC 9110 §13.1), evaluated in §13.2.2's
    /// order ([`conditional::preconditions`]).
    pub if_match: Option<String>,
    pub if_unmodified_since: Option<String>,
    pub if_none_match: Option<String>,
    pub if_modified_since: Option<String>,
    pub range: Option<String>,
    pub if_range: Option<String>,
}

/// A [`Host`] with no connections to show, for running the protocol alone:
/// in unit tests, micro-benchmarks and the fuzzer.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoConnections;

impl Host for NoConnections {
    fn write_table(&self, _me: usize, format: Format, _rows: usize, out: &mut Vec<u8>) {
        let listen = SocketAddr::from(([127, 0, 0, 1], 500));
        ConnTable::empty(listen).render(format).write_for(None, out);
    }
}

/// Everything a request may look at besides its own bytes.
pub struct Ctx<'a> {
    pub peer: Endpoints,
    pub host: &'a dyn Host,
    /// The `Date` header value (see [`response::Clock`]).
    pub date: &'a str,
    pub config: &'a Config,
    /// The server is shutting down: answer what was asked, then close.
    pub shutting_down: bool,
    /// Where this turn's access-log lines go; `None`: no access log.
    pub access: Option<&'a AccessLog>,
}

/// What one call to [`Session::feed`] or [`Session::resume`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    /// Responses appended to the output.
    pub responses: u64,
    /// Close the connection once the output has been written.
    pub close: bool,
    /// The last answer is the event stream's head: instead of closing
    /// after it, the connection stays open and the server writes events
    /// to it as they happen, for as long as the client stays.
    pub events: bool,
    /// The responses other than `200 OK`, by status class, for the metrics
    /// (the 200s are the rest of `responses`).
    pub statuses: StatusClasses,
}

/// A count of responses per status class (1xx, 2xx, 3xx, 4xx, 5xx), `200
/// OK` left out: the common answer then costs one comparison. One call of
/// the protocol answers at most `TURN_RESPONSES`, so 16 bits are plenty.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatusClasses(pub [u16; 5]);

impl StatusClasses {
    #[inline]
    pub fn count(&mut self, status: response::Status) {
        if status.code != 200 {
            let class = usize::from(status.code / 100).wrapping_sub(1);
            if let Some(n) = self.0.get_mut(class) {
                *n += 1;
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0 == [0; 5]
    }
}

/// Output one turn of a session may produce before it yields: a client that
/// pipelines thousands of requests gets this much per turn of the event
/// loop, and then the others get theirs. (A file body is sent by the I/O
/// layer, which bounds it per turn itself: see [`FileRange`].)
pub const TURN_OUTPUT: usize = 64 * 1024;

/// Responses one turn may produce (small responses rarely reach `TURN_OUTPUT`).
pub const TURN_RESPONSES: u64 = 256;

#[cfg(test)]
mod tests;
