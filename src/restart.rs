//! A restart that loses no connection: the listening sockets outlive the
//! process that made them.
//!
//! On SIGHUP the server starts a new copy of its own binary, read again
//! from disk (so an upgraded binary takes over), with the same arguments,
//! and hands it its listening sockets with the socket-activation protocol
//! (see [`crate::activation`]). The new copy says when it is ready, with
//! `READY=1` on a unix datagram socket named in `NOTIFY_SOCKET` (the
//! sd_notify(3) protocol, which also makes the server a `Type=notify`
//! service under systemd). Only then does the old copy stop accepting:
//!
//! ```text
//!  old (generation 1)                       new (generation 2)
//!  SIGHUP ──> fork + exec fivetuple serve ... ──> fd 3 = the same listener
//!  accepting                                   binds nothing, drops --user
//!  accepting            <── READY=1 ──────────  accepting
//!  stops accepting, closes its copies
//!  finishes its connections (their 5-tuples stay with it), exits
//! ```
//!
//! Nothing is lost in between because there is one listening socket, not
//! two: both processes hold a descriptor to the same kernel object, with
//! its one accept queue. A connection the old process has not accepted
//! stays in that queue, and the new one accepts it. (Two sockets bound
//! with SO_REUSEPORT would each have a queue of their own, and closing one
//! resets the connections waiting in it: docs/restarts.md measures both.)
//!
//! If the new copy cannot be started, exits, or does not say it is ready
//! within `--restart-timeout`, the old one stops it and goes on serving,
//! and says why in one line. The work is done on a thread of its own, the
//! restart thread, which waits for SIGHUP, the notification and the
//! child; the reactors learn of a takeover through a [`Takeover`] line
//! (a flag and a waker in their `Poll`), and stop as they do for SIGTERM.

use std::ffi::OsString;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::fs::DirBuilderExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use command_fds::{CommandFdExt, FdMapping};
use log::{info, warn};
use mio::net::UnixDatagram;
use mio::{Events, Interest, Token, Waker};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};

use crate::activation::{FIRST_FD, HANDED_OVER_BY};
use crate::error::{Error, Result};
use crate::sys;

/// The variable that tells a new copy its generation (1 for the first).
const GENERATION: &str = "FIVETUPLE_GENERATION";

/// The variable that passes systemd's own `NOTIFY_SOCKET` on to the new
/// copy (its `NOTIFY_SOCKET` is the old copy's), so that it can tell
/// systemd its pid in its own restart later.
const UPSTREAM_NOTIFY: &str = "FIVETUPLE_SYSTEMD_NOTIFY";

/// How often the restart thread looks whether the new copy has exited,
/// while it waits for it to be ready.
const CHILD_CHECK: Duration = Duration::from_millis(50);

/// How long a new copy that did not say it was ready gets to stop after
/// SIGTERM before it is killed.
const STOP_CHILD: Duration = Duration::from_secs(1);

/// How long a process that stops waits for a restart under way to settle:
/// the restart thread's own turn to see the signal, and [`STOP_CHILD`].
pub const SETTLE: Duration = Duration::from_secs(3);

/// Where this process stands in the line of restarts, read from the
/// environment at the start of `main` (see [`Lineage::take_from_env`]).
#[derive(Debug)]
pub struct Lineage {
    /// 1 for a server started by hand or by systemd; one more at each restart.
    pub generation: u32,
    /// This binary's path as it was at startup: a binary replaced since
    /// (`cp` over it, `apt upgrade`) is found again under the same path,
    /// where `/proc/self/exe` keeps naming the old, deleted file.
    exe: io::Result<PathBuf>,
    /// The arguments the process was started with, for the new copy.
    args: Vec<OsString>,
    /// Where to say `READY=1`: systemd, or the previous copy.
    notify: Option<OsString>,
    /// systemd's socket, for `MAINPID=` when this copy hands over.
    upstream: Option<OsString>,
}

static LINEAGE: OnceLock<Lineage> = OnceLock::new();

