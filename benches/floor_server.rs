//! The floor: the least a mio server can do and still answer `/_/hello`.
//!
//! `fivetuple serve` does more per request than reading, parsing and
//! writing: it routes, keeps counters and deadlines, watches its limits,
//! and can show every connection in `/_/conns`. This server does none of
//! that. It answers every request with the same bytes `fivetuple serve`
//! sends for `/_/hello` (the same headers, the same 13-byte body), so that
//! the benchmark can show how far the real server is from what the kernel
//! and the parsing alone cost:
//!
//! - one epoll instance, edge-triggered (mio), one thread;
//! - one read buffer shared by every connection, as in the reactor;
//! - httparse for each request head, nothing else looked at but
//!   `Connection: close` (the churn scenario needs it honoured);
//! - the answers to one read sent with one `write`;
//! - the `Date` header formatted once a second.
//!
//! It is not a server to use: no limits, no timeouts, no bodies (a request
//! with a body is taken for a broken one and the connection closed).
//!
//! ```text
//! floor_server [--listen ADDR]
//! ```
//! It prints `listening on ADDR` once bound, like `fivetuple serve`.

use std::io::{self, Read, Write};
use std::mem::MaybeUninit;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use slab::Slab;

/// The listener's token, out of the slab keys' way.
const LISTENER: Token = Token(usize::MAX - 1);

/// The shared read buffer, the size of the reactor's.
const READ_BUFFER: usize = 64 * 1024;

/// Header slots for httparse: wrk sends two or three headers.
const HEADER_SLOTS: usize = 16;

/// What `fivetuple serve` answers to `GET /_/hello`, byte for byte: this up
/// to the `Date` value, the date, then one of the two tails below.
const HEAD_BEFORE_DATE: &[u8] = concat!(
    "HTTP/1.1 200 OK\r\nServer: fivetuple/",
    env!("CARGO_PKG_VERSION"),
    "\r\nDate: "
)
.as_bytes();
/// The rest of the answer on a connection that stays open.
const AFTER_DATE_KEEP: &[u8] =
    b"\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\nHello, World!";
/// The rest of the answer to a request that asked for `Connection: close`.
const AFTER_DATE_CLOSE: &[u8] =
    b"\r\nContent-Type: text/plain\r\nConnection: close\r\nContent-Length: 13\r\n\r\nHello, World!";

/// One connection: its socket, and only what a read or a write left over.
struct Conn {
    stream: TcpStream,
    /// The start of a request whose end has not arrived.
    held: Vec<u8>,
    /// Answers the kernel did not take yet.
    unsent: Vec<u8>,
    /// Close once `unsent` is written: the client asked for it.
    closing: bool,
}

/// The `Date` header value, formatted again only when the second changes.
struct Date {
    second: u64,
    text: String,
}

impl Date {
    fn refresh(&mut self) {
        let now = SystemTime::now();
        let second = now
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
            .as_secs();
        if second != self.second {
            self.second = second;
            self.text = httpdate::fmt_http_date(now);
        }
    }
}

fn main() -> io::Result<()> {
    let mut addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match (arg.as_str(), args.next()) {
            ("--listen", Some(v)) => addr = v.parse().expect("--listen ADDR:PORT"),
            (other, _) => {
                eprintln!("floor_server: unknown argument {other}");
                std::process::exit(2);
            }
        }
    }
    let mut poll = Poll::new()?;
    let mut listener = TcpListener::bind(addr)?;
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)?;
    println!("listening on {}", listener.local_addr()?);
    io::stdout().flush()?;

    let mut events = Events::with_capacity(1024);
    let mut conns: Slab<Conn> = Slab::new();
    let mut read_buf = vec![0u8; READ_BUFFER];
    let mut out = Vec::with_capacity(READ_BUFFER);
    let mut date = Date {
        second: u64::MAX,
        text: String::new(),
    };
    loop {
        match poll.poll(&mut events, None) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
        date.refresh();
        for event in events.iter() {
            let key = match event.token() {
                LISTENER => {
                    // Unbounded: wrk keeps at most its connection count
                    // waiting, so the backlog empties. (The reactor bounds
                    // this loop; a floor has no other clients to be fair to.)
                    while let Ok((mut stream, _)) = listener.accept() {
                        let _ = stream.set_nodelay(true);
                        let entry = conns.vacant_entry();
                        let key = entry.key();
                        let interest = Interest::READABLE | Interest::WRITABLE;
                        poll.registry()
                            .register(&mut stream, Token(key), interest)?;
                        entry.insert(Conn {
                            stream,
                            held: Vec::new(),
                            unsent: Vec::new(),
                            closing: false,
                        });
                        // The request is often here already: answer it now.
                        if !serve(&mut conns[key], &mut read_buf, &mut out, &date.text) {
                            conns.remove(key);
                        }
                    }
                    continue;
                }
                Token(key) => key,
            };
            let Some(conn) = conns.get_mut(key) else {
                continue;
            };
            if !serve(conn, &mut read_buf, &mut out, &date.text) {
                conns.remove(key);
            }
        }
    }
}

