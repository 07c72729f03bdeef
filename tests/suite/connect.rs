//! `fivetuple connect`, black-box: what a user types, what they see.

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::process::{Command, Output, Stdio};
use std::thread;
use std::time::Duration;

use crate::common::{
    run_connect as connect, stdout_and_stderr as text, wait_until, Server, TempDir,
};
use crate::privilege::this_test;
use crate::{common, privilege};

/// Splits `tcp A:p -> B:q connected in 120 µs, sent 13 B, received 0 B`.
fn parse_line(line: &str) -> Option<(String, String, String)> {
    let rest = line.strip_prefix("tcp ")?;
    let (local, rest) = rest.split_once(" -> ")?;
    let (remote, rest) = rest.split_once(" connected in ")?;
    Some((local.to_string(), remote.to_string(), rest.to_string()))
}

#[test]
fn the_story_payload_shows_the_connections_own_five_tuple() {
    let server = Server::start(&[]);
    let target = format!("localhost:{}", server.port());
    let out = connect(&[&target, "-p", "Test", "payload.", "--hold", "0.3"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let (local, remote, rest) = parse_line(stdout.lines().next().unwrap()).expect("a 5-tuple line");
    assert_eq!(remote, server.addr.to_string());
    let port: u16 = local.rsplit(':').next().unwrap().parse().unwrap();
    assert!(port >= 1024, "an ephemeral port: {port}");
    // Microseconds below a millisecond (a loopback connect), never `0.00 ms`.
    let (time, counts) = rest.split_once(", ").unwrap();
    assert!(
        time.ends_with(" µs") || time.ends_with(" ms"),
        "a time with its unit: {time}"
    );
    assert!(!time.starts_with("0.00 "), "{time}");
    assert_eq!(counts, "sent 13 B, received 0 B");
    // The server logs the unfinished request with the client's own port.
    server.wait_for_log(&format!("{local} closed its side"), Duration::from_secs(10));
}

#[test]
fn the_storys_own_command_works_as_written() {
    // `quicknet -m tcp -t localhost:500 -p Test payload.`, with our name
    // and the test server's port: it connects, sends, and holds (5 s by
    // default) while we look, as the story looked with netstat.
    let server = Server::start(&[]);
    let target = format!("localhost:{}", server.port());
    let child = Command::new(common::bin())
        .args([
            "connect", "-m", "tcp", "-t", &target, "-p", "Test", "payload.",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    wait_until(Duration::from_secs(10), || {
        let t: serde_json::Value =
            serde_json::from_slice(&server.get("/_/conns.json").body).unwrap();
        t["rows"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["bytes_in"] == 13)
    });
    // Ctrl-C ends the hold; the line is printed all the same.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let (_, remote, rest) = parse_line(stdout.lines().next().unwrap()).expect("a 5-tuple line");
    assert_eq!(remote, server.addr.to_string());
    assert!(rest.ends_with("sent 13 B, received 0 B"), "{rest}");
}

#[test]
fn a_malformed_payload_gets_the_400_shown() {
    let server = Server::start(&[]);
    let out = connect(&[
        &server.addr.to_string(),
        "-e",
        "-p",
        r"Test payload.\r\n",
        "--hold",
        "2",
    ]);
    let (stdout, _) = text(&out);
    assert!(
        stdout.contains("  reply: HTTP/1.1 400 Bad Request"),
        "{stdout}"
    );
    let out = connect(&[
        &server.addr.to_string(),
        "-e",
        "-p",
        r"Test payload.\r\n",
        "--show-reply",
    ]);
    let (stdout, _) = text(&out);
    assert!(stdout.contains("  | Connection: close"), "{stdout}");
}

#[test]
fn show_reply_shows_quotes_as_they_are_and_escapes_control_characters() {
    let (addr, answering) = answer_once(
        b"HTTP/1.0 200 OK\r\nContent-Type: text/html\r\n\r\n<a href=\"/x\">\x1b[31mred</a>\n"
            .to_vec(),
    );
    let out = connect(&[&addr, "-e", "-p", r"GET / HTTP/1.0\r\n\r\n", "--show-reply"]);
    answering.join().unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stdout.contains("  | <a href=\"/x\">\\x1b[31mred</a>\n"),
        "{stdout}"
    );
}

#[test]
fn with_http_both_ends_name_the_same_pair() {
    let server = Server::start(&[]);
    let out = connect(&[&server.addr.to_string(), "--http", "-n", "3"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 6, "{stdout}");
    for pair in lines.chunks(2) {
        let (local, remote, _) = parse_line(pair[0]).unwrap();
        let want = format!("  server sees: tcp {remote} <- {local}, token ");
        assert!(pair[1].starts_with(&want), "{} vs {want}", pair[1]);
        assert!(pair[1].ends_with("(the same pair)"));
    }
}

/// A server that is not fivetuple: it reads one request, answers `reply`,
/// and closes, like any small web server's error page. Returns its address.
fn answer_once(reply: Vec<u8>) -> (String, thread::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let handle = thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut reader = BufReader::new(&stream);
        let mut line = String::new();
        // The request's head ends with an empty line.
        while reader.read_line(&mut line).is_ok_and(|n| n > 0) {
            if line == "\r\n" {
                break;
            }
            line.clear();
        }
        let _ = (&stream).write_all(&reply);
    });
    (addr, handle)
}

#[test]
fn with_http_another_server_is_named_for_what_it_is() {
    let page = "<!DOCTYPE HTML>\n<html><head><title>Error response</title></head>\n\
                <body><h1>Error response</h1><p>Error code: 404</p></body></html>\n";
    let reply = format!(
        "HTTP/1.0 404 File not found\r\nContent-Type: text/html\r\nContent-Length: {}\r\n\r\n{page}",
        page.len()
    );
    let (addr, answering) = answer_once(reply.into_bytes());
    let out = connect(&[&addr, "--http"]);
    answering.join().unwrap();
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(!stdout.contains("server sees"), "{stdout}");
    assert!(
        !stdout.contains("<html>"),
        "the page is not shown: {stdout}"
    );
    assert!(stdout.contains("then not a fivetuple answer"), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "{addr} does not look like fivetuple serve: to GET /_/whoami it answered \"HTTP/1.0 404 File not found\""
        )),
        "{stdout}"
    );
}

