//! The `fivetuple` command line: parse the arguments, call the library, and
//! turn any error into one line on stderr and an exit code (2 when the user
//! can fix it by asking differently, 1 when the machine said no, 0 and no
//! word at all when the reader of our output stopped reading).

#![forbid(unsafe_code)]

use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{CommandFactory, Parser, Subcommand};

use fivetuple::activation::{self, Activation};
use fivetuple::files::Site;
use fivetuple::http::parse::{Limits, HEADER_SLOTS};
use fivetuple::listener::{self, ListenOptions, ListenSpec};
use fivetuple::reactor::{ServerConfig, Timeouts};
use fivetuple::restart::{self, Handover, Lineage};
use fivetuple::sink::{Output, Sink};
use fivetuple::sys::seconds;
use fivetuple::workers::Pool;
use fivetuple::{http, privileges, Error, Result};

mod cli;

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
    /// Open connections (or UDP sockets) to a server and show each one's own 5-tuple.
    Connect(cli::connect::ConnectArgs),
    /// Show the kernel's socket tables (/proc/net/tcp; -u for UDP) as netstat does: `conns -atnp`.
    Conns(cli::conns::ConnsArgs),
}

#[derive(Debug, clap::Args)]
#[command(after_help = "\
--listen forms: 0.0.0.0:8500 (every IPv4 address), [::]:8500 (every address, IPv4 clients too), \
127.0.0.1:8500 (this machine only), localhost:8500 (a host name: the first of its addresses \
that binds), :8500 (every address: [::] taking IPv4 clients too, or 0.0.0.0 without IPv6). \
The `listening on ADDR` line on stdout names the address bound.

Sockets made before the server starts are used in place of --listen: socket activation \
(LISTEN_FDS, LISTEN_PID; `systemd-socket-activate -l 127.0.0.1:8500 fivetuple serve`, or \
contrib/fivetuple.socket). SIGHUP restarts without losing a connection: a new copy of the \
binary, read again from disk, takes the same listening sockets, and this one finishes its \
connections and exits (docs/restarts.md).

