//! The scaling step: do N workers answer N times the requests of one, and
//! how do they compare with tokio's multi-thread runtime on the same cores?
//!
//! For each worker count N of [`WORKERS`] that the machine affords, two
//! servers, each on the same N cores (`taskset`):
//!
//! - **mio**: `fivetuple serve --workers N --pin`: N reactors on one port
//!   (SO_REUSEPORT), each pinned to one of the cores taskset gave it;
//! - **tokio-mt**: `tokio_server --flavor multi_thread --workers N`, the
//!   tokio version with N worker threads (tokio pins nothing: its threads
//!   move among the same N cores, and steal work from each other).
//!
//! wrk runs on other cores, at least N of them, one thread per core, with
//! [`CONNECTIONS_PER_WORKER`] keep-alive connections per worker and at
//! least [`MIN_CONNECTIONS`]: enough that the kernel's hash gives every
//! worker about the same share. Per count: fresh servers, a warm-up, then
//! `ROUNDS` timed runs each, the servers taking turns, and a disturbed run
//! run again, all as in the throughput step (`steps::timed`).
//!
//! **Cores.** The server's N cores are N different physical cores (one
//! hardware thread of each; their SMT siblings stay idle, since a sibling
//! shares its core's caches and execution units with whatever runs there),
//! and wrk gets every hardware thread of the physical cores that remain. A
//! count that would leave wrk fewer than N hardware threads is skipped, and
//! the report says so: on two cores only N = 1 runs.
//!
//! **Figures.** Requests/s, CPU per request (all of the server's threads)
//! and p99 latency, as in the throughput step; the speed-up (requests/s
//! over the same server's with one worker), the efficiency (speed-up / N),
//! and per added core: the requests/s gained since the previous count, per
//! core added, as a share of one worker's.
//!
//! `BENCH_ONLY=scaling` runs this step alone (see `main.rs`); it writes
//! `target/bench/scaling.md` and puts the section into `docs/benchmarks.md`.

use std::fmt::Write as _;
use std::fs;

use serde::Serialize;

use crate::plan::{
    binary, list, Content, Cores, Launch, Scenario, ScenarioId, Skipped, Subject, SubjectId,
    ROUNDS, RUN_SECS, WARMUP_SECS,
};
use crate::probe;
use crate::results::{Bound, Results, Run};
use crate::server::Server;
use crate::targets::check_scaling;
use crate::Bench;

/// The worker counts measured, where the machine has the cores.
pub const WORKERS: [usize; 4] = [1, 2, 4, 8];
/// Keep-alive connections per worker: the hash spreads 64 connections
/// over each worker with a spread of about an eighth.
pub const CONNECTIONS_PER_WORKER: u32 = 64;
/// Connections at least, whatever the count: the one-core scenario's 256.
pub const MIN_CONNECTIONS: u32 = 256;
/// The section's heading, by which `report::splice` finds it in a page.
pub const HEADING: &str = "## Scaling across cores";

/// wrk's connections for `workers` workers.
pub fn connections(workers: usize) -> u32 {
    (CONNECTIONS_PER_WORKER * workers as u32).max(MIN_CONNECTIONS)
}

/// Where one worker count runs.
#[derive(Debug, Clone, Serialize)]
pub struct Layout {
    pub workers: usize,
    /// The servers' cores: one hardware thread of each of N physical cores.
    pub server: Vec<usize>,
    /// wrk's cores (and this driver's while the count runs).
    pub client: Vec<usize>,
    pub connections: u32,
}

/// One server at one worker count.
#[derive(Debug, Clone, Serialize)]
pub struct Point {
    pub workers: usize,
    pub subject: SubjectId,
    /// Each figure's median over the undisturbed rounds, as in the
    /// throughput step.
    pub median: Run,
    pub rounds: Vec<Run>,
    /// Runs thrown away because other load disturbed them, and run again.
    pub repeated: usize,
}

