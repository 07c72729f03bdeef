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
//! Links that stay inside but that the kernel's check refuses (an absolute
//! target in the tree, or `../site/a.txt`, out and back in) are followed by
//! hand, and what they lead to is again opened beneath the root in one
//! step. Directories for listings pass through the same gate and are read
//! through the descriptor it returned, and each entry is looked at through
//! it too, so that a listing links only what a click can open and says
//! why of the rest.
//!
//! Redirects are built from the cleaned segments, never from the raw target,
//! so a `Location` cannot start with `//` (which a browser would read as
//! another host) or carry a backslash.
//!
//! Large files are not read into memory: the head is written with the
//! length, and the answer names the rest as a [`FileRange`], which the
//! I/O layer sends straight from the file (`sendfile`) as the connection
//! drains. Each such body holds a descriptor besides its connection's,
//! and so does a directory listing being sent; each reactor counts its own
//! connections' (`Reactor::bodies_held`) against its cap. File system calls
//! block the loop while they run; for local files they are short, and
//! nginx without thread pools makes the same trade.

use std::fs::{File, Metadata};
use std::io;
use std::os::fd::BorrowedFd;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use rustix::fs::{Dir, Mode, OFlags};

use crate::error::{Error, Result};
use crate::http::response::{html_escape_bytes, write_error, write_head, Answer, Status, SERVER};
use crate::http::routes::Reply;
pub use crate::http::FileRequest;
use crate::http::{FileRange, FileService, Host, Piece, Pieces};

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

/// The name of a folder at the root that the server's own pages hide:
/// `/_/` is the live page, and the names below it are the server's, so a
/// folder `_` in the served directory cannot be reached. It is not served
/// at all, rather than in part (its files, but not the names the server
/// uses, nor its own listing at `/_/`), so that what a URL means does not
/// depend on which pages this version of the server has. The start-up log
/// and the root's listing say so.
const SHADOWED: &str = "_";

/// Where the server's own pages are (see `crate::http::routes`).
const PAGES: &str = "/_/";

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
/// File bodies being sent in the whole process, every worker's together.
/// Every [`FileRange`] counts itself from its creation to its drop, so the
/// count cannot drift. (A reactor's cap counts only its own connections'
/// bodies, from their transitions: with `--workers N`, one worker's
/// downloads are not another's.)
pub fn descriptors_held() -> usize {
    crate::http::body::files_held()
}

/// A served directory.
#[derive(Debug)]
pub struct Site {
    /// The directory, open for the server's life; every file is opened
    /// relative to it, never by a path from `/`. Shared with the listings
    /// being sent, which describe their entries through it.
    root: Arc<beneath::Root>,
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
        let site = Site {
            root: Arc::new(root),
        };
        if site.has_shadowed_folder() {
            log::warn!(
                "{}/{SHADOWED}/ is not served: {PAGES} belongs to this server's own pages \
                 (the live page at {PAGES}); rename the folder to serve it",
                dir.display(),
            );
        }
        Ok(site)
    }

    /// Whether the root holds a directory named `_` (or a link to one),
    /// which the server's own pages at `/_/` hide (see [`SHADOWED`]).
    fn has_shadowed_folder(&self) -> bool {
        self.open(&[SHADOWED]).is_ok_and(|o| o.meta.is_dir())
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
        if asks_for_directory(&req.path) {
            // `/a.txt/`, `/a.txt/.` and `/a.txt/./` name a directory that
            // does not exist (nginx: 404).
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

    /// A listing of the directory open as `dir`, which `names` led to: the
    /// head now, the page a slice of entries per turn (see [`Listing`]);
    /// for a HEAD, the head alone, without reading the directory.
    fn listing(
        &self,
        dir: &File,
        names: &[&str],
        answer: &Answer,
        date: &str,
        out: &mut Vec<u8>,
    ) -> Reply {
        let listing = match Listing::new(&self.root, dir, names) {
            Ok(listing) => listing,
            Err(e) => return io_error(out, answer, date, &e),
        };
        Reply::streamed(
            out,
            answer,
            date,
            "text/html; charset=utf-8",
            &[],
            Box::new(listing),
        )
    }
}

/// Names of a directory sorted before they are listed, at most. Sorting
/// needs every name first; up to this many that is some 100 KB, read in
/// well under a millisecond. A bigger directory is listed in the order the
/// file system keeps it, a slice per turn, so that neither the memory nor
/// the time a listing takes grows with the directory (a listing of 100,000
/// entries built whole was 16.8 MB and up to 1.8 s of the loop).
const SORTED_AT_MOST: usize = 4096;

/// Entries described (an open and an `fstat` each, a few microseconds)
/// per piece of a listing, at most; the turn's share decides how many of
/// them are done now (see `crate::http::Host::turn_budget`).
const ENTRIES_PER_PIECE: usize = 256;

/// A directory listing sent a slice of entries per turn.
///
/// It holds the directory open (one descriptor, counted against
/// `--max-conns` like a file body's) and the names read so far that are
/// not listed yet: at most [`SORTED_AT_MOST`] of them.
pub struct Listing {
    root: Arc<beneath::Root>,
    dir: Dir,
    /// The path below the root that led here, for links and the title.
    names: Vec<String>,
    /// Names read and not yet listed, in the order they go out.
    waiting: std::collections::VecDeque<String>,
    /// The directory has been read to its end.
    read_all: bool,
    /// The page's head is written.
    started: bool,
}

impl std::fmt::Debug for Listing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listing")
            .field("names", &self.names)
            .field("waiting", &self.waiting.len())
            .field("read_all", &self.read_all)
            .finish()
    }
}

impl Listing {
    fn new(root: &Arc<beneath::Root>, dir: &File, names: &[&str]) -> io::Result<Listing> {
        Ok(Listing {
            root: Arc::clone(root),
            dir: Dir::new(dir.try_clone()?)?,
            names: names.iter().map(|n| n.to_string()).collect(),
            waiting: std::collections::VecDeque::new(),
            read_all: false,
            started: false,
        })
    }

