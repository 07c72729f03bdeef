//! `fivetuple connect`: the client's side of the story.
//!
//! A client never chooses its own port. When it connects, the kernel picks
//! an unused ephemeral port (from `ip_local_port_range`) for its end, and
//! that port is what keeps this connection apart from every other one
//! reaching the same server port. This command opens connections, sends a
//! payload, holds them, and prints each one's own 5-tuple, so the choice is
//! there to see.
//!
//! It is a small mio event loop of its own, like the server: one thread, one
//! `Poll`, a `Slab` of outgoing connections keyed by token. Connecting
//! without blocking takes three steps: `connect` returns at once
//! (`EINPROGRESS`); the socket becomes writable when the handshake is over;
//! then `take_error` tells success from failure, and `peer_addr` confirms the
//! connection (a spurious wake-up says `ENOTCONN`). Thousands of connections
//! are opened a bounded number at a time, so that a burst does not overflow
//! the server's accept queue.
//!
//! With `--http` it also asks the server how it sees each connection
//! (`GET /_/whoami`), and checks that the answer is the one `fivetuple
//! serve` gives (`tcp A <- B, token N`), so that another server's error page
//! is reported as what it is rather than shown as the server's view.

use std::fmt::Write as _;
use std::fs;
use std::io::{self, IsTerminal, Read, Write};
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use serde::Serialize;
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook_mio::v1_0::Signals;
use slab::Slab;

use crate::error::{write_stdout, Error, Result};

/// Options of `fivetuple connect`.
#[derive(Debug, Clone, clap::Args)]
#[command(after_help = "\
Hold: without --http, connections stay open --hold seconds (default 5) once all are up, \
then close; with --http, each closes as soon as its answer is in, unless --hold is given. \
A connection the server closes ends early. Ctrl-C ends the hold and prints the results.

Exit code: 0 when every connection succeeded, 1 when any failed (refused, timed out, no free \
local port; a --source address this machine does not have; with --http, an answer that is not \
fivetuple's), 2 for bad arguments.")]
pub struct ConnectArgs {
    /// The server, as host:port (`[::1]:500` for IPv6).
    #[arg(value_name = "HOST:PORT")]
    pub target: String,
    /// Bytes to send once connected; several words are joined by spaces.
    #[arg(short, long, num_args = 1.., value_name = "TEXT", conflicts_with_all = ["payload_file", "http"])]
    pub payload: Vec<String>,
    /// Send the contents of a file instead ("-" reads standard input).
    #[arg(long, value_name = "FILE", conflicts_with = "http")]
    pub payload_file: Option<PathBuf>,
    /// Understand \r \n \t \\ and \xNN in --payload.
    #[arg(short = 'e', long)]
    pub escapes: bool,
    /// Seconds to keep the connections open once all are connected.
    #[arg(long, value_name = "SECS")]
    pub hold: Option<f64>,
    /// How many connections to open, all held at once.
    #[arg(short = 'n', long = "count", default_value_t = 1, value_name = "N")]
    pub count: usize,
    /// Print one line per connection even when there are many.
    #[arg(long)]
    pub each: bool,
    /// Print the whole reply, not just its first line.
    #[arg(long)]
    pub show_reply: bool,
    /// Local addresses to connect from, used in turn (127.0.0.2,127.0.0.3...).
    #[arg(long, value_delimiter = ',', value_name = "IP[,IP...]")]
    pub source: Vec<IpAddr>,
    /// Send `GET /_/whoami` and show the server's view of each connection.
    #[arg(long)]
    pub http: bool,
    /// Seconds to wait for a connection (and, with --http, for its answer).
    #[arg(long, default_value_t = 5.0, value_name = "SECS")]
    pub timeout: f64,
    /// Connections being set up at once.
    #[arg(long, default_value_t = 256, value_name = "N")]
    pub concurrency: usize,
    /// Print the results as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Above this many connections the output is a summary (unless `--each`).
const EACH_LIMIT: usize = 20;
/// Reply bytes kept per connection.
const REPLY_LIMIT: usize = 64 * 1024;
const SIGNALS: Token = Token(usize::MAX - 1);

/// Why a connection failed, grouped for the summary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Failure {
    Refused,
    TimedOut,
    Reset,
    /// No ephemeral port left for this (source, destination) pair.
    NoPorts,
    /// The `--source` address is not one of this machine's (bind said
    /// `EADDRNOTAVAIL`).
    NotLocal,
    Unreachable,
    /// With `--http`: the server answered, but not as `fivetuple serve`
    /// answers `/_/whoami`; what it said instead.
    NotWhoami(String),
    /// With `--http`: the server closed the connection without an answer.
    NoAnswer,
    Other(String),
}

impl Failure {
    fn from_io(e: &io::Error) -> Failure {
        match e.raw_os_error() {
            Some(libc::ECONNREFUSED) => Failure::Refused,
            Some(libc::ETIMEDOUT) => Failure::TimedOut,
            Some(libc::ECONNRESET) | Some(libc::EPIPE) => Failure::Reset,
            Some(libc::EADDRNOTAVAIL) | Some(libc::EADDRINUSE) => Failure::NoPorts,
            Some(libc::ENETUNREACH) | Some(libc::EHOSTUNREACH) => Failure::Unreachable,
            _ => Failure::Other(e.to_string()),
        }
    }

    /// A failure of `bind`, before any packet: there `EADDRNOTAVAIL` means
    /// the address is not this machine's (at `connect` it means no free
    /// port), and `EADDRINUSE` that every port of the address is taken.
    fn from_bind(e: &io::Error) -> Failure {
        match e.raw_os_error() {
            Some(libc::EADDRNOTAVAIL) => Failure::NotLocal,
            _ => Failure::from_io(e),
        }
    }

    /// A few words, the same for every connection that failed this way
    /// (the summary counts connections by them).
    fn describe(&self) -> String {
        match self {
            Failure::Refused => "connection refused".into(),
            Failure::TimedOut => "timed out".into(),
            Failure::Reset => "reset by the server".into(),
            Failure::NoPorts => "no free local port".into(),
            Failure::NotLocal => "source address not on this machine".into(),
            Failure::Unreachable => "unreachable".into(),
            Failure::NotWhoami(_) => "not a fivetuple answer".into(),
            Failure::NoAnswer => "closed by the server without an answer".into(),
            Failure::Other(e) => e.clone(),
        }
    }
}

/// What became of one connection; also the JSON row.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    /// The client's end (address and ephemeral port), once connected.
    pub local: Option<SocketAddr>,
    /// The server's end.
    pub remote: SocketAddr,
    pub source: Option<IpAddr>,
    pub connect_ms: Option<f64>,
    pub sent: u64,
    pub received: u64,
    /// The reply, as text (escaped where it is not).
    pub reply: String,
    /// With --http: the server's own view of this connection.
    pub server_view: Option<String>,
    pub error: Option<Failure>,
}

