//! The command line of `fivetuple connect` and `fivetuple conns`: part of
//! the binary, not of the library.
//!
//! Each file here holds one command's arguments (clap), turns them into the
//! plain options the library takes, calls it, and prints what it returns,
//! as text or JSON. The library never prints (see `src/error.rs`); the
//! choices of how to show things to a person live here. `fivetuple serve`'s
//! arguments are in `main.rs`.

pub mod connect;
pub mod conns;

use std::io::{self, Write};

use fivetuple::{Error, Result};

/// Writes a command's report to standard output, all of it, and flushes.
///
/// Rust ignores SIGPIPE, so a closed pipe shows up as an `EPIPE` error
/// here instead of killing the process; `print!` would panic on it. A
/// closed pipe becomes `Error::OutputClosed`; any other failure (a full
/// disk behind `> file`) is a real error.
pub fn write_stdout(text: &str) -> Result<()> {
    let mut stdout = io::stdout().lock();
    stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        .map_err(|e| match e.kind() {
            io::ErrorKind::BrokenPipe => Error::OutputClosed,
            _ => Error::io("writing to standard output", e),
        })
}
