//! Opening a path below a directory in one step that cannot leave it.
//!
//! The race this closes: a server that first checks a path ("does it
//! resolve inside the root?") and then opens it by name opens whatever the
//! name means *at the second moment*. Anyone who can write in the served
//! tree can swap a file for a link to `../outside/secret.txt` between the
//! two, and the check passes on the file while the open follows the link.
//! So the check has to be part of the open:
//!
//! - Linux 5.6 and later: `openat2(root, "a/b/c", RESOLVE_BENEATH)`. The
//!   kernel follows the whole path, links included, and fails with `EXDEV`
//!   at any step that would leave `root`: a link to an absolute path, or a
//!   `..` above it. `RESOLVE_NO_MAGICLINKS` also refuses `/proc`'s magic
//!   links, which jump anywhere.
//! - Older kernels (or a sandbox that hides `openat2`): walk one name at a
//!   time with `openat(here, name, O_NOFOLLOW)`, each from the descriptor
//!   the previous step returned, so no step can follow a link.
//! - `--follow-symlinks`: links may lead anywhere, by request of the
//!   operator, so one plain `openat` below the root.
//!
//! The kernel's `RESOLVE_BENEATH` refuses two kinds of links that a person
//! reads as staying inside: an absolute one that names a file in the
//! directory (`/srv/site/a.txt`), and a relative one that climbs out and
//! back in (`../site/a.txt`). The walk refuses every link. For those, and
//! only when the fast way has said no, [`Root::follow`] resolves the path
//! itself, one name at a time: it reads each link's target (`readlinkat`,
//! from the descriptor of the directory that holds the link) and goes on
//! from there. Where a target passes outside the root (an absolute one, or
//! a `..` above it), the path it spells is only used to ask, name by name,
//! whether it has come back to the root: the kernel names what the path
//! leads to (an `O_PATH` open, which reads nothing, and `fstat`), and the
//! root is known by its device and inode. So `/srv/site/a.txt` is inside
//! even when `/srv` is itself a link. Once back, the walk goes on from the
//! root's own descriptor, never through the path; a target that ends
//! outside is refused (`EXDEV`). Inside, every descriptor it takes is one
//! name below a directory it holds, and the final open is again below the
//! root with the same one-step open (`openat2` or the walk), so a link
//! swapped in meanwhile leads at worst to another file inside. At most 40
//! links are followed (the kernel's own limit), then the answer is `ELOOP`.
//!
//! Request paths never hold `..` (the first gate refuses it), so in every
//! case only links could lead up, and they are what is checked here.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{fstat, openat, openat2, readlinkat, FileType, Mode, OFlags, ResolveFlags, CWD};
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
fn walk<S: AsRef<OsStr>>(root: BorrowedFd<'_>, names: &[S], flags: OFlags) -> io::Result<OwnedFd> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::files::tests::Tree;
    use crate::files::READ;
    use std::fs::{self, File};
    use std::io::Read;
    use std::os::unix::fs::symlink;
    use std::sync::atomic::Ordering;
    use std::time::{Duration, Instant};

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
            // No openat2 on this kernel: only the walk can be tested here,
            // which CI (FIVETUPLE_NO_SKIP) does not accept as a pass.
            false => {
                assert!(
                    std::env::var_os("FIVETUPLE_NO_SKIP").is_none(),
                    "no openat2 on this kernel: only the walk is tested"
                );
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
}
