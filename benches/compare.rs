//! `make bench`: the mio reactor against the tokio version of the same
//! server, measured so that the numbers can be trusted on a small, noisy
//! machine.
//!
//! - Each server runs pinned to core 0 (`taskset -c 0`), the load generator
//!   (wrk) to core 1, so the two do not fight for a core; the multi-thread
//!   tokio variant gets both cores and is shown for reference.
//! - Servers alternate run by run (A B A B …, three rounds), so drift in the
//!   machine hits both alike; the report gives the median of the rounds.
//! - Throughput and latency come from wrk. The server's own cost comes from
//!   the kernel: user and system CPU time from `/proc/PID/stat` before and
//!   after each run, divided by the requests served. On two cores the load
//!   generator often saturates first, so CPU per request is the figure that
//!   shows what each server costs.
//! - System calls per request come from a separate `strace -c` pass (strace
//!   slows everything down, so it never overlaps a timed run).
//! - Memory per held connection: fresh servers, 15,000 connections opened
//!   by `fivetuple connect -n 15000 --http` (one request each, then held),
//!   then the server's RSS growth; the ramp gives connections per second.
//!
//! Writes target/bench/results.json, target/bench/report.md and SVG charts,
//! and copies the report and charts to docs/.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use plotters::prelude::*;
use serde_json::json;

/// What the figures mean, printed above them on the docs page.
const READING: &str = "## Reading the figures\n\n\
On two cores, with server and load generator on one core each, wrk is usually the \
bottleneck: it runs its core at 100 % while the servers do not. Server CPU per request \
is then the figure that shows what each server costs. Requests per second also depends \
on how often the server goes to sleep in `epoll_wait`: a server that finishes its batch \
sooner sleeps more often, and each sleep means that wrk's next write must wake it, which \
costs wrk time on its own core. In one measurement at 1,000 connections the mio server \
used 60 % of its core and slept 6,730 times in 4 s; the tokio server used 82 % and slept \
1,984 times, and wrk, with fewer wake-ups to pay for, completed 18 % more requests. \
User CPU per request is mostly the protocol code, which both servers share \
(criterion: about 85 ns per request pipelined), so the reactor's user time can only fall \
to half of tokio's where tokio's per-task costs outweigh it (many connections, churn). \
Latency is not reported for the pipelined runs, because wrk times the whole batch of 16.\n";

/// Length of one timed wrk run.
const RUN_SECS: u32 = 4;
/// Rounds of A B alternation per scenario.
const ROUNDS: usize = 3;
/// Idle connections held for the memory figure.
const HELD: usize = 15_000;

/// A server under test: how to start it and where it runs.
#[derive(Clone)]
struct Subject {
    name: &'static str,
    program: PathBuf,
    args: Vec<&'static str>,
    cpus: &'static str,
}

/// A load scenario for wrk.
struct Scenario {
    name: &'static str,
    connections: u32,
    script: Option<&'static str>,
}

