//! The targets fivetuple's reactor is held to, as a table.
//!
//! Each row names a figure of the mio reactor, the scenario it is taken
//! in, what it is compared with (another subject's same figure, or nothing
//! for an absolute bound) and the bound. The report checks every row
//! against the run's own figures; nothing here asserts or fails a build.
//!
//! Three tables: [`TARGETS`] for the uncapped steps, [`BOUND_TARGETS`]
//! for the servers under a CPU quota (`server_bound.rs`), and the worker
//! counts' speed-ups, on separate cores ([`SCALING_TARGETS`]) and under a
//! quota ([`QUOTA_SCALING_TARGETS`]). A figure under a quota counts only
//! where wrk was not saturated: otherwise the verdict says so instead.

use crate::plan::{ScenarioId, SubjectId, HELD};
use crate::results::{ratio, Bound as Side, Results, Run};
use Bound::{AtLeast, AtMost};
use Figure::{BoundP99, BoundThroughput, Cpu, CpuWithClient, Instructions, Throughput, UserCpu};
use ScenarioId::{
    Churn, File1m, File4k, File64k, KeepAlive1000, KeepAlive256, KeepAlive50, Pipelined16,
};
use SubjectId::{Floor, Nginx, Tokio};

/// A figure of one subject.
#[derive(Debug, Clone, Copy)]
pub enum Figure {
    /// Server CPU (user + system) per request, from `/proc`.
    Cpu,
    /// Server user CPU per request, from `/proc`.
    UserCpu,
    /// User-space instructions per request, from callgrind.
    Instructions,
    /// Requests per second, from wrk.
    Throughput,
    /// System calls per request, from strace.
    Syscalls,
    /// RSS per held idle connection, from the memory step.
    IdleBytes,
    /// Server CPU plus wrk's CPU per request: on loopback the kernel's work
    /// of carrying a large body lands on either side from run to run
    /// (`docs/benchmarks.md`, Static files), and the sum is steady.
    CpuWithClient,
    /// Requests per second with each server under the same CPU quota.
    BoundThroughput,
    /// p99 latency with each server under the same CPU quota.
    BoundP99,
}

impl Figure {
    fn describe(self) -> &'static str {
        match self {
            Figure::Cpu => "CPU per request",
            Figure::UserCpu => "user CPU per request",
            Figure::Instructions => "user instructions per request",
            Figure::Throughput => "requests per second",
            Figure::Syscalls => "system calls per request",
            Figure::IdleBytes => "bytes of RSS per held idle connection",
            Figure::CpuWithClient => "server + wrk CPU per request",
            Figure::BoundThroughput => "requests per second under a CPU quota",
            Figure::BoundP99 => "p99 latency under a CPU quota",
        }
    }

    /// The figure for `subject`, if this run measured it.
    fn of(
        self,
        results: &Results,
        scenario: Option<ScenarioId>,
        subject: SubjectId,
    ) -> Option<f64> {
        let run = || scenario.and_then(|s| results.run(s, subject));
        let capped = || {
            let sb = results.server_bound.as_ref()?;
            scenario
                .and_then(|s| sb.run(s, subject))
                .filter(|r| r.bound() != Side::Client)
        };
        match self {
            Figure::Cpu => run().map(|r| r.cpu_us()),
            Figure::UserCpu => run().map(|r| r.user_us),
            Figure::Throughput => run().map(|r| r.rps),
            Figure::Instructions => {
                scenario.and_then(|s| results.instructions(s, subject).map(|i| i.per_request))
            }
            Figure::Syscalls => scenario.and_then(|s| results.syscalls(s, subject)),
            Figure::IdleBytes => results
                .held(subject)
                .filter(|h| h.connections >= HELD)
                .map(|h| h.bytes_per_connection),
            Figure::CpuWithClient => {
                let threads = results.cores.wrk_threads().max(1) as f64;
                run().map(|r| r.cpu_us() + r.client_busy * threads / r.rps.max(1e-9) * 1e6)
            }
            Figure::BoundThroughput => capped().map(|r| r.rps),
            Figure::BoundP99 => capped().and_then(|r| r.latency).map(|l| l.p99_us),
        }
    }

    /// Why a figure under a quota is missing though its runs are there:
    /// wrk was saturated, in this subject's median or `versus`'s.
    fn client_bound(
        self,
        results: &Results,
        scenario: Option<ScenarioId>,
        subjects: &[SubjectId],
    ) -> bool {
        if !matches!(self, Figure::BoundThroughput | Figure::BoundP99) {
            return false;
        }
        let Some(sb) = &results.server_bound else {
            return false;
        };
        subjects.iter().any(|&s| {
            scenario
                .and_then(|sc| sb.run(sc, s))
                .is_some_and(|r: &Run| r.bound() == Side::Client)
        })
    }
}

