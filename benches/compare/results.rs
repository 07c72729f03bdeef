//! What a benchmark run found, as typed values: every figure is looked up
//! by (scenario, subject), never by a string key, and the JSON written to
//! `target/bench/results.json` is these types serialised.

use serde::Serialize;

use crate::plan::{
    Cores, Machine, ScenarioId, Skipped, SubjectId, DISTURBED, ROUNDS, RUN_SECS, SATURATED,
};

/// One timed wrk run against one server.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Run {
    pub requests: u64,
    pub rps: f64,
    /// Latency percentiles in microseconds; `None` where wrk times batches.
    pub latency: Option<Latency>,
    /// The server's user CPU per request, in microseconds.
    pub user_us: f64,
    /// The server's system (kernel) CPU per request, in microseconds.
    pub sys_us: f64,
    /// The server's CPU time over the run's wall time, per core it may use.
    pub server_busy: f64,
    /// wrk's CPU time over the run's wall time, per wrk thread.
    pub client_busy: f64,
    /// Cores' worth of CPU that neither the server nor wrk used while the
    /// run lasted: other programs and the kernel's own threads.
    pub other_load: f64,
    /// Times the server went to sleep waiting for work, per request.
    pub sleeps_per_request: f64,
    /// The most descriptors the server held at once during the run.
    pub fd_peak: usize,
    /// wrk's socket errors and non-2xx answers.
    pub errors: u64,
    /// Where the server ran under a CPU quota (the server-bound steps);
    /// there `server_busy` is its CPU time over what the quota allowed.
    pub capped: Option<Capped>,
}

/// A run under a CPU quota (`cpu_quota.rs`).
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Capped {
    /// Cores' worth of CPU the quota allowed the server.
    pub allowed: f64,
    /// Cores' worth the server used: its CPU time over the run's wall time.
    pub used: f64,
    /// The share of the quota's periods in which the server used all of
    /// its quota and was held until the next.
    pub throttled: f64,
    /// Cores' worth the idle-priority filler used on the server's core
    /// (`core_filler.rs`): what the server left of the core.
    pub filled: f64,
}

#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Latency {
    pub p50_us: f64,
    pub p99_us: f64,
}

impl Run {
    /// Other load took enough of the machine to change the figures.
    pub fn disturbed(&self) -> bool {
        self.other_load > DISTURBED
    }

    pub fn cpu_us(&self) -> f64 {
        self.user_us + self.sys_us
    }

    /// Which side ran out of CPU first. Under a CPU quota the client is
    /// asked first: a run in which wrk's cores were saturated is not a
    /// server-bound figure, however busy the server was.
    pub fn bound(&self) -> Bound {
        if self.capped.is_some() {
            return if self.client_busy >= SATURATED {
                Bound::Client
            } else if self.server_busy >= SATURATED {
                Bound::Server
            } else {
                Bound::Neither
            };
        }
        if self.server_busy >= SATURATED {
            Bound::Server
        } else if self.client_busy >= SATURATED {
            Bound::Client
        } else {
            Bound::Neither
        }
    }
}

/// The side that limited a run's throughput.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Bound {
    /// The server's cores were (nearly) saturated.
    Server,
    /// wrk's cores were, and the server had time to spare.
    Client,
    /// Neither side was saturated: latency, or other load on the machine.
    Neither,
}

impl Bound {
    pub fn name(self) -> &'static str {
        match self {
            Bound::Server => "server",
            Bound::Client => "wrk",
            Bound::Neither => "neither",
        }
    }
}

/// Every round of one subject in one scenario, and their medians.
#[derive(Debug, Clone, Serialize)]
pub struct Measured {
    pub scenario: ScenarioId,
    pub subject: SubjectId,
    /// Each figure's median over the undisturbed rounds (over all of them
    /// if every one was disturbed), taken figure by figure.
    pub median: Run,
    pub rounds: Vec<Run>,
    /// Runs thrown away because other load disturbed them, and run again.
    pub repeated: usize,
}

impl Measured {
    pub fn new(
        scenario: ScenarioId,
        subject: SubjectId,
        rounds: Vec<Run>,
        repeated: usize,
    ) -> Measured {
        let calm: Vec<Run> = rounds.iter().filter(|r| !r.disturbed()).copied().collect();
        let used = if calm.is_empty() { &rounds } else { &calm };
        let m = |f: fn(&Run) -> f64| median(used.iter().map(f));
        let latency = used.iter().all(|r| r.latency.is_some()).then(|| Latency {
            p50_us: m(|r| r.latency.map_or(0.0, |l| l.p50_us)),
            p99_us: m(|r| r.latency.map_or(0.0, |l| l.p99_us)),
        });
        let capped = used.iter().all(|r| r.capped.is_some()).then(|| Capped {
            allowed: m(|r| r.capped.map_or(0.0, |c| c.allowed)),
            used: m(|r| r.capped.map_or(0.0, |c| c.used)),
            throttled: m(|r| r.capped.map_or(0.0, |c| c.throttled)),
            filled: m(|r| r.capped.map_or(0.0, |c| c.filled)),
        });
        let median = Run {
            requests: m(|r| r.requests as f64) as u64,
            rps: m(|r| r.rps),
            latency,
            user_us: m(|r| r.user_us),
            sys_us: m(|r| r.sys_us),
            server_busy: m(|r| r.server_busy),
            client_busy: m(|r| r.client_busy),
            other_load: m(|r| r.other_load),
            sleeps_per_request: m(|r| r.sleeps_per_request),
            fd_peak: used.iter().map(|r| r.fd_peak).max().unwrap_or(0),
            errors: used.iter().map(|r| r.errors).sum(),
            capped,
        };
        Measured {
            scenario,
            subject,
            median,
            rounds,
            repeated,
        }
    }

