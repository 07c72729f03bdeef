//! `serve --udp`: a UDP socket on the TCP listener's port number. Two
//! protocols, two sockets, one port number; and a UDP server that tells its
//! peers apart by the source address of each datagram.

mod common;

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use common::{rss_kib, wait_until, Server};

fn table_json(server: &Server) -> serde_json::Value {
    serde_json::from_slice(&server.get("/_/conns.json?all").body).unwrap()
}

/// Sends `payload` from `socket` and returns the server's answer.
fn ask(socket: &UdpSocket, server: &Server, payload: &[u8]) -> String {
    socket
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    socket.send_to(payload, server.addr).unwrap();
    let mut buf = [0u8; 256];
    let (n, from) = socket.recv_from(&mut buf).expect("an answer");
    assert_eq!(
        from, server.addr,
        "the answer comes from the port we sent to"
    );
    String::from_utf8_lossy(&buf[..n]).into_owned()
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
    for (peer, payload) in [(&a, &b"Test payload."[..]), (&b, b"hi")] {
        let answer = ask(peer, &server, payload);
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
    ask(&first, &server, b"warm");
    let rss = rss_kib(server.pid());
    // 10,000 peers, each a socket of its own (its own ephemeral port), in
    // batches so that the server's receive buffer does not overflow.
    let start = Instant::now();
    for _ in 0..50 {
        let batch: Vec<UdpSocket> = (0..200)
            .map(|_| UdpSocket::bind("127.0.0.1:0").unwrap())
            .collect();
        for s in &batch {
            s.send_to(b"x", server.addr).unwrap();
        }
        let mut buf = [0u8; 128];
        for s in &batch {
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            s.recv_from(&mut buf).expect("every peer is answered");
        }
    }
    let peers = table_json(&server)["udp_peers"].as_u64().unwrap();
    let grown = rss_kib(server.pid()).saturating_sub(rss);
    eprintln!(
        "10,000 peers in {:?}: {peers} remembered, RSS grew {grown} KiB",
        start.elapsed()
    );
    assert_eq!(peers, fivetuple::udp::MAX_FLOWS as u64);
    assert!(grown < 4 * 1024, "RSS grew {grown} KiB");
    // TCP is still served.
    wait_until(Duration::from_secs(5), || {
        server.get("/_/hello").body == b"Hello, World!"
    });
}
