//! Test harness: start the real `fivetuple` binary on 127.0.0.1:0, read the
//! port from its `listening on` line, talk raw HTTP to it, stop it.
//!
//! Nothing here sleeps to synchronise: the server is ready when it has
//! printed its line, and conditions are polled with a deadline.
//!
//! Every response a test reads goes through [`read_response_to`], which
//! checks it the way a strict client (h11, llhttp) would: a well-formed
//! status line and header fields, exactly one way to find the end of the
//! body, no body where none may be, a `Date`. A violation fails the test
//! that happened to read it, with the raw head in the message, so a framing
//! slip anywhere in the server shows up in every suite.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, OnceLock, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

/// The binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_fivetuple")
}

/// A running `fivetuple serve`, killed when dropped.
pub struct Server {
    child: Child,
    pub addr: SocketAddr,
    stdout: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<Vec<String>>>,
    /// The threads that collect stdout and stderr, line by line; each ends
    /// when the server has exited and its last line is in.
    readers: [thread::JoinHandle<()>; 2],
}

impl Server {
    /// Starts `fivetuple serve --listen 127.0.0.1:0` with extra arguments.
    pub fn start(extra: &[&str]) -> Server {
        Server::start_with(extra, &[])
    }

    /// Like `start`, with environment variables (RUST_LOG, say).
    pub fn start_with(extra: &[&str], env: &[(&str, &str)]) -> Server {
        let mut cmd = Command::new(bin());
        cmd.args(["serve", "--listen", "127.0.0.1:0"]).args(extra);
        Server::spawn(cmd, env)
    }

