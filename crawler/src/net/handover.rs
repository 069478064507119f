//! The directories a root-started process writes into after it has become the scan user are
//! created while it is still root and handed to that user (`chown`). After a first run those
//! directories belong to the scan user, who can then replace any entry inside them — by a
//! symbolic link to `/etc`, say — before the next root run. So no path below the output
//! directory is resolved by name while root: each component is opened relative to its parent's
//! descriptor with `O_NOFOLLOW` (created with `mkdirat` when missing), must be a directory owned
//! by root or the scan user, and the handed-over ones are `fchown`ed through the descriptor
//! that was checked. A symbolic link or a stranger's directory is refused (exit 2), named.

use crate::job::config::ConfigError;
use anyhow::{Context, Result};
use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

/// Directories under `base` to create and hand over; `""` is `base` itself.
#[derive(Debug, Clone, Default)]
pub struct Handover {
    pub base: PathBuf,
    pub dirs: Vec<PathBuf>,
}

impl Handover {
    pub fn new(base: &Path, dirs: impl IntoIterator<Item = PathBuf>) -> Handover {
        Handover { base: base.to_path_buf(), dirs: dirs.into_iter().collect() }
    }

    /// Every handed-over directory by its full path.
    pub fn paths(&self) -> Vec<PathBuf> {
        self.dirs.iter().map(|d| if d.as_os_str().is_empty() { self.base.clone() } else { self.base.join(d) }).collect()
    }

    /// Without privileges: plain creation (the process can only harm itself).
    pub fn create(&self) -> Result<()> {
        for p in self.paths() {
            std::fs::create_dir_all(&p).with_context(|| format!("creating {}", p.display()))?;
        }
        Ok(())
    }

    /// As root: create each directory component by component without following a link, check
    /// who owns it, and hand the listed ones to `uid`:`gid` (see the module doc).
    pub fn hand_over(&self, user: &str, uid: u32, gid: u32) -> Result<()> {
        if self.dirs.is_empty() {
            return Ok(());
        }
        // The base is the operator's own path (its parents are theirs), but the scan user may
        // own the directory holding it.
        std::fs::create_dir_all(&self.base).with_context(|| format!("creating {}", self.base.display()))?;
        let refuse = |p: &Path, why: String| -> anyhow::Error { ConfigError(format!("{}: {why}: refusing to hand it to user {user} while root (move it away)", p.display())).into() };
        let base = open_dir(libc::AT_FDCWD, &self.base, &self.base, false).map_err(|e| refuse(&self.base, e))?;
        check_owner(&base, uid).map_err(|e| refuse(&self.base, e))?;
        for rel in &self.dirs {
            let mut fd = None;
            let mut at = self.base.clone();
            for c in rel.components() {
                let Component::Normal(name) = c else { return Err(refuse(&self.base.join(rel), "not a plain relative path".into())) };
                at.push(name);
                let parent = fd.as_ref().unwrap_or(&base).as_raw_fd();
                let next = open_dir(parent, Path::new(name), &at, true).map_err(|e| refuse(&at, e))?;
                check_owner(&next, uid).map_err(|e| refuse(&at, e))?;
                fd = Some(next);
            }
            let fd = fd.as_ref().unwrap_or(&base);
            // SAFETY: fchown on a descriptor we own.
            if unsafe { libc::fchown(fd.as_raw_fd(), uid, gid) } != 0 {
                return Err(std::io::Error::last_os_error()).with_context(|| format!("handing {} to user {user}", at.display()));
            }
        }
        Ok(())
    }
}

