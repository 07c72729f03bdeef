//! The server-bound step: every single-core scenario again, with each
//! server held to a share of its core by Linux's CPU controller
//! (`cpu_quota.rs`), so that wrk, unthrottled on the other core, is the
//! faster side and requests/s measures the server.
//!
//! For each scenario: fivetuple, the tokio version (one thread), the floor
//! and nginx (the floor serves no files, so not those scenarios), each
//! pinned to the servers' core as in the throughput step and put in a
//! group of its own with the same quota. The quota starts at a third of a
//! core ([`START_SHARE`]). Each server gets a warm-up under it; where wrk's
//! core was more than [`CLIENT_HEADROOM`] busy in any of them, the client
//! is not clearly the faster side, so the share is lowered for every
//! server of the scenario and the warm-ups run again. Then `ROUNDS` timed
//! runs each, in turns, as in the throughput step (`steps::in_turns_with`).
//!
//! Every run records, besides wrk's figures, the cores' worth of CPU the
//! server used, that over what its quota allowed, the share of the
//! quota's periods in which it was held (`cpu.stat`), and wrk's busy time:
//! a run in which wrk's core was saturated is marked as such, and is not
//! a server-bound figure (`Run::bound`).
//!
//! Where the controller cannot be used (not root, no `cpu` controller),
//! the step says so in one line and is skipped. `BENCH_ONLY=server-bound`
//! runs it alone (`make bench-server-bound`), and puts its section into
//! `docs/benchmarks.md`.

use std::fmt::Write as _;
use std::net::SocketAddr;

use serde::Serialize;

use crate::core_filler::CoreFiller;
use crate::cpu_quota::{Cap, Controller, Groups, Quota};
use crate::plan::{
    all_scenarios, Content, Scenario, ScenarioId, Skipped, Subject, SubjectId, DISTURBED, ROUNDS,
    RUN_SECS, SATURATED, WARMUP_SECS,
};
use crate::probe::{self, CpuTime};
use crate::results::{median, Bound, Capped, Measured, Results, Run};
use crate::server::Server;
use crate::steps;
use crate::targets::check_bound;
use crate::Bench;

/// The servers this step caps: each serves with one thread on one core.
/// (Two-worker tokio-mt belongs to the workers' step, `server_bound_workers.rs`.)
const CAPPED: [SubjectId; 4] = [
    SubjectId::Mio,
    SubjectId::Tokio,
    SubjectId::Floor,
    SubjectId::Nginx,
];
/// The share of its core each server starts with: the 1000/3000.
pub const START_SHARE: f64 = 1.0 / 3.0;
/// wrk's core may be at most this busy in the warm-ups at the chosen
/// share: the client is then clearly faster than every server.
pub const CLIENT_HEADROOM: f64 = 0.8;
/// Each time the client is too busy, the share is multiplied by this.
const LOWER_BY: f64 = 0.6;
/// The share is not lowered below this; the runs then say which side was
/// saturated.
const MIN_SHARE: f64 = 0.05;
/// The section's heading, by which `report::splice` finds it in a page.
pub const HEADING: &str = "## Server-bound: each server under a CPU quota";

/// Other programs' CPU during a step's timed runs, from the runs
/// themselves (`Run::other_load`: what the cores did beyond the server,
/// wrk and the filler). The load average would count this benchmark's
/// own wrk, servers and filler.
#[derive(Debug, Clone, Copy, Default)]
pub struct Noise {
    /// Cores' worth others used, median and most, over the rounds kept.
    pub median: f64,
    pub max: f64,
    pub rounds: usize,
    /// Runs run again because others disturbed them.
    pub repeated: usize,
    /// Medians with no undisturbed round.
    pub disturbed_medians: usize,
}