/// What one timed run measured.
#[derive(Debug, Clone, Default, serde::Serialize)]
struct Run {
    requests: u64,
    rps: f64,
    p50_us: f64,
    p99_us: f64,
    user_us_per_req: f64,
    sys_us_per_req: f64,
}

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let out_dir = root.join("target/bench");
    fs::create_dir_all(&out_dir).expect("target/bench");
    raise_fd_limit();
    let release = root.join("target/release");
    let subjects = vec![
        Subject {
            name: "mio",
            program: release.join("fivetuple"),
            args: vec!["serve", "--listen", "127.0.0.1:0", "--quiet"],
            cpus: "0",
        },
        Subject {
            name: "tokio",
            program: release.join("examples/tokio_server"),
            args: vec!["--flavor", "current_thread"],
            cpus: "0",
        },
        Subject {
            name: "tokio-mt",
            program: release.join("examples/tokio_server"),
            args: vec!["--flavor", "multi_thread", "--workers", "2"],
            cpus: "0,1",
        },
    ];
    for s in &subjects {
        assert!(
            s.program.exists(),
            "{} is not built: run `make bench`",
            s.program.display()
        );
    }
    let pipeline = out_dir.join("pipeline16.lua");
    fs::write(
        &pipeline,
        "init = function(args)\n  local r = {}\n  for i = 1, 16 do r[i] = wrk.format(nil, \"/_/hello\") end\n  req = table.concat(r)\nend\nrequest = function() return req end\n",
    )
    .unwrap();
    let close = out_dir.join("close.lua");
    fs::write(&close, "wrk.headers[\"Connection\"] = \"close\"\n").unwrap();
    let scenarios = [
        Scenario {
            name: "keep-alive, 50 connections",
            connections: 50,
            script: None,
        },
        Scenario {
            name: "keep-alive, 1000 connections",
            connections: 1000,
            script: None,
        },
        Scenario {
            name: "pipelined x16, 50 connections",
            connections: 50,
            script: Some("pipeline16.lua"),
        },
        Scenario {
            name: "one request per connection",
            connections: 50,
            script: Some("close.lua"),
        },
    ];

    let started = Instant::now();
    // mio and tokio (both on one core) alternate run by run.
    let mut results = alternate(&subjects[..2], &scenarios, &out_dir, &started);
    // tokio-mt (two cores, shared with wrk) for reference, on its own.
    for scenario in &scenarios {
        let subject = &subjects[2];
        let mut server = Server::start(subject);
        let _ = wrk(&server.addr, scenario, &out_dir, 1);
        let runs: Vec<Run> = (0..ROUNDS)
            .map(|_| timed(&mut server, scenario, &out_dir))
            .collect();
        eprintln!(
            "[{:>4.0}s] {:<32} {:<9} {:>10.0} req/s",
            started.elapsed().as_secs_f64(),
            scenario.name,
            subject.name,
            median(&runs, |r| r.rps)
        );
        results
            .entry(scenario.name.to_string())
            .or_default()
            .insert(subject.name.to_string(), median_run(&runs));
    }

    let mut syscalls = BTreeMap::new();
    for subject in &subjects {
        for scenario in [&scenarios[0], &scenarios[2]] {
            let per_req = strace_pass(subject, scenario, &out_dir);
            eprintln!(
                "[{:>4.0}s] syscalls/request {:<32} {:<9} {per_req:.3}",
                started.elapsed().as_secs_f64(),
                scenario.name,
                subject.name
            );
            syscalls.insert(format!("{}|{}", scenario.name, subject.name), per_req);
        }
    }

    let mut held = BTreeMap::new();
    for subject in &subjects {
        let figure = hold_idle(subject, &release.join("fivetuple"), HELD);
        eprintln!(
            "[{:>4.0}s] {} held {} connections: {:.0} bytes each, {:.0} established/s",
            started.elapsed().as_secs_f64(),
            subject.name,
            figure.0,
            figure.1,
            figure.2
        );
        held.insert(subject.name.to_string(), figure);
    }

    let machine = machine();
    let report = report(&results, &syscalls, &held, &machine);
    let json = json!({
        "machine": machine,
        "run_seconds": RUN_SECS,
        "rounds": ROUNDS,
        "scenarios": results,
        "syscalls_per_request": syscalls,
        "held_idle": held.iter().map(|(k, (n, b, r))| (k.clone(), json!({"connections": n, "bytes_per_connection": b, "established_per_second": r}))).collect::<BTreeMap<_, _>>(),
    });
    fs::write(
        out_dir.join("results.json"),
        serde_json::to_string_pretty(&json).unwrap(),
    )
    .unwrap();
    fs::write(out_dir.join("report.md"), &report).unwrap();
    // Throughput spans 30 thousand to 2 million requests/s across scenarios,
    // so it is drawn relative to tokio's figure in the same scenario.
    let relative: BTreeMap<String, BTreeMap<String, Run>> = results
        .iter()
        .map(|(scenario, by)| {
            let base = by.get("tokio").map_or(1.0, |t| t.rps.max(1.0));
            let scaled = by
                .iter()
                .map(|(k, r)| {
                    (
                        k.clone(),
                        Run {
                            rps: r.rps / base,
                            ..r.clone()
                        },
                    )
                })
                .collect();
            (scenario.clone(), scaled)
        })
        .collect();
    chart(
        &relative,
        &out_dir.join("throughput.svg"),
        "requests per second, relative to tokio (current_thread)",
        |r| r.rps,
        "× tokio's requests/s",
    );
    chart(
        &results,
        &out_dir.join("cpu.svg"),
        "server CPU per request",
        |r| r.user_us_per_req + r.sys_us_per_req,
        "µs per request (user + system)",
    );
    let docs = root.join("docs");
    fs::create_dir_all(docs.join("bench")).unwrap();
    for f in ["throughput.svg", "cpu.svg"] {
        fs::copy(out_dir.join(f), docs.join("bench").join(f)).unwrap();
    }
    let page = format!(
        "# Benchmarks\n\nThe latest `make bench` run: the mio reactor (`fivetuple serve`) against the \
         tokio version of the same server (`benches/tokio_server.rs`, same routes and the same \
         sans-IO protocol code), on the machine described below. How the numbers are taken is \
         explained at the top of `benches/compare.rs`.\n\n![requests per second, relative to tokio](bench/throughput.svg)\n\n\
         ![CPU per request](bench/cpu.svg)\n\n{READING}\n{report}"
    );
    fs::write(docs.join("benchmarks.md"), page).unwrap();
    println!("{report}");
    eprintln!("wrote target/bench/report.md, results.json, throughput.svg, cpu.svg and docs/benchmarks.md in {:.0}s", started.elapsed().as_secs_f64());
}

