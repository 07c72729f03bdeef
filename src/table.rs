//! The connection table: the server's own answer to "who is connected?".
//!
//! A [`ConnTable`] is a snapshot of the reactor's slab at one instant: one
//! row for the listening socket and one row per accepted connection. Every
//! connection row shares the listener's local port and differs in the
//! remote address, which is the whole point of the project: the kernel tells
//! connections apart by the 5-tuple, so one port can carry any number of
//! them. The snapshot is plain data, so the same rendering serves the mio
//! reactor, the tokio version used in benchmarks, and the tests. With
//! `serve --udp` it also holds the UDP socket's counts ([`UdpStats`]).

mod udp_stats;

use serde::Serialize;

pub use udp_stats::{Refusal, Refused, UdpStats};

use crate::procnet::TcpState;
use crate::proxy::Origin;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::Duration;

/// One row of the table.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ConnRow {
    /// The mio token (slab key) of the connection; `None` for the listener,
    /// whose token is a reserved constant rather than a slab key.
    pub token: Option<usize>,
    pub proto: &'static str,
    pub local: SocketAddr,
    /// The client's address and ephemeral port; `None` for the listener.
    pub remote: Option<SocketAddr>,
    /// The TCP state as netstat would name it: LISTEN, ESTABLISHED,
    /// CLOSE_WAIT once the client has closed its side, FIN_WAIT2 once we
    /// have closed ours.
    pub state: RowState,
    /// What the server is doing with the socket.
    pub phase: Phase,
    /// Milliseconds since the connection was accepted (or the listener bound).
    pub age_ms: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Requests answered on this connection; `None` for the listener,
    /// which answers none (the table's first line counts its accepts).
    pub requests: Option<u64>,
    /// True on the row of the connection that asked for the table.
    pub you: bool,
    /// Behind a load balancer (`--proxy-protocol`): the original client's
    /// connection, from the PROXY header. `local` and `remote` stay the
    /// balancer's connection to us, the socket the kernel knows.
    pub client: Option<Origin>,
}

impl ConnRow {
    /// The listening socket's row, bound `age` ago.
    pub fn listener(local: SocketAddr, age: Duration) -> ConnRow {
        ConnRow {
            token: None,
            proto: "tcp",
            local,
            remote: None,
            state: RowState::Tcp(TcpState::Listen),
            phase: Phase::Accept,
            age_ms: age.as_millis() as u64,
            bytes_in: 0,
            bytes_out: 0,
            requests: None,
            you: false,
            client: None,
        }
    }
}

/// A row's `State` column, as netstat would name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowState {
    /// A TCP socket: LISTEN, ESTABLISHED, CLOSE_WAIT, FIN_WAIT2...
    Tcp(TcpState),
    /// A UDP socket (and a UDP peer): there is no connection, and netstat
    /// and ss call that UNCONN.
    Unconnected,
}

impl RowState {
    pub fn name(self) -> &'static str {
        match self {
            RowState::Tcp(state) => state.name(),
            RowState::Unconnected => "UNCONN",
        }
    }
}

impl std::fmt::Display for RowState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.name())
    }
}

impl Serialize for RowState {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

/// What the server is doing with a socket, the table's `Phase` column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// The listener: waiting for connections.
    Accept,
    /// Waiting for the next request.
    Idle,
    /// A request has begun and is not complete.
    Reading,
    /// Answers are being written (or wait for the client to read them).
    Writing,
    /// No more requests will be read: the last answers go out, then close.
    Closing,
    /// Our FIN is sent; reading and discarding until the client closes.
    Linger,
    /// The UDP socket: receiving datagrams from anyone.
    Receive,
    /// A UDP peer heard from recently (no socket of its own).
    Flow,
    /// A long-lived answer: the event stream (`/_/events`), written as
    /// things happen until the client leaves.
    Stream,
}

