//! The `fivetuple` command line: parse the arguments, call the library, and
//! turn any error into one line on stderr and an exit code (2 when the user
//! can fix it by asking differently, 1 when the machine said no).

use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

use std::sync::Arc;

use fivetuple::files::Site;
use fivetuple::http::parse::{Limits, HEADER_SLOTS};
use fivetuple::listener::{self, ListenOptions};
use fivetuple::reactor::{Reactor, ServerConfig, Timeouts};
use fivetuple::{client, http, procnet, Error, Result};

/// How can a server handle many connections on the same port? Watch it happen.
#[derive(Debug, Parser)]
#[command(name = "fivetuple", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server: one thread, one epoll, every connection on one port.
    Serve(ServeArgs),
    /// Open connections to a server and show each one's own 5-tuple.
    Connect(client::ConnectArgs),
    /// Show the kernel's TCP table (/proc/net/tcp), like netstat -atn.
    Conns(procnet::ConnsArgs),
}

#[derive(Debug, clap::Args)]
struct ServeArgs {
    /// Address and port to listen on; [::]:PORT takes IPv4 and IPv6 clients.
    #[arg(short, long, default_value = "0.0.0.0:500", value_name = "ADDR:PORT")]
    listen: SocketAddr,
    /// Length of the kernel's queue of connections not yet accepted.
    #[arg(long, default_value_t = 1024, value_name = "N")]
    backlog: i32,
    /// With an IPv6 address, refuse IPv4 clients (no IPv4-mapped addresses).
    #[arg(long)]
    ipv6_only: bool,
    /// No access log (one line per request); for benchmarks.
    #[arg(short, long)]
    quiet: bool,
    /// Most connections held at once [default: the open-files limit less a reserve of up to 64].
    #[arg(long, value_name = "N")]
    max_conns: Option<usize>,
    /// Serve the files of this directory at / (the built-in pages stay under /_/).
    #[arg(long, value_name = "PATH")]
    dir: Option<std::path::PathBuf>,
    /// With --dir, follow symbolic links that lead outside the directory.
    #[arg(long, requires = "dir")]
    follow_symlinks: bool,
    /// Longest request line in bytes (longer: 414).
    #[arg(long, default_value_t = Limits::default().max_request_line, value_name = "BYTES")]
    max_request_line: usize,
    /// Largest request head (line and headers) in bytes (larger: 431).
    #[arg(long, default_value_t = Limits::default().max_head, value_name = "BYTES")]
    max_head: usize,
    /// Most header fields in a request, at most 100 (more: 431).
    #[arg(long, default_value_t = Limits::default().max_headers, value_name = "N")]
    max_headers: usize,
    /// Largest request body in bytes (larger: 413).
    #[arg(long, default_value_t = Limits::default().max_body, value_name = "BYTES")]
    max_body: u64,
    /// Seconds that in-flight requests get to finish after SIGINT or SIGTERM.
    #[arg(long, default_value_t = 10.0, value_name = "SECS")]
    shutdown_grace: f64,
    /// Seconds from a request's first byte to its end before 408 (0: no limit).
    #[arg(long, default_value_t = 20.0, value_name = "SECS")]
    header_timeout: f64,
    /// Seconds a keep-alive connection may sit idle between requests (0: no limit).
    #[arg(long, default_value_t = 60.0, value_name = "SECS")]
    idle_timeout: f64,
    /// Seconds a client may leave answers unread before it is dropped (0: no limit).
    #[arg(long, default_value_t = 60.0, value_name = "SECS")]
    send_timeout: f64,
    /// Print each turn of the event loop: what woke it, what it did with each event.
    #[arg(long)]
    trace: bool,
}

/// A number of seconds from the command line; 0 means "no limit" where allowed.
fn seconds(name: &str, value: f64) -> Result<Option<Duration>> {
    if !(value.is_finite() && (0.0..=1e9).contains(&value)) {
        return Err(Error::usage(format!(
            "--{name} takes a number of seconds, 0 or more (got {value})"
        )));
    }
    Ok((value > 0.0).then(|| Duration::from_secs_f64(value)))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let default_log = match cli.command {
        Command::Serve(_) => "info",
        _ => "warn",
    };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(default_log)).init();
    let result = match &cli.command {
        Command::Serve(args) => serve(args),
        Command::Connect(args) => client::run(args),
        Command::Conns(args) => procnet::run(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("fivetuple: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

/// The size limits, checked.
fn limits(args: &ServeArgs) -> Result<Limits> {
    if args.max_headers == 0 || args.max_headers > HEADER_SLOTS {
        return Err(Error::usage(format!(
            "--max-headers takes 1 to {HEADER_SLOTS}"
        )));
    }
    if args.max_request_line < 16 || args.max_head < args.max_request_line {
        return Err(Error::usage(
            "--max-request-line takes 16 or more, and --max-head at least as much",
        ));
    }
    Ok(Limits {
        max_request_line: args.max_request_line,
        max_head: args.max_head,
        max_headers: args.max_headers,
        max_body: args.max_body,
    })
}

fn serve(args: &ServeArgs) -> Result<ExitCode> {
    let shutdown_grace = seconds("shutdown-grace", args.shutdown_grace)?.unwrap_or_default();
    let timeouts = Timeouts {
        header: seconds("header-timeout", args.header_timeout)?,
        idle: seconds("idle-timeout", args.idle_timeout)?,
        send: seconds("send-timeout", args.send_timeout)?,
    };
    if args.backlog < 1 {
        return Err(Error::usage("--backlog takes a number of 1 or more"));
    }
    // Raised before binding (the connection cap depends on it), logged after,
    // so that a bind error stays the only line printed.
    let fd_limit = listener::raise_fd_limit();
    let max_conns = args.max_conns.unwrap_or_else(|| {
        let limit = *fd_limit.as_ref().unwrap_or(&1024);
        // Keep some descriptors for the listener, epoll, the signal pipe,
        // logs and served files.
        let reserve = 64.min(limit / 4);
        usize::try_from(limit.saturating_sub(reserve))
            .unwrap_or(usize::MAX)
            .max(1)
    });
    let config = ServerConfig {
        listen: ListenOptions {
            addr: args.listen,
            backlog: args.backlog,
            ipv6_only: args.ipv6_only,
        },
        http: http::Config {
            limits: limits(args)?,
            access_log: !args.quiet,
            files: match &args.dir {
                Some(dir) => Some(Arc::new(Site::new(dir, args.follow_symlinks)?)),
                None => None,
            },
        },
        max_conns,
        shutdown_grace,
        timeouts,
        trace: args.trace,
    };
    let reactor = Reactor::bind(config)?;
    let addr = reactor.local_addr();
    match fd_limit {
        Ok(limit) => log::info!("open-files limit: {limit} (each connection takes one)"),
        Err(e) => log::warn!("cannot read or raise the open-files limit: {e}"),
    }
    // The one line scripts wait for: it carries the real port when asked for port 0.
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "listening on {addr}");
    let _ = stdout.flush();
    drop(stdout);
    log::info!(
        "fivetuple serving on {addr}, at most {max_conns} connections; try http://{addr}/_/conns"
    );
    let summary = reactor.run()?;
    println!(
        "shut down: {} connections accepted, {} requests served",
        summary.accepted, summary.served
    );
    Ok(ExitCode::SUCCESS)
}