/// Where fivetuple's workers ran: each pinned to its own core of the ones
/// taskset gave the server?
#[derive(Debug, Clone, Serialize)]
pub struct Pinning {
    pub workers: usize,
    /// The core each reactor thread was pinned to, by worker; `None` for
    /// one that was not on a single core.
    pub pinned: Vec<Option<usize>>,
    pub ok: bool,
}

/// Everything the scaling step found.
#[derive(Debug, Clone, Serialize)]
pub struct Scaling {
    /// Physical cores among the cores this driver may use.
    pub physical_cores: usize,
    pub layouts: Vec<Layout>,
    pub points: Vec<Point>,
    pub pinning: Vec<Pinning>,
    /// Worker counts this machine could not afford, and why.
    pub skipped: Vec<Skipped>,
}

impl Scaling {
    pub fn point(&self, workers: usize, subject: SubjectId) -> Option<&Point> {
        self.points
            .iter()
            .find(|p| p.workers == workers && p.subject == subject)
    }

    fn rps(&self, workers: usize, subject: SubjectId) -> Option<f64> {
        self.point(workers, subject)
            .map(|p| p.median.rps)
            .filter(|&r| r > 0.0)
    }

    /// Requests/s with `workers` workers over the same server's with one.
    pub fn speed_up(&self, workers: usize, subject: SubjectId) -> Option<f64> {
        Some(self.rps(workers, subject)? / self.rps(1, subject)?)
    }

    /// fivetuple's requests/s over tokio-mt's, with as many threads.
    pub fn versus_tokio(&self, workers: usize) -> Option<f64> {
        Some(self.rps(workers, SubjectId::Mio)? / self.rps(workers, SubjectId::TokioMt)?)
    }

    /// Requests/s gained since the previous count measured, per core
    /// added, as a share of one worker's requests/s.
    fn per_added_core(&self, workers: usize, subject: SubjectId) -> Option<f64> {
        let before = self
            .layouts
            .iter()
            .map(|l| l.workers)
            .filter(|&n| n < workers)
            .max()?;
        let gained = self.rps(workers, subject)? - self.rps(before, subject)?;
        Some(gained / (workers - before) as f64 / self.rps(1, subject)?)
    }
}

/// Runs the step: every worker count the machine affords.
pub fn run(bench: &Bench, results: &mut Results) {
    let physical = physical_cores(&bench.cores.allowed, thread_siblings);
    let (layouts, skipped) = plan(&physical);
    for s in &skipped {
        bench.log(format_args!("scaling: skipping {}: {}", s.what, s.why));
    }
    let mut points = Vec::new();
    let mut pinning = Vec::new();
    for layout in &layouts {
        bench.log(format_args!(
            "scaling: {} worker{} on cores {}, wrk on {}, {} connections",
            layout.workers,
            if layout.workers == 1 { "" } else { "s" },
            list(&layout.server),
            list(&layout.client),
            layout.connections
        ));
        let (mut measured, pinned) = one_count(bench, layout);
        points.append(&mut measured);
        pinning.push(pinned);
    }
    // Back to the driver's own cores for whatever step follows.
    bench.cores.pin_driver();
    results.scaling = Some(Scaling {
        physical_cores: physical.len(),
        layouts,
        points,
        pinning,
        skipped,
    });
}

