//! Errors as values.
//!
//! The library never prints and never exits: it returns an [`Error`], and the
//! binary (`main.rs`) turns it into one line on stderr and an exit code. Two
//! kinds matter to a user: a mistake they can fix by asking differently
//! (exit code 2, and the message says how), and a failure of the machine at
//! run time (exit code 1).

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

    /// The process exit code for this error: 2 for usage, 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Usage(_) => 2,
            Error::Io { .. } => 1,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Usage(message) => f.write_str(message),
            Error::Io { context, source } => write!(f, "{context}: {source}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Usage(_) => None,
            Error::Io { source, .. } => Some(source),
        }
    }
}

/// Shorthand used across the crate.
pub type Result<T> = std::result::Result<T, Error>;
