//! The report: docs/benchmarks.md, written from one run's figures.
//!
//! Every number on the page, prose included, comes from the `Results` of
//! the run that writes it. The sentences are chosen by the figures (which
//! side was saturated, whether nginx ran), so that the page never says
//! what an older run found.

use std::fmt::Write as _;

use crate::plan::{all_scenarios, ScenarioId, SubjectId, FILE_SCENARIOS, HELD, SCENARIOS};
use crate::results::{median, ratio, Bound, Results, Run};
use crate::targets::Verdict;

/// The whole page.
pub fn page(results: &Results, verdicts: &[Verdict]) -> String {
    let mut p = String::new();
    p.push_str(INTRO);
    p.push('\n');
    p.push_str(&crate::summary::in_short(results));
    p.push_str("![requests per second, relative to the floor](bench/throughput.svg)\n\n");
    p.push_str("![server CPU per request](bench/cpu.svg)\n\n");
    p.push_str(&findings(results));
    p.push_str(&machine(results));
    p.push_str(&throughput_table(results));
    p.push_str(&ratios_table(results));
    p.push_str(&files_table(results));
    p.push_str(&churn_table(results));
    p.push_str(&syscalls_table(results));
    p.push_str(&instructions_tables(results));
    p.push_str(&memory_table(results));
    p.push_str(&crate::scaling::section(results));
    p.push_str(&crate::server_bound::section(results));
    p.push_str(&crate::server_bound_workers::section(results));
    let _ = writeln!(p, "## Targets\n");
    for v in verdicts {
        let _ = writeln!(p, "{}", v.line());
    }
    p.push('\n');
    if !results.skipped.is_empty() {
        let _ = writeln!(p, "## Not measured in this run\n");
        for s in &results.skipped {
            let _ = writeln!(p, "- {}: {}", s.what, s.why);
        }
        p.push('\n');
    }
    p.push_str(HOW_TO_READ);
    p
}

const INTRO: &str = "# Benchmarks\n\n\
The latest `make bench` run. Four servers answer the same `GET /_/hello` with the same \
13 bytes:\n\n\
- **mio**: `fivetuple serve`, the reactor this project is about;\n\
- **tokio**: the same server on tokio (`benches/tokio_server.rs`: the same routes and the \
same sans-IO protocol code, one task per connection), on one thread, and as **tokio-mt** \
with two worker threads;\n\
- **floor**: the least a mio server can do to answer (`benches/floor_server.rs`: httparse, \
one fixed answer with the same headers, no routes, no bookkeeping), so that the gap between \
it and fivetuple is what fivetuple's routing, limits and bookkeeping cost;\n\
- **nginx**: `return 200` from one worker (`benches/nginx.conf`), a referee from outside.\n\n\
Three of them also serve files: fivetuple (`serve --dir`), the tokio version (`--dir`) and \
nginx (`root`, `sendfile on`) answer `GET` for a file of 4 KiB, 64 KiB and 1 MiB (see Static \
files below); the floor serves no files and is left out of those scenarios, and so is \
tokio-mt, to keep the run short.\n\n\
On a machine with few cores wrk is often the bottleneck, so two sections run the same \
servers again held to a share of their core by Linux's CPU controller, the client then the \
faster side: \"Server-bound: each server under a CPU quota\" and \"Scaling over workers under \
a CPU quota\". Their figures are simulated by the quota, and say so.\n\n\
How the figures are taken is explained at the top of `benches/compare/main.rs`; the targets \
are the table in `benches/compare/targets.rs`.\n";

const HOW_TO_READ: &str = "## How to read these figures\n\n\
- **CPU per request** is the server's CPU time during a run (`/proc/PID/stat`) over the \
requests wrk completed. The total follows the scheduler's exact accounting; the split into \
user and system time is sampled at each timer tick, so the user figure, a small share of \
the total, rests on few samples and moves from run to run. The instruction counts \
(callgrind) are the steady measure of user-space work.\n\
- **Sleeps** are the server's voluntary context switches: for an event loop, an \
`epoll_wait` that found nothing ready and blocked. A server that finishes its work sooner \
sleeps more often, and each sleep and wake-up costs kernel time, on its side and on wrk's.\n\
- **Bound by** says which side ran out of CPU first: the server's core (server), wrk's \
cores (wrk), or neither (latency, or other load on the machine). When wrk is the \
bottleneck, requests per second measures wrk as much as the server.\n\
- **Latency** is wrk's, from writing a request to reading its answer; it does not include \
connecting, also in the churn scenario. It is left out for pipelining, where wrk times a \
whole batch of 16.\n\
- Each figure is the median of its rounds, taken figure by figure; the subjects take \
turns within each round. A run during which other programs used a noticeable share of the \
machine (see Noise above) is run again, and left out of the medians where its scenario has \
undisturbed rounds; \"disturbed\" in the table marks a median that had none.\n";

