//! Serving a directory, like `python3 -m http.server`, but safely.
//!
//! A request path is untrusted text that is about to become a file name, so
//! it goes through one narrow gate, [`Site::resolve`]:
//!
//! 1. percent-decoding is strict: a `%` must be followed by two hex digits,
//!    and the result must be UTF-8 (which also rules out "overlong"
//!    encodings such as `%c0%ae` for `.`);
//! 2. a decoded NUL, `/` (from `%2f`) or `\` is refused, because each lets
//!    one segment pretend to be something else;
//! 3. `..` segments are refused outright rather than resolved, and empty and
//!    `.` segments are dropped, so the path can only go down from the root;
//! 4. the file's real location (every symbolic link followed) must still be
//!    under the root, unless `--follow-symlinks` says links may lead out.
//!
//! Redirects are built from the cleaned segments, never from the raw target,
//! so a `Location` cannot start with `//` (which a browser would read as
//! another host) or carry a backslash.
//!
//! Large files are not read into memory: the head is written with the
//! length, and the body follows in pieces as the connection drains (a
//! [`Body`] the session pulls from). File system calls
//! block the loop while they run; for local files they are short, and nginx
//! without thread pools makes the same trade.

use std::fs::{self, File, Metadata};
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use crate::error::{Error, Result};
use crate::http::response::{
    html_escape_into, write_error, write_head, write_response, Answer, Status,
};
use crate::http::routes::Reply;
use crate::http::Body;

/// Files up to this size are written in one piece; larger ones stream.
const SMALL_FILE: u64 = 64 * 1024;

/// Characters left as they are in listing links: unreserved ones (RFC 3986).
const HREF: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// A served directory.
#[derive(Debug)]
pub struct Site {
    /// The directory, canonical (every link resolved).
    root: PathBuf,
    /// Symbolic links may lead outside the root.
    follow_symlinks: bool,
}

/// The parts of a file request that are kept from its head.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FileRequest {
    /// The request target's path, still percent-encoded.
    pub path: String,
    /// The query string (without `?`), kept for redirects.
    pub query: Option<String>,
    pub if_none_match: Option<String>,
    pub if_modified_since: Option<String>,
    pub range: Option<String>,
    pub if_range: Option<String>,
}

/// Where a request path leads.
#[derive(Debug, PartialEq, Eq)]
pub enum Resolved {
    /// A path under the root, and the clean segments that named it.
    Path(PathBuf, Vec<String>),
    /// Refused before touching the disk.
    Bad(&'static str),
}

impl Site {
    /// Checks that `dir` is a readable directory.
    pub fn new(dir: &Path, follow_symlinks: bool) -> Result<Site> {
        let root = fs::canonicalize(dir)
            .map_err(|e| Error::usage(format!("cannot serve {}: {e}", dir.display())))?;
        if !root.is_dir() {
            return Err(Error::usage(format!(
                "cannot serve {}: not a directory",
                dir.display()
            )));
        }
        fs::read_dir(&root)
            .map_err(|e| Error::usage(format!("cannot serve {}: {e}", dir.display())))?;
        Ok(Site {
            root,
            follow_symlinks,
        })
    }

    /// The gate between a request path and the file system (see the module comment).
    pub fn resolve(&self, raw_path: &str) -> Resolved {
        if raw_path.contains('\\') {
            return Resolved::Bad("backslashes are not allowed in paths");
        }
        let mut segments = Vec::new();
        for raw in raw_path.split('/') {
            let Some(segment) = decode_segment(raw) else {
                return Resolved::Bad("invalid percent-encoding in the path");
            };
            if segment.contains(['\0', '/', '\\']) {
                return Resolved::Bad("encoded NUL, slash or backslash in the path");
            }
            match segment.as_str() {
                "" | "." => {}
                ".." => return Resolved::Bad("\"..\" is not allowed in paths"),
                _ => segments.push(segment),
            }
        }
        let path = segments.iter().fold(self.root.clone(), |p, s| p.join(s));
        Resolved::Path(path, segments)
    }

