//! What each URL answers.
//!
//! The built-in endpoints live under `/_/` so that a served directory can
//! own `/`. Resolving a request to a [`Route`] is separate from answering
//! it: a request with a body is resolved when its head arrives and answered
//! when its body has been read, so the route must be a small owned value.
//!
//! One answer has no end: the event stream (`/_/events`). Its head carries
//! neither `Content-Length` nor `Transfer-Encoding` but `Connection: close`,
//! so its body is everything until the connection closes (RFC 9112 §6.3,
//! the last rule), which every HTTP/1.x client and strict parser accepts,
//! HTTP/1.0 ones included. Chunked framing would add bytes to every event
//! and buy nothing: the stream ends only when the connection does. The
//! route writes that head and the first event; the server keeps writing
//! the rest (see `crate::live::events`).
//!
//! A stream without end is a trap for a crawler: `wget -r` or a link
//! checker that follows a link to it never finishes. So no page links it
//! in HTML (the live page's script adds its link), and `/robots.txt` asks
//! crawlers to stay out of `/_/`, whose pages are all live and none worth
//! a mirror. A served directory may bring its own `robots.txt`, which then
//! wins; without one, the server's is served there too.

use super::pages::{self, ROBOTS};
use super::parse::RequestHead;
use super::response::SERVER;
use super::response::{write_error, write_response, Answer, Canned, Status};
use super::{Ctx, FileRequest, Reply, Subscribe};
use crate::table::{Format, DEFAULT_ROWS, ROWS_AT_ONCE};

/// Where a request goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `/_/`, and `/` unless a directory is served: the live page, the
    /// connection table as it changes (see `crate::live`).
    Live,
    /// `/_/about`: a short page that says what this server is and links
    /// the endpoints.
    About,
    /// `/_/events`: the event stream behind the live page. With several
    /// workers, the events of the worker that accepted the connection, no
    /// other's: `hello` and `counters` name it (see `crate::live::events`).
    Events,
    /// `/_/metrics`: counters in the Prometheus text format; with several
    /// workers, every worker's added up (see `crate::live::metrics`).
    Metrics,
    /// `/_/hello`: 13 bytes of plain text, the benchmark endpoint.
    Hello,
    /// `/robots.txt`: keeps crawlers out of `/_/` (see the module comment).
    Robots,
    /// `/_/whoami`: the caller's own 5-tuple as the server sees it.
    Whoami,
    /// `/_/conns` (text) and `/_/conns.json`: the live connection table,
    /// with at most this many connection rows (`?rows=N`, `?all`).
    Conns(Format, usize),
    /// `/_/conns?workers`: every worker's table (`serve --workers N`).
    AllWorkers(Format, usize),
    /// `/_/conns?worker=I`: worker I's table, whichever worker answers
    /// (the live page syncs from its stream's worker's table).
    OneWorker(Format, usize, usize),
    /// `OPTIONS`: which methods are allowed.
    Options,
    /// A method other than GET, HEAD or OPTIONS.
    MethodNotAllowed,
    /// A request target that is not a path.
    BadTarget,
    /// Anything outside `/_/` while a directory is served (`--dir`).
    File(Box<FileRequest>),
    NotFound,
}

/// `/_/hello`'s answer, the same for every request but for its date: the
/// benchmark endpoint, so it is written the cheapest way there is.
static HELLO: Canned = Canned::new(Status::OK, "text/plain", b"Hello, World!");

/// Where crawlers look for the rules of a site (RFC 9309).
const ROBOTS_PATH: &str = "/robots.txt";