/// Open directory `name` relative to `parent` without following a final symbolic link;
/// created (mode 0755) when missing and `create`.
fn open_dir(parent: libc::c_int, name: &Path, shown: &Path, create: bool) -> std::result::Result<OwnedFd, String> {
    let c = CString::new(name.as_os_str().as_bytes()).map_err(|_| "a path with a NUL byte".to_string())?;
    let flags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC;
    for _ in 0..2 {
        // SAFETY: valid NUL-terminated name; the descriptor is owned at once.
        let fd = unsafe { libc::openat(parent, c.as_ptr(), flags) };
        if fd >= 0 {
            return Ok(unsafe { OwnedFd::from_raw_fd(fd) });
        }
        let e = std::io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::ENOENT) if create => {
                // SAFETY: as above. Someone else creating it first is fine: it is opened and
                // checked like any existing directory.
                if unsafe { libc::mkdirat(parent, c.as_ptr(), 0o755) } != 0 && std::io::Error::last_os_error().raw_os_error() != Some(libc::EEXIST) {
                    return Err(format!("cannot create it: {}", std::io::Error::last_os_error()));
                }
            }
            // O_DIRECTORY makes a link to a directory fail as "not a directory": tell them apart.
            Some(libc::ELOOP | libc::ENOTDIR) => return Err(if is_link(parent, &c) { "a symbolic link" } else { "not a directory" }.into()),
            _ => return Err(format!("cannot open {}: {e}", shown.display())),
        }
    }
    Err("vanished while it was created".into())
}

fn is_link(parent: libc::c_int, name: &std::ffi::CStr) -> bool {
    // SAFETY: fstatat fills the struct passed; the name is NUL-terminated.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    unsafe { libc::fstatat(parent, name.as_ptr(), &mut st, libc::AT_SYMLINK_NOFOLLOW) == 0 && st.st_mode & libc::S_IFMT == libc::S_IFLNK }
}

fn check_owner(fd: &OwnedFd, uid: u32) -> std::result::Result<(), String> {
    // SAFETY: fstat fills the struct passed.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } != 0 {
        return Err(format!("fstat: {}", std::io::Error::last_os_error()));
    }
    if st.st_uid != 0 && st.st_uid != uid {
        return Err(format!("owned by uid {}, neither root nor the scan user", st.st_uid));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    /// Run as root (the lab tests run everything as root): the handed-over directories end up
    /// the user's, and a link or a stranger's directory stops the hand-over without a chown.
    #[test]
    #[ignore = "lab test: needs root to chown (tests/run-tests.sh runs it)"]
    fn links_and_strangers_directories_are_refused() {
        // SAFETY: geteuid has no preconditions.
        assert_eq!(unsafe { libc::geteuid() }, 0, "needs root: run tests/run-tests.sh");
        let d = tempfile::tempdir().unwrap();
        let (out, victim) = (d.path().join("out"), d.path().join("victim"));
        std::fs::create_dir(&victim).unwrap();
        let h = Handover::new(&out, ["".into(), "_plans".into(), "crawl_date=x/crawl_id=y".into()]);
        h.hand_over("nobody", 65534, 65534).unwrap();
        for p in [out.clone(), out.join("_plans"), out.join("crawl_date=x/crawl_id=y")] {
            assert_eq!(std::fs::metadata(&p).unwrap().uid(), 65534, "{}", p.display());
        }
        assert_eq!(std::fs::metadata(out.join("crawl_date=x")).unwrap().uid(), 0, "an intermediate directory stays root's");
        // The user replaces what it owns by links to a root directory.
        for (link, rel) in [("_plans", "_plans"), ("crawl_date=x", "crawl_date=x/crawl_id=y")] {
            let p = out.join(link);
            std::fs::remove_dir_all(&p).unwrap();
            std::os::unix::fs::symlink(&victim, &p).unwrap();
            let e = Handover::new(&out, [rel.into()]).hand_over("nobody", 65534, 65534).unwrap_err();
            assert!(e.is::<ConfigError>() && e.to_string().contains(&p.display().to_string()) && e.to_string().contains("symbolic link"), "{e}");
            std::fs::remove_file(&p).unwrap();
        }
        // The output directory itself a link; a directory of another user.
        let link = d.path().join("out-link");
        std::os::unix::fs::symlink(&victim, &link).unwrap();
        assert!(Handover::new(&link, ["".into()]).hand_over("nobody", 65534, 65534).unwrap_err().to_string().contains("symbolic link"));
        std::os::unix::fs::chown(out.join("_plans").parent().unwrap(), Some(1234), None).unwrap();
        let e = Handover::new(&out, ["_plans".into()]).hand_over("nobody", 65534, 65534).unwrap_err();
        assert!(e.to_string().contains("owned by uid 1234"), "{e}");
        let m = std::fs::metadata(&victim).unwrap();
        assert_eq!((m.uid(), std::fs::read_dir(&victim).unwrap().count()), (0, 0), "nothing happened to the link's target");
    }
}
