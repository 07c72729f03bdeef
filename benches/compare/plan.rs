//! What the benchmark runs: the servers (subjects), the loads (scenarios),
//! and which cores each side gets.
//!
//! Everything here is data. The steps in `steps.rs` walk these tables;
//! adding a scenario or a subject is adding a row.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Serialize;

/// Length of one timed wrk run, in seconds.
pub const RUN_SECS: u32 = 3;
/// Rounds per scenario: each subject runs once per round, in turn.
pub const ROUNDS: usize = 3;
/// Untimed wrk run before the timed ones, so that the first round does not
/// pay for connection setup, page faults and buffers growing.
pub const WARMUP_SECS: u32 = 1;
/// Idle connections held for the memory figure.
pub const HELD: usize = 15_000;
/// How often the descriptor sampler looks at `/proc/PID/fd` during a run.
pub const FD_SAMPLE_MS: u64 = 10;
/// A side whose cores were at least this busy is taken to be the bottleneck.
pub const SATURATED: f64 = 0.9;
/// A run during which other programs used more than this many cores' worth
/// of CPU is disturbed: it is run again (within [`RETRIES`]), and left out
/// of the medians when its scenario has undisturbed rounds. A third of a
/// core is well above what the kernel's own threads and this driver use.
pub const DISTURBED: f64 = 0.35;
/// Disturbed runs run again, at most, per scenario: each costs one run
/// (`RUN_SECS`). Per scenario, so that a busy stretch early in the
/// benchmark does not leave nothing for the scenarios after it.
pub const RETRIES: usize = 4;
/// Before running a disturbed run again, wait (in steps of a second) for
/// the other load to drop, at most this long per scenario. With `RETRIES`,
/// a busy machine adds at most about 20 s per scenario to the benchmark.
pub const QUIET_WAIT_SECS: u64 = 10;

/// The servers under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SubjectId {
    /// `fivetuple serve`, the mio reactor.
    Mio,
    /// The tokio version of the same server, one thread.
    Tokio,
    /// The tokio version with two worker threads.
    TokioMt,
    /// The least a mio server can do to answer (`benches/floor_server.rs`).
    Floor,
    /// nginx answering from its configuration (`benches/nginx.conf`).
    Nginx,
}

impl SubjectId {
    /// Every subject, in the order tables list them.
    pub const ALL: [SubjectId; 5] = [
        SubjectId::Mio,
        SubjectId::Tokio,
        SubjectId::TokioMt,
        SubjectId::Floor,
        SubjectId::Nginx,
    ];

    pub fn name(self) -> &'static str {
        match self {
            SubjectId::Mio => "mio",
            SubjectId::Tokio => "tokio",
            SubjectId::TokioMt => "tokio-mt",
            SubjectId::Floor => "floor",
            SubjectId::Nginx => "nginx",
        }
    }

    /// The subject as a sentence names it: "the floor's", "nginx's".
    /// Whether the subject runs the static-file scenarios. The floor
    /// answers one fixed thing and serves no files; tokio-mt is left out
    /// to keep the run short (those scenarios compare one core each).
    pub fn serves_files(self) -> bool {
        matches!(self, SubjectId::Mio | SubjectId::Tokio | SubjectId::Nginx)
    }

    pub fn possessive(self) -> &'static str {
        match self {
            SubjectId::Mio => "fivetuple's",
            SubjectId::Tokio => "tokio's",
            SubjectId::TokioMt => "tokio-mt's",
            SubjectId::Floor => "the floor's",
            SubjectId::Nginx => "nginx's",
        }
    }
}

/// The loads: five against `GET /_/hello`, three against files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ScenarioId {
    KeepAlive50,
    KeepAlive256,
    KeepAlive1000,
    Pipelined16,
    Churn,
    File4k,
    File64k,
    File1m,
}

/// What a scenario's requests ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Content {
    /// `GET /_/hello`: 13 bytes that each server makes up itself.
    Hello,
    /// `GET /NAME`: a file of `size` bytes in the bench's site directory
    /// (see [`Site`]), from the page cache.
    File { name: &'static str, size: usize },
}

impl Content {
    /// The request path.
    pub fn path(self) -> String {
        match self {
            Content::Hello => "/_/hello".to_string(),
            Content::File { name, .. } => format!("/{name}"),
        }
    }
}

