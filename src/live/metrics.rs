//! Metrics: the reactor's counters, written in the Prometheus text format.
//!
//! The reactor is one thread, so its counters are plain integers that it
//! bumps as things happen: no atomics, no locks, no registry. `/_/metrics`
//! writes them out in the text format Prometheus scrapes (version 0.0.4): a
//! `# HELP` and a `# TYPE` line per family, then one sample per line, with
//! the usual suffixes (`_total` for counters, `_bytes`, `_seconds` for the
//! unit). The format is simple enough that writing it by hand takes fewer
//! lines than wiring a crate's registry (built for many threads) into a
//! single-threaded loop, and it keeps atomics off the hot path.
//!
//! What costs nothing to count is counted always: an increment per accept,
//! per close, per answer, and two histogram observations per turn of the
//! loop. Totals that can be computed when asked (bytes of the connections
//! still open) are computed at scrape time instead.
//!
//! With several workers (`serve --workers N`) a scrape reaches one of them,
//! whichever the kernel's hash picks, yet must answer for the whole server.
//! Each worker posts its [`Figures`] on the workers' board with its table;
//! the worker that answers adds its own live figures to the others' last
//! posted ones ([`render_workers`]): the families keep their names and
//! carry the sums, and a few `fivetuple_worker_*` families break the
//! figures down by worker. A counter must never go backwards between two
//! scrapes, even when the second reaches a worker whose view of the first
//! one's figures is older than what the first reported; so the answering
//! worker posts the live figures it reports before it answers, and every
//! later scrape starts from them or from newer ones.

use std::fmt::Write as _;
use std::io;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::connection::{CloseReason, Expiry};
use crate::http::StatusClasses;
use crate::sink::Output;
use crate::udp::{Refusal, UdpStats};

/// Bucket bounds of the events-per-wake-up histogram: powers of two up to
/// the 1,024 events one `epoll_wait` can return (`EVENTS_PER_POLL`).
const EVENT_BUCKETS: &[u64] = &[0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024];

/// Bucket bounds of the turn-duration histogram, in microseconds: from a
/// turn that answers one request (a few µs) to one that stalls everybody
/// (a second).
const TURN_BUCKETS_US: &[u64] = &[
    10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000,
    1_000_000,
];

/// Why `accept` failed, the label of `fivetuple_accept_errors_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcceptError {
    /// The client gave up between its handshake and our accept (ECONNABORTED).
    Aborted,
    /// This process is out of file descriptors (EMFILE).
    ProcessFiles,
    /// The system is out of file descriptors (ENFILE).
    SystemFiles,
    /// The kernel is out of memory for sockets (ENOBUFS, ENOMEM).
    Memory,
    Other,
}

impl AcceptError {
    const ALL: [AcceptError; 5] = [
        AcceptError::Aborted,
        AcceptError::ProcessFiles,
        AcceptError::SystemFiles,
        AcceptError::Memory,
        AcceptError::Other,
    ];

    pub fn of(e: &io::Error) -> AcceptError {
        match e.raw_os_error() {
            Some(libc::ECONNABORTED) => AcceptError::Aborted,
            Some(libc::EMFILE) => AcceptError::ProcessFiles,
            Some(libc::ENFILE) => AcceptError::SystemFiles,
            Some(libc::ENOBUFS) | Some(libc::ENOMEM) => AcceptError::Memory,
            _ if e.kind() == io::ErrorKind::ConnectionAborted => AcceptError::Aborted,
            _ => AcceptError::Other,
        }
    }

    fn label(self) -> &'static str {
        match self {
            AcceptError::Aborted => "aborted",
            AcceptError::ProcessFiles => "emfile",
            AcceptError::SystemFiles => "enfile",
            AcceptError::Memory => "nomem",
            AcceptError::Other => "other",
        }
    }
}

