//! Sockets made before the server starts (socket activation), what it
//! refuses to take, and `--user`: bind as root, then serve as nobody.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::common::{bin, read_response, Server};
use crate::privilege::{is_root, skip, this_test, tool};

/// A port that was free a moment ago (bound to :0, then let go).
fn free_port() -> u16 {
    let probe = TcpListener::bind("127.0.0.1:0").expect("bind :0");
    probe.local_addr().expect("address").port()
}

fn whoami(addr: SocketAddr) -> Option<String> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    s.write_all(b"GET /_/whoami HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .ok()?;
    let r = read_response(&mut s)?;
    (r.status == 200).then(|| r.text())
}

#[test]
fn systemd_socket_activate_starts_a_server_that_binds_nothing() {
    let Ok(activate) = tool("systemd-socket-activate", "systemd") else {
        return skip(
            this_test!(),
            "systemd-socket-activate (Debian package systemd)",
        );
    };
    // The port is picked free, then given to systemd-socket-activate; if
    // someone takes it in between, it cannot bind and exits: try another.
    for _ in 0..5 {
        let port = free_port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let mut child = Command::new(&activate)
            .args([
                "-l",
                &addr.to_string(),
                bin(),
                "serve",
                "--quiet",
                "--workers",
                "2",
            ])
            // --listen is left at its default, 0.0.0.0:500: never bound here.
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn systemd-socket-activate");
        // It starts the server at the first connection.
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut answer = None;
        while Instant::now() < deadline && answer.is_none() {
            if child.try_wait().ok().flatten().is_some() {
                break; // it could not bind: the port was taken
            }
            answer = whoami(addr);
            if answer.is_none() {
                thread::sleep(Duration::from_millis(20));
            }
        }
        let Some(answer) = answer else {
            let _ = child.kill();
            let _ = child.wait();
            continue;
        };
        assert!(answer.starts_with(&format!("tcp {addr} <- ")), "{answer}");
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let first = stdout.lines().next().unwrap().unwrap();
        assert_eq!(first, format!("listening on {addr}"));
        // systemd-socket-activate execs the server: the pid is the server's.
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let status = child.wait().unwrap();
        let mut err = String::new();
        let _ = std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err);
        assert!(status.success(), "{status:?}: {err}");
        assert!(
            err.contains("1 listening socket from socket activation"),
            "{err}"
        );
        return;
    }
    panic!("systemd-socket-activate never served on a free port");
}

/// Runs the server from `sh` with the protocol's variables naming the
/// shell's own pid (which `exec` keeps), and `redirect` for fd 3.
fn serve_from_shell(vars: &str, redirect: &str) -> std::process::Output {
    let script =
        format!("export LISTEN_PID=$$ {vars}; exec \"$0\" serve --listen 127.0.0.1:0 {redirect}");
    Command::new("sh")
        .args(["-c", &script, bin()])
        .stdin(Stdio::null())
        .output()
        .expect("run sh")
}

fn one_line_and_code_2(out: &std::process::Output, needle: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains(needle), "{err}");
}

#[test]
fn a_descriptor_that_is_no_listening_socket_is_refused_in_one_line() {
    let out = serve_from_shell("LISTEN_FDS=1", "3</dev/null");
    one_line_and_code_2(&out, "descriptor 3 is not a socket but /dev/null");
    let out = serve_from_shell("LISTEN_FDS=1", "");
    one_line_and_code_2(&out, "descriptor 3 is not open");
    let out = serve_from_shell("LISTEN_FDS=1 LISTEN_FDNAMES=web:udp", "");
    one_line_and_code_2(&out, "names 2");
    let out = serve_from_shell("LISTEN_FDS=many", "");
    one_line_and_code_2(&out, "LISTEN_FDS=\"many\" is not a number");
}

#[test]
fn a_connection_passed_as_a_listener_is_refused() {
    let Ok(bash) = tool("bash", "bash") else {
        return skip(this_test!(), "bash, for its /dev/tcp");
    };
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let script = format!(
        "exec 3<>/dev/tcp/127.0.0.1/{port}; export LISTEN_PID=$$ LISTEN_FDS=1; \
         exec \"$0\" serve --listen 127.0.0.1:0"
    );
    let out = Command::new(bash)
        .args(["-c", &script, bin()])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    one_line_and_code_2(&out, "not listening");
}

#[test]
fn variables_meant_for_another_process_are_left_alone() {
    let server = Server::start_with(&["--quiet"], &[("LISTEN_PID", "1"), ("LISTEN_FDS", "1")]);
    let line = server.wait_for_log("LISTEN_PID=1 is not this process", Duration::from_secs(10));
    assert!(line.contains("binding --listen"), "{line}");
    assert_eq!(server.get("/_/hello").status, 200);
}

#[test]
fn a_user_that_does_not_exist_is_refused_before_serving() {
    let out = Command::new(bin())
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--user",
            "no-such-user-5tuple",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("--user no-such-user-5tuple: no such user"),
        "{err}"
    );
    assert!(!String::from_utf8_lossy(&out.stdout).contains("listening on"));
}

/// The `Uid:`, `Gid:` and `Groups:` lines of every thread of `pid`.
fn credentials(pid: u32) -> Vec<String> {
    let mut lines = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .flatten()
    {
        let status = std::fs::read_to_string(task.path().join("status")).unwrap_or_default();
        for line in status.lines() {
            if line.starts_with("Uid:") || line.starts_with("Gid:") || line.starts_with("Groups:") {
                lines.push(line.split_whitespace().collect::<Vec<_>>().join(" "));
            }
        }
    }
    lines
}

#[test]
fn user_drops_root_in_every_thread_before_the_first_accept() {
    if !is_root() {
        return skip(this_test!(), "root, to drop to nobody");
    }
    let server = Server::start(&["--user", "nobody", "--workers", "2"]);
    let line = server.wait_for_log("running as user nobody", Duration::from_secs(10));
    let gid = line
        .split(" and group ")
        .nth(1)
        .and_then(|r| r.split('(').nth(1))
        .and_then(|r| r.split(')').next())
        .unwrap()
        .to_string();
    let lines = credentials(server.pid());
    assert!(
        lines.len() >= 9,
        "a main thread, two workers, sinks: {lines:?}"
    );
    for line in &lines {
        let want = match line.split(' ').next() {
            Some("Uid:") => "Uid: 65534 65534 65534 65534".to_string(),
            Some("Gid:") => format!("Gid: {gid} {gid} {gid} {gid}"),
            _ => format!("Groups: {gid}"),
        };
        assert_eq!(line, &want, "{lines:?}");
    }
    // It serves, as nobody.
    assert_eq!(server.get("/_/hello").status, 200);
    // No warning about serving as root.
    assert!(!server
        .stderr()
        .iter()
        .any(|l| l.contains("serving as root")));
}

#[test]
fn started_as_root_without_user_it_says_so_once() {
    if !is_root() {
        return skip(this_test!(), "root, to be warned about it");
    }
    let server = Server::start(&["--quiet"]);
    server.wait_for_log("serving as root", Duration::from_secs(10));
    assert_eq!(server.get("/_/hello").status, 200);
    let warned = server
        .stderr()
        .iter()
        .filter(|l| l.contains("serving as root"))
        .count();
    assert_eq!(warned, 1);
}