/// Whether a new copy is being started and watched (true) or not; the
/// process waits for `false` before it exits ([`wait_until_settled`]), so
/// that a new copy it started is never left behind unwatched.
static UNDER_WAY: (Mutex<bool>, Condvar) = (Mutex::new(false), Condvar::new());

fn set_under_way(on: bool) {
    let (lock, changed) = &UNDER_WAY;
    *lock.lock().unwrap_or_else(|e| e.into_inner()) = on;
    changed.notify_all();
}

/// Waits (at most `limit`) until no restart is under way: one that a
/// SIGTERM interrupted has stopped its new copy, one that succeeded has
/// handed over. Called by `main` before the process exits.
pub fn wait_until_settled(limit: Duration) {
    let (lock, changed) = &UNDER_WAY;
    let guard = lock.lock().unwrap_or_else(|e| e.into_inner());
    let _ = changed.wait_timeout_while(guard, limit, |under_way| *under_way);
}

/// Restarts that this process tried and that failed (the new copy did
/// not start, exited, or was not ready in time); for `/_/metrics`.
static FAILED: AtomicU64 = AtomicU64::new(0);

impl Lineage {
    /// Reads the generation, `NOTIFY_SOCKET` and this binary's path, and
    /// removes the variables from the environment (nothing this process
    /// starts should inherit them by mistake). Like
    /// [`crate::activation::take`], it runs before any thread starts.
    pub fn take_from_env() -> &'static Lineage {
        let take = |name: &str| {
            let value = std::env::var_os(name);
            std::env::remove_var(name);
            value
        };
        let generation = take(GENERATION)
            .and_then(|g| g.to_str()?.parse().ok())
            .filter(|&g| g >= 1)
            .unwrap_or(1);
        let notify = take("NOTIFY_SOCKET");
        let upstream =
            take(UPSTREAM_NOTIFY).or_else(|| (generation == 1).then(|| notify.clone())?);
        LINEAGE.get_or_init(|| Lineage {
            generation,
            exe: std::env::current_exe(),
            args: std::env::args_os().skip(1).collect(),
            notify,
            upstream,
        })
    }
}

/// This process's generation: 1, or one more than the copy that started it.
pub fn generation() -> u32 {
    LINEAGE.get().map_or(1, |l| l.generation)
}

/// Restarts that were tried by this process and failed.
pub fn failed_restarts() -> u64 {
    FAILED.load(Ordering::Relaxed)
}

/// Says `READY=1` where `NOTIFY_SOCKET` pointed: to systemd (`Type=notify`)
/// or to the previous copy, which then stops accepting. Call it once the
/// sockets are in place and privileges are dropped. Best effort: a
/// notification that cannot be sent is logged (the previous copy then
/// gives up on this one after `--restart-timeout`).
pub fn notify_ready() {
    let Some(lineage) = LINEAGE.get() else { return };
    if let Some(socket) = &lineage.notify {
        let message = format!("READY=1\nMAINPID={}\n", std::process::id());
        if let Err(e) = send_notification(socket, &message) {
            warn!("cannot say READY=1 to {}: {e}", socket.to_string_lossy());
        }
    }
}

/// One sd_notify datagram to `socket`: a path, or `@name` for the
/// abstract namespace, as systemd writes it.
fn send_notification(socket: &OsString, message: &str) -> io::Result<()> {
    use std::os::linux::net::SocketAddrExt;
    let bytes = socket.as_encoded_bytes();
    let addr = match bytes.strip_prefix(b"@") {
        Some(name) => std::os::unix::net::SocketAddr::from_abstract_name(name)?,
        None => std::os::unix::net::SocketAddr::from_pathname(socket)?,
    };
    let sender = std::os::unix::net::UnixDatagram::unbound()?;
    sender.send_to_addr(message.as_bytes(), &addr)?;
    Ok(())
}