fn us(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0} µs")
    } else {
        format!("{v:.1} µs")
    }
}

fn pct(v: f64) -> String {
    format!("{:.0} %", v * 100.0)
}

fn times(v: Option<f64>) -> String {
    v.map_or("n/a".to_string(), |v| format!("{v:.2}×"))
}

/// The single-core subjects whose runs compare one server core.
fn single_core(results: &Results) -> impl Iterator<Item = SubjectId> + '_ {
    results
        .subjects
        .iter()
        .copied()
        .filter(|&s| s != SubjectId::TokioMt)
}

/// The prose: what this run's figures say.
fn findings(results: &Results) -> String {
    let mut p = String::from("## What this run shows\n\n");
    let cores = &results.cores;
    // Who was saturated.
    let runs: Vec<&Run> = single_core(results)
        .flat_map(|s| SCENARIOS.iter().filter_map(move |sc| results.run(sc.id, s)))
        .collect();
    let count = |b: Bound| runs.iter().filter(|r| r.bound() == b).count();
    let (by_wrk, by_server, neither) = (
        count(Bound::Client),
        count(Bound::Server),
        count(Bound::Neither),
    );
    let _ = write!(
        p,
        "**Which side was the bottleneck.** The servers ran on core {}, wrk on {} ({} thread{}). \
         Of the {} single-core server runs (medians), wrk's side was saturated first in {by_wrk}, \
         the server's core in {by_server}, and neither in {neither}. ",
        cores.server,
        if cores.client.len() == 1 {
            format!("core {}", cores.client[0])
        } else {
            format!("cores {}", crate::plan::list(&cores.client))
        },
        cores.client.len(),
        if cores.client.len() == 1 { "" } else { "s" },
        runs.len(),
    );
    if by_wrk * 2 > runs.len() {
        p.push_str(
            "With the load generator the bottleneck, requests per second says more about wrk \
             than about the servers; CPU per request is the figure that compares them.\n\n",
        );
    } else if by_server * 2 > runs.len() {
        p.push_str(
            "With the servers the bottleneck, requests per second compares them directly.\n\n",
        );
    } else {
        p.push_str("Compare servers by CPU per request; requests per second depends on which side ran out first.\n\n");
    }

    // fivetuple against the floor.
    let cpu = |sc, s| results.run(sc, s).map(Run::cpu_us);
    let user = |sc, s| results.run(sc, s).map(|r| r.user_us);
    let instr = |sc, s| results.instructions(sc, s).map(|i| i.per_request);
    use ScenarioId::{Churn, KeepAlive50, Pipelined16};
    use SubjectId::{Floor, Mio, Nginx, Tokio};
    if let (Some(m), Some(f), Some(mp), Some(fp)) = (
        cpu(KeepAlive50, Mio),
        cpu(KeepAlive50, Floor),
        cpu(Pipelined16, Mio),
        cpu(Pipelined16, Floor),
    ) {
        let sys_share = |s| {
            results
                .run(KeepAlive50, s)
                .map_or(0.0, |r| r.sys_us / r.cpu_us().max(1e-9))
        };
        let _ = write!(
            p,
            "**fivetuple against the floor.** CPU per request: {:.2}× the floor's at keep-alive 50 \
             ({} against {}) and {:.2}× pipelined ({} against {}). Most of a request's cost is the \
             kernel's: system time is {} of fivetuple's CPU per request at keep-alive 50 ({} of the \
             floor's), so what user space saves moves the total little. In user space alone fivetuple \
             costs {} the floor's by the sampled user time",
            m / f,
            us(m),
            us(f),
            mp / fp,
            us(mp),
            us(fp),
            pct(sys_share(Mio)),
            pct(sys_share(Floor)),
            times(ratio(user(KeepAlive50, Mio), user(KeepAlive50, Floor))),
        );
        match (instr(KeepAlive50, Mio), instr(KeepAlive50, Floor)) {
            (Some(mi), Some(fi)) => {
                let _ = write!(
                    p,
                    ", and {:.2}× by instructions counted ({mi:.0} against {fi:.0} per request at \
                     keep-alive 50; {} pipelined)",
                    mi / fi,
                    times(ratio(instr(Pipelined16, Mio), instr(Pipelined16, Floor))),
                );
            }
            _ => p.push_str(" (instructions were not counted in this run)"),
        }
        p.push('.');
        if let (Some(mi), Some(fi)) = (
            results.instructions(KeepAlive50, Mio),
            results.instructions(KeepAlive50, Floor),
        ) {
            let part = |parts: &[(String, f64)], i: usize| {
                parts
                    .iter()
                    .find(|(name, _)| name == crate::profile::PARTS[i])
                    .map_or(0.0, |(_, v)| *v)
            };
            let _ = write!(
                p,
                " Of fivetuple's {:.0} instructions per request, httparse takes {:.0} (the floor's: \
                 {:.0}), fivetuple's own checks around it {:.0}, routing and writing the answer {:.0}, \
                 the session {:.0}, and the event loop {:.0} (the floor's: {:.0}); the table below has \
                 every part. Even if routing and writing the answer cost nothing, fivetuple would \
                 spend {:.0} instructions per request, {:.2}× the floor's: the rest of the gap is \
                 in the checks, the session and the event loop.",
                mi.per_request,
                part(&mi.parts, 2),
                part(&fi.parts, 2),
                part(&mi.parts, 3),
                part(&mi.parts, 4),
                part(&mi.parts, 1),
                part(&mi.parts, 0),
                part(&fi.parts, 0),
                mi.per_request - part(&mi.parts, 4),
                (mi.per_request - part(&mi.parts, 4)) / fi.per_request,
            );
        }
        let sleeps = |s| {
            results
                .run(KeepAlive50, s)
                .map(|r| r.sleeps_per_request * 100.0)
        };
        if let (Some(ms), Some(fs)) = (sleeps(Mio), sleeps(Floor)) {
            let _ = write!(
                p,
                " Part of the kernel's share depends on how often a server runs out of work: at \
                 keep-alive 50 fivetuple went to sleep in `epoll_wait` {ms:.0} times per 100 \
                 requests, the floor {fs:.0} times, and every sleep and wake-up is kernel time{}",
                if fs > ms * 1.1 {
                    ": the floor, quicker in user space, ran dry more often, which narrows the gap \
                     in CPU per request."
                } else {
                    "."
                }
            );
        }
        p.push_str("\n\n");
    }

    // nginx.
    if let (Some(n), Some(f)) = (cpu(KeepAlive50, Nginx), cpu(KeepAlive50, Floor)) {
        let _ = write!(
            p,
            "**nginx** spent {} of CPU per request at keep-alive 50: {:.2}× the floor's and {} \
             fivetuple's. Pipelined: {} the floor's",
            us(n),
            n / f,
            times(ratio(Some(n), cpu(KeepAlive50, Mio))),
            times(ratio(cpu(Pipelined16, Nginx), cpu(Pipelined16, Floor))),
        );
        match (
            results.syscalls(Pipelined16, Nginx),
            results.syscalls(Pipelined16, Floor),
        ) {
            (Some(n), Some(f)) => {
                let _ = write!(
                    p,
                    ", with {n:.2} system calls per pipelined request against the floor's {f:.2}: \
                     nginx writes each answer of a batch on its own.\n\n"
                );
            }
            _ => p.push_str(".\n\n"),
        }
    }

    // tokio.
    let vs_tokio: Vec<(f64, f64)> = SCENARIOS
        .iter()
        .filter_map(|sc| {
            Some((
                ratio(cpu(sc.id, Mio), cpu(sc.id, Tokio))?,
                ratio(user(sc.id, Mio), user(sc.id, Tokio))?,
            ))
        })
        .collect();
    if !vs_tokio.is_empty() {
        let range = |f: fn(&(f64, f64)) -> f64| {
            let v: Vec<f64> = vs_tokio.iter().map(f).collect();
            (
                v.iter().copied().fold(f64::MAX, f64::min),
                v.iter().copied().fold(f64::MIN, f64::max),
            )
        };
        let (c0, c1) = range(|r| r.0);
        let (u0, u1) = range(|r| r.1);
        let _ = write!(
            p,
            "**Against the tokio version** (one thread), across the {} scenarios: CPU per request \
             from {c0:.2}× to {c1:.2}× tokio's, user CPU from {u0:.2}× to {u1:.2}×",
            vs_tokio.len()
        );
        if let (Some(mi), Some(ti)) = (instr(KeepAlive50, Mio), instr(KeepAlive50, Tokio)) {
            let _ = write!(
                p,
                "; user instructions at keep-alive 50 {:.2}× ({mi:.0} against {ti:.0})",
                mi / ti
            );
        }
        p.push_str(".\n\n");
    }

    // Churn.
    if let Some(m) = results.run(Churn, Mio) {
        let others: Vec<String> = single_core(results)
            .filter(|&s| s != Mio)
            .filter_map(|s| results.run(Churn, s).map(|r| (s, r)))
            .map(|(s, r)| format!("{} {} and {}", s.name(), us(r.cpu_us()), r.fd_peak))
            .collect();
        let _ = write!(
            p,
            "**Churn** (a new connection for every request, {} at a time): fivetuple spent {} of \
             CPU per connection and held at most {} descriptors at once (CPU and descriptor peak \
             of the others: {}).\n\n",
            Churn.scenario().connections,
            us(m.cpu_us()),
            m.fd_peak,
            others.join("; "),
        );
    }

    p.push_str(&files_finding(results));

    // Noise.
    let rounds: Vec<&Run> = results.throughput.iter().flat_map(|m| &m.rounds).collect();
    let disturbed = rounds.iter().filter(|r| r.disturbed()).count();
    let repeated: usize = results.throughput.iter().map(|m| m.repeated).sum();
    let spreads: Vec<f64> = results.throughput.iter().map(|m| m.spread()).collect();
    let others: Vec<f64> = rounds.iter().map(|r| r.other_load).collect();
    if !rounds.is_empty() {
        let _ = write!(
            p,
            "**Noise.** Other programs on the machine used up to {:.2} cores' worth of CPU during the \
             timed runs kept (median {:.2}). {repeated} run{} disturbed by more than {} cores of it {} \
             run again (after waiting {:.0} s in all for the machine to quiet down), and \
             {disturbed} of the {} rounds kept {} disturbed even so; the medians \
             leave those out wherever a scenario has undisturbed rounds. The undisturbed rounds of \
             one server in one scenario spread by up to {} in requests/s (median {}).\n\n",
            others.iter().copied().fold(0.0, f64::max),
            median(others.iter().copied()),
            if repeated == 1 { "" } else { "s" },
            crate::plan::DISTURBED,
            if repeated == 1 { "was" } else { "were" },
            results.waited_seconds,
            rounds.len(),
            if disturbed == 1 { "was" } else { "were" },
            pct(spreads.iter().copied().fold(0.0, f64::max)),
            pct(median(spreads.iter().copied())),
        );
    }
    p
}

