//! The sans-IO core, tested without a socket: bytes in, bytes out.

use super::*;
use crate::table::Phase;

fn ctx<'a>(config: &'a Config, host: &'a NoConnections) -> Ctx<'a> {
    Ctx {
        peer: Endpoints {
            token: 7,
            local: "127.0.0.1:500".parse().unwrap(),
            remote: "127.0.0.1:54240".parse().unwrap(),
        },
        host,
        date: "Tue, 24 Nov 2026 00:00:00 GMT",
        config,
        shutting_down: false,
        access: None,
    }
}

/// Feeds `chunks` one by one (resuming whenever the session yields its
/// turn) and returns everything written and whether it asked to close.
fn converse(chunks: &[&[u8]]) -> (Vec<u8>, u64, bool) {
    converse_with(&Config::default(), chunks)
}

/// `converse` with settings (a served directory, say). It plays the I/O
/// layer that cannot send from a file: each file body is copied after the
/// output, 64 KiB at a time, and reported back, before the session may go
/// on.
fn converse_with(config: &Config, chunks: &[&[u8]]) -> (Vec<u8>, u64, bool) {
    let host = NoConnections;
    let ctx = ctx(config, &host);
    let mut session = Session::default();
    let mut out = Vec::new();
    let mut responses = 0;
    let mut close = false;
    let mut all = Vec::new();
    for chunk in chunks {
        let p = session.feed(chunk, &ctx, &mut out);
        responses += p.responses;
        close |= p.close;
        all.append(&mut out);
        send_file_body(&mut session, &mut all);
        while session.wants_resume() {
            let p = session.resume(&ctx, &mut out);
            responses += p.responses;
            close |= p.close;
            all.append(&mut out);
            send_file_body(&mut session, &mut all);
        }
    }
    (all, responses, close)
}

