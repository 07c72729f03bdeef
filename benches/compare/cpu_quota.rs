//! Linux's CPU controller, for the server-bound steps: a server, or each
//! of its threads, capped at a share of one core.
//!
//! On a two-core machine wrk saturates its core before a server does, so
//! plain runs measure wrk. Giving the server *less* CPU than the client
//! turns that round: the controller's bandwidth control lets a group of
//! threads run for at most `quota` µs in every `period` µs (1000/3000 is a
//! third of a core), then holds them until the next period. With the
//! server capped on one core and wrk unthrottled on the other, the client
//! is the faster side, and requests/s measures the server.
//!
//! - **cgroup v1**: a hierarchy mounted with the `cpu` controller
//!   (usually `/sys/fs/cgroup/cpu/`); `cpu.cfs_period_us` and
//!   `cpu.cfs_quota_us`; a process moves with `cgroup.procs` (all its
//!   threads), one thread with `tasks`.
//! - **cgroup v2**: `cpu.max` (`QUOTA PERIOD`); a process moves with
//!   `cgroup.procs`; single threads need a threaded subtree
//!   (`cgroup.type` = `threaded` in the children, threads moved with
//!   `cgroup.threads`), whose root keeps the process.
//!
//! A group nested in another is held to both quotas, which the workers
//! step uses: each worker thread in a group of one share, the whole server
//! in their parent with N shares, so that no thread gets more than one
//! simulated core and the server no more than N.
//!
//! **Cleaning up.** Every group of a run lives under one directory,
//! `fivetuple-bench-PID`, which [`Groups`] removes when the step ends
//! (on drop, also when a panic unwinds), and which a thread waiting for
//! SIGINT and SIGTERM (signal-hook) removes before the driver exits: it
//! stops the servers inside (our own children) so that the groups can
//! go. A driver killed outright (SIGKILL) leaves its directory behind; the
//! next run removes the directories of drivers no longer alive, moving any
//! process still in them back to where the driver runs.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, Once};
use std::time::{Duration, Instant};

use serde::Serialize;

/// The directories of one run start with this, followed by the driver's pid.
const PREFIX: &str = "fivetuple-bench-";
/// The period for shares whose quota is at least the kernel's minimum in it.
const BASE_PERIOD_US: u64 = 6_000;
/// The kernel's smallest quota, 1 ms per period.
pub const MIN_QUOTA_US: u64 = 1_000;
/// The longest period this bench uses. A capped thread waits out the rest
/// of its period once its quota is spent, so the period bounds the pauses
/// that show in p99; a 3 s run still spans a hundred periods of this length.
pub const MAX_PERIOD_US: u64 = 30_000;
/// How long removing a group waits for the processes in it to be gone.
const EMPTY_TIMEOUT: Duration = Duration::from_secs(3);

/// Which of the kernel's two interfaces to the controller this machine has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Version {
    V1,
    V2,
}

/// A share of one core: `quota_us` of CPU time in every `period_us`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Quota {
    pub quota_us: u64,
    pub period_us: u64,
}

impl Quota {
    /// The quota for `share` of a core: a period of 6 ms where the quota in
    /// it is at least 1 ms, else 1 ms in a longer period. `None` where the
    /// share needs a period over [`MAX_PERIOD_US`] (or is no share at all).
    pub fn of_share(share: f64) -> Option<Quota> {
        if !(share > 0.0 && share <= 1.0) {
            return None;
        }
        let in_base = (share * BASE_PERIOD_US as f64).round() as u64;
        if in_base >= MIN_QUOTA_US {
            return Some(Quota {
                quota_us: in_base,
                period_us: BASE_PERIOD_US,
            });
        }
        let period_us = (MIN_QUOTA_US as f64 / share).round() as u64;
        (period_us <= MAX_PERIOD_US).then_some(Quota {
            quota_us: MIN_QUOTA_US,
            period_us,
        })
    }