fn machine(results: &Results) -> String {
    let m = &results.machine;
    format!(
        "## Machine\n\n{} cores, {}, Linux {}, {}. Servers on core {} (tokio-mt on cores {}, \
         sharing one with wrk), wrk on the rest with one thread per core. {} rounds of {} s per \
         scenario; the whole run took {:.0} s.\n\n",
        results.cores.allowed.len(),
        m.cpu,
        m.kernel,
        m.date,
        results.cores.server,
        crate::plan::list(&results.cores.pair()),
        results.rounds,
        results.run_seconds,
        results.seconds,
    )
}

fn throughput_table(results: &Results) -> String {
    let mut r = String::from("## Throughput, latency and CPU per request\n\n");
    r.push_str(
        "| scenario | server | requests/s | p50 | p99 | user µs/req | system µs/req | sleeps/100 req | server busy | wrk busy | bound by |\n",
    );
    r.push_str("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|\n");
    for scenario in all_scenarios() {
        for &subject in &results.subjects {
            let Some(m) = results.measured(scenario.id, subject) else {
                continue;
            };
            let run = &m.median;
            let (p50, p99) = run
                .latency
                .map_or(("n/a".to_string(), "n/a".to_string()), |l| {
                    (us(l.p50_us), us(l.p99_us))
                });
            let errors = if run.errors > 0 {
                format!(" ({} errors)", run.errors)
            } else {
                String::new()
            };
            let _ = writeln!(
                r,
                "| {} | {} | {:.0}{errors} | {p50} | {p99} | {:.3} | {:.3} | {:.1} | {} | {} | {} |",
                scenario.name,
                subject.name(),
                run.rps,
                run.user_us,
                run.sys_us,
                run.sleeps_per_request * 100.0,
                pct(run.server_busy),
                pct(run.client_busy),
                if run.disturbed() {
                    format!("{}, disturbed", run.bound().name())
                } else {
                    run.bound().name().to_string()
                },
            );
        }
    }
    r.push('\n');
    r
}

