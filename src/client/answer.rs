//! Recognising what `fivetuple serve` says it saw, and nothing else.
//!
//! The client prints its own end of each socket; the server's answer names
//! the same pair from the other side, so the two can be held side by side:
//!
//! - TCP, to `GET /_/whoami`: an HTTP 200 whose body is
//!   `tcp 127.0.0.1:500 <- 127.0.0.1:54240, token 2` (and `, worker 1`
//!   when the server runs several reactors);
//! - UDP, to a datagram at least as long as the answer (the client pads
//!   its own): one datagram back,
//!   `udp 127.0.0.1:500 <- 127.0.0.1:54321, 138 bytes`.
//!
//! Anything else (another server's error page, an echo) is named for what
//! it is and never passed off as the server's view. Replies are shown
//! [`readable`]: a terminal must not act on what a server sends.

use std::fmt::Write as _;
use std::net::SocketAddr;

/// What the answer to `GET /_/whoami` says so far.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
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
pub fn judge_whoami(bytes: &[u8], closed: bool) -> Verdict {
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
    match parse_view(text) {
        Some(view) if view.proto == "tcp" && view.token.is_some() => {
            Verdict::Whoami(text.to_string())
        }
        _ => Verdict::NotWhoami(format!(
            "\"{status_line}\" with the body \"{}\"",
            shortened(text.as_bytes())
        )),
    }
}

/// A UDP answer: `Ok(view)` when the datagram is exactly fivetuple's
/// `udp A <- B, N bytes` line, `Err(what it was)` otherwise.
pub fn judge_datagram(bytes: &[u8]) -> Result<String, String> {
    let text = std::str::from_utf8(bytes).ok();
    let view = text.and_then(|t| t.strip_suffix('\n'));
    match view.and_then(parse_view) {
        Some(seen) if seen.proto == "udp" && seen.bytes.is_some() => {
            Ok(view.unwrap_or_default().to_string())
        }
        _ if bytes.is_empty() => Err("an empty datagram".into()),
        _ => Err(format!("\"{}\"", shortened(bytes))),
    }
}

/// What the server says it saw, read back from its answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerView {
    /// `tcp` or `udp`.
    pub proto: &'static str,
    /// The server's end.
    pub server: SocketAddr,
    /// The client's end, as the server saw it.
    pub client: SocketAddr,
    /// TCP: the connection's token (its slab key) in the server.
    pub token: Option<usize>,
    /// TCP, with `serve --workers`: which reactor holds the connection.
    pub worker: Option<usize>,
    /// UDP: the payload's length, as the server counted it.
    pub bytes: Option<usize>,
}

impl ServerView {
    /// Whether the server names the pair (`local`, `remote`) the client
    /// has. IPv4 addresses seen through a dual-stack socket
    /// (`::ffff:127.0.0.1`) count as themselves, and a UDP server bound to
    /// every address (`0.0.0.0:500`) names no single address of its own.
    pub fn is_pair(&self, local: SocketAddr, remote: SocketAddr) -> bool {
        let client = unmapped(self.client);
        let server = unmapped(self.server);
        let remote = unmapped(remote);
        client == unmapped(local)
            && server.port() == remote.port()
            && (server.ip() == remote.ip() || server.ip().is_unspecified())
    }
}

/// `tcp A <- B, token N` (`, worker W` after it with several reactors) or
/// `udp A <- B, N bytes`, and nothing else.
pub fn parse_view(text: &str) -> Option<ServerView> {
    let (proto, rest) = text.split_once(' ')?;
    let proto = match proto {
        "tcp" => "tcp",
        "udp" => "udp",
        _ => return None,
    };
    let (server, rest) = rest.split_once(" <- ")?;
    let (client, detail) = rest.split_once(", ")?;
    let number = |n: &str| {
        n.parse::<usize>()
            .ok()
            .filter(|_| n.bytes().all(|b| b.is_ascii_digit()))
    };
    let (token, worker, bytes) = match proto {
        "tcp" => {
            let detail = detail.strip_prefix("token ")?;
            let (token, worker) = match detail.split_once(", worker ") {
                Some((token, worker)) => (token, Some(number(worker)?)),
                None => (detail, None),
            };
            (Some(number(token)?), worker, None)
        }
        _ => (
            None,
            None,
            Some(number(
                detail
                    .strip_suffix(" bytes")
                    .or_else(|| detail.strip_suffix(" byte"))?,
            )?),
        ),
    };
    Some(ServerView {
        proto,
        server: server.parse().ok()?,
        client: client.parse().ok()?,
        token,
        worker,
        bytes,
    })
}

