//! `serve --workers N`: N reactors, each with its own listening socket on
//! the same port (SO_REUSEPORT), the kernel spreading connections across
//! them; `/_/whoami` and the tables name the worker; `/_/conns?workers`
//! gathers every table; a signal stops them all.

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

use common::{read_response, wait_until, Server};

const WHOAMI: &[u8] = b"GET /_/whoami HTTP/1.1\r\nHost: x\r\n\r\n";

/// The worker named at the end of a `/_/whoami` answer.
fn worker_of(answer: &str) -> usize {
    answer
        .trim_end()
        .rsplit_once(", worker ")
        .and_then(|(_, w)| w.parse().ok())
        .unwrap_or_else(|| panic!("no worker in {answer:?}"))
}

#[test]
fn four_workers_share_one_port_and_every_one_gets_connections() {
    let mut server = Server::start(&["--workers", "4", "--quiet"]);
    let mut clients: Vec<TcpStream> = (0..200).map(|_| server.connect()).collect();
    let mut per_worker: BTreeMap<usize, usize> = BTreeMap::new();
    for c in &mut clients {
        c.write_all(WHOAMI).unwrap();
        let text = read_response(c).unwrap().text();
        // The same port for all, each client's own ephemeral port.
        let me = c.local_addr().unwrap();
        assert!(
            text.starts_with(&format!("tcp {} <- {me}, token ", server.addr)),
            "{text}"
        );
        *per_worker.entry(worker_of(&text)).or_default() += 1;
    }
    eprintln!("200 connections over 4 workers: {per_worker:?}");
    assert_eq!(per_worker.keys().copied().collect::<Vec<_>>(), [0, 1, 2, 3]);

    // Every worker's table, gathered: together they hold every client.
    wait_until(Duration::from_secs(10), || {
        let all: serde_json::Value =
            serde_json::from_slice(&server.get("/_/conns.json?workers&all").body).unwrap();
        let tables = all["workers"].as_array().unwrap();
        let open: u64 = tables
            .iter()
            .filter_map(|w| w["table"]["open"].as_u64())
            .sum();
        tables.len() == 4 && open == 201 // the clients and the asker
    });
    let text = server.get("/_/conns?workers").text();
    assert_eq!(text.matches("--- worker ").count(), 4, "{text}");
    assert!(text.contains("(yours, live)"));

    server.signal(libc::SIGTERM);
    assert!(server.wait_exit(Duration::from_secs(10)).success());
    let summary = server.stdout().last().cloned().unwrap_or_default();
    assert!(
        summary.starts_with("shut down: ") && summary.contains("connections accepted"),
        "{summary}"
    );
    let accepted: u64 = summary["shut down: ".len()..]
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap();
    assert!(
        accepted >= 200,
        "{summary}: the workers' counts are added up"
    );
}

#[test]
fn workers_zero_means_one_per_core() {
    let server = Server::start(&["--workers", "0", "--pin", "--quiet"]);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let text = server.get("/_/conns?workers").text();
    if cores > 1 {
        assert_eq!(text.matches("--- worker ").count(), cores, "{text}");
    }
    assert_eq!(server.get("/_/hello").body, b"Hello, World!");
}
