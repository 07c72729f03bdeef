//! The live machinery, black-box: the page and the intro page, the event
//! stream (`/_/events`) as a subscriber sees it, what it costs a slow
//! reader, how it lives among timeouts and `--max-conns`, and the metrics
//! read by a real Prometheus parser.
//!
//! A subscriber here reads its answer through the strict response checker
//! (`read_response_to`) in a thread of its own, which hands each byte on as
//! it comes; the test reads events from those bytes while the stream is
//! open, and the checker has the last word once the server closes it.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use crate::common::{
    read_response, read_response_to, rss_kib, wait_until, Response, Server, TempDir,
};
use crate::privilege::this_test;
use crate::{common, privilege};
use serde_json::Value;

const EVENTS: &[u8] = b"GET /_/events HTTP/1.1\r\nHost: t\r\nAccept: text/event-stream\r\n\r\n";
const HELLO: &[u8] = b"GET /_/hello HTTP/1.1\r\nHost: t\r\n\r\n";

/// Bytes read from a socket, each read also sent down a channel.
struct Tee {
    inner: TcpStream,
    tx: mpsc::Sender<Vec<u8>>,
}

impl Read for Tee {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let _ = self.tx.send(buf[..n].to_vec());
        Ok(n)
    }
}

/// One subscriber of `/_/events`.
struct Subscriber {
    rx: mpsc::Receiver<Vec<u8>>,
    /// Bytes received and not yet parsed into events (the head first).
    buf: Vec<u8>,
    head_done: bool,
    /// The same socket, to close it when the subscriber is dropped.
    stream: TcpStream,
    checked: Option<thread::JoinHandle<Option<Response>>>,
    /// Events read so far, for failure messages.
    seen: Vec<String>,
}

impl Subscriber {
    /// Connects and asks for the event stream.
    fn open(server: &Server) -> Subscriber {
        let mut stream = server.connect();
        stream.write_all(EVENTS).unwrap();
        Subscriber::reading(stream)
    }

    /// Starts reading a stream whose request was sent already.
    fn reading(stream: TcpStream) -> Subscriber {
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        let (tx, rx) = mpsc::channel();
        let mut tee = Tee {
            inner: stream.try_clone().unwrap(),
            tx,
        };
        let checked = thread::spawn(move || read_response_to(&mut tee, false));
        Subscriber {
            rx,
            buf: Vec::new(),
            head_done: false,
            stream,
            checked: Some(checked),
            seen: Vec::new(),
        }
    }

    /// The next event, or `None` if none came within `limit` (or the stream ended).
    fn next(&mut self, limit: Duration) -> Option<(String, Value)> {
        let deadline = Instant::now() + limit;
        loop {
            if !self.head_done {
                if let Some(end) = find(&self.buf, b"\r\n\r\n") {
                    self.buf.drain(..end + 4);
                    self.head_done = true;
                }
            }
            if self.head_done {
                if let Some(end) = find(&self.buf, b"\n\n") {
                    let block: Vec<u8> = self.buf.drain(..end + 2).collect();
                    let block = String::from_utf8(block).expect("events are UTF-8");
                    let mut name = "message".to_string();
                    let mut data = String::new();
                    for line in block.lines() {
                        if let Some(v) = line.strip_prefix("event: ") {
                            name = v.to_string();
                        } else if let Some(v) = line.strip_prefix("data: ") {
                            data = v.to_string();
                        }
                    }
                    if data.is_empty() {
                        continue; // `retry:` alone
                    }
                    self.seen.push(name.clone());
                    let value = serde_json::from_str(&data)
                        .unwrap_or_else(|e| panic!("event {name}: {e}: {data}"));
                    return Some((name, value));
                }
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            match self.rx.recv_timeout(left) {
                Ok(bytes) if !bytes.is_empty() => self.buf.extend_from_slice(&bytes),
                _ => return None,
            }
        }
    }

    /// Reads events until one named `name` satisfies `want`.
    fn wait_for(&mut self, name: &str, want: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.next(left) {
                Some((n, data)) if n == name && want(&data) => return data,
                Some(_) => {}
                None => break,
            }
        }
        panic!("no {name} event as wanted; events seen: {:?}", self.seen);
    }

