//! Framing: where one request ends and the next begins.
//!
//! HTTP/1.1 on a keep-alive connection is a stream of requests with no
//! separators of its own, so the server must find each request's end exactly:
//! the head ends at the first empty line, and the body is as long as
//! `Content-Length` says or as the chunks of `Transfer-Encoding: chunked`
//! say. Getting this wrong by a single byte lets a client hide a second
//! request inside the first one (request smuggling), so everything that is
//! ambiguous is rejected rather than guessed.
//!
//! [`parse_head`] works like httparse underneath it: given the bytes so far,
//! it answers "complete, and it used n bytes", "partial: wait for more", or
//! "rejected, with this status". It never copies the request: the
//! [`RequestHead`] borrows from the caller's buffer.
//!
//! Beyond framing, the head must name a valid host ([`valid_host`]): a
//! server that routes or logs by `Host` must not take `a/b` or `u@h` for a
//! name, and RFC 9112 §3.2 says such a request is a 400.

use std::mem::MaybeUninit;

use super::response::Status;

/// Size and count limits on what a client may send, with the defaults
/// `fivetuple serve` uses. They bound the memory one connection can make the
/// server hold.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Longest request line (method, target, version): longer gets 414.
    /// 8 KiB, as nginx's `large_client_header_buffers`.
    pub max_request_line: usize,
    /// Longest request head, request line and headers together: longer gets
    /// 431. Empty lines sent before the request line count too (a flood of
    /// nothing but empty lines gets 400), so that no byte a client sends
    /// before its request is answered escapes every limit.
    pub max_head: usize,
    /// Most header fields in one request: more gets 431.
    pub max_headers: usize,
    /// Largest request body: larger gets 413. None of the built-in routes
    /// takes a body, so 1 MiB (nginx's `client_max_body_size`) is plenty.
    pub max_body: u64,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_request_line: 8 * 1024,
            max_head: 16 * 1024,
            max_headers: 64,
            max_body: 1024 * 1024,
        }
    }
}

/// The most header slots httparse is given; `Limits::max_headers` may be lower.
pub const HEADER_SLOTS: usize = 100;

/// Why a request was refused: the status to answer and a short reason for
/// the error page and the log. The connection is always closed afterwards,
/// because after a framing error nobody knows where the next request starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reject {
    pub status: Status,
    pub reason: &'static str,
}

impl Reject {
    pub(super) const fn new(status: Status, reason: &'static str) -> Reject {
        Reject { status, reason }
    }
    pub(super) fn bad(reason: &'static str) -> Reject {
        Reject::new(Status::BAD_REQUEST, reason)
    }
}

/// How the body that follows a head is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    /// No body at all (no Content-Length, or `Content-Length: 0`).
    None,
    /// Exactly this many bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// A parsed request head, borrowing from the bytes it was parsed from.
#[derive(Debug)]
pub struct RequestHead<'h, 'b> {
    pub method: &'b str,
    /// The request target as sent (origin-form `/path?q`, absolute-form, or `*`).
    pub target: &'b str,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor: u8,
    /// Whether the client wants the connection kept open after the response.
    pub keep_alive: bool,
    pub body: BodyKind,
    /// `Expect: 100-continue` was sent: the client waits before its body.
    pub expects_continue: bool,
    pub headers: &'h [httparse::Header<'b>],
}

impl RequestHead<'_, '_> {
    /// The value of the first header with this name (ASCII case-insensitive).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    }
}

/// The outcome of trying to parse a request head from the bytes so far.
#[derive(Debug)]
pub enum Parsed<'h, 'b> {
    /// A whole head, which took this many bytes of the input (empty lines
    /// before it included).
    Complete(RequestHead<'h, 'b>, usize),
    /// The head is not finished yet: wait for more bytes. `skipped` bytes of
    /// empty lines at the start were consumed: the caller need not keep
    /// them, only pass their count to the next call.
    Partial { skipped: usize },
}

