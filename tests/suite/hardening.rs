//! Hostile and broken clients, one rule at a time: the exact bytes on the
//! wire and the exact answer expected.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common;
use crate::common::{
    cpu_ticks, fd_count, read_response, read_response_to, read_to_close, rss_kib, wait_until,
    Server, TempDir,
};

const HELLO: &[u8] = b"GET /_/hello HTTP/1.1\r\nHost: t\r\n\r\n";

/// Sends `bytes`, expects one response with `status` and `Connection: close`,
/// then the connection closing.
fn rejects(server: &Server, bytes: &[u8], status: u16) {
    let mut s = server.connect();
    s.write_all(bytes).unwrap();
    let what = String::from_utf8_lossy(bytes);
    let r = read_response(&mut s).unwrap_or_else(|| panic!("no response to {what:?}"));
    assert_eq!(r.status, status, "{what:?}");
    assert_eq!(r.header("Connection"), Some("close"), "{what:?}");
    assert!(
        read_to_close(&mut s).is_empty(),
        "nothing follows the rejection of {what:?}"
    );
}

#[test]
fn framing_and_smuggling_attempts_are_rejected_and_closed() {
    let server = Server::start(&[]);
    let cases: &[(&[u8], u16)] = &[
        (b"GET / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!", 400),
        (b"GET / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello", 400),
        (b"GET / HTTP/1.1\r\nHost: t\r\nContent-Length: +1\r\n\r\nx", 400),
        (b"GET / HTTP/1.1\r\nHost: t\r\nContent-Length: -1\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: t\r\nContent-Length: 0x10\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: t\r\nContent-Length: 1_0\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: t\r\nContent-Length: \r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n-1\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffff\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\n0\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nhello\r\n0\r\n\r\n", 400),
        (b"GET / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost : t\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: t\r\nX-A: a\r\n b\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: t\rX-A: b\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: t\0\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\n: empty\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
        (b"GET / HTTP/2.0\r\n\r\n", 505),
        (b"GET / HTTP/1.1 junk\r\n\r\n", 400),
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: t\r\nContent-Length: 2000000\r\n\r\n", 413),
        (b"GET / HTTP/1.1\r\nHost: t\r\nExpect: something\r\n\r\n", 417),
    ];
    for (bytes, status) in cases {
        rejects(&server, bytes, *status);
    }
    // The server is still fine afterwards.
    assert_eq!(server.get("/_/hello").status, 200);
}

#[test]
fn oversized_heads_get_414_and_431() {
    let server = Server::start(&[]);
    let long_target = format!("GET /{} HTTP/1.1\r\nHost: t\r\n\r\n", "a".repeat(9000));
    rejects(&server, long_target.as_bytes(), 414);
    let big_header = format!(
        "GET / HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\n\r\n",
        "b".repeat(20_000)
    );
    rejects(&server, big_header.as_bytes(), 431);
    let many = format!(
        "GET / HTTP/1.1\r\nHost: t\r\n{}\r\n",
        "X-H: v\r\n".repeat(80)
    );
    rejects(&server, many.as_bytes(), 431);
    // A head that never ends is cut off at the limit, not buffered forever.
    let mut s = server.connect();
    let endless = format!("GET / HTTP/1.1\r\nHost: t\r\n{}", "X-H: v\r\n".repeat(5000));
    let _ = s.write_all(endless.as_bytes());
    assert_eq!(read_response(&mut s).unwrap().status, 431);
}

#[test]
fn a_slowloris_gets_408_after_the_header_timeout() {
    let server = Server::start(&["--header-timeout", "0.3"]);
    let mut s = server.connect();
    s.write_all(b"GET /_/hello HTTP/1.1\r\nHost: t\r\n")
        .unwrap();
    let started = Instant::now();
    let r = read_response(&mut s).unwrap();
    assert_eq!(r.status, 408);
    assert_eq!(r.header("Connection"), Some("close"));
    assert!(started.elapsed() < Duration::from_secs(15));
    assert!(read_to_close(&mut s).is_empty());
}

#[test]
fn a_slow_but_steady_client_is_not_cut_off_between_requests() {
    // The header clock starts at each request's first byte, not at accept.
    let server = Server::start(&["--header-timeout", "0.5"]);
    let mut s = server.connect();
    for _ in 0..3 {
        s.write_all(HELLO).unwrap();
        assert_eq!(read_response(&mut s).unwrap().status, 200);
        // Idle (not mid-request) longer than the header timeout.
        let t = Instant::now();
        wait_until(Duration::from_secs(5), || {
            t.elapsed() > Duration::from_millis(700)
        });
    }
}

#[test]
fn idle_keep_alive_connections_are_closed() {
    let server = Server::start(&["--idle-timeout", "0.3"]);
    let mut s = server.connect();
    s.write_all(HELLO).unwrap();
    assert_eq!(read_response(&mut s).unwrap().status, 200);
    assert!(
        read_to_close(&mut s).is_empty(),
        "closed by the idle timeout"
    );
}

#[test]
fn a_client_that_never_reads_is_dropped_after_the_send_timeout() {
    let server = Server::start(&["--send-timeout", "0.5", "--quiet"]);
    let s = server.connect();
    socket2::SockRef::from(&s)
        .set_recv_buffer_size(4096)
        .unwrap();
    let mut w = s.try_clone().unwrap();
    w.set_write_timeout(Some(Duration::from_secs(1))).unwrap();
    // Far more answers than the kernel's buffers hold (about 12 MB).
    let _ = w.write_all(&b"GET /_/conns HTTP/1.1\r\nHost: t\r\n\r\n".repeat(20_000));
    wait_until(Duration::from_secs(15), || {
        !server
            .get("/_/conns")
            .text()
            .contains(&s.local_addr().unwrap().to_string())
    });
}

#[test]
fn a_client_that_does_not_read_stops_being_read() {
    // Backpressure: once answers pile up unread, the server stops reading
    // requests, so the client's writes block and the server's memory is bounded.
    let server = Server::start(&["--quiet"]);
    let base = rss_kib(server.pid());
    let mut s = server.connect();
    s.set_write_timeout(Some(Duration::from_millis(1500)))
        .unwrap();
    let batch = HELLO.repeat(10_000); // 340 KB of requests, 1.4 MB of answers
    let mut sent = 0usize;
    let blocked = loop {
        // Continue from where a short write stopped, so the stream stays a
        // sequence of whole requests.
        match s.write(&batch[sent % batch.len()..]) {
            Ok(n) => sent += n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                break true
            }
            Err(e) => panic!("write: {e}"),
        }
        if sent > 200 * 1024 * 1024 {
            break false;
        }
    };
    assert!(
        blocked,
        "the server kept reading {sent} bytes of requests nobody reads answers to"
    );
    let grown = rss_kib(server.pid()).saturating_sub(base);
    assert!(
        grown < 16 * 1024,
        "server grew by {grown} KiB holding a stalled client"
    );
    // And everything it accepted is still answered once the client reads.
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let complete = sent / HELLO.len();
    let mut answers = std::io::BufReader::with_capacity(1 << 16, &s);
    for i in 0..complete {
        assert!(
            read_response(&mut answers).is_some(),
            "answer {i} of {complete}"
        );
    }
}

