//! What `fivetuple connect` found, and the words for it.
//!
//! Every socket the client opened ends as one [`Outcome`]: its own end (the
//! ephemeral port the kernel chose), the server's end, how long things took,
//! what the server said it saw, and why it failed if it did. A [`Report`] is
//! all of them; it renders itself as one line per socket, or as [`Totals`]
//! when there are many. The binary chooses between this text and JSON, and
//! prints.

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};

use serde::Serialize;

use super::answer::{parse_view, readable};
use super::failure::Failure;
use super::plan::Mode;

/// Above this many sockets the text is a summary (unless `each`).
pub const EACH_LIMIT: usize = 20;

/// What became of one socket; also the JSON row.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    /// `tcp` or `udp`: the first element of the 5-tuple.
    pub proto: &'static str,
    /// The client's end (address and ephemeral port), once the kernel
    /// chose it.
    pub local: Option<SocketAddr>,
    /// The server's end.
    pub remote: SocketAddr,
    pub source: Option<IpAddr>,
    /// TCP: how long the handshake took.
    pub connect_ms: Option<f64>,
    /// With `--http` or UDP: from the start to the server's answer.
    pub answer_ms: Option<f64>,
    pub sent: u64,
    /// UDP: how many of the bytes `sent` are padding (zero bytes after the
    /// payload, so that the server may answer: it never answers with more
    /// bytes than it got).
    pub padding: u64,
    pub received: u64,
    /// The reply, as text (escaped where it is not).
    pub reply: String,
    /// With `--http` or UDP: the server's own view of this socket's pair.
    pub server_view: Option<String>,
    pub error: Option<Failure>,
}

impl Outcome {
    /// A record for a socket about to start.
    pub fn new(proto: &'static str, remote: SocketAddr, source: Option<IpAddr>) -> Outcome {
        Outcome {
            proto,
            local: None,
            remote,
            source,
            connect_ms: None,
            answer_ms: None,
            sent: 0,
            padding: 0,
            received: 0,
            reply: String::new(),
            server_view: None,
            error: None,
        }
    }

    /// The time the summary's figures are about: the handshake for TCP, the
    /// round trip for UDP (which has no handshake).
    fn time_ms(&self) -> Option<f64> {
        match self.proto {
            "udp" => self.answer_ms,
            _ => self.connect_ms,
        }
    }
}

/// Everything a run of `fivetuple connect` found.
#[derive(Debug, Clone)]
pub struct Report {
    pub mode: Mode,
    /// The target as typed (`localhost:500`).
    pub target: String,
    /// The address the first socket went to.
    pub first_target: SocketAddr,
    pub sources: Vec<IpAddr>,
    /// One per socket, in the order they were opened.
    pub outcomes: Vec<Outcome>,
    /// `ip_local_port_range`, read when a socket found no free port.
    pub port_range: Option<(u32, u32)>,
}

/// How the text looks.
#[derive(Debug, Clone, Copy, Default)]
pub struct TextStyle {
    /// One line per socket even when there are many.
    pub each: bool,
    /// The whole reply, not just its first line.
    pub show_reply: bool,
}

impl Report {
    /// Whether any socket failed (the command then exits 1).
    pub fn failed(&self) -> bool {
        self.outcomes.iter().any(|o| o.error.is_some())
    }

    /// One line per socket, or a summary; then advice for the failures
    /// that have a known cure.
    pub fn text(&self, style: TextStyle) -> String {
        let mut out = String::new();
        if style.each || self.outcomes.len() <= EACH_LIMIT {
            for o in &self.outcomes {
                out.push_str(&line(o, style.show_reply));
            }
        } else {
            out.push_str(&self.summary());
        }
        let failed = |pick: fn(&Failure) -> bool| {
            self.outcomes
                .iter()
                .filter_map(|o| o.error.as_ref())
                .find(|e| pick(e))
        };
        if failed(|e| *e == Failure::NoPorts).is_some() {
            out.push_str(&self.no_ports_advice());
        }
        if let Some(Failure::NotWhoami(what)) = failed(|e| matches!(e, Failure::NotWhoami(_))) {
            let _ = writeln!(
                out,
                "{} does not look like fivetuple serve: to GET /_/whoami it answered {what}, \
                 where fivetuple answers `tcp A <- B, token N`; --http needs fivetuple serve at \
                 the other end (without --http, connect works with any TCP server)",
                self.target
            );
        }
        if let Some(Failure::NotUdpAnswer(what)) = failed(|e| matches!(e, Failure::NotUdpAnswer(_)))
        {
            let _ = writeln!(
                out,
                "{} does not look like fivetuple serve --udp: it answered {what}, where fivetuple \
                 answers `udp A <- B, N bytes`",
                self.target
            );
        }
        let refused = self
            .outcomes
            .iter()
            .find(|o| o.proto == "tcp" && o.error == Some(Failure::Refused));
        if let Some(o) = refused {
            let _ =
                writeln!(
                out,
                "nothing listens on TCP port {port} at {ip}: its kernel answered the connection \
                 request with a reset; check the port, or start the server first \
                 (fivetuple serve --listen {any}:{port})",
                port = o.remote.port(),
                ip = o.remote.ip(),
                any = if o.remote.is_ipv4() { "0.0.0.0" } else { "[::]" },
            );
        }
        let refused = self
            .outcomes
            .iter()
            .find(|o| o.error == Some(Failure::PortUnreachable));
        if let Some(o) = refused {
            let _ = writeln!(
                out,
                "nothing listens on UDP port {} at {}: TCP and UDP ports are separate, so a TCP \
                 server there does not count; fivetuple serve answers UDP only with --udp, and \
                 only on the address it listens on",
                o.remote.port(),
                o.remote.ip()
            );
        }
        out
    }

