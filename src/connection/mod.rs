//! One accepted TCP connection: its 5-tuple, its counters, its lifecycle,
//! and the two edge-triggered habits every connection in a mio loop needs.
//!
//! mio's readiness is edge-triggered: the kernel says "readable" once when
//! data arrives, not again and again while data is waiting. So a connection
//! must read until the kernel says `WouldBlock` (or until a read comes back
//! shorter than the buffer, which means the socket was emptied), and must
//! keep whatever it could not write and send it when the next "writable"
//! edge comes. Miss either and the connection stalls forever.
//!
//! What the connection reads and what it writes are two small states (see
//! [`state`]), changed only through two methods that log each change. The
//! reactor tells the connection what happened (an event, a read, a write,
//! the protocol's answers, a deadline) and acts on the [`Verdict`] it
//! returns; everything it asks (the next step, what the connection waits
//! for, whether it may be reclaimed, what the table calls it) is derived
//! from those two states here, in one place.
//!
//! A connection owns no read buffer: it reads into the reactor's one shared
//! buffer, and the HTTP [`Session`] keeps only the unfinished tail of a
//! request. Its output buffer is empty (and unallocated) whenever the kernel
//! has taken everything, so an idle connection costs a few hundred bytes.
//!
//! A large file never passes through that buffer. The session names it
//! (a [`FileRange`](crate::http::FileRange): file, offset, length), and the
//! connection sends it with `sendfile(2)` once the buffered head is out,
//! at most [`FILE_PER_TURN`] bytes per turn, from the page cache straight
//! into the socket. The head goes with `MSG_MORE`, so that the kernel
//! holds it for the file's first bytes instead of sending it in a small
//! packet of its own.

use std::io::{self, Read, Write};
use std::mem;
use std::time::Instant;

use mio::net::TcpStream;
use rustix::io::Errno;
use rustix::net::SendFlags;

use crate::http::{self, Endpoints, Progress, Session};
use crate::procnet::TcpState;
use crate::proxy::{self, Origin};
use crate::table::{ConnRow, Phase, RowState};
use crate::timer::{Deadline, Fired, Timeouts};

pub mod state;
pub use state::{
    CloseReason, Expiry, Linger, Reading, Step, Verdict, Waiting, Writing, LINGER_BYTES,
    LINGER_QUIET, LINGER_TIME,
};

/// The kernel's send buffer of an event stream. Left alone, Linux grows a
/// socket's send buffer up to 4 MiB for a reader that does not read, out of
/// sight of the server's own bound on what it queues (see
/// `crate::live::events::QUEUE_LIMIT`). 64 KiB holds a few hundred events:
/// plenty for a reader that keeps up, and the rest of a slow one's backlog
/// stays where it is counted and bounded.
pub const STREAM_SEND_BUFFER: usize = 64 * 1024;

/// File bytes sent per turn of the loop, at most, with one `sendfile`.
///
/// A turn's share is really a share of time. One `sendfile` of 256 KiB
/// from the page cache costs some 30–40 µs here, a fraction of the longest
/// turn a client can already take (256 pipelined answers, about 170 µs),
/// so a download holds the others back no longer than a pipeline does.
/// Smaller pieces cost more per byte: every call is a system call, a turn
/// on the ready list and a wake-up of the reader, and with 64 KiB pieces
/// (the output share of other answers, `http::TURN_OUTPUT`) fivetuple
/// spent about 230 µs of CPU per 1 MiB file on loopback against 150 µs
/// with 256 KiB. Larger ones save less (about 120 µs with 1 MiB, where
/// nginx's default limit is 2 MiB) and let one download take a turn as
/// long as a pipeline's. What is not sent waits on the ready list.
pub const FILE_PER_TURN: usize = 256 * 1024;

