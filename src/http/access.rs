//! The access log: one line per answer, in the Combined Log Format that
//! log tools read, and bytes shown safely in it.
//!
//! ```text
//! 127.0.0.1 - - [02/Dec/2026:06:43:46 +0000] "GET /_/hello HTTP/1.1" 200 13 "-" "curl/8.5.0" "tcp 127.0.0.1:500 <- 127.0.0.1:54240"
//! ```
//!
//! The first eight fields are Apache's and nginx's `combined` format
//! (client, identity, user, time, request line, status, body bytes,
//! referrer, user agent), so goaccess, awk scripts and log shippers read
//! the lines as they are. The last field is this project's own: the
//! connection the request came on, both ends of it, which with the
//! protocol make its 5-tuple. A keep-alive client's requests share it; a
//! new connection, even from the same client, has a new remote port.
//!
//! Lines are not written one by one. A session appends its lines to the
//! turn's [`AccessLog`], and the I/O layer hands the whole turn's worth on
//! at once (the reactor to a [`crate::sink::Sink`], which never waits for
//! the reader): one hand-over per turn instead of a `write(2)` per request.
//!
//! A request line is whatever a client sent, so it is never written to the
//! log as it is: [`Escaped`] shows printable ASCII and escapes the rest, so
//! that a client cannot forge log lines or send terminal escapes to whoever
//! reads the log.

use std::cell::RefCell;
use std::fmt;
use std::io::Write;

use super::parse::RequestHead;
use super::response::Status;
use super::Ctx;

/// This turn's access-log lines, gathered for one hand-over at its end.
#[derive(Debug, Default)]
pub struct AccessLog {
    lines: RefCell<Vec<u8>>,
}

impl AccessLog {
    /// Gives this turn's lines to `write` (all whole lines) and starts over.
    pub fn hand_over(&self, write: impl FnOnce(&[u8])) {
        let mut lines = self.lines.borrow_mut();
        if !lines.is_empty() {
            write(&lines);
            lines.clear();
            if lines.capacity() > 256 * 1024 {
                *lines = Vec::new(); // a burst grew it: give the memory back
            }
        }
    }

    /// One line: who asked, what, and what they got.
    fn line(&self, ctx: &Ctx<'_>, request: &Request<'_>, status: Status, bytes: u64) {
        let mut out = self.lines.borrow_mut();
        let peer = ctx.peer;
        let _ = write!(
            out,
            "{} - - [{}] \"{}\" {} ",
            peer.remote.ip(),
            LogDate(ctx.date),
            request.line,
            status.code
        );
        match bytes {
            0 => out.push(b'-'),
            n => {
                let _ = write!(out, "{n}");
            }
        }
        let _ = write!(
            out,
            " \"{}\" \"{}\" \"{peer}\"",
            Field(request.referer),
            Field(request.agent)
        );
        if let Some(why) = request.why {
            let _ = write!(out, " ({why})");
        }
        out.push(b'\n');
    }
}

/// What the access log keeps of a request.
pub(super) struct Request<'a> {
    /// The request line, escaped.
    pub line: RequestLine<'a>,
    pub referer: &'a [u8],
    pub agent: &'a [u8],
    /// Why the request was refused, if it was.
    pub why: Option<&'a str>,
}

impl<'a> Request<'a> {
    /// A request whose head was read whole.
    pub fn of(head: &'a RequestHead<'_, 'a>) -> Request<'a> {
        Request {
            line: RequestLine::Head {
                method: head.method.as_bytes(),
                target: head.target.as_bytes(),
                minor: head.minor,
            },
            referer: head.header("referer").unwrap_or_default(),
            agent: head.header("user-agent").unwrap_or_default(),
            why: None,
        }
    }

    /// The same line, kept while the request's body arrives.
    pub fn keep(&self) -> KeptRequest {
        KeptRequest {
            line: self.line.to_string(),
            referer: self.referer.to_vec(),
            agent: self.agent.to_vec(),
        }
    }
}

/// A [`Request`] kept across reads (its head's bytes are gone by the time
/// its answer is written, after the body).
#[derive(Debug)]
pub(super) struct KeptRequest {
    line: String,
    referer: Vec<u8>,
    agent: Vec<u8>,
}

impl KeptRequest {
    fn request(&self) -> Request<'_> {
        Request {
            line: RequestLine::Text(&self.line),
            referer: &self.referer,
            agent: &self.agent,
            why: None,
        }
    }
}

/// Whether this request's answer will be logged.
pub(super) fn access_log_on(ctx: &Ctx<'_>) -> bool {
    ctx.access.is_some()
}

/// One access-log line for a request whose head was read.
pub(super) fn access_log(ctx: &Ctx<'_>, request: &Request<'_>, status: Status, bytes: u64) {
    if let Some(log) = ctx.access {
        log.line(ctx, request, status, bytes);
    }
}

/// One access-log line for a request answered after its body.
pub(super) fn access_log_kept(ctx: &Ctx<'_>, kept: &KeptRequest, status: Status, bytes: u64) {
    access_log(ctx, &kept.request(), status, bytes);
}

/// A request line for the log, from a parsed head or kept as text.
pub(super) enum RequestLine<'a> {
    Head {
        method: &'a [u8],
        target: &'a [u8],
        minor: u8,
    },
    /// Already escaped.
    Text(&'a str),
    /// Raw bytes from a request that could not be parsed: escaped.
    Raw(&'a [u8]),
}

impl fmt::Display for RequestLine<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RequestLine::Head {
                method,
                target,
                minor,
            } => write!(f, "{} {} HTTP/1.{minor}", Escaped(method), Escaped(target)),
            RequestLine::Text(text) => f.write_str(text),
            RequestLine::Raw(bytes) => Escaped(bytes).fmt(f),
        }
    }
}

/// A header value in a quoted field: escaped, or `-` when absent.
struct Field<'a>(&'a [u8]);

impl fmt::Display for Field<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            [] => f.write_str("-"),
            value => Escaped(value).fmt(f),
        }
    }
}

/// The log's time stamp from the `Date` header's: `Sun, 06 Nov 1994
/// 08:49:37 GMT` becomes `06/Nov/1994:08:49:37 +0000`, the form of the
/// Common Log Format. The server formats the date once a second already;
/// rearranging its pieces costs nothing more.
struct LogDate<'a>(&'a str);

impl fmt::Display for LogDate<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.0;
        match (d.get(5..7), d.get(8..11), d.get(12..16), d.get(17..25)) {
            (Some(day), Some(month), Some(year), Some(time)) if d.len() == 29 => {
                write!(f, "{day}/{month}/{year}:{time} +0000")
            }
            _ => f.write_str(d),
        }
    }
}

/// Bytes shown safely in a log line: printable ASCII as is, `"` and `\`
/// escaped, anything else as `\xNN`, so a client cannot forge log lines or
/// send terminal escape sequences to whoever reads the log.
pub struct Escaped<'a>(pub &'a [u8]);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for &b in self.0 {
            match b {
                b'"' => f.write_str("\\\"")?,
                b'\\' => f.write_str("\\\\")?,
                0x20..=0x7e => fmt::Write::write_char(f, b as char)?,
                _ => write!(f, "\\x{b:02x}")?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_date_header_becomes_the_logs_time_stamp() {
        let date = LogDate("Tue, 24 Nov 2026 08:49:37 GMT").to_string();
        assert_eq!(date, "24/Nov/2026:08:49:37 +0000");
    }
}
