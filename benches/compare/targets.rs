//! The targets fivetuple's reactor is held to, as a table.
//!
//! Each row names a figure of the mio reactor, the scenario it is taken
//! in, what it is compared with (another subject's same figure, or nothing
//! for an absolute bound) and the bound. The report checks every row
//! against the run's own figures; nothing here asserts or fails a build.

use crate::plan::{ScenarioId, SubjectId, HELD};
use crate::results::{ratio, Results};
use Bound::{AtLeast, AtMost};
use Figure::{Cpu, Instructions, Throughput, UserCpu};
use ScenarioId::{Churn, File1m, File4k, File64k, KeepAlive1000, KeepAlive50, Pipelined16};
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
        }
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
    against(Instructions, KeepAlive50, Floor, AtMost(1.3)),
    against(Cpu, Pipelined16, Floor, AtMost(1.05)),
    against(UserCpu, Pipelined16, Floor, AtMost(1.3)),
    against(Instructions, Pipelined16, Floor, AtMost(1.3)),
    // Static files at or above nginx with `sendfile on`: no more CPU per
    // request, and at least its requests per second, for each size.
    against(Cpu, File4k, Nginx, AtMost(1.0)),
    against(Throughput, File4k, Nginx, AtLeast(1.0)),
    against(Cpu, File64k, Nginx, AtMost(1.0)),
    against(Throughput, File64k, Nginx, AtLeast(1.0)),
    against(Cpu, File1m, Nginx, AtMost(1.0)),
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

/// What the run says about one target.
#[derive(Debug, Clone)]
pub struct Verdict {
    pub target: Target,
    /// The figure (a ratio when the target compares), if measured.
    pub value: Option<f64>,
    pub met: Option<bool>,
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
            _ => ("not measured", String::new()),
        };
        format!("- {scenario}{figure} {limit}: **{verdict}**{value}")
    }
}

/// Every target checked against `results`.
pub fn check(results: &Results) -> Vec<Verdict> {
    TARGETS
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
            Verdict { target, value, met }
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
