//! SIGHUP: a new copy of the binary takes the listening sockets over, the
//! old one finishes its connections and exits, and no client notices.
//! And when the new copy cannot take over, the old one goes on serving.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use crate::common::{bin, fd_count, poll_until, rss_kib, wait_until, Server, TempDir};

const HELLO_REQUEST: &[u8] = b"GET /_/hello HTTP/1.1\r\nHost: t\r\n\r\n";

/// Processes of later generations are not our children: they are killed
/// by pid when the test ends, passing or failing.
struct Reap(Vec<u32>);

impl Drop for Reap {
    fn drop(&mut self) {
        for &pid in &self.0 {
            // SAFETY: kill(2) on a pid this test started (through SIGHUP).
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        }
    }
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        !s.rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z')
    })
}

fn signal(pid: u32, sig: i32) {
    // SAFETY: kill(2) on a server this test started.
    unsafe { libc::kill(pid as i32, sig) };
}

/// The pid named by the log line `started pid N (generation G)` for
/// generation `generation`.
fn started_pid(server: &Server, generation: u32) -> u32 {
    let line = server.wait_for_log(
        &format!("(generation {generation}) with the listening sockets"),
        Duration::from_secs(10),
    );
    line.split("started pid ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|pid| pid.parse().ok())
        .unwrap_or_else(|| panic!("no pid in {line:?}"))
}

/// Sends SIGHUP to `old`, waits for generation `next` to say it is ready
/// and for `old` to exit; the new pid.
fn restart(server: &Server, old: u32, next: u32, reap: &mut Reap) -> u32 {
    signal(old, libc::SIGHUP);
    let new = started_pid(server, next);
    reap.0.push(new);
    server.wait_for_log(
        &format!("pid {new} (generation {next}) is ready"),
        Duration::from_secs(10),
    );
    wait_until(Duration::from_secs(10), || !alive(old));
    new
}

/// What the clients saw.
#[derive(Default)]
struct Tally {
    answers: AtomicU64,
    /// Refused, reset or failed before any answer on a new connection,
    /// or an answer cut short or wrong: what must never happen.
    failures: AtomicU64,
    /// A kept-alive connection that the server closed while idle, before
    /// the next request reached it: the client asks again on a new one, as
    /// HTTP clients do (RFC 9112, 9.3.1).
    retried: AtomicU64,
    first_failure: std::sync::Mutex<Option<String>>,
}

impl Tally {
    fn fail(&self, why: String) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        self.first_failure.lock().unwrap().get_or_insert(why);
    }
}

/// One answer read whole: `Ok(keep_alive)`, or `Err(bytes read)` when the
/// connection ended first.
fn read_hello(s: &mut TcpStream) -> Result<bool, (usize, String)> {
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 512];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .ok_or((buf.len(), format!("no length in {head:?}")))?;
            if buf.len() >= end + 4 + length {
                if !head.starts_with("http/1.1 200") {
                    return Err((buf.len(), format!("not a 200: {head:?}")));
                }
                return Ok(!head.contains("connection: close"));
            }
        }
        match s.read(&mut chunk) {
            Ok(0) => return Err((buf.len(), "closed".into())),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) => return Err((buf.len(), e.to_string())),
        }
    }
}

