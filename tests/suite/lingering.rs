//! Lingering close: answers survive the server's decision to close.
//!
//! When the server closes a connection whose client is still sending (a bad
//! request behind a good one, a body too large to accept), closing at once
//! makes the kernel answer the unread bytes with a reset, and the reset
//! throws away every byte of the earlier answers that the client has not
//! read yet. So the server shuts its write side, reads and discards for a
//! bounded time, and only then closes. These tests make the client read
//! late, after the server has decided to close, and check that every answer
//! arrives whole and the stream ends with a clean EOF.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

use crate::common::{read_response, wait_until, Server, TempDir};

/// The file whose answer must survive. Larger than one turn's output (so it
/// streams) and small enough to sit whole in the client's receive buffer
/// and the server's send buffer on any machine (a window of 200 KiB even
/// where `net.core.rmem_max` keeps its small default), so that the server
/// reaches its close while the client has read nothing.
const BIG: usize = 160 * 1024;

/// A served directory holding a file of `BIG` bytes, removed when dropped.
fn site(name: &str) -> TempDir {
    let dir = TempDir::new(name);
    dir.write("big.bin", vec![b'b'; BIG]);
    dir
}

/// The phase the server's table shows for the connection from `client`,
/// or None once the server no longer holds it.
fn phase_of(server: &Server, client: &TcpStream) -> Option<String> {
    let me = client.local_addr().unwrap().to_string();
    let table: serde_json::Value =
        serde_json::from_slice(&server.get("/_/conns.json?all").body).unwrap();
    table["rows"]
        .as_array()?
        .iter()
        .find(|r| r["remote"] == me.as_str())
        .map(|r| r["phase"].as_str().unwrap_or("").to_string())
}

/// Reads the answers owed, then expects a clean end of stream, not a reset.
fn read_owed_answers(client: &mut TcpStream, second_status: u16) {
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let first = read_response(client).expect("the file's answer");
    assert_eq!(first.status, 200);
    assert_eq!(first.body.len(), BIG, "the file's answer was cut short");
    let second = read_response(client).expect("the refusal");
    assert_eq!(second.status, second_status);
    let mut rest = Vec::new();
    client
        .read_to_end(&mut rest)
        .expect("a clean end of stream, not a reset");
    assert!(rest.is_empty());
}

#[test]
fn a_bad_request_behind_a_download_does_not_reset_the_download() {
    let site = site("linger-bad");
    let server = Server::start(&["--quiet", "--dir", site.arg()]);
    let mut client = server.connect_roomy();
    let mut bytes = b"GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\nBAD LINE HERE\r\n".to_vec();
    bytes.extend(std::iter::repeat_n(b'x', 64 * 1024));
    client.write_all(&bytes).unwrap();
    // The server answers the download, refuses the bad line, and decides to
    // close while our 64 KiB of x are still unread on its side.
    wait_until(Duration::from_secs(10), || {
        phase_of(&server, &client).as_deref() == Some("linger")
    });
    read_owed_answers(&mut client, 400);
}

#[test]
fn a_refused_body_still_being_sent_does_not_reset_the_answers_before_it() {
    let site = site("linger-body");
    let server = Server::start(&["--quiet", "--dir", site.arg()]);
    let mut client = server.connect_roomy();
    client
        .write_all(
            b"GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n\
              POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 10000000\r\n\r\n",
        )
        .unwrap();
    // The body keeps coming from another thread while we wait to read.
    let mut sender = client.try_clone().unwrap();
    let body = thread::spawn(move || {
        let chunk = vec![b'y'; 64 * 1024];
        let mut sent = 0;
        while sent < 10_000_000 {
            match sender.write(&chunk[..chunk.len().min(10_000_000 - sent)]) {
                Ok(n) => sent += n,
                Err(_) => break,
            }
        }
        sent
    });
    wait_until(Duration::from_secs(10), || {
        phase_of(&server, &client).as_deref() == Some("linger")
    });
    read_owed_answers(&mut client, 413);
    let sent = body.join().unwrap();
    assert_eq!(
        sent, 10_000_000,
        "the server reset the body before it was all sent"
    );
}

#[test]
fn a_lingering_client_that_goes_quiet_is_closed_within_the_quiet_limit() {
    let server = Server::start(&["--quiet"]);
    let mut client = server.connect();
    // A body refused at its head, of which more is sent than one read takes.
    let mut bytes = b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 10000000\r\n\r\n".to_vec();
    bytes.extend(std::iter::repeat_n(b'y', 256 * 1024));
    client.write_all(&bytes).unwrap();
    wait_until(Duration::from_secs(10), || {
        phase_of(&server, &client).as_deref() == Some("linger")
    });
    let started = Instant::now();
    // The table calls it what netstat would: our FIN is out, theirs is not.
    let table = server.get("/_/conns").text();
    let me = client.local_addr().unwrap().to_string();
    let row = table.lines().find(|l| l.contains(&me)).unwrap();
    assert!(row.contains("FIN_WAIT2"), "{row}");
    // We read the 413 and its FIN, and then neither send nor close: the
    // server gives up after its quiet limit.
    assert_eq!(read_response(&mut client).unwrap().status, 413);
    wait_until(Duration::from_secs(15), || {
        phase_of(&server, &client).is_none()
    });
    let lingered = started.elapsed();
    assert!(
        lingered <= fivetuple::connection::LINGER_QUIET + Duration::from_secs(2),
        "lingered {lingered:?}"
    );
}

#[test]
fn a_download_cut_off_by_the_shutdown_grace_is_not_counted_as_served() {
    let dir = TempDir::new("grace");
    dir.write("huge.bin", vec![b'h'; 32 << 20]);
    let mut server = Server::start(&["--quiet", "--shutdown-grace", "0.3", "--dir", dir.arg()]);
    // A download that cannot finish: the client reads nothing.
    let mut stuck = server.connect_with_receive_buffer(16 * 1024);
    stuck
        .write_all(b"GET /huge.bin HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    wait_until(Duration::from_secs(10), || {
        phase_of(&server, &stuck).as_deref() == Some("writing")
    });
    let before: serde_json::Value =
        serde_json::from_slice(&server.get("/_/conns.json").body).unwrap();
    server.signal(libc::SIGTERM);
    assert!(server.wait_exit(Duration::from_secs(10)).success());
    // Served: what the last table counted, and that table's own answer; the
    // download the grace period cut off is not among them.
    let want = format!(
        "shut down: {} connections accepted, {} requests served",
        before["accepted"],
        before["served"].as_u64().unwrap() + 1
    );
    assert_eq!(server.stdout().last(), Some(&want));
}
