//! One accepted TCP connection: its 5-tuple, its counters, and the two
//! edge-triggered habits every connection in a mio loop needs.
//!
//! mio's readiness is edge-triggered: the kernel says "readable" once when
//! data arrives, not again and again while data is waiting. So a connection
//! must read until the kernel says `WouldBlock` (or until a read comes back
//! shorter than the buffer, which means the socket was emptied), and must
//! keep whatever it could not write and send it when the next "writable"
//! edge comes. Miss either and the connection stalls forever.
//!
//! A connection owns no read buffer: it reads into the reactor's one shared
//! buffer, and the HTTP [`Session`] keeps only the unfinished tail of a
//! request. Its output buffer is empty (and unallocated) whenever the kernel
//! has taken everything, so an idle connection costs a few hundred bytes.

use std::io::{self, Read, Write};
use std::time::Instant;

use mio::net::TcpStream;

use crate::http::{Peer, Session};
use crate::table::ConnRow;

/// Where a connection is in its life, from the server's side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Reading requests and writing their answers.
    Open,
    /// No more requests will be read: write what is owed, then close.
    Draining,
    /// Everything owed is written and our FIN is sent, but the client was
    /// still sending: read and throw its bytes away until it closes too, or
    /// a deadline passes (see `Reactor::finish`). Closing now would make the
    /// kernel answer those bytes with a reset, and a reset destroys the
    /// answers still on their way to the client.
    Lingering {
        /// When lingering began: it lasts at most `LINGER_TIME` from here.
        since: Instant,
        /// When the client last sent something: `LINGER_QUIET` from here.
        last_input: Instant,
        /// Bytes thrown away so far, at most `LINGER_BYTES`.
        discarded: u64,
    },
}

/// The result of one `read` call.
#[derive(Debug)]
pub enum ReadOutcome {
    /// This many bytes arrived.
    Data(usize),
    /// Nothing more to read until the next readable event.
    WouldBlock,
    /// The client closed its side (`read` returned 0).
    Eof,
    /// The connection failed (reset by the peer, most often).
    Failed(io::Error),
}

/// One slab entry: an accepted stream and everything the server knows about it.
#[derive(Debug)]
pub struct Connection {
    stream: TcpStream,
    /// Token, local address (getsockname) and remote address: with the
    /// protocol, the 5-tuple that makes this connection unique.
    pub peer: Peer,
    /// The n-th connection accepted since start. Unlike the token, which the
    /// slab reuses, this number is never reused, so logs can tell apart two
    /// connections that had the same token at different times.
    pub serial: u64,
    pub accepted_at: Instant,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Responses written for this connection (handed to the kernel whole).
    pub requests: u64,
    /// Responses produced but not yet wholly handed to the kernel: they
    /// count as served only once written, so a download cut off at
    /// shutdown is not counted.
    pub unwritten: u64,
    pub state: State,
    /// The client sent FIN: the kernel's state for us is CLOSE_WAIT.
    pub peer_closed: bool,
    /// The socket may hold bytes (or an EOF) we have not read: a readable
    /// event came and reading stopped before `WouldBlock` or a short read.
    /// Under edge triggering no second event will come for those bytes, so
    /// the reactor must remember to read them.
    pub unread: bool,
    /// An event said the client closed its side (or the socket failed).
    /// Then a short read no longer proves the socket empty: the EOF behind
    /// the data still has to be read, and no further event will announce it.
    pub hangup: bool,
    /// On the reactor's ready list, to be served again next turn.
    pub scheduled: bool,
    /// When the connection times out if nothing happens (see `Reactor::rearm`).
    pub deadline: Option<Instant>,
    /// The earliest entry for this connection in the reactor's timer heap.
    pub armed: Option<Instant>,
    /// When the first byte of the request now in progress arrived.
    pub request_started: Option<Instant>,
    /// When the kernel last took bytes from us (or the connection began).
    pub last_progress: Instant,
    /// The HTTP state: any unfinished request.
    pub session: Session,
    /// Response bytes the kernel has not taken yet.
    out: Vec<u8>,
}