/// One worker count: both servers, a warm-up, then the rounds.
fn one_count(bench: &Bench, layout: &Layout) -> (Vec<Point>, Pinning) {
    // The throughput step's machinery, with this count's cores and servers.
    let here = Bench {
        root: bench.root.clone(),
        out_dir: bench.out_dir.clone(),
        scripts: bench.scripts.clone(),
        cores: Cores {
            allowed: bench.cores.allowed.clone(),
            server: layout.server[0],
            client: layout.client.clone(),
        },
        subjects: subjects(bench, layout),
        only: bench.only.clone(),
        started: bench.started,
    };
    here.cores.pin_driver();
    // (The id only satisfies `Measured`; this step's table shows the
    // connection count itself.)
    let scenario = Scenario {
        id: ScenarioId::KeepAlive256,
        name: "keep-alive, 64 connections per worker (256 at least)",
        connections: layout.connections,
        script: None,
        latency: true,
        content: Content::Hello,
    };
    let servers: Vec<(&Subject, Server)> = here
        .subjects
        .iter()
        .map(|s| (s, Server::start(s)))
        .collect();
    for (_, server) in &servers {
        probe::wrk(
            server.addr,
            &scenario,
            &here.cores,
            &here.scripts,
            WARMUP_SECS,
        );
    }
    let pinned = pinning(servers[0].1.pid(), layout);
    if !pinned.ok {
        bench.log(format_args!(
            "scaling: fivetuple's workers are not one per core of {}: {:?}",
            list(&layout.server),
            pinned.pinned
        ));
    }
    let label = format!("scaling: x{}", layout.workers);
    let (measured, _) = crate::steps::in_turns(&here, &servers, &scenario, &label);
    let points = measured
        .into_iter()
        .map(|m| {
            bench.log(format_args!(
                "scaling: {:<9} x{}  {:>9.0} req/s  {:.2} µs/req  p99 {:.0} µs  server {:>3.0}%  wrk {:>3.0}%",
                m.subject.name(),
                layout.workers,
                m.median.rps,
                m.median.cpu_us(),
                m.median.latency.map_or(0.0, |l| l.p99_us),
                m.median.server_busy * 100.0,
                m.median.client_busy * 100.0,
            ));
            Point {
                workers: layout.workers,
                subject: m.subject,
                median: m.median,
                rounds: m.rounds,
                repeated: m.repeated,
            }
        })
        .collect();
    (points, pinned)
}

/// fivetuple with N workers, and tokio's multi-thread runtime with N
/// worker threads, both on the count's server cores.
fn subjects(bench: &Bench, layout: &Layout) -> Vec<Subject> {
    let n = layout.workers.to_string();
    let program = |path: &str, args: &[&str]| Launch::Program {
        program: binary(&bench.root, path),
        args: args.iter().map(|a| a.to_string()).collect(),
    };
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
                    "--pin",
                ],
            ),
            cpus: layout.server.clone(),
        },
        Subject {
            id: SubjectId::TokioMt,
            launch: program(
                "examples/tokio_server",
                &["--flavor", "multi_thread", "--workers", &n],
            ),
            cpus: layout.server.clone(),
        },
    ]
}

/// The physical cores among `allowed`: each the allowed hardware threads
/// that share it, in the order of their first. `siblings(cpu)` lists the
/// hardware threads of `cpu`'s core (`None`: unknown, a core of its own).
pub fn physical_cores(
    allowed: &[usize],
    siblings: impl Fn(usize) -> Option<Vec<usize>>,
) -> Vec<Vec<usize>> {
    let mut cores: Vec<Vec<usize>> = Vec::new();
    for &cpu in allowed {
        if cores.iter().any(|core| core.contains(&cpu)) {
            continue;
        }
        let mut core: Vec<usize> = siblings(cpu)
            .unwrap_or_default()
            .into_iter()
            .filter(|c| allowed.contains(c))
            .collect();
        if !core.contains(&cpu) {
            core.insert(0, cpu);
        }
        core.sort_unstable();
        cores.push(core);
    }
    cores
}

/// The hardware threads that share `cpu`'s physical core, from sysfs.
fn thread_siblings(cpu: usize) -> Option<Vec<usize>> {
    let path = format!("/sys/devices/system/cpu/cpu{cpu}/topology/thread_siblings_list");
    parse_cpu_list(&fs::read_to_string(path).ok()?)
}

/// `0-3,8,10-11` → `[0, 1, 2, 3, 8, 10, 11]`; `None` if malformed.
fn parse_cpu_list(text: &str) -> Option<Vec<usize>> {
    let mut cpus = Vec::new();
    for part in text.trim().split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (usize, usize) = (a.parse().ok()?, b.parse().ok()?);
                // A list names a machine's cores: a range wider than any
                // machine's is a misreading, not a reason to allocate.
                if b < a || b - a > 4096 {
                    return None;
                }
                cpus.extend(a..=b);
            }
            None => cpus.push(part.parse().ok()?),
        }
    }
    Some(cpus)
}

