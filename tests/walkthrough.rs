//! Runs every command of docs/walkthrough.md and checks that its output has
//! the shape the page shows, so the page cannot go stale.
//!
//! The page uses the story's port; this test runs the server on a free port
//! and puts that port wherever the page names the story's. Commands ending in `&` run in the
//! background, and the test waits until their connections have reached the
//! server before going on. "Shape" means the same lines once numbers (ports,
//! counts, times) are replaced by one placeholder and runs of spaces by one
//! space, compared without regard to order (the kernel lists sockets in
//! its own order).

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{wait_until, Server};

struct Step {
    command: String,
    expected: Vec<String>,
}

/// The `$ command` lines of the ```console blocks, each with the lines after it.
fn steps(doc: &str) -> Vec<Step> {
    let mut steps: Vec<Step> = Vec::new();
    let mut in_console = false;
    for line in doc.lines() {
        if line.starts_with("```") {
            in_console = line == "```console";
            continue;
        }
        if !in_console {
            continue;
        }
        match line.strip_prefix("$ ") {
            Some(command) => steps.push(Step {
                command: command.to_string(),
                expected: Vec::new(),
            }),
            None => steps
                .last_mut()
                .expect("output before a command")
                .expected
                .push(line.to_string()),
        }
    }
    steps
}

/// A line with every number (and a time unit after it) replaced by `9`.
fn shape(line: &str) -> String {
    let mut out = String::new();
    let mut chars = line.trim().chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() {
            while chars
                .peek()
                .is_some_and(|c| c.is_ascii_digit() || *c == '.')
            {
                chars.next();
            }
            if chars.peek() == Some(&'m') {
                chars.next();
            }
            if chars.peek() == Some(&'s') {
                chars.next();
            }
            out.push('9');
        } else if c.is_whitespace() {
            while chars.peek().is_some_and(|c| c.is_whitespace()) {
                chars.next();
            }
            out.push(' ');
        } else {
            out.push(c);
        }
    }
    out
}

fn shapes(lines: &[String]) -> Vec<String> {
    let mut s: Vec<String> = lines.iter().map(|l| shape(l)).collect();
    s.sort();
    s
}

/// Connections the kernel has established to the server, counted from
/// /proc rather than by asking the server, which would leave TIME_WAIT rows
/// behind in the output the page shows.
fn open_connections(server: &Server) -> usize {
    fivetuple::procnet::read_sockets(Path::new("/proc"))
        .unwrap()
        .iter()
        .filter(|s| s.local == server.addr && s.state == fivetuple::procnet::TcpState::Established)
        .count()
}

#[test]
fn every_command_in_the_walkthrough_prints_what_the_page_shows() {
    let doc = std::fs::read_to_string("docs/walkthrough.md").unwrap();
    let steps = steps(&doc);
    assert!(steps.len() >= 10, "the walkthrough lost its commands");
    let bin_dir = Path::new(common::bin()).parent().unwrap().to_path_buf();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut server: Option<Server> = None;
    let mut background: Vec<Child> = Vec::new();
    // A port no server of this test listens on yet, for the first step.
    let free_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();

    for step in &steps {
        let command = step.command.trim_start_matches("sudo ").to_string();
        if command == "fivetuple serve" {
            let s = Server::start(&[]);
            let first = format!("listening on {}", s.addr);
            assert_eq!(shapes(&[first]), shapes(&step.expected), "{command}");
            server = Some(s);
            continue;
        }
        let port = server.as_ref().map_or(free_port, Server::port).to_string();
        let doc_port = 500;
        let command = command
            .replace(&format!(":{doc_port}"), &format!(":{port}"))
            .replace(&format!("--port {doc_port}"), &format!("--port {port}"));
        let mut sh = Command::new("sh");
        sh.args(["-c", command.trim_end_matches('&')])
            .env("PATH", &path)
            .env("FIVETUPLE", common::bin())
            .current_dir(env!("CARGO_MANIFEST_DIR"));
        if let Some(rest) = command.strip_prefix("unshare --net ") {
            sh = Command::new("unshare");
            sh.args(["--net", "sh", "-c", rest])
                .env("PATH", &path)
                .env("FIVETUPLE", common::bin())
                .current_dir(env!("CARGO_MANIFEST_DIR"));
        }
        if command.ends_with('&') {
            let server = server.as_ref().expect("a server for background clients");
            let before = open_connections(server);
            background.push(sh.stdout(Stdio::null()).spawn().unwrap());
            wait_until(Duration::from_secs(20), || {
                open_connections(server) > before
            });
            continue;
        }
        let out = sh.output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let actual: Vec<String> = stdout.lines().map(str::to_string).collect();
        assert_eq!(
            shapes(&actual),
            shapes(&step.expected),
            "`{command}` printed:\n{stdout}\n(stderr: {})",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    for mut child in background {
        let _ = child.kill();
        let _ = child.wait();
    }
}

#[test]
fn shapes_ignore_numbers_and_spacing_only() {
    assert_eq!(shape("tcp   0  13 127.0.0.1:8080  1.2s"), "tcp 9 9 9:9 9");
    assert_eq!(shape("connected in 0.25 ms"), "connected in 9 ms");
    assert_ne!(shape("LISTEN"), shape("ESTABLISHED"));
}