    /// How far the requests/s of the rounds the median was taken over
    /// spread: (highest − lowest) / median.
    pub fn spread(&self) -> f64 {
        let calm: Vec<&Run> = self.rounds.iter().filter(|r| !r.disturbed()).collect();
        let used = if calm.is_empty() {
            self.rounds.iter().collect()
        } else {
            calm
        };
        let rps = used.iter().map(|r| r.rps);
        let hi = rps.clone().fold(f64::MIN, f64::max);
        let lo = rps.fold(f64::MAX, f64::min);
        if self.median.rps > 0.0 && hi >= lo {
            (hi - lo) / self.median.rps
        } else {
            0.0
        }
    }
}

/// System calls per request for one subject in one scenario (`strace -c`).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Syscalls {
    pub scenario: ScenarioId,
    pub subject: SubjectId,
    pub per_request: f64,
}

/// User-space instructions per request for one subject in one scenario
/// (callgrind), with where fivetuple's go.
#[derive(Debug, Clone, Serialize)]
pub struct Instructions {
    pub scenario: ScenarioId,
    pub subject: SubjectId,
    pub per_request: f64,
    /// Instructions per request by part of the code, largest first.
    pub parts: Vec<(String, f64)>,
}

/// Idle connections held by one subject, and what they cost it.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Held {
    pub subject: SubjectId,
    pub connections: usize,
    pub bytes_per_connection: f64,
    pub established_per_second: f64,
}

/// Everything one `make bench` run found.
#[derive(Debug, Clone, Serialize)]
pub struct Results {
    pub machine: Machine,
    pub cores: Cores,
    pub run_seconds: u32,
    pub rounds: usize,
    pub subjects: Vec<SubjectId>,
    pub throughput: Vec<Measured>,
    pub syscalls: Vec<Syscalls>,
    pub instructions: Vec<Instructions>,
    pub memory: Vec<Held>,
    /// The scaling step's figures (`scaling.rs`), if it ran.
    pub scaling: Option<crate::scaling::Scaling>,
    /// The server-bound step's figures (`server_bound.rs`), if it ran.
    pub server_bound: Option<crate::server_bound::ServerBound>,
    /// The workers under a CPU quota (`server_bound_workers.rs`), if they ran.
    pub workers_bound: Option<crate::server_bound_workers::WorkersBound>,
    pub skipped: Vec<Skipped>,
    /// Seconds spent waiting for other load to pass before running a
    /// disturbed run again.
    pub waited_seconds: f64,
    pub seconds: f64,
}

impl Results {
    pub fn new(machine: Machine, cores: Cores, subjects: Vec<SubjectId>) -> Results {
        Results {
            machine,
            cores,
            run_seconds: RUN_SECS,
            rounds: ROUNDS,
            subjects,
            throughput: Vec::new(),
            syscalls: Vec::new(),
            instructions: Vec::new(),
            memory: Vec::new(),
            scaling: None,
            server_bound: None,
            workers_bound: None,
            skipped: Vec::new(),
            waited_seconds: 0.0,
            seconds: 0.0,
        }
    }

    pub fn measured(&self, scenario: ScenarioId, subject: SubjectId) -> Option<&Measured> {
        self.throughput
            .iter()
            .find(|m| m.scenario == scenario && m.subject == subject)
    }

    /// The median run of `subject` in `scenario`.
    pub fn run(&self, scenario: ScenarioId, subject: SubjectId) -> Option<&Run> {
        self.measured(scenario, subject).map(|m| &m.median)
    }

    pub fn syscalls(&self, scenario: ScenarioId, subject: SubjectId) -> Option<f64> {
        self.syscalls
            .iter()
            .find(|s| s.scenario == scenario && s.subject == subject)
            .map(|s| s.per_request)
    }

    pub fn instructions(&self, scenario: ScenarioId, subject: SubjectId) -> Option<&Instructions> {
        self.instructions
            .iter()
            .find(|s| s.scenario == scenario && s.subject == subject)
    }

    pub fn held(&self, subject: SubjectId) -> Option<&Held> {
        self.memory.iter().find(|h| h.subject == subject)
    }
}

/// The median of some figures (the upper one of an even count); 0 if none.
pub fn median(values: impl Iterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = values.collect();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// `a / b`, or `None` when either is missing or `b` is zero.
pub fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    }
}