#[derive(Debug, PartialEq, Eq)]
enum Phase {
    Connecting,
    Open,
    Done,
}

/// One outgoing connection in the client's slab.
struct Outgoing {
    /// `None` once the connection is over (or if it never got a socket).
    stream: Option<TcpStream>,
    phase: Phase,
    started: Instant,
    /// How much of the payload has been written.
    written: usize,
    reply: Vec<u8>,
    outcome: Outcome,
}

/// Runs `fivetuple connect`.
pub fn run(args: &ConnectArgs) -> Result<ExitCode> {
    let plan = Plan::from_args(args)?;
    let outcomes = Client::new(&plan)?.run()?;
    write_stdout(&report(&plan, &outcomes, args))?;
    let failed = outcomes.iter().any(|o| o.error.is_some());
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// The arguments, checked and resolved.
struct Plan {
    /// The server's addresses, in the resolver's order; `localhost` is
    /// often `::1` and then `127.0.0.1`. See [`Client::settled`].
    targets: Vec<SocketAddr>,
    target_text: String,
    payload: Vec<u8>,
    count: usize,
    sources: Vec<IpAddr>,
    http: bool,
    hold: Duration,
    timeout: Duration,
    concurrency: usize,
}

impl Plan {
    fn from_args(args: &ConnectArgs) -> Result<Plan> {
        let targets = resolve(&args.target, args.source.first())?;
        let target = targets[0];
        let payload = if args.http {
            format!(
                "GET /_/whoami HTTP/1.1\r\nHost: {}\r\nUser-Agent: fivetuple\r\n\r\n",
                args.target
            )
            .into_bytes()
        } else if let Some(path) = &args.payload_file {
            read_payload_file(path)?
        } else {
            let text = args.payload.join(" ");
            if args.escapes {
                unescape(&text)?
            } else {
                text.into_bytes()
            }
        };
        if args.count == 0 {
            return Err(Error::usage("-n takes a number of connections, 1 or more"));
        }
        if let Some(bad) = args.source.iter().find(|s| s.is_ipv4() != target.is_ipv4()) {
            return Err(Error::usage(format!(
                "--source {bad} and {target} are not the same IP version"
            )));
        }
        let secs = |name: &str, v: f64| {
            if v.is_finite() && (0.0..=1e6).contains(&v) {
                Ok(Duration::from_secs_f64(v))
            } else {
                Err(Error::usage(format!(
                    "--{name} takes a number of seconds, 0 or more"
                )))
            }
        };
        let hold = secs(
            "hold",
            args.hold.unwrap_or(if args.http { 0.0 } else { 5.0 }),
        )?;
        let timeout = secs("timeout", args.timeout)?;
        check_fd_limit(args.count)?;
        for &source in &args.source {
            check_source(source)?;
        }
        Ok(Plan {
            targets,
            target_text: args.target.clone(),
            payload,
            count: args.count,
            sources: args.source.clone(),
            http: args.http,
            hold,
            timeout,
            concurrency: args.concurrency.max(1),
        })
    }
}

/// `host:port` to its addresses, only those of the family of `--source`
/// when one is given (all of them if none is of that family: the caller
/// then says the versions differ).
fn resolve(target: &str, source: Option<&IpAddr>) -> Result<Vec<SocketAddr>> {
    let addrs: Vec<SocketAddr> = target
        .to_socket_addrs()
        .map_err(|e| {
            Error::usage(format!(
                "cannot resolve {target:?} (expected HOST:PORT): {e}"
            ))
        })?
        .collect();
    if addrs.is_empty() {
        return Err(Error::usage(format!("{target:?} resolves to no address")));
    }
    let wanted_v4 = source.map(IpAddr::is_ipv4);
    let same_family: Vec<SocketAddr> = addrs
        .iter()
        .copied()
        .filter(|a| wanted_v4.is_none_or(|v4| a.is_ipv4() == v4))
        .collect();
    Ok(if same_family.is_empty() {
        addrs
    } else {
        same_family
    })
}

fn read_payload_file(path: &PathBuf) -> Result<Vec<u8>> {
    if path.as_os_str() == "-" {
        let mut bytes = Vec::new();
        io::stdin().read_to_end(&mut bytes).map_err(|e| {
            Error::usage(format!("cannot read the payload from standard input: {e}"))
        })?;
        return Ok(bytes);
    }
    fs::read(path)
        .map_err(|e| Error::usage(format!("cannot read payload file {}: {e}", path.display())))
}

/// `\r`, `\n`, `\t`, `\\`, `\0` and `\xNN` in a payload typed on the command line.
pub fn unescape(text: &str) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len());
    let mut bytes = text.bytes();
    while let Some(b) = bytes.next() {
        if b != b'\\' {
            out.push(b);
            continue;
        }
        match bytes.next() {
            Some(b'r') => out.push(b'\r'),
            Some(b'n') => out.push(b'\n'),
            Some(b't') => out.push(b'\t'),
            Some(b'0') => out.push(0),
            Some(b'\\') => out.push(b'\\'),
            Some(b'x') => {
                let hex: Vec<u8> = bytes.by_ref().take(2).collect();
                let value = std::str::from_utf8(&hex)
                    .ok()
                    .filter(|h| h.len() == 2)
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| Error::usage("\\x in --payload takes two hex digits"))?;
                out.push(value);
            }
            other => {
                return Err(Error::usage(format!(
                    "unknown escape \\{} in --payload (known: \\r \\n \\t \\0 \\\\ \\xNN)",
                    other.map(char::from).unwrap_or(' ')
                )))
            }
        }
    }
    Ok(out)
}