/// The methods every route answers, for `Allow`.
const ALLOW: (&str, &str) = ("Allow", "GET, HEAD, OPTIONS");
const NO_STORE: (&str, &str) = ("Cache-Control", "no-store");
/// The page is the same bytes for the whole life of a binary, but a newer
/// binary serves newer ones: a browser may keep it if it asks first.
const NO_CACHE: (&str, &str) = ("Cache-Control", "no-cache");
/// The Prometheus text exposition format, version 0.0.4.
const METRICS_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The event stream's head, then its first event. See the module comment
/// for why it is framed by the connection's close. `retry` tells the
/// browser how long to wait before it reconnects, in milliseconds.
fn event_stream(out: &mut Vec<u8>, answer: &Answer, ctx: &Ctx<'_>) -> Reply {
    out.extend_from_slice(b"HTTP/1.1 200 OK\r\nServer: ");
    out.extend_from_slice(SERVER.as_bytes());
    out.extend_from_slice(b"\r\nDate: ");
    out.extend_from_slice(ctx.date.as_bytes());
    out.extend_from_slice(
        b"\r\nContent-Type: text/event-stream\r\nCache-Control: no-store\r\n\
          X-Accel-Buffering: no\r\nConnection: close\r\n\r\n",
    );
    if answer.head_only {
        return Reply::written(Status::OK, 0);
    }
    let p = &ctx.peer;
    // With several workers the stream is its worker's alone: it says which.
    let worker = match ctx.host.worker() {
        Some(w) => format!(",\"worker\":{w}"),
        None => String::new(),
    };
    // The server's generation: one more at each restart (SIGHUP), so a
    // page that reconnects after a restart says it is talking to the new copy.
    let hello = format!(
        "retry: 2000\nevent: hello\ndata: {{\"token\":{},\"local\":\"{}\",\"remote\":\"{}\"{worker},\"generation\":{}}}\n\n",
        p.token,
        p.local,
        p.remote,
        ctx.host.generation()
    );
    out.extend_from_slice(hello.as_bytes());
    Reply {
        events: true,
        ..Reply::written(Status::OK, hello.len() as u64)
    }
}

/// Picks the route for a request head. `files`: a directory is served.
pub fn resolve(head: &RequestHead<'_, '_>, files: bool) -> Route {
    let route = resolve_target(head.method, head.target, files);
    match route {
        Route::File(_) => {
            let text = |name: &str| {
                head.header(name)
                    .and_then(|v| std::str::from_utf8(v).ok())
                    .map(str::to_string)
            };
            let path = path_of(head.target).unwrap_or("/").to_string();
            let query = head
                .target
                .split_once('?')
                .map(|(_, q)| q.split('#').next().unwrap_or("").to_string())
                .filter(|q| !q.is_empty());
            Route::File(Box::new(FileRequest {
                path,
                query,
                if_match: text("if-match"),
                if_unmodified_since: text("if-unmodified-since"),
                if_none_match: text("if-none-match"),
                if_modified_since: text("if-modified-since"),
                range: text("range"),
                if_range: text("if-range"),
            }))
        }
        other => other,
    }
}

/// The route for a method and target alone (a `File` route carries only
/// an empty request here; [`resolve`] fills it from the head).
pub fn resolve_target(method: &str, target: &str, files: bool) -> Route {
    match method {
        "GET" | "HEAD" => {}
        "OPTIONS" => return Route::Options,
        _ => return Route::MethodNotAllowed,
    }
    // Most targets carry no query: look the target up as it is first, and
    // search it for where the path ends (a look at every byte) only if that
    // finds nothing.
    if let Some(route) = builtin(target, target) {
        return route;
    }
    let Some(path) = path_of(target) else {
        return Route::BadTarget;
    };
    if let Some(route) = builtin(path, target) {
        return route;
    }
    match path {
        _ if path.starts_with("/_/") => Route::NotFound,
        _ if files => Route::File(Box::default()),
        // Without a directory, `/` is the live page too: what someone who
        // opens the server in a browser came to see.
        "/" => Route::Live,
        ROBOTS_PATH => Route::Robots,
        _ => Route::NotFound,
    }
}

/// The server's own pages under `/_/`, by path (`target` for the query).
fn builtin(path: &str, target: &str) -> Option<Route> {
    Some(match path {
        // The live page is always at `/_/`, so that it stays reachable when
        // a served directory owns `/`.
        "/_/" => Route::Live,
        "/_/about" => Route::About,
        "/_/events" => Route::Events,
        "/_/metrics" => Route::Metrics,
        "/_/hello" => Route::Hello,
        "/_/whoami" => Route::Whoami,
        "/_/conns" => conns_route(Format::Text, target),
        "/_/conns.json" => conns_route(Format::Json, target),
        _ => return None,
    })
}

