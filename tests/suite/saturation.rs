//! Clients faster than the server: every connection still gets its turn.
//!
//! On two cores a load generator rarely outruns the server, so these tests
//! make the server the slow side on purpose: they stop it (SIGSTOP), pile
//! work up in front of it, and let it go (SIGCONT). Then they look at what
//! a faster client would feel: how long an old connection waits behind a
//! flood of new ones, how many descriptors the server holds while it drains
//! its backlog, what a thousand table requests cost everyone else, and what
//! happens when streamed files bring the server to its descriptor limit.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crate::common::{fd_count, read_response, read_response_to, wait_until, Server, TempDir};
use crate::privilege::this_test;
use crate::{common, privilege};

const HELLO: &[u8] = b"GET /_/hello HTTP/1.1\r\nHost: x\r\n\r\n";
const HELLO_CLOSE: &[u8] = b"GET /_/hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";

/// The reactor's accept budget per turn (`reactor::ACCEPTS_PER_TURN`).
const ACCEPTS_PER_TURN: usize = fivetuple::reactor::ACCEPTS_PER_TURN;

/// Samples a process's descriptor count in a thread until stopped, keeping the peak.
struct FdPeak {
    peak: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl FdPeak {
    fn watch(pid: u32) -> FdPeak {
        let peak = Arc::new(AtomicUsize::new(fd_count(pid)));
        let stop = Arc::new(AtomicBool::new(false));
        let (p, s) = (peak.clone(), stop.clone());
        let thread = thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                p.fetch_max(fd_count(pid), Ordering::Relaxed);
                thread::yield_now();
            }
        });
        FdPeak {
            peak,
            stop,
            thread: Some(thread),
        }
    }

    fn finish(mut self) -> usize {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.peak.load(Ordering::Relaxed)
    }
}

/// How many connections the kernel will queue for a listener here.
fn queue_room() -> usize {
    std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .ok()
        .and_then(|s| s.trim().parse::<usize>().ok())
        .unwrap_or(128)
}

#[test]
fn a_backlog_storm_neither_piles_up_descriptors_nor_starves_an_open_connection() {
    // Fewer than a few hundred queued clients drain too fast to tell the
    // old connection's wait from the drain's.
    let want = 3000.min(queue_room().saturating_sub(64));
    let Some(lent) = privilege::descriptors(this_test!(), want, want.min(500)) else {
        return;
    };
    let server = Server::start(&["--backlog", "4096", "--quiet"]);
    let mut old = server.connect();
    old.write_all(HELLO).unwrap();
    assert_eq!(read_response(&mut old).unwrap().status, 200);
    let baseline = fd_count(server.pid());

    // The server stops; 3,000 clients queue up, each with its request sent,
    // and the connection accepted long ago asks for one more answer.
    let storm = lent.count();
    server.signal(libc::SIGSTOP);
    let clients: Vec<TcpStream> = (0..storm)
        .map(|_| {
            let mut s = TcpStream::connect(server.addr).expect("queued by the kernel");
            s.write_all(HELLO_CLOSE).unwrap();
            s
        })
        .collect();
    old.write_all(HELLO).unwrap();

    let fds = FdPeak::watch(server.pid());
    let start = Instant::now();
    server.signal(libc::SIGCONT);
    let drain = thread::spawn(move || {
        // Answers come in accept order; the last one read marks the drain's end.
        for mut s in clients {
            let r = read_response(&mut s).expect("every queued client is answered");
            assert_eq!(r.status, 200);
        }
        start.elapsed()
    });
    assert_eq!(read_response(&mut old).unwrap().status, 200);
    let old_waited = start.elapsed();
    let drained = drain.join().expect("a queued client went unanswered");
    let peak = fds.finish();

    eprintln!(
        "{storm} queued: the old connection waited {old_waited:?} of a {drained:?} drain; \
         descriptors peaked {} above the {baseline} before",
        peak.saturating_sub(baseline)
    );
    assert!(
        peak <= baseline + ACCEPTS_PER_TURN + 8,
        "descriptors peaked at {peak}, {baseline} before the storm: closed connections were held"
    );
    assert!(
        old_waited < drained / 2,
        "the open connection waited {old_waited:?}, behind most of a {drained:?} drain"
    );
}