/// A `--source` address must be one of this machine's: a packet can only
/// leave from an address the machine has. Checked once, before any
/// connection, with the same bind each connection does; a failure here is
/// the machine saying no (exit code 1), not a typing mistake.
fn check_source(source: IpAddr) -> Result<()> {
    let probe = socket2::Socket::new(
        socket2::Domain::for_address(SocketAddr::new(source, 0)),
        socket2::Type::STREAM.cloexec(),
        None,
    )
    .map_err(|e| Error::io(format!("--source {source}: creating a socket"), e))?;
    if source.is_ipv4() {
        set_bind_address_no_port(&probe);
    }
    match probe.bind(&SocketAddr::new(source, 0).into()) {
        Err(e) if e.raw_os_error() == Some(libc::EADDRNOTAVAIL) => {
            let loopback = if source.is_ipv4() {
                "any of 127.0.0.0/8 is this machine"
            } else {
                "::1 is this machine"
            };
            Err(Error::explained(
                format!(
                    "--source {source} is not an address of this machine, so no connection can \
                     leave from it (bind: {e}); use one that `ip addr` lists ({loopback})"
                ),
                e,
            ))
        }
        // Other refusals (no port left, say) are the story itself: each
        // connection meets them and reports them in its own line.
        _ => Ok(()),
    }
}

/// Every connection is a file descriptor: say so before starting, not at 1,021.
fn check_fd_limit(count: usize) -> Result<()> {
    let limit = crate::listener::raise_fd_limit().unwrap_or(1024);
    let needed = count as u64 + 16;
    if needed > limit {
        return Err(Error::usage(format!(
            "-n {count} needs {needed} open files, but this process may open {limit}; \
             lower -n, or raise the hard limit (ulimit -Hn, /etc/security/limits.conf) first"
        )));
    }
    Ok(())
}

/// The client's event loop.
struct Client<'p> {
    plan: &'p Plan,
    poll: Poll,
    signals: Signals,
    conns: Slab<Outgoing>,
    launched: usize,
    connecting: usize,
    open: usize,
    /// When every connection had connected or failed: the hold starts.
    all_up: Option<Instant>,
    interrupted: bool,
    progress: Progress,
    read_buf: Vec<u8>,
    /// Which of the plan's addresses connections go to.
    target: usize,
    /// Whether that address is the one to stay with. A name can stand for
    /// several addresses, and a server listening on `0.0.0.0` refuses
    /// `localhost`'s `::1`: so while a name's first addresses are refused,
    /// one connection at a time tries the next, as a browser would; the
    /// first that connects (or the last address) settles it for all.
    settled: bool,
}