/// Copies the session's file body, if any, to `sent` in turns of
/// `TURN_OUTPUT`, as an I/O layer without `sendfile` would.
fn send_file_body(session: &mut Session, sent: &mut Vec<u8>) {
    while let Some(body) = session.file_body() {
        let n = body.copy_into(sent, TURN_OUTPUT).expect("the file reads");
        session.file_sent(n);
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

const HELLO: &[u8] = b"GET /_/hello HTTP/1.1\r\nHost: x\r\n\r\n";

#[test]
fn hello_is_thirteen_bytes_of_text() {
    let (out, n, close) = converse(&[HELLO]);
    let out = text(&out);
    assert_eq!(n, 1);
    assert!(!close);
    assert!(out.starts_with("HTTP/1.1 200 OK\r\n"), "{out}");
    assert!(out.contains("Content-Type: text/plain\r\n"));
    assert!(out.contains("Server: fivetuple/"));
    assert!(out.contains("Date: Tue, 24 Nov 2026 00:00:00 GMT\r\n"));
    assert!(out.ends_with("Content-Length: 13\r\n\r\nHello, World!"));
}

#[test]
fn a_request_split_at_every_byte_gets_the_same_answer() {
    let req = b"GET /_/whoami?x=1 HTTP/1.1\r\nHost: example\r\nUser-Agent: t\r\n\r\n";
    let (whole, _, _) = converse(&[req]);
    assert!(text(&whole).contains("tcp 127.0.0.1:500 <- 127.0.0.1:54240, token 7"));
    for split in 1..req.len() {
        let (out, n, _) = converse(&[&req[..split], &req[split..]]);
        assert_eq!(n, 1, "split at {split}");
        assert_eq!(out, whole, "split at {split}");
    }
    let bytes: Vec<&[u8]> = req.chunks(1).collect();
    assert_eq!(converse(&bytes).0, whole);
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let mut stream = Vec::new();
    for i in 0..100 {
        if i % 3 == 0 {
            stream.extend_from_slice(
                format!("GET /missing/{i} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes(),
            );
        } else {
            stream.extend_from_slice(HELLO);
        }
    }
    let (out, n, close) = converse(&[&stream]);
    assert_eq!(n, 100);
    assert!(!close);
    let out = text(&out);
    let statuses: Vec<&str> = out
        .match_indices("HTTP/1.1 ")
        .map(|(i, _)| &out[i + 9..i + 12])
        .collect();
    let want: Vec<&str> = (0..100)
        .map(|i| if i % 3 == 0 { "404" } else { "200" })
        .collect();
    assert_eq!(statuses, want);
}

#[test]
fn a_long_pipeline_is_answered_in_turns_of_bounded_size() {
    let config = Config::default();
    let host = NoConnections;
    let ctx = ctx(&config, &host);
    let mut session = Session::default();
    let mut out = Vec::new();
    let stream = HELLO.repeat(1000);
    let first = session.feed(&stream, &ctx, &mut out);
    assert_eq!(first.responses, TURN_RESPONSES);
    assert!(session.wants_resume());
    let mut total = first.responses;
    let mut turns = 1;
    while session.wants_resume() {
        out.clear();
        let p = session.resume(&ctx, &mut out);
        assert!(p.responses <= TURN_RESPONSES);
        total += p.responses;
        turns += 1;
    }
    assert_eq!(total, 1000);
    assert_eq!(turns, 4);
}

#[test]
fn keep_alive_and_close() {
    let (out, _, close) = converse(&[b"GET /_/hello HTTP/1.0\r\n\r\n"]);
    assert!(close);
    assert!(text(&out).contains("Connection: close\r\n"));
    let (out, _, close) = converse(&[b"GET /_/hello HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"]);
    assert!(!close);
    assert!(text(&out).contains("Connection: keep-alive\r\n"));
    let (out, n, close) = converse(&[b"GET /_/hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\nGET /_/hello HTTP/1.1\r\nHost: x\r\n\r\n"]);
    assert!(close);
    assert_eq!(n, 1, "nothing is answered after Connection: close");
    assert!(text(&out).contains("Connection: close\r\n"));
}

#[test]
fn head_gets_headers_only() {
    let (out, _, _) = converse(&[b"HEAD /_/hello HTTP/1.1\r\nHost: x\r\n\r\n"]);
    assert!(text(&out).ends_with("Content-Length: 13\r\n\r\n"));
}

#[test]
fn bodies_are_read_and_skipped() {
    let req = b"POST /_/hello HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhelloGET /_/hello HTTP/1.1\r\nHost: x\r\n\r\n";
    let (whole, n, _) = converse(&[req]);
    assert_eq!(n, 2);
    let t = text(&whole);
    assert!(t.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"), "{t}");
    assert!(t.contains("Allow: GET, HEAD, OPTIONS\r\n"));
    assert!(t.ends_with("Hello, World!"));
    for split in 1..req.len() {
        assert_eq!(
            converse(&[&req[..split], &req[split..]]).0,
            whole,
            "split at {split}"
        );
    }
}

#[test]
fn chunked_bodies_are_read_and_skipped() {
    let req = b"GET /_/hello HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\nGET /_/hello HTTP/1.1\r\nHost: x\r\n\r\n";
    let (whole, n, close) = converse(&[req]);
    assert_eq!(n, 2);
    assert!(!close);
    for split in 1..req.len() {
        assert_eq!(
            converse(&[&req[..split], &req[split..]]).0,
            whole,
            "split at {split}"
        );
    }
    let bad = b"GET /_/hello HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX\r\n0\r\n\r\n";
    let (out, _, close) = converse(&[bad]);
    assert!(close);
    assert!(text(&out).starts_with("HTTP/1.1 400 Bad Request\r\n"));
}

#[test]
fn expect_continue_gets_an_interim_response() {
    let (out, _, _) = converse(&[
        b"GET /_/hello HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n",
        b"hi",
    ]);
    let t = text(&out);
    assert!(
        t.starts_with("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n"),
        "{t}"
    );
}

#[test]
fn the_story_payload_is_not_a_request() {
    // Without a line end it is an unfinished request line: nothing to answer yet.
    let config = Config::default();
    let host = NoConnections;
    let ctx = ctx(&config, &host);
    let mut session = Session::default();
    let mut out = Vec::new();
    let p = session.feed(b"Test payload.", &ctx, &mut out);
    assert_eq!(p.responses, 0);
    assert!(out.is_empty());
    assert_eq!(session.phase(), Phase::Reading);
    assert_eq!(session.on_eof(&ctx), 13);
    // With a line end it is a malformed request line: 400 and close.
    let (out, n, close) = converse(&[b"Test payload.\r\n"]);
    assert_eq!(n, 1);
    assert!(close);
    let t = text(&out);
    assert!(t.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{t}");
    assert!(t.contains("Connection: close\r\n"));
}

#[test]
fn nothing_is_answered_after_a_rejected_request() {
    let (out, n, close) = converse(&[
        b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
        HELLO,
    ]);
    assert_eq!(n, 1);
    assert!(close);
    assert!(!text(&out).contains("Hello"));
}

#[test]
fn an_idle_session_holds_no_memory() {
    let config = Config::default();
    let host = NoConnections;
    let ctx = ctx(&config, &host);
    let mut session = Session::default();
    let mut out = Vec::new();
    session.feed(&HELLO[..10], &ctx, &mut out);
    assert!(session.held.capacity() > 0);
    session.feed(&HELLO[10..], &ctx, &mut out);
    assert_eq!(session.held.capacity(), 0);
    assert_eq!(session.phase(), Phase::Idle);
}

/// Splits an answer into its head and whatever follows the head.
fn head_and_rest(out: &[u8]) -> (String, &[u8]) {
    let end = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a whole head")
        + 4;
    (text(&out[..end]), &out[end..])
}

#[test]
fn refused_heads_get_no_body_either() {
    let long_line = format!("HEAD /{} HTTP/1.1\r\nHost: t\r\n\r\n", "a".repeat(9000));
    let big_head = format!(
        "HEAD / HTTP/1.1\r\nHost: t\r\nX: {}\r\n\r\n",
        "b".repeat(17_000)
    );
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (
            b"HEAD /_/hello HTTP/1.1\r\nHost: t\r\nExpect: teapot\r\n\r\n".to_vec(),
            "417",
        ),
        (b"HEAD / HTTP/1.1\r\nHost: a b\r\n\r\n".to_vec(), "400"),
        (b"HEAD / HTTP/1.1\r\n\r\n".to_vec(), "400"),
        (
            b"\r\nHEAD / HTTP/1.1\r\nHost: t\r\nContent-Length: 2000000\r\n\r\n".to_vec(),
            "413",
        ),
        (long_line.into_bytes(), "414"),
        (big_head.into_bytes(), "431"),
        (b"HEAD / HTTP/2.0\r\n\r\n".to_vec(), "505"),
        (b"HEAD * HTTP/1.1\r\nHost: t\r\n\r\n".to_vec(), "400"),
        (
            b"HEAD / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n".to_vec(),
            "400",
        ),
    ];
    for (bytes, code) in cases {
        let (out, n, close) = converse(&[&bytes]);
        let (head, rest) = head_and_rest(&out);
        let what = text(&bytes[..bytes.len().min(60)]);
        assert_eq!(n, 1, "{what}");
        assert!(close, "{what}");
        assert!(
            head.starts_with(&format!("HTTP/1.1 {code} ")),
            "{what}: {head}"
        );
        assert!(rest.is_empty(), "{what}: a body follows: {}", text(rest));
        assert!(head.contains("Content-Length: "), "{what}: {head}");
    }
    // The same errors to a GET carry their page.
    let (out, _, _) = converse(&[b"GET /_/hello HTTP/1.1\r\nHost: t\r\nExpect: teapot\r\n\r\n"]);
    let (head, rest) = head_and_rest(&out);
    assert!(
        head.contains(&format!("Content-Length: {}\r\n", rest.len())),
        "{head}"
    );
    assert!(!rest.is_empty());
    // A request too broken to name its method gets the page.
    let (out, _, _) = converse(&[b"HEA\x01D / HTTP/1.1\r\n\r\n"]);
    assert!(!head_and_rest(&out).1.is_empty());
}

#[test]
fn a_head_that_times_out_gets_no_body() {
    let config = Config::default();
    let host = NoConnections;
    let ctx = ctx(&config, &host);
    for (sent, bodyless) in [
        (&b"HEAD /_/hello HTTP/1.1\r\nHost: t\r\n"[..], true),
        (b"HEA", false),
    ] {
        let mut session = Session::default();
        let mut out = Vec::new();
        session.feed(sent, &ctx, &mut out);
        let p = session.on_timeout(&ctx, &mut out);
        assert!(p.close);
        let (head, rest) = head_and_rest(&out);
        assert!(head.starts_with("HTTP/1.1 408 "), "{head}");
        assert_eq!(rest.is_empty(), bodyless, "{}", text(sent));
    }
}

#[test]
fn connect_and_a_target_that_is_not_a_path_close_the_connection() {
    let (out, n, close) = converse(&[
        b"CONNECT t:443 HTTP/1.1\r\nHost: t:443\r\n\r\n\x16\x03\x01",
        HELLO,
    ]);
    assert_eq!(n, 1);
    assert!(close);
    let t = text(&out);
    assert!(t.starts_with("HTTP/1.1 405 "), "{t}");
    assert!(t.contains("Connection: close\r\n"), "{t}");
    let (out, n, close) = converse(&[b"GET * HTTP/1.1\r\nHost: t\r\n\r\n", HELLO]);
    assert_eq!(n, 1);
    assert!(close);
    let t = text(&out);
    assert!(t.starts_with("HTTP/1.1 400 "), "{t}");
    assert!(t.contains("Connection: close\r\n"), "{t}");
    // Other refused methods keep the connection: their framing is sound.
    let (_, n, close) = converse(&[b"DELETE /x HTTP/1.1\r\nHost: t\r\n\r\n", HELLO]);
    assert_eq!((n, close), (2, false));
}

#[test]
fn the_live_page_is_at_slash_underscore_and_the_intro_at_about() {
    let (out, _, _) = converse(&[b"GET /_/ HTTP/1.1\r\nHost: t\r\n\r\n"]);
    let t = text(&out);
    assert!(t.starts_with("HTTP/1.1 200 OK\r\n"), "{t}");
    assert!(t.contains("EventSource('/_/events')"), "{t}");
    let (out, _, _) = converse(&[b"GET /_/about HTTP/1.1\r\nHost: t\r\n\r\n"]);
    let t = text(&out);
    assert!(t.starts_with("HTTP/1.1 200 OK\r\n"), "{t}");
    assert!(t.contains("href=\"/_/conns\""), "{t}");
}

#[test]
fn without_a_server_behind_it_the_event_stream_and_the_metrics_are_not_found() {
    // The protocol alone (as in the fuzzer and the tokio version) has no
    // event stream: the answer is an ordinary 404, framed by its length.
    for path in ["/_/events", "/_/metrics"] {
        let req = format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n");
        let (out, n, close) = converse(&[req.as_bytes()]);
        let t = text(&out);
        assert!(t.starts_with("HTTP/1.1 404 "), "{t}");
        assert!(t.contains("Content-Length: "), "{t}");
        // A refused stream request still ends the connection: it asked for
        // an answer that lasts until the close.
        assert_eq!((n, close), (1, path == "/_/events"), "{path}");
    }
}

#[test]
fn a_head_fed_byte_by_byte_is_parsed_a_few_times_not_once_per_byte() {
    // About 16 KiB of head, just under the limit, in 60 header lines.
    let mut req = b"GET /_/hello HTTP/1.1\r\nHost: t\r\n".to_vec();
    for i in 0..60 {
        req.extend_from_slice(format!("X-{i:02}: {}\r\n", "v".repeat(260)).as_bytes());
    }
    req.extend_from_slice(b"\r\n");
    let limits = Limits::default();
    assert!(
        req.len() > 16_000 && req.len() <= limits.max_head,
        "{}",
        req.len()
    );
    parse::counters::take();
    let bytes: Vec<&[u8]> = req.chunks(1).collect();
    let (out, n, _) = converse(&bytes);
    let (calls, looked_at) = parse::counters::take();
    assert_eq!(n, 1);
    assert!(text(&out).ends_with("Hello, World!"));
    // First byte, request line complete, head complete.
    assert_eq!(calls, 3, "parses for one head");
    assert!(
        looked_at <= 3 * req.len(),
        "{looked_at} bytes parsed for {} received",
        req.len()
    );
    // Split at every point into two pieces: never more than a few parses.
    for split in 1..req.len() {
        converse(&[&req[..split], &req[split..]]);
        let (calls, _) = parse::counters::take();
        assert!(calls <= 3, "{calls} parses, split at {split}");
    }
}

#[test]
fn an_unfinished_head_is_checked_when_its_request_line_ends_and_at_the_limit() {
    // A bad request line is refused as soon as its line end arrives...
    let (out, n, close) = converse(&[b"Test pay", b"load.\r", b"\nHost: t\r\n"]);
    assert_eq!((n, close), (1, true));
    assert!(text(&out).starts_with("HTTP/1.1 400 "));
    // ...an endless head at the limit, even one header byte at a time...
    let limits = Limits::default();
    let mut chunks: Vec<Vec<u8>> = vec![b"GET / HTTP/1.1\r\nX: ".to_vec()];
    chunks.extend(std::iter::repeat_n(b"v".to_vec(), limits.max_head));
    let pieces: Vec<&[u8]> = chunks.iter().map(Vec::as_slice).collect();
    parse::counters::take();
    let (out, n, close) = converse(&pieces);
    assert_eq!((n, close), (1, true));
    assert!(text(&out).starts_with("HTTP/1.1 431 "), "{}", text(&out));
    assert!(parse::counters::take().0 <= 3);
    // ...and an endless request line at its own limit.
    let mut chunks: Vec<&[u8]> = vec![b"GET /"];
    chunks.extend(std::iter::repeat_n(&b"a"[..], limits.max_request_line));
    let (out, _, close) = converse(&chunks);
    assert!(close);
    assert!(text(&out).starts_with("HTTP/1.1 414 "), "{}", text(&out));
}

#[test]
fn empty_lines_before_a_request_are_dropped_counted_and_limited() {
    let config = Config::default();
    let host = NoConnections;
    let ctx = ctx(&config, &host);
    let limit = config.limits.max_head;
    // In pieces of every shape, empty lines are never kept...
    let shapes: [&[&[u8]]; 4] = [
        &[b"\r\n"],
        &[b"\n"],
        &[b"\r", b"\n"],
        &[b"\r\n\r\n\r", b"\n"],
    ];
    for shape in shapes {
        let mut session = Session::default();
        let mut out = Vec::new();
        let mut sent = 0;
        parse::counters::take();
        for piece in shape.iter().cycle() {
            session.feed(piece, &ctx, &mut out);
            sent += piece.len();
            if !out.is_empty() {
                break;
            }
            assert!(session.held.len() <= 1, "{} bytes held", session.held.len());
            assert!(sent <= limit + 8, "{sent} bytes of empty lines accepted");
            assert!(session.mid_request(), "empty lines start a request");
        }
        // ...and, past the head limit, refused: 400 and close.
        assert!(sent > limit - 8, "refused after only {sent} bytes");
        assert!(text(&out).starts_with("HTTP/1.1 400 "), "{}", text(&out));
        assert_eq!(session.phase(), Phase::Closing);
        // Each piece is looked at once (a held CR once more).
        let (_, looked_at) = parse::counters::take();
        assert!(looked_at <= 2 * sent, "{looked_at} bytes parsed for {sent}");
    }
    // A flood in big reads: each read costs its own length, nothing is held.
    // Four reads reach the limit exactly; the fifth passes it.
    let mut session = Session::default();
    let mut out = Vec::new();
    let read = b"\r\n".repeat(limit / 8);
    parse::counters::take();
    for _ in 0..4 {
        session.feed(&read, &ctx, &mut out);
        assert_eq!(session.held.capacity(), 0);
    }
    assert!(out.is_empty());
    session.feed(&read, &ctx, &mut out);
    assert!(text(&out).starts_with("HTTP/1.1 400 "));
    assert_eq!(parse::counters::take(), (5, 5 * read.len()));
    // Empty lines and a head over the limit together: 431.
    let mut near = vec![b"\r\n".repeat((limit - HELLO.len()) / 2)];
    near.push(HELLO.to_vec());
    let pieces: Vec<&[u8]> = near.iter().map(Vec::as_slice).collect();
    assert_eq!(converse(&pieces).1, 1);
    assert!(text(&converse(&pieces).0).ends_with("Hello, World!"));
    near[0].extend_from_slice(b"\r\n");
    let pieces: Vec<&[u8]> = near.iter().map(Vec::as_slice).collect();
    assert!(text(&converse(&pieces).0).starts_with("HTTP/1.1 431 "));
}

#[test]
fn memory_stays_bounded_by_the_head_limit_plus_one_read() {
    let config = Config::default();
    let host = NoConnections;
    let ctx = ctx(&config, &host);
    let read = 64 * 1024;
    for filler in [&b"X: v\r\n"[..], b"\r\n", b"a"] {
        let mut session = Session::default();
        let mut out = Vec::new();
        let chunk = filler.repeat(read / filler.len());
        let mut most = 0;
        session.feed(b"GET / HTTP/1.1\r\n", &ctx, &mut out);
        for _ in 0..10 {
            session.feed(&chunk, &ctx, &mut out);
            most = most.max(session.held.capacity());
        }
        assert!(
            most <= 2 * (config.limits.max_head + read),
            "{most} bytes held"
        );
        assert!(!out.is_empty(), "the head was refused");
        assert_eq!(session.held.capacity(), 0);
    }
}

#[test]
fn an_empty_line_split_between_reads_ends_the_head() {
    let req = b"GET /_/hello HTTP/1.1\nHost: t\n\r\nGET /_/hello HTTP/1.1\r\nHost: t\r\n\n";
    let (whole, n, _) = converse(&[req]);
    assert_eq!(n, 2);
    for split in 1..req.len() {
        for second in split + 1..req.len() {
            let (out, m, _) = converse(&[&req[..split], &req[split..second], &req[second..]]);
            assert_eq!(m, 2, "split at {split} and {second}");
            assert_eq!(out, whole, "split at {split} and {second}");
        }
    }
}

#[test]
fn control_characters_are_escaped_in_logs() {
    assert_eq!(
        Escaped(b"a\x1b[31m\"\\\n").to_string(),
        "a\\x1b[31m\\\"\\\\\\x0a"
    );
}
// ---- File bodies: named by the protocol, sent by the I/O layer ----

/// A directory served the plainest way, for the session's side of file
/// bodies: a request's path names a file in it, opened by name, and the
/// answer is the protocol's own ([`file_answer`]). The real service, with
/// its gates and listings (`crate::files`), builds on this module, and is
/// tested there. It holds `empty` (0 bytes), `small.txt` and `big.bin`
/// (200,000 bytes, each byte its offset mod 251); removed on drop.
struct Served {
    dir: std::path::PathBuf,
    config: Config,
}

/// The file service of a [`Served`] directory.
#[derive(Debug)]
struct Plain(std::path::PathBuf);

impl FileService for Plain {
    fn respond(&self, req: &FileRequest, answer: &Answer, date: &str, out: &mut Vec<u8>) -> Reply {
        let path = self.0.join(req.path.trim_start_matches('/'));
        let Ok(file) = std::fs::File::open(path) else {
            let status = response::Status::NOT_FOUND;
            let n = response::write_error(out, answer, status, date, &[], "Not here.");
            return Reply::written(status, n);
        };
        let meta = file.metadata().unwrap();
        let open = file_answer::OpenFile {
            len: meta.len(),
            etag: "\"plain\"".into(),
            modified: meta.modified().ok(),
            content_type: "application/octet-stream".into(),
            file,
        };
        file_answer::answer_file(open, req, answer, date, out)
    }
}

impl Served {
    fn new(name: &str) -> Served {
        let dir =
            std::env::temp_dir().join(format!("fivetuple-http-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("empty"), b"").unwrap();
        std::fs::write(dir.join("small.txt"), b"small\n").unwrap();
        std::fs::write(dir.join("big.bin"), big()).unwrap();
        let config = Config {
            files: Some(std::sync::Arc::new(Plain(dir.clone()))),
            ..Config::default()
        };
        Served { dir, config }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn big() -> Vec<u8> {
    (0..200_000u32).map(|i| (i % 251) as u8).collect()
}

#[test]
fn a_large_file_is_named_not_copied() {
    let served = Served::new("named");
    let host = NoConnections;
    let ctx = ctx(&served.config, &host);
    let mut session = Session::default();
    let mut out = Vec::new();
    let p = session.feed(b"GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n", &ctx, &mut out);
    assert_eq!(p.responses, 1);
    let (head, rest) = head_and_rest(&out);
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(head.contains("Content-Length: 200000\r\n"), "{head}");
    assert!(rest.is_empty(), "the body is not in the output");
    let body = session.file_body().expect("a file body");
    assert_eq!((body.offset(), body.remaining()), (0, 200_000));
    assert!(session.holds_descriptor(), "a file body holds its file");
    // The I/O layer sends it in pieces and says so; the last piece
    // closes the file at once.
    let mut sent = Vec::new();
    let mut pieces = 0;
    while let Some(body) = session.file_body() {
        let n = body.copy_into(&mut sent, 50_000).unwrap();
        assert_eq!(n, 50_000);
        session.file_sent(n);
        pieces += 1;
        assert_eq!(session.holds_descriptor(), pieces < 4, "after {pieces}");
    }
    assert_eq!(sent, big());
    assert!(!session.holds_descriptor() && !session.body_pending());
}

#[test]
fn head_of_a_large_file_has_no_body_to_send() {
    let served = Served::new("head");
    let (out, n, _) = converse_with(
        &served.config,
        &[b"HEAD /big.bin HTTP/1.1\r\nHost: x\r\n\r\n"],
    );
    assert_eq!(n, 1);
    let (head, rest) = head_and_rest(&out);
    assert!(head.contains("Content-Length: 200000\r\n"), "{head}");
    assert!(rest.is_empty());
}

#[test]
fn a_range_is_an_offset_and_a_length() {
    let served = Served::new("range");
    let host = NoConnections;
    let ctx = ctx(&served.config, &host);
    let mut session = Session::default();
    let mut out = Vec::new();
    let req = b"GET /big.bin HTTP/1.1\r\nHost: x\r\nRange: bytes=100000-179999\r\n\r\n";
    session.feed(req, &ctx, &mut out);
    let (head, _) = head_and_rest(&out);
    assert!(
        head.starts_with("HTTP/1.1 206 Partial Content\r\n"),
        "{head}"
    );
    assert!(head.contains("Content-Range: bytes 100000-179999/200000\r\n"));
    assert!(head.contains("Content-Length: 80000\r\n"));
    let body = session.file_body().expect("a file body");
    assert_eq!((body.offset(), body.remaining()), (100_000, 80_000));
    drop(session);
    // Whole conversations: a large range and a small one, byte for byte.
    let whole = big();
    for (range, want) in [
        ("bytes=100000-179999", &whole[100_000..180_000]),
        ("bytes=-70000", &whole[130_000..]),
        ("bytes=10-19", &whole[10..20]),
    ] {
        let req = format!("GET /big.bin HTTP/1.1\r\nHost: x\r\nRange: {range}\r\n\r\n");
        let (out, _, _) = converse_with(&served.config, &[req.as_bytes()]);
        let (head, body) = head_and_rest(&out);
        assert!(head.contains(" 206 "), "{range}: {head}");
        assert_eq!(body, want, "{range}");
    }
}

#[test]
fn an_empty_file_has_an_empty_body() {
    let served = Served::new("empty");
    let host = NoConnections;
    let ctx = ctx(&served.config, &host);
    let mut session = Session::default();
    let mut out = Vec::new();
    session.feed(b"GET /empty HTTP/1.1\r\nHost: x\r\n\r\n", &ctx, &mut out);
    let (head, rest) = head_and_rest(&out);
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(head.contains("Content-Length: 0\r\n"), "{head}");
    assert!(rest.is_empty());
    assert!(
        session.file_body().is_none(),
        "nothing to send, nothing held"
    );
    let req = b"GET /empty HTTP/1.1\r\nHost: x\r\nRange: bytes=0-\r\n\r\n";
    let (out, _, _) = converse_with(&served.config, &[req]);
    assert!(text(&out).starts_with("HTTP/1.1 416 "), "{}", text(&out));
}

#[test]
fn requests_behind_a_file_body_wait_until_it_is_sent() {
    let served = Served::new("behind");
    let host = NoConnections;
    let ctx = ctx(&served.config, &host);
    let mut session = Session::default();
    let mut out = Vec::new();
    let pipeline =
        b"GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\nGET /small.txt HTTP/1.1\r\nHost: x\r\n\r\n";
    let p = session.feed(pipeline, &ctx, &mut out);
    assert_eq!(p.responses, 1, "only the first is answered");
    assert!(session.file_body().is_some());
    assert!(!session.wants_resume(), "the file body goes first");
    assert_eq!(session.phase(), Phase::Writing);
    // Nothing is answered while the body is owed, whatever else arrives.
    let p = session.feed(HELLO, &ctx, &mut out);
    assert_eq!(p.responses, 0);
    let mut sent = std::mem::take(&mut out);
    send_file_body(&mut session, &mut sent);
    assert!(session.wants_resume());
    let p = session.resume(&ctx, &mut out);
    assert_eq!(p.responses, 2);
    sent.append(&mut out);
    // In order: the big file's head and all its bytes, then the others.
    let (head, rest) = head_and_rest(&sent);
    assert!(head.contains("Content-Length: 200000\r\n"), "{head}");
    assert_eq!(&rest[..200_000], &big()[..]);
    let rest = text(&rest[200_000..]);
    let small = rest.find("\r\n\r\nsmall\n").expect("small.txt");
    let hello = rest.find("Hello, World!").expect("hello");
    assert!(
        rest.starts_with("HTTP/1.1 200 OK\r\n") && small < hello,
        "{rest}"
    );
}

#[test]
fn a_file_that_shrinks_cannot_be_copied_past_its_end() {
    let served = Served::new("shrinks");
    let host = NoConnections;
    let ctx = ctx(&served.config, &host);
    let mut session = Session::default();
    let mut out = Vec::new();
    session.feed(b"GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n", &ctx, &mut out);
    std::fs::OpenOptions::new()
        .write(true)
        .open(served.dir.join("big.bin"))
        .unwrap()
        .set_len(1000)
        .unwrap();
    let body = session.file_body().expect("a file body");
    let before = out.len();
    let e = body.copy_into(&mut out, 64 * 1024).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof);
    assert_eq!(out.len(), before, "all or nothing");
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    /// Requests a client may pipeline, with bodies framed both ways.
    fn request() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            Just(HELLO.to_vec()),
            Just(b"HEAD /_/whoami HTTP/1.1\r\nHost: x\r\n\r\n".to_vec()),
            Just(b"GET /missing?q=1 HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n".to_vec()),
            Just(b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n".to_vec()),
            "[a-z]{0,40}".prop_map(|body| format!(
                "POST /_/hello HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .into_bytes()),
            "[a-z]{1,20}".prop_map(|body| format!(
                "PUT /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n{:x};ext\r\n{body}\r\n0\r\nTrailer: t\r\n\r\n",
                body.len()
            )
            .into_bytes()),
        ]
    }

    /// Cuts `bytes` at the given points (taken modulo its length).
    fn split<'a>(bytes: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
        let mut points: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
        points.sort_unstable();
        points.dedup();
        let mut chunks = Vec::new();
        let mut last = 0;
        for p in points.into_iter().chain([bytes.len()]) {
            chunks.push(&bytes[last..p]);
            last = p;
        }
        chunks
    }

    /// A request, sometimes after empty lines (which a server skips).
    fn request_after_empty_lines() -> impl Strategy<Value = Vec<u8>> {
        ("(\r\n|\n){0,3}", request()).prop_map(|(blank, req)| [blank.into_bytes(), req].concat())
    }

    proptest! {
        #[test]
        fn any_split_of_a_pipelined_stream_gives_the_same_answers(
            requests in proptest::collection::vec(request_after_empty_lines(), 1..12),
            cuts in proptest::collection::vec(any::<usize>(), 0..20),
        ) {
            let stream = requests.concat();
            let (whole, n, close) = converse(&[&stream]);
            prop_assert_eq!(n, requests.len() as u64);
            prop_assert!(!close);
            let (pieces, m, _) = converse(&split(&stream, &cuts));
            prop_assert_eq!(m, n);
            prop_assert_eq!(pieces, whole);
        }

        #[test]
        fn any_bytes_give_only_well_formed_responses(
            bytes in proptest::collection::vec(any::<u8>(), 0..600),
            cuts in proptest::collection::vec(any::<usize>(), 0..8),
        ) {
            let (out, n, _) = converse(&split(&bytes, &cuts));
            let mut rest = &out[..];
            let mut finals = 0;
            while finals < n {
                let mut headers = [httparse::EMPTY_HEADER; 32];
                let mut resp = httparse::Response::new(&mut headers);
                let head = match resp.parse(rest) {
                    Ok(httparse::Status::Complete(len)) => len,
                    other => return Err(TestCaseError::fail(format!("unparsable response: {other:?}"))),
                };
                let len: usize = resp
                    .headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                    .map_or(0, |h| std::str::from_utf8(h.value).unwrap().parse().unwrap());
                let code = resp.code.unwrap_or(0);
                // An answer to HEAD has a Content-Length but no body. None of
                // the server's bodies starts like a status line, so when the
                // next bytes do (or nothing follows), this answered a HEAD.
                let after = &rest[head..];
                let head_answer = after.is_empty() || after.starts_with(b"HTTP/1.1 ");
                let bodyless = code < 200 || code == 204 || code == 304 || head_answer;
                let body = if bodyless { 0 } else { len };
                prop_assert!(rest.len() >= head + body);
                rest = &rest[head + body..];
                if code != 100 {
                    finals += 1;
                }
            }
            prop_assert!(rest.is_empty(), "bytes after the last response");
        }
    }
}