#[derive(Debug, Clone, Copy)]
pub enum Bound {
    AtMost(f64),
    AtLeast(f64),
}

/// One target: `figure` of the mio reactor in `scenario`, divided by the
/// same figure of `versus` when there is one, within `bound`.
#[derive(Debug, Clone, Copy)]
pub struct Target {
    pub figure: Figure,
    pub scenario: Option<ScenarioId>,
    pub versus: Option<SubjectId>,
    pub bound: Bound,
}

const fn against(figure: Figure, scenario: ScenarioId, versus: SubjectId, bound: Bound) -> Target {
    Target {
        figure,
        scenario: Some(scenario),
        versus: Some(versus),
        bound,
    }
}

/// The targets, from the project's performance issue.
pub const TARGETS: &[Target] = &[
    // The reactor against the tokio version of the same server (one thread):
    // no more CPU, half the user CPU, and the same throughput within noise.
    against(Cpu, KeepAlive1000, Tokio, AtMost(1.0)),
    against(UserCpu, KeepAlive1000, Tokio, AtMost(0.5)),
    against(Throughput, KeepAlive1000, Tokio, AtLeast(0.95)),
    against(Cpu, KeepAlive50, Tokio, AtMost(1.0)),
    against(UserCpu, KeepAlive50, Tokio, AtMost(0.5)),
    against(Throughput, KeepAlive50, Tokio, AtLeast(0.95)),
    against(Cpu, Churn, Tokio, AtMost(1.0)),
    against(UserCpu, Churn, Tokio, AtMost(0.5)),
    against(Throughput, Churn, Tokio, AtLeast(0.95)),
    against(Cpu, Pipelined16, Tokio, AtMost(1.0)),
    against(UserCpu, Pipelined16, Tokio, AtMost(0.5)),
    against(Throughput, Pipelined16, Tokio, AtLeast(0.95)),
    // The reactor toward the floor: what routing, limits and bookkeeping
    // may cost on top of reading, parsing and writing.
    against(Cpu, KeepAlive50, Floor, AtMost(1.05)),
    against(UserCpu, KeepAlive50, Floor, AtMost(1.3)),
    against(Instructions, KeepAlive50, Floor, AtMost(2.0)),
    against(Cpu, Pipelined16, Floor, AtMost(1.05)),
    against(UserCpu, Pipelined16, Floor, AtMost(1.3)),
    against(Instructions, Pipelined16, Floor, AtMost(2.0)),
    // Static files at or above nginx with `sendfile on`: no more CPU per
    // request, and at least its requests per second, for each size.
    against(Cpu, File4k, Nginx, AtMost(1.0)),
    against(Throughput, File4k, Nginx, AtLeast(1.0)),
    against(Cpu, File64k, Nginx, AtMost(1.0)),
    against(Throughput, File64k, Nginx, AtLeast(1.0)),
    // At 1 MiB the server's own CPU per request moves with the loopback
    // accounting; server and wrk together are the comparable figure.
    against(CpuWithClient, File1m, Nginx, AtMost(1.0)),
    against(Throughput, File1m, Nginx, AtLeast(1.0)),
    // System calls: one read and one write per request, and the epoll_wait
    // shared by a batch; pipelining shares all three among 16 requests.
    Target {
        figure: Figure::Syscalls,
        scenario: Some(KeepAlive50),
        versus: None,
        bound: AtMost(2.05),
    },
    Target {
        figure: Figure::Syscalls,
        scenario: Some(Pipelined16),
        versus: None,
        bound: AtMost(0.15),
    },
    // A churned connection costs the system calls the floor's does (accept,
    // read, write, close, and the epoll_ctl of registering): no extra ones
    // to close it or to learn its address.
    against(Figure::Syscalls, Churn, Floor, AtMost(1.05)),
    // An idle connection costs a few hundred bytes, not a buffer.
    Target {
        figure: Figure::IdleBytes,
        scenario: None,
        versus: None,
        bound: AtMost(512.0),
    },
];

