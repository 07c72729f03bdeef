//! Scaling over workers under a CPU quota: do N workers answer N times
//! what one does, measured on a machine with too few cores to give each
//! worker its own?
//!
//! Each worker thread goes in a group of its own, held to the same share
//! of a core (`cpu_quota.rs`), as if it had a slow core to itself; the
//! server's other threads share one more such group, and the whole server
//! is held to N shares. Everything runs on the servers' one core, wrk
//! unthrottled on the other. For N = 1, 2, 4 and 8 (as far as the quota
//! allows, below), two servers:
//!
//! - **mio**: `fivetuple serve --workers N`: N reactors on one port
//!   (SO_REUSEPORT), threads named `worker-I` (with one worker the
//!   reactor is the main thread);
//! - **tokio-mt**: the tokio version on tokio's multi-thread runtime with
//!   N worker threads (named `tokio-rt-worker`); its accept loop runs on
//!   the main thread (`block_on`), in the group of the other threads.
//!
//! **The quota** must leave the client faster than N workers together,
//! for the largest N, and fit the one real core. Per load (keep-alive
//! ×256, churn ×256), the step first measures:
//!
//! 1. the client's ceiling: wrk against the floor, uncapped on the
//!    servers' core (on two cores wrk saturates first: that is its most);
//! 2. what one worker answers per core's worth of CPU: each server with
//!    one worker at a quarter of a core.
//!
//! The share per worker is then the largest with which N workers of the
//! hungrier server ask at most [`MARGIN`] of the ceiling and take at most
//! [`CORE_LIMIT`] of the real core, for the largest N whose share makes a
//! quota of at least 1 ms in a period of at most 30 ms; larger counts are
//! skipped, and the report says why. A warm-up against the largest count
//! checks that wrk stays clearly faster (one worker's demand, measured
//! with all the connections, is not quite each of many workers'), and cuts
//! the share where it does not. Then, per count, fresh servers, a
//! warm-up and `ROUNDS` timed runs each, in turns, as in the throughput
//! step. Figures: requests/s, the speed-up over the same server with one
//! worker, the efficiency (speed-up / N), p99, and which side was
//! saturated in every run.
//!
//! `BENCH_ONLY=server-bound-workers` runs this step alone (with the
//! single-core step: `make bench-server-bound`).

use std::fmt::Write as _;
use std::io;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::cpu_quota::{thread_name, threads_of, Cap, Groups, Quota, MAX_PERIOD_US};
use crate::plan::{
    binary, Content, Launch, Scenario, ScenarioId, Skipped, Subject, SubjectId, ROUNDS, RUN_SECS,
    WARMUP_SECS,
};
use crate::probe;
use crate::results::{Bound, Measured, Results, Run};
use crate::server::Server;
use crate::server_bound::{bound_cell, each_capped, timed_capped, warm_up, Noise, CLIENT_HEADROOM};
use crate::steps;
use crate::targets::check_quota_scaling;
use crate::Bench;

/// The worker counts, as far as the quota allows.
pub const WORKERS: [usize; 4] = [1, 2, 4, 8];
/// The loads: keep-alive over 256 connections, and churn with 256 at a
/// time. (Not the single-core churn's 50: a worker held for most of each
/// period answers only the connections waiting when it runs, and 50 shared
/// by N workers leave each run too few to fill its quota's worth of work,
/// so that the fixed cost of a run weighs on fewer connections. Measured
/// here: two workers answered 1.47× one's with 50 connections, 1.96× with
/// 200.)
pub const LOADS: [Scenario; 2] = [
    Scenario {
        id: ScenarioId::KeepAlive256,
        name: "keep-alive, 256 connections",
        content: Content::Hello,
        connections: 256,
        script: None,
        latency: true,
    },
    Scenario {
        id: ScenarioId::Churn,
        name: "churn: one request per connection, 256 at a time",
        content: Content::Hello,
        connections: 256,
        script: Some("close.lua"),
        latency: true,
    },
];
/// The largest count's workers together may ask at most this share of the
/// client's ceiling, so that wrk stays clearly the faster side.
pub const MARGIN: f64 = 0.6;
/// All the workers' quotas together take at most this share of the one
/// real core, so that the threads seldom wait for each other there.
pub const CORE_LIMIT: f64 = 0.8;
/// The share of a core one worker gets when its demand is measured.
pub const PROBE_SHARE: f64 = 0.25;
/// How long a server may take to start its worker threads.
const THREADS_TIMEOUT: Duration = Duration::from_secs(5);
/// The section's heading, by which `report::splice` finds it in a page.
pub const HEADING: &str = "## Scaling over workers under a CPU quota";

