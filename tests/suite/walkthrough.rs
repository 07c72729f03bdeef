//! Runs every command of docs/walkthrough.md and checks that its output has
//! the shape the page shows, so the page cannot go stale.
//!
//! The page uses the story's port; this test runs the server on a free port
//! and puts that port wherever the page names the story's. The page's port
//! where nothing listens, 501, becomes a port the test holds bound but never
//! listens on. Commands ending in `&` run in the
//! background, and the test waits until their connections have reached the
//! server before going on. "Shape" means the same lines once numbers (ports,
//! counts, times with their unit, µs or ms) are replaced by one placeholder
//! and runs of spaces by one space, compared without regard to order (the
//! kernel lists sockets in its own order).
//!
//! A `fivetuple serve` step (re)starts the server with the page's
//! arguments (`--udp`), on a free port as ever.
//!
//! The page's scratch-namespace step needs root or user namespaces; where
//! neither is to be had, that one step is skipped (visibly, see
//! `tests/privilege`) and the rest of the page still runs.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::common::{wait_until, Server};
use crate::privilege::this_test;
use crate::{common, privilege};
use fivetuple::procnet::{self, Protocols, TcpState};

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

/// A line with every number (and a time unit after it, `ms`, `µs` or `s`,
/// with or without a space before it) replaced by `9`: `85 µs` and
/// `1.20 ms` are the same shape, since which unit prints depends on the
/// machine's speed.
fn shape(line: &str) -> String {
    let chars: Vec<char> = line.trim().chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_ascii_digit() {
            while chars
                .get(i)
                .is_some_and(|c| c.is_ascii_digit() || *c == '.')
            {
                i += 1;
            }
            i += time_unit_len(&chars[i..]);
            out.push('9');
        } else if c.is_whitespace() {
            while chars.get(i).is_some_and(|c| c.is_whitespace()) {
                i += 1;
            }
            out.push(' ');
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

/// The length of a time unit at the start of `rest` (` ms`, `µs`, `s`...),
/// or 0 when there is none: the unit must end the word.
fn time_unit_len(rest: &[char]) -> usize {
    let space = usize::from(rest.first() == Some(&' '));
    for unit in ["ms", "µs", "s"] {
        let unit: Vec<char> = unit.chars().collect();
        let end = space + unit.len();
        if rest.get(space..end) == Some(&unit[..])
            && !rest.get(end).is_some_and(|c| c.is_alphanumeric())
        {
            return end;
        }
    }
    0
}

fn shapes(lines: &[String]) -> Vec<String> {
    let mut s: Vec<String> = lines.iter().map(|l| shape(l)).collect();
    s.sort();
    s
}

/// Clients the kernel shows at the server: TCP connections established
/// at its end and accepted (until `accept`, a connection's socket belongs
/// to no process: inode 0, and `-p` would show `-` for it), and UDP sockets
/// connected to it. Counted from /proc rather than by asking the server,
/// which would leave TIME_WAIT rows behind in the output the page shows.
fn open_connections(server: &Server) -> usize {
    let both = Protocols {
        tcp: true,
        udp: true,
    };
    procnet::read(Path::new("/proc"), both)
        .unwrap()
        .iter()
        .filter(|s| {
            (s.local == server.addr && s.state == TcpState::Established && s.inode != 0)
                || (s.is_udp() && s.remote == Some(server.addr))
        })
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
    let mut background: Vec<Background> = Vec::new();
    // A port no server of this test listens on yet, for the first step.
    let free_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // The page's port where nothing listens, for a refused connection:
    // bound for the whole test, so that no server of it gets that port, and
    // never listening, so that a SYN there meets a reset.
    let unheard = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    unheard
        .bind(&std::net::SocketAddr::from(([127, 0, 0, 1], 0)).into())
        .unwrap();
    let refused_port = unheard
        .local_addr()
        .unwrap()
        .as_socket()
        .expect("an IP address")
        .port();

    for step in &steps {
        let command = step.command.trim_start_matches("sudo ").to_string();
        if let Some(args) = command.strip_prefix("fivetuple serve") {
            // `fivetuple serve [--udp]`: (re)started on a free port; the
            // one before it, if any, stops as Ctrl-C would stop it.
            drop(server.take());
            let args: Vec<&str> = args.split_whitespace().collect();
            let s = Server::start(&args);
            wait_until(Duration::from_secs(10), || !s.stdout().is_empty());
            let first = s.stdout()[..1].to_vec();
            assert_eq!(shapes(&first), shapes(&step.expected), "{command}");
            server = Some(s);
            continue;
        }
        let port = server.as_ref().map_or(free_port, Server::port).to_string();
        let doc_port = 500;
        let command = command
            .replace(&format!(":{doc_port}"), &format!(":{port}"))
            .replace(":501", &format!(":{refused_port}"))
            .replace(&format!("--port {doc_port}"), &format!("--port {port}"));
        let mut sh = Command::new("sh");
        sh.args(["-c", command.trim_end_matches('&')]);
        if let Some(rest) = command.strip_prefix("unshare --net ") {
            // The page says `sudo unshare --net`; a normal user gets the same
            // scratch namespace inside a user namespace, where allowed.
            let unshare = match privilege::net_namespace() {
                Ok(prefix) => prefix,
                Err(need) => {
                    privilege::skip(
                        &format!(
                            "{} (only its step `unshare --net sh docs/run-out-of-ports.sh`)",
                            this_test!()
                        ),
                        &need,
                    );
                    continue;
                }
            };
            sh = Command::new(unshare[0]);
            sh.args(&unshare[1..]).args(["sh", "-c", rest]);
        }
        sh.env("PATH", &path)
            .env("FIVETUPLE", common::bin())
            .current_dir(env!("CARGO_MANIFEST_DIR"));
        if command.ends_with('&') {
            let server = server.as_ref().expect("a server for background clients");
            let before = open_connections(server);
            background.push(Background::spawn(sh));
            wait_until(Duration::from_secs(20), || {
                open_connections(server) > before
            });
            continue;
        }
        let out = sh.output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        // Other tests start and stop servers all the while, and the kernel
        // may give this test's server a port that one of theirs had a
        // moment ago: that one's clients, in TIME_WAIT for a minute, name
        // the port too, and `conns --port` lists them. This test leaves no
        // TIME_WAIT of its own (see `open_connections`), so where the page
        // shows none, such rows are another test's.
        let page_shows_time_wait = step.expected.iter().any(|l| l.contains("TIME_WAIT"));
        let actual: Vec<String> = stdout
            .lines()
            .filter(|l| page_shows_time_wait || !l.contains("TIME_WAIT"))
            .map(str::to_string)
            .collect();
        assert_eq!(
            shapes(&actual),
            shapes(&step.expected),
            "`{command}` printed:\n{stdout}\n(stderr: {})",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// A command of the page run in the background (`... &`), in a process
/// group of its own, all of which is killed when this is dropped, also
/// when the test fails: `sh` may run the client as a child rather than
/// become it, and a client left holding the test's stderr for the rest of
/// its `--hold` keeps `cargo test` waiting after the tests have ended.
struct Background(Child);

impl Background {
    fn spawn(mut sh: Command) -> Background {
        sh.process_group(0).stdout(Stdio::null());
        Background(sh.spawn().expect("sh runs the page's command"))
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        // SAFETY: kill(2) on the process group of a child we spawned as its
        // leader and have not reaped, so the group is still ours.
        unsafe { libc::kill(-(self.0.id() as i32), libc::SIGKILL) };
        let _ = self.0.wait();
    }
}

#[test]
fn shapes_ignore_numbers_and_spacing_only() {
    assert_eq!(shape("tcp   0  13 127.0.0.1:8080  1.2s"), "tcp 9 9 9:9 9");
    assert_eq!(shape("connected in 0.25 ms, sent"), "connected in 9, sent");
    assert_eq!(
        shape("connected in 85 µs, sent"),
        shape("connected in 1.20 ms, sent")
    );
    assert_eq!(shape("idle      312ms          0"), "idle 9 9");
    assert_eq!(shape("sent 13 B"), "sent 9 B");
    assert_eq!(
        shape("12 connections from 2 sources"),
        "9 connections from 9 sources"
    );
    assert_ne!(shape("LISTEN"), shape("ESTABLISHED"));
}
