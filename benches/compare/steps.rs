//! The measuring steps, in the order `main` runs them. Each takes the
//! bench (subjects, cores, paths) and adds its figures to the results.
//!
//! 1. [`throughput`]: every scenario, every subject, wrk + `/proc`.
//! 2. [`syscalls`]: `strace -c` on a separate, untimed pass.
//! 3. [`instructions`]: callgrind's count of user-space instructions.
//! 4. [`memory`]: 15,000 idle connections held, and the RSS they cost.

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::plan::{
    find_program, Content, Scenario, ScenarioId, Site, Skipped, Subject, SubjectId, DISTURBED,
    HELD, QUIET_WAIT_SECS, RETRIES, ROUNDS, RUN_SECS, WARMUP_SECS,
};
use crate::probe::{self, CoreTimes, CpuTime, FdSampler};
use crate::results::{Held, Instructions, Latency, Measured, Results, Run, Syscalls};
use crate::server::Server;
use crate::Bench;

/// Seconds of load under `strace -c`.
const STRACE_SECS: u32 = 2;
/// Seconds of load under callgrind (which runs a server some 5–20 times slower).
const CALLGRIND_SECS: u32 = 2;
/// The scenarios whose system calls and instructions are counted: one
/// request per read, and sixteen.
const COUNTED: [ScenarioId; 2] = [ScenarioId::KeepAlive50, ScenarioId::Pipelined16];
/// The scenarios whose system calls are counted: those two, and churn,
/// where a connection's own calls (accept, close, and any extra) show.
pub const TRACED: [ScenarioId; 3] = [
    ScenarioId::KeepAlive50,
    ScenarioId::Pipelined16,
    ScenarioId::Churn,
];
/// How long the memory step waits for its connections, at most.
const HOLD_TIMEOUT: Duration = Duration::from_secs(60);

/// Step 1: for each scenario, every subject that runs it gets a fresh
/// server and a warm-up, then timed runs in turn ([`in_turns`]).
pub fn throughput(bench: &Bench, results: &mut Results) {
    for scenario in bench.scenarios() {
        let servers: Vec<(&Subject, Server)> = bench
            .subjects
            .iter()
            .filter(|s| scenario.runs(s.id))
            .map(|s| (s, Server::start(s)))
            .collect();
        match scenario.content {
            Content::Hello => check_same_answer(&servers),
            Content::File { name, size } => check_serves_file(&servers, name, size),
        }
        for (_, server) in &servers {
            probe::wrk(
                server.addr,
                scenario,
                &bench.cores,
                &bench.scripts,
                WARMUP_SECS,
            );
        }
        let (measured, waited) = in_turns(bench, &servers, scenario, scenario.name);
        for measured in measured {
            bench.log(format_args!(
                "{:<48} {:<9} {:>9.0} req/s  {:.2} µs/req  server {:>3.0}%  wrk {:>3.0}%",
                scenario.name,
                measured.subject.name(),
                measured.median.rps,
                measured.median.cpu_us(),
                measured.median.server_busy * 100.0,
                measured.median.client_busy * 100.0,
            ));
            results.throughput.push(measured);
        }
        results.waited_seconds += waited.as_secs_f64();
    }
}

/// `ROUNDS` timed runs of every server in `servers`, in turn (the first
/// moves one place each round), so that drift in the machine hits all
/// alike. A run that other load disturbed is run again once the machine is
/// quiet, while the budgets of [`RETRIES`] and [`QUIET_WAIT_SECS`] last.
/// Returns each server's figures, in the order of `servers`, and the time
/// spent waiting for quiet; `label` names the runs in the log.
pub fn in_turns(
    bench: &Bench,
    servers: &[(&Subject, Server)],
    scenario: &Scenario,
    label: &str,
) -> (Vec<Measured>, Duration) {
    let subjects: Vec<SubjectId> = servers.iter().map(|(s, _)| s.id).collect();
    in_turns_with(bench, &subjects, scenario, label, |i| {
        let (subject, server) = &servers[i];
        timed(bench, subject, server, scenario)
    })
}

