//! Soak: thousands of connect/request/close cycles mixed with resets, slow
//! clients, half-closes and garbage, from several threads at once. Afterwards
//! the server must hold no connection, no extra descriptor, and not much
//! more memory than before.
//!
//! `make test` runs it for a few seconds; `make soak` for minutes
//! (FIVETUPLE_SOAK_SECS sets the length).
//!
//! A test binary of its own, not a module of tests/suite, because it must
//! run alone. Its threads keep both cores of a small machine busy for the
//! whole run: beside it, the suite's tests that bound how long something
//! takes (an answer within 250 ms while others flood the server) would
//! measure the soak rather than the server; and `make soak` runs it by
//! name for minutes (`cargo test --test soak`). Cargo runs test binaries
//! one after another, so this one never overlaps the suite.

mod common;

use std::io::Write;
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{
    describe_fds, fd_count, poll_until, read_response, read_to_close, rss_kib, wait_until, Server,
};

const HELLO: &[u8] = b"GET /_/hello HTTP/1.1\r\nHost: t\r\n\r\n";

/// Memory the server may keep after the soak beyond its warmed-up size.
const RSS_GROWTH_BOUND_KIB: u64 = 8 * 1024;

/// A tiny deterministic random source, one per thread.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// One client life of a randomly chosen kind.
fn one_cycle(server: &Server, rng: &mut XorShift) {
    let mut s = server.connect();
    match rng.next() % 6 {
        0 | 1 => {
            for _ in 0..1 + rng.next() % 5 {
                s.write_all(HELLO).unwrap();
                assert_eq!(read_response(&mut s).expect("answer").status, 200);
            }
        }
        2 => {
            // Resets while the server still has answers to write.
            let _ = s.write_all(&HELLO.repeat(50));
            socket2::SockRef::from(&s)
                .set_linger(Some(Duration::ZERO))
                .unwrap();
        }
        3 => {
            // A slow client: the request in three pieces.
            for piece in HELLO.chunks(HELLO.len() / 3 + 1) {
                s.write_all(piece).unwrap();
            }
            assert_eq!(read_response(&mut s).expect("answer").status, 200);
        }
        4 => {
            s.write_all(&HELLO.repeat(3)).unwrap();
            s.shutdown(Shutdown::Write).unwrap();
            let all = read_to_close(&mut s);
            assert_eq!(
                String::from_utf8_lossy(&all)
                    .matches("Hello, World!")
                    .count(),
                3
            );
        }
        _ => {
            s.write_all(b"Test payload.\r\n\r\n").unwrap();
            assert_eq!(read_response(&mut s).expect("answer").status, 400);
        }
    }
}

/// One kept-alive connection that asks the server how many connections it
/// holds. The descriptor counts are compared while it is the only one, so
/// both are taken in the same state: the server's base descriptors and
/// this connection's socket. An asker that said `Connection: close` would
/// not do: the server lingers on such a socket until the client's FIN has
/// arrived, so a count taken right after the answer may or may not still
/// include it, depending on how soon the server runs (on a busy machine,
/// often not soon enough).
struct Observer<'a> {
    server: &'a Server,
    conn: Option<TcpStream>,
}

impl Observer<'_> {
    /// The `open` count of the server's table, asked on this connection
    /// (opened again if the server closed it: an idle timeout in a long soak).
    fn open_connections(&mut self) -> u64 {
        for _ in 0..2 {
            let conn = self.conn.get_or_insert_with(|| self.server.connect());
            let asked = conn.write_all(b"GET /_/conns.json HTTP/1.1\r\nHost: t\r\n\r\n");
            match asked.ok().and_then(|()| read_response(conn)) {
                Some(r) => {
                    let table: serde_json::Value =
                        serde_json::from_slice(&r.body).expect("JSON table");
                    return table["open"].as_u64().expect("an open count");
                }
                None => self.conn = None,
            }
        }
        panic!("the server closed two connections in a row before answering")
    }
}

#[test]
fn soak_leaves_nothing_behind() {
    let secs: u64 = std::env::var("FIVETUPLE_SOAK_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let server = Arc::new(Server::start(&["--quiet"]));
    // Warm up so buffers and the slab reach their working size.
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    for _ in 0..500 {
        one_cycle(&server, &mut rng);
    }
    let mut observer = Observer {
        server: &server,
        conn: None,
    };
    // The server holds only the observer's connection: its descriptors now
    // are the ones it must be back to at the end.
    wait_until(Duration::from_secs(20), || observer.open_connections() == 1);
    let fds = fd_count(server.pid());
    let before = describe_fds(server.pid());
    let rss = rss_kib(server.pid());

    let cycles = Arc::new(AtomicU64::new(0));
    let until = Instant::now() + Duration::from_secs(secs);
    let workers: Vec<_> = (0..4)
        .map(|i| {
            let server = server.clone();
            let cycles = cycles.clone();
            std::thread::spawn(move || {
                let mut rng = XorShift(0x2545_f491_4f6c_dd1d ^ (i + 1));
                while Instant::now() < until {
                    one_cycle(&server, &mut rng);
                    cycles.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for w in workers {
        w.join().expect("a client thread failed");
    }
    let cycles = cycles.load(Ordering::Relaxed);
    assert!(cycles > 100, "only {cycles} cycles ran");

    let (mut open, mut now) = (0, 0);
    let settled = poll_until(Duration::from_secs(30), || {
        open = observer.open_connections();
        now = fd_count(server.pid());
        open == 1 && now == fds
    });
    assert!(
        settled,
        "30 s after the soak the server holds {open} connections (the observer's \
         alone expected) and {now} descriptors ({fds} before)\nbefore: {before:?}\nnow: {:?}",
        describe_fds(server.pid())
    );
    let grown = rss_kib(server.pid()).saturating_sub(rss);
    eprintln!("soak: {cycles} cycles in {secs}s; RSS grew {grown} KiB");
    assert!(
        grown < RSS_GROWTH_BOUND_KIB,
        "RSS grew by {grown} KiB over {cycles} cycles"
    );
}
