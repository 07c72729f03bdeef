//! The access log: one line per answer, and bytes shown safely in it.
//!
//! A request line is whatever a client sent, so it is never written to the
//! log as it is: [`Escaped`] shows printable ASCII and escapes the rest, so
//! that a client cannot forge log lines or send terminal escapes to whoever
//! reads the log.

use std::fmt;

use super::parse::RequestHead;
use super::routes;
use super::Ctx;

pub(super) fn access_log_on(ctx: &Ctx<'_>) -> bool {
    ctx.config.access_log && log::log_enabled!(target: "access", log::Level::Info)
}

/// One access-log line: client, request line, status, body bytes.
pub(super) fn access_log(ctx: &Ctx<'_>, line: RequestLine<'_, '_, '_>, reply: &routes::Reply) {
    if access_log_on(ctx) {
        log::info!(
            target: "access",
            "{} \"{}\" {} {}",
            ctx.peer.remote,
            line,
            reply.status.code,
            reply.body_bytes
        );
    }
}

/// A request line for the log, from a parsed head or kept as text.
pub(super) enum RequestLine<'a, 'h, 'b> {
    Head(&'a RequestHead<'h, 'b>),
    Text(&'a str),
}

impl fmt::Display for RequestLine<'_, '_, '_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RequestLine::Head(h) => write!(
                f,
                "{} {} HTTP/1.{}",
                Escaped(h.method.as_bytes()),
                Escaped(h.target.as_bytes()),
                h.minor
            ),
            RequestLine::Text(text) => f.write_str(text),
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