/// Header slots for [`parse_head`], uninitialised: filling 100 empty
/// headers before every parse would cost more than parsing a small request.
pub type Slots<'b> = [MaybeUninit<httparse::Header<'b>>; HEADER_SLOTS];

/// Fresh slots for [`parse_head`]; free, since nothing is written.
pub fn slots<'b>() -> Slots<'b> {
    [const { MaybeUninit::uninit() }; HEADER_SLOTS]
}

/// Parses one request head from the start of `buf`, using `slots` for the
/// header array so that nothing is allocated. `skipped`: bytes of empty
/// lines an earlier call already consumed before `buf` (see
/// [`Parsed::Partial`]); they count against `Limits::max_head`.
pub fn parse_head<'h, 'b>(
    buf: &'b [u8],
    skipped: usize,
    slots: &'h mut [MaybeUninit<httparse::Header<'b>>],
    limits: &Limits,
) -> Result<Parsed<'h, 'b>, Reject> {
    #[cfg(test)]
    counters::count(buf.len());
    // RFC 9112 §2.2: a server SHOULD ignore at least one empty line before a
    // request line (some clients send CRLF after a POST body). Ignored is
    // not free: they are counted, and a client that sends nothing else is
    // refused once they pass the head limit.
    let skip = leading_empty_lines(buf);
    let blank = skipped + skip;
    let buf_after = &buf[skip..];
    // Nothing but empty lines so far (the last, perhaps, half arrived).
    let only_empty_lines = buf_after.is_empty() || buf_after == b"\r";
    if blank + buf_after.len() > limits.max_head && only_empty_lines {
        return Err(Reject::bad(
            "more empty lines before the request line than the head limit",
        ));
    }
    if only_empty_lines {
        return Ok(Parsed::Partial { skipped: skip });
    }
    let slots_len = slots.len().min(limits.max_headers);
    let mut req = httparse::Request::new(&mut []);
    let len = match req.parse_with_uninit_headers(buf_after, &mut slots[..slots_len]) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => {
            check_size(buf_after, buf_after.len(), blank, limits)?;
            return Ok(Parsed::Partial { skipped: skip });
        }
        Err(e) => return Err(reject_parse_error(e, buf_after)),
    };
    check_size(buf_after, len, blank, limits)?;
    let method = req.method.unwrap_or("");
    let target = req.path.unwrap_or("");
    let minor = req.version.unwrap_or(1);
    let headers: &'h [httparse::Header<'b>] = req.headers;
    let framing = Framing::read(headers, minor)?;
    let body = framing.body(limits)?;
    if framing.hosts > 1 {
        return Err(Reject::bad("more than one Host header"));
    }
    if minor == 1 && framing.hosts == 0 {
        return Err(Reject::bad("HTTP/1.1 request without a Host header"));
    }
    if framing.host.is_some_and(|host| !valid_host(host)) {
        return Err(Reject::bad("invalid Host header"));
    }
    check_target(target)?;
    let keep_alive = match minor {
        1 => !framing.close,
        _ => framing.keep_alive && !framing.close,
    };
    Ok(Parsed::Complete(
        RequestHead {
            method,
            target,
            minor,
            keep_alive,
            body,
            expects_continue: framing.expects_continue,
            headers,
        },
        skip + len,
    ))
}

/// The bytes of empty lines (`CRLF` or a bare `LF`) at the start of `buf`.
/// A CR at the very end is not counted: it may be half of an empty line,
/// or the start of something invalid, and only the next byte tells.
pub fn leading_empty_lines(buf: &[u8]) -> usize {
    let mut i = 0;
    while i < buf.len() {
        if buf[i..].starts_with(b"\r\n") {
            i += 2;
        } else if buf[i] == b'\n' {
            i += 1;
        } else {
            break;
        }
    }
    i
}

