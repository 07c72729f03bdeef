//! `serve --workers N`: N reactors, each with its own listening socket on
//! the same port (SO_REUSEPORT), the kernel spreading connections across
//! them; `/_/whoami` and the tables name the worker; `/_/conns?workers`
//! gathers every table; `/_/metrics` counts for every worker, whichever
//! answers; an event stream names its worker; `--pin` pins each worker to
//! one of the cores it was given; a signal stops them all.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Write;
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::{read_response, wait_until, Server};
use crate::privilege::this_test;
use crate::{common, privilege};

const WHOAMI: &[u8] = b"GET /_/whoami HTTP/1.1\r\nHost: x\r\n\r\n";
const METRICS: &[u8] = b"GET /_/metrics HTTP/1.1\r\nHost: x\r\n\r\n";

/// Connections held open until both of two workers hold some, each
/// answered once. The kernel's hash decides; 200 tries would all land on
/// one worker about once in 2^199.
fn hold_on_both_workers(server: &Server) -> Vec<TcpStream> {
    let mut held = Vec::new();
    let mut workers = BTreeSet::new();
    while workers.len() < 2 {
        assert!(
            held.len() < 200,
            "200 connections, all on worker {workers:?}"
        );
        let mut c = server.connect();
        c.write_all(WHOAMI).unwrap();
        workers.insert(worker_of(&read_response(&mut c).unwrap().text()));
        held.push(c);
    }
    held
}

/// The samples of a scrape, `name{labels}` → value (the strict parser's
/// test is in tests/suite/live.rs).
fn samples(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .map(|(k, v)| (k.to_string(), v.parse().unwrap()))
        .collect()
}

/// A counter's samples: `_total` series and every part of a histogram.
fn is_counter(name: &str) -> bool {
    let family = name.split('{').next().unwrap_or(name);
    ["_total", "_count", "_sum", "_bucket"]
        .iter()
        .any(|s| family.ends_with(s))
}

/// The worker named at the end of a `/_/whoami` answer.
fn worker_of(answer: &str) -> usize {
    answer
        .trim_end()
        .rsplit_once(", worker ")
        .and_then(|(_, w)| w.parse().ok())
        .unwrap_or_else(|| panic!("no worker in {answer:?}"))
}

#[test]
fn four_workers_share_one_port_and_every_one_gets_connections() {
    // Forty clients leave a worker without one once in tens of thousands
    // of runs; two hundred, never.
    let Some(lent) = privilege::descriptors(this_test!(), 201, 41) else {
        return;
    };
    let n = lent.count() - 1; // and one to ask for the tables
    let mut server = Server::start(&["--workers", "4", "--quiet"]);
    let mut clients: Vec<TcpStream> = (0..n).map(|_| server.connect()).collect();
    let mut per_worker: BTreeMap<usize, usize> = BTreeMap::new();
    for c in &mut clients {
        c.write_all(WHOAMI).unwrap();
        let text = read_response(c).unwrap().text();
        // The same port for all, each client's own ephemeral port.
        let me = c.local_addr().unwrap();
        assert!(
            text.starts_with(&format!("tcp {} <- {me}, token ", server.addr)),
            "{text}"
        );
        *per_worker.entry(worker_of(&text)).or_default() += 1;
    }
    eprintln!("{n} connections over 4 workers: {per_worker:?}");
    assert_eq!(per_worker.keys().copied().collect::<Vec<_>>(), [0, 1, 2, 3]);

    // Every worker's table, gathered: together they hold every client.
    wait_until(Duration::from_secs(10), || {
        let all: serde_json::Value =
            serde_json::from_slice(&server.get("/_/conns.json?workers&all").body).unwrap();
        let tables = all["workers"].as_array().unwrap();
        let open: u64 = tables
            .iter()
            .filter_map(|w| w["table"]["open"].as_u64())
            .sum();
        tables.len() == 4 && open == n as u64 + 1 // the clients and the asker
    });
    let text = server.get("/_/conns?workers").text();
    assert_eq!(text.matches("--- worker ").count(), 4, "{text}");
    assert!(text.contains("(yours, live)"));

    server.signal(libc::SIGTERM);
    assert!(server.wait_exit(Duration::from_secs(10)).success());
    let summary = server.stdout().last().cloned().unwrap_or_default();
    assert!(
        summary.starts_with("shut down: ") && summary.contains("connections accepted"),
        "{summary}"
    );
    let accepted: u64 = summary["shut down: ".len()..]
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap();
    assert!(
        accepted > n as u64,
        "{summary}: the workers' counts are added up"
    );
}

#[test]
fn workers_zero_means_one_per_core() {
    let server = Server::start(&["--workers", "0", "--pin", "--quiet"]);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let text = server.get("/_/conns?workers").text();
    if cores > 1 {
        assert_eq!(text.matches("--- worker ").count(), cores, "{text}");
    }
    assert_eq!(server.get("/_/hello").body, b"Hello, World!");
}