    /// Cores' worth: 1000/3000 is 0.33.
    pub fn share(self) -> f64 {
        self.quota_us as f64 / self.period_us as f64
    }

    /// `n` times as much in the same period (a parent over `n` children).
    pub fn times(self, n: usize) -> Quota {
        Quota {
            quota_us: self.quota_us * n as u64,
            period_us: self.period_us,
        }
    }

    /// `1000/6000 µs (0.17 of a core)`.
    pub fn describe(self) -> String {
        format!(
            "{}/{} µs ({:.2} of a core)",
            self.quota_us,
            self.period_us,
            self.share()
        )
    }
}

/// The controller on this machine, and where this run may create groups.
#[derive(Debug, Clone, Serialize)]
pub struct Controller {
    pub version: Version,
    /// Where the run's directory goes: this process's own group in the v1
    /// `cpu` hierarchy (so that any limit on the driver's group also holds
    /// the servers), or the root of the cgroup2 mount (the one group that
    /// may have processes and children with controllers at once).
    pub base: PathBuf,
}

impl Controller {
    /// The controller, or one line saying why there is none to use.
    pub fn detect() -> Result<Controller, String> {
        let mountinfo = fs::read_to_string("/proc/self/mountinfo")
            .map_err(|e| format!("cannot read /proc/self/mountinfo: {e}"))?;
        let own = fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
        let mounts = parse_mounts(&mountinfo);
        // cgroup2 first: where it has the cpu controller, v1 cannot.
        if let Some(m) = mounts.iter().find(|m| m.fstype == "cgroup2") {
            let controllers =
                fs::read_to_string(m.point.join("cgroup.controllers")).unwrap_or_default();
            if controllers.split_whitespace().any(|c| c == "cpu") {
                return Ok(Controller {
                    version: Version::V2,
                    base: m.point.clone(),
                });
            }
        }
        let v1 = mounts
            .iter()
            .find(|m| m.fstype == "cgroup" && m.options.split(',').any(|o| o == "cpu"));
        match v1 {
            Some(m) => Ok(Controller {
                version: Version::V1,
                base: v1_base(m, &own),
            }),
            None => Err(
                "no CPU controller: no cgroup v1 hierarchy with `cpu` and no cgroup2 \
                         mount with `cpu` in cgroup.controllers"
                    .into(),
            ),
        }
    }

    /// "cgroup v1 at /sys/fs/cgroup/cpu".
    pub fn describe(&self) -> String {
        let v = match self.version {
            Version::V1 => "v1",
            Version::V2 => "v2",
        };
        format!("cgroup {v} at {}", self.base.display())
    }

    /// This run's directory, created; `Err` with one line if it cannot be
    /// (not root, a read-only mount, cpu not delegated).
    pub fn open(&self) -> Result<Groups, String> {
        remove_stale(self);
        let dir = self.base.join(format!("{PREFIX}{}", std::process::id()));
        let made = if dir.exists() {
            Ok(())
        } else {
            fs::create_dir(&dir)
        };
        made.map_err(|e| {
            let hint = if e.kind() == io::ErrorKind::PermissionDenied {
                " (CPU groups need root, or a group delegated to this user)"
            } else {
                ""
            };
            format!("cannot create {}: {e}{hint}", dir.display())
        })?;
        let groups = Groups {
            controller: self.clone(),
            dir: dir.clone(),
            next: 0,
        };
        registry_add(&dir, self);
        if self.version == Version::V2 {
            enable_cpu(&self.base)?;
            enable_cpu(&dir)?;
        }
        watch_signals();
        Ok(groups)
    }
}

/// Writes `+cpu` into a v2 group's `cgroup.subtree_control` unless it is there.
fn enable_cpu(dir: &Path) -> Result<(), String> {
    let control = dir.join("cgroup.subtree_control");
    let now = fs::read_to_string(&control).unwrap_or_default();
    if now.split_whitespace().any(|c| c == "cpu") {
        return Ok(());
    }
    fs::write(&control, "+cpu").map_err(|e| {
        format!(
            "cannot enable the cpu controller in {}: {e}",
            control.display()
        )
    })
}