    /// Answers a GET or HEAD for `req`.
    pub fn respond(
        &self,
        req: &FileRequest,
        answer: &Answer,
        date: &str,
        out: &mut Vec<u8>,
    ) -> Reply {
        let error = |out: &mut Vec<u8>, status: Status, reason: &str| {
            Reply::written(status, write_error(out, answer, status, date, &[], reason))
        };
        let (path, segments) = match self.resolve(&req.path) {
            Resolved::Path(path, segments) => (path, segments),
            Resolved::Bad(reason) => return error(out, Status::BAD_REQUEST, reason),
        };
        if !self.inside_root(&path) {
            return error(out, Status::NOT_FOUND, "No such file or directory.");
        }
        let meta = match fs::metadata(&path) {
            Ok(meta) => meta,
            Err(e) => return io_error(out, answer, date, &e),
        };
        if meta.is_dir() {
            if !req.path.ends_with('/') {
                let location = redirect_target(&segments, req.query.as_deref());
                let status = Status::MOVED_PERMANENTLY;
                let n = write_error(
                    out,
                    answer,
                    status,
                    date,
                    &[("Location", &location)],
                    "Moved to the directory's own address.",
                );
                return Reply::written(status, n);
            }
            for index in ["index.html", "index.htm"] {
                let candidate = path.join(index);
                if candidate.is_file() && self.inside_root(&candidate) {
                    return self.file(&candidate, req, answer, date, out);
                }
            }
            return self.listing(&path, &segments, answer, date, out);
        }
        if !meta.is_file() {
            return error(out, Status::NOT_FOUND, "Not a regular file.");
        }
        self.file(&path, req, answer, date, out)
    }

    /// Whether `path`, with every link followed, is still under the root.
    fn inside_root(&self, path: &Path) -> bool {
        if self.follow_symlinks {
            return true;
        }
        match fs::canonicalize(path) {
            Ok(real) => real.starts_with(&self.root),
            // Missing: nothing to escape to; the caller answers 404.
            Err(_) => true,
        }
    }

    fn file(
        &self,
        path: &Path,
        req: &FileRequest,
        answer: &Answer,
        date: &str,
        out: &mut Vec<u8>,
    ) -> Reply {
        let file = match File::open(path) {
            Ok(file) => file,
            Err(e) => return io_error(out, answer, date, &e),
        };
        // Everything below describes the file that is open, not whatever the
        // name points at by now.
        let meta = match file.metadata() {
            Ok(meta) => meta,
            Err(e) => return io_error(out, answer, date, &e),
        };
        let len = meta.len();
        let etag = etag(&meta);
        let modified = meta.modified().ok();
        let last_modified = modified.map(httpdate::fmt_http_date);
        let content_type = mime_guess::from_path(path).first_or_octet_stream();
        let mut headers: Vec<(&str, &str)> = vec![("ETag", &etag), ("Accept-Ranges", "bytes")];
        if let Some(lm) = &last_modified {
            headers.push(("Last-Modified", lm));
        }
        if not_modified(req, &etag, modified) {
            let status = Status::NOT_MODIFIED;
            write_head(out, answer, status, date, None, &headers, 0);
            return Reply::written(status, 0);
        }
        let range = req
            .range
            .as_deref()
            .filter(|_| if_range_holds(req.if_range.as_deref(), &etag, last_modified.as_deref()))
            .and_then(|r| parse_range(r, len));
        let (status, start, count, content_range) = match range {
            None => (Status::OK, 0, len, None),
            Some(Err(())) => {
                let cr = format!("bytes */{len}");
                let status = Status::RANGE_NOT_SATISFIABLE;
                let n = write_error(
                    out,
                    answer,
                    status,
                    date,
                    &[("Content-Range", &cr)],
                    "The range is outside the file.",
                );
                return Reply::written(status, n);
            }
            Some(Ok((first, last))) => {
                let cr = format!("bytes {first}-{last}/{len}");
                (Status::PARTIAL_CONTENT, first, last - first + 1, Some(cr))
            }
        };
        if let Some(cr) = &content_range {
            headers.push(("Content-Range", cr));
        }
        write_head(
            out,
            answer,
            status,
            date,
            Some(content_type.essence_str()),
            &headers,
            count,
        );
        if answer.head_only {
            return Reply::written(status, 0);
        }
        let mut body = FileBody { file, left: count };
        if start > 0 {
            if let Err(e) = body.file.seek(SeekFrom::Start(start)) {
                log::info!("{}: seek failed: {e}", path.display());
                return Reply {
                    status,
                    body_bytes: 0,
                    stream: Some(Box::new(FailedBody(e))),
                };
            }
        }
        if count <= SMALL_FILE {
            // Small: into the output now, no streaming state kept.
            return match body.fill(out, count as usize) {
                Ok(true) => Reply::written(status, count),
                Ok(false) | Err(_) => Reply {
                    status,
                    body_bytes: count,
                    stream: Some(Box::new(FailedBody(io::Error::other(
                        "file shrank while being read",
                    )))),
                },
            };
        }
        Reply {
            status,
            body_bytes: count,
            stream: Some(Box::new(body)),
        }
    }