impl Phase {
    pub fn name(self) -> &'static str {
        match self {
            Phase::Accept => "accept",
            Phase::Idle => "idle",
            Phase::Reading => "reading",
            Phase::Writing => "writing",
            Phase::Closing => "closing",
            Phase::Linger => "linger",
            Phase::Receive => "recv",
            Phase::Flow => "flow",
            Phase::Stream => "stream",
        }
    }
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.name())
    }
}

/// Connection rows `/_/conns` shows unless asked for more (`?rows=N`,
/// `?all`). The table costs time in proportion to its rows, and answering
/// it for a thousand clients at once must not stall everybody else; the
/// totals in the first line still count every connection.
pub const DEFAULT_ROWS: usize = 100;

/// The most connection rows a table answer writes in one turn. A longer
/// table (`?all`, `?rows=N`) is sent a slice of rows per turn (see
/// [`TableCursor`]); `/_/conns?workers` shows at most this many rows of
/// each worker.
pub const ROWS_AT_ONCE: usize = 1000;

/// A snapshot of every socket the server holds.
#[derive(Debug, Clone, Serialize)]
pub struct ConnTable {
    /// The listening address (with the real port).
    pub listen: SocketAddr,
    /// Connections currently open.
    pub open: usize,
    /// Connections accepted since start.
    pub accepted: u64,
    /// Requests answered since start.
    pub served: u64,
    /// Connections left out of `rows` by the row limit.
    pub hidden: usize,
    /// UDP peers remembered, with `--udp` (their rows follow the connections').
    pub udp_peers: Option<usize>,
    /// With `--udp`: what the UDP socket did, and what it refused to do.
    pub udp: Option<UdpStats>,
    /// With `--workers N`: which worker's table this is.
    pub worker: Option<usize>,
    /// The listener first, then the connections by token.
    pub rows: Vec<ConnRow>,
}

/// How a table is written out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// netstat-like columns, one row per line.
    Text,
    /// One JSON object, with one row object per line.
    Json,
}

impl ConnTable {
    /// A table with no rows at all (for tests and benchmarks of the protocol).
    pub fn empty(listen: SocketAddr) -> ConnTable {
        ConnTable {
            listen,
            open: 0,
            accepted: 0,
            served: 0,
            hidden: 0,
            udp_peers: None,
            udp: None,
            worker: None,
            rows: Vec::new(),
        }
    }

    /// The table as netstat-like text (see [`ConnTable::render`]).
    pub fn render_text(&self) -> String {
        self.render(Format::Text).into_string()
    }

    /// The table as JSON (the same fields as the text).
    pub fn render_json(&self) -> String {
        self.render(Format::Json).into_string()
    }

    /// Writes the table out once, remembering where each connection's row
    /// is, so that many requesters can share one rendering and each still
    /// sees its own row marked (see [`Rendered::write_for`]).
    pub fn render(&self, format: Format) -> Rendered {
        match format {
            Format::Text => self.render_text_rows(),
            Format::Json => self.render_json_rows(),
        }
    }

    /// Address columns are as wide as their longest entry, so IPv6 rows
    /// stay aligned.
    fn render_text_rows(&self) -> Rendered {
        let widths = Widths::fit(&self.rows);
        let mut out =
            String::with_capacity(160 + (widths.local + widths.remote + 80) * self.rows.len());
        self.write_text_head(&widths, &mut out);
        let mut spans = Vec::with_capacity(self.rows.len());
        for row in &self.rows {
            let start = out.len();
            widths.write_row(&mut out, row);
            if let Some(token) = row.token {
                spans.push((token, start..out.len()));
            }
            out.push('\n');
        }
        let mut tail = out.len();
        if self.hidden > 0 {
            self.write_hidden_line(&mut out);
            tail = out.len();
        }
        Rendered {
            bytes: out.into_bytes(),
            spans,
            tail,
            format: Format::Text,
            widths,
        }
    }

