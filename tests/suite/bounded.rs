//! Answers whose size the client chooses are made a slice per turn: the
//! whole connection table (`/_/conns?all`) comes in chunks, complete and
//! well framed, and clients asking for it never hold up anyone else.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::common::{read_response_to, Server};
use crate::privilege::this_test;
use crate::{common, privilege};

/// `n` idle connections, once the server holds them all.
fn hold(server: &Server, n: usize) -> Vec<TcpStream> {
    let held: Vec<TcpStream> = (0..n).map(|_| server.connect()).collect();
    common::wait_until(Duration::from_secs(20), || {
        server
            .get("/_/metrics")
            .text()
            .contains(&format!("fivetuple_connections_open {}", n + 1))
    });
    held
}

/// A chunked body put back together, with the number of chunks.
fn dechunk(mut body: &[u8]) -> (Vec<u8>, usize) {
    let mut whole = Vec::new();
    let mut chunks = 0;
    loop {
        let line_end = body
            .windows(2)
            .position(|w| w == b"\r\n")
            .expect("a chunk-size line");
        let size = usize::from_str_radix(std::str::from_utf8(&body[..line_end]).unwrap(), 16)
            .expect("a hexadecimal chunk size");
        body = &body[line_end + 2..];
        if size == 0 {
            assert_eq!(body, b"\r\n", "the body ends after the last chunk");
            return (whole, chunks);
        }
        whole.extend_from_slice(&body[..size]);
        assert_eq!(&body[size..size + 2], b"\r\n", "a chunk ends with CRLF");
        body = &body[size + 2..];
        chunks += 1;
    }
}

/// Sends `request` on a new connection and reads until the server closes.
fn exchange(server: &Server, request: &str) -> (TcpStream, Vec<u8>) {
    let mut s = server.connect();
    s.write_all(request.as_bytes()).unwrap();
    let mut all = Vec::new();
    s.read_to_end(&mut all).unwrap();
    (s, all)
}

fn split(all: &[u8]) -> (String, &[u8]) {
    let end = all
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a head");
    (
        String::from_utf8_lossy(&all[..end]).into_owned(),
        &all[end + 4..],
    )
}

#[test]
fn a_long_table_comes_in_slices_and_whole() {
    // Enough rows for several slices; at the least, more than the default
    // view of 100. The few descriptors beyond are the askers'.
    let Some(lent) = privilege::descriptors(this_test!(), 1510, 310) else {
        return;
    };
    let n = lent.count() - 10;
    let server = Server::start(&["--quiet"]);
    let held = hold(&server, n);

    // HTTP/1.1: chunked, several chunks, every row.
    let (s, all) = exchange(
        &server,
        "GET /_/conns.json?all HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    );
    let me = s.local_addr().unwrap().to_string();
    let (head, body) = split(&all);
    assert!(head.contains("Transfer-Encoding: chunked"), "{head}");
    assert!(!head.contains("Content-Length"), "{head}");
    let (json, chunks) = dechunk(body);
    assert!(chunks > 2, "{chunks} chunks: not sent in slices");
    let table: serde_json::Value = serde_json::from_slice(&json).expect("the whole table is JSON");
    let rows = table["rows"].as_array().unwrap();
    // The listener, the held connections, and the asker's own.
    assert_eq!(
        rows.len(),
        n + 2,
        "{}",
        &String::from_utf8_lossy(&json)[..300]
    );
    assert_eq!(table["hidden"], 0);
    let mine: Vec<_> = rows.iter().filter(|r| r["you"] == true).collect();
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0]["remote"], me.as_str());

    // HTTP/1.0 has no chunks: the close ends the body.
    let (_, all) = exchange(&server, "GET /_/conns?all HTTP/1.0\r\n\r\n");
    let (head, body) = split(&all);
    assert!(head.contains("Connection: close"), "{head}");
    assert!(!head.contains("Transfer-Encoding"), "{head}");
    let text = String::from_utf8_lossy(body);
    let rows = text.lines().filter(|l| l.contains(" ESTABLISHED ")).count();
    assert_eq!(rows, n + 1, "every connection's row, in the text table");
    assert!(text
        .lines()
        .last()
        .unwrap_or("")
        .contains("slice of rows per turn"));

    // HEAD: the same head, no body, and the connection stays usable.
    let mut s = server.connect();
    s.write_all(
        b"HEAD /_/conns?all HTTP/1.1\r\nHost: t\r\n\r\nGET /_/hello HTTP/1.1\r\nHost: t\r\n\r\n",
    )
    .unwrap();
    let head = read_response_to(&mut s, true).expect("the HEAD's answer");
    assert_eq!(head.header("transfer-encoding"), Some("chunked"));
    let hello = common::read_response(&mut s).expect("the next answer");
    assert_eq!(hello.text(), "Hello, World!");

    // The default table is still one piece with a length.
    let r = server.get("/_/conns");
    assert!(r.header("content-length").is_some());
    drop(held);
}