fn ratios_table(results: &Results) -> String {
    use SubjectId::{Floor, Mio, Tokio};
    let mut r = String::from("## fivetuple against the floor and against tokio\n\n");
    r.push_str("| scenario | CPU/req ÷ floor | user CPU/req ÷ floor | CPU/req ÷ tokio | user CPU/req ÷ tokio | requests/s ÷ tokio |\n");
    r.push_str("|---|---:|---:|---:|---:|---:|\n");
    for scenario in &SCENARIOS {
        if results.run(scenario.id, Mio).is_none() {
            continue;
        }
        let f = |s, g: fn(&Run) -> f64| results.run(scenario.id, s).map(g);
        let _ = writeln!(
            r,
            "| {} | {} | {} | {} | {} | {} |",
            scenario.name,
            times(ratio(f(Mio, Run::cpu_us), f(Floor, Run::cpu_us))),
            times(ratio(f(Mio, |r| r.user_us), f(Floor, |r| r.user_us))),
            times(ratio(f(Mio, Run::cpu_us), f(Tokio, Run::cpu_us))),
            times(ratio(f(Mio, |r| r.user_us), f(Tokio, |r| r.user_us))),
            times(ratio(f(Mio, |r| r.rps), f(Tokio, |r| r.rps))),
        );
    }
    r.push('\n');
    r
}