/// Which deadline passed, the label of `fivetuple_timeouts_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timeout {
    /// A request took too long to arrive (408).
    Header,
    /// A kept-alive connection sent nothing.
    Idle,
    /// The client did not read what we wrote.
    Send,
    /// A lingering close ran out of time.
    Linger,
}

impl Timeout {
    /// Which timeout a deadline that passed was.
    pub fn of(expiry: &Expiry) -> Timeout {
        match expiry {
            Expiry::RequestTimeout | Expiry::Close(CloseReason::ProxyHeaderTimeout) => {
                Timeout::Header
            }
            Expiry::Close(CloseReason::SendTimeout) => Timeout::Send,
            Expiry::Close(CloseReason::LingerTimeUp) => Timeout::Linger,
            Expiry::Close(_) => Timeout::Idle,
        }
    }

    const ALL: [Timeout; 4] = [
        Timeout::Header,
        Timeout::Idle,
        Timeout::Send,
        Timeout::Linger,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Timeout::Header => "header",
            Timeout::Idle => "idle",
            Timeout::Send => "send",
            Timeout::Linger => "linger",
        }
    }
}

/// Counts per bucket, plus the sum of what was observed.
#[derive(Debug, Clone)]
pub struct Histogram {
    /// Upper bounds of the buckets, ascending; `+Inf` is implied.
    bounds: &'static [u64],
    /// Observations per bucket (not cumulative); the last is `+Inf`.
    counts: Vec<u64>,
    sum: u64,
}

impl Histogram {
    fn new(bounds: &'static [u64]) -> Histogram {
        Histogram {
            bounds,
            counts: vec![0; bounds.len() + 1],
            sum: 0,
        }
    }

    pub fn observe(&mut self, value: u64) {
        let bucket = self.bounds.partition_point(|&bound| bound < value);
        self.counts[bucket] += 1;
        self.sum = self.sum.saturating_add(value);
    }

    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Adds another histogram with the same buckets (another worker's).
    fn add(&mut self, other: &Histogram) {
        debug_assert_eq!(self.bounds, other.bounds);
        for (mine, theirs) in self.counts.iter_mut().zip(&other.counts) {
            *mine += theirs;
        }
        self.sum = self.sum.saturating_add(other.sum);
    }
}

/// Everything the reactor counts as it goes.
#[derive(Debug, Clone)]
pub struct Metrics {
    pub closed: u64,
    /// Bytes of connections already closed (the open ones are summed when asked).
    pub closed_bytes_in: u64,
    pub closed_bytes_out: u64,
    /// Answers produced.
    pub responses: u64,
    /// Answers other than `200 OK` produced, by status class.
    pub not_ok: [u64; 5],
    pub refused: u64,
    pub reclaimed: u64,
    pub lingering: u64,
    /// Event-stream subscribers closed to give their slot to a new viewer.
    pub stream_slots_taken_back: u64,
    accept_errors: [u64; AcceptError::ALL.len()],
    timeouts: [u64; Timeout::ALL.len()],
    /// Events per `epoll_wait`; its count is the number of wake-ups.
    pub poll_events: Histogram,
    /// How long each turn worked, from waking to going back to sleep, in µs.
    pub turn_us: Histogram,
    /// The UDP socket's counters (`--udp`), as it last reported them: it
    /// counts for itself, and the reactor hands its figures over after
    /// each turn of reading.
    pub udp: Option<UdpStats>,
    started: SystemTime,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics {
            closed: 0,
            closed_bytes_in: 0,
            closed_bytes_out: 0,
            responses: 0,
            not_ok: [0; 5],
            refused: 0,
            reclaimed: 0,
            lingering: 0,
            stream_slots_taken_back: 0,
            accept_errors: [0; AcceptError::ALL.len()],
            timeouts: [0; Timeout::ALL.len()],
            poll_events: Histogram::new(EVENT_BUCKETS),
            turn_us: Histogram::new(TURN_BUCKETS_US),
            udp: None,
            started: SystemTime::now(),
        }
    }
}

