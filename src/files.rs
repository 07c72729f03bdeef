//! Serving a directory, like `python3 -m http.server`, but safely.
//!
//! A request path is untrusted text that is about to become a file name, so
//! it goes through two gates.
//!
//! The first, [`Site::resolve`], looks only at the text:
//!
//! 1. percent-decoding is strict: a `%` must be followed by two hex digits,
//!    and the result must be UTF-8 (which also rules out "overlong"
//!    encodings such as `%c0%ae` for `.`);
//! 2. a decoded NUL, `/` (from `%2f`) or `\` is refused, because each lets
//!    one segment pretend to be something else;
//! 3. `..` segments are refused outright rather than resolved, and empty and
//!    `.` segments are dropped, so the path can only go down from the root;
//! 4. a path longer than the system can open is refused with 414 before it
//!    reaches the disk.
//!
//! The second gate is the open itself (the `beneath` module below). The served
//! directory stays open for the server's life, and every file is opened
//! *relative to that descriptor* in one system call that refuses to leave
//! it: `openat2` with `RESOLVE_BENEATH`. Checking a path first and opening
//! it afterwards would leave a gap in which a writer in the tree swaps a
//! file for a link to a secret outside; here there is no gap to race.
//! Directories for listings pass through the same gate and are read through
//! the descriptor it returned.
//!
//! Redirects are built from the cleaned segments, never from the raw target,
//! so a `Location` cannot start with `//` (which a browser would read as
//! another host) or carry a backslash.
//!
//! Large files are not read into memory: the head is written with the
//! length, and the answer names the rest as a [`FileRange`], which the
//! I/O layer sends straight from the file (`sendfile`) as the connection
//! drains. Each such body holds a descriptor besides its connection's;
//! [`descriptors_held`] counts them for the reactor. File system calls
//! block the loop while they run; for local files they are short, and
//! nginx without thread pools makes the same trade.

use std::fs::{File, Metadata};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::SystemTime;

use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use rustix::fs::{Dir, Mode, OFlags};

use crate::error::{Error, Result};
use crate::http::response::{
    html_escape_into, write_error, write_head, write_response, Answer, Status,
};
use crate::http::routes::Reply;
pub use crate::http::FileRequest;
use crate::http::{FileRange, FileService};

/// Bodies up to this size are copied into the output buffer behind their
/// head and leave with it in one write; larger ones are sent from the file
/// by the I/O layer (see [`FileRange`]). Measured on loopback: at 4 KiB
/// the copy and `sendfile` cost the same, from 16 KiB on `sendfile` costs
/// less (at 64 KiB a fifth less CPU per request). Copying the small ones
/// also keeps a pipeline of them in one write, where each file body sent
/// from the file takes a turn of its own.
const SMALL_FILE: u64 = 8 * 1024;

/// The longest path below the root the kernel will open: `PATH_MAX` (4096)
/// less the terminating NUL. A longer request path can name nothing, and
/// is the client's doing: 414, not an error from deep inside `open`.
const MAX_PATH: usize = 4095;

/// The longest single name a Linux file system allows (`NAME_MAX`).
const MAX_NAME: usize = 255;

/// How files and directories are opened for a request. `O_NONBLOCK`, as
/// nginx does: opening a FIFO someone left in the tree would otherwise stop
/// the whole event loop until a writer came along; for regular files and
/// directories it changes nothing.
const READ: OFlags = OFlags::RDONLY.union(OFlags::NONBLOCK);

/// Characters left as they are in listing links: unreserved ones (RFC 3986).
const HREF: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// How many descriptors file bodies still being sent hold right now.
///
/// A connection that sends a large file holds two descriptors, its socket
/// and the file, and the second one is invisible to a cap that counts
/// connections. The reactor adds this to its count of open connections
/// before it accepts more. Every [`FileRange`] counts itself from its
/// creation to its drop, so the count cannot drift.
pub fn descriptors_held() -> usize {
    crate::http::body::files_held()
}

/// A served directory.
#[derive(Debug)]
pub struct Site {
    /// The directory, open for the server's life; every file is opened
    /// relative to it, never by a path from `/`.
    root: beneath::Root,
}

