//! `fivetuple conns`, black-box: the kernel's table agrees with the sockets
//! the test itself opened.

use std::collections::HashSet;
use std::net::{TcpStream, UdpSocket};
use std::process::Command;
use std::time::Duration;

use crate::common::{wait_until, Server};
use crate::privilege::this_test;
use crate::{common, privilege};

fn conns(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(common::bin())
        .arg("conns")
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn conns_json(args: &[&str]) -> Vec<serde_json::Value> {
    let (code, out, err) = conns(&[args, &["--json"]].concat());
    assert_eq!(code, 0, "{err}");
    serde_json::from_str(&out).expect("JSON array")
}

#[test]
fn the_kernel_shows_both_ends_of_every_loopback_connection() {
    let server = Server::start(&[]);
    let port = server.port();
    let clients: Vec<TcpStream> = (0..3).map(|_| server.connect()).collect();
    let client_ends: HashSet<String> = clients
        .iter()
        .map(|c| c.local_addr().unwrap().to_string())
        .collect();
    let p = port.to_string();
    let mut rows = Vec::new();
    wait_until(Duration::from_secs(10), || {
        rows = conns_json(&["--port", &p]);
        rows.iter().filter(|r| r["state"] == "ESTABLISHED").count() == 6
    });
    let listen: Vec<_> = rows.iter().filter(|r| r["state"] == "LISTEN").collect();
    assert_eq!(listen.len(), 1);
    assert_eq!(listen[0]["local"], server.addr.to_string());
    assert!(listen[0]["remote"].is_null());
    // The server's ends: local port P, remote = each client's own end.
    let server_side: HashSet<String> = rows
        .iter()
        .filter(|r| r["state"] == "ESTABLISHED" && r["local"] == server.addr.to_string())
        .map(|r| r["remote"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(server_side, client_ends);
    // The clients' ends: foreign port P.
    let client_side: HashSet<String> = rows
        .iter()
        .filter(|r| r["state"] == "ESTABLISHED" && r["remote"] == server.addr.to_string())
        .map(|r| r["local"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(client_side, client_ends);
}

#[test]
fn processes_listening_and_text() {
    let server = Server::start(&[]);
    let p = server.port().to_string();
    let rows = conns_json(&["--port", &p, "-p", "--listening"]);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["pid"], server.pid());
    assert_eq!(rows[0]["program"], "fivetuple");
    let (code, text, _) = conns(&["--port", &p, "-p"]);
    assert_eq!(code, 0);
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[1].starts_with("Proto Recv-Q Send-Q Local Address"),
        "{text}"
    );
    assert!(lines[1].ends_with("PID/Program name"));
    let row = lines
        .iter()
        .find(|l| l.contains("LISTEN"))
        .expect("a LISTEN row");
    assert!(
        row.contains(&format!("127.0.0.1:{p}")) && row.contains("0.0.0.0:*"),
        "{row}"
    );
    assert!(
        row.ends_with(&format!("{}/fivetuple", server.pid())),
        "{row}"
    );
}

#[test]
fn filters_by_state() {
    let server = Server::start(&[]);
    let c = server.connect();
    let p = server.port().to_string();
    wait_until(Duration::from_secs(10), || {
        conns_json(&["--port", &p, "--state", "estab"]).len() == 2
    });
    // Not empty for certain: a client of another test's server that had
    // this port a moment ago may still be in TIME_WAIT. None is ours.
    let me = c.local_addr().unwrap().to_string();
    let time_wait = conns_json(&["--port", &p, "--state", "time_wait"]);
    assert!(
        time_wait.iter().all(|r| r["state"] == "TIME_WAIT"
            && r["local"] != me.as_str()
            && r["remote"] != me.as_str()),
        "{time_wait:?}"
    );
}

#[test]
fn bad_input_is_one_line_and_exit_code_2() {
    let (code, out, err) = conns(&["--state", "sideways"]);
    assert_eq!(code, 2);
    assert!(out.is_empty());
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("unknown TCP state"));
    let (code, _, err) = conns(&["--port", "70000"]);
    assert_eq!(code, 2);
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[test]
fn an_unreadable_proc_is_one_line_and_exit_code_1() {
    // Not the user's typing: the machine has no /proc/net/tcp to read.
    let (code, out, err) = conns(&["--proc-root", "/nonexistent"]);
    assert_eq!(code, 1);
    assert!(out.is_empty());
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("/nonexistent/net/tcp"));
}

#[test]
fn a_reader_that_stops_early_ends_conns_quietly() {
    // `fivetuple conns | head -1`, with head gone before the table is written.
    let _server = Server::start(&[]);
    for args in [&[][..], &["--json"]] {
        let mut child = Command::new(common::bin())
            .arg("conns")
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {err}");
        assert!(err.is_empty(), "{args:?}: {err}");
    }
}

#[test]
fn udp_sockets_are_their_own_table() {
    let server = Server::start(&["--udp"]);
    let p = server.port().to_string();
    let me = server.addr.to_string();
    // A client's UDP socket, connected to the server's: ESTABLISHED,
    // though no packet has been sent.
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client.connect(server.addr).unwrap();
    let client_end = client.local_addr().unwrap().to_string();

    let udp = conns_json(&["-u", "--port", &p]);
    assert!(udp.iter().all(|r| r["proto"] == "udp"), "{udp:?}");
    let socket = udp.iter().find(|r| r["local"] == me.as_str()).unwrap();
    assert_eq!(socket["state"], "UNCONN");
    assert!(socket["remote"].is_null());
    assert_eq!(socket["pid"], serde_json::Value::Null, "no -p, no owner");
    let connected = udp
        .iter()
        .find(|r| r["local"] == client_end.as_str())
        .unwrap();
    assert_eq!(connected["state"], "ESTABLISHED");
    assert_eq!(connected["remote"], me.as_str());

    // TCP only by default; both with -tu, TCP first, as netstat lists them.
    assert!(conns_json(&["--port", &p])
        .iter()
        .all(|r| r["proto"] == "tcp"));
    let (code, text, _) = conns(&["-tu", "--port", &p, "-l"]);
    assert_eq!(code, 0);
    let rows: Vec<&str> = text.lines().skip(2).collect();
    assert_eq!(rows.len(), 2, "{text}");
    assert!(
        rows[0].starts_with("tcp ") && rows[0].ends_with("LISTEN"),
        "{text}"
    );
    assert!(
        rows[1].starts_with("udp ") && rows[1].ends_with("UNCONN"),
        "{text}"
    );
    assert!(
        rows[1].contains(&me) && rows[1].contains("0.0.0.0:*"),
        "{text}"
    );
    let unconn = conns_json(&["-tu", "--port", &p, "--state", "unconn", "-p"]);
    assert_eq!(unconn.len(), 1);
    assert_eq!(unconn[0]["pid"], server.pid());
}

/// Runs `command` with `sh -c`, `fivetuple` on the PATH: (exit code, stdout).
fn sh(command: &str) -> (i32, String) {
    let bin_dir = std::path::Path::new(common::bin()).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new("sh")
        .args(["-c", command])
        .env("PATH", path)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// Waits until the server has accepted `n` connections: their server
/// ends then belong to its process (before `accept` they belong to no one,
/// and the PID column could change between two looks).
fn wait_accepted(server: &Server, n: usize) {
    let p = server.port().to_string();
    let port = server.port();
    wait_until(Duration::from_secs(10), || {
        conns_json(&["--port", &p, "-p", "--state", "established"])
            .iter()
            .filter(|r| {
                r["pid"] == server.pid()
                    && r["local"]
                        .as_str()
                        .is_some_and(|l| l.ends_with(&format!(":{port}")))
            })
            .count()
            == n
    });
}

#[test]
fn the_storys_command_works_with_conns_in_place_of_netstat() {
    // The story: `netstat -atnp | grep -i ":500 "`.
    let server = Server::start(&[]);
    let port = server.port();
    let _clients: Vec<TcpStream> = (0..2).map(|_| server.connect()).collect();
    wait_accepted(&server, 2);
    let (code, text) = sh(&format!("fivetuple conns -atnp | grep -i \":{port} \""));
    assert_eq!(code, 0, "grep found nothing: {text:?}");
    let rows: Vec<&str> = text.lines().collect();
    // The listener, the server's two ends, the clients' two ends.
    assert_eq!(rows.len(), 5, "{text}");
    let ours = format!("{}/fivetuple", server.pid());
    let listen: Vec<&&str> = rows.iter().filter(|r| r.contains(" LISTEN ")).collect();
    assert_eq!(listen.len(), 1, "{text}");
    assert!(
        listen[0].starts_with("tcp ") && listen[0].ends_with(&ours),
        "{text}"
    );
    let server_ends = rows
        .iter()
        .filter(|r| r.contains(&format!("127.0.0.1:{port} ")) && r.contains("ESTABLISHED"))
        .filter(|r| r.split_whitespace().nth(3) == Some(&format!("127.0.0.1:{port}")))
        .count();
    assert_eq!(server_ends, 2, "{text}");
    let pids: Vec<&str> = rows
        .iter()
        .map(|r| r.split_whitespace().last().unwrap_or_default())
        .collect();
    assert!(
        pids.iter().all(|p| p.contains('/')),
        "every row has a PID/Program name: {text}"
    );
}

#[test]
fn netstats_flags_mean_what_they_mean_there() {
    let server = Server::start(&["--udp"]);
    let p = server.port().to_string();
    let _client = server.connect();
    wait_accepted(&server, 1);

    // -tulpn: listening sockets only, both tables, with their process.
    let (code, text, err) = conns(&["-tulpn", "--port", &p]);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "Active Internet connections (only servers)");
    assert!(lines[1].ends_with("PID/Program name"), "{text}");
    let rows = &lines[2..];
    assert_eq!(rows.len(), 2, "{text}");
    assert!(rows[0].starts_with("tcp ") && rows[0].contains(" LISTEN "));
    assert!(rows[1].starts_with("udp ") && rows[1].contains(" UNCONN "));
    let ours = format!("{}/fivetuple", server.pid());
    assert!(rows.iter().all(|r| r.ends_with(&ours)), "{text}");

    // -a outweighs -l, as in netstat; without either, everything too.
    for flags in ["-tan", "-an", "-atln", "-t"] {
        let (code, text, err) = conns(&[flags, "--port", &p]);
        assert_eq!(code, 0, "{flags}: {err}");
        assert!(
            text.starts_with("Active Internet connections (servers and established)\n"),
            "{flags}: {text}"
        );
        let states: Vec<&str> = text
            .lines()
            .skip(2)
            .filter_map(|r| r.split_whitespace().nth(5))
            .collect();
        assert_eq!(
            states,
            ["LISTEN", "ESTABLISHED", "ESTABLISHED"],
            "{flags}: {text}"
        );
    }

    // -e: netstat's User and Inode columns.
    let rows = conns_json(&["-l", "--port", &p]);
    let inode = rows[0]["inode"].as_u64().unwrap();
    let (_, text, _) = conns(&["-tlne", "--port", &p]);
    let row = text.lines().nth(2).unwrap();
    let fields: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(
        &fields[5..],
        ["LISTEN", &rows[0]["uid"].to_string(), &inode.to_string()]
    );
}

#[test]
fn netstat_flags_for_what_conns_does_not_show_are_refused_by_name() {
    for (flags, names) in [
        ("-w", "ss -w"),
        ("-atnx", "ss -x"),
        ("-tno", "ss -o"),
        ("-c", "watch -n 1 fivetuple conns"),
    ] {
        let (code, out, err) = conns(&[flags]);
        assert_eq!(code, 2, "{flags}");
        assert!(out.is_empty(), "{flags}: {out}");
        assert_eq!(err.lines().count(), 1, "{flags}: {err}");
        assert!(
            err.contains("is not supported") && err.contains(names),
            "{flags}: {err}"
        );
    }
}

/// A row of either program, for comparing: its fields, with what the two
/// print differently on purpose taken out: conns writes UNCONN where
/// netstat leaves the State blank, and netstat cuts "PID/Program name" at
/// 19 characters (this test's own name is longer).
fn comparable(row: &str) -> Vec<String> {
    row.split_whitespace()
        .filter(|f| *f != "UNCONN")
        .map(|f| match f.contains('/') && !f.contains(':') {
            true => f.chars().take(19).collect(),
            false => f.to_string(),
        })
        .collect()
}

#[test]
fn the_table_matches_the_real_netstat() {
    if Command::new("netstat").arg("--version").output().is_err() {
        privilege::skip(this_test!(), "netstat (apt-get install net-tools)");
        return;
    }
    // An IPv6 socket bound to an IPv4-mapped address: loopback only, and
    // its clients show as ::ffff:127.0.0.1 in /proc, which netstat writes
    // 127.0.0.1. Without IPv6, a plain IPv4 listener.
    let listen = match std::net::TcpListener::bind("[::ffff:127.0.0.1]:0") {
        Ok(_) => "[::ffff:127.0.0.1]:0",
        Err(_) => "127.0.0.1:0",
    };
    let mut cmd = Command::new(common::bin());
    cmd.args(["serve", "--listen", listen, "--udp"]);
    let server = Server::spawn(cmd, &[]);
    let port = server.port();
    let clients: Vec<TcpStream> = (0..2)
        .map(|_| TcpStream::connect(("127.0.0.1", port)).unwrap())
        .collect();
    let udp_client = UdpSocket::bind("127.0.0.1:0").unwrap();
    udp_client.connect(("127.0.0.1", port)).unwrap();
    wait_accepted(&server, 2);
    // This test's own ports: a row is this test's when both its addresses
    // end in one of them (or are a wildcard). Other programs' sockets may
    // carry the server's port number too (a client elsewhere whose
    // ephemeral port it happens to be), and come and go between readings.
    let mine: Vec<String> = std::iter::once(port)
        .chain(clients.iter().map(|c| c.local_addr().unwrap().port()))
        .chain(std::iter::once(udp_client.local_addr().unwrap().port()))
        .map(|p| format!(":{p}"))
        .collect();
    let ours_only = |line: &str| {
        let cols: Vec<&str> = line.split_whitespace().collect();
        cols.len() > 4
            && cols[3..5]
                .iter()
                .all(|a| a.ends_with(":*") || mine.iter().any(|p| a.ends_with(p.as_str())))
    };

    let needle = format!(":{port} ");
    // Each with the rows it should find: the TCP listener, the server's two
    // ends and the clients' two; the UDP socket and the client's.
    for (flags, expected) in [
        ("-atnp", 5),
        ("-tulpn", 2),
        ("-tan", 5),
        ("-an", 5),
        ("-atnpe", 5),
        ("-aunp", 2),
        ("-ltn", 1),
        ("-atunW", 7),
    ] {
        let (code, ours, err) = conns(&[flags]);
        assert_eq!(code, 0, "conns {flags}: {err}");
        let theirs = Command::new("netstat").arg(flags).output().unwrap();
        let theirs = String::from_utf8_lossy(&theirs.stdout).into_owned();
        // The two headings, the same but for trailing spaces.
        let head = |t: &str| -> Vec<Vec<String>> { t.lines().take(2).map(comparable).collect() };
        assert_eq!(head(&ours), head(&theirs), "{flags}:\n{ours}\n{theirs}");
        // The rows of this test's sockets, as `grep ":PORT "` finds them.
        // Without -t or -u netstat lists UDP (and UNIX) sockets too, where
        // conns lists TCP: those flags compare the TCP rows.
        let tcp_only = !flags.contains('t') && !flags.contains('u');
        let rows = |t: &str| -> Vec<Vec<String>> {
            let mut rows: Vec<Vec<String>> = t
                .lines()
                .filter(|l| l.contains(&needle) && ours_only(l))
                .filter(|l| !tcp_only || l.starts_with("tcp"))
                // Another test's client may have had this number as its
                // ephemeral port, and its TIME_WAIT may come or go between
                // the two readings: only this test's own sockets compare.
                .filter(|l| !l.contains("TIME_WAIT"))
                .map(comparable)
                .collect();
            rows.sort();
            rows
        };
        let ours_rows = rows(&ours);
        assert_eq!(ours_rows.len(), expected, "{flags}: {ours}");
        assert_eq!(ours_rows, rows(&theirs), "{flags}:\n{ours}\n{theirs}");
    }
}

#[test]
fn processes_of_other_users_show_a_dash_and_a_note_as_in_netstat() {
    let server = Server::start(&[]);
    let p = server.port().to_string();
    let mut cmd = match privilege::as_unprivileged_user(common::bin()) {
        Ok(cmd) => cmd,
        Err(need) => {
            privilege::skip(this_test!(), &need);
            return;
        }
    };
    let out = cmd.args(["conns", "-tlnp", "--port", &p]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let row = text.lines().nth(2).expect("the LISTEN row");
    if privilege::is_root() {
        // Root's server, seen by nobody: no owner, and netstat's warning,
        // on stderr so that `| grep` reads rows only.
        assert!(row.ends_with(" -"), "{row}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            err.starts_with("(Not all processes could be identified")
                && err.contains("root sees them all"),
            "{err}"
        );
    } else {
        // Our own server: its owner shows, and there is nothing to warn of.
        assert!(
            row.ends_with(&format!("{}/fivetuple", server.pid())),
            "{row}"
        );
        assert!(err.is_empty(), "{err}");
    }
}