impl Noise {
    /// From each median's (run, rounds, runs repeated).
    pub fn of<'a>(measured: impl Iterator<Item = (&'a Run, &'a [Run], usize)>) -> Noise {
        let mut others = Vec::new();
        let mut noise = Noise::default();
        for (median, rounds, repeated) in measured {
            others.extend(rounds.iter().map(|r| r.other_load));
            noise.repeated += repeated;
            noise.disturbed_medians += usize::from(median.disturbed());
        }
        noise.rounds = others.len();
        noise.median = crate::results::median(others.iter().copied());
        noise.max = others.iter().copied().fold(0.0, f64::max);
        noise
    }

    /// Others took enough to distrust the figures: a median with only
    /// disturbed rounds, or others busy through most runs.
    pub fn loaded(&self) -> bool {
        self.disturbed_medians > 0 || self.median > DISTURBED / 2.0
    }

    /// The section's paragraph on it, with a warning where it is loaded.
    pub fn paragraph(&self) -> String {
        let mut p = String::new();
        if self.loaded() {
            let _ = write!(
                p,
                "**Taken under load.** Other programs were competing for the cores while this \
                 step ran ({} median{} had no undisturbed round): these figures are not to be \
                 trusted. Run the step again on a quiet machine. ",
                self.disturbed_medians,
                if self.disturbed_medians == 1 { "" } else { "s" },
            );
        }
        let _ = write!(
            p,
            "**Noise.** Other programs used a median {:.2} cores' worth of CPU during the {} \
             rounds kept, {:.2} at most; {} run{} disturbed by more than {DISTURBED} cores of it \
             {} run again.\n\n",
            self.median,
            self.rounds,
            self.max,
            self.repeated,
            if self.repeated == 1 { "" } else { "s" },
            if self.repeated == 1 { "was" } else { "were" },
        );
        p
    }
}

/// One scenario under the quota.
#[derive(Debug, Clone, Serialize)]
pub struct BoundScenario {
    pub scenario: ScenarioId,
    pub quota: Quota,
    /// How many times the share was lowered because wrk was too busy.
    pub lowered: usize,
    /// wrk's busiest warm-up at the quota chosen.
    pub warmup_client_busy: f64,
    pub measured: Vec<Measured>,
}

/// Everything the server-bound step found.
#[derive(Debug, Clone, Serialize)]
pub struct ServerBound {
    /// "cgroup v1 at /sys/fs/cgroup/cpu".
    pub controller: String,
    pub scenarios: Vec<BoundScenario>,
    pub seconds: f64,
}

impl ServerBound {
    pub fn scenario(&self, id: ScenarioId) -> Option<&BoundScenario> {
        self.scenarios.iter().find(|s| s.scenario == id)
    }

    pub fn measured(&self, id: ScenarioId, subject: SubjectId) -> Option<&Measured> {
        self.scenario(id)?
            .measured
            .iter()
            .find(|m| m.subject == subject)
    }

    pub fn run(&self, id: ScenarioId, subject: SubjectId) -> Option<&Run> {
        self.measured(id, subject).map(|m| &m.median)
    }

    pub fn noise(&self) -> Noise {
        Noise::of(
            self.scenarios
                .iter()
                .flat_map(|s| &s.measured)
                .map(|m| (&m.median, &m.rounds[..], m.repeated)),
        )
    }
}

/// The controller and this run's groups, or one line saying why not.
pub fn open_groups(bench: &Bench, step: &str) -> Result<(Controller, Groups), String> {
    let controller = Controller::detect()?;
    let groups = controller.open()?;
    bench.log(format_args!(
        "{step}: CPU quotas through {}",
        controller.describe()
    ));
    Ok((controller, groups))
}

/// What a capped step measured: its items in order, the controller, and
/// how long it took.
pub struct StepRun<T> {
    pub controller: String,
    pub items: Vec<T>,
    pub seconds: f64,
}

