//! Fuzzes the sans-IO HTTP core: any bytes, split at any points, must never
//! panic, and everything it writes must be a sequence of well-formed
//! responses, each framed by its Content-Length.
//!
//! The first byte of the input chooses how many split points follow (up to
//! 8, two bytes each); the rest is what a client sends.

#![no_main]

use fivetuple::http::{Config, Ctx, NoConnections, Endpoints, Session};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&n, rest)) = data.split_first() else { return };
    let n = usize::from(n % 9).min(rest.len() / 2);
    let (cut_bytes, input) = rest.split_at(n * 2);
    let mut cuts: Vec<usize> = cut_bytes
        .chunks(2)
        .map(|c| usize::from(u16::from_le_bytes([c[0], c[1]])) % (input.len() + 1))
        .collect();
    cuts.sort_unstable();
    cuts.push(input.len());

    let config = Config::default();
    let ctx = Ctx {
        peer: Endpoints {
            token: 1,
            local: "127.0.0.1:500".parse().unwrap(),
            remote: "127.0.0.1:54240".parse().unwrap(),
        },
        host: &NoConnections,
        date: "Tue, 24 Nov 2026 00:00:00 GMT",
        config: &config,
        shutting_down: false,
        access: None,
    };
    let mut session = Session::default();
    let mut out = Vec::new();
    let mut responses = 0;
    let mut closed = false;
    let mut last = 0;
    for cut in cuts {
        if closed {
            break;
        }
        let p = session.feed(&input[last..cut], &ctx, &mut out);
        responses += p.responses;
        closed |= p.close;
        while session.wants_resume() && !closed {
            let p = session.resume(&ctx, &mut out);
            responses += p.responses;
            closed |= p.close;
        }
        last = cut;
    }
    session.on_eof(&ctx);

    // Every byte written belongs to a well-formed response.
    let mut rest = &out[..];
    let mut finals = 0;
    while !rest.is_empty() {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut resp = httparse::Response::new(&mut headers);
        let head = match resp.parse(rest) {
            Ok(httparse::Status::Complete(len)) => len,
            other => panic!("malformed response {other:?}: {:?}", String::from_utf8_lossy(rest)),
        };
        let code = resp.code.unwrap_or(0);
        let length: usize = resp
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case("content-length"))
            .map(|h| std::str::from_utf8(h.value).unwrap().parse().unwrap())
            .unwrap_or(0);
        // An answer to HEAD carries Content-Length but no body. None of the
        // server's bodies starts like a status line, so when the next bytes
        // do (or nothing follows), this was a HEAD answer.
        let after = &rest[head..];
        let head_answer = after.is_empty() || after.starts_with(b"HTTP/1.1 ");
        let bodiless = code < 200 || code == 204 || code == 304 || head_answer;
        let body = if bodiless { 0 } else { length };
        assert!(rest.len() >= head + body, "response shorter than its Content-Length");
        rest = &rest[head + body..];
        if code >= 200 {
            finals += 1;
        }
    }
    assert_eq!(finals, responses, "responses counted and written differ");
});