    fn summary(&self) -> String {
        let s = summarize(&self.outcomes);
        let pairs = if s.distinct_local_ends == 1 {
            "pair"
        } else {
            "pairs"
        };
        let first = self
            .outcomes
            .first()
            .map_or(self.first_target, |o| o.remote);
        let mut out = match self.mode {
            Mode::Udp => format!(
                "{} of {} UDP sockets to {first} answered, from {} distinct local address:port {pairs}\n",
                s.answered,
                self.outcomes.len(),
                s.distinct_local_ends
            ),
            Mode::Tcp | Mode::Http => format!(
                "{} of {} connections to {first} connected, from {} distinct local address:port {pairs}\n",
                s.connected,
                self.outcomes.len(),
                s.distinct_local_ends
            ),
        };
        if let (Some(min), Some(p50), Some(p99), Some(max)) =
            (s.min_ms, s.p50_ms, s.p99_ms, s.max_ms)
        {
            let what = match self.mode {
                Mode::Udp => "answer time",
                Mode::Tcp | Mode::Http => "connect time",
            };
            let _ = writeln!(
                out,
                "{what}: min {}, p50 {}, p99 {}, max {}",
                duration_text(min),
                duration_text(p50),
                duration_text(p99),
                duration_text(max)
            );
        }
        let _ = write!(out, "sent {} B", s.sent);
        if s.padding > 0 {
            let _ = write!(out, " ({} B of it padding)", s.padding);
        }
        let _ = writeln!(out, ", received {} B", s.received);
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

    fn no_ports_advice(&self) -> String {
        let sources = if self.sources.is_empty() {
            "this machine's address".to_string()
        } else {
            self.sources
                .iter()
                .map(IpAddr::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        };
        let (lo, hi) = self.port_range.unwrap_or((32768, 60999));
        format!(
            "ran out of ephemeral ports on {sources} towards {} (ip_local_port_range {lo}–{hi} gives about {} per source address); \
             add source addresses with --source 127.0.0.1,127.0.0.2,...\n",
            self.target,
            hi.saturating_sub(lo) + 1
        )
    }
}

/// `tcp 127.0.0.1:54240 -> 127.0.0.1:500 connected in 85 µs, sent 13 B, received 0 B`,
/// or for UDP `udp 127.0.0.1:54321 -> 127.0.0.1:500 answered in 90 µs, sent 13 B, received 47 B`,
/// then what the server saw, or the reply.
pub fn line(o: &Outcome, show_reply: bool) -> String {
    let mut out = String::new();
    let local = o
        .local
        .map(|l| l.to_string())
        .unwrap_or_else(|| o.source.map_or("*".into(), |s| s.to_string()));
    let proto = o.proto;
    let remote = o.remote;
    let done = match (o.connect_ms, o.answer_ms) {
        (Some(ms), _) if proto == "tcp" => Some(format!("connected in {}", duration_text(ms))),
        (_, Some(ms)) if proto == "udp" => Some(format!("answered in {}", duration_text(ms))),
        _ => None,
    };
    match (&o.error, done) {
        // A UDP probe has its local end once its datagram is sent.
        (Some(e), None) if proto == "udp" && o.local.is_some() => {
            let _ = writeln!(
                out,
                "{proto} {local} -> {remote} sent {}, then {}",
                sent_text(o),
                e.describe()
            );
            return out;
        }
        (Some(e), None) => {
            let _ = writeln!(out, "{proto} {local} -> {remote} failed: {}", e.describe());
            return out;
        }
        (error, Some(done)) => {
            let _ = write!(
                out,
                "{proto} {local} -> {remote} {done}, sent {}, received {} B",
                sent_text(o),
                o.received
            );
            if let Some(e) = error {
                let _ = write!(out, ", then {}", e.describe());
            }
            out.push('\n');
        }
        (None, None) if proto == "udp" => {
            let _ = writeln!(out, "{proto} {local} -> {remote} never answered");
        }
        (None, None) => {
            let _ = writeln!(out, "{proto} {local} -> {remote} never connected");
        }
    }
    if let Some(view) = &o.server_view {
        let _ = writeln!(out, "  server sees: {view} ({})", verdict(o, view));
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

/// `13 B`, or with padding `138 B (13 B + 125 B padding)`: the server
/// counts the whole datagram, and the line says what made it up.
fn sent_text(o: &Outcome) -> String {
    match o.padding {
        0 => format!("{} B", o.sent),
        padding => format!(
            "{} B ({} B + {padding} B padding)",
            o.sent,
            o.sent.saturating_sub(padding)
        ),
    }
}

/// Whether the server names the same pair of ends as the client.
fn verdict(o: &Outcome, view: &str) -> String {
    let Some(seen) = parse_view(view) else {
        return "a different pair".into();
    };
    let same = o.local.is_some_and(|local| seen.is_pair(local, o.remote));
    let mut verdict = if same {
        "the same pair".to_string()
    } else {
        "a different pair".to_string()
    };
    if let Some(bytes) = seen.bytes.filter(|&b| b as u64 != o.sent) {
        let _ = write!(verdict, "; it counted {bytes} bytes, we sent {}", o.sent);
    }
    verdict
}

/// The figures for many sockets at once.
pub fn summarize(outcomes: &[Outcome]) -> Totals {
    let mut times: Vec<f64> = outcomes.iter().filter_map(Outcome::time_ms).collect();
    times.sort_by(f64::total_cmp);
    let pick = |q: f64| {
        (!times.is_empty()).then(|| times[((times.len() - 1) as f64 * q).round() as usize])
    };
    let mut ends: Vec<SocketAddr> = outcomes.iter().filter_map(|o| o.local).collect();
    ends.sort_unstable();
    ends.dedup();
    let mut failures: Vec<(String, usize)> = Vec::new();
    for o in outcomes {
        if let Some(e) = &o.error {
            let why = e.describe();
            match failures.iter_mut().find(|(d, _)| *d == why) {
                Some((_, n)) => *n += 1,
                None => failures.push((why, 1)),
            }
        }
    }
    Totals {
        connected: outcomes.iter().filter(|o| o.connect_ms.is_some()).count(),
        answered: outcomes.iter().filter(|o| o.server_view.is_some()).count(),
        distinct_local_ends: ends.len(),
        min_ms: pick(0.0),
        p50_ms: pick(0.5),
        p99_ms: pick(0.99),
        max_ms: pick(1.0),
        sent: outcomes.iter().map(|o| o.sent).sum(),
        padding: outcomes.iter().map(|o| o.padding).sum(),
        received: outcomes.iter().map(|o| o.received).sum(),
        failures,
    }
}

/// See [`summarize`].
#[derive(Debug, Clone, PartialEq)]
pub struct Totals {
    /// TCP: connections whose handshake completed.
    pub connected: usize,
    /// Sockets the server answered as fivetuple does (`--http`, UDP).
    pub answered: usize,
    /// Distinct (local address, local port) pairs among the sockets.
    pub distinct_local_ends: usize,
    /// Connect times (TCP) or round trips (UDP), in milliseconds.
    pub min_ms: Option<f64>,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub max_ms: Option<f64>,
    pub sent: u64,
    /// UDP: how many of the bytes `sent` were padding.
    pub padding: u64,
    pub received: u64,
    /// (reason, count), in order of first appearance.
    pub failures: Vec<(String, usize)>,
}

/// A time: microseconds below a millisecond, where `0.00 ms` would say
/// nothing (loopback connects take tens of microseconds).
pub fn duration_text(ms: f64) -> String {
    if (ms * 1e3).round() < 1e3 {
        format!("{:.0} µs", ms * 1e3)
    } else {
        format!("{ms:.2} ms")
    }
}

/// A reply shown line by line, readably: see [`readable`].
pub fn display_reply(bytes: &[u8]) -> String {
    let mut out = String::new();
    for line in bytes.split_inclusive(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\n").unwrap_or(line);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        out.push_str(&readable(line));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(port: u16, ms: Option<f64>, error: Option<Failure>) -> Outcome {
        Outcome {
            local: ms.map(|_| SocketAddr::from(([127, 0, 0, 1], port))),
            connect_ms: ms,
            sent: 13,
            error,
            ..Outcome::new("tcp", "127.0.0.1:500".parse().unwrap(), None)
        }
    }

    fn udp_outcome(view: Option<&str>, error: Option<Failure>) -> Outcome {
        Outcome {
            local: Some("127.0.0.1:54321".parse().unwrap()),
            answer_ms: view.map(|_| 0.09),
            sent: 13,
            received: view.map_or(0, |v| v.len() as u64 + 1),
            server_view: view.map(str::to_string),
            error,
            ..Outcome::new("udp", "127.0.0.1:500".parse().unwrap(), None)
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

    #[test]
    fn a_udp_line_shows_both_ends() {
        let view = "udp 127.0.0.1:500 <- 127.0.0.1:54321, 13 bytes";
        assert_eq!(
            line(&udp_outcome(Some(view), None), false),
            "udp 127.0.0.1:54321 -> 127.0.0.1:500 answered in 90 µs, sent 13 B, received 47 B\n\
             \x20 server sees: udp 127.0.0.1:500 <- 127.0.0.1:54321, 13 bytes (the same pair)\n"
        );
        // A server bound to the wildcard address names it, not the one we reached.
        let wildcard = "udp 0.0.0.0:500 <- 127.0.0.1:54321, 13 bytes";
        assert!(line(&udp_outcome(Some(wildcard), None), false).contains("(the same pair)"));
        let other = "udp 127.0.0.1:500 <- 127.0.0.1:54999, 13 bytes";
        assert!(line(&udp_outcome(Some(other), None), false).contains("(a different pair)"));
        // A padded datagram: the server counts it whole, the line says what made it up.
        let whole = "udp 127.0.0.1:500 <- 127.0.0.1:54321, 138 bytes";
        let padded = Outcome {
            sent: 138,
            padding: 125,
            ..udp_outcome(Some(whole), None)
        };
        assert_eq!(
            line(&padded, false),
            "udp 127.0.0.1:54321 -> 127.0.0.1:500 answered in 90 µs, sent 138 B (13 B + 125 B padding), received 48 B\n\
             \x20 server sees: udp 127.0.0.1:500 <- 127.0.0.1:54321, 138 bytes (the same pair)\n"
        );
        let short = "udp 127.0.0.1:500 <- 127.0.0.1:54321, 5 bytes";
        assert!(line(&udp_outcome(Some(short), None), false)
            .contains("(the same pair; it counted 5 bytes, we sent 13)"));
        assert_eq!(
            line(&udp_outcome(None, Some(Failure::PortUnreachable)), false),
            "udp 127.0.0.1:54321 -> 127.0.0.1:500 sent 13 B, then refused (nothing listens on that UDP port)\n"
        );
    }

    #[test]
    fn a_refused_connection_says_nothing_listens_and_how_to_start_one() {
        let report = Report {
            mode: Mode::Tcp,
            target: "localhost:500".into(),
            first_target: "127.0.0.1:500".parse().unwrap(),
            sources: Vec::new(),
            outcomes: vec![outcome(0, None, Some(Failure::Refused))],
            port_range: None,
        };
        let text = report.text(TextStyle::default());
        assert_eq!(
            text.lines().nth(1),
            Some(
                "nothing listens on TCP port 500 at 127.0.0.1: its kernel answered the \
                 connection request with a reset; check the port, or start the server first \
                 (fivetuple serve --listen 0.0.0.0:500)"
            ),
            "{text}"
        );
    }

    #[test]
    fn udp_reports_name_the_missing_server_and_summarise_round_trips() {
        let view = "udp 127.0.0.1:500 <- 127.0.0.1:54321, 13 bytes";
        let mut outcomes = vec![udp_outcome(None, Some(Failure::PortUnreachable))];
        let mut report = Report {
            mode: Mode::Udp,
            target: "localhost:500".into(),
            first_target: "127.0.0.1:500".parse().unwrap(),
            sources: Vec::new(),
            outcomes: outcomes.clone(),
            port_range: None,
        };
        let text = report.text(TextStyle::default());
        assert!(
            text.contains("nothing listens on UDP port 500 at 127.0.0.1: TCP and UDP"),
            "{text}"
        );
        outcomes = (0..30).map(|_| udp_outcome(Some(view), None)).collect();
        outcomes.push(udp_outcome(None, Some(Failure::Unanswered)));
        report.outcomes = outcomes;
        let text = report.text(TextStyle::default());
        assert!(text.starts_with(
            "30 of 31 UDP sockets to 127.0.0.1:500 answered, from 1 distinct local address:port pair\n\
             answer time: min 90 µs"
        ), "{text}");
        assert!(
            text.contains("failed: 1 no answer in time (--timeout)"),
            "{text}"
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
}
