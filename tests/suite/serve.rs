//! `fivetuple serve`, black-box: the real binary on 127.0.0.1:0, raw bytes
//! on real sockets, the server's own table read back over HTTP.

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::common::{read_response, read_response_to, read_to_close, wait_until, Server};
use crate::privilege::this_test;
use crate::{common, privilege};

const HELLO: &[u8] = b"GET /_/hello HTTP/1.1\r\nHost: t\r\n\r\n";

fn table(server: &Server) -> serde_json::Value {
    let resp = server.get("/_/conns.json?all");
    assert_eq!(resp.status, 200);
    serde_json::from_slice(&resp.body).expect("JSON table")
}

/// Rows of other connections (not the one that asked, not the listener).
fn other_rows(table: &serde_json::Value) -> Vec<serde_json::Value> {
    table["rows"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| !r["token"].is_null() && r["you"] == false)
        .cloned()
        .collect()
}

#[test]
fn fifty_clients_share_one_port_with_fifty_remote_ports() {
    let server = Server::start(&[]);
    let clients: Vec<TcpStream> = (0..50).map(|_| server.connect()).collect();
    let mut rows = Vec::new();
    wait_until(Duration::from_secs(10), || {
        rows = other_rows(&table(&server));
        rows.len() == 50
    });
    let local_ports: HashSet<String> = rows
        .iter()
        .map(|r| {
            r["local"]
                .as_str()
                .unwrap()
                .rsplit(':')
                .next()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(local_ports, HashSet::from([server.port().to_string()]));
    let remotes: HashSet<String> = rows
        .iter()
        .map(|r| r["remote"].as_str().unwrap().to_string())
        .collect();
    let client_ends: HashSet<String> = clients
        .iter()
        .map(|c| c.local_addr().unwrap().to_string())
        .collect();
    assert_eq!(
        remotes, client_ends,
        "the server's remote ends are the clients' local ends"
    );
    let t = table(&server);
    assert_eq!(t["rows"][0]["state"], "LISTEN");
    let text = server.get("/_/conns").text();
    assert_eq!(
        text.lines().filter(|l| l.contains("ESTABLISHED")).count(),
        51,
        "{text}"
    );
    assert!(text.lines().any(|l| l.ends_with("<- you")));
}

#[test]
fn keep_alive_serves_a_thousand_requests_on_one_connection() {
    let server = Server::start(&["--quiet"]);
    let mut s = server.connect();
    for _ in 0..1000 {
        s.write_all(HELLO).unwrap();
        let r = read_response(&mut s).expect("response");
        assert_eq!(r.status, 200);
        assert_eq!(r.body, b"Hello, World!");
    }
    let me = server.connect();
    let port = me.local_addr().unwrap();
    drop(me);
    let rows = other_rows(&table(&server));
    let row = rows
        .iter()
        .find(|r| r["remote"] == s.local_addr().unwrap().to_string())
        .expect("our row");
    assert_eq!(row["requests"], 1000, "{port}");
}

#[test]
fn whoami_names_the_callers_own_pair() {
    let server = Server::start(&[]);
    let mut s = server.connect();
    s.write_all(b"GET /_/whoami HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let r = read_response(&mut s).unwrap();
    let want = format!(
        "tcp {} <- {}, token ",
        s.peer_addr().unwrap(),
        s.local_addr().unwrap()
    );
    assert!(r.text().starts_with(&want), "{} vs {want}", r.text());
}

#[test]
fn a_hundred_pipelined_requests_in_one_write_are_answered_in_order() {
    let server = Server::start(&["--quiet"]);
    let mut s = server.connect();
    let mut batch = Vec::new();
    for i in 0..100 {
        let path = if i % 2 == 0 {
            "/_/hello".to_string()
        } else {
            format!("/nothing/{i}")
        };
        batch.extend_from_slice(format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
    }
    s.write_all(&batch).unwrap();
    for i in 0..100 {
        let r = read_response(&mut s).expect("response");
        assert_eq!(r.status, if i % 2 == 0 { 200 } else { 404 }, "response {i}");
    }
}

/// At most this many bytes in each read of a [`SlowReader`].
const SLOW_READ_BYTES: usize = 4096;

/// A reader that takes its time, as a client on a slow link does: it
/// pauses before each read and takes at most [`SLOW_READ_BYTES`] at once.
/// (The pause is what is being tested, not a wait for something to
/// happen.) It is slow for `slow_for`, then reads at full speed, so that a
/// test reading megabytes through it ends in bounded time whatever the
/// machine's socket buffers hold.
struct SlowReader {
    socket: TcpStream,
    pause: Duration,
    slow_until: Instant,
    /// How many reads it has made with a pause before them.
    slow_reads: usize,
}

impl SlowReader {
    fn new(socket: TcpStream, pause: Duration, slow_for: Duration) -> SlowReader {
        SlowReader {
            socket,
            pause,
            slow_until: Instant::now() + slow_for,
            slow_reads: 0,
        }
    }
}

impl Read for SlowReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if Instant::now() >= self.slow_until {
            return self.socket.read(buf);
        }
        std::thread::sleep(self.pause);
        self.slow_reads += 1;
        let n = buf.len().min(SLOW_READ_BYTES);
        self.socket.read(&mut buf[..n])
    }
}

#[test]
fn thousands_of_pipelined_requests_to_a_slow_reader_all_arrive() {
    // More output than the socket buffers hold: the server must keep what the
    // kernel does not take and finish on the next writable events. The
    // kernel holds at most the server's send buffer (which grows up to
    // tcp_wmem's maximum) and our small receive buffer; counting the
    // 140-byte answers as 100 bytes, this many requests owe more than both.
    let send_max = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_wmem")
        .ok()
        .and_then(|v| v.split_whitespace().nth(2)?.parse::<usize>().ok())
        .unwrap_or(4 << 20);
    let n = (send_max + (1 << 20)) / 100;
    // Every other request asks for a page that is not there, so that the
    // order of the answers shows: 200, 404, 200, ...
    let pair = [HELLO, b"GET /nothing HTTP/1.1\r\nHost: t\r\n\r\n"].concat();
    let requests = pair.repeat(n.div_ceil(2));
    let n = n.div_ceil(2) * 2;
    let server = Server::start(&["--quiet"]);
    let s = server.connect_cramped();
    let writer = {
        let mut w = s.try_clone().unwrap();
        std::thread::spawn(move || w.write_all(&requests).unwrap())
    };
    // The slow reader reads nothing until the server holds answers that the
    // kernel would not take: its row in the table says "writing" (and stays
    // so, since the kernel cannot take the rest before we read).
    let me = s.local_addr().unwrap().to_string();
    let mut row = serde_json::Value::Null;
    wait_until(Duration::from_secs(20), || {
        row = table(&server)["rows"]
            .as_array()
            .and_then(|rows| rows.iter().find(|r| r["remote"] == me.as_str()))
            .cloned()
            .unwrap_or_default();
        row["phase"] == "writing"
    });
    let answered = row["requests"].as_u64().unwrap();
    assert!(answered < n as u64, "{row}");
    // Then it reads, slowly: a millisecond's pause before each read of at
    // most 4 KiB, so the server sends the rest over many turns, each when
    // the reader has made a little room. Two seconds of that, a couple of
    // thousand reads, is most of the answers; whatever is left then is
    // read at full speed, so that the test ends in bounded time. Everything
    // arrives, in order.
    let slow = SlowReader::new(s, Duration::from_millis(1), Duration::from_secs(2));
    let mut s = BufReader::with_capacity(SLOW_READ_BYTES, slow);
    for i in 0..n {
        let r = read_response(&mut s).unwrap_or_else(|| panic!("response {i} of {n}"));
        let want = if i % 2 == 0 { 200 } else { 404 };
        assert_eq!(r.status, want, "response {i} of {n}");
    }
    writer.join().unwrap();
    let slow_reads = s.get_ref().slow_reads;
    assert!(
        slow_reads >= 100,
        "only {slow_reads} reads were slow: the reader was not slow"
    );
}

#[test]
fn a_request_sent_one_byte_at_a_time_is_answered() {
    let server = Server::start(&[]);
    let mut s = server.connect();
    s.set_nodelay(true).unwrap();
    let req = b"GET /_/whoami HTTP/1.1\r\nHost: t\r\nX-Slow: yes\r\n\r\n";
    for b in req {
        s.write_all(&[*b]).unwrap();
    }
    let r = read_response(&mut s).unwrap();
    assert_eq!(r.status, 200);
    assert!(r.text().contains(&s.local_addr().unwrap().to_string()));
}

#[test]
fn a_large_body_is_read_in_one_go_and_the_next_request_answered() {
    // 300 KiB arrives at once: one readable edge, so the server must read until
    // the socket is empty, not once per event.
    let server = Server::start(&[]);
    let mut s = server.connect();
    let body = vec![b'x'; 300 * 1024];
    let mut req = format!(
        "POST /_/hello HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(&body);
    req.extend_from_slice(HELLO);
    s.write_all(&req).unwrap();
    assert_eq!(read_response(&mut s).unwrap().status, 405);
    assert_eq!(read_response(&mut s).unwrap().status, 200);
}

#[test]
fn a_burst_of_connections_is_accepted_completely() {
    // Edge-triggered accept: one event may stand for hundreds of waiting
    // connections, and none of them brings another event. At the least a
    // few times what the server accepts in one turn.
    let least = 4 * fivetuple::reactor::ACCEPTS_PER_TURN;
    let Some(lent) = privilege::descriptors(this_test!(), 300, least) else {
        return;
    };
    let server = Server::start(&[]);
    let clients: Vec<TcpStream> = (0..lent.count()).map(|_| server.connect()).collect();
    wait_until(Duration::from_secs(10), || {
        other_rows(&table(&server)).len() == clients.len()
    });
}

#[test]
fn clients_vanishing_mid_request_and_mid_response_leave_no_trace() {
    let server = Server::start(&["--quiet"]);
    for _ in 0..20 {
        let mut s = server.connect();
        s.write_all(b"GET /_/hel").unwrap();
        drop(s);
        let mut s = server.connect();
        s.write_all(&HELLO.repeat(2000)).unwrap();
        drop(s); // with unread responses: the server's writes fail with a reset
        let s = server.connect();
        socket2::SockRef::from(&s)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
        drop(s); // a reset straight away
    }
    wait_until(Duration::from_secs(10), || {
        other_rows(&table(&server)).is_empty()
    });
    assert_eq!(server.get("/_/hello").body, b"Hello, World!");
}

#[test]
fn a_thousand_concurrent_connections_each_get_ten_answers() {
    let Some(lent) = privilege::descriptors(this_test!(), 1001, 101) else {
        return;
    };
    let n = lent.count() - 1; // and one to ask for the table
    let server = Server::start(&["--quiet"]);
    let mut clients: Vec<TcpStream> = (0..n).map(|_| server.connect()).collect();
    for round in 0..10 {
        for c in &mut clients {
            c.write_all(b"GET /_/whoami HTTP/1.1\r\nHost: t\r\n\r\n")
                .unwrap();
        }
        for c in &mut clients {
            let r = read_response(c).unwrap_or_else(|| panic!("round {round}: no answer"));
            let me = c.local_addr().unwrap().to_string();
            assert!(
                r.text().contains(&me),
                "round {round}: {} is not {me}",
                r.text()
            );
        }
    }
    let t = table(&server);
    assert_eq!(t["served"].as_u64().unwrap(), 10 * n as u64);
    assert_eq!(t["accepted"].as_u64().unwrap(), n as u64 + 1);
}

#[test]
fn the_story_payload_is_handled_and_logged() {
    let server = Server::start(&[]);
    // As the story's client sends it: no line end, then it closes.
    let mut s = server.connect();
    s.write_all(b"Test payload.").unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    assert!(
        read_to_close(&mut s).is_empty(),
        "an unfinished request gets no answer"
    );
    let line = server.wait_for_log("unanswerable bytes", Duration::from_secs(10));
    assert!(
        line.contains("13 unanswerable bytes: \"Test payload.\""),
        "{line}"
    );
    // With a line end it is a malformed request: 400, and the connection closes.
    let mut s = server.connect();
    s.write_all(b"Test payload.\r\n").unwrap();
    let r = read_response(&mut s).unwrap();
    assert_eq!(r.status, 400);
    assert_eq!(r.header("Connection"), Some("close"));
    assert!(read_to_close(&mut s).is_empty());
    server.wait_for_log("\"Test payload.\" 400", Duration::from_secs(10));
}

#[test]
fn head_http10_and_connection_close() {
    let server = Server::start(&[]);
    let mut s = server.connect();
    s.write_all(b"HEAD /_/hello HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let r = read_response_to(&mut s, true).unwrap();
    assert_eq!(r.header("Content-Length"), Some("13"));
    assert!(r.header("Date").is_some());
    assert!(r.header("Server").unwrap().starts_with("fivetuple/"));
    s.write_all(b"GET /_/hello HTTP/1.0\r\n\r\n").unwrap();
    let r = read_response(&mut s).unwrap();
    assert_eq!(r.header("Connection"), Some("close"));
    assert!(read_to_close(&mut s).is_empty());
}

#[test]
fn the_index_page_links_the_endpoints() {
    let server = Server::start(&[]);
    let r = server.get("/");
    assert_eq!(r.status, 200);
    for link in ["/_/conns", "/_/whoami", "/_/hello"] {
        assert!(r.text().contains(&format!("href=\"{link}\"")), "{link}");
    }
    assert_eq!(server.get("/nope").status, 404);
}

#[test]
fn sigterm_finishes_requests_in_flight_then_exits_cleanly() {
    let mut server = Server::start(&[]);
    let mut idle = server.connect();
    idle.write_all(HELLO).unwrap();
    read_response(&mut idle).unwrap();
    let mut busy = server.connect();
    busy.write_all(b"GET /_/whoami HTTP/1.1\r\nHost: t\r\n")
        .unwrap();
    wait_until(Duration::from_secs(10), || {
        other_rows(&table(&server))
            .iter()
            .any(|r| r["phase"] == "reading")
    });
    let before = table(&server);
    server.signal(libc::SIGTERM);
    // The idle keep-alive connection is closed at once.
    assert!(read_to_close(&mut idle).is_empty());
    // The one in the middle of a request gets its answer, marked as the last.
    busy.write_all(b"\r\n").unwrap();
    let r = read_response(&mut busy).unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("Connection"), Some("close"));
    let status = server.wait_exit(Duration::from_secs(10));
    assert!(status.success(), "{status:?}");
    assert!(
        TcpStream::connect(server.addr).is_err(),
        "no longer listening"
    );
    // Accepted: all that the table had seen; served: those, the table request
    // itself, and the request that was in flight.
    let want = format!(
        "shut down: {} connections accepted, {} requests served",
        before["accepted"],
        before["served"].as_u64().unwrap() + 2
    );
    assert_eq!(server.stdout().last(), Some(&want));
}

#[test]
fn one_request_is_one_request_in_the_shutdown_line() {
    let mut server = Server::start(&[]);
    assert_eq!(server.get("/_/hello").status, 200);
    server.signal(libc::SIGTERM);
    assert!(server.wait_exit(Duration::from_secs(10)).success());
    assert_eq!(
        server.stdout().last().map(String::as_str),
        Some("shut down: 1 connection accepted, 1 request served")
    );
}

#[test]
fn a_used_port_gives_one_line_and_exit_code_1() {
    let server = Server::start(&[]);
    let out = std::process::Command::new(common::bin())
        .args(["serve", "--listen", &server.addr.to_string()])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "cannot bind: a run-time failure"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("already in use"), "{err}");
    assert!(
        err.contains(&format!("fivetuple conns --port {}", server.port())),
        "{err}"
    );
}

#[test]
fn the_server_keeps_going_through_a_storm_of_signals() {
    // SIGUSR1 dumps the table to the log; each one also interrupts epoll_wait.
    let server = Server::start(&["--quiet"]);
    let mut s = server.connect();
    for _ in 0..200 {
        server.signal(libc::SIGUSR1);
        s.write_all(HELLO).unwrap();
        assert_eq!(read_response(&mut s).unwrap().status, 200);
    }
    server.wait_for_log("connection table", Duration::from_secs(10));
}

#[test]
fn bytes_after_the_response_are_not_lost() {
    let server = Server::start(&[]);
    let mut s = server.connect();
    s.write_all(b"GET /_/hello HTTP/1.1\r\nHost: t\r\n\r\nGET /_/hello HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").unwrap();
    let mut all = Vec::new();
    s.read_to_end(&mut all).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&all)
            .matches("Hello, World!")
            .count(),
        2
    );
}