/// The worker counts that fit on `physical` cores, each with its cores,
/// and a note for every count that does not.
pub fn plan(physical: &[Vec<usize>]) -> (Vec<Layout>, Vec<Skipped>) {
    let threads: usize = physical.iter().map(Vec::len).sum();
    let mut layouts = Vec::new();
    let mut skipped = Vec::new();
    for workers in WORKERS {
        let server: Vec<usize> = physical.iter().take(workers).map(|core| core[0]).collect();
        let client: Vec<usize> = physical.iter().skip(workers).flatten().copied().collect();
        if server.len() < workers || client.len() < workers {
            skipped.push(Skipped {
                what: format!("{workers} workers"),
                why: format!(
                    "needs {workers} physical cores for the server and {workers} more hardware \
                     threads, on other physical cores, for wrk; this machine gives the benchmark \
                     {threads} hardware thread{} on {} physical core{}",
                    if threads == 1 { "" } else { "s" },
                    physical.len(),
                    if physical.len() == 1 { "" } else { "s" },
                ),
            });
            continue;
        }
        layouts.push(Layout {
            workers,
            server,
            client,
            connections: connections(workers),
        });
    }
    (layouts, skipped)
}

/// The cores fivetuple's reactors were pinned to, from
/// `/proc/PID/task/*/status`: the threads named `worker-i`, or with one
/// worker the process's main thread, which runs the one reactor.
fn pinning(pid: u32, layout: &Layout) -> Pinning {
    let mut pinned = vec![None; layout.workers];
    let tasks = fs::read_dir(format!("/proc/{pid}/task"))
        .map(|d| d.flatten().map(|t| t.path()).collect::<Vec<_>>())
        .unwrap_or_default();
    for task in tasks {
        let name = fs::read_to_string(task.join("comm")).unwrap_or_default();
        let index = match name.trim().strip_prefix("worker-") {
            Some(i) => i.parse::<usize>().ok(),
            None if layout.workers == 1 && task.ends_with(pid.to_string()) => Some(0),
            None => None,
        };
        let status = fs::read_to_string(task.join("status")).unwrap_or_default();
        let core = status
            .lines()
            .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
            .and_then(|v| v.trim().parse::<usize>().ok());
        if let Some(slot) = index.and_then(|i| pinned.get_mut(i)) {
            *slot = core;
        }
    }
    // Worker i on the i-th of the cores taskset gave (`--pin`'s rule).
    let ok = pinned
        .iter()
        .zip(&layout.server)
        .all(|(p, &core)| *p == Some(core));
    Pinning {
        workers: layout.workers,
        pinned,
        ok,
    }
}