/// The static-file scenarios' paragraph of findings: fivetuple and the
/// tokio version against nginx, file by file.
fn files_finding(results: &Results) -> String {
    use SubjectId::{Mio, Nginx, Tokio};
    let threads = results.cores.wrk_threads().max(1) as f64;
    let with_wrk = |r: &Run| r.cpu_us() + r.client_busy * threads / r.rps.max(1e-9) * 1e6;
    let against = |subject: SubjectId| -> Vec<String> {
        FILE_SCENARIOS
            .iter()
            .filter_map(|sc| {
                let (s, n) = (results.run(sc.id, subject)?, results.run(sc.id, Nginx)?);
                Some(format!(
                    "{} {:.2}×, {:.2}× and {:.2}×",
                    file_label(sc.id),
                    s.rps / n.rps.max(1e-9),
                    s.cpu_us() / n.cpu_us().max(1e-9),
                    with_wrk(s) / with_wrk(n).max(1e-9)
                ))
            })
            .collect()
    };
    let (mio, tokio) = (against(Mio), against(Tokio));
    if mio.is_empty() {
        return String::new();
    }
    let mut p = format!(
        "**Static files** (keep-alive, 50 connections; the floor serves no files). fivetuple's \
         requests/s, CPU per request, and CPU per request with wrk's added (see Static files \
         below for why), against nginx's: {}",
        mio.join("; ")
    );
    if !tokio.is_empty() {
        let _ = write!(p, ". The tokio version's: {}", tokio.join("; "));
    }
    p.push_str(".\n\n");
    p
}

/// A static-file scenario by its file's size: "4 KiB".
fn file_label(id: ScenarioId) -> String {
    match id.scenario().file_size() {
        Some(n) if n >= 1 << 20 => format!("{} MiB", n >> 20),
        Some(n) => format!("{} KiB", n >> 10),
        None => id.name().to_string(),
    }
}