impl<'p> Client<'p> {
    fn new(plan: &'p Plan) -> Result<Client<'p>> {
        let poll = Poll::new().map_err(|e| Error::io("creating the epoll instance", e))?;
        let mut signals = Signals::new([SIGINT, SIGTERM])
            .map_err(|e| Error::io("installing signal handlers", e))?;
        poll.registry()
            .register(&mut signals, SIGNALS, Interest::READABLE)
            .map_err(|e| Error::io("registering the signal pipe", e))?;
        Ok(Client {
            plan,
            poll,
            signals,
            conns: Slab::with_capacity(plan.count),
            launched: 0,
            connecting: 0,
            open: 0,
            all_up: None,
            interrupted: false,
            progress: Progress::new(plan.count),
            read_buf: vec![0; 64 * 1024],
            target: 0,
            settled: plan.targets.len() == 1,
        })
    }

    /// After a connection to the current address failed with `failure`:
    /// true (and the next address chosen) when it should be tried again
    /// there.
    fn try_next_address(&mut self, failure: &Failure) -> bool {
        let worth_another = matches!(
            failure,
            Failure::Refused | Failure::Unreachable | Failure::NotLocal | Failure::Other(_)
        );
        if self.settled || !worth_another || self.target + 1 >= self.plan.targets.len() {
            self.settled = true;
            return false;
        }
        log::info!(
            "{}: {}; trying {}",
            self.plan.targets[self.target],
            failure.describe(),
            self.plan.targets[self.target + 1]
        );
        self.target += 1;
        true
    }

    fn run(mut self) -> Result<Vec<Outcome>> {
        let mut events = Events::with_capacity(1024);
        loop {
            self.launch();
            if self.all_up.is_none() && self.launched == self.plan.count && self.connecting == 0 {
                self.all_up = Some(Instant::now());
            }
            if self.finished() {
                break;
            }
            let timeout = self
                .next_deadline()
                .map(|d| d.saturating_duration_since(Instant::now()));
            match self.poll.poll(&mut events, timeout) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Error::io("waiting for events", e)),
            }
            for event in events.iter() {
                match event.token() {
                    SIGNALS => {
                        self.interrupted =
                            self.signals.pending().next().is_some() || self.interrupted
                    }
                    Token(key) => self.on_event(
                        key,
                        event.is_writable(),
                        event.is_readable() || event.is_read_closed(),
                    ),
                }
            }
            self.expire();
            let hold_left = self
                .all_up
                .map(|up| (up + self.plan.hold).saturating_duration_since(Instant::now()));
            self.progress.show(self.open, self.failed(), hold_left);
        }
        self.progress.clear();
        let mut outcomes: Vec<(usize, Outcome)> = self
            .conns
            .drain()
            .enumerate()
            .map(|(i, mut c)| {
                c.outcome.reply = display_reply(&c.reply);
                (i, c.outcome)
            })
            .collect();
        outcomes.sort_by_key(|(i, _)| *i);
        Ok(outcomes.into_iter().map(|(_, o)| o).collect())
    }

    /// Starts connections until `concurrency` are in the handshake at once
    /// (one, until the address is settled).
    fn launch(&mut self) {
        loop {
            let concurrency = if self.settled {
                self.plan.concurrency
            } else {
                1
            };
            if self.launched >= self.plan.count || self.connecting >= concurrency {
                break;
            }
            let target = self.plan.targets[self.target];
            let source = (!self.plan.sources.is_empty())
                .then(|| self.plan.sources[self.launched % self.plan.sources.len()]);
            self.launched += 1;
            let outcome = Outcome {
                local: None,
                remote: target,
                source,
                connect_ms: None,
                sent: 0,
                received: 0,
                reply: String::new(),
                server_view: None,
                error: None,
            };
            // Before the connect call: on loopback the handshake is often
            // over by the time it returns.
            let started = Instant::now();
            match start_connect(target, source) {
                Ok(mut stream) => {
                    let entry = self.conns.vacant_entry();
                    let token = Token(entry.key());
                    if let Err(e) = self.poll.registry().register(
                        &mut stream,
                        token,
                        Interest::READABLE | Interest::WRITABLE,
                    ) {
                        log::warn!("register: {e}");
                    }
                    entry.insert(Outgoing {
                        stream: Some(stream),
                        phase: Phase::Connecting,
                        started,
                        written: 0,
                        reply: Vec::new(),
                        outcome,
                    });
                    self.connecting += 1;
                }
                Err(failure) => {
                    if self.try_next_address(&failure) {
                        self.launched -= 1;
                        continue;
                    }
                    // Failed before any packet (no free port, say): a record without a socket.
                    self.conns.insert(Outgoing {
                        stream: None,
                        phase: Phase::Done,
                        started,
                        written: 0,
                        reply: Vec::new(),
                        outcome: Outcome {
                            error: Some(failure),
                            ..outcome
                        },
                    });
                }
            }
        }
    }

    fn on_event(&mut self, key: usize, writable: bool, readable: bool) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if conn.phase == Phase::Connecting && writable {
            let Some(stream) = &conn.stream else { return };
            match connect_result(stream) {
                Ok(None) => return, // a spurious wake-up: still connecting
                Ok(Some(local)) => {
                    self.settled = true;
                    conn.outcome.local = Some(local);
                    conn.outcome.connect_ms = Some(conn.started.elapsed().as_secs_f64() * 1e3);
                    conn.phase = Phase::Open;
                    self.connecting -= 1;
                    self.open += 1;
                }
                Err(e) => {
                    let failure = Failure::from_io(&e);
                    self.connecting -= 1;
                    if self.try_next_address(&failure) {
                        // Forget this attempt; `launch` makes it again at
                        // the next address. No connection is started while
                        // this batch of events is handled, so no stale
                        // event can reach a new owner of this key.
                        self.conns.remove(key);
                        self.launched -= 1;
                        return;
                    }
                    self.conns[key].outcome.error = Some(failure);
                    return self.finish(key);
                }
            }
        }
        let conn = &mut self.conns[key];
        if conn.phase != Phase::Open {
            return;
        }
        if let Err(e) = write_payload(conn, &self.plan.payload) {
            conn.outcome.error = Some(Failure::from_io(&e));
            return self.finish(key);
        }
        let mut server_closed = false;
        if readable {
            match read_reply(conn, &mut self.read_buf) {
                Ok(closed) => server_closed = closed,
                Err(e) => {
                    conn.outcome.error = Some(Failure::from_io(&e));
                    return self.finish(key);
                }
            }
        }
        // The answer is judged before a close is handled: a server that
        // answers and closes at once sends both in one event.
        if self.plan.http && conn.outcome.server_view.is_none() {
            match judge_whoami(&conn.reply, server_closed) {
                Verdict::Pending if server_closed => {
                    conn.outcome.error = Some(if conn.reply.is_empty() {
                        Failure::NoAnswer
                    } else {
                        Failure::NotWhoami(format!(
                            "\"{}\", then closed mid-answer",
                            first_line(&conn.reply)
                        ))
                    });
                }
                Verdict::Pending => {}
                Verdict::Whoami(view) => conn.outcome.server_view = Some(view),
                Verdict::NotWhoami(what) => {
                    conn.outcome.error = Some(Failure::NotWhoami(what));
                    return self.finish(key);
                }
            }
        }
        if server_closed {
            self.finish(key);
        }
    }

    /// Connect timeouts, reply timeouts, the end of the hold.
    fn expire(&mut self) {
        let now = Instant::now();
        let timeout = self.plan.timeout;
        let expired: Vec<usize> = self
            .conns
            .iter()
            .filter(|(_, c)| match c.phase {
                Phase::Connecting => now >= c.started + timeout,
                Phase::Open => {
                    self.plan.http
                        && c.outcome.server_view.is_none()
                        && now >= c.started + timeout * 2
                }
                Phase::Done => false,
            })
            .map(|(k, _)| k)
            .collect();
        for key in expired {
            let conn = &mut self.conns[key];
            if conn.phase == Phase::Connecting {
                self.connecting -= 1;
            }
            conn.outcome.error = Some(Failure::TimedOut);
            self.finish(key);
        }
    }

    /// Ends a connection: closes its socket, keeps its record.
    fn finish(&mut self, key: usize) {
        let conn = &mut self.conns[key];
        if conn.phase == Phase::Open {
            self.open -= 1;
        }
        conn.phase = Phase::Done;
        if let Some(mut stream) = conn.stream.take() {
            let _ = self.poll.registry().deregister(&mut stream);
            // Dropped here: the socket closes, its descriptor is free again.
        }
    }

    fn failed(&self) -> usize {
        self.conns
            .iter()
            .filter(|(_, c)| c.outcome.error.is_some())
            .count()
    }

    fn finished(&self) -> bool {
        if self.interrupted {
            return true;
        }
        let Some(up) = self.all_up else { return false };
        if self.open == 0 {
            return true;
        }
        let answers_in = !self.plan.http
            || self
                .conns
                .iter()
                .all(|(_, c)| c.phase != Phase::Open || c.outcome.server_view.is_some());
        answers_in && Instant::now() >= up + self.plan.hold
    }

    fn next_deadline(&self) -> Option<Instant> {
        let mut next = self.all_up.map(|up| up + self.plan.hold);
        for (_, c) in &self.conns {
            let due = match c.phase {
                Phase::Connecting => c.started + self.plan.timeout,
                Phase::Open if self.plan.http && c.outcome.server_view.is_none() => {
                    c.started + self.plan.timeout * 2
                }
                _ => continue,
            };
            next = Some(next.map_or(due, |n: Instant| n.min(due)));
            if self.conns.len() > 1024 {
                break; // with thousands, one early deadline is enough to wake up and look
            }
        }
        if self.progress.live {
            next = Some(
                next.map_or(Instant::now() + Duration::from_millis(100), |n| {
                    n.min(Instant::now() + Duration::from_millis(100))
                }),
            );
        }
        next
    }
}