/// How the restart thread tells one reactor that a new copy has taken
/// over: the new copy's pid, and a waker in the reactor's `Poll` (under
/// the signal pipe's token, so the loop looks at it where it looks at
/// signals; see [`crate::reactor`]).
#[derive(Clone, Debug)]
pub struct Takeover {
    successor: Arc<AtomicU32>,
    waker: Arc<Waker>,
}

impl Takeover {
    /// A line into the `Poll` of `registry`, waking it under `token`.
    pub fn new(registry: &mio::Registry, token: Token) -> io::Result<Takeover> {
        Ok(Takeover {
            successor: Arc::new(AtomicU32::new(0)),
            waker: Arc::new(Waker::new(registry, token)?),
        })
    }

    /// The pid of the copy that took over, once one has.
    pub fn successor(&self) -> Option<u32> {
        match self.successor.load(Ordering::Acquire) {
            0 => None,
            pid => Some(pid),
        }
    }

    fn tell(&self, pid: u32) {
        self.successor.store(pid, Ordering::Release);
        if let Err(e) = self.waker.wake() {
            warn!("cannot wake a worker to hand over: {e}");
        }
    }
}

/// Copies of listening sockets to pass on, with their names for
/// `LISTEN_FDNAMES` (`tcp`, `udp`), in the order the new copy gets them.
pub type Sockets = Vec<(OwnedFd, &'static str)>;

/// What the restart thread needs: copies of every listening socket (in
/// the order the new copy gets them: each worker's listener, then the UDP
/// socket), a line to each reactor, and the bounds.
pub struct Handover {
    /// The sockets and their names for `LISTEN_FDNAMES` (`tcp`, `udp`).
    pub sockets: Sockets,
    pub takeovers: Vec<Takeover>,
    /// How long the new copy gets to say it is ready.
    pub ready_timeout: Duration,
    /// What the old copy's connections get to finish (for the log line).
    pub grace: Duration,
}

/// Starts the restart thread, which serves SIGHUP for as long as the
/// process runs. It holds copies of the listening sockets until it hands
/// them over, and drops them at SIGINT or SIGTERM, so that a server that
/// stops closes its port as it did before.
pub fn start(handover: Handover) -> Result<()> {
    let lineage = LINEAGE
        .get()
        .ok_or_else(|| Error::usage("restart::Lineage::take_from_env was not called"))?;
    let (poll, signals) = sys::poll_with_signals(&[SIGHUP, SIGINT, SIGTERM], SIGNALS)?;
    let mut thread = RestartThread {
        poll,
        signals,
        lineage,
        handover,
        attempt: None,
        handed_to: None,
        tries: 0,
        stopping: false,
    };
    thread::Builder::new()
        .name("restart".into())
        .spawn(move || {
            if let Err(e) = thread.run() {
                warn!("the restart thread stopped: {e}; SIGHUP no longer restarts");
            }
        })
        .map_err(|e| Error::io("starting the restart thread", e))?;
    Ok(())
}

const SIGNALS: Token = Token(0);
const NOTIFY: Token = Token(1);

struct RestartThread {
    poll: mio::Poll,
    signals: signal_hook_mio::v1_0::Signals,
    lineage: &'static Lineage,
    handover: Handover,
    attempt: Option<Attempt>,
    /// The pid that took over, once one has.
    handed_to: Option<u32>,
    /// Restarts tried, for a fresh notification socket name each time.
    tries: u32,
    /// SIGINT or SIGTERM came: no more restarts.
    stopping: bool,
}

/// A new copy that was started and has not said it is ready yet.
struct Attempt {
    child: Child,
    notify: UnixDatagram,
    /// The private directory that holds the notification socket.
    dir: PathBuf,
    started: Instant,
    deadline: Instant,
}

impl Drop for Attempt {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// What the new copy did, seen from the old one.
enum Outcome {
    Waiting,
    Ready,
    Failed(String),
}

impl RestartThread {
    fn run(&mut self) -> Result<()> {
        let mut events = Events::with_capacity(8);
        loop {
            let wake = self
                .attempt
                .as_ref()
                .map(|a| a.deadline.min(Instant::now() + CHILD_CHECK));
            sys::poll_until(&mut self.poll, &mut events, wake, Instant::now())?;
            let signals: Vec<i32> = self.signals.pending().collect();
            for signal in signals {
                if signal == SIGHUP {
                    self.on_sighup();
                } else {
                    self.on_stop(signal);
                }
            }
            self.look_at_attempt();
        }
    }

    fn on_sighup(&mut self) {
        if self.stopping {
            return warn!("SIGHUP: the server is shutting down; no restart");
        }
        if let Some(pid) = self.handed_to {
            return warn!(
                "SIGHUP: this process already handed its sockets to pid {pid}, and is \
                 finishing its connections; send SIGHUP to pid {pid} to restart again"
            );
        }
        if let Some(a) = &self.attempt {
            return warn!(
                "SIGHUP: a restart is already under way (pid {}, started {:.1}s ago); \
                 this signal is ignored",
                a.child.id(),
                a.started.elapsed().as_secs_f64()
            );
        }
        match self.spawn() {
            Ok(attempt) => {
                info!(
                    "SIGHUP: started pid {} (generation {}) with the listening sockets; \
                     serving until it says it is ready (at most {:?})",
                    attempt.child.id(),
                    self.lineage.generation + 1,
                    self.handover.ready_timeout
                );
                self.attempt = Some(attempt);
                set_under_way(true);
            }
            Err(why) => {
                FAILED.fetch_add(1, Ordering::Relaxed);
                warn!("SIGHUP: restart failed: {why}; still serving");
            }
        }
    }

    /// SIGINT or SIGTERM: the reactors stop (they got the signal too); a
    /// new copy that is not ready yet is stopped, and the copies of the
    /// sockets are closed, so the port closes with the old process.
    fn on_stop(&mut self, signal: i32) {
        if let Some(mut attempt) = self.attempt.take() {
            let pid = attempt.child.id();
            stop_child(&mut attempt.child);
            warn!(
                "signal {signal} during a restart: stopped the new copy (pid {pid}) before it \
                 took over; shutting down"
            );
            set_under_way(false);
        }
        self.handover.sockets.clear();
        self.stopping = true;
    }

    fn look_at_attempt(&mut self) {
        let Some(attempt) = &mut self.attempt else {
            return;
        };
        match attempt.outcome() {
            Outcome::Waiting => {}
            Outcome::Ready => {
                let pid = attempt.child.id();
                self.attempt = None;
                self.hand_over(pid);
                set_under_way(false);
            }
            Outcome::Failed(why) => {
                self.attempt = None;
                FAILED.fetch_add(1, Ordering::Relaxed);
                warn!("SIGHUP: restart failed: {why}; still serving");
                set_under_way(false);
            }
        }
    }

    /// The new copy is ready: every reactor stops accepting, and the
    /// copies held here are closed.
    fn hand_over(&mut self, pid: u32) {
        info!(
            "pid {pid} (generation {}) is ready and accepts on the same sockets; this process \
             stops accepting and finishes its connections (at most {:?})",
            self.lineage.generation + 1,
            self.handover.grace
        );
        self.handed_to = Some(pid);
        for takeover in &self.handover.takeovers {
            takeover.tell(pid);
        }
        self.handover.sockets.clear();
        if let Some(systemd) = &self.lineage.upstream {
            // systemd follows the new main process (NotifyAccess=main is
            // enough: the message comes from the main process, this one).
            if let Err(e) = send_notification(systemd, &format!("MAINPID={pid}\nREADY=1\n")) {
                warn!("cannot tell systemd the new main pid: {e}");
            }
        }
    }

    /// Starts the new copy with the sockets as descriptors 3, 4, ...
    fn spawn(&mut self) -> std::result::Result<Attempt, String> {
        let exe = match &self.lineage.exe {
            Ok(exe) => exe.clone(),
            Err(e) => return Err(format!("cannot tell this binary's path: {e}")),
        };
        self.tries += 1;
        let me = std::process::id();
        let dir = std::env::temp_dir().join(format!("fivetuple-restart-{me}-{}", self.tries));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .map_err(|e| format!("cannot make {}: {e}", dir.display()))?;
        let cleanup = |why: String| {
            let _ = std::fs::remove_dir_all(&dir);
            why
        };
        let path = dir.join("notify");
        let mut notify = UnixDatagram::bind(&path)
            .map_err(|e| cleanup(format!("cannot bind {}: {e}", path.display())))?;
        self.poll
            .registry()
            .register(&mut notify, NOTIFY, Interest::READABLE)
            .map_err(|e| cleanup(format!("cannot watch {}: {e}", path.display())))?;
        let mut mappings = Vec::new();
        let mut names = Vec::new();
        for (child_fd, (socket, name)) in (FIRST_FD..).zip(&self.handover.sockets) {
            let parent_fd = socket
                .try_clone()
                .map_err(|e| cleanup(format!("cannot copy a listening socket: {e}")))?;
            mappings.push(FdMapping {
                parent_fd,
                child_fd,
            });
            names.push(*name);
        }
        let mut command = Command::new(&exe);
        command
            .args(&self.lineage.args)
            .env("LISTEN_FDS", mappings.len().to_string())
            .env("LISTEN_PID", me.to_string())
            .env(HANDED_OVER_BY, me.to_string())
            .env("LISTEN_FDNAMES", names.join(":"))
            .env("NOTIFY_SOCKET", &path)
            .env(GENERATION, (self.lineage.generation + 1).to_string())
            .stdin(Stdio::null());
        if let Some(systemd) = &self.lineage.upstream {
            command.env(UPSTREAM_NOTIFY, systemd);
        }
        command
            .fd_mappings(mappings)
            .map_err(|e| cleanup(format!("cannot arrange the descriptors: {e}")))?;
        let child = command
            .spawn()
            .map_err(|e| cleanup(format!("cannot start {}: {e}", exe.display())))?;
        // `command` holds the parent's copies for the child: drop them now.
        drop(command);
        let started = Instant::now();
        Ok(Attempt {
            child,
            notify,
            dir,
            started,
            deadline: started + self.handover.ready_timeout,
        })
    }
}

impl Attempt {
    /// Whether the new copy said it is ready, exited, or ran out of time.
    /// The notification is read first: a copy that said it was ready and
    /// exited right after still took over (and the sockets live on in it
    /// only if it is running, which is its own affair by then).
    fn outcome(&mut self) -> Outcome {
        let mut buf = [0u8; 512];
        loop {
            match self.notify.recv(&mut buf) {
                Ok(n) => {
                    let text = String::from_utf8_lossy(&buf[..n]);
                    if text.lines().any(|l| l == "READY=1") {
                        return Outcome::Ready;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    stop_child(&mut self.child);
                    return Outcome::Failed(format!("reading the notification socket: {e}"));
                }
            }
        }
        let pid = self.child.id();
        match self.child.try_wait() {
            Ok(Some(status)) => {
                return Outcome::Failed(format!(
                    "the new copy (pid {pid}) exited ({status}) before it said it was ready"
                ))
            }
            Ok(None) => {}
            Err(e) => return Outcome::Failed(format!("cannot watch pid {pid}: {e}")),
        }
        if Instant::now() >= self.deadline {
            stop_child(&mut self.child);
            return Outcome::Failed(format!(
                "the new copy (pid {pid}) did not say it was ready within {:?}; stopped it",
                self.deadline - self.started
            ));
        }
        Outcome::Waiting
    }
}

/// SIGTERM, then SIGKILL if it has not exited within [`STOP_CHILD`]; and
/// waits for it, so that it leaves no zombie.
fn stop_child(child: &mut Child) {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    let pid = Pid::from_raw(child.id() as i32);
    let _ = kill(pid, Signal::SIGTERM);
    let deadline = Instant::now() + STOP_CHILD;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    let _ = child.wait();
}
