//! Least privilege: raw sockets are the only thing the crawler needs privileges for, so once
//! every one of them is open, everything else goes — before the first received frame is parsed
//! or the first output file is written.
//!
//! - Started as root: the process becomes an unprivileged user (`--user`, `scan.user`,
//!   default `nobody`) with supplementary groups cleared, then gid, then uid changed for real,
//!   effective and saved alike, and no capability left in any set — effective, permitted,
//!   inheritable, ambient, and the bounding set, so not even an exec could bring one back.
//! - Started as a user holding `CAP_NET_RAW` (file capability, or ambient from systemd or
//!   `setpriv`): every set is cleared; the user stays.
//!
//! Either way `PR_SET_NO_NEW_PRIVS` is set (no setuid or file-capability exec can raise them
//! again), and the result is read back from `/proc/self/task/*/status` for *every* thread:
//! capabilities are per thread on Linux, so a thread started before the drop would keep them.
//! The callers drop while they are the only thread (the receive and record threads start
//! after it); any leftover fails the drop instead of running privileged.
//!
//! Output: a process that was root writes as the new user afterwards, so the directories it
//! writes into are created before the drop and handed to that user (`fchown`, the directory
//! only, not what it holds; see [`super::handover`] for why no path is followed by name).
//! Files are not opened in advance instead: every output is published by renaming a temporary
//! file inside its directory, which needs write access to the directory itself, and a resumed
//! crawl deletes half-written files there too. Nothing is read before the drop either: the
//! callers open their sockets, drop, and only then read a plan or a list.

use super::handover::Handover;
use anyhow::{bail, Context, Result};
use caps::{CapSet, Capability};
use std::ffi::CString;

/// How the process ended up, for the log.
#[derive(Debug, Clone)]
pub struct Dropped {
    /// `root`, `capabilities` (a user with some) or `none` (nothing to drop).
    pub started_as: String,
    pub uid: u32,
    pub gid: u32,
    pub threads: usize,
}

/// The user and group ids of `name` (from the password database).
pub fn lookup_user(name: &str) -> Result<(u32, u32)> {
    let cname = CString::new(name).context("user name with a NUL byte")?;
    let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
    let mut buf = vec![0u8; 16 * 1024];
    let mut out: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: all pointers are valid for the call; `buf` outlives the use of `pw`'s fields.
    let r = unsafe { libc::getpwnam_r(cname.as_ptr(), &mut pw, buf.as_mut_ptr().cast(), buf.len(), &mut out) };
    if r != 0 || out.is_null() {
        return Err(crate::job::config::ConfigError(format!("no user `{name}` to run as once the raw sockets are open (pass --user or set scan.user)")).into());
    }
    Ok((pw.pw_uid, pw.pw_gid))
}