/// [`in_turns`] with the timed run of subject `i` left to `timed_run`
/// (the server-bound steps add the CPU quota's figures to each run).
pub fn in_turns_with(
    bench: &Bench,
    subjects: &[SubjectId],
    scenario: &Scenario,
    label: &str,
    mut timed_run: impl FnMut(usize) -> Run,
) -> (Vec<Measured>, Duration) {
    let mut retries_left = RETRIES;
    let mut wait_left = Duration::from_secs(QUIET_WAIT_SECS);
    let mut rounds: Vec<Vec<Run>> = vec![Vec::new(); subjects.len()];
    let mut repeated = vec![0; subjects.len()];
    for round in 0..ROUNDS {
        for k in 0..subjects.len() {
            let i = (round + k) % subjects.len();
            let mut run = timed_run(i);
            while run.disturbed() && retries_left > 0 {
                bench.log(format_args!(
                    "{label:<48} {:<9} disturbed: others used {:.2} cores; running it again",
                    subjects[i].name(),
                    run.other_load
                ));
                wait_for_quiet(bench, &mut wait_left);
                retries_left -= 1;
                repeated[i] += 1;
                run = timed_run(i);
            }
            rounds[i].push(run);
        }
    }
    let measured = subjects
        .iter()
        .zip(rounds)
        .zip(repeated)
        .map(|((&subject, rounds), repeated)| Measured::new(scenario.id, subject, rounds, repeated))
        .collect();
    (measured, Duration::from_secs(QUIET_WAIT_SECS) - wait_left)
}

/// One timed run, run again while other load disturbs it (within the
/// budgets of [`RETRIES`] and [`QUIET_WAIT_SECS`]): for a figure that
/// decides how later runs are set up, such as the client's ceiling.
pub fn one_undisturbed(bench: &Bench, label: &str, mut timed_run: impl FnMut() -> Run) -> Run {
    let mut wait_left = Duration::from_secs(QUIET_WAIT_SECS);
    let mut run = timed_run();
    for _ in 0..RETRIES {
        if !run.disturbed() {
            break;
        }
        bench.log(format_args!(
            "{label} disturbed: others used {:.2} cores; running it again",
            run.other_load
        ));
        wait_for_quiet(bench, &mut wait_left);
        run = timed_run();
    }
    run
}

/// The mio reactor, the tokio version and the floor must send the same
/// bytes for `/_/hello` (but for the date), or the comparison compares
/// different work. (nginx sends its own headers.)
pub fn check_same_answer(servers: &[(&Subject, Server)]) {
    let undated = |addr| {
        let (_, answer) = request(addr).expect("an answer to GET /_/hello");
        let text = String::from_utf8(answer).unwrap_or_default();
        text.lines()
            .map(|l| {
                if l.starts_with("Date: ") {
                    "Date: …"
                } else {
                    l
                }
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    let ours: Vec<(&Subject, String)> = servers
        .iter()
        .filter(|(s, _)| s.id != SubjectId::Nginx)
        .map(|(s, server)| (*s, undated(server.addr)))
        .collect();
    for (subject, text) in &ours[1..] {
        assert_eq!(
            text,
            &ours[0].1,
            "{} and {} answer /_/hello differently",
            subject.id.name(),
            ours[0].0.id.name()
        );
    }
}

/// Every server must send the file's exact bytes, or the scenario would
/// time error pages (a 403 from nginx that may not read the directory, a
/// 404 from a wrong root).
pub fn check_serves_file(servers: &[(&Subject, Server)], name: &str, size: usize) {
    let want = Site::bytes(size);
    for (subject, server) in servers {
        let got = get(server.addr, &format!("/{name}"));
        assert!(
            got.as_deref() == Some(&want[..]),
            "{} does not serve /{name} as written ({} bytes came)",
            subject.id.name(),
            got.map_or(0, |b| b.len())
        );
    }
}

/// The body of `GET path` on a new connection, read to the length its head
/// gives; `None` if it fails or is not a 200.
fn get(addr: SocketAddr, path: &str) -> Option<Vec<u8>> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut all = Vec::new();
    s.read_to_end(&mut all).ok()?;
    let end = all.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&all[..end]).to_ascii_lowercase();
    if !head.starts_with("http/1.1 200 ") {
        return None;
    }
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))?
        .trim()
        .parse()
        .ok()?;
    (all.len() - end == length).then(|| all.split_off(end))
}