/// An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) as the IPv4 address it is.
fn unmapped(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(v4.into(), v6.port()),
            None => addr,
        },
        SocketAddr::V4(_) => addr,
    }
}

/// The first line of a reply, readable.
pub fn first_line(bytes: &[u8]) -> String {
    let line = bytes.split(|&b| b == b'\n').next().unwrap_or_default();
    readable(line.strip_suffix(b"\r").unwrap_or(line))
}

/// At most 60 characters of `bytes`, readable, with `…` where cut.
pub(super) fn shortened(bytes: &[u8]) -> String {
    let shown = readable(bytes);
    let mut start: String = shown.chars().take(60).collect();
    if shown.chars().count() > 60 {
        start.push('…');
    }
    start
}

/// Text as it is, quotes and all; only what a terminal would act on
/// (control characters: escape sequences, a bell, a carriage return that
/// overwrites the line) and bytes that are not UTF-8 are written as `\xNN`
/// (`\u{NN}` for the control characters above ASCII). A tab stays a tab.
pub fn readable(bytes: &[u8]) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

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
        // With several reactors, the answer names the one holding the connection.
        let worker = whoami_reply(
            "200 OK",
            "tcp 127.0.0.1:500 <- 127.0.0.1:1, token 3, worker 1\n",
        );
        assert!(matches!(judge_whoami(&worker, false), Verdict::Whoami(_)));
        let bad_worker = whoami_reply(
            "200 OK",
            "tcp 127.0.0.1:500 <- 127.0.0.1:1, token 3, worker x",
        );
        assert!(matches!(
            judge_whoami(&bad_worker, false),
            Verdict::NotWhoami(_)
        ));
        // A UDP answer is not a whoami answer.
        let udp = whoami_reply("200 OK", "udp 127.0.0.1:500 <- 127.0.0.1:1, 3 bytes");
        assert!(matches!(judge_whoami(&udp, false), Verdict::NotWhoami(_)));
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
    fn udp_answers_are_exactly_one_line() {
        assert_eq!(
            judge_datagram(b"udp 127.0.0.1:500 <- 127.0.0.1:54321, 14 bytes\n"),
            Ok("udp 127.0.0.1:500 <- 127.0.0.1:54321, 14 bytes".into())
        );
        assert_eq!(
            judge_datagram(b"udp [::1]:500 <- [::1]:54321, 0 bytes\n").map(|_| ()),
            Ok(())
        );
        for wrong in [
            &b"udp 127.0.0.1:500 <- 127.0.0.1:54321, 14 bytes"[..], // no newline
            b"udp 127.0.0.1:500 <- 127.0.0.1:54321, 14 bytes\nmore\n",
            b"udp 127.0.0.1:500 <- 127.0.0.1:54321, +14 bytes\n",
            b"tcp 127.0.0.1:500 <- 127.0.0.1:54321, token 1\n",
            b"Test payload.",
            b"\xff\x1b[2J",
        ] {
            assert!(judge_datagram(wrong).is_err(), "{wrong:?}");
        }
        assert_eq!(
            judge_datagram(b"Test payload."),
            Err("\"Test payload.\"".into())
        );
        assert_eq!(judge_datagram(b""), Err("an empty datagram".into()));
    }

    #[test]
    fn pairs_compare_across_mapping_and_wildcards() {
        let view =
            parse_view("tcp [::ffff:127.0.0.1]:500 <- [::ffff:127.0.0.1]:40000, token 1").unwrap();
        let local = "127.0.0.1:40000".parse().unwrap();
        let remote = "127.0.0.1:500".parse().unwrap();
        assert!(view.is_pair(local, remote));
        assert!(!view.is_pair("127.0.0.1:40001".parse().unwrap(), remote));
        let wildcard = parse_view("udp 0.0.0.0:500 <- 127.0.0.1:40000, 3 bytes").unwrap();
        assert!(wildcard.is_pair(local, remote));
        assert!(!wildcard.is_pair(local, "127.0.0.1:501".parse().unwrap()));
        assert_eq!(wildcard.bytes, Some(3));
    }

    #[test]
    fn replies_are_shown_readably_quotes_and_all() {
        let page = "<a href=\"/x\">caf\u{e9}</a>\t\\n";
        assert_eq!(readable(page.as_bytes()), page);
        assert_eq!(readable(b"\xff\x07ok\r"), "\\xff\\x07ok\\x0d");
        assert_eq!(readable("\u{9b}31m".as_bytes()), "\\u{9b}31m");
    }
}
