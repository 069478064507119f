//! Publishing a file atomically: every file the tools write for others to read (crawl and plan
//! Parquet, manifests, run state, reports) is written to a hidden temporary name beside its
//! final one, flushed to disk, renamed into place, and the directory flushed too. A reader (or
//! a resumed crawl) sees either the previous file or the complete new one, never a prefix of
//! it, even after a crash or power loss; a temporary file a crash leaves behind is named
//! `.NAME.inprogress`, which no `*.parquet` glob matches.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// The temporary name `dest` is written under: `.NAME.inprogress` in the same directory (a
/// rename within one file system is atomic).
pub fn temp_path(dest: &Path) -> PathBuf {
    let name = dest.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    dest.with_file_name(format!(".{name}.inprogress"))
}

fn named(path: &Path, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

/// A file being written under its temporary name; [`AtomicFile::commit`] publishes it.
/// Dropped without a commit (an error on the way), the temporary file is removed.
pub struct AtomicFile {
    file: Option<File>,
    tmp: PathBuf,
    dest: PathBuf,
}

impl AtomicFile {
    /// The temporary file is made new (`O_CREAT|O_EXCL`): a link planted under its name — by
    /// whoever else can write the directory — is never followed, so nothing outside is ever
    /// truncated or written through it. One left by a crash (or planted) is removed first;
    /// removing a link removes the link, not its target.
    pub fn create(dest: &Path) -> io::Result<AtomicFile> {
        let tmp = temp_path(dest);
        let new = || std::fs::OpenOptions::new().write(true).create_new(true).open(&tmp);
        let file = match new() {
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                std::fs::remove_file(&tmp).map_err(|e| named(&tmp, e))?;
                new()
            }
            r => r,
        }
        .map_err(|e| named(&tmp, e))?;
        Ok(AtomicFile { file: Some(file), tmp, dest: dest.to_path_buf() })
    }

    pub fn dest(&self) -> &Path {
        &self.dest
    }

    /// Flush the data to disk, rename it to its final name, and flush the directory entry.
    pub fn commit(mut self) -> io::Result<()> {
        let file = self.file.take().expect("committed once");
        file.sync_all().map_err(|e| named(&self.tmp, e))?;
        drop(file);
        std::fs::rename(&self.tmp, &self.dest).map_err(|e| named(&self.dest, e))?;
        sync_dir(&self.dest)
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file.as_mut().expect("not committed").write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.file.as_mut().expect("not committed").flush()
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// Flush the directory holding `path`, so a rename into it survives a power loss.
pub fn sync_dir(path: &Path) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    File::open(dir).and_then(|d| d.sync_all()).map_err(|e| named(dir, e))
}

/// Write `bytes` to `dest` atomically (see the module doc).
pub fn write_atomic(dest: &Path, bytes: impl AsRef<[u8]>) -> io::Result<()> {
    let mut f = AtomicFile::create(dest)?;
    f.write_all(bytes.as_ref()).map_err(|e| named(dest, e))?;
    f.commit()
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn publishes_whole_or_not_at_all() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("m.json");
        std::fs::write(&p, "old").unwrap();
        {
            let mut f = AtomicFile::create(&p).unwrap();
            f.write_all(b"half").unwrap();
            // Not committed: the old file stays, the temporary one goes.
        }
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "old");
        assert!(!temp_path(&p).exists());
        write_atomic(&p, "new").unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "new");
        assert_eq!(temp_path(&p).file_name().unwrap(), ".m.json.inprogress");
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_link_planted_under_the_temporary_name_is_not_followed() {
        let d = tempfile::tempdir().unwrap();
        let (p, victim) = (d.path().join("state.json"), d.path().join("victim"));
        std::fs::write(&victim, "precious").unwrap();
        std::os::unix::fs::symlink(&victim, temp_path(&p)).unwrap();
        write_atomic(&p, "new").unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "new");
        assert!(std::fs::symlink_metadata(temp_path(&p)).is_err(), "the link is gone");
        // A dangling link too (it would be created through).
        let target = d.path().join("made-through-a-link");
        std::os::unix::fs::symlink(&target, temp_path(&p)).unwrap();
        write_atomic(&p, "newer").unwrap();
        assert!(!target.exists() && std::fs::read_to_string(&p).unwrap() == "newer");
    }
}