/// The answering worker's table, every worker's with `?workers`, or one
/// named worker's with `?worker=I`.
fn conns_route(format: Format, target: &str) -> Route {
    let query = target.split_once('?').map_or("", |(_, q)| q);
    let query = query.split('#').next().unwrap_or("");
    let all = query
        .split('&')
        .any(|pair| pair == "workers" || pair.starts_with("workers="));
    let one = query
        .split('&')
        .find_map(|pair| pair.strip_prefix("worker=")?.parse().ok());
    match (all, one) {
        (true, _) => Route::AllWorkers(format, rows_asked(target)),
        (false, Some(worker)) => Route::OneWorker(format, rows_asked(target), worker),
        (false, None) => Route::Conns(format, rows_asked(target)),
    }
}

/// How many connection rows a `/_/conns` request asks for: `?all`, or
/// `?rows=N`, or [`DEFAULT_ROWS`].
fn rows_asked(target: &str) -> usize {
    let query = target.split_once('?').map_or("", |(_, q)| q);
    let query = query.split('#').next().unwrap_or("");
    let mut rows = DEFAULT_ROWS;
    for pair in query.split('&') {
        match pair.split_once('=') {
            None if pair == "all" => rows = usize::MAX,
            Some(("all", _)) => rows = usize::MAX,
            Some(("rows", n)) => rows = n.parse().unwrap_or(rows),
            _ => {}
        }
    }
    rows
}

/// Whether the connection must close after answering this request, even
/// though its framing is sound:
///
/// - a `CONNECT` (refused with 405: this is no proxy) is followed by the
///   bytes of the tunnel the client hoped for, which are no request;
/// - a target that is not a path (`GET *`, `GET host:80`) means the client
///   and the server disagree about what they are speaking, and a server
///   does not guess where such a client's next request starts;
/// - the event stream's answer lasts until the connection closes, so no
///   request after it can be answered.
pub fn ends_connection(method: &str, route: &Route) -> bool {
    method == "CONNECT" || matches!(route, Route::BadTarget | Route::Events)
}

/// The path of a request target, without query or fragment. Accepts
/// origin-form (`/a?b`) and absolute-form (`http://host/a?b`, which a
/// server must accept, RFC 9112 §3.2.2); anything else is not a path.
pub fn path_of(target: &str) -> Option<&str> {
    let rest = if target.starts_with('/') {
        target
    } else {
        let after_scheme = target
            .strip_prefix("http://")
            .or_else(|| target.strip_prefix("https://"))?;
        // The authority ends at the first `/`, `?` or `#`; without a `/`
        // the path is empty, which means `/`.
        match after_scheme
            .bytes()
            .position(|b| matches!(b, b'/' | b'?' | b'#'))
        {
            Some(end) if after_scheme[end..].starts_with('/') => &after_scheme[end..],
            _ => "/",
        }
    };
    // Bytes, not chars: every request's target passes through here, and
    // matching chars would decode UTF-8 for nothing. An ASCII byte never
    // occurs inside a multi-byte character, so the position is a boundary.
    let end = rest
        .bytes()
        .position(|b| matches!(b, b'?' | b'#'))
        .unwrap_or(rest.len());
    Some(&rest[..end])
}

