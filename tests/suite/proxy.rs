//! `serve --proxy-protocol`: behind a load balancer, the original client's
//! 5-tuple arrives in a PROXY header before the request, and the server
//! shows both pairs: the balancer's connection (the socket) and the client's.
//! The last test puts a real HAProxy in front of two fivetuple instances
//! (it skips where HAProxy is not installed).

use std::io::{Read, Write};
use std::net::{SocketAddrV4, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{read_response, read_to_close, wait_until, Server, TempDir};
use crate::privilege;
use crate::privilege::this_test;

const WHOAMI: &[u8] = b"GET /_/whoami HTTP/1.1\r\nHost: x\r\n\r\n";

/// A version 2 PROXY header for TCP over IPv4.
fn v2_header(src: SocketAddrV4, dst: SocketAddrV4, local: bool) -> Vec<u8> {
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    h.push(if local { 0x20 } else { 0x21 });
    h.push(0x11);
    h.extend_from_slice(&12u16.to_be_bytes());
    h.extend_from_slice(&src.ip().octets());
    h.extend_from_slice(&dst.ip().octets());
    h.extend_from_slice(&src.port().to_be_bytes());
    h.extend_from_slice(&dst.port().to_be_bytes());
    h
}

fn whoami_after(server: &Server, header: &[u8], in_pieces: bool) -> String {
    let mut s = server.connect();
    let mut bytes = header.to_vec();
    bytes.extend_from_slice(WHOAMI);
    if in_pieces {
        // The header a byte at a time, then the request: nothing of the
        // request is read before the header is complete.
        for b in &bytes[..header.len()] {
            s.write_all(&[*b]).unwrap();
        }
        s.write_all(&bytes[header.len()..]).unwrap();
    } else {
        s.write_all(&bytes).unwrap();
    }
    let r = read_response(&mut s).expect("an answer");
    assert_eq!(r.status, 200);
    r.text()
}

#[test]
fn whoami_and_the_table_name_the_original_client() {
    let server = Server::start(&["--proxy-protocol", "--quiet"]);
    let v1 = b"PROXY TCP4 203.0.113.7 198.51.100.1 54321 80\r\n";
    assert!(whoami_after(&server, v1, false)
        .starts_with("tcp 198.51.100.1:80 <- 203.0.113.7:54321, token "));
    let v2 = v2_header(
        "192.0.2.10:40000".parse().unwrap(),
        "198.51.100.1:443".parse().unwrap(),
        false,
    );
    assert!(whoami_after(&server, &v2, true)
        .starts_with("tcp 198.51.100.1:443 <- 192.0.2.10:40000, token "));

    // A connection held open behind the "balancer": the table shows the
    // socket (our port, the balancer's ephemeral port) and the client.
    let mut held = server.connect();
    held.write_all(b"PROXY TCP4 203.0.113.9 198.51.100.1 61000 80\r\n")
        .unwrap();
    held.write_all(WHOAMI).unwrap();
    read_response(&mut held).unwrap();
    let mut asker = server.connect();
    asker
        .write_all(b"PROXY TCP4 203.0.113.8 198.51.100.1 62000 80\r\nGET /_/conns HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let table = read_response(&mut asker).unwrap().text();
    let me = held.local_addr().unwrap().to_string();
    let row = table.lines().find(|l| l.contains(&me)).expect(&table);
    assert!(row.contains(&server.addr.to_string()), "{row}");
    assert!(
        row.contains("client 203.0.113.9:61000 -> 198.51.100.1:80"),
        "{row}"
    );
    let json: serde_json::Value = serde_json::from_slice(&{
        let mut s = server.connect();
        s.write_all(b"PROXY UNKNOWN\r\nGET /_/conns.json HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        read_response(&mut s).unwrap().body
    })
    .unwrap();
    let row = json["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["remote"] == me.as_str())
        .unwrap()
        .clone();
    assert_eq!(row["client"]["source"], "203.0.113.9:61000");
    assert_eq!(row["client"]["destination"], "198.51.100.1:80");
}

#[test]
fn a_local_header_is_the_balancer_speaking_for_itself() {
    let server = Server::start(&["--proxy-protocol", "--quiet"]);
    let local = v2_header(
        "10.0.0.1:1".parse().unwrap(),
        "10.0.0.2:2".parse().unwrap(),
        true,
    );
    let mut s = server.connect();
    s.write_all(&local).unwrap();
    s.write_all(WHOAMI).unwrap();
    let text = read_response(&mut s).unwrap().text();
    let me = s.local_addr().unwrap().to_string();
    assert!(text.contains(&format!("<- {me}, token")), "{text}");
}

#[test]
fn no_header_or_a_bad_one_closes_the_connection_unanswered() {
    let server = Server::start(&["--proxy-protocol", "--quiet", "--header-timeout", "1"]);
    for bad in [
        &b"GET /_/hello HTTP/1.1\r\nHost: x\r\n\r\n"[..],
        b"PROXY TCP4 1.2.3.4 5.6.7.8 99999 80\r\nGET / HTTP/1.1\r\n\r\n",
        b"PROXY TCP4 1.2.3.4\n",
    ] {
        let mut s = server.connect();
        s.write_all(bad).unwrap();
        let mut answer = Vec::new();
        let _ = s.read_to_end(&mut answer);
        assert!(
            answer.is_empty(),
            "{:?} was answered",
            String::from_utf8_lossy(bad)
        );
    }
    // A header that never finishes meets the header timeout.
    let mut slow = server.connect();
    slow.write_all(b"PROXY TCP4 203.0.113.7").unwrap();
    let start = Instant::now();
    assert!(read_to_close(&mut slow).is_empty());
    assert!(start.elapsed() < Duration::from_secs(5));
    // And the server still serves proper clients.
    let v1 = b"PROXY TCP4 203.0.113.7 198.51.100.1 54321 80\r\n";
    assert!(whoami_after(&server, v1, false).contains("203.0.113.7:54321"));
}

/// HAProxy in the foreground, killed when dropped (before its
/// configuration's folder goes).
struct Haproxy {
    child: Child,
    _config: TempDir,
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn behind_haproxy_each_instance_sees_the_original_clients() {
    // Debian installs it in /usr/sbin, off a normal user's PATH.
    let haproxy = match privilege::tool("haproxy", "haproxy") {
        Ok(path) => path,
        Err(need) => return privilege::skip(this_test!(), &need),
    };
    let a = Server::start(&["--proxy-protocol", "--quiet"]);
    let b = Server::start(&["--proxy-protocol", "--quiet"]);
    // A free port for HAProxy's frontend (taken and released at once).
    let front = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let config = TempDir::new("haproxy");
    let file = config.write(
        "haproxy.cfg",
        format!(
            "global\n  maxconn 256\n  nbthread 1\n\
             defaults\n  mode tcp\n  timeout connect 5s\n  timeout client 30s\n  timeout server 30s\n\
             frontend fe\n  bind {front}\n  default_backend be\n\
             backend be\n  balance roundrobin\n\
             \x20 server a {} send-proxy-v2\n  server b {} send-proxy-v2\n",
            a.addr, b.addr
        ),
    );
    let haproxy = Haproxy {
        child: Command::new(haproxy)
            .args(["-db", "-f"])
            .arg(&file)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("haproxy starts"),
        _config: config,
    };
    wait_until(Duration::from_secs(10), || {
        TcpStream::connect(front).is_ok()
    });

    // Four clients through the balancer, held open; each asks who it is.
    let mut clients: Vec<TcpStream> = Vec::new();
    for _ in 0..4 {
        let mut s = TcpStream::connect(front).unwrap();
        s.write_all(WHOAMI).unwrap();
        let text = read_response(&mut s).unwrap().text();
        let me = s.local_addr().unwrap();
        // The server names the client's own port, not HAProxy's.
        assert!(
            text.starts_with(&format!("tcp {front} <- {me}, token ")),
            "{text} (client {me})"
        );
        clients.push(s);
    }
    // Each instance holds some of them (round robin: two each, with one
    // HAProxy thread), and its table shows both pairs.
    let mut held = 0;
    for server in [&a, &b] {
        let table: serde_json::Value = serde_json::from_slice(&server_table(server)).unwrap();
        let proxied: Vec<&serde_json::Value> = table["rows"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| !r["client"].is_null())
            .collect();
        assert!(!proxied.is_empty(), "{table}");
        held += proxied.len();
        for row in proxied {
            let source = row["client"]["source"].as_str().unwrap();
            assert!(
                clients
                    .iter()
                    .any(|c| c.local_addr().unwrap().to_string() == source),
                "{source} is none of the clients"
            );
            assert_eq!(row["local"], server.addr.to_string());
            assert_eq!(row["client"]["destination"], front.to_string());
        }
    }
    assert_eq!(held, 4, "every client is on one instance or the other");
    drop(haproxy);
}

/// The table, asked directly (with a header naming ourselves, as the
/// listener expects one on every connection).
fn server_table(server: &Server) -> Vec<u8> {
    let mut s = server.connect();
    s.write_all(b"PROXY UNKNOWN\r\nGET /_/conns.json HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    read_response(&mut s).unwrap().body
}
