//! Tests that need privileges the person running them may not have.
//!
//! A few tests change things only root may change: a network namespace of
//! their own (to narrow the ephemeral port range without touching the
//! machine), or dropping to another user (to show what a normal user meets
//! at a port below 1024). Each asks here first. Where the privilege can be
//! had another way it is used (a normal user can often make a namespace
//! inside a user namespace of their own, `unshare --user --map-root-user`;
//! a normal user already is the unprivileged user). Where it cannot, the
//! test skips itself:
//!
//! - one line on stderr, written past the test harness's capture so it
//!   shows in a plain `cargo test` (`SKIPPED <test>: needs ...`);
//! - one line appended to `target/tmp/skipped-tests.txt`, which `make test`
//!   empties before and counts after, so a skip cannot pass unseen;
//! - with `FIVETUPLE_NO_SKIP=1` (CI sets it: CI runs as root) a skip is a
//!   failure instead.

#![allow(dead_code)]

use std::io::Write;
use std::process::Command;

/// Where skips are counted; `make test` reads it.
pub const SKIP_LOG: &str = concat!(env!("CARGO_TARGET_TMPDIR"), "/skipped-tests.txt");

/// Records that `test` did not run for lack of `need`, or fails it where
/// skips are not allowed. The caller returns right after.
pub fn skip(test: &str, need: &str) {
    let line = format!("{test}: needs {need}");
    if std::env::var_os("FIVETUPLE_NO_SKIP").is_some_and(|v| v != "0") {
        panic!("FIVETUPLE_NO_SKIP is set, and {line}");
    }
    // Past the harness's capture (which only takes print!/eprint!), so the
    // line shows next to the test's name.
    let _ = writeln!(std::io::stderr(), "SKIPPED {line}");
    // Best effort: a target directory we cannot write to (tests run as
    // another user) still leaves the stderr line.
    if let Ok(mut log) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(SKIP_LOG)
    {
        let _ = writeln!(log, "{line}");
    }
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