    fn listing(
        &self,
        dir: &Path,
        segments: &[String],
        answer: &Answer,
        date: &str,
        out: &mut Vec<u8>,
    ) -> Reply {
        let entries = match fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) => return io_error(out, answer, date, &e),
        };
        let mut names: Vec<(String, String)> = entries
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                let file_type = e.file_type().ok()?;
                let is_dir = e.path().is_dir();
                let shown = if file_type.is_symlink() {
                    format!("{name}@")
                } else if is_dir {
                    format!("{name}/")
                } else {
                    name.clone()
                };
                let href =
                    utf8_percent_encode(&name, HREF).to_string() + if is_dir { "/" } else { "" };
                Some((shown, href))
            })
            .collect();
        names.sort_by_key(|(shown, _)| shown.to_lowercase());
        let title = format!(
            "/{}",
            segments.iter().map(|s| format!("{s}/")).collect::<String>()
        );
        let mut page = String::with_capacity(512 + names.len() * 80);
        page.push_str("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Directory listing for ");
        html_escape_into(&mut page, &title);
        page.push_str("</title></head>\n<body>\n<h1>Directory listing for ");
        html_escape_into(&mut page, &title);
        page.push_str("</h1>\n<hr>\n<ul>\n");
        for (shown, href) in &names {
            page.push_str("<li><a href=\"");
            html_escape_into(&mut page, href);
            page.push_str("\">");
            html_escape_into(&mut page, shown);
            page.push_str("</a></li>\n");
        }
        page.push_str("</ul>\n<hr>\n</body></html>\n");
        let n = write_response(
            out,
            answer,
            Status::OK,
            date,
            "text/html; charset=utf-8",
            &[],
            page.as_bytes(),
        );
        Reply::written(Status::OK, n)
    }
}

/// One path segment, percent-decoded strictly; `None` if malformed.
fn decode_segment(raw: &str) -> Option<String> {
    let bytes = raw.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            if !hex.iter().all(u8::is_ascii_hexdigit) {
                return None;
            }
        }
    }
    percent_decode_str(raw)
        .decode_utf8()
        .ok()
        .map(|s| s.into_owned())
}

/// `/a/b/` from clean segments, percent-encoded; never `//...`.
fn redirect_target(segments: &[String], query: Option<&str>) -> String {
    let mut location = String::from("/");
    for s in segments {
        location.push_str(&utf8_percent_encode(s, HREF).to_string());
        location.push('/');
    }
    if let Some(q) = query {
        location.push('?');
        location.push_str(
            &utf8_percent_encode(q, percent_encoding::CONTROLS)
                .to_string()
                .replace('\\', "%5C"),
        );
    }
    location
}

/// An ETag from what changes when the file changes: inode, size, mtime.
fn etag(meta: &Metadata) -> String {
    format!(
        "\"{:x}-{:x}-{:x}.{:x}\"",
        meta.ino(),
        meta.len(),
        meta.mtime(),
        meta.mtime_nsec()
    )
}

