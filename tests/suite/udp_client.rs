//! `fivetuple connect -m udp`, black-box: each socket's own end beside what
//! the server says it saw, and every way a UDP exchange can go wrong
//! (nothing listening, another kind of server, a datagram too long, no
//! answer at all), each named for what it is.
//!
//! Most tests answer from a small responder thread of their own, so that
//! they can also answer wrongly; one runs against `fivetuple serve --udp`.

use std::collections::HashSet;
use std::net::{SocketAddr, UdpSocket};
use std::thread;
use std::time::{Duration, Instant};

use crate::common::{run_connect as connect, stdout_and_stderr as text, Server, TempDir};
use crate::privilege;
use crate::privilege::this_test;
use fivetuple::udp::LONGEST_ANSWER;

/// fivetuple's answer to a datagram of `n` bytes from `peer`, received on `local`.
fn fivetuple_answer(local: SocketAddr, peer: SocketAddr, n: usize) -> Vec<u8> {
    format!("udp {local} <- {peer}, {n} bytes\n").into_bytes()
}

/// A UDP responder on `bind`: answers each of the first `datagrams`
/// datagrams with `answer(its local address, payload, peer)`, and stops
/// after them or after 10 s without one. Returns its address.
fn responder(
    bind: &str,
    datagrams: usize,
    answer: impl Fn(SocketAddr, &[u8], SocketAddr) -> Vec<u8> + Send + 'static,
) -> (SocketAddr, thread::JoinHandle<()>) {
    let socket = UdpSocket::bind(bind).unwrap();
    let local = socket.local_addr().unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let handle = thread::spawn(move || {
        let mut buf = [0u8; 2048];
        for _ in 0..datagrams {
            let Ok((n, peer)) = socket.recv_from(&mut buf) else {
                return;
            };
            let _ = socket.send_to(&answer(local, &buf[..n], peer), peer);
        }
    });
    (local, handle)
}

/// Splits `udp A:p -> B:q answered in 90 µs, sent 13 B, received 47 B`.
fn parse_line(line: &str) -> Option<(String, String)> {
    let rest = line.strip_prefix("udp ")?;
    let (local, rest) = rest.split_once(" -> ")?;
    let (remote, _) = rest.split_once(" answered in ")?;
    Some((local.to_string(), remote.to_string()))
}

#[test]
fn each_socket_has_its_own_port_and_the_server_names_it() {
    let (addr, answering) = responder("127.0.0.1:0", 3, |local, payload, peer| {
        fivetuple_answer(local, peer, payload.len())
    });
    let target = addr.to_string();
    let out = connect(&[
        "-m", "udp", "-t", &target, "-p", "Test", "payload.", "-n", "3",
    ]);
    answering.join().unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 6, "{stdout}");
    let mut ports = HashSet::new();
    for pair in lines.chunks(2) {
        let (local, remote) = parse_line(pair[0]).unwrap_or_else(|| panic!("{}", pair[0]));
        assert_eq!(remote, target);
        // 13 bytes of payload, padded so that the server may answer in full.
        let padding = LONGEST_ANSWER - 13;
        assert!(
            pair[0].contains(&format!(
                ", sent {LONGEST_ANSWER} B (13 B + {padding} B padding), received "
            )),
            "{}",
            pair[0]
        );
        assert_eq!(
            pair[1],
            format!(
                "  server sees: udp {remote} <- {local}, {LONGEST_ANSWER} bytes (the same pair)"
            )
        );
        ports.insert(local);
    }
    assert_eq!(ports.len(), 3, "three sockets, three ephemeral ports");
}

#[test]
fn ipv6_works_the_same() {
    let Ok(probe) = UdpSocket::bind("[::1]:0") else {
        return privilege::skip(
            this_test!(),
            "an IPv6 loopback address (::1), which this machine lacks",
        );
    };
    drop(probe);
    let (addr, answering) = responder("[::1]:0", 1, |local, payload, peer| {
        fivetuple_answer(local, peer, payload.len())
    });
    let out = connect(&["-m", "udp", "-t", &addr.to_string(), "-p", "six", "--json"]);
    answering.join().unwrap();
    assert!(out.status.success(), "{}", text(&out).1);
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let local = rows[0]["local"].as_str().unwrap();
    assert!(local.starts_with("[::1]:"), "{local}");
    assert_eq!(rows[0]["proto"], "udp");
    assert_eq!(
        rows[0]["server_view"],
        format!("udp {addr} <- {local}, {LONGEST_ANSWER} bytes")
    );
    assert_eq!(rows[0]["sent"], LONGEST_ANSWER);
    assert_eq!(rows[0]["padding"], LONGEST_ANSWER - 3);
    assert!(rows[0]["answer_ms"].as_f64().is_some());
}