    /// The text table's first two lines: the totals and the column names.
    fn write_text_head(&self, widths: &Widths, out: &mut String) {
        let worker = self
            .worker
            .map_or_else(String::new, |w| format!(", worker {w}"));
        let _ = write!(
            out,
            "fivetuple on {}{worker}: {} open, {} accepted, {} {} served",
            self.listen,
            self.open,
            self.accepted,
            self.served,
            if self.served == 1 {
                "request"
            } else {
                "requests"
            }
        );
        if let Some(peers) = self.udp_peers {
            let noun = if peers == 1 { "peer" } else { "peers" };
            let _ = write!(out, ", {peers} UDP {noun}");
        }
        out.push('\n');
        if let Some(udp) = &self.udp {
            write_udp_line(out, udp);
        }
        let _ = writeln!(
            out,
            "{:<7} {:<5} {:<lw$} {:<rw$} {:<11} {:<7} {:>7} {:>10} {:>10} {:>8}",
            "Token",
            "Proto",
            "Local Address",
            "Foreign Address",
            "State",
            "Phase",
            "Age",
            "Bytes In",
            "Bytes Out",
            "Requests",
            lw = widths.local,
            rw = widths.remote,
        );
    }

    /// The line that says how many connections the row limit left out.
    fn write_hidden_line(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "... and {} more {} not shown (ask for /_/conns?all, or ?rows=N)",
            self.hidden,
            if self.hidden == 1 {
                "connection"
            } else {
                "connections"
            }
        );
    }

    /// The JSON table up to its first row: every field but `rows`, then
    /// the opening of `rows`.
    fn write_json_head(&self, out: &mut Vec<u8>) {
        let udp_peers = self
            .udp_peers
            .map_or_else(|| "null".to_string(), |n| n.to_string());
        let worker = self
            .worker
            .map_or_else(|| "null".to_string(), |n| n.to_string());
        let udp = self.udp.map_or_else(
            || "null".to_string(),
            |u| serde_json::to_string(&u).unwrap_or_else(|_| "null".to_string()),
        );
        let _ = write!(
            ByteString(out),
            "{{\"listen\":\"{}\",\"worker\":{worker},\"open\":{},\"accepted\":{},\"served\":{},\"hidden\":{},\"udp_peers\":{udp_peers},\"udp\":{udp},\"rows\":[",
            self.listen, self.open, self.accepted, self.served, self.hidden
        );
    }

    fn render_json_rows(&self) -> Rendered {
        let mut out = Vec::with_capacity(200 + 200 * self.rows.len());
        self.write_json_head(&mut out);
        let mut spans = Vec::with_capacity(self.rows.len());
        for (i, row) in self.rows.iter().enumerate() {
            out.extend_from_slice(if i == 0 { b"\n" } else { b",\n" });
            let start = out.len();
            write_json_row(&mut out, row);
            if let Some(token) = row.token {
                spans.push((token, start..out.len()));
            }
        }
        let tail = out.len();
        out.extend_from_slice(b"\n]}\n");
        Rendered {
            bytes: out,
            spans,
            tail,
            format: Format::Json,
            widths: Widths::default(),
        }
    }
}

/// A table too big to write in one turn, written a slice of rows per turn
/// (`/_/conns?all` over thousands of connections): where it has got to.
///
/// The totals and the fixed rows (the listener, the UDP socket) are taken
/// when the answer starts; each connection row is read from the slab when
/// its slice is written, in token order. So the rows are each exact when
/// written, but not one instant's picture: a connection that came or went
/// while the table was being sent may be missing, or shown. The text says
/// so in its last line.
#[derive(Debug, Clone)]
pub struct TableCursor {
    pub format: Format,
    /// The requester's token: its row is marked.
    pub me: usize,
    /// The next slab key to look at.
    pub next_key: usize,
    /// Connection rows still allowed (the row limit).
    pub rows_left: usize,
    /// Rows written so far (for JSON's separators).
    pub rows_written: usize,
    /// The text columns' widths, fitted to the first slice.
    widths: Widths,
    /// What the end needs from the start: the rows left out, UDP peers.
    summary: Option<Box<ConnTable>>,
}

