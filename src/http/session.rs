//! One connection's HTTP/1.1 state machine.
//!
//! A [`Session`] takes the bytes that arrived on one connection, in whatever
//! pieces they came, and appends the answer to every complete request to an
//! output buffer. It keeps only what it must between calls: the unfinished
//! start of a request, requests waiting for the next turn, the answer owed
//! to a request whose body is still arriving, and a file body still being
//! sent. Framing is check, parse, advance (see [`super::parse`]): a
//! request that is not all here yet is not an error, just a reason to wait.
//!
//! A large file is not copied into the output: the answer names it as a
//! [`FileRange`], which the I/O layer sends after the output buffer and
//! reports back ([`Session::file_body`], [`Session::file_sent`]). Requests
//! that arrive behind it wait until its last byte is sent, so answers
//! leave in the order they were asked for.

use std::mem;

use super::access::{
    access_log, access_log_kept, access_log_on, Escaped, KeptRequest, Request, RequestLine,
};
use super::decode::ChunkedDecoder;
use super::parse::{self, BodyKind, Limits, Parsed, Reject, RequestHead};
use super::response::{self, write_error, Answer};
use super::routes::{self, Route};
use super::{Ctx, FileRange, Piece, Progress, Reply, Streamed, TURN_OUTPUT, TURN_RESPONSES};
use crate::table::Phase;

/// The protocol state of one connection.
///
/// Idle, it holds no heap memory at all: `held` only allocates while a
/// request is split across reads (or requests wait their turn), and is freed
/// as soon as it is empty.
///
/// Reading a head that arrives in pieces costs time in proportion to its
/// size, not to its size times the number of pieces: the parser runs again
/// over `held` only when the new bytes may have changed its verdict (see
/// [`Session::feed`]). Empty lines before a request line are counted and
/// dropped, never kept, so `held` stays below `Limits::max_head` plus one
/// read, whatever a client sends.
#[derive(Debug, Default)]
pub struct Session {
    /// Bytes received but not used yet: the start of a request head whose end
    /// has not arrived, or whole requests waiting for the next turn.
    pub(super) held: Vec<u8>,
    /// Bytes of empty lines received before the request line that `held`
    /// starts (or will start): dropped, but counted against the head limit.
    skipped: usize,
    /// The partial head in `held` contains its whole request line, and the
    /// parser has seen it and found it good.
    line_checked: bool,
    reading: Reading,
    /// The answer owed to a request whose body is still arriving. Boxed, as
    /// the chunked decoder below: the reactor moves a session in and out of
    /// its connection for every read, and a small one moves in registers.
    owed: Option<Box<Owed>>,
    /// The last answer's body, still to be sent after the output buffer:
    /// a range of an open file, which the I/O layer sends itself.
    /// Boxed, as `streamed` below: a connection that waits between
    /// requests carries only the pointer (see `owed`).
    file: Option<Box<FileRange>>,
    /// The last answer's body, made a piece per turn (a long table or
    /// directory listing): each turn's piece once the last one is sent.
    streamed: Option<Box<Streamed>>,
    /// Requests in `held` wait for a later turn: this turn's share of
    /// output is used up (see `TURN_OUTPUT`), or a file body goes first.
    paused: bool,
    /// The client has closed its side while requests were waiting; answer
    /// them, then drop whatever incomplete request remains.
    eof_pending: bool,
    /// A request was refused: the client may still be sending it (a body
    /// too large, a bad request with more behind it), and nobody will read it.
    refused: bool,
}

#[derive(Debug, Default)]
enum Reading {
    /// Waiting for (the rest of) a request head.
    #[default]
    Head,
    /// Skipping a `Content-Length` body: this many bytes to go.
    Body(u64),
    /// Skipping a chunked body.
    Chunked(Box<ChunkedDecoder>),
    /// The connection is to close: everything else it sends is ignored.
    Done,
}

/// A response decided at the head and written after the body.
#[derive(Debug)]
struct Owed {
    route: Route,
    answer: Answer,
    /// The request for the access log, kept only when the log is on.
    request: Option<KeptRequest>,
}

