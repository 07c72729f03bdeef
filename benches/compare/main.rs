//! `make bench`: fivetuple's reactor beside the tokio version of the same
//! server, a floor and nginx, measured so that the figures can be trusted
//! on a small, noisy machine.
//!
//! - **Cores.** Each server runs pinned to one core; wrk gets every other
//!   core, one thread per core (this driver stays there too). On two cores
//!   that is one each, and wrk often saturates before the server does, so
//!   every run records how busy each side was and which one was the
//!   bottleneck. The two-worker tokio variant gets the server's core and
//!   one of wrk's.
//! - **Alternation.** In every scenario each server runs once per round,
//!   in turn, for three rounds, so that drift in the machine hits all
//!   alike; the report gives each figure's median over the rounds.
//! - **Throughput and latency** come from wrk. **CPU per request** comes
//!   from the kernel: the server's user and system time in `/proc/PID/stat`
//!   before and after each run, over the requests served. **Descriptors**
//!   are counted in `/proc/PID/fd` during each run.
//! - **System calls per request** come from a separate `strace -c` pass,
//!   and **user instructions per request** from a separate callgrind pass:
//!   both slow a server down, so neither overlaps a timed run.
//! - **Memory per held connection**: fresh servers, 15,000 connections
//!   opened by `fivetuple connect -n 15000 -p 'GET /_/hello …'` (one request each, then
//!   held), then the server's RSS growth.
//! - **Static files**: three more scenarios ask for a file of 4 KiB, 64 KiB
//!   and 1 MiB, written by this driver under `target/bench/site/`, from
//!   fivetuple (`serve --dir`), the tokio version (`--dir`) and nginx
//!   (`root`, `sendfile on`); the floor serves no files and tokio-mt is
//!   left out. Requests/s, CPU per request and MB/s against nginx's.
//!
//! The run is a list of named steps, like a turn of the reactor:
//!
//! 1. `prepare`: the machine, the cores, the subjects that can run;
//! 2. `steps::throughput`: every scenario, every subject, wrk + `/proc`;
//! 3. `steps::syscalls`: strace;
//! 4. `steps::instructions`: callgrind;
//! 5. `steps::memory`: 15,000 idle connections;
//! 6. `scaling::run`: `serve --workers N` against tokio's multi-thread
//!    runtime, for N = 1, 2, 4 and 8 as far as the cores go (`scaling.rs`);
//! 7. `server_bound::run`: every single-core scenario again, each server
//!    held to a share of its core by Linux's CPU controller so that wrk
//!    is the faster side (`server_bound.rs`, `cpu_quota.rs`);
//! 8. `server_bound_workers::run`: `serve --workers N` against tokio-mt
//!    with each worker thread held to a share of a core, N = 1, 2, 4, 8 as
//!    far as the quota allows (`server_bound_workers.rs`);
//! 9. `outputs`: `target/bench/results.json`, `report.md` and the charts,
//!    copied to `docs/benchmarks.md` and `docs/bench/`.
//!
//! **Some steps alone.** `BENCH_ONLY` names the steps to run, separated
//! by commas: `throughput`, `files` (the throughput step's static-file
//! scenarios alone, about two minutes), `syscalls`, `instructions`,
//! `memory`, `scaling`, `server-bound`, `server-bound-workers`. Such a run
//! writes `target/bench/results.json`, and `report.md` when it measured
//! throughput; the scaling and server-bound steps also write their
//! sections (`target/bench/scaling.md`, `server-bound.md`,
//! `server-bound-workers.md`) and put each into `docs/benchmarks.md` in
//! place of the one there. The rest of that page, and the charts, stay as
//! the last whole run wrote them. `make bench-scaling` is
//! `BENCH_ONLY=scaling`; on a machine with a kit packed by `make-kit` and
//! no cargo, `make bench-scaling KIT=1`. `make bench-server-bound` is
//! `BENCH_ONLY=server-bound,server-bound-workers` (root, for the CPU
//! controller; about eight minutes).
//!
//! Files: `plan.rs` (subjects, scenarios, cores), `server.rs` (starting
//! them), `probe.rs` (wrk and `/proc`), `steps.rs`, `scaling.rs` (the
//! scaling step and its section), `cpu_quota.rs` (CPU groups),
//! `core_filler.rs` (the capped servers' core kept busy),
//! `server_bound.rs` and `server_bound_workers.rs` (the steps under a
//! quota, and their sections), `profile.rs` (reading callgrind's
//! profile), `results.rs` (the typed figures), `targets.rs` (the targets,
//! as a table), `report.rs` (the page), `summary.rs` (its "In short")
//! and `chart.rs`.