/// A client on a kept-alive connection: requests one after the other,
/// a new connection when the server says `Connection: close`.
fn keep_alive_client(addr: SocketAddr, stop: Arc<AtomicBool>, tally: Arc<Tally>) {
    while !stop.load(Ordering::Relaxed) {
        let mut s = match TcpStream::connect(addr) {
            Ok(s) => s,
            Err(e) => {
                tally.fail(format!("connect: {e}"));
                continue;
            }
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
        let mut reused = false;
        while !stop.load(Ordering::Relaxed) {
            let sent = s.write_all(HELLO_REQUEST);
            match sent
                .map_err(|e| (0, e.to_string()))
                .and_then(|()| read_hello(&mut s))
            {
                Ok(keep) => {
                    tally.answers.fetch_add(1, Ordering::Relaxed);
                    reused = true;
                    if !keep {
                        break;
                    }
                }
                Err((0, _)) if reused => {
                    tally.retried.fetch_add(1, Ordering::Relaxed);
                    break;
                }
                Err((n, why)) => {
                    tally.fail(format!("kept-alive, after {n} bytes: {why}"));
                    break;
                }
            }
        }
    }
}

/// A client that opens a connection for each request.
fn short_client(addr: SocketAddr, stop: Arc<AtomicBool>, tally: Arc<Tally>) {
    while !stop.load(Ordering::Relaxed) {
        let result = TcpStream::connect(addr)
            .map_err(|e| (0, format!("connect: {e}")))
            .and_then(|mut s| {
                let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
                s.write_all(b"GET /_/hello HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
                    .map_err(|e| (0, format!("write: {e}")))?;
                read_hello(&mut s)
            });
        match result {
            Ok(_) => {
                tally.answers.fetch_add(1, Ordering::Relaxed);
            }
            Err((n, why)) => tally.fail(format!("short, after {n} bytes: {why}")),
        }
    }
}

#[test]
fn restarts_under_load_lose_no_connection_and_no_answer() {
    let mut server = Server::start(&["--quiet", "--shutdown-grace", "5"]);
    let mut reap = Reap(Vec::new());
    let addr = server.addr;
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let clients: Vec<_> = (0..6)
        .map(|i| {
            let (stop, tally) = (stop.clone(), tally.clone());
            thread::spawn(move || match i % 2 {
                0 => keep_alive_client(addr, stop, tally),
                _ => short_client(addr, stop, tally),
            })
        })
        .collect();
    wait_until(Duration::from_secs(10), || {
        tally.answers.load(Ordering::Relaxed) > 200
    });
    let mut pid = server.pid();
    let baseline = (fd_count(pid), rss_kib(pid));
    let mut figures = Vec::new();
    for generation in 2..=6 {
        let before = tally.answers.load(Ordering::Relaxed);
        pid = restart(&server, pid, generation, &mut reap);
        // The new copy serves: answers keep coming.
        wait_until(Duration::from_secs(10), || {
            tally.answers.load(Ordering::Relaxed) > before + 100
        });
        figures.push((fd_count(pid), rss_kib(pid)));
    }
    // The live page's stream names the copy it comes from.
    let mut stream = TcpStream::connect(("127.0.0.1", server.port())).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
        .write_all(b"GET /_/events HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains("event: hello\ndata:")
        || !seen.ends_with(b"\n\n")
    {
        let n = stream.read(&mut buf).expect("the event stream's hello");
        assert!(n > 0, "the stream ended before its hello");
        seen.extend_from_slice(&buf[..n]);
    }
    let seen = String::from_utf8_lossy(&seen);
    assert!(seen.contains("\"generation\":6"), "{seen}");
    drop(stream);
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().unwrap();
    }
    let failures = tally.failures.load(Ordering::Relaxed);
    eprintln!(
        "5 restarts: {} answers, {failures} failures, {} kept-alive connections closed while idle \
         and asked again; baseline {baseline:?} (fds, RSS KiB), after each {figures:?}",
        tally.answers.load(Ordering::Relaxed),
        tally.retried.load(Ordering::Relaxed),
    );
    assert_eq!(
        failures,
        0,
        "first failure: {:?}",
        tally.first_failure.lock().unwrap()
    );
    // Descriptors: each generation holds what the first did (the
    // connections of the moment aside, a handful at most).
    for (fds, _) in &figures {
        assert!(
            fds.abs_diff(baseline.0) <= 16,
            "descriptors {fds} against {} at the start",
            baseline.0
        );
    }
    // The first process said how many connections it finished after the handover.
    assert!(
        server
            .stdout()
            .iter()
            .any(|l| l.starts_with("handed over to pid ")),
        "{:?}",
        server.stdout()
    );
    signal(pid, libc::SIGTERM);
    wait_until(Duration::from_secs(10), || !alive(pid));
    assert!(server.wait_exit(Duration::from_secs(1)).success());
}

/// A copy of the binary in a directory of the test's own, so the test can
/// replace it, as an upgrade does, without touching the real one.
fn own_binary(dir: &TempDir) -> PathBuf {
    let path = dir.join("fivetuple");
    std::fs::copy(bin(), &path).expect("copy the binary");
    // Another test's thread may fork while the copy is open for writing;
    // its child holds that descriptor until it execs, and exec of a file
    // open for writing fails with ETXTBSY meanwhile. It passes in a moment.
    let runs = poll_until(Duration::from_secs(10), || {
        Command::new(&path)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    });
    assert!(runs, "{} does not run", path.display());
    path
}

/// Replaces `path` with a shell script (by renaming over it: a running
/// binary cannot be written to).
fn replace_with_script(path: &PathBuf, script: &str) {
    use std::os::unix::fs::PermissionsExt;
    let new = path.with_extension("new");
    std::fs::write(&new, format!("#!/bin/sh\n{script}\n")).unwrap();
    std::fs::set_permissions(&new, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::rename(&new, path).unwrap();
}

fn start_own(path: &PathBuf, extra: &[&str]) -> Server {
    let mut cmd = Command::new(path);
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--quiet"])
        .args(extra);
    Server::spawn(cmd, &[])
}

/// The old copy still answers, on the same port, with the new one gone.
fn still_serves(server: &Server) {
    assert_eq!(server.get("/_/hello").status, 200);
    assert!(alive(server.pid()));
}

#[test]
fn a_new_binary_that_is_missing_crashes_or_never_says_ready_leaves_the_old_one_serving() {
    let dir = TempDir::new("restart-fail");
    let path = own_binary(&dir);
    let server = start_own(&path, &["--restart-timeout", "1"]);
    // Missing.
    std::fs::remove_file(&path).unwrap();
    server.signal(libc::SIGHUP);
    let line = server.wait_for_log("restart failed: cannot start", Duration::from_secs(10));
    assert!(line.contains("still serving"), "{line}");
    still_serves(&server);
    // Crashes before it is ready.
    replace_with_script(&path, "exit 3");
    server.signal(libc::SIGHUP);
    let line = server.wait_for_log("exited (exit status: 3)", Duration::from_secs(10));
    assert!(line.contains("before it said it was ready"), "{line}");
    still_serves(&server);
    // Never says ready: stopped after --restart-timeout.
    replace_with_script(&path, "exec sleep 60");
    server.signal(libc::SIGHUP);
    let line = server.wait_for_log("did not say it was ready within", Duration::from_secs(10));
    assert!(line.contains("stopped it"), "{line}");
    still_serves(&server);
    // Nothing leaked: no child left, no notification directory left.
    let children = std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", server.pid()))
        .unwrap_or_default();
    assert_eq!(children.trim(), "", "children left: {children}");
    let leftover = std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .flatten()
        .any(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(&format!("fivetuple-restart-{}-", server.pid()))
        });
    assert!(!leftover, "a notification directory was left behind");
}

#[test]
fn an_upgraded_binary_takes_over_and_a_second_sighup_during_the_handover_is_ignored() {
    let dir = TempDir::new("restart-upgrade");
    let path = own_binary(&dir);
    let mut reap = Reap(Vec::new());
    let server = start_own(&path, &[]);
    // The "upgrade": a script that notes it ran, then execs the real binary.
    let marker = dir.join("upgraded");
    // It takes a moment to start, so that a second SIGHUP finds the handover under way.
    replace_with_script(
        &path,
        &format!("touch {}\nsleep 1\nexec {} \"$@\"", marker.display(), bin()),
    );
    server.signal(libc::SIGHUP);
    let new = started_pid(&server, 2);
    server.signal(libc::SIGHUP);
    reap.0.push(new);
    let line = server.wait_for_log("a restart is already under way", Duration::from_secs(10));
    assert!(line.contains("ignored"), "{line}");
    server.wait_for_log(
        &format!("pid {new} (generation 2) is ready"),
        Duration::from_secs(10),
    );
    assert!(marker.exists(), "the binary was not read again from disk");
    wait_until(Duration::from_secs(10), || !alive(server.pid()));
    // The new one answers on the same port.
    assert_eq!(server.get("/_/hello").status, 200);
    signal(new, libc::SIGTERM);
    wait_until(Duration::from_secs(10), || !alive(new));
}

#[test]
fn sigterm_during_a_handover_stops_the_new_copy_and_exits_cleanly() {
    let dir = TempDir::new("restart-sigterm");
    let path = own_binary(&dir);
    let mut server = start_own(&path, &["--restart-timeout", "20"]);
    replace_with_script(&path, "exec sleep 60");
    server.signal(libc::SIGHUP);
    let line = server.wait_for_log(
        "(generation 2) with the listening sockets",
        Duration::from_secs(10),
    );
    let child: u32 = line
        .split("started pid ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .unwrap();
    server.signal(libc::SIGTERM);
    let line = server.wait_for_log(
        "during a restart: stopped the new copy",
        Duration::from_secs(10),
    );
    assert!(line.contains(&format!("pid {child}")), "{line}");
    assert!(server.wait_exit(Duration::from_secs(10)).success());
    assert!(!alive(child), "the new copy was left running");
    // The port is closed: nobody holds the listening socket any more.
    assert!(TcpStream::connect(server.addr).is_err());
}

#[test]
fn with_workers_and_udp_every_socket_is_handed_over() {
    let mut reap = Reap(Vec::new());
    let server = Server::start(&["--quiet", "--workers", "2", "--udp"]);
    let old = server.pid();
    let new = restart(&server, old, 2, &mut reap);
    let line = server.wait_for_log("from the previous server", Duration::from_secs(10));
    assert!(line.contains("3 listening sockets"), "{line}");
    assert!(line.contains("and udp"), "{line}");
    assert_eq!(server.get("/_/hello").status, 200);
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    // As long as any answer could be: an answer is never longer than its question.
    udp.send_to(&[b'?'; 128], server.addr).unwrap();
    let mut buf = [0u8; 512];
    let n = udp.recv(&mut buf).expect("a UDP answer from the new copy");
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("udp "));
    signal(new, libc::SIGTERM);
    assert!(poll_until(Duration::from_secs(10), || !alive(new)));
}