/// wrk against the floor, uncapped: the most the client sends.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Ceiling {
    pub rps: f64,
    pub client_busy: f64,
    pub server_busy: f64,
}

/// One worker at [`PROBE_SHARE`]: what it answers per core's worth of CPU.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Probe {
    pub subject: SubjectId,
    pub rps: f64,
    /// Cores' worth of CPU it used.
    pub used: f64,
    pub per_core: f64,
}

/// One server with some number of workers.
#[derive(Debug, Clone, Serialize)]
pub struct Point {
    pub workers: usize,
    pub subject: SubjectId,
    pub median: Run,
    pub rounds: Vec<Run>,
    pub repeated: usize,
    pub spread: f64,
}

/// One load: its ceiling, the quota chosen, and every count's figures.
#[derive(Debug, Clone, Serialize)]
pub struct LoadRun {
    pub scenario: ScenarioId,
    pub name: &'static str,
    pub connections: u32,
    pub ceiling: Ceiling,
    pub probes: Vec<Probe>,
    /// Each worker thread's quota; `None` if no count fitted.
    pub quota: Option<Quota>,
    /// The largest count, and how busy wrk was against it at that quota
    /// in a warm-up (the busier of the two servers).
    pub checked: Option<(usize, f64)>,
    pub points: Vec<Point>,
    /// Counts not measured, and why.
    pub skipped: Vec<Skipped>,
}

/// Everything the step found.
#[derive(Debug, Clone, Serialize)]
pub struct WorkersBound {
    pub controller: String,
    pub loads: Vec<LoadRun>,
    pub seconds: f64,
}

impl WorkersBound {
    pub fn load_run(&self, scenario: ScenarioId) -> Option<&LoadRun> {
        self.loads.iter().find(|l| l.scenario == scenario)
    }

    pub fn point(
        &self,
        scenario: ScenarioId,
        workers: usize,
        subject: SubjectId,
    ) -> Option<&Point> {
        self.load_run(scenario)?
            .points
            .iter()
            .find(|p| p.workers == workers && p.subject == subject)
    }

    pub fn noise(&self) -> Noise {
        Noise::of(
            self.loads
                .iter()
                .flat_map(|l| &l.points)
                .map(|p| (&p.median, &p.rounds[..], p.repeated)),
        )
    }

    /// Requests/s with `workers` over the same server's with one.
    pub fn speed_up(
        &self,
        scenario: ScenarioId,
        workers: usize,
        subject: SubjectId,
    ) -> Option<f64> {
        let one = self.point(scenario, 1, subject)?.median.rps;
        let many = self.point(scenario, workers, subject)?.median.rps;
        (one > 0.0).then(|| many / one)
    }
}

/// Runs the step, or notes in one line why it cannot.
pub fn run(bench: &Bench, results: &mut Results) {
    let what = "workers under a CPU quota";
    let step = "server-bound workers";
    let Some(done) = each_capped(bench, results, step, what, &LOADS, one_load) else {
        return;
    };
    results.workers_bound = Some(WorkersBound {
        controller: done.controller,
        loads: done.items,
        seconds: done.seconds,
    });
}

