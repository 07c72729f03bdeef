//! What answering one request produced: a [`Reply`].
//!
//! An answer's head, and any small body, are written straight into the
//! connection's output buffer, so most of what a reply says is already
//! there: the reply only adds what the session needs to know besides. Its
//! status and body size go to the access log and the metrics, and whether
//! the connection must close to end the body. A body that is not in the
//! buffer rides with the reply: a range of an open file that the I/O layer
//! sends itself, or a body made a piece per turn (see [`super::body`]).
//!
//! It has a file of its own because two sides make replies: the routes,
//! and whatever answers for a served directory through
//! [`super::FileService`], which names this type without reaching into the
//! route table.

use super::body::{FileRange, Pieces, Streamed};
use super::response::{write_streamed_head, Answer, Status};

/// What answering a request produced.
#[derive(Debug)]
pub struct Reply {
    pub status: Status,
    /// Body bytes written (or promised, for a file body), for the log.
    pub body_bytes: u64,
    /// The body, when it is (the rest of) a file that the I/O layer sends
    /// after the output buffer. `None` when the body is all in `out`.
    pub file: Option<FileRange>,
    /// The body, when it is made a piece at a time after the head (see
    /// [`Pieces`]).
    pub streamed: Option<Streamed>,
    /// The connection must close after this answer (a body that its close
    /// ends, for an HTTP/1.0 client).
    pub close: bool,
    /// This is the event stream's head: the body is the events the server
    /// writes from now on, ended by the connection's close.
    pub events: bool,
}

impl Reply {
    /// A reply whose body (if any) is already in the output.
    pub fn written(status: Status, body_bytes: u64) -> Reply {
        Reply {
            status,
            body_bytes,
            file: None,
            streamed: None,
            close: false,
            events: false,
        }
    }

    /// A 200 whose body `pieces` makes after the head, which is written
    /// now; for a HEAD, the head alone.
    pub fn streamed(
        out: &mut Vec<u8>,
        answer: &Answer,
        date: &str,
        content_type: &str,
        extra: &[(&str, &str)],
        pieces: Box<dyn Pieces>,
    ) -> Reply {
        let chunked = write_streamed_head(out, answer, Status::OK, date, content_type, extra);
        Reply {
            status: Status::OK,
            body_bytes: 0,
            file: None,
            streamed: (!answer.head_only).then_some(Streamed { pieces, chunked }),
            close: !chunked,
            events: false,
        }
    }
}