impl Session {
    /// Takes bytes read from the connection, appends the responses to the
    /// complete requests among them to `out`, and keeps any rest: an
    /// unfinished request, or requests beyond this turn's share (then
    /// [`wants_resume`](Session::wants_resume) is true).
    ///
    /// When part of a head is already held, the new bytes are appended, and
    /// the parser runs over the whole head again only if they may change its
    /// verdict: they complete the request line (so a bad one is refused at
    /// once), they may end the head, or the head has outgrown a limit. Any
    /// other piece (one more header line, or a byte of one) costs a copy and
    /// a look at the new bytes only.
    pub fn feed(&mut self, input: &[u8], ctx: &Ctx<'_>, out: &mut Vec<u8>) -> Progress {
        let mut progress = Progress::default();
        if self.has_more() {
            // Not our turn: the caller should not have read, but keep the bytes.
            self.held.extend_from_slice(input);
            return progress;
        }
        if self.held.is_empty() {
            // The common case: the read holds whole requests. Parse them where
            // they lie in the reactor's buffer, and copy only a trailing piece.
            let used = self.run(input, ctx, out, &mut progress);
            self.keep(&input[used..]);
            return progress;
        }
        let decisive = !matches!(self.reading, Reading::Head)
            || self.may_decide_head(input, &ctx.config.limits);
        self.held.extend_from_slice(input);
        if decisive {
            self.run_held(ctx, out, &mut progress);
        }
        progress
    }

    /// Whether `input`, appended to the partial head in `held`, may change
    /// what the parser says about it.
    fn may_decide_head(&self, input: &[u8], limits: &Limits) -> bool {
        let size = self.held.len() + input.len();
        if self.skipped + size > limits.max_head {
            return true; // 431 (or a verdict the parser finds first)
        }
        if !self.line_checked {
            // A head cannot end before its request line does.
            return input.contains(&b'\n') || size > limits.max_request_line;
        }
        let tail = &self.held[self.held.len().saturating_sub(2)..];
        ends_an_empty_line(tail, input)
    }

    /// True when the protocol has work to do without reading anything:
    /// requests that wait for their turn (or a close the client asked for
    /// behind them), and no file body in their way.
    pub fn wants_resume(&self) -> bool {
        self.file.is_none() && (self.paused || self.eof_pending || self.streamed.is_some())
    }

    /// The last answer's body is still being sent: a file, or pieces.
    pub fn body_pending(&self) -> bool {
        self.file.is_some() || self.streamed.is_some()
    }

    /// Whether the last answer's body is made a piece per turn.
    pub fn streams_body(&self) -> bool {
        self.streamed.is_some()
    }

    /// Whether the body being sent holds a descriptor of its own (a file,
    /// an open directory), which counts against `--max-conns`.
    pub fn holds_descriptor(&self) -> bool {
        self.file.is_some()
            || self
                .streamed
                .as_ref()
                .is_some_and(|s| s.pieces.holds_descriptor())
    }

    /// The file range the I/O layer is to send after the output buffer, if
    /// the last answer's body is one. Nothing else is answered on this
    /// connection until all of it is sent.
    pub fn file_body(&self) -> Option<&FileRange> {
        self.file.as_deref()
    }

    /// The I/O layer sent `n` more bytes of the file body. Once the last
    /// one is out, the file is closed at once (its descriptor is counted
    /// against the connection cap), and the requests waiting behind it
    /// get their turn ([`wants_resume`](Session::wants_resume)).
    pub fn file_sent(&mut self, n: usize) {
        if let Some(file) = &mut self.file {
            file.advance(n as u64);
            if file.remaining() == 0 {
                self.file = None;
            }
        }
    }

    /// More to write without reading anything: a file body, or requests
    /// that wait for their turn.
    fn has_more(&self) -> bool {
        self.file.is_some() || self.streamed.is_some() || self.paused
    }