mod chart;
mod core_filler;
mod cpu_quota;
mod plan;
mod probe;
mod profile;
mod report;
mod results;
mod scaling;
mod server;
mod server_bound;
mod server_bound_workers;
mod steps;
mod summary;
mod targets;

use std::fmt;
use std::fs;
use std::path::PathBuf;
use std::time::Instant;

use plan::{Cores, Machine, Scenario, Site, Subject};
use results::Results;

/// What every step needs: where things are, the cores, the subjects.
pub struct Bench {
    pub root: PathBuf,
    /// `target/bench/`: results, report, charts, strace and callgrind files.
    pub out_dir: PathBuf,
    /// `benches/wrk/`: the scenarios' wrk scripts.
    pub scripts: PathBuf,
    pub cores: Cores,
    pub subjects: Vec<Subject>,
    /// What this run measures (`BENCH_ONLY`).
    pub only: Only,
    started: Instant,
}

impl Bench {
    /// A progress line on stderr, with the seconds since the start.
    pub fn log(&self, line: fmt::Arguments<'_>) {
        eprintln!("[{:>4.0}s] {line}", self.started.elapsed().as_secs_f64());
    }

    /// The scenarios this run measures, in order.
    pub fn scenarios(&self) -> impl Iterator<Item = &'static Scenario> + '_ {
        plan::all_scenarios().filter(move |s| {
            self.only.runs("throughput") || (self.only.runs("files") && s.file_size().is_some())
        })
    }
}

fn main() {
    let (bench, mut results) = prepare();
    if bench.only.runs("throughput") || bench.only.runs("files") {
        steps::throughput(&bench, &mut results);
    }
    if bench.only.runs("syscalls") {
        steps::syscalls(&bench, &mut results);
    }
    if bench.only.runs("instructions") {
        steps::instructions(&bench, &mut results);
    }
    if bench.only.runs("memory") {
        steps::memory(&bench, &mut results);
    }
    if bench.only.runs("scaling") {
        scaling::run(&bench, &mut results);
    }
    if bench.only.runs("server-bound") {
        server_bound::run(&bench, &mut results);
    }
    if bench.only.runs("server-bound-workers") {
        server_bound_workers::run(&bench, &mut results);
    }
    results.seconds = bench.started.elapsed().as_secs_f64();
    if bench.only.everything() {
        outputs(&bench, &results);
    } else {
        partial_outputs(&bench, &results);
    }
}

/// The steps `BENCH_ONLY` names; `None`: every step (unset or empty).
#[derive(Debug, Clone)]
pub struct Only(Option<Vec<String>>);

impl Only {
    const STEPS: [&'static str; 8] = [
        "throughput",
        "files",
        "syscalls",
        "instructions",
        "memory",
        "scaling",
        "server-bound",
        "server-bound-workers",
    ];

    fn from_env() -> Only {
        let named = std::env::var("BENCH_ONLY").unwrap_or_default();
        let steps: Vec<String> = named
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        if let Some(unknown) = steps.iter().find(|s| !Only::STEPS.contains(&s.as_str())) {
            eprintln!(
                "BENCH_ONLY: no step {unknown:?}; the steps are {}",
                Only::STEPS.join(", ")
            );
            std::process::exit(2);
        }
        Only((!steps.is_empty()).then_some(steps))
    }

    pub fn runs(&self, step: &str) -> bool {
        self.0
            .as_ref()
            .is_none_or(|steps| steps.iter().any(|s| s == step))
    }