/// The A B A B runs: every round runs each subject once, in turn.
fn alternate(
    subjects: &[Subject],
    scenarios: &[Scenario],
    out_dir: &Path,
    started: &Instant,
) -> BTreeMap<String, BTreeMap<String, Run>> {
    let mut out = BTreeMap::new();
    for scenario in scenarios {
        let mut servers: Vec<Server> = subjects.iter().map(Server::start).collect();
        for s in &servers {
            let _ = wrk(&s.addr, scenario, out_dir, 1);
        }
        let mut runs: Vec<Vec<Run>> = vec![Vec::new(); servers.len()];
        for _ in 0..ROUNDS {
            for (i, server) in servers.iter_mut().enumerate() {
                runs[i].push(timed(server, scenario, out_dir));
            }
        }
        let entry: &mut BTreeMap<String, Run> = out.entry(scenario.name.to_string()).or_default();
        for (subject, runs) in subjects.iter().zip(&runs) {
            eprintln!(
                "[{:>4.0}s] A/B {:<28} {:<9} {:>10.0} req/s",
                started.elapsed().as_secs_f64(),
                scenario.name,
                subject.name,
                median(runs, |r| r.rps)
            );
            entry.insert(subject.name.to_string(), median_run(runs));
        }
    }
    out
}

/// A running server, killed on drop.
struct Server {
    child: Child,
    addr: SocketAddr,
}