/// One load: what it asks for, how many connections wrk keeps open, and
/// the script (a file under `benches/wrk/`) that shapes its requests.
#[derive(Debug, Clone, Copy)]
pub struct Scenario {
    pub id: ScenarioId,
    pub name: &'static str,
    pub content: Content,
    pub connections: u32,
    pub script: Option<&'static str>,
    /// wrk's latency means one request's: false when one "request" of wrk's
    /// is a batch (pipelining), whose latency is the whole batch's.
    pub latency: bool,
}

impl Scenario {
    /// The file's size, for a static-file scenario.
    pub fn file_size(&self) -> Option<usize> {
        match self.content {
            Content::File { size, .. } => Some(size),
            Content::Hello => None,
        }
    }

    /// Whether `subject` runs this scenario.
    pub fn runs(&self, subject: SubjectId) -> bool {
        self.file_size().is_none() || subject.serves_files()
    }
}

/// The `/_/hello` scenarios, in the order the report lists them.
pub const SCENARIOS: [Scenario; 5] = [
    Scenario {
        id: ScenarioId::KeepAlive50,
        name: "keep-alive, 50 connections",
        content: Content::Hello,
        connections: 50,
        script: None,
        latency: true,
    },
    Scenario {
        id: ScenarioId::KeepAlive256,
        name: "keep-alive, 256 connections",
        content: Content::Hello,
        connections: 256,
        script: None,
        latency: true,
    },
    Scenario {
        id: ScenarioId::KeepAlive1000,
        name: "keep-alive, 1000 connections",
        content: Content::Hello,
        connections: 1000,
        script: None,
        latency: true,
    },
    Scenario {
        id: ScenarioId::Pipelined16,
        name: "pipelined x16, 50 connections",
        content: Content::Hello,
        connections: 50,
        script: Some("pipeline16.lua"),
        latency: false,
    },
    Scenario {
        id: ScenarioId::Churn,
        name: "churn: one request per connection, 50 at a time",
        content: Content::Hello,
        connections: 50,
        script: Some("close.lua"),
        latency: true,
    },
];

/// The static-file scenarios: one file each, keep-alive, 50 connections,
/// for fivetuple (`serve --dir`), the tokio version (`--dir`) and nginx
/// (`root`, `sendfile on`). A page, a picture, a download: 4 KiB goes out
/// with its head in one write, 64 KiB and 1 MiB are sent from the file.
pub const FILE_SCENARIOS: [Scenario; 3] = [
    Scenario {
        id: ScenarioId::File4k,
        name: "file of 4 KiB, keep-alive, 50 connections",
        content: Content::File {
            name: "4k.bin",
            size: 4 * 1024,
        },
        connections: 50,
        script: None,
        latency: true,
    },
    Scenario {
        id: ScenarioId::File64k,
        name: "file of 64 KiB, keep-alive, 50 connections",
        content: Content::File {
            name: "64k.bin",
            size: 64 * 1024,
        },
        connections: 50,
        script: None,
        latency: true,
    },
    Scenario {
        id: ScenarioId::File1m,
        name: "file of 1 MiB, keep-alive, 50 connections",
        content: Content::File {
            name: "1m.bin",
            size: 1024 * 1024,
        },
        connections: 50,
        script: None,
        latency: true,
    },
];

/// Every scenario, in the order the benchmark runs them.
pub fn all_scenarios() -> impl Iterator<Item = &'static Scenario> {
    SCENARIOS.iter().chain(FILE_SCENARIOS.iter())
}

impl ScenarioId {
    pub fn scenario(self) -> &'static Scenario {
        all_scenarios()
            .find(|s| s.id == self)
            .expect("every scenario id has a row")
    }

    pub fn name(self) -> &'static str {
        self.scenario().name
    }
}

/// Which cores the servers and the load generator get.
///
/// Servers run on one core. The load generator gets every other core, with
/// one wrk thread per core, so that on a bigger machine it can push harder
/// than one server core can answer. On two cores that is one each, and wrk
/// usually saturates first; the report says which side did, run by run.
#[derive(Debug, Clone, Serialize)]
pub struct Cores {
    /// The cores this process may use, as the kernel lists them.
    pub allowed: Vec<usize>,
    /// The servers' core.
    pub server: usize,
    /// wrk's cores (and this driver's, so that it never takes the server's).
    pub client: Vec<usize>,
}

impl Cores {
    pub fn detect() -> Cores {
        Cores::split(allowed_cpus())
    }