/// Runs `one` for each scenario with this run's CPU groups, the way both
/// capped steps do: if no group can be made, one line says why and the
/// step is skipped (`None`); if one scenario cannot be capped, the step
/// stops there and says so, keeping what it measured.
pub fn each_capped<T>(
    bench: &Bench,
    results: &mut Results,
    step: &str,
    what: &str,
    scenarios: impl IntoIterator<Item = &'static Scenario>,
    mut one: impl FnMut(&Bench, &mut Groups, &'static Scenario) -> std::io::Result<T>,
) -> Option<StepRun<T>> {
    let (controller, mut groups) = match open_groups(bench, step) {
        Ok(opened) => opened,
        Err(why) => {
            bench.log(format_args!("{step}: skipped: {why}"));
            results.skipped.push(Skipped {
                what: what.into(),
                why,
            });
            return None;
        }
    };
    let started = std::time::Instant::now();
    let mut items = Vec::new();
    for scenario in scenarios {
        match one(bench, &mut groups, scenario) {
            Ok(item) => items.push(item),
            Err(e) => {
                bench.log(format_args!(
                    "{step}: {}: cannot cap the servers ({e}); step stopped",
                    scenario.name
                ));
                results.skipped.push(Skipped {
                    what: format!("{what}, {} and after", scenario.name),
                    why: format!("a CPU group could not be set up: {e}"),
                });
                break;
            }
        }
    }
    Some(StepRun {
        controller: controller.describe(),
        items,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Runs the step, or notes in one line why it cannot.
pub fn run(bench: &Bench, results: &mut Results) {
    let what = "the server-bound step (servers under a CPU quota)";
    let Some(done) = each_capped(
        bench,
        results,
        "server-bound",
        what,
        all_scenarios(),
        one_scenario,
    ) else {
        return;
    };
    results.server_bound = Some(ServerBound {
        controller: done.controller,
        scenarios: done.items,
        seconds: done.seconds,
    });
}

/// One scenario: the servers started and capped, the share chosen, the rounds.
fn one_scenario(
    bench: &Bench,
    groups: &mut Groups,
    scenario: &'static Scenario,
) -> std::io::Result<BoundScenario> {
    let servers: Vec<(&Subject, Server)> = bench
        .subjects
        .iter()
        .filter(|s| CAPPED.contains(&s.id) && scenario.runs(s.id))
        .map(|s| (s, Server::start(s)))
        .collect();
    match scenario.content {
        Content::Hello => steps::check_same_answer(&servers),
        Content::File { name, size } => steps::check_serves_file(&servers, name, size),
    }
    let mut share = START_SHARE;
    let mut quota = Quota::of_share(share).expect("a third of a core is a quota");
    let mut caps = Vec::new();
    for (_, server) in &servers {
        caps.push(groups.cap_processes(&server.pids(), quota)?);
    }
    let addrs: Vec<SocketAddr> = servers.iter().map(|(_, s)| s.addr).collect();
    let subjects: Vec<SubjectId> = servers.iter().map(|(s, _)| s.id).collect();
    let label = format!("server-bound: {}", scenario.name);
    let mut lowered = 0;
    let (measured, warmup_client_busy) = loop {
        // The share for every server, a step lower: `None` at the floor.
        let lower = |share: f64| {
            Quota::of_share(share * LOWER_BY).filter(|_| share * LOWER_BY >= MIN_SHARE)
        };
        let busiest = warm_up(bench, &addrs, scenario);
        let too_busy = if busiest >= CLIENT_HEADROOM {
            Some(format!("wrk {:.0} % busy in a warm-up", busiest * 100.0))
        } else {
            None
        };
        let measured = match too_busy {
            Some(_) => None,
            None => Some(
                steps::in_turns_with(bench, &subjects, scenario, &label, |i| {
                    let (subject, server) = &servers[i];
                    timed_capped(bench, subject, server, scenario, &caps[i])
                })
                .0,
            ),
        };
        let saturated: Vec<&str> = measured
            .iter()
            .flatten()
            .filter(|m| m.median.bound() == Bound::Client)
            .map(|m| m.subject.name())
            .collect();
        let why = too_busy.or_else(|| {
            (!saturated.is_empty())
                .then(|| format!("wrk saturated in the rounds of {}", saturated.join(", ")))
        });
        match (why, lower(share)) {
            (Some(why), Some(next)) => {
                bench.log(format_args!(
                    "server-bound: {:<48} {why} at {}: lowering to {}",
                    scenario.name,
                    quota.describe(),
                    next.describe()
                ));
                share *= LOWER_BY;
                quota = next;
                for cap in &mut caps {
                    cap.set(quota)?;
                }
                lowered += 1;
            }
            // Clear, or as low as the share goes: the runs say which
            // side was saturated.
            _ => {
                let measured = match measured {
                    Some(m) => m,
                    None => {
                        steps::in_turns_with(bench, &subjects, scenario, &label, |i| {
                            let (subject, server) = &servers[i];
                            timed_capped(bench, subject, server, scenario, &caps[i])
                        })
                        .0
                    }
                };
                break (measured, busiest);
            }
        }
    };
    for m in &measured {
        let run = &m.median;
        bench.log(format_args!(
            "server-bound: {:<48} {:<6} {:>8.0} req/s  p99 {:>6.0} µs  server {:.2} cores ({:>3.0} % of quota)  wrk {:>3.0}%  {}",
            scenario.name,
            m.subject.name(),
            run.rps,
            run.latency.map_or(0.0, |l| l.p99_us),
            run.capped.map_or(0.0, |c| c.used),
            run.server_busy * 100.0,
            run.client_busy * 100.0,
            run.bound().name(),
        ));
    }
    // The servers stop before their groups go (a group with a process in
    // it cannot be removed).
    drop(servers);
    drop(caps);
    Ok(BoundScenario {
        scenario: scenario.id,
        quota,
        lowered,
        warmup_client_busy,
        measured,
    })
}

/// A warm-up run against every address; the busiest wrk was, per wrk thread.
pub fn warm_up(bench: &Bench, addrs: &[SocketAddr], scenario: &Scenario) -> f64 {
    let threads = bench
        .cores
        .wrk_threads()
        .min(scenario.connections as usize)
        .max(1) as f64;
    addrs
        .iter()
        .map(|&addr| {
            let before = CpuTime::of_children();
            let started = std::time::Instant::now();
            probe::wrk(addr, scenario, &bench.cores, &bench.scripts, WARMUP_SECS);
            let wall = started.elapsed().as_secs_f64();
            CpuTime::of_children().since(before).total() / wall / threads
        })
        .fold(0.0, f64::max)
}

/// One timed run (`steps::timed`) of a capped server, with the quota's
/// figures: the server's busy time becomes its CPU over what the quota
/// allowed, and the run notes how often the quota ran out. The server's
/// core is kept busy meanwhile by a filler at idle priority
/// (`core_filler.rs`).
pub fn timed_capped(
    bench: &Bench,
    subject: &Subject,
    server: &Server,
    scenario: &Scenario,
    cap: &Cap,
) -> Run {
    let filler = CoreFiller::start(subject.cpus[0]);
    let before = cap.throttling();
    let mut run = steps::timed(bench, subject, server, scenario);
    let throttled = cap.throttling().share_since(before);
    let filled = filler.stop();
    let used = run.server_busy * subject.cpus.len() as f64;
    run.server_busy = used / cap.allowed();
    // The filler is this driver's, not other load.
    run.other_load = (run.other_load - filled).max(0.0);
    run.capped = Some(Capped {
        allowed: cap.allowed(),
        used,
        throttled,
        filled,
    });
    run
}

/// The section of the report (empty if the step did not run).
pub fn section(results: &Results) -> String {
    let Some(sb) = &results.server_bound else {
        return String::new();
    };
    let cores = &results.cores;
    let mut p = format!("{HEADING}\n\n");
    let _ = write!(
        p,
        "On two cores wrk saturates its core before a server does, so the runs above measure wrk \
         as much as the servers. Here every single-core scenario runs again with each server held \
         to a share of its core by Linux's CPU controller ({}): pinned to core {} and allowed a \
         quota of CPU time per period, while wrk runs unthrottled on {}. The client is then the \
         faster side and requests/s measures the server: how much it answers per unit of CPU, \
         and, in p50 and p99, how evenly it serves its connections when it cannot keep up. The \
         share starts at a third of a core and is lowered for a scenario (for every server alike) \
         when wrk's core was over {:.0} % busy in a warm-up at it. {ROUNDS} rounds of {RUN_SECS} s \
         per scenario, the servers taking turns; the step took {:.0} s. Run it alone with \
         `make bench-server-bound` (`BENCH_ONLY=server-bound`).\n\n\
         **These figures are simulated by a CPU quota.** A server held to a third of a core is \
         not a server on a core a third as fast: it runs in bursts of its quota, so its batches \
         grow and a request costs it a little less than uncapped, and whatever arrives while it is \
         held waits out the rest of the period, which shows in p99. While a server is held, a thread of \
         this driver at the kernel's idle priority keeps its core busy (`core_filler.rs`), so \
         that each period does not begin on a core that has gone to sleep (which cost a small \
         quota a quarter of its requests here); any server thread preempts it at once, and its \
         CPU is not counted as other load. The comparison between \
         servers is fair (the same quota, the same client); the absolute figures belong to this \
         quota on this machine.\n\n\
         Columns: **CPU** is the cores' worth the server used (its CPU time over the run's wall \
         time), **of quota** that over what the quota allowed, **held** the share of the quota's \
         periods in which the server used up its quota and waited for the next, **wrk busy** \
         wrk's CPU over its core. **Bound by**: *server* where the server was at its quota (at \
         least {:.0} %) and wrk was not saturated; *wrk* where wrk's core was {:.0} % busy or \
         more: **not a server-bound figure**, whatever the server did; *neither* otherwise. \
         **Spread** is (highest − lowest) / median requests/s over the rounds kept. **Server + \
         wrk** is the CPU per request of each side, in µs: for large files on loopback the \
         kernel charges the copying of the bytes to whichever side's call set it going (Static \
         files, above), so a server that leaves more of it to wrk answers more under the same \
         quota, and the sum is the figure that compares servers there. The ratios are \
         requests/s over the floor's, the tokio version's and nginx's in the same scenario.\n\n",
        sb.controller,
        cores.server,
        if cores.client.len() == 1 {
            format!("core {}", cores.client[0])
        } else {
            format!("cores {}", crate::plan::list(&cores.client))
        },
        CLIENT_HEADROOM * 100.0,
        sb.seconds,
        SATURATED * 100.0,
        SATURATED * 100.0,
    );
    p.push_str(&sb.noise().paragraph());
    p.push_str(&findings(sb));
    p.push_str(
        "| scenario | quota | server | requests/s | spread | p50 | p99 | CPU | of quota | held | wrk busy | bound by | server + wrk | ÷ floor | ÷ tokio | ÷ nginx |\n\
         |---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|\n",
    );
    for s in &sb.scenarios {
        for (k, m) in s.measured.iter().enumerate() {
            let run = &m.median;
            let capped = run.capped.unwrap_or_default();
            let (p50, p99) = run
                .latency
                .map_or(("n/a".to_string(), "n/a".to_string()), |l| {
                    (us(l.p50_us), us(l.p99_us))
                });
            let versus = |other: SubjectId| {
                if other == m.subject {
                    return "–".to_string();
                }
                sb.run(s.scenario, other)
                    .filter(|o| o.rps > 0.0)
                    .map_or("–".to_string(), |o| format!("{:.2}×", run.rps / o.rps))
            };
            let threads = cores
                .wrk_threads()
                .min(s.scenario.scenario().connections as usize)
                .max(1) as f64;
            let per_request = |cores: f64| cores / run.rps.max(1e-9) * 1e6;
            let both = format!(
                "{:.1} + {:.1}",
                per_request(capped.used),
                per_request(run.client_busy * threads)
            );
            let _ = writeln!(
                p,
                "| {} | {} | {} | {:.0}{} | {:.0} % | {p50} | {p99} | {:.2} | {:.0} % | {:.0} % | {:.0} % | {} | {both} | {} | {} | {} |",
                if k == 0 { s.scenario.name() } else { "" },
                if k == 0 {
                    format!("{}/{} µs", s.quota.quota_us, s.quota.period_us)
                } else {
                    String::new()
                },
                m.subject.name(),
                run.rps,
                if run.errors > 0 {
                    format!(" ({} errors)", run.errors)
                } else {
                    String::new()
                },
                m.spread() * 100.0,
                capped.used,
                run.server_busy * 100.0,
                capped.throttled * 100.0,
                run.client_busy * 100.0,
                bound_cell(run, &m.rounds),
                versus(SubjectId::Floor),
                versus(SubjectId::Tokio),
                versus(SubjectId::Nginx),
            );
        }
    }
    p.push('\n');
    p.push_str("Targets under the quota (`benches/compare/targets.rs`):\n\n");
    for v in check_bound(results) {
        let _ = writeln!(p, "{}", v.line());
    }
    p.push('\n');
    p
}

/// "server", or wrk's saturation spelt out, for a median; and how many
/// of its rounds wrk saturated, where some did but the median is not.
pub fn bound_cell(run: &Run, rounds: &[Run]) -> String {
    let mut cell = match run.bound() {
        Bound::Client => "**wrk: not server-bound**".to_string(),
        b => b.name().to_string(),
    };
    let by_wrk = rounds.iter().filter(|r| r.bound() == Bound::Client).count();
    if by_wrk > 0 && run.bound() != Bound::Client {
        let _ = write!(
            cell,
            " (wrk saturated in {by_wrk} of {} rounds)",
            rounds.len()
        );
    }
    if run.disturbed() {
        cell.push_str(", disturbed");
    }
    cell
}

/// A few sentences on what the figures say.
fn findings(sb: &ServerBound) -> String {
    use ScenarioId::{Churn, KeepAlive50};
    use SubjectId::{Floor, Mio, Nginx, Tokio};
    let medians: Vec<&Run> = sb
        .scenarios
        .iter()
        .flat_map(|s| s.measured.iter().map(|m| &m.median))
        .collect();
    let count = |b: Bound| medians.iter().filter(|r| r.bound() == b).count();
    let rounds: Vec<&Run> = sb
        .scenarios
        .iter()
        .flat_map(|s| s.measured.iter().flat_map(|m| &m.rounds))
        .collect();
    let client_rounds = rounds.iter().filter(|r| r.bound() == Bound::Client).count();
    let mut p = format!(
        "**Which side was saturated.** Of the {} medians, {} were bound by the server at its \
         quota, {} by wrk and {} by neither; of the {} rounds, wrk was saturated in {client_rounds}.",
        medians.len(),
        count(Bound::Server),
        count(Bound::Client),
        count(Bound::Neither),
        rounds.len(),
    );
    let lowered: Vec<String> = sb
        .scenarios
        .iter()
        .filter(|s| s.lowered > 0)
        .map(|s| format!("{} ({})", s.scenario.name(), s.quota.describe()))
        .collect();
    if !lowered.is_empty() {
        let _ = write!(
            p,
            " The share was lowered below a third of a core, to keep wrk the faster side, for: {}.",
            lowered.join("; ")
        );
    }
    p.push_str("\n\n");
    let ratio = |sc, other| {
        let (m, o) = (sb.run(sc, Mio)?, sb.run(sc, other)?);
        (o.rps > 0.0).then(|| m.rps / o.rps)
    };
    let mut said = Vec::new();
    for sc in [KeepAlive50, Churn] {
        let each: Vec<String> = [Floor, Tokio, Nginx]
            .iter()
            .filter_map(|&o| Some(format!("{:.2}× {}", ratio(sc, o)?, o.possessive())))
            .collect();
        if let (false, Some(m)) = (each.is_empty(), sb.run(sc, Mio)) {
            said.push(format!(
                "{} {:.0} requests/s, {}",
                label(sc),
                m.rps,
                each.join(", ")
            ));
        }
    }
    if !said.is_empty() {
        let _ = write!(p, "**fivetuple under the quota**: {}.", said.join("; "));
        let range = |other| {
            let v: Vec<f64> = sb
                .scenarios
                .iter()
                .filter_map(|s| ratio(s.scenario, other))
                .collect();
            (!v.is_empty()).then(|| {
                (
                    v.iter().copied().fold(f64::MAX, f64::min),
                    v.iter().copied().fold(f64::MIN, f64::max),
                    v.len(),
                )
            })
        };
        for other in [Tokio, Nginx] {
            if let Some((lo, hi, n)) = range(other) {
                let _ = write!(
                    p,
                    " Over {} requests/s across the {n} scenarios: {lo:.2}× to {hi:.2}×.",
                    other.possessive()
                );
            }
        }
        let spreads: Vec<f64> = sb
            .scenarios
            .iter()
            .flat_map(|s| s.measured.iter().map(Measured::spread))
            .collect();
        let _ = write!(
            p,
            " The rounds of one server in one scenario spread by up to {:.0} % in requests/s \
             (median {:.0} %).",
            spreads.iter().copied().fold(0.0, f64::max) * 100.0,
            median(spreads.iter().copied()) * 100.0
        );
        p.push_str("\n\n");
    }
    p
}

/// "keep-alive 50:", "churn:".
fn label(id: ScenarioId) -> &'static str {
    match id {
        ScenarioId::KeepAlive50 => "at keep-alive 50",
        ScenarioId::Churn => "in churn",
        _ => id.name(),
    }
}

fn us(v: f64) -> String {
    if v >= 10_000.0 {
        format!("{:.1} ms", v / 1000.0)
    } else if v >= 100.0 {
        format!("{v:.0} µs")
    } else {
        format!("{v:.1} µs")
    }
}