impl Server {
    fn start(subject: &Subject) -> Server {
        let mut child = Command::new("taskset")
            .args(["-c", subject.cpus])
            .arg(&subject.program)
            .args(&subject.args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("taskset and the server");
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("{} said {line:?}", subject.name))
            .parse()
            .unwrap();
        Server { child, addr }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One timed wrk run with the server's CPU time around it.
fn timed(server: &mut Server, scenario: &Scenario, out_dir: &Path) -> Run {
    let before = cpu_ticks(server.pid());
    let mut run = wrk(&server.addr, scenario, out_dir, RUN_SECS);
    let after = cpu_ticks(server.pid());
    let tick_us = 1e6 / clock_ticks_per_second();
    let requests = run.requests.max(1) as f64;
    run.user_us_per_req = (after.0 - before.0) as f64 * tick_us / requests;
    run.sys_us_per_req = (after.1 - before.1) as f64 * tick_us / requests;
    run
}

/// Runs wrk pinned to core 1 and reads its summary.
fn wrk(addr: &SocketAddr, scenario: &Scenario, out_dir: &Path, secs: u32) -> Run {
    let mut cmd = Command::new("taskset");
    cmd.args(["-c", "1", "wrk", "-t1", "--latency"])
        .arg(format!("-c{}", scenario.connections))
        .arg(format!("-d{secs}s"));
    if let Some(script) = scenario.script {
        cmd.arg("-s").arg(out_dir.join(script));
    }
    let out = cmd
        .arg(format!("http://{addr}/_/hello"))
        .output()
        .expect("wrk");
    let mut run = parse_wrk(&String::from_utf8_lossy(&out.stdout));
    if scenario.script == Some("pipeline16.lua") {
        // wrk times one "request" call, which here is 16 requests in a row:
        // its latency figures mean nothing for this scenario.
        run.p50_us = f64::NAN;
        run.p99_us = f64::NAN;
    }
    run
}

fn parse_wrk(text: &str) -> Run {
    let mut run = Run::default();
    for line in text.lines().map(str::trim) {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["50%", v] => run.p50_us = micros(v),
            ["99%", v] => run.p99_us = micros(v),
            ["Requests/sec:", v] => run.rps = v.parse().unwrap_or(0.0),
            [n, "requests", "in", ..] => run.requests = n.parse().unwrap_or(0),
            _ => {}
        }
    }
    run
}

/// wrk's `123.45us`, `1.23ms`, `2.00s` in microseconds.
fn micros(v: &str) -> f64 {
    let split = v.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(v.len());
    let (n, unit) = v.split_at(split);
    let n: f64 = n.parse().unwrap_or(0.0);
    match unit {
        "us" => n,
        "ms" => n * 1e3,
        "s" => n * 1e6,
        "m" => n * 60e6,
        _ => n,
    }
}

/// (utime, stime) in clock ticks.
fn cpu_ticks(pid: u32) -> (u64, u64) {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = rest
        .split_whitespace()
        .map(|v| v.parse().unwrap_or(0))
        .collect();
    (
        f.get(11).copied().unwrap_or(0),
        f.get(12).copied().unwrap_or(0),
    )
}

fn clock_ticks_per_second() -> f64 {
    // SAFETY: sysconf only reads a constant.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as f64
    } else {
        100.0
    }
}

fn rss_bytes(pid: u32) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap_or(0)
        * 1024
}

