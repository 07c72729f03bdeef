//! The three views agree: the server's own table (`/_/conns.json`), the
//! kernel's table (`fivetuple conns`), and what each client saw
//! (`fivetuple connect`) name the same set of (local, remote) pairs.

use std::collections::BTreeSet;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common;
use crate::common::{read_response, wait_until, Server};

type Pairs = BTreeSet<(String, String)>;

#[test]
fn server_kernel_and_clients_name_the_same_pairs() {
    let server = Server::start(&["--quiet"]);
    let n = 50;
    let client = Command::new(common::bin())
        .args([
            "connect",
            &server.addr.to_string(),
            "-n",
            &n.to_string(),
            "--hold",
            "60",
            "--json",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();

    // The server's view, once every client is in.
    let mut server_view = Pairs::new();
    let mut asker = None;
    wait_until(Duration::from_secs(20), || {
        asker = None; // close the previous asking connection before asking again
        let mut s = server.connect();
        s.write_all(b"GET /_/conns.json HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
        let table: serde_json::Value =
            serde_json::from_slice(&read_response(&mut s).unwrap().body).unwrap();
        server_view = table["rows"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| !r["token"].is_null() && r["you"] == false)
            .map(|r| {
                (
                    r["local"].as_str().unwrap().to_string(),
                    r["remote"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        asker = Some(s);
        server_view.len() == n
    });
    let asker_end = asker.as_ref().unwrap().local_addr().unwrap().to_string();

    // The kernel's view: the server-side ESTABLISHED rows on the port, and one LISTEN row.
    let out = Command::new(common::bin())
        .args(["conns", "--port", &server.port().to_string(), "--json"])
        .output()
        .unwrap();
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let listening = rows.iter().filter(|r| r["state"] == "LISTEN").count();
    assert_eq!(listening, 1);
    let kernel_view: Pairs = rows
        .iter()
        .filter(|r| r["state"] == "ESTABLISHED" && r["local"] == server.addr.to_string())
        .map(|r| {
            (
                r["local"].as_str().unwrap().to_string(),
                r["remote"].as_str().unwrap().to_string(),
            )
        })
        .filter(|(_, remote)| *remote != asker_end)
        .collect();
    drop(asker);

    // The clients' view: each one's remote end is the server's local end, and the other way round.
    unsafe { libc::kill(client.id() as i32, libc::SIGINT) };
    let out = client.wait_with_output().unwrap();
    let outcomes: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let client_view: Pairs = outcomes
        .iter()
        .map(|o| {
            (
                o["remote"].as_str().unwrap().to_string(),
                o["local"].as_str().unwrap().to_string(),
            )
        })
        .collect();

    assert_eq!(server_view.len(), n);
    assert_eq!(
        server_view, kernel_view,
        "the server's table and the kernel's differ"
    );
    assert_eq!(
        server_view, client_view,
        "the server's table and the clients' differ"
    );
    let local_ports: BTreeSet<&str> = server_view.iter().map(|(l, _)| l.as_str()).collect();
    assert_eq!(local_ports.len(), 1, "all on one local address and port");
}