#[test]
fn a_thousand_table_requests_at_once_do_not_stall_other_clients() {
    // 3,000 connections, and one more to ask; at the least enough that the
    // table is longer than its default view of 100 rows, and a hundred ask.
    let Some(lent) = privilege::descriptors(this_test!(), 3002, 302) else {
        return;
    };
    let (idle, askers) = ((lent.count() - 2) * 2 / 3, (lent.count() - 2) / 3);
    let open = idle + askers + 1;
    let server = Server::start(&["--quiet"]);
    // 2,000 idle connections fill the table...
    let idle: Vec<TcpStream> = (0..idle).map(|_| server.connect()).collect();
    wait_until(Duration::from_secs(20), || {
        let t: serde_json::Value =
            serde_json::from_slice(&server.get("/_/conns.json").body).unwrap();
        t["open"] == idle.len() + 1
    });
    // ...and 1,000 clients, connected and waiting, ask for it all at once.
    let mut askers: Vec<TcpStream> = (0..askers).map(|_| server.connect()).collect();
    let mut probe = server.connect();
    probe.write_all(HELLO).unwrap();
    assert_eq!(read_response(&mut probe).unwrap().status, 200);
    server.signal(libc::SIGSTOP);
    for s in &mut askers {
        s.write_all(b"GET /_/conns HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
    }
    probe.write_all(HELLO).unwrap();
    let start = Instant::now();
    server.signal(libc::SIGCONT);
    assert_eq!(read_response(&mut probe).unwrap().status, 200);
    let waited = start.elapsed();
    let start = Instant::now();
    for s in &mut askers {
        let me = s.local_addr().unwrap().to_string();
        let table = read_response(s).unwrap().text();
        // The default view: the totals, the first rows, and the asker's own row.
        assert!(table.contains(&format!("{open} open")), "{}", &table[..200]);
        assert!(table.contains("more connections not shown"));
        let mine = table.lines().find(|l| l.ends_with("<- you")).unwrap();
        assert!(mine.contains(&me), "{mine} is not {me}");
    }
    eprintln!(
        "{} tables over {open} connections: /_/hello answered after {waited:?}, \
         all tables read {:?} later",
        askers.len(),
        start.elapsed()
    );
    assert!(
        waited < Duration::from_millis(250),
        "/_/hello waited {waited:?} behind {} table requests",
        askers.len()
    );
    // Every row is still there for whoever asks for all of them (a table
    // this long comes a slice of rows per turn, and its last line says so).
    let all = server.get("/_/conns?all").text();
    assert_eq!(
        all.lines().count(),
        2 + 1 + open + 1 + 1,
        "header, listener, rows, the note on slices"
    );
}

#[test]
fn streamed_downloads_at_the_descriptor_limit_are_counted_and_newcomers_told() {
    const FILE: usize = 8 << 20;
    let dir = TempDir::new("fdlimit");
    dir.write("big.bin", vec![b'x'; FILE]);
    // 64 descriptors: the default cap is 48, and every download holds two
    // (its socket, and the file for as long as its end is not in the socket).
    let mut cmd = Command::new("prlimit");
    cmd.args([
        "--nofile=64:64",
        common::bin(),
        "serve",
        "--listen",
        "127.0.0.1:0",
    ])
    .args(["--dir", dir.arg()]);
    let server = Server::spawn(cmd, &[]);
    let fds = FdPeak::watch(server.pid());

    // 30 clients start an 8 MiB download and do not read it.
    let mut downloads = Vec::new();
    let mut refused = 0;
    for _ in 0..30 {
        // A small receive buffer keeps the answer mostly on the server.
        let mut s = server.connect_with_receive_buffer(16 * 1024);
        s.write_all(b"GET /big.bin HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        // Each is answered at once: the head of the file, or a 503.
        let mut head = [0u8; 12];
        s.read_exact(&mut head).expect("an answer, not silence");
        match &head {
            b"HTTP/1.1 200" => downloads.push(s),
            b"HTTP/1.1 503" => refused += 1,
            other => panic!("{}", String::from_utf8_lossy(other)),
        }
    }
    eprintln!("{} downloads held, {refused} refused", downloads.len());
    assert!(refused > 0, "64 descriptors cannot hold 30 downloads");
    assert!(downloads.len() >= 15, "only {} downloads", downloads.len());
    // Every download finishes, and the server never ran out of descriptors.
    for mut s in downloads {
        let mut rest = Vec::new();
        s.read_to_end(&mut rest)
            .expect("the download ends with a clean close");
        assert!(rest.len() > FILE, "a download was cut short");
    }
    wait_until(Duration::from_secs(10), || {
        let mut s = server.connect();
        s.write_all(HELLO).unwrap();
        read_response_to(&mut s, false).is_some_and(|r| r.status == 200)
    });
    let peak = fds.finish();
    assert!(
        peak < 64,
        "the server reached its descriptor limit ({peak} open)"
    );
    let log = server.stderr().join("\n");
    assert!(!log.contains("Too many open files"), "{log}");
}
