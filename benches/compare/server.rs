//! Starting and stopping the servers under test.
//!
//! Every subject runs as a child of this driver, pinned with `taskset`, on
//! an address the kernel picks. The figures come from `/proc` of the
//! process that does the serving: the server itself, or nginx's one worker
//! (its master only starts and watches the worker).

use std::fs;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::plan::{list, Launch, Subject};

/// How long a server may take to start listening.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// A running server, stopped (and waited for) on drop.
pub struct Server {
    child: Child,
    pub addr: SocketAddr,
    /// The process that serves: the child itself, or nginx's worker.
    serving: u32,
    /// nginx's prefix directory, removed on drop.
    scratch: Option<PathBuf>,
}

impl Server {
    /// Starts `subject` on its cores.
    pub fn start(subject: &Subject) -> Server {
        Server::start_wrapped(subject, &[])
    }

    /// Starts `subject` on its cores under `wrapper` (valgrind, say), which
    /// execs the server in its own process.
    pub fn start_wrapped(subject: &Subject, wrapper: &[String]) -> Server {
        match &subject.launch {
            Launch::Program { program, args } => {
                let mut child = Command::new("taskset")
                    .args(["-c", &list(&subject.cpus)])
                    .args(wrapper)
                    .arg(program)
                    .args(args)
                    .stdout(Stdio::piped())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("taskset and the server");
                let mut line = String::new();
                BufReader::new(child.stdout.as_mut().expect("piped stdout"))
                    .read_line(&mut line)
                    .expect("the server's first line");
                let addr = line
                    .trim()
                    .strip_prefix("listening on ")
                    .unwrap_or_else(|| panic!("{} said {line:?}", subject.id.name()))
                    .parse()
                    .expect("an address after `listening on`");
                let serving = child.id();
                Server {
                    child,
                    addr,
                    serving,
                    scratch: None,
                }
            }
            Launch::Nginx {
                program,
                template,
                root,
            } => Server::start_nginx(subject, program, template, root, wrapper),
        }
    }

    /// nginx in the foreground (`daemon off`), its prefix a fresh directory
    /// under the temp dir, its configuration the template with a free port
    /// and the served directory (`root`) filled in, its log on stderr.
    fn start_nginx(
        subject: &Subject,
        program: &Path,
        template: &Path,
        root: &Path,
        wrapper: &[String],
    ) -> Server {
        let scratch =
            std::env::temp_dir().join(format!("fivetuple-bench-nginx-{}", std::process::id()));
        let _ = fs::remove_dir_all(&scratch);
        fs::create_dir_all(&scratch).expect("nginx's scratch directory");
        let port = free_port();
        let config = fs::read_to_string(template)
            .expect("benches/nginx.conf")
            .replace("@PORT@", &port.to_string())
            .replace("@ROOT@", &root.to_string_lossy());
        let conf = scratch.join("nginx.conf");
        fs::write(&conf, config).expect("nginx.conf in the scratch directory");
        let child = Command::new("taskset")
            .args(["-c", &list(&subject.cpus)])
            .args(wrapper)
            .arg(program)
            .arg("-p")
            .arg(&scratch)
            .arg("-c")
            .arg(&conf)
            .args(["-e", "stderr"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("taskset and nginx");
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + START_TIMEOUT;
        let serving = loop {
            let worker = children(child.id()).first().copied();
            if let Some(worker) = worker.filter(|_| TcpStream::connect(addr).is_ok()) {
                break worker;
            }
            assert!(
                Instant::now() < deadline,
                "nginx did not start: run `nginx -t -p {} -c {}`",
                scratch.display(),
                conf.display()
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        Server {
            child,
            addr,
            serving,
            scratch: Some(scratch),
        }
    }

    /// The process whose CPU, memory and descriptors are the server's.
    pub fn pid(&self) -> u32 {
        self.serving
    }

    /// Every process of the server: the one that serves, and nginx's
    /// master, which only watches it (a CPU quota holds both).
    pub fn pids(&self) -> Vec<u32> {
        let mut pids = vec![self.child.id(), self.serving];
        pids.dedup();
        pids
    }

    /// Sends SIGTERM and waits for the server to exit (valgrind writes its
    /// counts on the way out).
    pub fn terminate(mut self) {
        // SAFETY: a signal to our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.scratch.is_some() {
            // nginx's master stops its worker on SIGTERM (SIGKILL would leave it).
            // SAFETY: a signal to our own child.
            unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        } else {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
        if let Some(scratch) = &self.scratch {
            let _ = fs::remove_dir_all(scratch);
        }
    }
}

/// A port nobody listens on right now: bind to port 0 and let go. (Another
/// program could take it before nginx does; on a bench machine none will.)
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// The children of `pid`, from `/proc/PID/task/PID/children`.
fn children(pid: u32) -> Vec<u32> {
    fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}