/// Drop every privilege after the raw sockets are open (see the module doc). `writable`: the
/// directories the process still writes into; created, and handed to `user` when started as
/// root.
pub fn drop_privileges(user: &str, writable: &Handover) -> Result<Dropped> {
    let (ruid, euid, suid) = getresuid();
    let started_as = if ruid == 0 || euid == 0 || suid == 0 {
        let (uid, gid) = lookup_user(user)?;
        if uid == 0 {
            return Err(crate::job::config::ConfigError(format!("user `{user}` is root: name an unprivileged user to run as")).into());
        }
        writable.hand_over(user, uid, gid)?;
        no_new_privs()?;
        // The bounding set needs CAP_SETPCAP to shrink, so it goes while we are still root;
        // setuid leaves the inheritable set alone, so it is cleared by hand.
        caps::clear(None, CapSet::Ambient).context("clearing the ambient capabilities")?;
        for c in caps::read(None, CapSet::Bounding).context("reading the bounding set")? {
            caps::drop(None, CapSet::Bounding, c).with_context(|| format!("dropping {c} from the bounding set"))?;
        }
        caps::clear(None, CapSet::Inheritable).context("clearing the inheritable capabilities")?;
        // glibc applies these to every thread of the process.
        // SAFETY: plain system calls with valid arguments.
        unsafe {
            if libc::setgroups(0, std::ptr::null()) != 0 {
                bail!("setgroups: {}", std::io::Error::last_os_error());
            }
            if libc::setresgid(gid, gid, gid) != 0 {
                bail!("setresgid({gid}): {}", std::io::Error::last_os_error());
            }
            if libc::setresuid(uid, uid, uid) != 0 {
                bail!("setresuid({uid}): {}", std::io::Error::last_os_error());
            }
        }
        // The kernel clears these when every uid leaves 0; cleared again so nothing depends on it.
        caps::clear(None, CapSet::Effective).context("clearing the effective capabilities")?;
        caps::clear(None, CapSet::Permitted).context("clearing the permitted capabilities")?;
        "root"
    } else {
        writable.create()?;
        let held = !caps::read(None, CapSet::Permitted)?.is_empty() || !caps::read(None, CapSet::Ambient)?.is_empty() || !caps::read(None, CapSet::Inheritable)?.is_empty();
        no_new_privs()?;
        caps::clear(None, CapSet::Ambient).context("clearing the ambient capabilities")?;
        caps::clear(None, CapSet::Inheritable).context("clearing the inheritable capabilities")?;
        if caps::has_cap(None, CapSet::Effective, Capability::CAP_SETPCAP).unwrap_or(false) {
            for c in caps::read(None, CapSet::Bounding)? {
                caps::drop(None, CapSet::Bounding, c).with_context(|| format!("dropping {c} from the bounding set"))?;
            }
        }
        caps::clear(None, CapSet::Effective).context("clearing the effective capabilities")?;
        caps::clear(None, CapSet::Permitted).context("clearing the permitted capabilities")?;
        if held {
            "capabilities"
        } else {
            "none"
        }
    };
    let d = verify(started_as == "root")?;
    // A directory handed over is of no use if a parent is closed to the new user: say so now,
    // not after the crawl when its results cannot be written.
    for dir in writable.paths() {
        let c = CString::new(dir.as_os_str().as_encoded_bytes()).context("path with a NUL byte")?;
        // SAFETY: valid NUL-terminated path.
        if unsafe { libc::access(c.as_ptr(), libc::W_OK | libc::X_OK) } != 0 {
            bail!("{} is not writable by uid {} after dropping privileges ({}): a parent directory may be closed to that user", dir.display(), d.uid, std::io::Error::last_os_error());
        }
    }
    tracing::debug!("privileges dropped (started as {started_as}): uid {} gid {}, no capabilities, {} thread(s)", d.uid, d.gid, d.threads);
    Ok(Dropped { started_as: started_as.into(), ..d })
}

fn getresuid() -> (u32, u32, u32) {
    let (mut r, mut e, mut s) = (0, 0, 0);
    // SAFETY: three valid out-pointers.
    unsafe { libc::getresuid(&mut r, &mut e, &mut s) };
    (r, e, s)
}

fn no_new_privs() -> Result<()> {
    // SAFETY: prctl with integer arguments.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        bail!("PR_SET_NO_NEW_PRIVS: {}", std::io::Error::last_os_error());
    }
    Ok(())
}

/// What one thread holds, from its `status` file.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TaskCreds {
    pub uids: Vec<u32>,
    pub gids: Vec<u32>,
    pub groups: Vec<u32>,
    pub cap_inh: u64,
    pub cap_prm: u64,
    pub cap_eff: u64,
    pub cap_bnd: u64,
    pub cap_amb: u64,
    pub no_new_privs: bool,
}