/// One load: the ceiling, the probe, the quota, then every count.
fn one_load(
    bench: &Bench,
    groups: &mut Groups,
    scenario: &'static Scenario,
) -> io::Result<LoadRun> {
    let ceiling = client_ceiling(bench, scenario);
    bench.log(format_args!(
        "server-bound workers: {}: the client's ceiling {:.0} req/s (wrk {:.0} % busy, the floor {:.0} %)",
        scenario.name,
        ceiling.rps,
        ceiling.client_busy * 100.0,
        ceiling.server_busy * 100.0
    ));
    let probe_quota = Quota::of_share(PROBE_SHARE).expect("a quarter of a core is a quota");
    let mut probes = Vec::new();
    for subject in subjects(bench, 1) {
        let server = Server::start(&subject);
        let cap = cap_workers(groups, &subject, &server, 1, probe_quota)?;
        let Some(cap) = cap.ok() else {
            continue;
        };
        warm_up(bench, &[server.addr], scenario);
        let label = format!(
            "server-bound workers: {}: one worker of {}",
            scenario.name,
            subject.id.name()
        );
        let run = steps::one_undisturbed(bench, &label, || {
            timed_capped(bench, &subject, &server, scenario, &cap)
        });
        let used = run.capped.map_or(0.0, |c| c.used);
        probes.push(Probe {
            subject: subject.id,
            rps: run.rps,
            used,
            per_core: if used > 0.0 { run.rps / used } else { 0.0 },
        });
        drop(server);
        drop(cap);
    }
    let per_core = probes.iter().map(|p| p.per_core).fold(0.0, f64::max);
    let (mut quota, mut counts, mut skipped) = choose(ceiling.rps, per_core);
    match quota {
        Some(q) => bench.log(format_args!(
            "server-bound workers: {}: one worker answers up to {per_core:.0} req/s per core; \
             each worker gets {}, for {:?} workers",
            scenario.name,
            q.describe(),
            counts
        )),
        None => bench.log(format_args!(
            "server-bound workers: {}: no quota fits (one worker answers {per_core:.0} req/s per core)",
            scenario.name
        )),
    }
    let mut checked = None;
    if let Some(q) = quota.as_mut() {
        checked = check_largest(bench, groups, scenario, q, &mut counts, &mut skipped)?;
    }
    let mut points = Vec::new();
    if let Some(quota) = quota {
        for n in counts {
            match one_count(bench, groups, scenario, n, quota)? {
                Ok(mut measured) => points.append(&mut measured),
                Err(why) => {
                    bench.log(format_args!(
                        "server-bound workers: {n} workers: skipped: {why}"
                    ));
                    skipped.push(Skipped {
                        what: format!("{n} workers"),
                        why,
                    });
                }
            }
        }
    }
    Ok(LoadRun {
        scenario: scenario.id,
        name: scenario.name,
        connections: scenario.connections,
        ceiling,
        probes,
        quota,
        checked,
        points,
        skipped,
    })
}

/// Checks, in a warm-up of both servers with the largest of `counts`
/// workers, that wrk stays clearly the faster side at `quota`: one
/// worker's demand, measured with all the connections, is not quite each
/// of many workers' (each has fewer). Where wrk was busier than
/// [`CLIENT_HEADROOM`], the share is cut in proportion, or, where that is
/// no quota, the count is dropped; at most three tries. The count checked
/// last, and wrk's busy share against it.
fn check_largest(
    bench: &Bench,
    groups: &mut Groups,
    scenario: &Scenario,
    quota: &mut Quota,
    counts: &mut Vec<usize>,
    skipped: &mut Vec<Skipped>,
) -> io::Result<Option<(usize, f64)>> {
    let mut checked = None;
    for _ in 0..3 {
        let Some(&most) = counts.last() else {
            break;
        };
        let subjects = subjects(bench, most);
        let servers: Vec<Server> = subjects.iter().map(Server::start).collect();
        let mut caps = Vec::new();
        let mut addrs = Vec::new();
        for (subject, server) in subjects.iter().zip(&servers) {
            // A server whose workers are not found is left out (its
            // count's own run says so).
            if let Ok(cap) = cap_workers(groups, subject, server, most, *quota)? {
                caps.push(cap);
                addrs.push(server.addr);
            }
        }
        let busiest = warm_up(bench, &addrs, scenario);
        drop(servers);
        drop(caps);
        checked = Some((most, busiest));
        if busiest < CLIENT_HEADROOM {
            break;
        }
        let share = quota.share() * CLIENT_HEADROOM * 0.9 / busiest;
        match Quota::of_share(share) {
            Some(lower) => {
                bench.log(format_args!(
                    "server-bound workers: {}: wrk {:.0} % busy against {most} workers at {}: \
                     lowering to {}",
                    scenario.name,
                    busiest * 100.0,
                    quota.describe(),
                    lower.describe()
                ));
                *quota = lower;
            }
            None => {
                skipped.push(Skipped {
                    what: format!("{most} workers"),
                    why: format!(
                        "wrk was {:.0} % busy against them at {}, and a share small enough \
                         would need a period over {} ms",
                        busiest * 100.0,
                        quota.describe(),
                        MAX_PERIOD_US / 1000
                    ),
                });
                counts.pop();
            }
        }
    }
    Ok(checked)
}