#[test]
fn askers_of_the_whole_table_do_not_hold_up_anyone_else() {
    // The held connections, 100 askers and a probe.
    let Some(lent) = privilege::descriptors(this_test!(), 3110, 510) else {
        return;
    };
    let n = lent.count() - 110;
    let server = Server::start(&["--quiet"]);
    let held = hold(&server, n);
    // Askers that never read their answer: each may hold a slice and the
    // kernel's buffer, not its whole table.
    let askers: Vec<TcpStream> = (0..100)
        .map(|_| {
            let mut s = server.connect();
            s.write_all(b"GET /_/conns?all HTTP/1.1\r\nHost: t\r\n\r\n")
                .unwrap();
            s
        })
        .collect();
    // Meanwhile another client is answered, again and again.
    let mut probe = server.connect();
    let mut slowest = Duration::ZERO;
    for _ in 0..50 {
        let asked = Instant::now();
        probe
            .write_all(b"GET /_/hello HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
        let r = common::read_response(&mut probe).expect("hello");
        assert_eq!(r.status, 200);
        slowest = slowest.max(asked.elapsed());
    }
    // Generous for a shared machine; built whole, the tables held the loop
    // for seconds.
    assert!(
        slowest < Duration::from_secs(2),
        "a hello waited {slowest:?}"
    );
    let metrics = server.get("/_/metrics").text();
    assert!(metrics.contains("fivetuple_connections_open"), "{metrics}");
    drop(askers);
    drop(held);
}

#[test]
fn subscribers_that_never_read_cannot_keep_a_viewer_out() {
    let server = Server::start(&["--quiet"]);
    // Every slot taken by connections that subscribe and never read.
    let hogs: Vec<TcpStream> = (0..32)
        .map(|_| {
            let mut s = server.connect();
            s.write_all(b"GET /_/events HTTP/1.1\r\nHost: t\r\n\r\n")
                .unwrap();
            s
        })
        .collect();
    common::wait_until(Duration::from_secs(20), || {
        server
            .get("/_/metrics")
            .text()
            .contains("fivetuple_event_subscribers 32")
    });
    // A viewer still gets its stream, at once, not a 503.
    let mut viewers = Vec::new();
    for _ in 0..3 {
        let mut viewer = server.connect();
        viewer
            .write_all(b"GET /_/events HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            assert_eq!(viewer.read(&mut byte).unwrap(), 1, "closed before its head");
            head.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&head);
        assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
        assert!(head.contains("text/event-stream"), "{head}");
        viewers.push(viewer);
    }
    let metrics = server.get("/_/metrics").text();
    assert!(
        metrics.contains("fivetuple_event_slots_taken_back_total 3"),
        "{metrics}"
    );
    assert!(
        metrics.contains("fivetuple_event_subscribers 32"),
        "{metrics}"
    );
    drop(hogs);
}

#[test]
fn a_big_directory_is_listed_a_slice_at_a_time_and_whole() {
    let dir = common::TempDir::new("bounded-listing");
    for i in 0..5000 {
        std::fs::write(dir.join(&format!("file-{i:05}.txt")), b"x").unwrap();
    }
    std::fs::create_dir(dir.join("small")).unwrap();
    for name in ["b.txt", "A.txt", "c.txt"] {
        std::fs::write(dir.join(&format!("small/{name}")), b"x").unwrap();
    }
    let server = Server::start(&["--quiet", "--dir", dir.arg()]);

    let (_, all) = exchange(
        &server,
        "GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    );
    let (head, body) = split(&all);
    assert!(head.contains("Transfer-Encoding: chunked"), "{head}");
    let (page, chunks) = dechunk(body);
    assert!(chunks > 2, "{chunks} chunks: not sent in slices");
    let page = String::from_utf8(page).unwrap();
    let listed = page.matches("<a href=\"file-").count();
    assert_eq!(listed, 5000, "every entry, once");
    assert!(
        page.contains("not sorted by name"),
        "a big directory says why it is not sorted"
    );
    assert!(page.trim_end().ends_with("</html>"));

    // A small one is sorted as python sorts it, and says nothing of order.
    let (_, all) = exchange(
        &server,
        "GET /small/ HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    );
    let (page, _) = dechunk(split(&all).1);
    let page = String::from_utf8(page).unwrap();
    let (a, b, c) = (
        page.find("A.txt").unwrap(),
        page.find("b.txt").unwrap(),
        page.find("c.txt").unwrap(),
    );
    assert!(a < b && b < c, "sorted by name, ignoring case");
    assert!(!page.contains("not sorted"));

    // HEAD reads nothing of the directory and sends no body.
    let mut s = server.connect();
    s.write_all(b"HEAD / HTTP/1.1\r\nHost: t\r\n\r\nGET /_/hello HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let head = read_response_to(&mut s, true).expect("the HEAD's answer");
    assert_eq!(head.status, 200);
    assert_eq!(
        common::read_response(&mut s).unwrap().text(),
        "Hello, World!"
    );
}
