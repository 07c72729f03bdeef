//! The instruments: wrk for the load and its figures, `/proc` for what the
//! server and the cores did meanwhile.
//!
//! - CPU time of a process: `utime` and `stime` in `/proc/PID/stat`. Their
//!   sum follows the scheduler's exact run time; the split between user and
//!   system is sampled at each timer tick, so a user share of a few percent
//!   rests on a few dozen samples per run and is the noisiest figure here.
//! - CPU time of wrk: `getrusage(RUSAGE_CHILDREN)` around the run (wrk is
//!   the only child reaped meanwhile).
//! - Busy time of the cores, whoever used them: `/proc/stat`. What the
//!   server and wrk did not use of it is other load on the machine (other
//!   programs, the kernel's own threads), which disturbs a run.
//! - Descriptors: the entries of `/proc/PID/fd`, counted every few
//!   milliseconds by a thread while the load runs.
//! - Sleeps: the server's voluntary context switches, `/proc/PID/task/*/status`.

use std::fs;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::plan::{Cores, Scenario, FD_SAMPLE_MS};

/// What wrk said about one run.
#[derive(Debug, Clone, Copy, Default)]
pub struct WrkSummary {
    pub requests: u64,
    pub rps: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    /// Socket errors (connect, read, write, timeout) and non-2xx answers.
    pub errors: u64,
}

/// Runs wrk on the client cores against `addr` for `secs` seconds.
pub fn wrk(
    addr: SocketAddr,
    scenario: &Scenario,
    cores: &Cores,
    scripts: &Path,
    secs: u32,
) -> WrkSummary {
    // wrk gives each thread a share of the connections: never more threads than connections.
    let threads = cores
        .wrk_threads()
        .min(scenario.connections as usize)
        .max(1);
    let mut cmd = Command::new("taskset");
    cmd.args(["-c", &cores.client_list(), "wrk", "--latency"])
        .arg(format!("-t{threads}"))
        .arg(format!("-c{}", scenario.connections))
        .arg(format!("-d{secs}s"));
    if let Some(script) = scenario.script {
        cmd.arg("-s").arg(scripts.join(script));
    }
    let out = cmd
        .arg(format!("http://{addr}{}", scenario.content.path()))
        .output()
        .expect("wrk");
    parse_wrk(&String::from_utf8_lossy(&out.stdout))
}

fn parse_wrk(text: &str) -> WrkSummary {
    let mut s = WrkSummary::default();
    for line in text.lines().map(str::trim) {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["50%", v] => s.p50_us = micros(v),
            ["99%", v] => s.p99_us = micros(v),
            ["Requests/sec:", v] => s.rps = v.parse().unwrap_or(0.0),
            [n, "requests", "in", ..] => s.requests = n.parse().unwrap_or(0),
            ["Non-2xx", "or", "3xx", "responses:", n] => s.errors += n.parse().unwrap_or(0),
            ["Socket", "errors:", rest @ ..] => {
                // "connect 0, read 3, write 0, timeout 0"
                s.errors += rest
                    .iter()
                    .filter_map(|w| w.trim_end_matches(',').parse::<u64>().ok())
                    .sum::<u64>();
            }
            _ => {}
        }
    }
    s
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

/// User and system CPU time, in seconds.
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuTime {
    pub user: f64,
    pub system: f64,
}

impl CpuTime {
    pub fn total(self) -> f64 {
        self.user + self.system
    }

    pub fn since(self, before: CpuTime) -> CpuTime {
        CpuTime {
            user: self.user - before.user,
            system: self.system - before.system,
        }
    }

