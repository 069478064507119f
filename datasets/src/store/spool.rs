//! A writer's local spool, mirrored into a store in the background.
//!
//! A tool writing to an object store writes exactly as it would to a directory — into the spool
//! directory, each file published atomically (`publish`) — and the spool's uploader puts every
//! finished file into the store under the same relative path, then removes the local copy. When
//! the store is away (a network outage, a restarting server), files wait in the spool and the
//! uploader retries with a growing backoff; the writer keeps writing until the spool holds
//! `max_bytes`, and is then told so ([`Spool::check_room`]) — a clear error, never a lost row:
//! what was written stays in the spool, and a later run (`--resume`) uploads it.
//!
//! Order: a manifest (`manifest*.json`) goes up only once no other file of its directory is
//! waiting, so a crawl is complete in the store exactly when its manifest is there. A file whose
//! object already exists with the same size (an upload that succeeded just before a crash) is not
//! uploaded twice.

use super::{Store, StoreError};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct SpoolStats {
    pub files: u64,
    pub bytes: u64,
    /// Uploads that failed and were retried.
    pub failures: u64,
    /// Files found already in the store (an upload finished before a crash) and not sent again.
    pub already_there: u64,
    pub last_error: Option<String>,
}

#[derive(Default)]
struct State {
    stop: bool,
    kicked: bool,
    stats: SpoolStats,
    /// Bytes waiting in the spool (as of the last scan).
    pending: u64,
    /// Files kept in the spool after their upload (`keep`), by path and size: not sent again.
    kept: std::collections::HashSet<(String, u64)>,
}

struct Shared {
    state: Mutex<State>,
    cv: Condvar,
}

/// The background uploader of one spool directory.
pub struct Spool {
    dir: PathBuf,
    store: Store,
    max_bytes: u64,
    shared: Arc<Shared>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// The longest wait between two attempts when the store is away.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Finished files of the spool, relative paths sorted, manifests last: temporary files
/// (`.NAME.inprogress`) and hidden ones are not finished. A directory that cannot be read is
/// an error: a partial listing would let a writer finish with files never uploaded.
pub fn pending(dir: &Path) -> Result<Vec<(String, u64)>, StoreError> {
    let mut out = Vec::new();
    super::walk(dir, dir, &mut out)?;
    out.retain(|(rel, _)| !rel.split('/').any(|c| c.starts_with('.')));
    out.sort_by_key(|(rel, _)| (is_manifest(rel), rel.clone()));
    Ok(out)
}

/// Files written once under a name of their own (a crawl's or the sink's Parquet parts): one
/// of the same size in the store is this one, uploaded before a crash. Others — a manifest
/// rewritten by a resumed run, say — may change under the same name and always go up.
fn write_once(rel: &str) -> bool {
    rel.ends_with(".parquet")
}

/// What identifies one version of a local file: a file published again under the same name
/// (an atomic rename) is another inode.
fn version(p: &Path) -> Option<(u64, u64, u64, std::time::SystemTime)> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(p).ok()?;
    Some((m.dev(), m.ino(), m.len(), m.modified().ok()?))
}

fn is_manifest(rel: &str) -> bool {
    let name = rel.rsplit('/').next().unwrap_or(rel);
    name.starts_with("manifest") && name.ends_with(".json")
}

/// Upload what is finished, manifests only once their directory has nothing else waiting.
/// Returns the bytes still waiting.
fn pass(dir: &Path, store: &Store, shared: &Shared, keep: fn(&str) -> bool) -> Result<u64, StoreError> {
    let mut files = pending(dir)?;
    {
        let st = shared.state.lock().unwrap_or_else(|p| p.into_inner());
        files.retain(|f| !st.kept.contains(f));
    }
    let mut left: u64 = files.iter().map(|f| f.1).sum();
    for (rel, len) in &files {
        if is_manifest(rel) {
            let parent = rel.rsplit_once('/').map_or("", |x| x.0);
            let others = pending(dir)?.into_iter().any(|(r, _)| !is_manifest(&r) && r.rsplit_once('/').map_or("", |x| x.0) == parent);
            if others {
                continue;
            }
        }
        let local = dir.join(rel);
        let before = version(&local);
        let there = write_once(rel) && store.size(rel)? == Some(*len);
        if !there {
            store.put_file(rel, &local)?;
        }
        // Published again while it went up (a resumed run's new manifest): the new version
        // stays for the next pass, never removed unsent.
        if before.is_none() || version(&local) != before {
            continue;
        }
        let mut st = shared.state.lock().unwrap_or_else(|p| p.into_inner());
        if keep(rel) {
            st.kept.insert((rel.clone(), *len));
        } else {
            let _ = std::fs::remove_file(&local);
        }
        left -= len;
        if there {
            st.stats.already_there += 1;
        } else {
            st.stats.files += 1;
            st.stats.bytes += len;
        }
        st.pending = left;
    }
    Ok(left)
}