Exit code: 0 after a clean shutdown (SIGINT, SIGTERM) or a restart, 1 when the server cannot \
start or run (the port is taken or needs privileges, say), 2 for bad arguments.")]
struct ServeArgs {
    /// Where to listen: ADDRESS:PORT, HOST:PORT or :PORT (see below); ports below 1024 need root.
    #[arg(short, long, default_value = "0.0.0.0:500", value_name = "ADDR:PORT")]
    listen: String,
    /// Length of the kernel's queue of connections not yet accepted.
    #[arg(long, default_value_t = 1024, value_name = "N")]
    backlog: i32,
    /// With an IPv6 address, refuse IPv4 clients (no IPv4-mapped addresses).
    #[arg(long)]
    ipv6_only: bool,
    /// Also answer UDP datagrams on the same address and port number: each
    /// that could be a client's question gets one datagram back, no longer
    /// than itself, saying what the server saw (docs/hardening.md: UDP).
    #[arg(long)]
    udp: bool,
    /// Every connection starts with a PROXY protocol header (v1 or v2) from
    /// a load balancer such as HAProxy (`send-proxy-v2`): the table and
    /// /_/whoami then show the original client. Never guessed: use it only
    /// behind a balancer that always sends one.
    #[arg(long)]
    proxy_protocol: bool,
    /// Run N reactors (threads), each with its own listening socket on the
    /// same port (SO_REUSEPORT); 0 means one per core.
    #[arg(long, default_value_t = 1, value_name = "N")]
    workers: usize,
    /// Pin each worker to a core of its own.
    #[arg(long)]
    pin: bool,
    /// No access log (one line per request); for benchmarks.
    #[arg(short, long, conflicts_with = "access_log")]
    quiet: bool,
    /// Write the access log (Combined Log Format, plus each request's
    /// connection) to this file, appending, instead of stderr.
    #[arg(long, value_name = "PATH")]
    access_log: Option<std::path::PathBuf>,
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
    /// After binding, give up root for good and run as this user (nobody,
    /// say), before the first accept and before any file is served.
    #[arg(long, value_name = "NAME")]
    user: Option<String>,
    /// With --user, the group to run as [default: the user's own group].
    #[arg(long, value_name = "NAME", requires = "user")]
    group: Option<String>,
    /// Seconds the new copy started by SIGHUP gets to say it is ready;
    /// after that it is stopped and this one goes on serving.
    #[arg(long, default_value_t = 10.0, value_name = "SECS")]
    restart_timeout: f64,
    /// Not an option: the port goes in --listen. Hidden, and kept only to
    /// say so, since `--port` is what many servers take.
    #[arg(long, hide = true, num_args = 0..=1, value_name = "PORT")]
    port: Option<Option<String>>,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return argument_error(&e),
    };
    // Before any thread starts (the sinks below start writer threads): the
    // sockets passed by socket activation or by a restart, and where this
    // process stands in a line of restarts. Both read and clear variables
    // of the environment, which is safe only while one thread runs.
    let activation = match &cli.command {
        Command::Serve(_) => {
            Lineage::take_from_env();
            match activation::take() {
                Ok(activation) => activation,
                Err(e) => {
                    let _ = writeln!(std::io::stderr(), "fivetuple: {e}");
                    return ExitCode::from(e.exit_code());
                }
            }
        }
        _ => Activation::default(),
    };
    let default_log = match cli.command {
        Command::Serve(_) => "info",
        _ => "warn",
    };
    let mut logger =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(default_log));
    // mio's own trace lines (its internal tokens, its waker) are noise next to
    // the reactor's story of each turn; show them only when asked by name.
    if !std::env::var("RUST_LOG").is_ok_and(|v| v.contains("mio")) {
        logger.filter_module("mio", log::LevelFilter::Info);
    }
    // The server's log goes through a sink: a thread of its own writes it,
    // so a reader of stderr that stops never stops the event loop.
    let stderr = match cli.command {
        Command::Serve(_) => Sink::spawn("stderr", std::io::stderr()).ok(),
        _ => None,
    };
    if let Some(sink) = &stderr {
        let style = match std::io::stderr().is_terminal() {
            true => env_logger::WriteStyle::Auto,
            false => env_logger::WriteStyle::Never,
        };
        logger
            .target(env_logger::Target::Pipe(Box::new(sink.writer())))
            .write_style(style);
    }
    logger.init();
    let result = match &cli.command {
        Command::Serve(args) => serve(args, stderr.clone(), activation),
        Command::Connect(args) => cli::connect::run(args),
        Command::Conns(args) => cli::conns::run(args),
    };
    if let Some(sink) = &stderr {
        // What the log still holds goes out first, unless its reader has
        // stopped: then the process must not wait for it.
        sink.finish(SINK_GRACE);
    }
    match result {
        Ok(code) => code,
        Err(e) => {
            if e.is_worth_a_message() {
                // Ignored: with stderr gone too there is no one left to tell.
                let _ = writeln!(std::io::stderr(), "fivetuple: {e}");
            }
            ExitCode::from(e.exit_code())
        }
    }
}

/// How long a server that stops waits for its log and output to be
/// written out, when their readers are slow.
const SINK_GRACE: Duration = Duration::from_secs(2);

/// clap's own errors (an unknown option, a missing value) as one line and
/// exit code 2, like every other usage error; help and version as clap
/// prints them, also into a closed pipe without complaint.
fn argument_error(e: &clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if !e.use_stderr() || e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
        let _ = e.print();
        return ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2));
    }
    let text = e.render().to_string();
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    let what = lines
        .next()
        .unwrap_or("invalid arguments")
        .trim_start_matches("error: ");
    let mut line = what.to_string();
    let mut lines = lines.peekable();
    // "the following required arguments were not provided:" lists them below.
    while line.ends_with(':') || lines.peek().is_some_and(|l| l.starts_with('<')) {
        match lines.next() {
            Some(more) if !more.starts_with("Usage: ") => {
                line.push(' ');
                line.push_str(more);
            }
            _ => break,
        }
    }
    for tip in lines.filter_map(|l| l.strip_prefix("tip: ")) {
        line.push_str(&format!(" ({tip})"));
    }
    // Point at the subcommand's own help when there is one.
    let command = match std::env::args().nth(1) {
        Some(sub) if Cli::command().find_subcommand(&sub).is_some() => format!("fivetuple {sub}"),
        _ => "fivetuple".to_string(),
    };
    let _ = writeln!(
        std::io::stderr(),
        "fivetuple: {line}; `{command} --help` lists the options"
    );
    ExitCode::from(2)
}

