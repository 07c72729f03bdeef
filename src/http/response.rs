//! Writing responses: a status line, a few headers, a body, appended to a
//! buffer the caller owns and reuses.
//!
//! Nothing here allocates once the buffer has grown to its working size:
//! numbers are formatted with `itoa` on the stack and the `Date` header comes
//! from a [`Clock`] that formats the time once per second, not once per
//! request. That is most of what "no allocation per request" takes.
//!
//! A response that never changes but for its date (`/_/hello`) need not be
//! assembled header by header at all: a [`Canned`] response is written once,
//! by [`write_response`] itself, and each request then copies the bytes
//! before the date, the date, and the bytes after it.

use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// An HTTP status code with its reason phrase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status {
    pub code: u16,
    pub reason: &'static str,
}

impl Status {
    pub const CONTINUE: Status = Status::new(100, "Continue");
    pub const OK: Status = Status::new(200, "OK");
    pub const NO_CONTENT: Status = Status::new(204, "No Content");
    pub const PARTIAL_CONTENT: Status = Status::new(206, "Partial Content");
    pub const MOVED_PERMANENTLY: Status = Status::new(301, "Moved Permanently");
    pub const NOT_MODIFIED: Status = Status::new(304, "Not Modified");
    pub const BAD_REQUEST: Status = Status::new(400, "Bad Request");
    pub const FORBIDDEN: Status = Status::new(403, "Forbidden");
    pub const NOT_FOUND: Status = Status::new(404, "Not Found");
    pub const METHOD_NOT_ALLOWED: Status = Status::new(405, "Method Not Allowed");
    pub const REQUEST_TIMEOUT: Status = Status::new(408, "Request Timeout");
    pub const PAYLOAD_TOO_LARGE: Status = Status::new(413, "Content Too Large");
    pub const PRECONDITION_FAILED: Status = Status::new(412, "Precondition Failed");
    pub const URI_TOO_LONG: Status = Status::new(414, "URI Too Long");
    pub const RANGE_NOT_SATISFIABLE: Status = Status::new(416, "Range Not Satisfiable");
    pub const EXPECTATION_FAILED: Status = Status::new(417, "Expectation Failed");
    pub const HEADERS_TOO_LARGE: Status = Status::new(431, "Request Header Fields Too Large");
    pub const INTERNAL_ERROR: Status = Status::new(500, "Internal Server Error");
    pub const SERVICE_UNAVAILABLE: Status = Status::new(503, "Service Unavailable");
    pub const VERSION_NOT_SUPPORTED: Status = Status::new(505, "HTTP Version Not Supported");

    pub const fn new(code: u16, reason: &'static str) -> Status {
        Status { code, reason }
    }
}

/// The value of the `Server` header.
pub const SERVER: &str = concat!("fivetuple/", env!("CARGO_PKG_VERSION"));

/// Keeps the `Date` header text, formatted again only when the second changes.
#[derive(Debug, Clone)]
pub struct Clock {
    second: u64,
    text: String,
    /// When the wall clock's next second begins, on the monotonic clock
    /// ([`Clock::refresh_at`]): until then the text cannot change.
    next_second: Option<Instant>,
}

impl Default for Clock {
    fn default() -> Clock {
        let mut clock = Clock {
            second: u64::MAX,
            text: String::new(),
            next_second: None,
        };
        clock.refresh();
        clock
    }
}

impl Clock {
    /// Reads the wall clock; reformats the header only if a second has passed.
    pub fn refresh(&mut self) {
        let now = SystemTime::now();
        let since_epoch = now.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
        if since_epoch.as_secs() != self.second {
            self.second = since_epoch.as_secs();
            self.text = httpdate::fmt_http_date(now);
        }
        let left = Duration::from_secs(1)
            .saturating_sub(Duration::from_nanos(since_epoch.subsec_nanos().into()));
        self.next_second = Some(Instant::now() + left);
    }

    /// The reactor's once-a-turn refresh, given the time the turn began
    /// (already read, for the deadlines): the wall clock is read only once
    /// its next second may have begun, so a busy server reads it about
    /// once a second rather than once a turn.
    #[inline]
    pub fn refresh_at(&mut self, now: Instant) {
        if self.next_second.is_none_or(|next| now >= next) {
            self.refresh();
        }
    }

