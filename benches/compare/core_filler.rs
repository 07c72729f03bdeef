//! Keeping the capped servers' core busy while they are held.
//!
//! A server under a CPU quota of a tenth of a core leaves its core idle
//! nine tenths of the time. An idle core is not free to come back from:
//! each time the server's quota is refilled it starts on a core that has
//! been asleep (and, in a virtual machine, may have been given to another
//! guest meanwhile), with colder caches. Measured here, one worker held to
//! 1 ms in 13 ms answered about a quarter fewer requests for the same CPU
//! time than with the core kept busy. That is not what a slow core of its
//! own would do, and it penalises small quotas, so it would bend a
//! speed-up over worker counts (one worker leaves the core idlest).
//!
//! The filler is a thread of this driver, pinned to the servers' core at
//! the kernel's lowest priority (`SCHED_IDLE`): it spins only when nothing
//! else wants the core, and any server thread whose quota comes back
//! preempts it at once. It runs only during timed runs (the driver waits
//! for quiet without it), and the CPU it used is taken out of the run's
//! "other load". If the kernel refuses `SCHED_IDLE`, the filler does not
//! spin at all: at normal priority it would take the server's time.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

/// A spinning thread on one core, at idle priority.
pub struct CoreFiller {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<f64>,
    started: Instant,
}

impl CoreFiller {
    /// Starts spinning on `core`.
    pub fn start(core: usize) -> CoreFiller {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            if !pin_at_idle_priority(core) {
                return 0.0;
            }
            while !flag.load(Ordering::Relaxed) {
                for _ in 0..10_000 {
                    std::hint::spin_loop();
                }
            }
            own_cpu_seconds()
        });
        CoreFiller {
            stop,
            thread,
            started: Instant::now(),
        }
    }

    /// Stops the filler; the cores' worth of CPU it used while it ran.
    pub fn stop(self) -> f64 {
        self.stop.store(true, Ordering::Relaxed);
        let spun = self.thread.join().unwrap_or(0.0);
        spun / self.started.elapsed().as_secs_f64().max(1e-9)
    }
}

/// Pins the calling thread to `core` and gives it `SCHED_IDLE`; false if
/// either is refused.
fn pin_at_idle_priority(core: usize) -> bool {
    // SAFETY: cpu_set_t and sched_param are plain data that the calls
    // read; pid 0 is the calling thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(core, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return false;
        }
        let param = libc::sched_param { sched_priority: 0 };
        libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) == 0
    }
}

/// The calling thread's CPU time so far, in seconds.
fn own_cpu_seconds() -> f64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime fills the timespec we pass.
    if unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) } != 0 {
        return 0.0;
    }
    t.tv_sec as f64 + t.tv_nsec as f64 / 1e9
}
