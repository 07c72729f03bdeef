//! `docs/demo-hosts.sh` (`make demo-hosts`): a server host and three client
//! hosts in their own network namespaces, and the server's table showing
//! three different remote addresses on one local port. It needs root to
//! create namespaces, and skips with one line where it cannot.

use crate::privilege::this_test;
use crate::{common, privilege};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/demo-hosts.sh");

/// The script, run with this build and a port the kernel picks (inside the
/// test's own hosts).
fn script() -> Command {
    let mut sh = Command::new("sh");
    sh.arg(SCRIPT)
        .env("FIVETUPLE", common::bin())
        .env("PORT", "0");
    sh
}

/// The network namespaces a run of the script made (named after its pid).
fn namespaces_of(pid: u32) -> Vec<String> {
    let out = Command::new("ip").args(["netns", "list"]).output();
    let prefix = format!("ft{pid}-");
    out.map(|o| {
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .filter(|l| l.starts_with(&prefix))
            // `ft123-server (id: 4)`: the name is the first word.
            .filter_map(|l| l.split_whitespace().next())
            .map(str::to_string)
            .collect()
    })
    .unwrap_or_default()
}

/// Namespaces can be made here (root, and a kernel and sandbox that allow it).
fn can_make_namespaces(test: &str) -> bool {
    if !privilege::is_root() {
        return false;
    }
    let name = format!("ftprobe{}-{test}", std::process::id());
    let made = Command::new("ip")
        .args(["netns", "add", &name])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if made {
        let _ = Command::new("ip").args(["netns", "del", &name]).status();
    }
    made
}

#[test]
fn three_client_hosts_show_three_remote_addresses_on_one_port() {
    if !can_make_namespaces("three") {
        return privilege::skip(
            this_test!(),
            "root, to make network namespaces (ip netns add)",
        );
    }
    let child = script()
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("sh runs the script");
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The server's table: one row per connection, all on 10.50.0.1 and the
    // one port the server was given, from three hosts, two connections each.
    let port = stdout
        .lines()
        .find_map(|l| l.split("listening on 10.50.0.1:").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .expect("the server's listening line");
    let local = format!("10.50.0.1:{port}");
    for host in ["10.50.0.11", "10.50.0.12", "10.50.0.13"] {
        let rows = stdout
            .lines()
            .filter(|l| l.contains("ESTABLISHED") && l.contains(&local))
            .filter(|l| l.contains(&format!(" {host}:")))
            .count();
        // Two in the server's table, two in the kernel's (the asker's own
        // connection comes from client1 on top).
        assert!(rows >= 4, "{rows} rows from {host}:\n{stdout}");
    }
    assert!(namespaces_of(pid).is_empty(), "namespaces left behind");
}

#[test]
fn ctrl_c_leaves_no_host_behind() {
    if !can_make_namespaces("ctrl_c") {
        return privilege::skip(
            this_test!(),
            "root, to make network namespaces (ip netns add)",
        );
    }
    let mut child = script()
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("sh runs the script");
    let pid = child.id();
    // Interrupt it once its hosts exist and the server runs.
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().and_then(Result::ok).unwrap_or_default();
    assert!(first.starts_with("server host"), "{first}");
    let inside = processes_in(pid);
    assert!(!inside.is_empty(), "the server runs inside its host");
    // SAFETY: kill with a pid we spawned and a valid signal number.
    unsafe { libc::kill(pid as i32, libc::SIGINT) };
    let _ = child.wait();
    assert!(namespaces_of(pid).is_empty(), "namespaces left behind");
    let left: Vec<u32> = inside.into_iter().filter(|&p| still_runs(p)).collect();
    assert!(left.is_empty(), "processes left running: {left:?}");
}

/// The processes inside the hosts of the script run `pid` (`ip netns pids`).
fn processes_in(pid: u32) -> Vec<u32> {
    namespaces_of(pid)
        .iter()
        .filter_map(|ns| Command::new("ip").args(["netns", "pids", ns]).output().ok())
        .flat_map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect()
}

/// Whether process `pid` is alive: it exists and is not a zombie waiting to
/// be reaped. Killed processes may take a moment to go, so this waits up to
/// five seconds before answering yes.
fn still_runs(pid: u32) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // The state follows the command name in parentheses: `123 (name) S ...`.
        let state = stat
            .rsplit(") ")
            .next()
            .and_then(|rest| rest.chars().next());
        if matches!(state, None | Some('Z' | 'X')) {
            return false;
        }
        if std::time::Instant::now() > deadline {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}