#[test]
fn metrics_add_up_every_worker_and_counters_never_go_back() {
    let server = Server::start(&["--workers", "2", "--quiet"]);
    // Both workers on the board first, so that what follows is news to it.
    wait_until(Duration::from_secs(10), || {
        let m = samples(&server.get("/_/metrics").text());
        (0..2).all(|w| {
            m.contains_key(&format!(
                "fivetuple_worker_connections_open{{worker=\"{w}\"}}"
            ))
        })
    });
    let held = hold_on_both_workers(&server);

    // Each scrape on a fresh connection, kept open: a worker's figures
    // then change only when it answers a scrape, and it posts what it
    // reports, so once the board has caught up with the connections above
    // (a worker posts within a second of a change), every scrape counts
    // exactly: the held connections and one per scrape so far.
    let mut scrapers: Vec<TcpStream> = Vec::new();
    let mut scrape = || {
        let mut c = server.connect();
        c.write_all(WHOAMI).unwrap();
        let worker = worker_of(&read_response(&mut c).unwrap().text());
        c.write_all(METRICS).unwrap();
        let text = read_response(&mut c).unwrap().text();
        scrapers.push(c);
        (worker, samples(&text), held.len() + scrapers.len())
    };
    let mut previous: Option<HashMap<String, f64>> = None;
    let mut check_counters = |now: &HashMap<String, f64>| {
        if let Some(before) = &previous {
            for (name, was) in before.iter().filter(|(n, _)| is_counter(n)) {
                let is = now.get(name).copied().unwrap_or(0.0);
                assert!(is >= *was, "{name} went back from {was} to {is}");
            }
        }
        previous = Some(now.clone());
    };
    let (started, deadline) = (Instant::now(), Instant::now() + Duration::from_secs(10));
    loop {
        let (_, m, open) = scrape();
        check_counters(&m);
        if m["fivetuple_connections_open"] == open as f64 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the workers' figures never added up to {open} open: {m:?}"
        );
    }
    let mut answered_by: BTreeMap<usize, usize> = BTreeMap::new();
    let mut scrapes = 0;
    while scrapes < 20 || answered_by.len() < 2 {
        assert!(
            scrapes < 200,
            "every scrape went to one worker: {answered_by:?}"
        );
        let (worker, m, open) = scrape();
        scrapes += 1;
        *answered_by.entry(worker).or_default() += 1;
        check_counters(&m);
        assert_eq!(m["fivetuple_connections_open"], open as f64, "{m:?}");
        let by_worker: f64 = (0..2)
            .map(|w| m[&format!("fivetuple_worker_connections_open{{worker=\"{w}\"}}")])
            .sum();
        assert_eq!(
            by_worker, open as f64,
            "the workers' series add up to the total"
        );
        assert_eq!(
            m[&format!("fivetuple_worker_figures_age_seconds{{worker=\"{worker}\"}}")],
            0.0,
            "the answering worker reports its own figures live"
        );
        assert!(m["fivetuple_connections_accepted_total"] >= open as f64);
        assert!(m["fivetuple_requests_served_total"] >= held.len() as f64);
    }
    eprintln!(
        "the board caught up in {:?}; {scrapes} scrapes then, answered by {answered_by:?}",
        started.elapsed()
    );
}

#[test]
fn an_event_stream_carries_its_workers_events_and_says_which() {
    let server = Server::start(&["--workers", "2", "--quiet"]);
    let mut stream = server.connect();
    stream
        .write_all(b"GET /_/events HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    // The head, `retry:`, then `hello` with the subscriber's token and worker.
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(10);
    while !String::from_utf8_lossy(&got).contains("}\n\n") {
        assert!(Instant::now() < deadline, "no hello: {got:?}");
        let n = std::io::Read::read(&mut stream, &mut buf).unwrap();
        assert!(n > 0, "the stream closed: {got:?}");
        got.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&got).into_owned();
    let data = text
        .split("event: hello\ndata: ")
        .nth(1)
        .and_then(|rest| rest.lines().next())
        .unwrap_or_else(|| panic!("no hello in {text:?}"));
    let hello: serde_json::Value = serde_json::from_str(data).unwrap();
    let (token, worker) = (hello["token"].as_u64().unwrap(), hello["worker"].as_u64());
    let worker = worker.unwrap_or_else(|| panic!("hello names no worker: {hello}"));
    assert!(worker < 2, "{hello}");

    // Whichever worker answers, `?worker=` gives the stream's worker's
    // table, where the stream's own connection shows once it is posted.
    wait_until(Duration::from_secs(10), || {
        let table: serde_json::Value = serde_json::from_slice(
            &server
                .get(&format!("/_/conns.json?all&worker={worker}"))
                .body,
        )
        .unwrap();
        assert_eq!(table["worker"].as_u64(), Some(worker), "{table}");
        table["rows"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["token"].as_u64() == Some(token) && r["remote"].is_string())
    });
}

/// The cores this process may run on.
fn allowed_cpus() -> Vec<usize> {
    // SAFETY: cpu_set_t is plain data; sched_getaffinity fills it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        assert_eq!(
            libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set),
            0
        );
        (0..libc::CPU_SETSIZE as usize)
            .filter(|&c| libc::CPU_ISSET(c, &set))
            .collect()
    }
}