impl Spool {
    /// Start uploading `dir`'s finished files to `store`; the writer may hold up to `max_bytes`
    /// in the spool.
    pub fn start(dir: &Path, store: Store, max_bytes: u64) -> Spool {
        Spool::start_keeping(dir, store, max_bytes, |_| false)
    }

    /// [`Spool::start`], keeping the files `keep` names in the spool once uploaded (what the
    /// writer reads again: a crawl's plan).
    pub fn start_keeping(dir: &Path, store: Store, max_bytes: u64, keep: fn(&str) -> bool) -> Spool {
        let shared = Arc::new(Shared { state: Mutex::new(State::default()), cv: Condvar::new() });
        let (d, s, sh) = (dir.to_path_buf(), store.clone(), shared.clone());
        let thread = std::thread::Builder::new()
            .name("spool".into())
            .spawn(move || {
                let mut backoff = Duration::from_millis(500);
                loop {
                    // Done only after a whole pass that began once the writer had finished: a
                    // pass already under way when it stops may not have seen its last files.
                    let stopping = sh.state.lock().unwrap_or_else(|p| p.into_inner()).stop;
                    let r = pass(&d, &s, &sh, keep);
                    let mut st = sh.state.lock().unwrap_or_else(|p| p.into_inner());
                    let wait = match r {
                        Ok(left) => {
                            st.pending = left;
                            backoff = Duration::from_millis(500);
                            if stopping && left == 0 {
                                return;
                            }
                            Duration::from_millis(200)
                        }
                        Err(e) => {
                            st.stats.failures += 1;
                            st.stats.last_error = Some(e.to_string());
                            tracing::warn!("spool: {e}; retrying in {:.1} s", backoff.as_secs_f64());
                            let w = backoff;
                            backoff = (backoff * 2).min(MAX_BACKOFF);
                            w
                        }
                    };
                    if !st.kicked {
                        st = sh.cv.wait_timeout(st, wait).unwrap_or_else(|p| p.into_inner()).0;
                    }
                    st.kicked = false;
                }
            })
            .expect("spawning the spool uploader");
        Spool { dir: dir.to_path_buf(), store, max_bytes, shared, thread: Some(thread) }
    }

    /// A file was published in the spool: look now.
    pub fn kick(&self) {
        let mut st = self.shared.state.lock().unwrap_or_else(|p| p.into_inner());
        st.kicked = true;
        self.shared.cv.notify_all();
    }

    /// Err when the spool holds its maximum: the store has been away too long to keep writing.
    pub fn check_room(&self) -> Result<(), StoreError> {
        let held: u64 = self.waiting()?.iter().map(|f| f.1).sum();
        if held <= self.max_bytes {
            return Ok(());
        }
        let last = self.shared.state.lock().unwrap_or_else(|p| p.into_inner()).stats.last_error.clone().unwrap_or_default();
        Err(StoreError(format!(
            "the spool {} holds {held} bytes, more than its {} — the store {} has been unreachable ({last}); everything written is kept there and goes up on the next run (--resume)",
            self.dir.display(),
            self.max_bytes,
            self.store.describe()
        )))
    }

    /// Files still to go up (kept ones already up are not).
    fn waiting(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let files = pending(&self.dir)?;
        let st = self.shared.state.lock().unwrap_or_else(|p| p.into_inner());
        Ok(files.into_iter().filter(|f| !st.kept.contains(f)).collect())
    }

    pub fn stats(&self) -> SpoolStats {
        self.shared.state.lock().unwrap_or_else(|p| p.into_inner()).stats.clone()
    }

    /// Upload everything left, retrying until `within` has passed; Err (naming what is left in
    /// the spool) if the store stayed away.
    pub fn finish(mut self, within: Duration) -> Result<SpoolStats, StoreError> {
        let until = Instant::now() + within;
        {
            let mut st = self.shared.state.lock().unwrap_or_else(|p| p.into_inner());
            st.stop = true;
            st.kicked = true;
            self.shared.cv.notify_all();
        }
        let t = self.thread.take().expect("running");
        while !t.is_finished() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(50));
        }
        let left = self.waiting()?;
        if !t.is_finished() || !left.is_empty() {
            let st = self.stats();
            return Err(StoreError(format!(
                "{} file(s) ({} bytes) could not be uploaded to {} and wait in the spool {} ({}); the next run (--resume) uploads them",
                left.len(),
                left.iter().map(|f| f.1).sum::<u64>(),
                self.store.describe(),
                self.dir.display(),
                st.last_error.unwrap_or_default()
            )));
        }
        let _ = t.join();
        Ok(self.stats())
    }
}