/// Rejects a head of `head_len` bytes (at the start of `buf`, after `blank`
/// bytes of empty lines) whose request line or whole size is over the
/// limits: 414 for the line, 431 otherwise. A partial head is checked the
/// same way, with all of it so far as `head_len`.
fn check_size(buf: &[u8], head_len: usize, blank: usize, limits: &Limits) -> Result<(), Reject> {
    // The request line is part of the head: a head within the line limit
    // needs no search for where its first line ends (the common case).
    let line_len = if head_len <= limits.max_request_line {
        head_len
    } else {
        buf[..head_len]
            .iter()
            .position(|&b| b == b'\n')
            .unwrap_or(head_len)
    };
    if line_len > limits.max_request_line {
        Err(Reject::new(
            Status::URI_TOO_LONG,
            "request line longer than the limit",
        ))
    } else if blank + head_len > limits.max_head {
        Err(Reject::new(
            Status::HEADERS_TOO_LARGE,
            "request headers larger than the limit",
        ))
    } else {
        Ok(())
    }
}

fn reject_parse_error(e: httparse::Error, buf: &[u8]) -> Reject {
    match e {
        httparse::Error::TooManyHeaders => {
            Reject::new(Status::HEADERS_TOO_LARGE, "too many header fields")
        }
        httparse::Error::Version if names_other_http_version(buf) => Reject::new(
            Status::VERSION_NOT_SUPPORTED,
            "only HTTP/1.0 and HTTP/1.1 are spoken here",
        ),
        httparse::Error::Version => Reject::bad("not an HTTP/1.x request line"),
        httparse::Error::HeaderName => Reject::bad("invalid header name"),
        httparse::Error::HeaderValue => Reject::bad("invalid header value"),
        httparse::Error::NewLine => Reject::bad("invalid line ending"),
        httparse::Error::Token => Reject::bad("invalid method or request target"),
        httparse::Error::Status => Reject::bad("invalid request line"),
    }
}

/// True when the request line is well formed but names an HTTP version
/// other than 1.x (`HTTP/2.0`, `HTTP/3`): that deserves 505, not 400.
fn names_other_http_version(buf: &[u8]) -> bool {
    let line_end = buf.iter().position(|&b| b == b'\n').unwrap_or(buf.len());
    let line = buf[..line_end]
        .strip_suffix(b"\r")
        .unwrap_or(&buf[..line_end]);
    let mut parts = line.split(|&b| b == b' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let Some(digits) = version.strip_prefix(b"HTTP/") else {
        return false;
    };
    !method.is_empty()
        && !target.is_empty()
        && !digits.is_empty()
        && digits.iter().all(|&b| b.is_ascii_digit() || b == b'.')
        && !digits.starts_with(b"1.")
}

/// What the headers say about framing and the connection, gathered in one pass.
#[derive(Default)]
struct Framing<'a> {
    content_length: Option<u64>,
    transfer_encoding: Option<bool>, // Some(true) when it is exactly `chunked`
    close: bool,
    keep_alive: bool,
    hosts: usize,
    /// The value of the (first) Host header, if any.
    host: Option<&'a [u8]>,
    expects_continue: bool,
}