    /// Reads up to `n` more names (`.`, `..` and names that are not UTF-8
    /// left out), noting the end of the directory.
    fn read_names(&mut self, n: usize) -> io::Result<()> {
        let mut got = 0;
        while got < n {
            let Some(entry) = self.dir.read() else {
                self.read_all = true;
                return Ok(());
            };
            let entry = entry?;
            // A name that is not UTF-8 could not be asked for: the first
            // gate refuses such paths. So it is not offered either.
            let Ok(name) = entry.file_name().to_str() else {
                continue;
            };
            if name == "." || name == ".." {
                continue;
            }
            self.waiting.push_back(name.to_string());
            got += 1;
        }
        Ok(())
    }

    /// The first piece: the names of a small directory, sorted as python
    /// sorts them, or the first of a big one's; then the page's head.
    fn start(&mut self, out: &mut Vec<u8>) -> io::Result<()> {
        self.read_names(SORTED_AT_MOST + 1)?;
        let names: Vec<&str> = self.names.iter().map(String::as_str).collect();
        listing_head(&names, out);
        if self.read_all {
            // python: `list.sort(key=lambda a: a.lower())`, on names
            // without the `/` that marks directories, so `binutils` sorts
            // before `binutils-common`. A stable sort, like python's.
            self.waiting
                .make_contiguous()
                .sort_by_cached_key(|name| name.to_lowercase());
        } else {
            listing_unsorted_note(SORTED_AT_MOST, out);
        }
        self.started = true;
        Ok(())
    }
}

impl Pieces for Listing {
    fn next_piece(&mut self, host: &dyn Host, out: &mut Vec<u8>, _budget: usize) -> Piece {
        let granted = host.turn_budget(ENTRIES_PER_PIECE);
        if granted == 0 {
            return Piece::More; // this turn's share is spent
        }
        if !self.started {
            if let Err(e) = self.start(out) {
                log::info!(
                    "listing /{}: {e}; the page breaks off",
                    self.names.join("/")
                );
                return Piece::Failed;
            }
        }
        if self.waiting.len() < granted && !self.read_all {
            if let Err(e) = self.read_names(granted) {
                log::info!(
                    "listing /{}: {e}; the page breaks off",
                    self.names.join("/")
                );
                return Piece::Failed;
            }
        }
        let names: Vec<&str> = self.names.iter().map(String::as_str).collect();
        for _ in 0..granted {
            let Some(name) = self.waiting.pop_front() else {
                break;
            };
            let Ok(dir) = self.dir.fd() else {
                return Piece::Failed;
            };
            let entry = describe(&self.root, dir, &names, &name);
            listing_row(&entry, out);
        }
        if self.read_all && self.waiting.is_empty() {
            listing_tail(out);
            return Piece::Done;
        }
        Piece::More
    }

    fn holds_descriptor(&self) -> bool {
        true
    }
}

