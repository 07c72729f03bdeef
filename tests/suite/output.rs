//! The server's own output never stops it: a reader of its log or trace
//! that stops reading costs dropped lines (counted, and said in the next
//! line that gets out), never a client's answer. And the access log is a
//! format log tools read.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, ChildStderr, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common;
use crate::common::{bin, read_response, wait_until, Server, TempDir};

/// A server whose stdout and stderr are pipes that nobody reads (after its
/// `listening on` line), as with `fivetuple serve 2>&1 | less` left alone.
struct Stalled {
    child: Child,
    addr: SocketAddr,
    stdout: BufReader<ChildStdout>,
    stderr: Option<ChildStderr>,
}

impl Stalled {
    fn start(extra: &[&str]) -> Stalled {
        let mut child = Command::new(bin())
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn fivetuple");
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let stderr = child.stderr.take();
        let mut line = String::new();
        stdout.read_line(&mut line).expect("the listening line");
        let addr = line
            .strip_prefix("listening on ")
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("not a listening line: {line:?}"));
        Stalled {
            child,
            addr,
            stdout,
            stderr,
        }
    }

    fn connect(&self) -> TcpStream {
        let s = TcpStream::connect(self.addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        s
    }
}

impl Drop for Stalled {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends `n` keep-alive requests on one connection, `batch` at a time
/// (pipelined), and reads every answer.
fn hammer(s: &mut TcpStream, n: usize, batch: usize) {
    let requests: Vec<u8> =
        b"GET /_/hello HTTP/1.1\r\nHost: t\r\nUser-Agent: hammer\r\n\r\n".repeat(batch);
    for _ in 0..n / batch {
        s.write_all(&requests).unwrap();
        for _ in 0..batch {
            let r = read_response(s).expect("an answer while the log is stalled");
            assert_eq!(r.status, 200);
        }
    }
}

/// `fivetuple_output_lines_dropped_total{output="NAME"}` from /_/metrics.
fn dropped(addr: SocketAddr, output: &str) -> u64 {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(b"GET /_/metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    let r = read_response(&mut s).expect("metrics");
    let needle = format!("fivetuple_output_lines_dropped_total{{output=\"{output}\"}} ");
    r.text()
        .lines()
        .find_map(|l| l.strip_prefix(needle.as_str()))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {needle} in:\n{}", r.text()))
}

#[test]
fn a_reader_of_the_log_that_stops_cannot_stop_the_server() {
    let mut server = Stalled::start(&[]);
    // Some 40,000 access-log lines: far more than the pipe (64 KiB) and the
    // sink's buffer (1 MiB) hold. Writing them from the loop, the server
    // froze after some 800.
    let mut busy = server.connect();
    hammer(&mut busy, 40_000, 100);
    // Another client is still answered, and at once.
    let mut other = server.connect();
    let asked = Instant::now();
    other
        .write_all(b"GET /_/hello HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let r = read_response(&mut other).expect("an answer");
    assert_eq!(r.status, 200);
    assert!(
        asked.elapsed() < Duration::from_secs(10),
        "answered only after {:?}",
        asked.elapsed()
    );
    let lost = dropped(server.addr, "stderr");
    assert!(lost > 0, "40,000 lines fit nowhere, yet none was dropped");
    // The reader comes back: the first line that gets out after the gap
    // says how many went missing.
    let mut stderr = server.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut text = Vec::new();
        let mut buf = [0; 65536];
        while let Ok(n) = stderr.read(&mut buf) {
            if n == 0 {
                break;
            }
            text.extend_from_slice(&buf[..n]);
            if text.windows(13).any(|w| w == b"dropped here:") {
                let _ = tx.send(String::from_utf8_lossy(&text).into_owned());
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    let text = loop {
        // Each request adds an access-log line; once the reader has made
        // room, one of them carries the notice in front of it.
        let _ = server
            .connect()
            .write_all(b"GET /_/hello HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
        if let Ok(text) = rx.recv_timeout(Duration::from_millis(200)) {
            break text;
        }
        assert!(Instant::now() < deadline, "no line said what was dropped");
    };
    let notice = text
        .lines()
        .find(|l| l.contains("dropped here:"))
        .unwrap_or_default();
    assert!(
        notice.starts_with("fivetuple: ") && notice.contains("the reader of stderr was too slow"),
        "{notice}"
    );
}

#[test]
fn a_reader_of_the_trace_that_stops_cannot_stop_the_server() {
    let server = Stalled::start(&["--trace", "--quiet"]);
    // One request per turn: 20,000 blocks of the trace, some 3 MB.
    let mut busy = server.connect();
    hammer(&mut busy, 20_000, 1);
    let mut other = server.connect();
    other
        .write_all(b"GET /_/hello HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut other).expect("an answer").status, 200);
    assert!(dropped(server.addr, "stdout") > 0);
    // Nothing was read past the listening line.
    assert_eq!(server.stdout.buffer().len(), 0);
}

#[test]
fn the_access_log_is_the_combined_log_format_with_the_connection() {
    let dir = TempDir::new("access");
    let path = dir.join("access.log");
    let server = Server::start(&["--access-log", path.to_str().unwrap()]);
    let mut s = server.connect();
    let me = s.local_addr().unwrap();
    s.write_all(
        b"GET /_/hello?x=1 HTTP/1.1\r\nHost: t\r\nReferer: http://example.test/\r\nUser-Agent: test \"agent\"\r\n\r\n\
          POST /_/hello HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc",
    )
    .unwrap();
    let _ = common::read_to_close(&mut s);
    let mut lines = Vec::new();
    wait_until(Duration::from_secs(10), || {
        lines = std::fs::read_to_string(&path)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect();
        lines.len() >= 2
    });
    let connection = format!("\"tcp {} <- {me}\"", server.addr);
    // host ident user [time] "request" status bytes "referer" "agent" "connection"
    let first = &lines[0];
    assert!(
        first.starts_with("127.0.0.1 - - ["),
        "client, identity, user: {first}"
    );
    let (_, rest) = first.split_once("] ").expect("a time stamp in brackets");
    assert_eq!(
        rest,
        format!(
            "\"GET /_/hello?x=1 HTTP/1.1\" 200 13 \"http://example.test/\" \"test \\\"agent\\\"\" {connection}"
        )
    );
    let stamp = &first[first.find('[').unwrap() + 1..first.find(']').unwrap()];
    // 02/Dec/2026:06:43:46 +0000
    assert_eq!(stamp.len(), 26, "{stamp}");
    assert_eq!(&stamp[2..3], "/");
    assert_eq!(&stamp[6..7], "/");
    assert!(stamp.ends_with(" +0000"), "{stamp}");
    let second = &lines[1];
    assert!(
        second.ends_with(&format!(
            "\"POST /_/hello HTTP/1.1\" 405 {} \"-\" \"-\" {connection}",
            second
                .split("\" 405 ")
                .nth(1)
                .and_then(|r| r.split(' ').next())
                .unwrap_or("?")
        )),
        "{second}"
    );
    // Nothing of it on stderr.
    assert!(
        !server.stderr().iter().any(|l| l.contains("GET /_/hello")),
        "the access log went to stderr too"
    );
}