    /// The current time in IMF-fixdate form (`Sun, 06 Nov 1994 08:49:37 GMT`).
    pub fn http_date(&self) -> &str {
        &self.text
    }
}

/// What a response needs to know about the request it answers.
#[derive(Debug, Clone, Copy)]
pub struct Answer {
    /// HEAD: send the headers a GET would get, but no body.
    pub head_only: bool,
    /// The request's HTTP minor version (the response speaks 1.1 either way).
    pub minor: u8,
    /// The connection closes after this response (`Connection: close`).
    pub close: bool,
}

/// Appends a status line and the headers every response carries, then
/// `extra` headers, then `Content-Length` and the empty line. The caller
/// appends the body (unless `head_only`).
pub fn write_head(
    out: &mut Vec<u8>,
    answer: &Answer,
    status: Status,
    date: &str,
    content_type: Option<&str>,
    extra: &[(&str, &str)],
    content_length: u64,
) {
    write_head_start(out, status, date, content_type, extra);
    if answer.close {
        out.extend_from_slice(b"\r\nConnection: close");
    } else if answer.minor == 0 {
        out.extend_from_slice(b"\r\nConnection: keep-alive");
    }
    // 1xx, 204 and 304 carry no body and no Content-Length (RFC 9110 §8.6).
    if status.code >= 200 && status.code != 204 && status.code != 304 {
        out.extend_from_slice(b"\r\nContent-Length: ");
        out.extend_from_slice(itoa::Buffer::new().format(content_length).as_bytes());
    }
    out.extend_from_slice(b"\r\n\r\n");
}

/// The status line and the headers every response carries, then `extra`;
/// the caller adds the framing headers and the empty line.
fn write_head_start(
    out: &mut Vec<u8>,
    status: Status,
    date: &str,
    content_type: Option<&str>,
    extra: &[(&str, &str)],
) {
    let mut num = itoa::Buffer::new();
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(num.format(status.code).as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.reason.as_bytes());
    out.extend_from_slice(b"\r\nServer: ");
    out.extend_from_slice(SERVER.as_bytes());
    out.extend_from_slice(b"\r\nDate: ");
    out.extend_from_slice(date.as_bytes());
    if let Some(content_type) = content_type {
        out.extend_from_slice(b"\r\nContent-Type: ");
        out.extend_from_slice(content_type.as_bytes());
    }
    for (name, value) in extra {
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
    }
}

/// The head of a response whose body is made a piece at a time, its length
/// unknown up front: `Transfer-Encoding: chunked` for an HTTP/1.1 client;
/// for HTTP/1.0, which has no chunks, the connection's close ends the body
/// (the caller must close it). Returns whether the body is chunked.
pub fn write_streamed_head(
    out: &mut Vec<u8>,
    answer: &Answer,
    status: Status,
    date: &str,
    content_type: &str,
    extra: &[(&str, &str)],
) -> bool {
    let chunked = answer.minor == 1;
    write_head_start(out, status, date, Some(content_type), extra);
    if chunked {
        out.extend_from_slice(b"\r\nTransfer-Encoding: chunked");
    }
    if answer.close || !chunked {
        out.extend_from_slice(b"\r\nConnection: close");
    }
    out.extend_from_slice(b"\r\n\r\n");
    chunked
}

/// A whole response with an in-memory body. Returns the body bytes sent.
pub fn write_response(
    out: &mut Vec<u8>,
    answer: &Answer,
    status: Status,
    date: &str,
    content_type: &str,
    extra: &[(&str, &str)],
    body: &[u8],
) -> u64 {
    write_head(
        out,
        answer,
        status,
        date,
        Some(content_type),
        extra,
        body.len() as u64,
    );
    if answer.head_only {
        return 0;
    }
    out.extend_from_slice(body);
    body.len() as u64
}