    /// The whole answer, checked strictly, once the server has closed it.
    fn finish(mut self) -> Response {
        self.checked
            .take()
            .expect("not finished yet")
            .join()
            .expect("checker thread")
            .expect("the stream ended as a whole response")
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The metrics as `name{labels}` → value, read with a plain split (the
/// Prometheus parser's own test is `metrics_are_read_by_a_real_prometheus_parser`).
fn metrics(server: &Server) -> HashMap<String, f64> {
    let text = server.get("/_/metrics").text();
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .filter_map(|(k, v)| Some((k.to_string(), v.parse().ok()?)))
        .collect()
}

fn metric(server: &Server, name: &str) -> f64 {
    metrics(server).get(name).copied().unwrap_or(-1.0)
}

/// `n` short connections, each one request with `Connection: close`:
/// two events each (accept, close) for every subscriber.
fn churn(server: &Server, n: usize) {
    let addr = server.addr;
    let threads: Vec<_> = (0..4)
        .map(|_| {
            thread::spawn(move || {
                for _ in 0..n / 4 {
                    let mut s = TcpStream::connect(addr).unwrap();
                    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
                    s.write_all(b"GET /_/hello HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
                        .unwrap();
                    let mut all = Vec::new();
                    let _ = s.read_to_end(&mut all);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

#[test]
fn the_live_page_is_at_slash_underscore_and_the_intro_at_about() {
    let server = Server::start(&["--quiet"]);
    for path in ["/_/", "/"] {
        let page = server.get(path);
        assert_eq!(page.status, 200, "{path}");
        assert_eq!(
            page.header("Content-Type"),
            Some("text/html; charset=utf-8")
        );
        let text = page.text();
        assert!(text.contains("new EventSource('/_/events')"), "{path}");
        assert!(text.contains("/_/conns.json?rows="), "{path}");
        assert!(text.contains("href=\"/_/about\""), "{path}");
        assert!(
            !text.contains("http://") && !text.contains("https://"),
            "no external asset"
        );
    }
    let about = server.get("/_/about");
    assert_eq!(about.status, 200);
    assert!(about.text().contains("href=\"/_/\""), "{}", about.text());
    assert!(
        about.text().contains("href=\"/_/conns\""),
        "{}",
        about.text()
    );
    // HEAD gets the page's head and no body.
    let mut s = server.connect();
    s.write_all(b"HEAD /_/ HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let head = read_response_to(&mut s, true).unwrap();
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());

    // With a served directory, `/` is the site; the live page stays at `/_/`.
    let dir = TempDir::new("live");
    dir.write("index.html", "<p>the site</p>\n");
    let with_dir = Server::start(&["--dir", dir.arg(), "--quiet"]);
    assert_eq!(with_dir.get("/").text(), "<p>the site</p>\n");
    assert!(with_dir.get("/_/").text().contains("EventSource"));
    assert!(with_dir
        .get("/_/about")
        .text()
        .contains("href=\"/_/conns\""));
}

#[test]
fn the_event_stream_tells_accepts_and_closes_and_is_an_answer_strict_clients_accept() {
    let mut server = Server::start(&["--quiet"]);
    let mut sub = Subscriber::open(&server);
    let hello = sub.wait_for("hello", |_| true);
    let my_token = hello["token"].clone();
    // The subscriber's own row turns into an event stream.
    sub.wait_for("state", |d| {
        d["token"] == my_token && d["phase"] == "stream"
    });

    let mut client = server.connect();
    let client_end = client.local_addr().unwrap().to_string();
    client.write_all(HELLO).unwrap();
    assert_eq!(read_response(&mut client).unwrap().status, 200);
    let accept = sub.wait_for("accept", |d| d["remote"] == client_end);
    assert_eq!(accept["local"], server.addr.to_string());
    assert_eq!(accept["state"], "ESTABLISHED");
    drop(client);
    let close = sub.wait_for("close", |d| d["token"] == accept["token"]);
    assert_eq!(close["why"], "done");
    assert_eq!(close["requests"], 1);
    let counters = sub.wait_for("counters", |_| true);
    assert!(counters["accepted"].as_u64().unwrap() >= 2, "{counters}");
    assert_eq!(counters["subscribers"], 1);

    // The server ends the stream when it stops; the answer, read to its
    // close, passes the strict checker.
    server.signal(libc::SIGTERM);
    let answer = sub.finish();
    assert_eq!(answer.status, 200);
    assert_eq!(answer.header("Content-Type"), Some("text/event-stream"));
    assert_eq!(answer.header("Connection"), Some("close"));
    assert_eq!(answer.header("Content-Length"), None);
    let body = answer.text();
    assert!(body.starts_with("retry: "), "{body}");
    for event in ["hello", "accept", "close", "counters"] {
        assert!(body.contains(&format!("event: {event}\n")), "{body}");
    }
    assert!(server.wait_exit(Duration::from_secs(10)).success());
}

#[test]
fn a_head_request_or_a_pipelined_one_does_not_become_part_of_a_stream() {
    let server = Server::start(&["--quiet"]);
    let mut s = server.connect();
    s.write_all(b"HEAD /_/events HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let head = read_response_to(&mut s, true).unwrap();
    assert_eq!(head.status, 200);
    assert_eq!(head.header("Content-Type"), Some("text/event-stream"));
    assert_eq!(
        common::read_to_close(&mut s),
        b"",
        "HEAD is answered and closed"
    );
    assert_eq!(metric(&server, "fivetuple_event_subscribers"), 0.0);

    // A request behind the stream's own is never answered: the stream's
    // body is everything until the close, and an answer in it would be garbage.
    let mut s = server.connect();
    s.write_all(&[EVENTS, HELLO].concat()).unwrap();
    let mut sub = Subscriber::reading(s);
    sub.wait_for("hello", |_| true);
    sub.wait_for("counters", |_| true);
    server.signal(libc::SIGTERM);
    let body = sub.finish().text();
    assert!(!body.contains("HTTP/1.1"), "{body}");
    assert!(!body.contains("Hello, World!"), "{body}");
}

#[test]
fn a_slow_reader_is_told_to_resync_and_costs_the_server_a_bounded_queue() {
    let server = Server::start(&["--quiet"]);
    let mut slow = server.connect_cramped();
    slow.write_all(EVENTS).unwrap();
    wait_until(Duration::from_secs(10), || {
        metric(&server, "fivetuple_event_subscribers") == 1.0
    });
    let rss_before = rss_kib(server.pid());
    // Thousands of events while the subscriber reads nothing at all.
    churn(&server, 4000);
    let dropped = metric(&server, "fivetuple_events_dropped_total");
    assert!(
        dropped > 0.0,
        "no events dropped for a reader that reads nothing"
    );
    let grown = rss_kib(server.pid()).saturating_sub(rss_before);
    assert!(grown < 8 * 1024, "the server grew by {grown} KiB");

    // Once it reads again it is told what it missed, then hears the rest.
    let mut sub = Subscriber::reading(slow);
    let resync = sub.wait_for("resync", |_| true);
    assert!(resync["missed"].as_u64().unwrap() > 0, "{resync}");
    sub.wait_for("counters", |_| true);
    assert!(metric(&server, "fivetuple_event_resyncs_total") >= 1.0);
}

#[test]
fn a_subscriber_that_stops_reading_is_closed_by_the_send_timeout() {
    let server = Server::start(&["--quiet", "--send-timeout", "1"]);
    let mut slow = server.connect_cramped();
    slow.write_all(EVENTS).unwrap();
    wait_until(Duration::from_secs(10), || {
        metric(&server, "fivetuple_event_subscribers") == 1.0
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    while metric(&server, "fivetuple_timeouts_total{kind=\"send\"}") < 1.0 {
        assert!(Instant::now() < deadline, "the send timeout never fired");
        churn(&server, 200);
    }
    wait_until(Duration::from_secs(10), || {
        metric(&server, "fivetuple_event_subscribers") == 0.0
    });
    slow.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let _ = common::read_to_close(&mut slow); // ends: the server closed it
}

#[test]
fn a_stream_outlives_the_idle_timeout_that_closes_a_kept_alive_connection() {
    let server = Server::start(&["--quiet", "--idle-timeout", "1"]);
    let mut sub = Subscriber::open(&server);
    sub.wait_for("hello", |_| true);
    let subscribed = Instant::now();
    let mut kept = server.connect();
    let kept_end = kept.local_addr().unwrap().to_string();
    kept.write_all(HELLO).unwrap();
    read_response(&mut kept).unwrap();
    let accept = sub.wait_for("accept", |d| d["remote"] == kept_end);
    let close = sub.wait_for("close", |d| d["token"] == accept["token"]);
    assert_eq!(close["why"], "idle timeout");
    // Well past the idle timeout, the stream still gets its ticks.
    while subscribed.elapsed() < Duration::from_millis(2500) {
        sub.wait_for("counters", |_| true);
    }
    assert_eq!(metric(&server, "fivetuple_event_subscribers"), 1.0);
}

#[test]
fn a_full_server_reclaims_an_idle_connection_never_a_stream() {
    let server = Server::start(&["--quiet", "--max-conns", "3"]);
    let mut sub = Subscriber::open(&server);
    sub.wait_for("hello", |_| true);
    // An idle kept-alive connection that has had its answer: reclaimable.
    let mut idle = server.connect();
    idle.write_all(HELLO).unwrap();
    read_response(&mut idle).unwrap();
    let idle_end = idle.local_addr().unwrap().to_string();
    let idle_token = sub.wait_for("accept", |d| d["remote"] == idle_end)["token"].clone();
    // Two that never asked anything: not reclaimable, but they fill the server.
    let quiet = server.connect();
    let quiet_end = quiet.local_addr().unwrap().to_string();
    sub.wait_for("accept", |d| d["remote"] == quiet_end);
    let newcomer = server.connect();
    let close = sub.wait_for("close", |d| d["token"] == idle_token);
    assert!(
        close["why"].as_str().unwrap().contains("reclaimed"),
        "{close}"
    );
    // Now the stream and two silent connections: nothing may be reclaimed.
    let mut refused = server.connect();
    let answer = read_response(&mut refused).expect("an answer");
    assert_eq!(answer.status, 503);
    // The stream lives on.
    sub.wait_for("counters", |_| true);
    sub.wait_for("counters", |_| true);
    drop((quiet, newcomer));
}

#[test]
fn subscribers_are_capped_and_the_oldest_gives_way_to_the_next() {
    let server = Server::start(&["--quiet"]);
    let mut subs: Vec<Subscriber> = (0..32).map(|_| Subscriber::open(&server)).collect();
    for sub in &mut subs {
        sub.wait_for("hello", |_| true);
    }
    // One more viewer gets its stream; the oldest subscriber's ends (the
    // server closes it, after everything it was sent).
    let mut newcomer = Subscriber::open(&server);
    newcomer.wait_for("hello", |_| true);
    let oldest = &mut subs[0];
    let deadline = Instant::now() + Duration::from_secs(20);
    while oldest.next(Duration::from_secs(3)).is_some() {
        assert!(Instant::now() < deadline, "the oldest stream did not end");
    }
    assert_eq!(metric(&server, "fivetuple_event_subscribers"), 32.0);
    assert_eq!(
        metric(&server, "fivetuple_event_slots_taken_back_total"),
        1.0
    );
    drop((subs, newcomer));
}

/// Python's `prometheus_client` parser, if this machine has it.
fn prometheus_parser() -> Option<&'static str> {
    let ok = Command::new("python3")
        .args(["-c", "import prometheus_client.parser"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    ok.then_some(
        "import sys, json\n\
         from prometheus_client.parser import text_string_to_metric_families\n\
         samples, types = {}, {}\n\
         for f in text_string_to_metric_families(sys.stdin.read()):\n\
         \x20   types[f.name] = f.type\n\
         \x20   for s in f.samples:\n\
         \x20       labels = ','.join('%s=\"%s\"' % kv for kv in sorted(s.labels.items()))\n\
         \x20       samples[s.name + ('{' + labels + '}' if labels else '')] = s.value\n\
         print(json.dumps({'samples': samples, 'types': types}))\n",
    )
}

/// Parses a scrape with the real parser: (samples, family types).
fn parse_prometheus(script: &str, text: &str) -> (HashMap<String, f64>, HashMap<String, String>) {
    let mut child = Command::new("python3")
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the Prometheus parser refused the metrics: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    let samples = json["samples"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_f64().unwrap()))
        .collect();
    let types = json["types"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
        .collect();
    (samples, types)
}

#[test]
fn metrics_are_read_by_a_real_prometheus_parser_and_move_as_connections_come_and_go() {
    let Some(script) = prometheus_parser() else {
        return privilege::skip(
            this_test!(),
            "python3 with prometheus_client (Debian package python3-prometheus-client; \
             scripts/install-test-tools installs it)",
        );
    };
    let server = Server::start(&["--quiet", "--idle-timeout", "2"]);
    let scrape = || {
        let r = server.get("/_/metrics");
        assert_eq!(
            r.header("Content-Type"),
            Some("text/plain; version=0.0.4; charset=utf-8")
        );
        parse_prometheus(script, &r.text())
    };
    let (before, types) = scrape();
    assert_eq!(types["fivetuple_connections_accepted"], "counter");
    assert_eq!(types["fivetuple_connections_open"], "gauge");
    assert_eq!(types["fivetuple_poll_events"], "histogram");
    assert_eq!(types["fivetuple_loop_turn_duration_seconds"], "histogram");
    assert_eq!(types["fivetuple_http_responses"], "counter");

    // Three clients held open, each answered once, and one 404.
    let mut held: Vec<TcpStream> = (0..3).map(|_| server.connect()).collect();
    for s in &mut held {
        s.write_all(HELLO).unwrap();
        read_response(s).unwrap();
    }
    assert_eq!(server.get("/nothing-here").status, 404);
    let (during, _) = scrape();
    let moved = |name: &str| during[name] - before[name];
    // The scrape's own connection is open in both.
    assert_eq!(moved("fivetuple_connections_open"), 3.0);
    assert!(moved("fivetuple_connections_accepted_total") >= 5.0);
    assert!(moved("fivetuple_http_responses_total{class=\"2xx\"}") >= 4.0);
    assert_eq!(moved("fivetuple_http_responses_total{class=\"4xx\"}"), 1.0);
    assert!(moved("fivetuple_received_bytes_total") >= 3.0 * HELLO.len() as f64);
    assert!(moved("fivetuple_sent_bytes_total") > 0.0);
    // The loop woke between the scrapes (it slept while python parsed the
    // first). Not once per request: on a busy machine the server may still
    // be in the turn that answered one request when the next arrives, and
    // take it in that same turn.
    let wakes = moved("fivetuple_poll_events_count");
    assert!(wakes >= 1.0, "{wakes} wake-ups");
    assert_eq!(
        moved("fivetuple_loop_turn_duration_seconds_count"),
        wakes,
        "one turn per wake-up"
    );
    assert_eq!(
        during["fivetuple_poll_events_bucket{le=\"+Inf\"}"],
        during["fivetuple_poll_events_count"]
    );

    // Left alone, they are closed by the idle timeout, and it shows.
    let mut after = HashMap::new();
    wait_until(Duration::from_secs(20), || {
        after = scrape().0;
        after["fivetuple_timeouts_total{kind=\"idle\"}"] >= 3.0
    });
    assert_eq!(
        after["fivetuple_connections_open"],
        before["fivetuple_connections_open"]
    );
    assert!(
        after["fivetuple_connections_closed_total"] - before["fivetuple_connections_closed_total"]
            >= 4.0
    );
    drop(held);
}

#[test]
fn metrics_of_several_workers_are_read_by_a_real_prometheus_parser() {
    let Some(script) = prometheus_parser() else {
        return privilege::skip(
            this_test!(),
            "python3 with prometheus_client (Debian package python3-prometheus-client; \
             scripts/install-test-tools installs it)",
        );
    };
    let server = Server::start(&["--quiet", "--workers", "2"]);
    // Connections on both workers, each answered once.
    let mut held = Vec::new();
    let mut workers = std::collections::BTreeSet::new();
    while workers.len() < 2 {
        assert!(held.len() < 200, "200 connections, all on one worker");
        let mut s = server.connect();
        s.write_all(b"GET /_/whoami HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
        let text = read_response(&mut s).unwrap().text();
        workers.insert(text.trim_end().rsplit(' ').next().unwrap().to_string());
        held.push(s);
    }
    let open = |m: &HashMap<String, f64>| m["fivetuple_connections_open"];
    let worker_open = |m: &HashMap<String, f64>, w: usize| {
        m.get(&format!(
            "fivetuple_worker_connections_open{{worker=\"{w}\"}}"
        ))
        .copied()
    };
    let mut last = (HashMap::new(), HashMap::new());
    wait_until(Duration::from_secs(10), || {
        let text = server.get("/_/metrics").text();
        // One HELP and one TYPE per family, whatever the workers.
        for prefix in ["# HELP ", "# TYPE "] {
            let mut names: Vec<&str> = text
                .lines()
                .filter_map(|l| l.strip_prefix(prefix)?.split(' ').next())
                .collect();
            let all = names.len();
            names.sort_unstable();
            names.dedup();
            assert_eq!(names.len(), all, "a family repeats its {prefix:?}:\n{text}");
        }
        last = parse_prometheus(script, &text);
        let m = &last.0;
        // The held connections and this scrape's, on both workers together.
        open(m) == (held.len() + 1) as f64
            && worker_open(m, 0)
                .zip(worker_open(m, 1))
                .is_some_and(|(a, b)| a + b == open(m))
    });
    let (samples, types) = last;
    assert_eq!(types["fivetuple_connections_accepted"], "counter");
    assert_eq!(types["fivetuple_worker_connections_open"], "gauge");
    assert_eq!(types["fivetuple_worker_connections_accepted"], "counter");
    assert_eq!(types["fivetuple_worker_requests_served"], "counter");
    assert_eq!(types["fivetuple_worker_figures_age_seconds"], "gauge");
    assert_eq!(types["fivetuple_poll_events"], "histogram");
    // The histograms were added bucket by bucket: still cumulative, still
    // ending in their count.
    assert_eq!(
        samples["fivetuple_poll_events_bucket{le=\"+Inf\"}"],
        samples["fivetuple_poll_events_count"]
    );
    assert!(
        samples["fivetuple_poll_events_bucket{le=\"0\"}"]
            <= samples["fivetuple_poll_events_bucket{le=\"1\"}"]
    );
    drop(held);
}