/// One line of /proc/self/mountinfo, the parts that matter here.
#[derive(Debug, Clone, PartialEq)]
struct Mount {
    /// The directory of the hierarchy that is mounted (`/` for all of it).
    root: String,
    point: PathBuf,
    fstype: String,
    /// The superblock options: the v1 controllers (`rw,cpu`).
    options: String,
}

/// `36 25 0:31 / /sys/fs/cgroup/cpu rw,relatime shared:12 - cgroup cgroup rw,cpu`
fn parse_mounts(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let left: Vec<&str> = left.split_whitespace().collect();
            let right: Vec<&str> = right.split_whitespace().collect();
            Some(Mount {
                root: left.get(3)?.to_string(),
                point: PathBuf::from(left.get(4)?),
                fstype: right.first()?.to_string(),
                options: right.get(2).copied().unwrap_or("").to_string(),
            })
        })
        .collect()
}

/// This process's group in a v1 `cpu` hierarchy: the path that
/// /proc/self/cgroup gives, under the mount point (less the part of the
/// hierarchy above what is mounted, in a container); the mount point if
/// that is not there.
fn v1_base(mount: &Mount, own: &str) -> PathBuf {
    let path = own
        .lines()
        .filter_map(|l| {
            let mut parts = l.splitn(3, ':');
            let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
            controllers
                .split(',')
                .any(|c| c == "cpu")
                .then(|| path.to_string())
        })
        .next()
        .unwrap_or_default();
    let relative = path
        .strip_prefix(mount.root.as_str())
        .unwrap_or(&path)
        .trim_start_matches('/');
    let base = mount.point.join(relative);
    if base.is_dir() {
        base
    } else {
        mount.point.clone()
    }
}

/// This run's groups: every cap is a directory under [`Groups::dir`].
pub struct Groups {
    controller: Controller,
    dir: PathBuf,
    next: usize,
}

impl Groups {
    /// Caps the processes `pids` (all their threads, and threads they start
    /// later) together at `quota`.
    pub fn cap_processes(&mut self, pids: &[u32], quota: Quota) -> io::Result<Cap> {
        let dir = self.new_dir("server")?;
        let cap = Cap {
            version: self.controller.version,
            base: self.controller.base.clone(),
            dirs: vec![dir.clone()],
            allowed: quota.share(),
        };
        set_quota(self.controller.version, &dir, quota)?;
        for &pid in pids {
            fs::write(dir.join("cgroup.procs"), pid.to_string())?;
        }
        Ok(cap)
    }

    /// Caps the threads of process `pid`: each list of `threads` in a group
    /// of its own at `each`, every other thread of the process in one more
    /// group at `each`, and all of them together at `each` times the
    /// number of lists.
    pub fn cap_threads(&mut self, pid: u32, threads: &[Vec<u32>], each: Quota) -> io::Result<Cap> {
        let version = self.controller.version;
        let top = self.new_dir("server")?;
        let mut cap = Cap {
            version,
            base: self.controller.base.clone(),
            dirs: vec![top.clone()],
            allowed: each.times(threads.len()).share(),
        };
        // The parent's quota first: in v1 a child may not have more than it.
        set_quota(version, &top, each.times(threads.len()))?;
        if version == Version::V2 {
            enable_cpu(&top).map_err(io::Error::other)?;
        }
        let mut children = Vec::new();
        for name in (0..threads.len())
            .map(|i| format!("thread-{i}"))
            .chain(["rest".to_string()])
        {
            let child = top.join(&name);
            fs::create_dir(&child)?;
            cap.dirs.push(child.clone());
            if version == Version::V2 {
                fs::write(child.join("cgroup.type"), "threaded")?;
            }
            set_quota(version, &child, each)?;
            children.push(child);
        }
        fs::write(top.join("cgroup.procs"), pid.to_string())?;
        let file = match version {
            Version::V1 => "tasks",
            Version::V2 => "cgroup.threads",
        };
        let mut placed = Vec::new();
        for (child, tids) in children.iter().zip(threads) {
            for &tid in tids {
                fs::write(child.join(file), tid.to_string())?;
                placed.push(tid);
            }
        }
        let rest = children.last().expect("the rest's group");
        for tid in threads_of(pid).into_iter().filter(|t| !placed.contains(t)) {
            // A thread that ended meanwhile cannot move: nothing to cap.
            let _ = fs::write(rest.join(file), tid.to_string());
        }
        Ok(cap)
    }