impl TableCursor {
    /// A table of at most `rows` connection rows, for token `me`.
    pub fn new(format: Format, me: usize, rows: usize) -> TableCursor {
        TableCursor {
            format,
            me,
            next_key: 0,
            rows_left: rows,
            rows_written: 0,
            widths: Widths::default(),
            summary: None,
        }
    }

    /// Whether the head has been written.
    pub fn started(&self) -> bool {
        self.summary.is_some()
    }

    /// The first slice: the totals and fixed rows of `table` (whose `rows`
    /// are the listener's and the UDP socket's), then `first`, the first
    /// connection rows, which fit the text columns.
    pub fn start(&mut self, table: ConnTable, first: &[ConnRow], out: &mut Vec<u8>) {
        match self.format {
            Format::Text => {
                let mut all = table.rows.clone();
                all.extend_from_slice(first);
                self.widths = Widths::fit(&all);
                let mut text = String::new();
                table.write_text_head(&self.widths, &mut text);
                out.extend_from_slice(text.as_bytes());
            }
            Format::Json => table.write_json_head(out),
        }
        let fixed = table.rows.clone();
        self.summary = Some(Box::new(ConnTable {
            rows: Vec::new(),
            ..table
        }));
        for row in &fixed {
            self.write_row(row, out);
        }
        self.rows(first, out);
    }

    /// Connection rows, in token order.
    pub fn rows(&mut self, rows: &[ConnRow], out: &mut Vec<u8>) {
        for row in rows {
            self.write_row(row, out);
            self.rows_left = self.rows_left.saturating_sub(1);
        }
    }

    fn write_row(&mut self, row: &ConnRow, out: &mut Vec<u8>) {
        match self.format {
            Format::Text => {
                let mut line = String::with_capacity(128);
                self.widths.write_row(&mut line, row);
                line.push('\n');
                out.extend_from_slice(line.as_bytes());
            }
            Format::Json => {
                out.extend_from_slice(if self.rows_written == 0 {
                    b"\n"
                } else {
                    b",\n"
                });
                write_json_row(out, row);
            }
        }
        self.rows_written += 1;
    }

    /// The last slice: `tail` (the UDP peers' rows), the line about rows
    /// left out, and the end.
    pub fn finish(&mut self, tail: &[ConnRow], out: &mut Vec<u8>) {
        for row in tail {
            self.write_row(row, out);
        }
        let Some(summary) = &self.summary else {
            return;
        };
        match self.format {
            Format::Text => {
                let mut text = String::new();
                if summary.hidden > 0 {
                    summary.write_hidden_line(&mut text);
                }
                text.push_str(
                    "(a table this long is sent a slice of rows per turn: \
                     connections that came or went meanwhile may be missing or shown)\n",
                );
                out.extend_from_slice(text.as_bytes());
            }
            Format::Json => out.extend_from_slice(b"\n]}\n"),
        }
    }
}

/// A table written out once, to be handed to many requesters.
#[derive(Debug, Clone)]
pub struct Rendered {
    bytes: Vec<u8>,
    /// Each connection row's token and where its line is in `bytes`, by
    /// token (the slab's order).
    spans: Vec<(usize, std::ops::Range<usize>)>,
    /// Where a row that is not in the table goes: after the last row.
    tail: usize,
    format: Format,
    widths: Widths,
}