/// A response whose bytes are all known in advance except the `Date` value.
///
/// The first time one is written, [`write_response`] renders it once for
/// each way an [`Answer`] can shape it (see [`SHAPES`]), with an empty
/// date, and each rendering is cut in two where the date goes. From then on
/// a request costs three copies: the bytes before the date, the date, the
/// bytes after it. Because the general code writes the pieces, a canned
/// response is byte for byte what `write_response` would have written.
#[derive(Debug)]
pub struct Canned {
    status: Status,
    content_type: &'static str,
    body: &'static [u8],
    rendered: OnceLock<[Split; SHAPES.len()]>,
}

/// One rendering of a canned response, cut where the date goes.
#[derive(Debug)]
struct Split {
    before_date: Box<[u8]>,
    after_date: Box<[u8]>,
}

/// One answer of each shape a response can take: which `Connection` header
/// [`write_head`] adds (none, `close`, or `keep-alive` for HTTP/1.0), and
/// whether a body follows (not for HEAD). In the order of [`shape`]'s numbers.
#[rustfmt::skip]
const SHAPES: [Answer; 6] = [
    Answer { head_only: false, minor: 1, close: false },
    Answer { head_only: true,  minor: 1, close: false },
    Answer { head_only: false, minor: 1, close: true },
    Answer { head_only: true,  minor: 1, close: true },
    Answer { head_only: false, minor: 0, close: false },
    Answer { head_only: true,  minor: 0, close: false },
];

/// The number of `answer`'s shape in [`SHAPES`].
fn shape(answer: &Answer) -> usize {
    let connection = if answer.close {
        1 // Connection: close
    } else if answer.minor == 0 {
        2 // Connection: keep-alive
    } else {
        0 // none
    };
    connection * 2 + usize::from(answer.head_only)
}

impl Canned {
    pub const fn new(status: Status, content_type: &'static str, body: &'static [u8]) -> Canned {
        Canned {
            status,
            content_type,
            body,
            rendered: OnceLock::new(),
        }
    }

    /// Appends the response for `answer`, dated `date`. Returns the body
    /// bytes sent, like [`write_response`].
    pub fn write(&self, out: &mut Vec<u8>, answer: &Answer, date: &str) -> u64 {
        let rendered = self
            .rendered
            .get_or_init(|| SHAPES.map(|a| self.render(&a)));
        let split = &rendered[shape(answer)];
        out.extend_from_slice(&split.before_date);
        out.extend_from_slice(date.as_bytes());
        out.extend_from_slice(&split.after_date);
        if answer.head_only {
            0
        } else {
            self.body.len() as u64
        }
    }

    /// The response for `answer` written by [`write_response`], cut after `Date: `.
    fn render(&self, answer: &Answer) -> Split {
        let mut bytes = Vec::new();
        let (status, content_type, body) = (self.status, self.content_type, self.body);
        write_response(&mut bytes, answer, status, "", content_type, &[], body);
        const DATE: &[u8] = b"\r\nDate: ";
        let date_at = bytes
            .windows(DATE.len())
            .position(|w| w == DATE)
            .expect("every response has a Date");
        let after_date = bytes.split_off(date_at + DATE.len());
        Split {
            before_date: bytes.into_boxed_slice(),
            after_date: after_date.into_boxed_slice(),
        }
    }
}

/// An error as a small HTML page: the status, and one sentence of why.
pub fn write_error(
    out: &mut Vec<u8>,
    answer: &Answer,
    status: Status,
    date: &str,
    extra: &[(&str, &str)],
    reason: &str,
) -> u64 {
    let mut code = itoa::Buffer::new();
    let code = code.format(status.code);
    let mut page = String::with_capacity(256);
    page.push_str("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>");
    page.push_str(code);
    page.push(' ');
    page.push_str(status.reason);
    page.push_str("</title></head>\n<body><h1>");
    page.push_str(code);
    page.push(' ');
    page.push_str(status.reason);
    page.push_str("</h1>\n<p>");
    html_escape_into(&mut page, reason);
    page.push_str("</p>\n<hr><p>");
    page.push_str(SERVER);
    page.push_str("</p></body></html>\n");
    write_response(
        out,
        answer,
        status,
        date,
        "text/html; charset=utf-8",
        extra,
        page.as_bytes(),
    )
}