impl Metrics {
    /// A connection closed, for `why`, having read and written so much: the
    /// counters that follow from its reason are derived here, in one place.
    pub fn count_close(&mut self, why: &CloseReason, bytes_in: u64, bytes_out: u64) {
        self.closed += 1;
        self.closed_bytes_in += bytes_in;
        self.closed_bytes_out += bytes_out;
        match why {
            CloseReason::Reclaimed => self.reclaimed += 1,
            CloseReason::GaveWayToViewer => self.stream_slots_taken_back += 1,
            _ => {}
        }
    }

    pub fn accept_error(&mut self, kind: AcceptError) {
        self.accept_errors[kind as usize] += 1;
    }

    pub fn timeout(&mut self, kind: Timeout) {
        self.timeouts[kind as usize] += 1;
    }

    /// A call of the protocol produced `responses` answers, of which
    /// `not_ok` were other than `200 OK`.
    #[inline]
    pub fn answered(&mut self, responses: u64, not_ok: &StatusClasses) {
        self.responses += responses;
        if !not_ok.is_empty() {
            for (total, n) in self.not_ok.iter_mut().zip(not_ok.0) {
                *total += u64::from(n);
            }
        }
    }

    /// Answers by status class, 1xx to 5xx.
    fn by_class(&self) -> [u64; 5] {
        let mut classes = self.not_ok;
        let ok = self.responses.saturating_sub(self.not_ok.iter().sum());
        classes[1] += ok;
        classes
    }

    /// One turn of the loop worked this long before it went back to sleep.
    pub fn turn_worked(&mut self, worked: Duration) {
        self.turn_us
            .observe(u64::try_from(worked.as_micros()).unwrap_or(u64::MAX));
    }

    /// Adds another worker's counts; the earlier start stays.
    fn add(&mut self, other: &Metrics) {
        self.closed += other.closed;
        self.closed_bytes_in += other.closed_bytes_in;
        self.closed_bytes_out += other.closed_bytes_out;
        self.responses += other.responses;
        add_each(&mut self.not_ok, &other.not_ok);
        self.refused += other.refused;
        self.reclaimed += other.reclaimed;
        self.stream_slots_taken_back += other.stream_slots_taken_back;
        self.lingering += other.lingering;
        add_each(&mut self.accept_errors, &other.accept_errors);
        add_each(&mut self.timeouts, &other.timeouts);
        self.poll_events.add(&other.poll_events);
        self.turn_us.add(&other.turn_us);
        if let Some(theirs) = &other.udp {
            self.udp.get_or_insert_with(UdpStats::default).add(theirs);
        }
        self.started = self.started.min(other.started);
    }
}

fn add_each(mine: &mut [u64], theirs: &[u64]) {
    for (m, t) in mine.iter_mut().zip(theirs) {
        *m += t;
    }
}

/// The figures that are not counters the reactor keeps, read when asked.
#[derive(Debug, Clone, Copy, Default)]
pub struct Gauges {
    pub open: usize,
    pub max_conns: usize,
    pub accepted: u64,
    pub served: u64,
    /// Bytes of the connections open now.
    pub open_bytes_in: u64,
    pub open_bytes_out: u64,
    pub subscribers: usize,
    pub events: u64,
    pub events_dropped: u64,
    pub resyncs: u64,
}

impl Gauges {
    fn add(&mut self, other: &Gauges) {
        self.open += other.open;
        self.max_conns += other.max_conns;
        self.accepted += other.accepted;
        self.served += other.served;
        self.open_bytes_in += other.open_bytes_in;
        self.open_bytes_out += other.open_bytes_out;
        self.subscribers += other.subscribers;
        self.events += other.events;
        self.events_dropped += other.events_dropped;
        self.resyncs += other.resyncs;
    }
}