    /// The first allowed core for the servers, the others for the load.
    fn split(allowed: Vec<usize>) -> Cores {
        let server = allowed[0];
        let client: Vec<usize> = if allowed.len() > 1 {
            allowed[1..].to_vec()
        } else {
            allowed.clone()
        };
        Cores {
            allowed,
            server,
            client,
        }
    }

    pub fn wrk_threads(&self) -> usize {
        self.client.len()
    }

    /// The `taskset -c` list for the load generator.
    pub fn client_list(&self) -> String {
        list(&self.client)
    }

    /// The two-worker tokio variant: the server core and the first client
    /// core, which it shares with one wrk thread.
    pub fn pair(&self) -> Vec<usize> {
        let mut pair = vec![self.server];
        pair.extend(self.client.first().filter(|&&c| c != self.server));
        pair
    }

    /// Pins this process (and what it starts, unless told otherwise) to the
    /// client cores, so that its own threads stay off the server's core.
    pub fn pin_driver(&self) {
        // SAFETY: cpu_set_t is plain data; sched_setaffinity reads it.
        unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            for &cpu in &self.client {
                libc::CPU_SET(cpu, &mut set);
            }
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
        }
    }
}

/// `0,2,3` for taskset.
pub fn list(cpus: &[usize]) -> String {
    cpus.iter()
        .map(usize::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

fn allowed_cpus() -> Vec<usize> {
    // SAFETY: cpu_set_t is plain data; sched_getaffinity fills it.
    let cpus: Vec<usize> = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            Vec::new()
        } else {
            (0..libc::CPU_SETSIZE as usize)
                .filter(|&c| libc::CPU_ISSET(c, &set))
                .collect()
        }
    };
    if cpus.is_empty() {
        vec![0]
    } else {
        cpus
    }
}

/// How to start one subject.
#[derive(Debug, Clone)]
pub enum Launch {
    /// A program that prints `listening on ADDR` once bound.
    Program { program: PathBuf, args: Vec<String> },
    /// nginx, from the template in `benches/nginx.conf`, serving `root`.
    Nginx {
        program: PathBuf,
        template: PathBuf,
        root: PathBuf,
    },
}

/// A server under test: what it is, how to start it, where it runs.
#[derive(Debug, Clone)]
pub struct Subject {
    pub id: SubjectId,
    pub launch: Launch,
    pub cpus: Vec<usize>,
}

/// A subject, tool or step that could not run, and why; the report says so.
#[derive(Debug, Clone, Serialize)]
pub struct Skipped {
    pub what: String,
    pub why: String,
}

/// Every subject that can run on this machine, and a note for each that
/// cannot. Those that serve files serve `site` at `/` (for every
/// scenario: `/_/hello` is answered the same either way).
pub fn subjects(root: &Path, cores: &Cores, site: &Site) -> (Vec<Subject>, Vec<Skipped>) {
    let dir = site.dir.to_string_lossy();
    let program = |path: &str, args: &[&str]| Launch::Program {
        program: binary(root, path),
        args: args.iter().map(|a| a.to_string()).collect(),
    };
    let one = vec![cores.server];
    let mut subjects = vec![
        Subject {
            id: SubjectId::Mio,
            launch: program(
                "fivetuple",
                &["serve", "--listen", "127.0.0.1:0", "--quiet", "--dir", &dir],
            ),
            cpus: one.clone(),
        },
        Subject {
            id: SubjectId::Tokio,
            launch: program(
                "examples/tokio_server",
                &["--flavor", "current_thread", "--dir", &dir],
            ),
            cpus: one.clone(),
        },
        Subject {
            id: SubjectId::TokioMt,
            launch: program(
                "examples/tokio_server",
                &["--flavor", "multi_thread", "--workers", "2", "--dir", &dir],
            ),
            cpus: cores.pair(),
        },
        Subject {
            id: SubjectId::Floor,
            launch: program("examples/floor_server", &[]),
            cpus: one.clone(),
        },
    ];
    for s in &subjects {
        if let Launch::Program { program, .. } = &s.launch {
            assert!(
                program.exists(),
                "{} is not built: cargo build --release --bin fivetuple --example tokio_server \
                 --example floor_server --example bench_compare",
                program.display()
            );
        }
    }
    let mut skipped = Vec::new();
    match find_program("nginx", &["/usr/sbin/nginx", "/usr/local/sbin/nginx"]) {
        Some(nginx) => subjects.push(Subject {
            id: SubjectId::Nginx,
            launch: Launch::Nginx {
                program: nginx,
                template: root.join("benches/nginx.conf"),
                root: site.dir.clone(),
            },
            cpus: one,
        }),
        None => skipped.push(Skipped {
            what: "nginx".into(),
            why: "not installed (apt-get install nginx); its rows are missing".into(),
        }),
    }
    (subjects, skipped)
}