/// What the bytes of a read did to a connection that expects a PROXY header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preface {
    /// The header is not complete: nothing of the request may be read yet.
    Waiting,
    /// The header is complete (or none was expected); the request starts
    /// this many bytes into the read.
    Done(usize),
    /// Not a valid header: the connection is closed, unanswered.
    Invalid(&'static str),
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

/// Facts about the socket that edge-triggered readiness makes the
/// connection remember: the kernel says each of them once.
#[derive(Debug, Clone, Copy, Default)]
struct SocketNews {
    /// The socket may hold bytes (or an EOF) we have not read: a readable
    /// event came and reading stopped before `WouldBlock` or a short read.
    /// No second event will come for those bytes, so the connection must
    /// remember to read them.
    unread: bool,
    /// An event said the client closed its side (or the socket failed).
    /// Then a short read no longer proves the socket empty: the EOF behind
    /// the data still has to be read, and no further event will announce it.
    hangup: bool,
    /// The client's FIN has been read: the kernel's state for us is
    /// CLOSE_WAIT.
    fin_received: bool,
    /// The last `sendfile` found the send buffer full: the file body waits
    /// for a writable event (which the full buffer has armed), not for the
    /// ready list.
    send_full: bool,
}

/// One slab entry: an accepted stream and everything the server knows about it.
#[derive(Debug)]
pub struct Connection {
    stream: TcpStream,
    /// Token, local address (getsockname) and remote address: with the
    /// protocol, the 5-tuple that makes this connection unique.
    peer: Endpoints,
    /// The n-th connection accepted since start. Unlike the token, which the
    /// slab reuses, this number is never reused, so logs and the reactor's
    /// ready list and timer heap can tell apart two connections that had
    /// the same token at different times.
    serial: u64,
    accepted_at: Instant,
    bytes_in: u64,
    bytes_out: u64,
    /// Responses written for this connection (handed to the kernel whole).
    requests: u64,
    /// Responses produced but not yet wholly handed to the kernel: they
    /// count as served only once written, so a download cut off at
    /// shutdown is not counted.
    unwritten: u64,
    /// What it reads, and what it writes: its place in its life (see [`state`]).
    reading: Reading,
    writing: Writing,
    /// What the kernel has told us about the socket, and what it implies.
    socket: SocketNews,
    /// On the reactor's ready list, to be served again next turn.
    scheduled: bool,
    /// When the connection times out, and what that counts from.
    deadline: Deadline,
    /// The original client's connection, from the PROXY header. Boxed:
    /// only connections from a load balancer have one, and every idle
    /// connection would otherwise carry the room for two addresses.
    origin: Option<Box<Origin>>,
    /// The HTTP state: any unfinished request, and a file body to send.
    session: Session,
    /// Response bytes the kernel has not taken yet.
    out: Vec<u8>,
    /// The reactor counts a descriptor held by this connection's body (see
    /// [`Connection::recount_descriptor`]).
    counted_descriptor: bool,
}

impl Connection {
    /// A connection just accepted, with its request probably already in the
    /// socket: an HTTP client sends it as soon as it is connected.
    /// With `expects_proxy`, its first bytes must be a PROXY protocol header.
    pub fn new(
        stream: TcpStream,
        peer: Endpoints,
        serial: u64,
        now: Instant,
        expects_proxy: bool,
    ) -> Connection {
        Connection {
            stream,
            peer,
            serial,
            accepted_at: now,
            bytes_in: 0,
            bytes_out: 0,
            requests: 0,
            unwritten: 0,
            reading: match expects_proxy {
                true => Reading::ProxyHeader(Vec::new()),
                false => Reading::Requests,
            },
            writing: Writing::Answers,
            // An HTTP client sends its request as soon as it is connected.
            socket: SocketNews {
                unread: true,
                ..SocketNews::default()
            },
            scheduled: false,
            deadline: Deadline::new(now),
            origin: None,
            session: Session::default(),
            out: Vec::new(),
            counted_descriptor: false,
        }
    }

    /// The socket's own 5-tuple (and token): what the kernel knows.
    pub fn peer(&self) -> Endpoints {
        self.peer
    }

    /// The 5-tuple requests see (`/_/whoami`, the access log): the original
    /// client's, from the PROXY header, when there is one.
    pub fn http_peer(&self) -> Endpoints {
        match self.origin.as_deref() {
            Some(origin) => Endpoints {
                token: self.peer.token,
                local: origin.destination,
                remote: origin.source,
            },
            None => self.peer,
        }
    }

    /// Whether the PROXY header is still awaited.
    pub fn awaits_preface(&self) -> bool {
        matches!(self.reading, Reading::ProxyHeader(_))
    }

    /// Takes the bytes of a read while the PROXY header is awaited. In the
    /// common case the whole header is in one read and nothing is copied;
    /// a header in pieces is kept (at most `proxy::MAX_HEADER` bytes).
    pub fn take_preface(&mut self, bytes: &[u8]) -> Preface {
        let Reading::ProxyHeader(held) = &mut self.reading else {
            return Preface::Done(0);
        };
        let before = held.len();
        let parsed = if before == 0 {
            proxy::parse(bytes)
        } else {
            held.extend_from_slice(bytes);
            proxy::parse(held)
        };
        match parsed {
            proxy::Header::Incomplete => {
                if before == 0 {
                    held.extend_from_slice(bytes);
                }
                Preface::Waiting
            }
            proxy::Header::Complete(len, origin) => {
                self.set_reading(Reading::Requests);
                self.origin = origin.map(Box::new);
                self.deadline.request_done(); // the request's clock starts at its own first byte
                Preface::Done(len - before)
            }
            proxy::Header::Invalid(why) => Preface::Invalid(why),
        }
    }

    pub fn serial(&self) -> u64 {
        self.serial
    }

    /// Bytes in, bytes out and requests answered, for the log.
    pub fn counters(&self) -> (u64, u64, u64) {
        (self.bytes_in, self.bytes_out, self.requests)
    }

    /// A readiness event came: there may be bytes (or an EOF) to read.
    pub fn on_event(&mut self, readable: bool, hangup: bool) {
        self.socket.unread |= readable || hangup;
        self.socket.hangup |= hangup;
    }

    /// What it reads now.
    pub fn reading(&self) -> &Reading {
        &self.reading
    }

    /// What it writes now.
    pub fn writing(&self) -> Writing {
        self.writing
    }

    /// Changes what the connection reads: the one place that does, so
    /// every change is logged (`RUST_LOG=fivetuple=trace`).
    fn set_reading(&mut self, to: Reading) {
        if log::log_enabled!(log::Level::Trace) {
            let token = self.peer.token;
            log::trace!("token {token}: reads {} -> {to}", self.reading);
        }
        self.reading = to;
    }

    /// Changes what the connection writes: the one place that does.
    fn set_writing(&mut self, to: Writing) {
        log::trace!("token {}: writes {} -> {to}", self.peer.token, self.writing);
        self.writing = to;
    }

    /// Whether it still reads requests (or the PROXY header before them).
    fn reads_requests(&self) -> bool {
        matches!(self.reading, Reading::Requests | Reading::ProxyHeader(_))
    }

    /// No more requests will be read: the last answers go out, then close.
    fn stop_reading_requests(&mut self) {
        if self.reads_requests() {
            self.set_reading(Reading::Nothing);
        }
    }

    /// What to do now. Output first: a connection whose answers the kernel
    /// has not taken is not read (backpressure), so a client that does not
    /// read its answers stops being read, and the server holds one turn of
    /// output for it at most. A file body goes before everything behind it.
    pub fn next_step(&self) -> Step {
        let sending_file = self.session.file_body().is_some();
        match self.reading {
            Reading::Leftovers(_) | Reading::Goodbye if self.socket.unread => Step::Discard,
            Reading::Leftovers(_) => Step::Wait,
            _ if !self.out.is_empty() => Step::Wait,
            _ if sending_file && self.socket.send_full => Step::Wait,
            _ if sending_file => Step::SendFile,
            _ if self.session.wants_resume() => Step::Resume,
            Reading::Requests | Reading::ProxyHeader(_) if self.socket.unread => Step::Read,
            _ => Step::Wait,
        }
    }

    /// Every answer owed is with the kernel and no more will be read: the
    /// connection is ready to finish.
    pub fn is_done(&self) -> bool {
        self.reading == Reading::Nothing
            && self.writing == Writing::Answers
            && self.out.is_empty()
            && !self.has_more_to_write()
    }

    /// The session has more to write without reading: a file body, or
    /// requests that wait for their turn.
    fn has_more_to_write(&self) -> bool {
        self.session.file_body().is_some() || self.session.wants_resume()
    }

    /// Whether the body being sent holds a descriptor of its own (a file,
    /// an open directory), besides the connection's socket.
    pub fn holds_descriptor(&self) -> bool {
        self.session.holds_descriptor()
    }

    /// Notes whether its body holds a descriptor now, and returns how the
    /// reactor's count of such descriptors changes: +1, -1 or 0.
    pub fn recount_descriptor(&mut self) -> isize {
        let now = self.session.holds_descriptor();
        let before = mem::replace(&mut self.counted_descriptor, now);
        now as isize - before as isize
    }

    /// Whether the reactor counts a descriptor for this connection's body.
    pub fn counted_descriptor(&self) -> bool {
        self.counted_descriptor
    }

    /// Marks the connection as being on the ready list; false if it already was.
    pub fn schedule(&mut self) -> bool {
        !mem::replace(&mut self.scheduled, true)
    }

    /// Takes the connection off the ready list for its turn.
    pub fn unschedule(&mut self) {
        self.scheduled = false;
    }

    /// One `read` into the shared buffer, retried if a signal interrupted
    /// it. Keeps track of whether the socket may still hold more: a short
    /// read empties it (unless a hangup was reported, when the EOF behind
    /// the data has yet to be read); another read would only say WouldBlock,
    /// and new data brings a new event.
    pub fn read_chunk(&mut self, buf: &mut [u8]) -> ReadOutcome {
        loop {
            return match self.stream.read(buf) {
                Ok(0) => {
                    self.socket.unread = false;
                    ReadOutcome::Eof
                }
                Ok(n) => {
                    self.bytes_in += n as u64;
                    log::trace!("token {}: read {n} bytes", self.peer.token);
                    if n < buf.len() && !self.socket.hangup {
                        self.socket.unread = false;
                    }
                    ReadOutcome::Data(n)
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.socket.unread = false;
                    ReadOutcome::WouldBlock
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => ReadOutcome::Failed(e),
            };
        }
    }

    /// Takes the HTTP session out for a call that needs the rest of the
    /// server too (`/_/conns` looks at every connection); give it back with
    /// [`Connection::put_session`].
    pub fn take_session(&mut self) -> Session {
        mem::take(&mut self.session)
    }

    /// Puts the session back and books what its call did: answers produced
    /// (served once written), and whether the connection is to close.
    pub fn put_session(&mut self, session: Session, progress: Progress) {
        self.session = session;
        if progress.responses > 0 {
            self.deadline.request_done();
            if self.session.streams_body() {
                // A body made a piece per turn (a long table or listing)
                // goes out as the client reads it. Left alone, the kernel
                // grows the send buffer to megabytes for a client that
                // does not read; 64 KiB holds a piece or two, and a client
                // that stops reading holds no more than that.
                let sock = socket2::SockRef::from(&self.stream);
                let _ = sock.set_send_buffer_size(STREAM_SEND_BUFFER);
            }
        }
        self.unwritten += progress.responses;
        if progress.close {
            self.stop_reading_requests();
        }
    }

    /// The answer just produced is the event stream: after it, keep the
    /// connection open for events instead of closing it. False if the
    /// client has closed its side already (there is nobody to stream to).
    pub fn start_streaming(&mut self) -> bool {
        if self.reading != Reading::Nothing
            || self.writing != Writing::Answers
            || self.socket.fin_received
        {
            return false;
        }
        self.set_reading(Reading::Goodbye);
        self.set_writing(Writing::Events);
        let _ = socket2::SockRef::from(&self.stream).set_send_buffer_size(STREAM_SEND_BUFFER);
        true
    }

    pub fn is_streaming(&self) -> bool {
        self.writing == Writing::Events
    }

    /// Output bytes the kernel has not taken yet.
    pub fn unsent(&self) -> usize {
        self.out.len()
    }

    /// The client closed its side: answer what it sent, then close.
    pub fn on_peer_closed(&mut self) {
        self.socket.fin_received = true;
        self.stop_reading_requests();
    }

    /// No more requests: a timeout answered.
    pub fn stop_reading(&mut self) {
        self.socket.unread = false;
        self.stop_reading_requests();
    }

    /// Writes `fresh` (responses just produced, in the reactor's shared
    /// buffer) after anything still queued, with one `write` call, and
    /// keeps what the kernel did not take. Clears `fresh`. Once the buffer
    /// is all out, sends the next piece of the file body, if there is one
    /// (see [`send_file`](Connection::send_file)). Returns how many
    /// answers are now wholly written (and counted as served).
    ///
    /// One call is enough: a short write means the socket's send buffer is
    /// full, the kernel has noted that someone is waiting for space, and a
    /// writable event will come when it drains. Another `write` now would
    /// only return `WouldBlock`.
    ///
    /// An error (the client reset the connection; the file shrank or could
    /// not be read after its head promised a length) means the connection
    /// must close.
    pub fn send(&mut self, fresh: &mut Vec<u8>, now: Instant) -> io::Result<u64> {
        let before = self.bytes_out;
        if self.out.is_empty() {
            if !fresh.is_empty() {
                let n = self.write_once(fresh)?;
                self.out.extend_from_slice(&fresh[n..]);
                fresh.clear();
            }
        } else {
            self.out.append(fresh);
            let pending = mem::take(&mut self.out);
            let n = self.write_once(&pending)?;
            if n < pending.len() {
                self.out = pending;
                self.out.drain(..n);
            }
            // Otherwise `pending` is dropped here: an idle connection keeps no buffer.
        }
        if self.out.is_empty() {
            self.send_file()?;
        }
        if self.bytes_out != before {
            self.deadline.progress(now);
        }
        // A file body belongs to the last answer: it is not served until
        // its last byte is sent.
        if self.out.is_empty() && !self.session.body_pending() {
            let served = mem::take(&mut self.unwritten);
            self.requests += served;
            return Ok(served);
        }
        Ok(0)
    }

    /// Sends the next piece of the session's file body, if it has one: one
    /// `sendfile` of at most [`FILE_PER_TURN`] bytes from the file, at the
    /// body's offset, into the socket. The kernel copies from the page
    /// cache; nothing passes through user space.
    ///
    /// What it returns decides what the connection waits for: all it asked
    /// for or fewer bytes, the ready list (a short count may be a full
    /// buffer or a file that ends early; the next turn tells them apart);
    /// `WouldBlock`, a writable event; 0, the file ended before the length
    /// the head promised, an error that closes the connection (looping on
    /// it would spin forever).
    fn send_file(&mut self) -> io::Result<()> {
        let Some(body) = self.session.file_body() else {
            return Ok(());
        };
        let want =
            usize::try_from(body.remaining()).map_or(FILE_PER_TURN, |r| r.min(FILE_PER_TURN));
        let mut offset = body.offset();
        let sent = loop {
            match rustix::fs::sendfile(&self.stream, body.file(), Some(&mut offset), want) {
                Ok(0) => {
                    log::info!(
                        "{}: the file ended {} bytes before the length its head promised \
                         (it shrank while being sent); closing",
                        self.peer.remote,
                        body.remaining()
                    );
                    return Err(http::body::shrank());
                }
                Ok(n) => break n,
                Err(Errno::WOULDBLOCK) => {
                    self.socket.send_full = true;
                    log::trace!(
                        "token {}: send buffer full, {} bytes of the file wait for a writable event",
                        self.peer.token,
                        body.remaining()
                    );
                    return Ok(());
                }
                Err(Errno::INTR) => continue,
                Err(e) => return Err(e.into()),
            }
        };
        self.socket.send_full = false;
        self.bytes_out += sent as u64;
        log::trace!(
            "token {}: sent {sent} of {want} bytes from the file",
            self.peer.token
        );
        self.session.file_sent(sent);
        Ok(())
    }

    /// One `write` of `bytes`; `Ok(0)` when the send buffer is full. When a
    /// file body follows, it is a `send` with `MSG_MORE`: the socket has
    /// `TCP_NODELAY`, which would send the head in a packet of its own;
    /// `MSG_MORE` holds it for the file's first bytes, which `sendfile`
    /// adds at once (or, if the buffer is full, the next ACK pushes it).
    fn write_once(&mut self, bytes: &[u8]) -> io::Result<usize> {
        let more = self.session.file_body().is_some();
        loop {
            let written = match more {
                true => {
                    rustix::net::send(&self.stream, bytes, SendFlags::MORE).map_err(io::Error::from)
                }
                false => self.stream.write(bytes),
            };
            return match written {
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

    /// After a turn of serving: what the reactor should do next. A
    /// connection that owes nothing more finishes (see
    /// `finish`); one with work that no event will
    /// announce takes another turn; the rest wait.
    #[inline]
    pub fn after_serving(&mut self, buf: &mut [u8], now: Instant) -> Verdict {
        if self.is_done() {
            self.finish(buf, now)
        } else if self.out.is_empty() && self.next_step() != Step::Wait {
            Verdict::AnotherTurn
        } else {
            Verdict::Wait
        }
    }

    /// Every answer owed is written and the connection is to close. If the
    /// client may still be sending, send our FIN and linger instead of
    /// closing: a close with unread input makes the kernel send a reset,
    /// and a reset throws away whatever of our answers the client has not
    /// read yet. Whoever closes first keeps the TIME_WAIT, and it belongs
    /// on the server, not on the client, whose ephemeral ports it would hold.
    fn finish(&mut self, buf: &mut [u8], now: Instant) -> Verdict {
        // The common end: a client sent its request (`Connection: close`,
        // or HTTP/1.0), our last read emptied the socket, and it waits for
        // our FIN. Nothing is unread, so `close` sends a FIN, not a reset:
        // close at once, with no extra system call. nginx's `lingering_close
        // on` decides the same way.
        let refused = self.session.refused_input();
        if !self.socket.unread && !refused {
            return CloseReason::Done.into();
        }
        let _ = self.stream.shutdown(std::net::Shutdown::Write);
        // One read tells whether anything is still coming (and a refused
        // request says its rest may be on the way).
        match self.read_chunk(buf) {
            ReadOutcome::WouldBlock if refused => {
                log::debug!(
                    "linger {}: a refused request may still be arriving",
                    self.peer
                );
                self.start_lingering(now, 0)
            }
            ReadOutcome::Data(n) => {
                log::debug!(
                    "linger {}: the client is still sending; reading and discarding",
                    self.peer
                );
                // More may follow at once: read again next turn.
                self.socket.unread = true;
                self.start_lingering(now, n)
            }
            ReadOutcome::WouldBlock | ReadOutcome::Eof => CloseReason::Done.into(),
            ReadOutcome::Failed(e) => CloseReason::Failed(e.to_string()).into(),
        }
    }

    /// Our FIN is sent and the client is still sending: throw away what it
    /// sends, having already thrown away the `discarded` bytes that told us so.
    fn start_lingering(&mut self, now: Instant, discarded: usize) -> Verdict {
        self.set_writing(Writing::Shut);
        self.set_reading(Reading::Leftovers(Linger {
            since: now,
            last_input: now,
            discarded: discarded as u64,
        }));
        Verdict::Linger
    }

    /// Reads and throws away what the client sends, one buffer per turn:
    /// while lingering, until it closes its side or a limit is reached; on
    /// an event stream, to see the client leave.
    pub fn discard(&mut self, buf: &mut [u8], now: Instant) -> Verdict {
        let mut budget = buf.len();
        loop {
            match self.read_chunk(buf) {
                ReadOutcome::Data(n) => {
                    if let Reading::Leftovers(linger) = &mut self.reading {
                        linger.last_input = now;
                        linger.discarded += n as u64;
                        if linger.discarded > LINGER_BYTES {
                            return CloseReason::LingerByteLimit.into();
                        }
                    }
                    budget = budget.saturating_sub(n);
                    if budget == 0 {
                        return Verdict::AnotherTurn;
                    }
                }
                ReadOutcome::WouldBlock => return Verdict::Wait,
                ReadOutcome::Eof if self.is_streaming() => {
                    return CloseReason::LeftEventStream.into()
                }
                ReadOutcome::Eof => return CloseReason::DoneAfterLingering.into(),
                ReadOutcome::Failed(e) => return CloseReason::Failed(e.to_string()).into(),
            }
        }
    }

    /// Its deadline passed: what that does depends on what it waited for.
    /// `None`: it waits for nothing that can be late (a stale entry).
    pub fn on_deadline(&self) -> Option<Expiry> {
        Some(match self.waiting_for() {
            Waiting::ClientToLeave => Expiry::Close(CloseReason::LingerTimeUp),
            Waiting::ClientToRead => Expiry::Close(CloseReason::SendTimeout),
            Waiting::RestOfRequest if self.awaits_preface() => {
                Expiry::Close(CloseReason::ProxyHeaderTimeout)
            }
            Waiting::RestOfRequest => Expiry::RequestTimeout,
            Waiting::NextRequest => Expiry::Close(CloseReason::IdleTimeout),
            Waiting::NextEvent => return None,
        })
    }

    /// What the connection waits for; see [`Waiting`].
    pub fn waiting_for(&self) -> Waiting {
        if matches!(self.reading, Reading::Leftovers(_)) {
            Waiting::ClientToLeave
        } else if !self.out.is_empty() || self.has_more_to_write() {
            Waiting::ClientToRead
        } else if self.writing == Writing::Events {
            Waiting::NextEvent
        } else if self.session.mid_request() || self.socket.unread || self.awaits_preface() {
            Waiting::RestOfRequest
        } else {
            Waiting::NextRequest
        }
    }

    /// Works out when the connection times out from what it waits for now.
    /// Returns a time to push into the timer heap when the deadline moved
    /// earlier than the entry already there.
    pub fn rearm(&mut self, now: Instant, t: &Timeouts) -> Option<Instant> {
        let due = match (self.waiting_for(), &self.reading) {
            (Waiting::ClientToLeave, Reading::Leftovers(linger)) => Some(linger.deadline()),
            (Waiting::ClientToRead, _) => t.send.map(|d| self.deadline.last_progress() + d),
            (Waiting::RestOfRequest, _) => t.header.map(|d| self.deadline.request_started(now) + d),
            (Waiting::NextEvent, _) => None,
            _ => t.idle.map(|d| now + d),
        };
        self.deadline.set(due)
    }

    /// A timer heap entry for `when` came due at `now`.
    pub fn on_timer(&mut self, when: Instant, now: Instant) -> Fired {
        self.deadline.fire(when, now)
    }

    /// Whether `when` is this connection's live entry in the timer heap.
    pub fn is_armed_at(&self, when: Instant) -> bool {
        self.deadline.is_armed_at(when)
    }

    /// May this connection be closed to make room for a new one, and how
    /// eagerly: lingering ones first (they owe nothing and only wait for
    /// the client to go), then keep-alive connections that have had an
    /// answer and wait for nothing, nearest idle deadline first. Never one
    /// in the middle of a request or an answer, and never an event stream,
    /// whose answer is in progress for as long as it lives.
    pub fn reclaim_order(&self) -> Option<(bool, Option<Instant>)> {
        match self.reading {
            Reading::Leftovers(_) => Some((false, self.deadline.due())),
            Reading::Requests
                if self.requests > 0
                    && !self.scheduled
                    && self.waiting_for() == Waiting::NextRequest =>
            {
                Some((true, self.deadline.due()))
            }
            _ => None,
        }
    }

    /// The server is shutting down. Returns true if the connection can
    /// close now: nothing begun, nothing owed. One whose answers are still
    /// queued stops reading and closes after them; one in the middle of a
    /// request finishes it (its answer will say `Connection: close`).
    pub fn on_shutdown(&mut self) -> bool {
        if self.writing == Writing::Events {
            // An event stream has no last answer to finish: it ends here,
            // after what is already queued.
            self.set_reading(Reading::Nothing);
            self.set_writing(Writing::Answers);
            return self.out.is_empty();
        }
        if !self.reads_requests() || self.session.mid_request() || self.socket.unread {
            return false;
        }
        if self.out.is_empty() {
            return true;
        }
        self.set_reading(Reading::Nothing);
        false
    }

    /// This connection's row in the connection table.
    pub fn row(&self, now: Instant, you: bool) -> ConnRow {
        let (state, phase) = self.state_and_phase();
        // It is answering this very request.
        let phase = if you { Phase::Writing } else { phase };
        ConnRow {
            token: Some(self.peer.token),
            proto: "tcp",
            local: self.peer.local,
            remote: Some(self.peer.remote),
            state: RowState::Tcp(state),
            phase,
            age_ms: now.duration_since(self.accepted_at).as_millis() as u64,
            bytes_in: self.bytes_in,
            bytes_out: self.bytes_out,
            requests: Some(self.requests),
            you,
            client: self.origin.as_deref().copied(),
        }
    }

    /// The table's State and Phase columns: the TCP state as netstat would
    /// name the kernel's (our FIN sent and theirs not yet come is FIN_WAIT2,
    /// once acknowledged; theirs come and ours not yet sent is CLOSE_WAIT),
    /// and what the server is doing with the connection.
    pub fn state_and_phase(&self) -> (TcpState, Phase) {
        let phase = match (&self.reading, self.writing) {
            (Reading::Leftovers(_), _) => Phase::Linger,
            (_, Writing::Events) => Phase::Stream,
            _ if !self.out.is_empty() => Phase::Writing,
            (Reading::Nothing | Reading::Goodbye, _) | (_, Writing::Shut) => Phase::Closing,
            (Reading::ProxyHeader(_), _) => Phase::Reading,
            (Reading::Requests, _) => self.session.phase(),
        };
        let state = match self.reading {
            Reading::Leftovers(_) => TcpState::FinWait2,
            _ if self.socket.fin_received => TcpState::CloseWait,
            _ => TcpState::Established,
        };
        (state, phase)
    }

    /// The socket, for registering with the Poll.
    pub fn stream_mut(&mut self) -> &mut TcpStream {
        &mut self.stream
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An idle connection costs its slab entry and little else, so the
    /// entry's size is most of what 15,000 idle clients cost. What only
    /// some connections need (a PROXY header, a file or a listing being
    /// sent, a request body's answer) is boxed, and this keeps it so.
    #[test]
    #[cfg(target_pointer_width = "64")]
    fn a_connection_stays_small() {
        let size = mem::size_of::<Connection>();
        assert!(size <= 384, "Connection is {size} bytes");
        assert!(mem::size_of::<Session>() <= 80);
    }
}