    /// Continues where the last turn stopped: the requests that were
    /// waiting, once no file body is in their way.
    pub fn resume(&mut self, ctx: &Ctx<'_>, out: &mut Vec<u8>) -> Progress {
        let mut progress = Progress::default();
        if self.file.is_some() {
            return progress; // the I/O layer sends it first
        }
        if let Some(body) = &mut self.streamed {
            let budget = TURN_OUTPUT.saturating_sub(out.len());
            match body.next_piece(ctx.host, out, budget) {
                Piece::More => return progress,
                Piece::Done => self.streamed = None,
                Piece::Failed => {
                    // The body breaks off unfinished: closing is how the
                    // client learns it is incomplete.
                    self.streamed = None;
                    self.end();
                    progress.close = true;
                    return progress;
                }
            }
        }
        if self.paused && out.len() < TURN_OUTPUT {
            self.paused = false;
            self.run_held(ctx, out, &mut progress);
        }
        if self.eof_pending && !self.has_more() {
            self.on_eof(ctx);
            progress.close = true;
        }
        progress
    }

    /// The client closed its side. Requests already received are still
    /// answered (see [`resume`](Session::resume)); an unfinished one is
    /// dropped and logged. Returns the bytes dropped.
    pub fn on_eof(&mut self, ctx: &Ctx<'_>) -> usize {
        if self.has_more() {
            self.eof_pending = true;
            return 0;
        }
        let dropped = self.held.len();
        let mid_body = matches!(self.reading, Reading::Body(_) | Reading::Chunked(_));
        if (dropped > 0 || mid_body) && log::log_enabled!(log::Level::Info) {
            log::info!(
                "{} closed its side in the middle of a request, after {} unanswerable bytes: \"{}\"",
                ctx.peer.remote,
                dropped,
                Escaped(&self.held[..dropped.min(80)])
            );
        }
        self.end();
        dropped
    }

    /// The client took too long to send its request: answer 408 and end.
    pub fn on_timeout(&mut self, ctx: &Ctx<'_>, out: &mut Vec<u8>) -> Progress {
        let reject = Reject {
            status: response::Status::REQUEST_TIMEOUT,
            reason: "the request did not arrive in time",
        };
        let held = mem::take(&mut self.held);
        let head_only = match &self.owed {
            Some(owed) => owed.answer.head_only,
            None => names_head(&held),
        };
        let mut progress = Progress::default();
        self.reject(reject, &held, head_only, ctx, out, &mut progress);
        progress
    }

    /// What the session is doing, for the connection table.
    pub fn phase(&self) -> Phase {
        match self.reading {
            _ if self.has_more() => Phase::Writing,
            Reading::Head if self.held.is_empty() && self.skipped == 0 => Phase::Idle,
            Reading::Head | Reading::Body(_) | Reading::Chunked(_) => Phase::Reading,
            Reading::Done => Phase::Closing,
        }
    }

    /// A request was refused mid-stream: whatever the client is still
    /// sending will not be read. The connection should close gently (read
    /// and discard for a while) rather than at once.
    pub fn refused_input(&self) -> bool {
        self.refused
    }

    /// True while part of a request has arrived and its answer is not written.
    /// Empty lines before a request line count as part of it: the header
    /// timeout, not the idle timeout, applies to a client that sends them.
    pub fn mid_request(&self) -> bool {
        !self.held.is_empty()
            || self.skipped > 0
            || self.has_more()
            || matches!(self.reading, Reading::Body(_) | Reading::Chunked(_))
    }

    /// Nothing more will be read or answered on this connection.
    fn end(&mut self) {
        self.held = Vec::new();
        self.skipped = 0;
        self.line_checked = false;
        self.reading = Reading::Done;
        self.owed = None;
        self.paused = false;
        self.eof_pending = false;
    }

    /// Runs the parser over `held`, keeping what it did not use.
    fn run_held(&mut self, ctx: &Ctx<'_>, out: &mut Vec<u8>, progress: &mut Progress) {
        let mut held = mem::take(&mut self.held);
        let used = self.run(&held, ctx, out, progress);
        if used < held.len() {
            held.drain(..used);
            self.held = held;
            self.note_partial_head();
        }
        // Otherwise `held` is dropped: its memory goes back as soon as it is unused.
    }

