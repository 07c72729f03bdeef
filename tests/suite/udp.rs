//! `serve --udp`: a UDP socket on the TCP listener's port number. Two
//! protocols, two sockets, one port number; and a UDP server that tells its
//! peers apart by the source address of each datagram.
//!
//! A datagram's source is whatever its sender wrote, so the second half of
//! these tests writes it: a raw socket sends datagrams with a forged source
//! (the server's own port, another server's, port 0, a service port), and
//! the server must answer none of them, count each, and start no loop. A
//! raw socket needs CAP_NET_RAW: root has it; anyone else gets it in a
//! network namespace of their own (the test runs itself again there, see
//! [`forging`]); where neither is possible the test skips (tests/privilege).

use std::collections::HashMap;
use std::io;
use std::net::{SocketAddr, SocketAddrV4, UdpSocket};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::{rss_kib, run_connect, wait_until, Server};
use crate::privilege;
use fivetuple::udp::{LONGEST_ANSWER, MAX_FLOWS};
use socket2::{Domain, Protocol, Socket, Type};

fn table_json(server: &Server) -> serde_json::Value {
    serde_json::from_slice(&server.get("/_/conns.json?all").body).unwrap()
}

/// The UDP socket's row in the table: its `requests` are the answers sent.
fn socket_row(server: &Server) -> serde_json::Value {
    table_json(server)["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["proto"] == "udp" && r["remote"].is_null())
        .cloned()
        .expect("the UDP socket's row")
}

/// Answers the server has sent, read from its table (`requests` of the
/// UDP socket's row).
fn answers(server: &Server) -> u64 {
    socket_row(server)["requests"].as_u64().unwrap()
}

/// The metrics as `name{labels}` → value.
fn metrics(server: &Server) -> HashMap<String, f64> {
    let text = server.get("/_/metrics").text();
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            Some((name.to_string(), value.parse().ok()?))
        })
        .collect()
}

/// `payload` padded with zero bytes to the longest answer, as
/// `fivetuple connect -m udp` sends it.
fn padded(payload: &[u8]) -> Vec<u8> {
    let mut datagram = payload.to_vec();
    datagram.resize(datagram.len().max(LONGEST_ANSWER), 0);
    datagram
}