#[test]
fn with_http_a_200_that_is_not_whoami_is_not_taken_for_it() {
    let (addr, answering) =
        answer_once(b"HTTP/1.1 200 OK\r\nContent-Length: 13\r\n\r\nHello, World!".to_vec());
    let out = connect(&[&addr, "--http", "--json"]);
    answering.join().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert!(rows[0]["server_view"].is_null());
    let why = rows[0]["error"]["not_whoami"].as_str().unwrap();
    assert!(why.contains("Hello, World!"), "{why}");
}

#[test]
fn a_source_address_this_machine_does_not_have_is_named() {
    // 192.0.2.0/24 is TEST-NET-1: documentation only, on no machine.
    let out = connect(&["127.0.0.1:9", "--source", "192.0.2.77"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(
        out.status.code(),
        Some(1),
        "cannot bind: a run-time failure"
    );
    assert!(stdout.is_empty(), "{stdout}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("--source 192.0.2.77 is not an address of this machine"),
        "{stderr}"
    );
    assert!(!stderr.contains("ephemeral"), "{stderr}");
}

/// Runs `fivetuple ARGS` with its stdout a pipe whose reading end is
/// already closed, as `| head -0` leaves it: the first write fails.
fn with_stdout_closed(args: &[&str]) -> Output {
    let mut child = Command::new(common::bin())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    child.wait_with_output().unwrap()
}

#[test]
fn a_closed_stdout_ends_every_command_quietly() {
    let server = Server::start(&["--quiet"]);
    let target = server.addr.to_string();
    for args in [
        &["conns"][..],
        &["conns", "--json"],
        &["connect", &target, "--hold", "0"],
        &["connect", &target, "--http", "--json"],
        &["connect", &target, "-n", "30", "--hold", "0"],
        &["--help"],
    ] {
        let out = with_stdout_closed(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {stderr}");
        assert!(stderr.is_empty(), "{args:?}: {stderr}");
    }
}

#[test]
fn many_connections_print_a_summary() {
    let server = Server::start(&["--quiet"]);
    let out = connect(&[&server.addr.to_string(), "-n", "200", "--hold", "0.5"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stdout.starts_with(&format!(
            "200 of 200 connections to {} connected, from 200 distinct",
            server.addr
        )),
        "{stdout}"
    );
    assert!(stdout.contains("connect time: min "));
}

#[test]
fn held_connections_are_visible_while_held() {
    let server = Server::start(&["--quiet"]);
    let child = Command::new(common::bin())
        .args([
            "connect",
            &server.addr.to_string(),
            "-n",
            "200",
            "--hold",
            "30",
            "--json",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_until(Duration::from_secs(20), || {
        let t: serde_json::Value =
            serde_json::from_slice(&server.get("/_/conns.json").body).unwrap();
        t["open"] == 201
    });
    // SIGINT ends the hold early and still prints the results.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rows.len(), 200);
    let locals: HashSet<&str> = rows.iter().map(|r| r["local"].as_str().unwrap()).collect();
    assert_eq!(locals.len(), 200);
    assert!(rows.iter().all(|r| r["error"].is_null()));
}

#[test]
fn a_refused_connection_is_counted_and_exits_1() {
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let target = format!("127.0.0.1:{port}");
    let out = connect(&[&target, "--hold", "0"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).0.contains("failed: connection refused"));
    // What it means, and what to do about it.
    assert!(
        text(&out).0.contains(&format!(
            "nothing listens on TCP port {port} at 127.0.0.1: its kernel answered the \
             connection request with a reset; check the port, or start the server first \
             (fivetuple serve --listen 0.0.0.0:{port})"
        )),
        "{}",
        text(&out).0
    );
    let out = connect(&[&target, "-n", "30", "--hold", "0"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).0.contains("failed: 30 connection refused"),
        "{}",
        text(&out).0
    );
}

#[test]
fn bad_arguments_are_one_line_and_exit_2() {
    for args in [
        &["127.0.0.1"][..],
        &["no-such-host.invalid:80"],
        &["127.0.0.1:80", "-n", "0"],
        &["127.0.0.1:80", "--payload-file", "/nonexistent/payload"],
        &["127.0.0.1:80", "-e", "-p", r"\q"],
        &["127.0.0.1:80", "-n", "100000"],
        &["127.0.0.1:80", "--source", "::1"],
    ] {
        let out = connect(args);
        let (_, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
    }
}

#[test]
fn a_target_missing_its_host_or_port_is_told_what_to_write() {
    // Typed as people type them, with no resolver's word in the answer.
    for (target, fix) in [
        (
            "localhost",
            "localhost has no port; give it as HOST:PORT: localhost:500, say",
        ),
        (
            "18501",
            "18501 is a port with no host; give both as HOST:PORT: localhost:18501",
        ),
        (
            ":18501",
            ":18501 has no host: a client must say which machine to reach; localhost:18501",
        ),
        (
            "::1",
            "put the address in brackets and the port after it: [::1]:500",
        ),
    ] {
        let out = connect(&[target]);
        let (_, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(2), "{target}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{target}: {stderr}");
        assert!(stderr.contains(fix), "{target}: {stderr}");
        assert!(!stderr.contains("resolve"), "{target}: {stderr}");
    }
}

#[test]
fn source_addresses_are_used_in_turn() {
    let server = Server::start(&[]);
    let out = connect(&[
        &server.addr.to_string(),
        "--http",
        "-n",
        "4",
        "--source",
        "127.0.0.2,127.0.0.3",
    ]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let sources: Vec<String> = stdout
        .lines()
        .filter_map(parse_line)
        .map(|(local, _, _)| local.rsplit_once(':').unwrap().0.to_string())
        .collect();
    assert_eq!(
        sources,
        ["127.0.0.2", "127.0.0.3", "127.0.0.2", "127.0.0.3"]
    );
    assert!(stdout.contains("<- 127.0.0.3:"));
}

#[test]
fn two_thousand_connections_from_one_process() {
    let server = Server::start(&["--quiet"]);
    let out = connect(&[
        &server.addr.to_string(),
        "-n",
        "2000",
        "--hold",
        "0.5",
        "--json",
    ]);
    assert!(out.status.success());
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let locals: HashSet<&str> = rows.iter().filter_map(|r| r["local"].as_str()).collect();
    assert_eq!(locals.len(), 2000);
}

/// Runs `script` in a network namespace of its own (loopback only), with
/// $BIN set; returns stdout, or `None` (the test skipped) where this user
/// cannot make one.
fn in_own_namespace(test: &str, script: &str) -> Option<String> {
    let unshare = match privilege::net_namespace() {
        Ok(prefix) => prefix,
        Err(need) => {
            privilege::skip(test, &need);
            return None;
        }
    };
    let full = format!("set -e\nip link set lo up\n{script}");
    let out = Command::new(unshare[0])
        .args(&unshare[1..])
        .args(["sh", "-c", &full])
        .env("BIN", common::bin())
        .output()
        .expect("unshare (util-linux) runs the test in its own network namespace");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Starts the server inside the namespace script, waits for its address,
/// then narrows the ephemeral port range to ten ports that are not the server's.
const START_SERVER: &str = r#"
"$BIN" serve --listen 127.0.0.1:0 --quiet > serve.out 2>/dev/null &
SERVER=$!
for i in $(seq 1 200); do grep -q '^listening on' serve.out 2>/dev/null && break; sleep 0.05; done
ADDR=$(sed -n 's/^listening on //p' serve.out)
PORT=${ADDR##*:}
LO=40000; if [ "$PORT" -ge 40000 ] && [ "$PORT" -le 40009 ]; then LO=50000; fi
echo "$LO $((LO + 9))" > /proc/sys/net/ipv4/ip_local_port_range
"#;

#[test]
fn running_out_of_ports_says_so_and_more_sources_go_past_it() {
    let dir = TempDir::new("ports");
    let script = format!(
        "cd {}\n{START_SERVER}\n\
         \"$BIN\" connect \"$ADDR\" -n 20 --hold 0.2 > one.txt || echo \"exit $?\" >> one.txt\n\
         \"$BIN\" connect \"$ADDR\" -n 20 --hold 0.2 --source 127.0.0.2,127.0.0.3 > two.txt || echo \"exit $?\" >> two.txt\n\
         kill $SERVER\ncat one.txt; echo ===; cat two.txt",
        dir.arg()
    );
    let out = in_own_namespace(this_test!(), &script);
    let Some(out) = out else { return };
    let (one, two) = out.split_once("===\n").unwrap();
    assert_eq!(
        one.lines().filter(|l| l.contains(" connected in ")).count(),
        10,
        "{one}"
    );
    assert_eq!(
        one.lines()
            .filter(|l| l.ends_with("failed: no free local port"))
            .count(),
        10,
        "{one}"
    );
    assert!(one.contains("ran out of ephemeral ports"), "{one}");
    assert!(one.contains("--source 127.0.0.1,127.0.0.2"), "{one}");
    assert!(one.trim_end().ends_with("exit 1"), "{one}");
    assert_eq!(
        two.lines().filter(|l| l.contains(" connected in ")).count(),
        20,
        "{two}"
    );
}