/// RFC 9110 §13.2.2: If-None-Match wins; If-Modified-Since only without it.
fn not_modified(req: &FileRequest, etag: &str, modified: Option<SystemTime>) -> bool {
    if let Some(inm) = &req.if_none_match {
        return inm.trim() == "*"
            || inm
                .split(',')
                .any(|t| strip_weak(t.trim()) == strip_weak(etag));
    }
    match (&req.if_modified_since, modified) {
        (Some(ims), Some(modified)) => match httpdate::parse_http_date(ims) {
            // HTTP dates have whole seconds: compare at that precision.
            Ok(since) => httpdate::HttpDate::from(modified) <= httpdate::HttpDate::from(since),
            Err(_) => false,
        },
        _ => false,
    }
}

fn strip_weak(tag: &str) -> &str {
    tag.strip_prefix("W/").unwrap_or(tag)
}

/// `If-Range`: the range applies only if the validator still matches.
fn if_range_holds(if_range: Option<&str>, etag: &str, last_modified: Option<&str>) -> bool {
    match if_range {
        None => true,
        Some(v) if v.starts_with('"') => v == etag,
        Some(v) => last_modified == Some(v),
    }
}

/// A single `bytes=` range against a file of `len` bytes: `None` to ignore
/// the header (malformed, or several ranges, which may be answered with the
/// whole file), `Some(Err)` when unsatisfiable (416), else first and last byte.
pub fn parse_range(header: &str, len: u64) -> Option<std::result::Result<(u64, u64), ()>> {
    let spec = header.trim().strip_prefix("bytes=")?.trim();
    if spec.contains(',') {
        return None;
    }
    let (first, last) = spec.split_once('-')?;
    let number = |s: &str| -> Option<u64> {
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())).then(|| s.parse().ok())?
    };
    let range = if first.is_empty() {
        let suffix = number(last)?;
        if suffix == 0 || len == 0 {
            return Some(Err(()));
        }
        (len.saturating_sub(suffix), len - 1)
    } else {
        let first = number(first)?;
        let last = if last.is_empty() {
            u64::MAX
        } else {
            number(last)?
        };
        if last < first {
            return None;
        }
        if first >= len {
            return Some(Err(()));
        }
        (first, last.min(len - 1))
    };
    Some(Ok(range))
}

/// The status for a file system error.
fn io_error(out: &mut Vec<u8>, answer: &Answer, date: &str, e: &io::Error) -> Reply {
    let (status, reason) = match e.kind() {
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory => {
            (Status::NOT_FOUND, "No such file or directory.")
        }
        io::ErrorKind::PermissionDenied => (Status::FORBIDDEN, "Permission denied."),
        _ => (Status::INTERNAL_ERROR, "The file could not be read."),
    };
    Reply::written(status, write_error(out, answer, status, date, &[], reason))
}

/// A file body written as the connection drains.
#[derive(Debug)]
struct FileBody {
    file: File,
    /// Bytes still promised by Content-Length.
    left: u64,
}

impl Body for FileBody {
    fn fill(&mut self, out: &mut Vec<u8>, max: usize) -> io::Result<bool> {
        let want = self.left.min(max as u64) as usize;
        let start = out.len();
        out.resize(start + want, 0);
        let mut got = 0;
        while got < want {
            match self.file.read(&mut out[start + got..]) {
                Ok(0) => {
                    out.truncate(start + got);
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the file shrank while being sent",
                    ));
                }
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    out.truncate(start + got);
                    return Err(e);
                }
            }
        }
        self.left -= want as u64;
        Ok(self.left == 0)
    }
}

/// A body that can only fail: the head is out, the file is not.
#[derive(Debug)]
struct FailedBody(io::Error);