/// `1 request`, `2 requests`.
fn count(n: u64, thing: &str) -> String {
    if n == 1 {
        format!("1 {thing}")
    } else {
        format!("{n} {thing}s")
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

/// Where the server's output goes: the access log to `--access-log PATH`
/// or to stderr with the log (unless `--quiet`), the trace to stdout.
fn output(args: &ServeArgs, stderr: Option<Sink>, stdout: &Sink) -> Result<Output> {
    let access = match (&args.access_log, args.quiet) {
        (_, true) => None,
        (Some(path), false) => {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| Error::io(format!("opening the access log {}", path.display()), e))?;
            let sink = Sink::spawn("the access log", file)
                .map_err(|e| Error::io("starting the access log's writer", e))?;
            Some(sink)
        }
        (None, false) => stderr.clone(),
    };
    Ok(Output {
        log: stderr,
        access,
        trace: args.trace.then(|| stdout.clone()),
    })
}

fn serve(args: &ServeArgs, stderr: Option<Sink>, activation: Activation) -> Result<ExitCode> {
    if let Some(port) = &args.port {
        let port = port.as_deref().unwrap_or("8500");
        return Err(Error::usage(format!(
            "serve takes the port in --listen, not --port: --listen :{port} (every address) \
             or --listen 127.0.0.1:{port} (this machine only)"
        )));
    }
    let shutdown_grace = seconds("shutdown-grace", args.shutdown_grace)?.unwrap_or_default();
    let restart_timeout = seconds("restart-timeout", args.restart_timeout)?
        .ok_or_else(|| Error::usage("--restart-timeout takes a number of seconds above 0"))?;
    let Activation { inherited, notes } = activation;
    for note in notes {
        match inherited {
            Some(_) => log::info!("{note}"),
            None => log::warn!("{note}"),
        }
    }
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
    let max_conns = args
        .max_conns
        .unwrap_or_else(|| listener::default_max_conns(fd_limit.as_ref().ok().copied()));
    let spec = ListenSpec::parse(&args.listen)?;
    let candidates = spec.candidates()?;
    let stdout = Sink::spawn("stdout", std::io::stdout())
        .map_err(|e| Error::io("starting the output's writer", e))?;
    let output = output(args, stderr, &stdout)?;
    // A file of its own is finished here; stderr is finished by `main`.
    let config_access = args.access_log.as_ref().and(output.access.clone());
    let config = ServerConfig {
        listen: ListenOptions {
            addr: candidates[0],
            backlog: args.backlog,
            ipv6_only: args.ipv6_only,
            reuse_port: false,
        },
        http: http::Config {
            limits: limits(args)?,
            files: match &args.dir {
                Some(dir) => Some(Arc::new(
                    Site::new(dir, args.follow_symlinks).map_err(|e| dir_error(dir, e))?,
                )),
                None => None,
            },
        },
        max_conns,
        shutdown_grace,
        timeouts,
        udp: args.udp,
        proxy_protocol: args.proxy_protocol,
        output,
    };
    let inherited_sockets = inherited.is_some();
    let reactor = match inherited {
        Some(inherited) => Pool::bind_or_take(config, args.workers, args.pin, Some(inherited))?,
        None => bind_first(&spec, &candidates, config, args.workers, args.pin)?,
    };
    // Bound: root is no longer needed, and goes before the first accept.
    match &args.user {
        Some(user) => {
            let d = privileges::drop_to(user, args.group.as_deref())?;
            log::info!(
                "running as user {} ({}) and group {} ({}), no other groups; the listening \
                 socket stays open, root cannot come back",
                d.user,
                d.uid,
                d.group,
                d.gid
            );
        }
        None => {
            if let Some(warning) = privileges::root_warning(args.dir.is_some()) {
                log::warn!("{warning}");
            }
        }
    }
    let (sockets, takeovers) = reactor
        .handover()
        .map_err(|e| Error::io("copying the listening sockets for a restart", e))?;
    restart::start(Handover {
        sockets,
        takeovers,
        ready_timeout: restart_timeout,
        grace: shutdown_grace,
    })?;
    let addr = reactor.local_addr();
    if reactor.workers() > 1 && inherited_sockets {
        log::info!(
            "{} workers on {addr}, sharing the sockets they were given (one accept queue \
             per socket)",
            reactor.workers()
        );
    } else if reactor.workers() > 1 {
        log::info!(
            "{} workers, each with its own listening socket on {addr} (SO_REUSEPORT)",
            reactor.workers()
        );
    }
    match fd_limit {
        Ok(limit) => log::info!("open-files limit: {limit} (each connection takes one)"),
        Err(e) => log::warn!("cannot read or raise the open-files limit: {e}"),
    }
    // The one line scripts wait for: it carries the real port when asked for port 0.
    // Through the sink like the rest of stdout, so that it comes before the
    // trace's first turn; scripts wait for it, so it is written out at once.
    match reactor.serves_udp() {
        true => stdout.write(format!("listening on {addr} (tcp and udp)\n").as_bytes()),
        false => stdout.write(format!("listening on {addr}\n").as_bytes()),
    }
    log::info!(
        "fivetuple serving on {addr}, at most {max_conns} connections; try http://{}/_/conns",
        reachable(addr)
    );
    if restart::generation() > 1 {
        log::info!(
            "generation {}: took the listening sockets over; SIGHUP restarts again",
            restart::generation()
        );
    }
    // To systemd (Type=notify), or to the previous copy, which then stops accepting.
    restart::notify_ready();
    let summary = reactor.run()?;
    // A new copy that a SIGTERM interrupted is stopped before this one exits.
    restart::wait_until_settled(restart::SETTLE);
    if let Some(pid) = summary.handed_over_to {
        let finished = summary.open_at_handover - summary.cut_after_handover;
        stdout.write(
            format!(
                "handed over to pid {pid}: finished {finished} of the {} open then; \
                 {} still open (idle, or unfinished) when the grace ran out\n",
                count(summary.open_at_handover, "connection"),
                summary.cut_after_handover
            )
            .as_bytes(),
        );
    }
    // After the trace's last turn, through the same sink.
    stdout.write(
        format!(
            "shut down: {} accepted, {} served\n",
            count(summary.accepted, "connection"),
            count(summary.served, "request")
        )
        .as_bytes(),
    );
    stdout.finish(SINK_GRACE);
    if let Some(access) = &config_access {
        access.finish(SINK_GRACE);
    }
    Ok(ExitCode::SUCCESS)
}

/// Why `--dir` cannot be served, in the terms of the README's exit codes:
/// a path that is no directory is a slip of the command line (2); a
/// directory the server may not read is the machine saying no (1).
fn dir_error(dir: &std::path::Path, e: Error) -> Error {
    use std::io::ErrorKind;
    let Error::Io { source, .. } = e else {
        return e;
    };
    let dir = dir.display();
    match source.kind() {
        ErrorKind::NotFound => Error::usage(format!(
            "--dir {dir}: no such directory; give the path of the directory to serve"
        )),
        ErrorKind::NotADirectory => Error::usage(format!(
            "--dir {dir} is a file; --dir takes a directory, and serves the files under it"
        )),
        ErrorKind::PermissionDenied => Error::explained(
            format!(
                "cannot serve {dir}: permission denied; the server's user needs read and \
                 search permission on it (chmod a+rx {dir}), and search permission on every \
                 directory above it"
            ),
            source,
        ),
        _ => Error::io(format!("cannot serve {dir}"), source),
    }
}

/// An address a browser on this machine can open: the wildcard address
/// (`0.0.0.0`, `[::]`) means every address, so name the loopback one.
fn reachable(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        ip if !ip.is_unspecified() => addr,
        std::net::IpAddr::V4(_) => SocketAddr::from(([127, 0, 0, 1], addr.port())),
        std::net::IpAddr::V6(_) => SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, addr.port())),
    }
}

