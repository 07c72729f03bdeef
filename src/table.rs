//! The connection table: the server's own answer to "who is connected?".
//!
//! A [`ConnTable`] is a snapshot of the reactor's slab at one instant: one
//! row for the listening socket and one row per accepted connection. Every
//! connection row shares the listener's local port and differs in the
//! remote address, which is the whole point of the project: the kernel tells
//! connections apart by the 5-tuple, so one port can carry any number of
//! them. The snapshot is plain data, so the same rendering serves the mio
//! reactor, the tokio version used in benchmarks, and the tests.

use serde::Serialize;
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
    /// The TCP state as netstat would name it: LISTEN, ESTABLISHED, or
    /// CLOSE_WAIT once the client has closed its side.
    pub state: &'static str,
    /// What the server is doing with the connection: idle, reading,
    /// writing, closing (or accepting for the listener).
    pub phase: &'static str,
    /// Milliseconds since the connection was accepted (or the listener bound).
    pub age_ms: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Requests answered on this connection (connections accepted, for the listener).
    pub requests: u64,
    /// True on the row of the connection that asked for the table.
    pub you: bool,
}

impl ConnRow {
    /// The listening socket's row: bound `age` ago, `accepted` connections so far.
    pub fn listener(local: SocketAddr, age: Duration, accepted: u64) -> ConnRow {
        ConnRow {
            token: None,
            proto: "tcp",
            local,
            remote: None,
            state: "LISTEN",
            phase: "accept",
            age_ms: age.as_millis() as u64,
            bytes_in: 0,
            bytes_out: 0,
            requests: accepted,
            you: false,
        }
    }
}

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
    /// The listener first, then the connections by token.
    pub rows: Vec<ConnRow>,
}

impl ConnTable {
    /// A table with no rows at all (for tests and benchmarks of the protocol).
    pub fn empty(listen: SocketAddr) -> ConnTable {
        ConnTable {
            listen,
            open: 0,
            accepted: 0,
            served: 0,
            rows: Vec::new(),
        }
    }

    /// The table as netstat-like text, one row per socket. Address columns
    /// are as wide as their longest entry, so IPv6 rows stay aligned.
    pub fn render_text(&self) -> String {
        let remote_of = |row: &ConnRow| {
            row.remote
                .map_or_else(|| wildcard(&row.local), |r| r.to_string())
        };
        let locals: Vec<String> = self.rows.iter().map(|r| r.local.to_string()).collect();
        let remotes: Vec<String> = self.rows.iter().map(remote_of).collect();
        let lw = locals.iter().map(String::len).max().unwrap_or(0).max(13);
        let rw = remotes.iter().map(String::len).max().unwrap_or(0).max(15);
        let mut out = String::with_capacity(160 + (lw + rw + 80) * self.rows.len());
        let _ = writeln!(
            out,
            "fivetuple on {}: {} open, {} accepted, {} requests served",
            self.listen, self.open, self.accepted, self.served
        );
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
            "Requests"
        );
        for ((row, local), remote) in self.rows.iter().zip(&locals).zip(&remotes) {
            let token = row
                .token
                .map_or_else(|| "listen".to_string(), |t| t.to_string());
            let _ = write!(
                out,
                "{:<7} {:<5} {:<lw$} {:<rw$} {:<11} {:<7} {:>7} {:>10} {:>10} {:>8}",
                token,
                row.proto,
                local,
                remote,
                row.state,
                row.phase,
                age(Duration::from_millis(row.age_ms)),
                row.bytes_in,
                row.bytes_out,
                row.requests
            );
            if row.you {
                out.push_str("  <- you");
            }
            out.push('\n');
        }
        out
    }

    /// The table as JSON (the same fields as the text).
    pub fn render_json(&self) -> String {
        let mut json = serde_json::to_string_pretty(self).unwrap_or_else(|e| {
            // Serializing plain strings and numbers cannot fail; say so if it ever does.
            format!("{{\"error\": \"{e}\"}}")
        });
        json.push('\n');
        json
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
            state: "ESTABLISHED",
            phase: "idle",
            age_ms: 1200,
            bytes_in: 78,
            bytes_out: 0,
            requests: 0,
            you,
        };
        ConnTable {
            listen: "0.0.0.0:500".parse().unwrap(),
            open: 2,
            accepted: 2,
            served: 1,
            rows: vec![
                ConnRow {
                    token: None,
                    remote: None,
                    state: "LISTEN",
                    phase: "accept",
                    local: "0.0.0.0:500".parse().unwrap(),
                    ..conn(0, 0, false)
                },
                conn(0, 54240, false),
                conn(1, 26813, true),
            ],
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
    fn ages_are_short() {
        assert_eq!(age(Duration::from_millis(850)), "850ms");
        assert_eq!(age(Duration::from_millis(12_345)), "12.3s");
        assert_eq!(age(Duration::from_secs(245)), "4m05s");
        assert_eq!(age(Duration::from_secs(7380)), "2h03m");
    }
}