/// wrk against the floor, uncapped on the servers' core.
fn client_ceiling(bench: &Bench, scenario: &Scenario) -> Ceiling {
    let floor = bench
        .subjects
        .iter()
        .find(|s| s.id == SubjectId::Floor)
        .expect("the floor is always built");
    let server = Server::start(floor);
    probe::wrk(
        server.addr,
        scenario,
        &bench.cores,
        &bench.scripts,
        WARMUP_SECS,
    );
    let label = format!(
        "server-bound workers: {}: the client's ceiling",
        scenario.name
    );
    let run = steps::one_undisturbed(bench, &label, || {
        steps::timed(bench, floor, &server, scenario)
    });
    Ceiling {
        rps: run.rps,
        client_busy: run.client_busy,
        server_busy: run.server_busy,
    }
}

/// The share per worker, and the counts it affords: for the largest count
/// first, the share with which that many workers, each answering
/// `per_core` requests/s per core's worth, ask at most [`MARGIN`] of
/// `ceiling` and hold at most [`CORE_LIMIT`] of the core; the first whose
/// share makes a quota wins. Larger counts come back as skipped.
pub fn choose(ceiling: f64, per_core: f64) -> (Option<Quota>, Vec<usize>, Vec<Skipped>) {
    let mut skipped = Vec::new();
    for (k, &most) in WORKERS.iter().enumerate().rev() {
        let n = most as f64;
        let share = if per_core > 0.0 {
            (MARGIN * ceiling / (n * per_core)).min(CORE_LIMIT / n)
        } else {
            0.0
        };
        if let Some(quota) = Quota::of_share(share) {
            skipped.reverse();
            return (Some(quota), WORKERS[..=k].to_vec(), skipped);
        }
        skipped.push(Skipped {
            what: format!("{most} workers"),
            why: format!(
                "each worker would get {share:.3} of a core (so that {most} of them ask at most \
                 {:.0} % of the client's ceiling of {ceiling:.0} requests/s), less than 1 ms in {} ms",
                MARGIN * 100.0,
                MAX_PERIOD_US / 1000
            ),
        });
    }
    skipped.reverse();
    (None, Vec::new(), skipped)
}

/// fivetuple with `n` workers, and tokio's multi-thread runtime with `n`
/// worker threads, both on the servers' core.
fn subjects(bench: &Bench, n: usize) -> Vec<Subject> {
    let n = n.to_string();
    let program = |path: &str, args: &[&str]| Launch::Program {
        program: binary(&bench.root, path),
        args: args.iter().map(|a| a.to_string()).collect(),
    };
    let core = vec![bench.cores.server];
    vec![
        Subject {
            id: SubjectId::Mio,
            launch: program(
                "fivetuple",
                &[
                    "serve",
                    "--listen",
                    "127.0.0.1:0",
                    "--quiet",
                    "--workers",
                    &n,
                ],
            ),
            cpus: core.clone(),
        },
        Subject {
            id: SubjectId::TokioMt,
            launch: program(
                "examples/tokio_server",
                &["--flavor", "multi_thread", "--workers", &n],
            ),
            cpus: core,
        },
    ]
}

/// Caps each of the server's `n` worker threads at `each`: `Err` (outer)
/// where a group cannot be set up, `Ok(Err(why))` where the workers are
/// not found.
fn cap_workers(
    groups: &mut Groups,
    subject: &Subject,
    server: &Server,
    n: usize,
    each: Quota,
) -> io::Result<Result<Cap, String>> {
    let pid = server.pid();
    let workers = match worker_threads(subject.id, pid, n) {
        Ok(w) => w,
        Err(why) => return Ok(Err(why)),
    };
    let lists: Vec<Vec<u32>> = workers.iter().map(|&t| vec![t]).collect();
    groups.cap_threads(pid, &lists, each).map(Ok)
}