    fn new_dir(&mut self, what: &str) -> io::Result<PathBuf> {
        self.next += 1;
        let dir = self.dir.join(format!("{what}-{}", self.next));
        fs::create_dir(&dir)?;
        Ok(dir)
    }
}

impl Drop for Groups {
    fn drop(&mut self) {
        remove_tree(&self.dir, &self.controller, Leftover::MoveOut);
        registry_remove(&self.dir);
    }
}

/// Writes `quota` into a group.
fn set_quota(version: Version, dir: &Path, quota: Quota) -> io::Result<()> {
    match version {
        Version::V1 => {
            // Quota before period would be refused where the new quota
            // does not fit the old period's limits; -1 (no limit) first.
            fs::write(dir.join("cpu.cfs_quota_us"), "-1")?;
            fs::write(dir.join("cpu.cfs_period_us"), quota.period_us.to_string())?;
            fs::write(dir.join("cpu.cfs_quota_us"), quota.quota_us.to_string())
        }
        Version::V2 => fs::write(
            dir.join("cpu.max"),
            format!("{} {}", quota.quota_us, quota.period_us),
        ),
    }
}

/// One capped server: its groups, removed on drop (the server must be
/// stopped first; a process still inside is moved back out).
pub struct Cap {
    version: Version,
    base: PathBuf,
    /// Every directory of this cap, parents first.
    dirs: Vec<PathBuf>,

    /// Cores' worth the whole server may use.
    allowed: f64,
}

impl Cap {
    /// Cores' worth the server may use: its quota, or the sum of its threads'.
    pub fn allowed(&self) -> f64 {
        self.allowed
    }

    /// Changes the quota of a cap made by [`Groups::cap_processes`].
    pub fn set(&mut self, quota: Quota) -> io::Result<()> {
        set_quota(self.version, &self.dirs[0], quota)?;
        self.allowed = quota.share();
        Ok(())
    }

    /// Periods so far in which the cap's groups ran, and in how many of
    /// them a group used its whole quota and was held: summed over the
    /// groups (the whole server's, and each thread's).
    pub fn throttling(&self) -> Throttling {
        self.dirs
            .iter()
            .map(|dir| {
                Throttling::parse(&fs::read_to_string(dir.join("cpu.stat")).unwrap_or_default())
            })
            .fold(Throttling::default(), |a, b| Throttling {
                periods: a.periods + b.periods,
                throttled: a.throttled + b.throttled,
            })
    }
}

impl Drop for Cap {
    fn drop(&mut self) {
        let controller = Controller {
            version: self.version,
            base: self.base.clone(),
        };
        if let Some(top) = self.dirs.first() {
            remove_tree(top, &controller, Leftover::MoveOut);
        }
    }
}

/// Counts from a group's `cpu.stat` (the same names in v1 and v2).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Throttling {
    pub periods: u64,
    pub throttled: u64,
}

impl Throttling {
    fn parse(text: &str) -> Throttling {
        let field = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
                .unwrap_or(0)
        };
        Throttling {
            periods: field("nr_periods"),
            throttled: field("nr_throttled"),
        }
    }

    /// The share of the periods since `before` in which the quota ran out.
    pub fn share_since(self, before: Throttling) -> f64 {
        let periods = self.periods.saturating_sub(before.periods);
        if periods == 0 {
            0.0
        } else {
            self.throttled.saturating_sub(before.throttled) as f64 / periods as f64
        }
    }
}