/// A non-blocking connect from `source` (port chosen by the kernel). The
/// same errno means different things at `bind` and at `connect`, so each
/// step classifies its own.
fn start_connect(
    target: SocketAddr,
    source: Option<IpAddr>,
) -> std::result::Result<TcpStream, Failure> {
    let domain = socket2::Domain::for_address(target);
    let socket = socket2::Socket::new(domain, socket2::Type::STREAM.nonblocking().cloexec(), None)
        .map_err(|e| Failure::from_io(&e))?;
    if let Some(ip) = source {
        // Without this, bind picks the port before the destination is known,
        // and each port is then taken for every destination. With it, the
        // kernel picks the port at connect time, per (source, destination).
        if ip.is_ipv4() {
            set_bind_address_no_port(&socket);
        }
        socket
            .bind(&SocketAddr::new(ip, 0).into())
            .map_err(|e| Failure::from_bind(&e))?;
    }
    match socket.connect(&target.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(Failure::from_io(&e)),
    }
    Ok(TcpStream::from_std(std::net::TcpStream::from(socket)))
}

fn set_bind_address_no_port(socket: &socket2::Socket) {
    let one: libc::c_int = 1;
    // SAFETY: setsockopt with a pointer to a live c_int and its size.
    unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

/// After a writable event on a connecting socket: `Ok(Some(local))` when
/// connected, `Ok(None)` when not yet, `Err` when the handshake failed.
fn connect_result(stream: &TcpStream) -> io::Result<Option<SocketAddr>> {
    if let Some(e) = stream.take_error()? {
        return Err(e);
    }
    match stream.peer_addr() {
        Ok(_) => stream.local_addr().map(Some),
        Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(None),
        Err(e) => Err(e),
    }
}

/// Writes as much of the payload as the socket takes.
fn write_payload(conn: &mut Outgoing, payload: &[u8]) -> io::Result<()> {
    let Some(stream) = conn.stream.as_mut() else {
        return Ok(());
    };
    while conn.written < payload.len() {
        match stream.write(&payload[conn.written..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                conn.written += n;
                conn.outcome.sent += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Reads until `WouldBlock`; keeps the first `REPLY_LIMIT` bytes. Returns
/// true when the server closed its side.
fn read_reply(conn: &mut Outgoing, buf: &mut [u8]) -> io::Result<bool> {
    let Some(stream) = conn.stream.as_mut() else {
        return Ok(true);
    };
    loop {
        match stream.read(buf) {
            Ok(0) => return Ok(true),
            Ok(n) => {
                conn.outcome.received += n as u64;
                let room = REPLY_LIMIT.saturating_sub(conn.reply.len());
                conn.reply.extend_from_slice(&buf[..n.min(room)]);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

/// What the answer to `GET /_/whoami` says so far.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    /// Not all there yet.
    Pending,
    /// fivetuple's answer: `tcp 127.0.0.1:500 <- 127.0.0.1:54240, token 2`.
    Whoami(String),
    /// Something else; what, in a few readable words.
    NotWhoami(String),
}

/// Judges the reply to `GET /_/whoami` as early as it can: a first byte
/// that cannot begin `HTTP/`, or a status other than 200, settles it before
/// the rest arrives. A body without Content-Length ends when the server
/// closes (`closed`).
fn judge_whoami(bytes: &[u8], closed: bool) -> Verdict {
    let start = &bytes[..bytes.len().min(5)];
    if !b"HTTP/".starts_with(start) {
        return Verdict::NotWhoami(format!("\"{}\", which is not HTTP", first_line(bytes)));
    }
    let Some(head_end) = bytes.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Verdict::Pending;
    };
    let head = String::from_utf8_lossy(&bytes[..head_end]);
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    if status_line.split(' ').nth(1) != Some("200") {
        return Verdict::NotWhoami(format!("\"{}\"", readable(status_line.as_bytes())));
    }
    let length = lines.find_map(|l| {
        let (name, value) = l.split_once(':')?;
        name.eq_ignore_ascii_case("content-length")
            .then(|| value.trim().parse::<usize>().ok())?
    });
    let rest = &bytes[head_end + 4..];
    let body = match length {
        Some(n) if rest.len() >= n => &rest[..n],
        None if closed => rest,
        _ => return Verdict::Pending,
    };
    let text = String::from_utf8_lossy(body);
    let text = text.trim_end();
    if is_whoami(text) {
        Verdict::Whoami(text.to_string())
    } else {
        let shown = readable(text.as_bytes());
        let mut start: String = shown.chars().take(60).collect();
        if shown.chars().count() > 60 {
            start.push('…');
        }
        Verdict::NotWhoami(format!("\"{status_line}\" with the body \"{start}\""))
    }
}

/// `tcp 127.0.0.1:500 <- 127.0.0.1:54240, token 2`, and nothing else.
fn is_whoami(text: &str) -> bool {
    let parse = || {
        let (local, rest) = text.strip_prefix("tcp ")?.split_once(" <- ")?;
        let (remote, token) = rest.split_once(", token ")?;
        local.parse::<SocketAddr>().ok()?;
        remote.parse::<SocketAddr>().ok()?;
        token.parse::<usize>().ok()
    };
    parse().is_some()
}

/// The first line of a reply, readable.
fn first_line(bytes: &[u8]) -> String {
    let line = bytes.split(|&b| b == b'\n').next().unwrap_or_default();
    readable(line.strip_suffix(b"\r").unwrap_or(line))
}

/// A reply shown line by line, readably: see [`readable`].
fn display_reply(bytes: &[u8]) -> String {
    let mut out = String::new();
    for line in bytes.split_inclusive(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\n").unwrap_or(line);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        out.push_str(&readable(line));
        out.push('\n');
    }
    out
}

/// Text as it is, quotes and all; only what a terminal would act on
/// (control characters: escape sequences, a bell, a carriage return that
/// overwrites the line) and bytes that are not UTF-8 are written as `\xNN`
/// (`\u{NN}` for the control characters above ASCII). A tab stays a tab.
fn readable(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\t' => out.push(c),
                c if c.is_ascii_control() => {
                    let _ = write!(out, "\\x{:02x}", c as u32);
                }
                c if c.is_control() => {
                    let _ = write!(out, "\\u{{{:x}}}", c as u32);
                }
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    out
}

/// A connection time: microseconds below a millisecond, where `0.00 ms`
/// would say nothing (loopback connects take tens of microseconds).
fn duration_text(ms: f64) -> String {
    if (ms * 1e3).round() < 1e3 {
        format!("{:.0} µs", ms * 1e3)
    } else {
        format!("{ms:.2} ms")
    }
}

/// A live progress line on stderr, only when stderr is a terminal.
struct Progress {
    live: bool,
    total: usize,
    last: Instant,
}

impl Progress {
    fn new(total: usize) -> Progress {
        Progress {
            live: total > EACH_LIMIT && io::stderr().is_terminal(),
            total,
            last: Instant::now(),
        }
    }

    /// `hold_left`: once every connection is up, the time the hold has to
    /// run, so the line counts down instead of standing still.
    fn show(&mut self, open: usize, failed: usize, hold_left: Option<Duration>) {
        if self.live && self.last.elapsed() >= Duration::from_millis(100) {
            self.last = Instant::now();
            let mut line = format!("\r{open}/{} connected, {failed} failed", self.total);
            if let Some(left) = hold_left.filter(|l| !l.is_zero()) {
                let _ = write!(
                    line,
                    ", holding {} s more (Ctrl-C ends it)",
                    left.as_secs_f64().ceil()
                );
            }
            // Clear to the end of the line: the new text may be shorter.
            line.push_str("\x1b[K");
            // A progress line is not worth failing for if stderr is gone.
            let _ = io::stderr().write_all(line.as_bytes());
        }
    }

    fn clear(&self) {
        if self.live {
            let _ = io::stderr().write_all(b"\r\x1b[K");
        }
    }
}

/// The printed result: one line per connection, or a summary, or JSON.
fn report(plan: &Plan, outcomes: &[Outcome], args: &ConnectArgs) -> String {
    if args.json {
        return serde_json::to_string_pretty(outcomes).unwrap_or_default() + "\n";
    }
    let mut out = String::new();
    if args.each || outcomes.len() <= EACH_LIMIT {
        for o in outcomes {
            out.push_str(&line(o, args.show_reply));
        }
    } else {
        out.push_str(&summary(plan, outcomes));
    }
    if outcomes.iter().any(|o| o.error == Some(Failure::NoPorts)) {
        out.push_str(&no_ports_advice(plan));
    }
    if let Some(what) = outcomes.iter().find_map(|o| match &o.error {
        Some(Failure::NotWhoami(what)) => Some(what),
        _ => None,
    }) {
        let _ = writeln!(
            out,
            "{} does not look like fivetuple serve: to GET /_/whoami it answered {what}, \
             where fivetuple answers `tcp A <- B, token N`; --http needs fivetuple serve at \
             the other end (without --http, connect works with any TCP server)",
            plan.target_text
        );
    }
    out
}

/// `tcp 127.0.0.1:54240 -> 127.0.0.1:500 connected in 85 µs, sent 13 B, received 0 B`
fn line(o: &Outcome, show_reply: bool) -> String {
    let mut out = String::new();
    let local = o
        .local
        .map(|l| l.to_string())
        .unwrap_or_else(|| o.source.map_or("*".into(), |s| s.to_string()));
    match (&o.error, o.connect_ms) {
        (Some(e), None) => {
            let _ = writeln!(out, "tcp {local} -> {} failed: {}", o.remote, e.describe());
            return out;
        }
        (error, Some(ms)) => {
            let _ = write!(
                out,
                "tcp {local} -> {} connected in {}, sent {} B, received {} B",
                o.remote,
                duration_text(ms),
                o.sent,
                o.received
            );
            if let Some(e) = error {
                let _ = write!(out, ", then {}", e.describe());
            }
            out.push('\n');
        }
        (None, None) => {
            let _ = writeln!(out, "tcp {local} -> {} never connected", o.remote);
        }
    }
    if let Some(view) = &o.server_view {
        let same = o
            .local
            .is_some_and(|l| view.contains(&format!("{} <- {l}", o.remote)));
        let verdict = if same {
            "the same pair"
        } else {
            "a different pair"
        };
        let _ = writeln!(out, "  server sees: {view} ({verdict})");
    } else if !o.reply.is_empty() {
        if show_reply {
            for l in o.reply.lines() {
                let _ = writeln!(out, "  | {l}");
            }
        } else if let Some(first) = o.reply.lines().next() {
            let _ = writeln!(out, "  reply: {first}");
        }
    }
    out
}

/// The figures for many connections at once.
pub fn summarize(outcomes: &[Outcome]) -> Summary {
    let mut times: Vec<f64> = outcomes.iter().filter_map(|o| o.connect_ms).collect();
    times.sort_by(f64::total_cmp);
    let pick = |q: f64| {
        (!times.is_empty()).then(|| times[((times.len() - 1) as f64 * q).round() as usize])
    };
    let mut ports: Vec<SocketAddr> = outcomes.iter().filter_map(|o| o.local).collect();
    ports.sort_unstable();
    ports.dedup();
    let mut failures: Vec<(String, usize)> = Vec::new();
    for o in outcomes {
        if let Some(e) = &o.error {
            match failures.iter_mut().find(|(d, _)| *d == e.describe()) {
                Some((_, n)) => *n += 1,
                None => failures.push((e.describe(), 1)),
            }
        }
    }
    Summary {
        connected: outcomes.iter().filter(|o| o.connect_ms.is_some()).count(),
        distinct_local_ends: ports.len(),
        min_ms: pick(0.0),
        p50_ms: pick(0.5),
        p99_ms: pick(0.99),
        max_ms: pick(1.0),
        sent: outcomes.iter().map(|o| o.sent).sum(),
        received: outcomes.iter().map(|o| o.received).sum(),
        failures,
    }
}

/// See [`summarize`].
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    pub connected: usize,
    /// Distinct (local address, local port) pairs among the connections.
    pub distinct_local_ends: usize,
    pub min_ms: Option<f64>,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub max_ms: Option<f64>,
    pub sent: u64,
    pub received: u64,
    /// (reason, count), in order of first appearance.
    pub failures: Vec<(String, usize)>,
}

fn summary(plan: &Plan, outcomes: &[Outcome]) -> String {
    let s = summarize(outcomes);
    let pairs = if s.distinct_local_ends == 1 {
        "pair"
    } else {
        "pairs"
    };
    let mut out = format!(
        "{} of {} connections to {} connected, from {} distinct local address:port {pairs}\n",
        s.connected,
        outcomes.len(),
        outcomes.first().map_or(plan.targets[0], |o| o.remote),
        s.distinct_local_ends
    );
    if let (Some(min), Some(p50), Some(p99), Some(max)) = (s.min_ms, s.p50_ms, s.p99_ms, s.max_ms) {
        let _ = writeln!(
            out,
            "connect time: min {}, p50 {}, p99 {}, max {}",
            duration_text(min),
            duration_text(p50),
            duration_text(p99),
            duration_text(max)
        );
    }
    let _ = writeln!(out, "sent {} B, received {} B", s.sent, s.received);
    if !s.failures.is_empty() {
        let parts: Vec<String> = s
            .failures
            .iter()
            .map(|(why, n)| format!("{n} {why}"))
            .collect();
        let _ = writeln!(out, "failed: {}", parts.join(", "));
    }
    out
}

fn no_ports_advice(plan: &Plan) -> String {
    let range = fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| {
            let mut it = r.split_whitespace().filter_map(|v| v.parse::<u32>().ok());
            Some((it.next()?, it.next()?))
        });
    let sources = if plan.sources.is_empty() {
        "this machine's address".to_string()
    } else {
        plan.sources
            .iter()
            .map(IpAddr::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let (lo, hi) = range.unwrap_or((32768, 60999));
    format!(
        "ran out of ephemeral ports on {sources} towards {} (ip_local_port_range {lo}–{hi} gives about {} per source address); \
         add source addresses with --source 127.0.0.1,127.0.0.2,...\n",
        plan.target_text,
        hi.saturating_sub(lo) + 1
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(port: u16, ms: Option<f64>, error: Option<Failure>) -> Outcome {
        Outcome {
            local: ms.map(|_| SocketAddr::from(([127, 0, 0, 1], port))),
            remote: "127.0.0.1:500".parse().unwrap(),
            source: None,
            connect_ms: ms,
            sent: 13,
            received: 0,
            reply: String::new(),
            server_view: None,
            error,
        }
    }

    #[test]
    fn escapes_in_payloads() {
        assert_eq!(
            unescape(r"GET / HTTP/1.0\r\n\r\n").unwrap(),
            b"GET / HTTP/1.0\r\n\r\n"
        );
        assert_eq!(unescape(r"a\x00\\\t").unwrap(), b"a\0\\\t");
        assert!(unescape(r"\q").is_err());
        assert!(unescape(r"\x4").is_err());
    }

    #[test]
    fn targets_resolve_or_say_why() {
        assert_eq!(
            resolve("127.0.0.1:500", None).unwrap(),
            vec!["127.0.0.1:500".parse().unwrap()]
        );
        assert_eq!(
            resolve("[::1]:500", None).unwrap(),
            vec!["[::1]:500".parse().unwrap()]
        );
        let err = resolve("127.0.0.1", None).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains("HOST:PORT"));
    }

    fn plan_for(targets: Vec<SocketAddr>, count: usize) -> Plan {
        Plan {
            targets,
            target_text: "test".into(),
            payload: Vec::new(),
            count,
            sources: Vec::new(),
            http: false,
            hold: Duration::ZERO,
            timeout: Duration::from_secs(5),
            concurrency: 256,
        }
    }

    /// A port nothing listens on: bound, then released.
    fn closed_port() -> SocketAddr {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
    }

    #[test]
    fn a_refused_address_of_a_name_gives_way_to_the_next() {
        // Like `localhost` as ::1 then 127.0.0.1, with the server on 127.0.0.1 only.
        let server = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let listening = server.local_addr().unwrap();
        let plan = plan_for(vec![closed_port(), listening], 5);
        let outcomes = Client::new(&plan).unwrap().run().unwrap();
        assert_eq!(outcomes.len(), 5, "the refused attempt is not counted");
        for o in &outcomes {
            assert_eq!(o.remote, listening);
            assert!(o.error.is_none(), "{o:?}");
        }
    }

    #[test]
    fn when_every_address_refuses_each_connection_says_so() {
        let last = closed_port();
        let plan = plan_for(vec![closed_port(), last], 3);
        let outcomes = Client::new(&plan).unwrap().run().unwrap();
        assert_eq!(outcomes.len(), 3);
        for o in &outcomes {
            assert_eq!(o.remote, last);
            assert_eq!(o.error, Some(Failure::Refused));
        }
    }

    #[test]
    fn summaries_count_ports_times_and_failures() {
        let outcomes = vec![
            outcome(40001, Some(0.2), None),
            outcome(40002, Some(0.4), None),
            outcome(40003, Some(3.0), None),
            outcome(0, None, Some(Failure::Refused)),
            outcome(0, None, Some(Failure::Refused)),
            outcome(0, None, Some(Failure::NoPorts)),
        ];
        let s = summarize(&outcomes);
        assert_eq!(s.connected, 3);
        assert_eq!(s.distinct_local_ends, 3);
        assert_eq!(s.min_ms, Some(0.2));
        assert_eq!(s.p50_ms, Some(0.4));
        assert_eq!(s.max_ms, Some(3.0));
        assert_eq!(s.sent, 78);
        assert_eq!(
            s.failures,
            vec![
                ("connection refused".to_string(), 2),
                ("no free local port".to_string(), 1)
            ]
        );
    }

    #[test]
    fn replies_are_shown_safely() {
        assert_eq!(
            display_reply(b"HTTP/1.1 400 Bad Request\r\nX: y\r\n"),
            "HTTP/1.1 400 Bad Request\nX: y\n"
        );
        assert_eq!(display_reply(b"\x1b[31mred\0"), "\\x1b[31mred\\x00\n");
    }

    #[test]
    fn replies_are_shown_readably_quotes_and_all() {
        let page = "<a href=\"/x\">caf\u{e9}</a>\t\\n";
        assert_eq!(readable(page.as_bytes()), page);
        assert_eq!(readable(b"\xff\x07ok\r"), "\\xff\\x07ok\\x0d");
        assert_eq!(readable("\u{9b}31m".as_bytes()), "\\u{9b}31m");
    }

    fn whoami_reply(status: &str, body: &str) -> Vec<u8> {
        format!(
            "HTTP/1.1 {status}\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    }

    #[test]
    fn fivetuples_whoami_answer_is_recognised_when_complete() {
        let reply = whoami_reply("200 OK", "tcp 127.0.0.1:500 <- 127.0.0.1:54240, token 2\n");
        assert_eq!(
            judge_whoami(&reply, false),
            Verdict::Whoami("tcp 127.0.0.1:500 <- 127.0.0.1:54240, token 2".into())
        );
        assert_eq!(
            judge_whoami(&reply[..reply.len() - 3], false),
            Verdict::Pending
        );
        assert_eq!(judge_whoami(b"HTT", false), Verdict::Pending);
    }

    #[test]
    fn other_answers_are_named_for_what_they_are() {
        let page = whoami_reply("404 Not Found", "<html><body>Nothing here</body></html>");
        assert_eq!(
            judge_whoami(&page[..20], false),
            Verdict::Pending,
            "the status line is not all there yet"
        );
        assert_eq!(
            judge_whoami(&page, false),
            Verdict::NotWhoami("\"HTTP/1.1 404 Not Found\"".into())
        );
        let ok_but_other = whoami_reply("200 OK", "Hello, World!");
        assert_eq!(
            judge_whoami(&ok_but_other, false),
            Verdict::NotWhoami("\"HTTP/1.1 200 OK\" with the body \"Hello, World!\"".into())
        );
        assert_eq!(
            judge_whoami(b"SSH-2.0-OpenSSH_9.6\r\n", false),
            Verdict::NotWhoami("\"SSH-2.0-OpenSSH_9.6\", which is not HTTP".into())
        );
        // Without Content-Length, the body ends when the server closes.
        let unframed = b"HTTP/1.0 200 OK\r\n\r\ntcp 127.0.0.1:500 <- 127.0.0.1:1, token 0";
        assert_eq!(judge_whoami(unframed, false), Verdict::Pending);
        assert!(matches!(judge_whoami(unframed, true), Verdict::Whoami(_)));
    }

    #[test]
    fn times_below_a_millisecond_are_in_microseconds() {
        assert_eq!(duration_text(0.0042), "4 µs");
        assert_eq!(duration_text(0.25), "250 µs");
        assert_eq!(duration_text(0.9996), "1.00 ms");
        assert_eq!(duration_text(2.5), "2.50 ms");
    }

    #[test]
    fn a_line_per_connection() {
        let text = line(&outcome(54240, Some(0.25), None), false);
        assert_eq!(
            text,
            "tcp 127.0.0.1:54240 -> 127.0.0.1:500 connected in 250 µs, sent 13 B, received 0 B\n"
        );
        let failed = line(&outcome(0, None, Some(Failure::Refused)), false);
        assert_eq!(
            failed,
            "tcp * -> 127.0.0.1:500 failed: connection refused\n"
        );
    }
}