/// Requests/s, MB/s of file bytes and CPU per request for each file, and
/// each server's against nginx's.
fn files_table(results: &Results) -> String {
    use SubjectId::Nginx;
    if FILE_SCENARIOS
        .iter()
        .all(|sc| results.measured(sc.id, SubjectId::Mio).is_none())
    {
        return String::new();
    }
    let mut r = String::from(
        "## Static files against nginx\n\n\
         Keep-alive, 50 connections, every request for the same file, which stays in the page \
         cache: the figures are the servers' and the kernel's work, not the disk's. Each server \
         opens the file for every request (nginx has no `open_file_cache` here). How fivetuple \
         sends a body is in `docs/files.md`; nginx has `sendfile on`. MB/s counts file bytes \
         (requests/s × the file's size, headers left out). The floor serves no files and is not \
         in these rows.\n\n\
         On loopback the kernel's work of carrying the bytes into the client's socket is \
         charged to whichever side's system call set it going: to the server when its \
         `sendfile` finds the client's receive window open, to wrk when the window was full and \
         wrk's read opens it again. For large files that moves tens of µs per request between \
         the server's column and wrk's from one run to the next, so wrk's CPU per request is \
         shown too: the sum of the two is the steadier figure.\n\n\
         | file | server | requests/s | MB/s | CPU µs/req | wrk CPU µs/req | p99 | server busy | wrk busy | bound by | requests/s ÷ nginx | CPU/req ÷ nginx |\n\
         |---|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|\n",
    );
    let wrk_threads = results.cores.wrk_threads().max(1) as f64;
    for scenario in &FILE_SCENARIOS {
        let size = scenario.file_size().unwrap_or(0) as f64;
        let nginx = results.run(scenario.id, Nginx);
        for &subject in &results.subjects {
            let Some(run) = results.run(scenario.id, subject) else {
                continue;
            };
            let p99 = run.latency.map_or("n/a".to_string(), |l| us(l.p99_us));
            let errors = if run.errors > 0 {
                format!(" ({} errors)", run.errors)
            } else {
                String::new()
            };
            let wrk_us = run.client_busy * wrk_threads / run.rps.max(1e-9) * 1e6;
            let _ = writeln!(
                r,
                "| {} | {} | {:.0}{errors} | {:.0} | {} | {} | {p99} | {} | {} | {} | {} | {} |",
                file_label(scenario.id),
                subject.name(),
                run.rps,
                run.rps * size / 1e6,
                us(run.cpu_us()),
                us(wrk_us),
                pct(run.server_busy),
                pct(run.client_busy),
                run.bound().name(),
                times(ratio(Some(run.rps), nginx.map(|n| n.rps))),
                times(ratio(Some(run.cpu_us()), nginx.map(Run::cpu_us))),
            );
        }
    }
    r.push('\n');
    r
}

fn churn_table(results: &Results) -> String {
    let churn = ScenarioId::Churn;
    let mut r = format!(
        "## Churn: a new connection per request\n\n{} connections at a time, each closed after one \
         answer (`Connection: close`). The descriptor peak is the most entries `/proc/PID/fd` \
         listed at once, sampled every few milliseconds during the timed runs.\n\n",
        churn.scenario().connections
    );
    r.push_str(
        "| server | connections/s | p50 | p99 | CPU µs per connection | descriptor peak |\n",
    );
    r.push_str("|---|---:|---:|---:|---:|---:|\n");
    for &subject in &results.subjects {
        let Some(run) = results.run(churn, subject) else {
            continue;
        };
        let (p50, p99) = run
            .latency
            .map_or(("n/a".to_string(), "n/a".to_string()), |l| {
                (us(l.p50_us), us(l.p99_us))
            });
        let _ = writeln!(
            r,
            "| {} | {:.0} | {p50} | {p99} | {:.2} | {} |",
            subject.name(),
            run.rps,
            run.cpu_us(),
            run.fd_peak
        );
    }
    r.push('\n');
    r
}

fn syscalls_table(results: &Results) -> String {
    if results.syscalls.is_empty() {
        return String::new();
    }
    let mut r =
        String::from("## System calls per request (strace -c, separate pass)\n\n| scenario |");
    for s in &results.subjects {
        let _ = write!(r, " {} |", s.name());
    }
    r.push_str("\n|---|");
    r.push_str(&"---:|".repeat(results.subjects.len()));
    r.push('\n');
    for scenario in crate::steps::TRACED {
        let _ = write!(r, "| {} |", scenario.name());
        for &s in &results.subjects {
            let v = results
                .syscalls(scenario, s)
                .map_or("n/a".to_string(), |v| format!("{v:.3}"));
            let _ = write!(r, " {v} |");
        }
        r.push('\n');
    }
    r.push('\n');
    r
}

