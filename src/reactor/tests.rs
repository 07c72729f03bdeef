//! The loop's own rules, tested on a reactor driven by hand: events for
//! closed keys, the ready list, the accept budget, the timer heap, and
//! the lingering count, reclaiming at the cap.

use super::*;
use crate::http;
use crate::listener::ListenOptions;
use crate::sink::Output;
use std::io::Write;
use std::time::Duration;

fn reactor() -> Reactor {
    reactor_holding(100)
}

fn reactor_holding(max_conns: usize) -> Reactor {
    Reactor::bind(ServerConfig {
        listen: ListenOptions {
            addr: "127.0.0.1:0".parse().unwrap(),
            backlog: 128,
            ipv6_only: false,
            reuse_port: false,
        },
        http: http::Config::default(),
        max_conns,
        shutdown_grace: Duration::from_secs(1),
        timeouts: Timeouts::default(),
        udp: false,
        proxy_protocol: false,
        output: Output::default(),
    })
    .unwrap()
}

/// Accepts until the slab holds `n` entries (the client's connect may
/// return a moment before the kernel queues the connection for accept).
fn accept_until(r: &mut Reactor, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while r.conns.len() < n {
        assert!(Instant::now() < deadline, "connection not accepted");
        r.accept_some();
    }
}

fn key_of(r: &Reactor, client: &std::net::TcpStream) -> usize {
    let me = client.local_addr().unwrap();
    r.conns
        .iter()
        .find(|(_, c)| c.peer().remote == me)
        .map(|(k, _)| k)
        .unwrap()
}

/// What `wait` does between two batches of events, without waiting.
fn next_turn(r: &mut Reactor) {
    r.turn += 1;
    r.now = Instant::now();
}

