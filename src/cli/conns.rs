//! `fivetuple conns`: its arguments, and the table printed as netstat
//! prints it, or as JSON.
//!
//! The flags are netstat's, with netstat's meaning, so that the story's
//! `netstat -atnp | grep -i ":500 "` works with `fivetuple conns` in place
//! of `netstat`, and so do `-tulpn`, `-tan` and `-an`. netstat's flags for
//! what `conns` does not show (raw and UNIX sockets, timers, a running
//! display) are refused by name, with where to find it instead, rather
//! than quietly ignored.

use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use super::write_stdout;
use fivetuple::procnet::{self, ConnsOptions, Layout, Protocols, StateFilter};
use fivetuple::{Error, Result};

/// Options of `fivetuple conns`.
#[derive(Debug, Clone, clap::Args)]
#[command(after_help = "\
netstat's flags work as in netstat, combined too: the story's `netstat -atnp | grep -i \":500 \"` \
is `fivetuple conns -atnp | grep -i \":500 \"`; -tulpn, -tan and -an work as well. Where they \
differ: without -a or -l, netstat leaves listening sockets out, where conns shows them, as with \
-a; without -t or -u, netstat lists every kind of socket (UDP, raw and UNIX ones too), where \
conns lists TCP (-tu for UDP as well); conns always prints numbers, so -n (numeric) and -W \
(wide) change nothing. netstat's -w (raw sockets), -x (UNIX sockets), -o (timers) and -c \
(print every second) are refused, with a word on what to use instead.

TCP and UDP keep separate tables: port 500 of one is not port 500 of the other. -t (the default) \
shows TCP, -u UDP, -tu both, as in netstat. A UDP socket without a fixed peer is UNCONN (ss's \
word: netstat leaves the State blank); one that called connect is ESTABLISHED, though no \
handshake took place. An IPv4 client of a listener on [::] has an IPv6 socket with an \
IPv4-mapped address: the table writes it 127.0.0.1, as netstat does, on a tcp6 row; --json \
keeps ::ffff:127.0.0.1.

Exit code: 0 when the table was printed (also when its reader stopped early, as in `| head`), \
1 when /proc/net/tcp (or udp) cannot be read, 2 for bad arguments.")]
pub struct ConnsArgs {
    /// All sockets, listening and connected (netstat's -a; also what conns shows without -l).
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Show TCP sockets (/proc/net/tcp, tcp6); the default without -u.
    #[arg(short = 't', long)]
    pub tcp: bool,
    /// Show UDP sockets (/proc/net/udp, udp6); -tu for both.
    #[arg(short = 'u', long)]
    pub udp: bool,
    /// Numeric addresses and ports (netstat's -n): conns never looks up names, so this changes nothing.
    #[arg(short = 'n', long)]
    pub numeric: bool,
    /// Keep listening sockets only: TCP LISTEN, UDP UNCONN (netstat's -l; -a outweighs it, as there).
    #[arg(short = 'l', long)]
    pub listening: bool,
    /// Add the PID/Program name column (sockets of other users' processes need root).
    #[arg(short = 'p', long)]
    pub processes: bool,
    /// Add the User (uid) and Inode columns, as netstat -e does with -n.
    #[arg(short = 'e', long)]
    pub extend: bool,
    /// Accepted for netstat's sake: conns never cuts addresses short anyway.
    #[arg(short = 'W', long)]
    pub wide: bool,
    /// Keep the rows whose local or foreign port is PORT (both ends of a loopback connection).
    #[arg(long, value_name = "PORT")]
    pub port: Option<u16>,
    /// Keep the rows in this state (ESTABLISHED, TIME_WAIT, LISTEN, ...; UNCONN for UDP).
    #[arg(long, value_name = "STATE")]
    pub state: Option<String>,
    /// Print JSON instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Where procfs is mounted.
    #[arg(long, default_value = "/proc", value_name = "DIR", hide = true)]
    pub proc_root: PathBuf,
    /// netstat's -w: raw sockets (refused; see `refuse_unsupported`).
    #[arg(short = 'w', long, hide = true)]
    pub raw: bool,
    /// netstat's -x: UNIX sockets (refused).
    #[arg(short = 'x', long, hide = true)]
    pub unix: bool,
    /// netstat's -o: timers (refused).
    #[arg(short = 'o', long, hide = true)]
    pub timers: bool,
    /// netstat's -c: print again every second (refused).
    #[arg(short = 'c', long, hide = true)]
    pub continuous: bool,
}

/// Runs `fivetuple conns`.
pub fn run(args: &ConnsArgs) -> Result<ExitCode> {
    refuse_unsupported(args)?;
    // netstat: `-a` shows everything, whatever `-l` says.
    let only_servers = args.listening && !args.all;
    let opts = ConnsOptions {
        protocols: Protocols::from_flags(args.tcp, args.udp),
        port: args.port,
        listening: only_servers,
        state: args.state.as_deref().map(StateFilter::parse).transpose()?,
        processes: args.processes,
        proc_root: args.proc_root.clone(),
    };
    let found = procnet::run(&opts)?;
    let out = if args.json {
        serde_json::to_string_pretty(&found.sockets)
            .map_err(|e| Error::io("writing JSON", io::Error::other(e)))?
            + "\n"
    } else {
        let layout = Layout {
            only_servers,
            extend: args.extend,
            processes: args.processes,
        };
        procnet::render(&found.sockets, layout)
    };
    if found.owners_hidden() {
        // netstat's own warning, on stderr as there, so that a pipe into
        // grep still reads only rows. A note, not a failure: exit code 0.
        let _ = writeln!(
            io::stderr(),
            "(Not all processes could be identified: {} of other users could not be read, \
             and their sockets show `-`; root sees them all.)",
            processes(found.unreadable_processes)
        );
    }
    write_stdout(&out)?;
    Ok(ExitCode::SUCCESS)
}

/// `1 process`, `2 processes`.
fn processes(n: usize) -> String {
    match n {
        1 => "1 process".to_string(),
        n => format!("{n} processes"),
    }
}

/// netstat's flags for what `conns` does not read: one line naming what
/// to use instead (exit code 2), rather than a table silently missing
/// what was asked for.
fn refuse_unsupported(args: &ConnsArgs) -> Result<()> {
    let refusal = if args.raw {
        "-w (raw sockets) is not supported: conns reads the TCP and UDP tables only; \
         `netstat -w` or `ss -w` lists raw sockets"
    } else if args.unix {
        "-x (UNIX sockets) is not supported: conns shows sockets with addresses and ports only; \
         `netstat -x` or `ss -x` lists UNIX sockets"
    } else if args.timers {
        "-o (timers) is not supported: conns shows no timers; `ss -o` shows each connection's"
    } else if args.continuous {
        "-c (print every second) is not supported: conns prints once; \
         `watch -n 1 fivetuple conns` prints it every second"
    } else {
        return Ok(());
    };
    Err(Error::usage(refusal))
}
