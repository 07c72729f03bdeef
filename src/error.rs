//! Errors as values.
//!
//! The library never exits and never prints (it logs): it returns what it
//! found, or an [`Error`], and the binary (`main.rs`, `src/cli/`) prints
//! the one, or turns the other into one line on stderr and an exit code.
//! Two kinds of error matter to a user: a mistake they can fix by asking
//! differently (exit code 2, and the message says how), and a failure of
//! the machine at run time (exit code 1: a port that cannot be bound, a
//! file that cannot be read), whose message says what to do where we know
//! it.
//!
//! One more case is not a failure at all: the reader of our standard output
//! went away (`fivetuple conns | head -1`). Like netstat and ss, a command
//! then stops quietly: the binary's `write_stdout` (`src/cli/mod.rs`)
//! turns that into [`Error::OutputClosed`], which the binary ends with exit
//! code 0 and no message.

use std::fmt;
use std::io;

/// Everything that can stop a `fivetuple` command.
#[derive(Debug)]
pub enum Error {
    /// The request cannot be done as asked; the message names the fix.
    Usage(String),
    /// The operating system refused something at run time.
    Io {
        /// What we were doing, in a few words ("reading /proc/net/tcp").
        context: String,
        source: io::Error,
    },
    /// The operating system refused something, and we know why: the
    /// message says it in the user's terms and names the fix.
    Explained { message: String, source: io::Error },
    /// Standard output was closed by its reader: stop writing, quietly.
    OutputClosed,
}

impl Error {
    /// A user-fixable error with its one-line explanation.
    pub fn usage(message: impl Into<String>) -> Error {
        Error::Usage(message.into())
    }

    /// Wraps an I/O error with what we were trying to do.
    pub fn io(context: impl Into<String>, source: io::Error) -> Error {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    /// A run-time failure with a message that already explains it.
    pub fn explained(message: impl Into<String>, source: io::Error) -> Error {
        Error::Explained {
            message: message.into(),
            source,
        }
    }

    /// The kind of the operating system's error, if this is one.
    pub fn io_kind(&self) -> Option<io::ErrorKind> {
        match self {
            Error::Io { source, .. } | Error::Explained { source, .. } => Some(source.kind()),
            _ => None,
        }
    }

    /// The process exit code for this error: 2 for usage, 1 for a failure
    /// at run time, 0 when the reader of our output simply stopped reading.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Usage(_) => 2,
            Error::Io { .. } | Error::Explained { .. } => 1,
            Error::OutputClosed => 0,
        }
    }

    /// Whether the binary should print this error (everything but a closed
    /// standard output, which is not worth a word).
    pub fn is_worth_a_message(&self) -> bool {
        !matches!(self, Error::OutputClosed)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Usage(message) | Error::Explained { message, .. } => f.write_str(message),
            Error::Io { context, source } => write!(f, "{context}: {source}"),
            Error::OutputClosed => f.write_str("standard output was closed"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Usage(_) | Error::OutputClosed => None,
            Error::Io { source, .. } | Error::Explained { source, .. } => Some(source),
        }
    }
}

/// Shorthand used across the crate.
pub type Result<T> = std::result::Result<T, Error>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_say_who_can_fix_it() {
        assert_eq!(Error::usage("bad").exit_code(), 2);
        let refused = io::Error::from(io::ErrorKind::PermissionDenied);
        assert_eq!(Error::io("binding", refused).exit_code(), 1);
        let refused = io::Error::from(io::ErrorKind::PermissionDenied);
        let explained = Error::explained("port 80 needs privileges", refused);
        assert_eq!(explained.exit_code(), 1);
        assert_eq!(explained.to_string(), "port 80 needs privileges");
        assert_eq!(Error::OutputClosed.exit_code(), 0);
        assert!(!Error::OutputClosed.is_worth_a_message());
    }
}