    /// Keeps `rest`, what [`run`](Session::run) left of the reactor's buffer.
    fn keep(&mut self, rest: &[u8]) {
        if !rest.is_empty() {
            self.held.extend_from_slice(rest);
            self.note_partial_head();
        }
    }

    /// After `run` stopped at a partial head, records whether its request
    /// line has been seen whole (and passed the parser, or `run` would have
    /// refused it). Looks only as far as the first line end.
    fn note_partial_head(&mut self) {
        self.line_checked = !self.paused && self.held.contains(&b'\n');
    }

    /// Parses and answers requests from `data` until it runs out, the
    /// connection must close, or this turn's share is used up. Returns how
    /// many bytes were used.
    fn run(
        &mut self,
        data: &[u8],
        ctx: &Ctx<'_>,
        out: &mut Vec<u8>,
        progress: &mut Progress,
    ) -> usize {
        let limits = &ctx.config.limits;
        let mut slots = parse::slots();
        let mut pos = 0;
        while !progress.close {
            if self.body_pending()
                || out.len() >= TURN_OUTPUT
                || progress.responses >= TURN_RESPONSES
            {
                self.paused = pos < data.len();
                return pos;
            }
            match &mut self.reading {
                Reading::Head => {
                    if pos == data.len() {
                        return pos;
                    }
                    match parse::parse_head(&data[pos..], self.skipped, &mut slots, limits) {
                        Ok(Parsed::Partial { skipped }) => {
                            // Empty lines are counted, not kept.
                            self.skipped += skipped;
                            return pos + skipped;
                        }
                        Ok(Parsed::Complete(head, len)) => {
                            pos += len;
                            self.skipped = 0;
                            self.on_head(&head, ctx, out, progress);
                        }
                        Err(reject) => {
                            let rest = &data[pos..];
                            let head_only = names_head(rest);
                            self.reject(reject, rest, head_only, ctx, out, progress);
                        }
                    }
                }
                Reading::Body(left) => {
                    let take = (data.len() - pos).min(usize::try_from(*left).unwrap_or(usize::MAX));
                    pos += take;
                    *left -= take as u64;
                    if *left > 0 {
                        return pos;
                    }
                    self.pay_owed(ctx, out, progress);
                }
                Reading::Chunked(decoder) => match decoder.decode(&data[pos..], limits) {
                    Ok((used, true)) => {
                        pos += used;
                        self.pay_owed(ctx, out, progress);
                    }
                    Ok((used, false)) => return pos + used,
                    Err(reject) => {
                        let head_only = self.owed.take().is_some_and(|o| o.answer.head_only);
                        self.reject(reject, b"", head_only, ctx, out, progress);
                    }
                },
                Reading::Done => break,
            }
        }
        self.reading = Reading::Done;
        data.len()
    }

    /// A whole head has arrived: answer now, or after its body.
    fn on_head(
        &mut self,
        head: &RequestHead<'_, '_>,
        ctx: &Ctx<'_>,
        out: &mut Vec<u8>,
        progress: &mut Progress,
    ) {
        let route = routes::resolve(head, ctx.config.files.is_some());
        let ends = routes::ends_connection(head.method, &route);
        let answer = Answer {
            head_only: head.method == "HEAD",
            minor: head.minor,
            close: !head.keep_alive || ctx.shutting_down || ends,
        };
        // After a refused CONNECT, what follows the head is a tunnel's bytes,
        // not a body: answer at once, read nothing more.
        let body = if ends { BodyKind::None } else { head.body };
        let next = match body {
            BodyKind::None => {
                let reply = routes::respond(&route, &answer, ctx, out);
                if access_log_on(ctx) {
                    access_log(ctx, &Request::of(head), reply.status, reply.body_bytes);
                }
                self.account(reply, answer, progress);
                return;
            }
            BodyKind::Length(n) => Reading::Body(n),
            BodyKind::Chunked => Reading::Chunked(Box::default()),
        };
        if head.expects_continue {
            out.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
        }
        let request = access_log_on(ctx).then(|| Request::of(head).keep());
        self.owed = Some(Box::new(Owed {
            route,
            answer,
            request,
        }));
        self.reading = next;
    }