/// The section of the report, from the step's figures (empty if it did not run).
pub fn section(results: &Results) -> String {
    let Some(s) = &results.scaling else {
        return String::new();
    };
    let verdicts = check_scaling(results);
    let mut p = format!("{HEADING}\n\n");
    let _ = write!(
        p,
        "`fivetuple serve --workers N --pin` against the tokio version's multi-thread runtime with \
         N worker threads (**tokio-mt**), both on the same N cores (`taskset`), answering \
         keep-alive `GET /_/hello` from wrk on other cores: {CONNECTIONS_PER_WORKER} connections \
         per worker, {MIN_CONNECTIONS} at least; {ROUNDS} rounds of {RUN_SECS} s per count, the \
         servers taking turns. The server's cores are separate physical cores and wrk's are on \
         the others (see the top of `benches/compare/scaling.rs`). Run this step alone with \
         `BENCH_ONLY=scaling` (`make bench-scaling`; from a kit, `make bench-scaling KIT=1`).\n\n\
         {} hardware threads on {} physical cores, {}, Linux {}, {}.\n\n",
        results.cores.allowed.len(),
        s.physical_cores,
        results.machine.cpu,
        results.machine.kernel,
        results.machine.date,
    );
    p.push_str(&findings(s));
    p.push_str(
        "| workers | server | server cores | wrk cores | connections | requests/s | CPU µs/req | p99 \
         | speed-up over 1 worker | efficiency | per added core | server busy | wrk busy | bound by |\n",
    );
    p.push_str("|---:|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n");
    for layout in &s.layouts {
        for subject in [SubjectId::Mio, SubjectId::TokioMt] {
            let Some(point) = s.point(layout.workers, subject) else {
                continue;
            };
            let run = &point.median;
            let speed_up = s.speed_up(layout.workers, subject);
            let cell = |v: Option<f64>, f: fn(f64) -> String| v.map_or("–".to_string(), f);
            let _ = writeln!(
                p,
                "| {} | {} | {} | {} | {} | {:.0}{} | {:.2} | {} | {} | {} | {} | {:.0} % | {:.0} % | {} |",
                layout.workers,
                subject.name(),
                list(&layout.server),
                list(&layout.client),
                layout.connections,
                run.rps,
                if run.errors > 0 {
                    format!(" ({} errors)", run.errors)
                } else {
                    String::new()
                },
                run.cpu_us(),
                run.latency
                    .map_or("n/a".to_string(), |l| format!("{:.0} µs", l.p99_us)),
                cell(speed_up, |v| format!("{v:.2}×")),
                cell(speed_up.map(|v| v / layout.workers as f64), |v| {
                    format!("{:.0} %", v * 100.0)
                }),
                cell(s.per_added_core(layout.workers, subject), |v| {
                    format!("{:.0} %", v * 100.0)
                }),
                run.server_busy * 100.0,
                run.client_busy * 100.0,
                if run.disturbed() {
                    format!("{}, disturbed", run.bound().name())
                } else {
                    run.bound().name().to_string()
                },
            );
        }
    }
    p.push('\n');
    if !s.pinning.is_empty() {
        let each: Vec<String> = s
            .pinning
            .iter()
            .map(|pin| {
                let cores: Vec<String> = pin
                    .pinned
                    .iter()
                    .map(|c| c.map_or("?".to_string(), |c| c.to_string()))
                    .collect();
                format!(
                    "{} worker{}: cores {}{}",
                    pin.workers,
                    if pin.workers == 1 { "" } else { "s" },
                    cores.join(", "),
                    if pin.ok {
                        ""
                    } else {
                        " (**not** one per core given)"
                    }
                )
            })
            .collect();
        let _ = writeln!(
            p,
            "fivetuple's reactors were pinned (`--pin`, read back from `/proc/PID/task`): {}.\n",
            each.join("; ")
        );
    }
    if !s.skipped.is_empty() {
        p.push_str("Not measured in this run:\n\n");
        for skip in &s.skipped {
            let _ = writeln!(p, "- {}: {}", skip.what, skip.why);
        }
        p.push('\n');
    }
    p.push_str("Targets:\n\n");
    for v in &verdicts {
        let _ = writeln!(p, "{}", v.line());
    }
    p.push('\n');
    p
}