/// Parse a `/proc/PID/status` (or `/proc/PID/task/TID/status`) text.
pub fn parse_status(text: &str) -> TaskCreds {
    let mut t = TaskCreds::default();
    for l in text.lines() {
        let Some((k, v)) = l.split_once(':') else { continue };
        let nums = || v.split_whitespace().filter_map(|x| x.parse().ok()).collect::<Vec<u32>>();
        let hex = || u64::from_str_radix(v.trim(), 16).unwrap_or(u64::MAX);
        match k {
            "Uid" => t.uids = nums(),
            "Gid" => t.gids = nums(),
            "Groups" => t.groups = nums(),
            "CapInh" => t.cap_inh = hex(),
            "CapPrm" => t.cap_prm = hex(),
            "CapEff" => t.cap_eff = hex(),
            "CapBnd" => t.cap_bnd = hex(),
            "CapAmb" => t.cap_amb = hex(),
            "NoNewPrivs" => t.no_new_privs = v.trim() == "1",
            _ => {}
        }
    }
    t
}

/// Read back what every thread holds; anything left is an error.
fn verify(was_root: bool) -> Result<Dropped> {
    let me = std::fs::read_to_string("/proc/thread-self/status").context("reading /proc/thread-self/status")?;
    let me = parse_status(&me);
    let (uid, gid) = (me.uids.first().copied().unwrap_or(u32::MAX), me.gids.first().copied().unwrap_or(u32::MAX));
    let mut threads = 0;
    for e in std::fs::read_dir("/proc/self/task").context("listing /proc/self/task")? {
        let e = e?;
        let Ok(text) = std::fs::read_to_string(e.path().join("status")) else { continue }; // a thread that just ended
        let t = parse_status(&text);
        threads += 1;
        let tid = e.file_name().to_string_lossy().into_owned();
        let left = [("effective", t.cap_eff), ("permitted", t.cap_prm), ("inheritable", t.cap_inh), ("ambient", t.cap_amb)];
        if let Some((set, v)) = left.iter().find(|(_, v)| *v != 0) {
            bail!("after dropping privileges, thread {tid} still holds {set} capabilities {v:#x} (was it started before the drop?)");
        }
        if was_root && t.cap_bnd != 0 {
            bail!("after dropping privileges, thread {tid} still has a bounding set {:#x}", t.cap_bnd);
        }
        if t.uids.iter().any(|u| *u != uid) || t.gids.iter().any(|g| *g != gid) || t.uids.len() != 4 || t.gids.len() != 4 {
            bail!("after dropping privileges, thread {tid} has uids {:?} and gids {:?}", t.uids, t.gids);
        }
        if was_root && (uid == 0 || gid == 0 || !t.groups.is_empty()) {
            bail!("after dropping privileges, thread {tid} is uid {uid} gid {gid} with groups {:?}", t.groups);
        }
    }
    if !me.no_new_privs {
        bail!("after dropping privileges, NoNewPrivs is not set");
    }
    Ok(Dropped { started_as: String::new(), uid, gid, threads })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines_are_read() {
        let t = parse_status("Name:\tcrawler\nUid:\t65534\t65534\t65534\t65534\nGid:\t65534\t65534\t65534\t65534\nGroups:\t\nNoNewPrivs:\t1\nCapInh:\t0000000000000000\nCapPrm:\t0000000000002000\nCapEff:\t0000000000000000\nCapBnd:\t000001ffffffffff\nCapAmb:\t0000000000000000\n");
        assert_eq!((t.uids, t.gids, t.groups.len()), (vec![65534; 4], vec![65534; 4], 0));
        assert_eq!((t.cap_prm, t.cap_eff, t.cap_bnd, t.no_new_privs), (0x2000, 0, 0x1ff_ffff_ffff, true));
    }

    #[test]
    fn an_unknown_user_is_a_config_error() {
        let e = lookup_user("no-such-user-port25").unwrap_err();
        assert!(e.is::<crate::job::config::ConfigError>() && e.to_string().contains("no-such-user-port25"), "{e}");
        assert_eq!(lookup_user("root").unwrap(), (0, 0));
    }
}