    /// Starts a prepared command whose first stdout line is `listening on ADDR`.
    pub fn spawn(mut cmd: Command, env: &[(&str, &str)]) -> Server {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn fivetuple");
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let out = BufReader::new(child.stdout.take().expect("stdout"));
        let out_lines = stdout.clone();
        let out_reader = thread::spawn(move || {
            for line in out.lines().map_while(Result::ok) {
                if let Some(rest) = line.strip_prefix("listening on ") {
                    // `ADDR`, or `ADDR (tcp and udp)` with --udp.
                    let addr = rest.split_whitespace().next().unwrap_or_default();
                    let _ = tx.send(addr.to_string());
                }
                out_lines.lock().unwrap().push(line);
            }
        });
        let err = BufReader::new(child.stderr.take().expect("stderr"));
        let err_lines = stderr.clone();
        let err_reader = thread::spawn(move || {
            for line in err.lines().map_while(Result::ok) {
                err_lines.lock().unwrap().push(line);
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(addr) => addr.parse().expect("listening address"),
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "server did not print `listening on`; stderr: {:?}",
                    stderr.lock().unwrap()
                );
            }
        };
        Server {
            child,
            addr,
            stdout,
            stderr,
            readers: [out_reader, err_reader],
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// A new blocking connection with generous timeouts (a hung server fails the test, not CI).
    pub fn connect(&self) -> TcpStream {
        let s = TcpStream::connect(self.addr).expect("connect");
        with_timeouts(s)
    }

    /// A connection whose receive buffer is `bytes` (the kernel doubles it,
    /// and keeps it above its own minimum), so that a big answer stays
    /// mostly on the server's side while the test does not read (a small
    /// buffer), or fits whole in ours before we read (a large one). It is
    /// set before connecting: the window is agreed in the handshake, and
    /// shrunk later, the kernel falls back on slow zero-window probes.
    pub fn connect_with_receive_buffer(&self, bytes: usize) -> TcpStream {
        let domain = socket2::Domain::for_address(self.addr);
        let socket = socket2::Socket::new(domain, socket2::Type::STREAM, None).expect("socket");
        socket.set_recv_buffer_size(bytes).expect("SO_RCVBUF");
        socket.connect(&self.addr.into()).expect("connect");
        with_timeouts(socket.into())
    }

    /// A connection with a cramped receive buffer (4 KiB asked, which the
    /// kernel doubles): what the server writes to it piles up on the
    /// server's side as soon as the test stops reading, so a big answer is
    /// sent over many turns, each when the test has made room.
    pub fn connect_cramped(&self) -> TcpStream {
        self.connect_with_receive_buffer(4096)
    }

    /// A connection with a roomy receive buffer (4 MiB asked, as far as
    /// `net.core.rmem_max` allows): an answer of a few hundred KiB fits in
    /// it whole, so the server finishes writing before the test reads.
    pub fn connect_roomy(&self) -> TcpStream {
        self.connect_with_receive_buffer(4 << 20)
    }

    /// One GET on a fresh connection.
    pub fn get(&self, path: &str) -> Response {
        let mut s = self.connect();
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        read_response(&mut s).expect("a response")
    }

    /// Sends a signal to the server.
    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, sig) };
    }

    /// Waits for the server to exit, and for all it printed to be read
    /// ([`stdout`](Self::stdout) then holds its last line), failing the
    /// test after `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                let read = poll_until(deadline.saturating_duration_since(Instant::now()), || {
                    self.readers.iter().all(thread::JoinHandle::is_finished)
                });
                assert!(
                    read,
                    "server exited, but its output did not end within {limit:?}"
                );
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "server did not exit within {limit:?}"
            );
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Everything the server printed on stdout so far.
    pub fn stdout(&self) -> Vec<String> {
        self.stdout.lock().unwrap().clone()
    }

    /// Everything the server printed on stderr so far.
    pub fn stderr(&self) -> Vec<String> {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits until some stderr line contains `needle`.
    pub fn wait_for_log(&self, needle: &str, limit: Duration) -> String {
        let mut found = None;
        wait_until(limit, || {
            found = self.stderr().into_iter().find(|l| l.contains(needle));
            found.is_some()
        });
        found.unwrap_or_else(|| panic!("no log line with {needle:?} in {:?}", self.stderr()))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Read and write timeouts long enough for a loaded machine and short
/// enough that a hung server fails the test instead of hanging CI.
fn with_timeouts(s: TcpStream) -> TcpStream {
    s.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("read timeout");
    s.set_write_timeout(Some(Duration::from_secs(20)))
        .expect("write timeout");
    s
}

/// A scratch directory of the test's own, removed when dropped, also when
/// the test fails. Its name holds `name`, the process id and a counter, so
/// tests running at once, in this process or another, never share one.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("fivetuple-{name}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    /// The directory as a command-line argument (`--dir`).
    pub fn arg(&self) -> &str {
        self.0.to_str().expect("a temporary path in UTF-8")
    }

    pub fn join(&self, rel: &str) -> PathBuf {
        self.0.join(rel)
    }

    /// Writes the file `rel` (its folders made as needed); its path.
    pub fn write(&self, rel: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let path = self.0.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap_or_else(|e| panic!("{}: {e}", parent.display()));
        }
        std::fs::write(&path, contents).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        // A process that has just been killed may still have a file of its
        // own being created in here: try again for a moment.
        poll_until(Duration::from_secs(5), || {
            std::fs::remove_dir_all(&self.0).is_ok() || !self.0.exists()
        });
    }
}

/// Raises this process's soft limit on open files to its hard limit (once;
/// later calls only read it) and returns the soft limit now in force.
/// Children inherit it, so the servers a test starts get it too (they
/// raise their own anyway). A normal user's soft limit is 1024 on most
/// distributions while the hard one is far higher: a test that holds a
/// thousand connections needs the difference.
pub fn raise_fd_limit() -> u64 {
    static RAISED: OnceLock<u64> = OnceLock::new();
    *RAISED.get_or_init(|| {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes into the struct we pass and reads nothing else.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
            return 1024; // the usual soft limit: the tests size themselves by it
        }
        // An unlimited hard limit still stops at the kernel's fs.nr_open.
        let nr_open = std::fs::read_to_string("/proc/sys/fs/nr_open")
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(1 << 20);
        let want = limit.rlim_max.min(nr_open);
        if limit.rlim_cur < want {
            let raised = libc::rlimit {
                rlim_cur: want,
                rlim_max: limit.rlim_max,
            };
            // SAFETY: setrlimit only reads the struct we pass.
            if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
                limit.rlim_cur = want;
            }
        }
        limit.rlim_cur
    })
}