impl<'a> Framing<'a> {
    fn read(headers: &[httparse::Header<'a>], minor: u8) -> Result<Framing<'a>, Reject> {
        let mut f = Framing::default();
        for h in headers {
            let name = h.name;
            if name.eq_ignore_ascii_case("content-length") {
                if f.content_length.is_some() {
                    return Err(Reject::bad("more than one Content-Length"));
                }
                f.content_length = Some(parse_content_length(h.value)?);
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                if f.transfer_encoding.is_some() {
                    return Err(Reject::bad("more than one Transfer-Encoding"));
                }
                f.transfer_encoding = Some(trim(h.value).eq_ignore_ascii_case(b"chunked"));
            } else if name.eq_ignore_ascii_case("connection") {
                for token in h.value.split(|&b| b == b',').map(trim) {
                    f.close |= token.eq_ignore_ascii_case(b"close");
                    f.keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
                }
            } else if name.eq_ignore_ascii_case("host") {
                f.hosts += 1;
                f.host.get_or_insert(trim(h.value));
            } else if name.eq_ignore_ascii_case("expect") {
                if !trim(h.value).eq_ignore_ascii_case(b"100-continue") {
                    return Err(Reject::new(
                        Status::EXPECTATION_FAILED,
                        "only Expect: 100-continue is understood",
                    ));
                }
                f.expects_continue = minor == 1;
            }
        }
        if f.transfer_encoding.is_some() && minor == 0 {
            return Err(Reject::bad("Transfer-Encoding in an HTTP/1.0 request"));
        }
        if f.transfer_encoding.is_some() && f.content_length.is_some() {
            return Err(Reject::bad("both Content-Length and Transfer-Encoding"));
        }
        Ok(f)
    }

    fn body(&self, limits: &Limits) -> Result<BodyKind, Reject> {
        match (self.transfer_encoding, self.content_length) {
            (Some(true), _) => Ok(BodyKind::Chunked),
            (Some(false), _) => Err(Reject::bad(
                "Transfer-Encoding other than exactly \"chunked\"",
            )),
            (None, Some(n)) if n > limits.max_body => Err(Reject::new(
                Status::PAYLOAD_TOO_LARGE,
                "request body larger than the limit",
            )),
            (None, Some(0)) | (None, None) => Ok(BodyKind::None),
            (None, Some(n)) => Ok(BodyKind::Length(n)),
        }
    }
}

/// `Content-Length` is 1*DIGIT and nothing else: no sign, no `0x`, no
/// underscores, no list, no spaces inside, and no overflow.
fn parse_content_length(value: &[u8]) -> Result<u64, Reject> {
    let digits = trim(value);
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return Err(Reject::bad("malformed Content-Length"));
    }
    Ok(digits
        .iter()
        .fold(0u64, |n, &d| n * 10 + u64::from(d - b'0')))
}

fn trim(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|&b| b != b' ' && b != b'\t')
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|&b| b != b' ' && b != b'\t')
        .map_or(start, |i| i + 1);
    &bytes[start..end]
}

/// Whether `value` is RFC 3986's `host [ ":" port ]`, the grammar of a Host
/// field value (RFC 9110 §7.2): an IP literal in brackets (`[::1]`,
/// `[v1.x]`) or a reg-name (unreserved characters, sub-delims and
/// %-escapes, which covers IPv4 addresses and DNS names alike), then
/// optionally `:` and the digits of a port. Spaces, tabs, `/`, `@` and other
/// delimiters are not part of any host. An empty value is valid: RFC 9112
/// §3.2 has a client send one when the target URI has no authority.
pub fn valid_host(value: &[u8]) -> bool {
    if value.first() == Some(&b'[') {
        return match split_host_port(value) {
            Some((host, port)) => ip_literal(host) && port.iter().all(u8::is_ascii_digit),
            None => false,
        };
    }
    // The common case, a name or an IPv4 address, in one pass: the
    // reg-name (`*( unreserved / pct-encoded / sub-delims )`) runs up to
    // the first `:`, and the digits of a port follow it.
    let mut i = 0;
    loop {
        // A run of plain host bytes: the whole name, usually.
        while i < value.len() && HOST_BYTE[usize::from(value[i])] {
            i += 1;
        }
        match value.get(i) {
            None => return true,
            Some(b'%') if is_pct_escape(value.get(i + 1..i + 3)) => i += 3,
            Some(b':') => return value[i + 1..].iter().all(u8::is_ascii_digit),
            Some(_) => return false,
        }
    }
}

/// The two hex digits after a `%`, if both are there.
fn is_pct_escape(hex: Option<&[u8]>) -> bool {
    hex.is_some_and(|hex| hex.iter().all(u8::is_ascii_hexdigit))
}