/// What the listing shows of `name` in `dir`, and whether a click on it
/// could open it.
fn describe(root: &beneath::Root, dir: BorrowedFd<'_>, names: &[&str], name: &str) -> Entry {
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
    let found = if is_link {
        let path = [names, &[name]].concat();
        root.open_below(&path, OFlags::PATH)
            .and_then(|fd| File::from(fd).metadata())
    } else {
        own
    };
    let is_dir = found.as_ref().is_ok_and(Metadata::is_dir);
    let blocked = if name.contains('\\') {
        // The first gate refuses backslashes (see the module comment).
        Some("a backslash in its name: no address can ask for it")
    } else if names.is_empty() && name == SHADOWED && is_dir {
        Some("hidden by this server's own pages at /_/")
    } else {
        match &found {
            Err(e) => Some(why_not(e, is_link)),
            Ok(m) if !m.is_file() && !m.is_dir() => Some("not a file or a directory"),
            // What the server may not read, a click gets a 403 for.
            Ok(_) => readable(dir, name)
                .is_err_and(|e| e.kind() == io::ErrorKind::PermissionDenied)
                .then_some("not readable by the server"),
        }
    };
    let meta = found.ok();
    Entry {
        name: name.to_string(),
        is_link,
        is_dir,
        size: meta.as_ref().filter(|m| m.is_file()).map(Metadata::len),
        modified: meta.and_then(|m| m.modified().ok()),
        blocked,
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
    let content_type = content_type(name);
    let mut headers: Vec<(&str, &str)> = vec![("ETag", &etag), ("Accept-Ranges", "bytes")];
    if let Some(lm) = &last_modified {
        headers.push(("Last-Modified", lm));
    }
    match preconditions(req, &etag, modified) {
        Precondition::Proceed => {}
        Precondition::NotModified => {
            let status = Status::NOT_MODIFIED;
            write_head(out, answer, status, date, None, &headers, 0);
            return Reply::written(status, 0);
        }
        Precondition::Failed => {
            // No body, for GET as for HEAD: the client asked for the file
            // only if it was still the one it knew, and it is not.
            let status = Status::PRECONDITION_FAILED;
            write_head(out, answer, status, date, None, &[], 0);
            return Reply::written(status, 0);
        }
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
        Some(&content_type),
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
        file: Some(body),
        ..Reply::written(status, count)
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
    /// Why a click on it could not open it, if it could not: the row then
    /// says so instead of offering a link that fails.
    blocked: Option<&'static str>,
}

/// Why a request for an entry would fail, from the error its open got.
fn why_not(e: &io::Error, is_link: bool) -> &'static str {
    match e.raw_os_error() {
        Some(libc::EXDEV) => "a link that leads outside the served directory",
        Some(libc::ENOENT | libc::ENOTDIR) if is_link => "a link to nothing",
        Some(libc::ELOOP) => "a loop of links",
        Some(libc::EACCES | libc::EPERM) => "not readable by the server",
        _ => "cannot be opened",
    }
}

/// Whether the server may read `name` in `dir` (a link followed): what
/// its open for a request will need.
fn readable(dir: BorrowedFd<'_>, name: &str) -> io::Result<()> {
    use rustix::fs::{accessat, Access, AtFlags};
    Ok(accessat(dir, name, Access::READ_OK, AtFlags::EACCESS)?)
}

/// A listing's style: the live page's colours, font and table, in a few
/// lines. No scripts, images or external files.
const LISTING_STYLE: &str = "<style>
:root{--bg:#fff;--fg:#1d2430;--muted:#667085;--line:#e4e7ec;--head:#f7f8fa;--accent:#1f6feb}
@media (prefers-color-scheme:dark){:root{--bg:#0f1216;--fg:#e6e9ef;--muted:#8b95a7;--line:#242a33;--head:#161b22;--accent:#58a6ff}}
body{margin:0;background:var(--bg);color:var(--fg);font:15px/1.45 system-ui,-apple-system,\"Segoe UI\",Roboto,Helvetica,Arial,sans-serif}
main{max-width:960px;margin:0 auto;padding:28px 24px 40px}
header{display:flex;align-items:baseline;gap:14px;flex-wrap:wrap;margin:0 0 16px}
h1{font-size:22px;margin:0;letter-spacing:-.01em;overflow-wrap:anywhere}
header a{margin-left:auto;font-size:13px}
a{color:var(--accent);text-decoration:none}a:hover{text-decoration:underline}
table{width:100%;border-collapse:collapse;font-size:14px}
th{background:var(--head);text-align:left;font-weight:600;font-size:12px;color:var(--muted);text-transform:uppercase;letter-spacing:.04em;padding:8px 10px;border-bottom:1px solid var(--line)}
td{padding:6px 10px;border-bottom:1px solid var(--line)}
td:first-child{overflow-wrap:anywhere}
.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
td.time{color:var(--muted);white-space:nowrap}
tr.off td{color:var(--muted)}
footer{margin-top:22px;color:var(--muted);font-size:13px}
</style>
";

/// The top of a listing page, up to and including its `../` row (not at
/// the root), for the directory `names` lead to.
fn listing_head(names: &[&str], out: &mut Vec<u8>) {
    let mut title = String::from("Directory listing for /");
    for name in names {
        title.push_str(name);
        title.push('/');
    }
    out.extend_from_slice(
        b"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n\
          <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>",
    );
    html_escape_bytes(out, &title);
    out.extend_from_slice(b"</title>\n");
    out.extend_from_slice(LISTING_STYLE.as_bytes());
    out.extend_from_slice(b"</head>\n<body><main>\n<header><h1>");
    html_escape_bytes(out, &title);
    out.extend_from_slice(
        b"</h1><a href=\"/_/\">live connections</a></header>\n<table>\n\
          <tr><th>Name</th><th class=\"num\">Size</th><th>Modified</th></tr>\n",
    );
    if !names.is_empty() {
        out.extend_from_slice(
            b"<tr><td><a href=\"../\">../</a></td><td class=\"num\"></td><td class=\"time\"></td></tr>\n",
        );
    }
}

/// One entry's row: its name (directories end in `/`, links in `@`, as in
/// python's listing) as a link, or, when a click could not open it, as
/// text with the reason; its size as people read it, the exact count in
/// the title; its modification time. Names are HTML-escaped and links
/// percent-encoded.
fn listing_row(e: &Entry, out: &mut Vec<u8>) {
    let mut shown = e.name.clone();
    if e.is_link {
        // python shows a link as `name@`, even a link to a directory.
        shown.push('@');
    } else if e.is_dir {
        shown.push('/');
    }
    match e.blocked {
        None => {
            out.extend_from_slice(b"<tr><td><a href=\"");
            let href = utf8_percent_encode(&e.name, HREF).to_string();
            html_escape_bytes(out, &href);
            if e.is_dir {
                out.push(b'/');
            }
            out.extend_from_slice(b"\">");
            html_escape_bytes(out, &shown);
            out.extend_from_slice(b"</a></td>");
        }
        Some(why) => {
            out.extend_from_slice(b"<tr class=\"off\"><td>");
            html_escape_bytes(out, &shown);
            out.extend_from_slice(b" <small>(");
            html_escape_bytes(out, why);
            out.extend_from_slice(b")</small></td>");
        }
    }
    match e.size {
        Some(size) => {
            let mut exact = itoa::Buffer::new();
            out.extend_from_slice(b"<td class=\"num\" title=\"");
            out.extend_from_slice(exact.format(size).as_bytes());
            out.extend_from_slice(if size == 1 { b" byte\">" } else { b" bytes\">" });
            out.extend_from_slice(human_size(size).as_bytes());
            out.extend_from_slice(b"</td>");
        }
        None => out.extend_from_slice(b"<td class=\"num\">-</td>"),
    }
    out.extend_from_slice(b"<td class=\"time\">");
    match e.modified {
        Some(t) => out.extend_from_slice(httpdate::fmt_http_date(t).as_bytes()),
        None => out.push(b'-'),
    }
    out.extend_from_slice(b"</td></tr>\n");
}

/// A row that says why a big directory's entries are not in order.
fn listing_unsorted_note(sorted_at_most: usize, out: &mut Vec<u8>) {
    let mut n = itoa::Buffer::new();
    out.extend_from_slice(b"<tr class=\"off\"><td colspan=\"3\">More than ");
    out.extend_from_slice(n.format(sorted_at_most).as_bytes());
    out.extend_from_slice(
        b" entries: listed in the order the file system keeps them, \
          a slice at a time, not sorted by name.</td></tr>\n",
    );
}

/// The end of a listing page.
fn listing_tail(out: &mut Vec<u8>) {
    out.extend_from_slice(b"</table>\n<footer>");
    out.extend_from_slice(SERVER.as_bytes());
    out.extend_from_slice(b"</footer>\n</main></body></html>\n");
}

/// A size as people read it: bytes below 1 KiB, else binary units with
/// one decimal (`12.1 KiB`), moving up a unit rather than showing
/// `1024.0`.
fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    // 1023.95 and up would print as 1024.0.
    while value >= 1023.95 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// Whether a request path names a directory: it ends in `/`, or in a `.`
/// segment, which names the directory it is in (`/a.txt/.` is
/// `/a.txt/`, a directory that is not there).
fn asks_for_directory(raw_path: &str) -> bool {
    let last = raw_path.rsplit('/').next().unwrap_or_default();
    decode_segment(last).is_some_and(|s| s.is_empty() || s == ".")
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

/// What the conditional headers of a request decide, before any range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Precondition {
    /// None asked, or all hold: answer as usual.
    Proceed,
    /// 304: the client's copy is current.
    NotModified,
    /// 412: the client asked for the file only if it was unchanged.
    Failed,
}

/// The conditional headers in RFC 9110 §13.2.2's order: `If-Match`, else
/// `If-Unmodified-Since` (412 when either fails); then `If-None-Match`,
/// else `If-Modified-Since` (304 when the copy is current). Range and
/// `If-Range` come after, in the caller. A date that does not parse is
/// ignored, as the RFC asks, and so is a date compared with a file that
/// has no modification time.
fn preconditions(req: &FileRequest, etag: &str, modified: Option<SystemTime>) -> Precondition {
    // HTTP dates have whole seconds: compare at that precision.
    let date = |header: &Option<String>| {
        let since = httpdate::parse_http_date(header.as_deref()?.trim()).ok()?;
        let modified = httpdate::HttpDate::from(modified?);
        Some((modified, httpdate::HttpDate::from(since)))
    };
    if let Some(im) = &req.if_match {
        // §13.1.1: strong comparison, so a weak tag never matches.
        let holds = im.trim() == "*" || entity_tags(im).any(|(weak, t)| !weak && t == etag);
        if !holds {
            return Precondition::Failed;
        }
    } else if let Some((modified, since)) = date(&req.if_unmodified_since) {
        if modified > since {
            return Precondition::Failed;
        }
    }
    if let Some(inm) = &req.if_none_match {
        // §13.1.2: weak comparison.
        let matches = inm.trim() == "*" || entity_tags(inm).any(|(_, t)| t == etag);
        return match matches {
            true => Precondition::NotModified,
            false => Precondition::Proceed,
        };
    }
    match date(&req.if_modified_since) {
        Some((modified, since)) if modified <= since => Precondition::NotModified,
        _ => Precondition::Proceed,
    }
}

/// The entity tags of an `If-Match` or `If-None-Match` list, each with
/// whether it is weak (`W/"x"`) and its quoted form (`"x"`). A tag may
/// hold a comma, so the list is read tag by tag, not split at commas;
/// what is not a tag ends it.
fn entity_tags(list: &str) -> impl Iterator<Item = (bool, &str)> {
    let mut rest = list;
    std::iter::from_fn(move || {
        rest = rest.trim_start_matches([' ', '\t', ',']);
        let (weak, tag) = match rest.strip_prefix("W/") {
            Some(tag) => (true, tag),
            None => (false, rest),
        };
        let end = tag.strip_prefix('"')?.find('"')? + 2;
        rest = &tag[end..];
        Some((weak, &tag[..end]))
    })
}

/// The Content-Type for a file named `name`. Text, JavaScript and JSON are
/// said to be UTF-8: without a charset a client guesses, and python's
/// `requests` guesses Latin-1 for `text/*` (RFC 2616's old default), which
/// turns `é` into `Ã©`. UTF-8 is what text is written in today; nginx's
/// `charset utf-8` says the same of the types it is told.
fn content_type(name: &str) -> String {
    let mime = mime_guess::from_path(name).first_or_octet_stream();
    let essence = mime.essence_str();
    let textual = mime.type_() == mime_guess::mime::TEXT
        || mime.suffix() == Some(mime_guess::mime::JSON)
        || matches!(
            essence,
            "application/javascript" | "application/ecmascript" | "application/json"
        );
    match textual {
        true => format!("{essence}; charset=utf-8"),
        false => essence.to_string(),
    }
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
///   the previous step returned, so no step can follow a link.
/// - `--follow-symlinks`: links may lead anywhere, by request of the
///   operator, so one plain `openat` below the root.
///
/// The kernel's `RESOLVE_BENEATH` refuses two kinds of links that a person
/// reads as staying inside: an absolute one that names a file in the
/// directory (`/srv/site/a.txt`), and a relative one that climbs out and
/// back in (`../site/a.txt`). The walk refuses every link. For those, and
/// only when the fast way has said no, [`Root::follow`] resolves the path
/// itself, one name at a time: it reads each link's target (`readlinkat`,
/// from the descriptor of the directory that holds the link) and goes on
/// from there. Where a target passes outside the root (an absolute one, or
/// a `..` above it), the path it spells is only used to ask, name by name,
/// whether it has come back to the root: the kernel names what the path
/// leads to (an `O_PATH` open, which reads nothing, and `fstat`), and the
/// root is known by its device and inode. So `/srv/site/a.txt` is inside
/// even when `/srv` is itself a link. Once back, the walk goes on from the
/// root's own descriptor, never through the path; a target that ends
/// outside is refused (`EXDEV`). Inside, every descriptor it takes is one
/// name below a directory it holds, and the final open is again below the
/// root with the same one-step open (`openat2` or the walk), so a link
/// swapped in meanwhile leads at worst to another file inside. At most 40
/// links are followed (the kernel's own limit), then the answer is `ELOOP`.
///
/// Request paths never hold `..` (the first gate refuses it), so in every
/// case only links could lead up, and they are what is checked here.
mod beneath {
    use std::ffi::{OsStr, OsString};
    use std::io;
    use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
    use std::os::unix::ffi::OsStrExt;
    use std::path::{Path, PathBuf};

    use rustix::fs::{
        fstat, openat, openat2, readlinkat, FileType, Mode, OFlags, ResolveFlags, CWD,
    };
    use rustix::io::Errno;

    /// How often an `openat2` is tried when the kernel answers `EAGAIN`
    /// (a rename somewhere raced with a `..` in a link's target). A few
    /// tries, not a loop without end: a tree renamed nonstop gets a 503.
    const TRIES: usize = 4;

    /// Links one resolution follows before it gives up with `ELOOP`: the
    /// kernel's own limit (`MAXSYMLINKS`), so a chain it would follow is
    /// followed here too.
    const MAX_HOPS: usize = 40;

    /// Names one resolution may step through, the links' targets included:
    /// 40 targets of up to 4095 bytes could hold some 80,000 names, and a
    /// request should not buy that much work.
    const MAX_STEPS: usize = 4096;

    /// How a directory is opened to stand in while a path is followed: a
    /// place, not something to read (search permission is enough).
    const PLACE: OFlags = OFlags::PATH.union(OFlags::DIRECTORY).union(OFlags::CLOEXEC);

    /// How names below the root are opened; chosen once, at start.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Resolver {
        /// `openat2` with `RESOLVE_BENEATH`: links followed while they stay inside.
        Beneath,
        /// One `openat(O_NOFOLLOW)` per name; links inside followed by [`Root::follow`].
        Walk,
        /// `--follow-symlinks`: a plain `openat`; links lead anywhere.
        Anywhere,
    }

    impl Resolver {
        /// For the start-up log.
        pub fn describe(self) -> &'static str {
            match self {
                Resolver::Beneath => "with openat2(RESOLVE_BENEATH): links are followed only inside the directory",
                Resolver::Walk => "one name at a time with O_NOFOLLOW (no openat2 here): links are followed only inside the directory",
                Resolver::Anywhere => "following symbolic links wherever they lead (--follow-symlinks)",
            }
        }
    }

    /// The served directory, open, and how to open what is below it.
    #[derive(Debug)]
    pub struct Root {
        dir: OwnedFd,
        resolver: Resolver,
        /// The directory's device and inode: how it is known when a link's
        /// target comes back to it from outside.
        id: (u64, u64),
        /// The directory's canonical path (no links, no `.` or `..`), as it
        /// was at start: where a `..` above the root leads. `None` if it
        /// could not be learnt; such links are then refused.
        canonical: Option<PathBuf>,
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
            let id = identity(&dir)?;
            let canonical = canonical_path(&dir, path);
            Ok(Root {
                dir,
                resolver,
                id,
                canonical,
            })
        }

        pub fn resolver(&self) -> Resolver {
            self.resolver
        }

        /// Opens `names` (clean segments: no `..`, `.`, empty name or `/`)
        /// below the root with `flags`. No names: the root itself.
        pub fn open_below(&self, names: &[&str], flags: OFlags) -> io::Result<OwnedFd> {
            // O_NOCTTY only where it means something: openat2 refuses
            // O_PATH with any flag but a few (EINVAL), where openat drops them.
            let flags = match flags.contains(OFlags::PATH) {
                true => flags | OFlags::CLOEXEC,
                false => flags | OFlags::CLOEXEC | OFlags::NOCTTY,
            };
            // The fast way first; the slow one only where it said no to a
            // link that may yet stay inside.
            let fast = match self.resolver {
                Resolver::Beneath => open_beneath(self.dir.as_fd(), &joined(names), flags),
                Resolver::Walk => walk(self.dir.as_fd(), names, flags),
                Resolver::Anywhere => {
                    return Ok(openat(&self.dir, joined(names), flags, Mode::empty())?)
                }
            };
            match fast {
                Err(e) if refused_a_link(self.resolver, &e) => self.follow(names, flags),
                result => result,
            }
        }

        /// Opens link-free `names` below the root, the fast way.
        fn open_plain<S: AsRef<OsStr>>(&self, names: &[S], flags: OFlags) -> io::Result<OwnedFd> {
            match self.resolver {
                Resolver::Walk => walk(self.dir.as_fd(), names, flags),
                _ => open_beneath(self.dir.as_fd(), &joined(names), flags),
            }
        }

        /// Resolves `names` one at a time, following each link by its
        /// target while that stays below the root (see the module comment),
        /// then opens what it found below the root.
        ///
        /// Where it stands is `done`, names below the root that were no
        /// links when looked at, or, while a target passes outside the
        /// root, `outside`: the absolute path the target spells so far.
        fn follow(&self, names: &[&str], flags: OFlags) -> io::Result<OwnedFd> {
            // Names still to step through, the next one last.
            let mut todo: Vec<OsString> = names.iter().rev().map(OsString::from).collect();
            let mut done: Vec<OsString> = Vec::new();
            let mut outside: Option<PathBuf> = None;
            // The directory `done` leads to, while it is open.
            let mut here: Option<OwnedFd> = None;
            let (mut hops, mut steps) = (0, 0);
            while let Some(name) = todo.pop() {
                steps += 1;
                if steps > MAX_STEPS {
                    return Err(Errno::NAMETOOLONG.into());
                }
                if name.is_empty() || name == "." {
                    continue;
                }
                if let Some(mut path) = outside.take() {
                    path.push(&name);
                    outside = self.unless_root(path)?;
                    continue;
                }
                if name == ".." {
                    // `done` held no links, so its parent is its last name
                    // taken off, in the file system too.
                    here = None;
                    if done.pop().is_none() {
                        let canonical = self.canonical.as_ref().ok_or(Errno::XDEV)?;
                        outside = self.unless_root(canonical.join(".."))?;
                    }
                    continue;
                }
                let dir = match here.take() {
                    Some(dir) => dir,
                    None => self.open_plain(&done, PLACE)?,
                };
                match readlinkat(&dir, name.as_os_str(), Vec::new()) {
                    Ok(target) => {
                        hops += 1;
                        if hops > MAX_HOPS {
                            return Err(Errno::LOOP.into());
                        }
                        let target = target.into_bytes();
                        if target.is_empty() {
                            return Err(Errno::NOENT.into());
                        }
                        if target.starts_with(b"/") {
                            done.clear();
                            outside = self.unless_root(PathBuf::from("/"))?;
                        } else {
                            // Relative to the directory that holds the link.
                            here = Some(dir);
                        }
                        let parts = target.split(|&b| b == b'/').rev();
                        todo.extend(parts.map(|p| OsStr::from_bytes(p).to_os_string()));
                    }
                    // Not a link: a name to stand on, and go on from.
                    Err(Errno::INVAL) => {
                        if !todo.is_empty() {
                            let step = PLACE | OFlags::NOFOLLOW;
                            here = Some(openat(&dir, name.as_os_str(), step, Mode::empty())?);
                        }
                        done.push(name);
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            match outside {
                // The path ends outside the root.
                Some(_) => Err(Errno::XDEV.into()),
                None => self.open_plain(&done, flags),
            }
        }

        /// `None` if the absolute `path` leads to the root, else `path`,
        /// still outside. The kernel resolves it only to say what it names
        /// (`O_PATH` reads nothing, and the descriptor is closed at once);
        /// a path that leads nowhere can lead nowhere back: `EXDEV`.
        fn unless_root(&self, path: PathBuf) -> io::Result<Option<PathBuf>> {
            let named = openat(CWD, &path, OFlags::PATH | OFlags::CLOEXEC, Mode::empty())
                .map_err(|_| Errno::XDEV)?;
            match identity(&named)? == self.id {
                true => Ok(None),
                false => Ok(Some(path)),
            }
        }

        #[cfg(test)]
        pub fn with_resolver(path: &Path, resolver: Resolver) -> io::Result<Root> {
            let mut root = Root::open(path, false)?;
            root.resolver = resolver;
            Ok(root)
        }
    }

    /// Whether the fast way's error may be a link that stays inside after
    /// all: `EXDEV` from `openat2` (a link or `..` that left, perhaps to
    /// come back), `ELOOP` or `ENOTDIR` from the walk (which refuses every
    /// link so).
    fn refused_a_link(resolver: Resolver, e: &io::Error) -> bool {
        matches!(
            (resolver, e.raw_os_error()),
            (Resolver::Beneath, Some(libc::EXDEV))
                | (Resolver::Walk, Some(libc::ELOOP | libc::ENOTDIR))
        )
    }

    /// The canonical path of the directory open as `dir`: what the kernel
    /// says it is (`/proc/self/fd`), else what `path` resolves to now.
    fn canonical_path(dir: &OwnedFd, path: &Path) -> Option<PathBuf> {
        std::fs::read_link(format!("/proc/self/fd/{}", dir.as_raw_fd()))
            .ok()
            .filter(|p| p.is_absolute())
            .or_else(|| std::fs::canonicalize(path).ok())
    }

    /// A file's device and inode: what it is, whatever its names.
    fn identity(fd: &OwnedFd) -> io::Result<(u64, u64)> {
        let stat = fstat(fd)?;
        Ok((stat.st_dev, stat.st_ino))
    }

    /// Whether this kernel (and any sandbox around us) offers `openat2`.
    fn has_openat2(dir: &OwnedFd) -> bool {
        open_beneath(dir.as_fd(), OsStr::new("."), OFlags::PATH | OFlags::CLOEXEC).is_ok()
    }

    fn joined<S: AsRef<OsStr>>(names: &[S]) -> OsString {
        let mut path = OsString::new();
        for (i, name) in names.iter().enumerate() {
            if i > 0 {
                path.push("/");
            }
            path.push(name);
        }
        if path.is_empty() {
            path.push(".");
        }
        path
    }

    /// The whole path in one system call that cannot leave `root`.
    fn open_beneath(root: BorrowedFd<'_>, path: &OsStr, flags: OFlags) -> io::Result<OwnedFd> {
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
    fn walk<S: AsRef<OsStr>>(
        root: BorrowedFd<'_>,
        names: &[S],
        flags: OFlags,
    ) -> io::Result<OwnedFd> {
        let Some((last, parents)) = names.split_last() else {
            return Ok(openat(root, ".", flags, Mode::empty())?);
        };
        let mut here: Option<OwnedFd> = None;
        for name in parents {
            let at = here.as_ref().map_or(root, AsFd::as_fd);
            // O_PATH: a place to stand, which needs no read permission (a
            // path needs only search permission on its directories).
            // O_DIRECTORY with O_NOFOLLOW: a link here fails with ENOTDIR.
            let step = PLACE | OFlags::NOFOLLOW;
            here = Some(openat(at, name.as_ref(), step, Mode::empty())?);
        }
        let at = here.as_ref().map_or(root, AsFd::as_fd);
        let fd = openat(at, last.as_ref(), flags | OFlags::NOFOLLOW, Mode::empty())?;
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
    fn a_dot_at_the_end_names_a_directory() {
        for path in ["/a.txt/", "/a.txt/.", "/a.txt/./", "/a.txt/%2e", "/", "/."] {
            assert!(asks_for_directory(path), "{path}");
        }
        for path in ["/a.txt", "/sub", "/a.txt/.x", "/.hidden", "/a.txt/%2e%2e"] {
            assert!(!asks_for_directory(path), "{path}");
        }
    }

    #[test]
    fn conditions_are_evaluated_in_rfc_9110s_order() {
        use Precondition::{Failed, NotModified, Proceed};
        let etag = "\"e1\"";
        let modified = httpdate::parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").ok();
        let before = "Sat, 05 Nov 1994 08:49:37 GMT";
        let same = "Sun, 06 Nov 1994 08:49:37 GMT";
        let after = "Mon, 07 Nov 1994 08:49:37 GMT";
        let h = |v: &str| Some(v.to_string());
        let req = |im, ius, inm, ims| FileRequest {
            if_match: im,
            if_unmodified_since: ius,
            if_none_match: inm,
            if_modified_since: ims,
            ..FileRequest::default()
        };
        let cases = [
            (req(None, None, None, None), Proceed),
            // If-Match: strong comparison, `*`, lists.
            (req(h("\"e1\""), None, None, None), Proceed),
            (req(h("\"x\", \"e1\""), None, None, None), Proceed),
            (req(h("*"), None, None, None), Proceed),
            (req(h("\"x\""), None, None, None), Failed),
            (req(h("W/\"e1\""), None, None, None), Failed),
            (req(h("\"e1"), None, None, None), Failed),
            // If-Unmodified-Since, only without If-Match.
            (req(None, h(same), None, None), Proceed),
            (req(None, h(after), None, None), Proceed),
            (req(None, h(before), None, None), Failed),
            (req(None, h("yesterday"), None, None), Proceed),
            (req(h("\"e1\""), h(before), None, None), Proceed),
            (req(h("\"x\""), h(after), None, None), Failed),
            // Then If-None-Match (weak comparison), else If-Modified-Since.
            (req(None, None, h("W/\"e1\""), None), NotModified),
            (req(None, None, h("\"x\",\"e1\""), None), NotModified),
            (req(None, None, h("*"), None), NotModified),
            (req(None, None, h("\"x\""), h(after)), Proceed),
            (req(None, None, None, h(same)), NotModified),
            (req(None, None, None, h(before)), Proceed),
            // A failed precondition wins over a current copy.
            (req(h("\"x\""), None, h("\"e1\""), None), Failed),
            (req(None, h(before), None, h(after)), Failed),
            (req(h("\"e1\""), None, h("\"e1\""), None), NotModified),
        ];
        for (request, want) in cases {
            assert_eq!(preconditions(&request, etag, modified), want, "{request:?}");
        }
        // A file without a time: its dates decide nothing.
        let dated = req(None, h(before), None, h(after));
        assert_eq!(preconditions(&dated, etag, None), Proceed);
    }

    #[test]
    fn entity_tag_lists_are_read_tag_by_tag() {
        let tags: Vec<_> = entity_tags(" \"a\", W/\"b\" ,\"c,d\"").collect();
        assert_eq!(
            tags,
            [(false, "\"a\""), (true, "\"b\""), (false, "\"c,d\"")]
        );
        assert_eq!(entity_tags("\"a").count(), 0);
        assert_eq!(entity_tags("a, \"b\"").count(), 0);
    }

    #[test]
    fn text_is_said_to_be_utf8() {
        let cases = [
            ("a.txt", "text/plain; charset=utf-8"),
            ("a.html", "text/html; charset=utf-8"),
            ("a.css", "text/css; charset=utf-8"),
            ("a.json", "application/json; charset=utf-8"),
            ("a.webmanifest", "application/manifest+json; charset=utf-8"),
            ("a.png", "image/png"),
            ("a.bin", "application/octet-stream"),
            ("noext", "application/octet-stream"),
        ];
        for (name, want) in cases {
            assert_eq!(content_type(name), want, "{name}");
        }
        let js = content_type("a.js");
        assert!(js.ends_with("javascript; charset=utf-8"), "{js}");
    }

    #[test]
    fn sizes_read_as_people_read_them() {
        let cases = [
            (0, "0 B"),
            (1023, "1023 B"),
            (1024, "1.0 KiB"),
            (12_390, "12.1 KiB"),
            (1_048_575, "1.0 MiB"),
            (5_000_000, "4.8 MiB"),
            (3 << 30, "3.0 GiB"),
            (u64::MAX, "16.0 EiB"),
        ];
        for (bytes, want) in cases {
            assert_eq!(human_size(bytes), want, "{bytes}");
        }
    }

    #[test]
    fn a_row_links_what_a_click_opens_and_says_why_not_otherwise() {
        let entry = |name: &str, blocked| Entry {
            name: name.to_string(),
            is_link: false,
            is_dir: false,
            size: Some(12_390),
            modified: None,
            blocked,
        };
        let row = |e: &Entry| {
            let mut out = Vec::new();
            listing_row(e, &mut out);
            String::from_utf8(out).unwrap()
        };
        let open = row(&entry("<b>&.txt", None));
        assert!(
            open.contains("<a href=\"%3Cb%3E%26.txt\">&lt;b&gt;&amp;.txt</a>"),
            "{open}"
        );
        assert!(
            open.contains("title=\"12390 bytes\">12.1 KiB</td>"),
            "{open}"
        );
        let shut = row(&entry("back\\slash.txt", Some("why")));
        assert!(!shut.contains("href"), "{shut}");
        assert!(
            shut.contains("back\\slash.txt <small>(why)</small>"),
            "{shut}"
        );
        let dir = Entry {
            is_dir: true,
            size: None,
            ..entry("a dir", None)
        };
        assert!(row(&dir).contains("<a href=\"a%20dir/\">a dir/</a></td><td class=\"num\">-</td>"));
        // The head and tail around the rows make one page.
        let mut page = Vec::new();
        listing_head(&["sub"], &mut page);
        listing_row(&dir, &mut page);
        listing_tail(&mut page);
        let page = String::from_utf8(page).unwrap();
        assert!(page.contains("<title>Directory listing for /sub/</title>"));
        assert!(page.contains("<a href=\"../\">../</a>") && page.contains("href=\"/_/\""));
        assert!(page.ends_with("</html>\n"));
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
        let outside = tree.0.join("outside");
        symlink("a.txt", root.join("link-in")).unwrap();
        symlink("sub", root.join("dir-in")).unwrap();
        symlink("../outside/secret.txt", root.join("link-out")).unwrap();
        symlink(outside.join("secret.txt"), root.join("link-abs")).unwrap();
        symlink(root.join("a.txt"), root.join("link-abs-in")).unwrap();
        symlink(root.join("sub"), root.join("dir-abs-in")).unwrap();
        symlink("../root/a.txt", root.join("out-and-back")).unwrap();
        symlink("../../root/sub/b.txt", root.join("sub/up-and-back")).unwrap();
        symlink("../../outside/secret.txt", root.join("sub/up-and-out")).unwrap();
        symlink("../root/../outside/secret.txt", root.join("back-then-out")).unwrap();
        symlink("..", root.join("parent")).unwrap();
        symlink(&root, root.join("itself")).unwrap();
        // `..` at `/` is `/`: climbing past the top and down again is inside.
        let mut climb = "../".repeat(40);
        climb.push_str(&root.join("a.txt").to_string_lossy()[1..]);
        symlink(climb, root.join("climb")).unwrap();
        symlink("loop-b", root.join("loop-a")).unwrap();
        symlink("loop-a", root.join("loop-b")).unwrap();
        symlink("/proc/self/root/etc/passwd", root.join("magic")).unwrap();
        symlink("nothing", root.join("dangling")).unwrap();
        // Another name for the root, beside it, as `/srv` may be for `/data/srv`.
        symlink("root", tree.0.join("alias")).unwrap();
        symlink(tree.0.join("alias/a.txt"), root.join("via-alias")).unwrap();
        symlink("../../alias/sub/b.txt", root.join("sub/via-alias")).unwrap();
    }

    /// Every resolver that keeps links inside this machine offers.
    fn inside_resolvers(tree: &Tree) -> Vec<Resolver> {
        let beneath = Root::open(&tree.root(), false).unwrap().resolver() == Resolver::Beneath;
        match beneath {
            true => vec![Resolver::Beneath, Resolver::Walk],
            false => {
                eprintln!("no openat2 on this kernel: only the walk is tested");
                vec![Resolver::Walk]
            }
        }
    }

    #[test]
    fn links_are_followed_only_while_they_stay_inside() {
        let tree = Tree::new("inside");
        links(&tree);
        let hello = || Ok::<String, i32>("hello\n".into());
        let cases: [(&str, std::result::Result<String, i32>); 22] = [
            ("a.txt", hello()),
            ("sub/b.txt", Ok("b\n".into())),
            ("link-in", hello()),
            ("dir-in/b.txt", Ok("b\n".into())),
            // Absolute links that name a file inside: python and nginx
            // serve them, and so do we.
            ("link-abs-in", hello()),
            ("dir-abs-in/b.txt", Ok("b\n".into())),
            ("itself/itself/a.txt", hello()),
            // Out of the directory and back in, by name.
            ("out-and-back", hello()),
            ("sub/up-and-back", Ok("b\n".into())),
            ("climb", hello()),
            ("via-alias", hello()),
            ("sub/via-alias", Ok("b\n".into())),
            // Out, and out it stays.
            ("link-out", Err(libc::EXDEV)),
            ("link-abs", Err(libc::EXDEV)),
            ("sub/up-and-out", Err(libc::EXDEV)),
            ("back-then-out", Err(libc::EXDEV)),
            ("parent/outside/secret.txt", Err(libc::EXDEV)),
            ("magic", Err(libc::EXDEV)),
            ("loop-a", Err(libc::ELOOP)),
            ("dangling", Err(libc::ENOENT)),
            ("nope", Err(libc::ENOENT)),
            ("a.txt/x", Err(libc::ENOTDIR)),
        ];
        for resolver in inside_resolvers(&tree) {
            let root = Root::with_resolver(&tree.root(), resolver).unwrap();
            for (path, want) in &cases {
                assert_eq!(&open_with(&root, path), want, "{resolver:?} {path}");
            }
            // Asked for as a place (O_PATH, as a listing does), the same.
            let place = |names: &[&str]| root.open_below(names, OFlags::PATH).map(|_| ());
            assert!(place(&["link-abs-in"]).is_ok(), "{resolver:?}");
            assert!(place(&["itself"]).is_ok(), "{resolver:?}");
            let refused = place(&["link-abs"]).map_err(|e| e.raw_os_error());
            assert_eq!(refused, Err(Some(libc::EXDEV)), "{resolver:?}");
        }
    }

    #[test]
    fn a_chain_of_links_ends_where_the_kernels_would() {
        let tree = Tree::new("chain");
        let root = tree.root();
        // Absolute links, which the kernel's RESOLVE_BENEATH refuses, so
        // every hop is followed by hand: 40 are followed, 41 are too many.
        symlink(root.join("a.txt"), root.join("hop0")).unwrap();
        for i in 1..=40 {
            symlink(
                root.join(format!("hop{}", i - 1)),
                root.join(format!("hop{i}")),
            )
            .unwrap();
        }
        for resolver in inside_resolvers(&tree) {
            let root = Root::with_resolver(&tree.root(), resolver).unwrap();
            assert_eq!(
                open_with(&root, "hop39"),
                Ok("hello\n".into()),
                "{resolver:?}"
            );
            assert_eq!(open_with(&root, "hop40"), Err(libc::ELOOP), "{resolver:?}");
        }
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
            let secret = tree.0.join("outside/secret.txt");
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let _ = fs::write(dir.join(".file"), "file\n");
                    let _ = fs::rename(dir.join(".file"), dir.join("race.txt"));
                    let _ = symlink("../outside/secret.txt", dir.join(".link"));
                    let _ = fs::rename(dir.join(".link"), dir.join("race.txt"));
                    // An absolute link, which only the path followed by
                    // hand (after the kernel's refusal) looks at.
                    let _ = fs::write(dir.join(".file"), "file\n");
                    let _ = fs::rename(dir.join(".file"), dir.join("race.txt"));
                    let _ = symlink(&secret, dir.join(".link"));
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