    /// A process's CPU time so far, all its threads together.
    pub fn of(pid: u32) -> CpuTime {
        let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // The command name (field 2) may hold spaces: count fields after its ')'.
        let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
        let field = |i: usize| {
            rest.split_whitespace()
                .nth(i)
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        let tick = clock_ticks_per_second();
        CpuTime {
            user: field(11) / tick,
            system: field(12) / tick,
        }
    }

    /// What this process's reaped children have used so far.
    pub fn of_children() -> CpuTime {
        // SAFETY: getrusage fills the struct we pass.
        let usage = unsafe {
            let mut usage: libc::rusage = std::mem::zeroed();
            libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage);
            usage
        };
        let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
        CpuTime {
            user: secs(usage.ru_utime),
            system: secs(usage.ru_stime),
        }
    }
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

/// Busy and total time of some cores so far, in ticks, from `/proc/stat`.
#[derive(Debug, Clone, Default)]
pub struct CoreTimes {
    /// (busy, total) per core, in the order asked for.
    ticks: Vec<(u64, u64)>,
}

impl CoreTimes {
    pub fn of(cpus: &[usize]) -> CoreTimes {
        let stat = fs::read_to_string("/proc/stat").unwrap_or_default();
        let ticks = cpus
            .iter()
            .map(|cpu| {
                let name = format!("cpu{cpu}");
                let Some(line) = stat
                    .lines()
                    .find(|l| l.split_whitespace().next() == Some(name.as_str()))
                else {
                    return (0, 0);
                };
                // user nice system idle iowait irq softirq steal ...
                let v: Vec<u64> = line
                    .split_whitespace()
                    .skip(1)
                    .map(|n| n.parse().unwrap_or(0))
                    .collect();
                let total: u64 = v.iter().take(8).sum();
                let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
                (total - idle, total)
            })
            .collect();
        CoreTimes { ticks }
    }

    /// How many of the cores were busy, on average, since `before`: 1.5
    /// means one and a half cores' worth of work, whoever did it.
    pub fn busy_since(&self, before: &CoreTimes) -> f64 {
        self.ticks
            .iter()
            .zip(&before.ticks)
            .map(|(&(busy, total), &(busy0, total0))| {
                let total = total.saturating_sub(total0);
                if total == 0 {
                    0.0
                } else {
                    busy.saturating_sub(busy0) as f64 / total as f64
                }
            })
            .sum()
    }
}

/// How many times a process's threads have gone to sleep of their own
/// accord so far: for an event loop, an `epoll_wait` that found nothing
/// ready and blocked. Each sleep and wake-up costs the kernel time that a
/// busier server does not spend.
pub fn sleeps(pid: u32) -> u64 {
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .flatten()
        .filter_map(|task| fs::read_to_string(task.path().join("status")).ok())
        .filter_map(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
                .and_then(|v| v.trim().parse::<u64>().ok())
        })
        .sum()
}

/// Resident memory of a process, in bytes.
pub fn rss_bytes(pid: u32) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap_or(0)
        * 1024
}

/// Open descriptors of a process.
pub fn descriptors(pid: u32) -> usize {
    fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// Counts a process's descriptors every [`FD_SAMPLE_MS`] until stopped,
/// and keeps the highest count.
pub struct FdSampler {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<usize>,
}

impl FdSampler {
    pub fn start(pid: u32) -> FdSampler {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut peak = descriptors(pid);
            while !flag.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(FD_SAMPLE_MS));
                peak = peak.max(descriptors(pid));
            }
            peak
        });
        FdSampler { stop, thread }
    }

    /// Stops sampling; the peak count.
    pub fn peak(self) -> usize {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrk_output_is_read() {
        let text = "Running 3s test @ http://127.0.0.1:1/_/hello\n  Latency Distribution\n     50%  130.00us\n     99%    1.50ms\n  300000 requests in 3.00s, 40MB read\n  Socket errors: connect 0, read 3, write 1, timeout 0\nRequests/sec: 100000.50\n";
        let s = parse_wrk(text);
        assert_eq!(s.requests, 300_000);
        assert_eq!(s.p50_us, 130.0);
        assert_eq!(s.p99_us, 1500.0);
        assert_eq!(s.errors, 4);
        assert_eq!(s.rps, 100000.5);
    }
}
