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
//! The second gate is the open itself (`beneath.rs`). The served
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
//! why of the rest (`listing.rs`).
//!
//! Redirects are built from the cleaned segments, never from the raw target,
//! so a `Location` cannot start with `//` (which a browser would read as
//! another host) or carry a backslash.
//!
//! Once a file is open, what its answer says (validators, conditional
//! requests, ranges) is protocol, written by [`crate::http::file_answer`]
//! from what `fstat` said of the open descriptor. Large files are not read
//! into memory: the head is written with the length, and the answer names
//! the rest as a [`FileRange`](crate::http::FileRange), which the I/O
//! layer sends straight from the file (`sendfile`) as the connection
//! drains. Each such body holds a descriptor besides its connection's, and
//! so does a directory listing being sent; each reactor counts its own
//! connections' (`Reactor::bodies_held`) against its cap. File system
//! calls block the loop while they run; for local files they are short,
//! and nginx without thread pools makes the same trade.
//!
//! This file holds the [`Site`] and the first gate; `beneath.rs` the
//! second, and `listing.rs` the listing page.

mod beneath;
mod listing;

use std::fs::{File, Metadata};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Arc;

use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use rustix::fs::OFlags;

use crate::error::{Error, Result};
use crate::http::file_answer::{self, OpenFile};
use crate::http::response::{write_error, Answer, Status};
pub use crate::http::FileRequest;
use crate::http::{FileService, Reply};
use listing::Listing;

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

/// What the second gate opened, described by `fstat` on the descriptor.
#[derive(Debug)]
struct Opened {
    file: File,
    meta: Metadata,
}

/// The answer for an open regular file, described by what `fstat` said
/// of its descriptor; `name` gives the Content-Type.
fn answer_file(
    opened: Opened,
    name: &str,
    req: &FileRequest,
    answer: &Answer,
    date: &str,
    out: &mut Vec<u8>,
) -> Reply {
    let Opened { file, meta } = opened;
    let open = OpenFile {
        len: meta.len(),
        etag: etag(&meta),
        modified: meta.modified().ok(),
        content_type: content_type(name),
        file,
    };
    file_answer::answer_file(open, req, answer, date, out)
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::path::PathBuf;

    /// A directory tree for one test, removed when dropped.
    pub(super) struct Tree(pub(super) PathBuf);

    impl Tree {
        /// `<tmp>/fivetuple-unit-NAME-PID/{root,outside}`: `root` is served,
        /// `outside/secret.txt` must never come out of it.
        pub(super) fn new(name: &str) -> Tree {
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

        pub(super) fn root(&self) -> PathBuf {
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
    fn a_dot_at_the_end_names_a_directory() {
        for path in ["/a.txt/", "/a.txt/.", "/a.txt/./", "/a.txt/%2e", "/", "/."] {
            assert!(asks_for_directory(path), "{path}");
        }
        for path in ["/a.txt", "/sub", "/a.txt/.x", "/.hidden", "/a.txt/%2e%2e"] {
            assert!(!asks_for_directory(path), "{path}");
        }
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

    #[test]
    fn a_body_that_is_sent_later_holds_a_descriptor_and_a_written_one_none() {
        let tree = Tree::new("held");
        fs::write(tree.root().join("big.bin"), vec![7u8; 200_000]).unwrap();
        fs::write(tree.root().join("small.txt"), "small\n").unwrap();
        let site = Site::new(&tree.root(), false).unwrap();
        let answer = Answer {
            head_only: false,
            minor: 1,
            close: false,
        };
        let get = |path: &str| FileRequest {
            path: path.into(),
            ..FileRequest::default()
        };
        // A large file: the head now, the body named as the open file.
        let req = FileRequest {
            range: Some("bytes=1000-".into()),
            ..get("/big.bin")
        };
        let mut out = Vec::new();
        let reply = site.respond(&req, &answer, "-", &mut out);
        assert_eq!(reply.status.code, 206);
        assert!(out.ends_with(b"\r\n\r\n"), "only the head is written");
        let body = reply.file.expect("a file body holds its file");
        assert_eq!((body.offset(), body.remaining()), (1000, 199_000));
        // A small file or a HEAD keeps nothing open.
        let reply = site.respond(&get("/small.txt"), &answer, "-", &mut out);
        assert!(reply.file.is_none() && reply.streamed.is_none());
        assert!(out.ends_with(b"\r\n\r\nsmall\n"));
        let head = Answer {
            head_only: true,
            ..answer
        };
        let reply = site.respond(&get("/big.bin"), &head, "-", &mut out);
        assert!(reply.file.is_none() && reply.streamed.is_none());
        // A listing holds its directory while it is sent; its HEAD does not.
        let reply = site.respond(&get("/"), &answer, "-", &mut out);
        let listing = reply.streamed.expect("a listing is sent in pieces");
        assert!(listing.pieces.holds_descriptor());
        assert!(site
            .respond(&get("/"), &head, "-", &mut out)
            .streamed
            .is_none());
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