/// Everything one worker's scrape would show: its counters and what was
/// read from its slab. What a worker posts on the board for the others.
#[derive(Debug, Clone, Default)]
pub struct Figures {
    pub metrics: Metrics,
    pub gauges: Gauges,
}

/// One worker's figures as a scrape sees them.
#[derive(Debug, Clone, Copy)]
pub struct WorkerFigures<'a> {
    pub worker: usize,
    /// How old they are: zero for the worker that answers (its own, live),
    /// the time since the others posted theirs.
    pub age: Duration,
    pub figures: &'a Figures,
}

/// One figure of one worker, for the `fivetuple_worker_*` families.
type PerWorker = fn(&WorkerFigures<'_>) -> f64;

/// Writes the whole server's figures, for several workers: every family
/// of [`render`] with the workers' figures summed (a histogram bucket by
/// bucket), then the `fivetuple_worker_*` families, one series per worker
/// with a `worker` label. The breakdown has families of its own, as
/// Prometheus's naming rules ask: a family's series should add up to
/// something meaningful, and a total beside its own parts would count
/// everything twice in `sum()`. A worker that has posted nothing yet (it
/// started less than a turn ago) adds nothing and has no series.
pub fn render_workers(workers: &[WorkerFigures<'_>], out: &mut Vec<u8>) {
    // Starts now: adding the workers' figures keeps the earliest start.
    let mut total = Figures::default();
    for w in workers {
        total.metrics.add(&w.figures.metrics);
        total.gauges.add(&w.figures.gauges);
    }
    render(&total.metrics, &total.gauges, out);
    let mut t = String::with_capacity(1024 + 400 * workers.len());
    let per_worker: [(&str, &str, &str, PerWorker); 4] = [
        (
            "fivetuple_worker_figures_age_seconds",
            "gauge",
            "How old each worker's figures in this answer are: 0 for the worker that answered, \
             for the others the time since they last posted theirs. A worker posts at most once \
             a second (every 100 ms for a while after /_/conns?workers), and only when it has \
             news: an idle worker's figures stay as they are, and their age grows without bound.",
            |w| w.age.as_secs_f64(),
        ),
        (
            "fivetuple_worker_connections_open",
            "gauge",
            "Connections held now, by worker (--workers).",
            |w| w.figures.gauges.open as f64,
        ),
        (
            "fivetuple_worker_connections_accepted_total",
            "counter",
            "Connections accepted, by worker: how the kernel spread them.",
            |w| w.figures.gauges.accepted as f64,
        ),
        (
            "fivetuple_worker_requests_served_total",
            "counter",
            "Answers written whole to the kernel, by worker.",
            |w| w.figures.gauges.served as f64,
        ),
    ];
    for (name, kind, help, value) in per_worker {
        family(&mut t, name, kind, help);
        for w in workers {
            let _ = writeln!(t, "{name}{{worker=\"{}\"}} {}", w.worker, value(w));
        }
    }
    out.extend_from_slice(t.as_bytes());
}

/// Writes every family in the Prometheus text format, version 0.0.4.
pub fn render(m: &Metrics, g: &Gauges, out: &mut Vec<u8>) {
    let mut t = String::with_capacity(8 * 1024);
    let start = m.started.duration_since(UNIX_EPOCH).unwrap_or_default();
    let udp = m.udp.unwrap_or_default();
    let rows: &[(&str, &str, &str, f64)] = &[
        (
            "fivetuple_start_time_seconds",
            "gauge",
            "When the server started, in seconds since the Unix epoch.",
            start.as_secs_f64(),
        ),
        (
            "fivetuple_generation",
            "gauge",
            "Which copy of the server this is: 1, one more at each restart (SIGHUP).",
            f64::from(crate::restart::generation()),
        ),
        (
            "fivetuple_restarts_total",
            "counter",
            "Restarts that led to this process (its generation less one).",
            f64::from(crate::restart::generation() - 1),
        ),
        (
            "fivetuple_restarts_failed_total",
            "counter",
            "Restarts this process tried that failed (the new copy did not start, exited or was not ready in time).",
            crate::restart::failed_restarts() as f64,
        ),
        (
            "fivetuple_connections_open",
            "gauge",
            "Connections held now, event streams included.",
            g.open as f64,
        ),
        (
            "fivetuple_connections_max",
            "gauge",
            "Most connections held at once (--max-conns).",
            g.max_conns as f64,
        ),
        (
            "fivetuple_connections_accepted_total",
            "counter",
            "Connections accepted.",
            g.accepted as f64,
        ),
        (
            "fivetuple_connections_closed_total",
            "counter",
            "Connections closed, whatever the reason.",
            m.closed as f64,
        ),
        (
            "fivetuple_connections_refused_total",
            "counter",
            "Connections answered 503 and closed because the server was full.",
            m.refused as f64,
        ),
        (
            "fivetuple_connections_reclaimed_total",
            "counter",
            "Idle connections closed to make room for a new one.",
            m.reclaimed as f64,
        ),
        (
            "fivetuple_event_slots_taken_back_total",
            "counter",
            "/_/events subscribers closed to give their slot to a new viewer (all slots were taken).",
            m.stream_slots_taken_back as f64,
        ),
        (
            "fivetuple_lingering_closes_total",
            "counter",
            "Closes that read and discarded what the client still sent (lingering close).",
            m.lingering as f64,
        ),
        (
            "fivetuple_requests_served_total",
            "counter",
            "Answers written whole to the kernel.",
            g.served as f64,
        ),
        (
            "fivetuple_received_bytes_total",
            "counter",
            "Bytes read from clients: TCP connections and UDP datagrams (--udp).",
            (m.closed_bytes_in + g.open_bytes_in + udp.bytes_in) as f64,
        ),
        (
            "fivetuple_sent_bytes_total",
            "counter",
            "Bytes written to clients: TCP connections and UDP answers (--udp).",
            (m.closed_bytes_out + g.open_bytes_out + udp.bytes_out) as f64,
        ),
        (
            "fivetuple_event_subscribers",
            "gauge",
            "Connections subscribed to /_/events.",
            g.subscribers as f64,
        ),
        (
            "fivetuple_events_total",
            "counter",
            "Events published to /_/events subscribers.",
            g.events as f64,
        ),
        (
            "fivetuple_events_dropped_total",
            "counter",
            "Events a slow /_/events subscriber missed (it was told to re-sync).",
            g.events_dropped as f64,
        ),
        (
            "fivetuple_event_resyncs_total",
            "counter",
            "Times a /_/events subscriber was told to re-sync from a snapshot.",
            g.resyncs as f64,
        ),
    ];
    for &(name, kind, help, value) in rows {
        family(&mut t, name, kind, help);
        let _ = writeln!(t, "{name} {value}");
    }
    let classes = ["1xx", "2xx", "3xx", "4xx", "5xx"];
    let name = "fivetuple_http_responses_total";
    family(
        &mut t,
        name,
        "counter",
        "Answers produced, by status class.",
    );
    for (class, n) in classes.iter().zip(m.by_class()) {
        let _ = writeln!(t, "{name}{{class=\"{class}\"}} {n}");
    }
    let name = "fivetuple_accept_errors_total";
    family(&mut t, name, "counter", "accept() failures, by kind.");
    for (kind, n) in AcceptError::ALL.iter().zip(m.accept_errors) {
        let _ = writeln!(t, "{name}{{kind=\"{}\"}} {n}", kind.label());
    }
    let name = "fivetuple_timeouts_total";
    family(&mut t, name, "counter", "Deadlines that passed, by kind.");
    for (kind, n) in Timeout::ALL.iter().zip(m.timeouts) {
        let _ = writeln!(t, "{name}{{kind=\"{}\"}} {n}", kind.label());
    }
    let help = "Events returned by one epoll_wait; the count is the number of wake-ups.";
    histogram(&mut t, "fivetuple_poll_events", help, &m.poll_events, 1.0);
    let help = "How long one turn of the event loop worked, from waking to sleeping again.";
    histogram(
        &mut t,
        "fivetuple_loop_turn_duration_seconds",
        help,
        &m.turn_us,
        1e6,
    );
    if let Some(udp) = &m.udp {
        render_udp(&mut t, udp);
    }
    out.extend_from_slice(t.as_bytes());
}

/// The UDP socket's families, with `--udp`. Every datagram read ends in
/// one of four: answered (`sent`), refused on purpose (by reason),
/// dropped (a full send buffer) or failed, so the four add up to
/// `fivetuple_udp_datagrams_received_total`.
fn render_udp(t: &mut String, udp: &UdpStats) {
    let rows: &[(&str, &str, &str, f64)] = &[
        (
            "fivetuple_udp_datagrams_received_total",
            "counter",
            "Datagrams read from the UDP socket (--udp), answered or not.",
            udp.datagrams_in as f64,
        ),
        (
            "fivetuple_udp_datagrams_sent_total",
            "counter",
            "Answers sent, one datagram each, none longer than the datagram it answers.",
            udp.datagrams_out as f64,
        ),
        (
            "fivetuple_udp_received_bytes_total",
            "counter",
            "Bytes of the datagrams read (also in fivetuple_received_bytes_total).",
            udp.bytes_in as f64,
        ),
        (
            "fivetuple_udp_sent_bytes_total",
            "counter",
            "Bytes of the answers sent (also in fivetuple_sent_bytes_total).",
            udp.bytes_out as f64,
        ),
        (
            "fivetuple_udp_answers_dropped_total",
            "counter",
            "Answers dropped because the socket's send buffer was full: a UDP server never waits.",
            udp.dropped as f64,
        ),
        (
            "fivetuple_udp_answers_failed_total",
            "counter",
            "Answers the kernel would not send (no route, a firewall's rule).",
            udp.failed as f64,
        ),
        (
            "fivetuple_udp_peers",
            "gauge",
            "UDP peers remembered now: at most 1,024, each forgotten after 30 s of silence.",
            udp.peers as f64,
        ),
        (
            "fivetuple_udp_peers_evicted_total",
            "counter",
            "UDP peers forgotten early to make room for a new one: the table is full.",
            udp.evicted as f64,
        ),
    ];
    for &(name, kind, help, value) in rows {
        family(t, name, kind, help);
        let _ = writeln!(t, "{name} {value}");
    }
    let name = "fivetuple_udp_refused_total";
    family(
        t,
        name,
        "counter",
        "Datagrams left unanswered on purpose, by reason: a source no client sends from \
         (port_zero, own_port, service_port, not_unicast), an answer of a fivetuple server \
         (own_answer), shorter than its answer would be (too_short), over the source's rate or \
         the total rate (source_rate, total_rate).",
    );
    for why in Refusal::ALL {
        let _ = writeln!(
            t,
            "{name}{{reason=\"{}\"}} {}",
            why.label(),
            udp.refused.get(why)
        );
    }
}

fn family(t: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(t, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// A histogram's cumulative buckets, sum and count; the recorded unit
/// divided by `per_unit` is the family's (µs by a million: seconds).
fn histogram(t: &mut String, name: &str, help: &str, h: &Histogram, per_unit: f64) {
    family(t, name, "histogram", help);
    let mut cumulative = 0;
    for (bound, n) in h.bounds.iter().zip(&h.counts) {
        cumulative += n;
        let le = *bound as f64 / per_unit;
        let _ = writeln!(t, "{name}_bucket{{le=\"{le}\"}} {cumulative}");
    }
    let _ = writeln!(t, "{name}_bucket{{le=\"+Inf\"}} {}", h.count());
    let _ = writeln!(t, "{name}_sum {}", h.sum as f64 / per_unit);
    let _ = writeln!(t, "{name}_count {}", h.count());
}

/// The server's own output (`crate::sink`): lines dropped because their
/// reader was too slow, per output. Process-wide, so written once, after
/// the figures of every worker.
pub fn render_output(output: &Output, out: &mut Vec<u8>) {
    let mut t = String::new();
    let name = "fivetuple_output_lines_dropped_total";
    family(
        &mut t,
        name,
        "counter",
        "Lines of the log, access log or trace dropped because their reader was too slow (never waited for).",
    );
    for (what, sink) in output.sinks() {
        let _ = writeln!(t, "{name}{{output=\"{what}\"}} {}", sink.dropped());
    }
    out.extend_from_slice(t.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(m: &Metrics) -> String {
        let mut out = Vec::new();
        render(m, &Gauges::default(), &mut out);
        String::from_utf8(out).unwrap()
    }

    /// Two workers' figures, as one scrape writes them.
    fn two_workers() -> String {
        let mut a = Figures::default();
        a.metrics.closed = 3;
        a.metrics.poll_events.observe(1);
        a.metrics.timeout(Timeout::Idle);
        a.gauges.open = 2;
        a.gauges.accepted = 5;
        let mut b = a.clone();
        b.metrics.poll_events.observe(700);
        b.gauges.open = 1;
        let workers = [
            WorkerFigures {
                worker: 0,
                age: Duration::ZERO,
                figures: &a,
            },
            WorkerFigures {
                worker: 1,
                age: Duration::from_millis(250),
                figures: &b,
            },
        ];
        let mut out = Vec::new();
        render_workers(&workers, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn several_workers_are_added_up_and_broken_down_in_families_of_their_own() {
        let t = two_workers();
        for line in [
            "fivetuple_connections_open 3\n",
            "fivetuple_connections_accepted_total 10\n",
            "fivetuple_connections_closed_total 6\n",
            "fivetuple_timeouts_total{kind=\"idle\"} 2\n",
            "fivetuple_poll_events_bucket{le=\"1\"} 2\n",
            "fivetuple_poll_events_bucket{le=\"1024\"} 3\n",
            "fivetuple_poll_events_count 3\n",
            "fivetuple_worker_connections_open{worker=\"0\"} 2\n",
            "fivetuple_worker_connections_open{worker=\"1\"} 1\n",
            "fivetuple_worker_figures_age_seconds{worker=\"1\"} 0.25\n",
        ] {
            assert!(t.contains(line), "no {line:?} in\n{t}");
        }
        assert_eq!(t.matches("# TYPE fivetuple_connections_open ").count(), 1);
    }

    #[test]
    fn every_sample_belongs_to_a_family_with_help_and_type() {
        for t in [text(&Metrics::default()), two_workers()] {
            every_sample_has_its_family(&t);
        }
    }

    fn every_sample_has_its_family(t: &str) {
        let mut typed = Vec::new();
        for line in t.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap();
                assert!(["counter", "gauge", "histogram"].contains(&kind));
                if kind == "counter" {
                    assert!(name.ends_with("_total"), "{name}");
                }
                typed.push(name.to_string());
            } else if !line.starts_with('#') {
                let name = line.split(['{', ' ']).next().unwrap();
                let family = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|s| name.strip_suffix(s))
                    .filter(|f| typed.iter().any(|t| t == f))
                    .unwrap_or(name);
                assert_eq!(typed.last().map(String::as_str), Some(family), "{line}");
            }
        }
        let all = typed.len();
        typed.sort();
        typed.dedup();
        assert_eq!(typed.len(), all, "a family is typed twice");
    }

    #[test]
    fn histogram_buckets_are_cumulative_and_end_in_the_count() {
        let mut m = Metrics::default();
        for events in [0, 1, 1, 3, 2000] {
            m.poll_events.observe(events);
        }
        m.poll_events.observe(5); // 0, 1, 1, 3, 2000, 5
        m.turn_worked(Duration::from_micros(30));
        let t = text(&m);
        assert!(
            t.contains("fivetuple_poll_events_bucket{le=\"0\"} 1\n"),
            "{t}"
        );
        assert!(
            t.contains("fivetuple_poll_events_bucket{le=\"1\"} 3\n"),
            "{t}"
        );
        assert!(
            t.contains("fivetuple_poll_events_bucket{le=\"4\"} 4\n"),
            "{t}"
        );
        assert!(
            t.contains("fivetuple_poll_events_bucket{le=\"1024\"} 5\n"),
            "{t}"
        );
        assert!(
            t.contains("fivetuple_poll_events_bucket{le=\"+Inf\"} 6\n"),
            "{t}"
        );
        assert!(t.contains("fivetuple_poll_events_count 6\n"), "{t}");
        assert!(
            t.contains("fivetuple_loop_turn_duration_seconds_bucket{le=\"0.00005\"} 1\n"),
            "{t}"
        );
        assert!(
            t.contains("fivetuple_loop_turn_duration_seconds_sum 0.00003\n"),
            "{t}"
        );
    }

    #[test]
    fn udp_families_show_with_a_udp_socket_and_its_bytes_count_in_the_totals() {
        assert!(!text(&Metrics::default()).contains("fivetuple_udp_"));
        let mut udp = UdpStats {
            datagrams_in: 6,
            datagrams_out: 2,
            bytes_in: 700,
            bytes_out: 90,
            dropped: 1,
            peers: 2,
            evicted: 3,
            ..UdpStats::default()
        };
        udp.refused.count(Refusal::OwnPort);
        udp.refused.count(Refusal::OwnPort);
        udp.refused.count(Refusal::TooShort);
        let m = Metrics {
            udp: Some(udp),
            ..Metrics::default()
        };
        let t = text(&m);
        for line in [
            "fivetuple_udp_datagrams_received_total 6\n",
            "fivetuple_udp_datagrams_sent_total 2\n",
            "fivetuple_udp_answers_dropped_total 1\n",
            "fivetuple_udp_peers 2\n",
            "fivetuple_udp_peers_evicted_total 3\n",
            "fivetuple_udp_refused_total{reason=\"own_port\"} 2\n",
            "fivetuple_udp_refused_total{reason=\"too_short\"} 1\n",
            "fivetuple_udp_refused_total{reason=\"total_rate\"} 0\n",
            "fivetuple_received_bytes_total 700\n",
            "fivetuple_sent_bytes_total 90\n",
        ] {
            assert!(t.contains(line), "no {line:?} in\n{t}");
        }
        every_sample_has_its_family(&t);
        // With workers, the one UDP socket's figures are added in as they are.
        let mut a = Figures::default();
        a.metrics.udp = Some(udp);
        let b = Figures::default();
        let mut out = Vec::new();
        let workers = [(0, &a), (1, &b)].map(|(worker, figures)| WorkerFigures {
            worker,
            age: Duration::ZERO,
            figures,
        });
        render_workers(&workers, &mut out);
        let t = String::from_utf8(out).unwrap();
        assert!(
            t.contains("fivetuple_udp_datagrams_received_total 6\n"),
            "{t}"
        );
    }

    #[test]
    fn labels_name_the_kind() {
        let mut m = Metrics::default();
        m.accept_error(AcceptError::of(&io::Error::from_raw_os_error(libc::EMFILE)));
        m.timeout(Timeout::Idle);
        let t = text(&m);
        assert!(
            t.contains("fivetuple_accept_errors_total{kind=\"emfile\"} 1\n"),
            "{t}"
        );
        assert!(
            t.contains("fivetuple_timeouts_total{kind=\"idle\"} 1\n"),
            "{t}"
        );
    }
}