#[test]
fn half_close_after_a_full_request_still_gets_the_answer() {
    let server = Server::start(&[]);
    let mut s = server.connect();
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

#[test]
fn at_max_conns_an_idle_keep_alive_connection_makes_room() {
    let server = Server::start(&["--max-conns", "3", "--quiet"]);
    let mut idle: Vec<TcpStream> = (0..3).map(|_| server.connect()).collect();
    for s in &mut idle {
        s.write_all(HELLO).unwrap();
        read_response(s).unwrap();
    }
    // A fourth connection: the idlest keep-alive one is closed to let it in.
    let r = server.get("/_/hello");
    assert_eq!(r.status, 200);
    assert!(
        read_to_close(&mut idle[0]).is_empty(),
        "the idlest one was reclaimed"
    );
}

#[test]
fn at_max_conns_busy_connections_are_never_reclaimed() {
    let server = Server::start(&["--max-conns", "2", "--quiet"]);
    let mut busy: Vec<TcpStream> = (0..2).map(|_| server.connect()).collect();
    for s in &mut busy {
        s.write_all(b"GET /_/hello HTTP/1.1\r\n").unwrap(); // mid-request
    }
    let mut extra = None;
    wait_until(Duration::from_secs(10), || {
        // The newcomer is told at once that the server is full, and closed.
        let mut s = server.connect();
        let _ = s.write_all(HELLO);
        let refused = read_response(&mut s).is_some_and(|r| {
            r.status == 503
                && r.header("Retry-After") == Some("1")
                && r.header("Connection") == Some("close")
        });
        let closed = refused && read_to_close(&mut s).is_empty();
        extra = Some(s);
        closed
    });
    for s in &mut busy {
        s.write_all(b"Host: t\r\n\r\n").unwrap();
        assert_eq!(read_response(s).unwrap().status, 200);
    }
}

#[test]
fn out_of_descriptors_accept_pauses_without_spinning_and_resumes() {
    let mut cmd = Command::new("prlimit");
    // --max-conns above the descriptor limit, so that accept meets EMFILE
    // rather than the connection cap. 48 descriptors: about 15 are the
    // server's own, which leaves room for the 30 clients still waiting
    // once the first 30 have gone.
    cmd.args([
        "--nofile=48:48",
        common::bin(),
        "serve",
        "--listen",
        "127.0.0.1:0",
    ]);
    cmd.args(["--quiet", "--max-conns", "1000"]);
    let server = Server::spawn(cmd, &[]);
    let mut first = server.connect();
    first.write_all(HELLO).unwrap();
    read_response(&mut first).unwrap();
    // Far more connections than descriptors: the kernel completes them into
    // the backlog, the server cannot accept them all.
    let mut extra: Vec<TcpStream> = (0..60).map(|_| server.connect()).collect();
    for s in &mut extra {
        let _ = s.write_all(HELLO);
    }
    server.wait_for_log("pausing accept", Duration::from_secs(10));
    let before = cpu_ticks(server.pid());
    let t = Instant::now();
    // Existing connections are served meanwhile.
    for _ in 0..50 {
        first.write_all(HELLO).unwrap();
        assert_eq!(read_response(&mut first).unwrap().status, 200);
    }
    wait_until(Duration::from_secs(5), || {
        t.elapsed() >= Duration::from_secs(1)
    });
    let used = cpu_ticks(server.pid()) - before;
    assert!(
        used < 50,
        "{used} ticks of CPU in a second: accept is spinning"
    );
    // Free descriptors: every waiting connection gets its answer.
    let answered_before: Vec<TcpStream> = extra.drain(..30).collect();
    drop(answered_before);
    for (i, s) in extra.iter_mut().enumerate() {
        let r = read_response(s).unwrap_or_else(|| panic!("connection {i} was never served"));
        assert_eq!(r.status, 200);
    }
}

#[test]
fn a_thousand_resets_mid_write_leave_no_descriptor_behind() {
    let server = Server::start(&["--quiet"]);
    let mut probe = server.connect();
    probe.write_all(HELLO).unwrap();
    read_response(&mut probe).unwrap();
    let baseline = fd_count(server.pid());
    let burst = HELLO.repeat(200);
    for _ in 0..1000 {
        let mut s = server.connect();
        s.write_all(&burst).unwrap();
        socket2::SockRef::from(&s)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
        drop(s);
    }
    wait_until(Duration::from_secs(20), || {
        fd_count(server.pid()) == baseline
    });
    probe.write_all(HELLO).unwrap();
    assert_eq!(read_response(&mut probe).unwrap().status, 200);
}

#[test]
fn a_pipelining_flood_does_not_starve_other_clients() {
    let server = Server::start(&["--quiet"]);
    let flood_n = 200_000;
    let mut flood = server.connect();
    let mut flood_writer = flood.try_clone().unwrap();
    let writer = std::thread::spawn(move || {
        for _ in 0..flood_n / 1000 {
            flood_writer.write_all(&HELLO.repeat(1000)).unwrap();
        }
    });
    let reader = std::thread::spawn(move || {
        let mut buf = vec![0u8; 1 << 16];
        let mut seen = 0usize;
        let mut total = 0usize;
        let needle = b"World!";
        let mut carry = Vec::new();
        while seen < flood_n {
            let n = flood.read(&mut buf).unwrap();
            assert!(n > 0);
            total += n;
            carry.extend_from_slice(&buf[..n]);
            seen += carry.windows(needle.len()).filter(|w| w == needle).count();
            let keep = carry.len().min(needle.len() - 1);
            carry.drain(..carry.len() - keep);
        }
        (Instant::now(), total)
    });
    // Another client, meanwhile, gets each of its answers.
    let mut other = server.connect();
    for _ in 0..100 {
        other.write_all(HELLO).unwrap();
        assert_eq!(read_response(&mut other).unwrap().status, 200);
    }
    let other_done = Instant::now();
    writer.join().unwrap();
    let (flood_done, _) = reader.join().unwrap();
    assert!(
        other_done < flood_done,
        "the other client waited for the whole flood"
    );
}

#[test]
fn size_limits_are_configurable() {
    let server = Server::start(&[
        "--max-body",
        "10",
        "--max-headers",
        "3",
        "--max-request-line",
        "64",
    ]);
    rejects(
        &server,
        b"POST /_/hello HTTP/1.1\r\nHost: t\r\nContent-Length: 11\r\n\r\n",
        413,
    );
    rejects(
        &server,
        b"GET / HTTP/1.1\r\nHost: t\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n",
        431,
    );
    let long = format!("GET /{} HTTP/1.1\r\nHost: t\r\n\r\n", "x".repeat(80));
    rejects(&server, long.as_bytes(), 414);
    let mut s = server.connect();
    s.write_all(b"POST /_/hello HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\n0123456789")
        .unwrap();
    assert_eq!(
        read_response(&mut s).unwrap().status,
        405,
        "a body at the limit is read"
    );
}

#[test]
fn refused_head_requests_get_no_body() {
    let server = Server::start(&[]);
    let big_line = format!("HEAD /{} HTTP/1.1\r\nHost: t\r\n\r\n", "a".repeat(9000));
    let big_head = format!(
        "HEAD / HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\n\r\n",
        "b".repeat(20_000)
    );
    let cases: &[(&[u8], u16)] = &[
        (
            b"HEAD /_/hello HTTP/1.1\r\nHost: t\r\nExpect: teapot\r\n\r\n",
            417,
        ),
        (b"HEAD / HTTP/1.1\r\n\r\n", 400),
        (
            b"HEAD / HTTP/1.1\r\nHost: t\r\nContent-Length: 2000000\r\n\r\n",
            413,
        ),
        (big_line.as_bytes(), 414),
        (big_head.as_bytes(), 431),
        (b"HEAD / HTTP/2.0\r\n\r\n", 505),
    ];
    for (bytes, status) in cases {
        let what = String::from_utf8_lossy(&bytes[..bytes.len().min(60)]).into_owned();
        let mut s = server.connect();
        s.write_all(bytes).unwrap();
        let r = read_response_to(&mut s, true).unwrap_or_else(|| panic!("no answer to {what:?}"));
        assert_eq!(r.status, *status, "{what:?}");
        assert_eq!(r.header("Connection"), Some("close"), "{what:?}");
        // The next bytes on the connection would be the error page, if any.
        let after = read_to_close(&mut s);
        assert!(
            after.is_empty(),
            "{what:?}: a body follows: {:?}",
            String::from_utf8_lossy(&after)
        );
    }
    // The header timeout's 408 to a HEAD has no body either.
    let server = Server::start(&["--header-timeout", "0.3"]);
    let mut s = server.connect();
    s.write_all(b"HEAD /_/hello HTTP/1.1\r\nHost: t\r\n")
        .unwrap();
    assert_eq!(read_response_to(&mut s, true).unwrap().status, 408);
    assert!(read_to_close(&mut s).is_empty());
}

#[test]
fn a_head_answered_with_an_error_keeps_the_connection_in_step() {
    // 404 to a HEAD on a keep-alive connection: the next answer starts
    // right after the head, as a client that sent HEAD expects.
    let server = Server::start(&[]);
    let mut s = server.connect();
    s.write_all(b"HEAD /nope HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let r = read_response_to(&mut s, true).unwrap();
    assert_eq!(r.status, 404);
    assert_ne!(
        r.header("Content-Length"),
        Some("0"),
        "the length a GET gets"
    );
    s.write_all(HELLO).unwrap();
    let r = read_response(&mut s).unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"Hello, World!");
}

#[test]
fn invalid_host_values_and_userinfo_targets_get_400() {
    let server = Server::start(&[]);
    for host in ["a b", "a/b", "a\tb", "u@h", "h:8o", "[::1", "a\\b"] {
        let req = format!("GET /_/hello HTTP/1.1\r\nHost: {host}\r\n\r\n");
        rejects(&server, req.as_bytes(), 400);
    }
    rejects(
        &server,
        b"GET http://u:p@t/ HTTP/1.1\r\nHost: t\r\n\r\n",
        400,
    );
    rejects(
        &server,
        b"GET http://u@t/_/hello HTTP/1.1\r\nHost: t\r\n\r\n",
        400,
    );
    // Valid forms still work: a port, an IP literal, an empty Host.
    let mut s = server.connect();
    for host in [
        "t:8080",
        "127.0.0.1:8080",
        "[::1]:8080",
        "xn--bcher-kva.example",
        "",
    ] {
        write!(s, "GET /_/hello HTTP/1.1\r\nHost: {host}\r\n\r\n").unwrap();
        assert_eq!(read_response(&mut s).unwrap().status, 200, "Host: {host}");
    }
    s.write_all(b"GET http://t:80/_/hello HTTP/1.1\r\nHost: t:80\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut s).unwrap().status, 200);
}

#[test]
fn connect_and_a_star_target_are_answered_then_closed() {
    let server = Server::start(&[]);
    rejects(
        &server,
        b"CONNECT t:443 HTTP/1.1\r\nHost: t:443\r\n\r\n",
        405,
    );
    rejects(&server, b"GET * HTTP/1.1\r\nHost: t\r\n\r\n", 400);
    // OPTIONS * is the one request where `*` belongs: it keeps the connection.
    let mut s = server.connect();
    s.write_all(b"OPTIONS * HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut s).unwrap().status, 204);
    s.write_all(HELLO).unwrap();
    assert_eq!(read_response(&mut s).unwrap().status, 200);
}

/// How long a flood of empty lines may last before the head limit ends it
/// (16 KiB at loopback speed takes microseconds; this is for a busy machine).
const FLOOD_CUT_OFF: Duration = Duration::from_secs(3);

/// Sends empty lines without end on one connection until the server
/// answers or drops it. Returns how long that took and the answer's status.
fn flood_empty_lines(addr: std::net::SocketAddr) -> (Duration, Option<u16>) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(FLOOD_CUT_OFF * 2)).unwrap();
    s.set_write_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut writer = s.try_clone().unwrap();
    let started = Instant::now();
    let flood = std::thread::spawn(move || {
        let chunk = b"\r\n".repeat(1024);
        let mut sent = 0usize;
        // Bounded in bytes and time, whatever the server does.
        while sent < 64 << 20 && started.elapsed() < FLOOD_CUT_OFF * 2 {
            match writer.write(&chunk) {
                Ok(n) => sent += n,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(_) => break, // reset: the server has closed
            }
        }
    });
    let answer = read_response(&mut s).map(|r| {
        assert_eq!(r.header("Connection"), Some("close"));
        r.status
    });
    let took = started.elapsed();
    let _ = s.shutdown(Shutdown::Both); // stops the writer
    flood.join().unwrap();
    (took, answer)
}

#[test]
fn empty_line_floods_are_cut_off_by_the_head_limit() {
    let server = Server::start(&["--quiet"]);
    let mut other = server.connect();
    other.write_all(HELLO).unwrap();
    read_response(&mut other).unwrap();
    let base = rss_kib(server.pid());
    let addr = server.addr;
    let flooders: Vec<_> = (0..4)
        .map(|_| std::thread::spawn(move || flood_empty_lines(addr)))
        .collect();
    // Meanwhile another client's requests are answered promptly, and the
    // server does not grow.
    let mut slowest = Duration::ZERO;
    let mut largest = base;
    let deadline = Instant::now() + FLOOD_CUT_OFF * 3;
    while !flooders.iter().all(|f| f.is_finished()) && Instant::now() < deadline {
        let t = Instant::now();
        other.write_all(HELLO).unwrap();
        assert_eq!(read_response(&mut other).unwrap().status, 200);
        slowest = slowest.max(t.elapsed());
        largest = largest.max(rss_kib(server.pid()));
    }
    for f in flooders {
        let (took, answer) = f.join().unwrap();
        assert!(took < FLOOD_CUT_OFF, "a flooder was cut off after {took:?}");
        // The 400 may be lost to the reset that the flood itself provokes.
        assert!(matches!(answer, None | Some(400)), "{answer:?}");
    }
    largest = largest.max(rss_kib(server.pid()));
    let grown = largest.saturating_sub(base);
    assert!(grown < 8 * 1024, "the server grew by {grown} KiB");
    assert!(
        slowest < Duration::from_millis(250),
        "another client waited {slowest:?}"
    );
}

#[test]
fn the_intro_page_is_at_slash_underscore_with_or_without_a_directory() {
    let dir = TempDir::new("intro");
    dir.write("index.html", "<p>the site</p>\n");
    let with_dir = Server::start(&["--dir", dir.arg(), "--quiet"]);
    let intro = with_dir.get("/_/");
    assert_eq!(intro.status, 200);
    assert!(
        intro.text().contains("href=\"/_/conns\""),
        "{}",
        intro.text()
    );
    assert_eq!(with_dir.get("/").text(), "<p>the site</p>\n");
    let without = Server::start(&["--quiet"]);
    for path in ["/_/", "/"] {
        let r = without.get(path);
        assert_eq!(r.status, 200, "{path}");
        assert!(r.text().contains("href=\"/_/conns\""), "{path}");
    }
}

/// The checker every test reads answers through (`common::read_response_to`)
/// refuses what a strict client refuses.
#[test]
fn the_response_checker_refuses_what_a_strict_client_refuses() {
    let date = "Date: Tue, 24 Nov 2026 00:00:00 GMT\r\n";
    let read = |bytes: String, head: bool| {
        let mut input = std::io::Cursor::new(bytes.into_bytes());
        let result = std::panic::catch_unwind(move || {
            let r = read_response_to(&mut input, head);
            (r.map(|r| r.body), input.position() as usize)
        });
        result.ok()
    };
    let ok = |bytes: String, head: bool| {
        read(bytes.clone(), head).unwrap_or_else(|| panic!("refused: {bytes:?}"))
    };
    // Accepted: each framing, and no body read after a HEAD or a 304.
    let body = |r: (Option<Vec<u8>>, usize)| r.0.expect("a response");
    let good = format!("HTTP/1.1 200 OK\r\n{date}Content-Length: 2\r\n\r\nhi");
    assert_eq!(body(ok(good.clone(), false)), b"hi");
    let (r, used) = ok(good.clone(), true);
    assert_eq!((r.unwrap(), used), (Vec::new(), good.len() - 2));
    let chunked = format!(
        "HTTP/1.1 200 OK\r\n{date}Transfer-Encoding: chunked\r\n\r\n2;x\r\nhi\r\n0\r\n\r\n"
    );
    assert_eq!(body(ok(chunked, false)), b"hi");
    let to_close = format!("HTTP/1.1 200 OK\r\n{date}Connection: close\r\n\r\nall of it");
    assert_eq!(body(ok(to_close, false)), b"all of it");
    let not_modified = format!("HTTP/1.1 304 Not Modified\r\n{date}Content-Length: 9\r\n\r\n");
    assert_eq!(body(ok(not_modified, false)), b"");
    assert_eq!(body(ok("HTTP/1.1 100 Continue\r\n\r\n".into(), false)), b"");
    let python = format!("HTTP/1.0 200 OK\r\nServer: SimpleHTTP/0.6\r\n{date}\r\nold");
    assert_eq!(body(ok(python, false)), b"old");
    // Refused.
    let bad = [
        format!("HTTP/1.0 200 OK\r\n{date}Content-Length: 0\r\n\r\n"),
        format!("HTTP/1.0 200 OK\r\nServer: fivetuple/1\r\n{date}Content-Length: 0\r\n\r\n"),
        format!("HTTP/1.1 200\r\n{date}Content-Length: 0\r\n\r\n"),
        format!("HTTP/1.1 20 OK\r\n{date}Content-Length: 0\r\n\r\n"),
        format!("HTTP/1.1 200 OK\n{date}Content-Length: 0\r\n\r\n"),
        format!("HTTP/1.1 200 OK\r\n{date}Content-Length: 0\r\n\n\r\n"),
        format!("HTTP/1.1 200 OK\r\n{date}X: a\rb\r\nContent-Length: 0\r\n\r\n"),
        format!("HTTP/1.1 200 OK\r\n{date}X-A : b\r\nContent-Length: 0\r\n\r\n"),
        format!("HTTP/1.1 200 OK\r\n{date}X(A): b\r\nContent-Length: 0\r\n\r\n"),
        format!("HTTP/1.1 200 OK\r\n{date}X: \x01\r\nContent-Length: 0\r\n\r\n"),
        format!("HTTP/1.1 200 OK\r\n{date}Content-Length: 2\r\nContent-Length: 2\r\n\r\nhi"),
        format!("HTTP/1.1 200 OK\r\n{date}Content-Length: +2\r\n\r\nhi"),
        format!(
            "HTTP/1.1 200 OK\r\n{date}Content-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\nhi"
        ),
        format!("HTTP/1.1 200 OK\r\n{date}Transfer-Encoding: gzip\r\n\r\nhi"),
        format!("HTTP/1.1 200 OK\r\n{date}\r\nunframed"),
        format!("HTTP/1.1 204 No Content\r\n{date}Content-Length: 0\r\n\r\n"),
        "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n".to_string(),
        "HTTP/1.1 200 OK\r\nDate: yesterday\r\nContent-Length: 0\r\n\r\n".to_string(),
        format!("HTTP/1.1 200 OK\r\n{date}{date}Content-Length: 0\r\n\r\n"),
        format!(
            "HTTP/1.1 200 OK\r\n{date}Transfer-Encoding: chunked\r\n\r\n0x2\r\nhi\r\n0\r\n\r\n"
        ),
        format!("HTTP/1.1 200 OK\r\n{date}Transfer-Encoding: chunked\r\n\r\n1\r\nhi\r\n0\r\n\r\n"),
    ];
    for bytes in bad {
        assert!(read(bytes.clone(), false).is_none(), "accepted: {bytes:?}");
    }
    // A response cut short is not a violation, just no response.
    assert_eq!(ok("HTTP/1.1 200 OK\r\nDa".into(), false).0, None);
}

#[test]
fn a_head_refused_at_max_conns_gets_a_head_alone() {
    let server = Server::start(&["--max-conns", "1", "--quiet"]);
    let mut busy = server.connect();
    busy.write_all(b"GET /_/hello HTTP/1.1\r\n").unwrap(); // mid-request
    wait_until(Duration::from_secs(10), || {
        let mut s = server.connect();
        let _ = s.write_all(b"HEAD /_/hello HTTP/1.1\r\nHost: t\r\n\r\n");
        // Read as a strict client reads the answer to a HEAD: a head, and
        // nothing after it before the close.
        let Some(r) = common::read_response_to(&mut s, true) else {
            return false;
        };
        if r.status != 503 {
            return false;
        }
        let rest = read_to_close(&mut s);
        assert!(
            rest.is_empty(),
            "a body after the head of a refused HEAD: {:?}",
            String::from_utf8_lossy(&rest)
        );
        true
    });
    busy.write_all(b"Host: t\r\n\r\n").unwrap();
    assert_eq!(read_response(&mut busy).unwrap().status, 200);
}