fn instructions_tables(results: &Results) -> String {
    use SubjectId::{Floor, Mio};
    if results.instructions.is_empty() {
        return String::new();
    }
    let subjects: Vec<SubjectId> = results
        .subjects
        .iter()
        .copied()
        .filter(|&s| results.instructions.iter().any(|i| i.subject == s))
        .collect();
    let mut r = String::from(
        "## User instructions per request (callgrind, separate pass)\n\n\
         Counted by `valgrind --tool=callgrind` under load, less a run that only starts, \
         answers once and stops. Unlike CPU time, the count does not depend on the machine's \
         other load; it sees nothing of the kernel's work.\n\n| scenario |",
    );
    for s in &subjects {
        let _ = write!(r, " {} |", s.name());
    }
    r.push_str(" mio ÷ floor |\n|---|");
    r.push_str(&"---:|".repeat(subjects.len() + 1));
    r.push('\n');
    for scenario in [ScenarioId::KeepAlive50, ScenarioId::Pipelined16] {
        let _ = write!(r, "| {} |", scenario.name());
        let get = |s| results.instructions(scenario, s).map(|i| i.per_request);
        for &s in &subjects {
            let _ = write!(
                r,
                " {} |",
                get(s).map_or("n/a".to_string(), |v| format!("{v:.0}"))
            );
        }
        let _ = writeln!(r, " {} |", times(ratio(get(Mio), get(Floor))));
    }
    r.push('\n');
    for scenario in [ScenarioId::KeepAlive50, ScenarioId::Pipelined16] {
        let (Some(m), f) = (
            results.instructions(scenario, Mio),
            results.instructions(scenario, Floor),
        ) else {
            continue;
        };
        let _ = writeln!(
            r,
            "Where the instructions go, {} (per request, start-up included in the rest):\n",
            scenario.name()
        );
        r.push_str("| part | mio | floor |\n|---|---:|---:|\n");
        for part in crate::profile::PARTS {
            let get =
                |parts: &[(String, f64)]| parts.iter().find(|(p, _)| p == part).map(|(_, v)| *v);
            let (mv, fv) = (get(&m.parts), f.and_then(|f| get(&f.parts)));
            if mv.is_none() && fv.is_none() {
                continue;
            }
            let cell = |v: Option<f64>| v.map_or("–".to_string(), |v| format!("{v:.0}"));
            let _ = writeln!(r, "| {part} | {} | {} |", cell(mv), cell(fv));
        }
        r.push('\n');
    }
    r
}

fn memory_table(results: &Results) -> String {
    if results.memory.is_empty() {
        return String::new();
    }
    let mut r = format!(
        "## Memory per held idle connection ({HELD} connections, one request each)\n\n\
         Opened with `fivetuple connect -n {HELD} -e -p 'GET /_/hello …' --hold …` on wrk's cores; the server's RSS \
         growth over the connections held. How fast they were established is in results.json, but \
         it mostly measures SYN retransmissions: a burst that overflows the accept queue waits a \
         one-second retransmission. Connections accepted per second are the churn scenario's \
         figure above.\n\n| server | connections held | RSS per connection |\n|---|---:|---:|\n"
    );
    for h in &results.memory {
        let _ = writeln!(
            r,
            "| {} | {} | {:.0} B |",
            h.subject.name(),
            h.connections,
            h.bytes_per_connection
        );
    }
    r.push('\n');
    r
}

