//! A directory's listing page, as `python3 -m http.server` shows it, made
//! a slice of entries per turn.
//!
//! A listing shows what a click can open. Each entry is looked at through
//! the descriptor of the directory being listed, a link as a request for
//! it would find it (through the same gate, [`super::beneath`]): what would
//! fail (a link out of the served directory, a name the first gate refuses,
//! a file the server may not read) is shown as text with the reason, not
//! as a link that fails. Names are HTML-escaped and links percent-encoded.
//!
//! A directory may hold a hundred thousand names, and the page is made the
//! way a long body is ([`Pieces`]): a slice of entries per turn, as much as
//! the turn's share allows (`Host::turn_budget`), so that neither the time
//! nor the memory a listing takes grows with the directory. A small
//! directory is sorted by name first; a big one comes in the order the file
//! system keeps it, and says so. While it is sent, the listing holds the
//! directory open: one descriptor, counted like a file body's.

use std::fs::{File, Metadata};
use std::io;
use std::os::fd::BorrowedFd;
use std::sync::Arc;
use std::time::SystemTime;

use percent_encoding::utf8_percent_encode;
use rustix::fs::{Dir, Mode, OFlags};

use super::{beneath, HREF, SHADOWED};
use crate::http::response::{html_escape_bytes, SERVER};
use crate::http::{Host, Piece, Pieces};

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
    pub(super) fn new(
        root: &Arc<beneath::Root>,
        dir: &File,
        names: &[&str],
    ) -> io::Result<Listing> {
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
        // The first gate refuses backslashes (see `Site::resolve`).
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
