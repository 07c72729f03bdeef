//! docs/reactor-trace.md walks through a real `serve --trace` of two
//! clients. This test has two clients do the same things, one step at a
//! time (waiting for the server to print each turn before the next step),
//! and checks that the trace has the page's lines, in the page's order,
//! once numbers (ports, sizes, durations) are set aside. So the page cannot
//! go stale when the trace or the reactor changes.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::common::{read_response, wait_until, Server};

/// The lines of every ```trace block of the page, in order, blank lines included.
fn doc_trace() -> Vec<String> {
    let doc = std::fs::read_to_string("docs/reactor-trace.md").unwrap();
    let mut lines = Vec::new();
    let mut inside = false;
    for line in doc.lines() {
        if line.starts_with("```") {
            inside = line == "```trace";
            continue;
        }
        if inside {
            lines.push(line.to_string());
        }
    }
    lines
}

/// A line with every number, and the unit after one, replaced by `9`.
fn shape(line: &str) -> String {
    let mut out = Vec::new();
    let mut words = line.split_whitespace().peekable();
    while let Some(word) = words.next() {
        if !word.starts_with(|c: char| c.is_ascii_digit()) {
            out.push(word.to_string());
            continue;
        }
        let mut tail: String = word
            .chars()
            .rev()
            .take_while(|c| !c.is_ascii_alphanumeric() && *c != '*')
            .collect();
        if let Some(unit) = words.next_if(|w| {
            ["µs", "ms", "s"].contains(&w.trim_end_matches(|c: char| !c.is_alphabetic()))
        }) {
            tail = unit
                .chars()
                .rev()
                .take_while(|c| !c.is_alphabetic())
                .collect();
        }
        out.push(format!("9{}", tail.chars().rev().collect::<String>()));
    }
    format!(
        "{}{}",
        " ".repeat(line.len() - line.trim_start().len()),
        out.join(" ")
    )
}

/// The trace printed so far (stdout without the `listening on` line).
fn trace(server: &Server) -> Vec<String> {
    server
        .stdout()
        .into_iter()
        .filter(|l| !l.starts_with("listening on"))
        .collect()
}

/// Waits until the server has printed `n` whole turns.
fn wait_for_turns(server: &Server, n: usize) {
    wait_until(Duration::from_secs(10), || {
        trace(server).iter().filter(|l| l.is_empty()).count() >= n
    });
}

#[test]
fn two_clients_print_the_trace_the_page_walks_through() {
    let server = Server::start(&["--trace", "--quiet"]);
    // Client A connects, and says nothing yet.
    let mut a = TcpStream::connect(server.addr).unwrap();
    a.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    wait_for_turns(&server, 2);
    // A asks for /_/hello and keeps the connection.
    a.write_all(b"GET /_/hello HTTP/1.1\r\nHost: a\r\n\r\n")
        .unwrap();
    wait_for_turns(&server, 3);
    read_response(&mut a).unwrap();
    // Client B connects, asks who it is, and says it will close.
    let mut b = TcpStream::connect(server.addr).unwrap();
    b.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    wait_for_turns(&server, 5);
    b.write_all(b"GET /_/whoami HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n")
        .unwrap();
    wait_for_turns(&server, 6);
    let mut answer = Vec::new();
    b.read_to_end(&mut answer).unwrap();
    // A leaves.
    drop(a);
    wait_for_turns(&server, 7);
    drop(b);

    let actual = trace(&server);
    let expected = doc_trace();
    assert!(expected.len() > 10, "the page lost its trace");
    let shapes = |lines: &[String]| lines.iter().map(|l| shape(l)).collect::<Vec<_>>();
    assert_eq!(
        shapes(&actual),
        shapes(&expected),
        "the trace printed:\n{}",
        actual.join("\n")
    );
}

#[test]
fn shapes_set_aside_numbers_and_their_units() {
    assert_eq!(
        shape("turn 3 · slept 1.51 s · woke for 1 event"),
        "turn 9 · slept 9 · woke for 9 event"
    );
    assert_eq!(shape("slept 785.9 ms · x"), "slept 9 · x");
    assert_eq!(
        shape("  LISTENER   readable: accepted token 0 from 127.0.0.1:48650, nothing"),
        "  LISTENER readable: accepted token 9 from 9, nothing"
    );
    assert_eq!(
        shape("  reaped     token 1 · 1 open"),
        "  reaped token 9 · 9 open"
    );
    assert_ne!(shape("read 34 bytes"), shape("wrote 34 bytes"));
}