/// Sends `datagram` from `socket` and returns the server's answer.
fn ask(socket: &UdpSocket, server: &Server, datagram: &[u8]) -> String {
    socket
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    socket.send_to(datagram, server.addr).unwrap();
    let mut buf = [0u8; 256];
    let (n, from) = socket.recv_from(&mut buf).expect("an answer");
    assert_eq!(
        from, server.addr,
        "the answer comes from the port we sent to"
    );
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// A round trip from a fresh client: once its answer is back, the server
/// has read and handled every datagram sent to it before (one socket reads
/// in order). Returns the answer.
fn round_trip(server: &Server) -> String {
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    ask(&client, server, &padded(b"marker"))
}

#[test]
fn two_udp_peers_are_answered_on_the_tcp_port_number_each_by_its_own_port() {
    let server = Server::start(&["--udp", "--quiet"]);
    wait_until(Duration::from_secs(5), || {
        server
            .stdout()
            .first()
            .is_some_and(|l| l.ends_with("(tcp and udp)"))
    });
    let a = UdpSocket::bind("127.0.0.1:0").unwrap();
    let b = UdpSocket::bind("127.0.0.1:0").unwrap();
    for (peer, payload) in [(&a, padded(b"Test payload.")), (&b, vec![b'x'; 300])] {
        let answer = ask(peer, &server, &payload);
        let want = format!(
            "udp {} <- {}, {} bytes\n",
            server.addr,
            peer.local_addr().unwrap(),
            payload.len()
        );
        assert_eq!(answer, want);
    }
    // TCP on the same port number still answers: two sockets, one port.
    assert_eq!(server.get("/_/hello").body, b"Hello, World!");

    // The table: the listener, the UDP socket (UNCONN), and one flow per peer.
    let table = table_json(&server);
    assert_eq!(table["udp_peers"], 2);
    let rows = table["rows"].as_array().unwrap();
    let socket = rows
        .iter()
        .find(|r| r["proto"] == "udp" && r["remote"].is_null())
        .expect("the UDP socket's row");
    assert_eq!(socket["state"], "UNCONN");
    assert_eq!(socket["local"], server.addr.to_string());
    for peer in [&a, &b] {
        let me = peer.local_addr().unwrap().to_string();
        let flow = rows
            .iter()
            .find(|r| r["proto"] == "udp" && r["remote"] == me.as_str())
            .unwrap_or_else(|| panic!("no flow for {me}: {table}"));
        assert_eq!(flow["phase"], "flow");
        assert_eq!(flow["requests"], 1);
    }
    let text = server.get("/_/conns").text();
    assert!(text.contains("2 UDP peers"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("udp ") && l.contains("UNCONN")),
        "{text}"
    );
}

#[test]
fn a_spray_of_ten_thousand_source_ports_keeps_the_flow_table_bounded() {
    let server = Server::start(&["--udp", "--quiet"]);
    let first = UdpSocket::bind("127.0.0.1:0").unwrap();
    let datagram = padded(b"x");
    ask(&first, &server, &datagram);
    let rss = rss_kib(server.pid());
    // 10,000 peers, each a socket of its own (its own ephemeral port), in
    // batches so that the server's receive buffer does not overflow.
    let start = Instant::now();
    for _ in 0..50 {
        let batch: Vec<UdpSocket> = (0..200)
            .map(|_| UdpSocket::bind("127.0.0.1:0").unwrap())
            .collect();
        for s in &batch {
            s.send_to(&datagram, server.addr).unwrap();
        }
        let mut buf = [0u8; 256];
        for s in &batch {
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            s.recv_from(&mut buf).expect("every peer is answered");
        }
    }
    let table = table_json(&server);
    let peers = table["udp_peers"].as_u64().unwrap();
    let grown = rss_kib(server.pid()).saturating_sub(rss);
    eprintln!(
        "10,000 peers in {:?}: {peers} remembered, RSS grew {grown} KiB",
        start.elapsed()
    );
    assert_eq!(peers, MAX_FLOWS as u64);
    // Every peer past the table's size made room (the kernel hands freed
    // ports out again, so some came back as peers already remembered).
    let evicted = table["udp"]["evicted"].as_u64().unwrap();
    assert!(
        evicted > 0 && peers + evicted <= 10_001,
        "{evicted} evicted"
    );
    assert!(grown < 4 * 1024, "RSS grew {grown} KiB");
    // TCP is still served.
    wait_until(Duration::from_secs(5), || {
        server.get("/_/hello").body == b"Hello, World!"
    });
}

#[test]
fn an_answer_is_never_longer_than_the_datagram_that_asked() {
    let server = Server::start(&["--udp", "--quiet"]);
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    // Shorter than the answer would be: no answer. (One byte used to get
    // 48 back; a forged source would have made that 48 someone else's.)
    for n in [0, 1, 40] {
        client.send_to(&vec![b'x'; n], server.addr).unwrap();
    }
    // Long enough: answered. Nothing came back before it (one socket, in
    // order), so the short ones were not answered.
    let long = padded(b"Test payload.");
    let answer = ask(&client, &server, &long);
    assert!(answer.len() <= long.len(), "{answer}");
    assert!(
        answer.ends_with(&format!(", {LONGEST_ANSWER} bytes\n")),
        "{answer}"
    );
    client.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 256];
    assert_eq!(
        client.recv(&mut buf).map_err(|e| e.kind()),
        Err(io::ErrorKind::WouldBlock),
        "a second answer"
    );

    let m = metrics(&server);
    assert_eq!(m["fivetuple_udp_refused_total{reason=\"too_short\"}"], 3.0);
    assert_eq!(m["fivetuple_udp_datagrams_sent_total"], 1.0);
    assert!(m["fivetuple_udp_sent_bytes_total"] <= m["fivetuple_udp_received_bytes_total"]);

    // `connect -m udp` pads its datagram, and so gets its answer whole.
    let target = server.addr.to_string();
    let out = run_connect(&["-m", "udp", "-t", &target, "-p", "hi"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    let padding = LONGEST_ANSWER - 2;
    assert!(
        stdout.contains(&format!(
            "sent {LONGEST_ANSWER} B (2 B + {padding} B padding)"
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!(", {LONGEST_ANSWER} bytes (the same pair)")),
        "{stdout}"
    );
}

#[test]
fn a_flood_from_one_source_is_limited_and_counted_and_others_are_still_answered() {
    let server = Server::start(&["--udp", "--quiet"]);
    let flooder = UdpSocket::bind("127.0.0.1:0").unwrap();
    let datagram = padded(b"flood");
    // 100 datagrams at once (few enough for the server's receive buffer).
    let started = Instant::now();
    for _ in 0..100 {
        flooder.send_to(&datagram, server.addr).unwrap();
    }
    let mut stats = serde_json::Value::Null;
    wait_until(Duration::from_secs(10), || {
        stats = table_json(&server)["udp"].clone();
        stats["datagrams_in"] == 100
    });
    let took = started.elapsed();
    let answered = stats["datagrams_out"].as_u64().unwrap();
    let limited = stats["refused"]["source_rate"].as_u64().unwrap();
    assert_eq!(answered + limited, 100, "{stats}");
    // 10 at once, then 10 a second.
    let allowed = 10 + (took.as_secs_f64() * 10.0).ceil() as u64;
    assert!(
        (10..=allowed).contains(&answered),
        "{answered} answers in {took:?}"
    );
    // The flooder got exactly those answers.
    flooder
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut buf = [0u8; 256];
    for _ in 0..answered {
        flooder
            .recv(&mut buf)
            .expect("an answer the server counted");
    }
    flooder.set_nonblocking(true).unwrap();
    assert!(flooder.recv(&mut buf).is_err(), "more answers than counted");
    // Another client, from the same address but its own port (another
    // machine behind the same NAT), has credit of its own.
    assert!(round_trip(&server).starts_with("udp "));
    let m = metrics(&server);
    assert_eq!(
        m["fivetuple_udp_refused_total{reason=\"source_rate\"}"],
        limited as f64
    );
}

#[test]
fn udp_is_counted_in_the_metrics_and_the_table() {
    let server = Server::start(&["--udp", "--quiet"]);
    let before = metrics(&server);
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client.send_to(b"short", server.addr).unwrap();
    let answer = ask(&client, &server, &padded(b"x"));
    let m = metrics(&server);
    assert_eq!(m["fivetuple_udp_datagrams_received_total"], 2.0);
    assert_eq!(m["fivetuple_udp_datagrams_sent_total"], 1.0);
    let bytes_in = (5 + LONGEST_ANSWER) as f64;
    assert_eq!(m["fivetuple_udp_received_bytes_total"], bytes_in);
    assert_eq!(m["fivetuple_udp_sent_bytes_total"], answer.len() as f64);
    assert_eq!(m["fivetuple_udp_refused_total{reason=\"too_short\"}"], 1.0);
    assert_eq!(m["fivetuple_udp_answers_dropped_total"], 0.0);
    assert_eq!(m["fivetuple_udp_peers_evicted_total"], 0.0);
    assert_eq!(m["fivetuple_udp_peers"], 1.0);
    // The server's byte totals count UDP too (the scrapes themselves add
    // TCP bytes, so at least).
    let grew = |name: &str| m[name] - before[name];
    assert!(grew("fivetuple_received_bytes_total") >= bytes_in);
    assert!(grew("fivetuple_sent_bytes_total") >= answer.len() as f64);

    let text = server.get("/_/conns").text();
    let line = text.lines().nth(1).unwrap_or_default();
    assert_eq!(
        line,
        "udp: 2 datagrams in, 1 answered; refused: 1 shorter than the answer; \
         0 dropped (send buffer full), 0 peers evicted",
        "{text}"
    );
    // Without --udp there is no UDP family at all.
    let tcp_only = Server::start(&["--quiet"]);
    assert!(!metrics(&tcp_only)
        .keys()
        .any(|k| k.starts_with("fivetuple_udp_")));
}

#[test]
fn with_several_workers_every_scrape_counts_the_one_udp_socket() {
    let server = Server::start(&["--udp", "--workers", "2", "--quiet"]);
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    ask(&client, &server, &padded(b"x"));
    // The UDP socket is worker 0's. A scrape that worker 1 answers adds
    // worker 0's posted figures, which a datagram read makes news: posted
    // within a second, even if worker 0 has nothing else to do.
    let counted = || metrics(&server).get("fivetuple_udp_datagrams_received_total") == Some(&1.0);
    wait_until(Duration::from_secs(5), || (0..8).all(|_| counted()));
}

// ---- Forged sources ------------------------------------------------------

/// Sends UDP datagrams with any source address: a raw socket
/// (`IPPROTO_RAW`, which implies `IP_HDRINCL`) takes the whole IPv4 packet
/// from us, the source address in it included.
struct Forger(Socket);

impl Forger {
    fn new() -> io::Result<Forger> {
        let raw = Protocol::from(libc::IPPROTO_RAW);
        Socket::new(Domain::IPV4, Type::RAW, Some(raw)).map(Forger)
    }

    fn send(&self, from: SocketAddr, to: SocketAddr, payload: &[u8]) {
        let (SocketAddr::V4(from), SocketAddr::V4(to)) = (from, to) else {
            panic!("IPv4 only: {from} -> {to}");
        };
        self.0
            .send_to(&packet(from, to, payload), &SocketAddr::V4(to).into())
            .expect("a forged datagram sent");
    }
}

/// An IPv4 packet holding one UDP datagram. The kernel fills in what we
/// leave at zero: the packet id and the header checksum. A UDP checksum of
/// zero means "none", which IPv4 allows.
fn packet(from: SocketAddrV4, to: SocketAddrV4, payload: &[u8]) -> Vec<u8> {
    let udp_len = 8 + payload.len();
    let total = 20 + udp_len;
    let mut p = Vec::with_capacity(total);
    p.extend_from_slice(&[0x45, 0]); // IPv4, a 20-byte header; no type of service
    p.extend_from_slice(&(total as u16).to_be_bytes());
    p.extend_from_slice(&[0, 0, 0, 0]); // id, no fragments
    p.extend_from_slice(&[64, libc::IPPROTO_UDP as u8, 0, 0]); // TTL, protocol, checksum
    p.extend_from_slice(&from.ip().octets());
    p.extend_from_slice(&to.ip().octets());
    p.extend_from_slice(&from.port().to_be_bytes());
    p.extend_from_slice(&to.port().to_be_bytes());
    p.extend_from_slice(&(udp_len as u16).to_be_bytes());
    p.extend_from_slice(&[0, 0]);
    p.extend_from_slice(payload);
    p
}

/// Set in the copy of a test that runs in a network namespace of its own.
const IN_OWN_NAMESPACE: &str = "FIVETUPLE_TEST_IN_OWN_NAMESPACE";

/// Runs `body` with a [`Forger`]: here if this process may open a raw
/// socket (root); otherwise the test (`name`, a function of this module)
/// runs again, whole and alone (`udp::NAME --exact`), in a network
/// namespace of its own where this user may (`unshare --user
/// --map-root-user --net`), and passes if it passes there; where neither
/// is allowed, it skips.
fn forging(name: &str, body: impl FnOnce(Forger)) {
    let here = Forger::new();
    if std::env::var_os(IN_OWN_NAMESPACE).is_some() {
        return body(here.expect("a raw socket in a network namespace of our own"));
    }
    if let Ok(forger) = here {
        return body(forger);
    }
    let test = format!("udp::{name}");
    let unshare = match privilege::net_namespace() {
        Ok(prefix) => prefix,
        Err(need) => {
            let need = format!("CAP_NET_RAW to forge datagrams, which root has, or else {need}");
            return privilege::skip(&test, &need);
        }
    };
    let exe = std::env::current_exe().expect("the test binary's path");
    let out = Command::new(unshare[0])
        .args(&unshare[1..])
        .args(["sh", "-c", "ip link set lo up && exec \"$0\" \"$@\""])
        .arg(exe)
        .args([&test, "--exact", "--nocapture", "--test-threads=1"])
        .env(IN_OWN_NAMESPACE, "1")
        .output()
        .expect("unshare (util-linux) runs the test in its own network namespace");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "in its own namespace:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("1 passed"), "{stdout}\n{stderr}");
}

/// What the server's table says of its UDP socket: answers sent, and the
/// counters beside them.
fn udp_stats(server: &Server) -> serde_json::Value {
    table_json(server)["udp"].clone()
}

#[test]
fn a_datagram_forged_from_the_servers_own_address_gets_no_answer_and_starts_no_loop() {
    forging(
        "a_datagram_forged_from_the_servers_own_address_gets_no_answer_and_starts_no_loop",
        |forger| {
            let server = Server::start(&["--udp", "--quiet"]);
            // src = dst: answering it would send the answer to the server
            // itself, which would answer that, and so on. Long enough to be
            // answered were the source a client's.
            forger.send(server.addr, server.addr, &padded(b"loop?"));
            // A client's round trip after it: once answered, the forged
            // datagram has been handled too.
            round_trip(&server);
            assert_eq!(answers(&server), 1, "only the client was answered");
            // And nothing is going round: a second round trip later, the
            // server has still read just the three datagrams.
            round_trip(&server);
            assert_eq!(answers(&server), 2);
            let stats = udp_stats(&server);
            assert_eq!(stats["datagrams_in"], 3, "{stats}");
            assert_eq!(stats["refused"]["own_port"], 1, "{stats}");
            let m = metrics(&server);
            assert_eq!(m["fivetuple_udp_refused_total{reason=\"own_port\"}"], 1.0);
            let text = server.get("/_/conns").text();
            assert!(text.contains("refused: 1 from our own port;"), "{text}");
        },
    );
}

#[test]
fn two_servers_given_a_datagram_forged_from_each_others_port_exchange_one_answer() {
    forging(
        "two_servers_given_a_datagram_forged_from_each_others_port_exchange_one_answer",
        |forger| {
            let a = Server::start(&["--udp", "--quiet"]);
            let b = Server::start(&["--udp", "--quiet"]);
            // "From B" to A: A answers B, and B must not answer A's answer.
            forger.send(b.addr, a.addr, &padded(b"ping-pong?"));
            wait_until(Duration::from_secs(10), || {
                socket_row(&b)["bytes_in"].as_u64() > Some(0)
            });
            // Round trips flush both sockets' queues.
            round_trip(&a);
            round_trip(&b);
            assert_eq!(
                answers(&a),
                2,
                "A answered the forged datagram, and the client"
            );
            assert_eq!(answers(&b), 1, "B answered its client only");
            let (sa, sb) = (udp_stats(&a), udp_stats(&b));
            assert_eq!(sa["datagrams_in"], 2, "{sa}");
            assert_eq!(sb["datagrams_in"], 2, "{sb}");
            assert_eq!(sb["refused"]["own_answer"], 1, "{sb}");
            // A second round trip each: still nothing going back and forth.
            round_trip(&a);
            round_trip(&b);
            assert_eq!(udp_stats(&a)["datagrams_in"], 3);
            assert_eq!(udp_stats(&b)["datagrams_in"], 3);
        },
    );
}

#[test]
fn datagrams_from_port_zero_and_service_ports_are_refused_and_counted() {
    forging(
        "datagrams_from_port_zero_and_service_ports_are_refused_and_counted",
        |forger| {
            let server = Server::start(&["--udp", "--quiet"]);
            let datagram = padded(b"who is asking?");
            // The control: forged from a port where a socket of ours
            // listens, so its answer can be seen. Forging works, and such a
            // source is answered.
            let control = UdpSocket::bind("127.0.0.1:0").unwrap();
            forger.send(control.local_addr().unwrap(), server.addr, &datagram);
            control
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            let mut buf = [0u8; 256];
            let n = control.recv(&mut buf).expect("the control is answered");
            assert!(buf[..n].starts_with(b"udp "));
            // Port 0, echo (7), DNS (53), NTP (123), the last system port,
            // and mDNS (5353): none answered.
            for port in [0, 7, 53, 123, 1023, 5353] {
                let from = SocketAddr::from(([127, 0, 0, 1], port));
                forger.send(from, server.addr, &datagram);
            }
            // An answer to one of them would have gone out before this one.
            round_trip(&server);
            let stats = udp_stats(&server);
            assert_eq!(stats["datagrams_in"], 8, "{stats}");
            assert_eq!(stats["datagrams_out"], 2, "{stats}");
            assert_eq!(stats["refused"]["port_zero"], 1, "{stats}");
            assert_eq!(stats["refused"]["service_port"], 5, "{stats}");
            assert_eq!(stats["peers"], 2, "refused sources cost no flow: {stats}");
            let m = metrics(&server);
            assert_eq!(m["fivetuple_udp_refused_total{reason=\"port_zero\"}"], 1.0);
            assert_eq!(
                m["fivetuple_udp_refused_total{reason=\"service_port\"}"],
                5.0
            );
        },
    );
}