/// `page` with `section` in place of the section that starts with
/// `heading`, or, if it has none, before its targets (at the end if it has
/// none of those either): a step run alone updates its own part of
/// docs/benchmarks.md and leaves the rest as the last whole run wrote it.
pub fn splice(page: &str, heading: &str, section: &str) -> String {
    let at_heading = |heading: &str| {
        page.match_indices(heading)
            .map(|(i, _)| i)
            .find(|&i| i == 0 || page[..i].ends_with('\n'))
    };
    let (start, end) = match at_heading(heading) {
        Some(start) => {
            let rest = &page[start + heading.len()..];
            let end = rest
                .find("\n## ")
                .map_or(page.len(), |i| start + heading.len() + i + 1);
            (start, end)
        }
        None => {
            let at = at_heading("## Targets").unwrap_or(page.len());
            (at, at)
        }
    };
    let mut out = String::with_capacity(page.len() + section.len());
    out.push_str(&page[..start]);
    if !out.is_empty() && !out.ends_with("\n\n") {
        out.push_str(if out.ends_with('\n') { "\n" } else { "\n\n" });
    }
    out.push_str(section);
    out.push_str(&page[end..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu_quota::Quota;
    use crate::plan::{Cores, Machine};
    use crate::results::{Capped, Latency, Measured};
    use crate::server_bound::{BoundScenario, ServerBound, HEADING as BOUND};
    use crate::targets::{check, check_bound, Figure};
    use ScenarioId::KeepAlive50;
    use SubjectId::{Floor, Mio, Nginx, Tokio};

    fn run(rps: f64) -> Run {
        Run {
            requests: (rps * 3.0) as u64,
            rps,
            latency: Some(Latency {
                p50_us: 100.0,
                p99_us: 900.0,
            }),
            user_us: 1.0,
            sys_us: 5.0,
            server_busy: 0.8,
            client_busy: 0.99,
            ..Run::default()
        }
    }

    /// A run under a quota, with wrk `client` busy.
    fn capped(rps: f64, client: f64) -> Run {
        Run {
            server_busy: 1.0,
            client_busy: client,
            capped: Some(Capped {
                allowed: 1.0 / 3.0,
                used: 1.0 / 3.0,
                throttled: 0.9,
                filled: 0.6,
            }),
            ..run(rps)
        }
    }

    #[test]
    fn a_page_renders_from_some_figures_and_wrk_bound_runs_get_no_verdict() {
        let mut results = Results::new(
            Machine {
                cores: 2,
                cpu: "a CPU".into(),
                kernel: "6.0".into(),
                date: "today".into(),
            },
            Cores {
                allowed: vec![0, 1],
                server: 0,
                client: vec![1],
            },
            vec![Mio, Tokio, Floor, Nginx],
        );
        for s in [Mio, Tokio, Floor, Nginx] {
            results
                .throughput
                .push(Measured::new(KeepAlive50, s, vec![run(100_000.0)], 0));
        }
        let bound = |s, rps, client| Measured::new(KeepAlive50, s, vec![capped(rps, client)], 0);
        results.server_bound = Some(ServerBound {
            controller: "cgroup v1 at /sys/fs/cgroup/cpu".into(),
            scenarios: vec![BoundScenario {
                scenario: KeepAlive50,
                quota: Quota {
                    quota_us: 2000,
                    period_us: 6000,
                },
                lowered: 0,
                warmup_client_busy: 0.4,
                measured: vec![
                    bound(Mio, 40_000.0, 0.4),
                    bound(Tokio, 30_000.0, 0.95),
                    bound(Floor, 38_000.0, 0.4),
                ],
            }],
            seconds: 60.0,
        });
        let page = page(&results, &check(&results));
        assert!(page.contains("## In short"));
        assert!(page.contains(BOUND));
        assert!(
            page.contains("**wrk: not server-bound**"),
            "tokio's row says so"
        );
        assert!(!page.contains("Taken under load"));

        let verdicts = check_bound(&results);
        let find = |versus| {
            verdicts
                .iter()
                .find(|v| {
                    matches!(v.target.figure, Figure::BoundThroughput)
                        && v.target.scenario == Some(KeepAlive50)
                        && v.target.versus == Some(versus)
                })
                .expect("a target")
        };
        let floor = find(Floor);
        assert_eq!(floor.met, Some(true));
        assert!((floor.value.unwrap() - 40.0 / 38.0).abs() < 1e-9);
        // wrk saturated in tokio's run: no ratio, and the line says why.
        let tokio = find(Tokio);
        assert_eq!((tokio.value, tokio.met), (None, None));
        assert!(tokio.line().contains("not a server-bound figure"));
        // nginx did not run under the quota: not measured.
        assert!(find(Nginx).line().contains("not measured"));
    }

    #[test]
    fn a_section_replaces_its_old_self_or_goes_before_the_targets() {
        const HEADING: &str = "## Scaling across cores";
        let new = format!("{HEADING}\n\nnew figures\n\n");
        let page = "# Benchmarks\n\n## Memory\n\nm\n\n## Targets\n\n- t\n";
        let once = splice(page, HEADING, &new);
        assert_eq!(
            once,
            format!("# Benchmarks\n\n## Memory\n\nm\n\n{new}## Targets\n\n- t\n")
        );
        let newer = format!("{HEADING}\n\nnewer figures\n\n");
        let twice = splice(&once, HEADING, &newer);
        assert_eq!(twice, once.replace(&new, &newer));
        assert_eq!(splice("", HEADING, &new), new);
        assert_eq!(splice("# B\n", HEADING, &new), format!("# B\n\n{new}"));
        // Another section goes after it, before the targets, and leaves it be.
        let other = "## Server-bound\n\nfigures\n\n";
        let both = splice(&twice, "## Server-bound", other);
        assert_eq!(
            both,
            twice.replace("## Targets", &format!("{other}## Targets"))
        );
        assert_eq!(splice(&both, HEADING, &newer), both);
    }
}