#[test]
fn a_privileged_port_without_the_right_names_the_fixes() {
    // As an unprivileged user: binding below 1024 fails, and the one line says how to fix it.
    let test = this_test!();
    let start = privilege::unprivileged_port_start();
    if start == 0 {
        return privilege::skip(
            test,
            "ports that need privileges (net.ipv4.ip_unprivileged_port_start is 0 here)",
        );
    }
    let mut cmd = match privilege::as_unprivileged_user(common::bin()) {
        Ok(cmd) => cmd,
        Err(need) => return privilege::skip(test, &need),
    };
    let port = (start - 1).min(1023);
    let mut child = cmd
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the server as an unprivileged user");
    // Either the bind fails and the server exits (its stdout ends), or it
    // binds after all and prints `listening on`: read the first line, with
    // a deadline.
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let first = rx.recv_timeout(Duration::from_secs(20)).unwrap_or_default();
    if first.starts_with("listening on") {
        let _ = child.kill();
        let _ = child.wait();
        return privilege::skip(
            test,
            "a user who may not bind ports below 1024 (this one may: CAP_NET_BIND_SERVICE, \
             or a capability on the binary)",
        );
    }
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "cannot bind: a run-time failure"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    for fix in [
        "run as root",
        "setcap cap_net_bind_service=+ep",
        "--listen 0.0.0.0:8500",
    ] {
        assert!(err.contains(fix), "{fix:?} missing from {err}");
    }
}

