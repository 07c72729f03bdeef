//! Output that never waits: the log, the access log and the trace leave
//! the event loop through a [`Sink`].
//!
//! A `write(2)` to a pipe blocks when the pipe is full, and a pipe is full
//! whenever whoever reads it stops: `fivetuple serve 2>&1 | less` left on
//! its first screen, a log shipper that stalls, a terminal paused with
//! Ctrl-S. A server that writes its log from the event loop then stops
//! answering *everyone* until that reader moves on (seen: every client
//! frozen after 781 requests). The loop has the same rule for its own
//! output as for the event stream's subscribers: a slow reader is told,
//! not waited for.
//!
//! So the loop never writes to a descriptor it does not own. It hands
//! whole lines (the access log gathers a turn's lines and hands them over
//! once per turn) to a `Sink`: a bounded buffer and a thread of its own
//! that does the blocking `write`. If the reader keeps up, the thread
//! writes each batch at once. If it does not, the buffer fills to
//! [`SINK_BUFFER`], and from then on whole lines are dropped and counted
//! ([`Sink::dropped`], shown in `/_/metrics`) until there is room again;
//! the first line that gets out after a gap says how many went missing.
//! Nothing in the loop ever waits for the reader; at most it waits for the
//! sink's lock, which no one holds across a system call.
//!
//! The library never opens stdout or stderr itself: the binary makes the
//! sinks (`src/main.rs`) and hands them over in the server's configuration.

use std::io::{self, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

/// Bytes a sink holds for a reader that has fallen behind, at most. A
/// megabyte is some 8,000 access-log lines: a reader that pauses for a
/// moment loses nothing, one that stops costs the server this much memory
/// and no more.
pub const SINK_BUFFER: usize = 1024 * 1024;

/// Where the server's output goes: each is `None` when it is off.
#[derive(Debug, Clone, Default)]
pub struct Output {
    /// The log (`RUST_LOG`): only counted here, since the logger writes it.
    pub log: Option<Sink>,
    /// The access log: stderr, or a file (`--access-log PATH`); none with `--quiet`.
    pub access: Option<Sink>,
    /// `serve --trace`: each turn of the loop, on stdout.
    pub trace: Option<Sink>,
}

impl Output {
    /// Each sink that is on, once, with a label for the metrics: `stderr`
    /// (the log, and the access log unless it has a file), `access_log`
    /// (its file), `stdout` (the trace).
    pub fn sinks(&self) -> impl Iterator<Item = (&'static str, &Sink)> {
        let access = self
            .access
            .as_ref()
            .filter(|a| !self.log.as_ref().is_some_and(|log| log.is(a)));
        [
            ("stderr", self.log.as_ref()),
            ("access_log", access),
            ("stdout", self.trace.as_ref()),
        ]
        .into_iter()
        .filter_map(|(what, sink)| Some((what, sink?)))
    }
}

/// Where lines go without the caller ever waiting for the reader. Cheap to
/// clone: every clone feeds the same buffer and writer thread.
#[derive(Debug, Clone)]
pub struct Sink {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    /// What the output is, for the line that reports a gap (`stderr`).
    name: &'static str,
    pending: Mutex<Pending>,
    /// The writer thread waits here for bytes.
    work: Condvar,
    /// [`Sink::finish`] waits here for the writer to catch up.
    idle: Condvar,
    /// Lines dropped since the start, for the metrics.
    dropped: AtomicU64,
    /// Lines accepted since the start.
    written: AtomicU64,
}

#[derive(Debug, Default)]
struct Pending {
    /// Bytes waiting for the writer thread.
    bytes: Vec<u8>,
    /// Lines dropped since the last line that got into `bytes`: the next
    /// one that does is preceded by a line saying so.
    unreported: u64,
    /// The writer thread holds a batch it has not finished writing.
    writing: bool,
    /// The writer is gone (its output failed for good, or it was told to
    /// stop): everything from now on is dropped.
    closed: bool,
}

impl Sink {
    /// A sink writing to `out` from a thread of its own, named after `name`.
    pub fn spawn(name: &'static str, out: impl Write + Send + 'static) -> io::Result<Sink> {
        let sink = Sink::unstarted(name);
        let shared = Arc::clone(&sink.shared);
        thread::Builder::new()
            .name(format!("{name} writer"))
            .spawn(move || shared.write_out(out))?;
        Ok(sink)
    }

    /// A sink that nothing writes out (yet): for tests, which look at what
    /// it holds, and as the first half of [`Sink::spawn`].
    fn unstarted(name: &'static str) -> Sink {
        Sink {
            shared: Arc::new(Shared {
                name,
                pending: Mutex::new(Pending::default()),
                work: Condvar::new(),
                idle: Condvar::new(),
                dropped: AtomicU64::new(0),
                written: AtomicU64::new(0),
            }),
        }
    }

    /// Takes `lines` (one or more whole lines) for writing, or drops them
    /// all if they do not fit; never waits for the reader.
    pub fn write(&self, lines: &[u8]) {
        if lines.is_empty() {
            return;
        }
        let count = lines.iter().filter(|&&b| b == b'\n').count().max(1) as u64;
        let mut pending = self.shared.lock();
        let notice = match pending.unreported {
            0 => String::new(),
            n => format!(
                "fivetuple: {n} {} dropped here: the reader of {} was too slow\n",
                if n == 1 { "line" } else { "lines" },
                self.shared.name
            ),
        };
        if pending.closed || pending.bytes.len() + notice.len() + lines.len() > SINK_BUFFER {
            pending.unreported += count;
            drop(pending);
            self.shared.dropped.fetch_add(count, Ordering::Relaxed);
            return;
        }
        let wake = pending.bytes.is_empty() && !pending.writing;
        pending.unreported = 0;
        pending.bytes.extend_from_slice(notice.as_bytes());
        pending.bytes.extend_from_slice(lines);
        drop(pending);
        self.shared.written.fetch_add(count, Ordering::Relaxed);
        if wake {
            self.shared.work.notify_one();
        }
    }

    /// Whether `other` feeds the same buffer and writer as this sink.
    pub fn is(&self, other: &Sink) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared)
    }

    /// Lines dropped since the start because the reader was too slow.
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// What the output is (`stderr`, `stdout`, a file's name).
    pub fn name(&self) -> &'static str {
        self.shared.name
    }

    /// Waits until everything taken so far is written, or `within` has
    /// passed (a reader that has stopped must not keep the process from
    /// exiting). True if it all got out.
    pub fn finish(&self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        let mut pending = self.shared.lock();
        while (!pending.bytes.is_empty() || pending.writing) && !pending.closed {
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                return false;
            };
            pending = match self.shared.idle.wait_timeout(pending, left) {
                Ok((guard, _)) => guard,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
        pending.bytes.is_empty()
    }

    /// A `Write` that feeds this sink, for a logger that wants one (each
    /// `write` must carry whole lines, as `env_logger` does per record).
    pub fn writer(&self) -> SinkWriter {
        SinkWriter(self.clone())
    }
}