impl Body for FailedBody {
    fn fill(&mut self, _out: &mut Vec<u8>, _max: usize) -> io::Result<bool> {
        Err(io::Error::new(self.0.kind(), self.0.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn site() -> Site {
        Site {
            root: PathBuf::from("/srv/www"),
            follow_symlinks: false,
        }
    }

    #[test]
    fn the_gate_refuses_every_way_out() {
        let bad = [
            "/../etc/passwd",
            "/a/../../etc/passwd",
            "/%2e%2e/etc/passwd",
            "/%2E%2E/etc/passwd",
            "/..%2fetc/passwd",
            "/a%2f..%2f..%2fetc",
            "/a\\..\\b",
            "/%5c..%5cetc",
            "/file%00.txt",
            "/%",
            "/%4",
            "/%zz",
            "/%c0%ae%c0%ae/etc/passwd",
            "/%ff",
        ];
        for path in bad {
            assert!(matches!(site().resolve(path), Resolved::Bad(_)), "{path}");
        }
    }

    #[test]
    fn clean_paths_stay_under_the_root() {
        let ok = [
            ("/", "/srv/www", vec![]),
            ("//etc/passwd", "/srv/www/etc/passwd", vec!["etc", "passwd"]),
            ("/./a//b/", "/srv/www/a/b", vec!["a", "b"]),
            (
                "/with%20space/%C3%A9t%C3%A9",
                "/srv/www/with space/été",
                vec!["with space", "été"],
            ),
            ("/a..b/c..", "/srv/www/a..b/c..", vec!["a..b", "c.."]),
        ];
        for (raw, want, segments) in ok {
            assert_eq!(
                site().resolve(raw),
                Resolved::Path(
                    PathBuf::from(want),
                    segments.into_iter().map(String::from).collect()
                ),
                "{raw}"
            );
        }
    }

    #[test]
    fn redirects_never_leave_the_site() {
        let segs = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(redirect_target(&segs(&["evil.com"]), None), "/evil.com/");
        assert_eq!(
            redirect_target(&segs(&["a b", "c"]), Some("x=1")),
            "/a%20b/c/?x=1"
        );
        assert_eq!(redirect_target(&[], None), "/");
        for loc in [
            redirect_target(&segs(&["\\evil"]), None),
            redirect_target(&segs(&["x"]), Some("\\q")),
        ] {
            assert!(!loc.starts_with("//") && !loc.contains('\\'), "{loc}");
        }
    }

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-99", 1000), Some(Ok((0, 99))));
        assert_eq!(parse_range("bytes=900-", 1000), Some(Ok((900, 999))));
        assert_eq!(parse_range("bytes=-100", 1000), Some(Ok((900, 999))));
        assert_eq!(parse_range("bytes=-5000", 1000), Some(Ok((0, 999))));
        assert_eq!(parse_range("bytes=500-5000", 1000), Some(Ok((500, 999))));
        assert_eq!(parse_range("bytes=1000-", 1000), Some(Err(())));
        assert_eq!(parse_range("bytes=-0", 1000), Some(Err(())));
        assert_eq!(parse_range("bytes=5-1", 1000), None);
        assert_eq!(parse_range("bytes=0-1,5-6", 1000), None);
        assert_eq!(parse_range("items=0-1", 1000), None);
        assert_eq!(parse_range("bytes=a-b", 1000), None);
        assert_eq!(parse_range("bytes=+1-2", 1000), None);
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        /// Path pieces an attacker would try, mixed with ordinary names.
        fn piece() -> impl Strategy<Value = String> {
            prop_oneof![
                Just("..".to_string()),
                Just(".".to_string()),
                Just("".to_string()),
                Just("%2e%2e".to_string()),
                Just("%2E.".to_string()),
                Just("%2f".to_string()),
                Just("%5c".to_string()),
                Just("%00".to_string()),
                Just("%c0%ae".to_string()),
                Just("\\".to_string()),
                Just("%".to_string()),
                "[a-z.%0-9]{1,6}",
            ]
        }

        proptest! {
            #[test]
            fn no_path_ever_leaves_the_root(pieces in proptest::collection::vec(piece(), 0..8)) {
                let raw = format!("/{}", pieces.join("/"));
                if let Resolved::Path(path, segments) = site().resolve(&raw) {
                    prop_assert!(path.starts_with("/srv/www"), "{raw} -> {}", path.display());
                    for component in path.components() {
                        prop_assert!(component != std::path::Component::ParentDir, "{raw}");
                    }
                    for s in &segments {
                        prop_assert!(s != ".." && s != "." && !s.is_empty() && !s.contains(['/', '\\', '\0']), "{raw}");
                    }
                    let location = redirect_target(&segments, None);
                    prop_assert!(!location.starts_with("//") && !location.contains('\\'), "{location}");
                }
            }
        }
    }
}