#[test]
fn an_ipv6_wildcard_listener_takes_ipv4_clients_too() {
    let mut cmd = std::process::Command::new(common::bin());
    cmd.args(["serve", "--listen", "[::]:0"]);
    let server = Server::spawn(cmd, &[]);
    let v4 = std::net::SocketAddr::from(([127, 0, 0, 1], server.port()));
    let mut s = TcpStream::connect(v4).unwrap();
    s.write_all(b"GET /_/whoami HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let r = read_response(&mut s).unwrap();
    let me = s.local_addr().unwrap().port();
    assert!(
        r.text().contains(&format!("[::ffff:127.0.0.1]:{me}")),
        "{}",
        r.text()
    );
    let v6 = std::net::SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, server.port()));
    let mut s = TcpStream::connect(v6).unwrap();
    s.write_all(b"GET /_/whoami HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    assert!(read_response(&mut s).unwrap().text().contains("[::1]:"));
}

#[test]
fn bad_options_give_one_line_and_exit_code_2() {
    for args in [
        &["serve", "--listen", "nonsense"][..],
        &["serve", "--listen", "8500"],
        &["serve", "--listen", "::1:8500"],
        &["serve", "--listen", "localhost:http"],
        &["serve", "--listen", "no-such-host.invalid:0"],
        &["serve", "--header-timeout", "-1"],
        &["serve", "--listen", "127.0.0.1:0", "--backlog", "0"],
    ] {
        let out = std::process::Command::new(common::bin())
            .args(args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("panicked"), "{err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
    }
}

#[test]
fn a_wrong_listen_shows_the_forms_that_work() {
    let out = std::process::Command::new(common::bin())
        .args(["serve", "--listen", "8500"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("(:8500)"), "{err}");
    for form in ["0.0.0.0:8500", "[::]:8500", "localhost:8500"] {
        assert!(err.contains(form), "{form} missing from {err}");
    }
}

#[test]
fn a_host_name_listens_on_its_first_address_and_says_which() {
    let mut cmd = std::process::Command::new(common::bin());
    cmd.args(["serve", "--listen", "localhost:0"]);
    let server = Server::spawn(cmd, &[]);
    assert!(server.addr.ip().is_loopback(), "{}", server.addr);
    assert_ne!(server.port(), 0);
    let line = server.wait_for_log("localhost is ", Duration::from_secs(10));
    assert!(
        line.contains(&format!("listening on {}", server.addr)),
        "{line}"
    );
    assert_eq!(server.get("/_/hello").text(), "Hello, World!");
}

#[test]
fn a_bare_port_listens_on_every_address() {
    let mut cmd = std::process::Command::new(common::bin());
    cmd.args(["serve", "--listen", ":0"]);
    let server = Server::spawn(cmd, &[]);
    assert!(server.addr.ip().is_unspecified(), "{}", server.addr);
    let line = server.wait_for_log("is every address", Duration::from_secs(10));
    // [::] where the machine has IPv6, taking IPv4 clients too; 0.0.0.0 where not.
    let v4 = std::net::SocketAddr::from(([127, 0, 0, 1], server.port()));
    let mut s = TcpStream::connect(v4).unwrap();
    s.write_all(HELLO).unwrap();
    assert_eq!(read_response(&mut s).unwrap().status, 200);
    if server.addr.is_ipv6() {
        assert!(line.contains("IPv6 and IPv4 clients"), "{line}");
    } else {
        assert!(line.contains("0.0.0.0"), "{line}");
    }
}