/// Descriptors this process keeps back from [`Descriptors::lend`] for
/// itself: the harness's own, and the pipes to the servers' output.
const FD_SPARE_HARNESS: usize = 64;

/// Descriptors kept back for each test that may run beside a borrower:
/// tests that borrow none still open up to a couple of hundred sockets
/// (a hundred clients of a download, two hundred UDP sources).
const FD_SPARE_PER_TEST: usize = 256;

/// How long a test waits for descriptors that other tests in this process
/// hold, before it fails: longer than any of them holds theirs.
const FD_WAIT: Duration = Duration::from_secs(300);

/// How many tests the harness runs at once: `--test-threads N`, else
/// `RUST_TEST_THREADS`, else one per core, as libtest decides.
pub fn test_threads() -> usize {
    let mut args = std::env::args();
    let mut from_args = None;
    while let Some(arg) = args.next() {
        if arg == "--test-threads" {
            from_args = args.next();
        } else if let Some(n) = arg.strip_prefix("--test-threads=") {
            from_args = Some(n.to_string());
        }
    }
    from_args
        .or_else(|| std::env::var("RUST_TEST_THREADS").ok())
        .and_then(|n| n.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or_else(|| thread::available_parallelism().map_or(1, |n| n.get()))
}

/// What [`Descriptors::lend`] keeps back of `limit`: the harness's share,
/// and one per test that may run beside a borrower, so that those tests
/// find room whatever the borrower holds; never more than half the limit,
/// so that a small limit still leaves the borrowers something.
fn fd_spare(limit: usize, threads: usize) -> usize {
    let beside = threads.saturating_sub(1);
    (FD_SPARE_HARNESS + beside * FD_SPARE_PER_TEST).min(limit / 2)
}

/// The descriptors of this process that are lent out, and a way to wait
/// for some to come back.
struct FdPool {
    /// All that can be lent: the soft limit, raised, less [`fd_spare`].
    total: usize,
    lent: Mutex<usize>,
    returned: Condvar,
}

fn fd_pool() -> &'static FdPool {
    static POOL: OnceLock<FdPool> = OnceLock::new();
    POOL.get_or_init(|| {
        let limit = usize::try_from(raise_fd_limit()).unwrap_or(usize::MAX);
        FdPool {
            total: limit - fd_spare(limit, test_threads()),
            lent: Mutex::new(0),
            returned: Condvar::new(),
        }
    })
}

/// A share of this process's open-files limit, held by one test that opens
/// many connections at once, and given back when dropped. Every module of
/// the suite runs in parallel threads of one process, under one limit: two
/// tests that each hold a thousand connections, from the same module or
/// two, do not fit under a soft limit of 1024, and under a small hard limit
/// even one may not. Lending makes each take its share in turn, so every
/// test gets the same number whatever runs beside it.
pub struct Descriptors {
    count: usize,
}

impl Descriptors {
    /// Raises the soft limit ([`raise_fd_limit`]), then lends `want`
    /// descriptors, or all that the limit allows if that is fewer, waiting
    /// for other tests to give theirs back when they are out. The caller
    /// sizes itself by [`count`](Self::count);
    /// `privilege::descriptors` also notes or skips a test that got less.
    pub fn lend(want: usize) -> Descriptors {
        let pool = fd_pool();
        let count = want.min(pool.total);
        let lent = pool.lent.lock().unwrap_or_else(PoisonError::into_inner);
        let (mut lent, waited) = pool
            .returned
            .wait_timeout_while(lent, FD_WAIT, |lent| pool.total - *lent < count)
            .unwrap_or_else(PoisonError::into_inner);
        assert!(
            !waited.timed_out(),
            "waited {FD_WAIT:?} for {count} descriptors that other tests hold"
        );
        *lent += count;
        Descriptors { count }
    }