    /// The body of the request in `owed` has been read: write its answer.
    fn pay_owed(&mut self, ctx: &Ctx<'_>, out: &mut Vec<u8>, progress: &mut Progress) {
        self.reading = Reading::Head;
        if let Some(owed) = self.owed.take() {
            let reply = routes::respond(&owed.route, &owed.answer, ctx, out);
            if let Some(kept) = &owed.request {
                access_log_kept(ctx, kept, reply.status, reply.body_bytes);
            }
            self.account(reply, owed.answer, progress);
        }
    }

    #[inline]
    fn account(&mut self, reply: Reply, answer: Answer, progress: &mut Progress) {
        progress.responses += 1;
        progress.statuses.count(reply.status);
        progress.close |= answer.close || reply.close;
        progress.events = reply.events;
        // A range with nothing left (an empty one) is no body to wait for.
        self.file = reply.file.filter(|f| f.remaining() > 0).map(Box::new);
        self.streamed = reply.streamed.map(Box::new);
    }

    /// Answers a request that cannot be framed, and ends the connection.
    /// `rest`: the bytes from the refused request's start, for the log.
    /// `head_only`: the request is a HEAD, so the answer has no body, error
    /// or not; a client that sent HEAD reads none, and would take a body
    /// for the start of the next response.
    fn reject(
        &mut self,
        reject: Reject,
        rest: &[u8],
        head_only: bool,
        ctx: &Ctx<'_>,
        out: &mut Vec<u8>,
        progress: &mut Progress,
    ) {
        self.refused = true;
        let answer = Answer {
            head_only,
            minor: 1,
            close: true,
        };
        let bytes = write_error(out, &answer, reject.status, ctx.date, &[], reject.reason);
        if access_log_on(ctx) {
            let rest = &rest[parse::leading_empty_lines(rest)..];
            let line_end = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
            let line = &rest[..line_end.min(200)];
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let request = Request {
                line: RequestLine::Raw(line),
                referer: b"",
                agent: b"",
                why: Some(reject.reason),
            };
            access_log(ctx, &request, reject.status, bytes);
        }
        progress.responses += 1;
        progress.statuses.count(reject.status);
        progress.close = true;
        self.end();
    }
}

/// The answer to a client the server is too full to take (`--max-conns`):
/// a 503 that says when to try again, written for `request`, the bytes the
/// client has sent so far (often its whole request: HTTP clients send it
/// as soon as they are connected). A HEAD gets the head alone, as every
/// answer to a HEAD does: a body there would be read as the start of the
/// next response.
pub fn write_full(request: &[u8], date: &str, out: &mut Vec<u8>) {
    let answer = Answer {
        head_only: names_head(request),
        minor: 1,
        close: true,
    };
    write_error(
        out,
        &answer,
        response::Status::SERVICE_UNAVAILABLE,
        date,
        &[("Retry-After", "1")],
        "The server holds as many connections as it may (--max-conns). Try again shortly.",
    );
}

/// Whether a request whose head was refused is a HEAD. The method is the
/// first word of the request line: when the line gets that far, the client
/// sent HEAD and will read no body, whatever else is wrong with its
/// request. When the request is too broken to tell, there is no HEAD to
/// honour.
fn names_head(request: &[u8]) -> bool {
    request[parse::leading_empty_lines(request)..].starts_with(b"HEAD ")
}

/// True if `new` completes an empty line (`LF LF` or `LF CR LF`, the only
/// ways a head can end), counting the last bytes of `old` before it, so
/// that an empty line split between two reads is found.
fn ends_an_empty_line(old: &[u8], new: &[u8]) -> bool {
    // The two bytes before the one looked at; 0 stands for "none".
    let mut before = [0u8; 2];
    for (slot, &b) in before.iter_mut().rev().zip(old.iter().rev()) {
        *slot = b;
    }
    for &b in new {
        if b == b'\n' && (before[1] == b'\n' || before == *b"\n\r") {
            return true;
        }
        before = [before[1], b];
    }
    false
}