/// The targets under a CPU quota (`server_bound.rs`), where the server,
/// not wrk, is the bottleneck: at least the floor's requests/s where the
/// floor runs the same load (keep-alive 50, churn), at least 1.1× the tokio
/// version's and nginx's in every scenario, and a p99 no worse than the
/// tokio version's wherever wrk times single requests.
pub const BOUND_TARGETS: &[Target] = &[
    against(BoundThroughput, KeepAlive50, Floor, AtLeast(1.0)),
    against(BoundThroughput, Churn, Floor, AtLeast(1.0)),
    against(BoundThroughput, KeepAlive50, Tokio, AtLeast(1.1)),
    against(BoundThroughput, KeepAlive50, Nginx, AtLeast(1.1)),
    against(BoundP99, KeepAlive50, Tokio, AtMost(1.0)),
    against(BoundThroughput, KeepAlive256, Tokio, AtLeast(1.1)),
    against(BoundThroughput, KeepAlive256, Nginx, AtLeast(1.1)),
    against(BoundP99, KeepAlive256, Tokio, AtMost(1.0)),
    against(BoundThroughput, KeepAlive1000, Tokio, AtLeast(1.1)),
    against(BoundThroughput, KeepAlive1000, Nginx, AtLeast(1.1)),
    against(BoundP99, KeepAlive1000, Tokio, AtMost(1.0)),
    against(BoundThroughput, Pipelined16, Tokio, AtLeast(1.1)),
    against(BoundThroughput, Pipelined16, Nginx, AtLeast(1.1)),
    against(BoundThroughput, Churn, Tokio, AtLeast(1.1)),
    against(BoundThroughput, Churn, Nginx, AtLeast(1.1)),
    against(BoundP99, Churn, Tokio, AtMost(1.0)),
    against(BoundThroughput, File4k, Tokio, AtLeast(1.1)),
    against(BoundThroughput, File4k, Nginx, AtLeast(1.1)),
    against(BoundP99, File4k, Tokio, AtMost(1.0)),
    against(BoundThroughput, File64k, Tokio, AtLeast(1.1)),
    against(BoundThroughput, File64k, Nginx, AtLeast(1.1)),
    against(BoundP99, File64k, Tokio, AtMost(1.0)),
    against(BoundThroughput, File1m, Tokio, AtLeast(1.1)),
    against(BoundThroughput, File1m, Nginx, AtLeast(1.1)),
    against(BoundP99, File1m, Tokio, AtMost(1.0)),
];

/// What the run says about one target.
#[derive(Debug, Clone)]
pub struct Verdict {
    pub target: Target,
    /// The figure (a ratio when the target compares), if measured.
    pub value: Option<f64>,
    pub met: Option<bool>,
    /// Why there is no verdict though the runs are there.
    pub why: Option<&'static str>,
}

impl Verdict {
    /// One line of the report's list of targets.
    pub fn line(&self) -> String {
        let t = &self.target;
        let scenario = t
            .scenario
            .map_or(String::new(), |s| format!("{}: ", s.name()));
        let (limit, unit) = match (t.versus, t.bound) {
            (Some(v), AtMost(x)) => (format!("at most {x}× {}", v.possessive()), "×"),
            (Some(v), AtLeast(x)) => (format!("at least {x}× {}", v.possessive()), "×"),
            (None, AtMost(x)) => (format!("at most {x}"), ""),
            (None, AtLeast(x)) => (format!("at least {x}"), ""),
        };
        let figure = t.figure.describe();
        let (verdict, value) = match (self.met, self.value) {
            (Some(met), Some(v)) => {
                let digits = if v >= 100.0 {
                    0
                } else if unit.is_empty() {
                    3
                } else {
                    2
                };
                (
                    if met { "met" } else { "missed" },
                    format!(" ({v:.digits$}{unit})"),
                )
            }
            _ => match self.why {
                Some(why) => ("no verdict", format!(" ({why})")),
                None => ("not measured", String::new()),
            },
        };
        format!("- {scenario}{figure} {limit}: **{verdict}**{value}")
    }
}