    /// Every step: the run writes the whole report into docs/.
    pub fn everything(&self) -> bool {
        self.0.is_none()
    }
}

/// After some steps alone: the JSON, and the sections of the steps that
/// ran (scaling, server-bound) on their own and in place in
/// docs/benchmarks.md. The rest of that page and the charts need every
/// step; they stay as they are.
fn partial_outputs(bench: &Bench, results: &Results) {
    let out = &bench.out_dir;
    fs::write(
        out.join("results.json"),
        serde_json::to_string_pretty(results).expect("results serialise"),
    )
    .expect("results.json");
    let mut wrote = vec!["target/bench/results.json".to_string()];
    if !results.throughput.is_empty() {
        let page = report::page(results, &targets::check(results));
        fs::write(out.join("report.md"), &page).expect("report.md");
        println!("{page}");
        wrote.push("target/bench/report.md".into());
    }
    let sections = [
        (
            results.scaling.is_some(),
            scaling::HEADING,
            "scaling.md",
            scaling::section(results),
        ),
        (
            results.server_bound.is_some(),
            server_bound::HEADING,
            "server-bound.md",
            server_bound::section(results),
        ),
        (
            results.workers_bound.is_some(),
            server_bound_workers::HEADING,
            "server-bound-workers.md",
            server_bound_workers::section(results),
        ),
    ];
    for (ran, heading, file, section) in sections {
        if !ran {
            continue;
        }
        fs::write(out.join(file), &section).expect("a section's file");
        let page = bench.root.join("docs/benchmarks.md");
        let old = fs::read_to_string(&page).unwrap_or_default();
        fs::write(&page, report::splice(&old, heading, &section)).expect("docs/benchmarks.md");
        println!("{section}");
        wrote.push(format!(
            "target/bench/{file}, its section in docs/benchmarks.md"
        ));
    }
    bench.log(format_args!("wrote {}", wrote.join("; ")));
}

/// Step 1: the machine, the cores, the files to serve, and the subjects
/// that can run here.
fn prepare() -> (Bench, Results) {
    let only = Only::from_env();
    let root = plan::project_root();
    let out_dir = root.join("target/bench");
    fs::create_dir_all(&out_dir).expect("target/bench");
    raise_fd_limit();
    let cores = Cores::detect();
    cores.pin_driver();
    let site = Site::create(&out_dir);
    let (subjects, skipped) = plan::subjects(&root, &cores, &site);
    let mut results = Results::new(
        Machine::describe(),
        cores.clone(),
        subjects.iter().map(|s| s.id).collect(),
    );
    results.skipped = skipped;
    let bench = Bench {
        scripts: root.join("benches/wrk"),
        root,
        out_dir,
        cores,
        subjects,
        only,
        started: Instant::now(),
    };
    for s in &results.skipped {
        bench.log(format_args!("skipping {}: {}", s.what, s.why));
    }
    (bench, results)
}

/// Step 6: the JSON, the report, the charts, and their copies under docs/.
fn outputs(bench: &Bench, results: &Results) {
    let verdicts = targets::check(results);
    let page = report::page(results, &verdicts);
    let out = &bench.out_dir;
    fs::write(
        out.join("results.json"),
        serde_json::to_string_pretty(results).expect("results serialise"),
    )
    .expect("results.json");
    fs::write(out.join("report.md"), &page).expect("report.md");
    chart::throughput(results, &out.join("throughput.svg"));
    chart::cpu(results, &out.join("cpu.svg"));
    let docs = bench.root.join("docs");
    fs::create_dir_all(docs.join("bench")).expect("docs/bench");
    for f in ["throughput.svg", "cpu.svg"] {
        fs::copy(out.join(f), docs.join("bench").join(f)).expect("chart copied to docs/bench");
    }
    fs::write(docs.join("benchmarks.md"), &page).expect("docs/benchmarks.md");
    println!("{page}");
    bench.log(format_args!(
        "wrote target/bench/ (results.json, report.md, charts) and docs/benchmarks.md"
    ));
}

/// Up to the hard limit: 15,000 held connections need as many descriptors
/// in the client, and the servers inherit the limit.
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