#[test]
fn with_fivetuple_serve_the_tcp_port_number_answers_udp_too() {
    let server = Server::start(&["--udp", "--quiet"]);
    let target = server.addr.to_string();
    let out = connect(&["-m", "udp", "-t", &target, "-n", "50", "-p", "x"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(
        stdout.starts_with(&format!(
            "50 of 50 UDP sockets to {target} answered, from 50 distinct local address:port pairs\n\
             answer time: min "
        )),
        "{stdout}"
    );
    // The same port number over TCP is another socket, and answers too.
    let out = connect(&["-m", "http", "-t", &target]);
    assert!(out.status.success(), "{}", text(&out).0);
    assert!(text(&out).0.contains("server sees: tcp "));
}

#[test]
fn nothing_listening_on_the_udp_port_is_named() {
    // A TCP server on the port, but no UDP socket: the protocol is part of the tuple.
    let server = Server::start(&["--quiet"]);
    let target = server.addr.to_string();
    let out = connect(&["-m", "udp", "-t", &target, "-p", "hello?"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(
        stdout.contains(&format!(
            " sent {LONGEST_ANSWER} B (6 B + {} B padding), then refused (nothing listens on that UDP port)",
            LONGEST_ANSWER - 6
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "nothing listens on UDP port {} at 127.0.0.1",
            server.port()
        )),
        "{stdout}"
    );
    assert!(stdout.contains("--udp"), "{stdout}");
}

#[test]
fn an_echo_is_not_taken_for_fivetuples_answer() {
    let (addr, answering) = responder("127.0.0.1:0", 1, |_, payload, _| payload.to_vec());
    let out = connect(&[
        "-m",
        "udp",
        "-t",
        &addr.to_string(),
        "-p",
        "Test",
        "payload.",
    ]);
    answering.join().unwrap();
    let (stdout, _) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(!stdout.contains("server sees"), "{stdout}");
    // The datagram came back whole, padding and all: named as an echo,
    // and shown without the padding.
    assert!(
        stdout.contains(&format!(
            "received {LONGEST_ANSWER} B, then not a fivetuple answer"
        )),
        "{stdout}"
    );
    assert!(stdout.contains("  reply: Test payload.\n"), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "{addr} does not look like fivetuple serve --udp: it answered our own datagram back: \
             \"Test payload.\" and {} bytes of padding",
            LONGEST_ANSWER - 13
        )),
        "{stdout}"
    );
}

#[test]
fn a_datagram_longer_than_the_buffer_is_noticed() {
    let (addr, answering) = responder("127.0.0.1:0", 1, |_, _, _| vec![b'x'; 5000]);
    let out = connect(&["-m", "udp", "-t", &addr.to_string(), "--json"]);
    answering.join().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rows[0]["received"], 5000);
    let why = rows[0]["error"]["not_udp_answer"].as_str().unwrap();
    assert!(why.contains("a datagram of 5000 bytes"), "{why}");
}

#[test]
fn no_answer_ends_at_the_timeout() {
    // Reads nothing, answers nothing: as a lost datagram looks.
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let target = silent.local_addr().unwrap().to_string();
    let started = Instant::now();
    let out = connect(&["-m", "udp", "-t", &target, "-n", "2", "--timeout", "0.3"]);
    assert!(started.elapsed() < Duration::from_secs(10));
    let (stdout, _) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert_eq!(
        stdout
            .lines()
            .filter(|l| l.ends_with("then no answer in time (--timeout)"))
            .count(),
        2,
        "{stdout}"
    );
}

#[test]
fn bad_udp_arguments_are_one_line_and_exit_2() {
    let dir = TempDir::new("big-payload");
    let big = dir.write("big", vec![b'x'; 70_000]);
    let big_path = big.to_str().unwrap();
    for args in [
        &["-m", "udp", "-t", "127.0.0.1:9", "--payload-file", big_path][..],
        &["-m", "carrier-pigeon", "-t", "127.0.0.1:9"],
        &["-m", "udp", "--http", "-t", "127.0.0.1:9"],
        &["-m", "http", "-t", "127.0.0.1:9", "-p", "x"],
        &["127.0.0.1:9", "-t", "127.0.0.1:9"],
        &["-m", "udp"],
        &["-m", "udp", "-t", "127.0.0.1:9", "--timeout", "-1"],
    ] {
        let out = connect(args);
        let (_, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
    }
}