/// Appends `text` to a page being built as bytes, escaped as
/// [`html_escape_into`] does.
pub fn html_escape_bytes(out: &mut Vec<u8>, text: &str) {
    // Every special character is ASCII, and an ASCII byte never occurs
    // inside a multi-byte character: byte by byte is safe.
    for b in text.bytes() {
        match b {
            b'&' => out.extend_from_slice(b"&amp;"),
            b'<' => out.extend_from_slice(b"&lt;"),
            b'>' => out.extend_from_slice(b"&gt;"),
            b'"' => out.extend_from_slice(b"&quot;"),
            b'\'' => out.extend_from_slice(b"&#39;"),
            b => out.push(b),
        }
    }
}

/// Appends `text` with the five HTML-special characters escaped.
pub fn html_escape_into(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEEP: Answer = Answer {
        head_only: false,
        minor: 1,
        close: false,
    };

    #[test]
    fn a_response_is_framed_by_content_length() {
        let mut out = Vec::new();
        let n = write_response(&mut out, &KEEP, Status::OK, "D", "text/plain", &[], b"hi");
        assert_eq!(n, 2);
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(text.contains("\r\nDate: D\r\n"));
        assert!(text.ends_with("\r\nContent-Length: 2\r\n\r\nhi"));
        assert!(!text.contains("Connection"));
    }

    #[test]
    fn head_gets_the_length_but_not_the_body() {
        let mut out = Vec::new();
        let answer = Answer {
            head_only: true,
            ..KEEP
        };
        write_response(
            &mut out,
            &answer,
            Status::OK,
            "D",
            "text/plain",
            &[],
            b"hello",
        );
        assert!(out.ends_with(b"Content-Length: 5\r\n\r\n"));
    }

    #[test]
    fn connection_header_follows_the_decision() {
        let mut out = Vec::new();
        let close = Answer {
            close: true,
            ..KEEP
        };
        write_response(&mut out, &close, Status::OK, "D", "t", &[], b"");
        assert!(String::from_utf8_lossy(&out).contains("Connection: close\r\n"));
        out.clear();
        let old = Answer { minor: 0, ..KEEP };
        write_response(&mut out, &old, Status::OK, "D", "t", &[], b"");
        assert!(String::from_utf8_lossy(&out).contains("Connection: keep-alive\r\n"));
    }

    #[test]
    fn error_pages_escape_the_reason() {
        let mut out = Vec::new();
        write_error(&mut out, &KEEP, Status::NOT_FOUND, "D", &[], "<script>");
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("&lt;script&gt;"));
        assert!(!text.contains("<script>"));
    }

    #[test]
    fn every_shape_has_its_number() {
        for (i, answer) in SHAPES.iter().enumerate() {
            assert_eq!(shape(answer), i, "{answer:?}");
        }
    }

    #[test]
    fn a_canned_response_is_what_write_response_writes() {
        static CANNED: Canned = Canned::new(Status::OK, "text/plain", b"Hello, World!");
        let date = "Sun, 06 Nov 1994 08:49:37 GMT";
        for head_only in [false, true] {
            for close in [false, true] {
                for minor in [0, 1] {
                    let answer = Answer {
                        head_only,
                        minor,
                        close,
                    };
                    let (mut canned, mut general) = (Vec::new(), Vec::new());
                    let sent = CANNED.write(&mut canned, &answer, date);
                    let body = b"Hello, World!";
                    let want = write_response(
                        &mut general,
                        &answer,
                        Status::OK,
                        date,
                        "text/plain",
                        &[],
                        body,
                    );
                    assert_eq!(
                        String::from_utf8_lossy(&canned),
                        String::from_utf8_lossy(&general),
                        "{answer:?}"
                    );
                    assert_eq!(sent, want);
                }
            }
        }
    }

    #[test]
    fn the_clock_formats_an_imf_fixdate() {
        let clock = Clock::default();
        assert_eq!(clock.http_date().len(), 29);
        assert!(clock.http_date().ends_with(" GMT"));
    }
}