/// A few sentences on what the figures say.
fn findings(s: &Scaling) -> String {
    let counts: Vec<usize> = s.layouts.iter().map(|l| l.workers).collect();
    let mut p = String::new();
    match counts.iter().max() {
        None => p.push_str("No worker count fitted on this machine.\n\n"),
        Some(1) => {
            p.push_str(
                "Only one worker fitted on this machine, so this run shows no scaling: its \
                 figures are the baseline that the speed-ups of larger counts are taken from.",
            );
            if let Some(v) = s.versus_tokio(1) {
                let _ = write!(
                    p,
                    " With one thread each, fivetuple answered {v:.2}× tokio-mt's requests/s."
                );
            }
            p.push_str("\n\n");
        }
        Some(&most) => {
            let speed = |subject| s.speed_up(most, subject);
            if let (Some(mio), Some(tokio)) = (speed(SubjectId::Mio), speed(SubjectId::TokioMt)) {
                let _ = write!(
                    p,
                    "From 1 to {most} workers fivetuple's requests/s grew {mio:.2}× ({:.0} % of \
                     linear), tokio-mt's {tokio:.2}× ({:.0} %).",
                    mio / most as f64 * 100.0,
                    tokio / most as f64 * 100.0,
                );
            }
            let versus: Vec<String> = counts
                .iter()
                .filter_map(|&n| Some(format!("{:.2}× at {n}", s.versus_tokio(n)?)))
                .collect();
            if !versus.is_empty() {
                let _ = write!(
                    p,
                    " fivetuple's requests/s over tokio-mt's: {}.",
                    versus.join(", ")
                );
            }
            p.push_str("\n\n");
        }
    }
    let cpu: Vec<String> = counts
        .iter()
        .filter_map(|&n| {
            let cpu = |subject| Some(s.point(n, subject)?.median.cpu_us());
            Some(format!(
                "{:.2}× at {n}",
                cpu(SubjectId::Mio)? / cpu(SubjectId::TokioMt)?
            ))
        })
        .collect();
    if !cpu.is_empty() {
        let _ = write!(
            p,
            "CPU per request, fivetuple's over tokio-mt's: {}.",
            cpu.join(", ")
        );
    }
    let by_wrk = s
        .points
        .iter()
        .filter(|pt| pt.median.bound() == Bound::Client)
        .count();
    if by_wrk > 0 {
        let _ = write!(
            p,
            " In {by_wrk} of the {} medians wrk's cores were saturated first: there requests/s \
             says as much about wrk as about the server, and CPU per request is the figure that \
             compares the servers.",
            s.points.len()
        );
    }
    if !cpu.is_empty() || by_wrk > 0 {
        p.push_str("\n\n");
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists_are_read() {
        assert_eq!(
            parse_cpu_list("0-3,8,10-11\n"),
            Some(vec![0, 1, 2, 3, 8, 10, 11])
        );
        assert_eq!(parse_cpu_list("5"), Some(vec![5]));
        assert_eq!(parse_cpu_list("x"), None);
        assert_eq!(parse_cpu_list("3-1"), None);
    }

    #[test]
    fn the_server_gets_separate_physical_cores_and_wrk_the_others() {
        // Two cores without SMT: one worker, nothing more.
        let two = physical_cores(&[0, 1], |_| None);
        let (layouts, skipped) = plan(&two);
        assert_eq!(layouts.len(), 1);
        assert_eq!(
            (layouts[0].server.clone(), layouts[0].client.clone()),
            (vec![0], vec![1])
        );
        assert_eq!(layouts[0].connections, 256);
        assert_eq!(
            skipped.iter().map(|s| s.what.as_str()).collect::<Vec<_>>(),
            ["2 workers", "4 workers", "8 workers"]
        );

        // 8 physical cores with two threads each (cpu c and c + 8 share a core).
        let smt = physical_cores(&(0..16).collect::<Vec<_>>(), |c| {
            Some(vec![c % 8, c % 8 + 8])
        });
        assert_eq!(smt.len(), 8);
        let (layouts, skipped) = plan(&smt);
        let four = layouts.iter().find(|l| l.workers == 4).unwrap();
        assert_eq!(four.server, [0, 1, 2, 3]);
        assert_eq!(four.client, [4, 12, 5, 13, 6, 14, 7, 15]);
        assert!(four.client.iter().all(|c| !four.server.contains(&(c % 8))));
        assert_eq!(skipped.len(), 1, "8 workers leave wrk no core of its own");

        // 32 cores: every count, 512 connections for 8.
        let big = physical_cores(&(0..32).collect::<Vec<_>>(), |_| None);
        let (layouts, skipped) = plan(&big);
        assert_eq!(
            layouts.iter().map(|l| l.workers).collect::<Vec<_>>(),
            WORKERS
        );
        assert!(skipped.is_empty());
        assert_eq!(layouts[3].connections, 512);
        assert_eq!(layouts[3].client.len(), 24);
    }
}