/// Writes the answer for `route` into `out`.
pub fn respond(route: &Route, answer: &Answer, ctx: &Ctx<'_>, out: &mut Vec<u8>) -> Reply {
    let date = ctx.date;
    let ok = |out: &mut Vec<u8>, content_type: &str, extra: &[(&str, &str)], body: &[u8]| {
        let n = write_response(out, answer, Status::OK, date, content_type, extra, body);
        Reply::written(Status::OK, n)
    };
    match route {
        Route::Hello => Reply::written(Status::OK, HELLO.write(out, answer, date)),
        Route::Robots => Reply::written(Status::OK, ROBOTS.write(out, answer, date)),
        Route::Whoami => {
            let p = &ctx.peer;
            let text = match ctx.host.worker() {
                Some(worker) => format!(
                    "tcp {} <- {}, token {}, worker {worker}\n",
                    p.local, p.remote, p.token
                ),
                None => format!("tcp {} <- {}, token {}\n", p.local, p.remote, p.token),
            };
            // Which copy of the server answered, in a header: the body's
            // one line is what `fivetuple connect` reads.
            let generation = ctx.host.generation().to_string();
            ok(
                out,
                "text/plain; charset=utf-8",
                &[NO_STORE, ("Fivetuple-Generation", &generation)],
                text.as_bytes(),
            )
        }
        Route::Conns(format, rows)
        | Route::AllWorkers(format, rows)
        | Route::OneWorker(format, rows, _) => {
            let content_type = match format {
                Format::Text => "text/plain; charset=utf-8",
                Format::Json => "application/json",
            };
            // A long table of this worker's own is sent a slice per turn.
            let own = match route {
                Route::Conns(..) => true,
                Route::OneWorker(_, _, worker) => ctx.host.worker().is_none_or(|w| w == *worker),
                _ => false,
            };
            if own {
                if let Some(pieces) = ctx.host.table_pieces(ctx.peer.token, *format, *rows) {
                    return Reply::streamed(out, answer, date, content_type, &[NO_STORE], pieces);
                }
            }
            let mut body = Vec::new();
            match route {
                // Every worker's table in one answer: at most ROWS_AT_ONCE
                // rows of each (the others' are posted with fewer anyway).
                Route::AllWorkers(..) => ctx.host.write_all_workers(
                    ctx.peer.token,
                    *format,
                    (*rows).min(ROWS_AT_ONCE),
                    &mut body,
                ),
                Route::OneWorker(_, _, worker) => {
                    ctx.host
                        .write_worker_table(ctx.peer.token, *worker, *format, *rows, &mut body)
                }
                _ => ctx
                    .host
                    .write_table(ctx.peer.token, *format, *rows, &mut body),
            }
            ok(out, content_type, &[NO_STORE], &body)
        }
        Route::Live => ok(
            out,
            "text/html; charset=utf-8",
            &[NO_CACHE],
            pages::LIVE.as_bytes(),
        ),
        Route::About => ok(
            out,
            "text/html; charset=utf-8",
            &[],
            pages::about(&ctx.peer).as_bytes(),
        ),
        Route::Metrics => {
            let mut body = Vec::new();
            if !ctx.host.write_metrics(&mut body) {
                return error(out, answer, ctx, Status::NOT_FOUND, &[], "No metrics here.");
            }
            ok(out, METRICS_TYPE, &[NO_STORE], &body)
        }
        Route::Events => {
            let offer = match ctx.shutting_down {
                true => Subscribe::Full,
                false => ctx.host.subscribe(),
            };
            match offer {
                Subscribe::Yes => event_stream(out, answer, ctx),
                Subscribe::NotHere => error(
                    out,
                    answer,
                    ctx,
                    Status::NOT_FOUND,
                    &[],
                    "This server has no event stream.",
                ),
                Subscribe::Full => error(
                    out,
                    answer,
                    ctx,
                    Status::SERVICE_UNAVAILABLE,
                    &[("Retry-After", "5")],
                    "The event stream has as many subscribers as it takes, or the server is stopping.",
                ),
            }
        }
        Route::Options => {
            let status = Status::NO_CONTENT;
            super::response::write_head(out, answer, status, date, None, &[ALLOW], 0);
            Reply::written(status, 0)
        }
        Route::File(req) => match &ctx.config.files {
            Some(site) => {
                let start = out.len();
                let reply = site.respond(req, answer, ctx.date, out);
                if reply.status == Status::NOT_FOUND && req.path == ROBOTS_PATH {
                    // The directory has no robots.txt of its own.
                    out.truncate(start);
                    return Reply::written(Status::OK, ROBOTS.write(out, answer, date));
                }
                reply
            }
            None => error(
                out,
                answer,
                ctx,
                Status::NOT_FOUND,
                &[],
                "No directory is served.",
            ),
        },
        Route::MethodNotAllowed => error(
            out,
            answer,
            ctx,
            Status::METHOD_NOT_ALLOWED,
            &[ALLOW],
            "This server answers GET, HEAD and OPTIONS.",
        ),
        Route::BadTarget => error(
            out,
            answer,
            ctx,
            Status::BAD_REQUEST,
            &[],
            "The request target is not a path.",
        ),
        Route::NotFound => error(
            out,
            answer,
            ctx,
            Status::NOT_FOUND,
            &[],
            "Nothing here. Try /_/ (the live page), /_/conns, /_/whoami or /_/hello.",
        ),
    }
}