/// Splits `host [":" port]` at the colon that ends the host (for an IP
/// literal, the one after `]`). `None` when something else follows the host.
fn split_host_port(value: &[u8]) -> Option<(&[u8], &[u8])> {
    let host_end = if value.first() == Some(&b'[') {
        value.iter().position(|&b| b == b']')? + 1
    } else {
        value.iter().position(|&b| b == b':').unwrap_or(value.len())
    };
    match value.split_at(host_end) {
        (host, []) => Some((host, &[])),
        (host, [b':', port @ ..]) => Some((host, port)),
        _ => None,
    }
}

/// `IP-literal = "[" ( IPv6address / IPvFuture ) "]"`; the IPv6 grammar is
/// the standard library's parser, `IPvFuture = "v" 1*HEXDIG "." 1*( unreserved / sub-delims / ":" )`.
fn ip_literal(host: &[u8]) -> bool {
    let Some(inner) = host
        .strip_prefix(b"[")
        .and_then(|rest| rest.strip_suffix(b"]"))
    else {
        return false;
    };
    if let Some(future) = inner
        .strip_prefix(b"v")
        .or_else(|| inner.strip_prefix(b"V"))
    {
        let Some(dot) = future.iter().position(|&b| b == b'.') else {
            return false;
        };
        let (version, rest) = (&future[..dot], &future[dot + 1..]);
        return !version.is_empty()
            && version.iter().all(u8::is_ascii_hexdigit)
            && !rest.is_empty()
            && rest
                .iter()
                .all(|&b| b == b':' || unreserved_or_sub_delim(b));
    }
    std::str::from_utf8(inner).is_ok_and(|text| text.parse::<std::net::Ipv6Addr>().is_ok())
}

fn unreserved_or_sub_delim(b: u8) -> bool {
    HOST_BYTE[usize::from(b)]
}

/// `unreserved / sub-delims` as a table, one entry per byte value: every
/// request's Host passes through [`valid_host`], byte by byte, and a lookup
/// costs less than asking "is it one of these fifteen?" for each byte.
const HOST_BYTE: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric();
        b += 1;
    }
    let others = b"-._~!$&'()*+,;=";
    let mut i = 0;
    while i < others.len() {
        table[others[i] as usize] = true;
        i += 1;
    }
    table
};

/// A target in absolute form (`http://host/path`, RFC 9112 §3.2.2) names
/// its own authority, which must be a valid, non-empty host (RFC 9110
/// §4.2.1) and must not carry userinfo (`http://user:pass@host/`): RFC 9110
/// §4.2.4 asks a recipient to treat userinfo as an error, since its only
/// use left is to disguise a host (`http://trusted@evil/`).
fn check_target(target: &str) -> Result<(), Reject> {
    let Some(authority) = authority_of(target) else {
        return Ok(());
    };
    if authority.contains('@') {
        return Err(Reject::bad("userinfo in the request target"));
    }
    let empty_host = split_host_port(authority.as_bytes()).is_some_and(|(h, _)| h.is_empty());
    if empty_host || !valid_host(authority.as_bytes()) {
        return Err(Reject::bad("invalid host in the request target"));
    }
    Ok(())
}

/// The authority of an absolute-form target (`scheme://authority/...`);
/// `None` for any other form (`/path`, `*`, `host:port`).
fn authority_of(target: &str) -> Option<&str> {
    if target.starts_with('/') {
        return None; // origin-form, the common case
    }
    let (scheme, rest) = target.split_once("://")?;
    let scheme_ok = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    if !scheme_ok {
        return None;
    }
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    Some(&rest[..end])
}

/// How often, and over how many bytes, [`parse_head`] ran on this thread:
/// the unit tests use it to show that the read path never parses the same
/// bytes over and over as a head arrives in pieces.
#[cfg(test)]
pub(crate) mod counters {
    use std::cell::Cell;

    thread_local! {
        static CALLS: Cell<usize> = const { Cell::new(0) };
        static BYTES: Cell<usize> = const { Cell::new(0) };
    }

    pub(crate) fn count(bytes: usize) {
        CALLS.with(|c| c.set(c.get() + 1));
        BYTES.with(|c| c.set(c.get() + bytes));
    }