/// Waits, a second at a time, until other programs use less than
/// [`DISTURBED`] cores, or `left` is spent. Nothing of ours runs meanwhile,
/// so everything the cores do is other load.
pub fn wait_for_quiet(bench: &Bench, left: &mut Duration) {
    const STEP: Duration = Duration::from_secs(1);
    while !left.is_zero() {
        let before = CoreTimes::of(&bench.cores.allowed);
        std::thread::sleep(STEP);
        *left = left.saturating_sub(STEP);
        if CoreTimes::of(&bench.cores.allowed).busy_since(&before) < DISTURBED {
            return;
        }
    }
}

/// One timed wrk run, with the server's CPU, wrk's CPU, every core's busy
/// time and the server's descriptors measured around it.
pub fn timed(bench: &Bench, subject: &Subject, server: &Server, scenario: &Scenario) -> Run {
    let pid = server.pid();
    let sampler = FdSampler::start(pid);
    let (cpu, wrk_cpu, cores, sleeps) = (
        CpuTime::of(pid),
        CpuTime::of_children(),
        CoreTimes::of(&bench.cores.allowed),
        probe::sleeps(pid),
    );
    let started = Instant::now();
    let w = probe::wrk(
        server.addr,
        scenario,
        &bench.cores,
        &bench.scripts,
        RUN_SECS,
    );
    let wall = started.elapsed().as_secs_f64();
    let cpu = CpuTime::of(pid).since(cpu);
    let sleeps = probe::sleeps(pid).saturating_sub(sleeps);
    let wrk_cpu = CpuTime::of_children().since(wrk_cpu);
    let busy = CoreTimes::of(&bench.cores.allowed).busy_since(&cores);
    let fd_peak = sampler.peak();
    let requests = w.requests.max(1) as f64;
    let threads = bench
        .cores
        .wrk_threads()
        .min(scenario.connections as usize)
        .max(1);
    Run {
        requests: w.requests,
        rps: w.rps,
        latency: scenario.latency.then_some(Latency {
            p50_us: w.p50_us,
            p99_us: w.p99_us,
        }),
        user_us: cpu.user * 1e6 / requests,
        sys_us: cpu.system * 1e6 / requests,
        server_busy: cpu.total() / wall / subject.cpus.len() as f64,
        client_busy: wrk_cpu.total() / wall / threads as f64,
        other_load: (busy - (cpu.total() + wrk_cpu.total()) / wall).max(0.0),
        sleeps_per_request: sleeps as f64 / requests,
        fd_peak,
        errors: w.errors,
        capped: None,
    }
}

/// Step 2: system calls per request, from `strace -c -f` attached to a
/// fresh server for a short run (strace slows a server down severalfold,
/// so this never overlaps a timed run).
pub fn syscalls(bench: &Bench, results: &mut Results) {
    if find_program("strace", &[]).is_none() {
        results.skipped.push(Skipped {
            what: "system calls per request".into(),
            why: "strace is not installed (apt-get install strace)".into(),
        });
        return;
    }
    for subject in &bench.subjects {
        for id in TRACED {
            let scenario = id.scenario();
            let per_request = strace_pass(bench, subject, scenario);
            bench.log(format_args!(
                "syscalls/request {:<32} {:<9} {per_request:.3}",
                scenario.name,
                subject.id.name()
            ));
            results.syscalls.push(Syscalls {
                scenario: id,
                subject: subject.id,
                per_request,
            });
        }
    }
}