impl Connection {
    pub fn new(stream: TcpStream, peer: Peer, serial: u64) -> Connection {
        Connection {
            stream,
            peer,
            serial,
            accepted_at: Instant::now(),
            bytes_in: 0,
            bytes_out: 0,
            requests: 0,
            unwritten: 0,
            state: State::Open,
            peer_closed: false,
            unread: false,
            hangup: false,
            scheduled: false,
            deadline: None,
            armed: None,
            request_started: None,
            last_progress: Instant::now(),
            session: Session::default(),
            out: Vec::new(),
        }
    }

    /// The socket, for registering with the Poll.
    pub fn stream_mut(&mut self) -> &mut TcpStream {
        &mut self.stream
    }

    /// One `read` into the shared buffer, retried if a signal interrupted it.
    pub fn read_chunk(&mut self, buf: &mut [u8]) -> ReadOutcome {
        loop {
            return match self.stream.read(buf) {
                Ok(0) => ReadOutcome::Eof,
                Ok(n) => {
                    self.bytes_in += n as u64;
                    log::trace!("token {}: read {n} bytes", self.peer.token);
                    ReadOutcome::Data(n)
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => ReadOutcome::WouldBlock,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => ReadOutcome::Failed(e),
            };
        }
    }

    /// Writes `fresh` (responses just produced, in the reactor's shared
    /// buffer) after anything still queued, with one `write` call, and
    /// keeps what the kernel did not take. Clears `fresh`. Returns whether
    /// everything has been written.
    ///
    /// One call is enough: a short write means the socket's send buffer is
    /// full, the kernel has noted that someone is waiting for space, and a
    /// writable event will come when it drains. Another `write` now would
    /// only return `WouldBlock`.
    pub fn send(&mut self, fresh: &mut Vec<u8>) -> io::Result<bool> {
        if self.out.is_empty() {
            if !fresh.is_empty() {
                let n = self.write_once(fresh)?;
                self.out.extend_from_slice(&fresh[n..]);
                fresh.clear();
            }
        } else {
            self.out.append(fresh);
            let pending = std::mem::take(&mut self.out);
            let n = self.write_once(&pending)?;
            if n < pending.len() {
                self.out = pending;
                self.out.drain(..n);
            }
            // Otherwise `pending` is dropped here: an idle connection keeps no buffer.
        }
        Ok(self.out.is_empty())
    }

    fn write_once(&mut self, bytes: &[u8]) -> io::Result<usize> {
        loop {
            return match self.stream.write(bytes) {
                Ok(0) => Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.bytes_out += n as u64;
                    log::trace!(
                        "token {}: wrote {n} of {} bytes",
                        self.peer.token,
                        bytes.len()
                    );
                    Ok(n)
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    log::trace!(
                        "token {}: send buffer full, {} bytes wait for a writable event",
                        self.peer.token,
                        bytes.len()
                    );
                    Ok(0)
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => Err(e),
            };
        }
    }

    /// Sends FIN: we will write nothing more. The descriptor stays open
    /// until the connection is dropped.
    pub fn shutdown_write(&mut self) {
        let _ = self.stream.shutdown(std::net::Shutdown::Write);
    }

    /// Bytes waiting for the kernel to take them.
    pub fn queued(&self) -> usize {
        self.out.len()
    }

    /// This connection's row in the connection table.
    pub fn row(&self, now: Instant, you: bool) -> ConnRow {
        let phase = match self.state {
            State::Lingering { .. } => "linger",
            _ if !self.out.is_empty() => "writing",
            State::Draining => "closing",
            State::Open => self.session.phase(),
        };
        ConnRow {
            token: Some(self.peer.token),
            proto: "tcp",
            local: self.peer.local,
            remote: Some(self.peer.remote),
            // As netstat would name the kernel's state: our FIN sent and
            // theirs not yet come is FIN_WAIT2 (once acknowledged); theirs
            // come and ours not yet sent is CLOSE_WAIT.
            state: match self.state {
                State::Lingering { .. } => "FIN_WAIT2",
                _ if self.peer_closed => "CLOSE_WAIT",
                _ => "ESTABLISHED",
            },
            phase: if you { "writing" } else { phase },
            age_ms: now.duration_since(self.accepted_at).as_millis() as u64,
            bytes_in: self.bytes_in,
            bytes_out: self.bytes_out,
            requests: Some(self.requests),
            you,
        }
    }
}