/// Where a request path leads.
#[derive(Debug, PartialEq, Eq)]
pub enum Resolved {
    /// The clean segments, each one name below the root.
    Path(Vec<String>),
    /// Refused before touching the disk: the status to answer, and why.
    Refused(Status, &'static str),
}

/// The route table reaches the served directory through this trait, so
/// the protocol does not depend on this module (which uses its types).
impl FileService for Site {
    fn respond(&self, req: &FileRequest, answer: &Answer, date: &str, out: &mut Vec<u8>) -> Reply {
        Site::respond(self, req, answer, date, out)
    }
}

impl Site {
    /// Opens `dir` for the server's life; it must be a readable directory.
    pub fn new(dir: &Path, follow_symlinks: bool) -> Result<Site> {
        let root = beneath::Root::open(dir, follow_symlinks)
            .map_err(|e| Error::io(format!("cannot serve {}", dir.display()), e))?;
        log::info!(
            "serving {}; files are opened {}",
            dir.display(),
            root.resolver().describe()
        );
        Ok(Site { root })
    }

    /// The first gate: request path text to clean segments (see the module
    /// comment). It looks at no file.
    pub fn resolve(raw_path: &str) -> Resolved {
        if raw_path.contains('\\') {
            return Resolved::Refused(Status::BAD_REQUEST, "backslashes are not allowed in paths");
        }
        let mut segments: Vec<String> = Vec::new();
        let mut length = 0;
        for raw in raw_path.split('/') {
            let Some(segment) = decode_segment(raw) else {
                return Resolved::Refused(
                    Status::BAD_REQUEST,
                    "invalid percent-encoding in the path",
                );
            };
            if segment.contains(['\0', '/', '\\']) {
                return Resolved::Refused(
                    Status::BAD_REQUEST,
                    "encoded NUL, slash or backslash in the path",
                );
            }
            match segment.as_str() {
                "" | "." => continue,
                ".." => {
                    return Resolved::Refused(Status::BAD_REQUEST, "\"..\" is not allowed in paths")
                }
                _ => {}
            }
            // Checked as the segments come, so that a path of thousands of
            // segments is refused without collecting them all.
            length += segment.len() + 1;
            if length > MAX_PATH + 1 {
                return Resolved::Refused(Status::URI_TOO_LONG, "The path is too long.");
            }
            if segment.len() > MAX_NAME {
                return Resolved::Refused(Status::NOT_FOUND, "No such file or directory.");
            }
            segments.push(segment);
        }
        Resolved::Path(segments)
    }

    /// Answers a GET or HEAD for `req`.
    pub fn respond(
        &self,
        req: &FileRequest,
        answer: &Answer,
        date: &str,
        out: &mut Vec<u8>,
    ) -> Reply {
        let segments = match Site::resolve(&req.path) {
            Resolved::Path(segments) => segments,
            Resolved::Refused(status, reason) => {
                return Reply::written(status, write_error(out, answer, status, date, &[], reason))
            }
        };
        let mut names: Vec<&str> = segments.iter().map(String::as_str).collect();
        // The second gate. Everything below describes what this call
        // opened, never whatever the name points at by now.
        let opened = match self.open(&names) {
            Ok(opened) => opened,
            Err(e) => return io_error(out, answer, date, &e),
        };
        if opened.meta.is_dir() {
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
                names.push(index);
                match self.open(&names) {
                    Ok(index_file) if index_file.meta.is_file() => {
                        return answer_file(index_file, index, req, answer, date, out)
                    }
                    // A directory named index.html is no index; nor is a
                    // name that is not there or leads out (a 404 error).
                    Ok(_) => {}
                    Err(e) if status_for(&e).0 == Status::NOT_FOUND => {}
                    Err(e) => return io_error(out, answer, date, &e),
                }
                names.pop();
            }
            return self.listing(&opened.file, &names, answer, date, out);
        }
        if !opened.meta.is_file() {
            return not_found(out, answer, date, "Not a regular file.");
        }
        if req.path.ends_with('/') {
            // `/a.txt/` names a directory that does not exist (nginx: 404).
            return not_found(out, answer, date, "Not a directory.");
        }
        let name = names.last().copied().unwrap_or_default();
        answer_file(opened, name, req, answer, date, out)
    }

    /// Opens `names` below the root for reading, and describes what it opened.
    fn open(&self, names: &[&str]) -> io::Result<Opened> {
        let file = File::from(self.root.open_below(names, READ)?);
        let meta = file.metadata()?;
        Ok(Opened { file, meta })
    }