impl Shared {
    /// The lock, even if a thread panicked while holding it: the buffer is
    /// only bytes, and losing the log over a poisoned lock helps nobody.
    fn lock(&self) -> MutexGuard<'_, Pending> {
        self.pending
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The writer thread: waits for bytes, writes them (blocking, which is
    /// the point of having a thread), and starts again.
    fn write_out(&self, mut out: impl Write) {
        let mut batch = Vec::new();
        loop {
            let mut pending = self.lock();
            pending.writing = false;
            self.idle.notify_all();
            while pending.bytes.is_empty() {
                pending = match self.work.wait(pending) {
                    Ok(guard) => guard,
                    Err(poisoned) => poisoned.into_inner(),
                };
            }
            // Swap the buffers: the loop goes on filling an empty one
            // while this thread writes the full one.
            std::mem::swap(&mut batch, &mut pending.bytes);
            pending.writing = true;
            drop(pending);
            let result = out.write_all(&batch).and_then(|()| out.flush());
            if let Err(e) = result {
                // The reader is gone for good (EPIPE) or the output failed:
                // keep the server going and drop what comes from now on.
                let mut pending = self.lock();
                pending.closed = true;
                pending.writing = false;
                pending.bytes = Vec::new();
                drop(pending);
                self.idle.notify_all();
                // A reader that left (`| head`) ends the output quietly, as
                // every command here does; any other failure (a full disk
                // behind --access-log) is worth a line in the log, which goes
                // through its own sink like everything else.
                if e.kind() != io::ErrorKind::BrokenPipe {
                    log::warn!("{} failed: {e}; what was to go there is dropped", self.name);
                }
                return;
            }
            batch.clear();
            if batch.capacity() > SINK_BUFFER {
                batch = Vec::new(); // a burst grew it: give the memory back
            }
        }
    }
}

/// `io::Write` into a [`Sink`]: every call is taken whole or dropped, and
/// always reports success, so that a logger never stops on our account.
#[derive(Debug, Clone)]
pub struct SinkWriter(Sink);

impl Write for SinkWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_that_do_not_fit_are_dropped_whole_and_the_next_one_says_so() {
        let sink = Sink::unstarted("stderr");
        let line = vec![b'x'; 1000];
        let mut line = line;
        line.push(b'\n');
        let fits = SINK_BUFFER / line.len();
        for _ in 0..fits + 10 {
            sink.write(&line);
        }
        assert_eq!(sink.dropped(), 10, "the overflow is counted, line by line");
        // The reader takes everything: room again.
        sink.shared.lock().bytes.clear();
        sink.write(b"next\n");
        let held = String::from_utf8(sink.shared.lock().bytes.clone()).unwrap();
        assert_eq!(
            held,
            "fivetuple: 10 lines dropped here: the reader of stderr was too slow\nnext\n"
        );
    }

    #[test]
    fn a_stalled_reader_never_blocks_the_writer_of_lines() {
        // A pipe whose reader never reads: the writer thread blocks in
        // `write`, and the caller must go on regardless.
        let mut reader = std::process::Command::new("sleep")
            .arg("60")
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let writer = reader.stdin.take().unwrap();
        let sink = Sink::spawn("a pipe", writer).unwrap();
        let started = Instant::now();
        for i in 0..200_000 {
            sink.write(format!("line {i} of a log nobody reads\n").as_bytes());
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "writing lines waited for the reader"
        );
        assert!(sink.dropped() > 0, "a full pipe and buffer drop lines");
        assert!(!sink.finish(Duration::from_millis(50)), "nothing reads");
        let _ = reader.kill();
        let _ = reader.wait();
    }

    #[test]
    fn finish_waits_for_a_reader_that_reads() {
        let mut file = std::env::temp_dir();
        file.push(format!("fivetuple-sink-test-{}", std::process::id()));
        let out = std::fs::File::create(&file).unwrap();
        let sink = Sink::spawn("a file", out).unwrap();
        for i in 0..1000 {
            sink.write(format!("{i}\n").as_bytes());
        }
        assert!(sink.finish(Duration::from_secs(10)));
        let text = std::fs::read_to_string(&file).unwrap();
        let _ = std::fs::remove_file(&file);
        assert_eq!(text.lines().count(), 1000);
        assert_eq!(text.lines().last(), Some("999"));
    }
}