#[test]
fn an_event_for_a_closed_token_never_reaches_the_connection_after_it() {
    let mut r = reactor();
    let a = std::net::TcpStream::connect(r.local_addr()).unwrap();
    accept_until(&mut r, 1);
    let key_a = key_of(&r, &a);
    // Something earlier in this turn closed A, which frees its key at once...
    r.close(key_a, CloseReason::Done);
    assert!(
        r.conns.get(key_a).is_none(),
        "closing releases the slot now"
    );
    // ...and then the listener's event accepted B in the same turn.
    let mut b = std::net::TcpStream::connect(r.local_addr()).unwrap();
    accept_until(&mut r, 1);
    let key_b = key_of(&r, &b);
    assert_eq!(key_a, key_b, "the slab hands the freed key to B");
    // B's request is in B's socket, waiting for B's own event.
    b.write_all(b"GET /_/hello HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    // A's event, still queued in this turn, arrives now: it must not touch B.
    let stale = Readiness {
        readable: true,
        hangup: true,
        writable: true,
        error: false,
    };
    r.on_connection_event(key_a, stale);
    assert_eq!(
        r.conns[key_b].counters(),
        (0, 0, 0),
        "a stale event read B's socket"
    );
    // In the next turn, events for that key are B's own, and reach B.
    next_turn(&mut r);
    let deadline = Instant::now() + Duration::from_secs(10);
    while r.conns[key_b].counters().2 == 0 {
        assert!(Instant::now() < deadline, "B's request was not answered");
        r.on_connection_event(
            key_b,
            Readiness {
                readable: true,
                hangup: false,
                writable: false,
                error: false,
            },
        );
    }
    assert_eq!(r.conns[key_b].counters().2, 1);
    drop(a);
}

#[test]
fn the_ready_list_skips_a_key_reused_by_a_newer_connection() {
    let mut r = reactor();
    let a = std::net::TcpStream::connect(r.local_addr()).unwrap();
    accept_until(&mut r, 1);
    let key = key_of(&r, &a);
    r.schedule(key);
    r.close(key, CloseReason::Done);
    let b = std::net::TcpStream::connect(r.local_addr()).unwrap();
    accept_until(&mut r, 1);
    assert_eq!(key_of(&r, &b), key);
    r.run_ready();
    assert!(
        r.ready.is_empty(),
        "A's entry was dropped, and B was never scheduled"
    );
    assert!(r.conns[key].schedule(), "B was not on the ready list");
}

#[test]
fn accepts_stop_at_the_budget_and_the_listener_waits_on_the_ready_list() {
    let mut r = reactor();
    let clients: Vec<_> = (0..ACCEPTS_PER_TURN + 5)
        .map(|_| std::net::TcpStream::connect(r.local_addr()).unwrap())
        .collect();
    // A connect returns once the handshake is done, and the kernel has
    // then queued the connection for accept: all of them wait now.
    let deadline = Instant::now() + Duration::from_secs(10);
    r.accept_some();
    assert_eq!(
        r.conns.len(),
        ACCEPTS_PER_TURN,
        "one turn took more (or less) than its budget"
    );
    assert!(r.listener_ready, "the rest must wait on the ready list");
    while r.conns.len() < clients.len() {
        assert!(
            Instant::now() < deadline,
            "the ready list did not accept the rest"
        );
        r.run_ready();
    }
}

#[test]
fn with_nobody_watching_connections_come_and_go_without_the_event_machinery() {
    let mut r = reactor();
    for _ in 0..100 {
        let c = std::net::TcpStream::connect(r.local_addr()).unwrap();
        accept_until(&mut r, 1);
        let key = key_of(&r, &c);
        r.close(key, CloseReason::Done);
        r.publish();
    }
    assert!(
        !r.live.watched(),
        "an event hub or a trace exists for nobody"
    );
    assert_eq!(r.live.next_tick(), None, "the loop wakes for nobody");
}

#[test]
fn the_timer_heap_stays_proportional_to_the_open_connections() {
    let mut r = reactor();
    for _ in 0..3000 {
        let c = std::net::TcpStream::connect(r.local_addr()).unwrap();
        accept_until(&mut r, 1);
        let key = key_of(&r, &c);
        r.close(key, CloseReason::Done);
        r.tick();
    }
    assert!(
        r.timers.len() <= 1024 + 1,
        "{} timer entries for no connection",
        r.timers.len()
    );
}

/// Serves the connection of `client` until `done` says so, as readable
/// events would.
fn serve_until(r: &mut Reactor, key: usize, mut done: impl FnMut(&Reactor) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done(r) {
        assert!(Instant::now() < deadline, "the condition never came");
        let readable = Readiness {
            readable: true,
            hangup: false,
            writable: true,
            error: false,
        };
        r.on_connection_event(key, readable);
    }
}

/// Both ways into a lingering close count: the client still sending
/// after our last answer, and a refused request whose rest may still be
/// on its way though nothing more has come yet. (The second went
/// uncounted while each call site counted for itself.)
#[test]
fn both_ways_into_a_lingering_close_are_counted() {
    use crate::connection::Reading;
    let mut r = reactor();
    // A request that cannot be framed: refused with a 400, and what
    // the client sends after it may still be on its way.
    let mut refused = std::net::TcpStream::connect(r.local_addr()).unwrap();
    refused
        .write_all(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 99999999\r\n\r\n")
        .unwrap();
    accept_until(&mut r, 1);
    let key = key_of(&r, &refused);
    serve_until(&mut r, key, |r| {
        matches!(r.conns[key].reading(), Reading::Leftovers(_))
    });
    assert_eq!(r.live.metrics.lingering, 1, "the quiet way was not counted");
    // A client that sends more after `Connection: close`: more than one
    // read takes, so some is still unread when the answer is out.
    let mut chatty = std::net::TcpStream::connect(r.local_addr()).unwrap();
    let mut request = b"GET /_/hello HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".to_vec();
    request.resize(READ_BUFFER + 4096, b'x');
    chatty.write_all(&request).unwrap();
    accept_until(&mut r, 2);
    let key = key_of(&r, &chatty);
    serve_until(&mut r, key, |r| {
        r.conns
            .get(key)
            .is_some_and(|c| matches!(c.reading(), Reading::Leftovers(_)))
    });
    assert_eq!(
        r.live.metrics.lingering, 2,
        "the chatty way was not counted"
    );
}

/// At `--max-conns`, each newcomer takes the place of the connection that
/// has been idle longest, through the queue that exists only while the
/// server is full; and the queue stays proportional to the connections.
#[test]
fn at_the_cap_the_idlest_connection_makes_room_for_a_newcomer() {
    const CAP: usize = 4;
    let mut r = reactor_holding(CAP);
    let mut clients: Vec<(std::net::TcpStream, usize)> = Vec::new();
    let ask = |r: &mut Reactor, clients: &mut Vec<(std::net::TcpStream, usize)>| {
        let mut c = std::net::TcpStream::connect(r.local_addr()).unwrap();
        c.write_all(b"GET /_/hello HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
        let open = r.conns.len();
        let deadline = Instant::now() + Duration::from_secs(10);
        // At the cap the slab keeps its size: one out, one in.
        while !r
            .conns
            .iter()
            .any(|(_, conn)| conn.peer().remote == c.local_addr().unwrap())
        {
            assert!(Instant::now() < deadline, "connection not accepted");
            r.accept_some();
        }
        assert!(r.conns.len() <= CAP && r.conns.len() >= open.min(CAP));
        let key = key_of(r, &c);
        serve_until(r, key, |r| r.conns[key].counters().2 == 1);
        next_turn(r);
        clients.push((c, key));
    };
    for _ in 0..CAP {
        ask(&mut r, &mut clients);
    }
    assert_eq!(r.reclaim.len(), 0, "no queue while there is room");
    for round in 0..200 {
        ask(&mut r, &mut clients);
        // The oldest of the idle clients was closed to make room.
        let (oldest, key) = &clients[round];
        let peer = oldest.local_addr().unwrap();
        assert!(
            r.conns.get(*key).is_none_or(|c| c.peer().remote != peer),
            "round {round}: the idlest connection is still open"
        );
        r.tick();
        assert!(r.reclaim.len() <= 2 * CAP + 1024);
    }
}
