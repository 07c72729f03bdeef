//! Binding as root, serving as nobody: `serve --user NAME`.
//!
//! Ports below 1024 need root (or `CAP_NET_BIND_SERVICE`), and the story's
//! port is 500. But the privilege is only needed for `bind`: a listening
//! socket, once bound, works the same whoever holds it. So the server
//! binds first, as root, and then gives root up for good, before it
//! accepts a single connection or opens a single file for a client, as
//! nginx and darkhttpd do. (Better still, let systemd bind the port and
//! start the server as a user that never was root: `contrib/`.)
//!
//! Giving up root takes three steps, and their order matters: the
//! supplementary groups and the group first, while the process may still
//! change them, and the user last, which takes away the power to change
//! anything. Each is then checked by reading the ids back (real, effective
//! and saved: a saved uid of 0 would let the process become root again),
//! and by asking for root back, which must fail.
//!
//! The server already runs threads when it drops (the log's writer, for
//! one), and on Linux credentials belong to each thread. glibc's
//! `setuid` changes them in every thread of the process (it signals each
//! one to make the call too); nix's `setuid` is that function. The check
//! reads every thread's ids from `/proc/self/task/*/status` to be sure.

use nix::unistd::{self, Gid, Group, Uid, User};

use crate::error::{Error, Result};

/// Who the server runs as after dropping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dropped {
    pub user: String,
    pub uid: u32,
    pub group: String,
    pub gid: u32,
}

/// Whether the process runs as root (effective uid 0).
pub fn is_root() -> bool {
    Uid::effective().is_root()
}

/// The warning for a server that serves as root, or `None`.
pub fn root_warning(serves_files: bool) -> Option<String> {
    if !is_root() {
        return None;
    }
    let what = if serves_files {
        "every file under --dir is opened with root's rights"
    } else {
        "a bug in it would be a bug with root's rights"
    };
    Some(format!(
        "serving as root: {what}; add --user nobody (the server binds first, then drops to \
         that user), or let systemd bind the port (contrib/fivetuple.socket)"
    ))
}

/// Becomes `user` (and `group`, by default the user's own group) for good:
/// supplementary groups, group, user, in that order, each checked.
/// Already running as that user and group (a restart's new copy, started
/// by the old one after it dropped) is fine too.
pub fn drop_to(user: &str, group: Option<&str>) -> Result<Dropped> {
    let found = User::from_name(user)
        .map_err(|e| Error::io(format!("--user {user}: looking up the user"), e.into()))?
        .ok_or_else(|| {
            Error::usage(format!(
                "--user {user}: no such user on this machine (see `getent passwd`); \
                 nobody is a common choice"
            ))
        })?;
    let (gid, group_name) = match group {
        None => (found.gid, group_name(found.gid)),
        Some(name) => {
            let g = Group::from_name(name)
                .map_err(|e| Error::io(format!("--group {name}: looking up the group"), e.into()))?
                .ok_or_else(|| {
                    Error::usage(format!(
                        "--group {name}: no such group on this machine (see `getent group`)"
                    ))
                })?;
            (g.gid, g.name)
        }
    };
    let dropped = Dropped {
        user: found.name.clone(),
        uid: found.uid.as_raw(),
        group: group_name,
        gid: gid.as_raw(),
    };
    if already(found.uid, gid) {
        return Ok(dropped);
    }
    if !is_root() {
        return Err(Error::usage(format!(
            "--user {user}: only root can change its user, and this process runs as uid {}; \
             start it as root, or leave --user out",
            Uid::effective()
        )));
    }
    let step = |what: &str, r: nix::Result<()>| {
        r.map_err(|e| Error::io(format!("--user {user}: {what}"), e.into()))
    };
    // The one group chosen, not the user's other groups (initgroups would
    // add them): the server needs no more than that to read its files.
    step("setgroups", unistd::setgroups(&[gid]))?;
    step("setgid", unistd::setgid(gid))?;
    step("setuid", unistd::setuid(found.uid))?;
    check(found.uid, gid).map_err(|why| {
        Error::io(
            format!("--user {user}: the drop did not hold ({why}); refusing to serve"),
            std::io::Error::from(std::io::ErrorKind::PermissionDenied),
        )
    })?;
    Ok(dropped)
}

fn group_name(gid: Gid) -> String {
    Group::from_gid(gid)
        .ok()
        .flatten()
        .map_or_else(|| gid.to_string(), |g| g.name)
}

/// Already that user and group, with root nowhere among the ids.
fn already(uid: Uid, gid: Gid) -> bool {
    !uid.is_root() && check(uid, gid).is_ok()
}

/// Reads the ids back: real, effective and saved uid and gid, the
/// supplementary groups, and every thread's; then asks for root back,
/// which must be refused.
fn check(uid: Uid, gid: Gid) -> std::result::Result<(), String> {
    let r = unistd::getresuid().map_err(|e| e.to_string())?;
    if [r.real, r.effective, r.saved] != [uid; 3] {
        return Err(format!("uids are {}/{}/{}", r.real, r.effective, r.saved));
    }
    let g = unistd::getresgid().map_err(|e| e.to_string())?;
    if [g.real, g.effective, g.saved] != [gid; 3] {
        return Err(format!("gids are {}/{}/{}", g.real, g.effective, g.saved));
    }
    let groups = unistd::getgroups().map_err(|e| e.to_string())?;
    if groups.iter().any(|&other| other != gid) {
        return Err(format!("supplementary groups are {groups:?}"));
    }
    every_thread(uid.as_raw(), gid.as_raw())?;
    if !uid.is_root() && unistd::setuid(Uid::from_raw(0)).is_ok() {
        return Err("setuid(0) still succeeds".into());
    }
    Ok(())
}

/// Every thread's `Uid:` and `Gid:` lines (real, effective, saved,
/// filesystem) name `uid` and `gid` only.
fn every_thread(uid: u32, gid: u32) -> std::result::Result<(), String> {
    let tasks = std::fs::read_dir("/proc/self/task").map_err(|e| e.to_string())?;
    for task in tasks.flatten() {
        let path = task.path().join("status");
        let Ok(status) = std::fs::read_to_string(&path) else {
            continue; // a thread that ended meanwhile
        };
        for (key, want) in [("Uid:", uid), ("Gid:", gid)] {
            let line = status
                .lines()
                .find(|l| l.starts_with(key))
                .unwrap_or_default();
            let ids: Vec<&str> = line.split_whitespace().skip(1).collect();
            if ids.len() != 4 || ids.iter().any(|id| *id != want.to_string()) {
                return Err(format!("{}: {line}", path.display()));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_that_does_not_exist_is_a_usage_error() {
        let err = drop_to("no-such-user-fivetuple", None).unwrap_err();
        assert_eq!(err.exit_code(), 2, "{err}");
        assert!(err.to_string().contains("no such user"), "{err}");
    }
}