/// Each worker thread's name and the cores it may use, from /proc.
fn worker_threads(pid: u32) -> BTreeMap<String, String> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return BTreeMap::new();
    };
    tasks
        .flatten()
        .filter_map(|task| {
            let name = std::fs::read_to_string(task.path().join("comm")).ok()?;
            let status = std::fs::read_to_string(task.path().join("status")).ok()?;
            let cpus = status
                .lines()
                .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))?;
            let name = name.trim();
            name.starts_with("worker-")
                .then(|| (name.to_string(), cpus.trim().to_string()))
        })
        .collect()
}

#[test]
fn pin_puts_each_worker_on_its_own_core_among_those_it_was_given() {
    let taskset = match privilege::tool("taskset", "util-linux") {
        Ok(path) => path,
        Err(need) => return privilege::skip(this_test!(), &need),
    };
    // The last two cores this test may use (or its only one): the pins
    // must stay inside what taskset gave the server, not start at core 0.
    let allowed = allowed_cpus();
    let given: Vec<usize> = allowed[allowed.len().saturating_sub(2)..].to_vec();
    let list = given
        .iter()
        .map(usize::to_string)
        .collect::<Vec<_>>()
        .join(",");
    let mut cmd = Command::new(taskset);
    cmd.args(["-c", &list, common::bin()])
        .args(["serve", "--listen", "127.0.0.1:0", "--quiet"])
        .args(["--workers", "2", "--pin"]);
    let server = Server::spawn(cmd, &[]);
    let mut threads = BTreeMap::new();
    wait_until(Duration::from_secs(10), || {
        threads = worker_threads(server.pid());
        threads.len() == 2 && threads.values().all(|cpus| !cpus.contains([',', '-']))
    });
    let pinned: Vec<usize> = threads.values().map(|c| c.parse().unwrap()).collect();
    let want: Vec<usize> = (0..2).map(|i| given[i % given.len()]).collect();
    assert_eq!(pinned, want, "given cores {list}: {threads:?}");
}

#[test]
fn an_idle_worker_with_news_wakes_to_post_it() {
    // Nothing else to do after one answer, the worker that gave it would
    // sleep on with the board showing its figures from before; instead it
    // sets an alarm for when its post is due (the trace shows what woke it).
    let server = Server::start(&["--workers", "2", "--quiet", "--trace"]);
    let woke = "woke for its post on the workers' board";
    // Each worker's first post, at once on starting.
    wait_until(Duration::from_secs(10), || {
        server.stdout().iter().filter(|l| l.contains(woke)).count() >= 2
    });
    let mut c = server.connect();
    c.write_all(WHOAMI).unwrap();
    read_response(&mut c).unwrap();
    wait_until(Duration::from_secs(10), || {
        let out = server.stdout();
        let answered = out.iter().position(|l| l.contains("answered 1 request"));
        answered.is_some_and(|at| out[at..].iter().any(|l| l.contains(woke)))
    });
}

/// The `/_/whoami` answer on `c`: its worker, or `None` if the server
/// refused the connection (503: that worker is full).
fn whoami(c: &mut TcpStream) -> Option<usize> {
    c.write_all(WHOAMI).ok()?;
    let r = read_response(c)?;
    (r.status == 200).then(|| worker_of(&r.text()))
}

#[test]
fn one_workers_downloads_do_not_fill_another_workers_share() {
    // Two workers, a cap of one descriptor each. A download that is not
    // read holds worker 0's socket and file. Worker 1 holds nothing and
    // must still take a connection: the file is worker 0's.
    let dir = common::TempDir::new("workers-files");
    std::fs::write(dir.join("big.bin"), vec![7u8; 32 << 20]).unwrap();
    let server = Server::start(&[
        "--workers",
        "2",
        "--max-conns",
        "2",
        "--quiet",
        "--dir",
        dir.arg(),
    ]);
    let mut downloads = Vec::new();
    for _ in 0..400 {
        if !downloads.is_empty() {
            break;
        }
        let mut c = server.connect_cramped();
        if whoami(&mut c) == Some(0) {
            c.write_all(b"GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n")
                .unwrap();
            downloads.push(c);
        }
    }
    assert_eq!(downloads.len(), 1, "a download on worker 0");
    // Each holds its file while the client does not read.
    wait_until(Duration::from_secs(20), || {
        server.get("/_/conns?workers").text().contains("writing")
    });
    let mut on_worker_1 = None;
    for _ in 0..400 {
        let mut c = server.connect();
        if whoami(&mut c) == Some(1) {
            on_worker_1 = Some(c);
            break;
        }
    }
    assert!(
        on_worker_1.is_some(),
        "worker 1 refused every connection: it counted worker 0's files"
    );
    drop(downloads);
}