    /// How many descriptors the test may open.
    pub fn count(&self) -> usize {
        self.count
    }

    /// The soft open-files limit they come from.
    pub fn limit(&self) -> u64 {
        raise_fd_limit()
    }
}

impl Drop for Descriptors {
    fn drop(&mut self) {
        let pool = fd_pool();
        let mut lent = pool.lent.lock().unwrap_or_else(PoisonError::into_inner);
        *lent -= self.count;
        pool.returned.notify_all();
    }
}

/// Polls `cond` until it is true, panicking after `limit`.
pub fn wait_until(limit: Duration, cond: impl FnMut() -> bool) {
    assert!(
        poll_until(limit, cond),
        "condition not met within {limit:?}"
    );
}

/// Polls `cond` until it is true (`true`) or `limit` has passed (`false`),
/// for a caller that explains a timeout better than "condition not met".
pub fn poll_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while !cond() {
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(5));
    }
    true
}

/// A parsed HTTP response.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Reads one response to a request that was not HEAD, checking it (see
/// [`read_response_to`]). `None` if the connection closed first.
pub fn read_response(s: &mut impl Read) -> Option<Response> {
    read_response_to(s, false)
}

/// Longest response head the checker reads before it calls the response
/// broken: the server's heads are a few hundred bytes.
const MAX_RESPONSE_HEAD: usize = 64 * 1024;

/// Reads one response to a request (`head`: it was a HEAD, so no body
/// follows whatever the headers say), and checks that it obeys RFC 9112:
///
/// - the status line is `HTTP/1.1 DDD reason` (a reference server that
///   names itself in `Server` and is not this one may say `HTTP/1.0`);
/// - every line ends with CRLF, and there is no CR or LF anywhere else;
/// - header names are tokens, directly followed by the colon; values hold
///   no control characters;
/// - the body has exactly one framing: `Content-Length` (once, plain
///   digits) or `Transfer-Encoding: chunked`, never both; read-to-close
///   only with `Connection: close` and neither header;
/// - answers to HEAD, and 1xx, 204 and 304 answers, have no body; 1xx and
///   204 carry neither `Content-Length` nor `Transfer-Encoding`;
/// - every answer but a 1xx has a `Date` in IMF-fixdate form.
///
/// A violation panics with the raw head. `None` if the connection closed
/// or failed before the whole response arrived.
pub fn read_response_to(s: &mut impl Read, head: bool) -> Option<Response> {
    let raw = read_raw_head(s)?;
    let checked = check_head(&raw, head);
    let body = match checked.framing {
        Framing::Empty => Vec::new(),
        Framing::Length(n) => {
            let mut body = vec![0; n];
            s.read_exact(&mut body).ok()?;
            body
        }
        Framing::Chunked => read_chunked(s, &raw)?,
        Framing::UntilClose => {
            let mut body = Vec::new();
            s.read_to_end(&mut body).ok()?;
            body
        }
    };
    Some(Response {
        status: checked.status,
        headers: checked.headers,
        body,
    })
}

/// How the end of a response's body is found.
enum Framing {
    Empty,
    Length(usize),
    Chunked,
    UntilClose,
}

struct CheckedHead {
    status: u16,
    headers: Vec<(String, String)>,
    framing: Framing,
}

/// Fails the test with the rule broken and the head as received.
fn violation(raw: &[u8], why: &str) -> ! {
    panic!(
        "response violates HTTP/1.1: {why}\n--- raw head ---\n{}",
        String::from_utf8_lossy(raw).escape_debug()
    )
}

