//! `fivetuple connect`: its arguments (the story's `-m`, `-t`, `-p`, and
//! the positional target that came first), the live progress line on a
//! terminal, and the report printed as text or JSON.

use std::fs;
use std::io::{self, IsTerminal, Read, Write};
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use super::write_stdout;
use fivetuple::client::{self, report::EACH_LIMIT, ConnectOptions, Mode, TextStyle, Underway};
use fivetuple::sys::seconds;
use fivetuple::{Error, Result};

/// Options of `fivetuple connect`.
#[derive(Debug, Clone, clap::Args)]
#[command(after_help = "\
Modes (-m): tcp connects, sends the payload and holds the connection; http asks the server \
`GET /_/whoami` (also --http) and shows its view of the connection; udp sends the payload as one \
datagram from each of -n sockets (each its own ephemeral port) and shows the answer of \
`fivetuple serve --udp` beside each socket's own end. The story's command works as written: \
fivetuple connect -m tcp -t localhost:500 -p Test payload.

Hold: with tcp, connections stay open --hold seconds (default 5) once all are up, then close; \
with http and udp, the run ends as soon as the answers are in, unless --hold is given. A \
connection the server closes ends early. Ctrl-C ends the hold and prints the results.

Timeout: --timeout seconds for a connection (default 5; with http as long again for the answer) \
or for a UDP answer (default 2); 0 waits without limit.

Exit code: 0 when every socket succeeded, 1 when any failed (refused, timed out, no free local \
port; a --source address this machine does not have; with http or udp, an answer that is not \
fivetuple's), 2 for bad arguments.")]
pub struct ConnectArgs {
    /// The server, as HOST:PORT ([::1]:500 for IPv6); or give it with -t.
    #[arg(
        value_name = "HOST:PORT",
        required_unless_present = "target_option",
        conflicts_with = "target_option"
    )]
    pub target: Option<String>,
    /// The server, as HOST:PORT (the story's -t; the same as the positional HOST:PORT).
    #[arg(short = 't', long = "target", value_name = "HOST:PORT")]
    pub target_option: Option<String>,
    /// What to speak: tcp (the default), udp, or http (the same as --http).
    #[arg(short = 'm', long, value_enum, value_name = "MODE")]
    pub mode: Option<ModeArg>,
    /// Bytes to send once connected (or as the datagram); the words after -p are joined by spaces.
    #[arg(short, long, num_args = 1.., value_name = "TEXT", conflicts_with_all = ["payload_file", "http"])]
    pub payload: Vec<String>,
    /// Send the contents of a file instead ("-" reads standard input).
    #[arg(long, value_name = "FILE", conflicts_with = "http")]
    pub payload_file: Option<PathBuf>,
    /// Understand \r \n \t \\ and \xNN in --payload.
    #[arg(short = 'e', long)]
    pub escapes: bool,
    /// Seconds to keep the sockets open once all are up (0: not at all).
    #[arg(long, value_name = "SECS")]
    pub hold: Option<f64>,
    /// How many sockets to open, all held at once.
    #[arg(short = 'n', long = "count", default_value_t = 1, value_name = "N")]
    pub count: usize,
    /// Print one line per socket even when there are many.
    #[arg(long)]
    pub each: bool,
    /// Print the whole reply, not just its first line.
    #[arg(long)]
    pub show_reply: bool,
    /// Local addresses to send from, used in turn (127.0.0.2,127.0.0.3...).
    #[arg(long, value_delimiter = ',', value_name = "IP[,IP...]")]
    pub source: Vec<IpAddr>,
    /// Send `GET /_/whoami` and show the server's view of each connection (-m http).
    #[arg(long)]
    pub http: bool,
    /// Seconds to wait for a connection, or for a UDP answer (see below; 0: no limit).
    #[arg(long, value_name = "SECS")]
    pub timeout: Option<f64>,
    /// Sockets connecting (or awaiting a UDP answer) at once.
    #[arg(long, default_value_t = 256, value_name = "N")]
    pub concurrency: usize,
    /// Print the results as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `-m`: the story's modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ModeArg {
    Tcp,
    Udp,
    Http,
}