/// The thread of each worker, by name: fivetuple's `worker-I`
/// (`src/workers.rs`; with one worker the reactor is the main thread),
/// tokio's `tokio-rt-worker` (`tokio-runtime-w` in older versions, the
/// kernel keeping 15 bytes of a name).
fn worker_threads(subject: SubjectId, pid: u32, n: usize) -> Result<Vec<u32>, String> {
    let deadline = Instant::now() + THREADS_TIMEOUT;
    loop {
        let named: Vec<(u32, String)> = threads_of(pid)
            .into_iter()
            .map(|t| (t, thread_name(pid, t)))
            .collect();
        let found: Option<Vec<u32>> = match subject {
            SubjectId::Mio if n == 1 => Some(vec![pid]),
            SubjectId::Mio => (0..n)
                .map(|i| {
                    let want = format!("worker-{i}");
                    named
                        .iter()
                        .find(|(_, name)| *name == want)
                        .map(|(t, _)| *t)
                })
                .collect(),
            _ => {
                let tokio: Vec<u32> = named
                    .iter()
                    .filter(|(_, name)| {
                        name.starts_with("tokio-rt-worker") || name.starts_with("tokio-runtime-w")
                    })
                    .map(|(t, _)| *t)
                    .collect();
                (tokio.len() == n).then_some(tokio)
            }
        };
        if let Some(found) = found {
            return Ok(found);
        }
        if Instant::now() >= deadline {
            let names: Vec<&str> = named.iter().map(|(_, n)| n.as_str()).collect();
            return Err(format!(
                "{}'s {n} worker threads not found by name among its threads {names:?}",
                subject.name()
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One count: both servers, capped thread by thread, a warm-up, the rounds.
fn one_count(
    bench: &Bench,
    groups: &mut Groups,
    scenario: &'static Scenario,
    n: usize,
    quota: Quota,
) -> io::Result<Result<Vec<Point>, String>> {
    let subjects = subjects(bench, n);
    let servers: Vec<(&Subject, Server)> = subjects.iter().map(|s| (s, Server::start(s))).collect();
    let mut caps = Vec::new();
    for (subject, server) in &servers {
        match cap_workers(groups, subject, server, n, quota)? {
            Ok(cap) => caps.push(cap),
            Err(why) => return Ok(Err(why)),
        }
    }
    let addrs: Vec<_> = servers.iter().map(|(_, s)| s.addr).collect();
    warm_up(bench, &addrs, scenario);
    let ids: Vec<SubjectId> = servers.iter().map(|(s, _)| s.id).collect();
    let label = format!("server-bound workers: x{n} {}", scenario.name);
    let (measured, _) = steps::in_turns_with(bench, &ids, scenario, &label, |i| {
        let (subject, server) = &servers[i];
        timed_capped(bench, subject, server, scenario, &caps[i])
    });
    drop(servers);
    drop(caps);
    Ok(Ok(measured
        .into_iter()
        .map(|m: Measured| {
            let run = &m.median;
            bench.log(format_args!(
                "server-bound workers: {:<9} x{n} {:<28} {:>8.0} req/s  p99 {:>6.0} µs  server {:.2} cores ({:>3.0} % of quota)  wrk {:>3.0}%  {}",
                m.subject.name(),
                scenario.name,
                run.rps,
                run.latency.map_or(0.0, |l| l.p99_us),
                run.capped.map_or(0.0, |c| c.used),
                run.server_busy * 100.0,
                run.client_busy * 100.0,
                run.bound().name(),
            ));
            Point {
                workers: n,
                subject: m.subject,
                spread: m.spread(),
                median: m.median,
                rounds: m.rounds,
                repeated: m.repeated,
            }
        })
        .collect()))
}

/// The section of the report (empty if the step did not run).
pub fn section(results: &Results) -> String {
    let Some(wb) = &results.workers_bound else {
        return String::new();
    };
    let cores = &results.cores;
    let mut p = format!("{HEADING}\n\n");
    let _ = write!(
        p,
        "Scaling over `--workers N` on a machine with too few cores to give each worker its \
         own, **simulated by a CPU quota** ({}): each worker thread in a group of its own, held \
         to the same share of a core, as if it had a slow core to itself; the server's other \
         threads (fivetuple's idle main thread and log writers, tokio's accept loop on its main \
         thread) in one more such group; the whole server held to N shares. All of it on core \
         {}, kept busy while the server is held by a filler at idle priority, as in the section \
         above; wrk unthrottled on core {}. `fivetuple serve --workers N` (threads `worker-I`) \
         against the tokio version's multi-thread runtime with N worker threads (**tokio-mt**, \
         threads `tokio-rt-worker`), for N = 1, 2, 4 and 8 as far as the quota allows, \
         {ROUNDS} rounds of {RUN_SECS} s per count, the servers taking turns; the step took \
         {:.0} s. Run it alone with `make bench-server-bound` (with the single-core step) or \
         `BENCH_ONLY=server-bound-workers`.\n\n\
         **The quota**, per load: first the client's ceiling, wrk against the floor uncapped \
         (on two cores wrk saturates first, so this is the most it sends); then what one worker \
         of each server answers per core's worth of CPU, at a quarter of a core; then the share \
         per worker with which the largest count of the hungrier server asks at most {:.0} % of \
         the ceiling and all quotas together hold at most {:.0} % of the core, for the largest \
         count (8, 4, 2) whose share still makes a quota of at least 1 ms per period of at most \
         {} ms; last, a warm-up against that count, the share cut in proportion where wrk was \
         over {:.0} % busy in it.\n\n\
         Columns as in the section above: **CPU** the cores' worth the whole server used, \
         **of quota** that over its N shares, **held** the share of the periods of all its groups \
         (each worker's, the other threads', the whole server's) in which a group used up its \
         quota; **speed-up** is requests/s over the same server's with one worker, \
         **efficiency** the speed-up over N.\n\n\
         **What this shows, and what it cannot.** With every worker held to the same share and \
         the client faster than all of them, the speed-up is the server's own: whether a \
         worker's work per request stays the same as workers are added (nothing shared on the \
         way of a request, the kernel's SO_REUSEPORT hash spreading connections) or grows \
         (locks, shared counters, work handed between threads: tokio's work stealing and its \
         accept loop, which here counts inside the server's N shares). It cannot show what \
         separate cores add: every thread runs on the one real core, one at a time, so no two \
         take a kernel lock at the same moment (the listening sockets' queues, the socket \
         tables, epoll's), no cache line moves between cores, and no memory bandwidth is \
         shared; instead each switch on the one core leaves the next thread colder caches than \
         a core of its own would. Those effects need a many-core machine (Scaling across cores, \
         above). And the quota itself shapes the work: the load is the same at every count, so \
         each of N workers has 1/N of it, and a worker held for most of each period meets, when \
         it runs, everything that arrived meanwhile. How well that batch goes depends on its size \
         (on this machine one worker answered fewer requests per CPU second with 256 keep-alive \
         connections than with 128, while in churn fewer new connections per batch cost more \
         each), so a speed-up here can come out above N for keep-alive and below it for churn \
         for reasons a real core, never held, would show less.\n\n",
        wb.controller,
        cores.server,
        cores.client.first().copied().unwrap_or(cores.server),
        wb.seconds,
        MARGIN * 100.0,
        CORE_LIMIT * 100.0,
        MAX_PERIOD_US / 1000,
        CLIENT_HEADROOM * 100.0,
    );
    p.push_str(&wb.noise().paragraph());
    for load in &wb.loads {
        let probes: Vec<String> = load
            .probes
            .iter()
            .map(|pr| {
                format!(
                    "{} {:.0} requests/s on {:.2} cores' worth, {:.0} per core",
                    pr.subject.name(),
                    pr.rps,
                    pr.used,
                    pr.per_core
                )
            })
            .collect();
        let _ = write!(
            p,
            "**{}.** The client's ceiling: {:.0} requests/s (wrk {:.0} % busy{}). One worker at a \
             quarter of a core: {}. ",
            load.name,
            load.ceiling.rps,
            load.ceiling.client_busy * 100.0,
            if load.ceiling.client_busy >= crate::plan::SATURATED {
                ", saturated"
            } else {
                ", not saturated: the ceiling is at least this"
            },
            probes.join("; "),
        );
        match load.quota {
            Some(q) => {
                let _ = write!(p, "Each worker's quota: {}.", q.describe());
                if let Some((most, busy)) = load.checked {
                    let _ = write!(
                        p,
                        " At that quota wrk was {:.0} % busy against {most} workers in a warm-up.",
                        busy * 100.0
                    );
                }
            }
            None => p.push_str("No quota fitted."),
        }
        for s in &load.skipped {
            let _ = write!(p, " Not measured: {}: {}.", s.what, s.why);
        }
        p.push_str("\n\n");
    }
    p.push_str(
        "| load | workers | server | requests/s | spread | speed-up | efficiency | p99 | CPU | of quota | held | wrk busy | bound by |\n\
         |---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n",
    );
    for load in &wb.loads {
        for subject in [SubjectId::Mio, SubjectId::TokioMt] {
            for point in load.points.iter().filter(|pt| pt.subject == subject) {
                let run = &point.median;
                let capped = run.capped.unwrap_or_default();
                let speed_up = wb.speed_up(load.scenario, point.workers, subject);
                let _ = writeln!(
                    p,
                    "| {} | {} | {} | {:.0}{} | {:.0} % | {} | {} | {} | {:.2} | {:.0} % | {:.0} % | {:.0} % | {} |",
                    short(load),
                    point.workers,
                    subject.name(),
                    run.rps,
                    if run.errors > 0 {
                        format!(" ({} errors)", run.errors)
                    } else {
                        String::new()
                    },
                    point.spread * 100.0,
                    speed_up.map_or("–".to_string(), |v| format!("{v:.2}×")),
                    speed_up.map_or("–".to_string(), |v| {
                        format!("{:.0} %", v / point.workers as f64 * 100.0)
                    }),
                    run.latency.map_or("n/a".to_string(), |l| ms(l.p99_us)),
                    capped.used,
                    run.server_busy * 100.0,
                    capped.throttled * 100.0,
                    run.client_busy * 100.0,
                    bound_cell(run, &point.rounds),
                );
            }
        }
    }
    p.push('\n');
    let by_wrk = wb
        .loads
        .iter()
        .flat_map(|l| &l.points)
        .filter(|pt| pt.median.bound() == Bound::Client)
        .count();
    if by_wrk > 0 {
        let _ = writeln!(
            p,
            "In {by_wrk} of the medians wrk was saturated: those are not server-bound figures, \
             and their speed-ups say more about wrk than about the server.\n"
        );
    }
    p.push_str("Targets under the quota (`benches/compare/targets.rs`):\n\n");
    for v in check_quota_scaling(results) {
        let _ = writeln!(p, "{}", v.line());
    }
    p.push('\n');
    p
}

/// "keep-alive ×256", "churn ×256".
fn short(load: &LoadRun) -> String {
    match load.scenario {
        ScenarioId::Churn => format!("churn ×{}", load.connections),
        _ => format!("keep-alive ×{}", load.connections),
    }
}

fn ms(us: f64) -> String {
    if us >= 1000.0 {
        format!("{:.1} ms", us / 1000.0)
    } else {
        format!("{us:.0} µs")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_quota_leaves_the_client_faster_than_the_largest_count() {
        // Keep-alive: wrk sends 140k/s, one worker answers 200k/s per core.
        let (quota, counts, skipped) = choose(140_000.0, 200_000.0);
        let q = quota.unwrap();
        assert_eq!(counts, WORKERS);
        assert!(skipped.is_empty());
        assert!(8.0 * q.share() * 200_000.0 <= MARGIN * 140_000.0 * 1.01);
        // Churn: wrk opens 20k connections/s, one worker answers 50k/s per
        // core: eight would need 1 ms in more than 30 ms; four fit.
        let (quota, counts, skipped) = choose(20_000.0, 50_000.0);
        let q = quota.unwrap();
        assert_eq!(counts, [1, 2, 4]);
        assert_eq!(skipped.len(), 1);
        assert_eq!(skipped[0].what, "8 workers");
        assert!(4.0 * q.share() * 50_000.0 <= MARGIN * 20_000.0 * 1.01);
        // A fast client: the core's limit, not the client's, sets the share.
        let (quota, counts, _) = choose(10_000_000.0, 100_000.0);
        assert_eq!(counts, WORKERS);
        assert!(8.0 * quota.unwrap().share() <= CORE_LIMIT + 1e-9);
        // Nothing measured: no quota.
        let (quota, counts, skipped) = choose(0.0, 0.0);
        assert!(quota.is_none() && counts.is_empty());
        assert_eq!(skipped.len(), WORKERS.len());
    }
}