    /// A listing of the directory open as `dir`, which `names` led to.
    fn listing(
        &self,
        dir: &File,
        names: &[&str],
        answer: &Answer,
        date: &str,
        out: &mut Vec<u8>,
    ) -> Reply {
        let entries = match self.entries(dir, names) {
            Ok(entries) => entries,
            Err(e) => return io_error(out, answer, date, &e),
        };
        let page = listing_page(names, &entries);
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

    /// The entries of `dir`, read through its descriptor (so the listing
    /// shows the directory the gate opened), in python's order: by name,
    /// ignoring case.
    fn entries(&self, dir: &File, names: &[&str]) -> io::Result<Vec<Entry>> {
        let mut entries = Vec::new();
        for entry in Dir::read_from(dir)? {
            let entry = entry?;
            // A name that is not UTF-8 could not be asked for: the first
            // gate refuses such paths. So it is not offered either.
            let Ok(name) = entry.file_name().to_str() else {
                continue;
            };
            if name == "." || name == ".." {
                continue;
            }
            entries.push(self.entry(dir, names, name));
        }
        // python: `list.sort(key=lambda a: a.lower())`, on names without the
        // `/` that marks directories, so `binutils` sorts before
        // `binutils-common`. A stable sort, like python's.
        entries.sort_by_cached_key(|e| e.name.to_lowercase());
        Ok(entries)
    }

    /// What the listing shows of `name` in `dir`.
    fn entry(&self, dir: &File, names: &[&str], name: &str) -> Entry {
        // The name itself, a link not followed: one step down from a
        // directory we hold open, so there is nothing to escape from.
        let own = rustix::fs::openat(
            dir,
            name,
            OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(io::Error::from)
        .and_then(|fd| File::from(fd).metadata());
        let is_link = own.as_ref().is_ok_and(Metadata::is_symlink);
        // A link is described by what it leads to, as a request for it
        // would find it: through the gate, so a link out shows nothing.
        let meta = if is_link {
            let path = [names, &[name]].concat();
            self.root
                .open_below(&path, OFlags::PATH)
                .and_then(|fd| File::from(fd).metadata())
                .ok()
        } else {
            own.ok()
        };
        Entry {
            name: name.to_string(),
            is_link,
            is_dir: meta.as_ref().is_some_and(Metadata::is_dir),
            size: meta.as_ref().filter(|m| m.is_file()).map(Metadata::len),
            modified: meta.and_then(|m| m.modified().ok()),
        }
    }
}

/// What the second gate opened, described by `fstat` on the descriptor.
#[derive(Debug)]
struct Opened {
    file: File,
    meta: Metadata,
}

/// Answers with an open regular file. `name` gives the Content-Type.
fn answer_file(
    opened: Opened,
    name: &str,
    req: &FileRequest,
    answer: &Answer,
    date: &str,
    out: &mut Vec<u8>,
) -> Reply {
    let Opened { file, meta } = opened;
    let len = meta.len();
    let etag = etag(&meta);
    let modified = meta.modified().ok();
    let last_modified = modified.map(httpdate::fmt_http_date);
    let content_type = mime_guess::from_path(name).first_or_octet_stream();
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
    let body = FileRange::new(file, start, count);
    // Small: copied behind the head now, so that head and body leave in
    // one write, and nothing is kept open.
    if count <= SMALL_FILE && body.copy_into(out, SMALL_FILE as usize).is_ok() {
        return Reply::written(status, count);
    }
    // Large, or a small one that failed to read: the head is out, and the
    // I/O layer sends the body from the file. A read that failed here
    // fails there too, and cuts the body short: the connection closes.
    Reply {
        status,
        body_bytes: count,
        file: Some(body),
    }
}

/// One line of a directory listing.
#[derive(Debug)]
struct Entry {
    name: String,
    is_link: bool,
    /// A directory, or a link to one (python's `os.path.isdir`).
    is_dir: bool,
    /// Regular files only.
    size: Option<u64>,
    modified: Option<SystemTime>,
}

/// The listing page: name, size and modification time of each entry, and a
/// link up (except at the root). Every name is HTML-escaped and every link
/// percent-encoded.
fn listing_page(names: &[&str], entries: &[Entry]) -> String {
    let title = format!(
        "/{}",
        names.iter().map(|s| format!("{s}/")).collect::<String>()
    );
    let mut page = String::with_capacity(640 + entries.len() * 120);
    page.push_str("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Directory listing for ");
    html_escape_into(&mut page, &title);
    page.push_str("</title>\n<style>th,td{padding:0 1em 0 0;text-align:left}td+td{text-align:right}</style>\n</head>\n<body>\n<h1>Directory listing for ");
    html_escape_into(&mut page, &title);
    page.push_str("</h1>\n<hr>\n<table>\n<tr><th>Name</th><th>Size</th><th>Modified</th></tr>\n");
    if !names.is_empty() {
        page.push_str("<tr><td><a href=\"../\">../</a></td><td></td><td></td></tr>\n");
    }
    for e in entries {
        let mut href = utf8_percent_encode(&e.name, HREF).to_string();
        let mut shown = e.name.clone();
        if e.is_dir {
            href.push('/');
            shown.push('/');
        }
        if e.is_link {
            // python shows a link as `name@`, even a link to a directory.
            shown = format!("{}@", e.name);
        }
        page.push_str("<tr><td><a href=\"");
        html_escape_into(&mut page, &href);
        page.push_str("\">");
        html_escape_into(&mut page, &shown);
        page.push_str("</a></td><td>");
        match e.size {
            Some(size) => page.push_str(itoa::Buffer::new().format(size)),
            None => page.push('-'),
        }
        page.push_str("</td><td>");
        match e.modified {
            Some(t) => page.push_str(&httpdate::fmt_http_date(t)),
            None => page.push('-'),
        }
        page.push_str("</td></tr>\n");
    }
    page.push_str("</table>\n<hr>\n</body></html>\n");
    page
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
/// The unit is case-insensitive (RFC 9110 §14.1: `BYTES=0-1` is a range).
pub fn parse_range(header: &str, len: u64) -> Option<std::result::Result<(u64, u64), ()>> {
    let (unit, spec) = header.trim().split_once('=')?;
    if !unit.eq_ignore_ascii_case("bytes") {
        return None;
    }
    let spec = spec.trim();
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

/// The answer to a file system error, and why. What the client asked for
/// decides most of them: a name that is not there, leads out of the root,
/// loops or is too long is 404, and one the server may not read is 403. A
/// server out of descriptors is 503, worth trying again in a moment. Only
/// what is left is the server's own fault: 500.
fn status_for(e: &io::Error) -> (Status, &'static str) {
    match e.raw_os_error() {
        Some(
            libc::ENOENT
            | libc::ENOTDIR
            // A chain of links that loops, or (without --follow-symlinks,
            // on kernels before 5.6) any link at all.
            | libc::ELOOP
            // openat2: the path leads out of the root.
            | libc::EXDEV
            | libc::ENAMETOOLONG
            // A socket or a device without a driver: nothing to serve.
            | libc::ENXIO
            | libc::ENODEV,
        ) => (Status::NOT_FOUND, "No such file or directory."),
        Some(libc::EACCES | libc::EPERM) => (Status::FORBIDDEN, "Permission denied."),
        Some(libc::EMFILE | libc::ENFILE) => (
            Status::SERVICE_UNAVAILABLE,
            "The server has too many files open; try again in a moment.",
        ),
        // openat2 asks to be called again when a rename raced with a `..`
        // in a link's target, and it kept racing.
        Some(libc::EAGAIN) => (
            Status::SERVICE_UNAVAILABLE,
            "The directory changed while the path was followed; try again.",
        ),
        _ => match e.kind() {
            io::ErrorKind::NotFound => (Status::NOT_FOUND, "No such file or directory."),
            io::ErrorKind::PermissionDenied => (Status::FORBIDDEN, "Permission denied."),
            _ => (Status::INTERNAL_ERROR, "The file could not be read."),
        },
    }
}

/// Writes the answer to a file system error (see [`status_for`]).
fn io_error(out: &mut Vec<u8>, answer: &Answer, date: &str, e: &io::Error) -> Reply {
    let (status, reason) = status_for(e);
    if status == Status::INTERNAL_ERROR {
        log::warn!("file system error: {e}");
    }
    // A 503 says when to come back (RFC 9110 §10.2.3).
    let retry: &[(&str, &str)] = if status == Status::SERVICE_UNAVAILABLE {
        &[("Retry-After", "1")]
    } else {
        &[]
    };
    Reply::written(
        status,
        write_error(out, answer, status, date, retry, reason),
    )
}

fn not_found(out: &mut Vec<u8>, answer: &Answer, date: &str, reason: &str) -> Reply {
    let status = Status::NOT_FOUND;
    Reply::written(status, write_error(out, answer, status, date, &[], reason))
}

/// Opening a path below a directory in one step that cannot leave it.
///
/// The race this closes: a server that first checks a path ("does it
/// resolve inside the root?") and then opens it by name opens whatever the
/// name means *at the second moment*. Anyone who can write in the served
/// tree can swap a file for a link to `../outside/secret.txt` between the
/// two, and the check passes on the file while the open follows the link.
/// So the check has to be part of the open:
///
/// - Linux 5.6 and later: `openat2(root, "a/b/c", RESOLVE_BENEATH)`. The
///   kernel follows the whole path, links included, and fails with `EXDEV`
///   at any step that would leave `root`: a link to an absolute path, or a
///   `..` above it. `RESOLVE_NO_MAGICLINKS` also refuses `/proc`'s magic
///   links, which jump anywhere.
/// - Older kernels (or a sandbox that hides `openat2`): walk one name at a
///   time with `openat(here, name, O_NOFOLLOW)`, each from the descriptor
///   the previous step returned. A link at any step is refused (`ELOOP` or
///   `ENOTDIR`), even one that stays inside: following it safely would mean
///   redoing the kernel's work in user space. nginx's `disable_symlinks on`
///   is the same walk with the same answer.
/// - `--follow-symlinks`: links may lead anywhere, by request of the
///   operator, so one plain `openat` below the root.
///
/// Request paths never hold `..` (the first gate refuses it), so in every
/// case only links could lead up, and they are what is checked here.
mod beneath {
    use std::io;
    use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
    use std::path::Path;

    use rustix::fs::{fstat, openat, openat2, FileType, Mode, OFlags, ResolveFlags, CWD};
    use rustix::io::Errno;

    /// How often an `openat2` is tried when the kernel answers `EAGAIN`
    /// (a rename somewhere raced with a `..` in a link's target). A few
    /// tries, not a loop without end: a tree renamed nonstop gets a 503.
    const TRIES: usize = 4;

    /// How names below the root are opened; chosen once, at start.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Resolver {
        /// `openat2` with `RESOLVE_BENEATH`: links followed while they stay inside.
        Beneath,
        /// One `openat(O_NOFOLLOW)` per name: every link refused.
        Walk,
        /// `--follow-symlinks`: a plain `openat`; links lead anywhere.
        Anywhere,
    }

    impl Resolver {
        /// For the start-up log.
        pub fn describe(self) -> &'static str {
            match self {
                Resolver::Beneath => "with openat2(RESOLVE_BENEATH): links are followed only inside the directory",
                Resolver::Walk => "one name at a time with O_NOFOLLOW (no openat2 here): every symbolic link is refused",
                Resolver::Anywhere => "following symbolic links wherever they lead (--follow-symlinks)",
            }
        }
    }

    /// The served directory, open, and how to open what is below it.
    #[derive(Debug)]
    pub struct Root {
        dir: OwnedFd,
        resolver: Resolver,
    }

    impl Root {
        /// Opens `path`, which must be a readable directory.
        pub fn open(path: &Path, follow_symlinks: bool) -> io::Result<Root> {
            let dir = openat(
                CWD,
                path,
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
            )?;
            let resolver = if follow_symlinks {
                Resolver::Anywhere
            } else if has_openat2(&dir) {
                Resolver::Beneath
            } else {
                Resolver::Walk
            };
            Ok(Root { dir, resolver })
        }

        pub fn resolver(&self) -> Resolver {
            self.resolver
        }

        /// Opens `names` (clean segments: no `..`, `.`, empty name or `/`)
        /// below the root with `flags`. No names: the root itself.
        pub fn open_below(&self, names: &[&str], flags: OFlags) -> io::Result<OwnedFd> {
            let flags = flags | OFlags::CLOEXEC | OFlags::NOCTTY;
            match self.resolver {
                Resolver::Beneath => open_beneath(self.dir.as_fd(), &joined(names), flags),
                Resolver::Walk => walk(self.dir.as_fd(), names, flags),
                Resolver::Anywhere => Ok(openat(&self.dir, joined(names), flags, Mode::empty())?),
            }
        }

        #[cfg(test)]
        pub fn with_resolver(path: &Path, resolver: Resolver) -> io::Result<Root> {
            let mut root = Root::open(path, false)?;
            root.resolver = resolver;
            Ok(root)
        }
    }

    /// Whether this kernel (and any sandbox around us) offers `openat2`.
    fn has_openat2(dir: &OwnedFd) -> bool {
        open_beneath(dir.as_fd(), ".", OFlags::PATH | OFlags::CLOEXEC).is_ok()
    }

    fn joined(names: &[&str]) -> String {
        if names.is_empty() {
            ".".to_string()
        } else {
            names.join("/")
        }
    }

    /// The whole path in one system call that cannot leave `root`.
    fn open_beneath(root: BorrowedFd<'_>, path: &str, flags: OFlags) -> io::Result<OwnedFd> {
        let resolve = ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS;
        let mut tries = 1;
        loop {
            match openat2(root, path, flags, Mode::empty(), resolve) {
                Err(Errno::AGAIN) if tries < TRIES => tries += 1,
                result => return Ok(result?),
            }
        }
    }

    /// One name at a time, each opened from the descriptor of the
    /// directory before it, never following a link.
    fn walk(root: BorrowedFd<'_>, names: &[&str], flags: OFlags) -> io::Result<OwnedFd> {
        let Some((last, parents)) = names.split_last() else {
            return Ok(openat(root, ".", flags, Mode::empty())?);
        };
        let mut here: Option<OwnedFd> = None;
        for name in parents {
            let at = here.as_ref().map_or(root, AsFd::as_fd);
            // O_PATH: a place to stand, which needs no read permission (a
            // path needs only search permission on its directories).
            // O_DIRECTORY with O_NOFOLLOW: a link here fails with ENOTDIR.
            let step = OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
            here = Some(openat(at, *name, step, Mode::empty())?);
        }
        let at = here.as_ref().map_or(root, AsFd::as_fd);
        let fd = openat(at, *last, flags | OFlags::NOFOLLOW, Mode::empty())?;
        // With O_PATH, O_NOFOLLOW opens a link itself instead of failing;
        // refuse it like any other link.
        if flags.contains(OFlags::PATH)
            && FileType::from_raw_mode(fstat(&fd)?.st_mode) == FileType::Symlink
        {
            return Err(Errno::LOOP.into());
        }
        Ok(fd)
    }
}

#[cfg(test)]
mod tests {
    use super::beneath::{Resolver, Root};
    use super::*;
    use std::fs;
    use std::io::Read;
    use std::os::unix::fs::symlink;
    use std::path::PathBuf;
    use std::sync::atomic::Ordering;
    use std::time::{Duration, Instant};

    /// A directory tree for one test, removed when dropped.
    struct Tree(PathBuf);

    impl Tree {
        /// `<tmp>/fivetuple-unit-NAME-PID/{root,outside}`: `root` is served,
        /// `outside/secret.txt` must never come out of it.
        fn new(name: &str) -> Tree {
            let dir =
                std::env::temp_dir().join(format!("fivetuple-unit-{name}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(dir.join("root/sub")).unwrap();
            fs::create_dir_all(dir.join("outside")).unwrap();
            fs::write(dir.join("outside/secret.txt"), "secret\n").unwrap();
            fs::write(dir.join("root/a.txt"), "hello\n").unwrap();
            fs::write(dir.join("root/sub/b.txt"), "b\n").unwrap();
            Tree(dir)
        }

        fn root(&self) -> PathBuf {
            self.0.join("root")
        }
    }

    impl Drop for Tree {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn refused(raw: &str) -> Option<u16> {
        match Site::resolve(raw) {
            Resolved::Refused(status, _) => Some(status.code),
            Resolved::Path(_) => None,
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
            assert_eq!(refused(path), Some(400), "{path}");
        }
    }

    #[test]
    fn clean_paths_become_segments() {
        let ok = [
            ("/", vec![]),
            ("//etc/passwd", vec!["etc", "passwd"]),
            ("/./a//b/", vec!["a", "b"]),
            ("/with%20space/%C3%A9t%C3%A9", vec!["with space", "été"]),
            ("/a..b/c..", vec!["a..b", "c.."]),
        ];
        for (raw, segments) in ok {
            let want: Vec<String> = segments.into_iter().map(String::from).collect();
            assert_eq!(Site::resolve(raw), Resolved::Path(want), "{raw}");
        }
    }

    #[test]
    fn paths_no_file_system_could_hold_are_the_clients_doing() {
        let name = |n: usize| "x".repeat(n);
        assert_eq!(refused(&format!("/{}", name(255))), None);
        assert_eq!(refused(&format!("/{}", name(256))), Some(404));
        assert_eq!(refused(&"/a".repeat(3000)), Some(414));
        // 4095 bytes below the root is the most open(2) takes.
        let longest = format!("/{}", vec![name(255); 16].join("/"));
        assert_eq!(refused(&longest), None);
        assert_eq!(refused(&format!("{longest}/x")), Some(414));
        // Empty and `.` segments are dropped, so they do not count.
        assert_eq!(refused(&format!("{}/a", "/./".repeat(3000))), None);
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
        assert_eq!(parse_range("bytes 0-1", 1000), None);
    }

    #[test]
    fn the_range_unit_ignores_case() {
        for header in ["BYTES=0-1", "Bytes=0-1", "bYtEs=0-1"] {
            assert_eq!(parse_range(header, 1000), Some(Ok((0, 1))), "{header}");
        }
    }

    #[test]
    fn file_system_errors_get_the_status_of_whose_doing_they_are() {
        let cases = [
            (libc::ENOENT, 404),
            (libc::ENOTDIR, 404),
            (libc::ELOOP, 404),
            (libc::EXDEV, 404),
            (libc::ENAMETOOLONG, 404),
            (libc::ENXIO, 404),
            (libc::EACCES, 403),
            (libc::EPERM, 403),
            (libc::EMFILE, 503),
            (libc::ENFILE, 503),
            (libc::EAGAIN, 503),
            (libc::EIO, 500),
            (libc::ENOMEM, 500),
        ];
        for (errno, want) in cases {
            let e = io::Error::from_raw_os_error(errno);
            assert_eq!(status_for(&e).0.code, want, "{e}");
        }
        let e = io::Error::new(io::ErrorKind::UnexpectedEof, "short");
        assert_eq!(status_for(&e).0.code, 500);
    }

    #[test]
    fn a_503_says_when_to_retry() {
        let answer = Answer {
            head_only: false,
            minor: 1,
            close: false,
        };
        let mut out = Vec::new();
        let date = "Sun, 06 Nov 1994 08:49:37 GMT";
        let reply = io_error(
            &mut out,
            &answer,
            date,
            &io::Error::from_raw_os_error(libc::EMFILE),
        );
        assert_eq!(reply.status.code, 503);
        let text = String::from_utf8_lossy(&out);
        assert!(text.starts_with("HTTP/1.1 503 "), "{text}");
        assert!(text.contains("\r\nRetry-After: 1\r\n"), "{text}");
        out.clear();
        io_error(
            &mut out,
            &answer,
            date,
            &io::Error::from_raw_os_error(libc::ENOENT),
        );
        assert!(!String::from_utf8_lossy(&out).contains("Retry-After"));
    }

    /// What opening `path` below the tree's root gives with `resolver`:
    /// the file's contents, or the errno.
    fn open_with(root: &Root, path: &str) -> std::result::Result<String, i32> {
        let names: Vec<&str> = path.split('/').collect();
        let fd = root
            .open_below(&names, READ)
            .map_err(|e| e.raw_os_error().unwrap_or(0))?;
        let mut text = String::new();
        File::from(fd)
            .read_to_string(&mut text)
            .map_err(|e| e.raw_os_error().unwrap_or(0))?;
        Ok(text)
    }

    fn links(tree: &Tree) {
        let root = tree.root();
        symlink("a.txt", root.join("link-in")).unwrap();
        symlink("sub", root.join("dir-in")).unwrap();
        symlink("../outside/secret.txt", root.join("link-out")).unwrap();
        symlink(tree.0.join("outside/secret.txt"), root.join("link-abs")).unwrap();
        symlink(root.join("a.txt"), root.join("link-abs-in")).unwrap();
        symlink("loop-b", root.join("loop-a")).unwrap();
        symlink("loop-a", root.join("loop-b")).unwrap();
        symlink("/proc/self/root/etc/passwd", root.join("magic")).unwrap();
    }

    #[test]
    fn openat2_follows_links_only_while_they_stay_inside() {
        let tree = Tree::new("beneath");
        links(&tree);
        let root = Root::open(&tree.root(), false).unwrap();
        if root.resolver() != Resolver::Beneath {
            eprintln!("no openat2 on this kernel: only the walk is tested");
            return;
        }
        assert_eq!(open_with(&root, "a.txt"), Ok("hello\n".into()));
        assert_eq!(open_with(&root, "sub/b.txt"), Ok("b\n".into()));
        assert_eq!(open_with(&root, "link-in"), Ok("hello\n".into()));
        assert_eq!(open_with(&root, "dir-in/b.txt"), Ok("b\n".into()));
        assert_eq!(open_with(&root, "link-out"), Err(libc::EXDEV));
        assert_eq!(open_with(&root, "link-abs"), Err(libc::EXDEV));
        // An absolute link is refused even when it points back inside.
        assert_eq!(open_with(&root, "link-abs-in"), Err(libc::EXDEV));
        assert_eq!(open_with(&root, "magic"), Err(libc::EXDEV));
        assert_eq!(open_with(&root, "loop-a"), Err(libc::ELOOP));
        assert_eq!(open_with(&root, "nope"), Err(libc::ENOENT));
    }

    #[test]
    fn the_walk_refuses_every_link() {
        let tree = Tree::new("walk");
        links(&tree);
        let root = Root::with_resolver(&tree.root(), Resolver::Walk).unwrap();
        assert_eq!(open_with(&root, "a.txt"), Ok("hello\n".into()));
        assert_eq!(open_with(&root, "sub/b.txt"), Ok("b\n".into()));
        for link in [
            "link-in",
            "link-out",
            "link-abs",
            "link-abs-in",
            "loop-a",
            "magic",
        ] {
            assert_eq!(open_with(&root, link), Err(libc::ELOOP), "{link}");
        }
        assert_eq!(open_with(&root, "dir-in/b.txt"), Err(libc::ENOTDIR));
        let fd = root.open_below(&["link-in"], OFlags::PATH);
        assert_eq!(
            fd.map_err(|e| e.raw_os_error()).err(),
            Some(Some(libc::ELOOP))
        );
        let fd = root.open_below(&["sub"], OFlags::PATH);
        assert!(fd.is_ok());
    }

    #[test]
    fn follow_symlinks_lets_links_lead_anywhere() {
        let tree = Tree::new("anywhere");
        links(&tree);
        let root = Root::open(&tree.root(), true).unwrap();
        assert_eq!(root.resolver(), Resolver::Anywhere);
        assert_eq!(open_with(&root, "link-out"), Ok("secret\n".into()));
        assert_eq!(open_with(&root, "loop-a"), Err(libc::ELOOP));
    }

    /// Swaps `race.txt` between a file and a link out for `how_long`, while
    /// this thread opens it as fast as it can: the secret must never come
    /// out, and the file must (so the race was really run).
    fn race(resolver: Resolver) {
        let tree = Tree::new(&format!("race-{resolver:?}"));
        let root_dir = tree.root();
        fs::write(root_dir.join("race.txt"), "file\n").unwrap();
        let root = Root::with_resolver(&root_dir, resolver).unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let swapper = {
            let (dir, stop) = (root_dir.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let _ = fs::write(dir.join(".file"), "file\n");
                    let _ = fs::rename(dir.join(".file"), dir.join("race.txt"));
                    let _ = symlink("../outside/secret.txt", dir.join(".link"));
                    let _ = fs::rename(dir.join(".link"), dir.join("race.txt"));
                }
            })
        };
        let (mut leaks, mut files) = (0, 0);
        let deadline = Instant::now() + Duration::from_millis(700);
        while Instant::now() < deadline {
            match open_with(&root, "race.txt").as_deref() {
                Ok("secret\n") => leaks += 1,
                Ok(_) => files += 1,
                Err(_) => {}
            }
        }
        stop.store(true, Ordering::Relaxed);
        swapper.join().unwrap();
        assert_eq!(leaks, 0, "{resolver:?} opened the secret");
        assert!(files > 0, "{resolver:?} never opened the file");
    }

    #[test]
    fn a_swapped_in_link_never_leads_out() {
        let tree = Tree::new("probe");
        if Root::open(&tree.root(), false).unwrap().resolver() == Resolver::Beneath {
            race(Resolver::Beneath);
        }
        race(Resolver::Walk);
    }

    #[test]
    fn file_bodies_count_their_descriptors() {
        // The count is process-wide: tests that make file bodies take turns.
        let _turn = crate::http::body::TEST_TURNS
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let tree = Tree::new("held");
        fs::write(tree.root().join("big.bin"), vec![7u8; 200_000]).unwrap();
        let site = Site::new(&tree.root(), false).unwrap();
        let answer = Answer {
            head_only: false,
            minor: 1,
            close: false,
        };
        let req = FileRequest {
            path: "/big.bin".into(),
            range: Some("bytes=1000-".into()),
            ..FileRequest::default()
        };
        let before = descriptors_held();
        let mut out = Vec::new();
        let mut reply = site.respond(&req, &answer, "-", &mut out);
        assert_eq!(reply.status.code, 206);
        assert!(out.ends_with(b"\r\n\r\n"), "only the head is written");
        assert_eq!(descriptors_held(), before + 1, "a file body holds its file");
        let body = reply.file.take().expect("a file body");
        assert_eq!((body.offset(), body.remaining()), (1000, 199_000));
        drop(body);
        assert_eq!(descriptors_held(), before);
        // A small file or a HEAD keeps nothing open.
        fs::write(tree.root().join("small.txt"), "small\n").unwrap();
        let req = FileRequest {
            path: "/small.txt".into(),
            ..FileRequest::default()
        };
        let reply = site.respond(&req, &answer, "-", &mut out);
        assert!(reply.file.is_none());
        assert!(out.ends_with(b"\r\n\r\nsmall\n"));
        let head = Answer {
            head_only: true,
            ..answer
        };
        let req = FileRequest {
            path: "/big.bin".into(),
            ..FileRequest::default()
        };
        assert!(site.respond(&req, &head, "-", &mut out).file.is_none());
        assert_eq!(descriptors_held(), before);
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
                if let Resolved::Path(segments) = Site::resolve(&raw) {
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
