//! Tests that need what the person or machine running them may not have.
//!
//! A few tests change things only root may change: a network namespace of
//! their own (to narrow the ephemeral port range without touching the
//! machine), or dropping to another user (to show what a normal user meets
//! at a port below 1024). Others need a tool that is not always installed
//! (HAProxy, Chromium, taskset), an IPv6 loopback, or more open files than
//! a normal user's default limit allows. Each asks here first. Where the
//! need can be met another way it is (a normal user can often make a
//! namespace inside a user namespace of their own, `unshare --user
//! --map-root-user`; a normal user already is the unprivileged user; tools
//! are also looked for in /usr/sbin and /sbin, which a normal user's PATH
//! lacks; the soft open-files limit is raised to the hard one). Where it
//! cannot, the test skips itself:
//!
//! - one line on stderr, written past the test harness's capture so it
//!   shows in a plain `cargo test` (`SKIPPED <test>: needs ...`);
//! - one line appended to `target/tmp/skipped-tests.txt`, which `make test`
//!   empties before and counts after, so a skip cannot pass unseen;
//! - with `FIVETUPLE_NO_SKIP=1` (CI sets it: CI runs as root with every
//!   tool installed) a skip is a failure instead.
//!
//! A test that can still show what it means to with fewer descriptors runs
//! smaller instead, and notes it the same way in `smaller-tests.txt`
//! (`SMALLER <test>: ...`); that is not a failure under
//! `FIVETUPLE_NO_SKIP`. The descriptors themselves are lent by
//! `common::Descriptors`, so a test binary that declares this module
//! declares `mod common;` beside it (tests/suite/main.rs).

#![allow(dead_code)]

use std::io::Write;
use std::path::PathBuf;
use std::process::Command;

use crate::common::Descriptors;

/// Where skips are counted; `make test` reads it.
pub const SKIP_LOG: &str = concat!(env!("CARGO_TARGET_TMPDIR"), "/skipped-tests.txt");

/// Where tests that ran smaller than they were written to are listed;
/// `make test` reads it too.
pub const SMALLER_LOG: &str = concat!(env!("CARGO_TARGET_TMPDIR"), "/smaller-tests.txt");

/// The name of the test function it is used in, as `module::function`:
/// the name the test harness gives it, and the skip and note lines too.
/// (The path of `here` starts with the test binary's own name, `suite::`,
/// which the harness leaves out.)
#[allow(unused_macros)]
macro_rules! this_test {
    () => {{
        fn here() {}
        let name = std::any::type_name_of_val(&here);
        let name = name.strip_suffix("::here").unwrap_or(name);
        name.split_once("::").map_or(name, |(_binary, test)| test)
    }};
}
#[allow(unused_imports)]
pub(crate) use this_test;

/// Records that `test` did not run for lack of `need`, or fails it where
/// skips are not allowed. The caller returns right after.
pub fn skip(test: &str, need: &str) {
    let line = format!("{test}: needs {need}");
    if std::env::var_os("FIVETUPLE_NO_SKIP").is_some_and(|v| v != "0") {
        panic!("FIVETUPLE_NO_SKIP is set, and {line}");
    }
    report("SKIPPED", SKIP_LOG, &line);
}

/// Records that `test` runs, but smaller than it was written to (`what`
/// says how and why). Not a failure anywhere: the test still shows what
/// it means to.
pub fn note_smaller(test: &str, what: &str) {
    report("SMALLER", SMALLER_LOG, &format!("{test}: {what}"));
}

/// One line on stderr and one in `log`.
fn report(tag: &str, log: &str, line: &str) {
    // Past the harness's capture (which only takes print!/eprint!), so the
    // line shows next to the test's name.
    let _ = writeln!(std::io::stderr(), "{tag} {line}");
    // Best effort: a target directory we cannot write to (tests run as
    // another user) still leaves the stderr line.
    if let Ok(mut log) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
    {
        let _ = writeln!(log, "{line}");
    }
}

/// Where system tools live besides the PATH: Debian puts some that a
/// normal user may run (haproxy, getcap) in the sbin folders, which only
/// root's PATH has.
const SBIN: [&str; 3] = ["/usr/local/sbin", "/usr/sbin", "/sbin"];

/// The path of the program `name`, from the PATH or an sbin folder. `Err`
/// (the caller skips) says what is missing and which Debian package has it.
pub fn tool(name: &str, package: &str) -> Result<PathBuf, String> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(SBIN.iter().map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
        .ok_or_else(|| {
            format!(
                "{name}, which is neither on the PATH nor in {} (Debian package {package}; \
                 scripts/install-test-tools installs every tool the tests use)",
                SBIN.join(", ")
            )
        })
}

fn is_executable(path: &std::path::Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Descriptors for a test that opens many connections at once: `want` of
/// them, or fewer where the open-files limit is lower (noted), or `None`
/// (skipped) where not even `least` can be had, the number below which
/// the test would no longer show what it means to. See
/// [`Descriptors::lend`].
pub fn descriptors(test: &str, want: usize, least: usize) -> Option<Descriptors> {
    let lent = Descriptors::lend(want);
    let got = lent.count();
    if got < least {
        skip(
            test,
            &format!(
                "{least} open files of its own, and the open-files limit leaves it {got} \
                 (soft limit raised to the hard one, {}; raise the hard limit, or run as root)",
                lent.limit()
            ),
        );
        return None;
    }
    if got < want {
        note_smaller(
            test,
            &format!(
                "{got} of the {want} descriptors it is written for (open-files limit {})",
                lent.limit()
            ),
        );
    }
    Some(lent)
}

/// Whether this process runs as root.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// The command prefix that runs a command in a network namespace of its
/// own, with root's powers inside it (to bring up its loopback and set its
/// port range): `unshare --net` for root; for anyone else
/// `unshare --user --map-root-user --net`, where the kernel allows user
/// namespaces. `Err` (the caller skips) says what is missing.
pub fn net_namespace() -> Result<Vec<&'static str>, String> {
    let prefix: Vec<&'static str> = if is_root() {
        vec!["unshare", "--net"]
    } else {
        vec!["unshare", "--user", "--map-root-user", "--net"]
    };
    let tried = Command::new(prefix[0])
        .args(&prefix[1..])
        .arg("true")
        .output();
    let why = match tried {
        Ok(out) if out.status.success() => return Ok(prefix),
        Ok(out) => String::from_utf8_lossy(&out.stderr)
            .lines()
            .next()
            .unwrap_or("failed")
            .to_string(),
        Err(e) => format!("{}: {e}", prefix[0]),
    };
    Err(format!(
        "a network namespace of its own: root, or unprivileged user namespaces \
         (`{} true` says: {why})",
        prefix.join(" ")
    ))
}

/// The lowest port anyone may bind (`net.ipv4.ip_unprivileged_port_start`,
/// 1024 unless changed).
pub fn unprivileged_port_start() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(1024)
}

/// A command that runs `program` as a user without privileges: root drops
/// to nobody with setpriv; anyone else runs it as themselves. `Err` says
/// what is missing.
pub fn as_unprivileged_user(program: &str) -> Result<Command, String> {
    if !is_root() {
        return Ok(Command::new(program));
    }
    let drop_to_nobody = ["--reuid=65534", "--regid=65534", "--clear-groups"];
    let works = Command::new("setpriv")
        .args(drop_to_nobody)
        .arg("true")
        .output()
        .is_ok_and(|o| o.status.success());
    if !works {
        return Err("setpriv (util-linux) able to drop root to nobody".into());
    }
    let mut cmd = Command::new("setpriv");
    cmd.args(drop_to_nobody).arg(program);
    Ok(cmd)
}
