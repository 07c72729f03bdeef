//! `fivetuple conns`: the kernel's side of the story (being written).

use std::process::ExitCode;

use crate::error::{Error, Result};

/// Options of `fivetuple conns`.
#[derive(Debug, Clone, clap::Args)]
pub struct ConnsArgs {
    /// Keep the rows whose local or foreign port is this one.
    #[arg(long)]
    pub port: Option<u16>,
}

/// Runs `fivetuple conns`.
pub fn run(_args: &ConnsArgs) -> Result<ExitCode> {
    Err(Error::usage("fivetuple conns is not built yet"))
}