/// Reads up to and including the empty line, byte by byte so that nothing
/// after the head is consumed. Panics on a bare CR or LF; `None` on EOF.
fn read_raw_head(s: &mut impl Read) -> Option<Vec<u8>> {
    let mut raw = Vec::new();
    let mut byte = [0u8; 1];
    while !raw.ends_with(b"\r\n\r\n") {
        match s.read(&mut byte) {
            Ok(1) => raw.push(byte[0]),
            _ => return None,
        }
        let n = raw.len();
        if raw[n - 1] == b'\n' && (n < 2 || raw[n - 2] != b'\r') {
            violation(&raw, "a bare LF (a line not ended by CRLF)");
        }
        if n >= 2 && raw[n - 2] == b'\r' && raw[n - 1] != b'\n' {
            violation(&raw, "a bare CR");
        }
        if n > MAX_RESPONSE_HEAD {
            violation(&raw[..200], "a head of more than 64 KiB");
        }
    }
    Some(raw)
}

/// A header name is a token (RFC 9110 §5.6.2).
fn is_token(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Text of a reason phrase or field value: tab, space, visible ASCII, or
/// bytes above 127; no other control characters.
fn is_field_text(bytes: &[u8]) -> bool {
    bytes
        .iter()
        .all(|&b| b == b'\t' || b == b' ' || (b > 0x20 && b != 0x7f))
}

fn check_head(raw: &[u8], head: bool) -> CheckedHead {
    let lines: Vec<&[u8]> = raw[..raw.len() - 4]
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .collect();
    let status_line = lines[0];
    let mut headers = Vec::new();
    for line in &lines[1..] {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            violation(raw, "a header line without a colon");
        };
        let name = std::str::from_utf8(&line[..colon]).unwrap_or("");
        if !is_token(name) {
            violation(
                raw,
                "a header name that is not a token (or whitespace before the colon)",
            );
        }
        let value = &line[colon + 1..];
        if !is_field_text(value) {
            violation(raw, "a control character in a header value");
        }
        let value = String::from_utf8_lossy(value)
            .trim_matches([' ', '\t'])
            .to_string();
        headers.push((name.to_string(), value));
    }
    let all = |name: &str| {
        headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect::<Vec<_>>()
    };
    let ours = all("Server")
        .first()
        .is_none_or(|server| server.starts_with("fivetuple/"));

    // Status line.
    let version = &status_line[..status_line.len().min(9)];
    let http10 = version == b"HTTP/1.0 ";
    let version_ok = version == b"HTTP/1.1 " || (http10 && !ours);
    if !version_ok {
        violation(raw, "the status line does not start with \"HTTP/1.1 \"");
    }
    let code = status_line.get(9..12).unwrap_or(b"");
    if code.len() != 3 || !code.iter().all(u8::is_ascii_digit) || code[0] == b'0' {
        violation(raw, "the status code is not three digits from 100");
    }
    if status_line.get(12) != Some(&b' ') || !is_field_text(&status_line[13..]) {
        violation(
            raw,
            "the status code is not followed by a space and a reason",
        );
    }
    let status: u16 = std::str::from_utf8(code).unwrap().parse().unwrap();

    // Date.
    if status >= 200 {
        match all("Date")[..] {
            [date] if date.len() == 29 && date.ends_with(" GMT") => {
                if httpdate::parse_http_date(date).is_err() {
                    violation(raw, "a Date that is not an IMF-fixdate");
                }
            }
            [_] => violation(raw, "a Date that is not an IMF-fixdate"),
            [] => violation(raw, "no Date header"),
            _ => violation(raw, "more than one Date header"),
        }
    }

    // Framing.
    let lengths = all("Content-Length");
    let encodings = all("Transfer-Encoding");
    if lengths.len() > 1 {
        violation(raw, "more than one Content-Length");
    }
    if encodings.len() > 1 {
        violation(raw, "more than one Transfer-Encoding");
    }
    let length = lengths.first().map(|v| {
        if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
            violation(raw, "a Content-Length that is not plain digits");
        }
        v.parse::<usize>()
            .unwrap_or_else(|_| violation(raw, "a Content-Length too large"))
    });
    let chunked = encodings.first().map(|v| {
        if !v.eq_ignore_ascii_case("chunked") {
            violation(raw, "a Transfer-Encoding other than chunked");
        }
    });
    if length.is_some() && chunked.is_some() {
        violation(raw, "both Content-Length and Transfer-Encoding");
    }
    if (status < 200 || status == 204) && (length.is_some() || chunked.is_some()) {
        violation(raw, "Content-Length or Transfer-Encoding on a 1xx or 204");
    }
    let closes = all("Connection")
        .iter()
        .flat_map(|v| v.split(','))
        .any(|token| token.trim().eq_ignore_ascii_case("close"));
    let framing = if head || status < 200 || status == 204 || status == 304 {
        Framing::Empty
    } else if let Some(n) = length {
        Framing::Length(n)
    } else if chunked.is_some() {
        Framing::Chunked
    } else if closes || http10 {
        Framing::UntilClose
    } else {
        violation(
            raw,
            "no framing: neither Content-Length, chunked, nor Connection: close",
        )
    };
    CheckedHead {
        status,
        headers,
        framing,
    }
}

