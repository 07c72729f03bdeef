//! `fivetuple conns`: its arguments, and the table printed as netstat
//! prints it, or as JSON.

use std::io;
use std::path::PathBuf;
use std::process::ExitCode;

use fivetuple::error::write_stdout;
use fivetuple::procnet::{self, ConnsOptions, Protocols, StateFilter};
use fivetuple::{Error, Result};

/// Options of `fivetuple conns`.
#[derive(Debug, Clone, clap::Args)]
#[command(after_help = "\
TCP and UDP keep separate tables: port 500 of one is not port 500 of the other. -t (the default) \
shows TCP, -u UDP, -tu both, as in netstat. A UDP socket without a fixed peer is UNCONN; one that \
called connect is ESTABLISHED, though no handshake took place.

Exit code: 0 when the table was printed (also when its reader stopped early, as in `| head`), \
1 when /proc/net/tcp (or udp) cannot be read, 2 for bad arguments.")]
pub struct ConnsArgs {
    /// Show TCP sockets (/proc/net/tcp, tcp6); the default without -u.
    #[arg(short = 't', long)]
    pub tcp: bool,
    /// Show UDP sockets (/proc/net/udp, udp6); -tu for both.
    #[arg(short = 'u', long)]
    pub udp: bool,
    /// Keep the rows whose local or foreign port is PORT (both ends of a loopback connection).
    #[arg(long, value_name = "PORT")]
    pub port: Option<u16>,
    /// Add the PID/Program name column (sockets of other users' processes need root).
    #[arg(short = 'p', long)]
    pub processes: bool,
    /// Keep listening sockets only (TCP LISTEN, UDP UNCONN).
    #[arg(short = 'l', long)]
    pub listening: bool,
    /// Keep the rows in this state (ESTABLISHED, TIME_WAIT, LISTEN, ...; UNCONN for UDP).
    #[arg(long, value_name = "STATE")]
    pub state: Option<String>,
    /// Print JSON instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Where procfs is mounted.
    #[arg(long, default_value = "/proc", value_name = "DIR", hide = true)]
    pub proc_root: PathBuf,
}

/// Runs `fivetuple conns`.
pub fn run(args: &ConnsArgs) -> Result<ExitCode> {
    let opts = ConnsOptions {
        protocols: Protocols::from_flags(args.tcp, args.udp),
        port: args.port,
        listening: args.listening,
        state: args.state.as_deref().map(StateFilter::parse).transpose()?,
        processes: args.processes,
        proc_root: args.proc_root.clone(),
    };
    let sockets = procnet::run(&opts)?;
    let out = if args.json {
        serde_json::to_string_pretty(&sockets)
            .map_err(|e| Error::io("writing JSON", io::Error::other(e)))?
            + "\n"
    } else {
        procnet::render(&sockets, args.processes)
    };
    write_stdout(&out)?;
    Ok(ExitCode::SUCCESS)
}