    /// (calls, bytes looked at) since the last `take` on this thread.
    pub(crate) fn take() -> (usize, usize) {
        (CALLS.with(|c| c.replace(0)), BYTES.with(|c| c.replace(0)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(bytes: &[u8]) -> Result<(String, usize, BodyKind, bool), Reject> {
        let mut slots = slots();
        match parse_head(bytes, 0, &mut slots, &Limits::default())? {
            Parsed::Complete(h, n) => Ok((h.target.to_string(), n, h.body, h.keep_alive)),
            Parsed::Partial { .. } => Ok((String::new(), 0, BodyKind::None, false)),
        }
    }

    fn status(bytes: &[u8]) -> u16 {
        match head(bytes) {
            Ok(_) => 200,
            Err(r) => r.status.code,
        }
    }

    #[test]
    fn a_simple_get_is_complete() {
        let req = b"GET /_/hello HTTP/1.1\r\nHost: x\r\n\r\nGET";
        let (target, n, body, keep) = head(req).unwrap();
        assert_eq!(target, "/_/hello");
        assert_eq!(n, req.len() - 3);
        assert_eq!(body, BodyKind::None);
        assert!(keep);
    }

    #[test]
    fn keep_alive_defaults_differ_by_version() {
        assert!(!head(b"GET / HTTP/1.0\r\n\r\n").unwrap().3);
        assert!(
            head(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n")
                .unwrap()
                .3
        );
        assert!(
            !head(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .unwrap()
                .3
        );
    }

    #[test]
    fn framing_table() {
        let cases: &[(&[u8], u16)] = &[
            (b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n", 200),
            (b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: +1\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 0x10\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1_0\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: \r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 5\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 2000000\r\n\r\n", 413),
            (b"GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n", 200),
            (b"GET / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nHost : x\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nHost: x\ry\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nHost: x\0y\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\n: x\r\n\r\n", 400),
            (b"GET / HTTP/2.0\r\n\r\n", 505),
            (b"GET / HTTP/3\r\n\r\n", 505),
            (b"Test payload.\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n\r\n", 200),
            (b"GET / HTTP/1.1\r\nHost: x\r\nExpect: teapot\r\n\r\n", 417),
        ];
        for (bytes, want) in cases {
            assert_eq!(status(bytes), *want, "{}", String::from_utf8_lossy(bytes));
        }
    }

    #[test]
    fn limits_give_414_and_431() {
        let long_line = format!("GET /{} HTTP/1.1\r\n", "a".repeat(9000));
        assert_eq!(status(long_line.as_bytes()), 414);
        let many = format!(
            "GET / HTTP/1.1\r\nHost: x\r\n{}\r\n",
            "X-A: b\r\n".repeat(70)
        );
        assert_eq!(status(many.as_bytes()), 431);
        let big = format!(
            "GET / HTTP/1.1\r\nHost: x\r\nX-A: {}\r\n",
            "b".repeat(17000)
        );
        assert_eq!(status(big.as_bytes()), 431);
    }

    #[test]
    fn leading_empty_lines_are_skipped() {
        let (target, n, _, _) = head(b"\r\n\r\nGET /x HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        assert_eq!(target, "/x");
        assert_eq!(n, 4 + 28);
    }

    #[test]
    fn host_values_table() {
        let valid: &[&[u8]] = &[
            b"",
            b"t",
            b"example.com",
            b"example.com:8080",
            b"localhost:",
            b"127.0.0.1",
            b"127.0.0.1:500",
            b"999.1.1.1", // not an IPv4 address, but a valid reg-name
            b"xn--bcher-kva.example",
            b"a-b_c~d.e",
            b"%41%2e",
            b"!$&'()*+,;=",
            b"[::1]",
            b"[::1]:500",
            b"[2001:db8::7]",
            b"[::ffff:192.0.2.1]",
            b"[v1.fe80::a+en1]",
            b"[V7.x]",
        ];
        for v in valid {
            assert!(
                valid_host(v),
                "{:?} should be valid",
                String::from_utf8_lossy(v)
            );
        }
        let invalid: &[&[u8]] = &[
            b"a b",
            b"a/b",
            b"a\tb",
            b"a\\b",
            b"u@h",
            b"u:p@h",
            b"h:80:80",
            b"h:8a",
            b"h:-1",
            b"%4",
            b"%zz",
            b"a?b",
            b"a#b",
            b"a\"b",
            b"a<b>",
            b"[::1",
            b"::1",
            b"[::1]x",
            b"[::1]:x",
            b"[1::2::3]",
            b"[fe80::1%25eth0]",
            b"[v.x]",
            b"[v1.]",
            b"[vg.x]",
            b"[]",
            "h\u{e9}".as_bytes(),
        ];
        for v in invalid {
            assert!(
                !valid_host(v),
                "{:?} should be invalid",
                String::from_utf8_lossy(v)
            );
        }
    }

    #[test]
    fn hosts_and_targets_are_checked_in_the_head() {
        let cases: &[(&[u8], u16)] = &[
            (b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nHost: a\tb\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nHost: u@h\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nHost:  t:80 \r\n\r\n", 200),
            (b"GET / HTTP/1.1\r\nHost:\r\n\r\n", 200),
            (b"GET / HTTP/1.0\r\nHost: a b\r\n\r\n", 400),
            (b"GET / HTTP/1.0\r\nHost: a\r\nHost: a\r\n\r\n", 400),
            (b"GET http://t/ HTTP/1.1\r\nHost: t\r\n\r\n", 200),
            (b"GET http://t:80?q HTTP/1.1\r\nHost: t\r\n\r\n", 200),
            (b"GET http://u:p@t/ HTTP/1.1\r\nHost: t\r\n\r\n", 400),
            (b"GET http://u@t/ HTTP/1.1\r\nHost: t\r\n\r\n", 400),
            (b"GET http:///x HTTP/1.1\r\nHost: t\r\n\r\n", 400),
            (b"GET http://:80/x HTTP/1.1\r\nHost: t\r\n\r\n", 400),
            (b"GET http://[::1/ HTTP/1.1\r\nHost: t\r\n\r\n", 400),
            (b"GET /a?next=http://u@h/ HTTP/1.1\r\nHost: t\r\n\r\n", 200),
        ];
        for (bytes, want) in cases {
            assert_eq!(status(bytes), *want, "{}", String::from_utf8_lossy(bytes));
        }
    }

    #[test]
    fn empty_lines_count_against_the_head_limit() {
        let limits = Limits::default();
        let mut slots = slots();
        // Empty lines alone are consumed, not kept: the caller is told how many.
        let blank = b"\r\n\n".repeat(100);
        match parse_head(&blank, 0, &mut slots, &limits) {
            Ok(Parsed::Partial { skipped }) => assert_eq!(skipped, 300),
            other => panic!("{other:?}"),
        }
        // A CR at the end may be half an empty line: it is not consumed yet.
        match parse_head(b"\r\n\r", 0, &mut slots, &limits) {
            Ok(Parsed::Partial { skipped }) => assert_eq!(skipped, 2),
            other => panic!("{other:?}"),
        }
        // More empty lines than the head limit, in one piece or counted
        // over earlier calls: 400.
        let flood = b"\r\n".repeat(limits.max_head / 2 + 1);
        assert_eq!(
            parse_head(&flood, 0, &mut slots, &limits)
                .unwrap_err()
                .status
                .code,
            400
        );
        let err = parse_head(b"\r\n", limits.max_head - 1, &mut slots, &limits).unwrap_err();
        assert_eq!(err.status.code, 400);
        // Empty lines and head together over the limit: 431.
        let req = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
        let near = limits.max_head - req.len();
        assert!(matches!(
            parse_head(req, near, &mut slots, &limits),
            Ok(Parsed::Complete(..))
        ));
        let err = parse_head(req, near + 1, &mut slots, &limits).unwrap_err();
        assert_eq!(err.status.code, 431);
    }
}