/// Every target of [`TARGETS`] checked against `results`.
pub fn check(results: &Results) -> Vec<Verdict> {
    check_table(TARGETS, results)
}

/// Every target of [`BOUND_TARGETS`] checked against `results`.
pub fn check_bound(results: &Results) -> Vec<Verdict> {
    check_table(BOUND_TARGETS, results)
}

fn check_table(table: &[Target], results: &Results) -> Vec<Verdict> {
    table
        .iter()
        .map(|&target| {
            let mine = target.figure.of(results, target.scenario, SubjectId::Mio);
            let value = match target.versus {
                Some(other) => ratio(mine, target.figure.of(results, target.scenario, other)),
                None => mine,
            };
            let met = value.map(|v| match target.bound {
                AtMost(x) => v <= x,
                AtLeast(x) => v >= x,
            });
            let subjects: Vec<SubjectId> = std::iter::once(SubjectId::Mio)
                .chain(target.versus)
                .collect();
            let why = (value.is_none()
                && target
                    .figure
                    .client_bound(results, target.scenario, &subjects))
            .then_some("wrk was saturated: not a server-bound figure");
            Verdict {
                target,
                value,
                met,
                why,
            }
        })
        .collect()
}

/// A figure of the scaling step (`scaling.rs`), for fivetuple with some
/// number of workers.
#[derive(Debug, Clone, Copy)]
pub enum ScalingFigure {
    /// Requests per second over fivetuple's own with one worker.
    SpeedUp,
    /// Requests per second over tokio-mt's with as many threads, on the
    /// same cores.
    VersusTokioMt,
}

/// One target of the scaling step: `figure` with `workers` workers, within `bound`.
#[derive(Debug, Clone, Copy)]
pub struct ScalingTarget {
    pub figure: ScalingFigure,
    pub workers: usize,
    pub bound: Bound,
}

const fn scaling(figure: ScalingFigure, workers: usize, bound: Bound) -> ScalingTarget {
    ScalingTarget {
        figure,
        workers,
        bound,
    }
}

/// The scaling targets, from the project's scaling issue: eight workers
/// answer at least seven times what one does, and fivetuple is ahead of
/// tokio's multi-thread runtime at every count.
pub const SCALING_TARGETS: &[ScalingTarget] = &[
    scaling(ScalingFigure::SpeedUp, 8, AtLeast(7.0)),
    scaling(ScalingFigure::VersusTokioMt, 1, AtLeast(1.0)),
    scaling(ScalingFigure::VersusTokioMt, 2, AtLeast(1.0)),
    scaling(ScalingFigure::VersusTokioMt, 4, AtLeast(1.0)),
    scaling(ScalingFigure::VersusTokioMt, 8, AtLeast(1.0)),
];

/// What the run says about one scaling target.
#[derive(Debug, Clone)]
pub struct ScalingVerdict {
    pub target: ScalingTarget,
    pub value: Option<f64>,
    pub met: Option<bool>,
}

impl ScalingVerdict {
    /// One line of the scaling section's list of targets.
    pub fn line(&self) -> String {
        let t = &self.target;
        let s = if t.workers == 1 { "" } else { "s" };
        let what = match t.figure {
            ScalingFigure::SpeedUp => "requests per second over one worker's",
            ScalingFigure::VersusTokioMt => {
                "requests per second over tokio-mt's with as many threads"
            }
        };
        let limit = match t.bound {
            AtMost(x) => format!("at most {x}×"),
            AtLeast(x) => format!("at least {x}×"),
        };
        let verdict = match (self.met, self.value) {
            (Some(met), Some(v)) => {
                format!("**{}** ({v:.2}×)", if met { "met" } else { "missed" })
            }
            _ => "**not measured**".to_string(),
        };
        format!("- {} worker{s}: {what} {limit}: {verdict}", t.workers)
    }
}