fn strace_pass(bench: &Bench, subject: &Subject, scenario: &Scenario) -> f64 {
    let server = Server::start(subject);
    probe::wrk(
        server.addr,
        scenario,
        &bench.cores,
        &bench.scripts,
        WARMUP_SECS,
    );
    let log = bench.out_dir.join(format!(
        "strace-{}-{:?}.txt",
        subject.id.name(),
        scenario.id
    ));
    let mut strace = Command::new("strace")
        .args(["-c", "-f", "-p", &server.pid().to_string(), "-o"])
        .arg(&log)
        .stderr(Stdio::piped())
        .spawn()
        .expect("strace");
    // strace says "Process N attached" once it is in place.
    let mut err = BufReader::new(strace.stderr.take().expect("piped stderr"));
    let mut line = String::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !line.contains("attached") && Instant::now() < deadline {
        line.clear();
        if err.read_line(&mut line).unwrap_or(0) == 0 {
            break;
        }
    }
    let run = probe::wrk(
        server.addr,
        scenario,
        &bench.cores,
        &bench.scripts,
        STRACE_SECS,
    );
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

/// Step 3: user-space instructions per request, counted by callgrind.
///
/// Unlike CPU time, an instruction count does not depend on what else
/// the machine is doing, and it sees nothing of the kernel: it is the
/// steady figure for what a server's own code costs. Each subject runs
/// under `valgrind --tool=callgrind` twice: once answering one request (the
/// cost of starting and stopping), once under load; the difference over
/// the requests served is the cost of one. nginx is left out: its master
/// and worker would need following across `fork`, and it is a referee,
/// not a subject of the work.
pub fn instructions(bench: &Bench, results: &mut Results) {
    if find_program("valgrind", &[]).is_none() {
        results.skipped.push(Skipped {
            what: "instructions per request".into(),
            why: "valgrind is not installed (apt-get install valgrind)".into(),
        });
        return;
    }
    let counted = [SubjectId::Mio, SubjectId::Tokio, SubjectId::Floor];
    for subject in bench.subjects.iter().filter(|s| counted.contains(&s.id)) {
        let (base, _) = callgrind(bench, subject, None);
        for id in COUNTED {
            let scenario = id.scenario();
            let (total, requests) = callgrind(bench, subject, Some(scenario));
            let file = callgrind_file(bench, subject, Some(scenario));
            let per_request = total.saturating_sub(base) as f64 / requests.max(1) as f64;
            let parts = crate::profile::parts(&file, requests);
            bench.log(format_args!(
                "instructions/request {:<32} {:<9} {per_request:.0}",
                scenario.name,
                subject.id.name()
            ));
            results.instructions.push(Instructions {
                scenario: id,
                subject: subject.id,
                per_request,
                parts,
            });
        }
    }
}

fn callgrind_file(
    bench: &Bench,
    subject: &Subject,
    scenario: Option<&Scenario>,
) -> std::path::PathBuf {
    let what = scenario.map_or("start-stop".to_string(), |s| format!("{:?}", s.id));
    bench
        .out_dir
        .join(format!("callgrind-{}-{what}.out", subject.id.name()))
}

/// Runs `subject` under callgrind with `scenario`'s load (or one request,
/// for `None`); returns the instructions counted and the requests served.
fn callgrind(bench: &Bench, subject: &Subject, scenario: Option<&Scenario>) -> (u64, u64) {
    let file = callgrind_file(bench, subject, scenario);
    let _ = fs::remove_file(&file);
    let wrapper = vec![
        "valgrind".to_string(),
        "--tool=callgrind".to_string(),
        format!("--callgrind-out-file={}", file.display()),
    ];
    let server = Server::start_wrapped(subject, &wrapper);
    let requests = match scenario {
        Some(scenario) => {
            probe::wrk(
                server.addr,
                scenario,
                &bench.cores,
                &bench.scripts,
                CALLGRIND_SECS,
            )
            .requests
        }
        None => u64::from(request(server.addr).is_some()),
    };
    server.terminate();
    let text = fs::read_to_string(&file).unwrap_or_default();
    let total = text
        .lines()
        .find_map(|l| {
            l.strip_prefix("totals:")
                .or_else(|| l.strip_prefix("summary:"))
        })
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    (total, requests)
}

/// Step 4: memory per held idle connection. A fresh server answers one
/// request (so that buffers that exist once are in the baseline), then
/// `fivetuple connect -n 15000` opens the connections, sends one
/// `GET /_/hello` on each and holds them; the server's RSS growth over the
/// connections held is the figure. (Not `--http`: that asks for
/// `/_/whoami` and gives up on a server that is not fivetuple.)
pub fn memory(bench: &Bench, results: &mut Results) {
    let client = crate::plan::binary(&bench.root, "fivetuple");
    for subject in &bench.subjects {
        let held = hold_idle(bench, subject, &client);
        bench.log(format_args!(
            "{} held {} connections: {:.0} bytes each, {:.0} established/s",
            subject.id.name(),
            held.connections,
            held.bytes_per_connection,
            held.established_per_second
        ));
        results.memory.push(held);
    }
}

fn hold_idle(bench: &Bench, subject: &Subject, client: &Path) -> Held {
    let server = Server::start(subject);
    // Held open, so that it is in the baseline (and subtracted below).
    let _first = request(server.addr);
    let base = probe::rss_bytes(server.pid());
    let started = Instant::now();
    let mut connect = Command::new("taskset")
        .args(["-c", &bench.cores.client_list()])
        .arg(client)
        .args(["connect", &server.addr.to_string(), "-n", &HELD.to_string()])
        .args(["-e", "-p", HELLO_REQUEST, "--hold", "120"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("fivetuple connect");
    // Established: the server's ends in the kernel's own table.
    let deadline = started + HOLD_TIMEOUT;
    let mut held = 0;
    while Instant::now() < deadline {
        // (Capped: /proc is read while it changes and can list a socket twice.)
        held = established_to(server.addr).saturating_sub(1).min(HELD);
        if held >= HELD {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let rate = held as f64 / started.elapsed().as_secs_f64();
    // Every connection sends its request once connected; the server's memory
    // stops growing when all are answered. Wait for five equal readings.
    let (mut last, mut same) = (0, 0);
    while same < 5 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        let now = probe::rss_bytes(server.pid());
        same = if now == last { same + 1 } else { 0 };
        last = now;
    }
    // SAFETY: SIGINT to our own child ends its hold.
    unsafe { libc::kill(connect.id() as i32, libc::SIGINT) };
    let _ = connect.wait();
    Held {
        subject: subject.id,
        connections: held,
        bytes_per_connection: last.saturating_sub(base) as f64 / held.max(1) as f64,
        established_per_second: rate,
    }
}

/// The request each held connection sends, in `connect -e` escapes.
const HELLO_REQUEST: &str = "GET /_/hello HTTP/1.1\\r\\nHost: bench\\r\\n\\r\\n";

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

/// One `GET /_/hello` on a new connection; the connection, still open,
/// and the answer, if it was answered.
fn request(addr: SocketAddr) -> Option<(TcpStream, Vec<u8>)> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    s.write_all(b"GET /_/hello HTTP/1.1\r\nHost: bench\r\n\r\n")
        .ok()?;
    let mut got = Vec::new();
    let mut buf = [0u8; 512];
    while !got.ends_with(b"Hello, World!") {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return None,
            Ok(k) => got.extend_from_slice(&buf[..k]),
        }
    }
    Some((s, got))
}