/// Writes what is waiting, then reads and answers until the socket is
/// empty. Returns false when the connection is finished.
fn serve(conn: &mut Conn, read_buf: &mut [u8], out: &mut Vec<u8>, date: &str) -> bool {
    if !conn.unsent.is_empty() {
        let pending = std::mem::take(&mut conn.unsent);
        match send(conn, &pending) {
            Ok(true) => {}
            Ok(false) => return true, // still full: a writable event comes
            Err(_) => return false,
        }
    }
    if conn.closing {
        return false;
    }
    loop {
        let n = match conn.stream.read(read_buf) {
            Ok(0) => return false,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return false,
        };
        let answered = if conn.held.is_empty() {
            answer(&read_buf[..n], out, date, conn)
        } else {
            let mut held = std::mem::take(&mut conn.held);
            held.extend_from_slice(&read_buf[..n]);
            answer(&held, out, date, conn)
        };
        if !answered {
            return false;
        }
        let all_sent = match send(conn, out) {
            Ok(all) => all,
            Err(_) => return false,
        };
        out.clear();
        if !all_sent {
            return true;
        }
        if conn.closing {
            return false;
        }
        // A short read emptied the socket: the next read would only say
        // WouldBlock, and new bytes bring a new edge.
        if n < read_buf.len() {
            return true;
        }
    }
}

/// Appends the answer to every whole request in `input`, keeping a
/// trailing partial one in `conn.held`. False if a request is broken.
fn answer(input: &[u8], out: &mut Vec<u8>, date: &str, conn: &mut Conn) -> bool {
    let mut pos = 0;
    while pos < input.len() && !conn.closing {
        let mut slots = [const { MaybeUninit::<httparse::Header>::uninit() }; HEADER_SLOTS];
        let mut req = httparse::Request::new(&mut []);
        match req.parse_with_uninit_headers(&input[pos..], &mut slots) {
            Ok(httparse::Status::Complete(len)) => {
                pos += len;
                conn.closing = req.headers.iter().any(|h| {
                    h.name.eq_ignore_ascii_case("connection")
                        && h.value.eq_ignore_ascii_case(b"close")
                });
                out.extend_from_slice(HEAD_BEFORE_DATE);
                out.extend_from_slice(date.as_bytes());
                out.extend_from_slice(if conn.closing {
                    AFTER_DATE_CLOSE
                } else {
                    AFTER_DATE_KEEP
                });
            }
            Ok(httparse::Status::Partial) => break,
            Err(_) => return false,
        }
    }
    if pos < input.len() && !conn.closing {
        conn.held.extend_from_slice(&input[pos..]);
    }
    true
}

/// One `write`; what the kernel did not take waits in `conn.unsent`.
/// Ok(true) when everything went.
fn send(conn: &mut Conn, bytes: &[u8]) -> io::Result<bool> {
    if bytes.is_empty() {
        return Ok(true);
    }
    let n = loop {
        match conn.stream.write(bytes) {
            Ok(n) => break n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break 0,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    };
    conn.unsent.extend_from_slice(&bytes[n..]);
    Ok(n == bytes.len())
}