/// Every scaling target checked against `results`.
pub fn check_scaling(results: &Results) -> Vec<ScalingVerdict> {
    SCALING_TARGETS
        .iter()
        .map(|&target| {
            let value = results.scaling.as_ref().and_then(|s| match target.figure {
                ScalingFigure::SpeedUp => s.speed_up(target.workers, SubjectId::Mio),
                ScalingFigure::VersusTokioMt => s.versus_tokio(target.workers),
            });
            let met = value.map(|v| match target.bound {
                AtMost(x) => v <= x,
                AtLeast(x) => v >= x,
            });
            ScalingVerdict { target, value, met }
        })
        .collect()
}

/// One target of the workers under a CPU quota
/// (`server_bound_workers.rs`): fivetuple's requests/s with `workers`
/// workers over its own with one, in `scenario`, within `bound`.
#[derive(Debug, Clone, Copy)]
pub struct QuotaScalingTarget {
    pub scenario: ScenarioId,
    pub workers: usize,
    pub bound: Bound,
}

const fn quota_scaling(scenario: ScenarioId, workers: usize, bound: Bound) -> QuotaScalingTarget {
    QuotaScalingTarget {
        scenario,
        workers,
        bound,
    }
}

/// Each worker adds nearly a worker's requests/s: two answer at least
/// 1.9× one, four at least 3.7×, with keep-alive and with churn.
pub const QUOTA_SCALING_TARGETS: &[QuotaScalingTarget] = &[
    quota_scaling(KeepAlive256, 2, AtLeast(1.9)),
    quota_scaling(KeepAlive256, 4, AtLeast(3.7)),
    quota_scaling(Churn, 2, AtLeast(1.9)),
    quota_scaling(Churn, 4, AtLeast(3.7)),
];

/// What the run says about one target of the workers under a quota.
#[derive(Debug, Clone)]
pub struct QuotaScalingVerdict {
    pub target: QuotaScalingTarget,
    pub value: Option<f64>,
    pub met: Option<bool>,
    pub why: Option<&'static str>,
}

impl QuotaScalingVerdict {
    pub fn line(&self) -> String {
        let t = &self.target;
        let limit = match t.bound {
            AtMost(x) => format!("at most {x}×"),
            AtLeast(x) => format!("at least {x}×"),
        };
        let verdict = match (self.met, self.value, self.why) {
            (Some(met), Some(v), _) => {
                format!("**{}** ({v:.2}×)", if met { "met" } else { "missed" })
            }
            (_, _, Some(why)) => format!("**no verdict** ({why})"),
            _ => "**not measured**".to_string(),
        };
        // The load as the workers' step runs it (its churn keeps more
        // connections open than the single-core scenario's).
        let load = crate::server_bound_workers::LOADS
            .iter()
            .find(|l| l.id == t.scenario)
            .map_or(t.scenario.name(), |l| l.name);
        format!(
            "- {load}: {} workers' requests per second over one worker's {limit}: {verdict}",
            t.workers
        )
    }
}

/// Every target of [`QUOTA_SCALING_TARGETS`] checked against `results`.
pub fn check_quota_scaling(results: &Results) -> Vec<QuotaScalingVerdict> {
    QUOTA_SCALING_TARGETS
        .iter()
        .map(|&target| {
            let wb = results.workers_bound.as_ref();
            let point = |n| wb.and_then(|w| w.point(target.scenario, n, SubjectId::Mio));
            let points = [point(1), point(target.workers)];
            let client = points
                .iter()
                .flatten()
                .any(|p| p.median.bound() == Side::Client);
            let value = match points {
                [Some(one), Some(many)] if !client && one.median.rps > 0.0 => {
                    Some(many.median.rps / one.median.rps)
                }
                _ => None,
            };
            let met = value.map(|v| match target.bound {
                AtMost(x) => v <= x,
                AtLeast(x) => v >= x,
            });
            QuotaScalingVerdict {
                target,
                value,
                met,
                why: client.then_some("wrk was saturated: not a server-bound figure"),
            }
        })
        .collect()
}