/// The thread ids of a process, from /proc/PID/task.
pub fn threads_of(pid: u32) -> Vec<u32> {
    let mut tids: Vec<u32> = fs::read_dir(format!("/proc/{pid}/task"))
        .map(|d| {
            d.flatten()
                .filter_map(|t| t.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    tids.sort_unstable();
    tids
}

/// A thread's name (`comm`), as the kernel keeps it: at most 15 bytes.
pub fn thread_name(pid: u32, tid: u32) -> String {
    fs::read_to_string(format!("/proc/{pid}/task/{tid}/comm"))
        .unwrap_or_default()
        .trim_end()
        .to_string()
}

/// What to do with a process still in a group being removed.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Leftover {
    /// Move it back to the base group, uncapped (a step ending normally,
    /// or a stale group of an earlier run).
    MoveOut,
    /// Stop it: the driver is being interrupted, and the process is one of
    /// the servers it started.
    Kill,
}

/// Removes a group and every group under it, deepest first.
fn remove_tree(dir: &Path, controller: &Controller, leftover: Leftover) {
    let mut dirs = Vec::new();
    collect_dirs(dir, &mut dirs);
    // Children were pushed after their parents.
    for d in dirs.iter().rev() {
        remove_group(d, controller, leftover);
    }
}

fn collect_dirs(dir: &Path, into: &mut Vec<PathBuf>) {
    if !dir.is_dir() {
        return;
    }
    into.push(dir.to_path_buf());
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                collect_dirs(&entry.path(), into);
            }
        }
    }
}