fn error(
    out: &mut Vec<u8>,
    answer: &Answer,
    ctx: &Ctx<'_>,
    status: Status,
    extra: &[(&str, &str)],
    reason: &str,
) -> Reply {
    let n = write_error(out, answer, status, ctx.date, extra, reason);
    Reply::written(status, n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_table() {
        let cases = [
            ("GET", "/", Route::Live),
            ("GET", "/_/about", Route::About),
            ("GET", "/_/events", Route::Events),
            ("GET", "/_/metrics?x", Route::Metrics),
            ("HEAD", "/_/hello", Route::Hello),
            ("GET", "/_/hello?x=1", Route::Hello),
            ("GET", "/_/whoami#frag", Route::Whoami),
            ("GET", "/_/conns", Route::Conns(Format::Text, DEFAULT_ROWS)),
            (
                "GET",
                "/_/conns?all",
                Route::Conns(Format::Text, usize::MAX),
            ),
            ("GET", "/_/conns?rows=7", Route::Conns(Format::Text, 7)),
            (
                "GET",
                "/_/conns?workers&rows=7",
                Route::AllWorkers(Format::Text, 7),
            ),
            (
                "GET",
                "/_/conns.json?rows=200&worker=3",
                Route::OneWorker(Format::Json, 200, 3),
            ),
            (
                "GET",
                "/_/conns?worker=x",
                Route::Conns(Format::Text, DEFAULT_ROWS),
            ),
            (
                "GET",
                "/_/conns.json",
                Route::Conns(Format::Json, DEFAULT_ROWS),
            ),
            (
                "GET",
                "/_/conns.json?x=1&all=1",
                Route::Conns(Format::Json, usize::MAX),
            ),
            ("GET", "http://example.com/_/hello", Route::Hello),
            ("GET", "http://example.com", Route::Live),
            ("GET", "http://example.com?to=/_/hello", Route::Live),
            ("GET", "/_/", Route::Live),
            ("HEAD", "/_/?x", Route::Live),
            ("GET", "*", Route::BadTarget),
            ("GET", "/nope", Route::NotFound),
            ("GET", "/robots.txt", Route::Robots),
            ("HEAD", "/robots.txt?x", Route::Robots),
            ("POST", "/_/hello", Route::MethodNotAllowed),
            ("OPTIONS", "*", Route::Options),
        ];
        for (method, target, want) in cases {
            assert_eq!(
                resolve_target(method, target, false),
                want,
                "{method} {target}"
            );
        }
        let file = Route::File(Box::default());
        assert_eq!(resolve_target("GET", "/", true), file);
        assert_eq!(resolve_target("GET", "/a/b.txt", true), file);
        // A served directory's own robots.txt comes first.
        assert_eq!(resolve_target("GET", "/robots.txt", true), file);
        assert_eq!(resolve_target("GET", "/_/hello", true), Route::Hello);
        assert_eq!(resolve_target("GET", "/_/other", true), Route::NotFound);
        assert_eq!(resolve_target("GET", "/_/", true), Route::Live);
        assert_eq!(resolve_target("GET", "/_/about", true), Route::About);
        assert_eq!(resolve_target("GET", "/_/events", true), Route::Events);
    }

    #[test]
    fn connect_and_targets_that_are_not_paths_end_the_connection() {
        let route = |m, t| resolve_target(m, t, false);
        assert!(ends_connection("CONNECT", &route("CONNECT", "t:443")));
        assert!(ends_connection("GET", &route("GET", "*")));
        assert!(ends_connection("HEAD", &route("HEAD", "t:80")));
        assert!(!ends_connection("POST", &route("POST", "/_/hello")));
        assert!(!ends_connection("OPTIONS", &route("OPTIONS", "*")));
        assert!(!ends_connection("GET", &route("GET", "/nope")));
        assert!(ends_connection("GET", &route("GET", "/_/events")));
    }
}
