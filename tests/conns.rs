//! `fivetuple conns`, black-box: the kernel's table agrees with the sockets
//! the test itself opened.

mod common;

use std::collections::HashSet;
use std::net::{TcpStream, UdpSocket};
use std::process::Command;
use std::time::Duration;

use common::{wait_until, Server};

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
    let _c = server.connect();
    let p = server.port().to_string();
    wait_until(Duration::from_secs(10), || {
        conns_json(&["--port", &p, "--state", "estab"]).len() == 2
    });
    assert!(conns_json(&["--port", &p, "--state", "time_wait"]).is_empty());
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