/// Reads a chunked body strictly: hex sizes, CRLF after each size line and
/// each chunk, trailers up to the empty line.
fn read_chunked(s: &mut impl Read, raw: &[u8]) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line = read_crlf_line(s, raw)?;
        let size_text = line.split(|&b| b == b';').next().unwrap_or(b"");
        let size = std::str::from_utf8(size_text)
            .ok()
            .filter(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_hexdigit()))
            .and_then(|t| usize::from_str_radix(t, 16).ok())
            .unwrap_or_else(|| violation(raw, "a malformed chunk size line"));
        if size == 0 {
            break;
        }
        let start = body.len();
        body.resize(start + size, 0);
        s.read_exact(&mut body[start..]).ok()?;
        if !read_crlf_line(s, raw)?.is_empty() {
            violation(raw, "chunk data longer than its size");
        }
    }
    while !read_crlf_line(s, raw)?.is_empty() {} // trailer fields
    Some(body)
}

/// One line ended by CRLF, without it; panics on a bare LF.
fn read_crlf_line(s: &mut impl Read, raw: &[u8]) -> Option<Vec<u8>> {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while !line.ends_with(b"\r\n") {
        s.read_exact(&mut byte).ok()?;
        line.push(byte[0]);
        if byte[0] == b'\n' && !line.ends_with(b"\r\n") {
            violation(raw, "a bare LF in a chunked body");
        }
        if line.len() > MAX_RESPONSE_HEAD {
            violation(raw, "a chunk line of more than 64 KiB");
        }
    }
    line.truncate(line.len() - 2);
    Some(line)
}

/// Reads until the peer closes (or the read timeout), returning all bytes.
pub fn read_to_close(s: &mut TcpStream) -> Vec<u8> {
    let mut all = Vec::new();
    let _ = s.read_to_end(&mut all);
    all
}

/// How many descriptors a process has open (0 once it is gone).
pub fn fd_count(pid: u32) -> usize {
    open_fds(pid).len()
}

/// The descriptor numbers a process has open, in order (none once it is gone).
pub fn open_fds(pid: u32) -> Vec<i32> {
    let mut fds: Vec<i32> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|dir| {
            dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    fds.sort_unstable();
    fds
}

/// What each open descriptor of a process is (`3 -> socket:[1234]`), for
/// a message about a descriptor left behind.
pub fn describe_fds(pid: u32) -> Vec<String> {
    open_fds(pid)
        .into_iter()
        .map(|fd| {
            let target = std::fs::read_link(format!("/proc/{pid}/fd/{fd}"))
                .map_or_else(|e| e.to_string(), |t| t.display().to_string());
            format!("{fd} -> {target}")
        })
        .collect()
}

/// Resident memory of a process, in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// CPU time (user + system) of a process, in clock ticks.
pub fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) start after ')'.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    field(11) + field(12) // utime, stime (fields 14 and 15 of the whole line)
}

/// Runs `fivetuple connect ARGS` to the end and returns what it did.
pub fn run_connect(args: &[&str]) -> std::process::Output {
    Command::new(bin())
        .arg("connect")
        .args(args)
        .output()
        .expect("run fivetuple connect")
}

/// A finished command's stdout and stderr, as text.
pub fn stdout_and_stderr(out: &std::process::Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