/// Listens on the first of `candidates` that binds, and says in the log
/// which one that was when there was a choice (a host name, or `:PORT`).
fn bind_first(
    spec: &ListenSpec,
    candidates: &[SocketAddr],
    config: ServerConfig,
    workers: usize,
    pin: bool,
) -> Result<Pool> {
    let mut errors = Vec::new();
    for &addr in candidates {
        let mut attempt = config.clone();
        attempt.listen.addr = addr;
        match Pool::bind(attempt, workers, pin) {
            Ok(reactor) => {
                explain_choice(spec, candidates, reactor.local_addr(), &errors);
                return Ok(reactor);
            }
            Err(e) => errors.push(e),
        }
    }
    Err(listener::most_telling(errors)
        .unwrap_or_else(|| Error::usage(format!("--listen {spec}: no address to listen on"))))
}

fn explain_choice(
    spec: &ListenSpec,
    candidates: &[SocketAddr],
    bound: SocketAddr,
    failed: &[Error],
) {
    match spec {
        ListenSpec::Addr(_) => {}
        ListenSpec::AnyAddress(port) if bound.is_ipv6() => log::info!(
            "--listen :{port} is every address: [::]:{port}, one socket for IPv6 and IPv4 clients \
             (IPv4 ones appear as ::ffff:a.b.c.d)"
        ),
        ListenSpec::AnyAddress(port) => log::info!(
            "--listen :{port} is every address: 0.0.0.0:{port}, IPv4 only, since [::]:{port} failed ({})",
            failed.first().map_or_else(String::new, ToString::to_string)
        ),
        ListenSpec::Host { host, .. } => {
            let all: Vec<String> = candidates.iter().map(|a| a.ip().to_string()).collect();
            let mut line = format!("{host} is {}; listening on {bound}", all.join(", "));
            if candidates.len() > 1 {
                line.push_str(", the first that bound");
            }
            for e in failed {
                line.push_str("; ");
                line.push_str(&e.to_string());
            }
            log::info!("{line}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serve_args(args: &[&str]) -> ServeArgs {
        let cli = Cli::try_parse_from([&["fivetuple", "serve"], args].concat()).unwrap();
        match cli.command {
            Command::Serve(args) => args,
            other => panic!("not serve: {other:?}"),
        }
    }

    #[test]
    fn serve_port_names_listen() {
        for (args, port) in [(&["--port", "8500"][..], "8500"), (&["--port"], "8500")] {
            let err = serve(&serve_args(args), None, Activation::default()).unwrap_err();
            assert_eq!(err.exit_code(), 2);
            assert!(
                err.to_string().contains(&format!("--listen :{port}")),
                "{err}"
            );
        }
    }

    #[test]
    fn a_dir_that_is_not_there_is_a_slip_and_one_not_readable_is_the_machine() {
        let path = std::path::Path::new("/nonexistent-fivetuple-dir");
        let Err(err) = Site::new(path, false).map_err(|e| dir_error(path, e)) else {
            panic!("{} served", path.display());
        };
        assert_eq!(err.exit_code(), 2, "{err}");
        assert!(err.to_string().contains("no such directory"), "{err}");
        // Root reads any directory, so the refusal is made up here.
        let refused = Error::io("cannot serve", std::io::ErrorKind::PermissionDenied.into());
        let err = dir_error(std::path::Path::new("/srv/site"), refused);
        assert_eq!(err.exit_code(), 1, "{err}");
        assert!(err.to_string().contains("chmod a+rx /srv/site"), "{err}");
    }
}