/// The project's root: the current directory when it is one (as on a
/// machine that runs a kit packed by `make-kit`, where this driver was not
/// built), else the directory this driver was built from.
pub fn project_root() -> PathBuf {
    std::env::current_dir()
        .ok()
        .filter(|dir| dir.join("benches/compare/main.rs").exists())
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}

/// A program this driver starts, by its path under `target/release`
/// (`examples/tokio_server`): there if it was built there, else beside
/// this driver, where a kit packed by `make-kit` puts every binary.
pub fn binary(root: &Path, path: &str) -> PathBuf {
    let built = root.join("target/release").join(path);
    if built.exists() {
        return built;
    }
    let name = Path::new(path).file_name().unwrap_or_default();
    std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.join(name)))
        .filter(|beside| beside.exists())
        .unwrap_or(built)
}

/// The directory the static-file scenarios serve: `target/bench/site/`,
/// with one file per scenario, written afresh by each run.
#[derive(Debug, Clone)]
pub struct Site {
    pub dir: PathBuf,
}

impl Site {
    /// Writes the files of [`FILE_SCENARIOS`] under `out_dir/site/`. Their
    /// bytes are a fixed pseudo-random sequence (nothing compresses them,
    /// and a wrong byte anywhere shows in `steps::check_serves_file`). The
    /// directory and files are readable by everyone: nginx's worker runs
    /// as `nobody` when the bench runs as root.
    pub fn create(out_dir: &Path) -> Site {
        use std::os::unix::fs::PermissionsExt;
        let dir = out_dir.join("site");
        std::fs::create_dir_all(&dir).expect("target/bench/site");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))
            .expect("target/bench/site readable");
        for scenario in &FILE_SCENARIOS {
            if let Content::File { name, size } = scenario.content {
                std::fs::write(dir.join(name), Site::bytes(size)).expect("a bench file");
            }
        }
        Site { dir }
    }

    /// The content of a file of `size` bytes.
    pub fn bytes(size: usize) -> Vec<u8> {
        let mut x: u32 = 0x9e37_79b9;
        (0..size)
            .map(|_| {
                // xorshift32: enough to look random to a compressor.
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                (x >> 24) as u8
            })
            .collect()
    }
}

/// A program on PATH, or at one of the usual places outside it (nginx
/// lives in /usr/sbin, which a normal user's PATH often lacks).
pub fn find_program(name: &str, elsewhere: &[&str]) -> Option<PathBuf> {
    let on_path = Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    on_path.or_else(|| {
        elsewhere
            .iter()
            .map(PathBuf::from)
            .find(|path| path.exists())
    })
}

/// The machine the figures come from.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub cores: usize,
    pub cpu: String,
    pub kernel: String,
    pub date: String,
}

impl Machine {
    pub fn describe() -> Machine {
        let cpu = std::fs::read_to_string("/proc/cpuinfo")
            .unwrap_or_default()
            .lines()
            .find_map(|l| {
                l.strip_prefix("model name")
                    .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
            })
            .unwrap_or_default();
        let output = |cmd: &str, args: &[&str]| {
            Command::new(cmd)
                .args(args)
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
                .unwrap_or_default()
        };
        Machine {
            cores: allowed_cpus().len(),
            cpu,
            kernel: output("uname", &["-r"]),
            date: output("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_server_gets_one_core_and_wrk_the_rest() {
        let big = Cores::split((0..16).collect());
        assert_eq!((big.server, big.wrk_threads()), (0, 15));
        assert_eq!(big.client_list(), "1,2,3,4,5,6,7,8,9,10,11,12,13,14,15");
        assert_eq!(big.pair(), vec![0, 1]);
        let two = Cores::split(vec![2, 5]);
        assert_eq!(
            (two.server, two.client_list(), two.pair()),
            (2, "5".to_string(), vec![2, 5])
        );
        let one = Cores::split(vec![0]);
        assert_eq!(
            (one.server, one.client_list(), one.pair()),
            (0, "0".to_string(), vec![0])
        );
    }
}