/// System calls per request: strace attached for a short wrk run.
fn strace_pass(subject: &Subject, scenario: &Scenario, out_dir: &Path) -> f64 {
    let server = Server::start(subject);
    let _ = wrk(&server.addr, scenario, out_dir, 1);
    let log = out_dir.join(format!("strace-{}.txt", subject.name));
    let mut strace = Command::new("strace")
        .args(["-c", "-f", "-p", &server.pid().to_string(), "-o"])
        .arg(&log)
        .stderr(Stdio::piped())
        .spawn()
        .expect("strace");
    // strace says "Process N attached" once it is in place.
    let mut err = BufReader::new(strace.stderr.take().unwrap());
    let mut line = String::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !line.contains("attached") && Instant::now() < deadline {
        line.clear();
        if err.read_line(&mut line).unwrap_or(0) == 0 {
            break;
        }
    }
    let run = wrk(&server.addr, scenario, out_dir, 3);
    // SAFETY: SIGINT to our own child makes strace detach and write its summary.
    unsafe { libc::kill(strace.id() as i32, libc::SIGINT) };
    let _ = strace.wait();
    let summary = fs::read_to_string(&log).unwrap_or_default();
    let calls: f64 = summary
        .lines()
        .find(|l| l.trim_end().ends_with("total"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    calls / run.requests.max(1) as f64
}

/// Holds `n` idle connections to a fresh server with `fivetuple connect -n N
/// --http` (one request each, then held), and returns (connections held,
/// server RSS growth per connection in bytes, connections established per
/// second while `connect` ramped up).
fn hold_idle(subject: &Subject, client: &Path, n: usize) -> (usize, f64, f64) {
    let server = Server::start(subject);
    // One connection first, so buffers that exist once are in the baseline.
    let mut first = TcpStream::connect(server.addr).unwrap();
    request(&mut first);
    let base = rss_bytes(server.pid());
    let started = Instant::now();
    let mut connect = Command::new("taskset")
        .args(["-c", "1"])
        .arg(client)
        .args([
            "connect",
            &server.addr.to_string(),
            "-n",
            &n.to_string(),
            "--http",
            "--hold",
            "120",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("fivetuple connect");
    // Established: the server's ends in the kernel's own table.
    let deadline = started + Duration::from_secs(90);
    let mut held = 0;
    while Instant::now() < deadline {
        // (Capped: /proc is read while it changes and can list a socket twice.)
        held = established_to(server.addr).saturating_sub(1).min(n);
        if held >= n {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let rate = held as f64 / started.elapsed().as_secs_f64();
    // Every connection sends its request once connected; the server's memory
    // stops growing when all are answered. Wait for five equal readings.
    let mut last = 0;
    let mut same = 0;
    while same < 5 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        let now = rss_bytes(server.pid());
        same = if now == last { same + 1 } else { 0 };
        last = now;
    }
    let grown = last.saturating_sub(base);
    // SAFETY: SIGINT to our own child ends its hold.
    unsafe { libc::kill(connect.id() as i32, libc::SIGINT) };
    let _ = connect.wait();
    (held, grown as f64 / held.max(1) as f64, rate)
}

/// ESTABLISHED sockets whose local end is `addr`, from /proc/net/tcp.
fn established_to(addr: SocketAddr) -> usize {
    fivetuple::procnet::read_sockets(Path::new("/proc"))
        .map(|sockets| {
            sockets
                .iter()
                .filter(|s| s.local == addr && s.state == fivetuple::procnet::TcpState::Established)
                .count()
        })
        .unwrap_or(0)
}

/// One GET /_/hello and its answer; false if it failed.
fn request(s: &mut TcpStream) -> bool {
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    if s.write_all(b"GET /_/hello HTTP/1.1\r\nHost: bench\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut got = Vec::new();
    let mut buf = [0u8; 512];
    while !got.ends_with(b"Hello, World!") {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return false,
            Ok(k) => got.extend_from_slice(&buf[..k]),
        }
    }
    true
}

fn raise_fd_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain get/set of this process's own limit.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

fn median(runs: &[Run], f: impl Fn(&Run) -> f64) -> f64 {
    let mut v: Vec<f64> = runs.iter().map(f).collect();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// The run whose throughput is the median one.
fn median_run(runs: &[Run]) -> Run {
    let m = median(runs, |r| r.rps);
    runs.iter()
        .find(|r| r.rps == m)
        .cloned()
        .unwrap_or_default()
}

fn machine() -> serde_json::Value {
    let cpu = fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_default();
    let kernel = Command::new("uname")
        .arg("-r")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let date = Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    json!({
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "cpu": cpu,
        "kernel": kernel,
        "date": date,
    })
}

fn report(
    results: &BTreeMap<String, BTreeMap<String, Run>>,
    syscalls: &BTreeMap<String, f64>,
    held: &BTreeMap<String, (usize, f64, f64)>,
    machine: &serde_json::Value,
) -> String {
    let mut r = String::new();
    let _ = writeln!(
        r,
        "## Machine\n\n{} cores, {}, Linux {}, {}. Servers on core 0, wrk on core 1 \
         (tokio-mt: two workers on both cores, sharing core 1 with wrk). {} rounds of {} s per \
         scenario, medians shown.\n",
        machine["cores"],
        machine["cpu"].as_str().unwrap_or(""),
        machine["kernel"].as_str().unwrap_or(""),
        machine["date"].as_str().unwrap_or(""),
        ROUNDS,
        RUN_SECS
    );
    let _ = writeln!(r, "## Throughput, latency and CPU per request\n");
    let _ = writeln!(
        r,
        "| scenario | server | requests/s | p50 | p99 | user µs/req | system µs/req |"
    );
    let _ = writeln!(r, "|---|---|---:|---:|---:|---:|---:|");
    for (scenario, by) in results {
        for name in ["mio", "tokio", "tokio-mt"] {
            if let Some(run) = by.get(name) {
                let latency = |us: f64| {
                    if us.is_nan() {
                        "n/a".to_string()
                    } else {
                        format!("{us:.0} µs")
                    }
                };
                let _ = writeln!(
                    r,
                    "| {scenario} | {name} | {:.0} | {} | {} | {:.3} | {:.3} |",
                    run.rps,
                    latency(run.p50_us),
                    latency(run.p99_us),
                    run.user_us_per_req,
                    run.sys_us_per_req
                );
            }
        }
    }
    let _ = writeln!(r, "\n## Ratios, mio / tokio (current_thread)\n");
    let _ = writeln!(
        r,
        "| scenario | requests/s | CPU/req | user CPU/req | system CPU/req |"
    );
    let _ = writeln!(r, "|---|---:|---:|---:|---:|");
    let mut verdicts = Vec::new();
    for (scenario, by) in results {
        let (Some(m), Some(t)) = (by.get("mio"), by.get("tokio")) else {
            continue;
        };
        let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { f64::NAN };
        let cpu = ratio(
            m.user_us_per_req + m.sys_us_per_req,
            t.user_us_per_req + t.sys_us_per_req,
        );
        let user = ratio(m.user_us_per_req, t.user_us_per_req);
        let rps = ratio(m.rps, t.rps);
        let _ = writeln!(
            r,
            "| {scenario} | {rps:.2} | {cpu:.2} | {user:.2} | {:.2} |",
            ratio(m.sys_us_per_req, t.sys_us_per_req)
        );
        verdicts.push(format!(
            "- {scenario}: CPU per request at or below tokio's: **{}** ({cpu:.2}×)",
            met(cpu <= 1.0)
        ));
        verdicts.push(format!(
            "- {scenario}: user CPU per request at most half of tokio's: **{}** ({user:.2}×)",
            met(user <= 0.5)
        ));
        verdicts.push(format!(
            "- {scenario}: throughput within noise (5%) of tokio or above: **{}** ({rps:.2}×)",
            met(rps >= 0.95)
        ));
    }
    let _ = writeln!(
        r,
        "\n## System calls per request (strace -c, separate pass)\n"
    );
    let _ = writeln!(r, "| scenario | mio | tokio | tokio-mt |");
    let _ = writeln!(r, "|---|---:|---:|---:|");
    for scenario in [
        "keep-alive, 50 connections",
        "pipelined x16, 50 connections",
    ] {
        let get = |s: &str| {
            syscalls
                .get(&format!("{scenario}|{s}"))
                .copied()
                .unwrap_or(f64::NAN)
        };
        let _ = writeln!(
            r,
            "| {scenario} | {:.3} | {:.3} | {:.3} |",
            get("mio"),
            get("tokio"),
            get("tokio-mt")
        );
    }
    let ka = syscalls
        .get("keep-alive, 50 connections|mio")
        .copied()
        .unwrap_or(f64::NAN);
    let pl = syscalls
        .get("pipelined x16, 50 connections|mio")
        .copied()
        .unwrap_or(f64::NAN);
    verdicts.push(format!(
        "- at most 2.05 system calls per request, keep-alive at 50: **{}** ({ka:.3})",
        met(ka <= 2.05)
    ));
    verdicts.push(format!(
        "- at most 0.15 system calls per request, pipelined x16: **{}** ({pl:.3})",
        met(pl <= 0.15)
    ));
    let _ = writeln!(
        r,
        "\n## Memory per held idle connection ({HELD} connections, one request each)\n"
    );
    let _ = writeln!(
        r,
        "Opened with `fivetuple connect -n {HELD} --http --hold …`. How fast they were established \
         is in results.json, but it mostly measures SYN retransmissions: the client paces its \
         handshakes, not the server's accept queue, so a burst that overflows the queue waits a \
         one-second retransmission. Connections accepted per second are the requests/s of the \
         one-request-per-connection scenario above.\n"
    );
    let _ = writeln!(r, "| server | connections held | RSS per connection |");
    let _ = writeln!(r, "|---|---:|---:|");
    for (name, (n, bytes, _)) in held {
        let _ = writeln!(r, "| {name} | {n} | {bytes:.0} B |");
    }
    if let Some((n, bytes, _)) = held.get("mio") {
        verdicts.push(format!("- at most 512 bytes of RSS per idle connection, {HELD} held: **{}** ({n} held, {bytes:.0} B each)", met(*bytes <= 512.0 && *n >= HELD)));
    }
    let _ = writeln!(r, "\n## Targets\n\n{}\n", verdicts.join("\n"));
    r
}

fn met(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "missed"
    }
}

/// A grouped bar chart: one group per scenario, one bar per server.
fn chart(
    results: &BTreeMap<String, BTreeMap<String, Run>>,
    path: &Path,
    title: &str,
    value: impl Fn(&Run) -> f64,
    axis: &str,
) {
    let names = ["mio", "tokio", "tokio-mt"];
    let colors = [
        RGBColor(31, 119, 180),
        RGBColor(255, 127, 14),
        RGBColor(150, 150, 150),
    ];
    let scenarios: Vec<&String> = results.keys().collect();
    let top = results
        .values()
        .flat_map(|by| by.values().map(&value))
        .fold(0.0f64, f64::max)
        * 1.45;
    let root = SVGBackend::new(path, (900, 420)).into_drawing_area();
    root.fill(&WHITE).unwrap();
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..scenarios.len() as f64, 0f64..top.max(1e-9))
        .unwrap();
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(scenarios.len() * 2 + 1)
        .x_label_formatter(&|x| {
            let i = x.floor() as usize;
            if (x - x.floor() - 0.5).abs() < 0.01 && i < scenarios.len() {
                scenarios[i].clone()
            } else {
                String::new()
            }
        })
        .y_desc(axis)
        .draw()
        .unwrap();
    for (k, name) in names.iter().enumerate() {
        let bars: Vec<Rectangle<(f64, f64)>> = scenarios
            .iter()
            .enumerate()
            .filter_map(|(i, s)| {
                let run = results[*s].get(*name)?;
                let x0 = i as f64 + 0.1 + k as f64 * 0.27;
                Some(Rectangle::new(
                    [(x0, 0.0), (x0 + 0.25, value(run))],
                    colors[k].filled(),
                ))
            })
            .collect();
        chart
            .draw_series(bars)
            .unwrap()
            .label(*name)
            .legend(move |(x, y)| {
                Rectangle::new([(x, y - 5), (x + 10, y + 5)], colors[k].filled())
            });
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .border_style(BLACK)
        .background_style(WHITE)
        .draw()
        .unwrap();
    root.present().unwrap();
}