impl Drop for Spool {
    fn drop(&mut self) {
        // Not finished: the uploader stops at its next wake-up; the spool keeps what is left.
        let mut st = self.shared.state.lock().unwrap_or_else(|p| p.into_inner());
        st.stop = true;
        self.shared.cv.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The writer's last files land while a pass is under way (its listing already taken):
    /// `finish` still uploads them — it waits for a pass begun after it was called.
    #[test]
    fn files_published_just_before_finish_go_up() {
        for round in 0..40 {
            let d = tempfile::tempdir().unwrap();
            let (spool, dest) = (d.path().join("spool"), d.path().join("dest"));
            std::fs::create_dir_all(&spool).unwrap();
            let s = Spool::start(&spool, Store::dir(&dest), 1 << 30);
            for i in 0..30 {
                crate::publish::write_atomic(&spool.join(format!("part-{i:02}.parquet")), vec![0u8; 20_000]).unwrap();
                s.kick();
            }
            crate::publish::write_atomic(&spool.join("manifest.json"), b"{}").unwrap();
            s.finish(Duration::from_secs(10)).unwrap_or_else(|e| panic!("round {round}: {e}"));
            assert_eq!(std::fs::read_dir(&dest).unwrap().count(), 31, "round {round}");
        }
    }

    #[test]
    fn finished_files_go_up_manifests_last_and_the_spool_empties() {
        let d = tempfile::tempdir().unwrap();
        let (spool, dest) = (d.path().join("spool"), d.path().join("dest"));
        let part = spool.join("crawl_date=2026-12-01/crawl_id=a");
        std::fs::create_dir_all(&part).unwrap();
        std::fs::write(part.join("manifest.json"), b"{}").unwrap();
        std::fs::write(part.join("part-0.parquet"), b"rows").unwrap();
        std::fs::write(part.join(".part-1.parquet.inprogress"), b"half").unwrap();
        assert_eq!(pending(&spool).unwrap().iter().map(|f| f.0.rsplit('/').next().unwrap()).collect::<Vec<_>>(), ["part-0.parquet", "manifest.json"]);
        let s = Spool::start(&spool, Store::dir(&dest), 1 << 20);
        s.kick();
        let stats = s.finish(Duration::from_secs(10)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((stats.files, stats.bytes), (2, 6));
        assert!(dest.join("crawl_date=2026-12-01/crawl_id=a/manifest.json").exists());
        assert!(!part.join("part-0.parquet").exists(), "uploaded files leave the spool");
        assert!(part.join(".part-1.parquet.inprogress").exists(), "a file being written stays");
    }

    /// A resumed run publishes its manifest again under the same name, here of the same size
    /// as the one in the store: it goes up (not taken for an upload done before a crash).
    #[test]
    fn a_manifest_published_again_replaces_the_stored_one() {
        let d = tempfile::tempdir().unwrap();
        let (spool, dest) = (d.path().join("spool"), d.path().join("dest"));
        std::fs::create_dir_all(spool.join("c")).unwrap();
        std::fs::create_dir_all(dest.join("c")).unwrap();
        std::fs::write(dest.join("c/manifest.json"), br#"{"exit_status":"interrupted"}"#).unwrap();
        std::fs::write(dest.join("c/part-0.parquet"), b"rows").unwrap();
        crate::publish::write_atomic(&spool.join("c/manifest.json"), br#"{"exit_status":"complete!!!"}"#).unwrap();
        crate::publish::write_atomic(&spool.join("c/part-0.parquet"), b"rows").unwrap();
        let stats = Spool::start(&spool, Store::dir(&dest), 1 << 20).finish(Duration::from_secs(10)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(std::fs::read_to_string(dest.join("c/manifest.json")).unwrap(), r#"{"exit_status":"complete!!!"}"#);
        assert_eq!((stats.files, stats.already_there), (1, 1), "the part was there, the manifest went up");
    }

    #[test]
    fn a_full_spool_is_a_clear_error() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("part-0.parquet"), vec![0u8; 100]).unwrap();
        // A store that cannot be written: a file where its directory should be.
        std::fs::write(d.path().join("blocked"), b"").unwrap();
        let s = Spool::start(d.path(), Store::dir(&d.path().join("blocked/dest")), 10);
        let e = s.check_room().unwrap_err().to_string();
        assert!(e.contains("holds 100 bytes") && e.contains("--resume"), "{e}");
        let e = s.finish(Duration::from_millis(700)).unwrap_err().to_string();
        assert!(e.contains("wait in the spool"), "{e}");
        assert!(d.path().join("part-0.parquet").exists(), "nothing lost");
    }
}