/// `rmdir` one group, after moving out or stopping what is in it.
fn remove_group(dir: &Path, controller: &Controller, leftover: Leftover) {
    let deadline = Instant::now() + EMPTY_TIMEOUT;
    loop {
        if fs::remove_dir(dir).is_ok() || !dir.exists() {
            return;
        }
        let tids = group_threads(dir, controller.version);
        let mut pids: Vec<u32> = tids.iter().map(|&t| thread_group(t)).collect();
        pids.sort_unstable();
        pids.dedup();
        for pid in pids {
            match leftover {
                Leftover::MoveOut => {
                    let _ = fs::write(controller.base.join("cgroup.procs"), pid.to_string());
                }
                // SAFETY: a signal to a process this driver put in its own
                // group: one of the servers it started.
                Leftover::Kill => unsafe {
                    libc::kill(pid as i32, libc::SIGKILL);
                },
            }
        }
        if Instant::now() >= deadline {
            eprintln!(
                "could not remove {} (processes still in it: {tids:?}); remove it with rmdir",
                dir.display()
            );
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The thread ids in a group.
fn group_threads(dir: &Path, version: Version) -> Vec<u32> {
    let file = match version {
        Version::V1 => "tasks",
        Version::V2 => "cgroup.threads",
    };
    fs::read_to_string(dir.join(file))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|t| t.parse().ok())
        .collect()
}

/// The process a thread belongs to (`Tgid:` in its status).
fn thread_group(tid: u32) -> u32 {
    fs::read_to_string(format!("/proc/{tid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("Tgid:")?.trim().parse().ok())
        .unwrap_or(tid)
}

/// Removes the directories that drivers no longer alive left under the base.
fn remove_stale(controller: &Controller) {
    let Ok(entries) = fs::read_dir(&controller.base) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(PREFIX))
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != std::process::id() && !driver_alive(pid) {
            remove_tree(&entry.path(), controller, Leftover::MoveOut);
        }
    }
}

/// Whether `pid` is a driver still running: not gone, not a zombie
/// waiting to be reaped, and not another program that has its pid since.
fn driver_alive(pid: u32) -> bool {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // "PID (COMM) STATE ...": the name may hold spaces, the state follows its ')'.
    let Some((name, rest)) = stat.rsplit_once(')') else {
        return false;
    };
    let state = rest.split_whitespace().next().unwrap_or("");
    let comm = name.split_once('(').map_or("", |(_, c)| c);
    state != "Z" && state != "X" && comm.starts_with("bench_compare")
}

/// The run directories that exist now, for the signal thread.
static LIVE: Mutex<Vec<(PathBuf, Controller)>> = Mutex::new(Vec::new());

fn registry_add(dir: &Path, controller: &Controller) {
    let mut live = LIVE.lock().unwrap_or_else(|e| e.into_inner());
    live.push((dir.to_path_buf(), controller.clone()));
}

fn registry_remove(dir: &Path) {
    let mut live = LIVE.lock().unwrap_or_else(|e| e.into_inner());
    live.retain(|(d, _)| d != dir);
}

/// Starts, once, a thread that waits for SIGINT and SIGTERM, removes every
/// live run directory (stopping the servers in it), and exits as the
/// signal would have (128 + its number).
fn watch_signals() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        use signal_hook::consts::{SIGINT, SIGTERM};
        let Ok(mut signals) = signal_hook::iterator::Signals::new([SIGINT, SIGTERM]) else {
            eprintln!("cannot watch SIGINT and SIGTERM: an interrupted run may leave CPU groups");
            return;
        };
        std::thread::spawn(move || {
            if let Some(signal) = signals.forever().next() {
                // Held to the end: no step may create a group meanwhile.
                let live = LIVE.lock().unwrap_or_else(|e| e.into_inner());
                for (dir, controller) in live.iter() {
                    remove_tree(dir, controller, Leftover::Kill);
                }
                eprintln!("interrupted: stopped the capped servers and removed their CPU groups");
                std::process::exit(128 + signal);
            }
        });
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_share_becomes_a_quota_the_kernel_takes() {
        let third = Quota::of_share(1.0 / 3.0).unwrap();
        assert_eq!((third.quota_us, third.period_us), (2_000, 6_000));
        let sixth = Quota::of_share(1.0 / 6.0).unwrap();
        assert_eq!((sixth.quota_us, sixth.period_us), (1_000, 6_000));
        // Below 1 ms in 6 ms: 1 ms in a longer period.
        let twentieth = Quota::of_share(0.05).unwrap();
        assert_eq!((twentieth.quota_us, twentieth.period_us), (1_000, 20_000));
        assert_eq!(Quota::of_share(0.01), None, "a 100 ms period is too long");
        assert_eq!(Quota::of_share(0.0), None);
        assert_eq!(Quota::of_share(f64::NAN), None);
        assert_eq!(sixth.times(4).share(), 4.0 / 6.0);
    }

    #[test]
    fn mounts_and_own_group_are_read() {
        let text = "\
36 25 0:31 / /sys/fs/cgroup/cpu rw,relatime shared:12 - cgroup cgroup rw,cpu
37 25 0:32 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
40 25 0:35 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
41 25 0:36 /docker/abc /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct
";
        let mounts = parse_mounts(text);
        assert_eq!(mounts.len(), 4);
        assert_eq!(mounts[0].point, PathBuf::from("/sys/fs/cgroup/cpu"));
        assert!(mounts[0].options.split(',').any(|o| o == "cpu"));
        assert!(!mounts[1].options.split(',').any(|o| o == "cpu"));
        assert_eq!(mounts[2].fstype, "cgroup2");
        // A group that does not exist under the mount: the mount point.
        let base = v1_base(&mounts[3], "4:cpu,cpuacct:/docker/abc/nowhere\n");
        assert_eq!(base, PathBuf::from("/sys/fs/cgroup/cpu,cpuacct"));
    }

    #[test]
    fn throttling_counts_are_read() {
        let stat = "nr_periods 1003\nnr_throttled 801\nthrottled_time 1378364608\n";
        let t = Throttling::parse(stat);
        assert_eq!((t.periods, t.throttled), (1003, 801));
        let before = Throttling {
            periods: 3,
            throttled: 1,
        };
        assert_eq!(t.share_since(before), 0.8);
    }
}