impl Rendered {
    /// Appends the table to `out` with `me` (the requester's own row, fresh)
    /// in place of its row in the snapshot, or after the rows if the row
    /// limit left it out. Costs a copy and one row, whatever the table's size.
    pub fn write_for(&self, me: Option<&ConnRow>, out: &mut Vec<u8>) {
        let Some(me) = me else {
            return out.extend_from_slice(&self.bytes);
        };
        let found = me.token.and_then(|token| {
            self.spans
                .binary_search_by_key(&token, |(t, _)| *t)
                .ok()
                .map(|i| self.spans[i].1.clone())
        });
        let (cut, resume) = match &found {
            Some(span) => (span.start, span.end),
            None => (self.tail, self.tail),
        };
        out.extend_from_slice(&self.bytes[..cut]);
        match self.format {
            Format::Text => {
                let mut line = String::new();
                self.widths.write_row(&mut line, me);
                out.extend_from_slice(line.as_bytes());
                if found.is_none() {
                    out.push(b'\n');
                }
            }
            Format::Json => {
                if found.is_none() {
                    out.extend_from_slice(b",\n");
                }
                write_json_row(out, me);
            }
        }
        out.extend_from_slice(&self.bytes[resume..]);
    }

    /// The rendering as it is, with no row marked.
    pub fn into_string(self) -> String {
        String::from_utf8(self.bytes).unwrap_or_default()
    }
}

/// The widths of the text table's address columns.
#[derive(Debug, Clone, Copy, Default)]
struct Widths {
    local: usize,
    remote: usize,
}

impl Widths {
    /// Columns as wide as the longest of `rows` (and their names).
    fn fit(rows: &[ConnRow]) -> Widths {
        Widths {
            local: rows
                .iter()
                .map(|r| r.local.to_string().len())
                .max()
                .unwrap_or(0)
                .max(13),
            remote: rows
                .iter()
                .map(|r| remote_text(r).len())
                .max()
                .unwrap_or(0)
                .max(15),
        }
    }

    /// One row of the text table, without its newline.
    fn write_row(&self, out: &mut String, row: &ConnRow) {
        let token = match (row.token, row.phase) {
            (Some(t), _) => t.to_string(),
            (None, Phase::Accept) => "listen".to_string(),
            (None, Phase::Receive) => "udp".to_string(),
            (None, _) => "-".to_string(),
        };
        let requests = row
            .requests
            .map_or_else(|| "-".to_string(), |n| n.to_string());
        let _ = write!(
            out,
            "{:<7} {:<5} {:<lw$} {:<rw$} {:<11} {:<7} {:>7} {:>10} {:>10} {:>8}",
            token,
            row.proto,
            row.local.to_string(),
            remote_text(row),
            row.state,
            row.phase,
            age(Duration::from_millis(row.age_ms)),
            row.bytes_in,
            row.bytes_out,
            requests,
            lw = self.local,
            rw = self.remote,
        );
        if let Some(client) = row.client {
            let _ = write!(out, "  client {} -> {}", client.source, client.destination);
        }
        if row.you {
            out.push_str("  <- you");
        }
    }
}

/// The UDP socket's line under the table's first: what came in, what went
/// out, and what did not, and why (`udp: 9 datagrams in, 6 answered;
/// refused: 2 shorter than the answer, 1 from our own port; 0 dropped
/// (send buffer full), 0 peers evicted`).
fn write_udp_line(out: &mut String, udp: &UdpStats) {
    let _ = write!(
        out,
        "udp: {} {} in, {} answered; refused: ",
        udp.datagrams_in,
        if udp.datagrams_in == 1 {
            "datagram"
        } else {
            "datagrams"
        },
        udp.datagrams_out
    );
    let reasons: Vec<String> = Refusal::ALL
        .iter()
        .filter(|&&why| udp.refused.get(why) > 0)
        .map(|&why| format!("{} {}", udp.refused.get(why), why.describe()))
        .collect();
    if reasons.is_empty() {
        out.push_str("none");
    } else {
        out.push_str(&reasons.join(", "));
    }
    let _ = write!(out, "; {} dropped (send buffer full)", udp.dropped);
    if udp.failed > 0 {
        let _ = write!(out, ", {} not sent (the kernel refused)", udp.failed);
    }
    let _ = writeln!(
        out,
        ", {} {} evicted",
        udp.evicted,
        if udp.evicted == 1 { "peer" } else { "peers" }
    );
}

