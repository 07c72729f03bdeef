//! `fivetuple connect`: the client's side of the story (being written).

use std::process::ExitCode;

use crate::error::{Error, Result};

/// Options of `fivetuple connect`.
#[derive(Debug, Clone, clap::Args)]
pub struct ConnectArgs {
    /// The server, as host:port.
    pub target: String,
}

/// Runs `fivetuple connect`.
pub fn run(_args: &ConnectArgs) -> Result<ExitCode> {
    Err(Error::usage("fivetuple connect is not built yet"))
}