impl From<ModeArg> for Mode {
    fn from(mode: ModeArg) -> Mode {
        match mode {
            ModeArg::Tcp => Mode::Tcp,
            ModeArg::Udp => Mode::Udp,
            ModeArg::Http => Mode::Http,
        }
    }
}

/// Runs `fivetuple connect`: exit code 1 when any socket failed.
pub fn run(args: &ConnectArgs) -> Result<ExitCode> {
    let opts = options(args)?;
    let mut progress = LiveLine::new(opts.count);
    let report = client::run(&opts, &mut progress)?;
    let out = if args.json {
        serde_json::to_string_pretty(&report.outcomes)
            .map_err(|e| Error::io("writing JSON", io::Error::other(e)))?
            + "\n"
    } else {
        report.text(TextStyle {
            each: args.each,
            show_reply: args.show_reply,
        })
    };
    write_stdout(&out)?;
    Ok(if report.failed() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// The arguments as the library's options, the mode's defaults filled in.
fn options(args: &ConnectArgs) -> Result<ConnectOptions> {
    let mode = match (args.mode.map(Mode::from), args.http) {
        (None, false) => Mode::Tcp,
        (None, true) | (Some(Mode::Http), _) => Mode::Http,
        (Some(mode), false) => mode,
        (Some(_), true) => {
            return Err(Error::usage(
                "--http is -m http; it cannot go with another -m",
            ))
        }
    };
    if mode == Mode::Http && (!args.payload.is_empty() || args.payload_file.is_some()) {
        return Err(Error::usage(
            "-m http sends its own request (GET /_/whoami), so it takes no payload",
        ));
    }
    let target = args
        .target
        .clone()
        .or_else(|| args.target_option.clone())
        .ok_or_else(|| Error::usage("connect needs a target, HOST:PORT (or -t HOST:PORT)"))?;
    let payload = match &args.payload_file {
        Some(path) => read_payload_file(path)?,
        None => {
            let text = args.payload.join(" ");
            if args.escapes {
                client::unescape(&text)?
            } else {
                text.into_bytes()
            }
        }
    };
    let hold = match args.hold {
        Some(secs) => seconds("hold", secs)?.unwrap_or_default(),
        None => mode.default_hold(),
    };
    let timeout = match args.timeout {
        Some(secs) => seconds("timeout", secs)?,
        None => Some(mode.default_timeout()),
    };
    Ok(ConnectOptions {
        target,
        mode,
        payload,
        count: args.count,
        sources: args.source.clone(),
        hold,
        timeout,
        concurrency: args.concurrency,
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

/// A live progress line on stderr, only when stderr is a terminal and the
/// sockets are too many for a line each.
struct LiveLine {
    live: bool,
}

impl LiveLine {
    fn new(total: usize) -> LiveLine {
        LiveLine {
            live: total > EACH_LIMIT && io::stderr().is_terminal(),
        }
    }
}

impl client::Observer for LiveLine {
    fn interval(&self) -> Option<Duration> {
        self.live.then_some(Duration::from_millis(100))
    }

    /// `hold_left`, once every socket is up, counts down instead of
    /// standing still.
    fn update(&mut self, now: &Underway) {
        let mut line = format!(
            "\r{}/{} {}, {} failed",
            now.up, now.total, now.what, now.failed
        );
        if let Some(left) = now.hold_left.filter(|l| !l.is_zero()) {
            line.push_str(&format!(
                ", holding {} s more (Ctrl-C ends it)",
                left.as_secs_f64().ceil()
            ));
        }
        // Clear to the end of the line: the new text may be shorter.
        line.push_str("\x1b[K");
        // A progress line is not worth failing for if stderr is gone.
        let _ = io::stderr().write_all(line.as_bytes());
    }

    fn finish(&mut self) {
        if self.live {
            let _ = io::stderr().write_all(b"\r\x1b[K");
        }
    }
}