fn remote_text(row: &ConnRow) -> String {
    row.remote
        .map_or_else(|| wildcard(&row.local), |r| r.to_string())
}

fn write_json_row(out: &mut Vec<u8>, row: &ConnRow) {
    if let Err(e) = serde_json::to_writer(&mut *out, row) {
        // Serializing plain strings and numbers cannot fail; say so if it ever does.
        let _ = write!(ByteString(out), "{{\"error\":\"{e}\"}}");
    }
}

/// `fmt::Write` into a byte vector.
pub(crate) struct ByteString<'a>(pub(crate) &'a mut Vec<u8>);

impl std::fmt::Write for ByteString<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

/// netstat's way of writing "any address, any port": `0.0.0.0:*` or `:::*`.
pub fn wildcard(local: &SocketAddr) -> String {
    match local {
        SocketAddr::V4(_) => "0.0.0.0:*".to_string(),
        SocketAddr::V6(_) => ":::*".to_string(),
    }
}

/// A short human age: `850ms`, `12.3s`, `4m05s`, `2h03m`.
pub fn age(d: Duration) -> String {
    let ms = d.as_millis();
    match ms {
        0..=999 => format!("{ms}ms"),
        1_000..=59_999 => format!("{:.1}s", d.as_secs_f64()),
        60_000..=3_599_999 => format!("{}m{:02}s", ms / 60_000, (ms / 1000) % 60),
        _ => format!("{}h{:02}m", ms / 3_600_000, (ms / 60_000) % 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> ConnTable {
        let local: SocketAddr = "127.0.0.1:500".parse().unwrap();
        let conn = |token, port, you| ConnRow {
            token: Some(token),
            proto: "tcp",
            local,
            remote: Some(SocketAddr::from(([127, 0, 0, 1], port))),
            state: RowState::Tcp(TcpState::Established),
            phase: Phase::Idle,
            age_ms: 1200,
            bytes_in: 78,
            bytes_out: 0,
            requests: Some(0),
            you,
            client: None,
        };
        ConnTable {
            listen: "0.0.0.0:500".parse().unwrap(),
            open: 2,
            accepted: 2,
            served: 1,
            hidden: 0,
            udp_peers: None,
            udp: None,
            worker: None,
            rows: vec![
                ConnRow {
                    token: None,
                    remote: None,
                    state: RowState::Tcp(TcpState::Listen),
                    phase: Phase::Accept,
                    local: "0.0.0.0:500".parse().unwrap(),
                    requests: None,
                    ..conn(0, 0, false)
                },
                conn(0, 54240, false),
                conn(1, 26813, true),
            ],
        }
    }

    impl ConnRow {
        fn clone_with_token(self, token: usize) -> ConnRow {
            ConnRow {
                token: Some(token),
                ..self
            }
        }
    }

    #[test]
    fn text_shows_one_port_and_two_remote_ports() {
        let text = sample().render_text();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 5);
        assert!(lines[2].contains("0.0.0.0:*") && lines[2].contains("LISTEN"));
        assert!(lines[3].contains("127.0.0.1:54240") && !lines[3].contains("<- you"));
        assert!(lines[4].contains("127.0.0.1:26813") && lines[4].ends_with("<- you"));
    }

    #[test]
    fn json_round_trips_the_pairs() {
        let json: serde_json::Value = serde_json::from_str(&sample().render_json()).unwrap();
        assert_eq!(json["rows"][2]["remote"], "127.0.0.1:26813");
        assert_eq!(json["rows"][2]["you"], true);
        assert_eq!(json["rows"][0]["token"], serde_json::Value::Null);
    }

    #[test]
    fn one_rendering_serves_every_requester_with_its_own_row_marked() {
        let mut table = sample();
        for row in &mut table.rows {
            row.you = false;
        }
        let me = |token, port| {
            ConnRow {
                phase: Phase::Writing,
                you: true,
                ..table
                    .rows
                    .iter()
                    .find(|r| r.remote.map(|a| a.port()) == Some(port))
                    .unwrap()
                    .clone()
            }
            .clone_with_token(token)
        };
        for format in [Format::Text, Format::Json] {
            let shared = table.render(format);
            let mut first = Vec::new();
            shared.write_for(Some(&me(0, 54240)), &mut first);
            let mut second = Vec::new();
            shared.write_for(Some(&me(1, 26813)), &mut second);
            // Each answer equals a fresh rendering with that requester's row marked.
            for (bytes, port) in [(first, 54240u16), (second, 26813)] {
                let mut fresh = table.clone();
                for row in &mut fresh.rows {
                    if row.remote.map(|a| a.port()) == Some(port) {
                        row.you = true;
                        row.phase = Phase::Writing;
                    }
                }
                assert_eq!(
                    String::from_utf8(bytes).unwrap(),
                    fresh.render(format).into_string(),
                    "{format:?}, requester on port {port}"
                );
            }
        }
    }

    #[test]
    fn a_requester_left_out_by_the_row_limit_is_shown_after_the_rows() {
        let mut table = sample();
        table.rows.truncate(2); // the limit kept only the first connection
        table.hidden = 1;
        let me = ConnRow {
            token: Some(1),
            remote: Some(SocketAddr::from(([127, 0, 0, 1], 26813))),
            you: true,
            ..table.rows[1].clone()
        };
        let mut text = Vec::new();
        table.render(Format::Text).write_for(Some(&me), &mut text);
        let text = String::from_utf8(text).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 6, "{text}");
        assert!(lines[4].contains("1 more connection not shown"), "{text}");
        assert!(
            lines[5].contains("26813") && lines[5].ends_with("<- you"),
            "{text}"
        );
        let mut json = Vec::new();
        table.render(Format::Json).write_for(Some(&me), &mut json);
        let json: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(json["hidden"], 1);
        assert_eq!(json["rows"].as_array().unwrap().len(), 3);
        assert_eq!(json["rows"][2]["you"], true);
        assert_eq!(json["rows"][0]["requests"], serde_json::Value::Null);
    }

    #[test]
    fn the_udp_socket_says_what_it_refused_and_dropped() {
        let mut table = sample();
        let mut udp = UdpStats {
            datagrams_in: 9,
            datagrams_out: 5,
            peers: 2,
            ..UdpStats::default()
        };
        udp.refused.count(Refusal::TooShort);
        udp.refused.count(Refusal::TooShort);
        udp.refused.count(Refusal::OwnPort);
        udp.dropped = 1;
        table.udp_peers = Some(2);
        table.udp = Some(udp);
        let text = table.render_text();
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].ends_with(", 2 UDP peers"), "{text}");
        assert_eq!(
            lines[1],
            "udp: 9 datagrams in, 5 answered; refused: 1 from our own port, \
             2 shorter than the answer; 1 dropped (send buffer full), 0 peers evicted"
        );
        assert!(lines[2].starts_with("Token "), "{text}");
        let json: serde_json::Value = serde_json::from_str(&table.render_json()).unwrap();
        assert_eq!(json["udp"]["refused"]["too_short"], 2);
        assert_eq!(json["udp"]["dropped"], 1);
        assert_eq!(json["udp"]["evicted"], 0);
        let without: serde_json::Value = serde_json::from_str(&sample().render_json()).unwrap();
        assert!(without["udp"].is_null());
        assert!(!sample().render_text().contains("udp:"));
    }

    #[test]
    fn ages_are_short() {
        assert_eq!(age(Duration::from_millis(850)), "850ms");
        assert_eq!(age(Duration::from_millis(12_345)), "12.3s");
        assert_eq!(age(Duration::from_secs(245)), "4m05s");
        assert_eq!(age(Duration::from_secs(7380)), "2h03m");
    }
}
