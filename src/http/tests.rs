//! The sans-IO core, tested without a socket: bytes in, bytes out.

use super::*;
use crate::table::{ConnTable, Format};

struct NoTable;

impl Host for NoTable {
    fn write_table(&self, _me: usize, format: Format, _rows: usize, out: &mut Vec<u8>) {
        let table = ConnTable::empty("127.0.0.1:500".parse().unwrap());
        table.render(format).write_for(None, out);
    }
}

fn ctx<'a>(config: &'a Config, host: &'a NoTable) -> Ctx<'a> {
    Ctx {
        peer: Peer {
            token: 7,
            local: "127.0.0.1:500".parse().unwrap(),
            remote: "127.0.0.1:54240".parse().unwrap(),
        },
        host,
        date: "Tue, 24 Nov 2026 00:00:00 GMT",
        config,
        draining: false,
    }
}

/// Feeds `chunks` one by one (resuming whenever the session yields its
/// turn) and returns everything written and whether it asked to close.
fn converse(chunks: &[&[u8]]) -> (Vec<u8>, u64, bool) {
    let config = Config::default();
    let host = NoTable;
    let ctx = ctx(&config, &host);
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
        while session.wants_resume() {
            let p = session.resume(&ctx, &mut out);
            responses += p.responses;
            close |= p.close;
            all.append(&mut out);
        }
    }
    (all, responses, close)
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
    let host = NoTable;
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
    let host = NoTable;
    let ctx = ctx(&config, &host);
    let mut session = Session::default();
    let mut out = Vec::new();
    let p = session.feed(b"Test payload.", &ctx, &mut out);
    assert_eq!(p.responses, 0);
    assert!(out.is_empty());
    assert_eq!(session.phase(), "reading");
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
    let host = NoTable;
    let ctx = ctx(&config, &host);
    let mut session = Session::default();
    let mut out = Vec::new();
    session.feed(&HELLO[..10], &ctx, &mut out);
    assert!(session.held.capacity() > 0);
    session.feed(&HELLO[10..], &ctx, &mut out);
    assert_eq!(session.held.capacity(), 0);
    assert_eq!(session.phase(), "idle");
}

#[test]
fn control_characters_are_escaped_in_logs() {
    assert_eq!(
        Escaped(b"a\x1b[31m\"\\\n").to_string(),
        "a\\x1b[31m\\\"\\\\\\x0a"
    );
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

    proptest! {
        #[test]
        fn any_split_of_a_pipelined_stream_gives_the_same_answers(
            requests in proptest::collection::vec(request(), 1..12),
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
                let body = if code < 200 || code == 204 || code == 304 { 0 } else { len };
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
