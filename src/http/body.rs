//! A response body that is not in the output buffer: a range of an open
//! file, or a body made a piece at a time.
//!
//! The protocol writes every head, and every small body, into the
//! connection's output buffer. A large file is different: copying it
//! through that buffer would cost a `read` into user space and a `write`
//! back out, 64 KiB at a time. So the protocol only *names* it, as a
//! [`FileRange`] (this file, from this offset, this many bytes), and the
//! I/O layer around it sends it as it sees fit: the mio reactor with
//! `sendfile(2)`, from the page cache straight to the socket, a bounded
//! piece per turn; the tokio version the same way inside its own readiness
//! checks; the unit tests and the fuzzer, which have no socket, by
//! copying ([`FileRange::copy_into`]). The I/O layer reports what it sent
//! back to the session (`Session::file_sent`), which drops the range, and
//! with it the file's descriptor, the moment the last byte is out.
//!
//! Holding a file is holding a descriptor besides the connection's own,
//! which a cap that counts connections cannot see. So a session says
//! whether its body holds one (`Session::holds_descriptor`: a `FileRange`,
//! or [`Pieces::holds_descriptor`]), and the reactor counts its
//! connections' bodies from that before it accepts more.
//!
//! A body whose size the client chooses is the other kind: the whole
//! connection table (`/_/conns?all` over 15,000 connections is 1.6 MB),
//! or a directory of 100,000 entries. Built whole, it takes the loop for
//! tens of milliseconds and holds megabytes per requester. So it is made
//! the way a file is sent: a piece per turn, once the last piece has left,
//! by a [`Pieces`] that remembers where it stopped. Its head says
//! `Transfer-Encoding: chunked` (HTTP/1.1) or that the connection's close
//! ends the body (HTTP/1.0), since its length is not known up front.

use std::fmt;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

/// `remaining` bytes of `file` from `offset`: the rest of a body whose head
/// (with its `Content-Length`) has already been written. The file's own
/// position is never used: every read names its offset (`pread`,
/// `sendfile` with an offset), so nothing else can move it.
#[derive(Debug)]
pub struct FileRange {
    file: File,
    /// Where in the file the next byte to send is.
    offset: u64,
    /// Bytes still promised by the head.
    remaining: u64,
}

impl FileRange {
    /// The range that starts at `offset` and holds `len` bytes of `file`.
    pub fn new(file: File, offset: u64, len: u64) -> FileRange {
        FileRange {
            file,
            offset,
            remaining: len,
        }
    }

    /// The open file, for the I/O layer to send from.
    pub fn file(&self) -> &File {
        &self.file
    }

    /// Where in the file the next byte to send is.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Bytes still to send.
    pub fn remaining(&self) -> u64 {
        self.remaining
    }

    /// `n` more bytes were sent. Never more than were promised: a range
    /// cannot go past its end, whatever the caller says.
    pub(super) fn advance(&mut self, n: u64) {
        let n = n.min(self.remaining);
        self.offset += n;
        self.remaining -= n;
    }

    /// Appends the next bytes of the range to `out`, at most `max`, with
    /// `pread`: for an I/O layer that cannot send from a file, and for
    /// small files, which go out with their head in one write. Like
    /// `sendfile`, it leaves the range as it is; report what was sent with
    /// `Session::file_sent`. All or nothing: `Ok(n)` once it has appended
    /// all it was asked for (`max`, or what remains); otherwise `out` is as
    /// it was, and the error says why: the file ended early (it shrank
    /// since the head promised its length), or the read failed.
    pub fn copy_into(&self, out: &mut Vec<u8>, max: usize) -> io::Result<usize> {
        let want = usize::try_from(self.remaining).map_or(max, |r| r.min(max));
        let start = out.len();
        out.resize(start + want, 0);
        let mut got = 0;
        // Bounded: each pass reads at least one byte, leaves, or was cut
        // short by a signal before it read anything.
        while got < want {
            match self
                .file
                .read_at(&mut out[start + got..], self.offset + got as u64)
            {
                Ok(0) => {
                    out.truncate(start);
                    return Err(shrank());
                }
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    out.truncate(start);
                    return Err(e);
                }
            }
        }
        Ok(want)
    }
}

/// What the I/O layer reports when a file ends before its range does.
pub fn shrank() -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        "the file shrank while it was being sent",
    )
}

/// A body made a piece at a time: the protocol asks for the next piece on
/// each turn in which the connection has sent everything before it.
pub trait Pieces: fmt::Debug + Send {
    /// Appends the next piece to `out`, about `budget` bytes (a row may
    /// go past it), and says whether more will follow. `host` is the
    /// server, for a body made from its state (the connection table); its
    /// [`super::Host::turn_budget`] shares out the work all such bodies may
    /// do in one turn, and a piece may be empty when that is spent.
    fn next_piece(&mut self, host: &dyn super::Host, out: &mut Vec<u8>, budget: usize) -> Piece;

    /// Whether it holds a descriptor (an open directory), which counts
    /// against `--max-conns` as a file body's does.
    fn holds_descriptor(&self) -> bool {
        false
    }
}

/// What [`Pieces::next_piece`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Piece {
    /// More pieces follow.
    More,
    /// That was the last one.
    Done,
    /// The body cannot be finished (a directory could not be read any
    /// further): the connection closes with the body unfinished, which is
    /// how HTTP tells a client that an answer broke off.
    Failed,
}

/// A body made a piece at a time, and how its end is marked.
#[derive(Debug)]
pub struct Streamed {
    pub pieces: Box<dyn Pieces>,
    /// `Transfer-Encoding: chunked` (HTTP/1.1); otherwise the connection's
    /// close ends the body (HTTP/1.0).
    pub chunked: bool,
}

impl Streamed {
    /// Appends the next piece, framed: as a chunk, or as it is. Returns what
    /// the pieces said.
    pub fn next_piece(
        &mut self,
        host: &dyn super::Host,
        out: &mut Vec<u8>,
        budget: usize,
    ) -> Piece {
        let start = out.len();
        let piece = self.pieces.next_piece(host, out, budget);
        if self.chunked {
            let len = out.len() - start;
            if len > 0 {
                // The chunk's size goes before it: written after the piece
                // (its length is known only then) and moved into place.
                let mut size = [0u8; 18];
                let head = chunk_size(len, &mut size);
                out.splice(start..start, head.iter().copied());
                out.extend_from_slice(b"\r\n");
            }
            if piece == Piece::Done {
                out.extend_from_slice(b"0\r\n\r\n");
            }
        }
        piece
    }
}

/// `len` in hexadecimal with CRLF: a chunk's size line.
fn chunk_size(len: usize, buf: &mut [u8; 18]) -> &[u8] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut at = 16;
    let mut n = len;
    loop {
        at -= 1;
        buf[at] = HEX[n & 15];
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    buf[16] = b'\r';
    buf[17] = b'\n';
    &buf[at..]
}
